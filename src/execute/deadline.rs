//! A step's `deadline` (total time for all its attempts, retries and items, beside the
//! per-attempt `timeout`) and `retry.when` (retry a failed attempt only when an expression
//! over its result holds).

use std::time::{Duration, Instant};

use minijinja::value::Value;

use super::fanout::Unit;
use super::shared::Shared;
use crate::event::StepStatus;
use crate::fmt::human_duration;
use crate::model::*;
use crate::runner::{StepError, StepErrorKind as K};
use crate::step::Attempt;
use crate::step::context::result_entries;

/// The body with every time limit cut to `left` (what remains of the deadline): the
/// command's or request's timeout, a wait's own timeout. A manual step waits for a person
/// and is not cut.
pub(super) fn clamp(body: &Body, left: Duration) -> Body {
    let cut = |t: Option<Duration>| Some(t.map_or(left, |t| t.min(left)));
    let mut b = body.clone();
    match &mut b.action {
        Action::Run(_) => b.timeout = cut(b.timeout),
        Action::Http(h) => h.timeout = cut(h.timeout.or(body.timeout)),
        Action::Wait(w) => w.timeout = w.timeout.min(left),
        Action::Manual(_) | Action::Checkpoint | Action::Fail(_) | Action::Ask(_) => {}
    }
    b
}

/// The failure of a step whose deadline passed after `attempts` attempts (`last`: the one
/// the deadline cut short or that failed last).
pub(super) fn passed(step: &Step, attempts: u32, last: Option<&Attempt>) -> Attempt {
    let d = step.deadline.map(human_duration).unwrap_or_default();
    let mut msg = format!(
        "deadline {d} of step `{}` passed after {attempts} attempt(s)",
        step.id.name
    );
    if let Some(e) = last.and_then(|a| a.error.as_ref()) {
        msg.push_str(&format!(" (last: {})", e.message));
    }
    let mut a = Attempt::failed(StepError::new(K::Timeout, msg));
    a.status = StepStatus::TimedOut;
    if let Some(l) = last
        && let (serde_json::Value::Object(m), serde_json::Value::Object(prev)) =
            (&mut a.result, &l.result)
    {
        for (k, v) in prev {
            m.entry(k.clone()).or_insert(v.clone());
        }
    }
    a
}

/// After a failed attempt: the deadline's failure if it passed, and whether to stop
/// retrying (`retry.when` false, or it cannot be evaluated, or the deadline passed).
pub(super) fn after_attempt(
    sh: &Shared,
    step: &Step,
    unit: &Unit,
    a: Attempt,
    mut extra: Vec<(String, Value)>,
    attempt: u32,
) -> (Attempt, bool) {
    if a.status == StepStatus::Succeeded {
        return (a, false);
    }
    if let Some(d) = unit.deadline
        && Instant::now() >= d
    {
        return (passed(step, attempt, Some(&a)), true);
    }
    let Some(when) = &step.retry_when else {
        return (a, false);
    };
    if attempt > step.retries || a.operator.is_some() || a.status == StepStatus::Cancelled {
        return (a, false);
    }
    extra.extend(result_entries(&a.result, attempt));
    match sh.env.eval_bool(when, extra) {
        Ok(true) => (a, false),
        Ok(false) => (a, true),
        Err(e) => {
            let e = StepError::new(K::Render, format!("`retry.when`: {e}"));
            (
                Attempt {
                    error: Some(e),
                    ..a
                },
                true,
            )
        }
    }
}
