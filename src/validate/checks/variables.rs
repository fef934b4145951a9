//! Checks of a template's variables: step references, undefined names, secrets, raw values in URLs and shell.

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn variables(
        &mut self,
        t: &Tmpl,
        vars: &HashSet<String>,
        usage: Use,
        scope: Scope<'_>,
    ) {
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
                r if scope.group && crate::validate::targets::PER_HOST.contains(&r) => {
                    self.own_group_result(t, r, scope);
                    continue;
                }
                r if scope.result && RESULT_NAMES.contains(&r) => continue,
                "steps" if scope.step.is_some() => {
                    let Some(id) = parts.next() else { continue };
                    self.step_reference(t, id, scope);
                    if let Some(field) = parts.next() {
                        self.group_result(t, id, field);
                    }
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

    pub(super) fn step_reference(&mut self, t: &Tmpl, id: &str, scope: Scope<'_>) {
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

    pub(super) fn undefined(&mut self, t: &Tmpl, name: &str, reason: &str, scope: Scope<'_>) {
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

    pub(super) fn secret_displayed(&mut self, t: &Tmpl, name: &str) {
        self.push(
            Diagnostic::error("secret-in-display", format!("secret input `{name}` is used in text shown to people"))
                .with_span(self.find_in(t, name), "would be printed")
                .with_help("titles, gate texts, manual instructions, lock keys and host names are printed and journaled; use the secret only in commands, env, stdin or request bodies"),
        );
    }

    /// Where a request goes comes from the runbook: a value in a URL's scheme or host must be
    /// an input constrained by `pattern` or `allowed` (or a host's address).
    pub(super) fn url_origin(&mut self, t: &Tmpl) {
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
    pub(super) fn raw_in_url(&mut self, t: &Tmpl) {
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
    pub(super) fn raw_in_shell(&mut self, t: &Tmpl) {
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
                    .with_help(if context == crate::template::shell::Unsafe::Arithmetic {
                        "bash would evaluate the value (`a[$(cmd)]` runs `cmd`): compare or compute in an expression (`when:`, `{{ n + 1 }}`, an `int` input), or use `[ {{ n }} -eq 1 ]`, which reads the value as a plain number"
                    } else {
                        "move `{{ … }}` outside the single quotes (or quoted here-document): `echo 'text' {{ value }}`, or inside double quotes: `echo \"text {{ value }}\"`"
                    }),
            );
        }
        for (root, range) in analysis.raw {
            let text = t.src.get(range.clone()).unwrap_or_default();
            let computed = self.raw_through_computed_key(text);
            let span = self.map_range(t, Some(range));
            if self.secrets.contains(root.as_str()) {
                self.push(
                    Diagnostic::error("secret-raw-in-shell", format!("secret `{root}` is inserted raw into a shell command"))
                        .with_span(span, "secret in the command text")
                        .with_help("write `{{ SECRET }}` without `| raw`: the command then reads it from an environment variable and it never appears in argv"),
                );
            } else if computed {
                self.push(
                    Diagnostic::error("raw-computed-key", "a value reached through a computed key is inserted raw into a shell command")
                        .with_span(span, "may be a secret")
                        .with_help("this runbook has secrets, and which value `inputs[…]`/`steps[…]` reaches is known only at run time, where `| raw` on a secret is refused; drop `| raw` (the value then reaches the command through an environment variable), or name the value literally"),
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
}
