//! Run safety (issue 11): one live engine per run, a journal that survives torn writes and a
//! full disk, truncation evidence, redaction that never touches the journal's structure,
//! signals that unwind, and ownership checks. Real processes, real signals, a real tmpfs.

use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::exec::{Scratch, alive, wait_output};
use crate::harness::{Ran, runbook};

fn run_ids(s: &Scratch) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(s.path("runs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn rd(s: &Scratch) -> String {
    s.path("runs").display().to_string()
}

fn journal(s: &Scratch, id: &str) -> String {
    s.read(&format!("runs/{id}/journal.jsonl"))
}

fn spawn(s: &Scratch, args: &[&str]) -> Child {
    s.command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(30), "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The first run's id once its journal contains `needle`.
fn wait_journal(s: &Scratch, needle: &str) -> String {
    let mut id = String::new();
    until(needle, || {
        if let Some(i) = run_ids(s).into_iter().next() {
            id = i;
            journal(s, &id).contains(needle)
        } else {
            false
        }
    });
    id
}

fn resume(s: &Scratch, id: &str, extra: &[&str]) -> Ran {
    let mut args = vec!["resume", id, "--runs-dir"];
    let dir = rd(s);
    args.push(&dir);
    args.extend_from_slice(extra);
    runbook(args).run()
}

fn runs_line(s: &Scratch, id: &str) -> String {
    let out = runbook(["runs", "--runs-dir", &rd(s)]).run();
    out.stdout
        .lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_default()
        .to_string()
}

fn verify(s: &Scratch, id: &str) -> Ran {
    runbook(["transcript", id, "--runs-dir", &rd(s), "--verify"]).run()
}

fn count(s: &Scratch, file: &str) -> usize {
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
    run: echo "failover by pid $$" >> {D}/failover
"#;

/// Issue 11.1: `resume` of a run whose engine is alive (waiting at a gate) is refused, naming
/// the holder; `runs` tells running / interrupted / waiting at GATE apart.
#[test]
fn resume_of_a_live_run_is_refused_naming_the_holder() {
    let s = Scratch::new();
    s.runbook(GATED);
    let mut child = spawn(&s, &["--progress", "plain"]);
    let id = wait_journal(&s, "\"event\":\"gate-waiting\"");
    let r = resume(&s, &id, &["--yes", "--rerun-in-doubt"]);
    assert_eq!(r.code, Some(6), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "run is already being executed by pid {}",
            child.id()
        )),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("root@"), "{}", r.stderr);
    assert!(
        runs_line(&s, &id).contains("waiting at failover"),
        "{}",
        runs_line(&s, &id)
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        runs_line(&s, &id).contains("interrupted"),
        "{}",
        runs_line(&s, &id)
    );
    let r = resume(&s, &id, &["--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(count(&s, "failover"), 1);
    assert_eq!(count(&s, "prepare"), 1);
    assert!(
        runs_line(&s, &id).contains("success (0)"),
        "{}",
        runs_line(&s, &id)
    );
    // A run paused at its gate (--no-wait) is `paused at failover`.
    let s = Scratch::new();
    s.runbook(GATED);
    let ran = s.exec(&["--no-wait"]);
    assert_eq!(ran.code, Some(3), "{}", ran.stderr);
    let id = run_ids(&s).remove(0);
    assert!(
        runs_line(&s, &id).contains("paused") && runs_line(&s, &id).contains("failover"),
        "{}",
        runs_line(&s, &id)
    );
}

const SLOW: &str = r#"
runbook: slow
version: 1
steps:
  - id: a
    run: echo a >> {D}/a; touch {D}/in-a; sleep 1
  - id: b
    needs: [a]
    run: echo b >> {D}/b
"#;

/// Issue 11.1: two engines racing to resume one interrupted run: exactly one runs it.
#[test]
fn two_engines_racing_on_one_run() {
    let s = Scratch::new();
    s.runbook(SLOW);
    let mut child = spawn(&s, &["--progress", "plain"]);
    until("a started", || s.path("in-a").exists());
    let _ = child.kill();
    let _ = child.wait();
    crate::harness::settle(&s.path("runs"));
    let id = run_ids(&s).remove(0);
    std::fs::remove_file(s.path("in-a")).expect("rm");
    let dir = rd(&s);
    let start = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(["resume", &id, "--runs-dir", &dir, "--rerun-in-doubt"])
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let mut one = start();
    let mut two = start();
    let (c1, e1) = wait_output(&mut one, Duration::from_secs(30));
    let (c2, e2) = wait_output(&mut two, Duration::from_secs(30));
    let mut codes = [c1, c2];
    codes.sort();
    // One resumed to the end; the other was refused (a live engine), or found it finished.
    assert!(
        codes == [Some(0), Some(6)] || codes == [Some(0), Some(2)],
        "{codes:?}: {e1}\n{e2}"
    );
    let loser = if c1 == Some(0) { &e2 } else { &e1 };
    assert!(
        loser.contains("run is already being executed") || loser.contains("already finished"),
        "{loser}"
    );
    assert_eq!(
        count(&s, "a"),
        2,
        "a ran once, then once more as asked (in doubt)"
    );
    assert_eq!(count(&s, "b"), 1);
    let v = verify(&s, &id);
    assert_eq!(v.code, Some(0), "{}", v.stderr);
}

/// Issue 11.2: secrets equal to step ids, tags and input values never rewrite the journal's
/// structure, and resume restores the exact ids and values.
#[test]
fn secrets_equal_to_ids_tags_and_values_leave_the_journal_intact() {
    for secret in ["vault", "step", "succeeded", "run"] {
        let s = Scratch::new();
        s.runbook(
            r#"
runbook: halt
version: 1
inputs:
  node: { default: vault-2 }
  token: { secret: true, from_env: RB_SECRET, min_length: 3 }
steps:
  - id: halt-vault
    run: echo "{{ node }} halted" >> {D}/halted; echo "secret is {{ token }}"
    rollback: echo undo >> {D}/undo
  - id: step-run
    needs: [halt-vault]
    confirm: Go?
    run: echo "{{ node }}" >> {D}/second
"#,
        );
        let mut all: Vec<String> =
            vec!["exec".into(), s.path("runbook.yaml").display().to_string()];
        all.extend(["--no-wait".into(), "--runs-dir".into(), rd(&s)]);
        let ran = runbook(all).env("RB_SECRET", secret).run();
        assert_eq!(ran.code, Some(3), "{secret}: {}", ran.stderr);
        let id = run_ids(&s).remove(0);
        let j = journal(&s, &id);
        assert!(!j.contains("could not be redacted"), "{secret}: {j}");
        assert!(j.contains("\"step\":\"halt-vault\""), "{secret}: {j}");
        assert!(j.contains("[\"node\",\"vault-2\"]"), "{secret}: {j}");
        assert!(j.contains("\"outcome\":\"succeeded\""), "{secret}: {j}");
        assert!(j.contains("\"event\":\"run-started\""), "{secret}: {j}");
        // `min_length: 3`: even `run` is masked where it stands as a whole word.
        assert!(
            !j.contains(&format!("secret is {secret}")),
            "{secret} leaked: {j}"
        );
        let log = s.read(&format!("runs/{id}/steps/halt-vault.stdout.log"));
        assert!(
            !log.contains(&format!("secret is {secret}")),
            "{secret} leaked: {log}"
        );
        let r = runbook(["resume", &id, "--runs-dir", &rd(&s), "--yes"])
            .env("RB_SECRET", secret)
            .run();
        assert_eq!(r.code, Some(0), "{secret}: {}", r.stderr);
        assert_eq!(
            s.read("halted"),
            "vault-2 halted\n",
            "{secret}: halt-vault ran again"
        );
        assert_eq!(s.read("second"), "vault-2\n", "{secret}");
        assert_eq!(verify(&s, &id).code, Some(0), "{secret}");
    }
}

/// Issue 11.5: dropping the last record, or the last three, of a finished run is reported by
/// `--verify` and refused by `resume`.
#[test]
fn truncation_is_detected_by_verify_and_refused_by_resume() {
    for drop in [1usize, 3] {
        let s = Scratch::new();
        s.runbook(SLOW.replace("sleep 1", "true").as_str());
        assert_eq!(s.exec(&[]).code, Some(0));
        let id = run_ids(&s).remove(0);
        let ok = verify(&s, &id);
        assert_eq!(ok.code, Some(0), "{}", ok.stderr);
        assert!(ok.stdout.contains("sealed end present"), "{}", ok.stdout);
        let path = s.path(&format!("runs/{id}/journal.jsonl"));
        let text = std::fs::read_to_string(&path).expect("journal");
        let lines: Vec<&str> = text.lines().collect();
        let kept = lines[..lines.len() - drop].join("\n") + "\n";
        std::fs::write(&path, kept).expect("truncate");
        let bad = verify(&s, &id);
        assert_eq!(bad.code, Some(1), "drop {drop}: {}", bad.stdout);
        assert!(
            bad.stderr.contains("the tail was removed"),
            "{}",
            bad.stderr
        );
        let r = resume(&s, &id, &["--rerun-in-doubt"]);
        assert_eq!(r.code, Some(2), "drop {drop}: {}", r.stderr);
        assert!(r.stderr.contains("cannot be trusted"), "{}", r.stderr);
        assert_eq!(count(&s, "a"), 1);
    }
}

const UNDO_CHAIN: &str = r#"
runbook: full
version: 1
steps:
  - id: s0
    run: echo s0 >> {D}/s0; head -c 3000 /dev/zero | tr '\0' x
    rollback: echo r0 >> {D}/r0
  - id: s1
    needs: [s0]
    run: echo s1 >> {D}/s1; head -c 3000 /dev/zero | tr '\0' y
    rollback: echo r1 >> {D}/r1
  - id: s2
    needs: [s1]
    run: echo s2 >> {D}/s2; head -c 3000 /dev/zero | tr '\0' z
    rollback: echo r2 >> {D}/r2
  - id: s3
    needs: [s2]
    run: echo s3 >> {D}/s3; exit 1
"#;

fn assert_at_most_once(s: &Scratch, what: &str) {
    for f in ["s0", "s1", "s2", "s3", "r0", "r1", "r2"] {
        assert!(count(s, f) <= 1, "{what}: {f} ran {} times", count(s, f));
    }
}

/// Issue 11.3: the journal's writes cut at every record (a real file-size limit makes the
/// kernel cut the write mid-record, as a full disk does): the engine stops with exit 5, and
/// after the limit is lifted `resume` repairs the torn tail and finishes the run, rollbacks
/// included, running nothing twice.
#[test]
fn a_write_cut_at_every_record_then_resume_completes() {
    // The full run's journal, to know where each record ends.
    let s = Scratch::new();
    s.runbook(UNDO_CHAIN);
    assert_eq!(s.exec(&[]).code, Some(1));
    let id = run_ids(&s).remove(0);
    let j = journal(&s, &id);
    let mut ends = Vec::new();
    let mut at = 0;
    for l in j.lines() {
        at += l.len() + 1;
        ends.push(at);
    }
    let mut cut_runs = 0;
    for (k, end) in ends.iter().enumerate() {
        let limit = (end - 40) as u64; // inside record k
        let s = Scratch::new();
        s.runbook(UNDO_CHAIN);
        let mut cmd = s.command(&["--progress", "plain"]);
        // SAFETY: async-signal-safe calls only, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let (code, err) = wait_output(&mut child, Duration::from_secs(30));
        let id = run_ids(&s).remove(0);
        if code == Some(5) && k == 0 {
            // The run-started record itself was cut: nothing ran, nothing to resume.
            cut_runs += 1;
            assert_eq!(count(&s, "s0"), 0);
            let r = resume(&s, &id, &[]);
            assert_eq!(r.code, Some(2), "{}", r.stderr);
            continue;
        } else if code == Some(5) {
            cut_runs += 1;
            assert!(err.contains("runbook resume"), "record {k}: {err}");
            let r = resume(&s, &id, &["--skip-in-doubt"]);
            // s3 fails (exit 1, everything undone) unless its own end was the record cut and
            // the operator said to treat it as done (exit 0).
            assert!(matches!(r.code, Some(0 | 1)), "record {k}: {}", r.stderr);
            if r.code == Some(1) {
                for (step, undo) in [("s0", "r0"), ("s1", "r1"), ("s2", "r2")] {
                    assert_eq!(count(&s, step), count(&s, undo), "record {k}: {undo}");
                }
            }
            let torn = std::fs::metadata(s.path(&format!("runs/{id}/journal.jsonl")))
                .map(|m| m.len())
                .unwrap_or(0);
            assert!(torn > 0, "record {k}");
        } else {
            // The cut fell on the last records (the end of the run): it still stopped.
            let tail: String = err
                .chars()
                .rev()
                .take(1500)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            assert!(matches!(code, Some(1 | 5)), "record {k}: {code:?} {tail}");
        }
        assert_at_most_once(&s, &format!("record {k}"));
        let v = verify(&s, &id);
        assert_eq!(v.code, Some(0), "record {k}: {} {}", v.stdout, v.stderr);
    }
    assert!(cut_runs >= ends.len() / 2, "only {cut_runs} runs were cut");
}

/// A real small tmpfs, unmounted when dropped.
struct Tmpfs {
    dir: std::path::PathBuf,
}

impl Tmpfs {
    fn new(name: &str, size: &str) -> Tmpfs {
        let dir =
            std::path::PathBuf::from(format!("/tmp/i11b-scratch/{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount tmpfs on {}", dir.display());
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Issue 11.3: a real full disk (a 256 KiB tmpfs, filled to leave k pages free for k = 0…):
/// the run stops (exit 5) or finishes; after space is freed `resume` finishes it, rollbacks
/// included, and nothing runs twice.
#[test]
fn disk_full_at_every_page_then_free_space_and_resume() {
    let fs = Tmpfs::new("full", "256k");
    let s = Scratch::new();
    s.runbook(UNDO_CHAIN);
    let mut stopped = 0;
    for free_pages in 0..24u64 {
        let runs = fs.dir.join(format!("runs{free_pages}"));
        std::fs::create_dir(&runs).expect("runs dir");
        for f in ["s0", "s1", "s2", "s3", "r0", "r1", "r2"] {
            let _ = std::fs::remove_file(s.path(f));
        }
        // Fill the file system, then give back `free_pages` pages.
        let filler = fs.dir.join("filler");
        let _ = std::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=4096", "status=none"])
            .arg(format!("of={}", filler.display()))
            .stderr(Stdio::null())
            .status();
        let size = std::fs::metadata(&filler).map(|m| m.len()).unwrap_or(0);
        let keep = size.saturating_sub(free_pages * 4096);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&filler)
            .and_then(|f| f.set_len(keep))
            .expect("shrink filler");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
            .arg("exec")
            .arg(s.path("runbook.yaml"))
            .args(["--progress", "plain", "--runs-dir"])
            .arg(&runs)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let (code, err) = wait_output(&mut child, Duration::from_secs(30));
        let ids: Vec<String> = std::fs::read_dir(&runs)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        std::fs::remove_file(&filler).expect("free space");
        match code {
            Some(1) => {}
            Some(5) if ids.is_empty() => stopped += 1, // nothing could be created: nothing ran
            Some(5) if !s_journal_started(&runs, &ids[0]) => {
                // Not even the run's start could be recorded: nothing ran.
                stopped += 1;
                assert_eq!(count(&s, "s0"), 0, "{free_pages} pages");
            }
            Some(5) => {
                stopped += 1;
                let r = runbook([
                    "resume",
                    &ids[0],
                    "--runs-dir",
                    &runs.display().to_string(),
                    "--skip-in-doubt",
                ])
                .run();
                assert_eq!(r.code, Some(1), "{free_pages} pages: {}", r.stderr);
            }
            other => panic!("{free_pages} pages free: exit {other:?}: {err}"),
        }
        assert_at_most_once(&s, &format!("{free_pages} pages"));
        if !ids.is_empty() {
            for (step, undo) in [("s0", "r0"), ("s1", "r1"), ("s2", "r2")] {
                assert_eq!(
                    count(&s, step),
                    count(&s, undo),
                    "{free_pages} pages: {undo}"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&runs);
    }
    assert!(stopped > 0, "the disk never filled up");
}

fn s_journal_started(runs: &std::path::Path, id: &str) -> bool {
    std::fs::read_to_string(runs.join(id).join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .next()
        .is_some_and(|l| l.contains("\"event\":\"run-started\""))
}

const SIGNALLED: &str = r#"
runbook: signalled
version: 1
steps:
  - id: a
    run: echo a >> {D}/a
    rollback: echo r >> {D}/undo; if [ -e {D}/slow ]; then sleep 5 & echo $! > {D}/rb-child; touch {D}/in-rollback; wait; fi
  - id: gate
    needs: [a]
    confirm: Go on?
    run: echo g >> {D}/g
  - id: b
    needs: [gate]
    run: sleep 30 & echo $! > {D}/child; wait
"#;

fn pid_in(s: &Scratch, f: &str) -> i32 {
    s.read(f).trim().parse().unwrap_or(0)
}

/// Processes whose parent is `pid` (a leftover tree shows up here).
fn children_of(pid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|x| x.parse::<u32>().ok());
        if ppid == Some(pid) && alive(p) {
            out.push(p);
        }
    }
    out
}

/// Issue 11.6: SIGHUP, SIGTERM and SIGINT unwind at each stage (a step running, a gate
/// waiting, a rollback running) and leave no process behind.
#[test]
fn sighup_sigterm_sigint_unwind_at_each_stage_leaving_nothing() {
    for sig in [libc::SIGHUP, libc::SIGTERM, libc::SIGINT] {
        for stage in ["step", "gate", "rollback"] {
            let s = Scratch::new();
            s.runbook(SIGNALLED);
            let args: &[&str] = if stage == "gate" {
                &["--progress", "plain"]
            } else {
                &["--progress", "plain", "--yes"]
            };
            if stage == "rollback" {
                std::fs::write(s.path("slow"), "").expect("slow");
            }
            let mut child = spawn(&s, args);
            let pid = child.id() as i32;
            match stage {
                "step" | "rollback" => until("b running", || pid_in(&s, "child") > 0),
                _ => {
                    wait_journal(&s, "\"event\":\"gate-waiting\"");
                }
            }
            // SAFETY: signalling the child this test started.
            unsafe { libc::kill(pid, sig) };
            if stage == "rollback" {
                until("rollback running", || s.path("in-rollback").exists());
                // SAFETY: as above; a second signal stops the unwinding.
                unsafe { libc::kill(pid, sig) };
            }
            let (code, err) = wait_output(&mut child, Duration::from_secs(30));
            let what = format!("signal {sig} at {stage}");
            assert!(matches!(code, Some(3 | 4)), "{what}: exit {code:?}: {err}");
            assert_eq!(count(&s, "undo"), 1, "{what}: {err}");
            assert_eq!(count(&s, "g"), usize::from(stage != "gate"), "{what}");
            for f in ["child", "rb-child"] {
                let p = pid_in(&s, f);
                if p > 0 {
                    until(&format!("{what}: {f} {p} gone"), || !alive(p));
                }
            }
            assert!(children_of(pid as u32).is_empty(), "{what}");
            let id = run_ids(&s).remove(0);
            assert_eq!(verify(&s, &id).code, Some(0), "{what}");
            assert!(
                err.contains("interrupted by a signal") || err.contains("aborted at the gate"),
                "{what}: {err}"
            );
        }
    }
}

/// Issue 11.7: a runs dir, `.locks` or run dir owned by another user (or writable by others)
/// is refused, and a refused run creates nothing.
#[test]
fn a_runs_dir_owned_by_another_user_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    crate::sshd::ensure_test_user();
    let uid = {
        let out = std::process::Command::new("id")
            .args(["-u", crate::sshd::TEST_USER])
            .output()
            .expect("id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .expect("uid")
    };
    let s = Scratch::new();
    s.runbook(
        "runbook: owned\nversion: 1\nlock: owned\nsteps:\n  - id: a\n    run: echo a >> {D}/a\n",
    );
    std::fs::create_dir(s.path("runs")).expect("mkdir");
    std::os::unix::fs::chown(s.path("runs"), Some(uid), None).expect("chown");
    let r = s.exec(&[]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("not by you"), "{}", r.stderr);
    assert_eq!(
        run_ids(&s),
        Vec::<String>::new(),
        "a refused run creates nothing"
    );
    assert_eq!(count(&s, "a"), 0);
    // Ours again, but `.locks` planted by the other user.
    std::os::unix::fs::chown(s.path("runs"), Some(0), None).expect("chown");
    std::fs::create_dir(s.path("runs/.locks")).expect("mkdir");
    std::os::unix::fs::chown(s.path("runs/.locks"), Some(uid), None).expect("chown");
    let r = s.exec(&[]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains(".locks is owned by uid"), "{}", r.stderr);
    assert_eq!(run_ids(&s), Vec::<String>::new());
    // Ours, but writable by everyone.
    std::os::unix::fs::chown(s.path("runs/.locks"), Some(0), None).expect("chown");
    std::fs::set_permissions(
        s.path("runs/.locks"),
        std::fs::Permissions::from_mode(0o777),
    )
    .expect("chmod");
    let r = s.exec(&[]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("writable by group or others"),
        "{}",
        r.stderr
    );
    std::fs::set_permissions(
        s.path("runs/.locks"),
        std::fs::Permissions::from_mode(0o700),
    )
    .expect("chmod");
    let r = s.exec(&[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let id = run_ids(&s).remove(0);
    // A step log replaced by a symlink is not followed by a resumed run's journal either:
    // the journal itself refuses a symlink.
    let j = s.path(&format!("runs/{id}/journal.jsonl"));
    std::fs::remove_file(&j).expect("rm");
    std::os::unix::fs::symlink(s.path("elsewhere"), &j).expect("symlink");
    let v = verify(&s, &id);
    assert_ne!(v.code, Some(0), "{}", v.stdout);
    assert!(!s.path("elsewhere").exists());
    // A lock held by a live run: the second run is refused and creates no run dir.
    let s = Scratch::new();
    s.runbook("runbook: owned\nversion: 1\nlock: owned\nsteps:\n  - id: a\n    run: touch {D}/holding; sleep 2\n");
    let mut first = spawn(&s, &["--progress", "plain"]);
    until("holding", || s.path("holding").exists());
    let second = s.exec(&[]);
    assert_eq!(second.code, Some(6), "{}", second.stderr);
    assert_eq!(
        run_ids(&s).len(),
        1,
        "the refused run created a run directory"
    );
    let _ = wait_output(&mut first, Duration::from_secs(30));
}

const KILLED: &str = r#"
runbook: killed
version: 1
inputs:
  fail: { default: "no" }
steps:
  - id: s1
    run: echo s1 >> {D}/s1; sleep 0.04
    rollback: echo r1 >> {D}/r1; sleep 0.04
  - id: fe
    needs: [s1]
    for_each: [1, 2, 3, 4, 5]
    run: echo {{ item }} >> {D}/fe-{{ item }}; sleep 0.03
    rollback: echo rfe >> {D}/rfe-{{ item }}; sleep 0.04
  - id: last
    needs: [fe]
    run: echo last >> {D}/last; sleep 0.03; test "{{ fail }}" = "no"
"#;

/// How many times the journal's `run-resumed` records say `what` was re-run in doubt.
fn reruns(j: &str, what: &str) -> usize {
    j.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "run-resumed")
        .flat_map(|v| v["in_doubt"].as_array().cloned().unwrap_or_default())
        .filter(|p| p[0] == what && p[1] == "re-run")
        .count()
}

/// Issue 11.1/11.4: kill -9 at ≥ 50 random points (during steps, inside `for_each`, during
/// rollbacks), then resume with no flag, `--rerun-in-doubt` or `--skip-in-doubt`: every run
/// completes, and every non-idempotent step, item and rollback ran at most once (twice only
/// when the operator asked to re-run it in doubt).
#[test]
fn kill_nine_at_random_points_then_resume_runs_nothing_twice() {
    let mut seed: u64 = std::process::id() as u64 * 2_654_435_761 % 1_000_003 + 17;
    let mut rand = move |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let flags: [&[&str]; 3] = [&[], &["--rerun-in-doubt"], &["--skip-in-doubt"]];
    let mut resumed = 0;
    for round in 0..54 {
        let s = Scratch::new();
        s.runbook(KILLED);
        let fail = round % 2 == 1;
        let fail_arg = if fail { "fail=yes" } else { "fail=no" };
        let mut child = s
            .command(&["--progress", "plain", "--input", fail_arg])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let at = rand(700);
        std::thread::sleep(Duration::from_millis(at));
        let _ = child.kill();
        let _ = child.wait();
        crate::harness::settle(&s.path("runs")); // orphans finish, as on a real host
        let what = format!("round {round} (kill at {at} ms, fail={fail})");
        let Some(id) = run_ids(&s).into_iter().next() else {
            continue;
        };
        if !journal(&s, &id).contains("run-started") {
            continue;
        }
        let flag = flags[round % 3];
        let mut r = resume(&s, &id, flag);
        if r.code == Some(3) && flag.is_empty() {
            assert!(r.stderr.contains("in flight"), "{what}: {}", r.stderr);
            r = resume(&s, &id, &["--skip-in-doubt"]);
        }
        if r.code == Some(2) && r.stderr.contains("already finished") {
            r.code = None;
        } else {
            resumed += 1;
            assert!(matches!(r.code, Some(0 | 1 | 4)), "{what}: {}", r.stderr);
        }
        let j = journal(&s, &id);
        let mut files: Vec<(String, String)> = vec![
            ("s1".into(), "s1".into()),
            ("last".into(), "last".into()),
            ("r1".into(), "rollback of s1".into()),
        ];
        for k in 1..=5 {
            files.push((format!("fe-{k}"), format!("fe item {}", k - 1)));
            // A for_each's rollback runs once per completed item (re-run in doubt per item).
            files.push((format!("rfe-{k}"), format!("rollback of fe item {}", k - 1)));
        }
        for (file, key) in files {
            let allowed = 1
                + reruns(&j, &key)
                + if file == "s1" || file == "last" {
                    reruns(&j, &file)
                } else {
                    0
                };
            assert!(
                count(&s, &file) <= allowed,
                "{what}: {file} ran {} times (allowed {allowed})\n{j}",
                count(&s, &file)
            );
        }
        // The run completed: sealed, verified, not interrupted.
        let v = verify(&s, &id);
        assert_eq!(v.code, Some(0), "{what}: {}", v.stderr);
        assert!(
            v.stdout.contains("sealed end present"),
            "{what}: {}",
            v.stdout
        );
        let state = runs_line(&s, &id);
        assert!(!state.contains("interrupted"), "{what}: {state}");
        if state.contains("success") {
            for k in 1..=5 {
                // Only an item the operator chose to treat as done in doubt may not have run
                // (killed between its `step-started` and its process starting).
                let skipped = j.contains(&format!("[\"fe item {}\",\"treated as done\"]", k - 1));
                assert!(
                    count(&s, &format!("fe-{k}")) >= 1 || skipped,
                    "{what}: item {k} never ran\n{j}"
                );
            }
        }
    }
    assert!(
        resumed >= 13,
        "only {resumed} of 54 runs were killed mid-run"
    );
}

/// Issue 11.4: `for_each` in doubt is per item: finished items are not repeated, the item in
/// flight is decided alone, items never started do run.
#[test]
fn for_each_in_doubt_resumes_per_item() {
    for (flag, item3) in [("--skip-in-doubt", 1), ("--rerun-in-doubt", 2)] {
        let s = Scratch::new();
        s.runbook(
            r#"
runbook: items
version: 1
steps:
  - id: fe
    for_each: [k1, k2, k3, k4, k5]
    run: echo x >> {D}/{{ item }}; if [ {{ item }} = k3 ] && [ ! -e {D}/go ]; then echo $$ > {D}/in-k3; exec sleep 30; fi
"#,
        );
        let mut child = spawn(&s, &["--progress", "plain"]);
        until("k3 running", || pid_in(&s, "in-k3") > 0);
        let _ = child.kill();
        let _ = child.wait();
        // SAFETY: the orphaned step this test started.
        unsafe { libc::kill(pid_in(&s, "in-k3"), libc::SIGKILL) };
        crate::harness::settle(&s.path("runs"));
        std::fs::write(s.path("go"), "").expect("go");
        let id = run_ids(&s).remove(0);
        let headless = resume(&s, &id, &[]);
        assert_eq!(headless.code, Some(3), "{}", headless.stderr);
        assert!(
            headless.stderr.contains("item 2 of step `fe`"),
            "{}",
            headless.stderr
        );
        let r = resume(&s, &id, &[flag]);
        assert_eq!(r.code, Some(0), "{flag}: {}", r.stderr);
        for (k, n) in [("k1", 1), ("k2", 1), ("k3", item3), ("k4", 1), ("k5", 1)] {
            assert_eq!(count(&s, k), n, "{flag}: {k}");
        }
    }
}

/// Issue 11.4: a rollback in flight when the engine died is in doubt like a step.
#[test]
fn an_in_flight_rollback_is_in_doubt_on_resume() {
    for (flag, begins) in [("--skip-in-doubt", 1), ("--rerun-in-doubt", 2)] {
        let s = Scratch::new();
        s.runbook(
            r#"
runbook: refund
version: 1
steps:
  - id: pay
    run: echo paid >> {D}/paid
    rollback: echo "refund begin" >> {D}/refund; if [ ! -e {D}/go ]; then echo $$ > {D}/rb; exec sleep 30; fi
  - id: boom
    needs: [pay]
    run: exit 1
"#,
        );
        let mut child = spawn(&s, &["--progress", "plain"]);
        until("rollback running", || pid_in(&s, "rb") > 0);
        let _ = child.kill();
        let _ = child.wait();
        // SAFETY: the orphaned rollback this test started.
        unsafe { libc::kill(pid_in(&s, "rb"), libc::SIGKILL) };
        crate::harness::settle(&s.path("runs"));
        std::fs::write(s.path("go"), "").expect("go");
        let id = run_ids(&s).remove(0);
        let headless = resume(&s, &id, &[]);
        assert_eq!(headless.code, Some(3), "{}", headless.stderr);
        assert!(
            headless
                .stderr
                .contains("the rollback of `pay` was in flight"),
            "{}",
            headless.stderr
        );
        assert_eq!(count(&s, "refund"), 1);
        let r = resume(&s, &id, &[flag]);
        assert_eq!(r.code, Some(1), "{flag}: {}", r.stderr);
        assert_eq!(count(&s, "refund"), begins, "{flag}");
        assert_eq!(count(&s, "paid"), 1, "{flag}");
    }
}

/// Issue 11.6 over SSH: SIGHUP and SIGTERM while a remote step runs on the harness's real
/// sshd: the remote process, the ssh master and its socket directory are all gone after.
#[test]
fn sighup_and_sigterm_over_ssh_leave_no_remote_process_master_or_socket_dir() {
    use crate::sshd::{Keys, Sshd, TEST_USER, available, ensure_test_user};
    if !available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "sshd must be installed in CI"
        );
        return;
    }
    ensure_test_user();
    let keys = Keys::new();
    let sshd = Sshd::start(&keys, &["127.0.0.1"], "host");
    keys.trust("127.0.0.1", sshd.port, "host");
    for sig in [libc::SIGHUP, libc::SIGTERM, libc::SIGINT] {
        let s = Scratch::new();
        s.runbook(&format!(
            r#"
runbook: remote
version: 1
hosts:
  node: {{ address: 127.0.0.1, port: {port}, user: {TEST_USER} }}
steps:
  - id: first
    run: echo first >> {{D}}/done
    rollback: echo undo >> {{D}}/undo
  - id: sleepy
    needs: [first]
    on: node
    read_only: true
    run: echo $$ > /tmp/rb-i11b-{port}-{sig}; exec sleep 300
"#,
            port = sshd.port
        ));
        // The remote user writes its pid where the test can read it.
        let remote = format!("/tmp/rb-i11b-{}-{sig}", sshd.port);
        let _ = std::fs::remove_file(&remote);
        let cfg = keys.ssh_config().display().to_string();
        let mut child = s
            .command(&["--progress", "plain", "--ssh-config", &cfg])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let engine = child.id();
        let read_pid = || {
            std::fs::read_to_string(&remote)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
                .unwrap_or(0)
        };
        let t0 = Instant::now();
        while read_pid() == 0 {
            if let Ok(Some(_)) = child.try_wait() {
                let (code, err) = wait_output(&mut child, Duration::from_secs(5));
                panic!("signal {sig}: the run ended before its remote step: {code:?} {err}");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "remote step never ran"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let rpid = read_pid();
        // SAFETY: signalling the engine this test started.
        unsafe { libc::kill(engine as i32, sig) };
        let (code, err) = wait_output(&mut child, Duration::from_secs(30));
        assert_eq!(code, Some(3), "signal {sig}: {err}");
        assert_eq!(s.read("undo"), "undo\n", "signal {sig}");
        until(&format!("signal {sig}: remote {rpid} gone"), || {
            !alive(rpid)
        });
        let ps = std::process::Command::new("ps")
            .args(["-eww", "-o", "args"])
            .output()
            .expect("ps");
        let ps = String::from_utf8_lossy(&ps.stdout).into_owned();
        let port = format!("-p {}", sshd.port);
        assert!(
            !ps.lines()
                .any(|l| l.starts_with("ssh") && l.contains(&port)),
            "signal {sig}: an ssh master survived:\n{ps}"
        );
        assert!(
            !std::path::Path::new(&format!("/tmp/runbook-ssh-{engine}")).exists(),
            "signal {sig}: the control socket directory was left behind"
        );
        assert!(children_of(engine).is_empty(), "signal {sig}");
        let _ = std::fs::remove_file(&remote);
    }
}

/// Issue 11.3/11.7: a step log that cannot be written (a real full tmpfs) is reported, not
/// silently cut; a symlink planted where a step log goes is refused, not followed.
#[test]
fn step_log_failures_are_reported_and_symlinks_refused() {
    let fs = Tmpfs::new("logs", "512k");
    let s = Scratch::new();
    s.runbook("runbook: chatty\nversion: 1\nsteps:\n  - id: chatty\n    run: head -c 200000 /dev/zero | tr '\\0' 'x' | fold -w 100\n");
    let filler = fs.dir.join("filler");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=4096", "status=none"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    let size = std::fs::metadata(&filler).map(|m| m.len()).unwrap_or(0);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .and_then(|f| f.set_len(size.saturating_sub(120 * 1024)))
        .expect("shrink filler");
    let runs = fs.dir.join("runs");
    let out = runbook([
        "exec",
        &s.path("runbook.yaml").display().to_string(),
        "--progress",
        "plain",
        "--runs-dir",
        &runs.display().to_string(),
    ])
    .run();
    assert!(
        out.stderr.contains("the step log could not be written")
            && out.stderr.contains("No space left on device"),
        "exit {:?}: {}",
        out.code,
        out.stderr
            .lines()
            .filter(|l| !l.contains("xxxxx"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(fs);
    // A symlink planted in place of a step log of a run waiting at its gate.
    let s = Scratch::new();
    s.runbook("runbook: planted\nversion: 1\nsteps:\n  - id: go\n    confirm: Go?\n    run: echo secret-output\n");
    let ran = s.exec(&["--no-wait"]);
    assert_eq!(ran.code, Some(3), "{}", ran.stderr);
    let id = run_ids(&s).remove(0);
    let steps = s.path(&format!("runs/{id}/steps"));
    std::fs::create_dir_all(&steps).expect("steps");
    std::os::unix::fs::symlink(s.path("stolen"), steps.join("go.stdout.log")).expect("symlink");
    let r = resume(&s, &id, &["--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        !s.path("stolen").exists(),
        "the planted symlink was followed"
    );
    assert!(
        r.stderr.contains("the step log could not be written"),
        "{}",
        r.stderr
    );
}

/// Issue 11.4 on a real sshd: a fan-out killed while one host ran resumes per host: finished
/// hosts are not repeated, the host in flight is decided alone, unstarted hosts run.
#[test]
fn fan_out_in_doubt_resumes_per_host() {
    use crate::sshd::{Keys, Sshd, available};
    if !available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "sshd must be installed in CI"
        );
        return;
    }
    let keys = Keys::new();
    let addrs = ["127.0.0.41", "127.0.0.42", "127.0.0.43"];
    let sshd = Sshd::start(&keys, &addrs, "host");
    for a in addrs {
        keys.trust(a, sshd.port, "host");
    }
    let cfg = keys.ssh_config().display().to_string();
    for (flag, v2) in [("--skip-in-doubt", 1), ("--rerun-in-doubt", 2)] {
        let s = Scratch::new();
        s.runbook(&format!(
            r#"
runbook: fan
version: 1
hosts:
  v1: {{ address: 127.0.0.41, port: {p}, user: root }}
  v2: {{ address: 127.0.0.42, port: {p}, user: root }}
  v3: {{ address: 127.0.0.43, port: {p}, user: root }}
groups:
  vault: [v1, v2, v3]
steps:
  - id: fan
    on: vault
    serial: 1
    run: echo x >> {{D}}/{{{{ host.name }}}}; if [ {{{{ host.name }}}} = v2 ] && [ ! -e {{D}}/go ]; then echo $$ > {{D}}/v2pid; exec sleep 30; fi
"#,
            p = sshd.port
        ));
        let mut child = spawn(&s, &["--progress", "plain", "--ssh-config", &cfg]);
        until("v2 running", || pid_in(&s, "v2pid") > 0);
        let _ = child.kill();
        let _ = child.wait();
        // SAFETY: the orphaned remote step this test started (sshd runs on this machine).
        unsafe { libc::kill(pid_in(&s, "v2pid"), libc::SIGKILL) };
        std::fs::write(s.path("go"), "").expect("go");
        let id = run_ids(&s).remove(0);
        let headless = resume(&s, &id, &["--ssh-config", &cfg]);
        assert_eq!(headless.code, Some(3), "{}", headless.stderr);
        assert!(
            headless.stderr.contains("host v2 of step `fan`"),
            "{}",
            headless.stderr
        );
        let r = resume(&s, &id, &[flag, "--ssh-config", &cfg]);
        assert_eq!(r.code, Some(0), "{flag}: {}", r.stderr);
        for (h, n) in [("v1", 1), ("v2", v2), ("v3", 1)] {
            assert_eq!(count(&s, h), n, "{flag}: {h}");
        }
    }
}

/// The processes of a step that was in flight when its engine was killed keep `resume` (even
/// with `--rerun-in-doubt`) from starting it beside itself, also when the step's own `env:`
/// names `RUNBOOK_RUN_ID`/`RUNBOOK_STEP` (the engine's values win).
#[test]
fn a_step_in_flight_is_not_started_beside_itself_even_if_its_env_hides_it() {
    let s = Scratch::new();
    s.runbook(
        "runbook: envov\nversion: 1\nsteps:\n  - id: a\n    run: echo x >> {D}/count; touch {D}/in-a; sleep 38.41\n    env:\n      RUNBOOK_RUN_ID: nothing\n      RUNBOOK_STEP: other\n",
    );
    let mut child = spawn(&s, &["--progress", "plain"]);
    until("a started", || s.path("in-a").exists());
    let _ = child.kill();
    let _ = child.wait();
    let id = run_ids(&s).remove(0);
    let r = resume(&s, &id, &["--rerun-in-doubt"]);
    let _ = std::process::Command::new("pkill")
        .args(["-f", "sleep 38.41"])
        .status();
    assert_eq!(r.code, Some(6), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("the processes of `a` started by the killed engine"),
        "{}",
        r.stderr
    );
    assert_eq!(s.read("count"), "x\n", "the step ran once");
}

/// `transcript --verify` on a journal with a line that is not a record (zero bytes in the
/// middle, an edit) fails the verification (exit 1), like a broken chain.
#[test]
fn verify_fails_with_exit_1_on_a_damaged_record() {
    let s = Scratch::new();
    s.runbook("runbook: d\nversion: 1\nsteps:\n  - id: a\n    run: echo a\n  - id: b\n    needs: [a]\n    run: echo b\n");
    let ran = s.exec(&["--progress", "plain"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let id = run_ids(&s).remove(0);
    let path = s.path(&format!("runs/{id}/journal.jsonl"));
    let text = std::fs::read(&path).expect("journal");
    let cut = text
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(1)
        .map(|(i, _)| i + 1)
        .expect("two records");
    let mut damaged = text[..cut].to_vec();
    damaged.extend_from_slice(&[0u8; 100]);
    damaged.extend_from_slice(&text[cut..]);
    std::fs::write(&path, damaged).expect("write");
    let v = runbook(["transcript", &id, "--runs-dir", &rd(&s), "--verify"]).run();
    assert_eq!(v.code, Some(1), "{}", v.stderr);
    assert!(v.stderr.contains("not a journal record"), "{}", v.stderr);
}

/// A run directory whose journal is garbage (no start record) is listed and shown as
/// `damaged`, never as `interrupted` (which would send the operator to a `resume` that must
/// refuse), and a run id with terminal escape bytes is never echoed raw.
#[test]
fn a_garbage_journal_is_damaged_and_hostile_ids_are_escaped() {
    let s = Scratch::new();
    let dir = s.path("runs/0123456789abcdef");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("journal.jsonl"), b"garbage\x00\x01 not json\n").expect("write");
    let runs = runbook(["runs", "--runs-dir", &rd(&s)]).run();
    assert_eq!(runs.code, Some(0), "{}", runs.stderr);
    let row = runs.stdout.lines().nth(1).unwrap_or_default().to_string();
    assert!(
        row.starts_with("0123456789abcdef") && row.contains("damaged"),
        "{}",
        runs.stdout
    );
    let show = runbook(["show", "0123", "--runs-dir", &rd(&s)]).run();
    assert_eq!(show.code, Some(0), "{}", show.stderr);
    assert!(show.stdout.contains("state    damaged"), "{}", show.stdout);
    assert!(show.stdout.contains("--verify"), "{}", show.stdout);
    assert!(!show.stdout.contains("runbook resume"), "{}", show.stdout);
    let only = runbook(["runs", "--state", "damaged", "--runs-dir", &rd(&s)]).run();
    assert_eq!(only.stdout.lines().count(), 2, "{}", only.stdout);
    let hostile = runbook(["show", "ab\u{1b}[31mcd", "--runs-dir", &rd(&s)]).run();
    assert_eq!(hostile.code, Some(2), "{}", hostile.stderr);
    assert!(!hostile.stderr.contains('\u{1b}'), "{:?}", hostile.stderr);
    assert!(
        hostile.stderr.contains("ab\\u{1b}[31mcd"),
        "{}",
        hostile.stderr
    );
}
