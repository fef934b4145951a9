//! A runbook's `lock` in the PostgreSQL store: held across machines.
//!
//! The lock itself is a **session advisory lock** (`pg_try_advisory_lock`) on a stable 64-bit
//! hash of the lock's name, held on a connection of its own for the whole run. It dies with the
//! engine's database session: a process killed with `kill -9`, or a machine that disappears
//! (TCP keepalives), frees it as soon as the server sees the connection end, with no lease to
//! expire and no clock to trust. A row of `runbook_lock` says who holds it (run, OS user,
//! role, host, pid, server backend), so a refused engine can name the holder; the row is
//! advice, the advisory lock is the truth.
//!
//! A run that stops resumable (paused at a gate) *keeps* its lock like the file store does: its
//! row stays with `kept = true` after its session ended, and another run is refused until the
//! run is resumed or the lock is abandoned with `runbook unlock KEY --force`. A row whose
//! session is gone and that was not kept is stale (its engine died): the next run takes it
//! over at once.

use std::sync::mpsc;
use std::time::Duration;

use sha2::Digest;
use tokio_postgres::Client;

use super::pg::{self, StoreError, describe};
use super::redact;
use crate::session::error::SessionError;

/// The advisory-lock key of lock `name`: the first 8 bytes of SHA-256 over a fixed prefix and
/// the name (stable across machines, versions and architectures).
pub(crate) fn key_of(name: &str) -> i64 {
    let d = sha2::Sha256::digest(format!("runbook lock\0{name}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    i64::from_be_bytes(b)
}

/// Who holds a lock, as its row says.
#[derive(Debug, Clone)]
pub(crate) struct Holder {
    pub(crate) key: String,
    pub(crate) run_id: String,
    pub(crate) os_user: String,
    pub(crate) role: String,
    pub(crate) host: String,
    pub(crate) pid: i32,
    pub(crate) started: String,
    pub(crate) kept: bool,
    /// The server process of the session holding the advisory lock, if one does.
    pub(crate) backend: Option<i32>,
    /// The server process that wrote the row (the row is current when it is `backend`).
    pub(crate) row_backend: i32,
}

impl Holder {
    fn describe(&self) -> String {
        format!(
            "run {} ({}@{}, role {}, pid {}, since {})",
            self.run_id, self.os_user, self.host, self.role, self.pid, self.started
        )
    }
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    /// Another engine holds it now (its database session is alive).
    #[error(
        "`{}` is locked by {}: its engine is running (database session {}): wait for it, or stop it on {}",
        .0.key, .0.describe(), .0.backend.map_or("?".to_string(), |b| b.to_string()), .0.host
    )]
    Live(Box<Holder>),
    /// A stopped, resumable run keeps it.
    #[error(
        "`{}` is kept by {}, stopped but resumable: continue it with `runbook resume {}`, or abandon it with `runbook unlock {} --force`",
        .0.key, .0.describe(), .0.run_id, .0.key
    )]
    Kept(Box<Holder>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A held lock. Released (row removed, session closed) on drop, unless [`PgLock::keep`] was
/// called: then the row stays, marked kept, for `runbook resume`.
#[derive(Debug)]
pub(crate) struct PgLock {
    release: Option<tokio::sync::oneshot::Sender<bool>>,
    keep: bool,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The holder this lock was taken over from (its engine's session had ended).
    pub(crate) took_over: Option<Holder>,
    lost: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl PgLock {
    /// Keeps the lock for `runbook resume` once this process ends.
    pub(crate) fn keep(&mut self) {
        self.keep = true;
    }

    /// Whether the lock's database session ended while held (the server restarted, the
    /// network failed): then the lock no longer protects the run.
    pub(crate) fn lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for PgLock {
    fn drop(&mut self) {
        if self.lost() {
            eprintln!(
                "warning: the store's session holding a runbook lock ended during the run: the lock did not protect it from then on"
            );
        }
        if let Some(tx) = self.release.take() {
            let _ = tx.send(self.keep);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Takes lock `name` for `run_id` (a run resumed takes over its own kept lock). Holds it on a
/// connection of its own, driven by a thread of its own, until the returned guard drops.
pub(crate) fn acquire(
    conn: &str,
    name: &str,
    run_id: &str,
    os_user: &str,
) -> Result<PgLock, LockError> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<Option<Holder>, LockError>>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<bool>();
    let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (conn_s, name_s, run_s, user_s, lost2) = (
        conn.to_string(),
        name.to_string(),
        run_id.to_string(),
        os_user.to_string(),
        lost.clone(),
    );
    let thread = std::thread::Builder::new()
        .name("runbook-lock".into())
        .spawn(move || {
            let rt = match pg::runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            rt.block_on(async move {
                let (client, mut notes) = match pg::connect_listening(&conn_s).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                let url = redact(&conn_s);
                match take(&client, &url, &name_s, &run_s, &user_s).await {
                    Ok(prev) => {
                        let _ = ready_tx.send(Ok(prev));
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                }
                // Held: until released, or until the session ends under us.
                let mut release_rx = release_rx;
                let keep = loop {
                    tokio::select! {
                        r = &mut release_rx => break r.unwrap_or(false),
                        n = notes.recv() => if n.is_none() {
                            lost2.store(true, std::sync::atomic::Ordering::SeqCst);
                            // The session (and the lock) is gone; wait for the release.
                            break (&mut release_rx).await.unwrap_or(false);
                        },
                    }
                };
                let _ = release(&client, &name_s, &run_s, keep).await;
            });
        })
        .map_err(|e| {
            LockError::Store(StoreError::Connect {
                url: redact(conn),
                msg: format!("cannot start the lock's thread: {e}"),
            })
        })?;
    let ready = ready_rx.recv_timeout(Duration::from_secs(60)).map_err(|_| {
        LockError::Store(StoreError::Connect {
            url: redact(conn),
            msg: "no answer from the store while taking the lock".into(),
        })
    });
    match ready {
        Ok(Ok(took_over)) => Ok(PgLock {
            release: Some(release_tx),
            keep: false,
            thread: Some(thread),
            took_over,
            lost,
        }),
        Ok(Err(e)) | Err(e) => {
            drop(release_tx);
            let _ = thread.join();
            Err(e)
        }
    }
}

const HOLDER_COLUMNS: &str = "key, run_id, os_user, role, host, pid, \
     to_char(started AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), kept, backend_pid";

fn holder_of(row: &tokio_postgres::Row, backend: Option<i32>) -> Holder {
    Holder {
        key: row.get(0),
        run_id: row.get(1),
        os_user: row.get(2),
        role: row.get(3),
        host: row.get(4),
        pid: row.get(5),
        started: row.get(6),
        kept: row.get(7),
        row_backend: row.get(8),
        backend,
    }
}

/// The server process holding advisory lock `k`, if any.
async fn lock_backend(client: &Client, k: i64) -> Result<Option<i32>, tokio_postgres::Error> {
    let (hi, lo) = ((k >> 32) & 0xffff_ffff, k & 0xffff_ffff);
    let row = client
        .query_opt(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1 LIMIT 1",
            &[&hi, &lo],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Who holds lock `name` now (row and live session), if anyone.
pub(crate) async fn holder(
    client: &Client,
    name: &str,
) -> Result<Option<Holder>, tokio_postgres::Error> {
    let backend = lock_backend(client, key_of(name)).await?;
    let row = client
        .query_opt(
            &format!("SELECT {HOLDER_COLUMNS} FROM runbook_lock WHERE key = $1"),
            &[&name],
        )
        .await?;
    Ok(match (row, backend) {
        (Some(r), b) => Some(holder_of(&r, b)),
        (None, Some(b)) => Some(Holder {
            key: name.to_string(),
            run_id: "?".into(),
            os_user: "?".into(),
            role: "?".into(),
            host: "?".into(),
            pid: 0,
            started: "?".into(),
            kept: false,
            backend: Some(b),
            row_backend: 0,
        }),
        (None, None) => None,
    })
}

async fn take(
    client: &Client,
    url: &str,
    name: &str,
    run_id: &str,
    os_user: &str,
) -> Result<Option<Holder>, LockError> {
    let q = |e: tokio_postgres::Error| {
        LockError::Store(StoreError::Query {
            url: url.to_string(),
            msg: describe(&e),
        })
    };
    let k = key_of(name);
    let got: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&k])
        .await
        .map_err(q)?
        .get(0);
    if !got {
        // The winner writes its row just after taking the lock: give it a moment, so the
        // refusal names it rather than a previous holder or nobody.
        let mut h = holder(client, name).await.map_err(q)?;
        for _ in 0..50 {
            if h.as_ref().is_some_and(|h| h.backend == Some(h.row_backend)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
            h = holder(client, name).await.map_err(q)?;
        }
        let h = h.unwrap_or_else(|| Holder {
            key: name.to_string(),
            run_id: "?".into(),
            os_user: "?".into(),
            role: "?".into(),
            host: "?".into(),
            pid: 0,
            started: "?".into(),
            kept: false,
            backend: None,
            row_backend: 0,
        });
        return Err(LockError::Live(Box::new(h)));
    }
    // We hold the advisory lock: nobody else can change the row under us (every writer of a
    // lock's row holds its advisory lock, except `unlock` of a row no session holds).
    let prev = client
        .query_opt(
            &format!("SELECT {HOLDER_COLUMNS} FROM runbook_lock WHERE key = $1"),
            &[&name],
        )
        .await
        .map_err(q)?
        .map(|r| holder_of(&r, None));
    if let Some(p) = prev.as_ref().filter(|p| p.kept && p.run_id != run_id) {
        let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&k]).await;
        return Err(LockError::Kept(Box::new(p.clone())));
    }
    client
        .execute(
            "INSERT INTO runbook_lock (key, run_id, os_user, host, pid) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (key) DO UPDATE SET run_id = EXCLUDED.run_id, os_user = EXCLUDED.os_user, \
             role = DEFAULT, host = EXCLUDED.host, pid = EXCLUDED.pid, backend_pid = DEFAULT, \
             started = DEFAULT, kept = false",
            &[
                &name,
                &run_id,
                &os_user,
                &crate::sys::current_host(),
                &(std::process::id() as i32),
            ],
        )
        .await
        .map_err(q)?;
    // A previous holder of another run whose session ended without keeping the lock: stale.
    Ok(prev.filter(|p| p.run_id != run_id))
}

async fn release(
    client: &Client,
    name: &str,
    run_id: &str,
    keep: bool,
) -> Result<(), tokio_postgres::Error> {
    if keep {
        client
            .execute(
                "UPDATE runbook_lock SET kept = true WHERE key = $1 AND run_id = $2",
                &[&name, &run_id],
            )
            .await?;
    } else {
        client
            .execute(
                "DELETE FROM runbook_lock WHERE key = $1 AND run_id = $2",
                &[&name, &run_id],
            )
            .await?;
    }
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&key_of(name)])
        .await?;
    Ok(())
}

/// `runbook unlock KEY` on the store: refuses while an engine's session holds the lock; a
/// kept lock (a resumable run) needs `force`; a stale row is removed. Returns the holder.
pub(crate) fn break_lock(conn: &str, name: &str, force: bool) -> Result<Holder, SessionError> {
    let url = redact(conn);
    let rt = pg::runtime().map_err(|e| SessionError::store(e.to_string()))?;
    rt.block_on(async {
        let client = pg::connect(conn).await.map_err(|e| SessionError::store(e.to_string()))?;
        let q = |e: tokio_postgres::Error| SessionError::store(format!("store {url}: {}", describe(&e)));
        let k = key_of(name);
        // Holding the advisory lock while deleting: no engine can take it in between.
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&k])
            .await
            .map_err(q)?
            .get(0);
        if !got {
            let h = holder(&client, name).await.map_err(q)?;
            return Err(SessionError::refused(match h {
                Some(h) => format!(
                    "{} holds `{name}` and its engine is running (database session {}); it cannot be unlocked while that session is alive",
                    h.describe(),
                    h.backend.map_or("?".into(), |b| b.to_string())
                ),
                None => format!("`{name}` is held by a live session"),
            }));
        }
        let row = client
            .query_opt(
                &format!("SELECT {HOLDER_COLUMNS} FROM runbook_lock WHERE key = $1"),
                &[&name],
            )
            .await
            .map_err(q)?;
        let result = match row.map(|r| holder_of(&r, None)) {
            None => Err(SessionError::usage(format!("no lock named `{name}` in the store {url}"))),
            Some(h) if h.kept && !force => Err(SessionError::refused(format!(
                "run {} keeps `{name}` and can be resumed (`runbook resume {}`); pass --force to abandon it",
                h.run_id, h.run_id
            ))),
            Some(h) => client
                .execute("DELETE FROM runbook_lock WHERE key = $1", &[&name])
                .await
                .map(|_| h)
                .map_err(q),
        };
        let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&k]).await;
        result
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_key_is_stable() {
        // Fixed forever: engines of different versions and machines must agree on it
        // (computed independently: the first 8 bytes, big-endian, of
        // sha256("runbook lock\0vault-vault-2")).
        assert_eq!(super::key_of("vault-vault-2"), -7_079_886_876_369_542_869);
        assert_ne!(super::key_of("a"), super::key_of("b"));
    }
}
