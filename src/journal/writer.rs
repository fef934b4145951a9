//! The journal as an observer of a run: records chained, written and fsynced, the head
//! rewritten after each, space reserved ahead, and a shared store's copy handed each line.

use std::path::PathBuf;

use serde::Serialize;

use super::bound::bounded;
use super::read::load;
use super::{GENESIS, Head, JOURNAL_VERSION, RunFiles, complete_part, open_nofollow, sha256_hex};
use crate::event::Observer;
use crate::event::{Event, Stamped};

/// A record as written: borrows its event (no copy of a step's result per record).
#[derive(Serialize)]
struct RecordOut<'a> {
    v: u32,
    seq: u64,
    prev: &'a str,
    #[serde(flatten)]
    stamped: &'a Stamped,
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
    ) -> Result<(), SinkError>;
}

/// Why a shared store did not take a record (its message names the store): the record fails,
/// so the run stops before its next step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct SinkError(pub(crate) String);

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

impl Journal {
    /// Creates the journal of a new run, or opens an existing one to append (resume). A torn
    /// last record is cut off, and the repair is itself journaled.
    pub(crate) fn open(files: &RunFiles) -> std::io::Result<Journal> {
        Journal::open_with(files, None)
    }

    /// [`Journal::open`], every record also handed to `sink` (before the local file).
    pub(crate) fn open_with(
        files: &RunFiles,
        sink: Option<Box<dyn RecordSink>>,
    ) -> std::io::Result<Journal> {
        let path = files.journal.clone();
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
        let head = open_nofollow(&files.head, false).ok();
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
        j.first_head(files)?;
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
        let ok = h
            .write_all_at(super::head::head_line(&head).as_bytes(), 0)
            .is_ok();
        if ok && sealed {
            let _ = h.sync_data();
        }
    }

    /// Seals a run whose last record is its end but whose head was not written (the engine
    /// was killed between the two). A no-op for any other run.
    pub(crate) fn reseal_if_ended(files: &RunFiles) -> std::io::Result<()> {
        let Ok(loaded) = load(files) else {
            return Ok(());
        };
        let ended = loaded.torn == 0
            && loaded
                .records
                .last()
                .is_some_and(|l| matches!(l.stamped.event, Event::RunFinished { .. }));
        let sealed = loaded.head.as_ref().is_some_and(|h| h.sealed);
        if ended && !sealed {
            let mut j = Journal::open(files)?;
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
            self.broken = Some(e.to_string());
            return Err(e.to_string());
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
    fn on_event(&mut self, e: &Stamped) -> Result<(), crate::event::ObserverError> {
        if matches!(e.event, Event::Output { .. }) {
            return Ok(());
        }
        Ok(self.write(e)?)
    }

    fn required(&self) -> bool {
        true
    }
}

/// The head file's first write (see `head.rs`).
impl Journal {
    /// Writes the head now if its file is empty, and makes it durable (the file and the run
    /// directory's entry for it). Fails when it cannot: the run must not record work that
    /// no head vouches for.
    pub(super) fn first_head(&mut self, files: &RunFiles) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let Some(h) = &self.head else {
            return Err(std::io::Error::other(format!(
                "cannot open {}",
                files.head.display()
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
        h.write_all_at(super::head::head_line(&head).as_bytes(), 0)?;
        h.sync_all()?;
        // The directory entry too (best effort: some file systems refuse to sync a directory).
        if let Ok(d) = std::fs::File::open(&files.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}
