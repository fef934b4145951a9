//! `runbook export` / `runbook import`: a run between a store and the file format.

use super::store::open_for;
use super::{ExportArgs, ImportArgs, error_line};
use crate::exit::ExitStatus;

pub(crate) fn cmd_export(a: &ExportArgs) -> ExitStatus {
    let store = match open_for(&a.dir) {
        Ok(s) => s,
        Err(s) => return s,
    };
    if let Err(e) = std::fs::create_dir_all(&a.dest) {
        error_line(format!("cannot create {}: {e}", a.dest.display()));
        return ExitStatus::Invalid;
    }
    let dest = std::path::absolute(&a.dest).unwrap_or_else(|_| a.dest.clone());
    match store.export(&a.run_id, &dest) {
        Ok(dir) => {
            println!("exported run to {}", dir.display());
            ExitStatus::Success
        }
        Err(e) => {
            let store_failed = e.kind == crate::session::store::ErrorKind::Store;
            error_line(e);
            if store_failed {
                ExitStatus::EngineFailed
            } else {
                ExitStatus::Invalid
            }
        }
    }
}

pub(crate) fn cmd_import(a: &ImportArgs) -> ExitStatus {
    let store = match open_for(&a.dir) {
        Ok(s) => s,
        Err(s) => return s,
    };
    match store.import(&a.path) {
        Ok(id) => {
            println!("imported run {id} into {}", store.describe());
            ExitStatus::Success
        }
        Err(e) => {
            let store_failed = e.kind == crate::session::store::ErrorKind::Store;
            error_line(e);
            if store_failed {
                ExitStatus::EngineFailed
            } else {
                ExitStatus::Invalid
            }
        }
    }
}
