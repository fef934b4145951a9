//! Runs kept in PostgreSQL (team mode): the [`Store`] behind `--store postgres://…`.
//!
//! The database holds each run's journal, one row per record, each row the record's exact line
//! (so the hash chain, and `transcript --verify`, are the file journal's), plus a head on the
//! run's row (count, last hash, sealed) updated in the same statement as each record: a
//! removed tail is evident. A record is committed before `append` returns, so a record that
//! announces a step is in the database before the step starts. A record is only added where
//! the head says the journal ends (`head_count = seq`): two engines can never interleave a
//! run's records.
//!
//! The engine keeps a local working copy of each run (step logs, the journal's copy): the
//! database gets every record *before* the local file. Commands that read a run bring the
//! working copy up to date from the database first ([`PgStore::resolve`]), so a run started on
//! one machine is shown, transcribed and resumed on another.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::conn::PgConn;
use super::pg::SCHEMA_VERSION;
use super::sink::PgSink;
use crate::journal::{self, RecordSink};
use crate::session::store::{
    LockRefused, RunDir, RunLock, RunMeta, SessionError, Store, StoreKind, check_id, write_private,
    write_run,
};

/// The run's row as read back.
#[derive(Debug, Clone)]
struct RunRow {
    head_count: i64,
    head_last: String,
    sealed: bool,
    options: Option<String>,
    /// The engine that last began the run, and whether it is live now (its database session
    /// holds the run's advisory lock).
    engine: Option<journal::live::LiveHolder>,
    live: bool,
}

/// First key of the run advisory locks (`pg_advisory_lock(int, int)`: a space of its own,
/// apart from the runbook locks' single-bigint keys).
const RUN_LOCK_SPACE: i32 = 0x7275_6e00;

/// Second key of run `run_id`'s advisory lock, held by its engine's session for the whole run.
fn run_lock_key(run_id: &str) -> i32 {
    let h = journal::sha256_hex(run_id.as_bytes());
    i32::from_str_radix(&h[..7], 16).unwrap_or(0)
}

/// The PostgreSQL store.
pub(crate) struct PgStore {
    conn: Arc<PgConn>,
    runs: PathBuf,
    /// The connection string as given (with its password: never printed), for the
    /// connections that locks and answers hold of their own.
    dsn: String,
}

impl PgStore {
    /// Connects and checks that the schema is the one this binary writes.
    pub(crate) fn open(conn: &str, runs: PathBuf) -> Result<PgStore, SessionError> {
        let c = PgConn::connect(conn)?;
        let url = c.url().to_string();
        let version = {
            let url = url.clone();
            c.call(move |client| async move {
                let exists: bool = client
                    .query_one("SELECT to_regclass('runbook_schema') IS NOT NULL", &[])
                    .await?
                    .get(0);
                if !exists {
                    return Ok(None);
                }
                let _ = url;
                let v: Option<i32> = client
                    .query_one("SELECT max(version) FROM runbook_schema", &[])
                    .await?
                    .get(0);
                Ok(v)
            })?
        };
        match version {
            Some(v) if v == SCHEMA_VERSION => Ok(PgStore {
                conn: c,
                runs,
                dsn: conn.to_string(),
            }),
            Some(v) => Err(SessionError::store(format!(
                "store {url} has schema version {v}, this runbook uses {SCHEMA_VERSION}: {}",
                if v < SCHEMA_VERSION {
                    "run `runbook store init` to migrate it"
                } else {
                    "upgrade runbook"
                }
            ))),
            None => Err(SessionError::store(format!(
                "store {url} has no schema: run `runbook store init` first"
            ))),
        }
    }

    /// The connection (for what builds on the store: locks, approvals).
    #[allow(dead_code)] // used by the locks and approvals built on the store (issue 17)
    pub(crate) fn conn(&self) -> &Arc<PgConn> {
        &self.conn
    }

    /// The ids of the runs named by `id`: exact, by prefix, or `last`.
    fn find(&self, id: &str) -> Result<String, SessionError> {
        if id == "last" {
            let last = self.conn.call(|c| async move {
                let rows = c
                    .query(
                        "SELECT run_id FROM runbook_run ORDER BY created_at DESC, run_id DESC LIMIT 1",
                        &[],
                    )
                    .await?;
                Ok(rows.first().map(|r| r.get::<_, String>(0)))
            })?;
            return last.ok_or_else(|| {
                SessionError::usage(format!("no runs in the store {}", self.conn.url()))
            });
        }
        check_id(id)?;
        let want = id.to_string();
        let ids: Vec<String> = self.conn.call(move |c| async move {
            let rows = c
                .query(
                    "SELECT run_id FROM runbook_run
                      WHERE run_id = $1 OR left(run_id, length($1)) = $1
                      ORDER BY (run_id = $1) DESC, run_id LIMIT 6",
                    &[&want],
                )
                .await?;
            Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
        })?;
        match ids.as_slice() {
            [first, ..] if first == id => Ok(first.clone()),
            [one] => Ok(one.clone()),
            [] => Err(SessionError::usage(format!(
                "no run `{id}` in the store {} (see `runbook runs{}`)",
                self.conn.url(),
                self.flags()
            ))),
            many => {
                let shown: Vec<&str> = many.iter().take(5).map(String::as_str).collect();
                Err(SessionError::usage(format!(
                    "`{id}` matches {} runs ({}{}): type more of the id",
                    many.len().min(5),
                    shown.join(", "),
                    if many.len() > 5 { ", …" } else { "" }
                )))
            }
        }
    }

    /// A run's row and its records' lines, in order.
    fn fetch(&self, run_id: &str) -> Result<(RunRow, Vec<String>), SessionError> {
        let id = run_id.to_string();
        let key = run_lock_key(run_id);
        self.conn.call(move |c| async move {
            let row = c
                .query_one(
                    "SELECT head_count, head_last, sealed, options,
                            engine_user, engine_host, engine_pid, engine_started
                       FROM runbook_run WHERE run_id = $1",
                    &[&id],
                )
                .await?;
            // Free (we got it) = no engine's session holds it; give it back at once.
            let free: bool = c
                .query_one(
                    "SELECT pg_try_advisory_lock($1, $2)",
                    &[&RUN_LOCK_SPACE, &key],
                )
                .await?
                .get(0);
            if free {
                c.execute(
                    "SELECT pg_advisory_unlock($1, $2)",
                    &[&RUN_LOCK_SPACE, &key],
                )
                .await?;
            }
            let engine = match (
                row.get::<_, Option<String>>(4),
                row.get::<_, Option<String>>(5),
            ) {
                (Some(user), Some(host)) => Some(journal::live::LiveHolder {
                    pid: u32::try_from(row.get::<_, Option<i32>>(6).unwrap_or(0)).unwrap_or(0),
                    user,
                    host,
                    started: row.get::<_, Option<String>>(7).unwrap_or_default(),
                }),
                _ => None,
            };
            let row = RunRow {
                head_count: row.get(0),
                head_last: row.get(1),
                sealed: row.get(2),
                options: row.get(3),
                engine,
                live: !free,
            };
            let lines = c
                .query(
                    "SELECT line FROM runbook_record WHERE run_id = $1 ORDER BY seq",
                    &[&id],
                )
                .await?
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect();
            Ok((row, lines))
        })
    }

    /// Writes run `run_id` from the database into `runs/<run_id>` (journal, head, options).
    fn copy_out(&self, run_id: &str, runs: &Path, verify: bool) -> Result<PathBuf, SessionError> {
        check_id(run_id)?;
        let (row, lines) = self.fetch(run_id)?;
        if verify {
            journal::check_chain(&lines)
                .map_err(|e| SessionError::from(e).prefixed(&format!("run {run_id}: ")))?;
            if row.head_count != lines.len() as i64 {
                return Err(SessionError::refused(format!(
                    "run {run_id}: the store's head counts {} record(s) but {} are there: records were removed",
                    row.head_count,
                    lines.len()
                )));
            }
        }
        let head = journal::Head {
            v: journal::JOURNAL_VERSION,
            count: u64::try_from(row.head_count).unwrap_or(0),
            last: row.head_last,
            durable: u64::try_from(row.head_count).unwrap_or(0),
            sealed: row.sealed,
        };
        let options = row.options.as_ref().map(String::as_bytes);
        let dir = write_run(runs, run_id, &lines, &head, options)?;
        // An engine live on another machine: `show` and `runs` say so (see `state::view`).
        let remote = dir.engine_remote();
        match (&row.engine, row.live && !verify) {
            (Some(engine), true) => {
                let text =
                    serde_json::to_string(engine).map_err(|e| SessionError::io(e.to_string()))?;
                write_private(&remote, text.as_bytes()).map_err(|e| {
                    SessionError::io(format!("cannot write {}: {e}", remote.display()))
                })?;
            }
            _ => {
                let _ = std::fs::remove_file(&remote);
            }
        }
        Ok(dir.path().to_path_buf())
    }

    /// The working copy of `run_id`, brought up to date unless an engine on this machine is
    /// writing it (then it is current: the database gets each record just before it).
    fn sync(&self, run_id: &str) -> Result<PathBuf, SessionError> {
        let dir = RunDir::in_runs(&self.runs, run_id);
        if journal::live::holder(&dir.engine_lock()).is_some() {
            return Ok(dir.path().to_path_buf());
        }
        self.copy_out(run_id, &self.runs, false)
    }
}

impl Store for PgStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Postgres
    }

    fn describe(&self) -> String {
        format!("store {}", self.conn.url())
    }

    fn runs_dir(&self) -> &Path {
        &self.runs
    }

    fn flags(&self) -> String {
        let runs = crate::session::store::runs_flag(&self.runs);
        // Selected by RUNBOOK_STORE: printed commands need no flag (and show no URL at all).
        if std::env::var("RUNBOOK_STORE").is_ok_and(|v| v.trim() == self.dsn.trim()) {
            return runs;
        }
        format!(
            "{runs} --store {}",
            crate::template::shell_quote(self.conn.url())
        )
    }

    fn resolve(&self, id: &str) -> Result<PathBuf, SessionError> {
        let run_id = self.find(id)?;
        self.sync(&run_id)
    }

    fn list(&self) -> Result<Vec<journal::state::RunView>, SessionError> {
        let ids: Vec<String> = self.conn.call(|c| async move {
            let rows = c
                .query("SELECT run_id FROM runbook_run ORDER BY created_at", &[])
                .await?;
            Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
        })?;
        let mut views = Vec::new();
        for id in ids {
            if check_id(&id).is_err() {
                continue;
            }
            let dir = self.sync(&id)?;
            if let Ok(v) = journal::state::view(&RunDir::new(&dir).files()) {
                views.push(v);
            }
        }
        views.sort_by(|a, b| {
            a.started_at()
                .cmp(&b.started_at())
                .then_with(|| a.run_id.cmp(&b.run_id))
        });
        Ok(views)
    }

    fn begin(
        &self,
        meta: &RunMeta,
        run_dir: &Path,
    ) -> Result<Option<Box<dyn RecordSink>>, LockRefused> {
        let failed = |e: SessionError| LockRefused {
            busy: false,
            message: e.message,
        };
        check_id(&meta.run_id).map_err(failed)?;
        let options = std::fs::read_to_string(RunDir::new(run_dir).options()).ok();
        let (id, name, file) = (meta.run_id.clone(), meta.runbook.clone(), meta.file.clone());
        let key = run_lock_key(&meta.run_id);
        let me = (
            crate::sys::current_user(),
            crate::sys::current_host(),
            i32::try_from(std::process::id()).unwrap_or(0),
            crate::event::now(),
        );
        let (held, other) = self.conn.call(move |c| async move {
            // Held by this session (this engine) until it ends: the run is live.
            let got: bool = c
                .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&RUN_LOCK_SPACE, &key])
                .await?
                .get(0);
            if !got {
                let who = c
                    .query_opt(
                        "SELECT engine_user, engine_host, engine_pid FROM runbook_run WHERE run_id = $1",
                        &[&id],
                    )
                    .await?
                    .map(|r| {
                        format!(
                            "{}@{} (pid {})",
                            r.get::<_, Option<String>>(0).unwrap_or_default(),
                            r.get::<_, Option<String>>(1).unwrap_or_default(),
                            r.get::<_, Option<i32>>(2).unwrap_or(0)
                        )
                    });
                return Ok((false, who));
            }
            c.execute(
                "INSERT INTO runbook_run
                     (run_id, runbook, file, options, engine_user, engine_host, engine_pid, engine_started)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (run_id) DO UPDATE SET options = EXCLUDED.options,
                     engine_user = EXCLUDED.engine_user, engine_host = EXCLUDED.engine_host,
                     engine_pid = EXCLUDED.engine_pid, engine_started = EXCLUDED.engine_started,
                     updated_at = now()",
                &[&id, &name, &file, &options, &me.0, &me.1, &me.2, &me.3],
            )
            .await?;
            Ok((true, None))
        })
        .map_err(failed)?;
        if !held {
            return Err(LockRefused {
                busy: true,
                message: format!(
                    "run {} is live: its engine {} runs it from another machine; watch it with `runbook show{} {}`",
                    meta.run_id,
                    other.unwrap_or_else(|| "?".into()),
                    self.flags(),
                    meta.run_id
                ),
            });
        }
        Ok(Some(Box::new(PgSink {
            conn: self.conn.clone(),
            run_id: meta.run_id.clone(),
            failed: Arc::default(),
        })))
    }

    fn export(&self, id: &str, dest: &Path) -> Result<PathBuf, SessionError> {
        let run_id = self.find(id)?;
        self.copy_out(&run_id, dest, true)
    }

    fn import(&self, run_dir: &Path) -> Result<String, SessionError> {
        let id = crate::session::store::run_id_of(run_dir);
        check_id(&id)?;
        let rd = RunDir::new(run_dir);
        let (lines, sealed) = journal::lines(&rd.files())?;
        let last = journal::check_chain(&lines)?;
        let (runbook, file) = journal::read(&rd.files())
            .ok()
            .and_then(|r| {
                r.into_iter().find_map(|r| match r.stamped.event {
                    crate::event::Event::RunStarted { runbook, file, .. } => Some((runbook, file)),
                    _ => None,
                })
            })
            .ok_or_else(|| {
                SessionError::refused(format!(
                    "{}: the journal has no run start",
                    run_dir.display()
                ))
            })?;
        let options = std::fs::read_to_string(rd.options()).ok();
        let count = lines.len() as i64;
        let seqs: Vec<i64> = (0..count).collect();
        let run_id = id.clone();
        let inserted = self.conn.call(move |c| async move {
            c.batch_execute("BEGIN").await?;
            let n = c
                .execute(
                    "INSERT INTO runbook_run (run_id, runbook, file, options, head_count, head_last, sealed)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (run_id) DO NOTHING",
                    &[&run_id, &runbook, &file, &options, &count, &last, &sealed],
                )
                .await?;
            if n == 0 {
                c.batch_execute("ROLLBACK").await?;
                return Ok(false);
            }
            c.execute(
                "INSERT INTO runbook_record (run_id, seq, line)
                 SELECT $1, s, l FROM unnest($2::bigint[], $3::text[]) AS t(s, l)",
                &[&run_id, &seqs, &lines],
            )
            .await?;
            c.batch_execute("COMMIT").await?;
            Ok(true)
        });
        match inserted {
            Ok(true) => Ok(id),
            Ok(false) => Err(SessionError::usage(format!(
                "run {id} is already in the store {}",
                self.conn.url()
            ))),
            Err(e) => {
                // A failed statement leaves the transaction open on this connection.
                let _ = self
                    .conn
                    .call(|c| async move { c.batch_execute("ROLLBACK").await });
                Err(e)
            }
        }
    }

    // Locks and answers across machines: session advisory locks and gate/answer rows with
    // LISTEN/NOTIFY, on connections of their own (src/session/shared/team.rs, branch u17b).
    fn lock(
        &self,
        key: &str,
        run_id: &str,
        user: &str,
    ) -> Result<Box<dyn RunLock>, journal::lock::LockError> {
        super::team::lock(&self.dsn, key, run_id, user)
    }

    fn unlock(&self, key: &str, force: bool) -> Result<journal::lock::Holder, SessionError> {
        super::team::unlock(&self.dsn, key, force)
    }

    fn answers(
        &self,
        _run_dir: &Path,
        run_id: &str,
    ) -> Result<Arc<dyn crate::execute::AnswerSource>, SessionError> {
        super::team::answers(&self.dsn, run_id).map(|(a, _)| a)
    }

    fn answer(
        &self,
        _run_dir: &Path,
        run_id: &str,
        gate: &str,
        decision: crate::event::Decision,
        comment: Option<String>,
    ) -> Result<(), SessionError> {
        super::approvals::give(&self.dsn, run_id, gate, decision, comment.as_deref()).map(|_| ())
    }

    fn identity(&self) -> Option<String> {
        self.conn
            .call(|c| async move {
                let row = c.query_one("SELECT session_user::text", &[]).await?;
                Ok(row.get::<_, String>(0))
            })
            .ok()
    }
}
