//! `for_each: { answers: ASK }` through the real binary: a step that consumes the answers
//! of an `ask:` as they arrive, answered by distinct OS users with `runbook answer`. The
//! order is proved by the journal and by marker files the items write (never by timing):
//! the first item has run before the second person answers.

use std::process::{Child, Stdio};

use serde_json::json;
use std::time::Duration;

use crate::ask::{
    SECOND_USER, answer, assert_nowhere, ensure_second_user, journal, run_id, wait_journal,
};
use crate::exec::{Scratch, wait_for, wait_output};
use crate::sshd::{TEST_USER, ensure_test_user};

/// Generous bound for a run to end once it has what it needs (a hang fails, not a slow run).
const LIMIT: Duration = Duration::from_secs(120);

/// A scratch dir other OS users can reach (`runbook answer --runs-dir` as them).
fn shared_scratch(yaml: &str) -> Scratch {
    ensure_test_user();
    ensure_second_user();
    let s = Scratch::new();
    s.runbook(yaml);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    s
}

fn start(s: &Scratch) -> Child {
    s.command(&["--progress", "plain"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// The journal's events, in order.
fn events(s: &Scratch, id: &str) -> Vec<serde_json::Value> {
    journal(s, id)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Position of the first event matching all of `fields`.
fn position(events: &[serde_json::Value], fields: &[(&str, serde_json::Value)]) -> usize {
    events
        .iter()
        .position(|e| fields.iter().all(|(k, v)| e.get(*k) == Some(v)))
        .unwrap_or_else(|| panic!("no event with {fields:?} in {events:#?}"))
}

fn count(events: &[serde_json::Value], fields: &[(&str, serde_json::Value)]) -> usize {
    events
        .iter()
        .filter(|e| fields.iter().all(|(k, v)| e.get(*k) == Some(v)))
        .count()
}

/// Gives `value` to `step` of run `id` as `user`, on stdin; asserts it was accepted.
fn give(s: &Scratch, user: Option<&str>, id: &str, step: &str, value: &str) -> String {
    let (code, out) = answer(s, user, &[id, step, "--stdin"], Some(&format!("{value}\n")));
    assert_eq!(code, 0, "{out}");
    out
}

const STREAMED: &str = r#"
runbook: streamed
version: 1
steps:
  - id: shares
    ask: { prompt: "Your unseal share", secret: true, from: 2 }
  - id: apply
    needs: [shares]
    read_only: true
    for_each: { answers: shares }
    env: { SHARE: "{{ item }}" }
    run: |
      printf '%s\n' "$SHARE" >> {D}/applied
      touch {D}/item-{{ item_index }}
"#;

/// Two OS users each give a share; the consuming step runs the first share before the second
/// user answers (the test waits for item 0's marker file before the second answer, and the
/// journal has item 0 finished before the second `ask-answered`). Neither share is in any
/// file of the run directory or the engine's output.
#[test]
fn a_consumer_runs_each_answer_before_the_next_is_given() {
    let s = shared_scratch(STREAMED);
    let mut child = start(&s);
    let id = wait_journal(&s, "\"gate-waiting\"", 1);
    let (one, two) = ("StreamShareOne-7Qx1", "StreamShareTwo-9Kz4");
    let out = give(&s, Some(TEST_USER), &id, "shares", one);
    assert!(out.contains("(1 of 2)"), "{out}");
    wait_for(&s.path("item-0"), LIMIT);
    wait_journal(&s, "\"item-finished\"", 1);
    assert!(!s.path("item-1").exists(), "item 1 ran before its answer");
    assert_eq!(s.read("applied"), format!("{one}\n"));
    let out = give(&s, Some(SECOND_USER), &id, "shares", two);
    assert!(out.contains("(2 of 2)"), "{out}");
    let (code, stderr) = wait_output(&mut child, LIMIT);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(s.read("applied"), format!("{one}\n{two}\n"));
    let ev = events(&s, &id);
    let first = position(
        &ev,
        &[("event", json!("ask-answered")), ("user", json!(TEST_USER))],
    );
    let started0 = position(
        &ev,
        &[
            ("event", json!("item-started")),
            ("step", json!("apply")),
            ("item_index", json!(0)),
        ],
    );
    let finished0 = position(
        &ev,
        &[
            ("event", json!("item-finished")),
            ("step", json!("apply")),
            ("item_index", json!(0)),
        ],
    );
    let second = position(
        &ev,
        &[
            ("event", json!("ask-answered")),
            ("user", json!(SECOND_USER)),
        ],
    );
    let started1 = position(
        &ev,
        &[
            ("event", json!("item-started")),
            ("step", json!("apply")),
            ("item_index", json!(1)),
        ],
    );
    assert!(first < started0 && started0 < finished0, "{ev:#?}");
    assert!(finished0 < second && second < started1, "{ev:#?}");
    // The ask records which item each answer is, never a secret's value.
    assert_eq!(ev[second]["streamed"], json!({ "index": 1 }), "{ev:#?}");
    for secret in [one, two] {
        assert_nowhere(
            &s.path(&format!("runs/{id}")),
            secret,
            &[("engine output", &stderr)],
        );
    }
}

/// A wrong share fails its item; with `on_item_failure: continue` the ask keeps collecting
/// and the next holder's share still runs; the step fails at the end and its per-item
/// rollback undoes exactly the items that succeeded, newest first.
#[test]
fn a_wrong_answer_fails_its_item_and_the_ask_keeps_collecting_with_on_item_failure_continue() {
    let s = shared_scratch(
        r#"
runbook: streamed-wrong
version: 1
steps:
  - id: shares
    ask: { prompt: "Your unseal share", secret: true, from: 3 }
  - id: apply
    needs: [shares]
    for_each: { answers: shares, on_item_failure: continue }
    env: { SHARE: "{{ item }}" }
    run: |
      case "$SHARE" in Wrong*) echo "share {{ item_index }} rejected" >&2; exit 1;; esac
      echo "{{ item_index }}" >> {D}/applied
    rollback: echo "{{ item_index }}" >> {D}/undone
"#,
    );
    let mut child = start(&s);
    let id = wait_journal(&s, "\"gate-waiting\"", 1);
    give(&s, None, &id, "shares", "GoodShareOne-aaaa");
    wait_journal(&s, "\"item-finished\"", 1);
    // Taken (the ask cannot tell a wrong share); its item fails.
    give(&s, Some(TEST_USER), &id, "shares", "WrongShare-bbbb");
    wait_journal(&s, "\"item-finished\"", 2);
    assert!(journal(&s, &id).contains("\"status\":\"failed\""));
    give(&s, Some(SECOND_USER), &id, "shares", "GoodShareThree-cccc");
    let (code, stderr) = wait_output(&mut child, LIMIT);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("share 1 rejected"), "{stderr}");
    assert_eq!(s.read("applied"), "0\n2\n");
    assert_eq!(s.read("undone"), "2\n0\n", "{stderr}");
    let ev = events(&s, &id);
    assert_eq!(
        count(&ev, &[("event", json!("ask-answered"))]),
        3,
        "{ev:#?}"
    );
    for secret in [
        "GoodShareOne-aaaa",
        "WrongShare-bbbb",
        "GoodShareThree-cccc",
    ] {
        assert_nowhere(
            &s.path(&format!("runs/{id}")),
            secret,
            &[("engine output", &stderr)],
        );
    }
}

/// By default a wrong share fails the run like any failed item: the ask stops waiting for
/// the other holders (nobody else answers, the run still ends) and earlier steps are undone.
#[test]
fn a_wrong_answer_fails_the_run_with_rollback_without_waiting_for_the_others() {
    let s = shared_scratch(
        r#"
runbook: streamed-stop
version: 1
steps:
  - id: prepare
    run: touch {D}/prepared
    rollback: touch {D}/undone
  - id: shares
    needs: [prepare]
    ask: { prompt: "Your unseal share", secret: true, from: 3, timeout: 1h }
  - id: apply
    needs: [shares]
    read_only: true
    for_each: { answers: shares }
    env: { SHARE: "{{ item }}" }
    run: |
      case "$SHARE" in Wrong*) echo "share {{ item_index }} rejected" >&2; exit 1;; esac
"#,
    );
    let mut child = start(&s);
    let id = wait_journal(&s, "\"gate-waiting\"", 1);
    give(&s, Some(TEST_USER), &id, "shares", "WrongShare-dddd");
    let (code, stderr) = wait_output(&mut child, LIMIT);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("share 0 rejected"), "{stderr}");
    assert!(s.path("undone").exists(), "{stderr}");
    assert_nowhere(
        &s.path(&format!("runs/{id}")),
        "WrongShare-dddd",
        &[("engine output", &stderr)],
    );
}

/// kill -9 between two answers: on resume the item already done is not run again, the
/// holder who answered it is not asked again (and is refused as a second answer), and only
/// the missing share is asked.
#[test]
fn resume_after_kill_between_two_answers_does_not_redo_the_first_item() {
    let s = shared_scratch(STREAMED);
    let mut child = start(&s);
    let id = wait_journal(&s, "\"gate-waiting\"", 1);
    let (one, two) = ("ResumeShareOne-3Mn8", "ResumeShareTwo-5Pq2");
    give(&s, Some(TEST_USER), &id, "shares", one);
    wait_journal(&s, "\"item-finished\"", 1);
    child.kill().expect("kill -9");
    let _ = child.wait();
    let runs = s.path("runs").display().to_string();
    let mut resumed = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["resume", &id, "--runs-dir", &runs, "--progress", "plain"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("resume");
    wait_journal(&s, "\"gate-waiting\"", 2);
    let (code, again) = answer(&s, Some(TEST_USER), &[&id, "shares", "--stdin"], Some(two));
    assert_eq!(code, 2, "{again}");
    assert!(again.contains("already answered"), "{again}");
    let out = give(&s, Some(SECOND_USER), &id, "shares", two);
    assert!(out.contains("(2 of 2)"), "{out}");
    let (code, stderr) = wait_output(&mut resumed, LIMIT);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(s.read("applied"), format!("{one}\n{two}\n"));
    let ev = events(&s, &id);
    let item0 = [
        ("event", json!("item-started")),
        ("step", json!("apply")),
        ("item_index", json!(0)),
    ];
    assert_eq!(count(&ev, &item0), 1, "item 0 ran again: {ev:#?}");
    for secret in [one, two] {
        assert_nowhere(
            &s.path(&format!("runs/{id}")),
            secret,
            &[("engine output", &stderr)],
        );
    }
}

/// A plain (not secret) answer given before a kill comes back from the journal on resume:
/// nobody is asked for it again and the ask's `values` still has it.
#[test]
fn resume_takes_plain_answers_back_from_the_journal() {
    let s = shared_scratch(
        r#"
runbook: streamed-plain
version: 1
steps:
  - id: names
    ask: { prompt: "Your name", from: 2 }
  - id: greet
    needs: [names]
    read_only: true
    for_each: { answers: names }
    run: echo "{{ item }}" >> {D}/greeted
  - id: all
    needs: [greet]
    read_only: true
    run: echo "{{ steps.names.outputs['values'] | join(',') }}" > {D}/all
"#,
    );
    let mut child = start(&s);
    let id = wait_journal(&s, "\"gate-waiting\"", 1);
    give(&s, None, &id, "names", "alice");
    wait_journal(&s, "\"item-finished\"", 1);
    child.kill().expect("kill -9");
    let _ = child.wait();
    let runs = s.path("runs").display().to_string();
    let mut resumed = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["resume", &id, "--runs-dir", &runs, "--progress", "plain"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("resume");
    wait_journal(&s, "\"gate-waiting\"", 2);
    let out = give(&s, Some(TEST_USER), &id, "names", "bob");
    assert!(out.contains("(2 of 2)"), "{out}");
    let (code, stderr) = wait_output(&mut resumed, LIMIT);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(s.read("greeted"), "alice\nbob\n");
    assert_eq!(s.read("all"), "alice,bob\n");
    assert_eq!(run_id(&s).as_deref(), Some(id.as_str()));
}

/// Nobody gives the second answer in time: the ask pauses the run (exit 3) and so does the
/// consuming step, with item 0 done; `resume` asks only for the missing answer (the first
/// comes back from the journal) and does not run item 0 again.
#[test]
fn an_ask_that_times_out_pauses_its_consumer_and_resume_goes_on_from_there() {
    let s = shared_scratch(
        r#"
runbook: streamed-pause
version: 1
steps:
  - id: names
    ask: { prompt: "Your name", from: 2, timeout: 5s }
  - id: greet
    needs: [names]
    read_only: true
    for_each: { answers: names }
    run: echo "{{ item }}" >> {D}/greeted
"#,
    );
    let mut child = start(&s);
    let id = wait_journal(&s, "\"gate-waiting\"", 1);
    give(&s, None, &id, "names", "carol");
    let (code, stderr) = wait_output(&mut child, LIMIT);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("resume with"), "{stderr}");
    assert_eq!(s.read("greeted"), "carol\n");
    let runs = s.path("runs").display().to_string();
    let mut resumed = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["resume", &id, "--runs-dir", &runs, "--progress", "plain"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("resume");
    wait_journal(&s, "\"gate-waiting\"", 2);
    let out = give(&s, Some(SECOND_USER), &id, "names", "dave");
    assert!(out.contains("(2 of 2)"), "{out}");
    let (code, stderr) = wait_output(&mut resumed, LIMIT);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(s.read("greeted"), "carol\ndave\n");
}

/// The ask is skipped: the consuming step runs over its `items` instead, or, with none, is
/// skipped too (and the steps after it still run).
#[test]
fn a_skipped_ask_leaves_its_consumer_the_items_or_nothing() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: streamed-skipped
version: 1
inputs:
  mode: { default: env, allowed: [env, holders] }
steps:
  - id: shares
    when: mode == 'holders'
    ask: { prompt: "Your share", from: 2 }
  - id: with-items
    needs: [shares]
    read_only: true
    for_each: { answers: shares, items: "['k1', 'k2'] if mode == 'env' else []" }
    run: echo "{{ item }}" >> {D}/used
  - id: more
    when: mode == 'holders'
    ask: { prompt: "Another share", from: 2 }
  - id: without
    needs: [more]
    read_only: true
    for_each: { answers: more }
    run: echo "{{ item }}" >> {D}/never
  - id: after
    needs: [with-items, without]
    read_only: true
    run: echo "{{ steps.without.skipped }}" > {D}/after
"#,
    );
    let ran = s.exec(&["--progress", "plain"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(s.read("used"), "k1\nk2\n");
    assert!(!s.path("never").exists(), "{}", ran.stderr);
    assert_eq!(s.read("after"), "True\n", "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("`more` was skipped: no answers to consume"),
        "{}",
        ran.stderr
    );
}

/// The consuming step's `deadline` covers the time spent waiting for answers: when it passes
/// the step fails (naming the ask), the ask stops waiting, and the run fails.
#[test]
fn the_consumers_deadline_counts_the_wait_for_answers() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: streamed-deadline
version: 1
steps:
  - id: names
    ask: { prompt: "Your name", from: 2, timeout: 1h }
  - id: greet
    needs: [names]
    read_only: true
    deadline: 10s
    for_each: { answers: names }
    run: echo "{{ item }}" >> {D}/greeted
"#,
    );
    let mut child = start(&s);
    let id = wait_journal(&s, "\"gate-waiting\"", 1);
    give(&s, None, &id, "names", "erin");
    let (code, stderr) = wait_output(&mut child, LIMIT);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("deadline passed while waiting for answers to `names` (1 item(s) done)"),
        "{stderr}"
    );
    assert_eq!(s.read("greeted"), "erin\n");
}
