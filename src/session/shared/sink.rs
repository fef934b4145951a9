//! A run's records on their way to the database: the journal's [`RecordSink`] for the
//! PostgreSQL store.

use std::sync::Arc;

use tokio_postgres::Client;

use super::conn::PgConn;
use crate::journal::{RecordSink, SinkError};

/// A run's records on their way to the database.
pub(super) struct PgSink {
    pub(super) conn: Arc<PgConn>,
    pub(super) run_id: String,
    /// The first failure of a record sent without waiting.
    pub(super) failed: Arc<std::sync::Mutex<Option<String>>>,
}

/// Adds record `seq` where the head says the journal ends, moving the head with it (one
/// autocommitted statement); whether it was added.
async fn append_row(
    c: Arc<Client>,
    (id, seq, line, hash, sealed): (String, i64, String, String, bool),
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "WITH up AS (
                 UPDATE runbook_run
                    SET head_count = $2 + 1, head_last = $4, sealed = $5, updated_at = now()
                  WHERE run_id = $1 AND head_count = $2
                  RETURNING run_id)
             INSERT INTO runbook_record (run_id, seq, line) SELECT run_id, $2, $3 FROM up",
            &[&id, &seq, &line, &hash, &sealed],
        )
        .await?;
    Ok(n == 1)
}

impl PgSink {
    fn moved_on(&self, seq: i64) -> String {
        format!(
            "store {}: run {} has records the engine did not write (another engine continues it?): not writing record {}",
            self.conn.url(),
            self.run_id,
            seq + 1
        )
    }

    fn earlier_failure(&self) -> Option<String> {
        self.failed.lock().ok().and_then(|f| f.clone())
    }
}

impl RecordSink for PgSink {
    fn append(
        &mut self,
        seq: u64,
        line: &str,
        hash: &str,
        durable: bool,
        sealed: bool,
    ) -> Result<(), SinkError> {
        if let Some(e) = self.earlier_failure() {
            return Err(SinkError(e));
        }
        let seq = i64::try_from(seq).map_err(|e| SinkError(e.to_string()))?;
        let row = (
            self.run_id.clone(),
            seq,
            line.to_string(),
            hash.to_string(),
            sealed,
        );
        if durable || sealed {
            // Announces work (or ends the run): committed before the engine goes on. Calls run
            // in order, so every record sent before is committed (or failed) by now.
            let added = self
                .conn
                .call(move |c| append_row(c, row))
                .map_err(|e| SinkError(e.message))?;
            if let Some(e) = self.earlier_failure() {
                return Err(SinkError(e));
            }
            return if added {
                Ok(())
            } else {
                Err(SinkError(self.moved_on(seq)))
            };
        }
        // Like the file journal's unsynced records: on its way at once, confirmed by the
        // next announcing record (a failure stops the run there).
        let moved_on = self.moved_on(seq);
        self.conn
            .send(
                move |c| async move {
                    match append_row(c, row).await {
                        Ok(true) => Ok(()),
                        Ok(false) => Err(moved_on),
                        Err(e) => Err(super::pg::describe(&e)),
                    }
                },
                self.failed.clone(),
            )
            .map_err(|e| SinkError(e.message))
    }
}
