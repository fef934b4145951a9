//! Secret misuse `validate` can see before a run: a secret compared (always false at run
//! time: an error), a secret step output or a value computed from a secret in text shown to
//! people (masked at run time, so not a leak: a warning that it will show as ********), and
//! `| raw` through a computed key in a runbook that has secrets (refused at run time when the
//! key reaches one: an error, unless the key is an input whose `allowed:` values name no
//! secret).

use super::*;
use crate::template::compare::{Operand, compared_paths};

impl<'a> Checker<'a> {
    /// Inputs that are secrets when the run starts: declared `secret: true`, or with a
    /// `default` that reads one (a value computed from a secret is a secret).
    pub(super) fn secret_input_names(&self) -> HashSet<String> {
        let mut names: HashSet<String> = self.secrets.iter().map(|s| s.to_string()).collect();
        for input in &self.rb.inputs {
            let Some(default) = &input.default else {
                continue;
            };
            // Only a template default reads anything (`default: token` is the word "token").
            let text = default.to_string();
            if !(text.contains("{{") || text.contains("{%")) {
                continue;
            }
            let vars = self.templates.template_variables(&text).unwrap_or_default();
            let reads = vars.iter().any(|v| {
                let mut parts = v.split('.');
                let root = parts.next().unwrap_or_default();
                let name = if root == "inputs" {
                    parts.next().unwrap_or_default()
                } else {
                    root
                };
                names.contains(name)
            });
            if reads || names.iter().any(|n| find_word(&text, n).is_some()) && vars.is_empty() {
                names.insert(input.name.clone());
            }
        }
        names
    }

    /// Whether `src` (an expression) reads a secret input by name.
    fn reads_secret_input(&self, src: &str, secret_inputs: &HashSet<String>) -> bool {
        let Ok(vars) = self.templates.expression_variables(src) else {
            return false;
        };
        vars.iter().any(|v| {
            let mut parts = v.split('.');
            let root = parts.next().unwrap_or_default();
            let name = if root == "inputs" {
                parts.next().unwrap_or_default()
            } else {
                root
            };
            secret_inputs.contains(name)
        })
    }

    /// Outputs of step `id` (its template variable) that hold a secret: declared `secret: true`
    /// (a secret `ask:` answer too), or computed by an expression that reads a secret input.
    fn secret_output(&self, step_var: &str, output: &str) -> bool {
        let Some(&i) = self.by_var.get(step_var) else {
            return false;
        };
        let Some((_, step)) = self.all_steps().nth(i) else {
            return false;
        };
        if step.secret_outputs.iter().any(|o| o == output) {
            return true;
        }
        step.outputs.iter().any(|(name, expr)| {
            name.name == output
                && self.reads_secret_input(expression_source(&expr.src), &self.secret_inputs)
        })
    }

    /// What a path names, if it is a secret `validate` knows of: `token`, `inputs.token`,
    /// `steps.login.outputs.session`.
    fn secret_path(&self, parts: &[Option<String>]) -> Option<String> {
        let inputs = &self.secret_inputs;
        let parts: Vec<&str> = parts
            .iter()
            .map(|p| p.as_deref())
            .collect::<Option<Vec<_>>>()?;
        let input = |name: &str| {
            if self.secrets.contains(name) {
                format!("secret input `{name}`")
            } else {
                format!("input `{name}` (its default reads a secret)")
            }
        };
        match parts.as_slice() {
            [name] | ["inputs", name] if inputs.contains(*name) => Some(input(name)),
            ["steps", step, "outputs", out] if self.secret_output(step, out) => {
                Some(format!("secret output `{out}` of step `{step}`"))
            }
            _ => None,
        }
    }

    /// `token == 'x'` is always false at run time: an error, with the comparison that works.
    pub(super) fn secret_comparisons(&mut self, t: &Tmpl, expr: bool) {
        if self.secret_inputs.is_empty() && self.all_steps().all(|(_, s)| s.outputs.is_empty()) {
            return;
        }
        let src = if expr {
            expression_source(&t.src)
        } else {
            t.src.as_str()
        };
        let offset = t.src.find(src).unwrap_or(0);
        let found: Vec<(Operand, String)> = compared_paths(src, expr)
            .into_iter()
            .filter_map(|op| {
                let what = self.secret_path(&op.parts)?;
                Some((op, what))
            })
            .collect();
        for (op, what) in found {
            let range = op.range.start + offset..op.range.end + offset;
            let written = src.get(op.range.clone()).unwrap_or_default().to_string();
            let span = self.map_range(t, Some(range));
            self.push(
                Diagnostic::error(
                    "secret-comparison",
                    format!(
                        "`{written} {} …` compares {what}: always false at run time",
                        op.op
                    ),
                )
                .with_span(span, "a secret, held as a masked object")
                .with_help(format!(
                    "did you mean `({written} | string) {} …`? a secret is compared as an object, not as its text; `| string` compares the text (the result is not shown)",
                    op.op
                )),
            );
        }
    }

    /// Secret step outputs and inputs computed from a secret in text shown to people (secret
    /// inputs themselves are reported by `variables`).
    pub(super) fn secret_values_displayed(&mut self, t: &Tmpl, vars: &HashSet<String>) {
        let mut vars: Vec<&String> = vars.iter().collect();
        vars.sort();
        for var in vars {
            let segs: Vec<&str> = var.split('.').collect();
            let (path, shown) = match segs.as_slice() {
                ["steps", _, "outputs", out, ..] => (&segs[..4], *out),
                ["inputs", name, ..] if !self.secrets.contains(name) => (&segs[..2], *name),
                [name] if !self.secrets.contains(name) => (&segs[..1], *name),
                _ => continue,
            };
            let parts: Vec<Option<String>> = path.iter().map(|p| Some(p.to_string())).collect();
            let shown = shown.to_string();
            let Some(what) = self.secret_path(&parts) else {
                continue;
            };
            self.push(
                Diagnostic::warning(
                    "secret-shown-masked",
                    format!("{what} is used in text shown to people: it will only show as ********"),
                )
                .with_span(self.find_in(t, &shown), "printed masked")
                .with_help("titles, gate texts, `fail:` messages, manual instructions and prompts are printed and journaled, where a secret only shows as ********; show something that is not secret (a length, a name), or use the secret only in commands, env, stdin or request bodies"),
            );
        }
    }

    /// `{{ inputs[name] | raw }}` in a command: `validate` cannot tell which value the key
    /// reaches, and the engine refuses it at run time if it is a secret. In a runbook with
    /// secrets that is an error; without, the `raw-shell-insertion` warning.
    pub(super) fn raw_through_computed_key(&self, expr: &str) -> bool {
        let Some(key) = crate::template::taint::computed_key(expr) else {
            return false;
        };
        // `inputs[which]` where `which` may only name inputs that are not secrets: fine.
        let safe_key = key
            .as_deref()
            .and_then(|k| self.rb.input(k))
            .is_some_and(|i| {
                !i.allowed.is_empty() && i.allowed.iter().all(|a| !self.secret_inputs.contains(a))
            });
        !safe_key
            && (!self.secret_inputs.is_empty()
                || self.all_steps().any(|(_, s)| !s.secret_outputs.is_empty()))
    }
}
