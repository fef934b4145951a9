//! Inputs asked when first needed, at a real pseudo-terminal and headless: an input used only
//! by a skipped step is never asked; one used by a step that runs is asked right before that
//! step (after the steps before it ran) — hidden for a secret, which is in no file of the run
//! directory and not on the terminal; echoed, checked and asked again for a plain one, whose
//! answer `resume` takes from the journal. Headless, the step that needs it fails naming it.

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
    let file = s.path("runbook.yaml").display().to_string();
    let mut all = vec!["exec", file.as_str()];
    all.extend_from_slice(args);
    spawn_cmd(s, &all)
}

/// `runbook ARGS… --progress plain --runs-dir RUNS` in a pseudo-terminal.
fn spawn_cmd(s: &Scratch, args: &[&str]) -> rexpect::session::PtySession {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
    cmd.args(args);
    spawn_in_pty(s, cmd)
}

/// The same, with the terminal's echo on, as a person's terminal has it (rexpect turns it
/// off): what is typed at a prompt that does not hide it shows on the terminal.
fn spawn_with_echo(s: &Scratch, args: &[&str]) -> rexpect::session::PtySession {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "stty echo && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_runbook"))
        .args(args);
    spawn_in_pty(s, cmd)
}

fn spawn_in_pty(s: &Scratch, mut cmd: Command) -> rexpect::session::PtySession {
    cmd.args(["--progress", "plain", "--runs-dir"])
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
    when: "(token | string) != 'skip-this-step'"
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

/// A required plain input (`ticket`) that only a step under a `when:` reads, beside one an
/// unconditional step reads (`node`).
const PLAIN: &str = r#"
runbook: lazy-plain
version: 1
inputs:
  node: { required: true, description: "node to look at" }
  mode: { default: check, allowed: [check, repair] }
  ticket: { required: true, pattern: "CHG-[0-9]+", description: "change ticket" }
steps:
  - id: look
    read_only: true
    run: echo "looking at {{ node }}" > {D}/look
  - id: repair
    needs: [look]
    when: mode == 'repair'
    read_only: true
    run: echo "repair under {{ ticket }}" > {D}/repair
"#;

#[test]
fn a_required_input_only_a_skipped_step_reads_is_not_needed_headless() {
    let s = Scratch::new();
    s.runbook(PLAIN);
    // Skipped: the run needs no ticket.
    let skipped = s.exec(&["-i", "node=n1", "--progress", "plain"]);
    assert_eq!(skipped.code, Some(0), "{}", skipped.stderr);
    assert_eq!(s.read("look"), "looking at n1\n");
    assert!(!s.path("repair").exists());
    assert!(!skipped.stderr.contains("ticket"), "{}", skipped.stderr);
    // An input an unconditional step reads is still demanded at the start, alone.
    let no_node = s.exec(&["--progress", "plain"]);
    assert_eq!(no_node.code, Some(2), "{}", no_node.stderr);
    assert!(
        no_node
            .stderr
            .contains("missing required input `node`: pass -i node=…"),
        "{}",
        no_node.stderr
    );
    assert!(!no_node.stderr.contains("ticket"), "{}", no_node.stderr);
    // The step runs: headless, it fails naming itself and the input, after `look` ran.
    std::fs::remove_file(s.path("look")).expect("rm look");
    let needed = s.exec(&["-i", "node=n2", "-i", "mode=repair", "--progress", "plain"]);
    assert_eq!(needed.code, Some(1), "{}", needed.stderr);
    assert!(
        needed
            .stderr
            .contains("step `repair` needs input `ticket`, which was not provided"),
        "{}",
        needed.stderr
    );
    assert_eq!(s.read("look"), "looking at n2\n");
    assert!(!s.path("repair").exists());
    // Given, it is taken and checked like any input.
    let bad = s.exec(&["-i", "node=n3", "-i", "ticket=nope", "--progress", "plain"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(
        bad.stderr
            .contains("input `ticket` must match ^(?:CHG-[0-9]+)$"),
        "{}",
        bad.stderr
    );
}

/// An input only a `when` reads: headless, that step fails before deciding, naming it.
#[test]
fn an_input_a_when_reads_is_needed_to_decide_and_headless_the_step_fails() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: lazy-when-plain
version: 1
inputs:
  target: { required: true }
steps:
  - id: decide
    when: "target == 'db'"
    read_only: true
    run: echo ran > {D}/ran
"#,
    );
    let ran = s.exec(&["--progress", "plain"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("step `decide` needs input `target`, which was not provided"),
        "{}",
        ran.stderr
    );
    assert!(!s.path("ran").exists());
    let given = s.exec(&["-i", "target=db", "--progress", "plain"]);
    assert_eq!(given.code, Some(0), "{}", given.stderr);
    assert_eq!(s.read("ran"), "ran\n");
}

/// A `when` decided without the input (`mode == 'repair' and …` with another mode, as a call's
/// `when` joined to its steps' own) needs nothing: headless, the step is skipped.
#[test]
fn a_when_decided_without_the_input_does_not_need_it() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: lazy-short-circuit
version: 1
inputs:
  mode: { default: check, allowed: [check, repair] }
  ticket: { required: true }
steps:
  - id: repair
    when: "mode == 'repair' and ticket != 'none'"
    read_only: true
    run: echo "{{ ticket }}" > {D}/repair
"#,
    );
    let skipped = s.exec(&["--progress", "plain"]);
    assert_eq!(skipped.code, Some(0), "{}", skipped.stderr);
    assert!(skipped.stderr.contains("skipped"), "{}", skipped.stderr);
    assert!(!s.path("repair").exists());
    let needed = s.exec(&["-i", "mode=repair", "--progress", "plain"]);
    assert_eq!(needed.code, Some(1), "{}", needed.stderr);
    assert!(
        needed
            .stderr
            .contains("step `repair` needs input `ticket`, which was not provided"),
        "{}",
        needed.stderr
    );
}

#[test]
fn the_plan_says_which_step_asks_a_lazy_input() {
    let s = Scratch::new();
    let f = s.runbook(PLAIN);
    let plan = crate::harness::runbook([
        "plan".as_ref(),
        f.as_os_str(),
        "-i".as_ref(),
        "node=n1".as_ref(),
    ])
    .run();
    assert_eq!(plan.code, Some(0), "{}", plan.stderr);
    assert!(
        plan.stdout.contains(
            "ticket = (asked when needed)  (not provided: asked when needed (by step `repair`)"
        ),
        "{}",
        plan.stdout
    );
    crate::harness::insta_settings()
        .bind(|| insta::assert_snapshot!("plan-lazy-plain-input", plan.stdout));
}

/// A plain input asked at a terminal: echoed, a bad answer (pattern) said and asked again;
/// journaled, so a `resume` does not ask it again — but asks the secret again.
#[test]
fn a_plain_input_is_asked_with_echo_re_asked_when_bad_and_not_asked_again_on_resume() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: lazy-plain-tty
version: 1
inputs:
  mode: { default: repair, allowed: [check, repair] }
  ticket: { required: true, pattern: "CHG-[0-9]+", description: "change ticket" }
  token: { secret: true, required: true }
steps:
  - id: look
    read_only: true
    run: echo look > {D}/look
  - id: record
    needs: [look]
    when: mode == 'repair'
    read_only: true
    run: printf %s "{{ ticket }}" > {D}/first && test -n "{{ token }}"
  - id: later
    needs: [record]
    ask: { prompt: "Go on?", timeout: 1s }
  - id: apply
    needs: [later]
    when: mode == 'repair'
    read_only: true
    run: printf '%s %s' "{{ ticket }}" "{{ token }}" > {D}/second
"#,
    );
    let file = s.path("runbook.yaml").display().to_string();
    let mut p = spawn_with_echo(&s, &["exec", &file]);
    let mut seen = String::new();
    seen += &p.exp_string("ASK: record").expect("asked when needed");
    seen += &p.exp_string("? answer: ").expect("an echoed prompt");
    assert_eq!(s.read("look"), "look\n", "{seen}");
    assert!(seen.contains("input `ticket` (change ticket)"), "{seen}");
    assert!(seen.contains("CHG-[0-9]+"), "{seen}");
    p.send_line("nope").expect("type");
    seen += &p.exp_string("asked again").expect("re-asked");
    // Echoed: the terminal shows what was typed.
    assert!(seen.contains("nope\r\n"), "{seen}");
    assert!(
        seen.contains("input `ticket` must match ^(?:CHG-[0-9]+)$, got `nope`"),
        "{seen}"
    );
    seen += &p.exp_string("? answer: ").expect("asked again");
    p.send_line("CHG-42").expect("type");
    // The same step reads a secret: asked next, hidden.
    seen += &p.exp_string("answer (hidden): ").expect("hidden prompt");
    let first_secret = "s.FirstLazyCanary7Qw";
    p.send_line(first_secret).expect("type secret");
    // Nobody answers `later`: the run pauses there (resumable).
    seen += &p.exp_string("ASK: later").expect("the ask step");
    seen += &p.exp_string("? answer: ").expect("its prompt");
    p.send_line("").expect("not me");
    seen += &p.exp_eof().expect("run pauses");
    let status = p.process.wait().expect("status");
    assert!(format!("{status:?}").contains(", 3)"), "{status:?}\n{seen}");
    assert_eq!(s.read("first"), "CHG-42");
    let id = std::fs::read_dir(s.path("runs"))
        .expect("runs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| !n.starts_with('.'))
        .expect("run");
    let journal =
        std::fs::read_to_string(s.path(&format!("runs/{id}/journal.jsonl"))).expect("journal");
    assert!(
        journal.contains(
            r#""event":"input-given","input":"ticket","step":"record","secret":false,"value":"CHG-42""#
        ),
        "{journal}"
    );
    assert!(
        journal.contains(r#""event":"input-given","input":"token","step":"record","secret":true}"#),
        "{journal}"
    );
    let mut r = spawn_cmd(&s, &["resume", &id]);
    let mut again = String::new();
    again += &r.exp_string("ASK: later").expect("the ask step again");
    again += &r.exp_string("? answer: ").expect("its prompt");
    r.send_line("yes").expect("answer");
    again += &r
        .exp_string("ASK: apply")
        .expect("the secret is asked again");
    again += &r.exp_string("answer (hidden): ").expect("hidden prompt");
    let second_secret = "s.SecondLazyCanary3Zx";
    r.send_line(second_secret).expect("type secret");
    again += &r.exp_eof().expect("resumed run ends");
    let status = r.process.wait().expect("status");
    assert!(
        format!("{status:?}").contains(", 0)"),
        "{status:?}\n{again}"
    );
    // The plain answer came from the journal: never asked again.
    assert!(!again.contains("input `ticket`"), "{again}");
    assert!(again.contains("input `token`"), "{again}");
    assert_eq!(s.read("second"), format!("CHG-42 {second_secret}"));
    for secret in [first_secret, second_secret] {
        crate::ask::assert_nowhere(
            &s.path(&format!("runs/{id}")),
            secret,
            &[("terminal", &seen), ("resumed terminal", &again)],
        );
    }
}

/// A `finally` step under a `when:` may be skipped too: its input is not needed up front;
/// headless, when it runs, it fails naming the input (a warning: finally steps do not change
/// the exit code).
#[test]
fn a_finally_step_under_a_when_reads_an_input_lazily() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: lazy-finally
version: 1
inputs:
  mode: { default: check, allowed: [check, repair] }
  ticket: { required: true }
steps:
  - id: main
    read_only: true
    run: "true"
finally:
  - id: note
    when: "mode == 'repair'"
    read_only: true
    run: echo "{{ ticket }}" > {D}/note
"#,
    );
    let skipped = s.exec(&["--progress", "plain"]);
    assert_eq!(skipped.code, Some(0), "{}", skipped.stderr);
    assert!(!skipped.stderr.contains("ticket"), "{}", skipped.stderr);
    assert!(!s.path("note").exists());
    let ran = s.exec(&["-i", "mode=repair", "--progress", "plain"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stderr.contains(
            "warning: finally step `note` failed: step `note` needs input `ticket`, which was not provided"
        ),
        "{}",
        ran.stderr
    );
    assert!(!s.path("note").exists());
}
