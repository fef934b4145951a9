//! `fail:` steps: stop the run on purpose, with a message (a template; no secrets).

use minijinja::value::Value;

use super::render::Renderer;
use crate::model::Tmpl;
use crate::runner::StepError;

/// Renders a fail step's message.
pub(crate) fn render(r: &dyn Renderer, message: &Tmpl, ctx: &Value) -> Result<String, StepError> {
    r.text(message, ctx, "fail")
}
