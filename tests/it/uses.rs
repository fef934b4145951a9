//! `uses:` — a runbook called as a step: one run, the child's rollbacks unwinding in the
//! caller's order, outputs passed back, the plan showing the child in place.

use crate::exec::Scratch;
use crate::harness::runbook;

const CHILD: &str = r#"
runbook: child
version: 1
inputs:
  who: { required: true }
  times: { type: int, default: 1 }
  greeting: { default: "hello {{ who }}" }
steps:
  - id: make
    run: echo "{{ greeting }} x{{ times }}" >> {D}/done
    rollback: echo "undo-make-{{ who }}" >> {D}/undo
  - id: check
    needs: make
    when: "{{ who != '' }}"
    read_only: true
    run: echo "checked {{ inputs.who }}"
    outputs:
      line: stdout | trim
outputs:
  said: steps.check.outputs.line
  times: times
"#;

const PARENT: &str = r#"
runbook: parent
version: 1
inputs:
  name: { default: world }
  fail: { default: "no" }
steps:
  - id: first
    run: echo first >> {D}/done
    rollback: echo undo-first >> {D}/undo
  - id: greet
    needs: first
    when: "{{ name != 'skip' }}"
    uses: lib/child.yaml
    with: { who: "{{ name }}", times: 3 }
  - id: after
    needs: greet
    run: echo "child said {{ steps.greet.outputs.said }} x{{ steps.greet.outputs.times }}" >> {D}/done; test {{ fail }} = no
"#;

fn scratch() -> Scratch {
    let s = Scratch::new();
    s.runbook(PARENT);
    std::fs::create_dir_all(s.path("lib")).expect("lib dir");
    std::fs::write(
        s.path("lib/child.yaml"),
        CHILD.replace("{D}", &s.dir.path().display().to_string()),
    )
    .expect("write child");
    s
}

#[test]
fn child_steps_run_in_the_parent_run_and_pass_outputs_back() {
    let s = scratch();
    let ran = s.exec(&[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(
        s.read("done"),
        "first\nhello world x3\nchild said checked world x3\n"
    );
    assert_eq!(s.read("undo"), "");
    // One run, one journal: the child did not start a run of its own.
    let runs: Vec<_> = std::fs::read_dir(s.path("runs"))
        .expect("runs dir")
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(ran.stderr.contains("ok greet.make"), "{}", ran.stderr);
}

#[test]
fn child_rollback_unwinds_in_the_parent_after_a_later_parent_failure() {
    let s = scratch();
    let ran = s.exec(&["-i", "fail=yes"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    // LIFO over the whole run: the child's step completed after `first`, so it is undone first.
    assert_eq!(s.read("undo"), "undo-make-world\nundo-first\n");
    assert!(ran.stderr.contains("step `after` failed"), "{}", ran.stderr);
}

#[test]
fn plan_shows_the_child_expanded_in_place() {
    let s = scratch();
    let ran = runbook(["plan", &s.path("runbook.yaml").display().to_string()]).run();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let out = &ran.stdout;
    let make = out.find("● greet.make").expect("child step in the plan");
    let check = out.find("● greet.check").expect("child step in the plan");
    let call = out.find("● greet —").expect("the call");
    let after = out.find("● after").expect("after");
    assert!(make < check && check < call && call < after, "{out}");
    assert!(out.contains("uses:     lib/child.yaml"), "{out}");
    // The child's inputs are the caller's values.
    assert!(out.contains("RUNBOOK_V1=hello world"), "{out}");
    assert!(out.contains("greet.make ← first"), "{out}");
}

#[test]
fn a_call_cycle_is_an_error_printed_as_a_path() {
    let s = Scratch::new();
    s.runbook("runbook: a\nversion: 1\nsteps:\n  - id: b\n    uses: b.yaml\n");
    std::fs::write(
        s.path("b.yaml"),
        "runbook: b\nversion: 1\nsteps:\n  - id: a\n    uses: runbook.yaml\n",
    )
    .expect("write b");
    let ran = runbook(["validate", &s.path("runbook.yaml").display().to_string()]).run();
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("[uses-cycle]"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("runbook.yaml → ") && ran.stderr.contains("b.yaml → "),
        "{}",
        ran.stderr
    );
}

/// The call's `when` applies to every child step (joined with the child's own, braces or
/// not): a false one skips the whole call and nothing of the child runs.
#[test]
fn a_false_when_on_the_call_skips_every_child_step() {
    let s = scratch();
    let ran = s.exec(&["-i", "name=skip"]);
    // `after` reads the skipped call's outputs: it fails, and nothing of the child ran.
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert_eq!(s.read("done"), "first\n");
    for id in ["greet.make", "greet.check", "greet"] {
        assert!(
            ran.stderr
                .lines()
                .any(|l| l.starts_with(id) && l.contains("skipped")),
            "{id}: {}",
            ran.stderr
        );
    }
}
