//! The timeline's line for each journaled event.

use super::word;
use crate::event::Event;

/// The timeline's line for an event, if it has one.
pub(super) fn timeline_text(event: &Event) -> Option<String> {
    match event {
        Event::RunStarted { .. }
        | Event::RunResumed { .. }
        | Event::Warning { .. }
        | Event::RollbacksDischarged { .. }
        | Event::RunFinished { .. } => run_text(event),
        Event::GateAsked { .. }
        | Event::AskAnswered { .. }
        | Event::InputGiven { .. }
        | Event::GateWaiting { .. }
        | Event::GateAnswered { .. } => gate_text(event),
        Event::StepSkipped { .. }
        | Event::StepStarted { .. }
        | Event::Retry { .. }
        | Event::HostFinished { .. }
        | Event::StepFinished { .. } => step_text(event),
        Event::RollbackStarted { .. }
        | Event::RollbackFinished { .. }
        | Event::RollbackNotRun { .. } => rollback_text(event),
        Event::Output { .. }
        | Event::ProbeAttempt { .. }
        | Event::ItemStarted { .. }
        | Event::ItemFinished { .. }
        | Event::RollbackItemStarted { .. }
        | Event::RollbackItemFinished { .. }
        | Event::RollbackAsked { .. } => None,
    }
}

/// The run's own lines: started, resumed, warnings, commits, finished.
fn run_text(event: &Event) -> Option<String> {
    Some(match event {
        Event::RunStarted { user, host, .. } => format!("run started by {user}@{host}"),
        Event::RunResumed {
            user,
            host,
            in_doubt,
        } => format!("run resumed by {user}@{host}{}", in_flight(in_doubt)),
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
        _ => return None,
    })
}

/// Gates, manual steps and asks: asked, waiting, answered.
fn gate_text(event: &Event) -> Option<String> {
    Some(match event {
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
            ..
        } => format!(
            "`{step}` answered by {user} ({}; {have} of {need})",
            word(by)
        ),
        Event::InputGiven { input, step, .. } => format!("input `{input}` given for `{step}`"),
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
        _ => return None,
    })
}

/// A step's lines: skipped, started, retried, finished (per host and in all).
fn step_text(event: &Event) -> Option<String> {
    Some(match event {
        Event::StepSkipped { step, reason } => format!("`{step}` skipped: {reason}"),
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
        _ => return None,
    })
}

/// A rollback's lines: started, finished, not run.
fn rollback_text(event: &Event) -> Option<String> {
    Some(match event {
        Event::RollbackStarted { step, reason } => {
            format!("rollback of `{step}` started ({reason})")
        }
        Event::RollbackFinished { step, status, .. } => {
            format!("rollback of `{step}` {}", status.as_str())
        }
        Event::RollbackNotRun { step, reason } => {
            format!("rollback of `{step}` NOT run: {reason}")
        }
        _ => return None,
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
