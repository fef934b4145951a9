//! The durable run journal: one append-only JSONL file per run, each record chained to the
//! previous one by its SHA-256 (tamper-evident), written 0600.
//!
//! Rules that must stay true:
//! - A record announcing work (run start, step start, gate answer, rollback start) is written
//!   *and fsynced* before the work starts: `resume` depends on it. (The engine emits
//!   synchronously, and stops if the journal fails, before starting anything else.)
//! - Output lines are not journaled (the per-step logs under `steps/` hold them); results are,
//!   bounded, so `resume` can restore what templates read.
//! - Record format version 1 (field `v`); fields may be added, never renamed. See
//!   `docs/journal.md`.

pub(crate) mod answers;
mod bound;
mod copy;
mod head;
pub(crate) mod live;
pub(crate) mod lock;
mod read;
pub(crate) mod state;
mod writer;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::event::Stamped;

#[cfg(test)]
pub(crate) use copy::write_copy;
pub(crate) use copy::{verified_head, write_lines};
pub(crate) use read::{JournalError, check_chain, lines, load, missing_tail, read};
pub(crate) use writer::{Journal, RecordSink, SinkError};

/// Version of the record format.
pub(crate) const JOURNAL_VERSION: u32 = 1;
/// `prev` of the first record.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where one run's files are. Only `session::store::RunDir` builds it: the run-directory
/// layout (file names included) is known there alone; the journal, its readers, the engine's
/// liveness and the answers drop box are given their files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunFiles {
    /// The run directory.
    pub dir: PathBuf,
    /// The run's id (the directory's name).
    pub id: String,
    /// The journal (JSONL records).
    pub journal: PathBuf,
    /// The head file beside the journal: the count and last hash, rewritten after every
    /// record and fsynced when the run's end is sealed. It makes a missing tail evident.
    pub head: PathBuf,
    /// The engine's liveness lock (see [`live`]).
    pub engine_lock: PathBuf,
    /// The engine live on another machine, as a shared store last saw it.
    pub engine_remote: PathBuf,
    /// The drop box of answers given with `runbook approve` (see [`answers`]).
    pub answers: PathBuf,
}

/// A file's name as shown in messages (`journal.head`).
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One line of the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub v: u32,
    pub seq: u64,
    /// SHA-256 (hex) of the previous line's bytes.
    pub prev: String,
    #[serde(flatten)]
    pub stamped: Stamped,
}

pub(crate) use crate::fmt::sha256_hex;

/// Fixed width of the head record (padded), so it is rewritten in place with one `pwrite`.
pub(super) const HEAD_WIDTH: usize = 256;

/// What `journal.head` says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Head {
    pub v: u32,
    /// Records written.
    pub count: u64,
    /// SHA-256 of the last record's line.
    pub last: String,
    /// Records known to be on disk (fsynced): a journal with fewer was truncated, not merely
    /// caught by a power loss.
    pub durable: u64,
    /// The run's end was written (a `run-finished` record) and the head fsynced.
    pub sealed: bool,
}

/// The complete, chained records of a journal's bytes, and where the complete part ends. A
/// torn tail (bytes after the last newline: a write cut by a crash or a full disk) is not a
/// record: it was never written.
///
/// Zero bytes at the end are space the engine reserved and had not used yet (the journal is
/// preallocated, see `writer::RESERVE`): they are neither records nor a torn tail.
pub(super) fn complete_part(bytes: &[u8]) -> (&[u8], usize) {
    let used = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let bytes = &bytes[..used];
    match bytes.iter().rposition(|b| *b == b'\n') {
        Some(i) => (&bytes[..=i], bytes.len() - i - 1),
        None => (&bytes[..0], bytes.len()),
    }
}

pub(super) fn open_nofollow(path: &Path, append: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .append(append)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

pub(super) fn read_file_nofollow(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let mut b = Vec::new();
    f.read_to_end(&mut b)?;
    Ok(b)
}
