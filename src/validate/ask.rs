//! `ask:` steps: reading the field, the outputs it gives the step (`value`, `values`), and
//! the combinations it refuses (`invalid-ask`).

use super::reader::Reader;
use crate::diagnostic::Diagnostic;
use crate::load::Node;
use crate::model::*;

/// The fields of `ask:`.
pub(super) const ASK: &[&str] = &["prompt", "type", "secret", "pattern", "from", "timeout"];

/// Most answers an `ask` collects (`from:`).
const MAX_FROM: u64 = 50;

/// Reads `ask:` (a mapping, or a string: the prompt).
pub(super) fn read_ask(r: &mut Reader, node: &Node, what: &str) -> Option<AskSpec> {
    if node.as_str().is_some() {
        return Some(AskSpec {
            prompt: r.tmpl(node, what)?,
            ty: InputType::String,
            secret: false,
            pattern: None,
            from: 1,
            from_expr: None,
            timeout: None,
        });
    }
    let f = r.fields(node, what, ASK)?;
    let prompt = match f.get("prompt") {
        Some(n) => r.tmpl(n, what)?,
        None => {
            r.missing(&f, "prompt", what);
            return None;
        }
    };
    let ty = match f.get("type") {
        None => InputType::String,
        Some(n) => {
            match n.as_str() {
                Some("string") => InputType::String,
                Some("int") => InputType::Int,
                Some("bool") => InputType::Bool,
                _ => {
                    r.push(
                    Diagnostic::error(
                        "invalid-ask",
                        format!("the `type` of {what} must be string, int or bool"),
                    )
                    .with_span(n.span.clone(), "not an answer type")
                    .with_help("ask for several values with `from: N` (the answers are `outputs.values`)"),
                );
                    return None;
                }
            }
        }
    };
    let secret = f
        .get("secret")
        .and_then(|n| r.boolean(n, what))
        .unwrap_or(false);
    let pattern = f
        .get("pattern")
        .and_then(|n| r.regex(n, what))
        // Anchored: a pattern describes the whole answer.
        .and_then(|re| regex::Regex::new(&format!("^(?:{})$", re.as_str())).ok());
    let from_expr = f
        .get("from")
        // A number (also `1.5`, `-1`) is a literal, checked here; anything else an expression.
        .filter(|n| {
            n.as_str()
                .is_some_and(|s| s.trim().parse::<f64>().is_err() && s.contains("{{"))
        })
        .and_then(|n| r.tmpl(n, what));
    let from = match f.get("from") {
        Some(_) if from_expr.is_some() => 1,
        Some(n) => {
            let v = r.uint(n, what, MAX_FROM)?;
            if v == 0 {
                r.push(
                    Diagnostic::error("invalid-ask", format!("`from: 0` in {what} asks nobody"))
                        .with_span(n.span.clone(), "at least 1")
                        .with_help("`from: N` collects N answers from N distinct people"),
                );
                return None;
            }
            v as u32
        }
        None => 1,
    };
    if secret
        && ty != InputType::String
        && let Some(n) = f.get("type")
    {
        r.push(
            Diagnostic::error(
                "invalid-ask",
                format!("a secret answer in {what} must be a string"),
            )
            .with_span(n.span.clone(), "secret values are strings"),
        );
        return None;
    }
    Some(AskSpec {
        prompt,
        ty,
        secret,
        pattern,
        from,
        from_expr,
        timeout: f.get("timeout").and_then(|n| r.duration(n, what)),
    })
}

/// Gives an `ask` step its outputs (`value`, and `values` for every answer) and refuses what
/// an `ask` cannot be combined with.
pub(super) fn complete_step(r: &mut Reader, step: &mut Step) {
    let Action::Ask(spec) = &step.body.action else {
        return;
    };
    let bad = |field: &str, why: &str| {
        Diagnostic::error(
            "invalid-ask",
            format!(
                "step `{}` asks people for a value: it cannot have `{field}`",
                step.id.name
            ),
        )
        .with_span(step.id.span.clone(), "this ask step")
        .with_help(why.to_string())
    };
    let mut problems = Vec::new();
    if step.body.on.is_some() {
        problems.push(bad(
            "on",
            "answers come to the engine (a terminal or `runbook answer`); use the value in a later step `on:` a host",
        ));
    }
    if step.for_each.is_some() {
        problems.push(bad(
            "for_each",
            "collect several answers with `from: N`, then loop over `steps.<id>.outputs.values` in a later step",
        ));
    }
    if step.rollback.is_some() {
        problems.push(bad(
            "rollback",
            "asking changes nothing: there is nothing to undo",
        ));
    }
    if step.retries > 0 {
        problems.push(bad(
            "retries",
            "a wrong answer is asked again by itself (type and pattern)",
        ));
    }
    for d in problems {
        r.push(d);
    }
    let span = step.body.span.clone();
    for name in ["value", "values"] {
        if step.outputs.iter().any(|(n, _)| n.name == name) {
            continue;
        }
        step.outputs.push((
            Named {
                name: name.into(),
                span: span.clone(),
            },
            Tmpl {
                src: name.into(),
                span: span.clone(),
            },
        ));
    }
    if spec.secret {
        for name in ["value", "values"] {
            if !step.secret_outputs.iter().any(|n| n == name) {
                step.secret_outputs.push(name.into());
            }
        }
    }
    // Asking changes nothing, and asking again after a crash is safe (`resume` re-asks).
    step.read_only = true;
    step.idempotent = true;
}
