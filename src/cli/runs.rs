//! Commands over recorded runs: resume, approve/reject, runs, transcript, attach, unlock.

use std::io::IsTerminal;
use std::path::PathBuf;

use super::exec::launch;
use super::store::{Store, open_for, resolve_in, run_id_of};
use super::{
    AnswerArgs, AttachArgs, ResumeArgs, RollbackArgs, TranscriptArgs, TranscriptFormat, UnlockArgs,
    error_line, input_errors, load_runbook,
};
use crate::event::{Decision, Event};
use crate::exit::ExitStatus;
use crate::inputs;
use crate::journal;

/// The store the flags select, and the local directory of the run named `run_id` in it.
fn run_dir(dir: &super::RunsDirArg, run_id: &str) -> Result<(Box<dyn Store>, PathBuf), ExitStatus> {
    let store = open_for(dir)?;
    let d = resolve_in(store.as_ref(), run_id)?;
    Ok((store, d))
}

pub(crate) fn cmd_resume(a: &ResumeArgs, color: bool) -> ExitStatus {
    let (store, dir) = match run_dir(&a.dir, &a.run_id) {
        Ok(d) => d,
        Err(s) => return s,
    };
    let how = Continue::Resume {
        rerun_in_doubt: a.rerun_in_doubt,
        skip_in_doubt: a.skip_in_doubt,
    };
    continue_run(
        &dir,
        store.as_ref(),
        &a.run,
        how,
        color,
        a.ignore_damaged_head,
    )
}

pub(crate) fn cmd_rollback(a: &RollbackArgs, color: bool) -> ExitStatus {
    let (store, dir) = match run_dir(&a.dir, &a.run_id) {
        Ok(d) => d,
        Err(s) => return s,
    };
    continue_run(
        &dir,
        store.as_ref(),
        &a.run,
        Continue::Rollback,
        color,
        a.ignore_damaged_head,
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
    store: &dyn Store,
    given: &super::RunOpts,
    how: Continue,
    color: bool,
    ignore_head: bool,
) -> ExitStatus {
    let run_id = run_id_of(dir);
    let runs = store.runs_dir().to_path_buf();
    let rollback = matches!(how, Continue::Rollback);
    let crate::session::resume::Opened {
        live,
        records,
        file,
        sha,
        values,
    } = match crate::session::resume::open(dir, &runs, rollback, ignore_head) {
        Ok(o) => o,
        Err(e) => {
            e.messages.into_iter().for_each(error_line);
            return e.status;
        }
    };
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
    if crate::validate::composition_sha256(&path, &bytes) != sha {
        error_line(format!(
            "{file} (or a runbook it calls with `uses:`) changed since run {run_id} started; continuing would run different steps. Restore the file, or start a new run"
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
    let mut prior = crate::session::prior::from_journal(&rb, &records);
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
    let orphans = crate::session::resume::orphans(&run_id, &records, &prior);
    if !orphans.is_empty() {
        for (step, pgid, cmd) in &orphans {
            error_line(format!(
                "cannot continue run {run_id}: the processes of `{step}` started by the killed engine are still running (process group {pgid}: {}); let them finish, or stop them with `kill -TERM -- -{pgid}`, then continue",
                printable(cmd)
            ));
        }
        return ExitStatus::Busy;
    }
    // Work in flight when the engine stopped: each unit decided by a flag, idempotence, or
    // the person at the terminal.
    let mut in_flight = crate::session::resume::in_flight(&rb, &records, &prior);
    if matches!(how, Continue::Rollback) {
        in_flight = in_flight.rollbacks_only();
    }
    let decided = in_flight.decide(&rb, &mut prior, |q| {
        decide_in_doubt(
            q.idempotent,
            (rerun_in_doubt, skip_in_doubt, interactive),
            q.question(),
            q.refusal(),
        )
    });
    if !decided {
        return ExitStatus::Aborted;
    }
    prior.resumed = true;
    let req = crate::session::request::RunRequest {
        rb,
        inputs: resolved,
        file: path,
        file_sha256: sha,
        run_id,
        prior,
        live: Some(live),
        no_journal: false,
    };
    launch(req, store, &f, color)
}

pub(crate) fn cmd_answer(a: &AnswerArgs, decision: Decision) -> ExitStatus {
    if let Some(conn) = a.dir.store.as_deref().filter(|c| !c.trim().is_empty()) {
        return super::team::answer(conn, a, decision);
    }
    let (store, dir) = match run_dir(&a.dir, &a.run_id) {
        Ok(d) => d,
        Err(s) => return s,
    };
    let run_id = run_id_of(&dir);
    let flag = store.flags();
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
    if let Err(e) = store.answer(&dir, &run_id, &a.gate, decision, a.comment.clone()) {
        error_line(e);
        return ExitStatus::Invalid;
    }
    let me = crate::sys::current_user();
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
        Some(RunState::Running { engine } | RunState::RollbackQuestion { engine, .. }) => println!(
            "note: the run's engine (pid {}) is live but not at `{}` yet: the answer is used when it gets there",
            engine.pid, a.gate
        ),
        Some(RunState::Paused { .. } | RunState::Interrupted) => println!(
            "note: no engine is running this run: the answer is used when it continues with `runbook resume{flag} {run_id}`"
        ),
        Some(RunState::Finished { .. }) => {}
        Some(RunState::Damaged) => println!(
            "note: the run's journal has no readable start record: no engine can continue it (see `runbook transcript{flag} {run_id} --verify`)"
        ),
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

/// The largest `--template` file read (a template is a few KiB; this bounds a mistake).
const TEMPLATE_MAX: u64 = 1 << 20;

pub(crate) fn cmd_transcript(a: &TranscriptArgs) -> ExitStatus {
    let (_store, dir) = match run_dir(&a.dir, &a.run_id) {
        Ok(d) => d,
        Err(s) => return s,
    };
    let t = match crate::transcript::load(&dir) {
        Ok(t) => t,
        Err(e) => {
            error_line(&e);
            // A damaged journal (a broken chain, a record that is not one) is a failed
            // verification (exit 1), not a usage error.
            let damaged = match e {
                journal::JournalError::Chain { .. } => true,
                journal::JournalError::Parse { .. } => a.verify,
                journal::JournalError::Io(..) => false,
            };
            return if damaged {
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
            (None, true) => "ended",
            (Some(_), true) => {
                "ended, but the head was not sealed (the engine stopped between the two; `resume` seals it)"
            }
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
        (_, Some(path)) => match crate::sys::read_regular_bounded(path, TEMPLATE_MAX) {
            Ok(tpl) => crate::transcript::render(&t, &tpl),
            Err(e) => Err(format!("--template {}: {e}", path.display())),
        },
        (TranscriptFormat::Json, None) => serde_json::to_string_pretty(&t)
            .map(crate::term::json_safe)
            .map_err(|e| e.to_string()),
        (TranscriptFormat::Md, None) => {
            crate::transcript::render(&t, crate::transcript::MARKDOWN_TEMPLATE)
        }
    };
    match text {
        Ok(s) => {
            // Untrusted text (output, comments, titles) never reaches the terminal raw.
            println!("{}", crate::term::visible(s.trim_end()));
            ExitStatus::Success
        }
        Err(e) => {
            error_line(e);
            ExitStatus::Invalid
        }
    }
}

pub(crate) fn cmd_attach(a: &AttachArgs) -> ExitStatus {
    let (_store, dir) = match run_dir(&a.dir, &a.run_id) {
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
    let store = match open_for(&a.dir) {
        Ok(s) => s,
        Err(s) => return s,
    };
    match store.unlock(&a.key, a.force) {
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
