//! Stage 2, **validate**: turn the YAML tree into a [`Runbook`], reporting every problem at once.
//!
//! Structure (fields, types, durations) is read in `convert` with the `reader`;
//! meaning (ids, dependencies, cycles, hosts, templates, secrets) is checked in `checks`.
//! Each problem is a [`Diagnostic`] with a stable code; `docs/diagnostics.md` lists them all.

mod checks;
pub use checks::{RESULT_NAMES, step_var};
mod convert;
pub(crate) mod reader;

use crate::diagnostic::Diagnostic;
use crate::load::Loaded;
use crate::model::Runbook;

/// The result of validation: the runbook if it has no errors, and every diagnostic found.
#[derive(Debug)]
pub struct Validated {
    pub runbook: Option<Runbook>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Validated {
    pub fn has_errors(&self, strict: bool) -> bool {
        self.diagnostics.iter().any(|d| d.is_error() || strict)
    }
}

/// Validates a loaded runbook.
pub fn validate(loaded: &Loaded) -> Validated {
    let root = match &loaded.root {
        Err(diags) => {
            return Validated {
                runbook: None,
                diagnostics: diags.clone(),
            };
        }
        Ok(None) => {
            let d = Diagnostic::error("empty-runbook", "the file is empty")
                .with_help("a runbook starts with `runbook: NAME`, `version: 1` and `steps:`");
            return Validated {
                runbook: None,
                diagnostics: vec![d],
            };
        }
        Ok(Some(root)) => root,
    };
    let (runbook, mut diags) = convert::convert(root);
    if let Some(rb) = &runbook {
        checks::check(rb, &loaded.source.text, &mut diags);
    }
    // Source order, errors and warnings interleaved as they appear in the file.
    diags.sort_by_key(|d| d.span.as_ref().map_or(0, |(r, _)| r.start));
    let has_errors = diags.iter().any(Diagnostic::is_error);
    Validated {
        runbook: if has_errors { None } else { runbook },
        diagnostics: diags,
    }
}
