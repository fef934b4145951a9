//! Template checks: every template of the runbook, in its scope (syntax, filters, usage).

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn templates(&mut self) {
        let rb = self.rb;
        let run_scope = Scope {
            step: None,
            own: false,
            remote: false,
            item: false,
            result: false,
            any_step: false,
            group: false,
            inputs: &rb.inputs,
        };
        for (i, input) in rb.inputs.iter().enumerate() {
            if let Some(default) = &input.default {
                let span = input.default_span.clone().unwrap_or(input.span.clone());
                let scope = Scope {
                    inputs: &rb.inputs[..i],
                    ..run_scope
                };
                self.json_defaults(default, &span, scope);
            }
        }
        if let Some(lock) = &rb.lock {
            self.template(lock, Use::Display, run_scope);
        }
        for h in &rb.hosts {
            self.template(&h.address, Use::Display, run_scope);
            if let Some(u) = &h.user {
                self.template(u, Use::Display, run_scope);
            }
        }
        // Top-level outputs (read by a caller) may read any step.
        for (_, expr) in &rb.outputs {
            self.expression(
                expr,
                Scope {
                    step: Some(0),
                    any_step: true,
                    ..run_scope
                },
            );
        }
        let main = rb.steps.len();
        let steps: Vec<(usize, &Step)> = self.all_steps().collect();
        for (i, step) in steps {
            let scope = Scope {
                step: Some(i),
                own: false,
                remote: step.body.on.is_some(),
                item: step.for_each.is_some(),
                result: false,
                any_step: i >= main,
                group: false,
                inputs: &rb.inputs,
            };
            if let Some(t) = &step.title {
                self.template(t, Use::Display, scope);
            }
            if let Some(g) = &step.confirm {
                self.template(&g.text, Use::Display, scope);
            }
            if let Some(w) = &step.when {
                self.expression(
                    w,
                    Scope {
                        item: false,
                        ..scope
                    },
                );
            }
            if let Some(fe) = &step.for_each {
                self.expression(
                    &fe.items,
                    Scope {
                        item: false,
                        ..scope
                    },
                );
                if let Some(u) = &fe.until {
                    self.expression(
                        u,
                        Scope {
                            result: true,
                            ..scope
                        },
                    );
                }
            }
            self.body(&step.body, scope);
            if let Some(t) = &step.expect.that {
                self.expression(
                    t,
                    Scope {
                        result: true,
                        ..scope
                    },
                );
            }
            self.runtime(step, scope);
            if let Some(rbk) = &step.rollback {
                // A fan-out's rollback runs once per host that completed, with `host` bound.
                let rscope = Scope {
                    own: true,
                    remote: rbk.on.is_some() || step.body.on.is_some(),
                    ..scope
                };
                self.body(rbk, rscope);
            }
        }
    }

    pub(super) fn body(&mut self, body: &Body, scope: Scope<'_>) {
        match &body.action {
            Action::Run(cmd) => self.template(cmd, Use::Shell, scope),
            Action::Manual(text) | Action::Fail(text) => self.template(text, Use::Display, scope),
            Action::Ask(a) => {
                self.template(&a.prompt, Use::Display, scope);
                if let Some(f) = &a.from_expr {
                    self.template(f, Use::Display, scope);
                }
            }
            Action::Http(h) => self.http(h, scope),
            Action::Wait(w) => {
                match &w.probe {
                    Probe::Run { command, on } => self.template(
                        command,
                        Use::Shell,
                        Scope {
                            remote: on.is_some() || scope.remote,
                            ..scope
                        },
                    ),
                    Probe::Http(h) => self.http(h, scope),
                }
                self.expression(
                    &w.until,
                    Scope {
                        result: true,
                        ..scope
                    },
                );
            }
            Action::Checkpoint => {}
        }
        for (_, v) in &body.env {
            self.template(v, Use::Sent, scope);
        }
        if let Some(s) = &body.stdin {
            self.template(s, Use::Sent, scope);
        }
    }

    /// A secret output of an HTTP step whose response is echoed and journaled before the
    /// output exists.
    pub(super) fn secret_outputs(&mut self, step: &crate::model::Step) {
        if step.secret_outputs.is_empty() {
            return;
        }
        if let Action::Http(h) = &step.body.action
            && !h.sensitive
        {
            self.push(
                Diagnostic::warning("secret-output-not-sensitive", format!("step `{}` has secret outputs but its response is shown and journaled", step.id.name))
                    .with_span(step.id.span.clone(), "add `sensitive: true` to its `http`")
                    .with_help("the response body is echoed and recorded before outputs are computed; `sensitive: true` keeps it in memory only"),
            );
        }
    }

    pub(super) fn http(&mut self, h: &HttpSpec, scope: Scope<'_>) {
        self.template(&h.url, Use::Sent, scope);
        self.url_origin(&h.url);
        self.raw_in_url(&h.url);
        for (_, v) in h.headers.iter().chain(&h.query) {
            self.template(v, Use::Sent, scope);
        }
        for t in [&h.ca_cert, &h.client_cert, &h.client_key]
            .into_iter()
            .flatten()
        {
            self.template(t, Use::Sent, scope);
        }
        match &h.body {
            Some(HttpBody::Raw(t)) => self.template(t, Use::Sent, scope),
            Some(HttpBody::Json(j)) => self.json_body(j, scope),
            None => {}
        }
    }

    pub(super) fn json_body(&mut self, j: &JsonTmpl, scope: Scope<'_>) {
        match j {
            JsonTmpl::String(t) => self.template(t, Use::Sent, scope),
            JsonTmpl::Array(items) => items.iter().for_each(|i| self.json_body(i, scope)),
            JsonTmpl::Object(pairs) => pairs.iter().for_each(|(_, v)| self.json_body(v, scope)),
            _ => {}
        }
    }

    pub(super) fn json_defaults(
        &mut self,
        v: &serde_json::Value,
        span: &Range<usize>,
        scope: Scope<'_>,
    ) {
        match v {
            serde_json::Value::String(s) => {
                let t = Tmpl {
                    src: s.clone(),
                    span: span.clone(),
                };
                self.template(&t, Use::Sent, scope);
            }
            serde_json::Value::Array(items) => items
                .iter()
                .for_each(|i| self.json_defaults(i, span, scope)),
            serde_json::Value::Object(m) => {
                m.values().for_each(|i| self.json_defaults(i, span, scope))
            }
            _ => {}
        }
    }

    pub(super) fn template(&mut self, t: &Tmpl, usage: Use, scope: Scope<'_>) {
        if !t.src.contains("{{") && !t.src.contains("{%") && !t.src.contains("{#") {
            return;
        }
        match self.templates.template_variables(&t.src) {
            Ok(vars) => {
                self.variables(t, &vars, usage, scope);
                self.unknown_filters(t, false);
                if usage == Use::Display {
                    self.secret_values_displayed(t, &vars);
                }
                self.secret_comparisons(t, false);
            }
            Err(e) => {
                // Inputs named in a broken template still count as used: one error, not two.
                for input in scope.inputs {
                    if find_word(&t.src, &input.name).is_some() {
                        self.used_inputs.insert(input.name.clone());
                    }
                }
                let span = self.map_range(t, e.range());
                self.push(
                    Diagnostic::error("template-syntax", format!("template error: {}", describe_error(&e)))
                        .with_span(span, "in this template")
                        .with_help("templates use minijinja (Jinja2) syntax: `{{ name }}`, `{% if … %}…{% endif %}`"),
                );
            }
        }
        if usage == Use::Shell {
            self.raw_in_shell(t);
            self.option_words(t);
        }
    }

    /// Filters and tests that do not exist are errors now, not when the run gets there.
    pub(super) fn unknown_filters(&mut self, t: &Tmpl, expr: bool) {
        let src = if expr {
            expression_source(&t.src)
        } else {
            &t.src
        };
        for (name, is_test) in self.templates.unknown_filters(src, expr) {
            let what = if is_test { "test" } else { "filter" };
            self.push(
                Diagnostic::error("unknown-filter", format!("there is no {what} `{name}`"))
                    .with_span(self.find_in(t, &name), format!("unknown {what}"))
                    .with_help(
                        "filters are minijinja's built-ins plus `grep`, `quote`, `raw`, `regex_search`, `regex_findall`, `from_json`, `b64decode`, `tojson_compact` (see docs/format.md)",
                    ),
            );
        }
    }

    pub(super) fn expression(&mut self, t: &Tmpl, scope: Scope<'_>) {
        let src = expression_source(&t.src);
        match self.templates.expression_variables(src) {
            Ok(vars) => {
                self.variables(t, &vars, Use::Expr, scope);
                self.unknown_filters(t, true);
                self.secret_comparisons(t, true);
            }
            Err(e) => {
                let offset = t.src.find(src).unwrap_or(0);
                let range = e.range().map(|r| r.start + offset..r.end + offset);
                let span = self.map_range(t, range);
                self.push(
                    Diagnostic::error("invalid-expression", format!("expression does not parse: {}", describe_error(&e)))
                        .with_span(span, "in this expression")
                        .with_help("write a Jinja expression without braces, e.g. `steps.inspect_logs.outputs.cause == 'oom'`"),
                );
            }
        }
    }
}
