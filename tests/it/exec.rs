//! `runbook exec` on the local machine: real processes, real signals, a real pseudo-terminal.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Ran, runbook};

/// A scratch directory holding a runbook and whatever its steps write.
pub(crate) struct Scratch {
    pub(crate) dir: tempfile::TempDir,
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("tmp"),
        }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `runbook.yaml` with `{D}` replaced by the scratch directory.
    pub(crate) fn runbook(&self, yaml: &str) -> PathBuf {
        let p = self.path("runbook.yaml");
        std::fs::write(
            &p,
            yaml.replace("{D}", &self.dir.path().display().to_string()),
        )
        .expect("write runbook");
        p
    }

    pub(crate) fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    /// Runs `runbook exec` on the scratch runbook with `args`, runs recorded inside the scratch dir.
    pub(crate) fn exec(&self, args: &[&str]) -> Ran {
        let mut all: Vec<String> = vec![
            "exec".into(),
            self.path("runbook.yaml").display().to_string(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        all.push("--runs-dir".into());
        all.push(self.path("runs").display().to_string());
        runbook(all).run()
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_runbook"));
        c.arg("exec")
            .arg(self.path("runbook.yaml"))
            .args(args)
            .arg("--runs-dir")
            .arg(self.path("runs"))
            .env("NO_COLOR", "1");
        c
    }
}

pub(crate) fn events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub(crate) fn wait_for(path: &Path, limit: Duration) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(t0.elapsed() < limit, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is a live process (a zombie waiting for a reaper that never comes, as with
/// some container inits, counts as dead: it no longer runs).
pub(crate) fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .next()
                .unwrap_or_default();
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

const CHAIN: &str = r#"
runbook: chain
version: 1
inputs:
  fail_at: { default: none }
steps:
  - id: one
    run: echo one >> {D}/done
    rollback: echo undo-one >> {D}/undo
  - id: two
    needs: [one]
    run: echo two >> {D}/done
    rollback: echo undo-two >> {D}/undo
  - id: three
    needs: [two]
    run: '[ {{ fail_at }} != three ] && echo three >> {D}/done'
    rollback: echo undo-three >> {D}/undo
"#;

#[test]
fn success_runs_every_step_and_no_rollback() {
    let s = Scratch::new();
    s.runbook(CHAIN);
    let ran = s.exec(&[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(s.read("done"), "one\ntwo\nthree\n");
    assert_eq!(s.read("undo"), "");
    assert!(ran.stderr.contains("✔ run succeeded"));
}

#[test]
fn failure_rolls_back_in_reverse_order_of_completion() {
    let s = Scratch::new();
    s.runbook(CHAIN);
    let ran = s.exec(&["-i", "fail_at=three"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert_eq!(s.read("done"), "one\ntwo\n");
    assert_eq!(s.read("undo"), "undo-two\nundo-one\n");
    assert!(
        ran.stderr
            .contains("step `three` failed: exited with code 1"),
        "{}",
        ran.stderr
    );
}

#[test]
fn failing_rollback_is_reported_and_unwinding_continues() {
    let s = Scratch::new();
    s.runbook(&CHAIN.replace(
        "rollback: echo undo-two >> {D}/undo",
        "rollback: echo undo-two >> {D}/undo; exit 7",
    ));
    let ran = s.exec(&["-i", "fail_at=three"]);
    assert_eq!(ran.code, Some(4), "{}", ran.stderr);
    assert_eq!(s.read("undo"), "undo-two\nundo-one\n");
    assert!(
        ran.stderr.contains("rollback exited with code 7"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("rollback incomplete: needs a human"));
}

#[test]
fn no_rollback_is_loud_and_exits_4() {
    let s = Scratch::new();
    s.runbook(CHAIN);
    let ran = s.exec(&["-i", "fail_at=three", "--no-rollback"]);
    assert_eq!(ran.code, Some(4), "{}", ran.stderr);
    assert_eq!(s.read("undo"), "");
    assert!(ran.stderr.contains("!!! --no-rollback"));
    assert!(
        ran.stderr
            .contains("NOT undoing 2 completed step(s): two, one"),
        "{}",
        ran.stderr
    );
}

const GATED: &str = r#"
runbook: gated
version: 1
steps:
  - id: prepare
    run: echo prepared >> {D}/done
    rollback: echo undo-prepare >> {D}/undo
  - id: restart
    needs: [prepare]
    confirm: Restart the service?
    run: echo restarted >> {D}/done
"#;

#[test]
fn declined_gate_exits_3_and_rolls_back() {
    let s = Scratch::new();
    s.runbook(GATED);
    std::fs::write(s.path("answers.yaml"), "restart: no\n").expect("answers");
    let ans = s.path("answers.yaml").display().to_string();
    let ran = s.exec(&["--answers", &ans]);
    assert_eq!(ran.code, Some(3), "{}", ran.stderr);
    assert_eq!(s.read("done"), "prepared\n");
    assert_eq!(s.read("undo"), "undo-prepare\n");
    assert!(
        ran.stderr.contains("restart: declined by"),
        "{}",
        ran.stderr
    );
}

#[test]
fn headless_gate_without_answer_stops_promptly_with_how_to_answer() {
    let s = Scratch::new();
    s.runbook(GATED);
    let t0 = Instant::now();
    let ran = s.exec(&["--no-wait"]);
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(ran.code, Some(3), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("runbook approve --runs-dir"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr
            .contains("resume with: runbook resume --runs-dir"),
        "{}",
        ran.stderr
    );
    assert_eq!(s.read("done"), "prepared\n", "the gated step must not run");
    let approved = s.exec(&["--approve", "restart"]);
    assert_eq!(approved.code, Some(0), "{}", approved.stderr);
    assert!(approved.stderr.contains("approved by"));
}

#[test]
fn manual_steps_need_an_explicit_answer() {
    let s = Scratch::new();
    s.runbook("runbook: m\nversion: 1\nsteps:\n  - id: fix\n    manual: Replace the disk\n  - id: after\n    needs: [fix]\n    run: echo after >> {D}/done\n");
    let yes = s.exec(&["--yes", "--no-wait"]);
    assert_eq!(
        yes.code,
        Some(3),
        "--yes must not confirm manual work:\n{}",
        yes.stderr
    );
    assert!(
        yes.stderr.contains("fix is waiting for an answer"),
        "{}",
        yes.stderr
    );
    assert_eq!(s.read("done"), "");
    let ok = s.exec(&["--approve", "fix"]);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert_eq!(s.read("done"), "after\n");
}

#[test]
fn timeout_kills_the_whole_process_tree() {
    let s = Scratch::new();
    s.runbook("runbook: t\nversion: 1\nsteps:\n  - id: slow\n    timeout: 1s\n    run: sh -c 'sleep 300 & echo $! > {D}/pid; wait'\n");
    let t0 = Instant::now();
    let ran = s.exec(&[]);
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.stderr.contains("timed out after 1s"), "{}", ran.stderr);
    let pid: i32 = s.read("pid").trim().parse().expect("pid written");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!alive(pid), "grandchild sleep {pid} survived the timeout");
}

#[test]
fn retries_are_counted_with_backoff() {
    let s = Scratch::new();
    s.runbook("runbook: r\nversion: 1\nsteps:\n  - id: flaky\n    retries: 3\n    backoff: 100ms\n    run: echo x >> {D}/count; [ $(wc -l < {D}/count) -ge 3 ]\n");
    let ran = s.exec(&["--output", "json"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(s.read("count").lines().count(), 3);
    let retries: Vec<_> = events(&ran.stdout)
        .into_iter()
        .filter(|e| e["event"] == "retry")
        .collect();
    assert_eq!(retries.len(), 2);
    assert_eq!(retries[0]["delay_ms"], 100);
    assert_eq!(retries[1]["delay_ms"], 200);
}

#[test]
fn when_skips_and_outputs_flow_to_later_steps() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: w
version: 1
steps:
  - id: classify
    run: "echo 'kernel: Out of memory: Killed process 4242 (vault)'"
    outputs:
      cause: "'oom' if 'Out of memory' in stdout else 'unknown'"
  - id: on-oom
    needs: [classify]
    when: steps.classify.outputs.cause == 'oom'
    run: echo oom-branch >> {D}/done
  - id: on-other
    needs: [classify]
    when: steps.classify.outputs.cause != 'oom'
    run: echo other-branch >> {D}/done
  - id: join
    needs: [on-oom, on-other]
    run: echo joined-{{ steps.classify.outputs.cause }} >> {D}/done
"#,
    );
    let ran = s.exec(&[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(s.read("done"), "oom-branch\njoined-oom\n");
    assert!(
        ran.stderr
            .contains("⊘ skip on-other: `steps.classify.outputs.cause != 'oom'` is false"),
        "{}",
        ran.stderr
    );
}

#[test]
fn for_each_fans_out_and_until_stops_early() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: f
version: 1
steps:
  - id: each
    for_each: [a, b, c]
    run: echo {{ item }}-{{ item_index }} >> {D}/done
  - id: until
    needs: [each]
    for_each:
      items: [1, 2, 3, 4, 5]
      until: stdout | trim | int >= 3
    run: echo {{ item }}
"#,
    );
    let ran = s.exec(&[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(s.read("done"), "a-0\nb-1\nc-2\n");
    assert_eq!(ran.stderr.matches("▶ until [").count(), 3, "{}", ran.stderr);
}

#[test]
fn for_each_until_that_never_holds_fails() {
    let s = Scratch::new();
    s.runbook("runbook: f\nversion: 1\nsteps:\n  - id: until\n    for_each: { items: [1, 2], until: 'false' }\n    run: echo {{ item }}\n");
    let ran = s.exec(&[]);
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.stderr
            .contains("ran out of items after 2 of 2 without `false` becoming true"),
        "{}",
        ran.stderr
    );
}

#[test]
fn independent_steps_run_in_parallel() {
    // Each step succeeds only if it sees the other's marker while it is still running:
    // proof of overlap that does not depend on timing.
    let s = Scratch::new();
    s.runbook(r#"
runbook: p
version: 1
steps:
  - id: a
    run: touch {D}/a; for i in $(seq 50); do [ -f {D}/b ] && sleep 1 && exit 0; sleep 0.1; done; exit 1
  - id: b
    run: touch {D}/b; for i in $(seq 50); do [ -f {D}/a ] && sleep 1 && exit 0; sleep 0.1; done; exit 1
"#);
    let t0 = Instant::now();
    let ran = s.exec(&["--parallel", "2"]);
    let took = t0.elapsed();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        took < Duration::from_secs(4),
        "two 1-second steps took {took:?}"
    );
}

#[test]
fn parallel_one_runs_steps_one_at_a_time() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: p
version: 1
steps:
  - id: a
    run: touch {D}/a; sleep 0.3; [ ! -f {D}/b ]
  - id: b
    run: touch {D}/b; sleep 0.3; [ -f {D}/a ]
"#,
    );
    let ran = s.exec(&["--parallel", "1"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
}

#[test]
fn expect_decides_success() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: e
version: 1
steps:
  - id: grep
    run: "echo '{\"sealed\": true, \"t\": 3}'"
    expect:
      exit_code: [0, 1]
      stdout: sealed
      json: { t: 3 }
  - id: wrong
    needs: [grep]
    run: "echo '{\"sealed\": true}'"
    expect:
      json: { sealed: false }
"#,
    );
    let ran = s.exec(&[]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.stderr.contains("✔ ok grep"), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("JSON path sealed is true, expected false"),
        "{}",
        ran.stderr
    );
}

#[test]
fn sigint_kills_the_running_step_and_rolls_back() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: s
version: 1
steps:
  - id: first
    run: echo first >> {D}/done
    rollback: echo undo-first >> {D}/undo
  - id: long
    needs: [first]
    run: sh -c 'sleep 300 & echo $! > {D}/pid; wait'
"#,
    );
    let mut child = s
        .command(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for(&s.path("pid"), Duration::from_secs(20));
    // SAFETY: plain kill(2) on the child we started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = wait_output(&mut child, Duration::from_secs(30));
    assert_eq!(out.0, Some(3), "{}", out.1);
    assert_eq!(s.read("undo"), "undo-first\n");
    let pid: i32 = s.read("pid").trim().parse().expect("pid");
    assert!(!alive(pid), "the step's sleep survived Ctrl-C");
    assert!(out.1.contains("interrupted by a signal"), "{}", out.1);
}

#[test]
fn second_sigint_stops_the_rollback_and_says_what_did_not_run() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: s2
version: 1
steps:
  - id: a
    run: "true"
    rollback: echo undo-a >> {D}/undo
  - id: b
    needs: [a]
    run: "true"
    rollback: touch {D}/rolling; sleep 30
  - id: c
    needs: [b]
    run: touch {D}/c-running; sleep 300
"#,
    );
    let mut child = s
        .command(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for(&s.path("c-running"), Duration::from_secs(20));
    // SAFETY: plain kill(2) on the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    wait_for(&s.path("rolling"), Duration::from_secs(20));
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = wait_output(&mut child, Duration::from_secs(30));
    assert_eq!(out.0, Some(4), "{}", out.1);
    assert_eq!(
        s.read("undo"),
        "",
        "rollback of a must not run after the second signal"
    );
    assert!(
        out.1
            .contains("rollback of a NOT run: stopped by a second signal"),
        "{}",
        out.1
    );
}

pub(crate) fn wait_output(
    child: &mut std::process::Child,
    limit: Duration,
) -> (Option<i32>, String) {
    use std::io::Read;
    use wait_timeout::ChildExt;
    let status = child.wait_timeout(limit).expect("wait");
    let Some(status) = status else {
        let _ = child.kill();
        panic!("runbook did not exit within {limit:?}");
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (status.code(), err)
}

#[test]
fn secret_canary_never_leaves_the_engine() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: secret
version: 1
inputs:
  token: { secret: true, from_env: CANARY_TOKEN }
steps:
  - id: echo
    run: echo "plain {{ token }}"; printf %s {{ token }} | base64; echo "$RUNBOOK_SECRET_TOKEN" >&2
  - id: fail
    needs: [echo]
    run: echo "about to fail with {{ token }}"; exit 3
"#,
    );
    let canary = "canary-7f3a9b21-SECRET";
    let mut all = vec![
        "exec".to_string(),
        s.path("runbook.yaml").display().to_string(),
        "--output".into(),
        "json".into(),
        "--runs-dir".into(),
        s.path("runs").display().to_string(),
    ];
    all.push("--progress".into());
    all.push("plain".into());
    let ran = runbook(all).env("CANARY_TOKEN", canary).run();
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(canary);
    for text in [&ran.stdout, &ran.stderr] {
        assert!(!text.contains(canary), "canary leaked:\n{text}");
        assert!(
            !text.contains(b64.trim_end_matches('=')),
            "base64 canary leaked:\n{text}"
        );
    }
    assert!(ran.stdout.contains("plain ********"), "{}", ran.stdout);
    // The command line itself only names the variable.
    assert!(
        ran.stderr.contains("\"${RUNBOOK_SECRET_TOKEN}\""),
        "{}",
        ran.stderr
    );
}

#[test]
fn secret_on_the_command_line_is_refused() {
    let s = Scratch::new();
    s.runbook("runbook: s\nversion: 1\ninputs:\n  token: { secret: true }\nsteps:\n  - id: a\n    run: echo {{ token }}\n");
    let ran = s.exec(&["-i", "token=hunter22"]);
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr
            .contains("is secret and is refused on the command line")
    );
    assert!(!ran.stderr.contains("hunter22"));
}

#[test]
fn json_event_stream_names_are_stable() {
    let s = Scratch::new();
    s.runbook(CHAIN);
    let ran = s.exec(&["--output", "json", "-i", "fail_at=three"]);
    let kinds: Vec<String> = events(&ran.stdout)
        .iter()
        .map(|e| e["event"].as_str().unwrap_or_default().to_string())
        .collect();
    for k in [
        "run-started",
        "step-started",
        "step-finished",
        "rollback-started",
        "rollback-finished",
        "run-finished",
    ] {
        assert!(kinds.iter().any(|x| x == k), "no {k} event in {kinds:?}");
    }
    let last = events(&ran.stdout).pop().expect("events");
    assert_eq!(last["event"], "run-finished");
    assert_eq!(last["exit_code"], 1);
    assert!(last["at"].as_str().is_some_and(|t| t.ends_with('Z')));
}

#[test]
fn big_output_is_streamed_to_a_log_not_kept() {
    let s = Scratch::new();
    s.runbook("runbook: big\nversion: 1\nsteps:\n  - id: big\n    run: head -c 20000000 /dev/zero | tr '\\0' 'x' | fold -w 100\n");
    let ran = s.exec(&["--output", "json"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let runs: Vec<_> = std::fs::read_dir(s.path("runs"))
        .expect("runs")
        .flatten()
        .collect();
    let log = runs[0].path().join("steps/big.stdout.log");
    let meta = std::fs::metadata(&log).expect("per-step log");
    assert_eq!(
        meta.len(),
        20_000_000 + 199_999,
        "fold adds no newline after the last line"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

/// Gates in a real pseudo-terminal: the operator answers yes, then no.
#[test]
fn gates_in_a_real_terminal() {
    for (answer, code, done) in [("y", 0, "prepared\nrestarted\n"), ("n", 3, "prepared\n")] {
        let s = Scratch::new();
        s.runbook(GATED);
        let mut cmd = s.command(&["--progress", "plain"]);
        cmd.env("TERM", "dumb");
        let mut p = rexpect::session::spawn_command(cmd, Some(30_000)).expect("spawn in pty");
        p.exp_string("GATE: restart").expect("gate shown");
        p.exp_string("Restart the service?").expect("gate text");
        p.exp_string("[y]es / [n]o / [s]how details / [a]bort")
            .expect("choices");
        p.send_line("s").expect("details");
        p.exp_string("echo restarted")
            .expect("details show the command");
        p.send_line(answer).expect("answer");
        if answer == "n" {
            p.exp_string("roll back now?")
                .expect("rollback confirmation");
            p.send_line("y").expect("confirm rollback");
        }
        p.exp_eof().expect("exit");
        let status = p.process.wait().expect("status");
        assert!(
            format!("{status:?}").contains(&format!(", {code})")),
            "{answer}: {status:?}"
        );
        assert_eq!(s.read("done"), done);
    }
}

/// A signal while a prompt waits (Ctrl-C typed at it, SIGTERM, SIGHUP when the terminal or
/// the SSH session to the jump box goes away) withdraws the prompt and unwinds: the run ends
/// (exit 3) with the completed step rolled back, instead of waiting for a line nobody types.
#[test]
fn a_signal_at_a_prompt_withdraws_it_and_unwinds() {
    for (prompt, how) in [
        ("gate", "ctrl-c"),
        ("gate", "TERM"),
        ("gate", "HUP"),
        ("roll back now?", "ctrl-c"),
        ("roll back now?", "HUP"),
    ] {
        let s = Scratch::new();
        s.runbook(GATED);
        let mut cmd = s.command(&["--progress", "plain"]);
        cmd.env("TERM", "dumb");
        let mut p = rexpect::session::spawn_command(cmd, Some(30_000)).expect("spawn in pty");
        p.exp_string("(then Enter)").expect("gate prompt");
        if prompt != "gate" {
            p.send_line("n").expect("decline");
            p.exp_string("roll back now?").expect("rollback prompt");
        }
        match how {
            "ctrl-c" => p.send_control('c').expect("ctrl-c"),
            sig => {
                let n = if sig == "TERM" {
                    libc::SIGTERM
                } else {
                    libc::SIGHUP
                };
                // SAFETY: kill(2) on the engine we spawned.
                unsafe { libc::kill(p.process.child_pid.as_raw(), n) };
            }
        }
        p.exp_eof()
            .unwrap_or_else(|e| panic!("{prompt}/{how}: the engine did not end: {e}"));
        let status = p.process.wait().expect("status");
        assert!(
            format!("{status:?}").contains(", 3)"),
            "{prompt}/{how}: {status:?}"
        );
        assert_eq!(s.read("done"), "prepared\n", "{prompt}/{how}");
        assert_eq!(s.read("undo"), "undo-prepare\n", "{prompt}/{how}");
    }
}

/// A secret not in the environment is asked for with a hidden prompt on a terminal; what is
/// typed is neither echoed nor shown later.
#[test]
fn secrets_are_prompted_for_without_echo() {
    let s = Scratch::new();
    s.runbook("runbook: p\nversion: 1\ninputs:\n  token: { secret: true, description: the API token }\nsteps:\n  - id: use\n    run: printf '%s' {{ token }} | wc -c; echo {{ token }}\n");
    let mut cmd = s.command(&["--progress", "plain"]);
    cmd.env("TERM", "dumb");
    let mut p = rexpect::session::spawn_command(cmd, Some(30_000)).expect("spawn in pty");
    // A secret that is not `required` is asked right before the step that uses it.
    p.exp_string("input `token` (the API token)")
        .expect("prompt");
    p.exp_string("hidden input, never recorded")
        .expect("hidden");
    p.send_line("typed-canary-4242").expect("type");
    let rest = p.exp_eof().expect("exit");
    assert!(!rest.contains("typed-canary-4242"), "{rest}");
    // (rexpect decodes bytes one by one, so match around the box-drawing separator.)
    assert!(
        rest.contains(" 17\r\n"),
        "the command got the whole value: {rest}"
    );
    assert!(rest.contains(" ********\r\n"), "the echo is masked: {rest}");
}

#[test]
fn for_each_items_run_concurrently_with_max_parallel() {
    // Each item succeeds only once it sees all three markers: proof of overlap without timing.
    let s = Scratch::new();
    s.runbook(r#"
runbook: fe
version: 1
steps:
  - id: each
    for_each: [a, b, c]
    max_parallel: 3
    run: touch {D}/m-{{ item }}; for i in $(seq 50); do [ $(ls {D} | grep -c '^m-') = 3 ] && exit 0; sleep 0.1; done; exit 1
  - id: after
    needs: [each]
    run: echo {{ steps.each['items'] | length }} items
"#);
    let ran = s.exec(&[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stderr.contains("after │ 3 items"), "{}", ran.stderr);
    let failing = Scratch::new();
    failing.runbook("runbook: fe\nversion: 1\nsteps:\n  - id: each\n    for_each: [1, 2, 3, 4, 5, 6]\n    max_parallel: 2\n    run: '[ {{ item }} != 2 ] && echo {{ item }} >> {D}/done'\n");
    let ran = failing.exec(&[]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        failing.read("done").lines().count() < 6,
        "no new item starts after a failure"
    );
}
