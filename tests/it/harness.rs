//! Test helpers: run the binary with a clean environment, capture everything, filter paths.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use wait_timeout::ChildExt;

/// The repository root (fixtures and shipped runbooks are found from here).
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

/// What one run of the binary produced.
#[derive(Debug)]
pub(crate) struct Ran {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Ran {
    /// Exit code, stdout and stderr in one text, for snapshots.
    pub(crate) fn snapshot(&self) -> String {
        format!(
            "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A `runbook` invocation being prepared.
pub(crate) struct Runbook {
    cmd: Command,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

/// Starts building a `runbook` invocation with `args`, run from the repository root, without
/// colour and without inheriting secrets from the developer's environment.
pub(crate) fn runbook<I, S>(args: I) -> Runbook
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
    cmd.args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .env_remove("VAULT_UNSEAL_KEYS")
        .env_remove("VAULT_TOKEN")
        .env_remove("RUNBOOK_RUNS_DIR")
        .env_remove("RUNBOOK_STORE")
        // Runs a test does not place itself stay out of the developer's own run store.
        .env(
            "XDG_STATE_HOME",
            std::env::temp_dir().join("runbook-tests-state"),
        );
    Runbook {
        cmd,
        stdin: None,
        timeout: Duration::from_secs(60),
    }
}

impl Runbook {
    pub(crate) fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(k, v);
        self
    }

    pub(crate) fn env_remove(mut self, k: &str) -> Self {
        self.cmd.env_remove(k);
        self
    }

    pub(crate) fn current_dir(mut self, dir: &std::path::Path) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    pub(crate) fn stdin(mut self, data: Vec<u8>) -> Self {
        self.stdin = Some(data);
        self
    }

    pub(crate) fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Runs to completion (killing it past the timeout, which fails the test).
    pub(crate) fn run(mut self) -> Ran {
        self.cmd
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.cmd.spawn().expect("spawn runbook");
        if let Some(data) = self.stdin.take() {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            std::thread::spawn(move || {
                let _ = stdin.write_all(&data);
            });
        }
        // Drain pipes in threads so a chatty child never blocks on a full pipe.
        let mut out = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let t_out = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = std::io::Read::read_to_end(&mut out, &mut v);
            v
        });
        let t_err = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = std::io::Read::read_to_end(&mut err, &mut v);
            v
        });
        let status = match child.wait_timeout(self.timeout).expect("wait") {
            Some(s) => s,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("runbook did not finish within {:?}", self.timeout);
            }
        };
        let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
        let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
        Ran {
            code: status.code(),
            stdout,
            stderr,
        }
    }
}

/// insta settings that hide machine-specific paths.
pub(crate) fn insta_settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_prepend_module_to_snapshot(false);
    s.add_filter(&regex_escape(&root().display().to_string()), "[ROOT]");
    s.add_filter(r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]");
    s.add_filter(r"\b\d+(\.\d+)?(ms|s)\b", "[DURATION]");
    s
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// After an engine was killed with its steps running: waits (up to 30 s) until the processes
/// of those steps (any process whose environment has `RUNBOOK_RUN_ID` of a run under
/// `runs_dir`) have ended, as they would on a real host before anyone resumes: `resume`
/// refuses to start beside them.
pub(crate) fn settle(runs_dir: &std::path::Path) {
    let ids: Vec<String> = std::fs::read_dir(runs_dir)
        .map(|d| {
            d.flatten()
                .map(|e| format!("RUNBOOK_RUN_ID={}", e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    let live = || -> bool {
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return false;
        };
        procs.flatten().any(|p| {
            let env = std::fs::read(p.path().join("environ")).unwrap_or_default();
            env.split(|b| *b == 0)
                .any(|v| ids.iter().any(|id| v == id.as_bytes()))
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while live() {
        assert!(
            std::time::Instant::now() < deadline,
            "step processes of a killed engine still run after 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
