//! `runbook logs`: the step logs of a run, listed, printed or followed.

use super::*;
use crate::session::store::RunDir;

/// The step log files of a run (all, or one step's), in the order they were created.
pub(super) fn log_files(run_dir: &Path, step: Option<&str>) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(RunDir::new(run_dir).step_logs()) else {
        return Vec::new();
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.ends_with(".log") && step.is_none_or(|s| n.starts_with(&format!("{s}.")))
        })
        .map(|e| {
            let t = e
                .metadata()
                .and_then(|m| m.created().or_else(|_| m.modified()))
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, e.path())
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

pub(super) fn label_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".log").to_string())
        .unwrap_or_default()
}

pub(crate) fn cmd_logs(a: &LogsArgs) -> ExitStatus {
    let store = match crate::cli::store::open_for(&a.dir) {
        Ok(s) => s,
        Err(s) => return s,
    };
    let dir = match crate::cli::store::resolve_in(store.as_ref(), &a.run_id) {
        Ok(d) => d,
        Err(s) => return s,
    };
    if let Some(step) = &a.step {
        let view = state::view(&RunDir::new(&dir).files()).ok();
        let known: Vec<String> = view
            .as_ref()
            .and_then(runbook_of)
            .map(|rb| {
                rb.steps
                    .iter()
                    .chain(rb.finally.iter())
                    .map(|s| s.id.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        if !known.is_empty() && !known.contains(step) {
            let hint = crate::diagnostic::did_you_mean(step, known.iter().map(String::as_str))
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            error_line(format!(
                "run {} has no step `{step}`{hint}",
                run_id_of(&dir)
            ));
            return ExitStatus::Invalid;
        }
    }
    let mut offsets: Vec<(PathBuf, u64)> = Vec::new();
    let mut out = std::io::stdout().lock();
    let many = a.step.is_none() || log_files(&dir, a.step.as_deref()).len() > 1;
    let mut last_header: Option<PathBuf> = None;
    loop {
        let mut grew = false;
        for p in log_files(&dir, a.step.as_deref()) {
            let at = match offsets.iter().position(|(q, _)| *q == p) {
                Some(i) => i,
                None => {
                    offsets.push((p.clone(), 0));
                    offsets.len() - 1
                }
            };
            let Ok(mut f) = std::fs::File::open(&p) else {
                continue;
            };
            if f.seek(std::io::SeekFrom::Start(offsets[at].1)).is_err() {
                continue;
            }
            let mut buf = Vec::new();
            if f.read_to_end(&mut buf).is_err() || buf.is_empty() {
                continue;
            }
            // Only whole lines while following (the rest comes with the next read).
            let take = if a.follow {
                buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
            } else {
                buf.len()
            };
            if take == 0 {
                continue;
            }
            if many && last_header.as_deref() != Some(p.as_path()) {
                let _ = writeln!(out, "==> {} <==", label_of(&p));
                last_header = Some(p.clone());
            }
            if a.raw {
                let _ = out.write_all(&buf[..take]);
            } else {
                let _ = out.write_all(crate::term::visible_bytes(&buf[..take]).as_bytes());
            }
            if take == buf.len() && buf.last() != Some(&b'\n') {
                let _ = out.write_all(b"\n");
            }
            offsets[at].1 += take as u64;
            grew = true;
        }
        let _ = out.flush();
        if !a.follow {
            break;
        }
        if !grew && crate::journal::live::holder(&RunDir::new(&dir).engine_lock()).is_none() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if offsets.is_empty() && !a.follow {
        eprintln!(
            "no output recorded{} in {}",
            a.step
                .as_ref()
                .map(|s| format!(" for step `{s}`"))
                .unwrap_or_default(),
            RunDir::new(&dir).step_logs().display()
        );
    }
    ExitStatus::Success
}
