//! Remote answers to gates: `runbook approve RUN GATE` / `runbook reject …` from another
//! terminal drop a small file into the run's `answers/` directory; the waiting engine reads it
//! and journals it. The answerer's identity is the *owner of the file* (the OS user who wrote
//! it), not anything the file claims.
//!
//! `answers/` is mode 1733 (like /tmp: anyone may drop a file, nobody may list or read
//! others'), inside a run directory of mode 0711: other users can answer, not read the run.
//!
//! A hostile file there changes nothing: answer files are opened with `O_NOFOLLOW` and
//! `O_NONBLOCK` (a symlink to someone else's file or a FIFO is refused, never followed or
//! waited on), must be regular files of at most [`MAX_ANSWER_BYTES`], are attributed to the
//! owner of the open file (`fstat`, no race with a rename), must name this run and this gate,
//! carry a nonce that is accepted once, and are removed once read.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{JournalError, RunFiles};
use crate::event::Decision;
use crate::execute::{AnswerSource, RemoteAnswer};

/// An answer file's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AnswerFile {
    /// The run this answer is for (an answer copied from another run does not count).
    #[serde(default)]
    pub run: String,
    pub step: String,
    /// Random; an answer is accepted once.
    #[serde(default)]
    pub nonce: String,
    pub decision: Decision,
    pub comment: Option<String>,
    pub host: String,
    pub at: String,
}

/// An answer as the engine sees it: with the user it really came from.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub file: AnswerFile,
    pub user: String,
}

/// Largest answer file read (a real one is ~200 bytes).
pub(crate) const MAX_ANSWER_BYTES: u64 = 64 * 1024;

fn nonce() -> String {
    format!(
        "{:016x}{:016x}",
        crate::sys::random_u64(),
        crate::sys::random_u64()
    )
}

/// Creates `answers/` so that other users can drop answers into it.
pub(crate) fn prepare(run: &RunFiles) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = &run.answers;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1733))?;
    std::fs::set_permissions(&run.dir, std::fs::Permissions::from_mode(0o711))?;
    Ok(())
}

/// Writes an answer (atomically: a temp file renamed into place).
pub(crate) fn write(
    run: &RunFiles,
    step: &str,
    decision: Decision,
    comment: Option<String>,
) -> Result<PathBuf, JournalError> {
    let dir = &run.answers;
    if !dir.is_dir() {
        return Err(JournalError::NoAnswers(run.dir.display().to_string()));
    }
    let user = crate::sys::current_user();
    let a = AnswerFile {
        run: run.id.clone(),
        nonce: nonce(),
        step: step.to_string(),
        decision,
        comment,
        host: crate::sys::current_host(),
        at: crate::event::now(),
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
    // The name carries the answer's random nonce: other users cannot list the 1733 directory,
    // and cannot guess the name to read the (0644, readable by the engine's owner) file.
    let name = format!(
        "{safe}.{}.{}.{}.json",
        sanitize(&user),
        std::process::id(),
        a.nonce
    );
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(&name);
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(|e| JournalError::Write(tmp.display().to_string(), e))?;
    f.write_all(&serde_json::to_vec(&a).unwrap_or_default())
        .and_then(|()| f.sync_all())
        .map_err(JournalError::System)?;
    std::fs::rename(&tmp, &path).map_err(JournalError::System)?;
    Ok(path)
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Reads one answer file safely: not following symlinks, not blocking on a FIFO, only a
/// regular file within the size cap. Returns its content and its owner's uid.
fn read_answer(path: &Path) -> Result<(Vec<u8>, u32), String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot open: {e}"))?;
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if !meta.file_type().is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_ANSWER_BYTES {
        return Err(format!("larger than {MAX_ANSWER_BYTES} bytes"));
    }
    let mut bytes = Vec::new();
    (&f).take(MAX_ANSWER_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_ANSWER_BYTES {
        return Err(format!("larger than {MAX_ANSWER_BYTES} bytes"));
    }
    Ok((bytes, meta.uid()))
}

/// What was wrong with a file in `answers/` that was not taken as an answer.
#[derive(Debug, Clone)]
pub(crate) struct Refused {
    pub path: PathBuf,
    pub why: String,
}

/// Whether an answer for `step` is waiting, without taking it (answers are used once: a
/// check must not consume the answer it found).
pub(crate) fn present(run: &RunFiles, step: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(&run.answers) else {
        return false;
    };
    let this_run = &run.id;
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .take(10_000)
        .any(|path| {
            read_answer(&path)
                .ok()
                .and_then(|(bytes, _)| serde_json::from_slice::<AnswerFile>(&bytes).ok())
                .is_some_and(|f| f.step == step && f.run == *this_run && !f.nonce.is_empty())
        })
}

/// [`take`], also returning the files refused.
pub(crate) fn take_checked(
    run: &RunFiles,
    step: &str,
    seen: &mut std::collections::HashSet<PathBuf>,
) -> (Vec<Answer>, Vec<Refused>) {
    let Ok(entries) = std::fs::read_dir(&run.answers) else {
        return (Vec::new(), Vec::new());
    };
    let this_run = &run.id;
    let mut out = Vec::new();
    let mut refused = Vec::new();
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .take(10_000)
        .collect();
    paths.sort();
    for path in paths {
        if seen.contains(&path) {
            continue;
        }
        let (bytes, uid) = match read_answer(&path) {
            Ok(r) => r,
            Err(why) => {
                seen.insert(path.clone());
                let _ = std::fs::remove_file(&path);
                refused.push(Refused { path, why });
                continue;
            }
        };
        let Ok(file) = serde_json::from_slice::<AnswerFile>(&bytes) else {
            seen.insert(path.clone());
            let _ = std::fs::remove_file(&path);
            refused.push(Refused {
                path,
                why: "not an answer".into(),
            });
            continue;
        };
        if file.step != step {
            continue;
        }
        seen.insert(path.clone());
        let nonce_key = PathBuf::from(format!("\0nonce/{}", file.nonce));
        let why = if file.run != *this_run {
            Some("written for another run".to_string())
        } else if file.nonce.is_empty() || seen.contains(&nonce_key) {
            Some("already used".to_string())
        } else {
            None
        };
        // Used once: an answer is consumed whatever happens to it.
        let _ = std::fs::remove_file(&path);
        if let Some(why) = why {
            refused.push(Refused { path, why });
            continue;
        }
        seen.insert(nonce_key);
        out.push(Answer {
            user: crate::sys::user_name(uid),
            file,
        });
    }
    (out, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_used_once_and_bound_to_its_run_and_gate() -> Result<(), String> {
        let tmp = std::env::temp_dir().join(format!("rb-answers-{}", std::process::id()));
        let run_dir = tmp.join("20260101-000000-r-0123456789abcdef");
        let run = crate::session::store::RunDir::new(&run_dir).files();
        let answers_dir = |_: &Path| run.answers.clone();
        std::fs::create_dir_all(answers_dir(&run_dir)).map_err(|e| e.to_string())?;
        let body = |run: &str, step: &str, nonce: &str| {
            format!(
                r#"{{"run":"{run}","nonce":"{nonce}","step":"{step}","decision":"approved","comment":null,"host":"h","at":"t"}}"#
            )
        };
        let id = "20260101-000000-r-0123456789abcdef";
        let files = [
            ("a.json", body(id, "gate", "n1")),
            ("b.json", body(id, "gate", "n1")),
            ("c.json", body(id, "other-gate", "n2")),
        ];
        for (name, text) in &files {
            std::fs::write(answers_dir(&run_dir).join(name), text).map_err(|e| e.to_string())?;
        }
        let mut seen = std::collections::HashSet::new();
        let (taken, refused) = take_checked(&run, "gate", &mut seen);
        assert_eq!(taken.len(), 1);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].why, "already used");
        // The other gate's answer stays for that gate.
        assert!(answers_dir(&run_dir).join("c.json").exists());
        assert!(!answers_dir(&run_dir).join("a.json").exists());
        let (taken, _) = take_checked(&run, "other-gate", &mut seen);
        assert_eq!(taken.len(), 1);
        let _ = std::fs::remove_dir_all(&tmp);
        Ok(())
    }
}

/// A run's `answers/` directory as the engine's [`AnswerSource`]: answers written by
/// `runbook approve`, their authors checked by file ownership.
#[derive(Debug, Clone)]
pub(crate) struct AnswersDir {
    pub run: RunFiles,
}

impl AnswerSource for AnswersDir {
    fn present(&self, step: &str) -> bool {
        present(&self.run, step)
    }

    fn take(
        &self,
        step: &str,
        seen: &mut std::collections::HashSet<PathBuf>,
    ) -> (Vec<RemoteAnswer>, Vec<String>) {
        let (answers, refused) = take_checked(&self.run, step, seen);
        let answers = answers
            .into_iter()
            .map(|a| RemoteAnswer {
                user: a.user,
                // The answer was dropped into this machine's directory and its author is the
                // file's owner: the host is this one. The `host` the file claims is the
                // answerer's own text and is never shown (it could be forged or carry
                // terminal escapes).
                host: crate::sys::current_host(),
                decision: a.file.decision,
                comment: a.file.comment,
                groups: None,
            })
            .collect();
        let refused = refused
            .into_iter()
            .map(|r| format!("ignored {}: {}", r.path.display(), r.why))
            .collect();
        (answers, refused)
    }
}
