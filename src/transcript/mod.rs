//! Stage 5, **transcript**: what happened in a run, told from its journal, rendered through
//! minijinja templates (`templates/`), and attached to incidents ([`attach`]).
//!
//! The transcript is built only from the journal, which the redactor already cleaned: nothing
//! secret can appear here that the journal did not have.

pub(crate) mod attach;
mod error;
mod files;
mod timeline;

pub(crate) use error::{ErrorKind, TranscriptError};
pub(crate) use files::{load, render, write_files_with};
use timeline::timeline_text;

use serde::Serialize;

use crate::event::{Event, StepStatus};
use crate::journal::Record;

/// Version of the JSON transcript (`runbook transcript --format json`).
pub(crate) const TRANSCRIPT_VERSION: u32 = 1;
/// The built-in Markdown template.
pub(crate) const MARKDOWN_TEMPLATE: &str = include_str!("../../templates/transcript.md.j2");
/// The short summary used for incident notes and comments.
pub(crate) const NOTE_TEMPLATE: &str = include_str!("../../templates/incident-note.txt.j2");
/// Lines of output shown from the start and from the end of a step.
const OUTPUT_LINES: usize = 20;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Transcript {
    pub transcript_version: u32,
    pub run_id: String,
    pub runbook: String,
    pub file: String,
    pub user: String,
    pub host: String,
    pub started: String,
    pub ended: Option<String>,
    pub status: String,
    pub exit_code: Option<u8>,
    pub reason: Option<String>,
    pub chain_verified: bool,
    pub inputs: Vec<NameValue>,
    pub steps: Vec<StepEntry>,
    pub rollbacks: Vec<RollbackEntry>,
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct NameValue {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct GateEntry {
    pub decision: String,
    pub user: String,
    pub host: String,
    pub by: String,
    pub at: String,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct StepEntry {
    pub id: String,
    pub title: Option<String>,
    pub status: String,
    pub hosts: Vec<String>,
    pub command: Option<String>,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub duration: String,
    pub attempts: u32,
    pub error: Option<String>,
    pub skipped_reason: Option<String>,
    pub outputs: serde_json::Map<String, serde_json::Value>,
    pub output_head: String,
    pub output_tail: String,
    pub gate: Vec<GateEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RollbackEntry {
    pub step: String,
    pub status: String,
    pub error: Option<String>,
    pub at: String,
    /// The undo as the runbook writes it, inputs filled in (for a rollback that did not run:
    /// what a person would run).
    #[serde(default)]
    pub command: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TimelineEntry {
    pub at: String,
    pub text: String,
}

fn word<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Head and tail lines of a text (the tail empty when the text is short).
fn head_tail(text: &str) -> (String, String) {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= 2 * OUTPUT_LINES {
        return (lines.join("\n"), String::new());
    }
    (
        lines[..OUTPUT_LINES].join("\n"),
        lines[lines.len() - OUTPUT_LINES..].join("\n"),
    )
}

/// A transcript before any record is read.
fn empty(run_id: &str, chain_verified: bool) -> Transcript {
    Transcript {
        transcript_version: TRANSCRIPT_VERSION,
        run_id: run_id.to_string(),
        runbook: String::new(),
        file: String::new(),
        user: String::new(),
        host: String::new(),
        started: String::new(),
        ended: None,
        status: "running or interrupted".into(),
        exit_code: None,
        reason: None,
        chain_verified,
        inputs: Vec::new(),
        steps: Vec::new(),
        rollbacks: Vec::new(),
        timeline: Vec::new(),
    }
}

/// Builds the transcript of a run from its journal records.
pub(crate) fn build(run_id: &str, records: &[Record], chain_verified: bool) -> Transcript {
    let mut t = empty(run_id, chain_verified);
    let mut rollback_gates = std::collections::HashSet::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for r in records {
        let at = r.stamped.at.clone();
        let event = &r.stamped.event;
        if let Some(text) = timeline_text(event) {
            t_line(&mut t.timeline, &at, text);
        }
        match event {
            Event::RunStarted {
                runbook,
                file,
                user,
                host,
                inputs,
                ..
            } => {
                t.runbook = runbook.clone();
                t.file = file.clone();
                t.user = user.clone();
                t.host = host.clone();
                t.started = at.clone();
                t.inputs = inputs
                    .iter()
                    .map(|(n, v)| NameValue {
                        name: n.clone(),
                        value: v.clone(),
                    })
                    .collect();
            }
            Event::RunResumed { .. } => t.ended = None,
            Event::StepSkipped { step, reason } => {
                let i = step_at(&mut t, &mut index, step);
                t.steps[i].status = "skipped".into();
                t.steps[i].skipped_reason = Some(reason.clone());
            }
            // A manual rollback's confirmation (`ID (rollback)`) is not a step: the timeline
            // tells it.
            Event::GateAsked {
                step,
                rollback: true,
                ..
            } => {
                rollback_gates.insert(step.clone());
            }
            Event::GateAsked { step, .. } => {
                step_at(&mut t, &mut index, step);
            }
            Event::GateAnswered { step, .. } if rollback_gates.contains(step) => {}
            Event::GateAnswered {
                step,
                decision,
                user,
                from_host,
                by,
                comment,
            } => {
                let i = step_at(&mut t, &mut index, step);
                t.steps[i].gate.push(GateEntry {
                    decision: word(decision),
                    user: user.clone(),
                    host: from_host.clone(),
                    by: word(by),
                    at: at.clone(),
                    comment: comment.clone(),
                });
            }
            Event::StepStarted { step, .. } => {
                let i = step_at(&mut t, &mut index, step);
                step_started(&mut t.steps[i], event);
            }
            Event::StepFinished { step, .. } => {
                let i = step_at(&mut t, &mut index, step);
                step_finished(&mut t.steps[i], event);
            }
            Event::RollbackFinished {
                step,
                status,
                error,
                ..
            } => {
                t.rollbacks.push(RollbackEntry {
                    command: None,
                    step: step.clone(),
                    status: status.as_str().into(),
                    error: error.clone(),
                    at: at.clone(),
                });
            }
            Event::RollbackNotRun { step, reason } => {
                t.rollbacks.push(RollbackEntry {
                    command: None,
                    step: step.clone(),
                    status: "not-run".into(),
                    error: Some(reason.clone()),
                    at: at.clone(),
                });
            }
            Event::RunFinished {
                status,
                exit_code,
                reason,
                ..
            } => {
                t.ended = Some(at.clone());
                t.status = word(status);
                t.exit_code = Some(*exit_code);
                t.reason = Some(reason.clone());
            }
            _ => {}
        }
    }
    t
}

/// The entry of step `id`, added (not run yet) the first time the step is named.
fn step_at(
    t: &mut Transcript,
    index: &mut std::collections::HashMap<String, usize>,
    id: &str,
) -> usize {
    if let Some(&i) = index.get(id) {
        return i;
    }
    t.steps.push(StepEntry {
        id: id.to_string(),
        status: "not-run".into(),
        ..StepEntry::default()
    });
    index.insert(id.to_string(), t.steps.len() - 1);
    t.steps.len() - 1
}

/// A step (one of its hosts, an attempt, or its rollback) started.
fn step_started(e: &mut StepEntry, event: &Event) {
    let Event::StepStarted {
        attempt,
        host,
        command,
        ..
    } = event
    else {
        return;
    };
    // A rollback runs the step's id again: it must not make a finished step "running".
    if e.status == "not-run" {
        e.status = "running".into();
    }
    e.attempts = e.attempts.max(*attempt);
    if e.command.is_none() {
        e.command = command.clone();
    }
    if let Some(h) = host
        && !e.hosts.contains(h)
    {
        e.hosts.push(h.clone());
    }
}

/// A step ended: its status, timings, outputs, and the head and tail of what it printed.
fn step_finished(e: &mut StepEntry, event: &Event) {
    let Event::StepFinished {
        status,
        exit_code,
        duration_ms,
        error,
        outputs,
        result,
        ..
    } = event
    else {
        return;
    };
    e.status = status.as_str().into();
    e.exit_code = *exit_code;
    e.duration_ms = *duration_ms;
    e.duration = crate::fmt::human_duration(std::time::Duration::from_millis(*duration_ms));
    e.error = error.clone();
    e.outputs = outputs.clone();
    e.attempts = e.attempts.max(1);
    let text = result
        .get("stdout")
        .and_then(|s| s.as_str())
        .map(str::to_string)
        .or_else(|| {
            result
                .get("body")
                .and_then(|b| b.as_str())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let stderr = result
        .get("stderr")
        .and_then(|s| s.as_str())
        .unwrap_or_default();
    let all = if stderr.trim().is_empty() {
        text
    } else {
        format!(
            "{text}{}{stderr}",
            if text.ends_with('\n') || text.is_empty() {
                ""
            } else {
                "\n"
            }
        )
    };
    let (h, tl) = head_tail(all.trim_end());
    e.output_head = h;
    e.output_tail = tl;
    if *status == StepStatus::Skipped {
        e.skipped_reason = error.clone();
    }
}

fn t_line(timeline: &mut Vec<TimelineEntry>, at: &str, text: String) {
    timeline.push(TimelineEntry {
        at: at.to_string(),
        text,
    });
}
