//! Checks of issue 14 §5–6: targets chosen at run time, `retry.when`, a templated method, and
//! per-host results of group steps (`group-step-result`).

use super::*;
use crate::validate::targets as tg;

impl Checker<'_> {
    /// `steps.X.stdout` where X runs on a group: its result is per host.
    pub(super) fn group_result(&mut self, t: &Tmpl, id: &str, field: &str) {
        self.group_result_written(t, id, field, None);
    }

    /// [`Self::group_result`]; `written`: the reference as written with a subscript
    /// (`steps.X['stdout']`).
    fn group_result_written(&mut self, t: &Tmpl, id: &str, field: &str, written: Option<&str>) {
        let Some(&j) = self.by_var.get(id) else {
            return;
        };
        let Some((_, step)) = self.all_steps().nth(j) else {
            return;
        };
        if tg::PER_HOST.contains(&field) && tg::is_group_step(self.rb, step) {
            let reference = match written {
                Some(w) => w.to_string(),
                None => format!("steps.{id}.{field}"),
            };
            let span = self.find_in(t, field);
            let d = tg::group_result_error(self.rb, step, field, &reference, false, span);
            self.push(d);
        }
    }

    /// `steps.X['stdout']`, `steps['X'].stdout` (any literal subscript) where X runs on a
    /// group: the same `group-step-result` as the dotted form.
    pub(super) fn subscript_group_results(&mut self, t: &Tmpl, expr: bool, scope: Scope<'_>) {
        if scope.step.is_none() {
            return;
        }
        let src = if expr {
            crate::template::expression_source(&t.src)
        } else {
            &t.src
        };
        for (path, written) in crate::template::subscript_paths(src, expr, "steps") {
            if let [id, field, ..] = path.as_slice() {
                self.group_result_written(t, id, field, Some(&written));
            }
        }
    }

    /// `stdout` (etc.) in the own `outputs` of a group step.
    pub(super) fn own_group_result(&mut self, t: &Tmpl, field: &str, scope: Scope<'_>) {
        let (rb, i) = (self.rb, scope.step.unwrap_or(0));
        if let Some((_, step)) = self.all_steps().nth(i) {
            let span = self.find_in(t, field);
            let d = tg::group_result_error(rb, step, field, field, true, span);
            self.push(d);
        }
    }

    /// The step's `outputs` (over its result: per host for a group step), the expressions of
    /// targets chosen at run time, `retry.when` and a templated method.
    pub(super) fn runtime(&mut self, step: &Step, scope: Scope<'_>) {
        let group = tg::is_group_step(self.rb, step);
        for (_, expr) in &step.outputs {
            let over_result = Scope {
                result: true,
                group,
                ..scope
            };
            self.expression(expr, over_result);
        }
        let host = Scope {
            remote: true,
            ..scope
        };
        let targets = &step.targets;
        for e in [&targets.hosts].into_iter().flatten() {
            self.expression(e, scope);
        }
        for e in [&targets.filter].into_iter().flatten() {
            self.expression(e, host);
        }
        if let Some(o) = &targets.order {
            for e in [&o.by].into_iter().flatten() {
                self.expression(e, host);
            }
            for e in [&o.first, &o.last].into_iter().flatten() {
                self.expression(e, scope);
            }
        }
        if let Some(w) = &step.retry_when {
            let result = Scope {
                result: true,
                ..scope
            };
            self.expression(w, result);
        }
        if let Action::Http(h) = &step.body.action
            && let Some(m) = &h.method_tmpl
        {
            self.template(m, Use::Display, scope);
        }
        if let Some(on) = &step.body.on
            && targets.is_runtime()
            && self.rb.group(&on.name).is_none()
            && self.rb.host(&on.name).is_some()
        {
            self.push(
                Diagnostic::error("invalid-value", format!("step `{}` chooses its hosts at run time, so `on:` must name a group, and `{}` is a host", step.id.name, on.name))
                    .with_span(on.span.clone(), "a host")
                    .with_help("hosts chosen at run time must be members of a declared group (so their keys and addresses are known): declare `groups: { NAME: [..] }`"),
            );
        }
    }
}
