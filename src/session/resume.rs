//! Resuming a run: what was in flight when its engine stopped (steps, `for_each` items,
//! hosts of a fan-out, rollbacks), and how each decision changes what the run knows. Who
//! decides (a flag, idempotence, a person at a terminal) is the front end's business.

use std::collections::HashMap;

use std::path::Path;

use crate::event::{Event, StepStatus};
use crate::execute::Prior;
use crate::exit::ExitStatus;
use crate::journal;
use crate::journal::live::{self, LiveError, LiveGuard};
use crate::model::Runbook;

/// Why a run cannot be continued: the lines to show, and the exit status.
#[derive(Debug, Clone)]
pub(crate) struct OpenError {
    pub(crate) status: ExitStatus,
    pub(crate) messages: Vec<String>,
}

fn refused(status: ExitStatus, message: String) -> OpenError {
    OpenError {
        status,
        messages: vec![message],
    }
}

/// A recorded run, owned by this engine and ready to be continued.
pub(crate) struct Opened {
    /// Liveness, taken before the journal was read: a live engine's run is refused.
    pub(crate) live: LiveGuard,
    pub(crate) records: Vec<journal::Record>,
    /// The runbook file the run started from, and its SHA-256 then.
    pub(crate) file: String,
    pub(crate) sha: String,
    /// The run's non-secret input values, as journaled.
    pub(crate) values: Vec<(String, serde_json::Value)>,
}

/// Opens run directory `dir` (under `runs`) to continue it: ownership, liveness, a journal
/// that can be trusted, and a run in a state that can be continued (`rollback`: one that
/// ended with rollbacks left; else one that has not finished).
pub(crate) fn open(
    dir: &Path,
    runs: &Path,
    rollback: bool,
    ignore_head: bool,
) -> Result<Opened, OpenError> {
    let run_id = super::store::run_id_of(dir);
    let flag = super::store::runs_flag(runs);
    for (d, follow) in [(runs, true), (dir, false)] {
        super::store::check_owned(d, follow)
            .map_err(|e| refused(ExitStatus::Invalid, e.message))?;
    }
    let rd = super::store::RunDir::new(dir);
    let live = live::hold(&rd.engine_lock()).map_err(|e| match e {
        LiveError::Held(_) => refused(
            ExitStatus::Busy,
            format!(
                "cannot continue run {run_id}: {e}: watch it with `runbook show{flag} {run_id}`"
            ),
        ),
        e => refused(
            ExitStatus::EngineFailed,
            format!("cannot continue run {run_id}: {e}"),
        ),
    })?;
    // A shared store saw the run's engine live on another machine when it brought this
    // copy up to date (the store refuses a second engine anyway, see `Store::begin`).
    if let Some(h) = live::remote_holder(&rd.engine_remote()) {
        return Err(refused(
            ExitStatus::Busy,
            format!(
                "cannot continue run {run_id}: its engine {}@{} (pid {}) runs it from another machine",
                h.user, h.host, h.pid
            ),
        ));
    }
    let untrusted = "refusing to continue from a journal that cannot be trusted";
    let records = match journal::load(&rd.files()) {
        Ok(l) => match journal::missing_tail(&l, false) {
            // A missing/damaged head only if the operator says so (`--ignore-damaged-head`).
            Some(_) if ignore_head && l.head_problem.is_some() => l.records,
            Some(why) if l.head_problem.is_some() => {
                let path = rd.journal();
                let m = format!(
                    "{}: {why}; {untrusted} (continue anyway with --ignore-damaged-head)",
                    path.display()
                );
                return Err(refused(ExitStatus::Invalid, m));
            }
            Some(why) => {
                let path = rd.journal();
                let m = format!("{}: {why}; {untrusted}", path.display());
                return Err(refused(ExitStatus::Invalid, m));
            }
            None => l.records,
        },
        Err(e) => return Err(refused(ExitStatus::Invalid, format!("{e}; {untrusted}"))),
    };
    let Some((file, sha, values)) = records.iter().find_map(|r| match &r.stamped.event {
        Event::RunStarted {
            file,
            file_sha256,
            values,
            ..
        } => Some((file.clone(), file_sha256.clone(), values.clone())),
        _ => None,
    }) else {
        let m = "the journal has no run-started record".to_string();
        return Err(refused(ExitStatus::Invalid, m));
    };
    continuable(dir, &records, &run_id, &flag, rollback)?;
    // Plain inputs asked when a step first needed them are restored too (secrets never are).
    let mut values: Vec<(String, serde_json::Value)> = values.into_iter().collect();
    values.extend(records.iter().filter_map(|r| match &r.stamped.event {
        Event::InputGiven {
            input,
            value: Some(v),
            ..
        } => Some((input.clone(), v.clone())),
        _ => None,
    }));
    Ok(Opened {
        live,
        records,
        file,
        sha,
        values,
    })
}

/// Whether the run's last end allows continuing it this way.
fn continuable(
    dir: &Path,
    records: &[journal::Record],
    run_id: &str,
    flag: &str,
    rollback: bool,
) -> Result<(), OpenError> {
    let last_end = records
        .iter()
        .rev()
        .map(|r| &r.stamped.event)
        .find(|e| matches!(e, Event::RunFinished { .. } | Event::RunResumed { .. }));
    let invalid = |m: String| Err(refused(ExitStatus::Invalid, m));
    match (rollback, last_end) {
        (
            false,
            Some(Event::RunFinished {
                resumable: false,
                exit_code,
                reason,
                ..
            }),
        ) => {
            let mut messages = Vec::new();
            // Killed between its last record and its head: seal it now, so the run reads
            // as sealed (verify) whatever moment the engine died at.
            let files = super::store::RunDir::new(dir).files();
            if let Err(e) = crate::journal::Journal::reseal_if_ended(&files) {
                messages.push(format!("cannot seal the journal of run {run_id}: {e}"));
            }
            let next = if *exit_code == ExitStatus::RollbackIncomplete.code() {
                format!("; finish its unwinding with `runbook rollback{flag} {run_id}`")
            } else {
                format!("; see `runbook show{flag} {run_id}`")
            };
            messages.push(format!(
                "run {run_id} already finished (exit {exit_code}: {reason}); there is nothing to resume{next}"
            ));
            Err(OpenError {
                status: ExitStatus::Invalid,
                messages,
            })
        }
        (true, Some(Event::RunFinished { exit_code, .. }))
            if *exit_code == ExitStatus::RollbackIncomplete.code() =>
        {
            Ok(())
        }
        (
            true,
            Some(Event::RunFinished {
                exit_code, reason, ..
            }),
        ) => invalid(format!(
            "run {run_id} ended with exit {exit_code} ({reason}), not 4: it has no rollbacks left to run"
        )),
        (true, _) => invalid(format!(
            "run {run_id} has not ended: continue it with `runbook resume{flag} {run_id}` (it unwinds if it was unwinding)"
        )),
        _ => Ok(()),
    }
}

/// An item (and, for a fan-out, a host) of a step.
type Unit = (usize, Option<String>);

/// Work that was in flight when the engine stopped.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    /// Steps resumed per item: the units that finished before, and those in doubt.
    units: Vec<(String, HashMap<Unit, serde_json::Value>, Vec<Unit>)>,
    /// Steps in doubt as a whole.
    steps: Vec<String>,
    /// Rollbacks whose command was announced and that did not finish: as a whole (`None`),
    /// or one unit (item, host) of a rollback that runs per unit.
    rollbacks: Vec<(String, Option<String>)>,
}

/// One decision to make: run this again?
#[derive(Debug, Clone)]
pub(crate) struct InDoubt {
    /// What was in flight (`step `x``, `item 2 of step `x``, `the rollback of `x``).
    pub(crate) what: String,
    /// The step is marked idempotent: running it again is safe.
    pub(crate) idempotent: bool,
    rollback: bool,
    /// The step (for the refusal of a rollback).
    step: String,
}

impl InDoubt {
    /// The question for a person at a terminal.
    pub(crate) fn question(&self) -> String {
        if self.rollback {
            format!(
                "{} was running when the engine stopped and the step is not idempotent. Run the rollback again?",
                self.what
            )
        } else if self.what.starts_with("step ") {
            format!(
                "{} was running when the engine stopped and is not idempotent. Run it again?",
                self.what
            )
        } else {
            format!(
                "{} was running when the engine stopped and the step is not idempotent. Run it again?",
                self.what
            )
        }
    }

    /// Why a headless resume without a flag stops here.
    pub(crate) fn refusal(&self) -> String {
        let not = if self.rollback {
            format!("`{}` is not marked idempotent", self.step)
        } else {
            "is not marked idempotent".to_string()
        };
        format!(
            "{} was in flight when the engine stopped and {not}: decide with --rerun-in-doubt or --skip-in-doubt (check on the host whether it took effect)",
            self.what
        )
    }
}

/// Steps (and rollbacks) of a killed engine whose processes still run, as (step, process
/// group, command line): continuing now would run the same action twice, concurrently.
pub(crate) fn orphans(
    run_id: &str,
    records: &[journal::Record],
    prior: &Prior,
) -> Vec<(String, u32, String)> {
    let mut in_flight: std::collections::HashSet<String> = std::collections::HashSet::new();
    for r in records {
        match &r.stamped.event {
            Event::StepStarted { step, .. } if !prior.done.contains_key(step) => {
                in_flight.insert(step.clone());
            }
            Event::RollbackStarted { step, .. } if !prior.rolled_back.contains(step) => {
                in_flight.insert(step.clone());
            }
            _ => {}
        }
    }
    crate::runner::local::orphaned_processes(run_id, &in_flight)
}

/// Finds what was in flight, from the journal's records and what is known done.
pub(crate) fn in_flight(rb: &Runbook, records: &[journal::Record], prior: &Prior) -> InFlight {
    let mut out = InFlight::default();
    // Steps in flight when the engine stopped.
    let mut doubtful: Vec<String> = Vec::new();
    for r in records {
        if let Event::StepStarted { step, .. } = &r.stamped.event
            && !prior.done.contains_key(step)
            && rb.step(step).is_some()
            && !doubtful.contains(step)
        {
            doubtful.push(step.clone());
        }
    }
    // `for_each` steps resume per item: finished items are not run again, items in flight
    // are in doubt one by one, items never started run.
    let mut items_started: HashMap<String, Vec<Unit>> = HashMap::new();
    // Commands announced (`step-started`) per step: (item index, host). A unit whose
    // command was never announced did not start (its process starts only after that record
    // is on disk): it simply runs again, it is not in doubt.
    let mut announced_units: HashMap<String, Vec<Unit>> = HashMap::new();
    let mut items_finished: HashMap<String, HashMap<Unit, serde_json::Value>> = HashMap::new();
    for r in records {
        match &r.stamped.event {
            Event::ItemStarted {
                step,
                item_index,
                host,
            } => items_started
                .entry(step.clone())
                .or_default()
                .push((*item_index, host.clone())),
            Event::StepStarted {
                step,
                host,
                item_index,
                ..
            } => announced_units
                .entry(step.clone())
                .or_default()
                .push((item_index.unwrap_or(0), host.clone())),
            Event::ItemFinished {
                step,
                item_index,
                host,
                status: StepStatus::Succeeded,
                result,
            } => {
                items_finished
                    .entry(step.clone())
                    .or_default()
                    .insert((*item_index, host.clone()), result.clone());
            }
            _ => {}
        }
    }
    for id in doubtful {
        let Some(mut started) = items_started.remove(&id) else {
            out.steps.push(id);
            continue;
        };
        let done = items_finished.remove(&id).unwrap_or_default();
        started.sort_unstable();
        started.dedup();
        // An item that ran on several hosts is decided host by host: the item itself runs
        // again, skipping the hosts that finished (or were treated as done).
        let with_hosts: Vec<usize> = started
            .iter()
            .filter(|(_, h)| h.is_some())
            .map(|(k, _)| *k)
            .collect();
        started.retain(|u| !done.contains_key(u) && (u.1.is_some() || !with_hosts.contains(&u.0)));
        let announced = announced_units.remove(&id).unwrap_or_default();
        started.retain(|(k, h)| {
            announced
                .iter()
                .any(|(ak, ah)| ak == k && (h.is_none() || ah == h))
        });
        out.units.push((id, done, started));
    }
    out.rollbacks = rollbacks_in_flight(rb, records, prior);
    out
}

/// Rollbacks in flight when the engine stopped. Only a rollback whose command was announced
/// (`step-started` after its `rollback-started`) may have taken effect; one cut before that
/// simply runs. A rollback that runs per item or host journals each unit
/// (`rollback-item-started` … `rollback-item-finished`): only the unit whose command was
/// announced and did not finish is in doubt; the units that finished do not run again and
/// those never started simply run. (Journals without unit records: the rollback as a whole.)
fn rollbacks_in_flight(
    rb: &Runbook,
    records: &[journal::Record],
    prior: &Prior,
) -> Vec<(String, Option<String>)> {
    let mut started: Vec<(String, Option<String>)> = Vec::new();
    let mut announced: Vec<String> = Vec::new();
    // The unit of each step's rollback running now (between its item records).
    let mut open: HashMap<String, String> = HashMap::new();
    for r in records {
        match &r.stamped.event {
            Event::RollbackStarted { step, .. } => {
                announced.push(step.clone());
                open.remove(step);
            }
            Event::RollbackItemStarted { step, unit, .. } => {
                open.insert(step.clone(), unit.clone());
            }
            Event::StepStarted { step, .. } if announced.contains(step) => {
                let unit = (step.clone(), open.get(step).cloned());
                if !started.contains(&unit) {
                    started.push(unit);
                }
            }
            Event::RollbackItemFinished { step, unit, .. } => {
                open.remove(step);
                started.retain(|(s, u)| !(s == step && u.as_ref() == Some(unit)));
            }
            // Ended (even failed or cancelled): known, not in doubt.
            Event::RollbackFinished { step, .. } => {
                announced.retain(|s| s != step);
                started.retain(|(s, _)| s != step);
                open.remove(step);
            }
            _ => {}
        }
    }
    started.retain(|(id, _)| !prior.rolled_back.contains(id) && rb.step(id).is_some());
    started
}

impl InFlight {
    /// Only the rollbacks (`runbook rollback`: nothing runs forward).
    pub(crate) fn rollbacks_only(mut self) -> InFlight {
        self.units.clear();
        self.steps.clear();
        self
    }

    /// Asks `decide` about each piece of work in doubt (`Some(true)`: run it again) and
    /// records the answers in `prior`. `false`: a decision was refused; the resume stops.
    pub(crate) fn decide(
        self,
        rb: &Runbook,
        prior: &mut Prior,
        mut decide: impl FnMut(&InDoubt) -> Option<bool>,
    ) -> bool {
        let idempotent = |id: &str| rb.step(id).is_some_and(|s| s.idempotent);
        let treated_as_done = || serde_json::json!({ "outcome": "succeeded", "in_doubt": true });
        for (id, mut done, units) in self.units {
            for unit in units {
                let what = match &unit {
                    (k, Some(h)) if rb.step(&id).is_some_and(|s| s.for_each.is_some()) => {
                        format!("host {h} of item {k} of step `{id}`")
                    }
                    (_, Some(h)) => format!("host {h} of step `{id}`"),
                    (k, None) => format!("item {k} of step `{id}`"),
                };
                let q = InDoubt {
                    what,
                    idempotent: idempotent(&id),
                    rollback: false,
                    step: id.clone(),
                };
                let Some(rerun) = decide(&q) else {
                    return false;
                };
                let key = match &unit {
                    (k, Some(h)) => format!("{id} item {k} host {h}"),
                    (k, None) => format!("{id} item {k}"),
                };
                prior.in_doubt.insert(key, rerun);
                if !rerun {
                    done.insert(unit, treated_as_done());
                }
            }
            // The step runs again, skipping the items and hosts listed as done.
            prior.in_doubt.insert(id.clone(), true);
            prior.items_done.insert(id, done);
        }
        for id in self.steps {
            let q = InDoubt {
                what: format!("step `{id}`"),
                idempotent: idempotent(&id),
                rollback: false,
                step: id.clone(),
            };
            let Some(rerun) = decide(&q) else {
                return false;
            };
            prior.in_doubt.insert(id.clone(), rerun);
            if !rerun {
                prior
                    .done
                    .insert(id.clone(), (StepStatus::Succeeded, treated_as_done()));
                if rb.step(&id).is_some_and(|s| s.rollback.is_some()) {
                    prior.rollbacks.push(id);
                }
            }
        }
        for (id, unit) in self.rollbacks {
            let what = match &unit {
                Some(u) => format!("the rollback of {u} of `{id}`"),
                None => format!("the rollback of `{id}`"),
            };
            let q = InDoubt {
                what,
                idempotent: idempotent(&id),
                rollback: true,
                step: id.clone(),
            };
            let Some(rerun) = decide(&q) else {
                return false;
            };
            match unit {
                // The rollback runs again, without the units that ran (or are treated so).
                Some(u) => {
                    prior
                        .in_doubt
                        .insert(format!("rollback of {id} {u}"), rerun);
                    if !rerun {
                        prior.rollback_units_done.entry(id).or_default().insert(u);
                    }
                }
                None => {
                    prior.in_doubt.insert(format!("rollback of {id}"), rerun);
                    if !rerun {
                        prior.rolled_back.insert(id);
                    }
                }
            }
        }
        true
    }
}

#[cfg(test)]
#[path = "resume_tests.rs"]
mod tests;
