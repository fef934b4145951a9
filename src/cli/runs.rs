//! Commands over recorded runs: resume, approve/reject, runs, transcript, attach, unlock.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::path::PathBuf;

use super::exec::launch;
use super::store::{resolve, run_id_of, runs_dir, runs_flag};
use super::{
    AnswerArgs, AttachArgs, ResumeArgs, RollbackArgs, TranscriptArgs, TranscriptFormat, UnlockArgs,
    error_line, input_errors, load_runbook,
};
use crate::execute::engine::Prior;
use crate::execute::event::{Decision, Event, StepStatus};
use crate::exit::ExitStatus;
use crate::journal;
use crate::plan::inputs;

fn run_dir(dir: &super::RunsDirArg, run_id: &str) -> Result<PathBuf, ExitStatus> {
    resolve(dir.runs_dir.as_deref(), run_id)
}

pub(crate) fn cmd_resume(a: &ResumeArgs, color: bool) -> ExitStatus {
    let dir = match run_dir(&a.dir, &a.run_id) {
        Ok(d) => d,
        Err(s) => return s,
    };
    let how = Continue::Resume {
        rerun_in_doubt: a.rerun_in_doubt,
        skip_in_doubt: a.skip_in_doubt,
    };
    continue_run(&dir, a.dir.runs_dir.as_deref(), &a.run, how, color)
}

pub(crate) fn cmd_rollback(a: &RollbackArgs, color: bool) -> ExitStatus {
    let dir = match run_dir(&a.dir, &a.run_id) {
        Ok(d) => d,
        Err(s) => return s,
    };
    continue_run(
        &dir,
        a.dir.runs_dir.as_deref(),
        &a.run,
        Continue::Rollback,
        color,
    )
}

/// How a recorded run is continued.
#[derive(Debug, Clone, Copy)]
enum Continue {
    /// From where it stopped.
    Resume {
        rerun_in_doubt: bool,
        skip_in_doubt: bool,
    },
    /// Only the rollbacks that did not run (after exit 4).
    Rollback,
}

/// A command line as one short, printable line (no control characters reach the terminal).
fn printable(s: &str) -> String {
    let mut t: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(120)
        .collect();
    if s.chars().count() > 120 {
        t.push('…');
    }
    t
}

fn continue_run(
    dir: &std::path::Path,
    runs_flag_dir: Option<&std::path::Path>,
    given: &super::RunOpts,
    how: Continue,
    color: bool,
) -> ExitStatus {
    let run_id = run_id_of(dir);
    let runs = runs_dir(runs_flag_dir);
    let flag = runs_flag(&runs);
    for (d, follow) in [(runs.as_path(), true), (dir, false)] {
        if let Err(e) = journal::dirs::check_owned(d, follow) {
            error_line(e);
            return ExitStatus::Invalid;
        }
    }
    // Own the run before reading what it did: a live engine's run is refused.
    let live = match journal::live::hold(dir) {
        Ok(g) => g,
        Err(e @ journal::live::LiveError::Held(_)) => {
            error_line(format!(
                "cannot continue run {run_id}: {e}: watch it with `runbook show{flag} {run_id}`"
            ));
            return ExitStatus::Busy;
        }
        Err(e) => {
            error_line(format!("cannot continue run {run_id}: {e}"));
            return ExitStatus::EngineFailed;
        }
    };
    let records = match journal::load(dir) {
        Ok(l) => match journal::missing_tail(&l, false) {
            Some(why) => {
                error_line(format!(
                    "{}: {why}; refusing to continue from a journal that cannot be trusted",
                    dir.join(journal::JOURNAL_FILE).display()
                ));
                return ExitStatus::Invalid;
            }
            None => l.records,
        },
        Err(e) => {
            error_line(format!(
                "{e}; refusing to continue from a journal that cannot be trusted"
            ));
            return ExitStatus::Invalid;
        }
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
        error_line("the journal has no run-started record");
        return ExitStatus::Invalid;
    };
    let last_end = records
        .iter()
        .rev()
        .map(|r| &r.stamped.event)
        .find(|e| matches!(e, Event::RunFinished { .. } | Event::RunResumed { .. }));
    match (how, last_end) {
        (
            Continue::Resume { .. },
            Some(Event::RunFinished {
                resumable: false,
                exit_code,
                reason,
                ..
            }),
        ) => {
            // Killed between its last record and its head: seal it now, so the run reads
            // as sealed (verify) whatever moment the engine died at.
            if let Err(e) = crate::journal::Journal::reseal_if_ended(dir) {
                error_line(format!("cannot seal the journal of run {run_id}: {e}"));
            }
            let next = if *exit_code == ExitStatus::RollbackIncomplete.code() {
                format!("; finish its unwinding with `runbook rollback{flag} {run_id}`")
            } else {
                format!("; see `runbook show{flag} {run_id}`")
            };
            error_line(format!(
                "run {run_id} already finished (exit {exit_code}: {reason}); there is nothing to resume{next}"
            ));
            return ExitStatus::Invalid;
        }
        (Continue::Rollback, Some(Event::RunFinished { exit_code, .. }))
            if *exit_code == ExitStatus::RollbackIncomplete.code() => {}
        (
            Continue::Rollback,
            Some(Event::RunFinished {
                exit_code, reason, ..
            }),
        ) => {
            error_line(format!(
                "run {run_id} ended with exit {exit_code} ({reason}), not 4: it has no rollbacks left to run"
            ));
            return ExitStatus::Invalid;
        }
        (Continue::Rollback, _) => {
            error_line(format!(
                "run {run_id} has not ended: continue it with `runbook resume{flag} {run_id}` (it unwinds if it was unwinding)"
            ));
            return ExitStatus::Invalid;
        }
        _ => {}
    }
    let mut f = super::remember::merged(dir, given);
    if matches!(how, Continue::Rollback) {
        // Rolling back is the point, whatever the run was started with.
        f.no_rollback = false;
    }
    let path = PathBuf::from(&file);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            error_line(format!("cannot read the runbook {file}: {e}"));
            return ExitStatus::Invalid;
        }
    };
    if journal::sha256_hex(&bytes) != sha {
        error_line(format!(
            "{file} changed since run {run_id} started; continuing would run different steps. Restore the file, or start a new run"
        ));
        return ExitStatus::Invalid;
    }
    let rb = match load_runbook(&path, color, false) {
        Ok(rb) => rb,
        Err(s) => return s,
    };
    let provided = inputs::Provided {
        pairs: Vec::new(),
        file: values.into_iter().collect(),
    };
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let mut prompt = super::exec::secret_prompter(interactive);
    let resolved = match inputs::resolve_resumed(&rb, &provided, Some(&mut prompt)) {
        Ok(r) => r,
        Err(errors) => return input_errors(&errors),
    };
    let mut prior = prior_from(&rb, &records);
    let (rerun_in_doubt, skip_in_doubt) = match how {
        Continue::Resume {
            rerun_in_doubt,
            skip_in_doubt,
        } => (rerun_in_doubt, skip_in_doubt),
        Continue::Rollback => {
            // Nothing runs forward: straight to the unwinding of what is left.
            prior.unwinding = true;
            (false, true)
        }
    };
    // Steps (and rollbacks) of a killed engine whose processes still run: starting them
    // again now would run the same action twice, concurrently.
    let mut in_flight: HashSet<String> = HashSet::new();
    for r in &records {
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
    let orphans = crate::execute::runner::local::orphaned_processes(&run_id, &in_flight);
    if !orphans.is_empty() {
        for (step, pgid, cmd) in &orphans {
            error_line(format!(
                "cannot continue run {run_id}: the processes of `{step}` started by the killed engine are still running (process group {pgid}: {}); let them finish, or stop them with `kill -TERM -- -{pgid}`, then continue",
                printable(cmd)
            ));
        }
        return ExitStatus::Busy;
    }
    // Steps in flight when the engine stopped.
    let started: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.stamped.event {
            Event::StepStarted { step, .. } => Some(step.clone()),
            _ => None,
        })
        .collect();
    let mut doubtful = Vec::new();
    for id in started {
        if !prior.done.contains_key(&id) && rb.step(&id).is_some() && !doubtful.contains(&id) {
            doubtful.push(id);
        }
    }
    if matches!(how, Continue::Rollback) {
        doubtful.clear();
    }
    // `for_each` steps resume per item: finished items are not run again, items in flight are
    // in doubt one by one, items never started run.
    type Unit = (usize, Option<String>);
    let mut items_started: HashMap<String, Vec<Unit>> = HashMap::new();
    // Commands announced (`step-started`) per step: (item index, host). A unit whose command
    // was never announced did not start (its process starts only after that record is on
    // disk): it simply runs again, it is not in doubt.
    let mut announced_units: HashMap<String, Vec<Unit>> = HashMap::new();
    let mut items_finished: HashMap<String, HashMap<Unit, serde_json::Value>> = HashMap::new();
    for r in &records {
        match &r.stamped.event {
            Event::ItemStarted {
                step,
                item_index,
                host,
            } => {
                items_started
                    .entry(step.clone())
                    .or_default()
                    .push((*item_index, host.clone()));
            }
            Event::StepStarted {
                step,
                host,
                item_index,
                ..
            } => {
                announced_units
                    .entry(step.clone())
                    .or_default()
                    .push((item_index.unwrap_or(0), host.clone()));
            }
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
    let mut whole = Vec::new();
    for id in doubtful {
        if !items_started.contains_key(&id) {
            whole.push(id);
            continue;
        }
        let idempotent = rb.step(&id).is_some_and(|s| s.idempotent);
        let mut done = items_finished.remove(&id).unwrap_or_default();
        let mut started = items_started.remove(&id).unwrap_or_default();
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
        for unit in started {
            let what = match &unit {
                (k, Some(h)) if rb.step(&id).is_some_and(|s| s.for_each.is_some()) => {
                    format!("host {h} of item {k} of step `{id}`")
                }
                (_, Some(h)) => format!("host {h} of step `{id}`"),
                (k, None) => format!("item {k} of step `{id}`"),
            };
            let Some(rerun) = decide_in_doubt(
                idempotent,
                (rerun_in_doubt, skip_in_doubt, interactive),
                format!(
                    "{what} was running when the engine stopped and the step is not idempotent. Run it again?"
                ),
                format!(
                    "{what} was in flight when the engine stopped and is not marked idempotent: decide with --rerun-in-doubt or --skip-in-doubt (check on the host whether it took effect)"
                ),
            ) else {
                return ExitStatus::Aborted;
            };
            let key = match &unit {
                (k, Some(h)) => format!("{id} item {k} host {h}"),
                (k, None) => format!("{id} item {k}"),
            };
            prior.in_doubt.insert(key, rerun);
            if !rerun {
                done.insert(
                    unit,
                    serde_json::json!({ "outcome": "succeeded", "in_doubt": true }),
                );
            }
        }
        // The step runs again, skipping the items and hosts listed as done.
        prior.in_doubt.insert(id.clone(), true);
        prior.items_done.insert(id, done);
    }
    for id in whole {
        let idempotent = rb.step(&id).is_some_and(|s| s.idempotent);
        let Some(rerun) = decide_in_doubt(
            idempotent,
            (rerun_in_doubt, skip_in_doubt, interactive),
            format!(
                "step `{id}` was running when the engine stopped and is not idempotent. Run it again?"
            ),
            format!(
                "step `{id}` was in flight when the engine stopped and is not marked idempotent: decide with --rerun-in-doubt or --skip-in-doubt (check on the host whether it took effect)"
            ),
        ) else {
            return ExitStatus::Aborted;
        };
        prior.in_doubt.insert(id.clone(), rerun);
        if !rerun {
            prior.done.insert(
                id.clone(),
                (
                    StepStatus::Succeeded,
                    serde_json::json!({ "outcome": "succeeded", "in_doubt": true }),
                ),
            );
            if rb.step(&id).is_some_and(|s| s.rollback.is_some()) {
                prior.rollbacks.push(id);
            }
        }
    }
    // Rollbacks in flight when the engine stopped are in doubt like steps.
    // Only a rollback whose command was announced (`step-started` after its
    // `rollback-started`) may have taken effect; one cut before that simply runs.
    let mut rollback_started: Vec<String> = Vec::new();
    let mut announced: Vec<String> = Vec::new();
    for r in &records {
        match &r.stamped.event {
            Event::RollbackStarted { step, .. } => announced.push(step.clone()),
            Event::StepStarted { step, .. }
                if announced.contains(step) && !rollback_started.contains(step) =>
            {
                rollback_started.push(step.clone());
            }
            // Ended (even failed or cancelled): known, not in doubt.
            Event::RollbackFinished { step, .. } => {
                announced.retain(|s| s != step);
                rollback_started.retain(|s| s != step);
            }
            _ => {}
        }
    }
    for id in rollback_started {
        if prior.rolled_back.contains(&id) || rb.step(&id).is_none() {
            continue;
        }
        let idempotent = rb.step(&id).is_some_and(|s| s.idempotent);
        let Some(rerun) = decide_in_doubt(
            idempotent,
            (rerun_in_doubt, skip_in_doubt, interactive),
            format!(
                "the rollback of `{id}` was running when the engine stopped and the step is not idempotent. Run the rollback again?"
            ),
            format!(
                "the rollback of `{id}` was in flight when the engine stopped and `{id}` is not marked idempotent: decide with --rerun-in-doubt or --skip-in-doubt (check on the host whether it took effect)"
            ),
        ) else {
            return ExitStatus::Aborted;
        };
        prior.in_doubt.insert(format!("rollback of {id}"), rerun);
        if !rerun {
            prior.rolled_back.insert(id);
        }
    }
    prior.resumed = true;
    launch(
        rb,
        resolved,
        path,
        sha,
        run_id,
        &runs,
        &f,
        false,
        prior,
        color,
        Some(live),
    )
}

/// What a journal says already happened.
fn prior_from(rb: &crate::model::Runbook, records: &[journal::Record]) -> Prior {
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
                if *status == StepStatus::Succeeded
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
                p.done.insert(step.clone(), (StepStatus::Skipped, serde_json::json!({ "outcome": "skipped", "skipped": true, "reason": reason })));
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
                // Why the run stopped, for a later `rollback`/`resume` that finishes the
                // unwinding: it ends with the same cause (an abort stays exit 3).
                let cause = reason
                    .split("; rollback incomplete")
                    .next()
                    .unwrap_or(reason)
                    .trim_end_matches(" (unwinding resumed by a later engine)");
                let aborted = match status {
                    ExitStatus::Aborted => Some(true),
                    ExitStatus::StepFailed => Some(false),
                    ExitStatus::RollbackIncomplete => Some(
                        cause.starts_with("interrupted by a signal")
                            || cause.starts_with("the operator"),
                    ),
                    _ => None,
                };
                if let Some(aborted) = aborted
                    && !cause.starts_with("the run was rolling back")
                {
                    p.unwind_cause = Some((aborted, cause.to_string()));
                }
            }
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

pub(crate) fn cmd_answer(a: &AnswerArgs, decision: Decision) -> ExitStatus {
    let dir = match run_dir(&a.dir, &a.run_id) {
        Ok(d) => d,
        Err(s) => return s,
    };
    let run_id = run_id_of(&dir);
    let runs = runs_dir(a.dir.runs_dir.as_deref());
    let flag = runs_flag(&runs);
    // Another user may not read the journal (0600): then we cannot check, and say so.
    let view = journal::state::view(&dir).ok();
    if let Some(v) = &view {
        if let journal::state::RunState::Finished {
            status, exit_code, ..
        } = &v.state
        {
            error_line(format!(
                "run {run_id} already finished ({status}, exit {exit_code}): nothing waits for an answer (see `runbook show{flag} {run_id}`)"
            ));
            return ExitStatus::Invalid;
        }
        // The gate must be a gate (or manual step) of the run's runbook.
        if let Some(rb) = crate::load::load(std::path::Path::new(&v.file))
            .ok()
            .and_then(|l| crate::validate::validate(&l).runbook)
        {
            let gates: Vec<&str> = rb
                .steps
                .iter()
                .chain(rb.finally.iter())
                .filter(|s| {
                    s.confirm.is_some() || matches!(s.body.action, crate::model::Action::Manual(_))
                })
                .map(|s| s.id.name.as_str())
                .collect();
            if !gates.contains(&a.gate.as_str()) {
                let what = if rb.step(&a.gate).is_some() {
                    format!("step `{}` of run {run_id} has no gate", a.gate)
                } else {
                    format!("run {run_id} has no step `{}`", a.gate)
                };
                let hint = crate::diagnostic::did_you_mean(&a.gate, gates.iter().copied())
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default();
                let list = if gates.is_empty() {
                    "it has no gates".to_string()
                } else {
                    format!("its gates: {}", gates.join(", "))
                };
                error_line(format!("{what}{hint} ({list})"));
                return ExitStatus::Invalid;
            }
        }
        if v.steps
            .iter()
            .any(|s| s.id == a.gate && s.status != "waiting" && s.status != "not-run")
        {
            error_line(format!(
                "gate `{}` of run {run_id} was already passed (step is {}); nothing waits for this answer",
                a.gate,
                v.steps
                    .iter()
                    .find(|s| s.id == a.gate)
                    .map_or("?", |s| s.status.as_str())
            ));
            return ExitStatus::Invalid;
        }
    }
    let written_at = jiff::Timestamp::now();
    if let Err(e) = journal::answers::write(&dir, &a.gate, decision, a.comment.clone()) {
        error_line(e);
        return ExitStatus::Invalid;
    }
    let me = crate::execute::current_user();
    let verb = if decision == Decision::Approved {
        "approval"
    } else {
        "rejection"
    };
    println!("{verb} of `{}` written for run {run_id} by {me}", a.gate);
    use journal::state::RunState;
    match view.as_ref().map(|v| &v.state) {
        Some(RunState::Waiting { engine, gate, .. }) if *gate == a.gate => {
            // The engine polls answers/ several times a second: wait to see it journaled.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let taken = loop {
                if let Some(t) = taken_by_engine(&dir, &a.gate, &me, written_at) {
                    break Some(t);
                }
                if std::time::Instant::now() >= deadline {
                    break None;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            };
            match taken {
                Some(()) => println!(
                    "the engine (pid {}, {}@{}) took it: gate `{}` {}",
                    engine.pid,
                    engine.user,
                    engine.host,
                    a.gate,
                    if decision == Decision::Approved {
                        "approved by you (the run goes on if no other approval is needed)"
                    } else {
                        "rejected: the run stops and rolls back"
                    }
                ),
                None => println!(
                    "the engine (pid {}) is waiting at `{}` but has not journaled this answer yet; check with `runbook show{flag} {run_id}`",
                    engine.pid, a.gate
                ),
            }
        }
        Some(RunState::Waiting { gate, .. }) => println!(
            "note: the run's engine is live but waiting at `{gate}`, not `{}`: the answer is used when it gets there",
            a.gate
        ),
        Some(RunState::Running { engine }) => println!(
            "note: the run's engine (pid {}) is live but not at `{}` yet: the answer is used when it gets there",
            engine.pid, a.gate
        ),
        Some(RunState::Paused { .. } | RunState::Interrupted) => println!(
            "note: no engine is running this run: the answer is used when it continues with `runbook resume{flag} {run_id}`"
        ),
        Some(RunState::Finished { .. }) => {}
        None => println!(
            "note: cannot read the run's journal as {me}: whether its engine waits at `{}` is unknown; if it does, it takes the answer at once",
            a.gate
        ),
    }
    ExitStatus::Success
}

/// Whether the journal records the engine taking `user`'s answer to `gate` (or refusing it
/// with a warning) after `since`.
fn taken_by_engine(
    dir: &std::path::Path,
    gate: &str,
    user: &str,
    since: jiff::Timestamp,
) -> Option<()> {
    let records = journal::read(dir).ok()?;
    records.iter().rev().find_map(|r| {
        let at: jiff::Timestamp = r.stamped.at.parse().ok()?;
        if at < since.checked_sub(jiff::SignedDuration::from_secs(1)).ok()? {
            return None;
        }
        match &r.stamped.event {
            Event::GateAnswered { step, user: u, .. } if step == gate && u == user => Some(()),
            _ => None,
        }
    })
}

pub(crate) fn cmd_transcript(a: &TranscriptArgs) -> ExitStatus {
    let dir = match run_dir(&a.dir, &a.run_id) {
        Ok(d) => d,
        Err(s) => return s,
    };
    let t = match crate::transcript::load(&dir) {
        Ok(t) => t,
        Err(e) => {
            error_line(&e);
            return if matches!(e, journal::JournalError::Chain { .. }) {
                ExitStatus::StepFailed
            } else {
                ExitStatus::Invalid
            };
        }
    };
    if a.verify {
        let path = dir.join(journal::JOURNAL_FILE);
        let loaded = match journal::load(&dir) {
            Ok(l) => l,
            Err(e) => {
                error_line(e);
                return ExitStatus::StepFailed;
            }
        };
        if let Some(why) = journal::missing_tail(&loaded, true) {
            error_line(format!("{}: {why}", path.display()));
            return ExitStatus::StepFailed;
        }
        let ended = loaded
            .records
            .iter()
            .rev()
            .map(|r| &r.stamped.event)
            .find(|e| matches!(e, Event::RunFinished { .. } | Event::RunResumed { .. }))
            .is_some_and(|e| matches!(e, Event::RunFinished { .. }));
        let torn = if loaded.torn > 0 {
            format!(
                "; a torn last record ({} bytes, never completed) is not counted",
                loaded.torn
            )
        } else {
            String::new()
        };
        let sealed = match (&loaded.head, ended) {
            (Some(h), true) if h.sealed => "sealed end present",
            (_, true) => "ended (no head file: written before heads existed)",
            (_, false) => "not ended: interrupted or still running",
        };
        println!(
            "ok: {} — hash chain intact, {} record(s), {sealed}{torn}",
            path.display(),
            loaded.records.len()
        );
        return ExitStatus::Success;
    }
    let text = match (a.format, &a.template) {
        (_, Some(path)) => match std::fs::read_to_string(path) {
            Ok(tpl) => crate::transcript::render(&t, &tpl),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        },
        (TranscriptFormat::Json, None) => {
            serde_json::to_string_pretty(&t).map_err(|e| e.to_string())
        }
        (TranscriptFormat::Md, None) => {
            crate::transcript::render(&t, crate::transcript::MARKDOWN_TEMPLATE)
        }
    };
    match text {
        Ok(s) => {
            println!("{}", s.trim_end());
            ExitStatus::Success
        }
        Err(e) => {
            error_line(e);
            ExitStatus::Invalid
        }
    }
}

pub(crate) fn cmd_attach(a: &AttachArgs) -> ExitStatus {
    let dir = match run_dir(&a.dir, &a.run_id) {
        Ok(d) => d,
        Err(s) => return s,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error_line(e);
            return ExitStatus::EngineFailed;
        }
    };
    let mut status = ExitStatus::Success;
    for target in &a.to {
        if let Err(e) = crate::transcript::attach::Target::parse(target) {
            error_line(e);
            return ExitStatus::Invalid;
        }
        match rt.block_on(crate::transcript::attach::attach_run(&dir, target)) {
            Ok(msg) => println!("{msg}"),
            Err(e) => {
                error_line(e);
                status = ExitStatus::StepFailed;
            }
        }
    }
    status
}

pub(crate) fn cmd_unlock(a: &UnlockArgs) -> ExitStatus {
    let dir = runs_dir(a.dir.runs_dir.as_deref());
    match journal::lock::break_lock(&dir, &a.key, a.force) {
        Ok(h) => {
            println!(
                "broke lock `{}` held by run {} ({}@{}, pid {})",
                a.key, h.run_id, h.user, h.host, h.pid
            );
            ExitStatus::Success
        }
        Err(e) => {
            error_line(e);
            ExitStatus::Invalid
        }
    }
}

/// Whether work that was in flight when the engine stopped runs again: an idempotent step or
/// `--rerun-in-doubt` says yes, `--skip-in-doubt` no, a terminal asks `question` (default no);
/// headless without a flag, `refusal` is printed and the resume stops (`None`).
fn decide_in_doubt(
    idempotent: bool,
    (rerun_in_doubt, skip_in_doubt, interactive): (bool, bool, bool),
    question: String,
    refusal: String,
) -> Option<bool> {
    if idempotent || rerun_in_doubt {
        Some(true)
    } else if skip_in_doubt {
        Some(false)
    } else if interactive {
        Some(
            dialoguer::Confirm::new()
                .with_prompt(question)
                .default(false)
                .interact()
                .unwrap_or(false),
        )
    } else {
        error_line(refusal);
        None
    }
}
