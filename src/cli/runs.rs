//! Commands over recorded runs: resume, approve/reject, runs, transcript, attach, unlock.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::path::PathBuf;

use super::exec::{launch, runs_dir};
use super::{
    AnswerArgs, AttachArgs, ResumeArgs, RunsArgs, TranscriptArgs, TranscriptFormat, UnlockArgs,
    error_line, input_errors, load_runbook,
};
use crate::execute::engine::Prior;
use crate::execute::event::{Decision, Event, StepStatus};
use crate::exit::ExitStatus;
use crate::journal;
use crate::plan::inputs;

fn run_dir(dir: &super::RunsDirArg, run_id: &str) -> Result<PathBuf, ExitStatus> {
    if run_id.contains('/') || run_id.contains("..") || run_id.is_empty() {
        error_line(format!("`{run_id}` is not a run id"));
        return Err(ExitStatus::Invalid);
    }
    let d = runs_dir(dir.runs_dir.as_deref()).join(run_id);
    if !d.join(journal::JOURNAL_FILE).is_file() {
        error_line(format!(
            "no run `{run_id}` in {} (see `runbook runs`)",
            runs_dir(dir.runs_dir.as_deref()).display()
        ));
        return Err(ExitStatus::Invalid);
    }
    Ok(d)
}

pub(crate) fn cmd_resume(a: &ResumeArgs, color: bool) -> ExitStatus {
    let dir = match run_dir(&a.dir, &a.run_id) {
        Ok(d) => d,
        Err(s) => return s,
    };
    let runs = runs_dir(a.dir.runs_dir.as_deref());
    for (d, follow) in [(runs.as_path(), true), (dir.as_path(), false)] {
        if let Err(e) = journal::dirs::check_owned(d, follow) {
            error_line(e);
            return ExitStatus::Invalid;
        }
    }
    // Own the run before reading what it did: a live engine's run is refused.
    let live = match journal::live::hold(&dir) {
        Ok(g) => g,
        Err(e) => {
            error_line(format!("cannot resume run {}: {e}", a.run_id));
            return ExitStatus::Invalid;
        }
    };
    let records = match journal::load(&dir) {
        Ok(l) => match journal::missing_tail(&l, false) {
            Some(why) => {
                error_line(format!(
                    "{}: {why}; refusing to resume from a journal that cannot be trusted",
                    dir.join(journal::JOURNAL_FILE).display()
                ));
                return ExitStatus::Invalid;
            }
            None => l.records,
        },
        Err(e) => {
            error_line(format!(
                "{e}; refusing to resume from a journal that cannot be trusted"
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
    if let Some(Event::RunFinished {
        resumable: false,
        exit_code,
        reason,
        ..
    }) = records
        .iter()
        .rev()
        .map(|r| &r.stamped.event)
        .find(|e| matches!(e, Event::RunFinished { .. } | Event::RunResumed { .. }))
    {
        error_line(format!(
            "run {} already finished (exit {exit_code}: {reason}); there is nothing to resume",
            a.run_id
        ));
        return ExitStatus::Invalid;
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
            "{file} changed since run {} started; resuming would run different steps. Restore the file, or start a new run",
            a.run_id
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
            let rerun = if idempotent || a.rerun_in_doubt {
                true
            } else if a.skip_in_doubt {
                false
            } else if interactive {
                let q = format!(
                    "{what} was running when the engine stopped and the step is not idempotent. Run it again?"
                );
                dialoguer::Confirm::new()
                    .with_prompt(q)
                    .default(false)
                    .interact()
                    .unwrap_or(false)
            } else {
                error_line(format!(
                    "{what} was in flight when the engine stopped and is not marked idempotent: decide with --rerun-in-doubt or --skip-in-doubt (check on the host whether it took effect)"
                ));
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
        let rerun = if idempotent || a.rerun_in_doubt {
            true
        } else if a.skip_in_doubt {
            false
        } else if interactive {
            let q = format!(
                "step `{id}` was running when the engine stopped and is not idempotent. Run it again?"
            );
            dialoguer::Confirm::new()
                .with_prompt(q)
                .default(false)
                .interact()
                .unwrap_or(false)
        } else {
            error_line(format!(
                "step `{id}` was in flight when the engine stopped and is not marked idempotent: decide with --rerun-in-doubt or --skip-in-doubt (check on the host whether it took effect)"
            ));
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
            _ => {}
        }
    }
    for id in rollback_started {
        if prior.rolled_back.contains(&id) || rb.step(&id).is_none() {
            continue;
        }
        let idempotent = rb.step(&id).is_some_and(|s| s.idempotent);
        let rerun = if idempotent || a.rerun_in_doubt {
            true
        } else if a.skip_in_doubt {
            false
        } else if interactive {
            let q = format!(
                "the rollback of `{id}` was running when the engine stopped and the step is not idempotent. Run the rollback again?"
            );
            dialoguer::Confirm::new()
                .with_prompt(q)
                .default(false)
                .interact()
                .unwrap_or(false)
        } else {
            error_line(format!(
                "the rollback of `{id}` was in flight when the engine stopped and `{id}` is not marked idempotent: decide with --rerun-in-doubt or --skip-in-doubt (check on the host whether it took effect)"
            ));
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
        a.run_id.clone(),
        &runs,
        &a.run,
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
            Event::RollbackStarted { .. } => p.unwinding = true,
            Event::RollbackFinished { step, .. } => {
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
    let records = journal::read(&dir).unwrap_or_default();
    let waiting = records.iter().rev().find_map(|r| match &r.stamped.event {
        Event::GateWaiting { step, .. } if step == &a.gate => Some(true),
        Event::GateAnswered { step, .. } | Event::StepStarted { step, .. } if step == &a.gate => {
            Some(false)
        }
        _ => None,
    });
    match journal::answers::write(&dir, &a.gate, decision, a.comment.clone()) {
        Ok(_) => {
            let verb = if decision == Decision::Approved {
                "approval"
            } else {
                "rejection"
            };
            println!(
                "{verb} of `{}` recorded for run {} by {}",
                a.gate,
                a.run_id,
                crate::execute::current_user()
            );
            if waiting != Some(true) {
                println!(
                    "note: the run is not waiting at `{}` right now; the answer is used if it gets there (or on `runbook resume`)",
                    a.gate
                );
            }
            ExitStatus::Success
        }
        Err(e) => {
            error_line(e);
            ExitStatus::Invalid
        }
    }
}

pub(crate) fn cmd_runs(a: &RunsArgs) -> ExitStatus {
    let dir = runs_dir(a.dir.runs_dir.as_deref());
    let runs = journal::list_runs(&dir);
    if runs.is_empty() {
        println!("no runs in {}", dir.display());
        return ExitStatus::Success;
    }
    let w = runs.iter().map(|r| r.run_id.len()).max().unwrap_or(6);
    println!(
        "{:<w$}  {:<22}  {:<10}  {:<24}  RUNBOOK",
        "RUN", "STATUS", "USER", "STARTED"
    );
    for r in runs {
        let status = match r.exit_code {
            Some(c) => format!("{} ({c})", r.status),
            None => r.status,
        };
        println!(
            "{:<w$}  {status:<22}  {:<10}  {:<24}  {}",
            r.run_id, r.user, r.started, r.runbook
        );
    }
    ExitStatus::Success
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
