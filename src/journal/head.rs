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

use super::{HEAD_WIDTH, Head, Record};
use crate::event::Event;

/// The head as its fixed-width line (rewritten in place with one `pwrite`).
pub(super) fn head_line(head: &Head) -> String {
    let mut text = serde_json::to_string(head).unwrap_or_default();
    while text.len() < HEAD_WIDTH - 1 {
        text.push(' ');
    }
    text.push('\n');
    text
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
