//! One step's life: its manual confirmation, its items, each body's attempts with retries
//! and backoff, expectations, outputs, and the event that says how it ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use minijinja::value::Value;
use tokio::task::JoinSet;

use super::fanout::{self, ItemOutcome, Unit};
use super::gate;
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
    let items = match items_of(&sh, &step) {
        Ok(items) => items,
        Err(e) => {
            let null = serde_json::Value::Null;
            let e = StepError::new(K::Render, e);
            return finish(&sh, run, t0, StepStatus::Failed, null, Some(e));
        }
    };
    // `max_parallel` on a local `for_each` without `until` runs items concurrently; with
    // `until` they must run in order (each decides whether the next is needed).
    let concurrent = step.max_parallel.filter(|&p| p > 1).is_some()
        && step.body.on.is_none()
        && step.for_each.as_ref().is_some_and(|fe| fe.until.is_none())
        && items.len() > 1;
    // `deadline`: all attempts and items of the step, from its start.
    let deadline = step.deadline.map(|d| t0 + d);
    let mut done = if concurrent {
        concurrent_items(&sh, &step, &items, deadline).await
    } else {
        sequential_items(&sh, &step, &items, deadline).await
    };
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
            items.len(),
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

/// The items of a step: `[None]` without `for_each`.
pub(super) fn items_of(sh: &Shared, step: &Step) -> Result<Vec<Option<Value>>, String> {
    let Some(fe) = &step.for_each else {
        return Ok(vec![None]);
    };
    let ctx = sh.ctx().with(vec![]);
    // An input asked for lazily and not provided: say so (it would iterate as an empty list).
    if let Ok(v) = sh
        .env
        .templates
        .eval(expression_source(&fe.items.src), &ctx)
        && let Some(name) = crate::step::lazy::not_provided(&v)
    {
        return Err(format!(
            "step `{}` needs input `{name}`, which was not provided: run on a terminal to be asked for it, or provide it",
            step.id.name
        ));
    }
    let prefix = crate::template::secret_env_name(&format!("{}_item", step.id.name), None);
    match sh
        .env
        .templates
        .eval_items_tainted(expression_source(&fe.items.src), &ctx, &prefix)
    {
        Ok(Some((items, learnt))) => {
            // Items computed from a secret are secrets.
            sh.env.redactor.add(&learnt);
            Ok(items.into_iter().map(Some).collect())
        }
        Ok(None) => Err("`for_each` is not a list".into()),
        Err(e) => Err(format!(
            "`for_each`: {}",
            crate::template::describe_error(&e)
        )),
    }
}

/// How a step's items went.
struct ItemsRun {
    /// Results of the items that ran (or were done before a resume), in item order.
    results: Vec<serde_json::Value>,
    status: StepStatus,
    error: Option<StepError>,
    operator: Option<Decision>,
    /// The hosts of the last item.
    hosts: Vec<String>,
    /// `for_each.until` became true.
    until_met: bool,
    /// Indices of the items that succeeded (a rollback undoes exactly these).
    succeeded: Vec<usize>,
}

impl ItemsRun {
    fn new() -> ItemsRun {
        ItemsRun {
            results: Vec::new(),
            status: StepStatus::Succeeded,
            error: None,
            operator: None,
            hosts: Vec::new(),
            until_met: false,
            succeeded: Vec::new(),
        }
    }

    fn cancelled(&mut self) {
        self.status = StepStatus::Cancelled;
        self.error = Some(StepError::new(K::Cancelled, "cancelled"));
    }
}

/// `item` and `item_index` for templates.
pub(super) fn item_vars(item: &Option<Value>, k: usize) -> Vec<(String, Value)> {
    match item {
        Some(item) => vec![
            ("item".to_string(), item.clone()),
            ("item_index".to_string(), Value::from(k)),
        ],
        None => Vec::new(),
    }
}

/// Runs items `max_parallel` at once; the first failure stops new items from starting.
async fn concurrent_items(
    sh: &Arc<Shared>,
    step: &Step,
    items: &[Option<Value>],
    deadline: Option<Instant>,
) -> ItemsRun {
    let limit = step.max_parallel.unwrap_or(1) as usize;
    let mut set: JoinSet<(usize, ItemOutcome)> = JoinSet::new();
    let mut results: Vec<Option<serde_json::Value>> = vec![None; items.len()];
    let mut out = ItemsRun::new();
    let mut next = 0;
    // `on_item_failure: continue`: failed items do not stop new ones (an operator's answer does).
    let go_on = step
        .for_each
        .as_ref()
        .is_some_and(|fe| fe.continue_on_item_failure);
    loop {
        while set.len() < limit
            && next < items.len()
            && (out.status == StepStatus::Succeeded
                || (go_on
                    && deadline.is_none_or(|d| Instant::now() < d)
                    && out.operator.is_none()
                    && matches!(out.status, StepStatus::Failed | StepStatus::TimedOut)))
            && !sh.cancel.is_cancelled()
        {
            let k = next;
            next += 1;
            if let Some(done) = fanout::item_done(sh, &step.id.name, k) {
                results[k] = Some(done);
                continue;
            }
            let (sh2, step2, item) = (sh.clone(), step.clone(), items[k].clone());
            set.spawn(async move {
                let label = item.as_ref().map(|v| sh2.env.redactor.text(&v.to_string()));
                fanout::unit_started(&sh2, &step2.id.name, k, None);
                let unit = Unit {
                    extra: item_vars(&item, k),
                    label,
                    index: k,
                    many: true,
                    deadline,
                };
                let out = fanout::run_item(&sh2, &step2, unit).await;
                fanout::unit_finished(&sh2, &step2.id.name, k, None, out.status, &out.result);
                (k, out)
            });
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        if let Ok((k, o)) = joined {
            if o.status == StepStatus::Succeeded {
                out.succeeded.push(k);
            }
            results[k] = Some(o.result);
            if o.status != StepStatus::Succeeded && out.status == StepStatus::Succeeded {
                out.status = o.status;
                out.error = o.error;
                out.operator = o.operator;
            }
        }
    }
    if out.status == StepStatus::Succeeded && next < items.len() {
        out.cancelled();
    }
    out.results = results.into_iter().flatten().collect();
    out
}

/// Runs items one after the other, until one fails or `for_each.until` holds.
async fn sequential_items(
    sh: &Arc<Shared>,
    step: &Step,
    items: &[Option<Value>],
    deadline: Option<Instant>,
) -> ItemsRun {
    let mut out = ItemsRun::new();
    for (k, item) in items.iter().enumerate() {
        if sh.cancel.is_cancelled() {
            out.cancelled();
            break;
        }
        let extra = item_vars(item, k);
        let o = match fanout::item_done(sh, &step.id.name, k) {
            Some(done) => ItemOutcome::done(done),
            None => {
                if step.for_each.is_some() {
                    fanout::unit_started(sh, &step.id.name, k, None);
                }
                let unit = Unit {
                    extra: extra.clone(),
                    label: item.as_ref().map(|v| sh.env.redactor.text(&v.to_string())),
                    index: k,
                    many: items.len() > 1,
                    deadline,
                };
                let o = fanout::run_item(sh, step, unit).await;
                if step.for_each.is_some() {
                    fanout::unit_finished(sh, &step.id.name, k, None, o.status, &o.result);
                }
                o
            }
        };
        out.hosts = o.hosts;
        out.results.push(o.result.clone());
        if o.status == StepStatus::Succeeded {
            out.succeeded.push(k);
        }
        if o.status != StepStatus::Succeeded {
            // `on_item_failure: continue`: the next items still run; the step fails at the
            // end with the first item's error. An operator's answer or a cancellation stops.
            let go_on = step
                .for_each
                .as_ref()
                .is_some_and(|fe| fe.continue_on_item_failure)
                && o.operator.is_none()
                && matches!(o.status, StepStatus::Failed | StepStatus::TimedOut)
                && deadline.is_none_or(|d| Instant::now() < d);
            if out.status == StepStatus::Succeeded {
                out.status = o.status;
                out.error = o.error;
                out.operator = o.operator;
            }
            if go_on {
                continue;
            }
            break;
        }
        if let Some(u) = step.for_each.as_ref().and_then(|fe| fe.until.as_ref()) {
            let mut ex = extra;
            ex.extend(result_entries(&o.result, 1));
            match sh.env.eval_bool(u, ex) {
                Ok(true) => {
                    out.until_met = true;
                    break;
                }
                Ok(false) => {}
                Err(e) => {
                    out.status = StepStatus::Failed;
                    let e = format!("`for_each.until`: {e}");
                    out.error = Some(StepError::new(K::Render, e));
                    break;
                }
            }
        }
    }
    out
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
