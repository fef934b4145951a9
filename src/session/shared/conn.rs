//! One connection to the PostgreSQL store, driven by a thread of its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, mpsc};

use tokio_postgres::Client;

use super::pg;
use super::redact;
use crate::session::error::SessionError;

type Job = Box<dyn FnOnce(Arc<Client>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// One connection to the store, driven by its own thread (its own runtime), so it is usable
/// from synchronous code and from inside the engine's runtime alike. Calls are serialised.
pub(crate) struct PgConn {
    tx: mpsc::Sender<Job>,
    /// The connection string, password masked.
    url: String,
}

impl PgConn {
    /// Connects to `conn` (10 s timeout unless the string sets one).
    pub(crate) fn connect(conn: &str) -> Result<Arc<PgConn>, SessionError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let conn_s = conn.to_string();
        let spawned = std::thread::Builder::new()
            .name("runbook-store".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start a runtime: {e}")));
                        return;
                    }
                };
                let client = match rt.block_on(pg::connect(&conn_s)) {
                    Ok(c) => Arc::new(c),
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                while let Ok(job) = rx.recv() {
                    rt.block_on(job(client.clone()));
                }
            });
        if let Err(e) = spawned {
            return Err(SessionError::store(format!(
                "cannot start the store's connection thread: {e}"
            )));
        }
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Arc::new(PgConn {
                tx,
                url: redact(conn),
            })),
            Ok(Err(e)) => Err(SessionError::store(e)),
            Err(_) => Err(SessionError::store(format!(
                "cannot connect to the store {}",
                redact(conn)
            ))),
        }
    }

    /// Runs `f` on the connection and waits for its result.
    pub(crate) fn call<T, F, Fut>(&self, f: F) -> Result<T, SessionError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Client>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + 'static,
    {
        let (rtx, rrx) = mpsc::channel();
        let job: Job = Box::new(move |c| {
            Box::pin(async move {
                let r = f(c).await;
                let _ = rtx.send(r.map_err(|e| pg::describe(&e)));
            })
        });
        let gone = || SessionError::store(format!("store {}: the connection is gone", self.url));
        self.tx.send(job).map_err(|_| gone())?;
        rrx.recv()
            .map_err(|_| gone())?
            .map_err(|m| SessionError::store(format!("store {}: {m}", self.url)))
    }

    /// Queues `f` on the connection without waiting: its failure is written to `failed`
    /// (calls run in order, so a later [`PgConn::call`] returns after it).
    pub(super) fn send<F, Fut>(
        &self,
        f: F,
        failed: Arc<std::sync::Mutex<Option<String>>>,
    ) -> Result<(), SessionError>
    where
        F: FnOnce(Arc<Client>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + 'static,
    {
        let url = self.url.clone();
        let job: Job = Box::new(move |c| {
            Box::pin(async move {
                if let Err(e) = f(c).await
                    && let Ok(mut slot) = failed.lock()
                    && slot.is_none()
                {
                    *slot = Some(if e.starts_with("store ") {
                        e
                    } else {
                        format!("store {url}: {e}")
                    });
                }
            })
        });
        self.tx
            .send(job)
            .map_err(|_| SessionError::store(format!("store {}: the connection is gone", self.url)))
    }

    /// The connection string, password masked.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}
