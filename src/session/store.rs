//! Where runs live and how the operator names one: the per-user runs directory, run ids by
//! unique prefix, and `last`. Front ends find runs through here, never by building paths.
//!
//! The run-directory layout is known here alone ([`RunDir`], [`locks`]): every other module
//! is given the paths it reads or writes.

use std::path::{Path, PathBuf};

pub(crate) use super::error::{ErrorKind, SessionError};
use crate::journal;

mod file;
mod layout;
#[cfg(test)]
mod tests;

pub(crate) use file::{FileStore, check_id, write_private, write_run};
pub(crate) use layout::{RunDir, is_run, list_runs, locks};

pub(crate) use super::dirs::check_owned;

/// The per-user default: `$XDG_STATE_HOME/runbook/runs`, i.e. `~/.local/state/runbook/runs`
/// (a run is found from any directory), or `.runbook/runs` when no home is known.
pub(crate) fn default_runs_dir() -> PathBuf {
    let abs = |v: std::ffi::OsString| {
        let p = PathBuf::from(v);
        p.is_absolute().then_some(p)
    };
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").and_then(abs) {
        return state.join("runbook/runs");
    }
    if let Some(home) = std::env::var_os("HOME").and_then(abs) {
        return home.join(".local/state/runbook/runs");
    }
    PathBuf::from(".runbook/runs")
}

/// Where runs are recorded: `--runs-dir`, `$RUNBOOK_RUNS_DIR`, or [`default_runs_dir`].
/// Made absolute, so commands printed for later work from any directory.
pub(crate) fn runs_dir(flag: Option<&Path>) -> PathBuf {
    let p = flag
        .map(Path::to_path_buf)
        .or_else(|| {
            std::env::var_os("RUNBOOK_RUNS_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(default_runs_dir);
    std::path::absolute(&p).unwrap_or(p)
}

/// ` --runs-dir DIR` when `runs` is not the default (for commands printed for the operator).
pub(crate) fn runs_flag(runs: &Path) -> String {
    let default = std::path::absolute(default_runs_dir()).unwrap_or_else(|_| default_runs_dir());
    if runs == default {
        String::new()
    } else {
        format!(
            " --runs-dir {}",
            crate::template::shell_quote(&runs.display().to_string())
        )
    }
}

/// The run directory named by `id`: an exact run id, a unique prefix of one, or `last` (the
/// most recently started run). Otherwise why not (with the candidates): a usage error.
pub(crate) fn resolve(flag: Option<&Path>, id: &str) -> Result<PathBuf, SessionError> {
    let runs = runs_dir(flag);
    if id.contains('/') || id.contains("..") || id.is_empty() {
        return Err(SessionError::usage(format!("`{id}` is not a run id")));
    }
    let exact = runs.join(id);
    if is_run(&exact) {
        return Ok(exact);
    }
    if id == "last" {
        return match list_runs(&runs).pop() {
            Some(v) => Ok(v.dir),
            None => Err(SessionError::usage(format!(
                "no runs in {}",
                runs.display()
            ))),
        };
    }
    let ids: Vec<String> = std::fs::read_dir(&runs)
        .map(|rd| {
            rd.flatten()
                .filter(|e| is_run(&e.path()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let mut matches: Vec<&String> = ids.iter().filter(|r| r.starts_with(id)).collect();
    matches.sort();
    match matches.as_slice() {
        [one] => Ok(runs.join(one)),
        [] => {
            let hint = crate::diagnostic::did_you_mean(id, ids.iter().map(String::as_str))
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            Err(SessionError::usage(format!(
                "no run `{}` in {}{hint} (see `runbook runs{}`)",
                id.escape_debug(),
                runs.display(),
                runs_flag(&runs)
            )))
        }
        many => {
            let shown: Vec<&str> = many.iter().take(5).map(|s| s.as_str()).collect();
            Err(SessionError::usage(format!(
                "`{}` matches {} runs ({}{}): type more of the id",
                id.escape_debug(),
                many.len(),
                shown.join(", "),
                if many.len() > 5 { ", …" } else { "" }
            )))
        }
    }
}

/// The id of a run directory.
pub(crate) fn run_id_of(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Which kind of store a [`Store`] is.
#[allow(dead_code)] // read by the locks and approvals built on the store (issue 17)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// The local run directory (the default).
    File,
    /// The shared PostgreSQL store (team mode).
    Postgres,
}

/// What a store records about a run when it starts (or continues): never secrets.
#[derive(Debug, Clone)]
pub(crate) struct RunMeta {
    pub(crate) run_id: String,
    /// The runbook's name.
    pub(crate) runbook: String,
    /// The runbook file's absolute path.
    pub(crate) file: String,
}

/// A runbook lock held by a run; dropping it releases it unless [`RunLock::keep`] was called
/// (a resumable run keeps its lock for `resume`).
pub(crate) trait RunLock: Send {
    /// Keeps the lock after this process ends (the run will be resumed).
    fn keep(&mut self);
    /// Whether the lock stopped protecting the run while held (a shared store's session
    /// ended: the server restarted, the network failed).
    fn lost(&self) -> bool {
        false
    }
}

impl RunLock for journal::lock::Lock {
    fn keep(&mut self) {
        journal::lock::Lock::keep(self);
    }
}

/// Why a run could not be claimed by its engine ([`Store::begin`]).
#[derive(Debug, Clone)]
pub(crate) struct LockRefused {
    /// Another engine runs it (exit 6, busy), rather than the store failing (exit 5).
    pub(crate) busy: bool,
    pub(crate) message: String,
}

/// Where runs are kept: the local run directory ([`FileStore`]) or a shared PostgreSQL store
/// ([`crate::session::shared::journal::PgStore`]). Front ends reach runs only through this;
/// the engine never sees it (its records reach the store through the journal observer, see
/// [`journal::RecordSink`]).
///
/// Every store keeps a local run directory per run (step logs, the `answers/` drop box, a
/// copy of the journal): for the file store it *is* the run; for a shared store it is a
/// working copy, brought up to date from the store by [`Store::resolve`] and [`Store::list`].
pub(crate) trait Store: Send + Sync {
    /// Which store this is (for what only one kind supports).
    #[allow(dead_code)] // read by the locks and approvals built on the store (issue 17)
    fn kind(&self) -> StoreKind;
    /// The store as shown to the operator (a connection string with its password masked).
    fn describe(&self) -> String;
    /// The local runs directory (working copies of the runs).
    fn runs_dir(&self) -> &Path;
    /// The flags that select this store, for commands printed for the operator
    /// (` --runs-dir DIR`, ` --store URL` with the password masked), or "".
    fn flags(&self) -> String;
    /// The local run directory of run `id` (exact id, unique prefix, or `last`), its journal
    /// brought up to date from the store. Why not (a usage error) otherwise.
    fn resolve(&self, id: &str) -> Result<PathBuf, SessionError>;
    /// Every run, oldest first (working copies brought up to date).
    fn list(&self) -> Result<Vec<journal::state::RunView>, SessionError>;
    /// Registers a run about to start or continue (its options from `run_dir`), claims it for
    /// this engine (refused, `busy`, while an engine on another machine runs it), and returns
    /// where its records go besides the local journal (`None`: only there).
    fn begin(
        &self,
        meta: &RunMeta,
        run_dir: &Path,
    ) -> Result<Option<Box<dyn journal::RecordSink>>, LockRefused>;
    /// Writes run `id` in the file format under `dest` (`dest/<run id>`), returning that path.
    fn export(&self, id: &str, dest: &Path) -> Result<PathBuf, SessionError>;
    /// Adds a run exported in the file format (`run_dir` holds its `journal.jsonl`) to this
    /// store, its chain verified first; returns its id.
    fn import(&self, run_dir: &Path) -> Result<String, SessionError>;
    /// Takes the runbook lock `key` for `run_id` (a lock held by the same run is taken over).
    fn lock(
        &self,
        key: &str,
        run_id: &str,
        user: &str,
    ) -> Result<Box<dyn RunLock>, journal::lock::LockError>;
    /// Breaks lock `key` (`force`: even if its holder looks alive); who held it.
    fn unlock(&self, key: &str, force: bool) -> Result<journal::lock::Holder, SessionError>;
    /// Where the engine of run `run_id` reads answers given from elsewhere.
    /// Fails when the store cannot be reached.
    fn answers(
        &self,
        run_dir: &Path,
        run_id: &str,
    ) -> Result<std::sync::Arc<dyn crate::execute::AnswerSource>, SessionError>;
    /// Gives an answer to gate `gate` of a run (`runbook approve` / `reject`).
    fn answer(
        &self,
        run_dir: &Path,
        run_id: &str,
        gate: &str,
        decision: crate::event::Decision,
        comment: Option<String>,
    ) -> Result<(), SessionError>;
    /// Who the operator is to this store, when the store authenticates people (the
    /// PostgreSQL role): gates' `other_approver` and `approvers:` compare answers with it.
    /// `None`: the OS user.
    fn identity(&self) -> Option<String> {
        None
    }
}

/// The store named by `--store` / `RUNBOOK_STORE` (`conn`), else the file store; `runs`: the
/// `--runs-dir` flag (the local working directory either way).
pub(crate) fn open(
    conn: Option<&str>,
    runs: Option<&Path>,
) -> Result<Box<dyn Store>, SessionError> {
    let runs = runs_dir(runs);
    match conn.map(str::trim).filter(|c| !c.is_empty()) {
        None => Ok(Box::new(FileStore { runs })),
        Some(c) => {
            let store = super::shared::journal::PgStore::open(c, runs)?;
            Ok(Box::new(store))
        }
    }
}
