//! Which inputs a run may leave unknown at the start, and checking one asked later.
//!
//! An input nobody gave and with no default is *deferrable* when nothing read before the
//! first step runs, and no step that always runs, reads it: only steps with a `when:` (which
//! includes the steps of a `uses:` call under a `when:`, since each carries the call's) read
//! it, in their `when`, body, gate, outputs, rollback or anything else. It is then left
//! unknown and asked right before the first of those steps (or its `when`) that is reached
//! (`execute::lazy_ask`), never if they are all skipped.
//!
//! Read "at the start" (never deferrable): the `lock`, host addresses and users, the
//! top-level `outputs`, every input's `default`, and every step — in `steps` or `finally` —
//! without a `when`. The reads are found in the template sources as written, over-
//! approximating: an identifier equal to the input's name outside an attribute, `inputs.NAME`,
//! `inputs['NAME']`, and any other use of `inputs` as a whole (`inputs[k]`, `inputs | items`)
//! counts as reading every input. A spurious read can only make an input needed earlier, never
//! let a step run without one it reads.

use std::collections::HashMap;

use super::value::{
    check_constraints, check_secret_constraints, check_secret_length, parse_text, secret_values,
};
use super::{InputError, InputSource, InputValue, Resolved};
use crate::model::{Input, InputType, Runbook, Step};

/// Who reads an input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Readers {
    /// Read before any step runs, or by a step that always runs.
    pub up_front: bool,
    /// The steps that read it, in runbook order (`steps`, then `finally`).
    pub steps: Vec<String>,
}

/// Who reads each input of `rb`, by input name.
pub(crate) fn readers(rb: &Runbook) -> HashMap<String, Readers> {
    let mut start: Vec<String> = Vec::new();
    start.extend(rb.lock.iter().map(|t| t.src.clone()));
    for h in &rb.hosts {
        start.push(h.address.src.clone());
        start.extend(h.user.iter().map(|t| t.src.clone()));
    }
    start.extend(rb.outputs.iter().map(|(_, t)| t.src.clone()));
    for i in &rb.inputs {
        if let Some(d) = &i.default {
            start.push(d.to_string());
        }
    }
    let steps: Vec<(&Step, bool, Vec<String>)> = rb
        .steps
        .iter()
        .chain(rb.finally.iter())
        .map(|s| {
            let sources = template_sources(s).iter().map(|t| unescape(t)).collect();
            (s, s.when.is_none(), sources)
        })
        .collect();
    rb.inputs
        .iter()
        .map(|input| {
            let name = input.name.as_str();
            let mut r = Readers {
                up_front: start.iter().any(|src| reads_input(src, name)),
                steps: Vec::new(),
            };
            for (step, always, sources) in &steps {
                if sources.iter().any(|src| reads_input(src, name)) {
                    r.up_front |= *always;
                    r.steps.push(step.id.name.clone());
                }
            }
            (input.name.clone(), r)
        })
        .collect()
}

/// An input asked when first needed (at a terminal, right before the step that reads it):
/// checked like one given at the start (type, `allowed`, `pattern`; a secret's `min_length`).
pub(crate) fn late_value(input: &Input, raw: &str) -> Result<Resolved, InputError> {
    let list = input.ty == InputType::List;
    let text = raw.trim_end_matches(['\n', '\r']);
    if text.trim().is_empty() {
        return Err(InputError::Empty {
            name: input.name.clone(),
        });
    }
    let value = if input.secret {
        let values = secret_values(input, raw);
        check_secret_length(input, &values)?;
        check_secret_constraints(input, &values)?;
        InputValue::Secret(values)
    } else {
        InputValue::Plain(check_constraints(input, parse_text(input, text)?)?)
    };
    Ok(Resolved {
        name: input.name.clone(),
        value,
        source: InputSource::Prompt,
        secret: input.secret,
        list,
    })
}

/// Every template source of a step (body, rollback, gate, outputs, `for_each`, `when`): all
/// its `Tmpl` values, found in its debug form, still escaped (`\"`). Over-approximating is
/// safe: a step may only be refused for an input it might use, never run without one it uses.
pub(crate) fn template_sources(step: &Step) -> Vec<String> {
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

/// Undoes the debug form's escaping of `"` and `\`.
pub(crate) fn unescape(s: &str) -> String {
    s.replace("\\\"", "\"").replace("\\\\", "\\")
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

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `name` occurs in `src` as a whole identifier that is not an attribute.
pub(crate) fn uses_word(src: &str, name: &str) -> bool {
    src.match_indices(name).any(|(i, _)| {
        let before = src[..i].chars().next_back();
        let after = src[i + name.len()..].chars().next();
        // `steps.x.name` or `item.name` is an attribute, not the input.
        before.is_none_or(|c| !is_ident(c) && c != '.') && after.is_none_or(|c| !is_ident(c))
    })
}

/// Whether `src` reads input `name`: by its name, as `inputs.NAME` or `inputs['NAME']`, or
/// through any other use of `inputs` as a whole (which may read every input).
pub(crate) fn reads_input(src: &str, name: &str) -> bool {
    uses_word(src, name)
        || reads_through_inputs(src, name)
        // A command reaches a secret by its variable's name too (`$RUNBOOK_SECRET_TOKEN`).
        || uses_word(src, &format!("RUNBOOK_SECRET_{}", name.to_uppercase()))
}

/// [`reads_input`] for an expression (a `when`): a string literal such as `mode == 'token'`
/// is not a read of `token`, but `inputs['token']` is.
pub(crate) fn expression_reads_input(src: &str, name: &str) -> bool {
    uses_word(&without_string_literals(src), name) || reads_through_inputs(src, name)
}

/// `inputs.NAME`, `inputs['NAME']`, or `inputs` used as a whole.
fn reads_through_inputs(src: &str, name: &str) -> bool {
    src.match_indices("inputs").any(|(i, w)| {
        let before = src[..i].chars().next_back();
        let rest = &src[i + w.len()..];
        if before.is_some_and(|c| is_ident(c) || c == '.') || rest.starts_with(is_ident) {
            return false; // part of another name or an attribute (`x.inputs`)
        }
        let rest = rest.trim_start();
        let named = if let Some(attr) = rest.strip_prefix('.') {
            let attr = attr.trim_start();
            let end = attr.find(|c: char| !is_ident(c)).unwrap_or(attr.len());
            Some(&attr[..end])
        } else if let Some(key) = rest.strip_prefix('[') {
            let key = key.trim_start();
            // Only a literal key names one input; a computed one (`inputs['t' ~ 'ok']`)
            // may be any of them.
            key.strip_prefix(['\'', '"']).and_then(|k| {
                let end = k.find(['\'', '"'])?;
                k[end + 1..]
                    .trim_start()
                    .starts_with(']')
                    .then(|| &k[..end])
            })
        } else {
            None
        };
        named.is_none_or(|n| n == name)
    })
}

#[cfg(test)]
mod tests {
    use super::{
        Readers, expression_reads_input, readers, reads_input, uses_word, without_string_literals,
    };

    fn readers_of(yaml: &str) -> std::collections::HashMap<String, Readers> {
        let loaded = crate::load::load_bytes("test.yaml".into(), yaml.as_bytes().to_vec());
        let v = crate::validate::validate(&loaded);
        assert!(!v.has_errors(false), "{:?}", v.diagnostics);
        readers(&v.runbook.expect("validated"))
    }

    #[test]
    fn only_steps_under_a_when_leave_an_input_deferrable() {
        let r = readers_of(
            r#"
runbook: r
version: 1
inputs:
  a: { required: true }
  b: { required: true }
  c: { required: true }
  d: { required: true }
  e: { default: "x-{{ d }}" }
  f: { required: true }
  g: { required: true }
hosts:
  h: { address: "{{ c }}" }
steps:
  - id: always
    read_only: true
    run: echo {{ a }}
  - id: maybe
    when: "a == 'x'"
    read_only: true
    run: echo {{ b }} {{ inputs['g'] }}
    on: h
finally:
  - id: end
    when: "a == 'y'"
    read_only: true
    run: echo {{ inputs.f }}
"#,
        );
        let up = |n: &str| r[n].up_front;
        assert!(up("a"), "read by a step that always runs");
        assert!(!up("b") && r["b"].steps == ["maybe"], "{:?}", r["b"]);
        assert!(!up("g") && r["g"].steps == ["maybe"], "{:?}", r["g"]);
        assert!(up("c"), "a host address is read up front");
        assert!(up("d"), "a default is computed at the start");
        assert!(
            !up("f") && r["f"].steps == ["end"],
            "a finally step may be skipped too"
        );
    }

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

    #[test]
    fn reads_through_inputs_count_and_whole_uses_of_inputs_read_everything() {
        assert!(reads_input("{{ inputs.node }}", "node"));
        assert!(reads_input("{{ inputs['node'] }}", "node"));
        assert!(reads_input("{{ inputs[\"node\"] }}", "node"));
        assert!(!reads_input("{{ inputs.other }}", "node"));
        assert!(!reads_input("{{ inputs['other'] }}", "node"));
        assert!(reads_input("{{ inputs[k] }}", "node"));
        assert!(reads_input("{{ inputs | items }}", "node"));
        assert!(!reads_input("{{ steps.x.inputs }}", "node"));
        assert!(!reads_input("{{ my_inputs }}", "node"));
        assert!(!expression_reads_input("mode == 'node'", "node"));
        assert!(expression_reads_input("inputs['node'] == 'x'", "node"));
    }
}
