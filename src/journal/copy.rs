//! Writing a verified copy of a journal (export, import, a shared store's working copy).

use super::{
    HEAD_WIDTH, Head, JOURNAL_VERSION, JournalError, RunFiles, check_chain, file_name,
    open_nofollow,
};

/// Writes a verified copy of a journal from its lines (an export): `lines` must form a valid
/// chain (checked here, so nothing broken is written); the head counts them all.
#[cfg(test)]
pub(crate) fn write_copy(
    files: &RunFiles,
    lines: &[String],
    sealed: bool,
) -> Result<(), JournalError> {
    write_lines(files, lines, &verified_head(lines, sealed)?)
}

/// The head of a verified copy of a journal's `lines`: they must form a valid chain (checked
/// here, so nothing broken is copied); it counts them all.
pub(crate) fn verified_head(lines: &[String], sealed: bool) -> Result<Head, JournalError> {
    let last = check_chain(lines)?;
    let count = lines.len() as u64;
    Ok(Head {
        v: JOURNAL_VERSION,
        count,
        last,
        durable: count,
        sealed,
    })
}

/// Writes a run's journal file and head as given (a working copy of a run kept in a shared
/// store: what it holds is written as it is, so `transcript --verify` judges it), each file
/// replaced at once (written beside it, fsynced, renamed).
pub(crate) fn write_lines(
    files: &RunFiles,
    lines: &[String],
    head: &Head,
) -> Result<(), JournalError> {
    let mut body = String::new();
    for l in lines {
        body.push_str(l);
        body.push('\n');
    }
    let mut head_text =
        serde_json::to_string(head).map_err(|e| JournalError::Encode(e.to_string()))?;
    while head_text.len() < HEAD_WIDTH - 1 {
        head_text.push(' ');
    }
    head_text.push('\n');
    for (path, text) in [(&files.journal, body), (&files.head, head_text)] {
        let name = file_name(path);
        let tmp = path.with_file_name(format!(".{name}.copy"));
        let _ = std::fs::remove_file(&tmp);
        let written = open_nofollow(&tmp, false).and_then(|f| {
            use std::io::Write;
            (&f).write_all(text.as_bytes())?;
            f.sync_data()
        });
        written
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| JournalError::Write(path.display().to_string(), e))?;
    }
    Ok(())
}
