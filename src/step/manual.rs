//! `manual:` steps: instructions a person follows, then confirms (through the gate path).

use minijinja::value::Value;

use super::render::Renderer;
use crate::model::Tmpl;
use crate::runner::StepError;

/// Renders a manual step's instructions.
pub(crate) fn render(
    r: &dyn Renderer,
    instructions: &Tmpl,
    ctx: &Value,
) -> Result<String, StepError> {
    r.text(instructions, ctx, "manual")
}
