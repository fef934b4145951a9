//! `ask:` answered from any machine through the PostgreSQL store (issue 17).
//!
//! The waiting engine publishes what it asks as a row of `runbook_ask` (the prompt, type,
//! pattern, how many answers: never a value). `runbook answer RUN STEP --store …` inserts the
//! value into `runbook_ask_reply`; a trigger stamps the row with the **authenticated role**
//! (`session_user`) and NOTIFYs channel `runbook_ask` with the row's id only (a payload
//! reaches every listener, so it never carries the value). The engine takes the row with
//! `DELETE … RETURNING` (read and removed in one statement, so it is taken once) and writes
//! the verdict (no value) to `runbook_ask_verdict`, which the answerer reads and deletes. A
//! value therefore exists in a table only between the answerer's commit and the engine's next
//! read (a notification, or at most [`POLL`]); an answer nobody takes is deleted by the
//! answerer when it gives up and by the engine when it stops asking. See docs/store.md.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::pg::{self, describe};
use super::redact;
use crate::execute::StoreAnswer;
use crate::runner::ask_socket::{Hello, Verdict};
use crate::session::error::SessionError;

/// The NOTIFY channel of new answers (payload: the answer row's id).
pub(crate) const CHANNEL: &str = "runbook_ask";

/// How often the engine reads anyway (a lost notification delays an answer, never loses it).
const POLL: Duration = Duration::from_millis(500);

/// How long `runbook answer` waits for the engine's verdict before taking its answer back.
const VERDICT_WAIT: Duration = Duration::from_secs(60);

/// The engine's side while one `ask:` step waits; dropping it withdraws the ask (its row and
/// any answer not taken are deleted).
pub(crate) struct AskFeed {
    stop: Option<oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl Drop for AskFeed {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.done.recv_timeout(Duration::from_secs(3));
    }
}

/// Publishes `hello` for `run_id`/`step` in the store `conn` and passes every answer given
/// there to `tx`. Fails when the store cannot be reached now.
pub(crate) fn feed(
    conn: &str,
    hello: &Hello,
    tx: mpsc::Sender<StoreAnswer>,
) -> Result<AskFeed, SessionError> {
    let hello_json =
        serde_json::to_string(hello).map_err(|e| SessionError::store(e.to_string()))?;
    let (conn, run, step) = (conn.to_string(), hello.run.clone(), hello.step.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (done_tx, done) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("runbook-ask".into())
        .spawn(move || {
            match pg::runtime() {
                Ok(rt) => rt.block_on(serve(conn, run, step, hello_json, tx, stop_rx, ready_tx)),
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                }
            }
            let _ = done_tx.send(());
        })
        .map_err(|e| SessionError::io(format!("cannot start the ask thread: {e}")))?;
    ready_rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| SessionError::store("no answer from the store"))?
        .map_err(SessionError::store)?;
    Ok(AskFeed {
        stop: Some(stop_tx),
        done,
    })
}

/// The engine's side of one ask in the store: publishes it, passes every answer to `tx` and
/// writes the verdict back until `stop`, then withdraws it.
async fn serve(
    conn: String,
    run: String,
    step: String,
    hello: String,
    tx: mpsc::Sender<StoreAnswer>,
    mut stop: oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let (client, mut notes) = match publish(&conn, &run, &step, &hello).await {
        Ok(s) => {
            let _ = ready.send(Ok(()));
            s
        }
        Err(e) => {
            let _ = ready.send(Err(format!("store {}: {e}", redact(&conn))));
            return;
        }
    };
    let ask = Published {
        client: &client,
        run: &run,
        step: &step,
        hello: &hello,
    };
    let mut have: u32 = 0;
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            n = notes.recv() => if n.is_none() { break },
            _ = tick.tick() => {}
        }
        take_replies(&ask, &tx, &mut have).await;
    }
    withdraw(&ask).await;
}

/// Connects (listening for new answers) and publishes the ask's row.
async fn publish(
    conn: &str,
    run: &str,
    step: &str,
    hello: &str,
) -> Result<
    (
        tokio_postgres::Client,
        tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::Notification>,
    ),
    String,
> {
    let (client, notes) = pg::connect_listening(conn)
        .await
        .map_err(|e| e.to_string())?;
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(|e| describe(&e))?;
    client
        .execute(
            "INSERT INTO runbook_ask (run_id, step, hello) VALUES ($1, $2, $3)
             ON CONFLICT (run_id, step) DO UPDATE SET hello = EXCLUDED.hello,
               operator = session_user, asked_at = now()",
            &[&run, &step, &hello],
        )
        .await
        .map_err(|e| describe(&e))?;
    Ok((client, notes))
}

/// An ask published in the store.
struct Published<'a> {
    client: &'a tokio_postgres::Client,
    run: &'a str,
    step: &'a str,
    /// The ask's row as published (JSON of a [`Hello`]).
    hello: &'a str,
}

/// Takes the answers given so far (each read and removed in one statement), hands each to
/// the engine through `tx` and writes its verdict; `have` counts the answers accepted.
async fn take_replies(ask: &Published<'_>, tx: &mpsc::Sender<StoreAnswer>, have: &mut u32) {
    let (client, run, step) = (ask.client, ask.run, ask.step);
    // Read and remove in one statement: the value leaves the table as it is read.
    let rows = match client
        .query(
            "DELETE FROM runbook_ask_reply WHERE run_id = $1 AND step = $2
             RETURNING id, role, value",
            &[&run, &step],
        )
        .await
    {
        Ok(r) => r,
        Err(_) => return,
    };
    for r in rows {
        let id: i64 = r.get(0);
        let (vtx, vrx) = oneshot::channel();
        let answer = StoreAnswer {
            role: r.get(1),
            value: r.get(2),
            verdict: vtx,
        };
        let verdict = if tx.send(answer).await.is_err() {
            Verdict {
                ok: false,
                message: "the run stopped asking before taking the answer".into(),
            }
        } else {
            vrx.await.unwrap_or(Verdict {
                ok: false,
                message: "the run stopped asking before taking the answer".into(),
            })
        };
        if verdict.ok {
            *have += 1;
            if let Ok(mut h) = serde_json::from_str::<Hello>(ask.hello) {
                h.have = *have;
                if let Ok(j) = serde_json::to_string(&h) {
                    let _ = client
                        .execute(
                            "UPDATE runbook_ask SET hello = $3 WHERE run_id = $1 AND step = $2",
                            &[&run, &step, &j],
                        )
                        .await;
                }
            }
        }
        let _ = client
            .execute(
                "INSERT INTO runbook_ask_verdict (id, ok, message) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING",
                &[&id, &verdict.ok, &verdict.message],
            )
            .await;
    }
}

/// Withdraws the ask: its row, and any answer that came too late (refused, never kept).
async fn withdraw(ask: &Published<'_>) {
    let (client, run, step) = (ask.client, ask.run, ask.step);
    if let Ok(rows) = client
        .query(
            "DELETE FROM runbook_ask_reply WHERE run_id = $1 AND step = $2 RETURNING id",
            &[&run, &step],
        )
        .await
    {
        for r in rows {
            let id: i64 = r.get(0);
            let _ = client
                .execute(
                    "INSERT INTO runbook_ask_verdict (id, ok, message) VALUES ($1, false,
                     'the run stopped asking before taking the answer') ON CONFLICT (id) DO NOTHING",
                    &[&id],
                )
                .await;
        }
    }
    let _ = client
        .execute(
            "DELETE FROM runbook_ask WHERE run_id = $1 AND step = $2",
            &[&run, &step],
        )
        .await;
}

/// What the engine of `run_id` asks at `step`, from the store; `Err` when no engine waits there.
pub(crate) fn hello(conn: &str, run_id: &str, step: &str) -> Result<Hello, SessionError> {
    let rt = pg::runtime().map_err(|e| SessionError::store(e.to_string()))?;
    rt.block_on(async {
        let client = pg::connect(conn)
            .await
            .map_err(|e| SessionError::store(e.to_string()))?;
        let row = client
            .query_opt(
                "SELECT hello FROM runbook_ask WHERE run_id = $1 AND step = $2",
                &[&run_id, &step],
            )
            .await
            .map_err(|e| {
                SessionError::store(format!("store {}: {}", redact(conn), describe(&e)))
            })?;
        let Some(row) = row else {
            return Err(SessionError::usage(format!(
                "no engine of run {run_id} is waiting at an `ask:` step `{step}` in the store"
            )));
        };
        let text: String = row.get(0);
        serde_json::from_str(&text)
            .map_err(|e| SessionError::store(format!("the store's ask is unreadable: {e}")))
    })
}

/// Gives `value` to the engine waiting at `step` of `run_id` and waits for its verdict. An
/// answer not taken within [`VERDICT_WAIT`] is deleted again.
pub(crate) fn send(
    conn: &str,
    run_id: &str,
    step: &str,
    value: &str,
) -> Result<Verdict, SessionError> {
    let rt = pg::runtime().map_err(|e| SessionError::store(e.to_string()))?;
    let q = |e: tokio_postgres::Error| {
        SessionError::store(format!("store {}: {}", redact(conn), describe(&e)))
    };
    rt.block_on(async {
        let client = pg::connect(conn).await.map_err(|e| SessionError::store(e.to_string()))?;
        let id: i64 = client
            .query_one(
                "INSERT INTO runbook_ask_reply (run_id, step, value) VALUES ($1, $2, $3) RETURNING id",
                &[&run_id, &step, &value],
            )
            .await
            .map_err(q)?
            .get(0);
        let until = Instant::now() + VERDICT_WAIT;
        loop {
            let v = client
                .query_opt(
                    "DELETE FROM runbook_ask_verdict WHERE id = $1 RETURNING ok, message",
                    &[&id],
                )
                .await
                .map_err(q)?;
            if let Some(v) = v {
                return Ok(Verdict {
                    ok: v.get(0),
                    message: v.get(1),
                });
            }
            if Instant::now() >= until {
                let gone = client
                    .execute("DELETE FROM runbook_ask_reply WHERE id = $1", &[&id])
                    .await
                    .map_err(q)?;
                if gone == 1 {
                    return Err(SessionError::refused(format!(
                        "the engine of run {run_id} did not take the answer within {} s: it was taken back",
                        VERDICT_WAIT.as_secs()
                    )));
                }
                // Taken meanwhile: its verdict follows.
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}
