//! Inputs asked for only when needed: an input nobody gave that is left unknown at the start
//! (`inputs::lazy` says which) does not stop a headless run up front (a branch that reads it
//! may be skipped); the step that does read it fails, naming itself and the input.

use crate::inputs::lazy::{expression_reads_input, reads_input, template_sources, unescape};
use crate::inputs::{InputValue, Inputs};
use crate::model::{Runbook, Step};

/// The first input `step` reads that nobody provided, and why the step cannot run without
/// it. `only`: look in this template source of the step only (its `when`, decided first).
pub(crate) fn missing_input(
    rb: &Runbook,
    inputs: &Inputs,
    step: &Step,
    only: Option<&str>,
) -> Option<(String, String)> {
    let missing: Vec<(&str, bool)> = inputs
        .values
        .iter()
        .filter(|r| matches!(r.value, InputValue::Unknown))
        .map(|r| (r.name.as_str(), r.secret))
        .collect();
    if missing.is_empty() {
        return None;
    }
    // A secret's `for_each` items are checked when evaluated (`not_provided`): an expression
    // may pick another branch (`a if mode == 'x' else missing_input`). A plain input in them
    // is asked first, like anywhere else in the step.
    let items = step.for_each.as_ref().map(|f| f.items.src.as_str());
    if let Some(src) = only {
        let (name, _) = missing
            .iter()
            .find(|(name, _)| expression_reads_input(src, name))?;
        return Some(needed(rb, step, name));
    }
    let sources: Vec<(String, bool)> = template_sources(step)
        .into_iter()
        .map(|s| {
            let s = unescape(&s);
            let is_items = Some(s.as_str()) == items;
            (s, is_items)
        })
        .collect();
    let (name, _) = missing.into_iter().find(|(name, secret)| {
        sources
            .iter()
            .any(|(src, is_items)| !(*secret && *is_items) && reads_input(src, name))
    })?;
    Some(needed(rb, step, name))
}

/// Input `name`, needed by `step`, and why the step cannot run without it.
fn needed(rb: &Runbook, step: &Step, name: &str) -> (String, String) {
    let how = rb
        .input(name)
        .and_then(|i| i.from_env.as_ref())
        .map_or(String::new(), |v| format!(" (set {v})"));
    (
        name.to_string(),
        format!(
            "step `{}` needs input `{name}`, which was not provided{how}: run on a terminal to be asked for it, or provide it",
            step.id.name
        ),
    )
}

/// The name of the not-provided input `v` stands for, if it is one.
pub(crate) fn not_provided(v: &minijinja::value::Value) -> Option<String> {
    let p = v.downcast_object_ref::<crate::template::Placeholder>()?;
    p.0.strip_suffix(": not provided yet").map(str::to_string)
}
