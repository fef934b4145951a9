//! The runs store as the CLI uses it: [`crate::session::store`], with errors printed.

use std::path::{Path, PathBuf};

use super::error_line;
use crate::exit::ExitStatus;
pub(crate) use crate::session::store::{run_id_of, runs_dir, runs_flag};

/// The run directory named by `id` (exact id, unique prefix, or `last`); exit 2 otherwise.
pub(crate) fn resolve(flag: Option<&Path>, id: &str) -> Result<PathBuf, ExitStatus> {
    crate::session::store::resolve(flag, id).map_err(|e| {
        error_line(e);
        ExitStatus::Invalid
    })
}
