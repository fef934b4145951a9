//! The leftovers of the last attack on the promises ("secrets never leak", "no injection",
//! "resume never redoes finished work"), each through the real binary: secret comparisons,
//! secrets shown in `fail:`/titles, `| raw` through a computed key, an emptied
//! `journal.head`, the `--` lint, the rollback question in `show`, and the triage's advice.

use crate::exec::Scratch;
use crate::harness::{Ran, root, runbook};

fn validate(s: &Scratch, yaml: &str) -> Ran {
    let p = s.runbook(yaml);
    runbook(["validate".to_string(), p.display().to_string()]).run()
}

/// The triage's advice (`triage.next`) names the runbook its own `recover-CAUSE` step calls.
#[test]
fn triage_next_names_the_runbook_its_recover_step_calls() {
    let file = root().join("runbooks/vault-triage.yaml");
    let ran = runbook([
        "plan".to_string(),
        file.display().to_string(),
        "-i".into(),
        "node=vault-2".into(),
        "--format".into(),
        "json".into(),
    ])
    .run();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let plan: serde_json::Value = serde_json::from_str(&ran.stdout).expect("plan JSON");
    let steps = plan["steps"].as_array().expect("steps");
    let conclude = steps
        .iter()
        .find(|s| s["id"] == "conclude")
        .and_then(|s| s["action"]["command"].as_str())
        .expect("the conclude command");
    // `say CAUSE "evidence" NEXT` with a literal cause and a literal runbook.
    let say = regex::Regex::new(r#"say ([a-z-]+) "[^"]*" ([a-z0-9-]+\.yaml)"#).expect("regex");
    let mut checked = Vec::new();
    for c in say.captures_iter(conclude) {
        let (cause, next) = (&c[1], &c[2]);
        let Some(call) = steps.iter().find(|s| s["id"] == format!("recover-{cause}")) else {
            continue;
        };
        assert_eq!(
            call["action"]["file"], next,
            "triage.next for `{cause}` names {next} but recover-{cause} calls {}",
            call["action"]["file"]
        );
        checked.push(cause.to_string());
    }
    assert!(checked.contains(&"sealed".to_string()), "{checked:?}");
}

fn runs_dir(s: &Scratch) -> String {
    s.path("runs").display().to_string()
}

fn only_run(s: &Scratch) -> String {
    std::fs::read_dir(s.path("runs"))
        .expect("runs dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| !n.starts_with('.'))
        .expect("a run")
}

fn resume(s: &Scratch, id: &str, extra: &[&str]) -> Ran {
    let dir = runs_dir(s);
    let mut args = vec!["resume", id, "--runs-dir", &dir];
    args.extend_from_slice(extra);
    runbook(args).run()
}

fn lines_of(s: &Scratch, file: &str) -> usize {
    s.read(file).lines().count()
}

const GATED: &str = r#"
runbook: gated
version: 1
steps:
  - id: prepare
    run: echo p >> {D}/prepare
    rollback: echo u >> {D}/undo
  - id: failover
    needs: [prepare]
    confirm: Fail over?
    run: echo f >> {D}/failover
"#;

/// A head emptied by hand after work was recorded is refused like a damaged one (it would
/// hide a removed tail, and resume would redo finished work); `--ignore-damaged-head` lets the
/// operator continue, and nothing runs twice.
#[test]
fn a_head_emptied_by_hand_after_steps_ran_is_refused() {
    let s = Scratch::new();
    s.runbook(GATED);
    let ran = s.exec(&["--no-wait"]);
    assert_eq!(ran.code, Some(3), "{}", ran.stderr);
    let id = only_run(&s);
    let head = s.path(&format!("runs/{id}/journal.head"));
    std::fs::write(&head, b"").expect("empty the head");
    let refused = resume(&s, &id, &["--yes"]);
    assert_eq!(
        refused.code,
        Some(2),
        "{}{}",
        refused.stdout,
        refused.stderr
    );
    assert!(
        refused.stderr.contains("never written")
            && refused.stderr.contains("--ignore-damaged-head"),
        "{}",
        refused.stderr
    );
    assert_eq!(lines_of(&s, "failover"), 0);
    // Emptied again after a removed tail (prepare's end and the gate): still refused.
    let journal = s.path(&format!("runs/{id}/journal.jsonl"));
    let text = std::fs::read_to_string(&journal).expect("journal");
    let kept: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    let full = text.clone();
    std::fs::write(&journal, kept).expect("cut the journal");
    let refused = resume(&s, &id, &["--yes"]);
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert_eq!(lines_of(&s, "prepare"), 1, "prepare ran again");
    std::fs::write(&journal, full).expect("restore the journal");
    let forced = resume(&s, &id, &["--yes", "--ignore-damaged-head"]);
    assert_eq!(forced.code, Some(0), "{}", forced.stderr);
    assert_eq!(lines_of(&s, "prepare"), 1);
    assert_eq!(lines_of(&s, "failover"), 1);
}

const SLOW_START: &str = r#"
runbook: slow-start
version: 1
steps:
  - id: first
    run: echo 1 >> {D}/first; sleep 0.3
  - id: second
    needs: [first]
    run: echo 2 >> {D}/second
"#;

/// An engine killed at once (kill -9 as soon as its journal exists) leaves a run that resumes;
/// and an empty head behind nothing but the run's start (what an engine killed before its first
/// head write leaves) is accepted.
#[test]
fn kill_nine_at_the_very_start_still_resumes() {
    use std::os::unix::process::CommandExt;
    let s = Scratch::new();
    s.runbook(SLOW_START);
    let mut child = s
        .command(&[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn");
    let t0 = std::time::Instant::now();
    let id = loop {
        let found = std::fs::read_dir(s.path("runs")).ok().and_then(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| !n.starts_with('.'))
        });
        if let Some(id) = found
            && s.read(&format!("runs/{id}/journal.jsonl"))
                .contains("\"run-started\"")
        {
            break id;
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(30), "no run");
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    // SAFETY: signalling the process group of the child this test started.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
    let head = s.read(&format!("runs/{id}/journal.head"));
    assert!(
        !head.trim().is_empty(),
        "the head is written before any record"
    );
    let r = resume(&s, &id, &["--skip-in-doubt"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(lines_of(&s, "first") <= 1 && lines_of(&s, "second") == 1);

    // The older engine's window: only the run's start recorded, the head still empty.
    let s = Scratch::new();
    s.runbook(SLOW_START);
    let ran = s.exec(&[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let id = only_run(&s);
    for f in ["first", "second"] {
        std::fs::remove_file(s.path(f)).expect("reset");
    }
    let journal = s.path(&format!("runs/{id}/journal.jsonl"));
    let text = std::fs::read_to_string(&journal).expect("journal");
    let start = text.lines().next().expect("run-started");
    assert!(start.contains("\"run-started\""), "{start}");
    std::fs::write(&journal, format!("{start}\n")).expect("cut");
    std::fs::write(s.path(&format!("runs/{id}/journal.head")), b"").expect("empty head");
    let r = resume(&s, &id, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(lines_of(&s, "first"), 1);
    assert_eq!(lines_of(&s, "second"), 1);
}

/// `token == 'x'` is always false at run time (a secret is a masked object): `validate`
/// reports it with the form that works, and a comparison `validate` cannot see (an output
/// tainted at run time) stops the step instead of silently taking the wrong branch; the
/// `| string` form takes the right one.
#[test]
fn comparing_a_secret_is_an_error_not_a_silently_false_test() {
    let s = Scratch::new();
    let ran = validate(
        &s,
        r#"
runbook: compare
version: 1
inputs:
  token: { secret: true, from_env: TOK }
steps:
  - id: revoke
    when: "token == 'abcdefgh12' or inputs['token'] is eq('x')"
    env: { T: "{{ token }}" }
    run: echo "$T" > /dev/null
"#,
    );
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert_eq!(
        ran.stderr.matches("[secret-comparison]").count(),
        2,
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("(token | string) =="), "{}", ran.stderr);

    let yaml = r#"
runbook: compare-later
version: 1
inputs:
  token: { secret: true, from_env: TOK }
steps:
  - id: read
    run: echo "got {{ token }}"
    outputs:
      got: "stdout | trim"
  - id: wrong
    needs: [read]
    when: "steps.read.outputs.got == 'got abcdefgh12'"
    run: touch {D}/wrong-form
  - id: right
    needs: [read]
    when: "(steps.read.outputs.got | string) == 'got abcdefgh12'"
    run: touch {D}/right-form
"#;
    let ran = validate(&s, yaml);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let ran = runbook([
        "exec".to_string(),
        s.path("runbook.yaml").display().to_string(),
        "--runs-dir".into(),
        runs_dir(&s),
        "--parallel".into(),
        "1".into(),
    ])
    .env("TOK", "abcdefgh12")
    .run();
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("holds a secret")
            && ran.stderr.contains("(steps.read.outputs.got | string) =="),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("abcdefgh12"), "{}", ran.stderr);
    assert!(!s.path("wrong-form").exists());
}

/// Secret step outputs and values computed from a secret in a title or a `fail:` message are
/// masked at run time (not a leak); `validate` now warns the author first that they will only
/// show as ********, and `--strict` refuses them.
#[test]
fn secret_outputs_in_titles_and_fail_messages_are_reported() {
    let s = Scratch::new();
    let ran = validate(
        &s,
        r#"
runbook: shown
version: 1
inputs:
  token: { secret: true, from_env: TOK }
  auth: { default: "Bearer {{ token }}" }
steps:
  - id: login
    env: { T: "{{ token }}" }
    run: echo "session-$T"
    outputs:
      session: { value: "stdout | trim", secret: true }
      echoed: "token | string | lower"
  - id: use
    needs: [login]
    title: "Using session {{ steps.login.outputs.session }}"
    run: echo ok
  - id: stop
    needs: [login]
    fail: "login gave {{ steps.login.outputs.echoed }} for {{ auth }}"
"#,
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(
        ran.stderr.matches("warning[secret-shown-masked]").count(),
        3,
        "{}",
        ran.stderr
    );
    let strict = runbook([
        "validate".to_string(),
        "--strict".into(),
        s.path("runbook.yaml").display().to_string(),
    ])
    .run();
    assert_eq!(strict.code, Some(2), "{}", strict.stderr);
    for what in [
        "secret output `session` of step `login`",
        "secret output `echoed` of step `login`",
        "input `auth` (its default reads a secret)",
    ] {
        assert!(ran.stderr.contains(what), "{what}: {}", ran.stderr);
    }
}

/// `| raw` through a computed key is refused at run time when it reaches a secret; in a
/// runbook with secrets `validate` now says so as an error (not a warning), and without
/// secrets it stays the ordinary `raw-shell-insertion` warning.
#[test]
fn raw_through_a_computed_key_is_an_error_where_there_are_secrets() {
    let s = Scratch::new();
    let with_secret = r#"
runbook: pick
version: 1
inputs:
  token: { secret: true, from_env: TOK }
  which: { default: region }
  region: { default: eu-west-1 }
steps:
  - id: show
    env: { T: "{{ token }}" }
    run: echo {{ inputs[which] | raw }} {{ region }}
"#;
    let ran = validate(&s, with_secret);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("error[raw-computed-key]"),
        "{}",
        ran.stderr
    );
    let plain = with_secret
        .replace("  token: { secret: true, from_env: TOK }\n", "")
        .replace("    env: { T: \"{{ token }}\" }\n", "");
    let ran = validate(&s, &plain);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("warning[raw-shell-insertion]"),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("raw-computed-key"), "{}", ran.stderr);
    // A key that may only name inputs that are not secrets cannot reach one.
    let allowed = with_secret.replace(
        "which: { default: region }",
        "which: { default: region, allowed: [region] }",
    );
    let ran = validate(&s, &allowed);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(!ran.stderr.contains("raw-computed-key"), "{}", ran.stderr);
    let ran = validate(
        &s,
        &allowed.replace("allowed: [region]", "allowed: [region, token]"),
    );
    assert!(
        ran.stderr.contains("error[raw-computed-key]"),
        "{}",
        ran.stderr
    );
}

/// A value that is a whole argument of a program that reads options, with no `--` before
/// it: `validate` warns with the fix; with `--` (or joined to text) nothing is said; and the
/// run still refuses such a value when it starts with `-`.
#[test]
fn validate_suggests_double_dash_before_a_value_that_could_be_an_option() {
    let s = Scratch::new();
    let yaml = r#"
runbook: extract
version: 1
inputs:
  member: { description: a file in the archive }
  count: { type: int, default: 3 }
steps:
  - id: extract
    run: tar -xf {D}/a.tar {{ member }} && head -n {{ count }} {D}/a.tar > /dev/null
"#;
    let ran = validate(&s, yaml);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(
        ran.stderr.matches("[value-may-be-option]").count(),
        1,
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("`tar`") && ran.stderr.contains("-- {{ member }}"),
        "{}",
        ran.stderr
    );
    let strict = runbook([
        "validate".to_string(),
        "--strict".into(),
        s.path("runbook.yaml").display().to_string(),
    ])
    .run();
    assert_eq!(strict.code, Some(2), "{}", strict.stderr);
    let marker = s.path("injected");
    let ran = s.exec(&[
        "-i",
        &format!("member=--to-command=touch {}", marker.display()),
    ]);
    assert_ne!(ran.code, Some(0), "{}", ran.stderr);
    assert!(!marker.exists(), "the value became an option");
    let ran = validate(
        &s,
        &yaml.replace("a.tar {{ member }}", "a.tar -- {{ member }}"),
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        !ran.stderr.contains("value-may-be-option"),
        "{}",
        ran.stderr
    );
}

const FAILS_AFTER_A_CHANGE: &str = r#"
runbook: fails-after-a-change
version: 1
steps:
  - id: change
    run: echo c >> {D}/changed
    rollback: echo u >> {D}/undone
  - id: breaks
    needs: [change]
    run: exit 7
"#;

/// While the engine asks "roll back now?" at its terminal, `show` and `runs` say the run
/// waits for that answer (it said "running"); after the answer they follow the unwinding.
#[test]
fn show_says_the_run_waits_for_the_rollback_answer() {
    let s = Scratch::new();
    s.runbook(FAILS_AFTER_A_CHANGE);
    let mut cmd = s.command(&["--progress", "plain"]);
    cmd.env("TERM", "dumb");
    let mut p = rexpect::session::spawn_command(cmd, Some(30_000)).expect("spawn in pty");
    p.exp_string("roll back now?").expect("rollback question");
    let id = only_run(&s);
    let dir = runs_dir(&s);
    let show = runbook(["show", &id, "--runs-dir", &dir]).run();
    assert_eq!(show.code, Some(0), "{}", show.stderr);
    assert!(
        show.stdout
            .contains("waiting for the answer to \"roll back now?\"")
            && show.stdout.contains("`change`")
            && !show.stdout.contains("running for"),
        "{}",
        show.stdout
    );
    let runs = runbook(["runs", "--runs-dir", &dir]).run();
    assert!(
        runs.stdout
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("waiting to roll back")),
        "{}",
        runs.stdout
    );
    let json = runbook(["show", &id, "--runs-dir", &dir, "--json"]).run();
    assert!(
        json.stdout.contains("\"rollback-question\""),
        "{}",
        json.stdout
    );
    p.send_line("y").expect("answer");
    p.exp_eof().expect("exit");
    assert_eq!(lines_of(&s, "undone"), 1);
    let show = runbook(["show", &id, "--runs-dir", &dir]).run();
    assert!(!show.stdout.contains("roll back now?"), "{}", show.stdout);
    // The journal records the question (steps, never a value) before the rollback.
    let journal = s.read(&format!("runs/{id}/journal.jsonl"));
    let asked = journal
        .find("\"rollback-asked\"")
        .expect("rollback-asked record");
    let started = journal
        .find("\"rollback-started\"")
        .expect("rollback-started");
    assert!(asked < started);
}
