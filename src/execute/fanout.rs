//! Fan-out: one item of a step, locally, on one host, or over a group of hosts in batches
//! (`serial`), `max_parallel` at once, no new host past `max_failures`; and what a resumed
//! run must not do again.

use std::sync::Arc;

use minijinja::value::Value;
use tokio::task::JoinSet;

use super::lifecycle::attempts;
use super::shared::Shared;
use crate::event::{Decision, Event, StepStatus};
use crate::model::*;
use crate::runner::{SshTarget, StepError, StepErrorKind as K};
use crate::step::{Attempt, hide_response, hosts, is_sensitive};

/// One item of a step, to run on each of the step's hosts (or locally).
pub(super) struct Unit {
    /// `item` and `item_index` for templates.
    pub(super) extra: Vec<(String, Value)>,
    /// The item as shown in progress.
    pub(super) label: Option<String>,
    pub(super) index: usize,
    /// The step has several items (their logs are told apart).
    pub(super) many: bool,
    /// When the step's `deadline` passes (all attempts and items).
    pub(super) deadline: Option<std::time::Instant>,
}

/// How one item ended (on all its hosts).
pub(super) struct ItemOutcome {
    pub(super) status: StepStatus,
    pub(super) result: serde_json::Value,
    pub(super) error: Option<StepError>,
    pub(super) operator: Option<Decision>,
    pub(super) hosts: Vec<String>,
}

impl ItemOutcome {
    /// An item that finished before a resume.
    pub(super) fn done(result: serde_json::Value) -> ItemOutcome {
        ItemOutcome {
            status: StepStatus::Succeeded,
            result,
            error: None,
            operator: None,
            hosts: Vec::new(),
        }
    }

    fn of(a: Attempt, hosts: Vec<String>) -> ItemOutcome {
        ItemOutcome {
            status: a.status,
            result: a.result,
            error: a.error,
            operator: a.operator,
            hosts,
        }
    }
}

/// The result of item `k` of step `id` when a resumed run must not run it again.
pub(super) fn item_done(sh: &Shared, id: &str, k: usize) -> Option<serde_json::Value> {
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

/// Announces that item `k` (on `host`, for a fan-out) started.
pub(super) fn unit_started(sh: &Shared, id: &str, k: usize, host: Option<String>) {
    sh.emit(Event::ItemStarted {
        step: id.to_string(),
        item_index: k,
        host,
    });
}

/// Announces how item `k` (on `host`, for a fan-out) ended; sensitive responses hidden.
pub(super) fn unit_finished(
    sh: &Shared,
    id: &str,
    k: usize,
    host: Option<String>,
    status: StepStatus,
    result: &serde_json::Value,
) {
    let mut result = result.clone();
    if sh
        .env
        .rb
        .steps
        .iter()
        .chain(sh.env.rb.finally.iter())
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

/// One item of a step: locally, on one host, or fanned out over a group.
pub(super) async fn run_item(sh: &Arc<Shared>, step: &Step, unit: Unit) -> ItemOutcome {
    let ctx = sh.ctx().with(unit.extra.clone());
    let targets = match &step.body.on {
        None => None,
        Some(on) => match hosts::ssh_targets(&sh.env, on, &ctx)
            .and_then(|all| crate::step::targets::select(&sh.env, step, all, &unit.extra))
        {
            Ok(t) => Some(t),
            Err(e) => {
                return ItemOutcome {
                    status: StepStatus::Failed,
                    result: serde_json::Value::Null,
                    error: Some(StepError::new(
                        K::Hosts,
                        format!("cannot resolve hosts: {e}"),
                    )),
                    operator: None,
                    hosts: Vec::new(),
                };
            }
        },
    };
    let Some(targets) = targets else {
        let a = attempts(sh, step, &unit, None).await;
        return ItemOutcome::of(a, Vec::new());
    };
    let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    // A group's result is always per host (`hosts.<h>`), even with one member chosen.
    let group = step
        .body
        .on
        .as_ref()
        .is_some_and(|o| sh.env.rb.group(&o.name).is_some());
    if targets.len() == 1 && !group {
        let a = attempts(sh, step, &unit, targets.into_iter().next()).await;
        return ItemOutcome::of(a, names);
    }
    fan_out(sh, step, Arc::new(unit), targets, names).await
}

/// Runs an item on many hosts: batches of `serial` hosts, `max_parallel` at once inside a
/// batch; past `max_failures` failed hosts no new host starts.
async fn fan_out(
    sh: &Arc<Shared>,
    step: &Step,
    unit: Arc<Unit>,
    targets: Vec<SshTarget>,
    names: Vec<String>,
) -> ItemOutcome {
    let k = unit.index;
    let total = targets.len();
    let allowed = step.max_failures.map_or(0, |m| m.allowed(total));
    let parallel = step.max_parallel.map_or(total, |p| p as usize).max(1);
    let batch = step.serial.map_or(total, |s| s as usize).max(1);
    let mut per_host = serde_json::Map::new();
    let mut failures: Vec<String> = Vec::new();
    let mut not_started = Vec::new();
    let mut operator = None;
    // The class of the first host's failure is the step's.
    let mut first_kind = None;
    for chunk in targets.chunks(batch) {
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
                let (sh2, step2, unit2) = (sh.clone(), step.clone(), unit.clone());
                set.spawn(async move {
                    let name = t.name.clone();
                    unit_started(&sh2, &step2.id.name, k, Some(name.clone()));
                    let a = attempts(&sh2, &step2, &unit2, Some(t)).await;
                    let id = &step2.id.name;
                    unit_finished(&sh2, id, k, Some(name.clone()), a.status, &a.result);
                    (name, a)
                });
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            if let Ok((name, a)) = joined {
                if a.status != StepStatus::Succeeded {
                    let why = a.error.as_ref().map(|e| e.message.as_str());
                    failures.push(format!("{name}: {}", why.unwrap_or(a.status.as_str())));
                    first_kind = first_kind.or(a.error.as_ref().map(|e| e.kind));
                    operator = operator.or(a.operator);
                }
                per_host.insert(name, a.result);
            }
        }
        not_started.extend(queue.map(|t| t.name));
        if failures.len() > allowed || sh.cancel.is_cancelled() {
            break;
        }
    }
    for t in &names {
        if !per_host.contains_key(t) && !not_started.contains(t) {
            not_started.push(t.clone());
        }
    }
    // The hosts where the step completed: a rollback undoes it on exactly these.
    let failed_hosts: Vec<&str> = failures
        .iter()
        .filter_map(|f| f.split(": ").next())
        .collect();
    let succeeded: Vec<&String> = names
        .iter()
        .filter(|n| per_host.contains_key(*n) && !failed_hosts.contains(&n.as_str()))
        .collect();
    let result = serde_json::json!({ "hosts": per_host, "failed": failures.len(), "not_started": not_started, "hosts_succeeded": succeeded });
    let (status, error) = if failures.len() > allowed {
        let mut msg = format!(
            "{} of {total} hosts failed (max_failures {allowed}): {}",
            failures.len(),
            failures.join("; ")
        );
        if !not_started.is_empty() {
            msg.push_str(&format!("; not started: {}", not_started.join(", ")));
        }
        let kind = first_kind.unwrap_or(K::Expectation);
        (StepStatus::Failed, Some(StepError::new(kind, msg)))
    } else if sh.cancel.is_cancelled() && !not_started.is_empty() {
        (
            StepStatus::Cancelled,
            Some(StepError::new(K::Cancelled, "cancelled")),
        )
    } else {
        (StepStatus::Succeeded, None)
    };
    ItemOutcome {
        status,
        result,
        error,
        operator,
        hosts: names,
    }
}
