//! Scoped rollback: `commit: true` discharges earlier rollbacks; `on_failure: unwind | stop |
//! continue` per step (`continue_on_failure` is the old spelling of `continue`).

use crate::exec::Scratch;
use crate::harness::runbook;

const COMMIT: &str = r#"
runbook: commit
version: 1
inputs:
  fail_at: { default: none }
steps:
  - id: prepare
    run: echo prepare >> {D}/done; test {{ fail_at }} != prepare
    rollback: echo undo-prepare >> {D}/undo
  - id: migrate
    needs: prepare
    commit: true
    run: echo migrate >> {D}/done; test {{ fail_at }} != migrate
    rollback: echo undo-migrate >> {D}/undo
  - id: optional
    needs: migrate
    run: echo optional >> {D}/done; test {{ fail_at }} != optional
"#;

fn transcript(s: &Scratch) -> String {
    let runs = std::fs::read_dir(s.path("runs")).expect("runs");
    runs.flatten()
        .map(|e| e.path().join("transcript.md"))
        .find(|p| p.exists())
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .unwrap_or_default()
}

#[test]
fn a_commit_discharges_the_rollbacks_before_it() {
    let s = Scratch::new();
    s.runbook(COMMIT);
    let ran = s.exec(&["-i", "fail_at=optional"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert_eq!(s.read("done"), "prepare\nmigrate\noptional\n");
    // `prepare` was discharged by the commit; only `migrate`'s own rollback runs.
    assert_eq!(s.read("undo"), "undo-migrate\n");
    assert!(
        ran.stderr
            .contains("commit migrate: rollbacks of prepare discharged"),
        "{}",
        ran.stderr
    );
    let t = transcript(&s);
    assert!(
        t.contains("commit `migrate`: rollbacks of `prepare` discharged"),
        "{t}"
    );
}

#[test]
fn before_the_commit_everything_unwinds() {
    let s = Scratch::new();
    s.runbook(COMMIT);
    let ran = s.exec(&["-i", "fail_at=migrate"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert_eq!(s.read("undo"), "undo-prepare\n");
    assert!(!ran.stderr.contains("discharged"), "{}", ran.stderr);
}

#[test]
fn the_plan_shows_the_commit() {
    let s = Scratch::new();
    let f = s.runbook(COMMIT);
    let ran = runbook(["plan", &f.display().to_string()]).run();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stdout.contains("commit:   point of no return"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("except what completed before a commit that succeeded (migrate)"),
        "{}",
        ran.stdout
    );
}

const ON_FAILURE: &str = r#"
runbook: on-failure
version: 1
inputs:
  mode: { default: unwind }
steps:
  - id: change
    run: echo change >> {D}/done
    rollback: echo undo-change >> {D}/undo
  - id: flaky
    needs: change
    on_failure: MODE
    run: echo flaky >> {D}/done; exit 3
  - id: next
    needs: flaky
    run: echo next >> {D}/done
"#;

#[test]
fn on_failure_stop_stops_without_undoing() {
    let s = Scratch::new();
    s.runbook(&ON_FAILURE.replace("MODE", "stop"));
    let ran = s.exec(&[]);
    assert_eq!(ran.code, Some(4), "{}", ran.stderr);
    assert_eq!(s.read("done"), "change\nflaky\n");
    assert_eq!(s.read("undo"), "");
    assert!(
        ran.stderr
            .contains("on_failure: stop: NOT undoing 1 completed step(s): change"),
        "{}",
        ran.stderr
    );
}

#[test]
fn on_failure_continue_goes_on_like_continue_on_failure() {
    for spelling in ["on_failure: continue", "continue_on_failure: true"] {
        let s = Scratch::new();
        s.runbook(&ON_FAILURE.replace("on_failure: MODE", spelling));
        let ran = s.exec(&[]);
        assert_eq!(
            s.read("done"),
            "change\nflaky\nnext\n",
            "{spelling}: {}",
            ran.stderr
        );
        assert_eq!(s.read("undo"), "", "{spelling}");
    }
}

#[test]
fn on_failure_unwind_is_the_default() {
    let s = Scratch::new();
    s.runbook(&ON_FAILURE.replace("MODE", "unwind"));
    let ran = s.exec(&[]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert_eq!(s.read("undo"), "undo-change\n");
}

#[test]
fn on_failure_must_be_a_known_mode_and_not_twice() {
    let s = Scratch::new();
    let f = s.runbook(&ON_FAILURE.replace("MODE", "retry"));
    let ran = runbook(["validate", &f.display().to_string()]).run();
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr
            .contains("must be `unwind`, `stop` or `continue`"),
        "{}",
        ran.stderr
    );
    let f = s.runbook(&ON_FAILURE.replace("MODE", "stop\n    continue_on_failure: true"));
    let ran = runbook(["validate", &f.display().to_string()]).run();
    assert_eq!(ran.code, Some(2));
    assert!(ran.stderr.contains("say the same thing"), "{}", ran.stderr);
}

/// A `for_each` that fails on its third item: the rollback runs once for each item that
/// completed, last first, with `item` and `item_index` bound.
#[test]
fn for_each_rollback_undoes_each_completed_item_after_a_part_way_failure() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: items
version: 1
steps:
  - id: each
    for_each: [a, b, c, d]
    run: test {{ item }} != c && echo {{ item }} >> {D}/done
    rollback: echo "undo-{{ item }}-{{ item_index }}" >> {D}/undo
"#,
    );
    let ran = s.exec(&[]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert_eq!(s.read("done"), "a\nb\n");
    assert_eq!(s.read("undo"), "undo-b-1\nundo-a-0\n");
}

/// A step that succeeded on every item is undone item by item too, after a later failure.
#[test]
fn for_each_rollback_after_a_later_failure_covers_every_item() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: items
version: 1
steps:
  - id: each
    for_each: [a, b]
    run: echo {{ item }} >> {D}/done
    rollback: echo "undo-{{ item }}" >> {D}/undo
  - id: later
    needs: each
    run: exit 1
"#,
    );
    let ran = s.exec(&[]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert_eq!(s.read("undo"), "undo-b\nundo-a\n");
}

/// The new filters through a real run, and `skipped` defined for a step that ran.
#[test]
fn regex_json_base64_filters_and_skipped_of_a_step_that_ran() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: filters
version: 1
steps:
  - id: probe
    read_only: true
    run: |
      echo 'Main PID: 4242 (vault)'
      echo 'node_id=vault-1 node_id=vault-3'
      echo 'JSON {"data": {"leader": "vault-2"}}'
    outputs:
      pid: "stdout | regex_search('Main PID: ([0-9]+)') | int"
      peers: "stdout | regex_findall('node_id=(\\S+)') | join(',')"
      none_found: stdout | regex_search('nothing here') is none
      leader: "(stdout | regex_search('JSON (.*)') | from_json).data.leader"
      decoded: "'aGVsbG8gd29ybGQ=' | b64decode"
  - id: report
    needs: probe
    read_only: true
    run: echo "{{ steps.probe.outputs.pid + 1 }} {{ steps.probe.outputs.peers }} {{ steps.probe.outputs.none_found }} {{ steps.probe.outputs.leader }} {{ steps.probe.outputs.decoded }} skipped={{ steps.probe.skipped }}" > {D}/out
"#,
    );
    let ran = s.exec(&[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(
        s.read("out"),
        "4243 vault-1,vault-3 True vault-2 hello world skipped=False\n"
    );
}

/// `fail: message` stops the run on purpose (when its `when` holds), unwinding what was done;
/// the plan shows it.
#[test]
fn fail_step_stops_the_run_with_its_message() {
    let s = Scratch::new();
    let f = s.runbook(
        r#"
runbook: fail
version: 1
inputs:
  cause: { default: quorum }
steps:
  - id: change
    run: echo change >> {D}/done
    rollback: echo undo-change >> {D}/undo
  - id: refuse
    needs: change
    when: cause == 'quorum'
    fail: "quorum lost ({{ cause }}): recover quorum first"
  - id: after
    needs: refuse
    run: echo after >> {D}/done
"#,
    );
    let ran = s.exec(&[]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("step `refuse` failed: quorum lost (quorum): recover quorum first"),
        "{}",
        ran.stderr
    );
    assert_eq!(s.read("done"), "change\n");
    assert_eq!(s.read("undo"), "undo-change\n");
    let skipped = s.exec(&["-i", "cause=oom"]);
    assert_eq!(skipped.code, Some(0), "{}", skipped.stderr);
    let plan = runbook(["plan", &f.display().to_string()]).run();
    assert!(
        plan.stdout
            .contains("fail:     quorum lost (quorum): recover quorum first"),
        "{}",
        plan.stdout
    );
}
