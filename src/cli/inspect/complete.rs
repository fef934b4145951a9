//! Shell completion of run ids, gates and steps (`runbook complete`).

use super::*;
use crate::session::store::{RunDir, list_runs};

/// `runbook __complete runs|gates RUN|steps RUN`: one word a line, nothing on errors (a
/// completion must never print an error into the operator's command line).
pub(crate) fn cmd_complete(what: &str, run: Option<&str>) -> ExitStatus {
    let runs = runs_dir(None);
    let words: Vec<String> = match (what, run) {
        ("runs", _) => {
            let mut ids: Vec<String> = list_runs(&runs)
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
        list_runs(runs).pop()?.dir
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
    runbook_of(&state::view(&RunDir::new(dir).files()).ok()?)
}
