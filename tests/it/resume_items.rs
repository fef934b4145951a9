//! Resume after kill -9 in the middle of a rollback that runs per item (`for_each`) or per
//! host (a fan-out over the harness's real sshd), and resume past a secret `ask:`: every undo
//! runs exactly once (only the unit in doubt is decided), and the steps reading a secret
//! answer asked again wait for it. Marker files get one line per execution; the engine is
//! killed at the exact moment a marker says (no timing).

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::exec::Scratch;
use crate::harness::{Ran, runbook, settle};
use crate::sshd::{Keys, Sshd};

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(60), "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read(dir: &std::path::Path, f: &str) -> String {
    std::fs::read_to_string(dir.join(f)).unwrap_or_default()
}

/// How many lines of `dir/f` are exactly `line`.
fn times(dir: &std::path::Path, f: &str, line: &str) -> usize {
    read(dir, f).lines().filter(|l| *l == line).count()
}

/// The one run under `runs`.
fn the_run(runs: &std::path::Path) -> String {
    std::fs::read_dir(runs)
        .expect("runs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| !n.starts_with('.'))
        .expect("a run")
}

fn resume(runs: &std::path::Path, id: &str, extra: &[&str]) -> Ran {
    let mut args = vec![
        "resume".to_string(),
        id.to_string(),
        "--runs-dir".into(),
        runs.display().to_string(),
        "--progress".into(),
        "plain".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    runbook(args).run()
}

/// Kills the engine (`kill -9`) once `dir/pid` names the undo that hangs, then that undo's
/// process (it was started by this test's run), and waits until nothing of the run is left.
fn kill_during_undo(mut engine: Child, dir: &std::path::Path, runs: &std::path::Path) {
    let pid = || read(dir, "pid").trim().parse::<i32>().unwrap_or(0);
    until("the undo that hangs started", || pid() > 0);
    engine.kill().expect("kill -9");
    let _ = engine.wait();
    // SAFETY: a process this test's run started (the hanging undo).
    unsafe { libc::kill(pid(), libc::SIGKILL) };
    settle(runs);
    // The undo runs through when it runs again.
    std::fs::write(dir.join("go"), "").expect("go");
}

const FOR_EACH: &str = r#"
runbook: undo-items
version: 1
steps:
  - id: fe
    for_each: [i1, i2, i3]
    run: echo "do {{ item }}" >> {D}/do
    rollback: echo "rb {{ item }}" >> {D}/rb; if [ {{ item }} = i2 ] && [ ! -e {D}/go ]; then echo $$ > {D}/pid; exec sleep 60; fi
  - id: boom
    needs: [fe]
    run: exit 1
"#;

/// D2/D3: kill -9 while item i2's undo runs. `--skip-in-doubt` skips only i2's undo (the
/// undo that finished before does not run again, the one never started runs once);
/// `--rerun-in-doubt` runs only i2's again. Headless without a flag names the item.
#[test]
fn for_each_rollback_killed_mid_item_resumes_per_item() {
    for (flag, i2) in [("--skip-in-doubt", 1), ("--rerun-in-doubt", 2)] {
        let s = Scratch::new();
        s.runbook(FOR_EACH);
        let dir = s.dir.path();
        let runs = s.path("runs");
        let engine = s
            .command(&["--progress", "plain"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        kill_during_undo(engine, dir, &runs);
        let id = the_run(&runs);
        let headless = resume(&runs, &id, &[]);
        assert_eq!(headless.code, Some(3), "{}", headless.stderr);
        assert!(
            headless
                .stderr
                .contains("the rollback of item 1 of `fe` was in flight"),
            "{}",
            headless.stderr
        );
        let r = resume(&runs, &id, &[flag]);
        assert_eq!(r.code, Some(1), "{flag}: {}", r.stderr);
        for item in ["i1", "i2", "i3"] {
            assert_eq!(times(dir, "do", &format!("do {item}")), 1, "{flag}");
        }
        assert_eq!(times(dir, "rb", "rb i1"), 1, "{flag}: {}", read(dir, "rb"));
        assert_eq!(times(dir, "rb", "rb i3"), 1, "{flag}: {}", read(dir, "rb"));
        assert_eq!(times(dir, "rb", "rb i2"), i2, "{flag}: {}", read(dir, "rb"));
        assert!(
            r.stderr.contains("rollback of fe item 1 was in flight"),
            "{flag}: {}",
            r.stderr
        );
        // The journal says which item undos ran.
        let journal = read(&runs.join(&id), "journal.jsonl");
        let finished = journal
            .lines()
            .filter(|l| l.contains("\"rollback-item-finished\""))
            .count();
        // i3 and i1 once each, and i2 again when re-run.
        assert_eq!(finished, 1 + i2, "{flag}: {journal}");
    }
}

/// D2/D3 over SSH: a fan-out over three hosts of the harness's real sshd, undone host by
/// host on each host; kill -9 while the second host's undo runs.
#[test]
fn fan_out_rollback_killed_mid_host_resumes_per_host() {
    crate::sshd::require();
    let keys = Keys::new();
    let addrs = ["127.0.0.41", "127.0.0.42", "127.0.0.43"];
    let sshd = Sshd::start(&keys, &addrs, "host");
    for a in addrs {
        keys.trust(a, sshd.port, "host");
    }
    for (k, (flag, n2)) in [("--skip-in-doubt", 1), ("--rerun-in-doubt", 2)]
        .into_iter()
        .enumerate()
    {
        let dir = keys.path(&format!("work{k}"));
        std::fs::create_dir_all(&dir).expect("work dir");
        let runs = dir.join("runs");
        let yaml = format!(
            r#"
runbook: undo-hosts
version: 1
hosts:
  h1: {{ address: 127.0.0.41, port: {p}, user: root }}
  h2: {{ address: 127.0.0.42, port: {p}, user: root }}
  h3: {{ address: 127.0.0.43, port: {p}, user: root }}
groups:
  nodes: [h1, h2, h3]
steps:
  - id: fan
    on: nodes
    serial: 1
    run: echo "do {{{{ host.name }}}}" >> {d}/do
    rollback: echo "rb {{{{ host.name }}}}" >> {d}/rb; if [ {{{{ host.name }}}} = h2 ] && [ ! -e {d}/go ]; then echo $$ > {d}/pid; exec sleep 60; fi
  - id: boom
    needs: [fan]
    run: exit 1
"#,
            p = sshd.port,
            d = dir.display()
        );
        let file = dir.join("rb.yaml");
        std::fs::write(&file, yaml).expect("write");
        let engine = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
            .arg("exec")
            .arg(&file)
            .arg("--ssh-config")
            .arg(keys.ssh_config())
            .arg("--runs-dir")
            .arg(&runs)
            .args(["--progress", "plain"])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        kill_during_undo(engine, &dir, &runs);
        let id = the_run(&runs);
        let ssh = keys.ssh_config().display().to_string();
        let r = resume(&runs, &id, &[flag, "--ssh-config", &ssh]);
        assert_eq!(r.code, Some(1), "{flag}: {}", r.stderr);
        for h in ["h1", "h2", "h3"] {
            assert_eq!(times(&dir, "do", &format!("do {h}")), 1, "{flag}");
        }
        let rb = read(&dir, "rb");
        assert_eq!(times(&dir, "rb", "rb h1"), 1, "{flag}: {rb}\n{}", r.stderr);
        assert_eq!(times(&dir, "rb", "rb h3"), 1, "{flag}: {rb}\n{}", r.stderr);
        assert_eq!(times(&dir, "rb", "rb h2"), n2, "{flag}: {rb}\n{}", r.stderr);
        assert!(
            r.stderr.contains("rollback of fan host h2 was in flight"),
            "{flag}: {}",
            r.stderr
        );
    }
}

/// D9: a run paused at a gate after a secret `ask:` was answered; on resume the ask is asked
/// again and the steps after it (past the restored `use`) wait for the new answer, which
/// another process gives with `runbook answer --stdin`; the run completes, nothing undone.
#[test]
fn resume_past_a_secret_ask_waits_for_the_new_answer() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: reask
version: 1
defaults: { gate_timeout: 1s }
steps:
  - id: q
    ask: { prompt: "The token", secret: true, timeout: 120s }
  - id: use
    needs: [q]
    run: printf '%s\n' "{{ steps.q.outputs.value }}" >> {D}/use
    rollback: echo undo >> {D}/undo
  - id: gate
    needs: [use]
    confirm: Go on?
    run: echo gate >> {D}/gate
  - id: use2
    needs: [gate]
    run: printf '%s\n' "{{ steps.q.outputs.value }}" >> {D}/use2
"#,
    );
    let runs = s.path("runs");
    let first = s
        .command(&["--progress", "plain"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let id = crate::ask::wait_journal(&s, "\"gate-waiting\"", 1);
    let (code, out) = crate::ask::answer(&s, None, &[&id, "q", "--stdin"], Some("FirstTok1\n"));
    assert_eq!(code, 0, "{out}");
    let paused = first.wait_with_output().expect("first run");
    let err = String::from_utf8_lossy(&paused.stderr).into_owned();
    assert_eq!(paused.status.code(), Some(3), "{err}");
    assert_eq!(s.read("use"), "FirstTok1\n");
    assert_eq!(s.read("gate"), "");
    let second = runbook_child(&[
        "resume",
        &id,
        "--runs-dir",
        &runs.display().to_string(),
        "--yes",
        "--progress",
        "plain",
    ]);
    // Asked again: the third `gate-waiting` (the first ask, the gate, the ask again).
    crate::ask::wait_journal(&s, "\"gate-waiting\"", 3);
    let (code, out) = crate::ask::answer(&s, None, &[&id, "q", "--stdin"], Some("SecondTok2\n"));
    assert_eq!(code, 0, "the second answer was refused: {out}");
    let done = second.wait_with_output().expect("resume");
    let err = String::from_utf8_lossy(&done.stderr).into_owned();
    assert_eq!(done.status.code(), Some(0), "{err}");
    assert_eq!(s.read("use"), "FirstTok1\n", "use ran once");
    assert_eq!(s.read("gate"), "gate\n");
    assert_eq!(s.read("use2"), "SecondTok2\n", "{err}");
    assert_eq!(s.read("undo"), "", "nothing was undone: {err}");
}

fn runbook_child(args: &[&str]) -> Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// `runbook rollback` after exit 4 (one item's undo failed): only that item's undo runs
/// again; the undos that worked are not run twice.
#[test]
fn runbook_rollback_after_exit_4_reruns_only_the_failed_item_undo() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: undo-fail
version: 1
steps:
  - id: fe
    for_each: [i1, i2, i3]
    run: echo "do {{ item }}" >> {D}/do
    rollback: echo "rb {{ item }}" >> {D}/rb; if [ {{ item }} = i2 ] && [ ! -e {D}/go ]; then exit 7; fi
  - id: boom
    needs: [fe]
    run: exit 1
"#,
    );
    let dir = s.dir.path();
    let runs = s.path("runs");
    let first = s.exec(&["--progress", "plain"]);
    assert_eq!(first.code, Some(4), "{}", first.stderr);
    let id = the_run(&runs);
    std::fs::write(dir.join("go"), "").expect("go");
    let r = runbook([
        "rollback".to_string(),
        id,
        "--runs-dir".into(),
        runs.display().to_string(),
        "--progress".into(),
        "plain".into(),
    ])
    .run();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let rb = read(dir, "rb");
    assert_eq!(times(dir, "rb", "rb i1"), 1, "{rb}");
    assert_eq!(times(dir, "rb", "rb i3"), 1, "{rb}");
    assert_eq!(times(dir, "rb", "rb i2"), 2, "{rb}");
}
