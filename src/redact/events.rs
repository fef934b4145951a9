//! Redaction of events and step results: free text only, never ids, tags or the values
//! `resume` restores.

use super::Redactor;
use crate::event::Event;

/// Masks secrets in an event's free text only (output lines, messages, reasons, errors,
/// rendered commands, comments, results' text). Ids, enum tags, input names and the values
/// resume restores are never passed to the redactor: a secret equal to `vault` or `step`
/// must not rewrite `"step":"halt-vault"` (secrets never enter those fields: they hold ids,
/// host names and non-secret inputs only).
pub(crate) fn redact_free_text(r: &Redactor, e: Event) -> Event {
    if r.is_empty() {
        return e;
    }
    let t = |s: String| r.text(&s);
    let o = |s: Option<String>| s.map(|s| r.text(&s));
    match e {
        Event::Output {
            step,
            host,
            stream,
            line,
        } => Event::Output {
            step,
            host,
            stream,
            line: t(line),
        },
        Event::StepSkipped { step, reason } => Event::StepSkipped {
            step,
            reason: t(reason),
        },
        Event::GateAsked {
            step,
            message,
            targets,
            preview,
            manual,
        } => Event::GateAsked {
            step,
            message: t(message),
            targets,
            preview: t(preview),
            manual,
        },
        Event::GateAnswered {
            step,
            decision,
            user,
            from_host,
            by,
            comment,
        } => Event::GateAnswered {
            step,
            decision,
            user,
            from_host,
            by,
            comment: o(comment),
        },
        e @ Event::AskAnswered { .. } => e,
        Event::StepStarted {
            step,
            attempt,
            host,
            item,
            command,
            item_index,
        } => Event::StepStarted {
            step,
            attempt,
            host,
            item,
            command: o(command),
            item_index,
        },
        Event::ProbeAttempt {
            step,
            attempt,
            value,
            satisfied,
        } => Event::ProbeAttempt {
            step,
            attempt,
            value: t(value),
            satisfied,
        },
        Event::Retry {
            step,
            attempt,
            delay_ms,
            reason,
        } => Event::Retry {
            step,
            attempt,
            delay_ms,
            reason: t(reason),
        },
        Event::HostFinished {
            step,
            host,
            status,
            exit_code,
            duration_ms,
            error,
        } => Event::HostFinished {
            step,
            host,
            status,
            exit_code,
            duration_ms,
            error: o(error),
        },
        Event::StepFinished {
            step,
            status,
            exit_code,
            duration_ms,
            error,
            mut outputs,
            mut result,
        } => {
            for v in outputs.values_mut() {
                r.json(v);
            }
            redact_result(r, &mut result);
            Event::StepFinished {
                step,
                status,
                exit_code,
                duration_ms,
                error: o(error),
                outputs,
                result,
            }
        }
        Event::ItemFinished {
            step,
            item_index,
            host,
            status,
            mut result,
        } => {
            redact_result(r, &mut result);
            Event::ItemFinished {
                step,
                item_index,
                host,
                status,
                result,
            }
        }
        Event::RollbackStarted { step, reason } => Event::RollbackStarted {
            step,
            reason: t(reason),
        },
        Event::RollbackFinished {
            step,
            status,
            duration_ms,
            error,
        } => Event::RollbackFinished {
            step,
            status,
            duration_ms,
            error: o(error),
        },
        Event::RollbackNotRun { step, reason } => Event::RollbackNotRun {
            step,
            reason: t(reason),
        },
        Event::RollbacksDischarged { by, steps } => Event::RollbacksDischarged {
            by: by.clone(),
            steps: steps.clone(),
        },
        Event::Warning { message } => Event::Warning {
            message: t(message),
        },
        Event::RunFinished {
            status,
            exit_code,
            reason,
            duration_ms,
            resumable,
        } => Event::RunFinished {
            status,
            exit_code,
            reason: t(reason),
            duration_ms,
            resumable,
        },
        // Ids, user and host names, non-secret inputs (secret ones are already masked in
        // `inputs` and absent from `values`), the answer command built from ids.
        e @ (Event::RunStarted { .. }
        | Event::RunResumed { .. }
        | Event::GateWaiting { .. }
        | Event::ItemStarted { .. }) => e,
    }
}

/// Keys of a step result that hold tags, not text: never redacted.
const RESULT_TAGS: &[&str] = &["outcome", "status", "skipped", "in_doubt", "attempt"];

/// Masks secrets in a step result's text, leaving its tags (`outcome: succeeded`) alone.
fn redact_result(r: &Redactor, v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if RESULT_TAGS.contains(&k.as_str()) && !v.is_object() && !v.is_array() {
                    continue;
                }
                redact_result(r, v);
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|v| redact_result(r, v)),
        other => r.json(other),
    }
}
