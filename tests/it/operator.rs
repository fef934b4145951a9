//! The operator's paths through a run (issue 16): find a run from anywhere (prefix, `last`),
//! see what it waits for (`show`, `runs`), answer it from a second terminal while the first one
//! prompts, continue it without retyping options, finish an unwinding later, and `finally`
//! steps that run whatever happened.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::exec::{Scratch, wait_for};
use crate::harness::{Ran, insta_settings, runbook};

const GATED: &str = r#"
runbook: gated
version: 1
inputs:
  node: { default: vault-2 }
steps:
  - id: prep
    title: Prepare {{ node }}
    run: echo prepared >> {D}/done
    rollback: echo undo-prep >> {D}/undo
  - id: restart
    title: Restart the service
    needs: [prep]
    confirm: Restart the service?
    run: echo restarted >> {D}/done
finally:
  - id: notify
    title: Tell the channel
    run: echo notified >> {D}/finally
"#;

/// `runbook ARGS` with runs in the scratch's per-user state dir (no --runs-dir), run from `cwd`.
fn rb_in(s: &Scratch, cwd: &Path, args: &[&str]) -> Ran {
    runbook(args)
        .env("XDG_STATE_HOME", s.path("state"))
        .env("HOME", s.path("home"))
        .current_dir(cwd)
        .run()
}

fn rb(s: &Scratch, args: &[&str]) -> Ran {
    rb_in(s, s.dir.path(), args)
}

/// The scratch's runbook run with the default (per-user) runs dir.
fn exec_default(s: &Scratch, args: &[&str]) -> Ran {
    let file = s.path("runbook.yaml").display().to_string();
    let mut all = vec!["exec", file.as_str(), "--progress", "plain"];
    all.extend(args);
    rb(s, &all)
}

fn run_ids(s: &Scratch) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(s.path("state/runbook/runs"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Filters for snapshots of run inspection: run ids, times, durations, pids, users and hosts.
fn settings(s: &Scratch) -> insta::Settings {
    let mut st = insta_settings();
    st.add_filter(
        &regex_escape(&s.dir.path().display().to_string()),
        "[SCRATCH]",
    );
    st.add_filter(r"\d{8}-\d{6}-[a-z0-9-]+-[0-9a-f]{16}", "[RUN]");
    st.add_filter(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", "[TIME]");
    st.add_filter(r"by \w+@[\w.-]+", "by [USER]@[HOST]");
    st.add_filter(r"pid \d+ \(\w+@[\w.-]+\)", "pid [PID] ([USER]@[HOST])");
    st.add_filter(r"(\d+h)?(\d+m)?\d+s\b", "[DURATION]");
    // Right-aligned durations: the padding depends on the duration's width.
    st.add_filter(r" +\[DURATION\]", " [DURATION]");
    st
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$#&-~".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Runs land in the per-user state dir; another directory finds them by `last` and by a
/// unique prefix; an ambiguous prefix and an unknown id are usage errors naming the problem.
#[test]
fn runs_are_found_by_prefix_and_last_from_another_directory() {
    let s = Scratch::new();
    s.runbook(GATED);
    std::fs::create_dir_all(s.path("elsewhere")).expect("mkdir");
    let first = exec_default(&s, &["--yes"]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let second = exec_default(&s, &["--no-wait"]);
    assert_eq!(second.code, Some(3), "{}", second.stderr);
    let ids = run_ids(&s);
    assert_eq!(ids.len(), 2, "{ids:?}");
    // In the order they started (ids made within one second differ only by a random suffix).
    let b = second
        .stderr
        .split("resume with: runbook resume ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("resume command")
        .to_string();
    let a = ids.iter().find(|i| **i != b).expect("first run").clone();
    let elsewhere = s.path("elsewhere");
    // `last` is the run started last (the paused one), from a directory with no runs in it.
    let last = rb_in(&s, &elsewhere, &["show", "last"]);
    assert_eq!(last.code, Some(0), "{}", last.stderr);
    assert!(
        last.stdout.contains("paused at gate `restart`"),
        "{}",
        last.stdout
    );
    // A unique prefix: the ids differ at the latest in their random suffix.
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let show = rb_in(&s, &elsewhere, &["show", &a[..common + 1]]);
    assert_ne!(a[..common + 1], b[..common + 1]);
    assert_eq!(show.code, Some(0), "{}", show.stderr);
    assert!(
        show.stdout.contains(&format!("run      {a}")),
        "{}",
        show.stdout
    );
    let ambiguous = rb_in(&s, &elsewhere, &["show", &a[..common]]);
    assert_eq!(ambiguous.code, Some(2));
    assert!(
        ambiguous.stderr.contains("matches 2 runs"),
        "{}",
        ambiguous.stderr
    );
    let unknown = rb_in(&s, &elsewhere, &["transcript", "nope"]);
    assert_eq!(unknown.code, Some(2));
    assert!(
        unknown.stderr.contains("no run `nope`"),
        "{}",
        unknown.stderr
    );
    // Printed commands carry no --runs-dir: the default finds the run from anywhere.
    assert!(!second.stderr.contains("--runs-dir"), "{}", second.stderr);
    // `runs` from elsewhere lists both, oldest first, with state and gate.
    let runs = rb_in(&s, &elsewhere, &["runs"]);
    assert_eq!(runs.code, Some(0), "{}", runs.stderr);
    let lines: Vec<&str> = runs.stdout.lines().collect();
    assert!(
        lines[1].starts_with(a.as_str()) && lines[2].starts_with(b.as_str()),
        "{}",
        runs.stdout
    );
    settings(&s).bind(|| insta::assert_snapshot!("runs_table", runs.stdout));
    let waiting = rb_in(&s, &elsewhere, &["runs", "--state", "paused"]);
    assert_eq!(waiting.stdout.lines().count(), 2, "{}", waiting.stdout);
    assert!(waiting.stdout.contains(&b), "{}", waiting.stdout);
    let done = rb_in(
        &s,
        &elsewhere,
        &["runs", "--state", "succeeded", "--since", "1h"],
    );
    assert_eq!(done.stdout.lines().count(), 2, "{}", done.stdout);
    assert!(done.stdout.contains(&a), "{}", done.stdout);
    let old = rb_in(&s, &elsewhere, &["runs", "--since", "2000-01-01T00:00:00Z"]);
    assert_eq!(old.stdout.lines().count(), 3, "{}", old.stdout);
    let bad = rb_in(&s, &elsewhere, &["runs", "--state", "pasued"]);
    assert_eq!(bad.code, Some(2));
    assert!(
        bad.stderr.contains("did you mean `paused`?"),
        "{}",
        bad.stderr
    );
}

/// `show` of a paused run: state, steps with titles, the next commands.
#[test]
fn show_says_where_a_run_stands_and_what_to_type() {
    let s = Scratch::new();
    s.runbook(GATED);
    let ran = exec_default(&s, &["--no-wait"]);
    assert_eq!(ran.code, Some(3), "{}", ran.stderr);
    let show = rb(&s, &["show", "last"]);
    assert_eq!(show.code, Some(0), "{}", show.stderr);
    settings(&s).bind(|| insta::assert_snapshot!("show_paused", show.stdout));
    let json = rb(&s, &["show", "last", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(v["state"]["state"], "paused");
    assert_eq!(v["state"]["gate"], "restart");
    // `finally` waits for the run's real end: not on a pause.
    assert_eq!(s.read("finally"), "");
}

/// A misspelt gate and a finished run are refused (exit 2) with what is wrong; an answer to a
/// paused run says truthfully that no engine waits, and resume takes it at once.
#[test]
fn approve_checks_the_run_and_the_gate() {
    let s = Scratch::new();
    s.runbook(GATED);
    let ran = exec_default(&s, &["--no-wait"]);
    assert_eq!(ran.code, Some(3), "{}", ran.stderr);
    // Completion words: run ids (and `last`), and the run's gates.
    let ids = rb(&s, &["__complete", "runs"]);
    assert_eq!(ids.stdout.lines().next(), Some("last"));
    assert!(ids.stdout.contains(&run_ids(&s)[0]), "{}", ids.stdout);
    let gates = rb(&s, &["__complete", "gates", &run_ids(&s)[0][..15]]);
    assert_eq!(gates.stdout, "restart\n");
    let typo = rb(&s, &["approve", "last", "restrat"]);
    assert_eq!(typo.code, Some(2), "{}", typo.stdout);
    assert!(
        typo.stderr.contains("did you mean `restart`?"),
        "{}",
        typo.stderr
    );
    let not_gate = rb(&s, &["reject", "last", "prep"]);
    assert_eq!(not_gate.code, Some(2));
    assert!(
        not_gate.stderr.contains("step `prep`"),
        "{}",
        not_gate.stderr
    );
    let ok = rb(
        &s,
        &["approve", "last", "restart", "--comment", "disk checked"],
    );
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert!(
        ok.stdout.contains("no engine is running this run"),
        "{}",
        ok.stdout
    );
    let resumed = rb(&s, &["resume", "last", "--progress", "plain", "--no-wait"]);
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    assert_eq!(s.read("done"), "prepared\nrestarted\n");
    assert_eq!(s.read("finally"), "notified\n");
    let finished = rb(&s, &["approve", "last", "restart"]);
    assert_eq!(finished.code, Some(2));
    assert!(
        finished.stderr.contains("already finished"),
        "{}",
        finished.stderr
    );
}

/// The terminal prompts; a second terminal's `approve` answers it: the prompt is withdrawn,
/// the run goes on, and the answer is journaled with who gave it and the comment.
#[test]
fn remote_approve_answers_a_prompting_terminal() {
    let s = Scratch::new();
    s.runbook(GATED);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
    cmd.arg("exec")
        .arg(s.path("runbook.yaml"))
        .args(["--progress", "plain"])
        .env("NO_COLOR", "1")
        .env("TERM", "dumb")
        .env("XDG_STATE_HOME", s.path("state"))
        .env_remove("RUNBOOK_RUNS_DIR");
    let mut p = rexpect::session::spawn_command(cmd, Some(30_000)).expect("spawn in pty");
    p.exp_string("GATE: restart").expect("gate shown");
    p.exp_string("(then Enter)").expect("prompt");
    // A live engine at the gate: `show` says so.
    let show = rb(&s, &["show", "last"]);
    assert!(
        show.stdout.contains("waiting at gate `restart`") && show.stdout.contains("is live"),
        "{}",
        show.stdout
    );
    let ok = rb(
        &s,
        &["approve", "last", "restart", "--comment", "looks fine"],
    );
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert!(ok.stdout.contains("the engine (pid"), "{}", ok.stdout);
    assert!(ok.stdout.contains("took it"), "{}", ok.stdout);
    p.exp_string("answered from another terminal")
        .expect("prompt withdrawn");
    p.exp_eof().expect("exit");
    let status = p.process.wait().expect("status");
    assert!(format!("{status:?}").contains(", 0)"), "{status:?}");
    assert_eq!(s.read("done"), "prepared\nrestarted\n");
    let json = rb(&s, &["show", "last", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(v["answers"][0][0], "restart");
    assert_eq!(v["answers"][0][1], "approved");
    assert_eq!(v["answers"][0][3], "looks fine");
}

/// `finally` runs after a failure, after a declined gate and after Ctrl-C.
#[test]
fn finally_runs_after_failure_decline_and_ctrl_c() {
    let yaml = r#"
runbook: fin
version: 1
inputs:
  mode: { default: ok }
steps:
  - id: work
    run: '[ {{ mode }} != fail ] && touch {D}/working && ([ {{ mode }} != slow ] || sleep 60)'
  - id: gate
    needs: [work]
    confirm: go?
    run: echo gate
finally:
  - id: notify
    run: echo notified-{{ mode }} >> {D}/finally
"#;
    // Failure.
    let s = Scratch::new();
    s.runbook(yaml);
    let failed = s.exec(&["-i", "mode=fail", "--progress", "plain"]);
    assert_eq!(failed.code, Some(1), "{}", failed.stderr);
    assert_eq!(s.read("finally"), "notified-fail\n");
    // Decline (answers file says no).
    std::fs::write(s.path("answers.yaml"), "gate: no\n").expect("answers");
    let answers = s.path("answers.yaml").display().to_string();
    let declined = s.exec(&[
        "-i",
        "mode=decline",
        "--answers",
        &answers,
        "--progress",
        "plain",
    ]);
    assert_eq!(declined.code, Some(3), "{}", declined.stderr);
    assert_eq!(s.read("finally"), "notified-fail\nnotified-decline\n");
    // Ctrl-C while a step runs.
    std::fs::remove_file(s.path("working")).expect("marker of the earlier run");
    let mut child = s
        .command(&["-i", "mode=slow", "--progress", "plain"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for(&s.path("working"), Duration::from_secs(30));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(3));
    assert_eq!(
        s.read("finally"),
        "notified-fail\nnotified-decline\nnotified-slow\n"
    );
}

/// A second Ctrl-C stops the unwinding (exit 4); `runbook rollback RUN` finishes it later:
/// the interrupted undo and the one that never ran, newest first.
#[test]
fn rollback_finishes_an_unwinding_stopped_by_a_second_ctrl_c() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: unwind
version: 1
steps:
  - id: a
    run: echo a >> {D}/done
    rollback: echo undo-a >> {D}/undo
  - id: b
    needs: [a]
    run: echo b >> {D}/done
    rollback: 'if [ -f {D}/once ]; then echo undo-b >> {D}/undo; else touch {D}/once; sleep 60; fi'
  - id: c
    needs: [b]
    run: touch {D}/in-c; sleep 60
"#,
    );
    let child = s
        .command(&["--progress", "plain"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for(&s.path("in-c"), Duration::from_secs(30));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    wait_for(&s.path("once"), Duration::from_secs(30));
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("finish the unwinding with: runbook rollback"),
        "{stderr}"
    );
    assert_eq!(s.read("undo"), "");
    let runs = s.path("runs").display().to_string();
    let show = runbook(["show", "--runs-dir", &runs, "last"]).run();
    // Both undos are listed with their commands: b's was interrupted, a's never ran.
    assert!(show.stdout.contains("Undos not done"), "{}", show.stdout);
    assert!(show.stdout.contains("  b: cancelled"), "{}", show.stdout);
    assert!(
        show.stdout.contains("  a: stopped by a second signal"),
        "{}",
        show.stdout
    );
    assert!(show.stdout.contains("echo undo-a"), "{}", show.stdout);
    // The steps keep the status they ended with (a rollback's command is not the step).
    assert!(show.stdout.contains("\nb     succeeded"), "{}", show.stdout);
    let resume = runbook(["resume", "--runs-dir", &runs, "last"]).run();
    assert_eq!(resume.code, Some(2));
    assert!(
        resume.stderr.contains("runbook rollback"),
        "{}",
        resume.stderr
    );
    let rolled = runbook([
        "rollback",
        "--runs-dir",
        &runs,
        "last",
        "--progress",
        "plain",
    ])
    .run();
    // The run keeps its cause: it was interrupted (exit 3), not a failed step.
    assert_eq!(rolled.code, Some(3), "{}", rolled.stderr);
    assert!(
        rolled.stderr.contains("interrupted by a signal"),
        "{}",
        rolled.stderr
    );
    assert_eq!(s.read("undo"), "undo-b\nundo-a\n");
    let again = runbook(["rollback", "--runs-dir", &runs, "last"]).run();
    assert_eq!(again.code, Some(2), "{}", again.stderr);
}

/// `runbook rollback` after exit 4 (an undo failed) runs what is left of the unwinding only:
/// the finally steps that already ran do not run again, and the run keeps its cause (a failed
/// step: exit 1 once the undo works, 4 while it still fails).
#[test]
fn rollback_after_exit_4_keeps_the_cause_and_runs_finally_once() {
    let s = Scratch::new();
    s.runbook(
        "runbook: f\nversion: 1\nsteps:\n  - id: a\n    run: echo a\n    rollback: test -e {D}/fixed && echo undo-a >> {D}/undo\n  - id: b\n    needs: [a]\n    run: 'false'\nfinally:\n  - id: fin\n    run: echo fin >> {D}/fin\n",
    );
    let first = s.command(&["--progress", "plain"]).output().expect("run");
    assert_eq!(first.status.code(), Some(4));
    assert_eq!(s.read("fin"), "fin\n");
    let runs = s.path("runs").display().to_string();
    let again = runbook([
        "rollback",
        "--runs-dir",
        &runs,
        "last",
        "--progress",
        "plain",
    ])
    .run();
    assert_eq!(again.code, Some(4), "{}", again.stderr);
    assert!(again.stderr.contains("step `b` failed"), "{}", again.stderr);
    std::fs::write(s.path("fixed"), "").expect("fix");
    let done = runbook([
        "rollback",
        "--runs-dir",
        &runs,
        "last",
        "--progress",
        "plain",
    ])
    .run();
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    assert!(done.stderr.contains("step `b` failed"), "{}", done.stderr);
    assert!(
        !done.stderr.contains("later engine (unwinding"),
        "{}",
        done.stderr
    );
    assert_eq!(s.read("undo"), "undo-a\n");
    assert_eq!(s.read("fin"), "fin\n", "finally ran once");
}

/// Options a run needs (`--ssh-config`, `--known-hosts`) are recorded at exec: `resume RUN`
/// alone, typed from another directory, reaches the host.
#[test]
fn resume_alone_reuses_the_ssh_options_of_the_run() {
    crate::sshd::require();
    let keys = crate::sshd::Keys::new();
    let sshd = crate::sshd::Sshd::start(&keys, &["127.0.0.1"], "host");
    keys.trust("127.0.0.1", sshd.port, "host");
    let s = Scratch::new();
    s.runbook(&format!(
        r#"
runbook: remote
version: 1
hosts:
  node: {{ address: 127.0.0.1, port: {p}, user: root }}
steps:
  - id: look
    on: node
    read_only: true
    run: echo looked
  - id: restart
    needs: [look]
    on: node
    confirm: Restart?
    run: echo restarted-remotely >> {{D}}/done
"#,
        p = sshd.port
    ));
    let ssh_config = keys.ssh_config().display().to_string();
    let known_hosts = keys.path("known_hosts").display().to_string();
    let first = exec_default(
        &s,
        &[
            "--ssh-config",
            &ssh_config,
            "--known-hosts",
            &known_hosts,
            "--no-wait",
        ],
    );
    assert_eq!(first.code, Some(3), "{}", first.stderr);
    std::fs::create_dir_all(s.path("elsewhere")).expect("mkdir");
    let elsewhere = s.path("elsewhere");
    let ok = rb_in(&s, &elsewhere, &["approve", "last", "restart"]);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    let resumed = rb_in(&s, &elsewhere, &["resume", "last", "--progress", "plain"]);
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    assert_eq!(s.read("done"), "restarted-remotely\n");
}

/// Only the summary table and the verdict of a run's stderr (the part after the last blank
/// line before `STEP`).
fn summary_part(stderr: &str) -> String {
    let start = stderr.rfind("\nSTEP").map_or(0, |i| i + 1);
    stderr[start..]
        .lines()
        .filter(|l| !l.starts_with("transcript: "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The final summary names each step's title (rendered with the inputs) next to its status,
/// and the `finally` step runs after the failure.
#[test]
fn summary_shows_titles() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: titled
version: 1
inputs:
  node: { default: vault-2 }
steps:
  - id: check
    title: Check {{ node }} health
    run: "true"
  - id: restart
    title: Restart {{ node }}
    needs: [check]
    run: echo boom >&2; exit 3
    rollback: "true"
  - id: verify
    title: Verify the cluster
    needs: [restart]
    run: "true"
finally:
  - id: notify
    title: Tell the channel
    run: echo notified >> {D}/finally
"#,
    );
    let ran = s.exec(&["--progress", "plain"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert_eq!(s.read("finally"), "notified\n");
    settings(&s).bind(|| insta::assert_snapshot!("summary_with_titles", summary_part(&ran.stderr)));
}

/// An HTTP step's body is summarised: status, content type, size and the fields the step
/// reads; the full body is in the step log.
#[test]
fn http_body_is_summarised_with_the_fields_read() {
    let big: Vec<serde_json::Value> = (0..200)
        .map(|i| serde_json::json!({"node_id": format!("vault-{i}"), "leader": i == 7, "voter": true}))
        .collect();
    let srv = crate::httpd::Server::start(None, move |_req| {
        crate::httpd::Response::json(
            200,
            serde_json::json!({"data": {"config": {"servers": big.clone(), "index": 42}}, "sealed": false}),
        )
    });
    let s = Scratch::new();
    s.runbook(&format!(
        r#"
runbook: h
version: 1
steps:
  - id: raft
    title: Read the raft configuration
    http: {{ get: "http://127.0.0.1:{p}/v1/sys/storage/raft/configuration" }}
    expect: {{ json: {{ sealed: false }} }}
    outputs:
      index: json.data.config.index
"#,
        p = srv.port
    ));
    let ran = s.exec(&["--progress", "plain"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let line = ran
        .stderr
        .lines()
        .find(|l| l.contains("raft │ HTTP"))
        .expect("the response line")
        .to_string();
    assert!(line.len() < 300, "one short line: {line}");
    let mut st = settings(&s);
    st.add_filter(r"^\d\d:\d\d:\d\d", "[HH:MM:SS]");
    st.add_filter(r"\d+\.\d KB", "[SIZE]");
    st.bind(|| insta::assert_snapshot!("http_body_summary", line));
    // The full body is in the step log.
    let logs = runbook([
        "logs",
        "--runs-dir",
        &s.path("runs").display().to_string(),
        "last",
        "raft",
    ])
    .run();
    assert!(
        logs.stdout.contains("\"node_id\":\"vault-199\""),
        "{}",
        logs.stdout
    );
}

/// An unknown host key behind an ssh_config alias: the hint's `ssh-keyscan` names the address
/// and port the alias resolves to (scanning the alias would ask DNS for a name that is not one).
#[test]
fn unknown_host_key_hint_scans_the_resolved_address() {
    crate::sshd::require();
    let keys = crate::sshd::Keys::new();
    let sshd = crate::sshd::Sshd::start(&keys, &["127.0.0.1"], "host");
    let base = std::fs::read_to_string(keys.ssh_config()).expect("ssh_config");
    let config = keys.path("alias_config");
    std::fs::write(
        &config,
        format!(
            "Host vault-x\n  HostName 127.0.0.1\n  Port {}\n  User root\n{base}",
            sshd.port
        ),
    )
    .expect("write");
    let s = Scratch::new();
    s.runbook("runbook: a\nversion: 1\nhosts:\n  node: { address: vault-x }\nsteps:\n  - id: look\n    on: node\n    read_only: true\n    run: 'true'\n");
    let ran = s.exec(&[
        "--ssh-config",
        &config.display().to_string(),
        "--progress",
        "plain",
    ]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains(&format!("ssh-keyscan -p {} 127.0.0.1", sshd.port)),
        "{}",
        ran.stderr
    );
}

/// A headless run waiting at a gate: `show` says so with the live engine, `runs` lists it as
/// waiting at that gate, `resume` of the live run is refused as busy (exit 6, not 2), and
/// `logs --follow` prints until the run ends after `approve`.
#[test]
fn a_waiting_headless_run_is_shown_refused_as_busy_and_followed() {
    let s = Scratch::new();
    s.runbook(&GATED.replace(
        "run: echo prepared >> {D}/done",
        "run: echo prepared | tee -a {D}/done",
    ));
    let mut child = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("exec")
        .arg(s.path("runbook.yaml"))
        .args(["--progress", "plain"])
        .env("NO_COLOR", "1")
        .env("XDG_STATE_HOME", s.path("state"))
        .env_remove("RUNBOOK_RUNS_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Wait until the engine has journaled the wait.
    let t0 = std::time::Instant::now();
    let show = loop {
        let show = rb(&s, &["show", "last"]);
        if show.stdout.contains("waiting at gate `restart`") {
            break show;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{}{}",
            show.stdout,
            show.stderr
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(show.stdout.contains("is live"), "{}", show.stdout);
    assert!(
        show.stdout.contains("no terminal prompt"),
        "{}",
        show.stdout
    );
    let runs = rb(&s, &["runs", "--state", "waiting"]);
    assert!(
        runs.stdout.contains("waiting at restart"),
        "{}",
        runs.stdout
    );
    let busy = rb(&s, &["resume", "last"]);
    assert_eq!(busy.code, Some(6), "{}", busy.stderr);
    assert!(
        busy.stderr.contains("already being executed by pid"),
        "{}",
        busy.stderr
    );
    let follow = std::thread::spawn({
        let state = s.path("state");
        move || {
            runbook(["logs", "last", "--follow"])
                .env("XDG_STATE_HOME", &state)
                .run()
        }
    });
    let ok = rb(&s, &["approve", "last", "restart"]);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert!(ok.stdout.contains("took it"), "{}", ok.stdout);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    let logs = follow.join().expect("logs thread");
    assert_eq!(logs.code, Some(0), "{}", logs.stderr);
    assert!(logs.stdout.contains("prepared"), "{}", logs.stdout);
    let done = rb(&s, &["show", "last"]);
    assert!(
        done.stdout.contains("finished: success (exit 0)"),
        "{}",
        done.stdout
    );
    let one = rb(&s, &["logs", "last", "prep"]);
    assert_eq!(one.stdout, "prepared\n");
    let typo = rb(&s, &["logs", "last", "prpe"]);
    assert_eq!(typo.code, Some(2));
    assert!(
        typo.stderr.contains("did you mean `prep`?"),
        "{}",
        typo.stderr
    );
}

/// `show` after kill -9 in the middle of a step names it in doubt and gives the three ways on
/// (ask, rerun, skip); a gate answered "no" shows as declined, not as a step that never ran.
#[test]
fn show_names_the_step_in_doubt_and_the_declined_gate() {
    let s = Scratch::new();
    s.runbook(
        "runbook: k\nversion: 1\nsteps:\n  - id: slow\n    run: touch {D}/started; sleep 29.123\n",
    );
    let mut child = s
        .command(&["--progress", "plain"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for(&s.path("started"), Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    let runs = s.path("runs").display().to_string();
    let show = runbook(["show", "--runs-dir", &runs, "last"]).run();
    assert!(show.stdout.contains("slow  in-doubt"), "{}", show.stdout);
    assert!(
        show.stdout.contains("--rerun-in-doubt   (run slow again)"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout
            .contains("--skip-in-doubt    (treat slow as done)"),
        "{}",
        show.stdout
    );
    // The killed engine's step still runs (its own process group): `show` says so, and
    // `resume` refuses to start it again beside itself, even with --rerun-in-doubt.
    assert!(
        show.stdout
            .contains("Still running, started by the killed engine"),
        "{}",
        show.stdout
    );
    let again = runbook(["resume", "--runs-dir", &runs, "last", "--rerun-in-doubt"]).run();
    assert_eq!(again.code, Some(6), "{}", again.stderr);
    assert!(
        again
            .stderr
            .contains("the processes of `slow` started by the killed engine are still running"),
        "{}",
        again.stderr
    );
    let _ = Command::new("pkill").args(["-f", "sleep 29.123"]).status();
    // Once they are gone, resume goes on (the step in doubt runs again, as asked).
    let mut resumed = None;
    for _ in 0..50 {
        let r = runbook(["resume", "--runs-dir", &runs, "last", "--skip-in-doubt"]).run();
        if r.code != Some(6) {
            resumed = Some(r);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let resumed = resumed.expect("the group ended");
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);

    let d = Scratch::new();
    d.runbook("runbook: g\nversion: 1\nsteps:\n  - id: restart\n    confirm: Restart?\n    run: echo restarted\n");
    std::fs::write(d.path("answers.yaml"), "restart: no\n").expect("answers");
    let ran = d.exec(&["--answers", &d.path("answers.yaml").display().to_string()]);
    assert_eq!(ran.code, Some(3), "{}", ran.stderr);
    let show = runbook([
        "show",
        "--runs-dir",
        &d.path("runs").display().to_string(),
        "last",
    ])
    .run();
    assert!(show.stdout.contains("restart  declined"), "{}", show.stdout);
}
