//! Ownership checks on the runs directory, `.locks` and run directories: a directory another
//! user owns (or can write) could have a lock deleted or a symlink planted where a step log
//! is written, so it is refused.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::error::SessionError;

/// Refuses `dir` unless it is a real directory (not a symlink, when `follow` is false) owned by
/// the invoking user or root, and not writable by group or others (the sticky `answers/` dir
/// is checked elsewhere). A missing directory is fine (it will be created by us).
pub(crate) fn check_owned(dir: &Path, follow: bool) -> Result<(), SessionError> {
    let meta = if follow {
        std::fs::metadata(dir)
    } else {
        std::fs::symlink_metadata(dir)
    };
    let meta = match meta {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(SessionError::io(format!(
                "cannot inspect {}: {e}",
                dir.display()
            )));
        }
    };
    if meta.file_type().is_symlink() {
        return Err(SessionError::refused(format!(
            "{} is a symbolic link; refusing to use it",
            dir.display()
        )));
    }
    if !meta.is_dir() {
        return Err(SessionError::refused(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Err(SessionError::refused(format!(
            "{} is owned by uid {}, not by you (uid {me}) or root: another user could tamper with runs there; refusing to use it",
            dir.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(SessionError::refused(format!(
            "{} is writable by group or others (mode {:o}): refusing to use it (chmod go-w it)",
            dir.display(),
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}
