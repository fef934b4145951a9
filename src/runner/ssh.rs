//! Remote commands over OpenSSH (the `openssh` crate, native multiplexing): the system `ssh`
//! reads `~/.ssh/config`, the agent, ProxyJump, certificates and `known_hosts` exactly as an
//! operator's own `ssh` does.
//!
//! Rules that must stay true:
//! - Host keys are checked strictly, always: an unknown or changed key refuses the connection
//!   before anything runs. There is no switch to turn this off.
//! - One multiplexed master per host, opened lazily, reused by every step and rollback, closed
//!   at the end of the run (and idle masters of a killed engine exit on their own).
//! - Nothing secret is in the remote argv: the command, its environment and secrets travel on
//!   the session's stdin to a fixed bootstrap; `ps` on the host shows only the bootstrap and
//!   the command text (which holds `"${RUNBOOK_SECRET_X}"` references, not values).
//! - A timeout or an abort stops the remote command: it runs under `timeout` in its own process
//!   group, whose id the bootstrap reports first; cancelling kills that group over the master.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{OnceCell, Semaphore};

use super::{
    BoxFuture, Cancel, CommandOutcome, CommandRunner, CommandSpec, LineSink, RemoteRunners,
    SshTarget,
};
use crate::event::Stream;
use crate::runner::capture::Capture;
use crate::template::shell_quote;

mod classify;
use classify::{classify, error_chain};

/// Marks the end of the bootstrap script on stdin.
const END: &str = "__RUNBOOK_SCRIPT_END__";
/// First stderr line of a remote command: its process group id.
const PGID_MARK: &str = "__RUNBOOK_PGID__ ";
/// Reads the script from stdin line by line (`read` never consumes past a newline, so the
/// step's own stdin stays intact for the command) and runs it.
const BOOTSTRAP: &str = "exec /bin/sh -c 'while IFS= read -r l && [ \"$l\" != __RUNBOOK_SCRIPT_END__ ]; do s=\"$s$l\n\"; done; eval \"$s\"'";
/// Connection attempts on a reset or a refused connection (never on key or auth failures).
const CONNECT_ATTEMPTS: u32 = 3;
/// New connections being opened at once per host.
const CONNECTS_PER_HOST: usize = 1;

/// Options from the command line.
#[derive(Debug, Clone, Default)]
pub(crate) struct SshOptions {
    pub config_file: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub connect_timeout: Option<Duration>,
}

/// The pool of per-host masters for one run (cheap to clone; runners share it).
#[derive(Clone)]
pub(crate) struct SshPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    opts: SshOptions,
    control_dir: PathBuf,
    sessions: Mutex<HashMap<SshTarget, Arc<OnceCell<Arc<Session>>>>>,
    gates: Mutex<HashMap<SshTarget, Arc<Semaphore>>>,
}

impl SshPool {
    pub(crate) fn new(opts: SshOptions) -> std::io::Result<SshPool> {
        // Control sockets need a short path (108 bytes on Linux): keep them under /tmp.
        let control_dir = std::env::temp_dir().join(format!("runbook-ssh-{}", std::process::id()));
        crate::sys::create_private_dir(&control_dir)?;
        let inner = PoolInner {
            opts,
            control_dir,
            sessions: Mutex::new(HashMap::new()),
            gates: Mutex::new(HashMap::new()),
        };
        Ok(SshPool {
            inner: Arc::new(inner),
        })
    }
}

impl PoolInner {
    fn cell(&self, t: &SshTarget) -> Arc<OnceCell<Arc<Session>>> {
        self.sessions
            .lock()
            .map(|mut m| m.entry(t.clone()).or_default().clone())
            .unwrap_or_default()
    }

    fn gate(&self, t: &SshTarget) -> Arc<Semaphore> {
        self.gates
            .lock()
            .map(|mut m| {
                m.entry(t.clone())
                    .or_insert_with(|| Arc::new(Semaphore::new(CONNECTS_PER_HOST)))
                    .clone()
            })
            .unwrap_or_else(|_| Arc::new(Semaphore::new(CONNECTS_PER_HOST)))
    }

    /// The master for `t`, connecting (with retries on transient failures) if needed.
    async fn session(&self, t: &SshTarget) -> Result<Arc<Session>, String> {
        let cell = self.cell(t);
        let gate = self.gate(t);
        cell.get_or_try_init(|| async {
            let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
            let mut delay = Duration::from_millis(300);
            let mut attempt = 1;
            loop {
                match self.connect(t).await {
                    Ok(s) => return Ok(Arc::new(s)),
                    // A transient failure is retried; its message is not needed.
                    Err((_, true)) if attempt < CONNECT_ATTEMPTS => {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                        attempt += 1;
                    }
                    Err((msg, _)) => return Err(msg),
                }
            }
        })
        .await
        .cloned()
    }

    /// An ssh_config for a connection through a jump host: strict host key checking and the
    /// target's known_hosts for every hop, then the user's own config (first value wins).
    fn jump_config(&self, t: &SshTarget, known_hosts: Option<&Path>) -> std::io::Result<PathBuf> {
        use std::hash::{Hash, Hasher};
        let quote = |p: &Path| format!("\"{}\"", p.display().to_string().replace('"', ""));
        let mut text = String::from("Host *\n  StrictHostKeyChecking yes\n");
        if let Some(k) = known_hosts {
            text.push_str(&format!("  UserKnownHostsFile {}\n", quote(k)));
        }
        let user_config = self.opts.config_file.clone().or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".ssh/config"))
                .filter(|p| p.is_file())
        });
        if let Some(c) = user_config {
            let c = std::fs::canonicalize(&c).unwrap_or(c);
            text.push_str(&format!("  Include {}\n", quote(&c)));
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        t.hash(&mut h);
        let path = self
            .control_dir
            .join(format!("jump-{:016x}.conf", h.finish()));
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(text.as_bytes())?;
        Ok(path)
    }

    async fn connect(&self, t: &SshTarget) -> Result<Session, (String, bool)> {
        let mut b = SessionBuilder::default();
        b.known_hosts_check(KnownHosts::Strict)
            .control_directory(&self.control_dir)
            .control_persist(ControlPersist::IdleFor(
                std::num::NonZeroUsize::MIN.saturating_add(299),
            ))
            // ssh takes whole seconds; 0 would mean "no timeout".
            .connect_timeout(
                self.opts
                    .connect_timeout
                    .unwrap_or(Duration::from_secs(10))
                    .max(Duration::from_secs(1)),
            )
            .server_alive_interval(Duration::from_secs(15));
        if let Some(u) = &t.user {
            b.user(u.clone());
        }
        if let Some(p) = t.port {
            b.port(p);
        }
        if let Some(k) = &t.identity_file {
            b.keyfile(expand_home(k));
        }
        let known_hosts = t
            .known_hosts
            .as_deref()
            .map(expand_home)
            .or_else(|| self.opts.known_hosts.clone());
        if let Some(j) = &t.jump {
            // `-J` runs a second ssh for the bastion, which gets `-F` but none of the `-o`
            // options: give it a config that checks the bastion as strictly as the target.
            let config = self.jump_config(t, known_hosts.as_deref()).map_err(|e| {
                (
                    format!("host {}: cannot prepare the jump host: {e}", t.name),
                    false,
                )
            })?;
            b.config_file(config);
            b.jump_hosts([j.as_str()]);
        } else if let Some(c) = &self.opts.config_file {
            b.config_file(c);
        }
        if let Some(k) = known_hosts {
            b.user_known_hosts_file(k);
        }
        match b.connect_mux(&t.address).await {
            Ok(s) => Ok(s),
            Err(e) => {
                let text = error_chain(&e);
                let lower = text.to_ascii_lowercase();
                if lower.contains("host key") || lower.contains("host identification") {
                    // The hint's `ssh-keyscan` needs the real address and port, not an
                    // ssh_config alias: ask ssh how it resolves the name.
                    let resolved = self.resolve(t).await;
                    return Err(classify(&resolved, &text));
                }
                Err(classify(t, &text))
            }
        }
    }

    /// `t` with the address and port that `ssh -G` resolves it to (ssh_config `HostName`,
    /// `Port`), or `t` unchanged if ssh cannot say.
    async fn resolve(&self, t: &SshTarget) -> SshTarget {
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.arg("-G");
        if let Some(c) = &self.opts.config_file {
            cmd.arg("-F").arg(c);
        }
        if let Some(p) = t.port {
            cmd.arg("-p").arg(p.to_string());
        }
        cmd.arg(&t.address)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let Ok(out) = cmd.output().await else {
            return t.clone();
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| {
            text.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(' '))
                    .map(str::to_string)
            })
        };
        let mut r = t.clone();
        if let Some(h) = field("hostname") {
            r.address = h;
        }
        if let Some(p) = field("port").and_then(|p| p.parse::<u16>().ok()) {
            r.port = (p != 22).then_some(p);
        }
        r
    }
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}

impl RemoteRunners for SshPool {
    fn runner(&self, target: &SshTarget) -> Arc<dyn CommandRunner> {
        Arc::new(SshRunner {
            pool: self.inner.clone(),
            target: target.clone(),
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let cells: Vec<Arc<OnceCell<Arc<Session>>>> = self
                .inner
                .sessions
                .lock()
                .map(|mut m| m.drain().map(|(_, v)| v).collect())
                .unwrap_or_default();
            for cell in cells {
                if let Some(s) = cell.get().cloned() {
                    drop(cell);
                    if let Ok(s) = Arc::try_unwrap(s) {
                        let _ = s.close().await;
                    }
                }
            }
            let _ = std::fs::remove_dir_all(&self.inner.control_dir);
        })
    }
}

/// Runs commands on one host through the pool's master.
struct SshRunner {
    pool: Arc<PoolInner>,
    target: SshTarget,
}

impl CommandRunner for SshRunner {
    fn run<'a>(
        &'a self,
        spec: CommandSpec,
        sink: LineSink,
        cancel: Cancel,
    ) -> BoxFuture<'a, CommandOutcome> {
        Box::pin(run_remote(
            &self.pool,
            self.target.clone(),
            spec,
            sink,
            cancel,
        ))
    }
}

/// The script sent on stdin: environment, then the command under `timeout` in its own group.
fn script(spec: &CommandSpec) -> String {
    let mut s = String::new();
    for (k, v) in &spec.env {
        if k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            s.push_str(&format!("export {k}={}\n", shell_quote(v)));
        }
    }
    s.push_str(&format!("RUNBOOK_CMD={}\n", shell_quote(&spec.command)));
    // timeout(1) makes itself a process-group leader; exec keeps $$ == that group's id.
    let secs = spec.timeout.map_or(0, |t| t.as_secs().max(1));
    s.push_str(&format!("echo \"{PGID_MARK}$$\" >&2\n"));
    s.push_str(&format!(
        "exec timeout -k 2 {secs} /bin/sh -c \"$RUNBOOK_CMD\"\n"
    ));
    s.push_str(END);
    s.push('\n');
    s
}

async fn kill_remote_group(session: &Session, pgid: u32) {
    // `kill -SIG -PGID` (no `--`): the form both dash and bash accept.
    let cmd =
        format!("kill -TERM -{pgid} 2>/dev/null; sleep 1; kill -KILL -{pgid} 2>/dev/null; true");
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        session
            .raw_command(cmd)
            .stdin(openssh::Stdio::null())
            .stdout(openssh::Stdio::null())
            .stderr(openssh::Stdio::null())
            .status(),
    )
    .await;
}

async fn run_remote(
    pool: &PoolInner,
    target: SshTarget,
    spec: CommandSpec,
    sink: LineSink,
    mut cancel: Cancel,
) -> CommandOutcome {
    let started = Instant::now();
    let fail = |e: String| CommandOutcome {
        error: Some(e),
        duration: started.elapsed(),
        ..CommandOutcome::default()
    };
    let session = tokio::select! {
        s = pool.session(&target) => match s {
            Ok(s) => s,
            Err(e) => return fail(e),
        },
        () = cancel.cancelled() => return CommandOutcome { cancelled: true, duration: started.elapsed(), ..CommandOutcome::default() },
    };
    let mut child = match session
        .raw_command(BOOTSTRAP)
        .stdin(openssh::Stdio::piped())
        .stdout(openssh::Stdio::piped())
        .stderr(openssh::Stdio::piped())
        .spawn()
        .await
    {
        Ok(c) => c,
        Err(e) => {
            return fail(format!(
                "host {} ({}): cannot start the command: {}",
                target.name,
                target.destination(),
                error_chain(&e)
            ));
        }
    };
    let mut input = script(&spec).into_bytes();
    if let Some(data) = &spec.stdin {
        input.extend_from_slice(data.as_bytes());
    }
    if let Some(mut stdin) = child.stdin().take() {
        tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        });
    }
    let (out_cap, err_cap) = (capture(&spec, "stdout"), capture(&spec, "stderr"));
    let (pgid_tx, pgid_rx) = tokio::sync::oneshot::channel::<u32>();
    let mut readers = tokio::task::JoinSet::new();
    if let Some(out) = child.stdout().take() {
        readers.spawn(super::local::pump(
            out,
            out_cap.clone(),
            Stream::Stdout,
            sink.clone(),
        ));
    }
    if let Some(err) = child.stderr().take() {
        readers.spawn(stderr_with_pgid(
            err,
            err_cap.clone(),
            sink.clone(),
            pgid_tx,
        ));
    }
    let mut pgid_rx = pgid_rx;
    // Backstop: the remote `timeout` stops the command; this stops waiting for it.
    let local_limit = async {
        match spec.timeout {
            Some(t) => tokio::time::sleep(t + Duration::from_secs(10)).await,
            None => std::future::pending().await,
        }
    };
    let mut outcome = CommandOutcome::default();
    let status = tokio::select! {
        s = child.wait() => Some(s),
        () = cancel.cancelled() => { outcome.cancelled = true; None }
        () = local_limit => { outcome.timed_out = true; None }
    };
    match status {
        Some(Ok(s)) => {
            outcome.exit_code = s.code();
            if spec.timeout.is_some() && s.code() == Some(124) {
                outcome.timed_out = true;
            }
        }
        Some(Err(e)) => {
            let text = error_chain(&e);
            outcome.error = Some(format!(
                "host {} ({}): the connection was lost while the command ran: {text}",
                target.name,
                target.destination()
            ));
        }
        None => stop_remote(&session, &mut pgid_rx).await,
    }
    let drained = tokio::time::timeout(Duration::from_secs(3), async {
        while readers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        readers.abort_all();
    }
    outcome.stdout = out_cap.lock().map(|c| c.text()).unwrap_or_default();
    outcome.stderr = err_cap.lock().map(|c| c.text()).unwrap_or_default();
    outcome.duration = started.elapsed();
    outcome
}

/// The bounded capture of one stream, its full log next to the step's log base.
fn capture(spec: &CommandSpec, stream: &str) -> Arc<Mutex<Capture>> {
    let log = spec.log_base.as_ref().map(|b| {
        let mut p = b.clone().into_os_string();
        p.push(format!(".{stream}.log"));
        PathBuf::from(p)
    });
    Arc::new(Mutex::new(Capture::with_redactor(
        log,
        spec.redactor.clone(),
    )))
}

/// Reads the remote command's stderr: its first line is the process group id (sent on
/// `pgid`), not output; the rest is output.
async fn stderr_with_pgid<R: tokio::io::AsyncRead + Unpin>(
    err: R,
    cap: Arc<Mutex<Capture>>,
    sink: LineSink,
    pgid: tokio::sync::oneshot::Sender<u32>,
) {
    let mut r = BufReader::new(err);
    let mut first = String::new();
    if r.read_line(&mut first).await.is_ok() {
        match first
            .trim_end()
            .strip_prefix(PGID_MARK)
            .and_then(|p| p.trim().parse::<u32>().ok())
        {
            Some(id) => {
                let _ = pgid.send(id);
            }
            None if !first.is_empty() => {
                let lines = cap
                    .lock()
                    .map(|mut c| c.push(first.as_bytes()))
                    .unwrap_or_default();
                for l in lines {
                    sink(Stream::Stderr, l);
                }
            }
            None => {}
        }
    }
    super::local::pump(r, cap, Stream::Stderr, sink).await;
}

/// Stops a remote command we stopped waiting for (cancelled, or past its time). A signal may
/// arrive before the bootstrap's process-group line was read: wait for it (briefly) rather
/// than leave the remote command running.
async fn stop_remote(session: &Session, pgid: &mut tokio::sync::oneshot::Receiver<u32>) {
    let id = match pgid.try_recv() {
        Ok(p) => Some(p),
        Err(_) => tokio::time::timeout(Duration::from_secs(5), &mut *pgid)
            .await
            .ok()
            .and_then(Result::ok),
    };
    if let Some(id) = id {
        kill_remote_group(session, id).await;
    }
}
