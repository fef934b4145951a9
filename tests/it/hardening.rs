//! Attacker-style tests for the `uterm` hardening: terminal escapes at every sink (on a real
//! PTY, and from another OS user's `approve --comment`), option injection through a value,
//! URL dot segments, redirects to another origin, a removed/damaged `journal.head`, `uses:`
//! fan-out, `transcript --template` on a device or a FIFO.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::exec::Scratch;
use crate::harness::{Ran, runbook};
use crate::httpd::{Response, Server};
use crate::sshd::{TEST_USER, ensure_test_user};

/// The bytes that must never reach a terminal from untrusted text.
fn raw_controls(s: &str) -> Vec<char> {
    s.chars()
        .filter(|c| {
            (c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
                || ('\u{80}'..='\u{9f}').contains(c)
        })
        .collect()
}

fn rb(s: &Scratch, args: &[&str]) -> Ran {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.push("--runs-dir".into());
    all.push(s.path("runs").display().to_string());
    runbook(all).run()
}

fn run_id(s: &Scratch) -> Option<String> {
    std::fs::read_dir(s.path("runs"))
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| !n.starts_with('.'))
}

fn wait_journal(s: &Scratch, needle: &str) -> String {
    let t0 = Instant::now();
    loop {
        if let Some(id) = run_id(s) {
            let j = std::fs::read_to_string(s.path(&format!("runs/{id}/journal.jsonl")))
                .unwrap_or_default();
            if j.contains(needle) {
                return id;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the journal never contained {needle}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("uid")
}

const OSC52: &str = "\u{1b}]52;c;cm0gLXJmIH4=\u{7}";

/// Escapes in the description, a title, a gate, an input value, step stdout/stderr, another
/// user's approval comment and a forged answer `host`: none reaches the PTY raw, nor the
/// output of show, runs, logs, transcript, plan, list or validate.
#[test]
fn terminal_escapes_never_reach_a_terminal() {
    ensure_test_user();
    let s = Scratch::new();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    let yaml = format!(
        r#"runbook: esc
version: 1
description: "desc \e]52;c;ZWNobyBwd25lZA==\a \e[31mRED\e[0m \x9b31m"
inputs:
  v: {{ required: true }}
steps:
  - id: g
    title: "title {{{{ v }}}} \e[2J"
    confirm: {{ message: "gate {{{{ v }}}} \e]0;TITLE\a ?", approvers: [{TEST_USER}] }}
    run: printf 'out \033]52;c;SGVsbG8=\007 \033[31mred\033[0m \302\233 2J\n'; printf 'err \033[2J\n' >&2
  - id: h
    needs: [g]
    confirm: "second gate"
    run: "true"
"#
    );
    s.runbook(&yaml);
    let value = format!("val{OSC52}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
    cmd.arg("exec")
        .arg(s.path("runbook.yaml"))
        .args(["-i", &format!("v={value}"), "--progress", "plain"])
        .arg("--runs-dir")
        .arg(s.path("runs"))
        .env("NO_COLOR", "1")
        .env("TERM", "dumb")
        .env("XDG_STATE_HOME", s.path("state"));
    let mut p = rexpect::session::spawn_command(cmd, Some(60_000)).expect("spawn in pty");
    p.exp_string("(then Enter)").expect("first prompt");
    // Another OS user (an allowed approver) approves with a hostile comment.
    let runs = s.path("runs").display().to_string();
    let comment = format!("ok {OSC52}\u{1b}[2J\u{9b}2J");
    let id = wait_journal(&s, "\"event\":\"gate-asked\"");
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args([
            "approve",
            &id,
            "g",
            "--comment",
            &comment,
            "--runs-dir",
            &runs,
        ])
        .uid(uid_of(TEST_USER))
        .env("USER", TEST_USER)
        .env("NO_COLOR", "1")
        .output()
        .expect("approve as the test user");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The second gate: a hand-written answer whose `host` carries an escape and a lie.
    wait_journal(&s, "second gate");
    let answer = serde_json::json!({
        "run": id, "nonce": "forged-nonce-1", "step": "h", "decision": "approved",
        "comment": "fine", "host": format!("bastion.prod.example{OSC52}"), "at": "t"
    });
    std::fs::write(
        s.path(&format!("runs/{id}/answers/h.forged.json")),
        answer.to_string(),
    )
    .expect("write answer");
    // rexpect hands back one char per byte: decode the bytes as UTF-8.
    let live = p.exp_eof().expect("run ends");
    let live: Vec<u8> = live.chars().map(|c| c as u32 as u8).collect();
    let live = String::from_utf8_lossy(&live).into_owned();
    assert!(live.contains("out \\e]52;c;SGVsbG8=\\x07"), "{live}");
    assert!(live.contains("err \\e[2J"), "{live}");
    assert_eq!(
        raw_controls(&live),
        Vec::<char>::new(),
        "raw controls on the PTY:\n{live:?}"
    );
    assert!(
        !live.contains("bastion.prod.example"),
        "forged host shown: {live}"
    );

    let mut outputs = Vec::new();
    for args in [
        vec!["show", "last"],
        vec!["show", "last", "--json"],
        vec!["runs"],
        vec!["logs", "last"],
        vec!["transcript", "last"],
        vec!["transcript", "last", "--format", "json"],
    ] {
        let r = rb(&s, &args);
        assert_eq!(r.code, Some(0), "{args:?}: {}", r.stderr);
        outputs.push((format!("{args:?}"), r.stdout + &r.stderr));
    }
    let file = s.path("runbook.yaml").display().to_string();
    for args in [
        vec![
            "plan".to_string(),
            file.clone(),
            "-i".into(),
            format!("v={value}"),
        ],
        vec!["list".to_string(), s.dir.path().display().to_string()],
        vec!["validate".to_string(), file.clone()],
        vec![
            "validate".to_string(),
            file.clone(),
            "--format".into(),
            "json".into(),
        ],
    ] {
        let r = runbook(&args).run();
        outputs.push((format!("{args:?}"), r.stdout + &r.stderr));
    }
    // A validate error whose snippet holds escapes.
    std::fs::write(
        s.path("bad.yaml"),
        "runbook: bad\nversion: 1\nsteps:\n  - id: a\n    run: \"x \\e]52;c;eA==\\a\"\n    needs: [nope\u{1b}[2J]\n",
    )
    .expect("write");
    let r = runbook(["validate", &s.path("bad.yaml").display().to_string()]).run();
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    outputs.push(("validate bad".into(), r.stdout + &r.stderr));
    let md = std::fs::read_to_string(s.path(&format!("runs/{id}/transcript.md"))).expect("md");
    assert!(md.contains("ok \\e]52;c;cm0gLXJmIH4=\\x07"), "{md}");
    outputs.push(("transcript.md".into(), md));
    outputs.push((
        "transcript.json".into(),
        std::fs::read_to_string(s.path(&format!("runs/{id}/transcript.json"))).expect("json"),
    ));
    for (what, text) in &outputs {
        assert_eq!(raw_controls(text), Vec::<char>::new(), "{what}:\n{text:?}");
        assert!(
            !text.contains("bastion.prod.example"),
            "{what}: forged host: {text}"
        );
    }
    // The comment is there, visible, attributed to the real user.
    let show = &outputs[0].1;
    assert!(show.contains(TEST_USER), "{show}");
    // `logs --raw` gives the recorded bytes (for a pipe, not a terminal).
    let raw = rb(&s, &["logs", "last", "g", "--raw"]);
    assert!(
        raw.stdout.contains("out \u{1b}]52;c;SGVsbG8=\u{7}"),
        "{:?}",
        raw.stdout
    );
}

/// A value that is a word of its own and starts with `-` is refused (it would be an option):
/// `tar -xf a.tar {{ member }}` with `--to-command=…` runs nothing.
#[test]
fn a_value_cannot_become_an_option() {
    let s = Scratch::new();
    std::fs::write(s.path("f"), "x").expect("write");
    assert!(
        Command::new("tar")
            .args(["-cf", "a.tar", "f"])
            .current_dir(s.dir.path())
            .status()
            .is_ok_and(|st| st.success())
    );
    s.runbook(
        "runbook: opt\nversion: 1\ninputs:\n  member: { required: true }\nsteps:\n  - id: restore\n    run: cd {D} && tar -xf a.tar {{ member }}\n",
    );
    let pwn = s.path("PWN");
    let ran = s.exec(&[
        "-i",
        &format!("member=--to-command=touch {}", pwn.display()),
        "--yes",
    ]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(!pwn.exists(), "the value became a tar option");
    assert!(
        ran.stderr
            .contains("starts with `-` and stands as a word of its own"),
        "{}",
        ran.stderr
    );
    // After `--`, joined to text, or a number: accepted.
    s.runbook(
        "runbook: opt\nversion: 1\ninputs:\n  v: { required: true }\n  n: { type: int, default: -2 }\nsteps:\n  - id: a\n    run: echo joined=x{{ v }} -- {{ v }}; expr {{ n }} + 1\n",
    );
    let ok = s.exec(&["-i", "v=-rf", "--yes"]);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert!(ok.stderr.contains("joined=x-rf -- -rf"), "{}", ok.stderr);
    assert!(ok.stderr.contains("-1"), "{}", ok.stderr);
}

/// `.`/`..` as a whole path segment from a value are refused before anything is sent (a
/// server resolves them, even as %2E%2E).
#[test]
fn dot_segments_from_a_value_are_refused() {
    let server = Server::start(None, |_| Response::json(200, serde_json::json!({})));
    let s = Scratch::new();
    s.runbook(&format!(
        "runbook: dot\nversion: 1\ninputs:\n  v: {{ required: true }}\nsteps:\n  - id: h\n    http:\n      get: \"http://127.0.0.1:{}/echo/{{{{ v }}}}/x\"\n",
        server.port
    ));
    for v in ["..", ".", "%2E%2E"] {
        let ran = s.exec(&["-i", &format!("v={v}"), "--yes"]);
        if v == "%2E%2E" {
            // A literal `%2E%2E` value is encoded (`%252E%252E`): a plain segment, sent.
            assert_eq!(ran.code, Some(0), "{}", ran.stderr);
            continue;
        }
        assert_eq!(ran.code, Some(1), "{v}: {}", ran.stderr);
        assert!(ran.stderr.contains("URL path segment"), "{}", ran.stderr);
    }
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec!["/echo/%252E%252E/x".to_string()]);
    // The shipped KV-policy runbook no longer accepts `..` for a path segment input.
    let ran = runbook([
        "plan",
        "runbooks/vault-kv-policy.yaml",
        "-i",
        "policy=..",
        "-i",
        "client_token_file=/dev/null",
        "-i",
        "check_path=secret/../sys",
    ])
    .run();
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
}

/// A 307 to another origin never re-sends the body: the step fails naming the redirect. The
/// webhook attach does not follow it either; a same-origin redirect says where it went.
#[test]
fn bodies_never_follow_a_redirect_to_another_origin() {
    let other = Server::start(None, |_| {
        Response::json(200, serde_json::json!({"landed": true}))
    });
    let other_url = format!("http://localhost:{}/landed", other.port);
    let to = other_url.clone();
    let origin = Server::start(None, move |req| match req.path.as_str() {
        "/r307" => Response::redirect(307, to.clone()),
        "/same" => Response::redirect(308, "/hook2".into()),
        _ => Response::json(200, serde_json::json!({})),
    });
    let s = Scratch::new();
    s.runbook(&format!(
        "runbook: redir\nversion: 1\ninputs:\n  tok: {{ secret: true, from_env: TOK }}\nsteps:\n  - id: h\n    http:\n      post: \"http://127.0.0.1:{}/r307\"\n      follow_redirects: true\n      json: {{ password: \"{{{{ tok }}}}\" }}\n",
        origin.port
    ));
    let ran = runbook([
        "exec",
        &s.path("runbook.yaml").display().to_string(),
        "--yes",
        "--runs-dir",
        &s.path("runs").display().to_string(),
    ])
    .env("TOK", "RedirectSecret-1234")
    .run();
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        other.requests().is_empty(),
        "the body followed the redirect"
    );
    assert!(
        ran.stderr
            .contains("redirected (HTTP 307) to another origin")
            && ran.stderr.contains(&other_url),
        "{}",
        ran.stderr
    );
    // attach: cross-origin refused (nothing posted there), same-origin followed and named.
    for (path, ok) in [("r307", false), ("same", true)] {
        let url = format!("webhook:http://127.0.0.1:{}/{path}", origin.port);
        let r = rb(&s, &["attach", "last", "--to", &url]);
        if ok {
            assert_eq!(r.code, Some(0), "{}", r.stderr);
            assert!(
                r.stdout.contains("(redirected to http://127.0.0.1:"),
                "{}",
                r.stdout
            );
            assert!(r.stdout.contains("/hook2"), "{}", r.stdout);
        } else {
            assert_ne!(r.code, Some(0), "{}", r.stdout);
            assert!(
                r.stderr.contains("redirected to another origin"),
                "{}",
                r.stderr
            );
        }
    }
    assert!(
        other.requests().is_empty(),
        "the transcript followed the redirect"
    );
}

/// A cut journal with its head removed, garbage or out of range is not "intact", and resume
/// does not redo rollbacks from it (unless told to).
#[test]
fn a_missing_or_damaged_head_fails_verify_and_resume() {
    let s = Scratch::new();
    s.runbook(
        "runbook: cut\nversion: 1\nsteps:\n  - id: a\n    run: \"true\"\n    rollback: echo rolled-a >> {D}/rolled\n  - id: b\n    needs: [a]\n    run: \"true\"\n    rollback: echo rolled-b >> {D}/rolled\n  - id: c\n    needs: [b]\n    run: \"false\"\n",
    );
    let ran = s.exec(&["--yes"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert_eq!(s.read("rolled"), "rolled-b\nrolled-a\n");
    let id = run_id(&s).expect("run");
    let dir = s.path(&format!("runs/{id}"));
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).expect("journal");
    // Cut the tail (the rollbacks and the end) off.
    let keep: Vec<&str> = journal
        .lines()
        .take_while(|l| !l.contains("rollback"))
        .collect();
    std::fs::write(dir.join("journal.jsonl"), keep.join("\n") + "\n").expect("cut");
    let head = dir.join("journal.head");
    for (content, why) in [
        (None, "is missing"),
        (Some("garbage".to_string()), "not a head record"),
        (
            Some(r#"{"v":1,"count":3,"last":"x","durable":99999999999,"sealed":true}"#.into()),
            "inconsistent",
        ),
    ] {
        match &content {
            None => {
                let _ = std::fs::remove_file(&head);
            }
            Some(c) => std::fs::write(&head, c).expect("head"),
        }
        let v = rb(&s, &["transcript", &id, "--verify"]);
        assert_eq!(v.code, Some(1), "{why}: {}{}", v.stdout, v.stderr);
        assert!(!v.stdout.contains("intact"), "{}", v.stdout);
        assert!(v.stderr.contains(why), "{why}: {}", v.stderr);
        let r = rb(&s, &["resume", &id, "--yes"]);
        assert_eq!(r.code, Some(2), "{}", r.stderr);
        assert!(r.stderr.contains("--ignore-damaged-head"), "{}", r.stderr);
        assert_eq!(
            s.read("rolled"),
            "rolled-b\nrolled-a\n",
            "rollbacks ran again"
        );
    }
}

/// `uses:` that multiplies (4 calls a level) stops with a diagnostic at the call site, fast;
/// a chain deeper than 16 says so; `uses: "-"` is not standard input.
#[test]
fn uses_fan_out_and_depth_are_capped() {
    let s = Scratch::new();
    for level in 0..8 {
        let body = if level == 7 {
            "steps:\n  - id: s\n    run: \"true\"\n".to_string()
        } else {
            let mut b = String::from("steps:\n");
            for i in 0..4 {
                b.push_str(&format!("  - id: c{i}\n    uses: l{}.yaml\n", level + 1));
            }
            b
        };
        std::fs::write(
            s.path(&format!("l{level}.yaml")),
            format!("runbook: l{level}\nversion: 1\n{body}"),
        )
        .expect("write");
    }
    let r = runbook(["validate", &s.path("l0.yaml").display().to_string()])
        .timeout(Duration::from_secs(30))
        .run();
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("calls expand to more than 2000 steps"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("l0.yaml:5:11]"), "{}", r.stderr);
    for level in 0..18 {
        let body = if level == 17 {
            "  - id: s\n    run: \"true\"\n".to_string()
        } else {
            format!("  - id: c\n    uses: d{}.yaml\n", level + 1)
        };
        std::fs::write(
            s.path(&format!("d{level}.yaml")),
            format!("runbook: d{level}\nversion: 1\nsteps:\n{body}"),
        )
        .expect("write");
    }
    let r = runbook(["validate", &s.path("d0.yaml").display().to_string()]).run();
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("calls nest deeper than 16 runbooks"),
        "{}",
        r.stderr
    );
    std::fs::write(
        s.path("stdin.yaml"),
        "runbook: st\nversion: 1\nsteps:\n  - id: c\n    uses: \"-\"\n",
    )
    .expect("write");
    let r = runbook(["validate", &s.path("stdin.yaml").display().to_string()])
        .stdin(b"runbook: x\nversion: 1\nsteps:\n  - id: a\n    run: \"true\"\n".to_vec())
        .run();
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("`uses` must name a runbook file"),
        "{}",
        r.stderr
    );
}

/// `transcript --template` reads regular files only, bounded: /dev/zero and a FIFO are
/// refused at once; `logs` shows control characters visibly unless `--raw`.
#[test]
fn transcript_template_is_a_regular_bounded_file() {
    let s = Scratch::new();
    s.runbook("runbook: t\nversion: 1\nsteps:\n  - id: a\n    run: printf 'x\\033[2Jy\\n'\n");
    assert_eq!(s.exec(&["--yes"]).code, Some(0));
    let fifo = s.path("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|st| st.success())
    );
    for (t, why) in [
        ("/dev/zero".to_string(), "not a regular file"),
        (fifo.display().to_string(), "not a regular file"),
    ] {
        let r = rb(&s, &["transcript", "last", "--template", &t]);
        assert_eq!(r.code, Some(2), "{}", r.stderr);
        assert!(r.stderr.contains(why), "{}", r.stderr);
    }
    let big = s.path("big.j2");
    std::fs::write(&big, vec![b'x'; 2 << 20]).expect("big");
    let r = rb(
        &s,
        &[
            "transcript",
            "last",
            "--template",
            &big.display().to_string(),
        ],
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("more than"), "{}", r.stderr);
    let logs = rb(&s, &["logs", "last"]);
    assert!(logs.stdout.contains("x\\e[2Jy"), "{:?}", logs.stdout);
    let raw = rb(&s, &["logs", "last", "--raw"]);
    assert!(raw.stdout.contains("x\u{1b}[2Jy"), "{:?}", raw.stdout);
}

/// A malformed `with:` template (`{{ `, `{{ v`, a trailing `{{`) is an error, not `()`.
#[test]
fn malformed_with_templates_are_refused() {
    let s = Scratch::new();
    std::fs::write(
        s.path("child.yaml"),
        "runbook: child\nversion: 1\ninputs:\n  x: { required: true }\nsteps:\n  - id: a\n    run: echo {{ x }}\n",
    )
    .expect("write");
    for with in ["'{{ '", "'{{ v'", "'a {{ v }} {{'", "'{{ }}'"] {
        std::fs::write(
            s.path("parent.yaml"),
            format!(
                "runbook: parent\nversion: 1\ninputs:\n  v: {{ default: val }}\nsteps:\n  - id: c\n    uses: child.yaml\n    with: {{ x: {with} }}\n"
            ),
        )
        .expect("write");
        let r = runbook(["validate", &s.path("parent.yaml").display().to_string()]).run();
        assert_eq!(r.code, Some(2), "{with}: {}{}", r.stdout, r.stderr);
    }
}

/// Attack report 13, D4: the live lines were escaped but the end-of-run table, the `run
/// ended:` line and the one-line `error:` still carried a host's stderr and an input value
/// raw (OSC title, clear screen, C1 CSI).
#[test]
fn the_summary_and_the_final_lines_escape_text_from_outside() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: esc
version: 1
inputs:
  f: { default: "x" }
steps:
  - id: use
    run: printf 'boom \033]0;pwned\007\033[2J \302\233x\n' >&2; exit 1
  - id: opt
    needs: [use]
    run: echo {{ f }}
"#,
    );
    let rbp = s.path("runbook.yaml").display().to_string();
    let ran = rb(&s, &["exec", &rbp, "--yes", "--progress", "plain"]);
    assert_eq!(ran.code, Some(1), "{}{}", ran.stdout, ran.stderr);
    let all = format!("{}{}", ran.stdout, ran.stderr);
    assert!(all.contains("run ended"), "{all}");
    assert!(all.contains("\\e]0;pwned"), "not shown visibly:\n{all}");
    assert!(raw_controls(&all).is_empty(), "raw controls in:\n{all:?}");
    // A value refused as an option is quoted in the failure reason: escaped too.
    s.runbook(
        r#"
runbook: esc2
version: 1
inputs:
  f: { default: "x" }
steps:
  - id: opt
    run: echo {{ f }}
"#,
    );
    let hostile = "-X\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}Y";
    let ran = rb(
        &s,
        &[
            "exec",
            &rbp,
            "--yes",
            "--progress",
            "plain",
            "-i",
            &format!("f={hostile}"),
        ],
    );
    assert_ne!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
    let all = format!("{}{}", ran.stdout, ran.stderr);
    assert!(raw_controls(&all).is_empty(), "raw controls in:\n{all:?}");
}

/// Attack report 13, D7: a literal `from:` out of range (0, 51, -1, 1.5, text) was accepted
/// by `validate` (a YAML number is also a string in the tree, so it was taken for an
/// expression) and failed only at run time, after earlier steps had run.
#[test]
fn a_literal_ask_from_out_of_range_is_a_validate_error() {
    let s = Scratch::new();
    for bad in ["0", "51", "-1", "1.5", "abc", "99999999999"] {
        s.runbook(&format!(
            "runbook: b\nversion: 1\nsteps:\n  - id: a1\n    ask: {{ prompt: x, from: {bad} }}\n"
        ));
        let ran = runbook([
            "validate".to_string(),
            s.path("runbook.yaml").display().to_string(),
        ])
        .run();
        assert_eq!(
            ran.code,
            Some(2),
            "from: {bad}\n{}{}",
            ran.stdout,
            ran.stderr
        );
        assert!(
            ran.stderr.contains(":5:"),
            "from: {bad}: no line:column\n{}",
            ran.stderr
        );
    }
    s.runbook(
        "runbook: b\nversion: 1\nsteps:\n  - id: a1\n    ask: { prompt: x, from: \"{{ 1 + 1 }}\" }\n",
    );
    let ran = runbook([
        "validate".to_string(),
        s.path("runbook.yaml").display().to_string(),
    ])
    .run();
    assert_eq!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
}

/// Attack report 13, D1: the answer channel's name is predictable, so another local user
/// who learnt the run id could bind it first and every `ask:` of the run paused at once
/// (resume too). Now the engine listens under a random suffix then, and `runbook answer`
/// passes over the foreign listener (sending it nothing) to the run owner's.
#[test]
fn a_squatted_answer_channel_does_not_stop_the_ask() {
    crate::ask::ensure_second_user();
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: squat
version: 1
steps:
  - id: hold
    read_only: true
    run: while [ ! -f {D}/go ]; do sleep 0.05; done
  - id: q
    needs: [hold]
    ask: { prompt: "Your share", secret: true, timeout: 60s }
  - id: use
    needs: [q]
    read_only: true
    run: printf '%s' "{{ steps.q.outputs.value }}" | wc -c > {D}/len
"#,
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o711))
        .unwrap_or_default();
    let child = s
        .command(&["--progress", "plain"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // The run has started (its journal exists) but waits before its ask.
    let id = crate::ask::wait_journal(&s, "\"run-started\"", 1);
    // Another OS user takes the predictable name before the run reaches its ask.
    let uid = crate::ask::uid_of(crate::ask::SECOND_USER);
    let script = format!(
        "import hashlib,socket,sys,time\n\
         n='runbook-ask-'+hashlib.sha256(b'{id}\\0q').hexdigest()[:32]\n\
         s=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM)\n\
         s.bind('\\0'+n)\ns.listen(8)\nprint('bound',flush=True)\ntime.sleep(120)\n"
    );
    let mut squatter = Command::new("python3")
        .args(["-c", &script])
        .uid(uid)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    {
        use std::io::BufRead;
        let out = squatter.stdout.take().expect("stdout");
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .unwrap_or_default();
    }
    assert_eq!(line.trim(), "bound");
    std::fs::write(s.path("go"), "").expect("go");
    crate::ask::wait_journal(&s, "\"gate-waiting\"", 1);
    let (code, out) = crate::ask::answer_in(
        &s.path("runs"),
        None,
        &[&id, "q", "--stdin"],
        Some("SquatProofShare-1234"),
    );
    let _ = squatter.kill();
    let _ = squatter.wait();
    assert_eq!(code, 0, "{out}");
    let done = child.wait_with_output().expect("run");
    let stderr = String::from_utf8_lossy(&done.stderr).into_owned();
    assert_eq!(done.status.code(), Some(0), "{stderr}");
    assert_eq!(s.read("len").trim(), "20");
}

/// Attack report 13, D6: `when:` and `confirm:` of `finally` steps were ignored: the plan
/// said "will be SKIPPED" and the engine ran them, and a finally gate approved itself
/// headless. Now a false `when:` skips, and a gate nobody answers keeps its step from running.
#[test]
fn finally_steps_obey_when_and_their_gates() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: fin
version: 1
inputs:
  mode: { default: a }
steps:
  - id: s
    read_only: true
    run: "true"
finally:
  - id: only-on-b
    when: mode == 'b'
    run: echo "only-on-b {{ mode }}" >> {D}/m
  - id: gated
    confirm: "re-enable traffic?"
    run: echo gated >> {D}/m
  - id: always
    run: echo always >> {D}/m
"#,
    );
    let rbp = s.path("runbook.yaml").display().to_string();
    let plan = runbook(["plan".to_string(), rbp.clone()]).run();
    assert!(plan.stdout.contains("SKIPPED"), "{}", plan.stdout);
    let ran = rb(&s, &["exec", &rbp, "--no-wait", "--progress", "plain"]);
    assert_eq!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
    assert_eq!(s.read("m"), "always\n", "{}", ran.stderr);
    assert!(
        ran.stderr.contains("finally step `gated` not run"),
        "{}",
        ran.stderr
    );
    std::fs::remove_file(s.path("m")).unwrap_or_default();
    let ran = rb(
        &s,
        &["exec", &rbp, "--yes", "-i", "mode=b", "--progress", "plain"],
    );
    assert_eq!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
    assert_eq!(
        s.read("m"),
        "only-on-b b\ngated\nalways\n",
        "{}",
        ran.stderr
    );
}

/// Attack report 13, D18: `resume` checked only the top runbook's hash, so an edited
/// `uses:` child (new commands, swapped rollbacks) ran in a resumed run. The run now records
/// the fingerprint of the runbook with every file it calls.
#[test]
fn resume_refuses_a_changed_child_runbook() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path("lib")).expect("lib");
    let child = "runbook: c\nversion: 1\nsteps:\n  - id: c1\n    read_only: true\n    run: echo c1 >> {D}/m\n";
    let write_child = |text: &str| {
        std::fs::write(
            s.path("lib/c.yaml"),
            text.replace("{D}", &s.dir.path().display().to_string()),
        )
        .expect("child")
    };
    write_child(child);
    s.runbook(
        r#"
runbook: p
version: 1
steps:
  - id: g
    confirm: "go?"
    read_only: true
    run: echo g >> {D}/m
  - id: call
    needs: [g]
    uses: lib/c.yaml
"#,
    );
    let paused = s.exec(&["--no-wait"]);
    assert_eq!(paused.code, Some(3), "{}{}", paused.stdout, paused.stderr);
    let id = crate::ask::run_id(&s).expect("run id");
    write_child(&child.replace("echo c1", "echo INJECTED"));
    let refused = rb(&s, &["resume", &id, "--yes"]);
    assert_eq!(
        refused.code,
        Some(2),
        "{}{}",
        refused.stdout,
        refused.stderr
    );
    assert!(
        refused.stderr.contains("a runbook it calls"),
        "{}",
        refused.stderr
    );
    assert_eq!(s.read("m"), "", "nothing may run");
    write_child(child);
    let done = rb(&s, &["resume", &id, "--yes"]);
    assert_eq!(done.code, Some(0), "{}{}", done.stdout, done.stderr);
    assert_eq!(s.read("m"), "g\nc1\n");
}

/// Attack report 13, D20: a called runbook's input rules (`pattern`, `allowed`, `type`) held
/// for literals in `with:` but not for templates, so a library guarding `node` with a pattern
/// ran with `../../etc/passwd`. The rules now hold for the value a template gives, when the
/// call's steps render it: the step fails before running, naming the input, never the value.
#[test]
fn a_called_runbooks_input_rules_hold_for_template_values() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path("lib")).expect("lib");
    std::fs::write(
        s.path("lib/c.yaml"),
        format!(
            "runbook: c\nversion: 1\ninputs:\n  node: {{ required: true, pattern: \"vault-[0-9]+\" }}\n  mode: {{ required: true, allowed: [soft, hard] }}\n  n: {{ type: int, default: 1 }}\nsteps:\n  - id: s\n    read_only: true\n    run: echo \"node={{{{ node }}}} mode={{{{ mode }}}} n={{{{ n + 1 }}}}\" >> {}/m\n",
            s.dir.path().display()
        ),
    )
    .expect("child");
    s.runbook(
        r#"
runbook: p
version: 1
inputs:
  target: { default: "vault-1" }
  m: { default: "soft" }
  k: { default: "1" }
steps:
  - id: call
    uses: lib/c.yaml
    with: { node: "{{ target }}", mode: "{{ m }}", n: "{{ k }}" }
"#,
    );
    let ok = s.exec(&["--yes"]);
    assert_eq!(ok.code, Some(0), "{}{}", ok.stdout, ok.stderr);
    assert_eq!(s.read("m"), "node=vault-1 mode=soft n=2\n");
    for (bad, input) in [
        ("target=../../etc/passwd", "node"),
        ("m=nuke-everything", "mode"),
        ("k=1; rm -rf", "n"),
    ] {
        let ran = s.exec(&["--yes", "-i", bad]);
        assert_eq!(ran.code, Some(1), "{bad}: {}{}", ran.stdout, ran.stderr);
        assert!(
            ran.stderr
                .contains(&format!("input `{input}` of the called runbook")),
            "{bad}: {}",
            ran.stderr
        );
        let value = bad.split_once('=').map(|(_, v)| v).unwrap_or_default();
        assert!(!ran.stderr.contains(value), "{bad}: the value is quoted");
        let plan = runbook([
            "plan".to_string(),
            s.path("runbook.yaml").display().to_string(),
            "-i".into(),
            bad.into(),
        ])
        .run();
        assert!(
            plan.stdout.contains("fails if it runs"),
            "{bad}: {}{}",
            plan.stdout,
            plan.stderr
        );
    }
    assert_eq!(
        s.read("m"),
        "node=vault-1 mode=soft n=2\n",
        "nothing else ran"
    );
    // A literal is checked by validate, pattern included.
    s.runbook(
        "runbook: p\nversion: 1\nsteps:\n  - id: call\n    uses: lib/c.yaml\n    with: { node: ../x, mode: soft }\n",
    );
    let v = runbook([
        "validate".to_string(),
        s.path("runbook.yaml").display().to_string(),
    ])
    .run();
    assert_eq!(v.code, Some(2), "{}{}", v.stdout, v.stderr);
    assert!(v.stderr.contains("does not match"), "{}", v.stderr);
}

/// Attack report 13, D5: a lazy secret nobody provided was the empty string when a step
/// reached it through a computed key (`inputs['t' ~ 'ok']`) or by its variable's name
/// (`$RUNBOOK_SECRET_TOK`): the command ran with an empty credential. Headless, such a step
/// now fails before running, naming the input, like `{{ tok }}` always did.
#[test]
fn a_lazy_secret_reached_any_way_is_needed_before_the_step_runs() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: lazy
version: 1
inputs:
  tok: { secret: true, from_env: LAZY_TOK_UNSET }
  mode: { default: a }
steps:
  - id: dyn
    when: mode == 'a'
    read_only: true
    run: echo "dyn=[{{ inputs['t' ~ 'ok'] }}]" >> {D}/m
  - id: byname
    when: mode == 'b'
    read_only: true
    run: echo "byname=[$RUNBOOK_SECRET_TOK]" >> {D}/m
  - id: other
    when: mode == 'c'
    read_only: true
    run: echo "other" >> {D}/m
"#,
    );
    for (mode, step) in [("a", "dyn"), ("b", "byname")] {
        let ran = s.exec(&["--yes", "-i", &format!("mode={mode}")]);
        assert_eq!(ran.code, Some(1), "{mode}: {}{}", ran.stdout, ran.stderr);
        assert!(
            ran.stderr.contains(&format!(
                "step `{step}` needs input `tok`, which was not provided"
            )),
            "{mode}: {}",
            ran.stderr
        );
    }
    assert_eq!(s.read("m"), "", "no step ran with an empty secret");
    // A step that does not read it runs without it.
    let ran = s.exec(&["--yes", "-i", "mode=c"]);
    assert_eq!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
    assert_eq!(s.read("m"), "other\n");
}
