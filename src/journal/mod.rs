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
mod head;
pub(crate) mod live;
pub(crate) mod lock;
pub(crate) mod state;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::event::Observer;
use crate::event::{Event, Stamped};

/// Version of the record format.
pub(crate) const JOURNAL_VERSION: u32 = 1;
/// The journal's file name inside a run directory.
pub(crate) const JOURNAL_FILE: &str = "journal.jsonl";
/// `prev` of the first record.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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

/// A record as written: borrows its event (no copy of a step's result per record).
#[derive(Serialize)]
struct RecordOut<'a> {
    v: u32,
    seq: u64,
    prev: &'a str,
    #[serde(flatten)]
    stamped: &'a Stamped,
}

pub(crate) use crate::fmt::sha256_hex;

/// The head file beside the journal: the count and last hash, rewritten after every record
/// and fsynced when the run's end is sealed. It makes a missing tail evident.
pub(crate) const HEAD_FILE: &str = "journal.head";
/// Fixed width of the head record (padded), so it is rewritten in place with one `pwrite`.
const HEAD_WIDTH: usize = 256;

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

/// Bytes reserved ahead of the journal's end (`fallocate`, inside the file's size: the
/// unused part reads as zero bytes until the run ends or stops and cuts it off): when the
/// disk fills up, the records that stop the run and unwind it still fit, and appending a
/// record never changes the file's size (its `fdatasync` then writes no metadata).
const RESERVE: u64 = 64 * 1024;

/// Where a run's records go besides its local file (a shared store): each record's exact line,
/// handed over *before* the local file gets it, so the copy never lags the file. A failing sink
/// fails the record (the run stops before its next step, as on a full disk).
pub(crate) trait RecordSink: Send {
    /// Stores record `seq` (`line`, without its newline; `hash` is its SHA-256). `durable`: the
    /// record announces work and must be committed before this returns; `sealed`: it is the
    /// run's end.
    fn append(
        &mut self,
        seq: u64,
        line: &str,
        hash: &str,
        durable: bool,
        sealed: bool,
    ) -> Result<(), String>;
}

/// The journal as an observer of a run.
pub(crate) struct Journal {
    /// The shared store's copy, if the run is kept in one.
    sink: Option<Box<dyn RecordSink>>,
    file: std::fs::File,
    head: Option<std::fs::File>,
    path: PathBuf,
    seq: u64,
    prev: String,
    durable: u64,
    /// Bytes in the file.
    len: u64,
    /// End of the space reserved so far.
    reserved: u64,
    /// The file system supports the reservation.
    reserving: bool,
    /// Set once a write failed: every later write fails too (the run is stopping).
    broken: Option<String>,
}

/// The complete, chained records of a journal's bytes, and where the complete part ends. A
/// torn tail (bytes after the last newline: a write cut by a crash or a full disk) is not a
/// record: it was never written.
///
/// Zero bytes at the end are space the engine reserved and had not used yet (the journal is
/// preallocated, see [`RESERVE`]): they are neither records nor a torn tail.
fn complete_part(bytes: &[u8]) -> (&[u8], usize) {
    let used = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let bytes = &bytes[..used];
    match bytes.iter().rposition(|b| *b == b'\n') {
        Some(i) => (&bytes[..=i], bytes.len() - i - 1),
        None => (&bytes[..0], bytes.len()),
    }
}

fn open_nofollow(path: &Path, append: bool) -> std::io::Result<std::fs::File> {
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

impl Journal {
    /// Creates the journal of a new run, or opens an existing one to append (resume). A torn
    /// last record is cut off, and the repair is itself journaled.
    pub(crate) fn open(run_dir: &Path) -> std::io::Result<Journal> {
        Journal::open_with(run_dir, None)
    }

    /// [`Journal::open`], every record also handed to `sink` (before the local file).
    pub(crate) fn open_with(
        run_dir: &Path,
        sink: Option<Box<dyn RecordSink>>,
    ) -> std::io::Result<Journal> {
        let path = run_dir.join(JOURNAL_FILE);
        // Written with `pwrite` at the end of the used part (not `O_APPEND`): the file is
        // preallocated ahead of its records, so a record's `fdatasync` does not have to commit
        // a new file size too.
        let file = open_nofollow(&path, false)?;
        let bytes = {
            use std::io::Read;
            let mut b = Vec::new();
            (&file).read_to_end(&mut b)?;
            b
        };
        let (complete, torn) = complete_part(&bytes);
        let lines: Vec<&[u8]> = complete
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let (seq, prev) = match lines.last() {
            Some(last) => (lines.len() as u64, sha256_hex(last)),
            None => (0, GENESIS.to_string()),
        };
        if complete.len() != bytes.len() {
            // A torn tail and/or reserved space left by an engine that was killed.
            file.set_len(complete.len() as u64)?;
            file.sync_data()?;
        }
        let head = open_nofollow(&run_dir.join(HEAD_FILE), false).ok();
        let mut j = Journal {
            sink,
            file,
            head,
            path,
            seq,
            prev,
            durable: seq,
            len: complete.len() as u64,
            reserved: complete.len() as u64,
            reserving: true,
            broken: None,
        };
        // Before any record, and before the reserve takes the disk's last pages.
        j.first_head(run_dir)?;
        j.reserve();
        if torn > 0 {
            let repaired = Stamped {
                at: crate::event::now(),
                event: Event::Warning {
                    message: format!(
                        "journal repaired: a torn last record ({torn} bytes, cut by a crash or a full disk) was removed; it was never written, so what it announced is in doubt"
                    ),
                },
            };
            j.write_line(&repaired, true)
                .map_err(std::io::Error::other)?;
        }
        Ok(j)
    }

    /// Keeps `RESERVE` bytes allocated beyond the end (best effort: a file system without
    /// `fallocate` just has no reserve).
    fn reserve(&mut self) {
        use std::os::fd::AsRawFd;
        if self.reserved >= self.len + RESERVE / 2 {
            return;
        }
        let want = self.len + RESERVE;
        // SAFETY: fallocate on a descriptor we own. Mode 0: the file's size grows over the
        // reserve (read back as zero bytes, see `complete_part`) so that writing a record
        // does not change it; the end of the run cuts the file back to its records.
        let fallocate = |mode: libc::c_int| unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                mode,
                self.reserved as libc::off_t,
                (want - self.reserved) as libc::off_t,
            )
        };
        let mut r = fallocate(0);
        if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EFBIG) {
            // A file-size limit (`ulimit -f`) below the reserve: reserve the blocks without
            // growing the file (appending then grows it, and fails where the limit is).
            r = fallocate(libc::FALLOC_FL_KEEP_SIZE);
        }
        if r == 0 {
            self.reserved = want;
        } else {
            let e = std::io::Error::last_os_error();
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL)
            ) {
                // No reservation on this file system: never refuse because of it.
                self.reserving = false;
            }
        }
    }

    /// Cuts the unused reserve off the file: it then holds exactly its records.
    fn trim(&mut self) {
        if self.file.set_len(self.len).is_ok() {
            self.reserved = self.len;
        }
    }

    /// Whether the reserve is low (the disk is full): no new work should start.
    fn reserve_low(&self) -> bool {
        self.reserving && self.reserved < self.len + RESERVE / 4
    }

    fn write_head(&mut self, sealed: bool) {
        use std::os::unix::fs::FileExt;
        let Some(h) = &self.head else { return };
        let head = Head {
            v: JOURNAL_VERSION,
            count: self.seq,
            last: self.prev.clone(),
            durable: self.durable,
            sealed,
        };
        let ok = h.write_all_at(head::head_line(&head).as_bytes(), 0).is_ok();
        if ok && sealed {
            let _ = h.sync_data();
        }
    }

    /// Seals a run whose last record is its end but whose head was not written (the engine
    /// was killed between the two). A no-op for any other run.
    pub(crate) fn reseal_if_ended(run_dir: &Path) -> std::io::Result<()> {
        let Ok(loaded) = load(run_dir) else {
            return Ok(());
        };
        let ended = loaded.torn == 0
            && loaded
                .records
                .last()
                .is_some_and(|l| matches!(l.stamped.event, Event::RunFinished { .. }));
        let sealed = loaded.head.as_ref().is_some_and(|h| h.sealed);
        if ended && !sealed {
            let mut j = Journal::open(run_dir)?;
            j.write_head(true);
        }
        Ok(())
    }

    /// Whether a record must reach the disk before the engine goes on: those that announce
    /// work (a step or rollback about to start, a gate answer it acts on) and the end of the
    /// run. Other records are written at once (a killed engine loses nothing: the kernel has
    /// them) and reach the disk with the next announcing record's sync, which covers every
    /// earlier write of the file.
    fn durable(e: &Event) -> bool {
        matches!(
            e,
            Event::RunStarted { .. }
                | Event::RunResumed { .. }
                | Event::StepStarted { .. }
                | Event::GateAnswered { .. }
                | Event::RollbackStarted { .. }
                | Event::RollbackNotRun { .. }
                | Event::RunFinished { .. }
        )
    }

    fn write(&mut self, stamped: &Stamped) -> Result<(), String> {
        if let Some(b) = &self.broken {
            return Err(b.clone());
        }
        // A new step must not start when its end and the unwinding could not be recorded.
        if matches!(stamped.event, Event::StepStarted { .. }) {
            self.reserve();
            if self.reserve_low() {
                let msg = format!(
                    "{}: no space left to reserve for the journal; not starting more work",
                    self.path.display()
                );
                return Err(msg);
            }
        }
        let durable = Self::durable(&stamped.event);
        self.write_line(stamped, durable)
    }

    fn write_line(&mut self, stamped: &Stamped, durable: bool) -> Result<(), String> {
        let stamped = bounded(stamped);
        let record = RecordOut {
            v: JOURNAL_VERSION,
            seq: self.seq,
            prev: &self.prev,
            stamped: &stamped,
        };
        let mut line = serde_json::to_string(&record).map_err(|e| e.to_string())?;
        let hash = sha256_hex(line.as_bytes());
        let sealed = matches!(stamped.event, Event::RunFinished { .. });
        if let Some(sink) = &mut self.sink
            && let Err(e) = sink.append(self.seq, &line, &hash, durable, sealed)
        {
            self.broken = Some(e.clone());
            return Err(e);
        }
        line.push('\n');
        let result = {
            use std::os::unix::fs::FileExt;
            self.file.write_all_at(line.as_bytes(), self.len)
        }
        .and_then(|()| {
            if durable {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => {
                self.seq += 1;
                self.prev = hash;
                self.len += line.len() as u64;
                if durable {
                    self.durable = self.seq;
                }
                if sealed {
                    self.trim();
                }
                self.write_head(sealed);
                Ok(())
            }
            Err(e) => {
                let msg = format!("{}: {e}", self.path.display());
                self.broken = Some(msg.clone());
                Err(msg)
            }
        }
    }
}

impl Drop for Journal {
    /// A journal closed without a sealed end (the engine stops, pauses at a gate) is cut back
    /// to its records too; only a killed engine leaves its reserve behind.
    fn drop(&mut self) {
        if self.reserved > self.len {
            self.trim();
        }
    }
}

impl Observer for Journal {
    fn on_event(&mut self, e: &Stamped) -> Result<(), String> {
        if matches!(e.event, Event::Output { .. }) {
            return Ok(());
        }
        self.write(e)
    }

    fn required(&self) -> bool {
        true
    }
}

/// Longest stdout/stderr kept in a journaled result (head and tail).
const RESULT_TEXT: usize = 32 * 1024;

fn cut_text(s: &str) -> String {
    if s.len() <= 2 * RESULT_TEXT {
        return s.to_string();
    }
    let mut head = RESULT_TEXT;
    while !s.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = s.len() - RESULT_TEXT;
    while !s.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}\n[… {} bytes omitted; see the step log …]\n{}",
        &s[..head],
        tail - head,
        &s[tail..]
    )
}

fn cut_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.len() > 2 * RESULT_TEXT => *s = cut_text(s),
        serde_json::Value::Array(a) => a.iter_mut().for_each(cut_json),
        serde_json::Value::Object(m) => m.values_mut().for_each(cut_json),
        _ => {}
    }
}

/// Whether a value holds a string that `cut_json` would cut.
fn too_long(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.len() > 2 * RESULT_TEXT,
        serde_json::Value::Array(a) => a.iter().any(too_long),
        serde_json::Value::Object(m) => m.values().any(too_long),
        _ => false,
    }
}

/// The event with big results cut to a bounded size (borrowed as it is when nothing is cut).
fn bounded(s: &Stamped) -> std::borrow::Cow<'_, Stamped> {
    match &s.event {
        Event::StepFinished { result, .. } if too_long(result) => {
            let mut s = s.clone();
            if let Event::StepFinished { result, .. } = &mut s.event {
                cut_json(result);
            }
            std::borrow::Cow::Owned(s)
        }
        _ => std::borrow::Cow::Borrowed(s),
    }
}

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
fn read_head(run_dir: &Path) -> Result<Head, String> {
    let bytes = match read_file_nofollow(&run_dir.join(HEAD_FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "the head file {HEAD_FILE} is missing: a removed tail cannot be ruled out"
            ));
        }
        Err(e) => return Err(format!("the head file {HEAD_FILE} cannot be read ({e})")),
    };
    if bytes.trim_ascii().is_empty() {
        return Err(format!("{NEVER_WRITTEN} ({HEAD_FILE} is empty)"));
    }
    let head: Head = serde_json::from_slice(bytes.trim_ascii())
        .map_err(|_| format!("the head file {HEAD_FILE} is not a head record (damaged)"))?;
    let hex = head.last.len() == 64 && head.last.bytes().all(|b| b.is_ascii_hexdigit());
    if head.v != JOURNAL_VERSION || head.durable > head.count || (head.count > 0 && !hex) {
        return Err(format!(
            "the head file {HEAD_FILE} is inconsistent (count {}, durable {}): damaged",
            head.count, head.durable
        ));
    }
    Ok(head)
}

fn read_file_nofollow(path: &Path) -> std::io::Result<Vec<u8>> {
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

/// Reads every complete record of a journal, verifying the chain. A torn tail is not a
/// record (it is reported in `torn`); a broken chain or a bad complete line is an error.
pub(crate) fn load(run_dir: &Path) -> Result<Loaded, JournalError> {
    let path = run_dir.join(JOURNAL_FILE);
    let name = path.display().to_string();
    let bytes = read_file_nofollow(&path).map_err(|e| JournalError::Io(name.clone(), e))?;
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
    let (head, head_problem) = match read_head(run_dir) {
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
pub(crate) fn check_chain(lines: &[String]) -> Result<String, String> {
    let mut prev = GENESIS.to_string();
    for (i, line) in lines.iter().enumerate() {
        let rec: Record = serde_json::from_str(line)
            .map_err(|e| format!("record {}: not a journal record: {e}", i + 1))?;
        if rec.prev != prev || rec.seq != i as u64 {
            return Err(format!(
                "record {}: the hash chain is broken: {}",
                i + 1,
                chain_culprit(i + 1)
            ));
        }
        prev = sha256_hex(line.as_bytes());
    }
    Ok(prev)
}

/// Writes a verified copy of a journal from its lines (an export): `lines` must form a valid
/// chain (checked here, so nothing broken is written); the head counts them all.
pub(crate) fn write_copy(run_dir: &Path, lines: &[String], sealed: bool) -> Result<(), String> {
    let last = check_chain(lines)?;
    let count = lines.len() as u64;
    let head = Head {
        v: JOURNAL_VERSION,
        count,
        last,
        durable: count,
        sealed,
    };
    write_lines(run_dir, lines, &head)
}

/// Writes a run's journal file and head as given (a working copy of a run kept in a shared
/// store: what it holds is written as it is, so `transcript --verify` judges it), each file
/// replaced at once (written beside it, fsynced, renamed).
pub(crate) fn write_lines(run_dir: &Path, lines: &[String], head: &Head) -> Result<(), String> {
    let mut body = String::new();
    for l in lines {
        body.push_str(l);
        body.push('\n');
    }
    let mut head_text = serde_json::to_string(head).map_err(|e| e.to_string())?;
    while head_text.len() < HEAD_WIDTH - 1 {
        head_text.push(' ');
    }
    head_text.push('\n');
    for (name, text) in [(JOURNAL_FILE, body), (HEAD_FILE, head_text)] {
        let tmp = run_dir.join(format!(".{name}.copy"));
        let _ = std::fs::remove_file(&tmp);
        let written = open_nofollow(&tmp, false).and_then(|f| {
            use std::io::Write;
            (&f).write_all(text.as_bytes())?;
            f.sync_data()
        });
        written
            .and_then(|()| std::fs::rename(&tmp, run_dir.join(name)))
            .map_err(|e| format!("cannot write {}: {e}", run_dir.join(name).display()))?;
    }
    Ok(())
}

/// The lines of a journal file (complete records, chain verified) and whether its head says
/// sealed: what an export or an import copies.
pub(crate) fn lines(run_dir: &Path) -> Result<(Vec<String>, bool), JournalError> {
    let loaded = load(run_dir)?;
    let bytes = read_file_nofollow(&run_dir.join(JOURNAL_FILE))
        .map_err(|e| JournalError::Io(run_dir.display().to_string(), e))?;
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
pub(crate) fn read(run_dir: &Path) -> Result<Vec<Record>, JournalError> {
    load(run_dir).map(|l| l.records)
}

/// What `transcript --verify` found missing at the journal's end, if anything: records the
/// head file counts but the journal no longer has, or a head whose last hash differs.
/// `strict` = false only counts records that were fsynced (a power loss can lose the others).
pub(crate) fn missing_tail(l: &Loaded, strict: bool) -> Option<String> {
    if let Some(why) = &l.head_problem
        && (strict || !why.starts_with(NEVER_WRITTEN) || !head::empty_head_excusable(&l.records))
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
