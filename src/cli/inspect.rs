//! Looking at runs: `runbook runs` (a table), `runbook show RUN` (one run: state, steps, the
//! next command) and `runbook logs RUN [STEP] [--follow]`. Read-only.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::store::{run_id_of, runs_dir};
use super::{LogsArgs, RunsArgs, ShowArgs, error_line};
use crate::exit::ExitStatus;
use crate::journal::state::{self, RunState, RunView};
use crate::model::Runbook;

mod logs;
pub(crate) use logs::cmd_logs;

/// A time as `2026-11-28 20:09:50Z` (UTC, to the second), or the text as it was.
pub(crate) fn short_time(at: &str) -> String {
    at.parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|_| at.to_string())
}

/// How long a run has lasted: to its end, or until now if it has not ended.
fn duration(v: &RunView) -> Option<Duration> {
    if let Some(ms) = v.duration_ms {
        return Some(Duration::from_millis(ms));
    }
    let start = v.started_at()?;
    let d = jiff::Timestamp::now().duration_since(start);
    (!d.is_negative()).then(|| d.unsigned_abs())
}

fn human(d: Option<Duration>) -> String {
    d.map(|d| crate::fmt::human_duration(Duration::from_secs(d.as_secs().max(1))))
        .unwrap_or_default()
}

/// The STATE cell: `waiting at restart`, `rollback-incomplete (4)`…
fn state_cell(s: &RunState) -> String {
    match s {
        RunState::Waiting { gate, .. } => format!("waiting at {gate}"),
        RunState::Paused { gate: Some(g) } => format!("paused at {g}"),
        RunState::Finished {
            status, exit_code, ..
        } => format!("{status} ({exit_code})"),
        other => other.label(),
    }
}

/// Parses `--since`: `90m`, `2h`, `1d`, `1w`, or an RFC 3339 time.
fn since(s: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("--since `{s}`: write 30m, 2h, 1d or an RFC 3339 time"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "--since `{s}`: write 30m, 2h, 1d or an RFC 3339 time"
            ));
        }
    };
    jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(n.saturating_mul(secs)))
        .map_err(|e| format!("--since `{s}`: {e}"))
}

/// What `--state` accepts: the states of [`RunState::label`] (finished runs by their exit
/// status word), plus `succeeded` and `failed` as other names for `success` and `step-failed`.
const STATES: &[&str] = &[
    "running",
    "waiting",
    "paused",
    "interrupted",
    "damaged",
    "success",
    "succeeded",
    "step-failed",
    "failed",
    "aborted",
    "rollback-incomplete",
    "engine-failed",
];

/// `--state` words as labels.
fn canonical_state(s: &str) -> &str {
    match s {
        "succeeded" => "success",
        "failed" => "step-failed",
        other => other,
    }
}

pub(crate) fn cmd_runs(a: &RunsArgs) -> ExitStatus {
    let store = match super::store::open_for(&a.dir) {
        Ok(s) => s,
        Err(s) => return s,
    };
    for s in &a.state {
        if !STATES.contains(&s.as_str()) {
            let hint = crate::diagnostic::did_you_mean(s, STATES.iter().copied())
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            error_line(format!(
                "--state `{s}` is not a state{hint}; states: {}",
                STATES.join(", ")
            ));
            return ExitStatus::Invalid;
        }
    }
    let from = match a.since.as_deref().map(since).transpose() {
        Ok(t) => t,
        Err(e) => {
            error_line(e);
            return ExitStatus::Invalid;
        }
    };
    let all = match store.list() {
        Ok(v) => v,
        Err(e) => {
            error_line(e);
            return ExitStatus::EngineFailed;
        }
    };
    let runs: Vec<RunView> = all
        .into_iter()
        .filter(|v| {
            let label = v.state.label();
            a.state.is_empty() || a.state.iter().any(|s| canonical_state(s) == label)
        })
        .filter(|v| from.is_none_or(|f| v.started_at().is_some_and(|t| t >= f)))
        .collect();
    if runs.is_empty() {
        println!("no runs in {}", store.describe());
        return ExitStatus::Success;
    }
    print!("{}", crate::term::visible(&runs_table(&runs)));
    ExitStatus::Success
}

/// The `runs` table (columns sized to their content).
pub(crate) fn runs_table(runs: &[RunView]) -> String {
    let rows: Vec<[String; 7]> = runs
        .iter()
        .map(|v| {
            let inputs: Vec<String> = v
                .inputs
                .iter()
                .take(3)
                .map(|(k, val)| format!("{k}={val}"))
                .collect();
            [
                v.run_id.clone(),
                state_cell(&v.state),
                short_time(&v.started),
                human(duration(v)),
                v.user.clone(),
                v.runbook.clone(),
                inputs.join(" "),
            ]
        })
        .collect();
    let head = [
        "RUN", "STATE", "STARTED", "DURATION", "USER", "RUNBOOK", "INPUTS",
    ];
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: [&str; 7]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 6 {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        format!("{}\n", s.trim_end())
    };
    let mut out = line(head);
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6]]));
    }
    out
}

/// The runbook the run was started from, if it can still be read (quietly).
fn runbook_of(v: &RunView) -> Option<Runbook> {
    let loaded = crate::load::load(Path::new(&v.file)).ok()?;
    crate::validate::validate(&loaded).runbook
}

/// Whether step `id` is an `ask:` (answered with `runbook answer`, not approved).
fn is_ask(rb: Option<&Runbook>, id: &str) -> bool {
    rb.and_then(|rb| rb.steps.iter().chain(&rb.finally).find(|s| s.id.name == id))
        .is_some_and(|s| matches!(s.body.action, crate::model::Action::Ask(_)))
}

/// The commands to type next, for a run in state `s`.
pub(crate) fn next_commands(v: &RunView, flags: &str) -> Vec<String> {
    let id = &v.run_id;
    let f = flags;
    match &v.state {
        RunState::Running { .. } => vec![format!("runbook logs{f} {id} --follow")],
        RunState::RollbackQuestion { .. } => vec![format!("runbook logs{f} {id} --follow")],
        RunState::Waiting { gate, .. } if is_ask(runbook_of(v).as_ref(), gate) => {
            vec![format!(
                "runbook answer{f} {id} {gate}   (as yourself; a secret at a hidden prompt or with --stdin)"
            )]
        }
        RunState::Waiting { gate, .. } => vec![
            format!("runbook approve{f} {id} {gate} --comment \"…\""),
            format!("runbook reject{f} {id} {gate} --comment \"…\""),
        ],
        RunState::Paused { gate } => {
            let mut c = vec![format!("runbook resume{f} {id}")];
            if let Some(g) = gate {
                c.push(format!(
                    "runbook approve{f} {id} {g}   (then resume: the answer is taken at once)"
                ));
            }
            c
        }
        RunState::Damaged => vec![format!(
            "runbook transcript{f} {id} --verify   (where the journal breaks)"
        )],
        RunState::Interrupted => {
            let doubt: Vec<&str> = v
                .steps
                .iter()
                .filter(|s| s.status == "in-doubt")
                .map(|s| s.id.as_str())
                .collect();
            if doubt.is_empty() {
                vec![format!("runbook resume{f} {id}")]
            } else {
                // What the engine was doing when it died may or may not have happened.
                let which = doubt.join(", ");
                vec![
                    format!(
                        "runbook resume{f} {id}   (asks about {which}: in doubt, it may have run)"
                    ),
                    format!("runbook resume{f} {id} --rerun-in-doubt   (run {which} again)"),
                    format!("runbook resume{f} {id} --skip-in-doubt    (treat {which} as done)"),
                ]
            }
        }
        RunState::Finished { exit_code: 4, .. } => vec![
            format!("runbook rollback{f} {id}"),
            format!("runbook transcript{f} {id}"),
        ],
        RunState::Finished { .. } => vec![format!("runbook transcript{f} {id}")],
    }
}

/// `runbook show` as text.
pub(crate) fn show_text(v: &RunView, rb: Option<&Runbook>, flags: &str) -> String {
    let mut out = String::new();
    let mut kv = |k: &str, val: String| out.push_str(&format!("{k:<9}{val}\n"));
    kv("run", v.run_id.clone());
    kv("runbook", format!("{}  ({})", v.runbook, v.file));
    let inputs: Vec<String> = v.inputs.iter().map(|(k, x)| format!("{k}={x}")).collect();
    kv(
        "started",
        format!(
            "{} by {}@{}{}",
            short_time(&v.started),
            v.user,
            v.host,
            if inputs.is_empty() {
                String::new()
            } else {
                format!("  ({})", inputs.join(" "))
            }
        ),
    );
    kv("state", state_text(v, rb));
    // Steps: the runbook's order and titles when it can be read, else the journal's. Titles
    // are rendered with the inputs as the journal shows them (secrets masked there).
    let ctx = title_context(v);
    let tpl = crate::template::Templates::new(crate::template::SecretDisplay::Mask);
    out.push_str(&steps_table(v, rb, &tpl, &ctx));
    if !v.answers.is_empty() {
        out.push_str("\nAnswers:\n");
        for (step, d, user, comment) in &v.answers {
            let c = comment
                .as_deref()
                .map(|c| format!(" — \"{c}\""))
                .unwrap_or_default();
            out.push_str(&format!("  {step}: {d} by {user}{c}\n"));
        }
    }
    if !v.unrun_rollbacks.is_empty() {
        out.push_str("\nUndos not done (newest first; `runbook rollback` runs them):\n");
        for (step, why) in &v.unrun_rollbacks {
            let cmd = rb
                .and_then(|rb| rb.step(step))
                .and_then(|s| s.rollback.as_ref())
                .map(|b| rollback_preview(b, &tpl, &ctx))
                .unwrap_or_default();
            out.push_str(&format!("  {step}: {why}{cmd}\n"));
        }
    }
    if matches!(v.state, RunState::Interrupted) {
        let doubt: std::collections::HashSet<String> = v
            .steps
            .iter()
            .filter(|s| s.status == "in-doubt")
            .map(|s| s.id.clone())
            .collect();
        let orphans = crate::runner::local::orphaned_processes(&v.run_id, &doubt);
        if !orphans.is_empty() {
            out.push_str(
                "\nStill running, started by the killed engine (resume waits for them):\n",
            );
            for (step, pgid, _) in orphans {
                out.push_str(&format!(
                    "  {step}: process group {pgid}   (stop it: kill -TERM -- -{pgid})\n"
                ));
            }
        }
    }
    out.push_str("\nNext:\n");
    for c in next_commands(v, flags) {
        out.push_str(&format!("  {c}\n"));
    }
    out
}

/// The `state` line of `runbook show` (with `who` and `how` lines at a gate).
fn state_text(v: &RunView, rb: Option<&Runbook>) -> String {
    match &v.state {
        RunState::Running { engine } => format!(
            "running for {} (engine pid {}, {}@{})",
            human(duration(v)),
            engine.pid,
            engine.user,
            engine.host
        ),
        RunState::RollbackQuestion { .. } => super::rollback_question::state_line(&v.state),
        RunState::Waiting {
            engine,
            gate,
            since,
            how,
        } => {
            let waited = since
                .parse::<jiff::Timestamp>()
                .ok()
                .map(|t| jiff::Timestamp::now().duration_since(t))
                .filter(|d| !d.is_negative())
                .map(|d| human(Some(d.unsigned_abs())))
                .unwrap_or_default();
            let ask = is_ask(rb, gate);
            let mut s = format!(
                "waiting {} `{gate}` since {} ({waited}) — engine pid {} ({}@{}) is live and takes an answer at once",
                if ask { "for an answer to" } else { "at gate" },
                short_time(since),
                engine.pid,
                engine.user,
                engine.host
            );
            let gate_spec = rb
                .and_then(|rb| rb.step(gate))
                .and_then(|s| s.confirm.as_ref());
            let who = match gate_spec {
                _ if ask => "each answerer runs `runbook answer` as their own OS user (`from: N`: N distinct users), or the run's terminal prompt".into(),
                Some(g) if g.other_approver => format!(
                    "{} user(s) other than {} (the operator), with `runbook approve`",
                    g.approvals.max(1),
                    v.user
                ),
                Some(g) if g.approvals > 1 => format!(
                    "{} distinct users, with `runbook approve` (the operator's own answer counts once)",
                    g.approvals
                ),
                // Without a `gate-waiting` record the engine is prompting on its terminal.
                _ if how.is_none() => format!(
                    "{} at the run's terminal prompt, or anyone with `runbook approve` (whichever answers first)",
                    v.user
                ),
                _ => "anyone with `runbook approve` (the run has no terminal prompt)".into(),
            };
            s.push_str(&format!("\n{:<9}{who}", "who"));
            if let Some(h) = how {
                s.push_str(&format!("\n{:<9}{h}", "how"));
            }
            s
        }
        RunState::Paused { gate } => format!(
            "paused{} — no engine is running it; it continues with `runbook resume`",
            gate.as_ref()
                .map(|g| format!(" at gate `{g}`"))
                .unwrap_or_default()
        ),
        RunState::Interrupted => {
            "interrupted — no engine holds it and it has no end record (killed or crashed)".into()
        }
        RunState::Damaged => {
            "damaged — its journal has no readable start record; nothing can continue it".into()
        }
        RunState::Finished {
            status,
            exit_code,
            reason,
        } => format!(
            "finished: {status} (exit {exit_code}) after {} — {reason}",
            human(duration(v))
        ),
    }
}

/// What step titles see: the inputs as the journal shows them (secrets masked there).
fn title_context(v: &RunView) -> minijinja::Value {
    {
        let entries: Vec<(String, minijinja::Value)> = v
            .inputs
            .iter()
            .map(|(k, x)| (k.clone(), minijinja::Value::from(x.clone())))
            .collect();
        let mut all = entries.clone();
        all.push(("inputs".into(), crate::template::map(entries)));
        crate::template::map(all)
    }
}

/// The steps of `runbook show`: the runbook's order and titles when it can be read, else
/// the journal's.
fn steps_table(
    v: &RunView,
    rb: Option<&Runbook>,
    tpl: &crate::template::Templates,
    ctx: &minijinja::Value,
) -> String {
    let mut out = String::new();
    let mut ids: Vec<(String, String)> = match rb {
        Some(rb) => rb
            .steps
            .iter()
            .chain(rb.finally.iter())
            .map(|s| {
                let title = s.title.as_ref().map_or(String::new(), |t| {
                    tpl.render(&t.src, ctx, crate::template::Target::Text)
                        .unwrap_or_else(|_| t.src.clone())
                });
                (s.id.name.clone(), title)
            })
            .collect(),
        None => Vec::new(),
    };
    for s in &v.steps {
        if !ids.iter().any(|(id, _)| *id == s.id) {
            ids.push((s.id.clone(), String::new()));
        }
    }
    let w = ids.iter().map(|(i, _)| i.len()).max().unwrap_or(4).max(4);
    let rows: Vec<(String, String, String, String)> = ids
        .iter()
        .map(|(id, title)| {
            let s = v.steps.iter().find(|s| s.id == *id);
            let status = s.map_or("-".to_string(), |s| s.status.clone());
            let time = s
                .and_then(|s| s.duration_ms)
                .filter(|ms| *ms > 0)
                .map(|ms| crate::fmt::human_duration(Duration::from_millis(ms)))
                .unwrap_or_default();
            let mut note = title.clone();
            if let Some(e) = s.and_then(|s| s.error.as_deref()) {
                if !note.is_empty() {
                    note.push_str(" — ");
                }
                note.push_str(e.lines().next().unwrap_or_default());
            }
            (id.clone(), status, time, note)
        })
        .collect();
    out.push_str(&format!(
        "\n{:<w$}  {:<11}  {:>7}  TITLE / NOTE\n",
        "STEP", "STATUS", "TIME"
    ));
    for (id, status, time, note) in rows {
        out.push_str(format!("{id:<w$}  {status:<11}  {time:>7}  {note}").trim_end());
        out.push('\n');
    }
    out
}

/// The rollback's command, inputs filled in (the raw text if it reads run-time values).
fn rollback_preview(
    r: &crate::model::Body,
    tpl: &crate::template::Templates,
    ctx: &minijinja::Value,
) -> String {
    let render = |src: &str| {
        tpl.render(src.trim(), ctx, crate::template::Target::Text)
            .unwrap_or_else(|_| src.trim().to_string())
    };
    match &r.action {
        crate::model::Action::Run(t) => format!("\n      {}", render(&t.src)),
        crate::model::Action::Manual(t) => format!("\n      (by hand) {}", render(&t.src)),
        _ => String::new(),
    }
}

pub(crate) fn cmd_show(a: &ShowArgs) -> ExitStatus {
    let store = match super::store::open_for(&a.dir) {
        Ok(s) => s,
        Err(s) => return s,
    };
    let dir = match super::store::resolve_in(store.as_ref(), &a.run_id) {
        Ok(d) => d,
        Err(s) => return s,
    };
    let v = match state::view(&dir) {
        Ok(v) => v,
        Err(e) => {
            error_line(format!("cannot read run {}: {e}", run_id_of(&dir)));
            return ExitStatus::Invalid;
        }
    };
    let flags = store.flags();
    if a.json {
        let mut j = serde_json::to_value(&v).unwrap_or_default();
        if let Some(m) = j.as_object_mut() {
            m.insert("next".into(), serde_json::json!(next_commands(&v, &flags)));
        }
        println!(
            "{}",
            crate::term::json_safe(serde_json::to_string_pretty(&j).unwrap_or_default())
        );
        return ExitStatus::Success;
    }
    let rb = runbook_of(&v);
    print!(
        "{}",
        crate::term::visible(&show_text(&v, rb.as_ref(), &flags))
    );
    ExitStatus::Success
}

/// `runbook __complete runs|gates RUN|steps RUN`: one word a line, nothing on errors (a
/// completion must never print an error into the operator's command line).
pub(crate) fn cmd_complete(what: &str, run: Option<&str>) -> ExitStatus {
    let runs = runs_dir(None);
    let words: Vec<String> = match (what, run) {
        ("runs", _) => {
            let mut ids: Vec<String> = state::list(&runs)
                .into_iter()
                .rev()
                .map(|v| v.run_id)
                .collect();
            ids.insert(0, "last".into());
            ids
        }
        ("gates" | "steps", Some(run)) => {
            let found = runbook_for_completion(&runs, run);
            match found {
                Some(rb) => rb
                    .steps
                    .iter()
                    .chain(rb.finally.iter())
                    .filter(|s| {
                        what == "steps"
                            || s.confirm.is_some()
                            || matches!(s.body.action, crate::model::Action::Manual(_))
                    })
                    .map(|s| s.id.name.clone())
                    .collect(),
                None => Vec::new(),
            }
        }
        _ => Vec::new(),
    };
    for w in words {
        println!("{}", crate::term::visible(&w));
    }
    ExitStatus::Success
}

/// The runbook of the run `run` names (id, unique prefix or `last`), quietly.
fn runbook_for_completion(runs: &Path, run: &str) -> Option<Runbook> {
    let dir = if run == "last" {
        state::list(runs).pop()?.dir
    } else {
        let mut m: Vec<PathBuf> = std::fs::read_dir(runs)
            .ok()?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(run))
            .map(|e| e.path())
            .collect();
        if m.len() != 1 {
            return None;
        }
        m.pop()?
    };
    runbook_of(&state::view(&dir).ok()?)
}
