//! Real OpenSSH servers on loopback for the SSH tests and the lab: per-run host and client
//! keys, strict known_hosts, and an ssh_config the runs use. Each server is killed (exactly
//! the PID started) when dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether sshd is installed (it is in CI: `.ci/run` installs openssh-server).
pub(crate) fn available() -> bool {
    Path::new("/usr/sbin/sshd").exists()
}

/// Fails the test with one line naming what is missing, unless sshd is installed: SSH tests
/// are never skipped silently (`.ci/run`, as root, installs it).
pub(crate) fn require() {
    assert!(
        available(),
        "missing /usr/sbin/sshd: install openssh-server (as root, `.ci/run` installs everything the tests need)"
    );
}

/// A non-root user for tests that must not run as root (created once, no password, key only).
pub(crate) const TEST_USER: &str = "rbtest";

pub(crate) fn ensure_test_user() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let exists = Command::new("id")
            .arg(TEST_USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !exists {
            let ok = Command::new("useradd")
                .args(["-m", "-s", "/bin/sh", TEST_USER])
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "cannot create the test user {TEST_USER} (tests run as root in CI)"
            );
        }
        // With PAM off, an account with a locked password ("!") cannot log in even with a key.
        let _ = Command::new("usermod")
            .args(["-p", "*", TEST_USER])
            .status();
    });
}

/// Keys and files shared by the servers of one test.
pub(crate) struct Keys {
    pub(crate) dir: tempfile::TempDir,
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "runbook-test", "-f"])
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ssh-keygen failed");
}

impl Keys {
    pub(crate) fn new() -> Keys {
        let dir = tempfile::Builder::new()
            .prefix("rb-ssh-")
            .tempdir()
            .expect("tmp");
        use std::os::unix::fs::PermissionsExt;
        // Readable by the test user: sshd reads authorized_keys as the user logging in.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        keygen(&dir.path().join("client"));
        keygen(&dir.path().join("host"));
        keygen(&dir.path().join("other-host"));
        std::fs::copy(
            dir.path().join("client.pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorized_keys");
        std::fs::set_permissions(
            dir.path().join("authorized_keys"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        let k = Keys { dir };
        std::fs::write(k.path("known_hosts"), "").expect("known_hosts");
        k
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub(crate) fn host_pub(&self, which: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{which}.pub")))
            .expect("pub")
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Trusts `which` host key for `[addr]:port`.
    pub(crate) fn trust(&self, addr: &str, port: u16, which: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.path("known_hosts"))
            .expect("known_hosts");
        writeln!(f, "[{addr}]:{port} {}", self.host_pub(which)).expect("write");
    }

    /// An ssh_config that uses the client key and this known_hosts file.
    pub(crate) fn ssh_config(&self) -> PathBuf {
        let p = self.path("ssh_config");
        std::fs::write(
            &p,
            format!(
                "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  BatchMode yes\n  LogLevel ERROR\n",
                self.path("client").display(),
                self.path("known_hosts").display()
            ),
        )
        .expect("ssh_config");
        p
    }
}

/// One running sshd.
pub(crate) struct Sshd {
    child: Child,
    pub(crate) port: u16,
    pub(crate) log: PathBuf,
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl Sshd {
    /// Starts sshd listening on each of `addrs` at one port, with host key `which`.
    pub(crate) fn start(keys: &Keys, addrs: &[&str], which: &str) -> Sshd {
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let port = free_port();
        let name = format!("sshd-{port}");
        let cfg = keys.path(&format!("{name}.conf"));
        let log = keys.path(&format!("{name}.log"));
        let listen: String = addrs
            .iter()
            .map(|a| format!("ListenAddress {a}:{port}\n"))
            .collect();
        std::fs::write(
            &cfg,
            format!(
                "{listen}HostKey {hk}\nPidFile {pid}\nAuthorizedKeysFile {ak}\nUsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\nMaxStartups 200:30:400\nMaxSessions 200\nLogLevel DEBUG1\nAllowTcpForwarding yes\nSubsystem sftp internal-sftp\n",
                hk = keys.path(which).display(),
                pid = keys.path(&format!("{name}.pid")).display(),
                ak = keys.path("authorized_keys").display(),
            ),
        )
        .expect("sshd config");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&cfg)
            .arg("-E")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        let t0 = Instant::now();
        while TcpStream::connect((addrs[0], port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "sshd on {port} did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Sshd { child, port, log }
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
