//! Inputs asked for only when needed: a secret input that is not `required` and was not
//! provided does not stop a headless run up front (a branch that uses it may be skipped);
//! the step that does use it fails, naming itself and the input.

use crate::inputs::{InputValue, Inputs};
use crate::model::{Runbook, Step};

/// The first input `step` uses that nobody provided, and why the step cannot run without it.
/// `only`: look in this template source of the step only (its `when`, decided first).
pub(crate) fn missing_input(
    rb: &Runbook,
    inputs: &Inputs,
    step: &Step,
    only: Option<&str>,
) -> Option<(String, String)> {
    let missing: Vec<&str> = inputs
        .values
        .iter()
        .filter(|r| matches!(r.value, InputValue::Unknown))
        .map(|r| r.name.as_str())
        .collect();
    if missing.is_empty() {
        return None;
    }
    // `for_each` items are checked when evaluated (`not_provided`): an expression may pick
    // another branch (`a if mode == 'x' else missing_input`).
    let items = step.for_each.as_ref().map(|f| f.items.src.as_str());
    let sources: Vec<String> = match only {
        Some(src) => vec![without_string_literals(src)],
        None => template_sources(step)
            .into_iter()
            .filter(|s| Some(unescape(s).as_str()) != items && Some(s.as_str()) != items)
            .collect(),
    };
    let name = missing
        .into_iter()
        .find(|name| sources.iter().any(|src| uses_word(src, name)))?;
    let how = rb
        .input(name)
        .and_then(|i| i.from_env.as_ref())
        .map_or(String::new(), |v| format!(" (set {v})"));
    Some((
        name.to_string(),
        format!(
            "step `{}` needs input `{name}`, which was not provided{how}: run on a terminal to be asked for it, or provide it",
            step.id.name
        ),
    ))
}

/// Every template source of a step (body, rollback, gate, outputs, `for_each`, `when`): all
/// its `Tmpl` values, found in its debug form (over-approximating is safe: a step may only be
/// refused for an input it might use, never run without one it uses).
fn template_sources(step: &Step) -> Vec<String> {
    let text = format!("{step:?}");
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("src: \"") {
        rest = &rest[at + 6..];
        let mut end = None;
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(end) = end else { break };
        out.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    out
}

/// The name of the not-provided list input `v` stands for, if it is one.
pub(crate) fn not_provided(v: &minijinja::value::Value) -> Option<String> {
    let p = v.downcast_object_ref::<crate::template::Placeholder>()?;
    p.0.strip_suffix(": not provided yet").map(str::to_string)
}

/// An expression with its string literals blanked: `mode == 'token'` does not use `token`.
fn without_string_literals(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in src.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push(c);
                    continue;
                }
                out.push(' ');
            }
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

/// Undoes the debug form's escaping of `"` and `\`.
fn unescape(s: &str) -> String {
    s.replace("\\\"", "\"").replace("\\\\", "\\")
}

/// Whether `name` occurs in `src` as a whole identifier.
fn uses_word(src: &str, name: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    src.match_indices(name).any(|(i, _)| {
        let before = src[..i].chars().next_back();
        let after = src[i + name.len()..].chars().next();
        // `steps.x.name` or `item.name` is an attribute, not the input.
        before.is_none_or(|c| !is_ident(c) && c != '.') && after.is_none_or(|c| !is_ident(c))
    })
}

#[cfg(test)]
mod tests {
    use super::{uses_word, without_string_literals};

    #[test]
    fn a_string_literal_in_an_expression_is_not_a_use() {
        let e = without_string_literals("mode == 'token' and x != \"a\\\"token\"");
        assert!(!uses_word(&e, "token"), "{e}");
        assert!(uses_word(&without_string_literals("token != 'x'"), "token"));
    }

    #[test]
    fn an_input_is_found_as_a_whole_identifier_only() {
        assert!(uses_word("{{ unseal_keys }}", "unseal_keys"));
        assert!(uses_word("a if b else (unseal_keys)", "unseal_keys"));
        assert!(!uses_word("{{ unseal_keys_2 }}", "unseal_keys"));
        assert!(!uses_word(
            "{{ steps.x.outputs.unseal_keys }}",
            "unseal_keys"
        ));
    }
}
