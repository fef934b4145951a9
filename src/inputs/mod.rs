//! Input resolution: command line, inputs file, environment, files, defaults, prompts.
//!
//! Precedence, highest first: `-i key=value`, `--inputs-file`, `from_env`, `from_file`,
//! `default`, then (exec only, on a terminal) a prompt. Secrets are refused on the command
//! line and in inputs files (both end up in shell history, process lists or repositories).
//! Every problem is collected so the operator fixes them in one go.
//!
//! An input nobody gave that only steps which may be skipped read is not needed up front: it
//! stays unknown and is asked right before the first step that reads it ([`lazy`]).

mod error;
pub(crate) mod lazy;
mod resolve;
mod value;

use std::path::Path;

use minijinja::value::Value;

use crate::template::{Secret, secret_env_name};

pub(crate) use error::InputError;
pub(crate) use lazy::late_value;
pub(crate) use resolve::{resolve, resolve_resumed};

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
    /// Not provided. `by`: the steps that read it (`exec` asks for it right before the first
    /// of them that runs); `at_start`: a required secret asked before any step runs.
    NotProvided {
        by: Vec<String>,
        at_start: bool,
    },
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
            InputSource::NotProvided { at_start: true, .. } => f.write_str(
                "not provided: asked at the start on a terminal (hidden); headless, the run does not start",
            ),
            InputSource::NotProvided { by, .. } if by.is_empty() => {
                f.write_str("not provided: no step reads it")
            }
            InputSource::NotProvided { by, .. } => {
                // A long list (a triage calling every recovery) names the first few.
                let shown = if by.len() > 4 { 3 } else { by.len() };
                let mut steps: Vec<String> =
                    by.iter().take(shown).map(|s| format!("`{s}`")).collect();
                if by.len() > shown {
                    steps.push(format!("{} more", by.len() - shown));
                }
                write!(
                    f,
                    "not provided: asked when needed (by step {}), right before the first of them that runs, never if they are skipped; headless, that step fails",
                    steps.join(", ")
                )
            }
        }
    }
}

/// A resolved input value. Secret values live only here and in the redactor.
#[derive(Debug, Clone)]
pub enum InputValue {
    Plain(serde_json::Value),
    Secret(Vec<String>),
    /// Not known yet: asked when a step needs it (or a secret, in a plan).
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
            InputValue::Unknown if !self.secret => "(asked when needed)".to_string(),
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
        // A plain input, or a list, not known yet: a placeholder (`<node: not provided yet>`
        // in a plan; a step never runs with it, it is asked first).
        InputValue::Unknown if r.list || !r.secret => Value::from_object(
            crate::template::Placeholder(format!("{}: not provided yet", r.name)),
        ),
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

/// Parses `key=value` from `-i`.
pub(crate) fn parse_pair(s: &str) -> Result<(String, String), InputError> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(InputError::NotKeyValue(s.to_string())),
    }
}

/// Reads an inputs file (a YAML or JSON mapping of input names to values).
pub(crate) fn read_inputs_file(
    path: &Path,
) -> Result<Vec<(String, serde_json::Value)>, InputError> {
    let bad = |message: String| InputError::InputsFile {
        path: path.display().to_string(),
        message,
    };
    let loaded = crate::load::load(path).map_err(|e| InputError::Load(e.to_string()))?;
    let root = match loaded.root {
        Ok(Some(root)) => root,
        Ok(None) => return Ok(Vec::new()),
        Err(d) => {
            let first = d.first().map(|d| d.message.clone()).unwrap_or_default();
            return Err(bad(first));
        }
    };
    match crate::validate::reader::to_json(&root) {
        serde_json::Value::Object(m) => Ok(m.into_iter().collect()),
        _ => Err(bad(
            "an inputs file is a mapping of input names to values".into()
        )),
    }
}
