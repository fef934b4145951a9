//! What a front end asks for when it starts or continues a run: everything `start` and the
//! engine need, decided before anything is created.

use std::path::PathBuf;

use crate::execute::Prior;
use crate::inputs::Inputs;
use crate::journal::live::LiveGuard;
use crate::model::Runbook;

/// A run to start (`exec`) or continue (`resume`, `rollback`).
pub(crate) struct RunRequest {
    pub(crate) rb: Runbook,
    /// The inputs, resolved (secrets included: they never reach a store).
    pub(crate) inputs: Inputs,
    /// The runbook file's absolute path.
    pub(crate) file: PathBuf,
    /// SHA-256 of the runbook file (`resume` refuses a changed file).
    pub(crate) file_sha256: String,
    pub(crate) run_id: String,
    /// What a continued run already did (`Prior::default()` for a new run).
    pub(crate) prior: Prior,
    /// The liveness claim a continuing front end took before reading the journal.
    pub(crate) live: Option<LiveGuard>,
    /// No journal at all (benchmarks only).
    pub(crate) no_journal: bool,
}

impl RunRequest {
    /// What the store records about the run.
    pub(crate) fn meta(&self) -> super::store::RunMeta {
        super::store::RunMeta {
            run_id: self.run_id.clone(),
            runbook: self.rb.name.clone(),
            file: self.file.display().to_string(),
        }
    }
}
