//! Liveness of a run: the engine working on a run holds an exclusive `flock` on
//! `<run dir>/engine.lock` for its whole lifetime. The kernel drops the lock when the process
//! dies (however it dies, kill -9 included), so "is an engine alive on this run" is answered by
//! the OS, never by a pid that may have been reused.
//!
//! Contract (other commands depend on it): the file is opened `O_NOFOLLOW|O_CLOEXEC`, mode
//! 0600, and holds one JSON line `{"pid","user","host","started"}` written by the holder.
//! Anyone tests liveness with `LOCK_SH|LOCK_NB`: it fails only while an engine holds the file.

use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The lock file's name inside a run directory.
pub const ENGINE_LOCK: &str = "engine.lock";

/// Who holds a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LiveHolder {
    pub pid: u32,
    pub user: String,
    pub host: String,
    pub started: String,
}

impl std::fmt::Display for LiveHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} ({}@{}, since {})",
            self.pid, self.user, self.host, self.started
        )
    }
}

/// Held for the engine's lifetime; the kernel releases the lock when it is dropped or the
/// process dies.
#[derive(Debug)]
pub struct LiveGuard {
    _file: std::fs::File,
}

/// Why a run could not be held.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("an engine is still running this run: {0}; wait for it, or stop it (kill -TERM {pid})", pid = .0.pid)]
    Held(LiveHolder),
    #[error("an engine is still running this run (its holder record is unreadable)")]
    HeldUnknown,
    #[error("cannot open {0}: {1}")]
    Io(String, std::io::Error),
}

fn open(run_dir: &Path, create: bool) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(create)
        .create(create)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(run_dir.join(ENGINE_LOCK))
}

fn flock(f: &std::fs::File, op: libc::c_int) -> std::io::Result<()> {
    loop {
        // SAFETY: flock on a file descriptor we own.
        let r = unsafe { libc::flock(f.as_raw_fd(), op) };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn read_holder(f: &mut std::fs::File) -> Option<LiveHolder> {
    let mut s = String::new();
    f.seek(std::io::SeekFrom::Start(0)).ok()?;
    f.read_to_string(&mut s).ok()?;
    serde_json::from_str(s.lines().next()?).ok()
}

/// Takes the run for this process: fails, naming the holder, when another engine has it.
pub fn hold(run_dir: &Path) -> Result<LiveGuard, LiveError> {
    let name = run_dir.join(ENGINE_LOCK).display().to_string();
    let mut f = open(run_dir, true).map_err(|e| LiveError::Io(name.clone(), e))?;
    if let Err(e) = flock(&f, libc::LOCK_EX | libc::LOCK_NB) {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            return Err(match read_holder(&mut f) {
                Some(h) => LiveError::Held(h),
                None => LiveError::HeldUnknown,
            });
        }
        return Err(LiveError::Io(name, e));
    }
    let me = LiveHolder {
        pid: std::process::id(),
        user: crate::execute::current_user(),
        host: crate::execute::current_host(),
        started: crate::execute::event::now(),
    };
    let line = serde_json::to_string(&me).unwrap_or_default();
    f.set_len(0)
        .and_then(|()| f.seek(std::io::SeekFrom::Start(0)).map(|_| ()))
        .and_then(|()| f.write_all(format!("{line}\n").as_bytes()))
        .map_err(|e| LiveError::Io(name, e))?;
    Ok(LiveGuard { _file: f })
}

/// The engine holding the run, when one is alive (`None` when none is, or the run has no
/// lock file).
pub fn holder(run_dir: &Path) -> Option<LiveHolder> {
    let mut f = open(run_dir, false).ok()?;
    match flock(&f, libc::LOCK_SH | libc::LOCK_NB) {
        Ok(()) => None,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            Some(read_holder(&mut f).unwrap_or(LiveHolder {
                pid: 0,
                user: "?".into(),
                host: "?".into(),
                started: "?".into(),
            }))
        }
        Err(_) => None,
    }
}
