//! Semantic checks over a structurally valid runbook: ids, dependencies, cycles, hosts,
//! templates (syntax and variables), secrets, and the lint warnings.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::graph;
use crate::model::*;
use crate::template::{SecretDisplay, Templates, describe_error, expression_source};

/// Names an expression over a step's own result may use (`until`, `expect.that`, `outputs`).
pub const RESULT_NAMES: &[&str] = &[
    "result",
    "response",
    "stdout",
    "stderr",
    "exit_code",
    "json",
    "status",
    "body",
    "headers",
    "attempt",
    "hosts",
    // `ask:` steps.
    "value",
    "values",
    "answered_by",
];

/// Where a template sits, which decides what it may refer to and how it is treated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    /// Shown to people (title, gate text, manual instructions): no secrets.
    Display,
    /// A shell command: secrets only as env references, never `| raw`.
    Shell,
    /// Sent by the engine (URL, header, body, env, stdin): secrets allowed.
    Sent,
    /// An expression (`when`, `until`…).
    Expr,
}

/// What a template may see.
#[derive(Clone, Copy)]
struct Scope<'a> {
    /// Index of the step the template belongs to (`None`: run-level, like hosts and lock).
    step: Option<usize>,
    /// The step's own id may be referenced (rollbacks).
    own: bool,
    remote: bool,
    item: bool,
    result: bool,
    /// Any step may be referenced (finally steps).
    any_step: bool,
    /// Inputs visible (all, or only the first n for defaults).
    inputs: &'a [Input],
}

struct Checker<'a> {
    rb: &'a Runbook,
    src: &'a str,
    diags: &'a mut Vec<Diagnostic>,
    templates: Templates,
    /// Step index by normalised id (`-` → `_`) for template lookups.
    by_var: HashMap<String, usize>,
    /// Built on first use (only templates reading `steps.X` need it): n²/8 bytes.
    ancestors: Option<graph::Ancestors>,
    /// Dependencies and topological order, kept to build `ancestors` lazily.
    deps: Vec<Vec<usize>>,
    order: Option<Vec<usize>>,
    used_inputs: HashSet<String>,
    secrets: HashSet<&'a str>,
}

pub(super) fn check(rb: &Runbook, src: &str, diags: &mut Vec<Diagnostic>) {
    let mut c = Checker {
        rb,
        src,
        diags,
        templates: Templates::new(SecretDisplay::Mask),
        by_var: HashMap::new(),
        ancestors: None,
        deps: Vec::new(),
        order: None,
        used_inputs: HashSet::new(),
        secrets: rb
            .inputs
            .iter()
            .filter(|i| i.secret)
            .map(|i| i.name.as_str())
            .collect(),
    };
    c.ids();
    c.graph();
    c.hosts();
    c.templates();
    c.lints();
}

/// The variable name a step id is reachable under in templates.
pub fn step_var(id: &str) -> String {
    id.replace('-', "_")
}

impl<'a> Checker<'a> {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn all_steps(&self) -> impl Iterator<Item = (usize, &'a Step)> + use<'a> {
        let rb: &'a Runbook = self.rb;
        rb.steps.iter().chain(&rb.finally).enumerate()
    }

    fn ids(&mut self) {
        let mut first: HashMap<String, Range<usize>> = HashMap::new();
        let mut dups = Vec::new();
        for (i, step) in self.all_steps() {
            let var = step_var(&step.id.name);
            match first.get(&var) {
                Some(prev) => dups.push((step.id.clone(), prev.clone())),
                None => {
                    first.insert(var.clone(), step.id.span.clone());
                    self.by_var.insert(var, i);
                }
            }
        }
        for (id, prev) in dups {
            self.push(
                Diagnostic::error("duplicate-step-id", format!("step id `{}` is used twice", id.name))
                    .with_span(id.span, "used again here")
                    .with_related(prev, "first used here")
                    .with_help("step ids name steps in `needs` and templates; make each unique (`-` and `_` count as the same)"),
            );
        }
    }

    fn graph(&mut self) {
        let main = self.rb.steps.len();
        let mut deps: Vec<Vec<usize>> = vec![Vec::new(); main];
        let mut bad = Vec::new();
        for (i, step) in self.rb.steps.iter().enumerate() {
            for need in &step.needs {
                match self.by_var.get(&step_var(&need.name)) {
                    Some(&j) if j < main && j != i => deps[i].push(j),
                    Some(&j) if j == i => bad.push(
                        Diagnostic::error(
                            "dependency-cycle",
                            format!("step `{}` needs itself", step.id.name),
                        )
                        .with_span(need.span.clone(), "itself"),
                    ),
                    Some(_) => bad.push(
                        Diagnostic::error(
                            "unknown-dependency",
                            format!(
                                "step `{}` needs `{}`, a `finally` step",
                                step.id.name, need.name
                            ),
                        )
                        .with_span(need.span.clone(), "a finally step")
                        .with_help(
                            "`finally` steps run after every other step; nothing can need them",
                        ),
                    ),
                    None => {
                        let names = self.rb.steps.iter().map(|s| s.id.name.as_str());
                        let mut d = Diagnostic::error(
                            "unknown-dependency",
                            format!(
                                "step `{}` needs `{}`, which is not a step",
                                step.id.name, need.name
                            ),
                        )
                        .with_span(need.span.clone(), "no step with this id");
                        if let Some(h) = did_you_mean(&need.name, names) {
                            d = d.with_help(h);
                        }
                        bad.push(d);
                    }
                }
            }
        }
        for step in &self.rb.finally {
            if let Some(first) = step.needs.first() {
                bad.push(
                    Diagnostic::error(
                        "finally-needs",
                        format!("finally step `{}` has `needs`", step.id.name),
                    )
                    .with_span(first.span.clone(), "not allowed here")
                    .with_help("`finally` steps run in the order written, after everything else"),
                );
            }
        }
        self.diags.extend(bad);
        match graph::waves(&deps) {
            Ok(waves) => {
                self.order = Some(waves.into_iter().flatten().collect());
                self.deps = deps;
            }
            Err(cycle) => {
                let names: Vec<&str> = cycle
                    .iter()
                    .map(|&i| self.rb.steps[i].id.name.as_str())
                    .collect();
                let path = format!(
                    "{} → {}",
                    names.join(" → "),
                    names.first().copied().unwrap_or("")
                );
                // Point at the `needs` entry that closes the loop: first needs last.
                let (first, last) = (cycle[0], cycle[cycle.len() - 1]);
                let closing = &self.rb.steps[first];
                let last_name = &self.rb.steps[last].id.name;
                let span = closing
                    .needs
                    .iter()
                    .find(|n| step_var(&n.name) == step_var(last_name))
                    .map_or(closing.id.span.clone(), |n| n.span.clone());
                let mut d = Diagnostic::error("dependency-cycle", format!("dependency cycle: {path}"))
                    .with_span(span, "this need closes the loop")
                    .with_help("a step cannot (even indirectly) need itself; remove one `needs` entry of the loop");
                for &i in &cycle[1..] {
                    d = d.with_related(self.rb.steps[i].id.span.clone(), "in the cycle");
                }
                self.push(d);
            }
        }
    }

    fn target_names(&self) -> Vec<&str> {
        self.rb
            .hosts
            .iter()
            .map(|h| h.name.as_str())
            .chain(self.rb.groups.iter().map(|g| g.name.as_str()))
            .collect()
    }

    fn unknown_host(&mut self, target: &Named, what: &str) {
        let names = self.target_names();
        let mut d = Diagnostic::error(
            "unknown-host",
            format!("{what} `{}` is not a declared host or group", target.name),
        )
        .with_span(target.span.clone(), "unknown host");
        d = d.with_help(match did_you_mean(&target.name, names.iter().copied()) {
            Some(h) => h,
            None if names.is_empty() => "declare it under `hosts:`".to_string(),
            None => format!("declared hosts and groups: {}", names.join(", ")),
        });
        self.push(d);
    }

    fn hosts(&mut self) {
        let rb = self.rb;
        for g in &rb.groups {
            for member in &g.hosts {
                if rb.host(&member.name).is_none() {
                    self.unknown_host(member, &format!("group `{}` lists", g.name));
                }
            }
        }
        for h in &rb.hosts {
            if let Some(j) = &h.jump {
                let literal = j.name.contains(['.', '@', ':']);
                if rb.host(&j.name).is_none() && !literal {
                    self.unknown_host(j, "jump host");
                }
            }
        }
        for (_, step) in self.all_steps() {
            let bodies = std::iter::once(&step.body).chain(step.rollback.as_ref());
            for body in bodies {
                let mut targets: Vec<&Named> = body.on.iter().collect();
                if let Action::Wait(w) = &body.action
                    && let Probe::Run { on: Some(on), .. } = &w.probe
                {
                    targets.push(on);
                }
                for t in targets {
                    if rb.host(&t.name).is_none() && rb.group(&t.name).is_none() {
                        self.unknown_host(t, "`on:`");
                    }
                }
            }
        }
    }

    fn templates(&mut self) {
        let rb = self.rb;
        let run_scope = Scope {
            step: None,
            own: false,
            remote: false,
            item: false,
            result: false,
            any_step: false,
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
            for (_, expr) in &step.outputs {
                self.expression(
                    expr,
                    Scope {
                        result: true,
                        ..scope
                    },
                );
            }
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

    fn body(&mut self, body: &Body, scope: Scope<'_>) {
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
    fn secret_outputs(&mut self, step: &crate::model::Step) {
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

    fn http(&mut self, h: &HttpSpec, scope: Scope<'_>) {
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

    fn json_body(&mut self, j: &JsonTmpl, scope: Scope<'_>) {
        match j {
            JsonTmpl::String(t) => self.template(t, Use::Sent, scope),
            JsonTmpl::Array(items) => items.iter().for_each(|i| self.json_body(i, scope)),
            JsonTmpl::Object(pairs) => pairs.iter().for_each(|(_, v)| self.json_body(v, scope)),
            _ => {}
        }
    }

    fn json_defaults(&mut self, v: &serde_json::Value, span: &Range<usize>, scope: Scope<'_>) {
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

    fn template(&mut self, t: &Tmpl, usage: Use, scope: Scope<'_>) {
        if !t.src.contains("{{") && !t.src.contains("{%") && !t.src.contains("{#") {
            return;
        }
        match self.templates.template_variables(&t.src) {
            Ok(vars) => {
                self.variables(t, &vars, usage, scope);
                self.unknown_filters(t, false);
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
        }
    }

    /// Filters and tests that do not exist are errors now, not when the run gets there.
    fn unknown_filters(&mut self, t: &Tmpl, expr: bool) {
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

    fn expression(&mut self, t: &Tmpl, scope: Scope<'_>) {
        let src = expression_source(&t.src);
        match self.templates.expression_variables(src) {
            Ok(vars) => {
                self.variables(t, &vars, Use::Expr, scope);
                self.unknown_filters(t, true);
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

    fn variables(&mut self, t: &Tmpl, vars: &HashSet<String>, usage: Use, scope: Scope<'_>) {
        let mut vars: Vec<&String> = vars.iter().collect();
        vars.sort();
        for var in vars {
            let mut parts = var.split('.');
            let root = parts.next().unwrap_or_default();
            if let Some(input) = scope.inputs.iter().find(|i| i.name == root) {
                self.used_inputs.insert(input.name.clone());
                if input.secret && usage == Use::Display {
                    self.secret_displayed(t, root);
                }
                continue;
            }
            if root == "inputs" {
                let name = parts.next().unwrap_or_default();
                if let Some(input) = scope.inputs.iter().find(|i| i.name == name) {
                    self.used_inputs.insert(input.name.clone());
                    if input.secret && usage == Use::Display {
                        self.secret_displayed(t, name);
                    }
                    continue;
                }
                if name.is_empty() {
                    self.rb.inputs.iter().for_each(|i| {
                        self.used_inputs.insert(i.name.clone());
                    });
                    continue;
                }
                self.undefined(t, name, &format!("input `{name}` is not declared"), scope);
                continue;
            }
            match root {
                "run" => continue,
                "host" if scope.remote => continue,
                "item" | "item_index" if scope.item => continue,
                r if scope.result && RESULT_NAMES.contains(&r) => continue,
                "steps" if scope.step.is_some() => {
                    let Some(id) = parts.next() else { continue };
                    self.step_reference(t, id, scope);
                    continue;
                }
                _ => {}
            }
            let reason = if self.rb.input(root).is_some() {
                format!("input `{root}` is declared after this default")
            } else {
                match root {
                    "host" => "`host` exists only in steps that run `on:` a host".to_string(),
                    "item" | "item_index" => "`item` exists only in `for_each` steps".to_string(),
                    r if RESULT_NAMES.contains(&r) => format!(
                        "`{r}` exists only in expressions over a step's result (`until`, `expect.that`, `outputs`)"
                    ),
                    _ => format!("`{root}` is not an input or a known variable"),
                }
            };
            self.undefined(t, root, &reason, scope);
        }
    }

    fn step_reference(&mut self, t: &Tmpl, id: &str, scope: Scope<'_>) {
        let Some(&j) = self.by_var.get(id) else {
            let names = self.rb.steps.iter().map(|s| s.id.name.as_str());
            let help = did_you_mean(id, names).map(|h| h.replace('-', "_"));
            let mut d = Diagnostic::error(
                "undefined-variable",
                format!("`steps.{id}` refers to a step that does not exist"),
            )
            .with_span(self.find_in(t, id), "no such step");
            if let Some(h) = help {
                d = d.with_help(h);
            }
            self.push(d);
            return;
        };
        let Some(i) = scope.step else { return };
        if scope.any_step || (scope.own && i == j) {
            return;
        }
        if self.ancestors.is_none()
            && let Some(order) = &self.order
        {
            self.ancestors = Some(graph::Ancestors::new(&self.deps, order));
        }
        let upstream = j < self.rb.steps.len()
            && i < self.rb.steps.len()
            && self.ancestors.as_ref().is_none_or(|a| a.is_ancestor(j, i));
        if !upstream {
            let (this, other) = (&self.rb.steps[i.min(self.rb.steps.len() - 1)].id.name, id);
            self.push(
                Diagnostic::error(
                    "undefined-variable",
                    format!("`steps.{other}` is not upstream of step `{this}`"),
                )
                .with_span(self.find_in(t, id), "may not have run yet")
                .with_help(format!(
                    "add `{}` to the `needs` of `{this}` (directly or through another step)",
                    self.all_steps()
                        .nth(j)
                        .map_or(other.to_string(), |(_, s)| s.id.name.clone())
                )),
            );
        }
    }

    fn undefined(&mut self, t: &Tmpl, name: &str, reason: &str, scope: Scope<'_>) {
        let names: Vec<&str> = scope.inputs.iter().map(|i| i.name.as_str()).collect();
        let mut d = Diagnostic::error(
            "undefined-variable",
            format!("undefined variable `{name}`: {reason}"),
        )
        .with_span(self.find_in(t, name), "undefined");
        if let Some(h) = did_you_mean(name, names) {
            d = d.with_help(h);
        } else {
            d = d.with_help("declare it under `inputs:`; templates never turn an undefined value into an empty string");
        }
        self.push(d);
    }

    fn secret_displayed(&mut self, t: &Tmpl, name: &str) {
        self.push(
            Diagnostic::error("secret-in-display", format!("secret input `{name}` is used in text shown to people"))
                .with_span(self.find_in(t, name), "would be printed")
                .with_help("titles, gate texts, manual instructions, lock keys and host names are printed and journaled; use the secret only in commands, env, stdin or request bodies"),
        );
    }

    /// Where a request goes comes from the runbook: a value in a URL's scheme or host must be
    /// an input constrained by `pattern` or `allowed` (or a host's address).
    fn url_origin(&mut self, t: &Tmpl) {
        for (root, range, part) in crate::template::url_origin_values(&t.src) {
            let constrained = self
                .rb
                .inputs
                .iter()
                .any(|i| i.name == root && (i.pattern.is_some() || !i.allowed.is_empty()));
            if constrained || root == "host" {
                continue;
            }
            let span = self.map_range(t, Some(range));
            let place = match part {
                crate::template::url::Part::Start => "the URL's scheme and host",
                crate::template::url::Part::Scheme => "the URL's scheme",
                _ => "the URL's host",
            };
            self.push(
                Diagnostic::error("url-origin-from-free-value", format!("`{root}` decides {place}, but nothing constrains it"))
                    .with_span(span, "could send the request (and its headers) anywhere")
                    .with_help("give the input a `pattern:` (e.g. `pattern: \"https://[a-z0-9.-]+(:[0-9]+)?\"` or `\"vault-[0-9]+\"`) or `allowed:` list, or write the host literally"),
            );
        }
    }

    /// `| raw` in a URL skips percent-encoding: the value can add path segments, a query or
    /// a fragment. Recognised on the template's tokens, as in commands.
    fn raw_in_url(&mut self, t: &Tmpl) {
        for (root, range) in crate::template::analyse_command(&t.src).raw {
            let span = self.map_range(t, Some(range));
            self.push(
                Diagnostic::warning("raw-url-insertion", format!("`{root}` is inserted into a URL without percent-encoding"))
                    .with_span(span, "not encoded")
                    .with_help("values in URLs are percent-encoded for the part they stand in; drop `| raw` unless the value is a trusted, already-encoded fragment"),
            );
        }
    }

    /// A command template, read on its tokens: raw insertions, blocks that would change
    /// escaping, and values in quoting contexts where no reference is safe.
    fn raw_in_shell(&mut self, t: &Tmpl) {
        let analysis = crate::template::analyse_command(&t.src);
        for (kw, range) in analysis.blocks {
            let span = self.map_range(t, Some(range));
            self.push(
                Diagnostic::error("escaping-block-in-command", format!("`{{% {kw} %}}` is not allowed in a shell command"))
                    .with_span(span, "would change how values are inserted")
                    .with_help("commands always pass values through environment variables; write `{{ value | raw }}` for the one value that is a trusted shell fragment"),
            );
        }
        for (context, range) in analysis.unsafe_contexts {
            let span = self.map_range(t, Some(range));
            self.push(
                Diagnostic::error("unsafe-quoting-context", format!("a value stands {context}"))
                    .with_span(span, "no safe way to insert a value here")
                    .with_help("move `{{ … }}` outside the single quotes (or quoted here-document, or `$(( ))`): `echo 'text' {{ value }}`, or inside double quotes: `echo \"text {{ value }}\"`"),
            );
        }
        for (root, range) in analysis.raw {
            let span = self.map_range(t, Some(range));
            if self.secrets.contains(root.as_str()) {
                self.push(
                    Diagnostic::error("secret-raw-in-shell", format!("secret `{root}` is inserted raw into a shell command"))
                        .with_span(span, "secret in the command text")
                        .with_help("write `{{ SECRET }}` without `| raw`: the command then reads it from an environment variable and it never appears in argv"),
                );
            } else {
                self.push(
                    Diagnostic::warning("raw-shell-insertion", format!("`{root}` is inserted into a shell command without quoting"))
                        .with_span(span, "unquoted")
                        .with_help("values reach commands through environment variables by default; keep `| raw` only for trusted shell fragments"),
                );
            }
        }
    }

    fn lints(&mut self) {
        let rb = self.rb;
        for step in rb.steps.iter() {
            self.secret_outputs(step);
            let remote = step.body.on.is_some() && matches!(step.body.action, Action::Run(_));
            if remote && step.confirm.is_none() && step.rollback.is_none() && !step.read_only {
                self.push(
                    Diagnostic::warning(
                        "remote-step-unguarded",
                        format!(
                            "step `{}` changes a remote host without a gate or a rollback",
                            step.id.name
                        ),
                    )
                    .with_span(step.id.span.clone(), "no `confirm` and no `rollback`")
                    .with_help(
                        "add `confirm:` or `rollback:`, or `read_only: true` if it only inspects",
                    ),
                );
            }
        }
        for input in &rb.inputs {
            if !self.used_inputs.contains(&input.name) {
                self.push(
                    Diagnostic::warning(
                        "unused-input",
                        format!("input `{}` is never used", input.name),
                    )
                    .with_span(input.span.clone(), "declared here")
                    .with_help("remove it, or use it in a template"),
                );
            }
        }
    }

    /// Where in the file `needle` appears inside template `t` (best effort; whole span else).
    fn find_in(&self, t: &Tmpl, needle: &str) -> Range<usize> {
        let file = self.src.get(t.span.clone()).unwrap_or_default();
        match find_word(file, needle) {
            Some(off) => t.span.start + off..t.span.start + off + needle.len(),
            None => t.span.clone(),
        }
    }

    /// Maps a byte range inside the template text to the file.
    fn map_range(&self, t: &Tmpl, range: Option<Range<usize>>) -> Range<usize> {
        let Some(range) = range else {
            return t.span.clone();
        };
        let file = self.src.get(t.span.clone()).unwrap_or_default();
        // Plain scalars are the text itself; quoted ones are offset by the quote.
        let offset = if file == t.src {
            Some(0)
        } else if file.len() >= 2 && file.get(1..file.len() - 1) == Some(t.src.as_str()) {
            Some(1)
        } else {
            let piece = t.src.get(range.clone()).unwrap_or_default();
            file.find(piece)
                .filter(|_| !piece.is_empty())
                .map(|at| at.saturating_sub(range.start))
        };
        match offset {
            Some(o) => {
                let start = (t.span.start + o + range.start).min(t.span.end);
                let end = (t.span.start + o + range.end.max(range.start + 1)).min(t.span.end);
                start..end.max(start)
            }
            None => t.span.clone(),
        }
    }
}

/// First occurrence of `word` in `hay` not inside a longer identifier.
fn find_word(hay: &str, word: &str) -> Option<usize> {
    if word.is_empty() {
        return None;
    }
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(at) = hay[from..].find(word) {
        let start = from + at;
        let end = start + word.len();
        let before = hay[..start].chars().next_back();
        let after = hay[end..].chars().next();
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            return Some(start);
        }
        from = end;
    }
    None
}
