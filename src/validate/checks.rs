//! Semantic checks over a structurally valid runbook: ids, dependencies, cycles, hosts,
//! templates (syntax and variables), secrets, and the lint warnings.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::graph;
use crate::model::*;
use crate::template::{SecretDisplay, Templates, describe_error, expression_source};

mod optwords;
mod runtime;
mod secrets;
mod templates;
mod variables;

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
    /// Over the combined result of a group step (its `outputs`): per-host fields only
    /// under `hosts.<h>`.
    group: bool,
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
    /// Secret inputs and inputs whose default reads one (see `secrets.rs`).
    secret_inputs: HashSet<String>,
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
        secret_inputs: HashSet::new(),
    };
    c.secret_inputs = c.secret_input_names();
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

    fn lints(&mut self) {
        let rb = self.rb;
        for step in rb.steps.iter() {
            self.secret_outputs(step);
            let remote = step.body.on.is_some() && matches!(step.body.action, Action::Run(_));
            // A request that changes things (not GET/HEAD/OPTIONS/LIST) changes a remote
            // service; `idempotent: true` says repeating it is harmless (an unseal share).
            let http = match &step.body.action {
                Action::Http(h) if super::targets::http_changes(h) && !step.idempotent => Some(h),
                _ => None,
            };
            if (remote || http.is_some())
                && step.confirm.is_none()
                && step.rollback.is_none()
                && !step.read_only
            {
                let what = match http {
                    Some(h) if h.method_tmpl.is_some() => {
                        "sends a request (method chosen at run time)".to_string()
                    }
                    Some(h) => format!("sends a {} request", h.method),
                    None => "changes a remote host".to_string(),
                };
                self.push(
                    Diagnostic::warning(
                        "remote-step-unguarded",
                        format!(
                            "step `{}` {what} without a gate or a rollback",
                            step.id.name
                        ),
                    )
                    .with_span(step.id.span.clone(), "no `confirm` and no `rollback`")
                    .with_help(if http.is_some() {
                        "add `confirm:` or `rollback:`, `read_only: true` if the request only reads (a login), or `idempotent: true` if repeating it is harmless"
                    } else {
                        "add `confirm:` or `rollback:`, or `read_only: true` if it only inspects"
                    }),
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
