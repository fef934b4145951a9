//! Secret inputs asked when first needed, at a real pseudo-terminal: an input used only by a
//! skipped step is never asked; one used by a step that runs is asked right before that step
//! (after the steps before it ran), hidden, and is in no file of the run directory and not
//! on the terminal.

use std::process::Command;

use crate::exec::Scratch;

const LAZY: &str = r#"
runbook: lazy-tty
version: 1
inputs:
  mode: { default: token, allowed: [plain, token] }
  token: { secret: true, description: "the new root token" }
  unused_key: { secret: true }
steps:
  - id: before
    read_only: true
    run: echo before > {D}/before
  - id: other-branch
    needs: [before]
    when: mode == 'plain'
    read_only: true
    run: printf %s "{{ unused_key }}" > {D}/unused
  - id: with-token
    needs: [before]
    read_only: true
    run: |
      printf %s "{{ token }}" > {D}/token
      echo "token is {{ token }}"
"#;

fn spawn(s: &Scratch, args: &[&str]) -> rexpect::session::PtySession {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
    cmd.arg("exec")
        .arg(s.path("runbook.yaml"))
        .args(args)
        .args(["--progress", "plain", "--runs-dir"])
        .arg(s.path("runs"))
        .env("NO_COLOR", "1")
        .env("TERM", "dumb");
    rexpect::session::spawn_command(cmd, Some(30_000)).expect("spawn in pty")
}

#[test]
fn a_secret_input_is_asked_right_before_the_step_that_uses_it_and_never_for_a_skipped_one() {
    let s = Scratch::new();
    s.runbook(LAZY);
    let secret = "s.LazyCanary8Vq3Zt";
    let mut p = spawn(&s, &[]);
    let mut seen = String::new();
    seen += &p.exp_string("ASK: with-token").expect("asked when needed");
    seen += &p.exp_string("answer (hidden): ").expect("hidden prompt");
    // Asked when first needed: the step before it has already run; not at the start.
    assert_eq!(s.read("before"), "before\n", "{seen}");
    assert!(
        seen.contains("input `token` (the new root token)"),
        "{seen}"
    );
    // Too short for a secret: asked again, not taken.
    p.send_line("short").expect("type");
    seen += &p.exp_string("asked again").expect("re-asked");
    seen += &p.exp_string("answer (hidden): ").expect("hidden again");
    p.send_line(secret).expect("type secret");
    seen += &p.exp_eof().expect("run ends");
    let status = p.process.wait().expect("status");
    assert!(format!("{status:?}").contains(", 0)"), "{status:?}\n{seen}");
    // The input only the skipped branch uses was never asked.
    assert!(!seen.contains("unused_key"), "{seen}");
    assert!(!s.path("unused").exists());
    assert!(seen.contains("token is ********"), "{seen}");
    assert_eq!(s.read("token"), secret);
    let id = std::fs::read_dir(s.path("runs"))
        .expect("runs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| !n.starts_with('.'))
        .expect("run");
    crate::ask::assert_nowhere(
        &s.path(&format!("runs/{id}")),
        secret,
        &[("terminal", &seen)],
    );
}

#[test]
fn the_input_of_a_skipped_step_is_never_asked_and_the_running_branch_s_is() {
    let s = Scratch::new();
    s.runbook(&LAZY.replace(
        "  - id: with-token\n    needs: [before]\n",
        "  - id: with-token\n    needs: [before]\n    when: mode == 'token'\n",
    ));
    let mut p = spawn(&s, &["-i", "mode=plain"]);
    // The other way round: `other-branch` runs and asks for `unused_key`; `with-token` is
    // skipped, so `token` is never asked.
    let mut seen = String::new();
    seen += &p
        .exp_string("ASK: other-branch")
        .expect("asked for unused_key");
    seen += &p.exp_string("answer (hidden): ").expect("hidden prompt");
    p.send_line("unused-key-value-1").expect("type");
    seen += &p.exp_eof().expect("run ends");
    let status = p.process.wait().expect("status");
    assert!(format!("{status:?}").contains(", 0)"), "{status:?}\n{seen}");
    assert!(seen.contains("input `unused_key`"), "{seen}");
    assert!(!seen.contains("input `token`"), "{seen}");
    assert!(!s.path("token").exists());
    assert_eq!(s.read("unused"), "unused-key-value-1");
}

/// A step whose `when` uses the input needs it to decide: asked then, before the decision.
#[test]
fn an_input_used_by_a_when_is_asked_before_the_when_is_decided() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: lazy-when
version: 1
inputs:
  token: { secret: true }
steps:
  - id: decide
    when: "token != 'skip-this-step'"
    read_only: true
    run: echo ran > {D}/ran
"#,
    );
    let secret = "s.WhenCanary4Kp9Lm";
    let mut p = spawn(&s, &[]);
    let mut seen = String::new();
    seen += &p.exp_string("ASK: decide").expect("asked for the when");
    seen += &p.exp_string("answer (hidden): ").expect("hidden prompt");
    p.send_line(secret).expect("type secret");
    seen += &p.exp_eof().expect("run ends");
    let status = p.process.wait().expect("status");
    assert!(format!("{status:?}").contains(", 0)"), "{status:?}\n{seen}");
    assert_eq!(s.read("ran"), "ran\n");
    assert!(!seen.contains(secret), "{seen}");
}
