//! One input's value: parsing text, coercing JSON, defaults, and the `type`/`allowed`/
//! `pattern` rules (for secrets without ever showing the value).

use minijinja::value::Value;

use super::{InputError, InputSource, InputValue, Inputs, Resolved};
use crate::model::{Input, InputType};
use crate::template::Templates;

fn invalid(input: &Input, message: String) -> InputError {
    InputError::Invalid {
        name: input.name.clone(),
        message,
    }
}

/// A secret from `from_env` or `from_file`, if either has one.
pub(super) fn secret_source(input: &Input) -> Result<Option<(String, InputSource)>, InputError> {
    if let Some(var) = &input.from_env
        && let Ok(v) = std::env::var(var)
        && !v.is_empty()
    {
        return Ok(Some((v, InputSource::Env(var.clone()))));
    }
    if let Some(path) = &input.from_file {
        return match crate::load::read_bounded_text(std::path::Path::new(path)) {
            Ok(v) => Ok(Some((v, InputSource::File(path.clone())))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(InputError::Unreadable {
                name: input.name.clone(),
                secret: true,
                path: path.clone(),
                error: e.to_string(),
            }),
        };
    }
    Ok(None)
}

/// Lists on the command line and in the environment: comma-, space- or newline-separated.
pub(super) fn split_list(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A secret's text as its values (a list split, one value with its line end dropped).
pub(super) fn secret_values(input: &Input, raw: &str) -> Vec<String> {
    if input.ty == InputType::List {
        split_list(raw)
    } else {
        vec![raw.trim_end_matches(['\n', '\r']).to_string()]
    }
}

pub(super) fn parse_text(input: &Input, text: &str) -> Result<serde_json::Value, InputError> {
    match input.ty {
        InputType::String => Ok(serde_json::Value::String(text.to_string())),
        InputType::Int => text
            .trim()
            .parse::<i64>()
            .map(serde_json::Value::from)
            .map_err(|_| {
                invalid(
                    input,
                    format!(
                        "input `{}` must be a whole number, got `{text}`",
                        input.name
                    ),
                )
            }),
        InputType::Bool => match text.trim() {
            "true" | "yes" | "1" => Ok(serde_json::Value::Bool(true)),
            "false" | "no" | "0" => Ok(serde_json::Value::Bool(false)),
            _ => Err(invalid(
                input,
                format!("input `{}` must be true or false, got `{text}`", input.name),
            )),
        },
        InputType::List => Ok(serde_json::Value::Array(
            split_list(text)
                .into_iter()
                .map(serde_json::Value::String)
                .collect(),
        )),
    }
}

pub(super) fn coerce_json(
    input: &Input,
    v: serde_json::Value,
) -> Result<serde_json::Value, InputError> {
    match (&v, input.ty) {
        (serde_json::Value::String(s), _) => parse_text(input, s),
        (serde_json::Value::Number(n), InputType::Int) if n.is_i64() => Ok(v),
        (serde_json::Value::Bool(_), InputType::Bool) => Ok(v),
        (serde_json::Value::Array(_), InputType::List) => Ok(v),
        (serde_json::Value::Number(_) | serde_json::Value::Bool(_), InputType::String) => {
            Ok(serde_json::Value::String(v.to_string()))
        }
        _ => Err(invalid(
            input,
            format!(
                "input `{}` must be {}, got {v}",
                input.name,
                input.ty.as_str()
            ),
        )),
    }
}

/// An input's default, and whether it was computed from a secret (then it is a secret).
pub(super) fn default_value(
    input: &Input,
    templates: &Templates,
    so_far: &Inputs,
) -> Result<(serde_json::Value, bool), InputError> {
    let Some(default) = &input.default else {
        return Ok((serde_json::Value::Null, false));
    };
    let ctx = crate::template::map(so_far.context_entries());
    let mut tainted = false;
    render_json(default, templates, &ctx, &mut tainted)
        .map_err(|e| InputError::Default {
            name: input.name.clone(),
            error: crate::template::describe_error(&e),
        })
        .and_then(|v| coerce_json(input, v))
        .map(|v| (v, tainted))
}

fn render_json(
    v: &serde_json::Value,
    t: &Templates,
    ctx: &Value,
    tainted: &mut bool,
) -> Result<serde_json::Value, minijinja::Error> {
    Ok(match v {
        serde_json::Value::String(s) if s.contains("{{") || s.contains("{%") => {
            let (text, from_secret) = t.render_text_tainted(s, ctx)?;
            *tainted |= from_secret;
            serde_json::Value::String(text)
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|i| render_json(i, t, ctx, tainted))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

/// An input whose default was computed from a secret: a secret itself (never shown, carried
/// to commands in its own `RUNBOOK_SECRET_` variable, masked by the redactor). Its
/// constraints are checked without showing the value.
pub(super) fn derived_secret(
    input: &Input,
    v: serde_json::Value,
    so_far: &Inputs,
) -> Result<Resolved, InputError> {
    let values: Vec<String> = match &v {
        serde_json::Value::Array(items) => items.iter().map(json_text).collect(),
        serde_json::Value::Null => Vec::new(),
        other => vec![json_text(other)],
    };
    check_secret_constraints(input, &values)?;
    // What is computed from a secret not known yet (in a plan, or asked later) is not known
    // either.
    let default = input
        .default
        .as_ref()
        .map(|d| d.to_string())
        .unwrap_or_default();
    let unknown = so_far.values.iter().any(|r| {
        matches!(r.value, InputValue::Unknown) && super::lazy::reads_input(&default, &r.name)
    });
    Ok(Resolved {
        name: input.name.clone(),
        value: if unknown {
            InputValue::Unknown
        } else {
            InputValue::Secret(values)
        },
        source: InputSource::Default,
        secret: true,
        list: input.ty == InputType::List,
    })
}

/// `min_length` of a secret.
pub(super) fn check_secret_length(input: &Input, values: &[String]) -> Result<(), InputError> {
    let min = input.min_length.unwrap_or(crate::model::MIN_SECRET_LEN);
    match values.iter().map(|v| v.chars().count()).find(|&n| n < min) {
        Some(len) => Err(InputError::SecretTooShort {
            name: input.name.clone(),
            len,
            min,
        }),
        None => Ok(()),
    }
}

/// `type:`, `allowed:` and `pattern:` of a secret input (or one computed from a secret); the
/// error names the rule, never the value.
pub(super) fn check_secret_constraints(input: &Input, values: &[String]) -> Result<(), InputError> {
    for (i, t) in values.iter().enumerate() {
        let which = if values.len() > 1 {
            format!(" (item {})", i + 1)
        } else {
            String::new()
        };
        let ok_type = match input.ty {
            InputType::Int => t.trim().parse::<i64>().is_ok(),
            InputType::Bool => matches!(t.trim(), "true" | "yes" | "1" | "false" | "no" | "0"),
            InputType::String | InputType::List => true,
        };
        if !ok_type {
            return Err(invalid(
                input,
                format!(
                    "secret input `{}`{which} must be {} (the value is not shown)",
                    input.name,
                    input.ty.as_str()
                ),
            ));
        }
        if !input.allowed.is_empty() && !input.allowed.contains(t) {
            return Err(invalid(
                input,
                format!(
                    "secret input `{}`{which} must be one of the allowed values (the value is not shown)",
                    input.name
                ),
            ));
        }
        if let Some(p) = &input.pattern
            && !p.is_match(t)
        {
            return Err(invalid(
                input,
                format!(
                    "secret input `{}`{which} must match {} (the value is not shown)",
                    input.name,
                    p.as_str()
                ),
            ));
        }
    }
    Ok(())
}

/// `allowed:` and `pattern:` of a plain value (each item of a list).
pub(super) fn check_constraints(
    input: &Input,
    v: serde_json::Value,
) -> Result<serde_json::Value, InputError> {
    let texts: Vec<String> = match &v {
        serde_json::Value::Array(items) => items.iter().map(json_text).collect(),
        serde_json::Value::Null => Vec::new(),
        other => vec![json_text(other)],
    };
    for t in &texts {
        if !input.allowed.is_empty() && !input.allowed.contains(t) {
            return Err(invalid(
                input,
                format!(
                    "input `{}` must be one of {}, got `{t}`",
                    input.name,
                    input.allowed.join(", ")
                ),
            ));
        }
        if let Some(p) = &input.pattern
            && !p.is_match(t)
        {
            return Err(invalid(
                input,
                format!(
                    "input `{}` must match {}, got `{t}`",
                    input.name,
                    p.as_str()
                ),
            ));
        }
    }
    Ok(v)
}

fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
