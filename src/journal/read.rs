//! Reading a journal back: its records with the chain verified, its head, and what is
//! missing at its end.

use super::{
    GENESIS, Head, JOURNAL_VERSION, Record, RunFiles, complete_part, file_name, read_file_nofollow,
    sha256_hex,
};
use crate::event::Event;

/// A problem reading or verifying a journal.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JournalError {
    #[error("cannot read {0}: {1}")]
    Io(String, std::io::Error),
    #[error("{path}:{line}: not a journal record: {why}")]
    Parse {
        path: String,
        line: usize,
        why: String,
    },
    #[error("{path}:{line}: the hash chain is broken: {}", chain_culprit(*.line))]
    Chain { path: String, line: usize },
    /// Record `record` of lines given (an export, a store's rows) is not a record.
    #[error("record {record}: not a journal record: {why}")]
    Record { record: usize, why: String },
    /// The chain of lines given breaks at record `record`.
    #[error("record {record}: the hash chain is broken: {}", chain_culprit(*.record))]
    RecordChain { record: usize },
    #[error("cannot write {0}: {1}")]
    Write(String, std::io::Error),
    /// A value could not be encoded (JSON).
    #[error("{0}")]
    Encode(String),
    /// A run without the drop box for answers.
    #[error("{0} has no answers directory: is the run id right, and is it waiting at a gate?")]
    NoAnswers(String),
    /// A write whose failure is reported as the system's message alone.
    #[error("{0}")]
    System(std::io::Error),
}

impl JournalError {
    /// Whether the journal cannot be trusted (not records, a broken chain), rather than a file
    /// that could not be read or written.
    pub(crate) fn damaged(&self) -> bool {
        matches!(
            self,
            JournalError::Parse { .. }
                | JournalError::Chain { .. }
                | JournalError::Record { .. }
                | JournalError::RecordChain { .. }
        )
    }
}

/// Which record the break at `line` points to. Record `line` holds the hash of record
/// `line - 1`: a mismatch most often means record `line - 1` was edited (or one was removed or
/// inserted between the two); for the first record, that it was edited or replaced.
fn chain_culprit(line: usize) -> String {
    if line <= 1 {
        "record 1 was edited or replaced".to_string()
    } else {
        format!(
            "record {} was edited (or record {line}'s link to it, or a record was removed or inserted between them)",
            line - 1
        )
    }
}

/// A journal as read back: its complete chained records, the size of a torn tail (bytes of
/// a record whose write was cut), and its head file.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub records: Vec<Record>,
    /// SHA-256 of each record's line.
    pub hashes: Vec<String>,
    pub torn: usize,
    pub head: Option<Head>,
    /// Why the head file cannot vouch for the journal's length (missing, unreadable, not a
    /// head, inconsistent): then a removed tail cannot be ruled out.
    pub head_problem: Option<String>,
}

/// How an empty head reads: created, but never written (the engine was killed before its first
/// head write): `resume` accepts it only before any work was recorded (see `head.rs`),
/// `--verify` never.
const NEVER_WRITTEN: &str = "the head file was never written: a removed tail cannot be ruled out";

/// Reads `journal.head`: the head, or why it cannot be used.
fn read_head(files: &RunFiles) -> Result<Head, String> {
    let name = file_name(&files.head);
    let bytes = match read_file_nofollow(&files.head) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "the head file {name} is missing: a removed tail cannot be ruled out"
            ));
        }
        Err(e) => return Err(format!("the head file {name} cannot be read ({e})")),
    };
    if bytes.trim_ascii().is_empty() {
        return Err(format!("{NEVER_WRITTEN} ({name} is empty)"));
    }
    let head: Head = serde_json::from_slice(bytes.trim_ascii())
        .map_err(|_| format!("the head file {name} is not a head record (damaged)"))?;
    let hex = head.last.len() == 64 && head.last.bytes().all(|b| b.is_ascii_hexdigit());
    if head.v != JOURNAL_VERSION || head.durable > head.count || (head.count > 0 && !hex) {
        return Err(format!(
            "the head file {name} is inconsistent (count {}, durable {}): damaged",
            head.count, head.durable
        ));
    }
    Ok(head)
}

/// Reads every complete record of a journal, verifying the chain. A torn tail is not a
/// record (it is reported in `torn`); a broken chain or a bad complete line is an error.
pub(crate) fn load(files: &RunFiles) -> Result<Loaded, JournalError> {
    let path = &files.journal;
    let name = path.display().to_string();
    let bytes = read_file_nofollow(path).map_err(|e| JournalError::Io(name.clone(), e))?;
    let (complete, torn) = complete_part(&bytes);
    let mut prev = GENESIS.to_string();
    let mut out = Vec::new();
    let mut hashes = Vec::new();
    for (i, line) in complete
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let rec: Record = serde_json::from_slice(line).map_err(|e| JournalError::Parse {
            path: name.clone(),
            line: i + 1,
            why: e.to_string(),
        })?;
        if rec.prev != prev || rec.seq != i as u64 {
            return Err(JournalError::Chain {
                path: name,
                line: i + 1,
            });
        }
        prev = sha256_hex(line);
        hashes.push(prev.clone());
        out.push(rec);
    }
    let (head, head_problem) = match read_head(files) {
        Ok(h) => (Some(h), None),
        Err(why) => (None, Some(why)),
    };
    Ok(Loaded {
        records: out,
        hashes,
        torn,
        head,
        head_problem,
    })
}

/// Checks that `lines` are records chained from the genesis; the hash of the last one.
pub(crate) fn check_chain(lines: &[String]) -> Result<String, JournalError> {
    let mut prev = GENESIS.to_string();
    for (i, line) in lines.iter().enumerate() {
        let rec: Record = serde_json::from_str(line).map_err(|e| JournalError::Record {
            record: i + 1,
            why: e.to_string(),
        })?;
        if rec.prev != prev || rec.seq != i as u64 {
            return Err(JournalError::RecordChain { record: i + 1 });
        }
        prev = sha256_hex(line.as_bytes());
    }
    Ok(prev)
}

/// The lines of a journal file (complete records, chain verified) and whether its head says
/// sealed: what an export or an import copies.
pub(crate) fn lines(files: &RunFiles) -> Result<(Vec<String>, bool), JournalError> {
    let loaded = load(files)?;
    let bytes = read_file_nofollow(&files.journal)
        .map_err(|e| JournalError::Io(files.dir.display().to_string(), e))?;
    let (complete, _) = complete_part(&bytes);
    let lines = complete
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    let sealed = loaded.head.is_some_and(|h| h.sealed)
        || loaded
            .records
            .last()
            .is_some_and(|l| matches!(l.stamped.event, Event::RunFinished { .. }));
    Ok((lines, sealed))
}

/// Reads every complete record of a journal, verifying the chain (a torn tail is ignored: it
/// was never written).
pub(crate) fn read(files: &RunFiles) -> Result<Vec<Record>, JournalError> {
    load(files).map(|l| l.records)
}

/// What `transcript --verify` found missing at the journal's end, if anything: records the
/// head file counts but the journal no longer has, or a head whose last hash differs.
/// `strict` = false only counts records that were fsynced (a power loss can lose the others).
pub(crate) fn missing_tail(l: &Loaded, strict: bool) -> Option<String> {
    if let Some(why) = &l.head_problem
        && (strict
            || !why.starts_with(NEVER_WRITTEN)
            || !super::head::empty_head_excusable(&l.records))
    {
        return Some(why.clone());
    }
    let head = l.head.as_ref()?;
    let have = l.records.len() as u64;
    let need = if strict { head.count } else { head.durable };
    if have < need {
        return Some(format!(
            "the journal ends after record {have} but its head file counts {} record(s){}: the tail was removed (truncated)",
            head.count,
            if head.sealed { " and a sealed end" } else { "" }
        ));
    }
    if strict && head.count > 0 && have >= head.count {
        let idx = (head.count - 1) as usize;
        if l.hashes.get(idx) != Some(&head.last) {
            return Some(format!(
                "record {} does not match the last hash in the head file: the journal was rewritten",
                head.count
            ));
        }
    }
    None
}
