//! The `finally` steps: run in order after the main steps and any rollback, each decided by
//! its `when:` and gate like a main step, and never twice (a resumed run skips those done).

use std::sync::Arc;

use tokio::sync::watch;

use super::scheduler::Signals;
use super::shared::Shared;
use super::{Prior, StepSummary, gate};
use crate::event::{Decision, Event, StepStatus};
use crate::template::expression_source;

/// Runs the `finally` steps in order; a new signal cancels the one running.
pub(super) async fn run_finally(
    sh: &Arc<Shared>,
    prior: &Prior,
    signals: &mut Signals,
    cancel_tx: &watch::Sender<bool>,
) -> Vec<StepSummary> {
    signals.take_new();
    let rb = sh.env.rb.clone();
    let n = rb.steps.len();
    let mut summaries = Vec::new();
    for (k, step) in rb.finally.iter().enumerate() {
        // A finally step that ran before this engine (a run resumed or unwound again with
        // `runbook rollback` after its end) does not run twice.
        if let Some((status, _)) = prior.done.get(&step.id.name) {
            summaries.push(StepSummary {
                id: step.id.name.clone(),
                status: *status,
                duration_ms: 0,
                hosts: Vec::new(),
                error: None,
                error_kind: None,
            });
            continue;
        }
        // `when:` and `confirm:` hold for finally steps too (the plan says so).
        if let Some(skipped) = finally_guard(sh, n + k, signals).await {
            summaries.push(skipped);
            continue;
        }
        let fut = sh.executor.run_step(sh.clone(), n + k);
        tokio::pin!(fut);
        let run = loop {
            tokio::select! {
                r = &mut fut => break r,
                alive = signals.changed() => {
                    if !alive {
                        break (&mut fut).await;
                    }
                    if signals.take_new() {
                        let _ = cancel_tx.send(true);
                    }
                }
            }
        };
        if run.status != StepStatus::Succeeded {
            sh.emit(Event::Warning {
                message: format!(
                    "finally step `{}` {}: {}",
                    step.id.name,
                    run.status.as_str(),
                    run.error
                        .as_ref()
                        .map(|e| e.message.as_str())
                        .unwrap_or_default()
                ),
            });
        }
        summaries.push(StepSummary {
            id: step.id.name.clone(),
            status: run.status,
            duration_ms: run.duration.as_millis() as u64,
            hosts: run.hosts,
            error_kind: run.error.as_ref().map(|e| e.kind),
            error: run.error.map(|e| e.message),
        });
    }
    summaries
}

/// Decides a finally step's `when:` and asks its gate. `Some`: the step does not run, and
/// how it ended; `None`: run it.
async fn finally_guard(sh: &Arc<Shared>, i: usize, signals: &mut Signals) -> Option<StepSummary> {
    let step = sh.step(i).clone();
    let id = step.id.name.clone();
    let ended = |status: StepStatus, note: String| StepSummary {
        id: id.clone(),
        status,
        duration_ms: 0,
        hosts: Vec::new(),
        error: Some(note),
        error_kind: None,
    };
    if let Some(w) = &step.when {
        // An input it reads that nobody gave: asked now (headless: the step fails naming it).
        if let Err(e) = super::lazy_ask::ask_or_withdraw(sh, &step, Some(&w.src), signals).await {
            return Some(finally_not_run(
                sh,
                &id,
                StepStatus::Failed,
                &format!("`when` of step `{id}` cannot be evaluated: {e}"),
                ended,
            ));
        }
        match sh.env.eval_bool(w, Vec::new()) {
            Ok(true) => {}
            Ok(false) => {
                let reason = sh
                    .env
                    .redactor
                    .text(&format!("`{}` is false", expression_source(&w.src)));
                sh.skipped(&id, &reason);
                return Some(ended(StepStatus::Skipped, reason));
            }
            Err(e) => {
                return Some(finally_not_run(
                    sh,
                    &id,
                    StepStatus::Failed,
                    &format!("`when` of step `{id}` cannot be evaluated: {e}"),
                    ended,
                ));
            }
        }
    }
    if step.confirm.is_some() {
        // The gate shows what will run: the inputs it reads are asked first.
        if let Err(e) = super::lazy_ask::ask_or_withdraw(sh, &step, None, signals).await {
            return Some(finally_not_run(sh, &id, StepStatus::Failed, &e, ended));
        }
        let decision = tokio::select! {
            d = gate::ask_gate(sh, i, false) => d,
            _ = signals.changed() => {
                signals.take_new();
                Some(Decision::Aborted)
            }
        };
        let why = match decision {
            Some(Decision::Approved) => return None,
            Some(Decision::Declined) => "its gate was declined",
            Some(Decision::Aborted) => "the operator aborted at its gate",
            None => "nobody answered its gate and the run is ending",
        };
        let reason = format!("finally step `{id}` not run: {why}");
        sh.skipped(&id, &reason);
        sh.emit(Event::Warning {
            message: reason.clone(),
        });
        return Some(ended(StepStatus::NotRun, reason));
    }
    None
}

/// A finally step that could not even be decided: said as a warning, summarised as `status`.
fn finally_not_run(
    sh: &Shared,
    id: &str,
    status: StepStatus,
    reason: &str,
    ended: impl Fn(StepStatus, String) -> StepSummary,
) -> StepSummary {
    let reason = sh.env.redactor.text(reason);
    sh.emit(Event::StepFinished {
        step: id.to_string(),
        status,
        exit_code: None,
        duration_ms: 0,
        error: Some(reason.clone()),
        outputs: serde_json::Map::new(),
        result: serde_json::Value::Null,
    });
    sh.emit(Event::Warning {
        message: format!("finally step `{id}` failed: {reason}"),
    });
    ended(status, reason)
}
