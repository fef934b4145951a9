//! Bounded capture of a command's output: the head and tail stay in memory, everything goes
//! to a per-step log file. A step that prints a gigabyte costs the engine a few hundred KiB.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;

/// Bytes kept from the start and from the end of each stream.
pub(crate) const HEAD_BYTES: usize = 256 * 1024;
pub(crate) const TAIL_BYTES: usize = 256 * 1024;
/// Longest line sent as an event; longer lines are cut (the log file keeps them whole).
pub(crate) const MAX_LINE: usize = 4096;

/// One stream's capture.
#[derive(Debug)]
pub(crate) struct Capture {
    /// Masks secrets in everything that leaves the capture (log file, lines), across reads
    /// and lines; the in-memory head and tail keep the real bytes (for outputs).
    redactor: Option<crate::redact::StreamRedactor>,
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
    #[cfg(test)]
    pub(crate) fn new(log_path: Option<PathBuf>) -> Capture {
        Capture::with_redactor(log_path, None)
    }

    /// A capture whose log file gets every line redacted (secrets never reach the disk).
    pub(crate) fn with_redactor(
        log_path: Option<PathBuf>,
        redactor: Option<std::sync::Arc<crate::redact::Redactor>>,
    ) -> Capture {
        // Kept even when empty now: secrets learnt later in the run (secret outputs) count too.
        let redactor = redactor.map(|r| r.stream());
        Capture {
            redactor,
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
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.total += chunk.len() as u64;
        let room = HEAD_BYTES.saturating_sub(self.head.len());
        let (to_head, rest) = chunk.split_at(room.min(chunk.len()));
        self.head.extend_from_slice(to_head);
        if !rest.is_empty() {
            self.tail.extend(rest);
            let excess = self.tail.len().saturating_sub(TAIL_BYTES);
            self.tail.drain(..excess);
        }
        let out = match &mut self.redactor {
            Some(r) => std::borrow::Cow::Owned(r.push(chunk)),
            None => std::borrow::Cow::Borrowed(chunk),
        };
        self.write_log(&out);
        self.split_lines(&out)
    }

    /// Cuts released bytes into lines (each cut at [`MAX_LINE`]).
    fn split_lines(&mut self, out: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in out {
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
    /// Releases what the redactor held back: lines it completes are returned first.
    pub(crate) fn finish_lines(&mut self) -> Vec<String> {
        let rest = match &mut self.redactor {
            Some(r) => r.finish(),
            None => Vec::new(),
        };
        self.write_log(&rest);
        let mut lines = self.split_lines(&rest);
        if let Some(f) = &mut self.log {
            let _ = f.flush();
        }
        if !self.partial.is_empty() {
            lines.push(String::from_utf8_lossy(&self.partial).into_owned());
            self.partial.clear();
        }
        lines
    }

    fn write_log(&mut self, chunk: &[u8]) {
        if self.log_failed || chunk.is_empty() {
            return;
        }
        if self.log.is_none() {
            let Some(path) = &self.log_path else { return };
            match crate::sys::open_private(path) {
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
    pub(crate) fn log_error(&self) -> Option<&str> {
        self.log_error.as_deref()
    }

    /// Bytes seen in total.
    #[cfg(test)]
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Whether the in-memory text is the whole stream.
    pub(crate) fn complete(&self) -> bool {
        self.total as usize == self.head.len() + self.tail.len()
    }

    /// The captured text: whole if it fit, else head, a marker naming what was left out, tail.
    pub(crate) fn text(&self) -> String {
        let head = String::from_utf8_lossy(&self.head);
        if self.tail.is_empty() {
            return head.into_owned();
        }
        if self.complete() {
            let tail: Vec<u8> = self.tail.iter().copied().collect();
            return format!("{head}{}", String::from_utf8_lossy(&tail));
        }
        // A secret cut in two by the gap would be found by no redactor: with secrets in the
        // run, the bytes next to the gap that could hold a piece of one are dropped too.
        let margin = self.redactor.as_ref().map_or(0, |r| r.margin());
        let head_keep = self.head.len().saturating_sub(margin);
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        let tail_skip = margin.min(tail.len());
        let head = String::from_utf8_lossy(&self.head[..head_keep]);
        let tail = String::from_utf8_lossy(&tail[tail_skip..]);
        let skipped = self.total - (head_keep + self.tail.len() - tail_skip) as u64;
        let log = self.log_path.as_ref().map_or(String::new(), |p| {
            format!("; full output in {}", p.display())
        });
        format!("{head}\n[… {skipped} bytes not kept in memory{log} …]\n{tail}")
    }
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
    fn a_secret_cut_by_the_memory_gap_is_not_kept_in_part() {
        let secret = "SECRETVALUE-0123456789";
        let r = std::sync::Arc::new(crate::redact::Redactor::new(&[secret.into()]));
        let mut c = Capture::with_redactor(None, Some(r));
        c.push(&vec![b'x'; HEAD_BYTES - 6]);
        c.push(secret.as_bytes());
        c.push(&vec![b'y'; TAIL_BYTES + 1000]);
        c.push(secret.as_bytes());
        c.push(b"z");
        let r = crate::redact::Redactor::new(&[secret.into()]);
        // The in-memory text is raw (outputs read it); what is shown of it is redacted, and
        // no piece of the secret cut by the gap is left for the redactor to miss.
        let text = r.text(&c.text());
        assert!(text.contains("bytes not kept in memory"));
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.ends_with("********z"));
    }

    #[test]
    fn splits_lines() {
        let mut c = Capture::new(None);
        assert_eq!(c.push(b"a\nb"), vec!["a".to_string()]);
        assert_eq!(c.push(b"c\n"), vec!["bc".to_string()]);
        assert!(c.finish_lines().is_empty());
        assert_eq!(c.text(), "a\nbc\n");
    }
}
