//! The run-directory layout: the name of every file of a run and of the runs directory's
//! `.locks/`. Known here alone; every other module is given the paths it reads or writes.

use std::path::{Path, PathBuf};

use super::run_id_of;
use crate::journal;
use crate::journal::state::RunView;

/// A run directory: `<runs dir>/<run id>/`, and the name of every file in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunDir(PathBuf);

impl RunDir {
    /// The run directory at `dir`.
    pub(crate) fn new(dir: impl Into<PathBuf>) -> RunDir {
        RunDir(dir.into())
    }

    /// Run `id`'s directory under the runs directory `runs`.
    pub(crate) fn in_runs(runs: &Path, id: &str) -> RunDir {
        RunDir(runs.join(id))
    }

    /// The directory itself.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// The run's id: the directory's name.
    pub(crate) fn id(&self) -> String {
        run_id_of(&self.0)
    }

    /// The hash-chained journal.
    pub(crate) fn journal(&self) -> PathBuf {
        self.0.join("journal.jsonl")
    }

    /// The journal's head (count, last hash, sealed).
    pub(crate) fn head(&self) -> PathBuf {
        self.0.join("journal.head")
    }

    /// The lock a live engine holds.
    pub(crate) fn engine_lock(&self) -> PathBuf {
        self.0.join("engine.lock")
    }

    /// A shared store's note that the run's engine is live on another machine.
    pub(crate) fn engine_remote(&self) -> PathBuf {
        self.0.join("engine.remote")
    }

    /// The drop box of `runbook approve` / `reject` answers.
    pub(crate) fn answers(&self) -> PathBuf {
        self.0.join("answers")
    }

    /// The options `resume` reuses (see `cli::remember`).
    pub(crate) fn options(&self) -> PathBuf {
        self.0.join("options.json")
    }

    /// The step logs (`<step>.<host>.log`, …).
    pub(crate) fn step_logs(&self) -> PathBuf {
        self.0.join("steps")
    }

    /// The transcripts written at the end of a run: Markdown, then JSON.
    pub(crate) fn transcripts(&self) -> [PathBuf; 2] {
        [self.0.join("transcript.md"), self.0.join("transcript.json")]
    }

    /// The files the journal, liveness and answers modules are given.
    pub(crate) fn files(&self) -> journal::RunFiles {
        journal::RunFiles {
            dir: self.0.clone(),
            id: self.id(),
            journal: self.journal(),
            head: self.head(),
            engine_lock: self.engine_lock(),
            engine_remote: self.engine_remote(),
            answers: self.answers(),
        }
    }
}

/// The runbook locks of the runs directory `runs` (`<runs>/.locks/`).
pub(crate) fn locks(runs: &Path) -> journal::lock::Locks {
    journal::lock::Locks {
        dir: runs.join(".locks"),
        runs: runs.to_path_buf(),
        run_files: |runs, id| RunDir::in_runs(runs, id).files(),
    }
}

/// Whether `dir` is a run directory (it has a journal).
pub(crate) fn is_run(dir: &Path) -> bool {
    RunDir::new(dir).journal().is_file()
}

/// Every run under `runs_dir`, oldest first by start time (then by id), so the newest is last
/// and runs started within the same second keep the order they started in.
pub(crate) fn list_runs(runs_dir: &Path) -> Vec<RunView> {
    let Ok(entries) = std::fs::read_dir(runs_dir) else {
        return Vec::new();
    };
    let mut runs: Vec<RunView> = entries
        .flatten()
        .map(|e| RunDir::new(e.path()))
        .filter(|r| r.journal().is_file())
        .filter_map(|r| journal::state::view(&r.files()).ok())
        .collect();
    runs.sort_by(|a, b| {
        a.started_at()
            .cmp(&b.started_at())
            .then_with(|| a.run_id.cmp(&b.run_id))
    });
    runs
}
