//! Where runs live and how the operator names one: the per-user runs directory, run ids by
//! unique prefix, and `last`. Front ends find runs through here, never by building paths.

use std::path::{Path, PathBuf};

use crate::journal;

pub(crate) use super::dirs::check_owned;

/// The per-user default: `$XDG_STATE_HOME/runbook/runs`, i.e. `~/.local/state/runbook/runs`
/// (a run is found from any directory), or `.runbook/runs` when no home is known.
pub(crate) fn default_runs_dir() -> PathBuf {
    let abs = |v: std::ffi::OsString| {
        let p = PathBuf::from(v);
        p.is_absolute().then_some(p)
    };
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").and_then(abs) {
        return state.join("runbook/runs");
    }
    if let Some(home) = std::env::var_os("HOME").and_then(abs) {
        return home.join(".local/state/runbook/runs");
    }
    PathBuf::from(".runbook/runs")
}

/// Where runs are recorded: `--runs-dir`, `$RUNBOOK_RUNS_DIR`, or [`default_runs_dir`].
/// Made absolute, so commands printed for later work from any directory.
pub(crate) fn runs_dir(flag: Option<&Path>) -> PathBuf {
    let p = flag
        .map(Path::to_path_buf)
        .or_else(|| {
            std::env::var_os("RUNBOOK_RUNS_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(default_runs_dir);
    std::path::absolute(&p).unwrap_or(p)
}

/// ` --runs-dir DIR` when `runs` is not the default (for commands printed for the operator).
pub(crate) fn runs_flag(runs: &Path) -> String {
    let default = std::path::absolute(default_runs_dir()).unwrap_or_else(|_| default_runs_dir());
    if runs == default {
        String::new()
    } else {
        format!(
            " --runs-dir {}",
            crate::template::shell_quote(&runs.display().to_string())
        )
    }
}

/// The run directory named by `id`: an exact run id, a unique prefix of one, or `last` (the
/// most recently started run). Otherwise why not (with the candidates): a usage error.
pub(crate) fn resolve(flag: Option<&Path>, id: &str) -> Result<PathBuf, String> {
    let runs = runs_dir(flag);
    if id.contains('/') || id.contains("..") || id.is_empty() {
        return Err(format!("`{id}` is not a run id"));
    }
    let exact = runs.join(id);
    if exact.join(journal::JOURNAL_FILE).is_file() {
        return Ok(exact);
    }
    if id == "last" {
        return match journal::state::list(&runs).pop() {
            Some(v) => Ok(v.dir),
            None => Err(format!("no runs in {}", runs.display())),
        };
    }
    let ids: Vec<String> = std::fs::read_dir(&runs)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join(journal::JOURNAL_FILE).is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let mut matches: Vec<&String> = ids.iter().filter(|r| r.starts_with(id)).collect();
    matches.sort();
    match matches.as_slice() {
        [one] => Ok(runs.join(one)),
        [] => {
            let hint = crate::diagnostic::did_you_mean(id, ids.iter().map(String::as_str))
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            Err(format!(
                "no run `{}` in {}{hint} (see `runbook runs{}`)",
                id.escape_debug(),
                runs.display(),
                runs_flag(&runs)
            ))
        }
        many => {
            let shown: Vec<&str> = many.iter().take(5).map(|s| s.as_str()).collect();
            Err(format!(
                "`{}` matches {} runs ({}{}): type more of the id",
                id.escape_debug(),
                many.len(),
                shown.join(", "),
                if many.len() > 5 { ", …" } else { "" }
            ))
        }
    }
}

/// The id of a run directory.
pub(crate) fn run_id_of(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
