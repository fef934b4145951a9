//! Writing a verified copy of a journal (export, import, a shared store's working copy).

use std::path::Path;

use super::{
    HEAD_FILE, HEAD_WIDTH, Head, JOURNAL_FILE, JOURNAL_VERSION, check_chain, open_nofollow,
};

/// Writes a verified copy of a journal from its lines (an export): `lines` must form a valid
/// chain (checked here, so nothing broken is written); the head counts them all.
pub(crate) fn write_copy(run_dir: &Path, lines: &[String], sealed: bool) -> Result<(), String> {
    let last = check_chain(lines)?;
    let count = lines.len() as u64;
    let head = Head {
        v: JOURNAL_VERSION,
        count,
        last,
        durable: count,
        sealed,
    };
    write_lines(run_dir, lines, &head)
}

/// Writes a run's journal file and head as given (a working copy of a run kept in a shared
/// store: what it holds is written as it is, so `transcript --verify` judges it), each file
/// replaced at once (written beside it, fsynced, renamed).
pub(crate) fn write_lines(run_dir: &Path, lines: &[String], head: &Head) -> Result<(), String> {
    let mut body = String::new();
    for l in lines {
        body.push_str(l);
        body.push('\n');
    }
    let mut head_text = serde_json::to_string(head).map_err(|e| e.to_string())?;
    while head_text.len() < HEAD_WIDTH - 1 {
        head_text.push(' ');
    }
    head_text.push('\n');
    for (name, text) in [(JOURNAL_FILE, body), (HEAD_FILE, head_text)] {
        let tmp = run_dir.join(format!(".{name}.copy"));
        let _ = std::fs::remove_file(&tmp);
        let written = open_nofollow(&tmp, false).and_then(|f| {
            use std::io::Write;
            (&f).write_all(text.as_bytes())?;
            f.sync_data()
        });
        written
            .and_then(|()| std::fs::rename(&tmp, run_dir.join(name)))
            .map_err(|e| format!("cannot write {}: {e}", run_dir.join(name).display()))?;
    }
    Ok(())
}
