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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_runbook_is_returned_and_an_invalid_one_rendered_like_validate() {
        let ok = check_source(
            "ok.yaml",
            "runbook: ok\nversion: 1\nsteps:\n  - id: a\n    run: \"true\"\n",
        );
        assert!(!ok.has_errors(false), "{}", ok.render(false));
        assert_eq!(ok.runbook().map(|rb| rb.steps.len()), Some(1));

        let bad = check_source(
            "bad.yaml",
            "runbook: bad\nversion: 1\nsteps:\n  - id: a\n    run: \"true\"\n    needs: [nope]\n",
        );
        assert!(bad.has_errors(false));
        assert!(bad.runbook().is_none());
        let shown = bad.render(false);
        assert!(shown.contains("bad.yaml:6:"), "{shown}");
        assert!(shown.contains("nope"), "{shown}");
        let codes: Vec<&str> = bad.diagnostics().iter().map(|d| d.code).collect();
        let Err(diags) = bad.into_result() else {
            panic!("an invalid runbook came back as valid");
        };
        assert_eq!(diags.iter().map(|d| d.code).collect::<Vec<_>>(), codes);
    }
}
