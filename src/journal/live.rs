//! Engine liveness: a live engine holds an exclusive `flock` on the run's engine lock for
//! its whole lifetime; anyone can test it without racing a PID that was reused. The kernel
//! drops the lock when the process dies, however it dies, so a killed engine never looks live.
//!
//! The file holds one JSON line `{"pid","user","host","started"}` naming the holder. It is
//! opened `O_NOFOLLOW | O_CLOEXEC`, mode 0600 (a symlink planted in the run directory cannot
//! redirect it; child processes do not inherit the lock).

use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Who holds a run's engine lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LiveHolder {
    pub pid: u32,
    pub user: String,
    pub host: String,
    pub started: String,
}

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub(crate) struct LiveGuard {
    _file: std::fs::File,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LiveError {
    #[error("run is already being executed by pid {} ({}@{}, since {})", .0.pid, .0.user, .0.host, .0.started)]
    Held(Box<LiveHolder>),
    #[error("cannot lock {0}: {1}")]
    Io(String, std::io::Error),
}

fn open(lock: &Path, write: bool) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o600);
    if write {
        o.write(true).create(true);
    }
    o.open(lock)
}

fn flock(f: &std::fs::File, op: libc::c_int) -> bool {
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    unsafe { libc::flock(f.as_raw_fd(), op) == 0 }
}

fn read_holder(f: &mut std::fs::File) -> Option<LiveHolder> {
    let mut s = String::new();
    f.seek(std::io::SeekFrom::Start(0)).ok()?;
    f.take(4096).read_to_string(&mut s).ok()?;
    serde_json::from_str(s.lines().next()?).ok()
}

/// Takes the engine lock `lock` (a run's [`super::RunFiles::engine_lock`]) for the life of
/// the returned guard.
pub(crate) fn hold(lock: &Path) -> Result<LiveGuard, LiveError> {
    let name = lock.display().to_string();
    let mut f = open(lock, true).map_err(|e| LiveError::Io(name.clone(), e))?;
    if !flock(&f, libc::LOCK_EX | libc::LOCK_NB) {
        // The holder writes its line just after taking the lock: a racing reader may look
        // in between, so it looks again for a moment before calling the holder unknown.
        let mut seen = read_holder(&mut f);
        for _ in 0..40 {
            if seen.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
            seen = read_holder(&mut f);
        }
        let h = seen.unwrap_or(LiveHolder {
            pid: 0,
            user: "?".into(),
            host: "?".into(),
            started: "?".into(),
        });
        return Err(LiveError::Held(Box::new(h)));
    }
    let me = LiveHolder {
        pid: std::process::id(),
        user: crate::sys::current_user(),
        host: crate::sys::current_host(),
        started: crate::event::now(),
    };
    let line = serde_json::to_string(&me).unwrap_or_default();
    f.set_len(0)
        .and_then(|()| f.seek(std::io::SeekFrom::Start(0)).map(|_| ()))
        .and_then(|()| f.write_all(format!("{line}\n").as_bytes()))
        .map_err(|e| LiveError::Io(name, e))?;
    Ok(LiveGuard { _file: f })
}

/// The engine live elsewhere, as a shared store last saw it: `remote` is a working copy's
/// note that the run's engine is live on another machine (a run's
/// [`super::RunFiles::engine_remote`], written by a shared store when it brings the copy up to
/// date, removed when that engine is gone).
pub(crate) fn remote_holder(remote: &Path) -> Option<LiveHolder> {
    let bytes = std::fs::read(remote).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The live engine holding the engine lock `lock`, if one holds it now.
pub(crate) fn holder(lock: &Path) -> Option<LiveHolder> {
    let mut f = open(lock, false).ok()?;
    if flock(&f, libc::LOCK_SH | libc::LOCK_NB) {
        // We got it: nobody holds it exclusively (our shared lock drops with `f`).
        return None;
    }
    Some(read_holder(&mut f).unwrap_or(LiveHolder {
        pid: 0,
        user: "?".into(),
        host: "?".into(),
        started: "?".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_while_the_guard_lives() {
        let d = tempfile::tempdir().unwrap();
        let lock = crate::session::store::RunDir::new(d.path()).engine_lock();
        assert!(holder(&lock).is_none());
        let g = hold(&lock).unwrap();
        // flock locks belong to the open file description: a second open conflicts even in
        // the same process, which is what another process sees too.
        let h = holder(&lock).unwrap();
        assert_eq!(h.pid, std::process::id());
        assert!(matches!(hold(&lock), Err(LiveError::Held(_))));
        drop(g);
        assert!(holder(&lock).is_none());
    }
}
