//! Stage 1, **load**: read a runbook file and parse it into a span-carrying YAML tree.
//!
//! Owns: reading bytes, rejecting non-UTF-8 with a pointed diagnostic, and YAML parsing
//! ([`yaml`]). It knows nothing about what a runbook means; that is `validate`'s job.

pub mod yaml;

use std::path::Path;

use crate::diagnostic::{Diagnostic, SourceFile};

pub use yaml::{Node, NodeKind};

/// Largest runbook file accepted (a 10,000-step runbook is about 1 MiB).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// A loaded runbook: its source text and parsed tree (or the problems that stopped parsing).
#[derive(Debug)]
pub struct Loaded {
    pub source: SourceFile,
    pub root: Result<Option<Node>, Vec<Diagnostic>>,
}

/// The tool could not read the file at all (as opposed to a problem inside it).
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct LoadError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// Reads and parses the runbook at `path`.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let name = path.display().to_string();
    let err = |source| LoadError {
        path: name.clone(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(err)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(err(std::io::Error::other(format!(
            "file is {} bytes; the limit is {MAX_FILE_BYTES}",
            meta.len()
        ))));
    }
    let bytes = std::fs::read(path).map_err(err)?;
    Ok(load_bytes(name, bytes))
}

/// Parses runbook text already in memory (`name` is used in diagnostics).
pub fn load_bytes(name: String, bytes: Vec<u8>) -> Loaded {
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
