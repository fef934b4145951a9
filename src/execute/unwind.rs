//! Unwinding: the registered rollbacks in reverse order of completion (LIFO). A failing
//! rollback never stops the unwinding; a second signal does, and the rollbacks left are
//! reported as not run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::gate::WithdrawOnDrop;
use super::scheduler::Signals;
use super::shared::{Shared, StopKind};
use super::{Prior, RollbackSummary};
use crate::event::{Decision, Event, StepStatus};
use minijinja::value::Value;

use crate::model::*;
use crate::runner::{Cancel, SshTarget, StepError, StepErrorKind as K};
use crate::step::render::Live;
use crate::step::{Attempt, Call, hosts, http, render, run, wait};
use crate::template::Target;

/// What the unwinding did.
#[derive(Debug, Default)]
pub(super) struct Unwound {
    pub(super) rollbacks: Vec<RollbackSummary>,
    /// Some registered rollback did not run or did not succeed: a human must look.
    pub(super) incomplete: bool,
}

impl Unwound {
    fn not_run(&mut self, sh: &Shared, step: String, why: &str, event: bool) {
        if event {
            sh.emit(Event::RollbackNotRun {
                step: step.clone(),
                reason: why.into(),
            });
        }
        self.rollbacks.push(RollbackSummary {
            step,
            status: StepStatus::NotRun,
            error: Some(why.into()),
        });
        self.incomplete = true;
    }
}

/// Unwinds the rollbacks of `completed` (in completion order) that have not run yet, unless
/// the operator, `--no-rollback` or a failed journal says not to.
pub(super) async fn unwind(
    sh: &Arc<Shared>,
    completed: &[usize],
    kind: &StopKind,
    reason: &str,
    keep_changes: Option<&str>,
    prior: &Prior,
    signals: &mut Signals,
) -> Unwound {
    let rb = sh.env.rb.clone();
    let stack: Vec<usize> = completed
        .iter()
        .rev()
        .copied()
        .filter(|&i| {
            rb.steps[i].rollback.is_some() && !prior.rolled_back.contains(&rb.steps[i].id.name)
        })
        .collect();
    let mut out = Unwound::default();
    if stack.is_empty() {
        return out;
    }
    let names: Vec<String> = stack.iter().map(|&i| rb.steps[i].id.name.clone()).collect();
    let stopped_by = keep_changes.map(|s| format!("step `{s}` failed with `on_failure: stop`"));
    let why_not = if let Some(why) = stopped_by.as_deref() {
        sh.emit(Event::Warning {
            message: format!(
                "on_failure: stop: NOT undoing {} completed step(s): {} (undo with `runbook rollback`)",
                names.len(),
                names.join(", ")
            ),
        });
        Some(why)
    } else if sh.opts.no_rollback {
        sh.emit(Event::Warning {
            message: format!(
                "--no-rollback: NOT undoing {} completed step(s): {}",
                names.len(),
                names.join(", ")
            ),
        });
        Some("--no-rollback")
    } else if *kind == StopKind::EngineFailed {
        // Fail-secure: without a journal nothing more runs, not even rollbacks; they are
        // listed so a human (or `runbook resume` once the disk is fixed) can finish.
        Some("the journal cannot be written; nothing more runs")
    } else if !confirmed(sh, kind, &names, reason, signals).await {
        Some("the operator chose not to roll back")
    } else {
        None
    };
    if let Some(why) = why_not {
        for name in names {
            out.not_run(sh, name, why, true);
        }
        return out;
    }
    let (rb_cancel_tx, rb_cancel_rx) = watch::channel(false);
    let rb_cancel = Cancel(rb_cancel_rx);
    let mut interrupted = false;
    for &i in &stack {
        let step_id = rb.steps[i].id.name.clone();
        if let Some(err) = sh.observer_failure() {
            // The journal failed during the unwinding: stop here (fail-secure); `resume`
            // finishes the unwinding once the journal can be written.
            let why = format!("the journal cannot be written ({err}); nothing more runs");
            out.not_run(sh, step_id, &why, false);
            continue;
        }
        if interrupted {
            out.not_run(sh, step_id, "stopped by a second signal", true);
            continue;
        }
        sh.emit(Event::RollbackStarted {
            step: step_id.clone(),
            reason: reason.to_string(),
        });
        let t0 = Instant::now();
        let fut = run_rollback(sh, i, rb_cancel.clone());
        tokio::pin!(fut);
        let (status, error) = loop {
            tokio::select! {
                r = &mut fut => break r,
                _ = signals.changed() => {
                    if signals.take_new() {
                        interrupted = true;
                        let _ = rb_cancel_tx.send(true);
                    }
                }
            }
        };
        if status != StepStatus::Succeeded {
            out.incomplete = true;
        }
        sh.emit(Event::RollbackFinished {
            step: step_id.clone(),
            status,
            duration_ms: t0.elapsed().as_millis() as u64,
            error: error.clone(),
        });
        out.rollbacks.push(RollbackSummary {
            step: step_id,
            status,
            error,
        });
    }
    out
}

/// Whether to unwind now: asked on a terminal after a failure or a decline. After Ctrl-C the
/// operator has already said "stop": unwind without asking (a prompt interrupted by the
/// signal may still hold the terminal's next line).
async fn confirmed(
    sh: &Shared,
    kind: &StopKind,
    names: &[String],
    reason: &str,
    signals: &mut Signals,
) -> bool {
    if !sh.opts.confirm_rollback || !matches!(kind, StopKind::Failed | StopKind::Declined) {
        return true;
    }
    let Some(p) = sh.services.prompter.clone() else {
        return true;
    };
    // A signal while asking (Ctrl-C, the terminal closed) means "stop": the prompt is
    // withdrawn and the run unwinds, as after any signal.
    let (names, reason) = (names.to_vec(), reason.to_string());
    sh.emit(Event::RollbackAsked {
        steps: names.clone(),
        reason: reason.clone(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let _withdraw = WithdrawOnDrop(stop.clone());
    let mut asked =
        tokio::task::spawn_blocking(move || p.confirm_rollback(&names, &reason, &stop2));
    tokio::select! {
        a = &mut asked => a.ok().flatten().unwrap_or(true),
        _ = signals.changed() => {
            signals.take_new();
            stop.store(true, Ordering::SeqCst);
            let _ = asked.await;
            true
        }
    }
}

/// Rollbacks without their own timeout get this one: unwinding must not hang forever.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs step `i`'s rollback once (no retries), bounded by its timeout.
async fn run_rollback(sh: &Arc<Shared>, i: usize, cancel: Cancel) -> (StepStatus, Option<String>) {
    let step = sh.step(i).clone();
    let Some(body) = step.rollback.clone() else {
        return (StepStatus::Succeeded, None);
    };
    let env = &sh.env;
    let body = Body {
        timeout: Some(body.timeout.unwrap_or(ROLLBACK_TIMEOUT)),
        ..body
    };
    let units = match undo_units(sh, &step, &body) {
        Ok(u) => u,
        Err(e) => return (StepStatus::Failed, Some(e)),
    };
    let mut errors = Vec::new();
    let mut status = StepStatus::Succeeded;
    for (extra, t, label) in units {
        let ctx = sh.ctx().with(extra.clone());
        let log = format!(
            "{}.rollback{}{label}",
            step.id.name,
            t.as_ref().map_or(String::new(), |t| format!(".{}", t.name))
        );
        let call = Call {
            step: &step,
            body: &body,
            extra,
            target: t,
            item: None,
            attempt: 1,
            log,
            cancel: cancel.clone(),
        };
        let a = match &body.action {
            Action::Run(cmd) => match run::render(&Live(env), cmd, &body, &ctx, "rollback command")
            {
                Ok(c) => run::run_command(env, &call, &ctx, c).await,
                Err(e) => Attempt::failed(StepError::new(K::Render, e)),
            },
            Action::Http(h) => http::run_http(env, &call, h, &ctx, true).await,
            Action::Wait(w) => wait::run_wait(env, &call, w).await,
            Action::Manual(_) | Action::Checkpoint => confirm_by_hand(sh, i, &body, &ctx).await,
            Action::Fail(_) => Attempt::failed(StepError::new(
                K::Expectation,
                "a rollback cannot be `fail`",
            )),
            Action::Ask(_) => {
                Attempt::failed(StepError::new(K::Expectation, "a rollback cannot be `ask`"))
            }
        };
        let a = rollback_rule(a, &body);
        if a.status != StepStatus::Succeeded {
            status = a.status;
            errors.push(a.error.map(|e| e.message).unwrap_or_default());
        }
    }
    let err = if errors.is_empty() {
        None
    } else {
        Some(sh.env.redactor.text(&errors.join("; ")))
    };
    (status, err)
}

/// One run of a rollback: the names it sees (`host`, `item`), where it runs, a log suffix.
type Unit = (Vec<(String, Value)>, Option<SshTarget>, String);

/// The hosts (or item indices) a step's result lists under `key` as completed.
fn completed_list(sh: &Shared, step: &Step, key: &str) -> Option<Vec<Value>> {
    let r = sh
        .env
        .results
        .get(&crate::validate::step_var(&step.id.name))?;
    let list = r.get_attr(key).ok().filter(|v| !v.is_undefined())?;
    list.try_iter().ok().map(Iterator::collect)
}

fn host_var(t: &SshTarget) -> Value {
    crate::template::to_value(
        serde_json::json!({ "name": t.name, "address": t.address, "user": t.user, "port": t.port }),
    )
}

/// Where and how often a rollback runs: once per item that completed (`item` bound), once
/// per host of a fan-out that completed (`host` bound; on that host when the rollback runs
/// where the step ran), else once on each of its own targets. Last done, first undone.
fn undo_units(sh: &Shared, step: &Step, body: &Body) -> Result<Vec<Unit>, String> {
    let env = &sh.env;
    let ctx = sh.ctx().with(vec![]);
    let resolve = |on: &crate::model::Named| {
        hosts::ssh_targets(env, on, &ctx).map_err(|e| format!("cannot resolve hosts: {e}"))
    };
    let own: Vec<Option<SshTarget>> = match &body.on {
        None => vec![None],
        Some(on) => resolve(on)?.into_iter().map(Some).collect(),
    };
    let same_place = body.on.as_ref().map(|o| &o.name) == step.body.on.as_ref().map(|o| &o.name);
    // for_each: once per completed item, in reverse.
    if step.for_each.is_some()
        && let Some(done) = completed_list(sh, step, "items_succeeded")
    {
        let items = super::lifecycle::items_of(sh, step)?;
        let mut out = Vec::new();
        for k in done
            .iter()
            .rev()
            .filter_map(|v| usize::try_from(v.clone()).ok())
        {
            let item = items.get(k).cloned().flatten();
            for t in &own {
                let mut extra = super::lifecycle::item_vars(&item, k);
                if let Some(t) = t.as_ref().filter(|_| same_place) {
                    extra.push(("host".into(), host_var(t)));
                }
                out.push((extra, t.clone(), format!(".item{k}")));
            }
        }
        return Ok(out);
    }
    // A fan-out: once per completed host, in reverse.
    if let Some(on) = &step.body.on
        && let Some(done) = completed_list(sh, step, "hosts_succeeded")
    {
        let names: Vec<String> = done.iter().map(|v| v.to_string()).collect();
        let mut ran_on: Vec<SshTarget> = resolve(on)?
            .into_iter()
            .filter(|t| names.contains(&t.name))
            .collect();
        // In the order they ran (`order:` may differ from the group's).
        ran_on.sort_by_key(|t| names.iter().position(|n| *n == t.name));
        let mut out = Vec::new();
        for h in ran_on.iter().rev() {
            let extra = vec![("host".to_string(), host_var(h))];
            if same_place {
                out.push((extra, Some(h.clone()), String::new()));
            } else {
                for t in &own {
                    let label = format!(".for-{}", h.name);
                    out.push((extra.clone(), t.clone(), label));
                }
            }
        }
        return Ok(out);
    }
    Ok(own
        .into_iter()
        .map(|t| {
            let extra = t
                .as_ref()
                .filter(|_| same_place)
                .map(|t| vec![("host".to_string(), host_var(t))])
                .unwrap_or_default();
            (extra, t, String::new())
        })
        .collect())
}

/// A manual rollback: a person confirms it was done, through the gate path (declined when
/// nobody can answer).
async fn confirm_by_hand(sh: &Shared, i: usize, body: &Body, ctx: &Value) -> Attempt {
    let message = match &body.action {
        Action::Manual(m) => render(&sh.env, m, ctx, Target::Text, "manual").unwrap_or_default(),
        _ => String::new(),
    };
    let decision = super::gate::ask_rollback(sh, i, message)
        .await
        .unwrap_or(Decision::Declined);
    if decision == Decision::Approved {
        Attempt::succeeded(serde_json::Value::Null)
    } else {
        let e = "manual rollback not confirmed by a person";
        Attempt::failed(StepError::new(K::Operator, e))
    }
}

/// A rollback's success rule: exit 0 for a command, 2xx for a request (no `expect`).
fn rollback_rule(a: Attempt, body: &Body) -> Attempt {
    if a.status != StepStatus::Succeeded {
        return a;
    }
    let failed = |message: String| Attempt {
        status: StepStatus::Failed,
        error: Some(StepError::new(K::Expectation, message)),
        ..a.clone()
    };
    match &body.action {
        Action::Run(_) => {
            let code = a
                .result
                .get("exit_code")
                .and_then(serde_json::Value::as_i64);
            if code == Some(0) {
                return a;
            }
            let code = code.map_or("none".into(), |c| c.to_string());
            failed(format!("rollback exited with code {code}"))
        }
        Action::Http(_) => {
            let s = a
                .result
                .get("status")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            if (200..300).contains(&s) {
                return a;
            }
            failed(format!("rollback got HTTP {s}"))
        }
        _ => a,
    }
}
