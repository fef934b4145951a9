//! Bounded capture of a command's output: the head and tail stay in memory, everything goes
//! to a per-step log file. A step that prints a gigabyte costs the engine a few hundred KiB.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;

/// Bytes kept from the start and from the end of each stream.
pub const HEAD_BYTES: usize = 256 * 1024;
pub const TAIL_BYTES: usize = 256 * 1024;
/// Longest line sent as an event; longer lines are cut (the log file keeps them whole).
pub const MAX_LINE: usize = 4096;

/// Longest line buffered for redaction before it is written to the log anyway.
const MAX_LOG_LINE: usize = 1024 * 1024;

/// One stream's capture.
#[derive(Debug)]
pub struct Capture {
    /// Masks secrets in what reaches the log file (lines are redacted whole).
    redactor: Option<std::sync::Arc<super::redact::Redactor>>,
    log_line: Vec<u8>,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
    log_path: Option<PathBuf>,
    log: Option<std::fs::File>,
    log_failed: bool,
    /// Why the log file could not be written (reported once the stream ends).
    log_error: Option<String>,
    partial: Vec<u8>,
}

impl Capture {
    /// `log_path`: where the full stream goes (created 0600 on first byte), if anywhere.
    pub fn new(log_path: Option<PathBuf>) -> Capture {
        Capture::with_redactor(log_path, None)
    }

    /// A capture whose log file gets every line redacted (secrets never reach the disk).
    pub fn with_redactor(
        log_path: Option<PathBuf>,
        redactor: Option<std::sync::Arc<super::redact::Redactor>>,
    ) -> Capture {
        let redactor = redactor.filter(|r| !r.is_empty());
        Capture {
            redactor,
            log_line: Vec::new(),
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
            log_path,
            log: None,
            log_failed: false,
            log_error: None,
            partial: Vec::new(),
        }
    }

    /// Adds a chunk; returns the complete lines it finished (cut at [`MAX_LINE`]).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.total += chunk.len() as u64;
        let room = HEAD_BYTES.saturating_sub(self.head.len());
        let (to_head, rest) = chunk.split_at(room.min(chunk.len()));
        self.head.extend_from_slice(to_head);
        if !rest.is_empty() {
            self.tail.extend(rest);
            let excess = self.tail.len().saturating_sub(TAIL_BYTES);
            self.tail.drain(..excess);
        }
        if self.redactor.is_some() {
            for &b in chunk {
                self.log_line.push(b);
                if b == b'\n' || self.log_line.len() >= MAX_LOG_LINE {
                    self.flush_log_line();
                }
            }
        } else {
            self.write_log(chunk);
        }
        let mut lines = Vec::new();
        for &b in chunk {
            if b == b'\n' {
                lines.push(String::from_utf8_lossy(&self.partial).into_owned());
                self.partial.clear();
            } else if self.partial.len() < MAX_LINE {
                self.partial.push(b);
            }
        }
        lines
    }

    /// The unfinished last line, if any (call once the stream ended).
    pub fn finish(&mut self) -> Option<String> {
        self.flush_log_line();
        if let Some(f) = &mut self.log {
            let _ = f.flush();
        }
        if self.partial.is_empty() {
            None
        } else {
            let line = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            Some(line)
        }
    }

    fn flush_log_line(&mut self) {
        if self.log_line.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.log_line);
        match &self.redactor {
            Some(r) => {
                let text = r.text(&String::from_utf8_lossy(&line));
                self.write_log(text.as_bytes());
            }
            None => self.write_log(&line),
        }
    }

    fn write_log(&mut self, chunk: &[u8]) {
        if self.log_failed {
            return;
        }
        if self.log.is_none() {
            let Some(path) = &self.log_path else { return };
            match open_private(path) {
                Ok(f) => self.log = Some(f),
                Err(e) => {
                    self.log_failed = true;
                    self.log_error = Some(format!("{}: {e}", path.display()));
                    return;
                }
            }
        }
        if let Some(f) = &mut self.log
            && let Err(e) = f.write_all(chunk)
        {
            self.log_failed = true;
            self.log_error = Some(format!(
                "{}: {e} (after {} bytes)",
                self.log_path
                    .as_ref()
                    .map_or(String::new(), |p| p.display().to_string()),
                self.total
            ));
        }
    }

    /// Why the step log could not be written, if it could not (the log is then incomplete).
    pub fn log_error(&self) -> Option<&str> {
        self.log_error.as_deref()
    }

    /// Bytes seen in total.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Whether the in-memory text is the whole stream.
    pub fn complete(&self) -> bool {
        self.total as usize == self.head.len() + self.tail.len()
    }

    /// The captured text: whole if it fit, else head, a marker naming what was left out, tail.
    pub fn text(&self) -> String {
        let head = String::from_utf8_lossy(&self.head);
        if self.tail.is_empty() {
            return head.into_owned();
        }
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        let tail = String::from_utf8_lossy(&tail);
        if self.complete() {
            return format!("{head}{tail}");
        }
        let skipped = self.total - (self.head.len() + self.tail.len()) as u64;
        let log = self.log_path.as_ref().map_or(String::new(), |p| {
            format!("; full output in {}", p.display())
        });
        format!("{head}\n[… {skipped} bytes not kept in memory{log} …]\n{tail}")
    }

    pub fn log_path(&self) -> Option<&PathBuf> {
        self.log.as_ref().and(self.log_path.as_ref())
    }
}

/// Creates (or appends to) a file readable only by its owner.
pub fn open_private(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
        if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(std::io::Error::other(format!(
                "{} is a symbolic link; refusing to write through it",
                dir.display()
            )));
        }
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        // A symlink planted where a log or the journal goes is refused, not followed.
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Creates a directory (and parents) readable only by its owner.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_head_and_tail_only() {
        let mut c = Capture::new(None);
        let chunk = vec![b'x'; 100_000];
        for _ in 0..100 {
            c.push(&chunk);
        }
        assert_eq!(c.total(), 10_000_000);
        let text = c.text();
        assert!(text.len() < HEAD_BYTES + TAIL_BYTES + 200);
        assert!(text.contains("bytes not kept in memory"));
    }

    #[test]
    fn splits_lines() {
        let mut c = Capture::new(None);
        assert_eq!(c.push(b"a\nb"), vec!["a".to_string()]);
        assert_eq!(c.push(b"c\n"), vec!["bc".to_string()]);
        assert_eq!(c.finish(), None);
        assert_eq!(c.text(), "a\nbc\n");
    }
}
