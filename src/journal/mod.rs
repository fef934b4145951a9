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

pub mod answers;
pub mod live;
pub mod lock;
pub mod state;

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::execute::Observer;
use crate::execute::event::{Event, Stamped};

/// Version of the record format.
pub const JOURNAL_VERSION: u32 = 1;
/// The journal's file name inside a run directory.
pub const JOURNAL_FILE: &str = "journal.jsonl";
/// `prev` of the first record.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One line of the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub v: u32,
    pub seq: u64,
    /// SHA-256 (hex) of the previous line's bytes.
    pub prev: String,
    #[serde(flatten)]
    pub stamped: Stamped,
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The journal as an observer of a run.
pub struct Journal {
    file: std::fs::File,
    path: PathBuf,
    seq: u64,
    prev: String,
    /// Set once a write failed: every later write fails too (the run is stopping).
    broken: Option<String>,
}

impl Journal {
    /// Creates the journal of a new run, or opens an existing one to append (resume).
    pub fn open(run_dir: &Path) -> std::io::Result<Journal> {
        let path = run_dir.join(JOURNAL_FILE);
        let (seq, prev) = match std::fs::read(&path) {
            Ok(bytes) => {
                let lines: Vec<&[u8]> = bytes
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .collect();
                match lines.last() {
                    Some(last) => (lines.len() as u64, sha256_hex(last)),
                    None => (0, GENESIS.to_string()),
                }
            }
            Err(_) => (0, GENESIS.to_string()),
        };
        let file = crate::execute::capture::open_private(&path)?;
        Ok(Journal {
            file,
            path,
            seq,
            prev,
            broken: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
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
        let record = Record {
            v: JOURNAL_VERSION,
            seq: self.seq,
            prev: self.prev.clone(),
            stamped: bounded(stamped),
        };
        let line = serde_json::to_string(&record).map_err(|e| e.to_string())?;
        let result = self
            .file
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| {
                if Self::durable(&stamped.event) {
                    self.file.sync_data()
                } else {
                    Ok(())
                }
            });
        match result {
            Ok(()) => {
                self.seq += 1;
                self.prev = sha256_hex(line.as_bytes());
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

/// The event with big results cut to a bounded size.
fn bounded(s: &Stamped) -> Stamped {
    match &s.event {
        Event::StepFinished { result, .. }
            if serde_json::to_string(result).map_or(0, |t| t.len()) > 2 * RESULT_TEXT =>
        {
            let mut s = s.clone();
            if let Event::StepFinished { result, .. } = &mut s.event {
                cut_json(result);
            }
            s
        }
        _ => s.clone(),
    }
}

/// A problem reading or verifying a journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
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

/// Reads every record of a journal, verifying the chain.
pub fn read(run_dir: &Path) -> Result<Vec<Record>, JournalError> {
    let path = run_dir.join(JOURNAL_FILE);
    let name = path.display().to_string();
    let bytes = std::fs::read(&path).map_err(|e| JournalError::Io(name.clone(), e))?;
    let mut prev = GENESIS.to_string();
    let mut out = Vec::new();
    for (i, line) in bytes
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
        out.push(rec);
    }
    Ok(out)
}

/// A summary of one run, for `runbook runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub run_id: String,
    pub runbook: String,
    pub user: String,
    pub started: String,
    /// `running` (no end record: in progress or killed), `waiting` (stopped at a gate), or the
    /// final exit status.
    pub status: String,
    pub exit_code: Option<u8>,
}

/// Lists the runs under `runs_dir`, newest first.
pub fn list_runs(runs_dir: &Path) -> Vec<RunInfo> {
    let Ok(entries) = std::fs::read_dir(runs_dir) else {
        return Vec::new();
    };
    let mut runs: Vec<RunInfo> = entries
        .flatten()
        .filter(|e| e.path().join(JOURNAL_FILE).is_file())
        .map(|e| {
            let id = e.file_name().to_string_lossy().into_owned();
            let mut info = RunInfo {
                run_id: id,
                runbook: "?".into(),
                user: "?".into(),
                started: String::new(),
                status: "unreadable".into(),
                exit_code: None,
            };
            if let Ok(records) = read_lenient(&e.path()) {
                info.status = "running".into();
                for r in &records {
                    match &r.stamped.event {
                        Event::RunStarted { runbook, user, .. } if info.started.is_empty() => {
                            info.runbook = runbook.clone();
                            info.user = user.clone();
                            info.started = r.stamped.at.clone();
                        }
                        Event::RunResumed { .. } => info.status = "running".into(),
                        Event::RunFinished {
                            status,
                            exit_code,
                            resumable,
                            ..
                        } => {
                            info.exit_code = Some(*exit_code);
                            info.status = if *resumable {
                                "waiting".into()
                            } else {
                                serde_json::to_value(status)
                                    .ok()
                                    .and_then(|v| v.as_str().map(str::to_string))
                                    .unwrap_or_default()
                            };
                        }
                        _ => {}
                    }
                }
            }
            info
        })
        .collect();
    runs.sort_by(|a, b| b.run_id.cmp(&a.run_id));
    runs
}

/// Reads records without verifying the chain (listing only).
fn read_lenient(run_dir: &Path) -> std::io::Result<Vec<Record>> {
    let bytes = std::fs::read(run_dir.join(JOURNAL_FILE))?;
    Ok(bytes
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect())
}
