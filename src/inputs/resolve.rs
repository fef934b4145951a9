//! Resolving every input of a run (or of a plan) at the start, collecting every problem.

use std::collections::HashMap;

use super::lazy::{Readers, readers};
use super::value::{
    check_constraints, check_secret_constraints, check_secret_length, coerce_json, default_value,
    derived_secret, parse_text, secret_source, secret_values,
};
use super::{InputError, InputSource, InputValue, Inputs, Provided, Resolved};
use crate::diagnostic::did_you_mean;
use crate::model::{Input, InputType, Runbook};
use crate::template::{SecretDisplay, Templates};

/// Asks for a secret on the terminal (exec only); `None` when nobody can answer.
pub(crate) type Prompter<'a> = &'a mut dyn FnMut(&Input) -> Option<String>;

/// Resolves the inputs of a resumed run: non-secret values come from the journal (they were
/// checked when the run started, or when asked later); secrets are read again.
pub(crate) fn resolve_resumed(
    rb: &Runbook,
    from_journal: &Provided,
    prompt: Option<Prompter<'_>>,
) -> Result<Inputs, Vec<InputError>> {
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

/// Resolves every input, or returns every problem found. An input nobody gave that no step
/// needs up front stays [`InputValue::Unknown`] (`inputs::lazy`). `prompt`: `None` for a
/// plan (then a secret nobody gave is unknown too).
pub(crate) fn resolve(
    rb: &Runbook,
    provided: &Provided,
    prompt: Option<Prompter<'_>>,
) -> Result<Inputs, Vec<InputError>> {
    let mut r = Resolver {
        provided,
        prompt,
        templates: Templates::new(SecretDisplay::Reveal),
        readers: readers(rb),
        out: Inputs::default(),
        errors: unknown_names(rb, provided),
        missing: Vec::new(),
    };
    for input in &rb.inputs {
        let one = if input.secret {
            r.secret(input)
        } else {
            r.plain(input)
        };
        match one {
            Ok(Some(v)) => r.out.values.push(v),
            Ok(None) => {}
            Err(e) => r.errors.push(e),
        }
    }
    if !r.missing.is_empty() {
        r.errors.insert(0, InputError::Missing(r.missing));
    }
    if r.errors.is_empty() {
        Ok(r.out)
    } else {
        Err(r.errors)
    }
}

/// Names given with `-i` or in an inputs file that the runbook does not take.
fn unknown_names(rb: &Runbook, provided: &Provided) -> Vec<InputError> {
    let names: Vec<&str> = rb.inputs.iter().map(|i| i.name.as_str()).collect();
    provided
        .pairs
        .iter()
        .map(|(k, _)| k)
        .chain(provided.file.iter().map(|(k, _)| k))
        .filter(|k| rb.input(k).is_none())
        .map(|k| InputError::Unknown {
            name: k.clone(),
            hint: did_you_mean(k, names.iter().copied()),
            takes: names.iter().map(|n| n.to_string()).collect(),
        })
        .collect()
}

struct Resolver<'p, 'a> {
    provided: &'p Provided,
    prompt: Option<Prompter<'a>>,
    templates: Templates,
    readers: HashMap<String, Readers>,
    out: Inputs,
    errors: Vec<InputError>,
    /// Required inputs nobody gave that are needed up front.
    missing: Vec<String>,
}

impl Resolver<'_, '_> {
    fn given(&self, input: &Input) -> (Option<&String>, Option<&serde_json::Value>) {
        let cli = self
            .provided
            .pairs
            .iter()
            .rev()
            .find(|(k, _)| k == &input.name)
            .map(|(_, v)| v);
        let file = self
            .provided
            .file
            .iter()
            .find(|(k, _)| k == &input.name)
            .map(|(_, v)| v);
        (cli, file)
    }

    /// The steps that read `input` when it can wait for them (only steps that may be skipped
    /// read it); `None` when it is needed up front (or read by nothing at all).
    fn deferrable(&self, input: &Input) -> Option<Vec<String>> {
        self.readers
            .get(&input.name)
            .filter(|r| !r.up_front && !r.steps.is_empty())
            .map(|r| r.steps.clone())
    }

    fn unknown(input: &Input, by: Vec<String>, at_start: bool) -> Resolved {
        Resolved {
            name: input.name.clone(),
            value: InputValue::Unknown,
            source: InputSource::NotProvided { by, at_start },
            secret: input.secret,
            list: input.ty == InputType::List,
        }
    }

    fn secret(&mut self, input: &Input) -> Result<Option<Resolved>, InputError> {
        if let (Some(_), _) | (_, Some(_)) = self.given(input) {
            return Err(InputError::SecretRefused {
                name: input.name.clone(),
                from_env: input.from_env.clone(),
            });
        }
        if let Some((raw, source)) = secret_source(input)? {
            return checked_secret(input, &raw, source).map(Some);
        }
        // Nobody gave it. Not required, or read only by steps that may be skipped: asked
        // right before the first step that reads it (`execute::lazy_ask`).
        if let Some(by) = self.deferrable(input) {
            return Ok(Some(Self::unknown(input, by, false)));
        }
        if !input.required {
            let by = self
                .readers
                .get(&input.name)
                .map(|r| r.steps.clone())
                .unwrap_or_default();
            return Ok(Some(Self::unknown(input, by, false)));
        }
        let Some(prompt) = self.prompt.as_mut() else {
            // A plan: `exec` will ask at the start.
            return Ok(Some(Self::unknown(input, Vec::new(), true)));
        };
        match prompt(input) {
            Some(raw) => checked_secret(input, &raw, InputSource::Prompt).map(Some),
            None => Err(InputError::SecretNotProvided {
                name: input.name.clone(),
                from_env: input.from_env.clone(),
            }),
        }
    }

    fn plain(&mut self, input: &Input) -> Result<Option<Resolved>, InputError> {
        let (cli, file) = self.given(input);
        let (value, source) = if let Some(v) = cli {
            (parse_text(input, v)?, InputSource::CommandLine)
        } else if let Some(v) = file {
            (coerce_json(input, v.clone())?, InputSource::InputsFile)
        } else if let Some(var) = input
            .from_env
            .as_ref()
            .filter(|v| std::env::var_os(v).is_some())
        {
            let text = std::env::var(var).unwrap_or_default();
            (parse_text(input, &text)?, InputSource::Env(var.clone()))
        } else if let Some(path) = &input.from_file {
            match crate::load::read_bounded_text(std::path::Path::new(path)) {
                Ok(text) => (
                    parse_text(input, text.trim_end())?,
                    InputSource::File(path.clone()),
                ),
                Err(_) if input.default.is_some() => return self.defaulted(input).map(Some),
                Err(e) => {
                    return Err(InputError::Unreadable {
                        name: input.name.clone(),
                        secret: false,
                        path: path.clone(),
                        error: e.to_string(),
                    });
                }
            }
        } else if input.default.is_some() {
            return self.defaulted(input).map(Some);
        } else if input.required {
            if let Some(by) = self.deferrable(input) {
                return Ok(Some(Self::unknown(input, by, false)));
            }
            self.missing.push(input.name.clone());
            return Ok(None);
        } else {
            (serde_json::Value::Null, InputSource::Default)
        };
        Ok(Some(Resolved {
            name: input.name.clone(),
            value: InputValue::Plain(check_constraints(input, value)?),
            source,
            secret: false,
            list: input.ty == InputType::List,
        }))
    }

    /// A plain input from its `default` (a secret if computed from one).
    fn defaulted(&self, input: &Input) -> Result<Resolved, InputError> {
        match default_value(input, &self.templates, &self.out)? {
            (v, false) => Ok(Resolved {
                name: input.name.clone(),
                value: InputValue::Plain(check_constraints(input, v)?),
                source: InputSource::Default,
                secret: false,
                list: input.ty == InputType::List,
            }),
            (v, true) => derived_secret(input, v, &self.out),
        }
    }
}

/// A secret's text, checked (`min_length`, type, `allowed`, `pattern`).
fn checked_secret(input: &Input, raw: &str, source: InputSource) -> Result<Resolved, InputError> {
    let values = secret_values(input, raw);
    check_secret_length(input, &values)?;
    check_secret_constraints(input, &values)?;
    Ok(Resolved {
        name: input.name.clone(),
        value: InputValue::Secret(values),
        source,
        secret: true,
        list: input.ty == InputType::List,
    })
}
