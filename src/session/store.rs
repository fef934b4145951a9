//! Where runs live and how the operator names one: the per-user runs directory, run ids by
//! unique prefix, and `last`. Front ends find runs through here, never by building paths.
//!
//! The run-directory layout is known here alone ([`RunDir`], [`locks`]): every other module
//! is given the paths it reads or writes.

use std::path::{Path, PathBuf};

pub(crate) use super::error::{ErrorKind, SessionError};
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Stamped};

    fn journal_of(dir: &Path, n: usize) {
        let mut j = journal::Journal::open(&RunDir::new(dir).files()).unwrap();
        for i in 0..n {
            let e = Stamped {
                at: crate::event::now(),
                event: Event::Warning {
                    message: format!("record {i}"),
                },
            };
            crate::event::Observer::on_event(&mut j, &e).unwrap();
        }
    }

    #[test]
    fn run_ids_cannot_leave_the_runs_directory() {
        assert!(check_id("20261129-040509-held-3bb73e8b6137cd57").is_ok());
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "a\nb", "a b"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_copy_has_the_same_bytes_and_a_broken_chain_is_not_copied() {
        let src = tempfile::tempdir().unwrap();
        let run = src.path().join("run-1");
        std::fs::create_dir(&run).unwrap();
        journal_of(&run, 5);
        let dest = tempfile::tempdir().unwrap();
        let copy = copy_run(&run, dest.path()).unwrap();
        let (run, copy) = (RunDir::new(&run), RunDir::new(&copy));
        assert_eq!(
            std::fs::read(run.journal()).unwrap(),
            std::fs::read(copy.journal()).unwrap()
        );
        let loaded = journal::load(&copy.files()).unwrap();
        assert_eq!(loaded.records.len(), 5);
        assert!(journal::missing_tail(&loaded, true).is_none());

        let (mut lines, _) = journal::lines(&run.files()).unwrap();
        lines.swap(1, 2);
        assert!(journal::check_chain(&lines).is_err());
        assert!(journal::write_copy(&RunDir::new(dest.path()).files(), &lines, false).is_err());
    }

    #[test]
    fn the_journal_writes_where_run_dir_says_and_runs_are_listed_from_there() {
        let runs = tempfile::tempdir().unwrap();
        let run = RunDir::in_runs(runs.path(), "run-1");
        create_run_dir(runs.path(), run.path()).unwrap();
        journal_of(run.path(), 3);
        assert!(run.journal().is_file());
        assert!(run.head().is_file());
        assert!(run.answers().is_dir());
        assert_eq!(run.id(), "run-1");
        let listed = list_runs(runs.path());
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].dir, run.path());
        assert_eq!(resolve(Some(runs.path()), "run").unwrap(), run.path());
        assert_eq!(resolve(Some(runs.path()), "last").unwrap(), run.path());
    }

    #[test]
    fn errors_carry_a_kind_a_front_end_classifies_by() {
        let runs = tempfile::tempdir().unwrap();
        // A name that is not a run id, or no such run: the operator's mistake.
        for id in ["../x", "nope"] {
            let e = resolve(Some(runs.path()), id).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Usage, "{e}");
        }
        // A runs directory others can write to: refused, to protect the runs.
        let open = runs.path().join("open");
        std::fs::create_dir(&open).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let e = create_run_dir(&open, &open.join("r")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Refused, "{e}");
        assert!(
            e.to_string().contains("is writable by group or others"),
            "{e}"
        );
        // A journal whose chain is broken is refused, not merely unreadable.
        let src = runs.path().join("run-2");
        std::fs::create_dir(&src).unwrap();
        journal_of(&src, 3);
        let journal = RunDir::new(&src).journal();
        let text = std::fs::read_to_string(&journal).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.swap(0, 1);
        std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
        let dest = tempfile::tempdir().unwrap();
        let e = copy_run(&src, dest.path()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Refused, "{e}");
        // Importing a run that is already there: the operator's mistake.
        let store = FileStore {
            runs: runs.path().to_path_buf(),
        };
        let e = store.import(RunDir::in_runs(runs.path(), "run-2").path());
        assert_eq!(e.unwrap_err().kind, ErrorKind::Usage);
    }
}
