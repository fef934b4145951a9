//! One step's life: its manual confirmation, its items, each body's attempts with retries
//! and backoff, expectations, outputs, and the event that says how it ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use minijinja::value::Value;

use super::consume::Source;
use super::fanout::Unit;
use super::gate;
use super::items::{ItemsRun, concurrent_items, items_of, sequential_items};
use super::shared::{Shared, StepRun};
use crate::event::{Decision, Event, StepStatus};
use crate::model::*;
use crate::runner::{StepError, StepErrorKind as K};
use crate::step::context::result_entries;
use crate::step::{Attempt, Call, hide_response, is_sensitive};
use crate::template::{expression_source, to_value};

/// Longest pause between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Runs step `i` (main or `finally`): every item, every host, with retries; evaluates
/// outputs. The step's end is announced here; the scheduler records it.
pub(super) async fn run_step(sh: Arc<Shared>, i: usize) -> StepRun {
    let t0 = Instant::now();
    let step = sh.step(i).clone();
    let run = StepRun {
        index: i,
        status: StepStatus::Succeeded,
        result: serde_json::Value::Null,
        error: None,
        operator: None,
        paused: false,
        duration: Duration::ZERO,
        hosts: Vec::new(),
    };
    if let Err(why) = super::lazy_ask::ask_missing(&sh, &step, None).await {
        let e = StepError::new(K::Render, why);
        return finish(
            &sh,
            run,
            t0,
            StepStatus::Failed,
            serde_json::Value::Null,
            Some(e),
        );
    }
    if let Action::Ask(_) = step.body.action {
        return super::ask::run_ask(&sh, i, run, t0).await;
    }
    if let Action::Manual(_) = step.body.action {
        match gate::ask_gate(&sh, i, true).await {
            Some(Decision::Approved) => {}
            other => return manual_not_done(&sh, run, other, t0),
        }
    }
    // `deadline`: all attempts and items of the step, from its start.
    let deadline = step.deadline.map(|d| t0 + d);
    let source = super::consume::source(&sh, &step);
    let (mut done, count) = match source {
        Some(Source::Stream(stream)) => {
            let done = super::consume::streamed_items(&sh, &step, &stream, deadline).await;
            let n = done.results.len();
            (done, n)
        }
        source => {
            let skipped = matches!(source, Some(Source::Skipped));
            let items = match source {
                Some(Source::Answers(answers)) => answers,
                _ => match items_of(&sh, &step) {
                    Ok(items) => items,
                    Err(e) => {
                        let null = serde_json::Value::Null;
                        let e = StepError::new(K::Render, e);
                        return finish(&sh, run, t0, StepStatus::Failed, null, Some(e));
                    }
                },
            };
            if skipped && items.is_empty() {
                return skipped_with_ask(&sh, run, t0);
            }
            let n = items.len();
            (run_items(&sh, &step, &items, deadline).await, n)
        }
    };
    if let Some(why) = done.paused.take() {
        let e = StepError::new(K::Operator, why);
        let null = serde_json::Value::Null;
        let mut run = finish(&sh, run, t0, StepStatus::NotRun, null, Some(e));
        run.operator = Some(Decision::Aborted);
        run.paused = true;
        return run;
    }
    let run = StepRun {
        operator: done.operator,
        hosts: std::mem::take(&mut done.hosts),
        ..run
    };
    if done.status == StepStatus::Succeeded
        && let Some(fe) = &step.for_each
        && let Some(u) = &fe.until
        && !done.until_met
    {
        done.status = StepStatus::Failed;
        let why = format!(
            "ran out of items after {} of {} without `{}` becoming true",
            done.results.len(),
            count,
            expression_source(&u.src)
        );
        done.error = Some(StepError::new(K::Expectation, why));
    }
    let mut result = match done.results.last().cloned() {
        Some(serde_json::Value::Object(m)) => serde_json::Value::Object(m),
        other => serde_json::json!({ "value": other.unwrap_or(serde_json::Value::Null) }),
    };
    if step.for_each.is_some()
        && let serde_json::Value::Object(m) = &mut result
    {
        m.insert("items".into(), serde_json::Value::Array(done.results));
        done.succeeded.sort_unstable();
        m.insert("items_succeeded".into(), serde_json::json!(done.succeeded));
    }
    let mut outputs = serde_json::Map::new();
    if done.status == StepStatus::Succeeded
        && let Err(e) = evaluate_outputs(&sh, &step, &result, &mut outputs)
    {
        done.status = StepStatus::Failed;
        done.error = Some(StepError::new(K::Render, e));
    }
    if let serde_json::Value::Object(m) = &mut result {
        m.insert("outputs".into(), serde_json::Value::Object(outputs));
        m.insert(
            "outcome".into(),
            serde_json::Value::String(done.status.as_str().into()),
        );
        // Always defined: `steps.x.skipped` is false for a step that ran.
        m.insert("skipped".into(), serde_json::Value::Bool(false));
    }
    finish(&sh, run, t0, done.status, result, done.error)
}

/// Runs a step's items: concurrently with `max_parallel` on a local `for_each` without
/// `until` (with `until` they must run in order: each decides whether the next is needed),
/// else one after the other.
async fn run_items(
    sh: &Arc<Shared>,
    step: &Step,
    items: &[Option<Value>],
    deadline: Option<Instant>,
) -> ItemsRun {
    let concurrent = step.max_parallel.filter(|&p| p > 1).is_some()
        && step.body.on.is_none()
        && step.for_each.as_ref().is_some_and(|fe| fe.until.is_none())
        && items.len() > 1;
    if concurrent {
        concurrent_items(sh, step, items, deadline).await
    } else {
        sequential_items(sh, step, items, deadline).await
    }
}

/// A step consuming the answers of an ask that was skipped, with no `items` instead: it is
/// skipped too.
fn skipped_with_ask(sh: &Shared, run: StepRun, t0: Instant) -> StepRun {
    let step = sh.step(run.index);
    let ask = step
        .for_each
        .as_ref()
        .and_then(|fe| fe.answers.as_ref())
        .map_or("", |a| a.name.as_str());
    let reason = format!("`{ask}` was skipped: no answers to consume");
    let result = crate::event::skipped_result(&reason);
    sh.emit(Event::StepSkipped {
        step: step.id.name.clone(),
        reason,
    });
    StepRun {
        status: StepStatus::Skipped,
        result,
        duration: t0.elapsed(),
        ..run
    }
}

/// A manual step nobody confirmed: declined (failed), aborted, or waiting for a person
/// (the run pauses).
fn manual_not_done(
    sh: &Shared,
    mut run: StepRun,
    answer: Option<Decision>,
    t0: Instant,
) -> StepRun {
    let id = sh.step(run.index).id.name.clone();
    let (status, op, why) = match answer {
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
    run.paused = answer.is_none();
    run.error = Some(StepError::new(K::Operator, why.clone()));
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
    run
}

/// Evaluates a succeeded step's `outputs`; secret outputs are masked from here on.
pub(super) fn evaluate_outputs(
    sh: &Shared,
    step: &Step,
    result: &serde_json::Value,
    outputs: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    let mut failed = None;
    // Output parsed out of text that held a secret is a secret too (`stdout | regex_search`).
    // An output is such a value when it comes out different from the same expression over
    // the result with its secrets masked.
    let text = result.to_string();
    let masked = match sh.env.redactor.mask_text(&text) {
        std::borrow::Cow::Borrowed(_) => None,
        std::borrow::Cow::Owned(m) => Some(serde_json::from_str::<serde_json::Value>(&m).ok()),
    };
    let mut tainted: Vec<String> = Vec::new();
    let mut learnt: Vec<String> = Vec::new();
    for (name, expr) in &step.outputs {
        match sh.env.templates.eval_json_tainted(
            expression_source(&expr.src),
            &sh.ctx().with(result_entries(result, 1)),
        ) {
            Ok((v, from_secret)) => {
                let read_secret = match &masked {
                    None => false,
                    Some(None) => true,
                    Some(Some(m)) => sh
                        .env
                        .templates
                        .eval_json_tainted(
                            expression_source(&expr.src),
                            &sh.ctx().with(result_entries(m, 1)),
                        )
                        .map_or(true, |(w, _)| w != v),
                };
                if from_secret || read_secret {
                    crate::template::json_leaves(&v, &mut learnt);
                    tainted.push(name.name.clone());
                }
                outputs.insert(name.name.clone(), v);
            }
            Err(e) => {
                failed = Some(format!(
                    "output `{}`: {}",
                    name.name,
                    crate::template::describe_error(&e)
                ));
                break;
            }
        }
    }
    // Secret outputs: masked from here on, everywhere (even those of a failed evaluation).
    learnt.extend(
        step.secret_outputs
            .iter()
            .filter_map(|n| outputs.get(n))
            .map(crate::step::context::json_text),
    );
    sh.env.redactor.add(&learnt);
    sh.env
        .results
        .mark_secret(&crate::validate::step_var(&step.id.name), tainted);
    failed.map_or(Ok(()), Err)
}

/// Announces how step `run.index` ended and completes its [`StepRun`].
pub(super) fn finish(
    sh: &Shared,
    mut run: StepRun,
    t0: Instant,
    status: StepStatus,
    result: serde_json::Value,
    error: Option<StepError>,
) -> StepRun {
    let error = error.map(|e| StepError {
        message: sh.env.redactor.text(&e.message),
        ..e
    });
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
        error: error.as_ref().map(|e| e.message.clone()),
        outputs,
        result: redacted,
    });
    run.status = status;
    run.result = result;
    run.error = error;
    run.duration = t0.elapsed();
    run
}

/// Runs the step's body for one unit (an item, on one host or locally) with the step's
/// retries and backoff, checking expectations each time.
pub(super) async fn attempts(
    sh: &Arc<Shared>,
    step: &Step,
    unit: &Unit,
    target: Option<crate::runner::SshTarget>,
) -> Attempt {
    let host_name = target.as_ref().map(|t| t.name.clone());
    let max = step.retries + 1;
    let mut delay = step.backoff;
    let mut attempt = 1;
    loop {
        let mut extra = unit.extra.clone();
        if let Some(t) = &target {
            let host = serde_json::json!({ "name": t.name, "address": t.address, "user": t.user, "port": t.port });
            extra.push(("host".into(), to_value(host)));
        }
        let mut log = step.id.name.clone();
        if let Some(h) = &host_name {
            log.push_str(&format!(".{h}"));
        }
        if unit.many {
            log.push_str(&format!(".item{}", unit.index));
        }
        if attempt > 1 {
            log.push_str(&format!(".try{attempt}"));
        }
        let left = unit
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            let a = super::deadline::passed(step, attempt - 1, None);
            if let Some(h) = &host_name
                && step.body.on.is_some()
            {
                host_finished(sh, step, h, &a);
            }
            return a;
        }
        let clamped = left.map(|l| super::deadline::clamp(&step.body, l));
        let call = Call {
            step,
            body: clamped.as_ref().unwrap_or(&step.body),
            extra,
            target: target.clone(),
            item: unit.label.clone(),
            attempt,
            log,
            cancel: sh.cancel.clone(),
        };
        let a = crate::step::run_body(&sh.env, &call).await;
        let retry_extra = call.extra.clone();
        let a = if a.status == StepStatus::Succeeded {
            crate::step::expect::check_expect(&sh.env, step, &step.body, a, call.extra)
        } else {
            a
        };
        let (a, stop) = super::deadline::after_attempt(sh, step, unit, a, retry_extra, attempt);
        if a.status == StepStatus::Succeeded
            || stop
            || attempt >= max
            || a.operator.is_some()
            || a.status == StepStatus::Cancelled
            || sh.cancel.is_cancelled()
        {
            if let Some(h) = &host_name
                && step.body.on.is_some()
            {
                host_finished(sh, step, h, &a);
            }
            return a;
        }
        if let Some(d) = unit.deadline
            && Instant::now() + delay >= d
        {
            // The pause would outlast the deadline: fail now, naming it.
            let a = super::deadline::passed(step, attempt, Some(&a));
            if let Some(h) = &host_name
                && step.body.on.is_some()
            {
                host_finished(sh, step, h, &a);
            }
            return a;
        }
        sh.emit(Event::Retry {
            step: step.id.name.clone(),
            attempt: attempt + 1,
            delay_ms: delay.as_millis() as u64,
            reason: a
                .error
                .as_ref()
                .map_or_else(|| a.status.as_str().into(), |e| e.message.clone()),
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

/// Announces how a step ended on one host of its `on:`.
fn host_finished(sh: &Shared, step: &Step, host: &str, a: &Attempt) {
    sh.emit(Event::HostFinished {
        step: step.id.name.clone(),
        host: host.to_string(),
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
        error: a.error.as_ref().map(|e| e.message.clone()),
    });
}
