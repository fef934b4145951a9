//! How the plan shows a template: secrets masked, values known only at run time as
//! placeholders (`<steps.inspect.stdout>`), or the template as written when a placeholder
//! would show nonsense. [`Shown`] is the plan's [`Renderer`]: the step kinds' render
//! functions, run with it, give the plan.

use minijinja::value::Value;

use super::PlanError;
use crate::model::Tmpl;
use crate::step::render::{HostPart, Renderer};
use crate::template::{Target, Templates};

/// Renders a template for display; a template that needs run-time values and cannot be
/// rendered yet is shown as written.
pub(super) fn show(
    t: &Templates,
    tmpl: &Tmpl,
    ctx: &Value,
    target: Target,
) -> Result<String, PlanError> {
    let runtime = runtime_paths(t.template_variables(&tmpl.src).unwrap_or_default());
    match t.render(&tmpl.src, ctx, target) {
        // A filter applied to a run-time value would show nonsense: show the template instead.
        Ok(s) if runtime.iter().any(|p| !s.contains(&format!("<{p}>"))) => {
            Ok(partial(t, &tmpl.src, ctx, target))
        }
        Ok(s) => Ok(s),
        Err(_) if !runtime.is_empty() => Ok(partial(t, &tmpl.src, ctx, target)),
        Err(e) if refused_input(&e) => Ok(will_fail(&e)),
        Err(e) => Err(PlanError(format!(
            "cannot render `{}`: {}",
            tmpl.src,
            crate::template::describe_error(&e)
        ))),
    }
}

/// A template whose run-time parts cannot be shown yet: each `{{ … }}` that reads only
/// inputs is rendered, those that read run-time values stay as written (so `Fix vault.hcl on
/// {{ node }}` shows the node even beside `{{ steps.x.stdout }}`). Templates with `{% … %}`
/// blocks are shown as written.
fn partial(t: &Templates, src: &str, ctx: &Value, target: Target) -> String {
    if src.contains("{%") {
        return crate::template::strip_checked(src).into_owned();
    }
    let mut out = String::new();
    let mut rest = src;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let piece = &rest[start..start + len + 2];
        out.push_str(&rest[..start]);
        let vars = t.template_variables(piece).unwrap_or_default();
        let shown = if runtime_paths(vars).is_empty() {
            t.render(piece, ctx, target).ok()
        } else {
            None
        };
        match shown {
            Some(s) => out.push_str(&s),
            None => out.push_str(&crate::template::strip_checked(piece)),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// Renders a command for display exactly as the engine will run it: the text with its
/// references, and the environment variables that carry the values (secrets masked). A
/// command that needs run-time values it cannot show yet is shown as written.
fn show_command(
    t: &Templates,
    tmpl: &Tmpl,
    ctx: &Value,
) -> Result<(String, Vec<(String, String)>), PlanError> {
    let runtime = runtime_paths(t.template_variables(&tmpl.src).unwrap_or_default());
    match t.render_command(&tmpl.src, ctx) {
        Ok(c)
            if runtime.iter().any(|p| {
                let p = format!("<{p}>");
                !c.command.contains(&p) && !c.env.iter().any(|(_, v)| v.contains(&p))
            }) =>
        {
            Ok((
                crate::template::strip_checked(&tmpl.src).into_owned(),
                Vec::new(),
            ))
        }
        Ok(c) => Ok((c.command, c.env)),
        Err(_) if !runtime.is_empty() => Ok((
            crate::template::strip_checked(&tmpl.src).into_owned(),
            Vec::new(),
        )),
        Err(e) if refused_input(&e) => Ok((will_fail(&e), Vec::new())),
        Err(e) => Err(PlanError(format!(
            "cannot render `{}`: {}",
            tmpl.src,
            crate::template::describe_error(&e)
        ))),
    }
}

/// Renders a URL for display as it will be sent (values encoded per component); one that
/// needs run-time values is shown as written.
fn show_url(t: &Templates, tmpl: &Tmpl, ctx: &Value) -> Result<String, PlanError> {
    let runtime = runtime_paths(t.template_variables(&tmpl.src).unwrap_or_default());
    if !runtime.is_empty() {
        return Ok(crate::template::strip_checked(&tmpl.src).into_owned());
    }
    t.render_url(&tmpl.src, ctx).or_else(|e| {
        if refused_input(&e) {
            return Ok(will_fail(&e));
        }
        Err(PlanError(format!(
            "cannot render `{}`: {}",
            tmpl.src,
            crate::template::describe_error(&e)
        )))
    })
}

/// A called runbook's input refused the value its caller passes (`template/checked.rs`):
/// the call may still be skipped at run time, so the plan shows the refusal in place.
fn refused_input(e: &minijinja::Error) -> bool {
    crate::template::describe_error(e).contains(crate::template::CHECKED_INPUT_REFUSAL)
}

fn will_fail(e: &minijinja::Error) -> String {
    format!("⚠ fails if it runs: {}", crate::template::describe_error(e))
}

/// Renders for the plan: secrets masked, run-time values as placeholders or as written.
pub(crate) struct Shown<'a>(pub &'a Templates);

impl Renderer for Shown<'_> {
    fn is_plan(&self) -> bool {
        true
    }

    fn text(&self, t: &Tmpl, ctx: &Value, _what: &str) -> Result<String, String> {
        show(self.0, t, ctx, Target::Text).map_err(|e| e.0)
    }

    fn command(
        &self,
        t: &Tmpl,
        ctx: &Value,
        _what: &str,
    ) -> Result<(String, Vec<(String, String)>), String> {
        show_command(self.0, t, ctx).map_err(|e| e.0)
    }

    fn url(&self, t: &Tmpl, ctx: &Value) -> Result<String, String> {
        show_url(self.0, t, ctx).map_err(|e| e.0)
    }

    fn host_part(&self, t: &Tmpl, ctx: &Value, _part: HostPart) -> Result<String, String> {
        self.0
            .render(&t.src, ctx, Target::Text)
            .map_err(|e| crate::template::describe_error(&e))
    }
}

/// The variables among `vars` whose values are known only at run time.
fn runtime_paths(vars: std::collections::HashSet<String>) -> Vec<String> {
    let mut v: Vec<String> = vars
        .into_iter()
        .filter(|v| {
            let root = v.split('.').next().unwrap_or_default();
            matches!(root, "steps" | "run" | "host" | "item" | "item_index")
                || crate::validate::RESULT_NAMES.contains(&root)
        })
        .collect();
    v.sort();
    v
}

/// Whether an expression reads values known only at run time.
pub(super) fn is_runtime_expr(t: &Templates, expr: &str) -> bool {
    !runtime_paths(t.expression_variables(expr).unwrap_or_default()).is_empty()
}
