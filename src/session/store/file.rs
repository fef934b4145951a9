//! The file store (the run directory itself, the default) and copying runs between runs
//! directories.

use std::path::{Path, PathBuf};

use super::{
    LockRefused, RunDir, RunLock, RunMeta, SessionError, Store, StoreKind, check_owned, list_runs,
    locks, resolve, run_id_of, runs_flag,
};
use crate::journal;

/// The local run directory as the store (the default).
#[derive(Debug, Clone)]
pub(crate) struct FileStore {
    pub(crate) runs: PathBuf,
}

/// Copies the run in `src` (journal, head, options) to `dest/<run id>`, the chain verified.
pub(crate) fn copy_run(src: &Path, dest_runs: &Path) -> Result<PathBuf, SessionError> {
    let id = run_id_of(src);
    check_id(&id)?;
    let src = RunDir::new(src);
    let (lines, sealed) = journal::lines(&src.files())?;
    let head = journal::verified_head(&lines, sealed)?;
    let options = std::fs::read(src.options()).ok();
    let dest = write_run(dest_runs, &id, &lines, &head, options.as_deref())?;
    Ok(dest.path().to_path_buf())
}

/// Writes run `id` under `runs` from its journal's lines: its private run directory, the
/// journal and head as given, and its options if any. What a copy of a run (export, import)
/// and a shared store's working copy have in common.
pub(crate) fn write_run(
    runs: &Path,
    id: &str,
    lines: &[String],
    head: &journal::Head,
    options: Option<&[u8]>,
) -> Result<RunDir, SessionError> {
    let dest = RunDir::in_runs(runs, id);
    create_run_dir(runs, dest.path())?;
    journal::write_lines(&dest.files(), lines, head)?;
    if let Some(opts) = options {
        write_private(&dest.options(), opts).map_err(|e| {
            SessionError::io(format!("cannot write {}: {e}", dest.options().display()))
        })?;
    }
    Ok(dest)
}

/// Refuses what cannot be a run id (it names a directory under the runs directory).
pub(crate) fn check_id(id: &str) -> Result<(), SessionError> {
    let ok = !id.is_empty()
        && !id.starts_with('.')
        && id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(SessionError::usage(format!(
            "`{}` is not a run id",
            id.escape_debug()
        )))
    }
}

/// Writes a private (0600) file, replacing it.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut f = crate::sys::open_private(path)?;
    f.write_all(bytes)?;
    f.sync_data()
}

/// Creates the runs directory (0711) and a private run directory with its `answers/`.
pub(crate) fn create_run_dir(runs: &Path, run_dir: &Path) -> Result<(), SessionError> {
    for (dir, follow) in [(runs, true), (run_dir, false)] {
        check_owned(dir, follow)?;
    }
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(runs)
    }
    .map_err(|e| {
        SessionError::io(format!(
            "cannot create the runs directory {}: {e}",
            runs.display()
        ))
    })?;
    crate::sys::create_private_dir(run_dir)
        .and_then(|()| journal::answers::prepare(&RunDir::new(run_dir).files()))
        .map_err(|e| {
            SessionError::io(format!(
                "cannot create the run directory {}: {e}",
                run_dir.display()
            ))
        })
}

impl Store for FileStore {
    fn kind(&self) -> StoreKind {
        StoreKind::File
    }

    fn describe(&self) -> String {
        format!("runs directory {}", self.runs.display())
    }

    fn runs_dir(&self) -> &Path {
        &self.runs
    }

    fn flags(&self) -> String {
        runs_flag(&self.runs)
    }

    fn resolve(&self, id: &str) -> Result<PathBuf, SessionError> {
        resolve(Some(&self.runs), id)
    }

    fn list(&self) -> Result<Vec<journal::state::RunView>, SessionError> {
        Ok(list_runs(&self.runs))
    }

    fn begin(
        &self,
        _meta: &RunMeta,
        _run_dir: &Path,
    ) -> Result<Option<Box<dyn journal::RecordSink>>, LockRefused> {
        Ok(None)
    }

    fn export(&self, id: &str, dest: &Path) -> Result<PathBuf, SessionError> {
        copy_run(&self.resolve(id)?, dest)
    }

    fn import(&self, run_dir: &Path) -> Result<String, SessionError> {
        let id = run_id_of(run_dir);
        if RunDir::in_runs(&self.runs, &id).journal().exists() {
            return Err(SessionError::usage(format!(
                "run {id} is already in {}",
                self.runs.display()
            )));
        }
        copy_run(run_dir, &self.runs)?;
        Ok(id)
    }

    fn lock(
        &self,
        key: &str,
        run_id: &str,
        user: &str,
    ) -> Result<Box<dyn RunLock>, journal::lock::LockError> {
        let l = journal::lock::acquire(&locks(&self.runs), key, run_id, user)?;
        Ok(Box::new(l))
    }

    fn unlock(&self, key: &str, force: bool) -> Result<journal::lock::Holder, SessionError> {
        Ok(journal::lock::break_lock(&locks(&self.runs), key, force)?)
    }

    fn answers(
        &self,
        run_dir: &Path,
        _run_id: &str,
    ) -> Result<std::sync::Arc<dyn crate::execute::AnswerSource>, SessionError> {
        Ok(std::sync::Arc::new(journal::answers::AnswersDir {
            run: RunDir::new(run_dir).files(),
        }))
    }

    fn answer(
        &self,
        run_dir: &Path,
        _run_id: &str,
        gate: &str,
        decision: crate::event::Decision,
        comment: Option<String>,
    ) -> Result<(), SessionError> {
        journal::answers::write(&RunDir::new(run_dir).files(), gate, decision, comment)?;
        Ok(())
    }
}
