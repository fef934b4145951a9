//! `runbooks/vault-crash.yaml` end to end in the lab: three real OpenBao 2.7.2 nodes (raft over
//! TLS, Shamir 5/3) behind a real HAProxy, real sshd hosts, real faults (`lab/fault`), run by
//! the real binary. One lab serves every test: they take turns (a mutex), each heals the
//! cluster first (`lab/fault NODE heal`), and the lab is torn down when the test process exits.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::harness::{Ran, root, runbook};

/// The lab's packages; a missing one fails the test with one line (the README's test command
/// installs them when run as root).
fn require_packages() {
    let missing: Vec<&str> = [
        "/usr/sbin/sshd",
        "/usr/sbin/haproxy",
        "/usr/bin/socat",
        "/usr/bin/curl",
        "/usr/bin/openssl",
        "/usr/bin/python3",
        "/usr/bin/flock",
        "/usr/bin/prlimit",
    ]
    .into_iter()
    .filter(|p| !std::path::Path::new(p).exists())
    .collect();
    assert!(
        missing.is_empty(),
        "the lab needs {} (install openssh-server haproxy socat curl openssl python3 util-linux, or run the README's test command as root)",
        missing.join(", ")
    );
}

/// The lab's run directory, for the exit hook that tears it down.
static LAB_DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn lab_down_at_exit() {
    if let Some(dir) = LAB_DIR.get() {
        let _ = Command::new(root().join("lab/down"))
            .env("LAB_RUN", dir)
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// One lab for the whole test process.
struct Lab {
    run: PathBuf,
}

/// Takes the lab (bringing it up the first time) and heals it: every node running, unsealed and
/// a healthy voter, every HAProxy server enabled, no lock left by an earlier test's run.
fn lab() -> MutexGuard<'static, Lab> {
    static LAB: OnceLock<Mutex<Lab>> = OnceLock::new();
    let lab = LAB.get_or_init(|| {
        require_packages();
        let run = std::env::temp_dir().join(format!("rb-lab-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run);
        let _ = LAB_DIR.set(run.clone());
        // SAFETY: registers a plain extern "C" function that only runs a child process.
        unsafe { libc::atexit(lab_down_at_exit) };
        let t0 = Instant::now();
        let out = Command::new(root().join("lab/up"))
            .env("LAB_RUN", &run)
            .output()
            .expect("lab/up");
        assert!(
            out.status.success(),
            "lab/up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("lab: up in {:.1} s", t0.elapsed().as_secs_f64());
        Mutex::new(Lab { run })
    });
    let guard = lab.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    guard.heal();
    guard
}

impl Lab {
    fn path(&self, rel: &str) -> PathBuf {
        self.run.join(rel)
    }

    fn heal(&self) {
        let _ = runbook([
            "unlock",
            "vault-vault-2",
            "--runs-dir",
            &self.path("runs").display().to_string(),
        ])
        .run();
        self.fault("vault-2", "heal");
    }

    fn fault(&self, node: &str, kind: &str) {
        let out = Command::new(root().join("lab/fault"))
            .args([node, kind])
            .env("LAB_RUN", &self.run)
            .output()
            .expect("lab/fault");
        assert!(
            out.status.success(),
            "lab/fault {node} {kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn secrets(&self) -> (String, String) {
        let keys = std::fs::read_to_string(self.path("unseal-keys")).expect("keys");
        let token = std::fs::read_to_string(self.path("root-token")).expect("token");
        (
            keys.lines().collect::<Vec<_>>().join(","),
            token.trim().to_string(),
        )
    }

    fn exec_args(&self) -> Vec<String> {
        [
            "exec",
            "runbooks/vault-crash.yaml",
            "--inputs-file",
            &self.path("inputs-vault-2.yaml").display().to_string(),
            "--ssh-config",
            &self.path("ssh_config").display().to_string(),
            "--runs-dir",
            &self.path("runs").display().to_string(),
            "--approve",
            "halt-traffic.disable",
            "--approve",
            "fix-storage",
            "--approve",
            "restart",
            "--approve",
            "restore-traffic.enable",
            "--no-wait",
            "--progress",
            "plain",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Runs vault-crash.yaml for vault-2 headless, with `keys` as the key holders' shares.
    fn exec(&self, keys: Option<&str>) -> Ran {
        let (all, token) = self.secrets();
        runbook(self.exec_args())
            .env("VAULT_UNSEAL_KEYS", keys.unwrap_or(&all))
            .env("VAULT_TOKEN", token)
            .timeout(Duration::from_secs(240))
            .run()
    }

    /// Resumes the last run, approving the manual fix `step` (the operator did it).
    fn resume(&self, step: &str) -> Ran {
        let (keys, token) = self.secrets();
        runbook([
            "resume".to_string(),
            self.last_run_id(),
            "--runs-dir".into(),
            self.path("runs").display().to_string(),
            "--ssh-config".into(),
            self.path("ssh_config").display().to_string(),
            "--approve".into(),
            step.into(),
            "--approve".into(),
            "restart".into(),
            "--approve".into(),
            "restore-traffic.enable".into(),
            "--progress".into(),
            "plain".into(),
        ])
        .env("VAULT_UNSEAL_KEYS", keys)
        .env("VAULT_TOKEN", token)
        .timeout(Duration::from_secs(240))
        .run()
    }

    /// HAProxy's status of every server of the `vault` backend, e.g. `vault-1=UP vault-2=MAINT`.
    fn haproxy_all(&self) -> String {
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
            .filter(|f| {
                f.first() == Some(&"vault") && f.get(1).is_some_and(|s| s.starts_with("vault-"))
            })
            .map(|f| format!("{}={}", f[1], f.get(17).copied().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn haproxy(&self, server: &str) -> String {
        self.haproxy_all()
            .split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{server}=")).map(str::to_string))
            .unwrap_or_default()
    }

    /// Waits (up to 15 s) for HAProxy to report `want` for `server` (its checks run every 500 ms).
    fn wait_haproxy(&self, server: &str, want: &str) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.haproxy(server);
            if s == want || t0.elapsed() > Duration::from_secs(15) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What the node's own API says: `sys/health`'s HTTP code (200 active, 429 standby,
    /// 503 sealed, 000 unreachable).
    fn health(&self, node: &str) -> String {
        let ports = std::fs::read_to_string(self.path("ports")).expect("ports");
        let key = format!("API_{}=", node.replace('-', "_"));
        let port = ports
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .expect("port")
            .to_string();
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .arg("--cacert")
            .arg(self.path("tls/ca.pem"))
            .arg(format!("https://127.0.0.2:{port}/v1/sys/health"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn last_run_id(&self) -> String {
        // The newest run directory (run ids need not sort by time).
        std::fs::read_dir(self.path("runs"))
            .expect("runs")
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.created().or_else(|_| m.modified()).ok()?, e.file_name()))
            })
            .max()
            .map(|(_, n)| n.to_string_lossy().into_owned())
            .expect("a run")
    }

    /// Every byte of the last run's files (journal, transcripts, step logs).
    fn run_files(&self) -> Vec<u8> {
        let mut all = Vec::new();
        let mut stack = vec![self.path("runs").join(self.last_run_id())];
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                stack.extend(
                    std::fs::read_dir(&p)
                        .expect("dir")
                        .flatten()
                        .map(|e| e.path()),
                );
            } else {
                all.extend(std::fs::read(&p).unwrap_or_default());
            }
        }
        all
    }

    /// No unseal share and no token in the terminal output or any file of the last run.
    fn assert_no_secrets(&self, ran: &[&Ran]) {
        let (keys, token) = self.secrets();
        let files = self.run_files();
        for secret in keys.split(',').chain([token.as_str()]) {
            for r in ran {
                assert!(
                    !r.stdout.contains(secret) && !r.stderr.contains(secret),
                    "a secret reached the terminal"
                );
            }
            assert!(
                !files.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a secret reached a file of run {}",
                self.last_run_id()
            );
        }
    }
}

/// The status the summary table gives `step`.
fn status_of(ran: &Ran, step: &str) -> String {
    ran.stderr
        .lines()
        .chain(ran.stdout.lines())
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(step))
                .then(|| words.next().unwrap_or_default().to_string())
                .filter(|s| {
                    [
                        "succeeded",
                        "failed",
                        "skipped",
                        "not-run",
                        "declined",
                        "waiting",
                        "paused",
                    ]
                    .contains(&s.as_str())
                })
        })
        .unwrap_or_default()
}

fn assert_cause(ran: &Ran, cause: &str) {
    assert!(
        ran.stderr.contains(&format!("triage.cause={cause}")),
        "expected cause {cause}:\n{}",
        ran.stderr
    );
}

#[test]
fn healthy_node_is_left_untouched() {
    let lab = lab();
    let before = lab.haproxy_all();
    let ran = lab.exec(None);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_cause(&ran, "healthy");
    assert!(ran.stderr.contains("nothing to do"), "{}", ran.stderr);
    for step in ["halt-traffic", "restart", "unseal", "restore-traffic"] {
        assert_eq!(status_of(&ran, step), "skipped", "{step}:\n{}", ran.stderr);
    }
    assert_eq!(lab.haproxy_all(), before, "HAProxy was not touched");
    assert_eq!(lab.health("vault-2"), "429", "still an unsealed standby");
    lab.assert_no_secrets(&[&ran]);
}

#[test]
fn crash_is_restarted_unsealed_and_put_back() {
    let lab = lab();
    lab.fault("vault-2", "crash");
    let ran = lab.exec(None);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_cause(&ran, "crash");
    assert!(
        ran.stderr.contains("code=killed, signal=KILL"),
        "{}",
        ran.stderr
    );
    assert_eq!(status_of(&ran, "restart"), "succeeded");
    assert_eq!(status_of(&ran, "verify-quorum"), "succeeded");
    assert_eq!(lab.wait_haproxy("vault-2", "UP"), "UP");
    assert_eq!(lab.health("vault-2"), "429");
    lab.assert_no_secrets(&[&ran]);
}

#[test]
fn sealed_node_is_unsealed_without_a_restart() {
    let lab = lab();
    lab.fault("vault-2", "sealed");
    let ran = lab.exec(None);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_cause(&ran, "sealed");
    assert_eq!(status_of(&ran, "restart"), "skipped", "{}", ran.stderr);
    assert_eq!(status_of(&ran, "unseal"), "succeeded");
    assert_eq!(lab.wait_haproxy("vault-2", "UP"), "UP");
    assert_eq!(lab.health("vault-2"), "429");
    lab.assert_no_secrets(&[&ran]);
}

#[test]
fn storage_lock_holder_is_stopped_then_the_node_recovers() {
    let lab = lab();
    lab.fault("vault-2", "storage");
    let ran = lab.exec(None);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_cause(&ran, "storage");
    assert!(
        ran.stderr.contains("failed to open bolt file: timeout"),
        "the real server's line is the evidence:\n{}",
        ran.stderr
    );
    assert_eq!(status_of(&ran, "fix-storage"), "succeeded");
    assert!(ran.stderr.contains("the lock is free"), "{}", ran.stderr);
    assert_eq!(lab.wait_haproxy("vault-2", "UP"), "UP");
    assert_eq!(lab.health("vault-2"), "429");
    lab.assert_no_secrets(&[&ran]);
}

#[test]
fn config_error_waits_for_the_fix_then_recovers() {
    let lab = lab();
    lab.fault("vault-2", "config");
    let stopped = lab.exec(None);
    assert_eq!(stopped.code, Some(3), "{}", stopped.stderr);
    assert_cause(&stopped, "config");
    assert!(
        stopped.stderr.contains("error loading configuration from")
            && stopped.stderr.contains("vault.hcl: At 20:17"),
        "the server's own parse error, with line:column:\n{}",
        stopped.stderr
    );
    assert!(
        stopped.stderr.contains("fix-config is waiting"),
        "{}",
        stopped.stderr
    );
    assert_eq!(lab.haproxy("vault-2"), "MAINT");
    // The operator restores the last good configuration, then confirms.
    std::fs::copy(
        lab.path("vault-2/vault.hcl.good"),
        lab.path("vault-2/vault.hcl"),
    )
    .expect("restore config");
    let resumed = lab.resume("fix-config");
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    assert_eq!(lab.wait_haproxy("vault-2", "UP"), "UP");
    assert_eq!(lab.health("vault-2"), "429");
    lab.assert_no_secrets(&[&stopped, &resumed]);
}

#[test]
fn config_still_broken_at_restart_time_stops_before_restarting() {
    let lab = lab();
    lab.fault("vault-2", "config");
    let stopped = lab.exec(None);
    assert_eq!(stopped.code, Some(3), "{}", stopped.stderr);
    // The operator confirms without fixing anything: the check before the restart catches it.
    let resumed = lab.resume("fix-config");
    assert_eq!(resumed.code, Some(1), "{}", resumed.stderr);
    assert_eq!(
        status_of(&resumed, "check-config"),
        "failed",
        "{}",
        resumed.stderr
    );
    assert_eq!(
        status_of(&resumed, "restart"),
        "not-run",
        "{}",
        resumed.stderr
    );
    assert_eq!(
        lab.haproxy("vault-2"),
        "MAINT",
        "rollback keeps a dead node out"
    );
}

#[test]
fn oom_waits_for_the_operator_then_recovers() {
    let lab = lab();
    lab.fault("vault-2", "oom");
    let stopped = lab.exec(None);
    assert_eq!(stopped.code, Some(3), "{}", stopped.stderr);
    assert_cause(&stopped, "oom");
    assert!(
        stopped.stderr.contains("fatal error: out of memory"),
        "Go's own words:\n{}",
        stopped.stderr
    );
    assert!(
        stopped.stderr.contains("fix-oom is waiting"),
        "{}",
        stopped.stderr
    );
    assert_eq!(lab.haproxy("vault-2"), "MAINT");
    // The operator raises the memory limit, then confirms.
    std::fs::remove_file(lab.path("vault-2/limits")).expect("limits");
    let resumed = lab.resume("fix-oom");
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    assert_eq!(lab.wait_haproxy("vault-2", "UP"), "UP");
    lab.assert_no_secrets(&[&stopped, &resumed]);
}

#[test]
fn listener_on_the_wrong_address_is_found_and_fixed() {
    let lab = lab();
    lab.fault("vault-2", "listener");
    let stopped = lab.exec(None);
    assert_eq!(stopped.code, Some(3), "{}", stopped.stderr);
    assert_cause(&stopped, "listener");
    assert!(
        stopped.stderr.contains("it listens on: 127.0.0.1:"),
        "{}",
        stopped.stderr
    );
    assert_eq!(lab.haproxy("vault-2"), "MAINT");
    std::fs::copy(
        lab.path("vault-2/vault.hcl.good"),
        lab.path("vault-2/vault.hcl"),
    )
    .expect("restore config");
    let resumed = lab.resume("fix-listener");
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    assert_eq!(lab.wait_haproxy("vault-2", "UP"), "UP");
    assert_eq!(lab.health("vault-2"), "429");
}

#[test]
fn lost_quorum_changes_nothing() {
    let lab = lab();
    lab.fault("vault-2", "quorum");
    let before = lab.haproxy_all();
    let ran = lab.exec(None);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert_cause(&ran, "quorum");
    assert!(ran.stderr.contains("nothing was changed"), "{}", ran.stderr);
    for step in ["halt-traffic", "restart", "unseal", "restore-traffic"] {
        assert!(
            ["skipped", "not-run"].contains(&status_of(&ran, step).as_str()),
            "{step} must not run:\n{}",
            ran.stderr
        );
    }
    assert_eq!(lab.haproxy_all(), before, "HAProxy was not touched");
    assert_eq!(lab.health("vault-2"), "000", "vault-2 was not restarted");
    assert_eq!(lab.health("vault-3"), "000", "vault-3 was not restarted");
    lab.assert_no_secrets(&[&ran]);
}

#[test]
fn a_wrong_share_is_named_by_position_and_progress_is_reset() {
    let lab = lab();
    lab.fault("vault-2", "crash");
    let (keys, _) = lab.secrets();
    let mine: Vec<&str> = keys.split(',').collect();
    // Share #2 with one byte changed: well-formed, wrong.
    let wrong = {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::STANDARD;
        let mut bytes = engine.decode(mine[1]).expect("share");
        bytes[3] ^= 0x55;
        engine.encode(bytes)
    };
    let mixed = format!("{},{wrong},{}", mine[0], mine[2]);
    let ran = lab.exec(Some(&mixed));
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("the server rejected share #3 (HTTP 400): unable to retrieve stored keys")
            && ran.stderr.contains("cipher: message authentication failed"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("leaving it out of the load balancer"),
        "{}",
        ran.stderr
    );
    assert_eq!(lab.haproxy("vault-2"), "MAINT", "a sealed node stays out");
    assert_eq!(lab.health("vault-2"), "503");
    assert!(!ran.stderr.contains(&wrong) && !ran.stdout.contains(&wrong));
    lab.assert_no_secrets(&[&ran]);
}

#[test]
fn too_few_shares_fail_clearly_and_traffic_stays_halted() {
    let lab = lab();
    lab.fault("vault-2", "crash");
    let (keys, _) = lab.secrets();
    let two: Vec<&str> = keys.split(',').take(2).collect();
    let ran = lab.exec(Some(&two.join(",")));
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("still sealed after all 2 share(s) given (progress 2 of 3)"),
        "{}",
        ran.stderr
    );
    assert_eq!(lab.haproxy("vault-2"), "MAINT");
    assert_eq!(lab.health("vault-2"), "503");
}

#[test]
fn ctrl_c_during_the_api_wait_rolls_back() {
    let lab = lab();
    lab.fault("vault-2", "crash");
    // The API never answers at this address: the wait before unsealing keeps polling.
    let closed = crate::sshd::free_port();
    let mut args = lab.exec_args();
    args.extend([
        "-i".into(),
        format!("vault_addr=https://127.0.0.1:{closed}"),
    ]);
    let (keys, token) = lab.secrets();
    let earlier: Vec<_> = std::fs::read_dir(lab.path("runs"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
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
            .filter(|e| !earlier.contains(&e.file_name()))
            .any(|e| {
                std::fs::read_to_string(e.path().join("journal.jsonl")).is_ok_and(|j| {
                    j.lines().any(|l| {
                        l.contains("\"event\":\"step-started\"")
                            && l.contains("\"step\":\"wait-api\"")
                    })
                })
            });
        if waiting {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "never reached the wait"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let (code, err) = crate::exec::wait_output(&mut child, Duration::from_secs(60));
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("rollback of halt-traffic.disable ✔ ok"),
        "{err}"
    );
    assert_eq!(
        lab.haproxy("vault-2"),
        "MAINT",
        "the restarted node is sealed: it stays out"
    );
}

/// The faults kept for the runbook library produce the guide's symptoms on the real server.
#[test]
fn library_faults_produce_the_guides_symptoms() {
    let lab = lab();
    let curl = |node: &str, path: &str, token: Option<&str>| -> String {
        let ports = std::fs::read_to_string(lab.path("ports")).expect("ports");
        let key = format!("API_{}=", node.replace('-', "_"));
        let port = ports
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .expect("port");
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "10", "--cacert"])
            .arg(lab.path("tls/ca.pem"))
            .arg(format!("https://127.0.0.2:{port}{path}"));
        if let Some(t) = token {
            cmd.args(["-H", &format!("X-Vault-Token: {t}")]);
        }
        let out = cmd.output().expect("curl");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let (_, root_token) = lab.secrets();

    lab.fault("vault-2", "audit-full");
    let r = curl("vault-1", "/v1/auth/token/lookup-self", Some(&root_token));
    assert!(r.contains("internal error"), "{r}");
    let log = std::fs::read_to_string(lab.path("vault-1/vault.log")).unwrap_or_default()
        + &std::fs::read_to_string(lab.path("vault-2/vault.log")).unwrap_or_default()
        + &std::fs::read_to_string(lab.path("vault-3/vault.log")).unwrap_or_default();
    assert!(
        log.contains("no audit backend succeeded in logging"),
        "the server says why"
    );
    lab.heal();

    lab.fault("vault-2", "tls-expired");
    let r = curl("vault-2", "/v1/sys/health", None);
    assert!(r.contains("certificate has expired"), "{r}");
    lab.heal();

    lab.fault("vault-2", "kv-policy");
    let app = std::fs::read_to_string(lab.path("app-token")).expect("app token");
    let r = curl("vault-1", "/v1/secret/data/app/db", Some(&app));
    assert!(r.contains("permission denied"), "{r}");

    lab.fault("vault-2", "token-expired");
    let expired = std::fs::read_to_string(lab.path("expired-token")).expect("token");
    let r = curl("vault-1", "/v1/auth/token/lookup-self", Some(&expired));
    assert!(r.contains("permission denied"), "{r}");

    // Lost for good: no heal brings this back, so the lab is rebuilt afterwards.
    lab.fault("vault-1", "peers-json");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(lab.health("vault-2"), "000");
    assert_eq!(lab.health("vault-3"), "000");
    assert_ne!(lab.health("vault-1"), "200", "no leader without quorum");
    let out = Command::new(root().join("lab/up"))
        .env("LAB_RUN", &lab.run)
        .output()
        .expect("lab/up");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
