//! `ask:` steps through the real binary: asked at a real pseudo-terminal (hidden for a
//! secret, asked again on a bad answer), answered with `runbook answer` from other processes
//! and other OS users (`from: N` distinct users), a secret never in any file of the run
//! directory, the terminal or the journal in any encoding, and asked again on resume.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::exec::Scratch;
use crate::sshd::{TEST_USER, ensure_test_user};

/// A second non-root user (the first is the SSH tests' `rbtest`).
pub(crate) const SECOND_USER: &str = "rbask2";

pub(crate) fn ensure_second_user() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let exists = Command::new("id")
            .arg(SECOND_USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !exists {
            let ok = Command::new("useradd")
                .args(["-M", "-s", "/bin/sh", SECOND_USER])
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "cannot create the test user {SECOND_USER} (tests run as root)"
            );
        }
    });
}

pub(crate) fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("uid")
}

/// The one run in the scratch's runs directory.
pub(crate) fn run_id(s: &Scratch) -> Option<String> {
    std::fs::read_dir(s.path("runs"))
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| !n.starts_with('.'))
}

pub(crate) fn journal(s: &Scratch, id: &str) -> String {
    std::fs::read_to_string(s.path(&format!("runs/{id}/journal.jsonl"))).unwrap_or_default()
}

/// Waits until the journal holds `needle` `times` times; returns the run id.
pub(crate) fn wait_journal(s: &Scratch, needle: &str, times: usize) -> String {
    let t0 = Instant::now();
    loop {
        if let Some(id) = run_id(s)
            && journal(s, &id).matches(needle).count() >= times
        {
            return id;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the journal never contained {needle} x{times}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `runbook answer …` as `user` (None: this user), with `stdin` piped in.
pub(crate) fn answer(
    s: &Scratch,
    user: Option<&str>,
    args: &[&str],
    stdin: Option<&str>,
) -> (i32, String) {
    answer_in(&s.path("runs"), user, args, stdin)
}

/// `runbook answer …` for runs in `runs`, as `user` (None: this user), `stdin` piped in.
pub(crate) fn answer_in(
    runs: &std::path::Path,
    user: Option<&str>,
    args: &[&str],
    stdin: Option<&str>,
) -> (i32, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runbook"));
    c.arg("answer")
        .args(args)
        .arg("--runs-dir")
        .arg(runs)
        .env("NO_COLOR", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(u) = user {
        c.uid(uid_of(u)).env("USER", u);
    }
    let mut child = c.spawn().expect("runbook answer");
    if let Some(text) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("answer output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Every form of `secret` a leak could take: as is, base64 (both alphabets), URL-encoded.
fn encodings(secret: &str) -> Vec<String> {
    let b = secret.as_bytes();
    let url: String = b.iter().map(|c| format!("%{c:02X}")).collect();
    vec![
        secret.to_string(),
        base64::engine::general_purpose::STANDARD.encode(b),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b),
        url.clone(),
        url.to_lowercase(),
    ]
}

/// Asserts no file under `dir` (recursively) holds `secret` in any encoding.
pub(crate) fn assert_nowhere(dir: &std::path::Path, secret: &str, also: &[(&str, &str)]) {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    assert!(!files.is_empty(), "no files under {}", dir.display());
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).into_owned();
        for enc in encodings(secret) {
            assert!(
                !text.contains(&enc),
                "{} holds the secret ({enc})",
                f.display()
            );
        }
    }
    for (what, text) in also {
        for enc in encodings(secret) {
            assert!(!text.contains(&enc), "{what} holds the secret ({enc})");
        }
    }
}

const TWO_ASKS: &str = r#"
runbook: asking
version: 1
steps:
  - id: count
    ask: { prompt: "How many nodes?", type: int }
  - id: token
    needs: [count]
    ask:
      prompt: "The new token"
      secret: true
      pattern: "s\\.[A-Za-z0-9]+"
  - id: use
    needs: [token]
    read_only: true
    run: |
      echo "nodes={{ steps.count.outputs.value }}" > {D}/count
      printf %s "{{ steps.token.outputs.value }}" > {D}/token
      echo "token is {{ steps.token.outputs.value }}"
"#;

/// At a terminal: a bad int and a secret not matching the pattern are asked again; the
/// secret is typed without echo and never printed back; the step gets both values.
#[test]
fn ask_at_a_terminal_hides_a_secret_and_asks_again_on_a_bad_answer() {
    let s = Scratch::new();
    s.runbook(TWO_ASKS);
    let secret = "s.CanaryPty7Q2x9";
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
    cmd.arg("exec")
        .arg(s.path("runbook.yaml"))
        .args(["--progress", "plain", "--runs-dir"])
        .arg(s.path("runs"))
        .env("NO_COLOR", "1")
        .env("TERM", "dumb");
    let mut p = rexpect::session::spawn_command(cmd, Some(30_000)).expect("spawn in pty");
    let mut seen = String::new();
    seen += &p.exp_string("ASK: count").expect("ask shown");
    seen += &p.exp_string("answer: ").expect("prompt");
    p.send_line("three").expect("type");
    seen += &p
        .exp_string("is not a whole number; asked again")
        .expect("re-asked");
    seen += &p.exp_string("answer: ").expect("prompt again");
    p.send_line("3").expect("type");
    seen += &p.exp_string("ASK: token").expect("secret ask");
    seen += &p.exp_string("answer (hidden): ").expect("hidden prompt");
    p.send_line("not-a-token-value").expect("type");
    seen += &p
        .exp_string("does not match the pattern")
        .expect("pattern re-ask");
    seen += &p.exp_string("answer (hidden): ").expect("hidden again");
    p.send_line(secret).expect("type secret");
    seen += &p.exp_eof().expect("run ends");
    let status = p.process.wait().expect("status");
    assert!(format!("{status:?}").contains(", 0)"), "{status:?}\n{seen}");
    // What the answerer typed was hidden: neither the bad answer nor the secret echoed.
    assert!(!seen.contains("not-a-token-value"), "{seen}");
    assert!(seen.contains("token is ********"), "{seen}");
    assert_eq!(s.read("count"), "nodes=3\n");
    assert_eq!(s.read("token"), secret);
    let id = run_id(&s).expect("run");
    assert_nowhere(
        &s.path(&format!("runs/{id}")),
        secret,
        &[("terminal", &seen)],
    );
}

/// Headless, answered by `runbook answer` from other processes: a secret on the command
/// line is refused (and nothing is sent), piped on stdin it is taken; the secret is in no
/// file of the run directory, the engine's output or the answerer's, in any encoding.
#[test]
fn runbook_answer_from_another_terminal_never_takes_a_secret_from_argv() {
    let s = Scratch::new();
    s.runbook(TWO_ASKS);
    let secret = "s.CanaryArgv4K8mZ";
    let child = s
        .command(&["--progress", "plain"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let id = wait_journal(&s, "\"gate-waiting\"", 1);
    let (code, out) = answer(&s, None, &[&id, "count", "x"], None);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("not a whole number"), "{out}");
    let (code, out) = answer(&s, None, &[&id, "count", "4"], None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("accepted from root (1 of 1)"), "{out}");
    wait_journal(&s, "\"gate-waiting\"", 2);
    let (code, refused) = answer(&s, None, &[&id, "token", secret], None);
    assert_eq!(code, 2, "{refused}");
    assert!(
        refused.contains("never taken from the command line"),
        "{refused}"
    );
    let (code, out) = answer(
        &s,
        None,
        &[&id, "token", "--stdin"],
        Some(&format!("{secret}\n")),
    );
    assert_eq!(code, 0, "{out}");
    let done = child.wait_with_output().expect("run");
    let stderr = String::from_utf8_lossy(&done.stderr).into_owned();
    assert_eq!(done.status.code(), Some(0), "{stderr}");
    assert_eq!(s.read("token"), secret);
    assert_eq!(s.read("count"), "nodes=4\n");
    let j = journal(&s, &id);
    assert!(j.contains("\"ask-answered\""), "{j}");
    assert_nowhere(
        &s.path(&format!("runs/{id}")),
        secret,
        &[("engine output", &stderr), ("answer output", &out)],
    );
}

/// `from: 2`: two distinct OS users each give a share; the same user twice is refused with
/// a clear line; a `for_each` over `outputs.values` gets both.
#[test]
fn from_two_needs_two_distinct_os_users() {
    ensure_test_user();
    ensure_second_user();
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: holders
version: 1
steps:
  - id: shares
    ask: { prompt: "Your unseal share", secret: true, from: 2 }
  - id: apply
    needs: [shares]
    read_only: true
    for_each: "{{ steps.shares.outputs.values }}"
    run: printf '%s\n' "{{ item }}" >> {D}/applied
"#,
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    let child = s
        .command(&["--progress", "plain"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let id = wait_journal(&s, "\"gate-waiting\"", 1);
    let (one, two) = ("ShareOneCanary-aaaa", "ShareTwoCanary-bbbb");
    let (code, out) = answer(&s, Some(TEST_USER), &[&id, "shares", "--stdin"], Some(one));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("accepted from {TEST_USER} (1 of 2)")),
        "{out}"
    );
    let (code, twice) = answer(&s, Some(TEST_USER), &[&id, "shares", "--stdin"], Some(two));
    assert_eq!(code, 2, "{twice}");
    assert!(
        twice.contains(&format!("{TEST_USER} already answered `shares`"))
            && twice.contains("different OS user"),
        "{twice}"
    );
    let (code, out) = answer(
        &s,
        Some(SECOND_USER),
        &[&id, "shares", "--stdin"],
        Some(two),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(2 of 2)"), "{out}");
    let done = child.wait_with_output().expect("run");
    let stderr = String::from_utf8_lossy(&done.stderr).into_owned();
    assert_eq!(done.status.code(), Some(0), "{stderr}");
    assert_eq!(s.read("applied"), format!("{one}\n{two}\n"));
    assert!(
        stderr.contains(&format!("answered by {TEST_USER} (1 of 2)")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("answered by {SECOND_USER} (2 of 2)")),
        "{stderr}"
    );
    for secret in [one, two] {
        assert_nowhere(
            &s.path(&format!("runs/{id}")),
            secret,
            &[("engine", &stderr)],
        );
    }
}

/// On resume, a secret answer is asked again; a plain one comes back from the journal.
#[test]
fn resume_asks_a_secret_again_but_not_a_plain_answer() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: resumable
version: 1
steps:
  - id: who
    ask: { prompt: "Your name" }
  - id: token
    needs: [who]
    ask: { prompt: "Token", secret: true }
  - id: deploy
    needs: [token]
    confirm: { message: "Deploy?", timeout: 1s }
    run: printf '%s %s' "{{ steps.who.outputs.value }}" "{{ steps.token.outputs.value }}" > {D}/out
"#,
    );
    let runs = s.path("runs").display().to_string();
    let first = s
        .command(&["--progress", "plain"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let id = wait_journal(&s, "\"gate-waiting\"", 1);
    assert_eq!(answer(&s, None, &[&id, "who", "alice"], None).0, 0);
    wait_journal(&s, "\"gate-waiting\"", 2);
    let (code, out) = answer(
        &s,
        None,
        &[&id, "token", "--stdin"],
        Some("FirstTokenCanary1"),
    );
    assert_eq!(code, 0, "{out}");
    // The gate times out: the run pauses, resumable.
    let paused = first.wait_with_output().expect("first run");
    assert_eq!(
        paused.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&paused.stderr)
    );
    let approve = crate::harness::runbook(["approve", &id, "deploy", "--runs-dir", &runs]).run();
    assert_eq!(approve.code, Some(0), "{}", approve.stderr);
    let second = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["resume", &id, "--runs-dir", &runs, "--progress", "plain"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("resume");
    // `token` is asked again (a third wait); `who` is not.
    wait_journal(&s, "\"gate-waiting\"", 4);
    let j = journal(&s, &id);
    let waits_for = |step: &str| {
        j.lines()
            .filter(|l| {
                l.contains("\"gate-waiting\"") && l.contains(&format!("\"step\":\"{step}\""))
            })
            .count()
    };
    assert_eq!(waits_for("who"), 1, "{j}");
    let (code, out) = answer(
        &s,
        None,
        &[&id, "token", "--stdin"],
        Some("SecondTokenCanary2"),
    );
    assert_eq!(code, 0, "{out}");
    let done = second.wait_with_output().expect("resume");
    let stderr = String::from_utf8_lossy(&done.stderr).into_owned();
    assert_eq!(done.status.code(), Some(0), "{stderr}");
    assert_eq!(s.read("out"), "alice SecondTokenCanary2");
    assert_eq!(waits_for("token"), 2, "{j}");
    for secret in ["FirstTokenCanary1", "SecondTokenCanary2"] {
        assert_nowhere(
            &s.path(&format!("runs/{id}")),
            secret,
            &[("engine", &stderr)],
        );
    }
}

/// A secret input used only by a branch that is skipped is not needed up front; headless,
/// the step that does use it fails, naming itself and the input; `plan` says so.
#[test]
fn lazy_input_is_needed_only_by_the_step_that_uses_it() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: lazy
version: 1
inputs:
  mode: { default: plain, allowed: [plain, token] }
  token: { secret: true, from_env: LAZY_TOKEN }
steps:
  - id: plain
    when: mode == 'plain'
    read_only: true
    run: echo plain >> {D}/ran
  - id: with-token
    when: mode == 'token'
    read_only: true
    run: echo "{{ token }}" > /dev/null && echo token >> {D}/ran
"#,
    );
    let plan = crate::harness::runbook([
        "plan".to_string(),
        s.path("runbook.yaml").display().to_string(),
    ])
    .env_remove("LAZY_TOKEN")
    .run();
    assert!(plan.stdout.contains("asked when needed"), "{}", plan.stdout);
    let skipped = s.exec(&["--progress", "plain"]);
    assert_eq!(skipped.code, Some(0), "{}", skipped.stderr);
    assert_eq!(s.read("ran"), "plain\n");
    let used = s.exec(&["-i", "mode=token", "--progress", "plain"]);
    assert_eq!(used.code, Some(1), "{}", used.stderr);
    assert!(
        used.stderr.contains(
            "step `with-token` needs input `token`, which was not provided (set LAZY_TOKEN)"
        ),
        "{}",
        used.stderr
    );
    assert_eq!(s.read("ran"), "plain\n");
}

/// `from: 2` with the operator at a terminal: another OS user answers with `runbook answer`
/// while the prompt is open (it is withdrawn and asked again, now 1 of 2 in), then the
/// operator types their own share at the hidden prompt.
#[test]
fn operator_at_a_terminal_and_another_user_give_two_shares() {
    ensure_test_user();
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: holders-tty
version: 1
steps:
  - id: shares
    ask: { prompt: "Your unseal share", secret: true, from: 2 }
  - id: apply
    needs: [shares]
    read_only: true
    for_each: "{{ steps.shares.outputs['values'] }}"
    run: printf '%s\n' "{{ item }}" >> {D}/applied
"#,
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
    cmd.arg("exec")
        .arg(s.path("runbook.yaml"))
        .args(["--progress", "plain", "--runs-dir"])
        .arg(s.path("runs"))
        .env("NO_COLOR", "1")
        .env("TERM", "dumb");
    let mut p = rexpect::session::spawn_command(cmd, Some(30_000)).expect("spawn in pty");
    let mut seen = String::new();
    seen += &p.exp_string("answer (hidden): ").expect("hidden prompt");
    let id = run_id(&s).expect("run");
    let (theirs, mine) = ("RemoteShareCanary-1", "OperatorShareCanary-2");
    let (code, out) = answer(
        &s,
        Some(TEST_USER),
        &[&id, "shares", "--stdin"],
        Some(theirs),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(1 of 2)"), "{out}");
    seen += &p.exp_string("prompt withdrawn").expect("withdrawn");
    seen += &p.exp_string("answer (hidden): ").expect("asked again");
    p.send_line(mine).expect("type share");
    seen += &p.exp_eof().expect("run ends");
    let status = p.process.wait().expect("status");
    assert!(format!("{status:?}").contains(", 0)"), "{status:?}\n{seen}");
    assert_eq!(s.read("applied"), format!("{theirs}\n{mine}\n"));
    assert!(seen.contains("answered by root (2 of 2)"), "{seen}");
    for secret in [theirs, mine] {
        assert_nowhere(
            &s.path(&format!("runs/{id}")),
            secret,
            &[("terminal", &seen)],
        );
    }
}

/// Headless with `--no-wait`, an ask pauses the run at once (exit 3, resumable) and says
/// how to answer; `runbook answer` to a paused run says it is not waiting.
#[test]
fn no_wait_pauses_at_an_ask_like_at_a_gate() {
    let s = Scratch::new();
    s.runbook(TWO_ASKS);
    let ran = s.exec(&["--no-wait", "--progress", "plain"]);
    assert_eq!(ran.code, Some(3), "{}", ran.stderr);
    assert!(ran.stderr.contains("without --no-wait"), "{}", ran.stderr);
    let id = run_id(&s).expect("run");
    let (code, out) = answer(&s, None, &[&id, "count", "2"], None);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("is not waiting for an answer to `count` now"),
        "{out}"
    );
}
