//! Input resolution: command line, inputs file, environment, files, defaults, prompts.
//!
//! Precedence, highest first: `-i key=value`, `--inputs-file`, `from_env`, `from_file`,
//! `default`, then (exec only, on a terminal) a prompt. Secrets are refused on the command
//! line and in inputs files (both end up in shell history, process lists or repositories).
//! Every problem is collected so the operator fixes them in one go.

use std::path::Path;

use minijinja::value::Value;

use crate::diagnostic::did_you_mean;
use crate::model::{Input, InputType, Runbook};
use crate::template::{Secret, SecretDisplay, Templates, secret_env_name};

/// Where a value came from (shown in plans and transcripts).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum InputSource {
    CommandLine,
    InputsFile,
    Env(String),
    File(String),
    Default,
    Prompt,
    /// A secret not provided; `exec` will ask for it.
    NotProvided,
}

impl std::fmt::Display for InputSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputSource::CommandLine => f.write_str("command line"),
            InputSource::InputsFile => f.write_str("inputs file"),
            InputSource::Env(v) => write!(f, "env {v}"),
            InputSource::File(p) => write!(f, "file {p}"),
            InputSource::Default => f.write_str("default"),
            InputSource::Prompt => f.write_str("prompt"),
            InputSource::NotProvided => f.write_str(
                "not provided: asked when needed (on a terminal a hidden prompt, at the start if required, else right before the first step that uses it; headless, that step fails)",
            ),
        }
    }
}

/// A resolved input value. Secret values live only here and in the redactor.
#[derive(Debug, Clone)]
pub enum InputValue {
    Plain(serde_json::Value),
    Secret(Vec<String>),
    /// A secret whose value is not known (plan only).
    Unknown,
}

/// One resolved input.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: String,
    pub value: InputValue,
    pub source: InputSource,
    pub secret: bool,
    pub list: bool,
}

impl Resolved {
    /// The value as shown to people: secrets masked.
    pub fn display(&self) -> String {
        match &self.value {
            InputValue::Plain(serde_json::Value::String(s)) => s.clone(),
            InputValue::Plain(v) => v.to_string(),
            InputValue::Secret(items) if self.list => format!("[{} secret values]", items.len()),
            InputValue::Secret(_) | InputValue::Unknown => crate::template::MASK.to_string(),
        }
    }
}

/// All inputs of a run, resolved.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub values: Vec<Resolved>,
}

impl Inputs {
    /// Every secret value (for the redactor).
    pub fn secret_values(&self) -> Vec<String> {
        self.values
            .iter()
            .filter_map(|r| match &r.value {
                InputValue::Secret(v) => Some(v.clone()),
                _ => None,
            })
            .flatten()
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// Environment variables that carry the secrets to commands.
    pub fn secret_env(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for r in &self.values {
            if let InputValue::Secret(items) = &r.value {
                if r.list {
                    for (i, v) in items.iter().enumerate() {
                        out.push((secret_env_name(&r.name, Some(i)), v.clone()));
                    }
                } else if let Some(v) = items.first() {
                    out.push((secret_env_name(&r.name, None), v.clone()));
                }
            }
        }
        out
    }

    /// Template values: each input by name, and all of them under `inputs`.
    pub fn context_entries(&self) -> Vec<(String, Value)> {
        self.values
            .iter()
            .map(|r| (r.name.clone(), input_value(r)))
            .collect()
    }
}

fn input_value(r: &Resolved) -> Value {
    match &r.value {
        InputValue::Plain(v) => crate::template::to_value(v),
        InputValue::Secret(items) if r.list => Value::from(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    Value::from_object(Secret {
                        env_name: secret_env_name(&r.name, Some(i)),
                        value: v.clone(),
                    })
                })
                .collect::<Vec<_>>(),
        ),
        InputValue::Secret(items) => Value::from_object(Secret {
            env_name: secret_env_name(&r.name, None),
            value: items.first().cloned().unwrap_or_default(),
        }),
        InputValue::Unknown if r.list => Value::from_object(crate::template::Placeholder(format!(
            "{}: not provided yet",
            r.name
        ))),
        InputValue::Unknown => Value::from_object(Secret {
            env_name: secret_env_name(&r.name, None),
            value: String::new(),
        }),
    }
}

/// What the operator supplied on the command line.
#[derive(Debug, Clone, Default)]
pub(crate) struct Provided {
    /// `-i key=value` pairs, in order.
    pub pairs: Vec<(String, String)>,
    /// Values from `--inputs-file` (YAML or JSON mapping).
    pub file: Vec<(String, serde_json::Value)>,
}

/// Asks for a secret on the terminal (exec only); `None` when nobody can answer.
pub(crate) type Prompter<'a> = &'a mut dyn FnMut(&Input) -> Option<String>;

/// Resolves the inputs of a resumed run: non-secret values come from the journal (they were
/// checked when the run started); secrets are read again.
pub(crate) fn resolve_resumed(
    rb: &Runbook,
    from_journal: &Provided,
    prompt: Option<Prompter<'_>>,
) -> Result<Inputs, Vec<String>> {
    // The journal's values act as an inputs file (they win over env and defaults, exactly as
    // the original run resolved them); secrets are not journaled and are read again.
    let file = from_journal
        .file
        .iter()
        .filter(|(_, v)| !v.is_null())
        .cloned()
        .collect();
    resolve(
        rb,
        &Provided {
            pairs: Vec::new(),
            file,
        },
        prompt,
    )
}

/// Resolves every input, or returns every problem found.
pub(crate) fn resolve(
    rb: &Runbook,
    provided: &Provided,
    mut prompt: Option<Prompter<'_>>,
) -> Result<Inputs, Vec<String>> {
    let mut errors = Vec::new();
    let names: Vec<&str> = rb.inputs.iter().map(|i| i.name.as_str()).collect();
    let given = provided
        .pairs
        .iter()
        .map(|(k, _)| k)
        .chain(provided.file.iter().map(|(k, _)| k));
    for k in given {
        if rb.input(k).is_none() {
            let hint = did_you_mean(k, names.iter().copied())
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            errors.push(format!(
                "unknown input `{k}`{hint}; this runbook takes: {}",
                if names.is_empty() {
                    "no inputs".to_string()
                } else {
                    names.join(", ")
                }
            ));
        }
    }
    let templates = Templates::new(SecretDisplay::Reveal);
    let mut out = Inputs::default();
    let mut missing = Vec::new();
    for input in &rb.inputs {
        let cli = provided.pairs.iter().rev().find(|(k, _)| k == &input.name);
        let file = provided.file.iter().find(|(k, _)| k == &input.name);
        let list = input.ty == InputType::List;
        if input.secret {
            if cli.is_some() || file.is_some() {
                let how = match &input.from_env {
                    Some(var) => format!("set it in the environment variable {var}"),
                    None => "it will be asked for with a hidden prompt".to_string(),
                };
                errors.push(format!("input `{}` is secret and is refused on the command line and in inputs files (they leak into shell history and process lists); {how}", input.name));
                continue;
            }
            let (raw, source) = match secret_source(input) {
                Ok(Some(found)) => found,
                Ok(None) => match prompt.as_mut().and_then(|p| p(input)) {
                    Some(v) => (v, InputSource::Prompt),
                    None if prompt.is_none() => {
                        out.values.push(Resolved {
                            name: input.name.clone(),
                            value: InputValue::Unknown,
                            source: InputSource::NotProvided,
                            secret: true,
                            list,
                        });
                        continue;
                    }
                    // Not required: maybe no step that runs needs it (a skipped branch). It is
                    // left unknown; a step that uses it fails naming the step and the input.
                    None if !input.required => {
                        out.values.push(Resolved {
                            name: input.name.clone(),
                            value: InputValue::Unknown,
                            source: InputSource::NotProvided,
                            secret: true,
                            list,
                        });
                        continue;
                    }
                    None => {
                        let how = input
                            .from_env
                            .as_ref()
                            .map_or(String::new(), |v| format!(" (set {v})"));
                        errors.push(format!("secret input `{}` was not provided{how} and cannot be prompted for without a terminal", input.name));
                        continue;
                    }
                },
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let values = if list {
                split_list(&raw)
            } else {
                vec![raw.trim_end_matches(['\n', '\r']).to_string()]
            };
            let min = input.min_length.unwrap_or(crate::model::MIN_SECRET_LEN);
            if let Some(short) = values.iter().map(|v| v.chars().count()).find(|&n| n < min) {
                errors.push(format!(
                    "input `{}` (secret-too-short): the secret is {short} characters, shorter than {min}; a short secret cannot be masked reliably in output. Use a longer one, or set `min_length:` on the input to accept it (it is then masked only where it stands as a whole word)",
                    input.name
                ));
                continue;
            }
            if let Err(e) = check_secret_constraints(input, &values) {
                errors.push(e);
                continue;
            }
            out.values.push(Resolved {
                name: input.name.clone(),
                value: InputValue::Secret(values),
                source,
                secret: true,
                list,
            });
            continue;
        }
        let (value, source) = if let Some((_, v)) = cli {
            (parse_text(input, v), InputSource::CommandLine)
        } else if let Some((_, v)) = file {
            (coerce_json(input, v.clone()), InputSource::InputsFile)
        } else if let Some(var) = input
            .from_env
            .as_ref()
            .filter(|v| std::env::var_os(v).is_some())
        {
            let text = std::env::var(var).unwrap_or_default();
            (parse_text(input, &text), InputSource::Env(var.clone()))
        } else if let Some(path) = &input.from_file {
            match crate::load::read_bounded_text(std::path::Path::new(path)) {
                Ok(text) => (
                    parse_text(input, text.trim_end()),
                    InputSource::File(path.clone()),
                ),
                Err(e) if input.default.is_none() => {
                    errors.push(format!("input `{}`: cannot read {path}: {e}", input.name));
                    continue;
                }
                Err(_) => match default_value(input, &templates, &out) {
                    Ok((v, false)) => (Ok(v), InputSource::Default),
                    Ok((v, true)) => {
                        if let Some(r) = derived_secret(input, v, &out, &mut errors, list) {
                            out.values.push(r);
                        }
                        continue;
                    }
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                },
            }
        } else if input.default.is_some() {
            match default_value(input, &templates, &out) {
                Ok((v, false)) => (Ok(v), InputSource::Default),
                Ok((v, true)) => {
                    if let Some(r) = derived_secret(input, v, &out, &mut errors, list) {
                        out.values.push(r);
                    }
                    continue;
                }
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            }
        } else if input.required {
            missing.push(input.name.as_str());
            continue;
        } else {
            (Ok(serde_json::Value::Null), InputSource::Default)
        };
        match value.and_then(|v| check_constraints(input, v)) {
            Ok(v) => out.values.push(Resolved {
                name: input.name.clone(),
                value: InputValue::Plain(v),
                source,
                secret: false,
                list,
            }),
            Err(e) => errors.push(e),
        }
    }
    if !missing.is_empty() {
        let flags: Vec<String> = missing.iter().map(|m| format!("-i {m}=…")).collect();
        errors.insert(
            0,
            format!(
                "missing required input{} {}: pass {}",
                if missing.len() > 1 { "s" } else { "" },
                missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                flags.join(" ")
            ),
        );
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn secret_source(input: &Input) -> Result<Option<(String, InputSource)>, String> {
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
            Err(e) => Err(format!(
                "secret input `{}`: cannot read {path}: {e}",
                input.name
            )),
        };
    }
    Ok(None)
}

/// Lists on the command line and in the environment: comma-, space- or newline-separated.
fn split_list(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_text(input: &Input, text: &str) -> Result<serde_json::Value, String> {
    match input.ty {
        InputType::String => Ok(serde_json::Value::String(text.to_string())),
        InputType::Int => text
            .trim()
            .parse::<i64>()
            .map(serde_json::Value::from)
            .map_err(|_| {
                format!(
                    "input `{}` must be a whole number, got `{text}`",
                    input.name
                )
            }),
        InputType::Bool => match text.trim() {
            "true" | "yes" | "1" => Ok(serde_json::Value::Bool(true)),
            "false" | "no" | "0" => Ok(serde_json::Value::Bool(false)),
            _ => Err(format!(
                "input `{}` must be true or false, got `{text}`",
                input.name
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

fn coerce_json(input: &Input, v: serde_json::Value) -> Result<serde_json::Value, String> {
    match (&v, input.ty) {
        (serde_json::Value::String(s), _) => parse_text(input, s),
        (serde_json::Value::Number(n), InputType::Int) if n.is_i64() => Ok(v),
        (serde_json::Value::Bool(_), InputType::Bool) => Ok(v),
        (serde_json::Value::Array(_), InputType::List) => Ok(v),
        (serde_json::Value::Number(_) | serde_json::Value::Bool(_), InputType::String) => {
            Ok(serde_json::Value::String(v.to_string()))
        }
        _ => Err(format!(
            "input `{}` must be {}, got {v}",
            input.name,
            input.ty.as_str()
        )),
    }
}

/// An input's default, and whether it was computed from a secret (then it is a secret).
fn default_value(
    input: &Input,
    templates: &Templates,
    so_far: &Inputs,
) -> Result<(serde_json::Value, bool), String> {
    let Some(default) = &input.default else {
        return Ok((serde_json::Value::Null, false));
    };
    let ctx = crate::template::map(so_far.context_entries());
    let mut tainted = false;
    render_json(default, templates, &ctx, &mut tainted)
        .map_err(|e| {
            format!(
                "default of input `{}`: {}",
                input.name,
                crate::template::describe_error(&e)
            )
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
fn derived_secret(
    input: &Input,
    v: serde_json::Value,
    so_far: &Inputs,
    errors: &mut Vec<String>,
    list: bool,
) -> Option<Resolved> {
    let values: Vec<String> = match &v {
        serde_json::Value::Array(items) => items.iter().map(json_text).collect(),
        serde_json::Value::Null => Vec::new(),
        other => vec![json_text(other)],
    };
    if let Err(e) = check_secret_constraints(input, &values) {
        errors.push(e);
        return None;
    }
    // A plan does not know the secrets: neither does it know what is computed from them.
    let unknown = so_far
        .values
        .iter()
        .any(|r| matches!(r.value, InputValue::Unknown));
    Some(Resolved {
        name: input.name.clone(),
        value: if unknown {
            InputValue::Unknown
        } else {
            InputValue::Secret(values)
        },
        source: InputSource::Default,
        secret: true,
        list,
    })
}

/// `type:`, `allowed:` and `pattern:` of a secret input (or one computed from a secret); the
/// error names the rule, never the value.
fn check_secret_constraints(input: &Input, values: &[String]) -> Result<(), String> {
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
            return Err(format!(
                "secret input `{}`{which} must be {} (the value is not shown)",
                input.name,
                input.ty.as_str()
            ));
        }
        if !input.allowed.is_empty() && !input.allowed.contains(t) {
            return Err(format!(
                "secret input `{}`{which} must be one of the allowed values (the value is not shown)",
                input.name
            ));
        }
        if let Some(p) = &input.pattern
            && !p.is_match(t)
        {
            return Err(format!(
                "secret input `{}`{which} must match {} (the value is not shown)",
                input.name,
                p.as_str()
            ));
        }
    }
    Ok(())
}

fn check_constraints(input: &Input, v: serde_json::Value) -> Result<serde_json::Value, String> {
    let texts: Vec<String> = match &v {
        serde_json::Value::Array(items) => items.iter().map(json_text).collect(),
        serde_json::Value::Null => Vec::new(),
        other => vec![json_text(other)],
    };
    for t in &texts {
        if !input.allowed.is_empty() && !input.allowed.contains(t) {
            return Err(format!(
                "input `{}` must be one of {}, got `{t}`",
                input.name,
                input.allowed.join(", ")
            ));
        }
        if let Some(p) = &input.pattern
            && !p.is_match(t)
        {
            return Err(format!(
                "input `{}` must match {}, got `{t}`",
                input.name,
                p.as_str()
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

/// Parses `key=value` from `-i`.
pub(crate) fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// Reads an inputs file (a YAML or JSON mapping of input names to values).
pub(crate) fn read_inputs_file(path: &Path) -> Result<Vec<(String, serde_json::Value)>, String> {
    let loaded = crate::load::load(path).map_err(|e| e.to_string())?;
    let root = match loaded.root {
        Ok(Some(root)) => root,
        Ok(None) => return Ok(Vec::new()),
        Err(d) => {
            let first = d.first().map(|d| d.message.clone()).unwrap_or_default();
            return Err(format!("{}: {first}", path.display()));
        }
    };
    match crate::validate::reader::to_json(&root) {
        serde_json::Value::Object(m) => Ok(m.into_iter().collect()),
        _ => Err(format!(
            "{}: an inputs file is a mapping of input names to values",
            path.display()
        )),
    }
}

/// A secret input asked when first needed (at a terminal, right before the step that uses
/// it): checked like one asked at the start (length, constraints).
pub(crate) fn late_secret(input: &Input, raw: &str) -> Result<Resolved, String> {
    let list = input.ty == InputType::List;
    let values = if list {
        split_list(raw)
    } else {
        vec![raw.trim_end_matches(['\n', '\r']).to_string()]
    };
    if values.is_empty() || values.iter().all(String::is_empty) {
        return Err("an answer is needed".into());
    }
    let min = input.min_length.unwrap_or(crate::model::MIN_SECRET_LEN);
    if let Some(short) = values.iter().map(|v| v.chars().count()).find(|&n| n < min) {
        return Err(format!(
            "the secret is {short} characters, shorter than {min} (secret-too-short)"
        ));
    }
    check_secret_constraints(input, &values)?;
    Ok(Resolved {
        name: input.name.clone(),
        value: InputValue::Secret(values),
        source: InputSource::Prompt,
        secret: true,
        list,
    })
}
