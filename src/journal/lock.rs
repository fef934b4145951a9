//! Run locks: the runbook's `lock` key (e.g. `vault-vault-2`) lets one run at a time work on a
//! target. A lock is a file created with O_EXCL holding who holds it; a lock whose process is
//! gone is reported as stale and can be broken explicitly (`runbook unlock KEY`).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Who holds a lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub key: String,
    pub run_id: String,
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub started: String,
}

/// A held lock; released on drop unless kept (a run paused at a gate keeps it).
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    keep: bool,
}

impl Lock {
    /// Keeps the lock file after this process ends (the run will be resumed).
    pub fn keep(&mut self) {
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

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("`{}` is locked by run {} ({}@{}, pid {}, since {}){}", .0.key, .0.run_id, .0.user, .0.host, .0.pid, .0.started, if *.1 { "; that process is gone: the lock is stale, break it with `runbook unlock ".to_string() + &.0.key + "`" } else { String::new() })]
    Held(Box<Holder>, bool),
    #[error("cannot take lock {0}: {1}")]
    Io(String, std::io::Error),
}

/// The directory holding locks for runs under `runs_dir`.
pub fn locks_dir(runs_dir: &Path) -> PathBuf {
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

/// Whether `pid` runs on this machine (a zombie counts as gone).
fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next()),
            Some("Z" | "X")
        ),
        Err(_) => false,
    }
}

/// Reads the holder of lock `key`, and whether it is stale.
pub fn holder(runs_dir: &Path, key: &str) -> Option<(Holder, bool)> {
    let path = locks_dir(runs_dir).join(file_name(key));
    let h: Holder = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let stale = h.host == crate::execute::current_host() && !pid_alive(h.pid);
    Some((h, stale))
}

/// Takes lock `key` for `run_id`. A lock already held by the same run (resume) is taken over.
pub fn acquire(runs_dir: &Path, key: &str, run_id: &str, user: &str) -> Result<Lock, LockError> {
    let dir = locks_dir(runs_dir);
    crate::execute::capture::create_private_dir(&dir)
        .map_err(|e| LockError::Io(dir.display().to_string(), e))?;
    let path = dir.join(file_name(key));
    let me = Holder {
        key: key.to_string(),
        run_id: run_id.to_string(),
        user: user.to_string(),
        host: crate::execute::current_host(),
        pid: std::process::id(),
        started: crate::execute::event::now(),
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
pub fn break_lock(runs_dir: &Path, key: &str, force: bool) -> Result<Holder, String> {
    let Some((h, stale)) = holder(runs_dir, key) else {
        return Err(format!(
            "no lock named `{key}` in {}",
            locks_dir(runs_dir).display()
        ));
    };
    if !stale && !force {
        return Err(format!(
            "run {} (pid {} on {}) still holds `{key}`; pass --force only if you are sure it is not running",
            h.run_id, h.pid, h.host
        ));
    }
    std::fs::remove_file(locks_dir(runs_dir).join(file_name(key))).map_err(|e| e.to_string())?;
    Ok(h)
}
