//! How the plan shows an `ask:` step (the step kind itself is `step/ask.rs`).

use minijinja::value::Value;

use super::PlannedAction;
use crate::model::AskSpec;
use crate::step::ask;
use crate::step::render::Renderer;

/// The plan's view of an ask.
pub(crate) fn planned(
    r: &dyn Renderer,
    spec: &AskSpec,
    ctx: &Value,
) -> Result<PlannedAction, String> {
    Ok(PlannedAction::Ask {
        prompt: ask::prompt(r, spec, ctx)?,
        ty: spec.ty.as_str().into(),
        secret: spec.secret,
        pattern: spec.pattern.as_ref().map(|p| ask::unanchored(p.as_str())),
        from: spec.from,
        from_expr: spec
            .from_expr
            .as_ref()
            .map(|t| crate::template::expression_display(&t.src).to_string()),
    })
}

/// One line describing an ask (plan, gate preview).
pub(crate) fn plan_line(a: &PlannedAction) -> String {
    let PlannedAction::Ask {
        prompt,
        ty,
        secret,
        pattern,
        from,
        from_expr,
    } = a
    else {
        return String::new();
    };
    let mut s = format!("\"{prompt}\" ({ty}");
    if *secret {
        s.push_str(", secret: hidden, never recorded");
    }
    if let Some(p) = pattern {
        s.push_str(&format!(", must match /{p}/"));
    }
    s.push(')');
    if let Some(e) = from_expr {
        s.push_str(&format!(
            "; as many answers as `{e}` says (at run time), each from a distinct OS user"
        ));
    } else if *from > 1 {
        s.push_str(&format!(
            "; {from} answers from {from} distinct OS users (`runbook answer RUN STEP`)"
        ));
    }
    s
}
