//! Redaction of events and step results: free text only, never ids, tags or the values
//! `resume` restores.

use super::Redactor;
use crate::event::Event;

/// Masks secrets in an event's free text only (output lines, messages, reasons, errors,
/// rendered commands, comments, results' text). Ids, enum tags, input names and the values
/// resume restores are never passed to the redactor: a secret equal to `vault` or `step`
/// must not rewrite `"step":"halt-vault"` (secrets never enter those fields: they hold ids,
/// host names and non-secret inputs only).
pub(crate) fn redact_free_text(r: &Redactor, mut e: Event) -> Event {
    if r.is_empty() {
        return e;
    }
    let t = |s: &mut String| *s = r.text(s);
    let o = |s: &mut Option<String>| {
        if let Some(s) = s {
            *s = r.text(s);
        }
    };
    // Every field is named (`_`: never redacted), so a new field is a decision to make here.
    match &mut e {
        Event::Output {
            step: _,
            host: _,
            stream: _,
            line,
        } => t(line),
        Event::StepSkipped { step: _, reason } => t(reason),
        Event::GateAsked {
            step: _,
            message,
            targets: _,
            preview,
            manual: _,
            rollback: _,
        } => {
            t(message);
            t(preview);
        }
        Event::GateAnswered {
            step: _,
            decision: _,
            user: _,
            from_host: _,
            by: _,
            comment,
        } => o(comment),
        Event::AskAnswered {
            step: _,
            user: _,
            by: _,
            have: _,
            need: _,
        } => {}
        Event::StepStarted {
            step: _,
            attempt: _,
            host: _,
            item: _,
            command,
            item_index: _,
        } => o(command),
        Event::ProbeAttempt {
            step: _,
            attempt: _,
            value,
            satisfied: _,
        } => t(value),
        Event::Retry {
            step: _,
            attempt: _,
            delay_ms: _,
            reason,
        } => t(reason),
        Event::HostFinished {
            step: _,
            host: _,
            status: _,
            exit_code: _,
            duration_ms: _,
            error,
        } => o(error),
        Event::StepFinished {
            step: _,
            status: _,
            exit_code: _,
            duration_ms: _,
            error,
            outputs,
            result,
        } => {
            for v in outputs.values_mut() {
                r.json(v);
            }
            redact_result(r, result);
            o(error);
        }
        Event::ItemFinished {
            step: _,
            item_index: _,
            host: _,
            status: _,
            result,
        } => redact_result(r, result),
        Event::RollbackStarted { reason, .. } | Event::RollbackAsked { reason, .. } => t(reason),
        Event::RollbackFinished {
            step: _,
            status: _,
            duration_ms: _,
            error,
        } => o(error),
        Event::RollbackNotRun { step: _, reason } => t(reason),
        Event::Warning { message } => t(message),
        Event::RunFinished {
            status: _,
            exit_code: _,
            reason,
            duration_ms: _,
            resumable: _,
        } => t(reason),
        // Ids, user and host names, non-secret inputs (secret ones are already masked in
        // `inputs` and absent from `values`), the answer command built from ids.
        Event::RollbacksDischarged { .. }
        | Event::RunStarted { .. }
        | Event::RunResumed { .. }
        | Event::GateWaiting { .. }
        | Event::ItemStarted { .. } => {}
    }
    e
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
