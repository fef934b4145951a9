//! How a step's templates become text, for the plan and for a run alike.
//!
//! Each step kind has ONE render function (`run::render`, `http::render`, `hosts::resolve`,
//! `manual::render`) that decides *what* is rendered and how the pieces fit together; a
//! [`Renderer`] decides how one template becomes text. The plan renders with a masking
//! renderer (secrets masked, run-time values shown as placeholders or as written); a run
//! renders with [`Live`] (real values; secrets only in the environment or the request).
//! Both go through the same function, so the plan shows what runs.

use minijinja::value::Value;

use super::Env;
use crate::model::Tmpl;
use crate::runner::StepError;
use crate::template::Target;

/// Which part of a host a template renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostPart {
    User,
    Address,
}

impl HostPart {
    /// The name used in messages (`address of host `lb``).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HostPart::User => "user",
            HostPart::Address => "address",
        }
    }
}

/// How one template becomes text. Errors are one line, secrets masked, of kind `render`.
pub(crate) trait Renderer {
    /// Text: an environment value, stdin, a header, a JSON string, instructions.
    fn text(&self, t: &Tmpl, ctx: &Value, what: &str) -> Result<String, StepError>;
    /// A shell command: its text (values referenced, never inserted) and the environment
    /// variables that carry the values.
    fn command(
        &self,
        t: &Tmpl,
        ctx: &Value,
        what: &str,
    ) -> Result<(String, Vec<(String, String)>), StepError>;
    /// A URL, values percent-encoded by component.
    fn url(&self, t: &Tmpl, ctx: &Value) -> Result<String, StepError>;
    /// A host's user or address.
    fn host_part(&self, t: &Tmpl, ctx: &Value, part: HostPart) -> Result<String, StepError>;
    /// The plan's renderer: run-time values are placeholders, not checked as values.
    fn is_plan(&self) -> bool {
        false
    }
}

/// Renders with run-time values, for a run. Values derived from a secret become secrets of
/// the redactor as they are rendered.
pub(crate) struct Live<'a>(pub &'a Env);

impl Renderer for Live<'_> {
    fn text(&self, t: &Tmpl, ctx: &Value, what: &str) -> Result<String, StepError> {
        super::render(self.0, t, ctx, Target::Text, what)
    }

    fn command(
        &self,
        t: &Tmpl,
        ctx: &Value,
        what: &str,
    ) -> Result<(String, Vec<(String, String)>), StepError> {
        let env = self.0;
        let mut cmd = env.templates.render_command(&t.src, ctx).map_err(|e| {
            StepError::render(format!("{what}: {}", crate::template::describe_error(&e)))
        })?;
        // Values computed from a secret are secrets: masked before anything can print them.
        env.redactor.add(&cmd.derived_secrets);
        // The command also gets the secrets it names literally (`$RUNBOOK_SECRET_X`), and no
        // others.
        for (k, v) in &env.secret_env_now() {
            if t.src.contains(k.as_str()) && !cmd.env.iter().any(|(n, _)| n == k) {
                cmd.env.push((k.clone(), v.clone()));
            }
        }
        Ok((cmd.command, cmd.env))
    }

    fn url(&self, t: &Tmpl, ctx: &Value) -> Result<String, StepError> {
        let url = self.0.templates.render_url(&t.src, ctx).map_err(|e| {
            StepError::render(format!("url: {}", crate::template::describe_error(&e)))
        })?;
        self.0
            .redactor
            .add(&crate::template::take_derived_secrets());
        Ok(url)
    }

    fn host_part(&self, t: &Tmpl, ctx: &Value, part: HostPart) -> Result<String, StepError> {
        let v = self
            .0
            .templates
            .render(&t.src, ctx, Target::Text)
            .map_err(|e| StepError::render(crate::template::describe_error(&e)))?;
        // A rendered address or user must stay one host name: never an option or a second
        // host.
        let what = match part {
            HostPart::User => "user",
            HostPart::Address => "host address",
        };
        crate::template::check_host_part(what, &v).map_err(|e| StepError::render(e.to_string()))?;
        Ok(v)
    }
}
