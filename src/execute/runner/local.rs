//! Local commands: `sh -c` in a process group of their own, so that a timeout or an abort
//! kills the whole tree (no orphaned `sleep` keeps running after the step "ended").

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::{BoxFuture, Cancel, CommandOutcome, CommandRunner, CommandSpec, LineSink};
use crate::execute::capture::Capture;
use crate::execute::event::Stream;

/// How long a process group gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long output pipes are drained after the shell exits (a background child may hold them).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Runs commands on this machine.
#[derive(Debug, Default)]
pub struct LocalRunner;

impl CommandRunner for LocalRunner {
    fn run<'a>(
        &'a self,
        spec: CommandSpec,
        sink: LineSink,
        cancel: Cancel,
    ) -> BoxFuture<'a, CommandOutcome> {
        Box::pin(run_local(spec, sink, cancel))
    }

    fn describe(&self) -> String {
        "local".into()
    }
}

/// Sends `sig` to every process in group `pgid`.
pub fn kill_group(pgid: u32, sig: i32) {
    if let Ok(pgid) = i32::try_from(pgid)
        && pgid > 1
    {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

/// Start time of a process (clock ticks since boot, `/proc/PID/stat` field 22): with the pid
/// it names one process, even after the pid is reused.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn group_alive(pgid: u32) -> bool {
    let Ok(g) = i32::try_from(pgid) else {
        return false;
    };
    if g <= 1 {
        return false;
    }
    // SAFETY: kill(2) with signal 0 only checks that the group exists; nothing is sent.
    let r = unsafe { libc::kill(-g, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn record_group(file: &std::path::Path, pgid: u32) {
    use std::io::Write;
    let line = format!("{pgid} {}\n", start_time(pgid).unwrap_or(0));
    if let Ok(mut f) = crate::execute::capture::open_private(file) {
        let _ = f.set_len(0);
        let _ = f.write_all(line.as_bytes());
    }
}

/// The process groups of local steps that outlived their engine (it was killed while they
/// ran) and are still running: `(step log name, process group, command line)`.
pub fn orphaned_groups(run_dir: &std::path::Path) -> Vec<(String, u32, String)> {
    let Ok(entries) = std::fs::read_dir(run_dir.join("steps")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(step) = name.strip_suffix(".pgid") else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let mut it = text.split_whitespace();
        let (Some(Ok(pgid)), Some(Ok(started))) = (
            it.next().map(str::parse::<u32>),
            it.next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        // The leader may have exited with its children still in the group; if it lives, it
        // must be the same process (not a reused pid).
        let same = start_time(pgid).is_none_or(|t| t == started);
        if same && group_alive(pgid) {
            let cmd = std::fs::read(format!("/proc/{pgid}/cmdline"))
                .map(|b| {
                    b.split(|c| *c == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            out.push((step.to_string(), pgid, cmd));
        } else {
            let _ = std::fs::remove_file(e.path());
        }
    }
    out.sort();
    out
}

/// Reads a pipe to its end into a shared capture, sending each line to `sink`.
pub(crate) async fn pump<R: AsyncRead + Unpin>(
    mut pipe: R,
    cap: Arc<Mutex<Capture>>,
    stream: Stream,
    sink: LineSink,
) {
    // Filled through its spare capacity (`read_buf`): no 64 KiB memset per step and stream.
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        buf.clear();
        match pipe.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let lines = match cap.lock() {
                    Ok(mut c) => c.push(&buf[..n]),
                    Err(_) => Vec::new(),
                };
                for l in lines {
                    sink(stream, l);
                }
            }
        }
    }
    let (last, log_error) = match cap.lock() {
        Ok(mut c) => (c.finish_lines(), c.log_error().map(str::to_string)),
        Err(_) => (Vec::new(), None),
    };
    for l in last {
        sink(stream, l);
    }
    // A step log that could not be written (disk full) is reported, never silently cut.
    if let Some(e) = log_error {
        sink(
            stream,
            format!("[runbook: the step log could not be written: {e}; the log is incomplete]"),
        );
    }
}

fn log_path(spec: &CommandSpec, stream: &str) -> Option<std::path::PathBuf> {
    spec.log_base.as_ref().map(|b| {
        let mut p = b.clone().into_os_string();
        p.push(format!(".{stream}.log"));
        p.into()
    })
}

async fn run_local(spec: CommandSpec, sink: LineSink, mut cancel: Cancel) -> CommandOutcome {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new("/bin/sh");
    for k in &spec.env_remove {
        cmd.env_remove(k);
    }
    cmd.arg("-c")
        .arg(&spec.command)
        .process_group(0)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return CommandOutcome {
                error: Some(format!("cannot start /bin/sh: {e}")),
                duration: started.elapsed(),
                ..CommandOutcome::default()
            };
        }
    };
    let pgid = child.id().unwrap_or(0);
    // Until the step's processes are gone, `<log>.pgid` names their group: an engine killed
    // now leaves it behind, and `resume` refuses to start the step again beside them.
    let pgid_file = spec.log_base.as_ref().map(|b| {
        let mut p = b.clone().into_os_string();
        p.push(".pgid");
        std::path::PathBuf::from(p)
    });
    if let Some(f) = &pgid_file {
        record_group(f, pgid);
    }
    if let (Some(data), Some(mut stdin)) = (spec.stdin.clone(), child.stdin.take()) {
        tokio::spawn(async move {
            let _ = stdin.write_all(data.as_bytes()).await;
            let _ = stdin.shutdown().await;
        });
    }
    let out_cap = Arc::new(Mutex::new(Capture::with_redactor(
        log_path(&spec, "stdout"),
        spec.redactor.clone(),
    )));
    let err_cap = Arc::new(Mutex::new(Capture::with_redactor(
        log_path(&spec, "stderr"),
        spec.redactor.clone(),
    )));
    let mut readers = tokio::task::JoinSet::new();
    if let Some(p) = child.stdout.take() {
        readers.spawn(pump(p, out_cap.clone(), Stream::Stdout, sink.clone()));
    }
    if let Some(p) = child.stderr.take() {
        readers.spawn(pump(p, err_cap.clone(), Stream::Stderr, sink.clone()));
    }
    let timeout = async {
        match spec.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let mut outcome = CommandOutcome::default();
    let status = tokio::select! {
        s = child.wait() => s.ok(),
        () = timeout => { outcome.timed_out = true; None }
        () = cancel.cancelled() => { outcome.cancelled = true; None }
    };
    let status = match status {
        Some(s) => Some(s),
        None => {
            kill_group(pgid, libc::SIGTERM);
            match tokio::time::timeout(KILL_GRACE, child.wait()).await {
                Ok(s) => s.ok(),
                Err(_) => {
                    kill_group(pgid, libc::SIGKILL);
                    child.wait().await.ok()
                }
            }
        }
    };
    if outcome.timed_out || outcome.cancelled {
        // Anything the shell left behind in its group goes too.
        kill_group(pgid, libc::SIGKILL);
    }
    let drained = tokio::time::timeout(DRAIN_GRACE, async {
        while readers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        readers.abort_all();
    }
    if let Some(s) = status {
        use std::os::unix::process::ExitStatusExt;
        outcome.exit_code = s.code();
        outcome.signal = s.signal();
    }
    // The step is over for this (live) engine: what its shell left running in the group (a
    // daemon it started) is not in doubt.
    if let Some(f) = &pgid_file {
        let _ = std::fs::remove_file(f);
    }
    outcome.stdout = out_cap.lock().map(|c| c.text()).unwrap_or_default();
    outcome.stderr = err_cap.lock().map(|c| c.text()).unwrap_or_default();
    outcome.duration = started.elapsed();
    outcome
}
