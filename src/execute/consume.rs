//! `for_each: { answers: ASK }`: a step that runs one item per answer to an `ask:`, as the
//! answers arrive, while the ask goes on collecting. Items run one at a time in arrival
//! order, each journaled like any `for_each` item; after each, `until` may end the loop, and
//! when the loop ends for any reason the ask is told it need not wait for more answers.

use std::sync::Arc;
use std::time::Instant;

use minijinja::value::Value;

use super::fanout::{self, ItemOutcome, Unit};
use super::items::{ItemsRun, item_vars};
use super::shared::Shared;
use super::stream::{AnswerStream, End, Next};
use crate::event::StepStatus;
use crate::model::*;
use crate::runner::{StepError, StepErrorKind as K};
use crate::step::context::result_entries;

/// Where a consuming step's items come from.
pub(super) enum Source {
    /// The ask is asking (or finished in this run): its answers as they arrive.
    Stream(Arc<AnswerStream>),
    /// The ask finished before this engine (a resumed run): its answers, all known.
    Answers(Vec<Option<Value>>),
    /// The ask was skipped: the step's `items` (none: the step is skipped too).
    Skipped,
}

/// The source of step `step`'s items when it consumes an ask's answers.
pub(super) fn source(sh: &Shared, step: &Step) -> Option<Source> {
    let ask = step.for_each.as_ref()?.answers.as_ref()?;
    let i = sh.env.rb.steps.iter().position(|s| s.id.name == ask.name)?;
    if let Some(s) = sh.stream(i) {
        return Some(Source::Stream(s));
    }
    let result = sh.env.results.get(&crate::validate::step_var(&ask.name));
    let skipped = result
        .as_ref()
        .and_then(|r| r.get_attr("skipped").ok())
        .is_some_and(|v| v.is_true());
    if skipped {
        return Some(Source::Skipped);
    }
    let values = match result {
        Some(r) => r
            .get_attr("values")
            .ok()
            .and_then(|v| v.try_iter().ok().map(|it| it.map(Some).collect()))
            .unwrap_or_default(),
        // Not finished (a resumed run unwinding): the plain answers the journal has.
        None => by_index(
            sh.prior_answers
                .get(&ask.name)
                .into_iter()
                .flatten()
                .filter_map(|a| Some((a.index, a.value.clone()?))),
        ),
    };
    Some(Source::Answers(values))
}

/// Answers by item index (a gap: `None`).
fn by_index(answers: impl Iterator<Item = (usize, serde_json::Value)>) -> Vec<Option<Value>> {
    let mut out: Vec<Option<Value>> = Vec::new();
    for (k, v) in answers {
        if out.len() <= k {
            out.resize(k + 1, None);
        }
        out[k] = Some(crate::template::to_value(v));
    }
    out
}

/// The items a per-item rollback binds `item` to: for a step consuming answers, the answers
/// (a secret one given before a resume is not known: `None`); else the step's items.
pub(super) fn undo_items(sh: &Shared, step: &Step) -> Result<Vec<Option<Value>>, String> {
    match source(sh, step) {
        Some(Source::Stream(s)) => Ok(by_index(
            s.answers().into_iter().map(|a| (a.index, a.value)),
        )),
        Some(Source::Answers(v)) => Ok(v),
        Some(Source::Skipped) | None => super::items::items_of(sh, step),
    }
}

/// What the consumer waits for next.
enum Wait {
    Next(Next),
    Cancelled,
    Deadline,
}

/// Waits for answer `k` (skipping a gap a resume left once the ask ended), a signal, or the
/// step's deadline.
async fn next(
    sh: &Shared,
    stream: &AnswerStream,
    k: &mut usize,
    deadline: Option<Instant>,
) -> Wait {
    let mut sub = stream.subscribe();
    let mut cancel = sh.cancel.clone();
    loop {
        sub.borrow_and_update();
        if let Some(n) = stream.get(*k) {
            return Wait::Next(n);
        }
        if let Some(end) = stream.ended() {
            match stream.next_after(*k) {
                Some(n) => *k = n,
                None => return Wait::Next(Next::End(end)),
            }
            continue;
        }
        let until = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sub.changed() => {}
            () = cancel.cancelled() => {
                // The ask pausing stops the run too: that is a pause, not a cancellation.
                return match stream.ended() {
                    Some(end @ End::Paused(_)) => Wait::Next(Next::End(end)),
                    _ => Wait::Cancelled,
                };
            }
            () = until => return Wait::Deadline,
        }
    }
}

/// Runs one item per answer in `stream`, in arrival order, until the ask ends, an item fails
/// (unless `on_item_failure: continue`), or `for_each.until` holds.
pub(super) async fn streamed_items(
    sh: &Arc<Shared>,
    step: &Step,
    stream: &AnswerStream,
    deadline: Option<Instant>,
) -> ItemsRun {
    let mut out = ItemsRun::new();
    let ask = step
        .for_each
        .as_ref()
        .and_then(|fe| fe.answers.as_ref())
        .map_or_else(String::new, |a| a.name.clone());
    let id = step.id.name.clone();
    let mut k = 0;
    let why_done = loop {
        let answer = match next(sh, stream, &mut k, deadline).await {
            Wait::Next(Next::Answer(a)) => a,
            Wait::Next(Next::End(End::Complete)) => break format!("`{ask}` has all its answers"),
            Wait::Next(Next::End(End::Paused(why))) => {
                out.paused = Some(why);
                break "the run pauses".into();
            }
            Wait::Next(Next::End(End::Stopped(why))) => {
                if out.status == StepStatus::Succeeded {
                    out.status = StepStatus::Failed;
                    let e = format!("no more answers to `{ask}`: {why}");
                    out.error = Some(StepError::new(K::Operator, e));
                }
                break why;
            }
            Wait::Cancelled => {
                out.cancelled();
                break "the run is stopping".into();
            }
            Wait::Deadline => {
                if out.status == StepStatus::Succeeded {
                    out.status = StepStatus::TimedOut;
                    let e = format!(
                        "its deadline passed while waiting for answers to `{ask}` ({} item(s) done)",
                        out.results.len()
                    );
                    out.error = Some(StepError::new(K::Timeout, e));
                }
                break "the step's deadline passed".into();
            }
        };
        let item = Some(crate::template::to_value(answer.value.clone()));
        let extra = item_vars(&item, k);
        let o = match fanout::item_done(sh, &id, k) {
            Some(done) => ItemOutcome::done(done),
            None => {
                fanout::unit_started(sh, &id, k, None);
                let label = item.as_ref().map(|v| sh.env.redactor.text(&v.to_string()));
                let unit = Unit {
                    extra: extra.clone(),
                    label,
                    index: k,
                    many: true,
                    deadline,
                };
                let o = fanout::run_item(sh, step, unit).await;
                fanout::unit_finished(sh, &id, k, None, o.status, &o.result);
                o
            }
        };
        k += 1;
        out.hosts = o.hosts;
        out.results.push(o.result.clone());
        if o.status == StepStatus::Succeeded {
            out.succeeded.push(answer.index);
        } else {
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
            break format!("`{id}` stopped at its failed item {}", answer.index);
        }
        if let Some(u) = step.for_each.as_ref().and_then(|fe| fe.until.as_ref()) {
            let mut ex = extra;
            ex.extend(result_entries(&o.result, 1));
            match sh.env.eval_bool(u, ex) {
                Ok(true) => {
                    out.until_met = true;
                    let u = crate::template::expression_source(&u.src);
                    break format!("`{id}` is done (`{u}` holds)");
                }
                Ok(false) => {}
                Err(e) => {
                    out.status = StepStatus::Failed;
                    let e = format!("`for_each.until`: {e}");
                    out.error = Some(StepError::new(K::Render, e));
                    break "its `until` cannot be evaluated".into();
                }
            }
        }
    };
    stream.consumer_done(why_done);
    out
}
