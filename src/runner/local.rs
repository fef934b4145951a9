//! Local commands: `sh -c` in a process group of their own, so that a timeout or an abort
//! kills the whole tree (no orphaned `sleep` keeps running after the step "ended").

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::{BoxFuture, Cancel, CommandOutcome, CommandRunner, CommandSpec, LineSink};
use crate::event::Stream;
use crate::runner::capture::Capture;

/// How long a process group gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long output pipes are drained after the shell exits (a background child may hold them).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Runs commands on this machine.
#[derive(Debug, Default)]
pub(crate) struct LocalRunner;

impl CommandRunner for LocalRunner {
    fn run<'a>(
        &'a self,
        spec: CommandSpec,
        sink: LineSink,
        cancel: Cancel,
    ) -> BoxFuture<'a, CommandOutcome> {
        Box::pin(run_local(spec, sink, cancel))
    }
}

/// Sends `sig` to every process in group `pgid`.
pub(crate) fn kill_group(pgid: u32, sig: i32) {
    if let Ok(pgid) = i32::try_from(pgid)
        && pgid > 1
    {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

/// Processes still running a step of run `run_id` whose engine is gone: every step process
/// carries `RUNBOOK_RUN_ID` and `RUNBOOK_STEP` in its environment (its children inherit them),
/// so they are found in `/proc` without the engine writing anything per step. Only the steps
/// named in `steps` count (those in flight when the engine died: a daemon a finished step
/// started is not in doubt). `(step, process group, command line)`, one per group.
pub(crate) fn orphaned_processes(
    run_id: &str,
    steps: &std::collections::HashSet<String>,
) -> Vec<(String, u32, String)> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    let want = format!("RUNBOOK_RUN_ID={run_id}");
    let mut out: Vec<(String, u32, String)> = Vec::new();
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let mut ours = false;
        let mut step = None;
        for var in env.split(|b| *b == 0) {
            if var == want.as_bytes() {
                ours = true;
            } else if let Some(v) = var.strip_prefix(b"RUNBOOK_STEP=") {
                step = Some(String::from_utf8_lossy(v).into_owned());
            }
        }
        let Some(step) = step.filter(|s| ours && steps.contains(s)) else {
            continue;
        };
        let Some(pgid) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|st| {
                let rest = &st[st.rfind(')')? + 1..];
                rest.split_whitespace().nth(2)?.parse::<u32>().ok()
            })
        else {
            continue;
        };
        if out.iter().any(|(_, g, _)| *g == pgid) {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pgid}/cmdline"))
            .or_else(|_| std::fs::read(format!("/proc/{pid}/cmdline")))
            .map(|b| {
                b.split(|c| *c == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        out.push((step, pgid, cmd));
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
    outcome.stdout = out_cap.lock().map(|c| c.text()).unwrap_or_default();
    outcome.stderr = err_cap.lock().map(|c| c.text()).unwrap_or_default();
    outcome.duration = started.elapsed();
    outcome
}
