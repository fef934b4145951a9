//! The library's way to check a runbook without the command line: text in, a validated
//! [`Runbook`] or every problem out (load → validate), and the problems rendered as
//! `runbook validate` prints them. `load`, `validate` and `diagnostic` stay private behind it.

use crate::diagnostic::{Diagnostic, SourceFile};
use crate::model::Runbook;

/// A runbook's text, checked: the runbook when it is valid, and every diagnostic (errors
/// and warnings) with the source they point into.
#[derive(Debug)]
pub struct Checked {
    runbook: Option<Runbook>,
    diagnostics: Vec<Diagnostic>,
    source: SourceFile,
}

impl Checked {
    /// The validated runbook; `None` when there is an error.
    pub fn runbook(&self) -> Option<&Runbook> {
        self.runbook.as_ref()
    }

    /// Every problem found, errors and warnings, in source order.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// Whether `runbook validate` (with `--strict` when `strict`) would refuse it.
    pub fn has_errors(&self, strict: bool) -> bool {
        self.diagnostics.iter().any(|d| d.is_error() || strict)
    }

    /// The diagnostics as `runbook validate` prints them (line:column, the source line and a
    /// caret; ANSI colours when `color`).
    pub fn render(&self, color: bool) -> String {
        crate::diagnostic::render_human(&self.source, &self.diagnostics, color)
    }

    /// The runbook, or the diagnostics when it is not valid.
    pub fn into_result(self) -> Result<Runbook, Vec<Diagnostic>> {
        self.runbook.ok_or(self.diagnostics)
    }
}

/// Checks runbook text already in memory. `name` is how diagnostics call the file; a
/// `uses:` path is read relative to its directory, as for a file of that name.
pub fn check_source(name: &str, text: impl Into<Vec<u8>>) -> Checked {
    let loaded = crate::load::load_bytes(name.to_string(), text.into());
    let v = crate::validate::validate(&loaded);
    Checked {
        runbook: v.runbook,
        diagnostics: v.diagnostics,
        source: loaded.source,
    }
}
