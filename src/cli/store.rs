//! The runs store as the CLI uses it: [`crate::session::store`], with errors printed.

use std::path::{Path, PathBuf};

use super::error_line;
use crate::exit::ExitStatus;
pub(crate) use crate::session::store::{ErrorKind, Store, run_id_of, runs_dir};

/// The store selected by `--store` / `RUNBOOK_STORE` (else the file store under `--runs-dir`).
/// A store that cannot be reached (or whose schema is not current) is exit 5.
pub(crate) fn open(store: Option<&str>, runs: Option<&Path>) -> Result<Box<dyn Store>, ExitStatus> {
    crate::session::store::open(store, runs).map_err(|e| {
        error_line(e);
        ExitStatus::EngineFailed
    })
}

/// [`open`] from a command's `--runs-dir`/`--store` flags.
pub(crate) fn open_for(dir: &super::RunsDirArg) -> Result<Box<dyn Store>, ExitStatus> {
    open(dir.store.as_deref(), dir.runs_dir.as_deref())
}

/// The local run directory of run `id` in `store` (brought up to date from it); exit 2 when
/// there is no such run, 5 when the store fails.
pub(crate) fn resolve_in(store: &dyn Store, id: &str) -> Result<PathBuf, ExitStatus> {
    store.resolve(id).map_err(|e| {
        let unreachable = e.kind == ErrorKind::Store;
        error_line(e);
        if unreachable {
            ExitStatus::EngineFailed
        } else {
            ExitStatus::Invalid
        }
    })
}
