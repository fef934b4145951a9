//! Stage 5, **transcript**: what happened in a run, told from its journal, rendered through
//! minijinja templates (`templates/`), and attached to incidents ([`attach`]).
//!
//! The transcript is built only from the journal, which the redactor already cleaned: nothing
//! secret can appear here that the journal did not have.

pub(crate) mod attach;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::event::{Event, StepStatus};
use crate::journal::{self, Record};

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

/// The timeline's line for an event, if it has one.
fn timeline_text(event: &Event) -> Option<String> {
    Some(match event {
        Event::RunStarted { user, host, .. } => format!("run started by {user}@{host}"),
        Event::RunResumed {
            user,
            host,
            in_doubt,
        } => format!("run resumed by {user}@{host}{}", in_flight(in_doubt)),
        Event::StepSkipped { step, reason } => format!("`{step}` skipped: {reason}"),
        Event::GateAsked {
            step,
            message,
            manual,
            rollback,
            ..
        } => format!(
            "{} `{step}`: {message}",
            if *rollback {
                "rollback by hand"
            } else if *manual {
                "manual step"
            } else {
                "gate"
            }
        ),
        Event::AskAnswered {
            step,
            user,
            by,
            have,
            need,
        } => format!(
            "`{step}` answered by {user} ({}; {have} of {need})",
            word(by)
        ),
        Event::GateWaiting {
            step,
            how_to_answer,
        } => format!("`{step}` waits for an answer: {how_to_answer}"),
        Event::GateAnswered {
            step,
            decision,
            user,
            from_host,
            by,
            ..
        } => format!(
            "`{step}` {} by {user}@{from_host} ({})",
            word(decision),
            word(by)
        ),
        Event::StepStarted {
            step,
            attempt,
            host,
            ..
        } => {
            let on = host
                .as_ref()
                .map(|h| format!(" on {h}"))
                .unwrap_or_default();
            format!(
                "`{step}` started{on}{}",
                if *attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                }
            )
        }
        Event::Retry {
            step,
            attempt,
            reason,
            ..
        } => format!("`{step}` retry {attempt}: {reason}"),
        Event::HostFinished {
            step,
            host,
            status,
            error,
            ..
        } => format!(
            "`{step}` on {host}: {}{}",
            status.as_str(),
            error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
        ),
        Event::StepFinished {
            step,
            status,
            error,
            ..
        } => format!(
            "`{step}` {}{}",
            status.as_str(),
            error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
        ),
        Event::RollbackStarted { step, reason } => {
            format!("rollback of `{step}` started ({reason})")
        }
        Event::RollbackFinished { step, status, .. } => {
            format!("rollback of `{step}` {}", status.as_str())
        }
        Event::RollbackNotRun { step, reason } => {
            format!("rollback of `{step}` NOT run: {reason}")
        }
        Event::Warning { message } => format!("warning: {message}"),
        Event::RollbacksDischarged { by, steps } => format!(
            "commit `{by}`: rollbacks of {} discharged (they will not run)",
            steps
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Event::RunFinished {
            status, exit_code, ..
        } => format!("run finished: {} (exit {exit_code})", word(status)),
        Event::Output { .. }
        | Event::ProbeAttempt { .. }
        | Event::ItemStarted { .. }
        | Event::ItemFinished { .. }
        | Event::RollbackAsked { .. } => return None,
    })
}

/// What a resumed run says was in flight, as ` (in flight: a re-run, b done)`.
fn in_flight(in_doubt: &[(String, String)]) -> String {
    if in_doubt.is_empty() {
        return String::new();
    }
    format!(
        " (in flight: {})",
        in_doubt
            .iter()
            .map(|(s, d)| format!("{s} {d}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
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

/// Renders with a template (the built-in Markdown one unless `template` is given).
pub(crate) fn render(t: &Transcript, template: &str) -> Result<String, String> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    env.set_fuel(Some(50_000_000));
    env.render_str(template, crate::template::to_value(t))
        .map_err(|e| format!("template: {}", crate::template::describe_error(&e)))
}

/// Reads a run's journal and builds its transcript. A broken chain is reported (and the
/// transcript of the readable prefix is not produced: a tampered record must not be trusted).
pub(crate) fn load(run_dir: &Path) -> Result<Transcript, journal::JournalError> {
    load_with(run_dir, None)
}

/// `load`, given the run's runbook when the caller has it (the engine, right after the run):
/// the runbook file is then not read and validated again.
fn load_with(
    run_dir: &Path,
    rb: Option<&crate::model::Runbook>,
) -> Result<Transcript, journal::JournalError> {
    let records = journal::read(run_dir)?;
    let run_id = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut t = build(&run_id, &records, true);
    match rb {
        Some(rb) => from_runbook(&mut t, rb),
        None => {
            if let Some(rb) = crate::load::load(Path::new(&t.file))
                .ok()
                .and_then(|l| crate::validate::validate(&l).runbook)
            {
                from_runbook(&mut t, &rb);
            }
        }
    }
    Ok(t)
}

/// Fills in what the journal does not hold but the runbook does (when its file is still
/// there): step titles, and the command of each rollback, both rendered with the run's inputs
/// as journaled (secrets already masked there).
fn from_runbook(t: &mut Transcript, rb: &crate::model::Runbook) {
    let entries: Vec<(String, minijinja::Value)> = t
        .inputs
        .iter()
        .map(|nv| (nv.name.clone(), minijinja::Value::from(nv.value.clone())))
        .collect();
    let mut all = entries.clone();
    all.push(("inputs".into(), crate::template::map(entries)));
    let ctx = crate::template::map(all);
    let tpl = crate::template::Templates::new(crate::template::SecretDisplay::Mask);
    let render = |src: &str| {
        tpl.render(src, &ctx, crate::template::Target::Text)
            .unwrap_or_else(|_| src.to_string())
    };
    for s in &mut t.steps {
        if let Some(title) = rb.step(&s.id).and_then(|st| st.title.as_ref()) {
            s.title = Some(render(&title.src));
        } else if let Some(title) = rb
            .finally
            .iter()
            .find(|f| f.id.name == s.id)
            .and_then(|f| f.title.as_ref())
        {
            s.title = Some(render(&title.src));
        }
    }
    for r in &mut t.rollbacks {
        r.command = rb
            .step(&r.step)
            .and_then(|st| st.rollback.as_ref())
            .and_then(|b| match &b.action {
                crate::model::Action::Run(c) => Some(render(c.src.trim())),
                crate::model::Action::Manual(m) => {
                    Some(format!("(by hand) {}", render(m.src.trim())))
                }
                _ => None,
            });
    }
}

/// Writes `transcript.md` and `transcript.json` (0600) into the run directory (`rb`: the
/// run's runbook, when the caller has it loaded).
pub(crate) fn write_files_with(
    run_dir: &Path,
    rb: Option<&crate::model::Runbook>,
) -> Result<Vec<PathBuf>, String> {
    let t = load_with(run_dir, rb).map_err(|e| e.to_string())?;
    // Both files are read in terminals (`cat`, `less -R`): control characters made visible.
    let md = crate::term::visible(&render(&t, MARKDOWN_TEMPLATE)?).into_owned();
    let json = crate::term::json_safe(serde_json::to_string_pretty(&t).map_err(|e| e.to_string())?);
    let mut out = Vec::new();
    for (name, body) in [("transcript.md", md), ("transcript.json", json)] {
        let p = run_dir.join(name);
        let _ = std::fs::remove_file(&p);
        use std::io::Write;
        let mut f = crate::sys::open_private(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        f.write_all(body.as_bytes())
            .map_err(|e| format!("{}: {e}", p.display()))?;
        out.push(p);
    }
    Ok(out)
}
