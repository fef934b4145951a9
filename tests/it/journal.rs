//! The journal: kill -9 and resume, remote approvals, fail-secure writes, tamper evidence,
//! locks, transcripts and incident attachments.

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::exec::{Scratch, wait_for, wait_output};
use crate::harness::{insta_settings, runbook};
use crate::httpd::{Request, Response, Server};

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

fn runs_dir(s: &Scratch) -> String {
    s.path("runs").display().to_string()
}

const COUNTED: &str = r#"
runbook: counted
version: 1
steps:
  - id: a
    run: echo a >> {D}/count-a; sleep 0.15
    rollback: echo undo-a >> {D}/undo
  - id: b
    needs: [a]
    run: echo b >> {D}/count-b; sleep 0.15
  - id: c
    needs: [b]
    idempotent: true
    run: echo c >> {D}/count-c; sleep 0.15
  - id: d
    needs: [c]
    run: echo d >> {D}/count-d; sleep 0.15
  - id: e
    needs: [d]
    run: echo e >> {D}/count-e
"#;

/// Kill -9 the engine at many points; `resume` always completes the run, and no
/// non-idempotent step ever runs twice.
#[test]
fn kill_nine_anywhere_then_resume_completes_without_repeats() {
    // The journal is preallocated ahead of its records: a killed engine leaves zero bytes
    // after the last record, which readers skip and `resume` cuts off.
    let mut reserve_left = 0;
    for kill_after_ms in [0u64, 30, 90, 160, 240, 330, 420, 510, 600, 700] {
        let s = Scratch::new();
        s.runbook(COUNTED);
        let mut child = s
            .command(&["--progress", "plain"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Let orphaned step processes finish, as they would on a real host.
        crate::harness::settle(&s.path("runs"));
        let ids = run_ids(&s);
        if ids.is_empty() {
            continue; // killed before the run directory existed: nothing to resume
        }
        let id = &ids[0];
        let journal = std::fs::read_to_string(s.path(&format!("runs/{id}/journal.jsonl")))
            .unwrap_or_default();
        let finished = journal.contains("\"event\":\"run-finished\"");
        if journal.ends_with('\0') {
            reserve_left += 1;
        }
        if !finished {
            let ran = runbook([
                "resume",
                id,
                "--runs-dir",
                &runs_dir(&s),
                "--skip-in-doubt",
                "--progress",
                "plain",
            ])
            .run();
            assert_eq!(
                ran.code,
                Some(0),
                "kill after {kill_after_ms}ms, resume:\n{}",
                ran.stderr
            );
        }
        for step in ["a", "b", "d", "e"] {
            let n = s.read(&format!("count-{step}")).lines().count();
            assert!(
                n <= 1,
                "kill after {kill_after_ms}ms: non-idempotent step {step} ran {n} times"
            );
        }
        assert_eq!(
            s.read("count-e").lines().count(),
            1,
            "kill after {kill_after_ms}ms: the run did not complete"
        );
        assert_eq!(s.read("undo"), "", "nothing failed, nothing to undo");
        let v = runbook(["transcript", id, "--runs-dir", &runs_dir(&s), "--verify"]).run();
        assert_eq!(v.code, Some(0), "{}", v.stderr);
        let after = std::fs::read(s.path(&format!("runs/{id}/journal.jsonl"))).unwrap_or_default();
        assert!(
            after.ends_with(b"}\n"),
            "kill after {kill_after_ms}ms: a finished journal ends with its last record"
        );
    }
    assert!(
        reserve_left > 0,
        "no kill left the journal's reserve behind: the preallocation was not exercised"
    );
}

#[test]
fn resume_reruns_in_doubt_steps_only_when_asked() {
    let s = Scratch::new();
    s.runbook("runbook: r\nversion: 1\nsteps:\n  - id: slow\n    run: echo x >> {D}/count; touch {D}/started; sleep 1\n  - id: after\n    needs: [slow]\n    run: echo after >> {D}/done\n");
    let mut child = s
        .command(&["--progress", "plain"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for(&s.path("started"), Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    crate::harness::settle(&s.path("runs"));
    let id = run_ids(&s).remove(0);
    let undecided = runbook(["resume", &id, "--runs-dir", &runs_dir(&s)]).run();
    assert_eq!(undecided.code, Some(3), "{}", undecided.stderr);
    assert!(
        undecided.stderr.contains("step `slow` was in flight"),
        "{}",
        undecided.stderr
    );
    let rerun = runbook([
        "resume",
        &id,
        "--runs-dir",
        &runs_dir(&s),
        "--rerun-in-doubt",
        "--progress",
        "plain",
    ])
    .run();
    assert_eq!(rerun.code, Some(0), "{}", rerun.stderr);
    assert_eq!(s.read("count").lines().count(), 2);
    assert_eq!(s.read("done"), "after\n");
    let again = runbook(["resume", &id, "--runs-dir", &runs_dir(&s)]).run();
    assert_eq!(again.code, Some(2));
    assert!(
        again.stderr.contains("already finished"),
        "{}",
        again.stderr
    );
}

const GATED: &str = r#"
runbook: remote-gate
version: 1
steps:
  - id: prepare
    run: echo prepared >> {D}/done
    rollback: echo undo-prepare >> {D}/undo
  - id: restart
    needs: [prepare]
    confirm: Restart?
    run: echo restarted >> {D}/done
"#;

fn wait_for_waiting(s: &Scratch) -> String {
    let t0 = Instant::now();
    loop {
        if let Some(id) = run_ids(s).into_iter().next() {
            let j = std::fs::read_to_string(s.path(&format!("runs/{id}/journal.jsonl")))
                .unwrap_or_default();
            if j.contains("\"event\":\"gate-waiting\"") {
                return id;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the run never waited at its gate"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_waiting_gate_is_approved_from_another_process() {
    let s = Scratch::new();
    s.runbook(GATED);
    let mut child = s
        .command(&["--progress", "plain"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let id = wait_for_waiting(&s);
    let ok = runbook([
        "approve",
        &id,
        "restart",
        "--comment",
        "disk checked",
        "--runs-dir",
        &runs_dir(&s),
    ])
    .run();
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    let (code, err) = wait_output(&mut child, Duration::from_secs(30));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "runbook approve --runs-dir {} {id} restart",
            runs_dir(&s)
        )),
        "{err}"
    );
    assert_eq!(s.read("done"), "prepared\nrestarted\n");
    let t = runbook(["transcript", &id, "--runs-dir", &runs_dir(&s)]).run();
    assert!(
        t.stdout.contains("Gate: **approved** by root@"),
        "{}",
        t.stdout
    );
    assert!(
        t.stdout.contains("(remote)") && t.stdout.contains("disk checked"),
        "{}",
        t.stdout
    );
}

#[test]
fn a_remote_rejection_rolls_back() {
    let s = Scratch::new();
    s.runbook(GATED);
    let mut child = s
        .command(&["--progress", "plain"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let id = wait_for_waiting(&s);
    let no = runbook(["reject", &id, "restart", "--runs-dir", &runs_dir(&s)]).run();
    assert_eq!(no.code, Some(0));
    let (code, err) = wait_output(&mut child, Duration::from_secs(30));
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(s.read("undo"), "undo-prepare\n");
}

/// `approvals: 2` and `other_approver`: two distinct OS users (root and the test user), neither
/// of them the operator's own approval counting twice.
#[test]
fn two_approvals_from_distinct_users() {
    crate::sshd::ensure_test_user();
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: two-person
version: 1
steps:
  - id: wipe
    confirm: { message: "Remove the raft data?", approvals: 2 }
    run: echo wiped >> {D}/done
"#,
    );
    // The test user must reach the answers directory: the scratch dir is private by default.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    let mut child = s
        .command(&["--progress", "plain"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let id = wait_for_waiting(&s);
    for (n, user) in [("first", "root"), ("second", "root")] {
        let ran = runbook([
            "approve",
            &id,
            "wipe",
            "--comment",
            n,
            "--runs-dir",
            &runs_dir(&s),
        ])
        .run();
        assert_eq!(ran.code, Some(0), "{user}: {}", ran.stderr);
    }
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        s.read("done"),
        "",
        "two approvals by the same user must count once"
    );
    let other = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["approve", &id, "wipe", "--runs-dir", &runs_dir(&s)])
        .uid(uid_of(crate::sshd::TEST_USER))
        .env("USER", crate::sshd::TEST_USER)
        .output()
        .expect("approve as the test user");
    assert!(
        other.status.success(),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    let (code, err) = wait_output(&mut child, Duration::from_secs(30));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("already approved `wipe`"), "{err}");
    assert!(
        err.contains(&format!("wipe: approved by {}", crate::sshd::TEST_USER)),
        "{err}"
    );
    assert_eq!(s.read("done"), "wiped\n");
}

fn uid_of(user: &str) -> u32 {
    let out = std::process::Command::new("id")
        .args(["-u", user])
        .output()
        .expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("uid")
}

#[test]
fn other_approver_rejects_the_operators_own_approval() {
    let s = Scratch::new();
    s.runbook("runbook: o\nversion: 1\nsteps:\n  - id: risky\n    confirm: { message: Go?, other_approver: true, timeout: 2s }\n    run: echo ran >> {D}/done\n");
    let ran = s.exec(&["--yes"]);
    assert_eq!(ran.code, Some(3), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("needs an approver other than the operator"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr
            .contains("nobody answered gate `risky` within 2s"),
        "{}",
        ran.stderr
    );
    assert_eq!(s.read("done"), "");
}

#[test]
fn a_run_stopped_at_a_gate_resumes_at_that_gate() {
    let s = Scratch::new();
    s.runbook(GATED);
    let first = s.exec(&["--no-wait"]);
    assert_eq!(first.code, Some(3));
    let id = run_ids(&s).remove(0);
    let resumed = runbook([
        "resume",
        &id,
        "--runs-dir",
        &runs_dir(&s),
        "--approve",
        "restart",
        "--progress",
        "plain",
    ])
    .run();
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    assert_eq!(
        s.read("done"),
        "prepared\nrestarted\n",
        "prepare must not run twice"
    );
}

#[test]
fn journal_write_failure_stops_before_the_next_step_with_exit_5() {
    let s = Scratch::new();
    let mut yaml = String::from("runbook: full\nversion: 1\nsteps:\n");
    for i in 0..40 {
        yaml.push_str(&format!(
            "  - id: s{i}\n    run: echo {i} >> {{D}}/done\n    rollback: echo undo >> {{D}}/undo\n"
        ));
        if i > 0 {
            yaml.push_str(&format!("    needs: [s{}]\n", i - 1));
        }
    }
    s.runbook(&yaml);
    let mut cmd = s.command(&["--progress", "plain"]);
    // A 12 KiB file-size limit: the journal fills up mid-run, as on a full disk (EFBIG).
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 12 * 1024,
                rlim_max: 12 * 1024,
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
    let (code, err) = wait_output(&mut child, Duration::from_secs(60));
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("the journal cannot be written"), "{err}");
    let done = s.read("done").lines().count();
    assert!(done > 0 && done < 40, "ran {done} steps");
    assert_eq!(
        s.read("undo"),
        "",
        "fail-secure: nothing more runs, not even rollbacks"
    );
    assert!(
        err.contains("NOT run: the journal cannot be written"),
        "{err}"
    );
}

#[test]
fn the_hash_chain_detects_an_edited_record() {
    let s = Scratch::new();
    s.runbook(COUNTED);
    let ran = s.exec(&[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let id = run_ids(&s).remove(0);
    let path = s.path(&format!("runs/{id}/journal.jsonl"));
    let ok = runbook(["transcript", &id, "--runs-dir", &runs_dir(&s), "--verify"]).run();
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    let text = std::fs::read_to_string(&path).expect("journal");
    let edited = text
        .lines()
        .position(|l| l.contains("\"step\":\"b\""))
        .expect("a record of step b")
        + 1;
    std::fs::write(&path, text.replacen("\"step\":\"b\"", "\"step\":\"B\"", 1)).expect("edit");
    let bad = runbook(["transcript", &id, "--runs-dir", &runs_dir(&s), "--verify"]).run();
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    // Named: the edited record, not the one after it.
    assert!(
        bad.stderr
            .contains(&format!("hash chain is broken: record {edited} was edited")),
        "{}",
        bad.stderr
    );
    let resume = runbook(["resume", &id, "--runs-dir", &runs_dir(&s)]).run();
    assert_eq!(resume.code, Some(2));
}

#[test]
fn journal_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    s.runbook(COUNTED);
    assert_eq!(s.exec(&[]).code, Some(0));
    let id = run_ids(&s).remove(0);
    for f in [
        "journal.jsonl",
        "transcript.md",
        "transcript.json",
        "steps/a.stdout.log",
    ] {
        let p = s.path(&format!("runs/{id}/{f}"));
        if f.ends_with(".log") && !p.exists() {
            continue;
        }
        let mode = std::fs::metadata(&p).expect(f).permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f} is {mode:o}");
    }
}

#[test]
fn lock_contention_between_two_runs() {
    let s = Scratch::new();
    s.runbook("runbook: locked\nversion: 1\ninputs:\n  node: { default: vault-2 }\nlock: \"vault-{{ node }}\"\nsteps:\n  - id: hold\n    run: touch {D}/holding; sleep 2\n");
    let mut first = s
        .command(&["--progress", "plain"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for(&s.path("holding"), Duration::from_secs(20));
    let second = s.exec(&[]);
    // Busy (6), not the usage-error code 2: nothing was wrong with the command.
    assert_eq!(second.code, Some(6), "{}", second.stderr);
    assert!(
        second.stderr.contains("`vault-vault-2` is locked by run"),
        "{}",
        second.stderr
    );
    assert!(second.stderr.contains("root@"), "{}", second.stderr);
    assert!(
        second.stderr.contains("its engine is running: wait for it"),
        "{}",
        second.stderr
    );
    let _ = first.kill();
    let _ = first.wait();
    // Killed mid-step: the run is interrupted and resumable, so that is what the lock says.
    let stopped = s.exec(&[]);
    assert_eq!(stopped.code, Some(6));
    assert!(
        stopped
            .stderr
            .contains("that run is stopped but resumable: continue it with `runbook resume"),
        "{}",
        stopped.stderr
    );
    let refused = runbook(["unlock", "vault-vault-2", "--runs-dir", &runs_dir(&s)]).run();
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    let unlock = runbook([
        "unlock",
        "vault-vault-2",
        "--force",
        "--runs-dir",
        &runs_dir(&s),
    ])
    .run();
    assert_eq!(unlock.code, Some(0), "{}", unlock.stderr);
    let third = s.exec(&[]);
    assert_eq!(third.code, Some(0), "{}", third.stderr);
    // A finished run's leftover lock is stale.
    let id = run_ids(&s)
        .into_iter()
        .find(|id| {
            std::fs::read_to_string(s.path(&format!("runs/{id}/journal.jsonl")))
                .unwrap_or_default()
                .contains("\"status\":\"success\"")
        })
        .unwrap_or_default();
    let lock = s.path("runs/.locks/vault-vault-2.lock");
    let holder = serde_json::json!({"key":"vault-vault-2","run_id":id,"user":"root","host":"x","pid":1,"started":"t"});
    std::fs::write(&lock, holder.to_string()).expect("plant");
    let stale = s.exec(&[]);
    assert_eq!(stale.code, Some(6));
    assert!(
        stale
            .stderr
            .contains("the lock is stale, break it with `runbook unlock vault-vault-2`"),
        "{}",
        stale.stderr
    );
}

fn filters() -> insta::Settings {
    let mut st = insta_settings();
    st.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "[TIME]");
    st.add_filter(r"\d{8}-\d{6}-[a-z0-9-]+-[0-9a-f]{16}", "[RUN]");
    st.add_filter(r#""duration_ms": \d+"#, "\"duration_ms\": [MS]");
    st.add_filter(r"root@[A-Za-z0-9_.-]+", "root@[HOST]");
    st.add_filter(r#""host": "[^"]*""#, "\"host\": \"[HOST]\"");
    st.add_filter(r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]");
    st.add_filter(r"\b\d+(\.\d+)?(ms|s)\b", "[DURATION]");
    st
}

#[test]
fn transcript_snapshots_in_both_formats() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: transcribed
version: 1
inputs:
  node: { default: vault-2 }
  token: { secret: true, from_env: TOKEN }
steps:
  - id: halt
    title: Halt traffic to {{ node }}
    confirm: Halt {{ node }}?
    run: echo halting {{ node }}; echo "token is {{ token }}"
    rollback: echo restore {{ node }}
  - id: check
    needs: [halt]
    run: "echo '{\"sealed\": true}'"
    outputs:
      sealed: json.sealed
  - id: fail
    needs: [check]
    run: echo boom >&2; exit 2
"#,
    );
    let mut all = vec![
        "exec".to_string(),
        s.path("runbook.yaml").display().to_string(),
        "--runs-dir".into(),
        runs_dir(&s),
        "--yes".into(),
    ];
    all.push("--progress".into());
    all.push("plain".into());
    let ran = runbook(all).env("TOKEN", "tok-canary-314159").run();
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let id = run_ids(&s).remove(0);
    let md = runbook(["transcript", &id, "--runs-dir", &runs_dir(&s)]).run();
    let json = runbook([
        "transcript",
        &id,
        "--runs-dir",
        &runs_dir(&s),
        "--format",
        "json",
    ])
    .run();
    assert_eq!(md.code, Some(0), "{}", md.stderr);
    filters().bind(|| {
        insta::assert_snapshot!("transcript-md", md.stdout);
        insta::assert_snapshot!("transcript-json", json.stdout);
    });
    // The canary is nowhere in the run directory.
    let mut stack = vec![s.path(&format!("runs/{id}"))];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(
                std::fs::read_dir(&p)
                    .expect("dir")
                    .flatten()
                    .map(|e| e.path()),
            );
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()).into_owned();
            assert!(
                !text.contains("tok-canary-314159"),
                "secret in {}",
                p.display()
            );
        }
    }
    let tpl = s.path("mine.j2");
    std::fs::write(
        &tpl,
        "{{ runbook }}: {{ status }} ({% for s in steps %}{{ s.id }}={{ s.status }} {% endfor %})",
    )
    .expect("tpl");
    let custom = runbook([
        "transcript".as_ref(),
        id.as_ref(),
        "--runs-dir".as_ref(),
        runs_dir(&s).as_ref(),
        "--template".as_ref(),
        tpl.as_os_str(),
    ])
    .run();
    assert_eq!(
        custom.stdout.trim(),
        "transcribed: step-failed (halt=succeeded check=succeeded fail=failed )"
    );
    let runs = runbook(["runs", "--runs-dir", &runs_dir(&s)]).run();
    assert!(
        runs.stdout.contains(&id) && runs.stdout.contains("step-failed (1)"),
        "{}",
        runs.stdout
    );
}

/// A recording server standing in for a SaaS API (which cannot be reached from here); it checks
/// the vendor's documented method, path and headers.
fn recorder(status: u16) -> (Server, Arc<Mutex<Vec<Request>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let srv = Server::start(None, move |req| {
        if let Ok(mut v) = s2.lock() {
            v.push(req.clone());
        }
        Response::json(status, serde_json::json!({"ok": true}))
    });
    (srv, seen)
}

#[test]
fn attachments_follow_the_vendors_request_shapes() {
    let s = Scratch::new();
    s.runbook("runbook: att\nversion: 1\ninputs:\n  token: { secret: true, from_env: TOKEN }\nsteps:\n  - id: only\n    run: echo working with {{ token }}\n");
    let canary = "att-canary-271828";
    let mut all = vec![
        "exec".to_string(),
        s.path("runbook.yaml").display().to_string(),
        "--runs-dir".into(),
        runs_dir(&s),
    ];
    all.extend(["--progress".into(), "plain".into()]);
    assert_eq!(runbook(all).env("TOKEN", canary).run().code, Some(0));
    let id = run_ids(&s).remove(0);

    let (pd, pd_seen) = recorder(201);
    let ran = runbook([
        "attach",
        &id,
        "--runs-dir",
        &runs_dir(&s),
        "--to",
        "pagerduty:PT4KHLK",
    ])
    .env(
        "RUNBOOK_PAGERDUTY_URL",
        format!("http://127.0.0.1:{}", pd.port),
    )
    .env("PAGERDUTY_TOKEN", "pd-token-1")
    .env("PAGERDUTY_FROM", "oncall@example.com")
    .run();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let req = pd_seen.lock().expect("lock")[0].clone();
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/incidents/PT4KHLK/notes")
    );
    assert_eq!(req.header("authorization"), Some("Token token=pd-token-1"));
    assert_eq!(req.header("from"), Some("oncall@example.com"));
    assert_eq!(
        req.header("accept"),
        Some("application/vnd.pagerduty+json;version=2")
    );
    let body: serde_json::Value = serde_json::from_str(&req.body).expect("json body");
    assert!(
        body["note"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("runbook att")),
        "{body}"
    );
    assert!(!req.body.contains(canary));

    let (jira, jira_seen) = recorder(200);
    let ran = runbook([
        "attach",
        &id,
        "--runs-dir",
        &runs_dir(&s),
        "--to",
        "jira:OPS-42",
    ])
    .env(
        "JIRA_BASE_URL",
        format!("http://127.0.0.1:{}/jira", jira.port),
    )
    .env("JIRA_USER", "me@example.com")
    .env("JIRA_TOKEN", "jira-token")
    .run();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let reqs = jira_seen.lock().expect("lock").clone();
    assert_eq!(reqs[0].path, "/jira/rest/api/2/issue/OPS-42/attachments");
    assert_eq!(reqs[0].header("x-atlassian-token"), Some("no-check"));
    assert!(
        reqs[0]
            .header("content-type")
            .is_some_and(|c| c.starts_with("multipart/form-data; boundary="))
    );
    assert!(
        reqs[0].body.contains("name=\"file\"; filename=\"runbook-"),
        "{}",
        reqs[0].body
    );
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("me@example.com:jira-token")
    );
    assert_eq!(reqs[0].header("authorization"), Some(basic.as_str()));
    assert_eq!(reqs[1].path, "/jira/rest/api/2/issue/OPS-42/comment");
    assert!(
        serde_json::from_str::<serde_json::Value>(&reqs[1].body)
            .is_ok_and(|v| v["body"].is_string())
    );
    assert!(reqs.iter().all(|r| !r.body.contains(canary)));

    let (hook, hook_seen) = recorder(204);
    let ran = runbook([
        "attach",
        &id,
        "--runs-dir",
        &runs_dir(&s),
        "--to",
        &format!("webhook:http://127.0.0.1:{}/hook", hook.port),
    ])
    .run();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let req = hook_seen.lock().expect("lock")[0].clone();
    let v: serde_json::Value = serde_json::from_str(&req.body).expect("transcript json");
    assert_eq!(v["transcript_version"], 1);
    assert!(!req.body.contains(canary));
}

#[test]
fn a_failed_attachment_keeps_the_transcript_and_says_how_to_retry() {
    let s = Scratch::new();
    s.runbook("runbook: a\nversion: 1\nsteps:\n  - id: x\n    run: 'true'\n");
    let (srv, seen) = recorder(503);
    let target = format!("webhook:http://127.0.0.1:{}/down", srv.port);
    let ran = s.exec(&["--attach", &target]);
    assert_eq!(
        ran.code,
        Some(0),
        "the run itself succeeded:\n{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("HTTP 503"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("re-run `runbook attach"),
        "{}",
        ran.stderr
    );
    assert_eq!(seen.lock().expect("lock").len(), 4, "retried with backoff");
    let id = run_ids(&s).remove(0);
    assert!(s.path(&format!("runs/{id}/transcript.md")).is_file());
}
