//! The scheduler: starts steps as their `needs` finish, asks gates, unwinds on failure.
//!
//! Invariants that must stay true:
//! - No step starts after the run began stopping (failure, declined gate, signal, observer
//!   failure).
//! - A step's rollback is registered only once the step succeeded, and rollbacks run in
//!   reverse order of *completion* (not of the plan).
//! - A failing rollback never stops the unwinding; a second signal does, and the rollbacks
//!   left are reported as not run.
//! - Every event passes through the redactor before any observer sees it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use minijinja::value::Value;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::context::{Ctx, Results, result_entries};
use super::event::{AnsweredBy, Decision, Event, Stamped, StepStatus, Stream, now};
use super::redact::Redactor;
use super::runner::local::LocalRunner;
use super::runner::{Cancel, CommandRunner, CommandSpec, HttpRequest, LineSink, SshTarget};
use super::{GateRequest, Observer, Options, RollbackSummary, RunOutcome, Services, StepSummary};
use crate::exit::ExitStatus;
use crate::model::*;
use crate::plan::inputs::Inputs;
use crate::template::{SecretDisplay, Target, Templates, expression_source, to_value};
use crate::validate::step_var;

/// Rollbacks without their own timeout get this one: unwinding must not hang forever.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest pause between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What a resumed run already knows (empty for a fresh run).
#[derive(Debug, Clone, Default)]
pub struct Prior {
    /// Steps that finished before: status and result.
    pub done: HashMap<String, (StepStatus, serde_json::Value)>,
    /// Steps whose rollbacks are registered, in completion order.
    pub rollbacks: Vec<String>,
    /// Gates already approved (not asked again).
    pub approved: std::collections::HashSet<String>,
    /// Steps that were in flight: `true` re-runs them, `false` treats them as done.
    pub in_doubt: HashMap<String, bool>,
    /// The run was unwinding when it stopped: finish the rollback, run nothing new.
    pub unwinding: bool,
    /// Rollbacks that already ran.
    pub rolled_back: std::collections::HashSet<String>,
    /// Why the run started unwinding (`true`: declined or aborted, exit 3; `false`: a step
    /// failed, exit 1), when the journal says.
    pub unwind_cause: Option<(bool, String)>,
    /// This is a resumed run (emit `run-resumed`, not `run-started`).
    pub resumed: bool,
    /// `for_each` items not to run again, by step: their results (finished before, or in
    /// doubt and treated as done). Items not listed run.
    /// Keyed by item index and, for one host of a fan-out, the host.
    pub items_done: HashMap<String, HashMap<(usize, Option<String>), serde_json::Value>>,
}

/// Sends events to observers, redacted and stamped.
pub(crate) struct Emitter {
    observers: Vec<Box<dyn Observer>>,
    redactor: Arc<Redactor>,
    /// Set when a required observer (the journal) failed: the run must stop.
    failed: Option<String>,
}

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
pub(crate) fn redact_result(r: &Redactor, v: &mut serde_json::Value) {
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

impl Emitter {
    fn emit(&mut self, e: Event) {
        let event = redact_free_text(&self.redactor, e);
        let stamped = Stamped { at: now(), event };
        for o in &mut self.observers {
            if let Err(err) = o.on_event(&stamped)
                && o.required()
                && self.failed.is_none()
            {
                self.failed = Some(err);
            }
        }
    }
}

/// Sets a prompt's stop flag when dropped, so an abandoned prompt gives up.
struct WithdrawOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for WithdrawOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Why the run is stopping.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StopKind {
    Failed,
    Declined,
    Aborted,
    /// A gate nobody could answer: stop here, roll nothing back, resume later.
    Paused,
    EngineFailed,
}

struct Shared {
    rb: Arc<Runbook>,
    inputs: Arc<Inputs>,
    opts: Options,
    services: Services,
    templates: Templates,
    mask: Templates,
    redactor: Arc<Redactor>,
    emitter: Mutex<Emitter>,
    results: Results,
    cancel: Cancel,
    secret_env: Vec<(String, String)>,
    /// Environment variables of this process that hold a secret (`from_env`): no command
    /// inherits them.
    secret_sources: Vec<String>,
    run_json: serde_json::Value,
    local: LocalRunner,
    items_done: HashMap<String, HashMap<(usize, Option<String>), serde_json::Value>>,
}

impl Shared {
    fn emit(&self, e: Event) {
        if let Ok(mut em) = self.emitter.lock() {
            em.emit(e);
        }
    }

    fn observer_failure(&self) -> Option<String> {
        self.emitter.lock().ok().and_then(|e| e.failed.clone())
    }

    fn step(&self, i: usize) -> &Step {
        let main = self.rb.steps.len();
        if i < main {
            &self.rb.steps[i]
        } else {
            &self.rb.finally[i - main]
        }
    }

    fn ctx(&self) -> Ctx {
        Ctx::new(&self.inputs, &self.results, self.run_json.clone())
    }
}

/// How one step (all its items and hosts) ended.
#[derive(Debug, Clone)]
struct StepRun {
    index: usize,
    status: StepStatus,
    result: serde_json::Value,
    error: Option<String>,
    /// Set when the operator declined or aborted at a manual step.
    operator: Option<Decision>,
    /// A manual step nobody could confirm: the run pauses here (resumable).
    paused: bool,
    duration: Duration,
    hosts: Vec<String>,
}

/// Runs the runbook. Never panics on bad input; a failed step is an outcome, not an error.
pub async fn execute(
    rb: Arc<Runbook>,
    inputs: Arc<Inputs>,
    opts: Options,
    observers: Vec<Box<dyn Observer>>,
    services: Services,
    mut signals: watch::Receiver<u32>,
    prior: Prior,
) -> RunOutcome {
    let started = Instant::now();
    let redactor = Arc::new(Redactor::new(&inputs.secret_values()));
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let run_json = serde_json::json!({
        "id": opts.run_id,
        "user": opts.user,
        "host": opts.host,
        "runbook": rb.name,
        "status": "running",
    });
    let shared = Arc::new(Shared {
        templates: Templates::new(SecretDisplay::Reveal),
        mask: Templates::new(SecretDisplay::Mask),
        emitter: Mutex::new(Emitter {
            observers,
            redactor: redactor.clone(),
            failed: None,
        }),
        results: Results::default(),
        cancel: Cancel(cancel_rx),
        secret_env: inputs.secret_env(),
        secret_sources: inputs
            .values
            .iter()
            .filter_map(|r| match &r.source {
                crate::plan::inputs::InputSource::Env(name) if r.secret => Some(name.clone()),
                _ => None,
            })
            .chain(
                std::env::vars_os()
                    .filter_map(|(k, _)| k.into_string().ok())
                    .filter(|k| k.starts_with("RUNBOOK_SECRET_")),
            )
            .collect(),
        redactor,
        run_json,
        local: LocalRunner,
        items_done: prior.items_done.clone(),
        rb: rb.clone(),
        inputs: inputs.clone(),
        opts,
        services,
    });
    if prior.resumed {
        let mut in_doubt: Vec<(String, String)> = prior
            .in_doubt
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    if *v {
                        "re-run".to_string()
                    } else {
                        "treated as done".to_string()
                    },
                )
            })
            .collect();
        in_doubt.sort();
        shared.emit(Event::RunResumed {
            user: shared.opts.user.clone(),
            host: shared.opts.host.clone(),
            in_doubt,
        });
    } else {
        shared.emit(Event::RunStarted {
            run_id: shared.opts.run_id.clone(),
            runbook: rb.name.clone(),
            file: shared.opts.file.clone(),
            user: shared.opts.user.clone(),
            host: shared.opts.host.clone(),
            inputs: inputs
                .values
                .iter()
                .map(|r| (r.name.clone(), r.display()))
                .collect(),
            steps: rb.steps.len() + rb.finally.len(),
            dry_run: false,
            values: inputs
                .values
                .iter()
                .filter_map(|r| match &r.value {
                    crate::plan::inputs::InputValue::Plain(v) if !r.secret => {
                        Some((r.name.clone(), v.clone()))
                    }
                    _ => None,
                })
                .collect(),
            file_sha256: shared.opts.file_sha256.clone(),
            lock: shared.opts.lock.clone(),
        });
    }

    let n = rb.steps.len();
    let deps = crate::plan::step_deps(&rb);
    let order: Vec<usize> = crate::graph::waves(&deps)
        .map(|w| w.into_iter().flatten().collect())
        .unwrap_or_else(|_| (0..n).collect());
    let mut state: Vec<Option<StepStatus>> = vec![None; n];
    let mut summaries: Vec<Option<StepSummary>> = vec![None; n];
    let mut completed: Vec<usize> = Vec::new();
    let mut stop: Option<(StopKind, String)> = None;

    // A resumed run: restore what finished before.
    for (i, step) in rb.steps.iter().enumerate() {
        let rerun = prior.in_doubt.get(&step.id.name).copied();
        // Secret outputs are journaled masked: a step that made them runs again.
        if let Some((status, result)) = prior.done.get(&step.id.name)
            && rerun != Some(true)
            && step.secret_outputs.is_empty()
        {
            state[i] = Some(*status);
            shared.results.set(&step_var(&step.id.name), result);
            summaries[i] = Some(StepSummary {
                id: step.id.name.clone(),
                status: *status,
                duration_ms: 0,
                hosts: Vec::new(),
                error: Some("finished before resume".into()),
            });
        }
    }
    for id in &prior.rollbacks {
        if let Some(i) = rb.steps.iter().position(|s| &s.id.name == id) {
            completed.push(i);
        }
    }

    if prior.unwinding {
        stop = Some(match &prior.unwind_cause {
            Some((aborted, why)) => (
                if *aborted {
                    StopKind::Aborted
                } else {
                    StopKind::Failed
                },
                format!("{why} (unwinding resumed by a later engine)"),
            ),
            None => (
                StopKind::Failed,
                "the run was rolling back when it stopped; finishing the rollback".into(),
            ),
        });
    }
    let mut running: JoinSet<StepRun> = JoinSet::new();
    let mut seen_signals = *signals.borrow_and_update();
    loop {
        if stop.is_none()
            && let Some(err) = shared.observer_failure()
        {
            stop = Some((
                StopKind::EngineFailed,
                format!("the journal cannot be written: {err}"),
            ));
        }
        if stop.is_none() {
            let parallel = shared.opts.parallel.max(1);
            for &i in &order {
                if running.len() >= parallel || stop.is_some() {
                    break;
                }
                if state[i].is_some() {
                    continue;
                }
                let ready = deps[i].iter().all(|&d| {
                    matches!(state[d], Some(StepStatus::Succeeded | StepStatus::Skipped))
                        || (state[d] == Some(StepStatus::Failed) && rb.steps[d].continue_on_failure)
                });
                if !ready {
                    continue;
                }
                let step = &rb.steps[i];
                // `when`
                if let Some(w) = &step.when {
                    match eval_bool(&shared, w, Vec::new()) {
                        Ok(true) => {}
                        Ok(false) => {
                            let reason = format!("`{}` is false", expression_source(&w.src));
                            skip(&shared, i, &reason, &mut state, &mut summaries);
                            continue;
                        }
                        Err(e) => {
                            let reason = format!(
                                "`when` of step `{}` cannot be evaluated: {e}",
                                step.id.name
                            );
                            finish_failed(&shared, i, &reason, &mut state, &mut summaries);
                            stop = Some((StopKind::Failed, reason));
                            break;
                        }
                    }
                }
                // Gate
                if step.confirm.is_some() && !prior.approved.contains(&step.id.name) {
                    let decision = tokio::select! {
                        d = ask_gate(&shared, i, false) => d,
                        _ = signals.changed() => {
                            seen_signals = *signals.borrow_and_update();
                            Some(Decision::Aborted)
                        }
                    };
                    match decision {
                        Some(Decision::Approved) => {}
                        Some(Decision::Declined) => {
                            stop = Some((
                                StopKind::Declined,
                                format!("the operator declined the gate of `{}`", step.id.name),
                            ));
                            break;
                        }
                        Some(Decision::Aborted) => {
                            stop = Some((
                                StopKind::Aborted,
                                format!("the operator aborted at the gate of `{}`", step.id.name),
                            ));
                            break;
                        }
                        None => {
                            stop = Some((
                                StopKind::Paused,
                                format!("gate of `{}` is waiting for an answer", step.id.name),
                            ));
                            break;
                        }
                    }
                }
                state[i] = Some(StepStatus::NotRun); // placeholder: running
                let sh = shared.clone();
                running.spawn(async move { run_step(sh, i).await });
            }
        }
        if stop.is_some() {
            let _ = cancel_tx.send(true);
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            joined = running.join_next() => {
                let Some(joined) = joined else { continue };
                let run = match joined {
                    Ok(r) => r,
                    Err(e) => {
                        stop.get_or_insert((StopKind::EngineFailed, format!("internal error: a step task failed: {e}")));
                        continue;
                    }
                };
                let step = &rb.steps[run.index];
                state[run.index] = Some(run.status);
                summaries[run.index] = Some(StepSummary {
                    id: step.id.name.clone(),
                    status: run.status,
                    duration_ms: run.duration.as_millis() as u64,
                    hosts: run.hosts.clone(),
                    error: run.error.clone(),
                });
                shared.results.set_with_secrets(&step_var(&step.id.name), &run.result, &step.secret_outputs);
                if run.status == StepStatus::Succeeded {
                    completed.push(run.index);
                } else if stop.is_none() && !(run.status == StepStatus::Failed && step.continue_on_failure) {
                    let why = run.error.clone().unwrap_or_else(|| format!("step `{}` {}", step.id.name, run.status.as_str()));
                    stop = Some(match run.operator {
                        _ if run.paused => (StopKind::Paused, why),
                        Some(Decision::Declined) => (StopKind::Declined, why),
                        Some(Decision::Aborted) => (StopKind::Aborted, why),
                        _ if run.status == StepStatus::Cancelled => (StopKind::Aborted, why),
                        _ => (StopKind::Failed, format!("step `{}` failed: {why}", step.id.name)),
                    });
                }
            }
            _ = signals.changed() => {
                seen_signals = *signals.borrow_and_update();
                stop.get_or_insert((StopKind::Aborted, "interrupted by a signal (Ctrl-C / SIGTERM / SIGHUP)".into()));
            }
        }
    }

    // A journal that failed at any point (even under a step that then failed for that
    // reason) means fail-secure: nothing more runs, not even rollbacks; resume finishes.
    if let Some(err) = shared.observer_failure()
        && !matches!(stop, Some((StopKind::EngineFailed, _)))
    {
        stop = Some((
            StopKind::EngineFailed,
            format!("the journal cannot be written: {err}"),
        ));
    }
    // Unwind.
    let mut rollbacks = Vec::new();
    let mut rollback_incomplete = false;
    if let Some((kind, reason)) = &stop
        && *kind != StopKind::Paused
    {
        let stack: Vec<usize> = completed
            .iter()
            .rev()
            .copied()
            .filter(|&i| {
                rb.steps[i].rollback.is_some() && !prior.rolled_back.contains(&rb.steps[i].id.name)
            })
            .collect();
        let names: Vec<String> = stack.iter().map(|&i| rb.steps[i].id.name.clone()).collect();
        let go = if stack.is_empty() {
            false
        } else if shared.opts.no_rollback {
            shared.emit(Event::Warning {
                message: format!(
                    "--no-rollback: NOT undoing {} completed step(s): {}",
                    names.len(),
                    names.join(", ")
                ),
            });
            false
        } else if *kind == StopKind::EngineFailed {
            // Fail-secure: without a journal nothing more runs, not even rollbacks; they are
            // listed so a human (or `runbook resume` once the disk is fixed) can finish.
            false
        } else if shared.opts.confirm_rollback
            && matches!(kind, StopKind::Failed | StopKind::Declined)
        {
            // After Ctrl-C the operator has already said "stop": unwind without asking (a
            // prompt interrupted by the signal may still hold the terminal's next line).
            match &shared.services.prompter {
                Some(p) => {
                    // A signal while asking (Ctrl-C, the terminal closed) means "stop": the
                    // prompt is withdrawn and the run unwinds, as after any signal.
                    let p = p.clone();
                    let (n2, r2) = (names.clone(), reason.clone());
                    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let stop2 = stop.clone();
                    let _withdraw = WithdrawOnDrop(stop.clone());
                    let mut asked =
                        tokio::task::spawn_blocking(move || p.confirm_rollback(&n2, &r2, &stop2));
                    tokio::select! {
                        a = &mut asked => a.ok().flatten().unwrap_or(true),
                        _ = signals.changed() => {
                            seen_signals = *signals.borrow_and_update();
                            stop.store(true, std::sync::atomic::Ordering::SeqCst);
                            let _ = asked.await;
                            true
                        }
                    }
                }
                None => true,
            }
        } else {
            true
        };
        if !stack.is_empty() && !go {
            rollback_incomplete = true;
            let why = if shared.opts.no_rollback {
                "--no-rollback"
            } else if *kind == StopKind::EngineFailed {
                "the journal cannot be written; nothing more runs"
            } else {
                "the operator chose not to roll back"
            };
            for &i in &stack {
                let step = rb.steps[i].id.name.clone();
                shared.emit(Event::RollbackNotRun {
                    step: step.clone(),
                    reason: why.into(),
                });
                rollbacks.push(RollbackSummary {
                    step,
                    status: StepStatus::NotRun,
                    error: Some(why.into()),
                });
            }
        }
        if go {
            let (rb_cancel_tx, rb_cancel_rx) = watch::channel(false);
            let rb_cancel = Cancel(rb_cancel_rx);
            let mut interrupted = false;
            for &i in &stack {
                let step_id = rb.steps[i].id.name.clone();
                if let Some(err) = shared.observer_failure() {
                    // The journal failed during the unwinding: stop here (fail-secure);
                    // `resume` finishes the unwinding once the journal can be written.
                    let why = format!("the journal cannot be written ({err}); nothing more runs");
                    rollbacks.push(RollbackSummary {
                        step: step_id,
                        status: StepStatus::NotRun,
                        error: Some(why),
                    });
                    rollback_incomplete = true;
                    continue;
                }
                if interrupted {
                    shared.emit(Event::RollbackNotRun {
                        step: step_id.clone(),
                        reason: "stopped by a second signal".into(),
                    });
                    rollbacks.push(RollbackSummary {
                        step: step_id,
                        status: StepStatus::NotRun,
                        error: Some("stopped by a second signal".into()),
                    });
                    rollback_incomplete = true;
                    continue;
                }
                shared.emit(Event::RollbackStarted {
                    step: step_id.clone(),
                    reason: reason.clone(),
                });
                let t0 = Instant::now();
                let fut = run_rollback(&shared, i, rb_cancel.clone());
                tokio::pin!(fut);
                let (status, error) = loop {
                    tokio::select! {
                        r = &mut fut => break r,
                        _ = signals.changed() => {
                            let now_signals = *signals.borrow_and_update();
                            if now_signals > seen_signals {
                                interrupted = true;
                                let _ = rb_cancel_tx.send(true);
                            }
                        }
                    }
                };
                if status != StepStatus::Succeeded {
                    rollback_incomplete = true;
                }
                shared.emit(Event::RollbackFinished {
                    step: step_id.clone(),
                    status,
                    duration_ms: t0.elapsed().as_millis() as u64,
                    error: error.clone(),
                });
                rollbacks.push(RollbackSummary {
                    step: step_id,
                    status,
                    error,
                });
            }
        }
    }

    // Finally steps: after the unwinding, in order, whatever happened (success, failure,
    // decline, abort, Ctrl-C), each with its own timeout; not on a pause (they run at the
    // run's real end, after `resume`), nor when the journal is gone.
    let engine_failed = matches!(stop, Some((StopKind::EngineFailed, _)));
    let paused = matches!(stop, Some((StopKind::Paused, _)));
    let mut finally_summaries = Vec::new();
    if !engine_failed && !paused {
        // The main steps' cancellation must not cancel these: a new signal does.
        let _ = cancel_tx.send(false);
        seen_signals = seen_signals.max(*signals.borrow_and_update());
        for k in 0..rb.finally.len() {
            let i = n + k;
            // A finally step that ran before this engine (a run resumed or unwound again
            // with `runbook rollback` after its end) does not run twice.
            if let Some((status, _)) = prior.done.get(&rb.finally[k].id.name) {
                finally_summaries.push(StepSummary {
                    id: rb.finally[k].id.name.clone(),
                    status: *status,
                    duration_ms: 0,
                    hosts: Vec::new(),
                    error: None,
                });
                continue;
            }
            let fut = run_step(shared.clone(), i);
            tokio::pin!(fut);
            let run = loop {
                tokio::select! {
                    r = &mut fut => break r,
                    changed = signals.changed() => {
                        if changed.is_err() {
                            break (&mut fut).await;
                        }
                        if *signals.borrow_and_update() > seen_signals {
                            let _ = cancel_tx.send(true);
                        }
                    }
                }
            };
            if run.status != StepStatus::Succeeded {
                shared.emit(Event::Warning {
                    message: format!(
                        "finally step `{}` {}: {}",
                        rb.finally[k].id.name,
                        run.status.as_str(),
                        run.error.clone().unwrap_or_default()
                    ),
                });
            }
            finally_summaries.push(StepSummary {
                id: rb.finally[k].id.name.clone(),
                status: run.status,
                duration_ms: run.duration.as_millis() as u64,
                hosts: run.hosts,
                error: run.error,
            });
        }
    }

    if let Some(remote) = &shared.services.remote {
        remote.close().await;
    }

    if let Some(err) = shared.observer_failure()
        && !matches!(stop, Some((StopKind::EngineFailed, _)))
    {
        stop = Some((
            StopKind::EngineFailed,
            format!("the journal cannot be written: {err}"),
        ));
    }
    let (status, reason) = match &stop {
        None => (ExitStatus::Success, "all steps succeeded".to_string()),
        Some((StopKind::EngineFailed, r)) => (ExitStatus::EngineFailed, r.clone()),
        Some((_, r)) if rollback_incomplete => (
            ExitStatus::RollbackIncomplete,
            format!("{r}; rollback incomplete: needs a human"),
        ),
        Some((StopKind::Failed, r)) => (ExitStatus::StepFailed, r.clone()),
        Some((StopKind::Declined | StopKind::Aborted | StopKind::Paused, r)) => {
            (ExitStatus::Aborted, r.clone())
        }
    };
    let mut steps: Vec<StepSummary> = summaries
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            s.unwrap_or(StepSummary {
                id: rb.steps[i].id.name.clone(),
                status: StepStatus::NotRun,
                duration_ms: 0,
                hosts: Vec::new(),
                error: None,
            })
        })
        .collect();
    steps.extend(finally_summaries);
    shared.emit(Event::RunFinished {
        status,
        exit_code: status.code(),
        reason: reason.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
        // A run stopped because its journal could not be written resumes once it can.
        resumable: matches!(stop, Some((StopKind::Paused | StopKind::EngineFailed, _))),
    });
    RunOutcome {
        status,
        reason: shared.redactor.text(&reason),
        steps,
        rollbacks,
        run_id: shared.opts.run_id.clone(),
    }
}

fn skip(
    sh: &Shared,
    i: usize,
    reason: &str,
    state: &mut [Option<StepStatus>],
    summaries: &mut [Option<StepSummary>],
) {
    let id = sh.rb.steps[i].id.name.clone();
    sh.emit(Event::StepSkipped {
        step: id.clone(),
        reason: reason.into(),
    });
    let result = serde_json::json!({ "outcome": "skipped", "skipped": true, "reason": reason });
    sh.results.set(&step_var(&id), &result);
    settle(i, id, StepStatus::Skipped, reason, state, summaries);
}

/// Records how a step that never ran a command ended, for the scheduler and the summary.
fn settle(
    i: usize,
    id: String,
    status: StepStatus,
    reason: &str,
    state: &mut [Option<StepStatus>],
    summaries: &mut [Option<StepSummary>],
) {
    state[i] = Some(status);
    summaries[i] = Some(StepSummary {
        id,
        status,
        duration_ms: 0,
        hosts: Vec::new(),
        error: Some(reason.into()),
    });
}

fn finish_failed(
    sh: &Shared,
    i: usize,
    reason: &str,
    state: &mut [Option<StepStatus>],
    summaries: &mut [Option<StepSummary>],
) {
    let id = sh.rb.steps[i].id.name.clone();
    sh.emit(Event::StepFinished {
        step: id.clone(),
        status: StepStatus::Failed,
        exit_code: None,
        duration_ms: 0,
        error: Some(reason.into()),
        outputs: serde_json::Map::new(),
        result: serde_json::Value::Null,
    });
    settle(i, id, StepStatus::Failed, reason, state, summaries);
}

fn eval_bool(sh: &Shared, expr: &Tmpl, extra: Vec<(String, Value)>) -> Result<bool, String> {
    let ctx = sh.ctx().with(extra);
    sh.templates
        .eval(expression_source(&expr.src), &ctx)
        .map(|v| v.is_true())
        .map_err(|e| sh.redactor.text(&crate::template::describe_error(&e)))
}

/// The answer given in advance for step `id`, if any.
fn preanswered(sh: &Shared, id: &str, manual: bool) -> Option<(Decision, AnsweredBy)> {
    let a = &sh.opts.answers;
    if let Some(d) = a.file.get(id) {
        return Some((*d, AnsweredBy::AnswersFile));
    }
    if a.approve.contains(id) {
        return Some((Decision::Approved, AnsweredBy::ApproveFlag));
    }
    if a.yes && !manual {
        return Some((Decision::Approved, AnsweredBy::YesFlag));
    }
    None
}

/// Renders what a step will do, for the gate's "show details" (secrets masked).
fn preview(sh: &Shared, step: &Step) -> (Vec<String>, String) {
    let ctx = crate::plan::plan_context(&sh.inputs);
    let targets = crate::plan::targets(&sh.rb, &sh.mask, &ctx, step.body.on.as_ref())
        .map(|ts| {
            ts.iter()
                .map(|t| format!("{} ({})", t.host, t.destination()))
                .collect()
        })
        .unwrap_or_default();
    let action = crate::plan::plan_action(
        &sh.mask,
        &step.body.action,
        &step.body,
        &sh.ctx().with(vec![]),
    )
    .or_else(|_| crate::plan::plan_action(&sh.mask, &step.body.action, &step.body, &ctx));
    let text = match action {
        Ok(crate::plan::PlannedAction::Run { command, .. }) => command,
        Ok(crate::plan::PlannedAction::Http(r)) => format!("{} {}", r.method, r.url),
        Ok(crate::plan::PlannedAction::Manual { instructions }) => instructions,
        Ok(crate::plan::PlannedAction::Wait { until, .. }) => format!("wait until {until}"),
        Ok(crate::plan::PlannedAction::Checkpoint) => "(checkpoint)".into(),
        Err(e) => e.to_string(),
    };
    (targets, sh.redactor.text(&text))
}

/// Asks the gate (or manual step) of step `i`. `None`: nobody can answer now.
async fn ask_gate(sh: &Arc<Shared>, i: usize, manual: bool) -> Option<Decision> {
    let step = sh.step(i);
    let id = step.id.name.clone();
    let message = if manual {
        match &step.body.action {
            Action::Manual(t) => sh
                .templates
                .render(&t.src, &sh.ctx().with(vec![]), Target::Text)
                .unwrap_or_else(|e| {
                    format!(
                        "{}\n(could not render: {})",
                        t.src,
                        crate::template::describe_error(&e)
                    )
                }),
            _ => String::new(),
        }
    } else {
        step.confirm
            .as_ref()
            .map(|g| {
                sh.templates
                    .render(&g.text.src, &sh.ctx().with(vec![]), Target::Text)
                    .unwrap_or_else(|_| g.text.src.clone())
            })
            .unwrap_or_default()
    };
    let (targets, preview) = preview(sh, step);
    sh.emit(Event::GateAsked {
        step: id.clone(),
        message: message.clone(),
        targets: targets.clone(),
        preview: preview.clone(),
        manual,
    });
    let gate = if manual { None } else { step.confirm.as_ref() };
    let needed = gate.map_or(1, |g| g.approvals.max(1)) as usize;
    let other_approver = gate.is_some_and(|g| g.other_approver);
    let allowed: &[String] = gate.map_or(&[], |g| g.approvers.as_slice());
    let mut approvers: Vec<String> = Vec::new();
    // An answer given in advance, or on this terminal, is the operator's.
    // Set when an answer from elsewhere withdrew the terminal prompt: it is taken below at
    // once, without announcing a wait.
    let mut remote_first = false;
    let local = match preanswered(sh, &id, manual) {
        Some(a) => Some(a),
        None => match &sh.services.prompter {
            Some(p) => {
                let p = p.clone();
                let req = GateRequest {
                    step: id.clone(),
                    message: sh.redactor.text(&message),
                    targets,
                    preview,
                    manual,
                };
                // The prompt races answers from elsewhere (`runbook approve`): whichever
                // comes first wins; a remote answer withdraws the prompt and is taken below.
                let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let stop2 = stop.clone();
                let mut asked = tokio::task::spawn_blocking(move || p.ask_until(&req, &stop2));
                // When this gate is abandoned (a signal: the caller drops this future), the
                // prompt is withdrawn too: it must not keep the terminal (and the progress
                // display every later line goes through) waiting for a line nobody will type.
                let _withdraw = WithdrawOnDrop(stop.clone());
                let remote_dir = sh.opts.remote.as_ref().map(|r| r.run_dir.clone());
                let arrived = async {
                    let Some(dir) = remote_dir else {
                        return std::future::pending::<()>().await;
                    };
                    loop {
                        if crate::journal::answers::present(&dir, &id) {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                };
                let d = tokio::select! {
                    d = &mut asked => d.unwrap_or(Some(Decision::Aborted)),
                    () = arrived => {
                        stop.store(true, std::sync::atomic::Ordering::SeqCst);
                        let d = asked.await.unwrap_or(None);
                        remote_first = d.is_none();
                        d
                    }
                };
                d.map(|d| (d, AnsweredBy::Terminal))
            }
            None => None,
        },
    };
    if let Some((decision, by)) = local {
        sh.emit(Event::GateAnswered {
            step: id.clone(),
            decision,
            user: sh.opts.user.clone(),
            from_host: sh.opts.host.clone(),
            by,
            comment: None,
        });
        if decision != Decision::Approved {
            return Some(decision);
        }
        if other_approver {
            sh.emit(Event::Warning {
                message: format!("gate `{id}` needs an approver other than the operator ({}): waiting for another person", sh.opts.user),
            });
        } else if !crate::journal::answers::may_answer(allowed, &sh.opts.user) {
            sh.emit(Event::Warning {
                message: format!("gate `{id}` is answered by {}; the operator ({}) is not one of them: waiting for an approver", allowed.join(", "), sh.opts.user),
            });
        } else {
            approvers.push(sh.opts.user.clone());
        }
        if approvers.len() >= needed {
            return Some(Decision::Approved);
        }
    }
    // Remote answers: `runbook approve` from another terminal or machine.
    let remote = sh.opts.remote.as_ref();
    let how = match remote {
        Some(r) => {
            let more = if needed > 1 || other_approver {
                let who = if other_approver {
                    " (not the operator)"
                } else {
                    ""
                };
                format!(
                    "; {} approval(s) from distinct users needed{who}",
                    needed - approvers.len()
                )
            } else {
                String::new()
            };
            format!(
                "run `{} {id}` (or `runbook reject …`) from another terminal{more}",
                r.approve_cmd
            )
        }
        None if manual => format!(
            "a person must confirm this manual step: re-run on a terminal, or pass --approve {id} once it is done (or answer it in --answers FILE)"
        ),
        None => format!(
            "approve it with --approve {id} (or --yes for every gate), answer it in --answers FILE, or run on a terminal"
        ),
    };
    // `--no-wait` still takes answers already given (e.g. before `resume`).
    let present =
        |r: &&crate::execute::RemoteGates| crate::journal::answers::present(&r.run_dir, &id);
    let Some(remote) = remote.filter(|r| r.wait || present(r)) else {
        let how = match sh.opts.remote.as_ref() {
            Some(r) => format!(
                "{how}; or resume later with `{}` and answer then",
                r.approve_cmd
                    .replacen("runbook approve", "runbook resume", 1)
            ),
            None => how,
        };
        sh.emit(Event::GateWaiting {
            step: id.clone(),
            how_to_answer: how,
        });
        return None;
    };
    let limit = gate
        .and_then(|g| g.timeout)
        .unwrap_or(sh.rb.defaults.gate_timeout);
    if !remote_first {
        sh.emit(Event::GateWaiting {
            step: id.clone(),
            how_to_answer: format!(
                "{how} (waiting up to {})",
                crate::plan::human_duration(limit)
            ),
        });
    }
    let deadline = Instant::now() + limit;
    let mut seen = std::collections::HashSet::new();
    let mut cancel = sh.cancel.clone();
    while Instant::now() < deadline {
        let (answers, refused) =
            crate::journal::answers::take_checked(&remote.run_dir, &id, &mut seen);
        for r in refused {
            sh.emit(Event::Warning {
                message: format!("ignored {}: {}", r.path.display(), r.why),
            });
        }
        for a in answers {
            let decision = a.file.decision;
            if !crate::journal::answers::may_answer(allowed, &a.user) {
                sh.emit(Event::Warning {
                    message: format!(
                        "{} answered `{id}` but is not among its approvers ({}): ignored",
                        a.user,
                        allowed.join(", ")
                    ),
                });
                continue;
            }
            if decision == Decision::Approved {
                if other_approver && a.user == sh.opts.user {
                    sh.emit(Event::Warning { message: format!("approval of `{id}` by {} does not count: the approver must not be the operator", a.user) });
                    continue;
                }
                if approvers.contains(&a.user) {
                    sh.emit(Event::Warning {
                        message: format!(
                            "{} already approved `{id}`; approvals must come from distinct users",
                            a.user
                        ),
                    });
                    continue;
                }
                approvers.push(a.user.clone());
            }
            sh.emit(Event::GateAnswered {
                step: id.clone(),
                decision,
                user: a.user,
                from_host: a.file.host,
                by: AnsweredBy::Remote,
                comment: a.file.comment,
            });
            if decision != Decision::Approved {
                return Some(decision);
            }
            if approvers.len() >= needed {
                return Some(Decision::Approved);
            }
        }
        if !remote.wait {
            return None;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = cancel.cancelled() => return Some(Decision::Aborted),
        }
    }
    sh.emit(Event::Warning {
        message: format!(
            "nobody answered gate `{id}` within {}",
            crate::plan::human_duration(limit)
        ),
    });
    None
}

/// Resolves the SSH targets of `on:` with run-time values.
fn ssh_targets(sh: &Shared, on: &Named, ctx: &Value) -> Result<Vec<SshTarget>, String> {
    let render = |t: &Tmpl| {
        sh.templates
            .render(&t.src, ctx, Target::Text)
            .map_err(|e| crate::template::describe_error(&e))
    };
    // A rendered address or user must stay one host name: never an option or a second host.
    let checked = |t: &Tmpl, what: &str| -> Result<String, String> {
        let v = render(t)?;
        crate::template::check_host_part(what, &v)?;
        Ok(v)
    };
    let render = |t: &Tmpl| checked(t, "user");
    let address = |t: &Tmpl| checked(t, "host address");
    let resolve = |h: &Host| -> Result<SshTarget, String> {
        let jump = match &h.jump {
            Some(j) => Some(match sh.rb.host(&j.name) {
                Some(jh) => {
                    let user = jh.user.as_ref().map(&render).transpose()?;
                    crate::plan::destination(user.as_deref(), &address(&jh.address)?, jh.port)
                }
                None => j.name.clone(),
            }),
            None => None,
        };
        Ok(SshTarget {
            name: h.name.clone(),
            user: h.user.as_ref().map(&render).transpose()?,
            address: address(&h.address)?,
            port: h.port,
            jump,
            identity_file: h.identity_file.clone(),
            known_hosts: h.known_hosts.clone(),
        })
    };
    sh.rb
        .target_hosts(&on.name)
        .into_iter()
        .map(resolve)
        .collect()
}

/// The result of one execution of a body on one host.
struct Attempt {
    status: StepStatus,
    result: serde_json::Value,
    error: Option<String>,
    operator: Option<Decision>,
}

impl Attempt {
    fn failed(error: String) -> Attempt {
        Attempt {
            status: StepStatus::Failed,
            result: serde_json::json!({ "error": error }),
            error: Some(error),
            operator: None,
        }
    }
}

/// Runs step `i`: every item, every host, with retries; evaluates outputs.
async fn run_step(sh: Arc<Shared>, i: usize) -> StepRun {
    let t0 = Instant::now();
    let step = sh.step(i).clone();
    let id = step.id.name.clone();
    let mut run = StepRun {
        index: i,
        status: StepStatus::Succeeded,
        result: serde_json::Value::Null,
        error: None,
        operator: None,
        paused: false,
        duration: Duration::ZERO,
        hosts: Vec::new(),
    };

    if let Action::Manual(_) = step.body.action {
        match ask_gate(&sh, i, true).await {
            Some(Decision::Approved) => {}
            other => {
                let (status, op, why) = match other {
                    Some(Decision::Declined) => (
                        StepStatus::Failed,
                        Some(Decision::Declined),
                        format!("the operator reported manual step `{id}` not done"),
                    ),
                    Some(_) => (
                        StepStatus::Cancelled,
                        Some(Decision::Aborted),
                        format!("the operator aborted at manual step `{id}`"),
                    ),
                    None => (
                        StepStatus::NotRun,
                        Some(Decision::Aborted),
                        format!("manual step `{id}` is waiting for a person"),
                    ),
                };
                run.status = status;
                run.operator = op;
                run.paused = other.is_none();
                run.error = Some(why.clone());
                sh.emit(Event::StepFinished {
                    step: id,
                    status,
                    exit_code: None,
                    duration_ms: t0.elapsed().as_millis() as u64,
                    error: Some(why),
                    outputs: serde_json::Map::new(),
                    result: serde_json::Value::Null,
                });
                run.duration = t0.elapsed();
                return run;
            }
        }
    }

    // Items.
    let items: Vec<Option<Value>> = match &step.for_each {
        None => vec![None],
        Some(fe) => {
            let ctx = sh.ctx().with(vec![]);
            match sh.templates.eval(expression_source(&fe.items.src), &ctx) {
                Ok(v) => match v.try_iter() {
                    Ok(it) => it.map(Some).collect(),
                    Err(_) => {
                        return finish(
                            &sh,
                            run,
                            t0,
                            StepStatus::Failed,
                            serde_json::Value::Null,
                            Some("`for_each` is not a list".into()),
                        );
                    }
                },
                Err(e) => {
                    return finish(
                        &sh,
                        run,
                        t0,
                        StepStatus::Failed,
                        serde_json::Value::Null,
                        Some(format!(
                            "`for_each`: {}",
                            crate::template::describe_error(&e)
                        )),
                    );
                }
            }
        }
    };

    let mut item_results = Vec::new();
    let mut last = serde_json::Value::Null;
    let mut until_met = false;
    let mut final_status = StepStatus::Succeeded;
    let mut final_error = None;
    // `max_parallel` on a local `for_each` without `until` runs items concurrently; with
    // `until` they must run in order (each decides whether the next is needed).
    let concurrent = step.max_parallel.filter(|&p| p > 1).is_some()
        && step.body.on.is_none()
        && step.for_each.as_ref().is_some_and(|fe| fe.until.is_none())
        && items.len() > 1;
    if concurrent {
        let limit = step.max_parallel.unwrap_or(1) as usize;
        let mut set: JoinSet<(usize, ItemOutcome)> = JoinSet::new();
        let mut results: Vec<Option<serde_json::Value>> = vec![None; items.len()];
        let mut next = 0;
        loop {
            while set.len() < limit
                && next < items.len()
                && final_status == StepStatus::Succeeded
                && !sh.cancel.is_cancelled()
            {
                let k = next;
                next += 1;
                if let Some(done) = item_done(&sh, &step.id.name, k) {
                    results[k] = Some(done);
                    continue;
                }
                let (sh2, step2, item) = (sh.clone(), step.clone(), items[k].clone());
                set.spawn(async move {
                    let mut extra = Vec::new();
                    if let Some(item) = &item {
                        extra.push(("item".to_string(), item.clone()));
                        extra.push(("item_index".to_string(), Value::from(k)));
                    }
                    let label = item.as_ref().map(|v| sh2.redactor.text(&v.to_string()));
                    item_started(&sh2, &step2.id.name, k);
                    let out = run_item(&sh2, &step2, i, extra, label, k, true).await;
                    item_finished(&sh2, &step2.id.name, k, out.0, &out.1);
                    (k, out)
                });
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            if let Ok((k, (status, result, error, operator, _))) = joined {
                results[k] = Some(result);
                if status != StepStatus::Succeeded && final_status == StepStatus::Succeeded {
                    final_status = status;
                    final_error = error;
                    run.operator = operator;
                }
            }
        }
        if final_status == StepStatus::Succeeded && next < items.len() {
            final_status = StepStatus::Cancelled;
            final_error = Some("cancelled".into());
        }
        item_results = results.into_iter().flatten().collect();
        last = item_results
            .last()
            .cloned()
            .unwrap_or(serde_json::Value::Null);
    }
    for (k, item) in items.iter().enumerate().filter(|_| !concurrent) {
        if sh.cancel.is_cancelled() {
            final_status = StepStatus::Cancelled;
            final_error = Some("cancelled".into());
            break;
        }
        let mut extra = Vec::new();
        if let Some(item) = item {
            extra.push(("item".to_string(), item.clone()));
            extra.push(("item_index".to_string(), Value::from(k)));
        }
        let label = item.as_ref().map(|v| sh.redactor.text(&v.to_string()));
        let (status, result, error, operator, hosts) = match item_done(&sh, &step.id.name, k) {
            Some(done) => (StepStatus::Succeeded, done, None, None, Vec::new()),
            None => {
                if step.for_each.is_some() {
                    item_started(&sh, &step.id.name, k);
                }
                let out = run_item(&sh, &step, i, extra.clone(), label, k, items.len() > 1).await;
                if step.for_each.is_some() {
                    item_finished(&sh, &step.id.name, k, out.0, &out.1);
                }
                out
            }
        };
        run.hosts = hosts;
        last = result.clone();
        item_results.push(result.clone());
        if status != StepStatus::Succeeded {
            final_status = status;
            final_error = error;
            run.operator = operator;
            break;
        }
        if let Some(u) = step.for_each.as_ref().and_then(|fe| fe.until.as_ref()) {
            let mut ex = extra.clone();
            ex.extend(result_entries(&result, 1));
            match eval_bool(&sh, u, ex) {
                Ok(true) => {
                    until_met = true;
                    break;
                }
                Ok(false) => {}
                Err(e) => {
                    final_status = StepStatus::Failed;
                    final_error = Some(format!("`for_each.until`: {e}"));
                    break;
                }
            }
        }
    }
    if final_status == StepStatus::Succeeded
        && let Some(fe) = &step.for_each
        && let Some(u) = &fe.until
        && !until_met
    {
        final_status = StepStatus::Failed;
        final_error = Some(format!(
            "ran out of items after {} of {} without `{}` becoming true",
            item_results.len(),
            items.len(),
            expression_source(&u.src)
        ));
    }
    let mut result = match last {
        serde_json::Value::Object(m) => serde_json::Value::Object(m),
        other => serde_json::json!({ "value": other }),
    };
    if step.for_each.is_some()
        && let serde_json::Value::Object(m) = &mut result
    {
        m.insert("items".into(), serde_json::Value::Array(item_results));
    }
    // Outputs.
    let mut outputs = serde_json::Map::new();
    if final_status == StepStatus::Succeeded {
        for (name, expr) in &step.outputs {
            match sh.templates.eval(
                expression_source(&expr.src),
                &sh.ctx().with(result_entries(&result, 1)),
            ) {
                Ok(v) => {
                    outputs.insert(
                        name.name.clone(),
                        serde_json::to_value(&v).unwrap_or(serde_json::Value::Null),
                    );
                }
                Err(e) => {
                    final_status = StepStatus::Failed;
                    final_error = Some(format!(
                        "output `{}`: {}",
                        name.name,
                        crate::template::describe_error(&e)
                    ));
                    break;
                }
            }
        }
    }
    // Secret outputs: masked from here on, everywhere.
    let learnt: Vec<String> = step
        .secret_outputs
        .iter()
        .filter_map(|n| outputs.get(n))
        .map(super::context::json_text)
        .collect();
    sh.redactor.add(&learnt);
    if let serde_json::Value::Object(m) = &mut result {
        m.insert("outputs".into(), serde_json::Value::Object(outputs));
        m.insert(
            "outcome".into(),
            serde_json::Value::String(final_status.as_str().into()),
        );
    }
    finish(&sh, run, t0, final_status, result, final_error)
}

/// The `for_each` item index in a step's context, if any.
fn item_index_of(ctx: &Value) -> Option<usize> {
    ctx.get_attr("item_index")
        .ok()
        .and_then(|v| usize::try_from(v).ok())
}

/// The result of item `k` of step `id` when a resumed run must not run it again.
fn item_done(sh: &Shared, id: &str, k: usize) -> Option<serde_json::Value> {
    sh.items_done
        .get(id)
        .and_then(|m| m.get(&(k, None)))
        .cloned()
}

/// The result of host `host` of item `k` of a fan-out step when it must not run again.
fn host_done(sh: &Shared, id: &str, k: usize, host: &str) -> Option<serde_json::Value> {
    sh.items_done
        .get(id)
        .and_then(|m| m.get(&(k, Some(host.to_string()))))
        .cloned()
}

fn item_started(sh: &Shared, id: &str, k: usize) {
    unit_started(sh, id, k, None);
}

fn unit_started(sh: &Shared, id: &str, k: usize, host: Option<String>) {
    sh.emit(Event::ItemStarted {
        step: id.to_string(),
        item_index: k,
        host,
    });
}

fn item_finished(sh: &Shared, id: &str, k: usize, status: StepStatus, result: &serde_json::Value) {
    unit_finished(sh, id, k, None, status, result);
}

fn unit_finished(
    sh: &Shared,
    id: &str,
    k: usize,
    host: Option<String>,
    status: StepStatus,
    result: &serde_json::Value,
) {
    let mut result = result.clone();
    if sh
        .rb
        .steps
        .iter()
        .chain(sh.rb.finally.iter())
        .find(|s| s.id.name == id)
        .is_some_and(is_sensitive)
    {
        hide_response(&mut result);
    }
    sh.emit(Event::ItemFinished {
        step: id.to_string(),
        item_index: k,
        host,
        status,
        result,
    });
}

/// Whether a step's HTTP response must stay out of events, the journal and transcripts.
fn is_sensitive(step: &Step) -> bool {
    match &step.body.action {
        Action::Http(h) => h.sensitive,
        Action::Wait(w) => matches!(&w.probe, Probe::Http(h) if h.sensitive),
        _ => false,
    }
}

/// Replaces a response's body, JSON and headers (and every item's) with a note.
fn hide_response(result: &mut serde_json::Value) {
    if let serde_json::Value::Object(m) = result {
        for k in ["body", "json", "headers"] {
            if m.contains_key(k) {
                m.insert(
                    k.into(),
                    serde_json::Value::String("<sensitive: not recorded>".into()),
                );
            }
        }
        if let Some(serde_json::Value::Array(items)) = m.get_mut("items") {
            items.iter_mut().for_each(hide_response);
        }
    }
}

fn finish(
    sh: &Shared,
    mut run: StepRun,
    t0: Instant,
    status: StepStatus,
    result: serde_json::Value,
    error: Option<String>,
) -> StepRun {
    let error = error.map(|e| sh.redactor.text(&e));
    let outputs = result
        .get("outputs")
        .and_then(|o| o.as_object())
        .cloned()
        .unwrap_or_default();
    let exit_code = result
        .get("exit_code")
        .and_then(serde_json::Value::as_i64)
        .map(|c| c as i32);
    // The emitter redacts the result's text (not its tags).
    let mut redacted = result.clone();
    if is_sensitive(sh.step(run.index)) {
        hide_response(&mut redacted);
    }
    sh.emit(Event::StepFinished {
        step: sh.step(run.index).id.name.clone(),
        status,
        exit_code,
        duration_ms: t0.elapsed().as_millis() as u64,
        error: error.clone(),
        outputs,
        result: redacted,
    });
    run.status = status;
    run.result = result;
    run.error = error;
    run.duration = t0.elapsed();
    run
}

type ItemOutcome = (
    StepStatus,
    serde_json::Value,
    Option<String>,
    Option<Decision>,
    Vec<String>,
);

/// One item of a step: locally, on one host, or fanned out over a group.
async fn run_item(
    sh: &Arc<Shared>,
    step: &Step,
    i: usize,
    extra: Vec<(String, Value)>,
    item: Option<String>,
    k: usize,
    many: bool,
) -> ItemOutcome {
    let ctx = sh.ctx().with(extra.clone());
    let targets = match &step.body.on {
        None => None,
        Some(on) => match ssh_targets(sh, on, &ctx) {
            Ok(t) => Some(t),
            Err(e) => {
                return (
                    StepStatus::Failed,
                    serde_json::Value::Null,
                    Some(format!("cannot resolve hosts: {e}")),
                    None,
                    Vec::new(),
                );
            }
        },
    };
    let log_item = if many { Some(k) } else { None };
    let Some(targets) = targets else {
        let a = attempts(sh, step, &step.body, i, &extra, None, item, log_item).await;
        return (a.status, a.result, a.error, a.operator, Vec::new());
    };
    let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    if targets.len() == 1 {
        let t = targets.into_iter().next();
        let a = attempts(sh, step, &step.body, i, &extra, t, item, log_item).await;
        return (a.status, a.result, a.error, a.operator, names);
    }
    // Fan-out: batches of `serial` hosts, `max_parallel` at once inside a batch; past
    // `max_failures` failed hosts no new host starts.
    let total = targets.len();
    let allowed = step.max_failures.map_or(0, |m| m.allowed(total));
    let parallel = step.max_parallel.map_or(total, |p| p as usize).max(1);
    let batch = step.serial.map_or(total, |s| s as usize).max(1);
    let mut per_host = serde_json::Map::new();
    let mut failures: Vec<String> = Vec::new();
    let mut not_started = Vec::new();
    let mut operator = None;
    'batches: for chunk in targets.chunks(batch) {
        let mut set: JoinSet<(String, Attempt)> = JoinSet::new();
        let mut queue = chunk.iter().cloned();
        loop {
            while set.len() < parallel && failures.len() <= allowed && !sh.cancel.is_cancelled() {
                let Some(t) = queue.next() else { break };
                if let Some(done) = host_done(sh, &step.id.name, k, &t.name) {
                    // Finished before the engine stopped (or in doubt and treated as done).
                    per_host.insert(t.name.clone(), done);
                    continue;
                }
                let (sh2, step2, extra2, item2) =
                    (sh.clone(), step.clone(), extra.clone(), item.clone());
                set.spawn(async move {
                    let name = t.name.clone();
                    unit_started(&sh2, &step2.id.name, k, Some(name.clone()));
                    let a = attempts(
                        &sh2,
                        &step2,
                        &step2.body,
                        i,
                        &extra2,
                        Some(t),
                        item2,
                        log_item,
                    )
                    .await;
                    unit_finished(
                        &sh2,
                        &step2.id.name,
                        k,
                        Some(name.clone()),
                        a.status,
                        &a.result,
                    );
                    (name, a)
                });
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            if let Ok((name, a)) = joined {
                if a.status != StepStatus::Succeeded {
                    failures.push(format!(
                        "{name}: {}",
                        a.error.clone().unwrap_or_else(|| a.status.as_str().into())
                    ));
                    operator = operator.or(a.operator);
                }
                per_host.insert(name, a.result);
            }
        }
        not_started.extend(queue.map(|t| t.name));
        if failures.len() > allowed || sh.cancel.is_cancelled() {
            break 'batches;
        }
    }
    let started: std::collections::HashSet<&String> = per_host.keys().collect();
    for t in &names {
        if !started.contains(t) && !not_started.contains(t) {
            not_started.push(t.clone());
        }
    }
    let result = serde_json::json!({ "hosts": per_host, "failed": failures.len(), "not_started": not_started });
    if failures.len() > allowed {
        let mut msg = format!(
            "{} of {total} hosts failed (max_failures {allowed}): {}",
            failures.len(),
            failures.join("; ")
        );
        if !not_started.is_empty() {
            msg.push_str(&format!("; not started: {}", not_started.join(", ")));
        }
        (StepStatus::Failed, result, Some(msg), operator, names)
    } else if sh.cancel.is_cancelled() && !not_started.is_empty() {
        (
            StepStatus::Cancelled,
            result,
            Some("cancelled".into()),
            operator,
            names,
        )
    } else {
        (StepStatus::Succeeded, result, None, operator, names)
    }
}

/// Runs a body with the step's retries and backoff, checking expectations each time.
#[allow(clippy::too_many_arguments)]
async fn attempts(
    sh: &Arc<Shared>,
    step: &Step,
    body: &Body,
    i: usize,
    extra: &[(String, Value)],
    target: Option<SshTarget>,
    item: Option<String>,
    log_item: Option<usize>,
) -> Attempt {
    let host_name = target.as_ref().map(|t| t.name.clone());
    let max = step.retries + 1;
    let mut delay = step.backoff;
    let mut attempt = 1;
    loop {
        let mut ex = extra.to_vec();
        if let Some(t) = &target {
            ex.push(("host".into(), to_value(serde_json::json!({ "name": t.name, "address": t.address, "user": t.user, "port": t.port }))));
        }
        let mut log = step.id.name.clone();
        if let Some(h) = &host_name {
            log.push_str(&format!(".{h}"));
        }
        if let Some(k) = log_item {
            log.push_str(&format!(".item{k}"));
        }
        if attempt > 1 {
            log.push_str(&format!(".try{attempt}"));
        }
        let a = run_body(
            sh,
            step,
            body,
            i,
            ex.clone(),
            target.clone(),
            item.clone(),
            attempt,
            &log,
        )
        .await;
        let a = if a.status == StepStatus::Succeeded {
            check_expect(sh, step, body, a, ex)
        } else {
            a
        };
        if a.status == StepStatus::Succeeded
            || attempt >= max
            || a.operator.is_some()
            || a.status == StepStatus::Cancelled
            || sh.cancel.is_cancelled()
        {
            if let Some(h) = &host_name
                && step.body.on.is_some()
            {
                sh.emit(Event::HostFinished {
                    step: step.id.name.clone(),
                    host: h.clone(),
                    status: a.status,
                    exit_code: a
                        .result
                        .get("exit_code")
                        .and_then(serde_json::Value::as_i64)
                        .map(|c| c as i32),
                    duration_ms: a
                        .result
                        .get("duration_ms")
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0),
                    error: a.error.clone(),
                });
            }
            return a;
        }
        sh.emit(Event::Retry {
            step: step.id.name.clone(),
            attempt: attempt + 1,
            delay_ms: delay.as_millis() as u64,
            reason: a.error.clone().unwrap_or_else(|| a.status.as_str().into()),
        });
        let mut c = sh.cancel.clone();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = c.cancelled() => return a,
        }
        delay = (delay * 2).min(MAX_BACKOFF);
        attempt += 1;
    }
}

fn line_sink(sh: &Arc<Shared>, step: &str, host: Option<String>) -> LineSink {
    let sh = sh.clone();
    let step = step.to_string();
    Arc::new(move |stream: Stream, line: String| {
        sh.emit(Event::Output {
            step: step.clone(),
            host: host.clone(),
            stream,
            line,
        });
    })
}

fn render(
    sh: &Shared,
    t: &Tmpl,
    ctx: &Value,
    target: Target,
    what: &str,
) -> Result<String, String> {
    match target {
        Target::Text => {
            let (text, derived) = sh
                .templates
                .render_text(&t.src, ctx)
                .map_err(|e| format!("{what}: {}", crate::template::describe_error(&e)))?;
            // Values computed from a secret are secrets: masked wherever they show up.
            sh.redactor.add(&derived);
            Ok(text)
        }
        Target::Shell => sh
            .templates
            .render(&t.src, ctx, target)
            .map_err(|e| format!("{what}: {}", crate::template::describe_error(&e))),
    }
}

/// Renders a shell command: values travel in the environment, never in the text. The
/// command also gets the secrets it names literally (`$RUNBOOK_SECRET_X`), and no others.
fn render_command(
    sh: &Shared,
    t: &Tmpl,
    ctx: &Value,
    what: &str,
) -> Result<crate::template::ShellCommand, String> {
    let mut cmd = sh
        .templates
        .render_command(&t.src, ctx)
        .map_err(|e| format!("{what}: {}", crate::template::describe_error(&e)))?;
    for (k, v) in &sh.secret_env {
        if t.src.contains(k.as_str()) && !cmd.env.iter().any(|(n, _)| n == k) {
            cmd.env.push((k.clone(), v.clone()));
        }
    }
    Ok(cmd)
}

/// Runs a body once.
#[allow(clippy::too_many_arguments)]
async fn run_body(
    sh: &Arc<Shared>,
    step: &Step,
    body: &Body,
    _i: usize,
    extra: Vec<(String, Value)>,
    target: Option<SshTarget>,
    item: Option<String>,
    attempt: u32,
    log: &str,
) -> Attempt {
    let ctx = sh.ctx().with(extra.clone());
    match &body.action {
        Action::Run(cmd) => {
            let command = match render_command(sh, cmd, &ctx, "command") {
                Ok(c) => c,
                Err(e) => return Attempt::failed(e),
            };
            run_command(
                sh,
                step,
                body,
                &ctx,
                command,
                target,
                item,
                attempt,
                log,
                sh.cancel.clone(),
            )
            .await
        }
        Action::Http(h) => {
            run_http(sh, step, h, &ctx, item, attempt, sh.cancel.clone(), true).await
        }
        Action::Wait(w) => run_wait(sh, step, body, w, extra, target, log, sh.cancel.clone()).await,
        Action::Manual(_) | Action::Checkpoint => Attempt {
            status: StepStatus::Succeeded,
            result: serde_json::json!({ "confirmed": true }),
            error: None,
            operator: None,
        },
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_command(
    sh: &Arc<Shared>,
    step: &Step,
    body: &Body,
    ctx: &Value,
    command: crate::template::ShellCommand,
    target: Option<SshTarget>,
    item: Option<String>,
    attempt: u32,
    log: &str,
    cancel: Cancel,
) -> Attempt {
    let crate::template::ShellCommand {
        command,
        mut env,
        derived_secrets,
    } = command;
    // Values computed from a secret are secrets: masked before anything can print them.
    sh.redactor.add(&derived_secrets);
    env.push(("RUNBOOK_RUN_ID".into(), sh.opts.run_id.clone()));
    env.push(("RUNBOOK_STEP".into(), step.id.name.clone()));
    for (k, v) in &body.env {
        match render(sh, v, ctx, Target::Text, &format!("env {k}")) {
            Ok(v) => env.push((k.clone(), v)),
            Err(e) => return Attempt::failed(e),
        }
    }
    let stdin = match &body.stdin {
        Some(s) => match render(sh, s, ctx, Target::Text, "stdin") {
            Ok(v) => Some(v),
            Err(e) => return Attempt::failed(e),
        },
        None => None,
    };
    let host = target.as_ref().map(|t| t.name.clone());
    sh.emit(Event::StepStarted {
        step: step.id.name.clone(),
        attempt,
        host: host.clone(),
        item,
        command: Some(command.clone()),
        item_index: item_index_of(ctx),
    });
    if let Some(err) = sh.observer_failure() {
        return Attempt::failed(format!(
            "not started: the journal cannot be written ({err})"
        ));
    }
    let spec = CommandSpec {
        command,
        env,
        env_remove: sh.secret_sources.clone(),
        stdin,
        timeout: body.timeout,
        log_base: Some(sh.opts.run_dir.join("steps").join(log)),
        redactor: Some(sh.redactor.clone()),
    };
    let sink = line_sink(sh, &step.id.name, host);
    let outcome = match &target {
        None => sh.local.run(spec, sink, cancel).await,
        Some(t) => match &sh.services.remote {
            Some(r) => r.runner(t).run(spec, sink, cancel).await,
            None => {
                return Attempt::failed(format!(
                    "host {}: SSH is not available in this build",
                    t.name
                ));
            }
        },
    };
    let json = serde_json::from_str::<serde_json::Value>(outcome.stdout.trim()).ok();
    let result = serde_json::json!({
        "stdout": outcome.stdout,
        "stderr": outcome.stderr,
        "exit_code": outcome.exit_code,
        "signal": outcome.signal,
        "json": json,
        "duration_ms": outcome.duration.as_millis() as u64,
        "attempt": attempt,
    });
    let where_ = target
        .as_ref()
        .map_or(String::new(), |t| format!(" on {}", t.destination()));
    if let Some(e) = outcome.error {
        return Attempt {
            status: StepStatus::Failed,
            result,
            error: Some(e),
            operator: None,
        };
    }
    if outcome.timed_out {
        let t = body
            .timeout
            .map(crate::plan::human_duration)
            .unwrap_or_default();
        return Attempt {
            status: StepStatus::TimedOut,
            result,
            error: Some(format!(
                "timed out after {t}{where_}; the command was stopped"
            )),
            operator: None,
        };
    }
    if outcome.cancelled {
        return Attempt {
            status: StepStatus::Cancelled,
            result,
            error: Some(format!("cancelled{where_}; the command was stopped")),
            operator: None,
        };
    }
    Attempt {
        status: StepStatus::Succeeded,
        result,
        error: None,
        operator: None,
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_http(
    sh: &Arc<Shared>,
    step: &Step,
    h: &HttpSpec,
    ctx: &Value,
    item: Option<String>,
    attempt: u32,
    cancel: Cancel,
    echo: bool,
) -> Attempt {
    let Some(client) = &sh.services.http else {
        return Attempt::failed("HTTP is not available in this build".into());
    };
    let req = match http_request(sh, h, ctx) {
        Ok(r) => r,
        Err(e) => return Attempt::failed(e),
    };
    sh.emit(Event::StepStarted {
        step: step.id.name.clone(),
        attempt,
        host: None,
        item,
        command: Some(format!("{} {}", req.method, req.url)),
        item_index: item_index_of(ctx),
    });
    if let Some(err) = sh.observer_failure() {
        return Attempt::failed(format!("not sent: the journal cannot be written ({err})"));
    }
    let timeout = h.timeout.or(step.body.timeout);
    let req = super::runner::HttpRequest { timeout, ..req };
    match client.send(req, cancel).await {
        Ok(resp) => {
            // Wait probes report through `probe-attempt` events instead.
            if echo {
                // A sensitive response is neither summarised nor kept in the step log.
                let (summary, log) = if h.sensitive {
                    ("(sensitive: response not shown)".to_string(), String::new())
                } else {
                    (
                        super::readable::http_summary(
                            resp.status,
                            &resp.headers,
                            &resp.body,
                            resp.json.as_ref(),
                            &http_fields(step),
                        ),
                        http_body_log(sh, step, attempt, &resp.body),
                    )
                };
                sh.emit(Event::Output {
                    step: step.id.name.clone(),
                    host: None,
                    stream: Stream::Stdout,
                    line: format!("{summary}{log}"),
                });
            }
            Attempt {
                status: StepStatus::Succeeded,
                result: serde_json::json!({
                    "status": resp.status,
                    "headers": resp.headers.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
                    "body": resp.body,
                    "json": resp.json,
                    "duration_ms": resp.duration.as_millis() as u64,
                    "attempt": attempt,
                }),
                error: None,
                operator: None,
            }
        }
        Err(e) => Attempt::failed(e),
    }
}

/// The JSON fields an HTTP step reads (its `expect.json`, `expect.that` and outputs).
fn http_fields(step: &Step) -> Vec<String> {
    let mut fields: Vec<String> = step.expect.json.iter().map(|(p, _)| p.clone()).collect();
    let sources = step
        .expect
        .that
        .iter()
        .map(|t| t.src.as_str())
        .chain(step.outputs.iter().map(|(_, t)| t.src.as_str()));
    for p in super::readable::json_paths(sources) {
        if !fields.contains(&p) {
            fields.push(p);
        }
    }
    fields
}

/// Writes an HTTP response body (redacted) to the step's log; ` (body: PATH)` when it did.
fn http_body_log(sh: &Shared, step: &Step, attempt: u32, body: &str) -> String {
    use std::io::Write;
    if body.is_empty() {
        return String::new();
    }
    let path = sh
        .opts
        .run_dir
        .join("steps")
        .join(format!("{}.http{attempt}.body.log", step.id.name));
    match crate::execute::capture::open_private(&path)
        .and_then(|mut f| f.write_all(sh.redactor.text(body).as_bytes()))
    {
        Ok(()) => format!(" (full body: {})", path.display()),
        Err(_) => String::new(),
    }
}

/// Renders an `http` spec into a request (secrets revealed: only the client sees them).
fn http_request(sh: &Shared, h: &HttpSpec, ctx: &Value) -> Result<HttpRequest, String> {
    let pairs = |list: &[(String, Tmpl)], what: &str| -> Result<Vec<(String, String)>, String> {
        list.iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    render(sh, v, ctx, Target::Text, &format!("{what} {k}"))?,
                ))
            })
            .collect()
    };
    let path = |t: &Option<Tmpl>, what: &str| -> Result<Option<std::path::PathBuf>, String> {
        t.as_ref()
            .map(|t| render(sh, t, ctx, Target::Text, what).map(Into::into))
            .transpose()
    };
    let (body, json_body) = match &h.body {
        Some(HttpBody::Raw(t)) => (
            Some(render(sh, t, ctx, Target::Text, "body")?.into_bytes()),
            false,
        ),
        Some(HttpBody::Json(j)) => (Some(json_body(sh, j, ctx)?.to_string().into_bytes()), true),
        None => (None, false),
    };
    let headers = pairs(&h.headers, "header")?;
    // A header whose value the redactor would mask holds a secret (or a value derived from one).
    let secret_headers = headers
        .iter()
        .filter(|(_, v)| sh.redactor.mask_text(v) != v.as_str())
        .map(|(k, _)| k.clone())
        .collect();
    Ok(HttpRequest {
        method: h.method.clone(),
        url: {
            let url = sh
                .templates
                .render_url(&h.url.src, ctx)
                .map_err(|e| format!("url: {}", crate::template::describe_error(&e)))?;
            sh.redactor.add(&crate::template::take_derived_secrets());
            url
        },
        headers,
        secret_headers,
        query: pairs(&h.query, "query")?,
        body,
        json_body,
        timeout: h.timeout,
        follow_redirects: h.follow_redirects,
        ca_cert: path(&h.ca_cert, "ca_cert")?,
        client_cert: path(&h.client_cert, "client_cert")?,
        client_key: path(&h.client_key, "client_key")?,
        insecure: h.insecure,
    })
}

fn json_body(sh: &Shared, j: &JsonTmpl, ctx: &Value) -> Result<serde_json::Value, String> {
    Ok(match j {
        JsonTmpl::Null => serde_json::Value::Null,
        JsonTmpl::Bool(b) => serde_json::Value::Bool(*b),
        JsonTmpl::Number(n) => serde_json::Value::Number(n.clone()),
        JsonTmpl::String(t) => {
            serde_json::Value::String(render(sh, t, ctx, Target::Text, "json body")?)
        }
        JsonTmpl::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|i| json_body(sh, i, ctx))
                .collect::<Result<_, _>>()?,
        ),
        JsonTmpl::Object(pairs) => serde_json::Value::Object(
            pairs
                .iter()
                .map(|(k, v)| Ok((k.clone(), json_body(sh, v, ctx)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// Polls a probe until its condition holds or the wait times out.
#[allow(clippy::too_many_arguments)]
async fn run_wait(
    sh: &Arc<Shared>,
    step: &Step,
    body: &Body,
    w: &WaitSpec,
    extra: Vec<(String, Value)>,
    target: Option<SshTarget>,
    log: &str,
    cancel: Cancel,
) -> Attempt {
    let t0 = Instant::now();
    let mut every = w.every;
    let mut attempt = 0u32;
    let ctx = sh.ctx().with(extra.clone());
    loop {
        attempt += 1;
        let remaining = w.timeout.saturating_sub(t0.elapsed());
        let a = match &w.probe {
            Probe::Run { command, on } => {
                let cmd = match render_command(sh, command, &ctx, "probe") {
                    Ok(c) => c,
                    Err(e) => return Attempt::failed(e),
                };
                let probe_target = match on {
                    Some(on) => match ssh_targets(sh, on, &ctx) {
                        Ok(t) => t.into_iter().next(),
                        Err(e) => return Attempt::failed(format!("cannot resolve hosts: {e}")),
                    },
                    None => target.clone(),
                };
                let probe_body = Body {
                    timeout: Some(remaining.max(Duration::from_millis(100))),
                    ..body.clone()
                };
                run_command(
                    sh,
                    step,
                    &probe_body,
                    &ctx,
                    cmd,
                    probe_target,
                    None,
                    attempt,
                    &format!("{log}.probe{attempt}"),
                    cancel.clone(),
                )
                .await
            }
            Probe::Http(h) => {
                let h2 = HttpSpec {
                    timeout: Some(
                        h.timeout
                            .unwrap_or(remaining)
                            .min(remaining)
                            .max(Duration::from_millis(100)),
                    ),
                    ..(**h).clone()
                };
                let mut a =
                    run_http(sh, step, &h2, &ctx, None, attempt, cancel.clone(), false).await;
                // A probe that cannot connect yet is an attempt that saw nothing, not a failure.
                if a.status == StepStatus::Failed {
                    a.result = serde_json::json!({ "status": 0, "error": a.error.clone(), "json": null, "body": "" });
                }
                a
            }
        };
        if a.status == StepStatus::Cancelled || cancel.is_cancelled() {
            return Attempt {
                status: StepStatus::Cancelled,
                result: a.result,
                error: Some("cancelled while waiting".into()),
                operator: None,
            };
        }
        let mut ex = extra.clone();
        ex.extend(result_entries(&a.result, attempt));
        let value = if is_sensitive(step) {
            let mut hidden = a.result.clone();
            hide_response(&mut hidden);
            describe_probe(&hidden, &w.until.src)
        } else {
            let mut value = describe_probe(&a.result, &w.until.src);
            if let Some(parts) = super::readable::until_parts(
                &sh.templates,
                expression_source(&w.until.src),
                &sh.ctx().with(ex.clone()),
            ) {
                value = format!("{value} — {parts}");
            }
            value
        };
        let satisfied = match sh
            .templates
            .eval(expression_source(&w.until.src), &sh.ctx().with(ex))
        {
            Ok(v) => v.is_true(),
            Err(_) => false,
        };
        sh.emit(Event::ProbeAttempt {
            step: step.id.name.clone(),
            attempt,
            value: value.clone(),
            satisfied,
        });
        let last_value = value;
        if satisfied {
            let mut result = a.result;
            if let serde_json::Value::Object(m) = &mut result {
                m.insert("attempts".into(), serde_json::Value::from(attempt));
            }
            return Attempt {
                status: StepStatus::Succeeded,
                result,
                error: None,
                operator: None,
            };
        }
        if t0.elapsed() + every > w.timeout {
            let t = crate::plan::human_duration(w.timeout);
            return Attempt {
                status: StepStatus::TimedOut,
                result: a.result,
                error: Some(format!(
                    "waited {t} ({attempt} attempts) and `{}` never held; last value seen: {last_value}",
                    expression_source(&w.until.src)
                )),
                operator: None,
            };
        }
        let mut c = cancel.clone();
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = c.cancelled() => return Attempt { status: StepStatus::Cancelled, result: serde_json::Value::Null, error: Some("cancelled while waiting".into()), operator: None },
        }
        every = every.mul_f64(w.backoff);
    }
}

/// A short description of a probe result for progress and timeouts.
fn describe_probe(r: &serde_json::Value, until: &str) -> String {
    let cut = |s: &str| -> String {
        let s = s.trim();
        if s.chars().count() > 200 {
            format!("{}…", s.chars().take(200).collect::<String>())
        } else {
            s.to_string()
        }
    };
    if let Some(e) = r.get("error").and_then(|e| e.as_str()) {
        return cut(e);
    }
    if let Some(status) = r.get("status").and_then(serde_json::Value::as_u64) {
        let headers: Vec<(String, String)> = r
            .get("headers")
            .and_then(|h| h.as_object())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        return super::readable::http_summary(
            u16::try_from(status).unwrap_or(0),
            &headers,
            r.get("body").and_then(|b| b.as_str()).unwrap_or_default(),
            r.get("json").filter(|j| !j.is_null()),
            &super::readable::json_paths([until]),
        );
    }
    let code = r
        .get("exit_code")
        .map(|c| c.to_string())
        .unwrap_or_default();
    let out = r.get("stdout").and_then(|s| s.as_str()).unwrap_or_default();
    cut(&format!("exit {code}: {out}"))
}

/// Checks a successful execution against `expect` (and the defaults: exit 0, HTTP 2xx).
fn check_expect(
    sh: &Shared,
    step: &Step,
    body: &Body,
    a: Attempt,
    extra: Vec<(String, Value)>,
) -> Attempt {
    let e = &step.expect;
    let r = &a.result;
    let fail = |msg: String| Attempt {
        status: StepStatus::Failed,
        result: a.result.clone(),
        error: Some(msg),
        operator: None,
    };
    match &body.action {
        Action::Run(_) => {
            let code = r.get("exit_code").and_then(serde_json::Value::as_i64);
            let ok_codes: Vec<i64> = if e.exit_codes.is_empty() {
                vec![0]
            } else {
                e.exit_codes.iter().map(|&c| i64::from(c)).collect()
            };
            match code {
                Some(c) if ok_codes.contains(&c) => {}
                Some(c) => {
                    let stderr = r.get("stderr").and_then(|s| s.as_str()).unwrap_or_default();
                    let last = stderr
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or_default();
                    let tail = if last.is_empty() {
                        String::new()
                    } else {
                        format!(": {last}")
                    };
                    return fail(format!("exited with code {c}{tail}"));
                }
                None => {
                    let sig = r
                        .get("signal")
                        .and_then(serde_json::Value::as_i64)
                        .unwrap_or(0);
                    return fail(format!("killed by signal {sig}"));
                }
            }
        }
        Action::Http(h) => {
            let status = r
                .get("status")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0) as u16;
            let ok = if e.status.is_empty() {
                (200..300).contains(&status)
            } else {
                e.status.contains(&status)
            };
            if !ok {
                // A sensitive response stays out of the error message too.
                let errors = r
                    .get("json")
                    .and_then(|j| j.get("errors"))
                    .filter(|_| !h.sensitive)
                    .map(|v| format!(": {v}"))
                    .unwrap_or_default();
                let expected = if e.status.is_empty() {
                    "2xx".to_string()
                } else {
                    format!("{:?}", e.status)
                };
                return fail(format!("HTTP status {status}, expected {expected}{errors}"));
            }
            if let Some(needle) = &e.body_contains
                && !r
                    .get("body")
                    .and_then(|b| b.as_str())
                    .unwrap_or_default()
                    .contains(needle.as_str())
            {
                return fail(format!("response body does not contain {needle:?}"));
            }
        }
        _ => {}
    }
    if let Some(re) = &e.stdout
        && !re.is_match(r.get("stdout").and_then(|s| s.as_str()).unwrap_or_default())
    {
        return fail(format!("stdout does not match /{}/", re.as_str()));
    }
    if let Some(re) = &e.stderr
        && !re.is_match(r.get("stderr").and_then(|s| s.as_str()).unwrap_or_default())
    {
        return fail(format!("stderr does not match /{}/", re.as_str()));
    }
    for (path, exp) in &e.json {
        let found = r.get("json").and_then(|j| json_path(j, path));
        match (exp, found) {
            (JsonExpect::Exists, Some(_)) => {}
            (JsonExpect::Exists, None) => return fail(format!("JSON path {path} is missing")),
            (JsonExpect::Equals(want), Some(got)) if json_equal(want, got) => {}
            (JsonExpect::Equals(want), got) => {
                let got = match got {
                    None => "missing".to_string(),
                    Some(_) if is_sensitive(step) => "something else (sensitive)".to_string(),
                    Some(g) => g.to_string(),
                };
                return fail(format!("JSON path {path} is {got}, expected {want}"));
            }
        }
    }
    if let Some(that) = &e.that {
        let mut ex = extra;
        ex.extend(result_entries(r, 1));
        match eval_bool(sh, that, ex) {
            Ok(true) => {}
            Ok(false) => {
                return fail(format!(
                    "expectation `{}` is false",
                    expression_source(&that.src)
                ));
            }
            Err(err) => {
                return fail(format!(
                    "expectation `{}`: {err}",
                    expression_source(&that.src)
                ));
            }
        }
    }
    a
}

fn json_equal(want: &serde_json::Value, got: &serde_json::Value) -> bool {
    if want == got {
        return true;
    }
    // `expect.json: {a.b: 3}` matches "3" and 3 alike: YAML authors rarely mean the difference.
    match (want, got) {
        (serde_json::Value::String(w), other) | (other, serde_json::Value::String(w)) => {
            !other.is_string()
                && serde_json::from_str::<serde_json::Value>(w).is_ok_and(|parsed| parsed == *other)
        }
        _ => false,
    }
}

/// Looks up `a.b[0].c` in a JSON value.
pub fn json_path<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let mut cur = v;
    for part in path.trim_start_matches("$.").split('.') {
        let (name, rest) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            let n: usize = idx.trim_end_matches(']').parse().ok()?;
            cur = cur.get(n)?;
        }
    }
    Some(cur)
}

/// Runs step `i`'s rollback once (no retries), bounded by its timeout.
async fn run_rollback(sh: &Arc<Shared>, i: usize, cancel: Cancel) -> (StepStatus, Option<String>) {
    let step = sh.step(i).clone();
    let Some(body) = step.rollback.clone() else {
        return (StepStatus::Succeeded, None);
    };
    let ctx = sh.ctx().with(vec![]);
    let body = Body {
        timeout: Some(body.timeout.unwrap_or(ROLLBACK_TIMEOUT)),
        ..body
    };
    let targets: Vec<Option<SshTarget>> = match &body.on {
        None => vec![None],
        Some(on) => match ssh_targets(sh, on, &ctx) {
            Ok(t) => t.into_iter().map(Some).collect(),
            Err(e) => {
                return (
                    StepStatus::Failed,
                    Some(format!("cannot resolve hosts: {e}")),
                );
            }
        },
    };
    let mut errors = Vec::new();
    let mut status = StepStatus::Succeeded;
    for t in targets {
        let log = format!(
            "{}.rollback{}",
            step.id.name,
            t.as_ref().map_or(String::new(), |t| format!(".{}", t.name))
        );
        let a = match &body.action {
            Action::Run(cmd) => match render_command(sh, cmd, &ctx, "rollback command") {
                Ok(c) => {
                    run_command(sh, &step, &body, &ctx, c, t, None, 1, &log, cancel.clone()).await
                }
                Err(e) => Attempt::failed(e),
            },
            Action::Http(h) => run_http(sh, &step, h, &ctx, None, 1, cancel.clone(), true).await,
            Action::Wait(w) => run_wait(sh, &step, &body, w, vec![], t, &log, cancel.clone()).await,
            Action::Manual(_) | Action::Checkpoint => {
                let (decision, _) = match &sh.services.prompter {
                    Some(p) => {
                        let p = p.clone();
                        let msg = match &body.action {
                            Action::Manual(m) => {
                                render(sh, m, &ctx, Target::Text, "manual").unwrap_or_default()
                            }
                            _ => String::new(),
                        };
                        let req = GateRequest {
                            step: format!("{} (rollback)", step.id.name),
                            message: msg,
                            targets: vec![],
                            preview: String::new(),
                            manual: true,
                        };
                        (
                            tokio::task::spawn_blocking(move || p.ask(&req))
                                .await
                                .unwrap_or(Decision::Aborted),
                            (),
                        )
                    }
                    None => (Decision::Declined, ()),
                };
                if decision == Decision::Approved {
                    Attempt {
                        status: StepStatus::Succeeded,
                        result: serde_json::Value::Null,
                        error: None,
                        operator: None,
                    }
                } else {
                    Attempt::failed("manual rollback not confirmed by a person".into())
                }
            }
        };
        let a = if a.status == StepStatus::Succeeded && matches!(body.action, Action::Run(_)) {
            let code = a
                .result
                .get("exit_code")
                .and_then(serde_json::Value::as_i64);
            if code == Some(0) {
                a
            } else {
                Attempt {
                    status: StepStatus::Failed,
                    error: Some(format!(
                        "rollback exited with code {}",
                        code.map_or("none".into(), |c| c.to_string())
                    )),
                    ..a
                }
            }
        } else if a.status == StepStatus::Succeeded && matches!(body.action, Action::Http(_)) {
            let s = a
                .result
                .get("status")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            if (200..300).contains(&s) {
                a
            } else {
                Attempt {
                    status: StepStatus::Failed,
                    error: Some(format!("rollback got HTTP {s}")),
                    ..a
                }
            }
        } else {
            a
        };
        if a.status != StepStatus::Succeeded {
            status = a.status;
            errors.push(a.error.unwrap_or_default());
        }
    }
    let err = if errors.is_empty() {
        None
    } else {
        Some(sh.redactor.text(&errors.join("; ")))
    };
    (status, err)
}
