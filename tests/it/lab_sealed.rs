//! Sealed after a restart, on the real OpenBao lab: `runbooks/vault-sealed.yaml` asks the key
//! holders (`ask: { secret: true, from: <what the node still needs> }` in lib/unseal.yaml),
//! and three different OS users (root, rbtest, rbask2) each enter their own share with
//! `runbook answer`, as themselves, from their own process; the same user twice is refused.
//! Each share is submitted to `sys/unseal` as it is given (`for_each: { answers: shares }`).

use std::process::Stdio;

use super::*;
use crate::ask::{SECOND_USER, answer_in, ensure_second_user};
use crate::sshd::{TEST_USER, ensure_test_user};

#[test]
fn sealed_after_restart_is_unsealed_by_three_key_holders_as_different_os_users() {
    ensure_test_user();
    ensure_second_user();
    let lab = lab();
    // A real restart: the node comes back sealed.
    lab.fault("vault-2", "sealed");
    assert_eq!(lab.health("vault-2"), "503", "sealed after the restart");
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&lab.run, std::fs::Permissions::from_mode(0o711));
    let inputs = std::fs::read_to_string(lab.path("inputs-vault-2.yaml")).expect("inputs");
    let field = |k: &str| {
        inputs
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}: ")))
            .map(str::trim)
            .expect("lab input")
            .to_string()
    };
    let runs = lab.path("runs");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
    cmd.current_dir(root())
        .args(["exec", "runbooks/vault-sealed.yaml", "--progress", "plain"])
        .args(["-i", "node=vault-2"])
        .args(["-i", &format!("vault_addr={}", field("vault_addr"))])
        .args(["-i", &format!("ca_cert={}", field("ca_cert"))])
        .args(["-i", &format!("lb_socket={}", field("lb_socket"))])
        .arg("--ssh-config")
        .arg(lab.path("ssh_config"))
        .arg("--runs-dir")
        .arg(&runs)
        .env("NO_COLOR", "1")
        .env_remove("VAULT_UNSEAL_KEYS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("runbook exec");
    // Wait until the ask is open (the journal says how to answer).
    let t0 = Instant::now();
    let id = loop {
        let found = std::fs::read_dir(&runs).ok().and_then(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("vault-sealed"))
                .find(|n| {
                    std::fs::read_to_string(runs.join(n).join("journal.jsonl"))
                        .unwrap_or_default()
                        .contains("\"step\":\"unseal.shares\",\"how_to_answer\"")
                })
        });
        if let Some(id) = found {
            break id;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the ask never opened"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (keys, _) = lab.secrets();
    let keys: Vec<&str> = keys.split(',').collect();
    let step = "unseal.shares";
    let (code, out) = answer_in(&runs, None, &[&id, step, "--stdin"], Some(keys[0]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(1 of 3)"), "{out}");
    // Streamed: the first share is submitted to sys/unseal before the second holder answers.
    let journal = runs.join(&id).join("journal.jsonl");
    let submitted = |k: usize| {
        std::fs::read_to_string(&journal)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|e| {
                e["event"] == "item-finished"
                    && e["step"] == "unseal.submit"
                    && e["item_index"] == k
                    && e["status"] == "succeeded"
            })
    };
    let t0 = Instant::now();
    while !submitted(0) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "share 1 never submitted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!submitted(1));
    let (code, out) = answer_in(
        &runs,
        Some(TEST_USER),
        &[&id, step, "--stdin"],
        Some(keys[1]),
    );
    assert_eq!(code, 0, "{out}");
    let (code, twice) = answer_in(
        &runs,
        Some(TEST_USER),
        &[&id, step, "--stdin"],
        Some(keys[2]),
    );
    assert_eq!(code, 2, "{twice}");
    assert!(twice.contains("already answered"), "{twice}");
    let (code, out) = answer_in(
        &runs,
        Some(SECOND_USER),
        &[&id, step, "--stdin"],
        Some(keys[3]),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(3 of 3)"), "{out}");
    let done = child.wait_with_output().expect("run");
    let ran = Ran {
        code: done.status.code(),
        stdout: String::from_utf8_lossy(&done.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&done.stderr).into_owned(),
    };
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    for who in ["root", TEST_USER, SECOND_USER] {
        assert!(
            ran.stderr
                .contains(&format!("unseal.shares: answered by {who}")),
            "{who}:\n{}",
            ran.stderr
        );
    }
    assert_eq!(
        status_of(&ran, "unseal.submit"),
        "succeeded",
        "{}",
        ran.stderr
    );
    assert_eq!(lab.health("vault-2"), "429", "an unsealed standby again");
    assert_eq!(lab.wait_haproxy("vault-2", "UP"), "UP");
    lab.assert_no_secrets(&[&ran]);
}
