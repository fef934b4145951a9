//! Approvals identify people: a gate's `approvers:` decides who may answer; hostile files in
//! `answers/` (a symlink to someone's answer, a FIFO, a huge sparse file, an answer copied from
//! another run) are refused without hanging the engine; run ids cannot be guessed.

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::exec::{Scratch, wait_output};
use crate::harness::runbook;
use crate::sshd::{TEST_USER, ensure_test_user};

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

fn run_id(s: &Scratch) -> Option<String> {
    std::fs::read_dir(s.path("runs"))
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| !n.starts_with('.'))
}

/// Waits until the run's journal contains `needle` (the engine got there).
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

fn as_test_user(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(args)
        .uid(uid_of(TEST_USER))
        .env("USER", TEST_USER)
        .env("NO_COLOR", "1")
        .output()
        .expect("run as the test user")
}

#[test]
fn only_listed_approvers_count_and_hostile_answer_files_are_refused() {
    ensure_test_user();
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: guarded
version: 1
steps:
  - id: wipe
    confirm: { message: "Remove the raft data?", approvers: [root, "group:nonexistent-group"] }
    run: echo wiped >> {D}/done
"#,
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    let mut child = s
        .command(&["--progress", "plain"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let id = wait_journal(&s, "\"event\":\"gate-waiting\"");
    assert_eq!(id.rsplit('-').next().map(str::len), Some(16), "run id {id}");
    let answers = s.path(&format!("runs/{id}/answers"));

    // Another user rejects: not an approver, ignored.
    let out = as_test_user(&[
        "reject",
        &id,
        "wipe",
        "--runs-dir",
        &s.path("runs").display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_journal(&s, "is not among its approvers");

    // Hostile files: a FIFO, a 6 GB sparse file, a symlink to a real answer elsewhere, an
    // answer written for another run, an answer without a nonce.
    let fifo = answers.join("a-fifo.json");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success())
    );
    let sparse = std::fs::File::create(answers.join("b-sparse.json")).expect("sparse");
    sparse.set_len(6 << 30).expect("set_len");
    let elsewhere = s.path("elsewhere.json");
    let forged = |run: &str, nonce: &str| {
        format!(
            r#"{{"run":"{run}","nonce":"{nonce}","step":"wipe","decision":"approved","comment":null,"host":"h","at":"t"}}"#
        )
    };
    std::fs::write(&elsewhere, forged(&id, "n1")).expect("write");
    std::os::unix::fs::symlink(&elsewhere, answers.join("c-link.json")).expect("symlink");
    std::fs::write(
        answers.join("d-other-run.json"),
        forged("20260101-000000-x-0000000000000000", "n2"),
    )
    .expect("write");
    std::fs::write(
        answers.join("e-no-nonce.json"),
        r#"{"step":"wipe","decision":"approved","comment":null,"host":"h","at":"t"}"#,
    )
    .expect("write");
    wait_journal(&s, "no-nonce.json");
    assert_eq!(s.read("done"), "", "a hostile file approved the gate");

    // The listed approver answers: the run goes on.
    let ran = runbook([
        "approve",
        &id,
        "wipe",
        "--runs-dir",
        &s.path("runs").display().to_string(),
    ])
    .run();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let (code, err) = wait_output(&mut child, Duration::from_secs(30));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(s.read("done"), "wiped\n");
    for needle in [
        "rbtest answered `wipe` but is not among its approvers",
        "a-fifo.json: not a regular file",
        "b-sparse.json: larger than",
        "c-link.json: cannot open",
        "d-other-run.json: written for another run",
        "e-no-nonce.json: written for another run",
        "wipe: approved by root",
    ] {
        assert!(err.contains(needle), "missing `{needle}`:\n{err}");
    }
    // Every answer file was consumed.
    let left: Vec<_> = std::fs::read_dir(&answers)
        .expect("answers")
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn run_ids_carry_64_random_bits() {
    let s = Scratch::new();
    s.runbook("runbook: ids\nversion: 1\nsteps:\n  - id: a\n    run: \"true\"\n");
    for _ in 0..3 {
        assert_eq!(s.exec(&[]).code, Some(0));
    }
    let ids: Vec<String> = std::fs::read_dir(s.path("runs"))
        .expect("runs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(ids.len(), 3);
    let suffixes: std::collections::HashSet<String> = ids
        .iter()
        .map(|i| i.rsplit('-').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(suffixes.len(), 3);
    assert!(
        suffixes
            .iter()
            .all(|s| s.len() == 16 && s.chars().all(|c| c.is_ascii_hexdigit()))
    );
}
