//! Gates and manual steps: answers given in advance (flags, answers file), on the terminal,
//! or from elsewhere (`runbook approve`, through an [`AnswerSource`]), with the approver
//! rules (how many, who, not the operator).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::shared::Shared;
use super::{GateRequest, RemoteGates};
use crate::event::{AnsweredBy, Decision, Event};
use crate::model::*;
use crate::template::Target;

/// Where answers given from elsewhere arrive (`runbook approve` from another terminal or
/// machine). The journal's `answers/` directory is the one implementation today; a server
/// front end would be another.
pub trait AnswerSource: Send + Sync + std::fmt::Debug {
    /// Whether an answer for `step` is waiting, without taking it.
    fn present(&self, step: &str) -> bool;
    /// The answers for `step` not in `seen` (which records what was taken), and warnings
    /// about what was refused.
    fn take(&self, step: &str, seen: &mut HashSet<PathBuf>) -> (Vec<RemoteAnswer>, Vec<String>);
    /// A channel that changes when new answers may have arrived (a store with notifications):
    /// waiting gates wake at once instead of at their next poll.
    fn subscribe(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// The engine starts waiting at gate `step` (a store shows it to approvers).
    fn waiting(&self, _step: &str, _needed: usize, _other_approver: bool, _approvers: &[String]) {}
    /// The gate `step` is decided (`decided`), or the engine stops waiting without a decision.
    fn settled(&self, _step: &str, _decided: bool) {}
    /// The shared store's connection string, when answers come through one (`ask:` answers
    /// then come through it too).
    fn store(&self) -> Option<String> {
        None
    }
    /// Publishes a waiting `ask:` in the shared store; answers arrive on `tx` until the
    /// returned guard is dropped (which withdraws the ask). Only sources with a store have it.
    fn ask_feed(
        &self,
        _hello: &crate::runner::ask_socket::Hello,
        _tx: tokio::sync::mpsc::Sender<super::ask::StoreAnswer>,
    ) -> Result<Box<dyn std::any::Any + Send>, FeedError> {
        Err(FeedError("this run has no shared store".into()))
    }
}

/// Why an ask could not be published in the shared store (the run then pauses at it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedError(pub String);

impl std::fmt::Display for FeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Waits until `sub` changes; forever without one.
async fn changed(sub: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    match sub {
        Some(r) => {
            if r.changed().await.is_err() {
                *sub = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// One answer from elsewhere, its author checked by the source.
#[derive(Debug, Clone)]
pub struct RemoteAnswer {
    pub user: String,
    pub host: String,
    pub decision: Decision,
    pub comment: Option<String>,
    /// The groups the author is a member of, as the source knows them (database roles), for
    /// `approvers: [group:NAME]`; `None`: the OS groups of `user`.
    pub groups: Option<Vec<String>>,
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
    let ctx = crate::plan::plan_context(&sh.env.inputs_now());
    let targets = crate::plan::targets(&sh.env.rb, &sh.mask, &ctx, step.body.on.as_ref())
        .map(|ts| {
            ts.iter()
                .map(|t| format!("{} ({})", t.host, t.destination()))
                .collect()
        })
        .unwrap_or_default();
    // Hosts chosen at run time: the ones the run will use, when they can be known now.
    let targets = match &step.body.on {
        Some(on) if step.targets.is_runtime() => {
            let live = sh.ctx().with(vec![]);
            crate::step::hosts::ssh_targets(&sh.env, on, &live)
                .and_then(|all| crate::step::targets::select(&sh.env, step, all, &[]))
                .map(|ts| {
                    ts.iter()
                        .map(|t| {
                            let d = crate::fmt::destination(t.user.as_deref(), &t.address, t.port);
                            format!("{} ({d})", t.name)
                        })
                        .collect()
                })
                .unwrap_or(targets)
        }
        _ => targets,
    };
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
        Ok(crate::plan::PlannedAction::Fail { message }) => format!("(fails: {message})"),
        Ok(crate::plan::PlannedAction::Uses { file }) => format!("(uses {file})"),
        Ok(a @ crate::plan::PlannedAction::Ask { .. }) => crate::plan::ask_line(&a),
        Err(e) => e.to_string(),
    };
    (targets, sh.env.redactor.text(&text))
}

/// Asks the gate (or manual step) of step `i`. `None`: nobody can answer now. The answer
/// source is told while the gate waits (a shared store shows it to approvers).
pub(super) async fn ask_gate(sh: &Arc<Shared>, i: usize, manual: bool) -> Option<Decision> {
    let Some(remote) = sh.opts.remote.clone() else {
        return ask_gate_inner(sh, i, manual).await;
    };
    let step = sh.step(i);
    let gate = if manual { None } else { step.confirm.as_ref() };
    remote.answers.waiting(
        &step.id.name,
        gate.map_or(1, |g| g.approvals.max(1)) as usize,
        gate.is_some_and(|g| g.other_approver),
        gate.map_or(&[], |g| g.approvers.as_slice()),
    );
    let id = step.id.name.clone();
    let d = ask_gate_inner(sh, i, manual).await;
    remote.answers.settled(&id, d.is_some());
    d
}

async fn ask_gate_inner(sh: &Arc<Shared>, i: usize, manual: bool) -> Option<Decision> {
    let step = sh.step(i);
    let id = step.id.name.clone();
    let message = message(sh, step, manual);
    let (targets, preview) = preview(sh, step);
    sh.emit(Event::GateAsked {
        step: id.clone(),
        message: message.clone(),
        targets: targets.clone(),
        preview: preview.clone(),
        manual,
        rollback: false,
    });
    let gate = if manual { None } else { step.confirm.as_ref() };
    let rule = Rule {
        needed: gate.map_or(1, |g| g.approvals.max(1)) as usize,
        other_approver: gate.is_some_and(|g| g.other_approver),
        allowed: gate.map_or(&[], |g| g.approvers.as_slice()),
    };
    let mut approvers: Vec<String> = Vec::new();
    // An answer given in advance, or on this terminal, is the operator's. `remote_first`:
    // an answer from elsewhere withdrew the terminal prompt: it is taken below at once,
    // without announcing a wait.
    let (local, remote_first) = match preanswered(sh, &id, manual) {
        Some(a) => (Some(a), false),
        None => {
            let req = GateRequest {
                step: id.clone(),
                message: sh.env.redactor.text(&message),
                targets,
                preview,
                manual,
            };
            prompt(sh, req).await
        }
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
        operator_approval(sh, &id, &rule, &mut approvers);
        if approvers.len() >= rule.needed {
            return Some(Decision::Approved);
        }
    }
    let how = how_to_answer(sh, &id, manual, &rule, approvers.len());
    // `--no-wait` still takes answers already given (e.g. before `resume`).
    let Some(remote) = sh
        .opts
        .remote
        .as_ref()
        .filter(|r| r.wait || r.answers.present(&id))
    else {
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
        .unwrap_or(sh.env.rb.defaults.gate_timeout);
    if !remote_first {
        sh.emit(Event::GateWaiting {
            step: id.clone(),
            how_to_answer: format!(
                "{how} (waiting up to {})",
                crate::fmt::human_duration(limit)
            ),
        });
    }
    wait_remote(sh, remote, &id, &rule, approvers, limit).await
}

/// The gate that confirms step `id`'s manual rollback: its name in events, prompts and
/// answers given in advance (`--approve 'ID (rollback)'`, or the answers file).
pub(super) fn rollback_gate(id: &str) -> String {
    format!("{id} (rollback)")
}

/// Asks a person to confirm that step `i`'s manual rollback was done, through the gate path:
/// an answer given in advance, else the terminal. Both the question and the answer are
/// events, hence journaled. `None`: nobody can answer here (no terminal and no answer given
/// in advance; answers from elsewhere are not taken for a rollback): not confirmed.
pub(super) async fn ask_rollback(sh: &Shared, i: usize, message: String) -> Option<Decision> {
    let id = rollback_gate(&sh.step(i).id.name);
    let answered = preanswered(sh, &id, true);
    if answered.is_none() && sh.services.prompter.is_none() {
        return None;
    }
    sh.emit(Event::GateAsked {
        step: id.clone(),
        message: message.clone(),
        targets: vec![],
        preview: String::new(),
        manual: true,
        rollback: true,
    });
    let (decision, by) = match answered {
        Some(a) => a,
        None => {
            let req = GateRequest {
                step: id.clone(),
                message: sh.env.redactor.text(&message),
                targets: vec![],
                preview: String::new(),
                manual: true,
            };
            prompt(sh, req).await.0?
        }
    };
    sh.emit(Event::GateAnswered {
        step: id,
        decision,
        user: sh.opts.user.clone(),
        from_host: sh.opts.host.clone(),
        by,
        comment: None,
    });
    Some(decision)
}

/// Sets a prompt's stop flag when dropped, so an abandoned prompt gives up.
pub(super) struct WithdrawOnDrop(pub(super) Arc<AtomicBool>);

impl Drop for WithdrawOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Who must approve a gate.
struct Rule<'a> {
    needed: usize,
    other_approver: bool,
    /// `approvers:` (users, `group:NAME`); empty: anyone.
    allowed: &'a [String],
}

/// The gate's message (or the manual step's instructions), rendered with run-time values.
fn message(sh: &Shared, step: &Step, manual: bool) -> String {
    let ctx = sh.ctx().with(vec![]);
    if manual {
        return match &step.body.action {
            Action::Manual(t) => sh
                .env
                .templates
                .render(&t.src, &ctx, Target::Text)
                .unwrap_or_else(|e| {
                    format!(
                        "{}\n(could not render: {})",
                        t.src,
                        crate::template::describe_error(&e)
                    )
                }),
            _ => String::new(),
        };
    }
    step.confirm
        .as_ref()
        .map(|g| {
            sh.env
                .templates
                .render(&g.text.src, &ctx, Target::Text)
                .unwrap_or_else(|_| g.text.src.clone())
        })
        .unwrap_or_default()
}

/// Asks on the terminal, racing answers from elsewhere: whichever comes first wins; a
/// remote answer withdraws the prompt (then `true`: it is taken at once).
async fn prompt(sh: &Shared, req: GateRequest) -> (Option<(Decision, AnsweredBy)>, bool) {
    let Some(p) = sh.services.prompter.clone() else {
        return (None, false);
    };
    let id = req.step.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let mut asked = tokio::task::spawn_blocking(move || p.ask_until(&req, &stop2));
    // When this gate is abandoned (a signal: the caller drops this future), the prompt is
    // withdrawn too: it must not keep the terminal (and the progress display every later
    // line goes through) waiting for a line nobody will type.
    let _withdraw = WithdrawOnDrop(stop.clone());
    let answers = sh.opts.remote.as_ref().map(|r| r.answers.clone());
    let arrived = async {
        let Some(answers) = answers else {
            return std::future::pending::<()>().await;
        };
        let mut sub = answers.subscribe();
        while !answers.present(&id) {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                () = changed(&mut sub) => {}
            }
        }
    };
    let mut remote_first = false;
    let d = tokio::select! {
        d = &mut asked => d.unwrap_or(Some(Decision::Aborted)),
        () = arrived => {
            stop.store(true, Ordering::SeqCst);
            let d = asked.await.unwrap_or(None);
            remote_first = d.is_none();
            d
        }
    };
    (d.map(|d| (d, AnsweredBy::Terminal)), remote_first)
}

/// Counts the operator's own approval, if the rule lets the operator approve.
fn operator_approval(sh: &Shared, id: &str, rule: &Rule, approvers: &mut Vec<String>) {
    let user = &sh.opts.user;
    if rule.other_approver {
        sh.emit(Event::Warning {
            message: format!("gate `{id}` needs an approver other than the operator ({user}): waiting for another person"),
        });
    } else if !crate::sys::may_answer(rule.allowed, user) {
        sh.emit(Event::Warning {
            message: format!("gate `{id}` is answered by {}; the operator ({user}) is not one of them: waiting for an approver", rule.allowed.join(", ")),
        });
    } else {
        approvers.push(user.clone());
    }
}

/// How a person can answer this gate now.
fn how_to_answer(sh: &Shared, id: &str, manual: bool, rule: &Rule, have: usize) -> String {
    match sh.opts.remote.as_ref() {
        Some(r) => {
            let more = if rule.needed > 1 || rule.other_approver {
                let who = if rule.other_approver {
                    " (not the operator)"
                } else {
                    ""
                };
                format!(
                    "; {} approval(s) from distinct users needed{who}",
                    rule.needed - have
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
    }
}

/// Waits (up to `limit`) for enough approvals from elsewhere, or one refusal.
async fn wait_remote(
    sh: &Shared,
    remote: &RemoteGates,
    id: &str,
    rule: &Rule<'_>,
    mut approvers: Vec<String>,
    limit: Duration,
) -> Option<Decision> {
    let deadline = Instant::now() + limit;
    let mut seen = HashSet::new();
    let mut cancel = sh.cancel.clone();
    let mut sub = remote.answers.subscribe();
    while Instant::now() < deadline {
        let (answers, refused) = remote.answers.take(id, &mut seen);
        for message in refused {
            sh.emit(Event::Warning { message });
        }
        for a in answers {
            if let Some(d) = count_answer(sh, id, rule, &mut approvers, a) {
                return Some(d);
            }
        }
        if !remote.wait {
            return None;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = changed(&mut sub) => {}
            () = cancel.cancelled() => return Some(Decision::Aborted),
        }
    }
    sh.emit(Event::Warning {
        message: format!(
            "nobody answered gate `{id}` within {}",
            crate::fmt::human_duration(limit)
        ),
    });
    None
}

/// Takes one answer from elsewhere: `Some` when it decides the gate.
fn count_answer(
    sh: &Shared,
    id: &str,
    rule: &Rule,
    approvers: &mut Vec<String>,
    a: RemoteAnswer,
) -> Option<Decision> {
    let decision = a.decision;
    let allowed = match &a.groups {
        // Roles of the store: a name is a role, `group:NAME` a role the author is a member of.
        Some(groups) => {
            rule.allowed.is_empty()
                || rule.allowed.iter().any(|x| match x.strip_prefix("group:") {
                    Some(g) => groups.iter().any(|m| m == g),
                    None => *x == a.user,
                })
        }
        None => crate::sys::may_answer(rule.allowed, &a.user),
    };
    if !allowed {
        sh.emit(Event::Warning {
            message: format!(
                "{} answered `{id}` but is not among its approvers ({}): ignored",
                a.user,
                rule.allowed.join(", ")
            ),
        });
        return None;
    }
    if decision == Decision::Approved {
        if rule.other_approver && a.user == sh.opts.user {
            sh.emit(Event::Warning { message: format!("approval of `{id}` by {} does not count: the approver must not be the operator", a.user) });
            return None;
        }
        if approvers.contains(&a.user) {
            sh.emit(Event::Warning {
                message: format!(
                    "{} already approved `{id}`; approvals must come from distinct users",
                    a.user
                ),
            });
            return None;
        }
        approvers.push(a.user.clone());
    }
    sh.emit(Event::GateAnswered {
        step: id.to_string(),
        decision,
        user: a.user,
        from_host: a.host,
        by: AnsweredBy::Remote,
        comment: a.comment,
    });
    if decision != Decision::Approved {
        return Some(decision);
    }
    (approvers.len() >= rule.needed).then_some(Decision::Approved)
}
