//! Stage 1, **load**: read a runbook file and parse it into a span-carrying YAML tree.
//!
//! Owns: reading bytes, rejecting non-UTF-8 with a pointed diagnostic, and YAML parsing
//! ([`yaml`]). It knows nothing about what a runbook means; that is `validate`'s job.

pub(crate) mod yaml;

use std::path::Path;

use crate::diagnostic::{Diagnostic, SourceFile};

pub(crate) use yaml::{Node, NodeKind};

/// Largest file the tool reads: runbooks (a 10,000-step runbook is about 1 MiB), inputs
/// files and `from_file` inputs.
pub(crate) const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Reads a whole file, refusing what is not a regular file (a FIFO, `/dev/zero`, a
/// directory) and anything over [`MAX_FILE_BYTES`]; `-` reads standard input, also capped.
/// The file is opened non-blocking, so a FIFO cannot hang the tool, and read through a cap,
/// so a file that grows while read cannot exhaust memory.
pub(crate) fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let too_big = || {
        std::io::Error::other(format!(
            "larger than {} MiB, the limit for files read by runbook",
            MAX_FILE_BYTES / (1024 * 1024)
        ))
    };
    let mut buf = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut buf)?;
    } else {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)?;
        let meta = file.metadata()?;
        if !meta.file_type().is_file() {
            return Err(std::io::Error::other(
                "not a regular file (give `-` to read standard input)",
            ));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(too_big());
        }
        (&file).take(MAX_FILE_BYTES + 1).read_to_end(&mut buf)?;
    }
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big());
    }
    Ok(buf)
}

/// [`read_bounded`], as UTF-8 text.
pub(crate) fn read_bounded_text(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read_bounded(path)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not valid UTF-8"))
}

/// A loaded runbook: its source text and parsed tree (or the problems that stopped parsing).
#[derive(Debug)]
pub(crate) struct Loaded {
    pub source: SourceFile,
    pub root: Result<Option<Node>, Vec<Diagnostic>>,
}

/// The tool could not read the file at all (as opposed to a problem inside it).
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub(crate) struct LoadError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// Reads and parses the runbook at `path`.
pub(crate) fn load(path: &Path) -> Result<Loaded, LoadError> {
    let name = path.display().to_string();
    let err = |source| LoadError {
        path: name.clone(),
        source,
    };
    let bytes = read_bounded(path).map_err(err)?;
    Ok(load_bytes(name, bytes))
}

/// Parses runbook text already in memory (`name` is used in diagnostics).
pub(crate) fn load_bytes(name: String, bytes: Vec<u8>) -> Loaded {
    match String::from_utf8(bytes) {
        Ok(text) => {
            let root = yaml::parse(&text);
            Loaded {
                source: SourceFile { name, text },
                root,
            }
        }
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            // The lossy text has U+FFFD (3 bytes) where the bad byte was; `at` is still valid.
            let end = text[at..].chars().next().map_or(at, |c| at + c.len_utf8());
            let diag = Diagnostic::error("invalid-utf8", "the file is not valid UTF-8")
                .with_span(at..end, "invalid byte here")
                .with_help("save the runbook as UTF-8");
            Loaded {
                source: SourceFile { name, text },
                root: Err(vec![diag]),
            }
        }
    }
}
