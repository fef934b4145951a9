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

mod complete;
mod logs;
mod show;

pub(crate) use complete::cmd_complete;
pub(crate) use logs::cmd_logs;
pub(crate) use show::cmd_show;
use show::runbook_of;

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
