//! The end of a run's main steps: the `finally` steps (in order, whatever happened), the
//! signals that interrupt them, and what a failed step left done (for its rollback).

use std::sync::Arc;

use tokio::sync::watch;

use super::shared::Shared;
use super::{Prior, StepSummary};
use crate::event::{Event, StepStatus};

/// Signals (Ctrl-C, SIGTERM, SIGHUP) as a counter: each new one bumps it.
pub(super) struct Signals {
    pub(super) rx: watch::Receiver<u32>,
    /// The count already acted on.
    pub(super) seen: u32,
}

impl Signals {
    /// Waits for the next change; `false` when nobody can send any more.
    pub(super) async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }

    /// Whether a signal arrived since the last one acted on (and marks it seen).
    pub(super) fn take_new(&mut self) -> bool {
        let now = *self.rx.borrow_and_update();
        let new = now > self.seen;
        self.seen = self.seen.max(now);
        new
    }
}

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

/// Whether a failed step's result shows hosts or items that completed.
pub(crate) fn partly_done(result: &serde_json::Value) -> bool {
    ["hosts_succeeded", "items_succeeded"].iter().any(|k| {
        result
            .get(k)
            .and_then(serde_json::Value::as_array)
            .is_some_and(|a| !a.is_empty())
    })
}
