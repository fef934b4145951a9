//! What a resumed run already knows, read from its journal: finished steps and their
//! results, registered and finished rollbacks, approvals, and why it was unwinding.

use std::collections::{HashMap, HashSet};

use crate::event::{Decision, Event, StepStatus, skipped_result};
use crate::execute::Prior;
use crate::exit::ExitStatus;
use crate::journal;
use crate::model::Runbook;

/// What a journal says already happened.
pub(crate) fn from_journal(rb: &Runbook, records: &[journal::Record]) -> Prior {
    let mut p = steps_and_rollbacks(rb, records);
    p.rollback_units_done = rollback_units_done(records);
    p
}

/// What a journal says about steps, gates, answers and whole rollbacks.
fn steps_and_rollbacks(rb: &Runbook, records: &[journal::Record]) -> Prior {
    let mut p = Prior::default();
    let mut approvers: HashMap<String, HashSet<String>> = HashMap::new();
    let mut operator = String::new();
    for r in records {
        match &r.stamped.event {
            Event::RunStarted { user, .. } => operator = user.clone(),
            // A step that did not run (a manual step nobody confirmed) runs again on resume.
            Event::StepFinished {
                step,
                status: StepStatus::NotRun,
                ..
            } => {
                p.done.remove(step);
            }
            // A finally step that finished does not run again (`runbook rollback` after the
            // run's end, a resume after a kill during the finally steps).
            Event::StepFinished {
                step,
                status,
                result,
                ..
            } if rb.finally.iter().any(|f| f.id.name == *step) => {
                p.done.insert(step.clone(), (*status, result.clone()));
            }
            Event::StepFinished {
                step,
                status,
                result,
                ..
            } if rb.step(step).is_some() => {
                p.done.insert(step.clone(), (*status, result.clone()));
                if *status == StepStatus::Succeeded && rb.step(step).is_some_and(|s| s.commit) {
                    // A commit discharged the rollbacks registered before it.
                    p.rollbacks.clear();
                }
                if (*status == StepStatus::Succeeded || crate::execute::partly_done(result))
                    && rb.step(step).is_some_and(|s| s.rollback.is_some())
                    && !p.rollbacks.contains(step)
                {
                    p.rollbacks.push(step.clone());
                }
                let tolerated = rb.step(step).is_some_and(|s| s.continue_on_failure);
                if matches!(
                    status,
                    StepStatus::Failed | StepStatus::TimedOut | StepStatus::Cancelled
                ) && !tolerated
                {
                    p.unwinding = true;
                    if p.unwind_cause.is_none() {
                        p.unwind_cause = Some((false, format!("step `{step}` failed")));
                    }
                }
            }
            Event::StepSkipped { step, reason } => {
                p.done
                    .insert(step.clone(), (StepStatus::Skipped, skipped_result(reason)));
            }
            Event::GateAnswered {
                step,
                decision: Decision::Approved,
                user,
                ..
            } => {
                approvers
                    .entry(step.clone())
                    .or_default()
                    .insert(user.clone());
            }
            Event::GateAnswered {
                step,
                decision: d @ (Decision::Declined | Decision::Aborted),
                ..
            } if p.unwind_cause.is_none() => {
                let what = if *d == Decision::Declined {
                    "declined the gate of"
                } else {
                    "aborted at the gate of"
                };
                p.unwind_cause = Some((true, format!("the operator {what} `{step}`")));
            }
            Event::RunFinished { status, reason, .. } => {
                if let Some(cause) = unwind_cause(*status, reason) {
                    p.unwind_cause = Some(cause);
                }
            }
            Event::AskAnswered {
                step,
                user,
                streamed: Some(s),
                ..
            } => streamed(&mut p, step, user, s),
            Event::RollbackStarted { .. } => p.unwinding = true,
            // Only an undo that worked is done: a failed or interrupted one runs again.
            Event::RollbackFinished {
                step,
                status: StepStatus::Succeeded,
                ..
            } => {
                p.rolled_back.insert(step.clone());
            }
            _ => {}
        }
    }
    for (step, users) in approvers {
        let Some(gate) = rb.step(&step).and_then(|s| s.confirm.as_ref()) else {
            continue;
        };
        let count = users
            .iter()
            .filter(|u| !gate.other_approver || **u != operator)
            .count();
        if count >= gate.approvals as usize {
            p.approved.insert(step);
        }
    }
    p
}

/// Units of per-item / per-host rollbacks that succeeded, by step: they do not run again
/// (a failed or interrupted unit does).
fn rollback_units_done(records: &[journal::Record]) -> HashMap<String, HashSet<String>> {
    let mut done: HashMap<String, HashSet<String>> = HashMap::new();
    for r in records {
        if let Event::RollbackItemFinished {
            step,
            unit,
            status: StepStatus::Succeeded,
        } = &r.stamped.event
        {
            done.entry(step.clone()).or_default().insert(unit.clone());
        }
    }
    done
}

/// An answer a step consumed as it arrived: not asked again for an item done.
fn streamed(p: &mut Prior, step: &str, user: &str, s: &crate::event::Streamed) {
    let a = crate::execute::PriorAnswer {
        index: s.index,
        user: user.to_string(),
        value: s.value.clone(),
    };
    p.answers.entry(step.to_string()).or_default().push(a);
}

/// Why a run that ended was unwinding (`true`: declined or aborted), for a later
/// `rollback`/`resume` that finishes the unwinding: it ends with the same cause (an abort
/// stays exit 3).
fn unwind_cause(status: ExitStatus, reason: &str) -> Option<(bool, String)> {
    let cause = reason
        .split("; rollback incomplete")
        .next()
        .unwrap_or(reason)
        .trim_end_matches(" (unwinding resumed by a later engine)");
    let aborted = match status {
        ExitStatus::Aborted => true,
        ExitStatus::StepFailed => false,
        ExitStatus::RollbackIncomplete => {
            cause.starts_with("interrupted by a signal") || cause.starts_with("the operator")
        }
        _ => return None,
    };
    (!cause.starts_with("the run was rolling back")).then(|| (aborted, cause.to_string()))
}
