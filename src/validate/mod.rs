//! Stage 2, **validate**: turn the YAML tree into a [`Runbook`], reporting every problem at once.
//!
//! Structure (fields, types, durations) is read in `convert` with the `reader`;
//! meaning (ids, dependencies, cycles, hosts, templates, secrets) is checked in `checks`.
//! Each problem is a [`Diagnostic`] with a stable code; `docs/diagnostics.md` lists them all.

mod ask;
mod called;
pub(crate) use called::composition_sha256;
mod checks;
mod compose;
pub use checks::{RESULT_NAMES, step_var};
pub(crate) use targets::METHODS as HTTP_METHODS;
mod convert;
pub(crate) mod reader;
mod targets;

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
    let mut diags = Vec::new();
    let expanded = compose::expand(root, &loaded.source.name, &mut diags);
    let (runbook, more) = match expanded {
        Some((root, composed)) => convert::convert_composed(&root, composed),
        None => convert::convert_composed(root, Default::default()),
    };
    diags.extend(more);
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::convert::*;

    fn listed(keys: &[&str]) -> BTreeSet<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    fn properties(v: &Value) -> BTreeSet<String> {
        v["properties"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The fields `validate` reads and the fields the JSON Schema allows are the same, at
    /// every level: an editor never accepts what `validate` refuses, nor the other way round.
    #[test]
    fn field_lists_match_the_json_schema() {
        let s = crate::schema::schema();
        let top = &s["properties"];
        let step = &top["steps"]["items"];
        let sp = &step["properties"];
        let cases: [(&str, &[&str], &Value); 15] = [
            ("top level", TOP, &s),
            (
                "input",
                INPUT,
                &top["inputs"]["additionalProperties"]["oneOf"][1],
            ),
            ("host", HOST, &top["hosts"]["additionalProperties"]),
            ("defaults", DEFAULTS, &top["defaults"]),
            ("step", STEP, step),
            ("rollback body", BODY, &sp["rollback"]["oneOf"][1]),
            ("gate", GATE, &sp["confirm"]["oneOf"][1]),
            ("http", HTTP, &sp["http"]),
            ("wait", WAIT, &sp["wait"]),
            ("expect", EXPECT, &sp["expect"]),
            (
                "output",
                OUTPUT,
                &sp["outputs"]["additionalProperties"]["oneOf"][1],
            ),
            ("for_each", FOR_EACH, &sp["for_each"]["oneOf"][2]),
            ("on (run time)", super::targets::ON, &sp["on"]["oneOf"][1]),
            ("order", super::targets::ORDER, &sp["order"]),
            ("retry", super::targets::RETRY, &sp["retry"]),
        ];
        for (what, keys, schema) in cases {
            assert_eq!(listed(keys), properties(schema), "{what}");
        }
        assert_eq!(top["finally"]["items"], *step, "finally steps are steps");
        let http = properties(&sp["http"]);
        assert!(HTTP_VERBS.iter().all(|v| http.contains(*v)));
        let steps = properties(step);
        assert!(KINDS.iter().all(|k| steps.contains(*k)));
    }
}
