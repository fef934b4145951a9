//! The Vault crash recovery end to end, in the lab: three Vault stand-in nodes behind a real
//! HAProxy, real sshd hosts, `runbooks/vault-crash.yaml` run by the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Ran, root, runbook};

fn standin() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let ok = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "vault-standin"])
            .current_dir(root())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot build the Vault stand-in");
    });
    root().join("target/debug/vault-standin")
}

fn available() -> bool {
    let have = Path::new("/usr/sbin/sshd").exists()
        && Path::new("/usr/sbin/haproxy").exists()
        && Command::new("socat")
            .arg("-V")
            .stdout(Stdio::null())
            .status()
            .is_ok();
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "the lab needs openssh-server, haproxy, socat and curl (.ci/run installs them)"
        );
        eprintln!("skipping: the lab's packages are not installed");
    }
    have
}

/// One lab, in its own directory, torn down on drop.
struct Lab {
    run: tempfile::TempDir,
}

impl Lab {
    fn up() -> Lab {
        let run = tempfile::Builder::new()
            .prefix("rb-lab-")
            .tempdir()
            .expect("tmp");
        let out = Command::new(root().join("lab/up"))
            .env("LAB_RUN", run.path())
            .env("LAB_STANDIN", standin())
            .output()
            .expect("lab/up");
        assert!(
            out.status.success(),
            "lab/up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Lab { run }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.run.path().join(rel)
    }

    fn fault(&self, node: &str, kind: &str) {
        let ok = Command::new(root().join("lab/fault"))
            .args([node, kind])
            .env("LAB_RUN", self.run.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "lab/fault {node} {kind}");
    }

    fn secrets(&self) -> (String, String) {
        let keys = std::fs::read_to_string(self.path("unseal-keys")).expect("keys");
        let token = std::fs::read_to_string(self.path("root-token")).expect("token");
        (
            keys.lines().collect::<Vec<_>>().join(","),
            token.trim().to_string(),
        )
    }

    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = [
            "exec",
            "runbooks/vault-crash.yaml",
            "--inputs-file",
            &self.path("inputs-vault-2.yaml").display().to_string(),
            "--ssh-config",
            &self.path("ssh_config").display().to_string(),
            "--runs-dir",
            &self.path("runs").display().to_string(),
            "--approve",
            "halt-traffic",
            "--approve",
            "restart",
            "--approve",
            "restore-traffic",
            "--no-wait",
            "--progress",
            "plain",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    fn exec(&self, extra: &[&str], keys: Option<&str>) -> Ran {
        let (all, token) = self.secrets();
        runbook(self.args(extra))
            .env("VAULT_UNSEAL_KEYS", keys.unwrap_or(&all))
            .env("VAULT_TOKEN", token)
            .timeout(Duration::from_secs(180))
            .run()
    }

    /// HAProxy's status for a server of the `vault` backend (UP, DOWN, MAINT…).
    fn haproxy(&self, server: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo 'show stat' | socat stdio {}",
                self.path("haproxy.sock").display()
            ))
            .output()
            .expect("socat");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&"vault") && f.get(1) == Some(&server))
            .and_then(|f| f.get(17).map(|s| s.to_string()))
            .unwrap_or_default()
    }

    fn wait_haproxy(&self, server: &str, want: &str) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.haproxy(server);
            if s.starts_with(want) || t0.elapsed() > Duration::from_secs(10) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn run_dir(&self) -> PathBuf {
        let mut ids: Vec<PathBuf> = std::fs::read_dir(self.path("runs"))
            .expect("runs")
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        ids.sort();
        ids.pop().expect("a run")
    }

    /// Every file of the last run, concatenated (journal, transcripts, logs).
    fn run_files(&self) -> String {
        let mut all = String::new();
        let mut stack = vec![self.run_dir()];
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                stack.extend(
                    std::fs::read_dir(&p)
                        .expect("dir")
                        .flatten()
                        .map(|e| e.path()),
                );
            } else {
                all.push_str(&String::from_utf8_lossy(
                    &std::fs::read(&p).unwrap_or_default(),
                ));
            }
        }
        all
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(root().join("lab/down"))
            .env("LAB_RUN", self.run.path())
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn storage_fault_is_recovered_and_traffic_restored() {
    if !available() {
        return;
    }
    let lab = Lab::up();
    assert_eq!(lab.haproxy("vault-2"), "UP");
    lab.fault("vault-2", "storage");
    let ran = lab.exec(&[], None);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stderr.contains("cause=storage"), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("reachable voters including this node: 3 of 3"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("shares_submitted=3"), "{}", ran.stderr);
    assert_eq!(lab.wait_haproxy("vault-2", "UP"), "UP");
    // No unseal share or token anywhere the run wrote.
    let (keys, token) = lab.secrets();
    let files = lab.run_files();
    for secret in keys.split(',').chain([token.as_str()]) {
        assert!(
            !files.contains(secret),
            "a secret leaked into the run directory"
        );
        assert!(
            !ran.stderr.contains(secret) && !ran.stdout.contains(secret),
            "a secret leaked to the terminal"
        );
    }
    let t = runbook([
        "transcript".to_string(),
        "--runs-dir".into(),
        lab.path("runs").display().to_string(),
        lab.run_dir()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    ])
    .run();
    assert!(t.stdout.contains("**success** (exit 0)"), "{}", t.stdout);
}

#[test]
fn oom_waits_for_the_operator_then_recovers() {
    if !available() {
        return;
    }
    let lab = Lab::up();
    lab.fault("vault-2", "oom");
    let stopped = lab.exec(&[], None);
    assert_eq!(stopped.code, Some(3), "{}", stopped.stderr);
    assert!(stopped.stderr.contains("cause=oom"), "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains("fix-oom is waiting for an answer"),
        "{}",
        stopped.stderr
    );
    assert_eq!(
        lab.haproxy("vault-2"),
        "MAINT",
        "a node being fixed stays out of the load balancer"
    );
    let id = lab
        .run_dir()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (keys, token) = lab.secrets();
    let resumed = runbook([
        "resume".to_string(),
        id,
        "--runs-dir".into(),
        lab.path("runs").display().to_string(),
        "--ssh-config".into(),
        lab.path("ssh_config").display().to_string(),
        "--approve".into(),
        "fix-oom".into(),
        "--approve".into(),
        "restart".into(),
        "--approve".into(),
        "restore-traffic".into(),
        "--progress".into(),
        "plain".into(),
    ])
    .env("VAULT_UNSEAL_KEYS", keys)
    .env("VAULT_TOKEN", token)
    .timeout(Duration::from_secs(180))
    .run();
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    assert_eq!(lab.wait_haproxy("vault-2", "UP"), "UP");
}

#[test]
fn crash_and_config_faults_stop_at_the_right_manual_step() {
    if !available() {
        return;
    }
    let lab = Lab::up();
    lab.fault("vault-2", "crash");
    let crash = lab.exec(&[], None);
    assert_eq!(crash.code, Some(3), "{}", crash.stderr);
    assert!(
        crash.stderr.contains("cause=unknown") && crash.stderr.contains("fix-unknown is waiting"),
        "{}",
        crash.stderr
    );
    assert_eq!(lab.haproxy("vault-2"), "MAINT");

    let lab = Lab::up();
    lab.fault("vault-2", "config");
    let config = lab.exec(&[], None);
    assert_eq!(config.code, Some(3), "{}", config.stderr);
    assert!(config.stderr.contains("cause=config"), "{}", config.stderr);
    assert!(
        config.stderr.contains("Error parsing") && config.stderr.contains("vault.hcl"),
        "the parse error line is shown:\n{}",
        config.stderr
    );
    assert!(
        config.stderr.contains("fix-config is waiting"),
        "{}",
        config.stderr
    );
    assert_eq!(lab.haproxy("vault-2"), "MAINT");
}

#[test]
fn a_wrong_share_fails_clearly_and_traffic_stays_halted() {
    if !available() {
        return;
    }
    let lab = Lab::up();
    lab.fault("vault-2", "storage");
    // A share of another key split: well-formed, wrong.
    let other = tempfile::tempdir().expect("tmp");
    let ok = Command::new(standin())
        .args(["init", "--out"])
        .arg(other.path())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok);
    let foreign = std::fs::read_to_string(other.path().join("unseal-keys"))
        .expect("keys")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let (keys, _) = lab.secrets();
    let mine: Vec<&str> = keys.split(',').collect();
    let mixed = format!("{},{foreign},{}", mine[0], mine[1]);
    let ran = lab.exec(&[], Some(&mixed));
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains(
            "HTTP status 400, expected [200]: [\"cipher: message authentication failed\"]"
        ),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr
            .contains("is not healthy (sealed or down): leaving it out of the load balancer"),
        "{}",
        ran.stderr
    );
    assert_eq!(
        lab.haproxy("vault-2"),
        "MAINT",
        "a sealed node must not go back behind the load balancer"
    );
    assert!(!ran.stderr.contains(&foreign) && !lab.run_files().contains(&foreign));
}

#[test]
fn too_few_shares_fail_and_traffic_stays_halted() {
    if !available() {
        return;
    }
    let lab = Lab::up();
    lab.fault("vault-2", "storage");
    let (keys, _) = lab.secrets();
    let two: Vec<&str> = keys.split(',').take(2).collect();
    let ran = lab.exec(&[], Some(&two.join(",")));
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains(
            "ran out of items after 2 of 2 without `response.json.sealed == false` becoming true"
        ),
        "{}",
        ran.stderr
    );
    assert_eq!(lab.haproxy("vault-2"), "MAINT");
}

#[test]
fn ctrl_c_during_the_unseal_wait_rolls_back() {
    if !available() {
        return;
    }
    let lab = Lab::up();
    lab.fault("vault-2", "storage");
    // The API never answers at this address: the wait before unsealing keeps polling.
    let closed = crate::sshd::free_port();
    let mut args = lab.args(&["-i", &format!("vault_addr=http://127.0.0.1:{closed}")]);
    args.retain(|a| !a.is_empty());
    let (keys, token) = lab.secrets();
    let mut child = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(&args)
        .current_dir(root())
        .env("VAULT_UNSEAL_KEYS", keys)
        .env("VAULT_TOKEN", token)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let t0 = Instant::now();
    loop {
        let dir = lab.path("runs");
        let waiting = std::fs::read_dir(&dir)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                std::fs::read_to_string(e.path().join("journal.jsonl"))
                    .is_ok_and(|j| j.contains("\"step\":\"wait-api\""))
            });
        if waiting {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "never reached the wait"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let (code, err) = crate::exec::wait_output(&mut child, Duration::from_secs(60));
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("rollback of halt-traffic ✔ ok"), "{err}");
    assert_eq!(
        lab.haproxy("vault-2"),
        "MAINT",
        "the restarted node is sealed: it stays out"
    );
}
