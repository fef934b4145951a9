//! Remote answers to gates: `runbook approve RUN GATE` / `runbook reject …` from another
//! terminal drop a small file into the run's `answers/` directory; the waiting engine reads it
//! and journals it. The answerer's identity is the *owner of the file* (the OS user who wrote
//! it), not anything the file claims.
//!
//! `answers/` is mode 1733 (like /tmp: anyone may drop a file, nobody may list or read
//! others'), inside a run directory of mode 0711: other users can answer, not read the run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::execute::event::Decision;

/// An answer file's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnswerFile {
    pub step: String,
    pub decision: Decision,
    pub comment: Option<String>,
    pub host: String,
    pub at: String,
}

/// An answer as the engine sees it: with the user it really came from.
#[derive(Debug, Clone)]
pub struct Answer {
    pub file: AnswerFile,
    pub user: String,
    pub path: PathBuf,
}

pub fn answers_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("answers")
}

/// Creates `answers/` so that other users can drop answers into it.
pub fn prepare(run_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = answers_dir(run_dir);
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1733))?;
    std::fs::set_permissions(run_dir, std::fs::Permissions::from_mode(0o711))?;
    Ok(())
}

/// Writes an answer (atomically: a temp file renamed into place).
pub fn write(
    run_dir: &Path,
    step: &str,
    decision: Decision,
    comment: Option<String>,
) -> Result<PathBuf, String> {
    let dir = answers_dir(run_dir);
    if !dir.is_dir() {
        return Err(format!(
            "{} has no answers directory: is the run id right, and is it waiting at a gate?",
            run_dir.display()
        ));
    }
    let user = crate::execute::current_user();
    let a = AnswerFile {
        step: step.to_string(),
        decision,
        comment,
        host: crate::execute::current_host(),
        at: crate::execute::event::now(),
    };
    let safe: String = step
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = format!("{safe}.{}.{}.json", sanitize(&user), std::process::id());
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(&name);
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(&serde_json::to_vec(&a).unwrap_or_default())
        .and_then(|()| f.sync_all())
        .map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
    Ok(path)
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The user owning `path`: who really wrote the answer.
fn owner(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(meta) => crate::execute::user_name(meta.uid()),
        Err(_) => "?".into(),
    }
}

/// Answers for `step` not seen before (`seen` holds file names already taken).
pub fn take(
    run_dir: &Path,
    step: &str,
    seen: &mut std::collections::HashSet<PathBuf>,
) -> Vec<Answer> {
    let Ok(entries) = std::fs::read_dir(answers_dir(run_dir)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for path in paths {
        if seen.contains(&path) {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Ok(file) = serde_json::from_slice::<AnswerFile>(&bytes) else {
            seen.insert(path);
            continue;
        };
        if file.step != step {
            continue;
        }
        seen.insert(path.clone());
        out.push(Answer {
            user: owner(&path),
            file,
            path,
        });
    }
    out
}
