//! Run locks: the runbook's `lock` key (e.g. `vault-vault-2`) lets one run at a time work on a
//! target. A lock is a file created with O_EXCL holding who holds it; a lock whose process is
//! gone is reported as stale and can be broken explicitly (`runbook unlock KEY`).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Who holds a lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Holder {
    pub key: String,
    pub run_id: String,
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub started: String,
}

/// A held lock; released on drop unless kept (a run paused at a gate keeps it).
#[derive(Debug)]
pub(crate) struct Lock {
    path: PathBuf,
    keep: bool,
}

impl Lock {
    /// Keeps the lock file after this process ends (the run will be resumed).
    pub(crate) fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What state the run holding a lock is in, which decides the right next command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HolderState {
    /// Its engine is alive (it holds the run's `engine.lock`).
    Live,
    /// Its engine is gone but the run can be resumed (paused at a gate, or interrupted).
    Resumable,
    /// Its engine is gone and the run cannot be resumed (finished, or no journal): stale.
    Stale,
}

impl HolderState {
    fn advice(self, h: &Holder) -> String {
        match self {
            HolderState::Live => format!(
                "; its engine is running: wait for it (or stop it: kill -TERM {})",
                h.pid
            ),
            HolderState::Resumable => format!(
                "; that run is stopped but resumable: continue it with `runbook resume {}`, or abandon it with `runbook unlock {}`",
                h.run_id, h.key
            ),
            HolderState::Stale => format!(
                "; that run is over: the lock is stale, break it with `runbook unlock {}`",
                h.key
            ),
        }
    }
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    #[error("`{}` is locked by run {} ({}@{}, pid {}, since {}){}", .0.key, .0.run_id, .0.user, .0.host, .0.pid, .0.started, .1.advice(.0))]
    Held(Box<Holder>, HolderState),
    #[error("cannot take lock {0}: {1}")]
    Io(String, std::io::Error),
}

/// The directory holding locks for runs under `runs_dir`.
pub(crate) fn locks_dir(runs_dir: &Path) -> PathBuf {
    runs_dir.join(".locks")
}

fn file_name(key: &str) -> String {
    let safe: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.lock")
}

/// Reads the holder of lock `key`, and the state of its run.
pub(crate) fn holder(runs_dir: &Path, key: &str) -> Option<(Holder, HolderState)> {
    let path = locks_dir(runs_dir).join(file_name(key));
    let h: Holder = serde_json::from_slice(&read_nofollow(&path).ok()?).ok()?;
    let state = run_state(runs_dir, &h);
    Some((h, state))
}

fn read_nofollow(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

fn run_state(runs_dir: &Path, h: &Holder) -> HolderState {
    if h.run_id.contains('/') || h.run_id.contains("..") || h.run_id.is_empty() {
        return HolderState::Stale;
    }
    let run_dir = runs_dir.join(&h.run_id);
    use super::state::RunState;
    match super::state::view(&run_dir).map(|v| v.state) {
        Ok(
            RunState::Running { .. } | RunState::Waiting { .. } | RunState::RollbackQuestion { .. },
        ) => HolderState::Live,
        Ok(RunState::Paused { .. } | RunState::Interrupted) => HolderState::Resumable,
        Ok(RunState::Finished { .. } | RunState::Damaged) | Err(_) => HolderState::Stale,
    }
}

/// Takes lock `key` for `run_id`. A lock already held by the same run (resume) is taken over.
pub(crate) fn acquire(
    runs_dir: &Path,
    key: &str,
    run_id: &str,
    user: &str,
) -> Result<Lock, LockError> {
    let dir = locks_dir(runs_dir);
    crate::sys::create_private_dir(&dir)
        .map_err(|e| LockError::Io(dir.display().to_string(), e))?;
    let path = dir.join(file_name(key));
    let me = Holder {
        key: key.to_string(),
        run_id: run_id.to_string(),
        user: user.to_string(),
        host: crate::sys::current_host(),
        pid: std::process::id(),
        started: crate::event::now(),
    };
    let body = serde_json::to_vec_pretty(&me).unwrap_or_default();
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut f) => {
            f.write_all(&body)
                .and_then(|()| f.sync_all())
                .map_err(|e| LockError::Io(path.display().to_string(), e))?;
            Ok(Lock { path, keep: false })
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match holder(runs_dir, key) {
            Some((h, _)) if h.run_id == run_id => {
                std::fs::write(&path, &body)
                    .map_err(|e| LockError::Io(path.display().to_string(), e))?;
                Ok(Lock { path, keep: false })
            }
            Some((h, stale)) => Err(LockError::Held(Box::new(h), stale)),
            None => Err(LockError::Io(
                path.display().to_string(),
                std::io::Error::other(
                    "lock file exists but is unreadable; remove it by hand if no run holds it",
                ),
            )),
        },
        Err(e) => Err(LockError::Io(path.display().to_string(), e)),
    }
}

/// Breaks lock `key` (only a stale one unless `force`). Returns the holder it removed.
pub(crate) fn break_lock(runs_dir: &Path, key: &str, force: bool) -> Result<Holder, String> {
    let Some((h, state)) = holder(runs_dir, key) else {
        return Err(format!(
            "no lock named `{key}` in {}",
            locks_dir(runs_dir).display()
        ));
    };
    if state == HolderState::Live {
        return Err(format!(
            "run {} (pid {} on {}) is running and holds `{key}`; it cannot be unlocked while its engine is alive",
            h.run_id, h.pid, h.host
        ));
    }
    if state == HolderState::Resumable && !force {
        return Err(format!(
            "run {} holds `{key}` and can be resumed (`runbook resume {}`); pass --force to abandon it",
            h.run_id, h.run_id
        ));
    }
    std::fs::remove_file(locks_dir(runs_dir).join(file_name(key))).map_err(|e| e.to_string())?;
    Ok(h)
}
