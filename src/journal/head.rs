//! The head file's first write, and what an empty head may stand for.
//!
//! The engine writes the head of a journal whose head file is empty (a new run, or one resumed
//! with `--ignore-damaged-head`) when it opens the journal, fsynced, before any record: so a
//! full disk stops the run before it records anything (the head's blocks are taken first),
//! and a power loss cannot leave an empty head behind records. An empty head can then only be
//! left by an engine killed between creating the file and that first write — before any
//! record — or by an engine of an earlier version killed between its first record (the run's
//! start) and its first head write. Anything more behind an empty head is a head emptied by
//! hand (which would hide a removed tail): refused like a damaged head.

use std::path::Path;

use super::{Event, HEAD_WIDTH, Head, JOURNAL_VERSION, Journal, Record};

/// The head as its fixed-width line (rewritten in place with one `pwrite`).
pub(super) fn head_line(head: &Head) -> String {
    let mut text = serde_json::to_string(head).unwrap_or_default();
    while text.len() < HEAD_WIDTH - 1 {
        text.push(' ');
    }
    text.push('\n');
    text
}

impl Journal {
    /// Writes the head now if its file is empty, and makes it durable (the file and the run
    /// directory's entry for it). Fails when it cannot: the run must not record work that
    /// no head vouches for.
    pub(super) fn first_head(&mut self, run_dir: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let Some(h) = &self.head else {
            return Err(std::io::Error::other(format!(
                "cannot open {}",
                run_dir.join(super::HEAD_FILE).display()
            )));
        };
        if h.metadata()?.len() > 0 {
            return Ok(());
        }
        let head = Head {
            v: JOURNAL_VERSION,
            count: self.seq,
            last: self.prev.clone(),
            durable: self.durable,
            sealed: false,
        };
        h.write_all_at(head_line(&head).as_bytes(), 0)?;
        h.sync_all()?;
        // The directory entry too (best effort: some file systems refuse to sync a directory).
        if let Ok(d) = std::fs::File::open(run_dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// Whether an empty head file can be the trace of an engine killed before its first head
/// write: the journal holds nothing beyond the run's start (and a repair warning), so no step,
/// gate answer or rollback can be hidden behind it.
pub(crate) fn empty_head_excusable(records: &[Record]) -> bool {
    records.iter().all(|r| {
        matches!(
            r.stamped.event,
            Event::RunStarted { .. } | Event::Warning { .. }
        )
    }) && records
        .iter()
        .filter(|r| matches!(r.stamped.event, Event::RunStarted { .. }))
        .count()
        <= 1
}
