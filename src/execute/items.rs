//! A step's items: what they are (`for_each`), and running them one after the other (until
//! one fails, or `for_each.until` holds) or `max_parallel` at once. Items consumed as the
//! answers of an `ask:` arrive are in `consume.rs`.

use std::sync::Arc;
use std::time::Instant;

use minijinja::value::Value;
use tokio::task::JoinSet;

use super::fanout::{self, ItemOutcome, Unit};
use super::shared::Shared;
use crate::event::{Decision, StepStatus};
use crate::model::*;
use crate::runner::{StepError, StepErrorKind as K};
use crate::step::context::result_entries;
use crate::template::expression_source;

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
pub(super) struct ItemsRun {
    /// Results of the items that ran (or were done before a resume), in item order.
    pub(super) results: Vec<serde_json::Value>,
    pub(super) status: StepStatus,
    pub(super) error: Option<StepError>,
    pub(super) operator: Option<Decision>,
    /// The hosts of the last item.
    pub(super) hosts: Vec<String>,
    /// `for_each.until` became true.
    pub(super) until_met: bool,
    /// Indices of the items that succeeded (a rollback undoes exactly these).
    pub(super) succeeded: Vec<usize>,
    /// The answers it consumed stopped coming because their ask pauses (resumable).
    pub(super) paused: Option<String>,
}

impl ItemsRun {
    pub(super) fn new() -> ItemsRun {
        ItemsRun {
            results: Vec::new(),
            status: StepStatus::Succeeded,
            error: None,
            operator: None,
            hosts: Vec::new(),
            until_met: false,
            succeeded: Vec::new(),
            paused: None,
        }
    }

    pub(super) fn cancelled(&mut self) {
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
pub(super) async fn concurrent_items(
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
pub(super) async fn sequential_items(
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
