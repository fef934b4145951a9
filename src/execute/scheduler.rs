//! The scheduler: the single owner of a run's state. It starts steps as their `needs`
//! finish, asks gates, and on failure, a declined gate or a signal stops starting steps and
//! hands over to the unwinding, then runs the `finally` steps and settles the outcome.
//!
//! Invariants that must stay true:
//! - No step starts after the run began stopping (failure, declined gate, signal, observer
//!   failure).
//! - A step's rollback is registered only once the step succeeded, and rollbacks run in
//!   reverse order of *completion* (not of the plan).
//! - Every event passes through the redactor before any observer sees it.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::shared::{Shared, StepRun, StopKind};
use super::{Options, Prior, RunOutcome, Services, StepSummary, gate, unwind};
use crate::event::{Decision, Event, Observer, StepStatus};
use crate::exit::ExitStatus;
use crate::inputs::Inputs;
use crate::model::*;
use crate::runner::{Cancel, StepErrorKind};
use crate::template::expression_source;
use crate::validate::step_var;

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

/// Runs the runbook. Never panics on bad input; a failed step is an outcome, not an error.
pub async fn execute(
    rb: Arc<Runbook>,
    inputs: Arc<Inputs>,
    opts: Options,
    observers: Vec<Box<dyn Observer>>,
    services: Services,
    signals: watch::Receiver<u32>,
    prior: Prior,
) -> RunOutcome {
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let shared = Shared::new(
        rb,
        inputs,
        opts,
        observers,
        services,
        Cancel(cancel_rx),
        &prior,
    );
    drive(shared, cancel_tx, signals, prior).await
}

/// Runs a prepared run to its end: the main steps (each through `shared.executor`), the
/// unwinding, the `finally` steps, the outcome. `cancel_tx` cancels `shared.cancel`.
pub(super) async fn drive(
    shared: Shared,
    cancel_tx: watch::Sender<bool>,
    mut signals: watch::Receiver<u32>,
    prior: Prior,
) -> RunOutcome {
    let started = Instant::now();
    let seen = *signals.borrow_and_update();
    let shared = Arc::new(shared);
    shared.announce(&prior);
    let mut sched = Scheduler::restore(&shared, &prior);
    let mut signals = Signals { rx: signals, seen };
    sched
        .run_main(&prior, &shared, &mut signals, &cancel_tx)
        .await;

    // A journal that failed at any point (even under a step that then failed for that
    // reason) means fail-secure: nothing more runs, not even rollbacks; resume finishes.
    sched.check_journal(&shared);
    let unwound = match &sched.stop {
        Some((kind, reason)) if *kind != StopKind::Paused => {
            unwind::unwind(
                &shared,
                &sched.completed,
                kind,
                reason,
                sched.keep_changes.as_deref(),
                &prior,
                &mut signals,
            )
            .await
        }
        _ => unwind::Unwound::default(),
    };

    // Finally steps: after the unwinding, in order, whatever happened (success, failure,
    // decline, abort, Ctrl-C), each with its own timeout; not on a pause (they run at the
    // run's real end, after `resume`), nor when the journal is gone.
    let finally = if matches!(
        sched.stop,
        Some((StopKind::EngineFailed | StopKind::Paused, _))
    ) {
        Vec::new()
    } else {
        // The main steps' cancellation must not cancel these: a new signal does.
        let _ = cancel_tx.send(false);
        super::finally::run_finally(&shared, &prior, &mut signals, &cancel_tx).await
    };

    if let Some(remote) = &shared.services.remote {
        remote.close().await;
    }
    sched.check_journal(&shared);
    sched.outcome(&shared, unwound, finally, started)
}

/// Where each main step stands, and why the run is stopping (if it is).
struct Scheduler {
    rb: Arc<Runbook>,
    deps: Vec<Vec<usize>>,
    /// On resume, steps each step waits for besides its `needs` (see `reask`).
    waits_for: Vec<Vec<usize>>,
    /// Step indices in wave order: the order steps are considered in.
    order: Vec<usize>,
    state: Vec<Option<StepStatus>>,
    summaries: Vec<Option<StepSummary>>,
    /// Succeeded steps, in completion order (the rollback stack).
    completed: Vec<usize>,
    stop: Option<(StopKind, String)>,
    /// A step with `on_failure: stop` failed: the run stops without undoing anything.
    keep_changes: Option<String>,
}

impl Scheduler {
    /// A fresh run's state, or a resumed one's: what finished before is restored.
    fn restore(sh: &Shared, prior: &Prior) -> Scheduler {
        let rb = sh.env.rb.clone();
        let n = rb.steps.len();
        let deps = crate::plan::step_deps(&rb);
        let order: Vec<usize> = crate::graph::waves(&deps)
            .map(|w| w.into_iter().flatten().collect())
            .unwrap_or_else(|_| (0..n).collect());
        let mut s = Scheduler {
            deps,
            waits_for: vec![Vec::new(); n],
            order,
            state: vec![None; n],
            summaries: vec![None; n],
            completed: Vec::new(),
            stop: None,
            keep_changes: None,
            rb: rb.clone(),
        };
        for (i, step) in rb.steps.iter().enumerate() {
            let rerun = prior.in_doubt.get(&step.id.name).copied();
            // Secret outputs are journaled masked: a step that made them runs again.
            if let Some((status, result)) = prior.done.get(&step.id.name)
                && rerun != Some(true)
                && step.secret_outputs.is_empty()
                // Outputs computed from a secret are journaled masked too (template::taint).
                && !result
                    .get("outputs")
                    .is_some_and(|o| o.to_string().contains(crate::template::MASK))
            {
                sh.env.results.set(&step_var(&step.id.name), result);
                s.settle(i, *status, "finished before resume");
            }
        }
        let restored: Vec<bool> = s.state.iter().map(Option::is_some).collect();
        s.waits_for = super::reask::waits_for(&s.deps, &restored);
        for id in &prior.rollbacks {
            if let Some(i) = rb.steps.iter().position(|s| &s.id.name == id) {
                s.completed.push(i);
            }
        }
        if prior.unwinding {
            s.stop = Some(match &prior.unwind_cause {
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
        s
    }

    /// Stops the run as an engine failure if the journal failed (unless it already did).
    fn check_journal(&mut self, sh: &Shared) {
        if let Some(err) = sh.observer_failure()
            && !matches!(self.stop, Some((StopKind::EngineFailed, _)))
        {
            self.stop = Some((
                StopKind::EngineFailed,
                format!("the journal cannot be written: {err}"),
            ));
        }
    }

    /// The main loop: start every ready step (bounded by `--parallel`), collect results,
    /// until nothing runs and nothing more may start.
    async fn run_main(
        &mut self,
        prior: &Prior,
        sh: &Arc<Shared>,
        signals: &mut Signals,
        cancel_tx: &watch::Sender<bool>,
    ) {
        let mut running: JoinSet<StepRun> = JoinSet::new();
        loop {
            if self.stop.is_none() {
                self.check_journal(sh);
            }
            if self.stop.is_none() {
                self.start_ready(prior, sh, signals, &mut running).await;
            }
            if self.stop.is_some() {
                let _ = cancel_tx.send(true);
            }
            if running.is_empty() {
                break;
            }
            tokio::select! {
                joined = running.join_next() => match joined {
                    Some(Ok(run)) => self.finished(sh, run),
                    Some(Err(e)) => {
                        self.stop.get_or_insert((
                            StopKind::EngineFailed,
                            format!("internal error: a step task failed: {e}"),
                        ));
                    }
                    None => {}
                },
                _ = signals.changed() => {
                    signals.take_new();
                    self.stop.get_or_insert((
                        StopKind::Aborted,
                        "interrupted by a signal (Ctrl-C / SIGTERM / SIGHUP)".into(),
                    ));
                }
            }
        }
    }

    /// Whether step `i` may start: every step it needs succeeded, was skipped, or failed
    /// with `continue_on_failure`.
    fn ready(&self, i: usize) -> bool {
        let streams_from = self.streams_from(i);
        self.deps[i].iter().chain(&self.waits_for[i]).all(|&d| {
            matches!(
                self.state[d],
                Some(StepStatus::Succeeded | StepStatus::Skipped)
            ) || (Some(d) == streams_from && self.state[d] == Some(StepStatus::Running))
                || (matches!(
                    self.state[d],
                    Some(StepStatus::Failed | StepStatus::TimedOut)
                ) && self.rb.steps[d].continue_on_failure)
        })
    }

    /// The ask step whose answers step `i` consumes as they arrive (`for_each.answers`): it
    /// may start as soon as that ask started.
    fn streams_from(&self, i: usize) -> Option<usize> {
        let a = self.rb.steps[i].for_each.as_ref()?.answers.as_ref()?;
        self.rb.steps.iter().position(|s| s.id.name == a.name)
    }

    /// Starts the steps that are ready, in wave order, deciding `when` and asking gates.
    async fn start_ready(
        &mut self,
        prior: &Prior,
        sh: &Arc<Shared>,
        signals: &mut Signals,
        running: &mut JoinSet<StepRun>,
    ) {
        let parallel = sh.opts.parallel.max(1);
        let rb = self.rb.clone();
        for k in 0..self.order.len() {
            let i = self.order[k];
            if self.stop.is_some() {
                break;
            }
            if self.state[i].is_some() || !self.ready(i) {
                continue;
            }
            // A step consuming the answers of a running ask does not wait for a free slot:
            // the ask only waits for people.
            let streaming = self
                .streams_from(i)
                .is_some_and(|a| self.state[a] == Some(StepStatus::Running));
            if running.len() >= parallel && !streaming {
                continue;
            }
            let step = &rb.steps[i];
            if let Some(w) = &step.when {
                // An input its `when` uses and nobody provided is needed now (at a terminal:
                // asked, withdrawn on a signal; headless: the step fails naming it).
                if let Err(e) =
                    super::lazy_ask::ask_or_withdraw(sh, step, Some(&w.src), signals).await
                {
                    let reason =
                        format!("`when` of step `{}` cannot be evaluated: {e}", step.id.name);
                    self.finish_failed(sh, i, &reason);
                    self.stop = Some((StopKind::Failed, reason));
                    break;
                }
                match sh.env.eval_bool(w, Vec::new()) {
                    Ok(true) => {}
                    Ok(false) => {
                        let reason = format!("`{}` is false", expression_source(&w.src));
                        self.skip(sh, i, &reason);
                        continue;
                    }
                    Err(e) => {
                        let reason =
                            format!("`when` of step `{}` cannot be evaluated: {e}", step.id.name);
                        self.finish_failed(sh, i, &reason);
                        self.stop = Some((StopKind::Failed, reason));
                        break;
                    }
                }
            }
            if step.confirm.is_some() && !prior.approved.contains(&step.id.name) {
                // The gate shows what will run: the inputs it reads are asked first.
                if let Err(e) = super::lazy_ask::ask_or_withdraw(sh, step, None, signals).await {
                    self.finish_failed(sh, i, &e);
                    self.stop = Some((StopKind::Failed, e));
                    break;
                }
                let decision = tokio::select! {
                    d = gate::ask_gate(sh, i, false) => d,
                    _ = signals.changed() => {
                        signals.take_new();
                        Some(Decision::Aborted)
                    }
                };
                let id = &step.id.name;
                self.stop = match decision {
                    Some(Decision::Approved) => None,
                    Some(Decision::Declined) => Some((
                        StopKind::Declined,
                        format!("the operator declined the gate of `{id}`"),
                    )),
                    Some(Decision::Aborted) => Some((
                        StopKind::Aborted,
                        format!("the operator aborted at the gate of `{id}`"),
                    )),
                    None => Some((
                        StopKind::Paused,
                        format!("gate of `{id}` is waiting for an answer"),
                    )),
                };
                if self.stop.is_some() {
                    break;
                }
            }
            self.state[i] = Some(StepStatus::Running);
            sh.open_stream(i);
            running.spawn(sh.executor.run_step(sh.clone(), i));
        }
    }

    /// Takes a finished step's result: its state, summary, result for templates, and
    /// whether the run must stop.
    fn finished(&mut self, sh: &Shared, run: StepRun) {
        let step = &self.rb.steps[run.index];
        self.state[run.index] = Some(run.status);
        self.summaries[run.index] = Some(StepSummary {
            id: step.id.name.clone(),
            status: run.status,
            duration_ms: run.duration.as_millis() as u64,
            hosts: run.hosts.clone(),
            error: run.error.as_ref().map(|e| e.message.clone()),
            error_kind: run.error.as_ref().map(|e| e.kind),
        });
        sh.env.results.set_with_secrets(
            &step_var(&step.id.name),
            &run.result,
            &step.secret_outputs,
        );
        // Skipped once started (it consumes the answers of an ask that was skipped).
        if run.status == StepStatus::Skipped {
            if let Some(Some(s)) = self.summaries.get_mut(run.index) {
                s.error = run.result["reason"].as_str().map(str::to_string);
            }
            return;
        }
        if run.status == StepStatus::Succeeded {
            if step.commit {
                let discharged: Vec<String> = self
                    .completed
                    .iter()
                    .filter(|&&i| self.rb.steps[i].rollback.is_some())
                    .map(|&i| self.rb.steps[i].id.name.clone())
                    .collect();
                self.completed.clear();
                if !discharged.is_empty() {
                    sh.emit(Event::RollbacksDischarged {
                        by: step.id.name.clone(),
                        steps: discharged,
                    });
                }
            }
            self.completed.push(run.index);
            return;
        }
        // A fan-out or for_each that failed part-way changed the hosts/items that completed:
        // its rollback undoes those.
        if step.rollback.is_some() && partly_done(&run.result) {
            self.completed.push(run.index);
        }
        if run.status != StepStatus::Succeeded
            && step.on_failure == crate::model::OnFailure::Stop
            && self.stop.is_none()
        {
            self.keep_changes = Some(step.id.name.clone());
        }
        // A timed-out step (its `timeout` or `deadline`) failed too.
        let failed = matches!(run.status, StepStatus::Failed | StepStatus::TimedOut);
        if self.stop.is_some() || (failed && step.continue_on_failure) {
            return;
        }
        let why = run
            .error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_else(|| format!("step `{}` {}", step.id.name, run.status.as_str()));
        self.stop = Some(match run.operator {
            _ if run.paused => (StopKind::Paused, why),
            Some(Decision::Declined) => (StopKind::Declined, why),
            Some(Decision::Aborted) => (StopKind::Aborted, why),
            _ if run.status == StepStatus::Cancelled => (StopKind::Aborted, why),
            _ => (
                StopKind::Failed,
                format!("step `{}` failed: {why}", step.id.name),
            ),
        });
    }

    /// A step whose `when` is false: skipped, and its result says so.
    fn skip(&mut self, sh: &Shared, i: usize, reason: &str) {
        // The note reaches the summary table too, which no emitter redacts.
        let reason = sh.env.redactor.text(reason);
        let reason = reason.as_str();
        sh.skipped(&self.rb.steps[i].id.name, reason);
        self.settle(i, StepStatus::Skipped, reason);
    }

    /// A step that failed before running anything (its `when` could not be evaluated).
    fn finish_failed(&mut self, sh: &Shared, i: usize, reason: &str) {
        let reason = sh.env.redactor.text(reason);
        let reason = reason.as_str();
        sh.emit(Event::StepFinished {
            step: self.rb.steps[i].id.name.clone(),
            status: StepStatus::Failed,
            exit_code: None,
            duration_ms: 0,
            error: Some(reason.into()),
            outputs: serde_json::Map::new(),
            result: serde_json::Value::Null,
        });
        self.settle(i, StepStatus::Failed, reason);
        if let Some(Some(s)) = self.summaries.get_mut(i) {
            s.error_kind = Some(StepErrorKind::Render);
        }
    }

    /// Records how a step that never ran a command ended, for the scheduler and the summary.
    fn settle(&mut self, i: usize, status: StepStatus, reason: &str) {
        self.state[i] = Some(status);
        self.summaries[i] = Some(StepSummary {
            id: self.rb.steps[i].id.name.clone(),
            status,
            duration_ms: 0,
            hosts: Vec::new(),
            error: Some(reason.into()),
            error_kind: None,
        });
    }

    /// How the run ended: exit status, reason, summaries; the `run-finished` event.
    fn outcome(
        self,
        sh: &Shared,
        unwound: unwind::Unwound,
        finally: Vec<StepSummary>,
        started: Instant,
    ) -> RunOutcome {
        let (status, reason) = match &self.stop {
            None => (ExitStatus::Success, "all steps succeeded".to_string()),
            Some((StopKind::EngineFailed, r)) => (ExitStatus::EngineFailed, r.clone()),
            Some((_, r)) if unwound.incomplete => (
                ExitStatus::RollbackIncomplete,
                format!("{r}; rollback incomplete: needs a human"),
            ),
            Some((StopKind::Failed, r)) => (ExitStatus::StepFailed, r.clone()),
            Some((StopKind::Declined | StopKind::Aborted | StopKind::Paused, r)) => {
                (ExitStatus::Aborted, r.clone())
            }
        };
        // A run stopped because its journal could not be written resumes once it can.
        let resumable = matches!(
            self.stop,
            Some((StopKind::Paused | StopKind::EngineFailed, _))
        );
        let rb = &self.rb;
        let mut steps: Vec<StepSummary> = self
            .summaries
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                s.unwrap_or(StepSummary {
                    id: rb.steps[i].id.name.clone(),
                    status: StepStatus::NotRun,
                    duration_ms: 0,
                    hosts: Vec::new(),
                    error: None,
                    error_kind: None,
                })
            })
            .collect();
        steps.extend(finally);
        sh.emit(Event::RunFinished {
            status,
            exit_code: status.code(),
            reason: reason.clone(),
            duration_ms: started.elapsed().as_millis() as u64,
            resumable,
        });
        RunOutcome {
            status,
            reason: sh.env.redactor.text(&reason),
            resumable,
            steps,
            rollbacks: unwound.rollbacks,
            run_id: sh.opts.run_id.clone(),
        }
    }
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
