//! What a run is doing now, read from its journal and its engine lock: the one place that
//! decides "running", "waiting at GATE", "interrupted" or "finished", for `show`, `runs` and
//! `approve`. A journal says what happened; only the engine lock (see [`super::live`]) says
//! whether a process is still behind it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::live::{self, LiveHolder};
use super::{JOURNAL_FILE, Record};
use crate::event::{Decision, Event, StepStatus};

/// Where a run stands.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub(crate) enum RunState {
    /// A live engine is running steps (or unwinding).
    Running { engine: LiveHolder },
    /// A live engine is waiting for an answer at a gate or manual step.
    Waiting {
        engine: LiveHolder,
        gate: String,
        since: String,
        how: Option<String>,
    },
    /// A live engine asks at its terminal whether to roll back `steps` (newest first).
    RollbackQuestion {
        engine: LiveHolder,
        since: String,
        steps: Vec<String>,
    },
    /// The engine stopped at a gate nobody answered; `resume` continues there.
    Paused { gate: Option<String> },
    /// No end record and no live engine: it was killed or crashed; `resume` continues it.
    Interrupted,
    /// No readable start record and no live engine: the journal is not one `resume` can
    /// continue (`transcript --verify` says where it breaks).
    Damaged,
    /// The run ended.
    Finished {
        status: String,
        exit_code: u8,
        reason: String,
    },
}

impl RunState {
    /// One word (or two) for tables.
    pub(crate) fn label(&self) -> String {
        match self {
            RunState::Running { .. } => "running".into(),
            RunState::Waiting { .. } => "waiting".into(),
            RunState::RollbackQuestion { .. } => "waiting to roll back".into(),
            RunState::Paused { .. } => "paused".into(),
            RunState::Interrupted => "interrupted".into(),
            RunState::Damaged => "damaged".into(),
            RunState::Finished { status, .. } => status.clone(),
        }
    }
}

/// One step as the journal tells it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StepView {
    pub id: String,
    /// `running`, `waiting`, or a [`StepStatus`] word.
    pub status: String,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
}

/// Everything `show` and `runs` need about one run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunView {
    pub run_id: String,
    #[serde(skip)]
    pub dir: PathBuf,
    pub runbook: String,
    pub file: String,
    pub user: String,
    pub host: String,
    pub started: String,
    pub ended: Option<String>,
    pub duration_ms: Option<u64>,
    pub inputs: Vec<(String, String)>,
    pub state: RunState,
    /// Steps in the order the journal first mentions them.
    pub steps: Vec<StepView>,
    /// Rollbacks that were due but did not run or did not succeed, in the order the unwinding
    /// reached them (newest first).
    pub unrun_rollbacks: Vec<(String, String)>,
    /// Answers given at gates: (step, decision, user, comment).
    pub answers: Vec<(String, String, String, Option<String>)>,
}

impl RunView {
    /// The start time, for ordering (unparsable times sort first).
    pub(crate) fn started_at(&self) -> Option<jiff::Timestamp> {
        self.started.parse().ok()
    }
}

/// Reads records without verifying the chain (inspection must work on a damaged journal too;
/// `transcript --verify` checks it).
fn read_lenient(run_dir: &Path) -> std::io::Result<Vec<Record>> {
    let bytes = std::fs::read(run_dir.join(JOURNAL_FILE))?;
    Ok(bytes
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect())
}

/// The view of the run in `run_dir`.
pub(crate) fn view(run_dir: &Path) -> std::io::Result<RunView> {
    let records = read_lenient(run_dir)?;
    let engine = live::holder(run_dir).or_else(|| live::remote_holder(run_dir));
    Ok(view_of(run_dir, &records, engine))
}

fn set_status(steps: &mut Vec<StepView>, id: &str, status: &str) -> usize {
    match steps.iter().position(|s| s.id == id) {
        Some(i) => {
            steps[i].status = status.to_string();
            i
        }
        None => {
            steps.push(StepView {
                id: id.to_string(),
                status: status.to_string(),
                duration_ms: None,
                error: None,
            });
            steps.len() - 1
        }
    }
}

/// The view from records and the engine lock's holder (pure: tested without processes).
pub(crate) fn view_of(run_dir: &Path, records: &[Record], engine: Option<LiveHolder>) -> RunView {
    let v = RunView {
        run_id: run_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        dir: run_dir.to_path_buf(),
        runbook: "?".into(),
        file: String::new(),
        user: "?".into(),
        host: "?".into(),
        started: String::new(),
        ended: None,
        duration_ms: None,
        inputs: Vec::new(),
        state: RunState::Interrupted,
        steps: Vec::new(),
        unrun_rollbacks: Vec::new(),
        answers: Vec::new(),
    };
    let mut fold = Fold {
        v,
        pending: BTreeMap::new(),
        finished: None,
        first_at: None,
        rollback_gates: Default::default(),
        rollback_asked: None,
    };
    for r in records {
        fold.record(&r.stamped.at, &r.stamped.event);
    }
    fold.settle(engine)
}

/// A run's view while its records are read.
struct Fold {
    v: RunView,
    /// Gates asked and not yet settled: step → (since, how to answer).
    pending: BTreeMap<String, (String, Option<String>)>,
    /// How the run finished (status, exit code, reason, resumable), if it did.
    finished: Option<(String, u8, String, bool)>,
    first_at: Option<jiff::Timestamp>,
    /// Gates that confirm a manual rollback (not steps).
    rollback_gates: std::collections::HashSet<String>,
    /// The engine asked whether to roll back (since, steps) and no answer is recorded yet.
    rollback_asked: Option<(String, Vec<String>)>,
}

impl Fold {
    /// One record, stamped `at`.
    fn record(&mut self, at: &str, event: &Event) {
        match event {
            Event::RollbackAsked { steps, .. } => {
                self.rollback_asked = Some((at.to_string(), steps.clone()));
            }
            Event::RollbackStarted { .. }
            | Event::RollbackNotRun { .. }
            | Event::RunResumed { .. }
            | Event::RunFinished { .. } => self.rollback_asked = None,
            _ => {}
        }
        if matches!(
            event,
            Event::RollbackNotRun { .. }
                | Event::RollbackFinished { .. }
                | Event::RunFinished { .. }
        ) {
            return self.ending(at, event);
        }
        let Fold {
            v,
            pending,
            finished,
            first_at,
            rollback_gates,
            ..
        } = self;
        match event {
            Event::RunStarted {
                runbook,
                file,
                user,
                host,
                inputs,
                ..
            } => {
                v.runbook = runbook.clone();
                v.file = file.clone();
                v.user = user.clone();
                v.host = host.clone();
                v.inputs = inputs.clone();
                v.started = at.to_string();
                *first_at = at.parse().ok();
            }
            Event::RunResumed { .. } => {
                *finished = None;
                v.ended = None;
                pending.clear();
            }
            Event::GateAsked { step, rollback, .. } => {
                pending.insert(step.clone(), (at.to_string(), None));
                // A manual rollback's confirmation (`ID (rollback)`) is not a step.
                if *rollback {
                    rollback_gates.insert(step.clone());
                } else {
                    set_status(&mut v.steps, step, "waiting");
                }
            }
            Event::GateWaiting {
                step,
                how_to_answer,
            } => {
                pending
                    .entry(step.clone())
                    .or_insert_with(|| (at.to_string(), None))
                    .1 = Some(how_to_answer.clone());
                set_status(&mut v.steps, step, "waiting");
            }
            Event::GateAnswered {
                step,
                decision,
                user,
                comment,
                ..
            } => {
                pending.remove(step);
                let word = match decision {
                    Decision::Approved => "approved",
                    Decision::Declined => "declined",
                    Decision::Aborted => "aborted",
                };
                v.answers
                    .push((step.clone(), word.into(), user.clone(), comment.clone()));
                // A gate said no: the step did not run because of that answer.
                if *decision != Decision::Approved && !rollback_gates.contains(step) {
                    set_status(&mut v.steps, step, word);
                }
            }
            Event::StepStarted { step, .. } => {
                pending.remove(step);
                // A rollback's command is announced as its step starting again: the step
                // itself stays as it ended.
                let ended = v
                    .steps
                    .iter()
                    .any(|s| s.id == *step && !matches!(s.status.as_str(), "waiting" | "running"));
                if !ended {
                    set_status(&mut v.steps, step, "running");
                }
            }
            Event::StepSkipped { step, reason } => {
                pending.remove(step);
                let i = set_status(&mut v.steps, step, StepStatus::Skipped.as_str());
                v.steps[i].error = Some(reason.clone());
            }
            Event::StepFinished {
                step,
                status,
                duration_ms,
                error,
                ..
            } => {
                pending.remove(step);
                let i = set_status(&mut v.steps, step, status.as_str());
                v.steps[i].duration_ms = Some(*duration_ms);
                v.steps[i].error = error.clone();
            }
            _ => {}
        }
    }

    /// The unwinding's records and the run's end.
    fn ending(&mut self, at: &str, event: &Event) {
        let Fold {
            v,
            finished,
            first_at,
            ..
        } = self;
        match event {
            Event::RollbackNotRun { step, reason } => {
                v.unrun_rollbacks.push((step.clone(), reason.clone()));
            }
            Event::RollbackFinished {
                step,
                status,
                error,
                ..
            } => {
                v.unrun_rollbacks.retain(|(s, _)| s != step);
                if *status != StepStatus::Succeeded {
                    // Not undone: `runbook rollback` runs it again.
                    let why = match error {
                        Some(e) => format!("{}: {e}", status.as_str()),
                        None => status.as_str().to_string(),
                    };
                    v.unrun_rollbacks.push((step.clone(), why));
                }
            }
            Event::RunFinished {
                status,
                exit_code,
                reason,
                duration_ms,
                resumable,
            } => {
                let word = serde_json::to_value(status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                *finished = Some((word, *exit_code, reason.clone(), *resumable));
                v.ended = Some(at.to_string());
                v.duration_ms = match (*first_at, at.parse::<jiff::Timestamp>().ok()) {
                    (Some(a), Some(b)) => Some(
                        b.duration_since(a)
                            .as_millis()
                            .try_into()
                            .unwrap_or(*duration_ms),
                    ),
                    _ => Some(*duration_ms),
                };
            }
            _ => {}
        }
    }

    /// Where the run stands once every record is read, given who holds its engine lock.
    fn settle(self, engine: Option<LiveHolder>) -> RunView {
        let Fold {
            mut v,
            pending,
            finished,
            rollback_asked,
            ..
        } = self;
        v.state = match (finished, engine) {
            // Stopped because the journal could not be written (exit 5): resumable once it can.
            (Some((_, code, _, true)), None)
                if code == crate::exit::ExitStatus::EngineFailed.code() =>
            {
                RunState::Interrupted
            }
            (Some((_, _, _, true)), _) => RunState::Paused {
                gate: pending.keys().next_back().cloned(),
            },
            (Some((status, exit_code, reason, false)), _) => RunState::Finished {
                status,
                exit_code,
                reason,
            },
            (None, Some(engine)) if rollback_asked.is_some() => {
                let (since, steps) = rollback_asked.unwrap_or_default();
                RunState::RollbackQuestion {
                    engine,
                    since,
                    steps,
                }
            }
            (None, Some(engine)) => match pending.iter().max_by(|a, b| a.1.0.cmp(&b.1.0)) {
                Some((gate, (since, how))) => RunState::Waiting {
                    engine,
                    gate: gate.clone(),
                    since: since.clone(),
                    how: how.clone(),
                },
                None => RunState::Running { engine },
            },
            (None, None) if v.started.is_empty() => RunState::Damaged,
            (None, None) => RunState::Interrupted,
        };
        if !matches!(v.state, RunState::Paused { .. } | RunState::Waiting { .. }) {
            for s in &mut v.steps {
                if s.status == "waiting" {
                    s.status = "not-run".into();
                }
            }
        }
        if matches!(v.state, RunState::Interrupted) {
            for s in &mut v.steps {
                if s.status == "running" {
                    s.status = "in-doubt".into();
                }
            }
        }
        v
    }
}

/// Every run under `runs_dir`, oldest first by start time (then by id), so the newest is last
/// and runs started within the same second keep the order they started in.
pub(crate) fn list(runs_dir: &Path) -> Vec<RunView> {
    let Ok(entries) = std::fs::read_dir(runs_dir) else {
        return Vec::new();
    };
    let mut runs: Vec<RunView> = entries
        .flatten()
        .filter(|e| e.path().join(JOURNAL_FILE).is_file())
        .filter_map(|e| view(&e.path()).ok())
        .collect();
    runs.sort_by(|a, b| {
        a.started_at()
            .cmp(&b.started_at())
            .then_with(|| a.run_id.cmp(&b.run_id))
    });
    runs
}
