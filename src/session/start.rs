//! Starting a run for any front end: the runs directory (owned, traversable for answers),
//! the runbook's lock, the run's private directory, and the liveness claim that `show`,
//! `runs` and `approve` test. A refused run creates nothing.

use std::path::PathBuf;

use crate::exit::ExitStatus;
use crate::inputs::Inputs;
use crate::journal::live::{self, LiveError, LiveGuard};
use crate::journal::lock::LockError;
use crate::model::Runbook;

/// Why a run could not start, and the exit status that says so.
#[derive(Debug, Clone)]
pub(crate) struct StartError {
    pub(crate) status: ExitStatus,
    pub(crate) message: String,
}

impl StartError {
    fn new(status: ExitStatus, message: impl Into<String>) -> StartError {
        StartError {
            status,
            message: message.into(),
        }
    }
}

/// A run's place, ready for the engine: held until the run ends.
pub(crate) struct Started {
    pub(crate) run_dir: PathBuf,
    /// The rendered lock key, if the runbook has one (journaled; `resume` checks it).
    pub(crate) lock_key: Option<String>,
    /// The runbook's lock; `keep()` it for a run that `resume` will continue.
    pub(crate) lock: Option<Box<dyn super::store::RunLock>>,
    /// Liveness, held for the whole run.
    pub(crate) live: LiveGuard,
}

/// Prepares run `run_id` of `rb` in `store` (its local run directory under the store's runs
/// directory): checks ownership, takes the lock (before the
/// run directory exists), creates the directory and claims liveness. `live`: a claim the
/// caller already holds (`resume` takes it before reading the journal).
pub(crate) fn start(
    rb: &Runbook,
    inputs: &Inputs,
    store: &dyn super::store::Store,
    run_id: &str,
    user: &str,
    live: Option<LiveGuard>,
) -> Result<Started, StartError> {
    let runs = store.runs_dir();
    let rd = super::store::RunDir::in_runs(runs, run_id);
    let run_dir = rd.path().to_path_buf();
    // Runs are private (0700/0600) except that other users may traverse (0711) to drop an
    // answer into a waiting run's `answers/` (see `journal::answers`).
    let locks = super::store::locks(runs).dir;
    for (dir, follow) in [
        (runs, true),
        (locks.as_path(), false),
        (run_dir.as_path(), false),
    ] {
        super::store::check_owned(dir, follow)
            .map_err(|e| StartError::new(ExitStatus::Invalid, e.message))?;
    }
    let traversable = {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(runs)
    };
    traversable.map_err(|e| {
        let m = format!("cannot create the runs directory {}: {e}", runs.display());
        StartError::new(ExitStatus::EngineFailed, m)
    })?;
    // The lock, taken before the run directory exists: a refused run creates nothing.
    let lock_key = rb.lock.as_ref().map(|l| {
        let t = crate::template::Templates::new(crate::template::SecretDisplay::Mask);
        t.render(
            &l.src,
            &crate::plan::plan_context(inputs),
            crate::template::Target::Text,
        )
        .unwrap_or_else(|_| l.src.clone())
    });
    let lock = match &lock_key {
        Some(key) => match store.lock(key, run_id, user) {
            Ok(l) => Some(l),
            Err(e @ LockError::Held(..)) => {
                return Err(StartError::new(ExitStatus::Busy, e.to_string()));
            }
            Err(e) => return Err(StartError::new(ExitStatus::EngineFailed, e.to_string())),
        },
        None => None,
    };
    let fresh = live.is_none();
    crate::sys::create_private_dir(&run_dir)
        .and_then(|()| crate::journal::answers::prepare(&rd.files()))
        .map_err(|e| {
            let m = format!("cannot create the run directory {}: {e}", run_dir.display());
            StartError::new(ExitStatus::EngineFailed, m)
        })?;
    let live = match live {
        Some(g) => g,
        None => match live::hold(&rd.engine_lock()) {
            Ok(g) => g,
            Err(e @ LiveError::Held(_)) => {
                let m = format!(
                    "{e}: watch it with `runbook show{} {run_id}`",
                    store.flags()
                );
                return Err(StartError::new(ExitStatus::Busy, m));
            }
            Err(e) => {
                // A new run: its directory was just created by us and holds nothing yet.
                if fresh {
                    let _ = std::fs::remove_dir_all(&run_dir);
                }
                return Err(StartError::new(ExitStatus::EngineFailed, e.to_string()));
            }
        },
    };
    Ok(Started {
        run_dir,
        lock_key,
        lock,
        live,
    })
}
