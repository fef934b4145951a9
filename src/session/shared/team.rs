//! The PostgreSQL store's coordination behind the [`crate::session::store::Store`] trait:
//! runbook locks ([`super::lock`]) and gate answers ([`super::approvals`]) in the shapes the
//! trait uses for the file store, so front ends treat both stores alike.

use std::sync::Arc;

use crate::journal::lock::{Holder, HolderState, LockError};
use crate::session::error::SessionError;
use crate::session::store::RunLock;

impl RunLock for super::lock::PgLock {
    fn keep(&mut self) {
        super::lock::PgLock::keep(self);
    }

    fn lost(&self) -> bool {
        super::lock::PgLock::lost(self)
    }
}

fn file_holder(h: &super::lock::Holder) -> Holder {
    Holder {
        key: h.key.clone(),
        run_id: h.run_id.clone(),
        user: format!("{} (role {})", h.os_user, h.role),
        host: h.host.clone(),
        pid: u32::try_from(h.pid).unwrap_or(0),
        started: h.started.clone(),
    }
}

/// Takes runbook lock `key` in the store `conn` for `run_id`: a session advisory lock that
/// dies with this engine's database session. A held lock is `LockError::Held` (state `Live`
/// when an engine's session holds it, `Resumable` when a stopped run keeps it).
pub(crate) fn lock(
    conn: &str,
    key: &str,
    run_id: &str,
    user: &str,
) -> Result<Box<dyn RunLock>, LockError> {
    use super::lock::LockError as E;
    match super::lock::acquire(conn, key, run_id, user) {
        Ok(l) => {
            if let Some(h) = &l.took_over {
                eprintln!(
                    "note: lock `{key}` was left by run {} ({}@{}), whose engine's database session has ended: taken over",
                    h.run_id, h.os_user, h.host
                );
            }
            Ok(Box::new(l))
        }
        Err(E::Live(h)) => Err(LockError::Held(
            Box::new(file_holder(&h)),
            HolderState::Live,
        )),
        Err(E::Kept(h)) => Err(LockError::Held(
            Box::new(file_holder(&h)),
            HolderState::Resumable,
        )),
        Err(E::Store(e)) => Err(LockError::Io(
            "in the store".into(),
            std::io::Error::other(e.to_string()),
        )),
    }
}

/// `runbook unlock KEY` in the store `conn`.
pub(crate) fn unlock(conn: &str, key: &str, force: bool) -> Result<Holder, SessionError> {
    super::lock::break_lock(conn, key, force).map(|h| file_holder(&h))
}

/// Where the engine of `run_id` reads answers given through the store `conn`, and the
/// engine's authenticated role (the operator's identity for the gates' rules).
pub(crate) fn answers(
    conn: &str,
    run_id: &str,
) -> Result<(Arc<dyn crate::execute::AnswerSource>, String), SessionError> {
    let a = super::approvals::PgAnswers::start(conn, run_id)?;
    let role = a.role.clone();
    Ok((Arc::new(a), role))
}
