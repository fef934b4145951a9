//! Gates answered from any machine through the PostgreSQL store.
//!
//! A gate the engine waits at is a row of `runbook_gate` (who runs it, what it needs). `runbook
//! approve RUN GATE` / `reject` insert a row into `runbook_answer`; a trigger stamps it with the
//! **authenticated role** (`session_user`, whatever the client sent) and the roles it is a
//! member of, and announces it with `NOTIFY runbook_answer, 'RUN'`. The engine LISTENs on a
//! connection of its own ([`PgAnswers`]): a notification makes it read the run's answers at
//! once (and every 2 s anyway, so a lost notification costs seconds, not the answer); an answer
//! taken is deleted, so it is used once.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;

use super::pg::{self, describe};
use super::redact;
use crate::event::Decision;
use crate::execute::{AnswerSource, RemoteAnswer};
use crate::session::error::SessionError;

/// The NOTIFY channel of new answers (payload: the run id).
pub(crate) const CHANNEL: &str = "runbook_answer";

/// An answer read from the store, not yet taken.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    step: String,
    answer: RemoteAnswer,
}

#[derive(Debug, Default)]
struct Cache {
    rows: Vec<Row>,
    /// Taken (deleted or being deleted): never offered again.
    taken: HashSet<i64>,
}

enum Cmd {
    Waiting {
        step: String,
        needed: i32,
        other_approver: bool,
        approvers: Vec<String>,
    },
    Settled {
        step: String,
        decided: bool,
    },
    Taken(Vec<i64>),
}

/// A run's answers in the store, as the engine's [`AnswerSource`]. Its thread holds a
/// LISTENing connection (reconnecting when it drops) and keeps the run's pending answers.
#[derive(Debug)]
pub(crate) struct PgAnswers {
    cache: Arc<Mutex<Cache>>,
    changed: watch::Receiver<u64>,
    cmds: Option<mpsc::UnboundedSender<Cmd>>,
    /// Signalled when the thread has done its last command.
    done: Mutex<std::sync::mpsc::Receiver<()>>,
    /// The engine's authenticated role (the operator, for `other_approver`).
    pub(crate) role: String,
    /// The store's connection string (for `ask:` answers given through it).
    conn: String,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

impl PgAnswers {
    /// Connects and starts listening for answers to run `run_id`. Fails when the store cannot
    /// be reached now.
    pub(crate) fn start(conn: &str, run_id: &str) -> Result<PgAnswers, SessionError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<String, String>>();
        let cache = Arc::new(Mutex::new(Cache::default()));
        let (changed_tx, changed) = watch::channel(0u64);
        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        let (conn_s, run_s, cache2) = (conn.to_string(), run_id.to_string(), cache.clone());
        let (done_tx, done) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("runbook-answers".into())
            .spawn(move || {
                let rt = match pg::runtime() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(listen(conn_s, run_s, cache2, changed_tx, cmd_rx, ready_tx));
                let _ = done_tx.send(());
            })
            .map_err(|e| SessionError::io(format!("cannot start the answers thread: {e}")))?;
        let role = ready_rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| SessionError::store(format!("no answer from the store {}", redact(conn))))?
            .map_err(SessionError::store)?;
        Ok(PgAnswers {
            cache,
            changed,
            cmds: Some(cmds),
            done: Mutex::new(done),
            role,
            conn: conn.to_string(),
        })
    }

    fn send(&self, cmd: Cmd) {
        if let Some(c) = &self.cmds {
            let _ = c.send(cmd);
        }
    }
}

impl Drop for PgAnswers {
    /// Lets the thread finish what it was told (answers taken are deleted, gates settled)
    /// before the process ends, for at most a few seconds (the store may be down).
    fn drop(&mut self) {
        self.cmds = None;
        if let Ok(done) = self.done.lock() {
            let _ = done.recv_timeout(Duration::from_secs(3));
        }
    }
}

async fn listen(
    conn: String,
    run_id: String,
    cache: Arc<Mutex<Cache>>,
    changed: watch::Sender<u64>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    ready: std::sync::mpsc::Sender<Result<String, String>>,
) {
    let mut ready = Some(ready);
    // Gates waiting now, re-announced after a reconnection.
    let mut waiting: HashMap<String, (i32, bool, Vec<String>)> = HashMap::new();
    loop {
        let session = async {
            let (client, notes) = pg::connect_listening(&conn)
                .await
                .map_err(|e| e.to_string())?;
            client
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .await
                .map_err(|e| describe(&e))?;
            let role: String = client
                .query_one("SELECT session_user::text", &[])
                .await
                .map_err(|e| describe(&e))?
                .get(0);
            Ok::<_, String>((client, notes, role))
        }
        .await;
        let (client, mut notes, role) = match session {
            Ok(s) => s,
            Err(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e));
                    return;
                }
                // Reconnect later; the engine's journal deals with the store being down.
                tokio::time::sleep(Duration::from_secs(1)).await;
                if cmds.is_closed() {
                    return;
                }
                continue;
            }
        };
        if let Some(r) = ready.take() {
            let _ = r.send(Ok(role));
        }
        for (step, (needed, other, approvers)) in &waiting {
            let _ = announce(&client, &run_id, step, *needed, *other, approvers).await;
        }
        let _ = refresh(&client, &run_id, &cache, &changed).await;
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                n = notes.recv() => match n {
                    Some(n) if n.payload() == run_id => {
                        let _ = refresh(&client, &run_id, &cache, &changed).await;
                    }
                    Some(_) => {}
                    None => break,
                },
                c = cmds.recv() => match c {
                    None => return,
                    Some(Cmd::Waiting { step, needed, other_approver, approvers }) => {
                        let _ = announce(&client, &run_id, &step, needed, other_approver, &approvers).await;
                        waiting.insert(step, (needed, other_approver, approvers));
                    }
                    Some(Cmd::Settled { step, decided }) => {
                        waiting.remove(&step);
                        let _ = settle(&client, &run_id, &step, decided).await;
                    }
                    Some(Cmd::Taken(ids)) => {
                        let _ = client
                            .execute("DELETE FROM runbook_answer WHERE id = ANY($1)", &[&ids])
                            .await;
                    }
                },
                _ = tick.tick() => {
                    let _ = refresh(&client, &run_id, &cache, &changed).await;
                }
            }
        }
    }
}

async fn announce(
    client: &Client,
    run_id: &str,
    step: &str,
    needed: i32,
    other_approver: bool,
    approvers: &[String],
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO runbook_gate (run_id, step, host, pid, needed, other_approver, approvers) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (run_id, step) DO UPDATE SET \
             operator = DEFAULT, host = EXCLUDED.host, pid = EXCLUDED.pid, needed = EXCLUDED.needed, \
             other_approver = EXCLUDED.other_approver, approvers = EXCLUDED.approvers, \
             waiting = true, asked_at = DEFAULT",
            &[
                &run_id,
                &step,
                &crate::sys::current_host(),
                &(std::process::id() as i32),
                &needed,
                &other_approver,
                &approvers,
            ],
        )
        .await
}

/// A gate decided is no longer a row; one left undecided (the engine stopped) stays, marked
/// not waiting, so answers can be given before `runbook resume`.
async fn settle(
    client: &Client,
    run_id: &str,
    step: &str,
    decided: bool,
) -> Result<u64, tokio_postgres::Error> {
    if decided {
        client
            .execute(
                "DELETE FROM runbook_gate WHERE run_id = $1 AND step = $2",
                &[&run_id, &step],
            )
            .await
    } else {
        client
            .execute(
                "UPDATE runbook_gate SET waiting = false WHERE run_id = $1 AND step = $2",
                &[&run_id, &step],
            )
            .await
    }
}

async fn refresh(
    client: &Client,
    run_id: &str,
    cache: &Mutex<Cache>,
    changed: &watch::Sender<u64>,
) -> Result<(), tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT id, step, decision, comment, host, role, groups FROM runbook_answer \
             WHERE run_id = $1 ORDER BY id",
            &[&run_id],
        )
        .await?;
    let rows: Vec<Row> = rows
        .iter()
        .map(|r| Row {
            id: r.get(0),
            step: r.get(1),
            answer: RemoteAnswer {
                decision: if r.get::<_, String>(2) == "approved" {
                    Decision::Approved
                } else {
                    Decision::Declined
                },
                comment: r.get(3),
                host: r.get(4),
                user: r.get(5),
                groups: Some(r.get(6)),
            },
        })
        .collect();
    let fresh = {
        let Ok(mut c) = cache.lock() else {
            return Ok(());
        };
        let known: HashSet<i64> = c.rows.iter().map(|r| r.id).collect();
        let taken = c.taken.clone();
        c.rows = rows
            .into_iter()
            .filter(|r| !taken.contains(&r.id))
            .collect();
        c.rows.iter().any(|r| !known.contains(&r.id))
    };
    if fresh {
        changed.send_modify(|v| *v += 1);
    }
    Ok(())
}

impl AnswerSource for PgAnswers {
    fn store(&self) -> Option<String> {
        Some(self.conn.clone())
    }

    fn ask_feed(
        &self,
        hello: &crate::runner::ask_socket::Hello,
        tx: tokio::sync::mpsc::Sender<crate::execute::StoreAnswer>,
    ) -> Result<Box<dyn std::any::Any + Send>, crate::execute::FeedError> {
        super::ask::feed(&self.conn, hello, tx)
            .map(|f| Box::new(f) as Box<dyn std::any::Any + Send>)
            .map_err(|e| crate::execute::FeedError(e.message))
    }

    fn present(&self, step: &str) -> bool {
        self.cache
            .lock()
            .map(|c| c.rows.iter().any(|r| r.step == step))
            .unwrap_or(false)
    }

    fn take(&self, step: &str, seen: &mut HashSet<PathBuf>) -> (Vec<RemoteAnswer>, Vec<String>) {
        let Ok(mut c) = self.cache.lock() else {
            return (Vec::new(), Vec::new());
        };
        let (mine, rest): (Vec<Row>, Vec<Row>) =
            std::mem::take(&mut c.rows).into_iter().partition(|r| {
                r.step == step && !seen.contains(&PathBuf::from(format!("\0pg/{}", r.id)))
            });
        c.rows = rest;
        let ids: Vec<i64> = mine.iter().map(|r| r.id).collect();
        for id in &ids {
            c.taken.insert(*id);
            seen.insert(PathBuf::from(format!("\0pg/{id}")));
        }
        drop(c);
        if !ids.is_empty() {
            self.send(Cmd::Taken(ids));
        }
        (mine.into_iter().map(|r| r.answer).collect(), Vec::new())
    }

    fn subscribe(&self) -> Option<watch::Receiver<u64>> {
        Some(self.changed.clone())
    }

    fn waiting(&self, step: &str, needed: usize, other_approver: bool, approvers: &[String]) {
        self.send(Cmd::Waiting {
            step: step.to_string(),
            needed: i32::try_from(needed).unwrap_or(i32::MAX),
            other_approver,
            approvers: approvers.to_vec(),
        });
    }

    fn settled(&self, step: &str, decided: bool) {
        self.send(Cmd::Settled {
            step: step.to_string(),
            decided,
        });
    }
}

/// What `runbook approve|reject … --store` did.
pub(crate) struct Given {
    pub(crate) run_id: String,
    /// The authenticated role the answer carries.
    pub(crate) role: String,
    /// The gate's row when an engine waits there: (host, pid, operator role).
    pub(crate) waiting: Option<(String, i32, String)>,
    /// Whether the waiting engine took the answer within a few seconds.
    pub(crate) taken: bool,
}

/// `runbook approve|reject RUN GATE` through the store: `run` is a run id or a unique prefix of
/// one known to the store. The answer's author is stamped by the server.
pub(crate) fn give(
    conn: &str,
    run: &str,
    gate: &str,
    decision: Decision,
    comment: Option<&str>,
) -> Result<Given, SessionError> {
    let url = redact(conn);
    let rt = pg::runtime().map_err(|e| SessionError::store(e.to_string()))?;
    rt.block_on(async {
        let client = pg::connect(conn).await.map_err(|e| SessionError::store(e.to_string()))?;
        let q = |e: tokio_postgres::Error| SessionError::store(format!("store {url}: {}", describe(&e)));
        let like = format!(
            "{}%",
            run.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let ids: Vec<String> = client
            .query(
                "SELECT DISTINCT run_id FROM runbook_gate WHERE run_id LIKE $1 \
                 UNION SELECT run_id FROM runbook_run WHERE run_id LIKE $1 ORDER BY 1 LIMIT 6",
                &[&like],
            )
            .await
            .map_err(q)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let run_id = match ids.iter().find(|i| *i == run) {
            Some(exact) => exact.clone(),
            None => match ids.as_slice() {
                [one] => one.clone(),
                [] => return Err(SessionError::usage(format!("no run `{run}` in the store {url}"))),
                many => {
                    return Err(SessionError::usage(format!(
                        "`{run}` matches {} runs in the store ({}): type more of the id",
                        many.len(),
                        many.join(", ")
                    )));
                }
            },
        };
        let finished = client
            .query_opt("SELECT sealed FROM runbook_run WHERE run_id = $1", &[&run_id])
            .await
            .map_err(q)?
            .is_some_and(|r| r.get::<_, bool>(0));
        if finished {
            return Err(SessionError::usage(format!(
                "run {run_id} already finished: nothing waits for an answer (see `runbook show {run_id}`)"
            )));
        }
        let waiting = client
            .query_opt(
                "SELECT host, pid, operator FROM runbook_gate \
                 WHERE run_id = $1 AND step = $2 AND waiting",
                &[&run_id, &gate],
            )
            .await
            .map_err(q)?
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    r.get::<_, i32>(1),
                    r.get::<_, String>(2),
                )
            });
        let decision_s = if decision == Decision::Approved {
            "approved"
        } else {
            "rejected"
        };
        let row = client
            .query_one(
                "INSERT INTO runbook_answer (run_id, step, decision, comment, host) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id, role",
                &[
                    &run_id,
                    &gate,
                    &decision_s,
                    &comment,
                    &crate::sys::current_host(),
                ],
            )
            .await
            .map_err(q)?;
        let (id, role): (i64, String) = (row.get(0), row.get(1));
        let mut taken = false;
        if waiting.is_some() {
            // The engine deletes an answer it took: wait (a little) to see it go.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while tokio::time::Instant::now() < deadline {
                let left = client
                    .query_opt("SELECT 1 FROM runbook_answer WHERE id = $1", &[&id])
                    .await
                    .map_err(q)?;
                if left.is_none() {
                    taken = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(Given {
            run_id,
            role,
            waiting,
            taken,
        })
    })
}
