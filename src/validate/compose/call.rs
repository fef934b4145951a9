//! One `uses:` call: read the file, bind `with:`, rename ids, relocate spans.

use super::*;

/// Line and column of a byte offset in `text`, 1-based.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Expands one step with `uses:` into the called runbook's steps (renamed `call.step`), its
/// hosts and groups, and the call step itself; `None` after reporting why not.
pub(super) fn call(
    step: &Node,
    path: &Path,
    stack: &mut Vec<(PathBuf, String)>,
    diags: &mut Vec<Diagnostic>,
    made: &mut HashSet<String>,
) -> Option<Expanded> {
    let uses = get(step, "uses")?;
    let at = uses.span.clone();
    let Some(id) = get(step, "id").and_then(Node::as_str) else {
        return None; // convert reports the missing id
    };
    // `-` is not a file (it must never mean standard input).
    let Some(rel) = uses.as_str().filter(|s| !s.is_empty() && *s != "-") else {
        diags.push(
            Diagnostic::error("uses-invalid", "`uses` must name a runbook file")
                .with_span(at, "not a file name"),
        );
        return None;
    };
    if !call_fields_only(step, diags) {
        return None;
    }
    let Callee {
        root: child_root,
        model,
        display,
    } = callee(rel, &at, path, stack, diags)?;
    let subst = bind_inputs(step, &model.inputs, &display, diags)?;
    let mut names: HashSet<String> = model.hosts.iter().map(|h| h.name.clone()).collect();
    names.extend(model.groups.iter().map(|g| g.name.clone()));
    let scope = Scope {
        call: id.to_string(),
        inputs: subst,
        hosts: names,
        span: at.clone(),
    };
    let mut out = Expanded {
        steps: Vec::new(),
        hosts: Vec::new(),
        groups: Vec::new(),
    };
    for (key, target) in [("hosts", &mut out.hosts), ("groups", &mut out.groups)] {
        if let Some(Node {
            kind: NodeKind::Map(pairs),
            ..
        }) = get(&child_root, key)
        {
            for (k, v) in pairs {
                let name = format!("{}.{}", scope.call, k.as_str().unwrap_or_default());
                made.insert(name.clone());
                let v = if key == "groups" {
                    scope.hosts_in(v)
                } else {
                    scope.rewrite(v, "")
                };
                target.push((scalar(name, &at), v));
            }
        }
    }
    let ids = renamed_steps(step, &child_root, &scope, made, &mut out.steps);
    // The call itself: done when every child step is, with the child's outputs.
    let mut call_step = vec![
        (scalar("id", &at), get(step, "id").cloned()?),
        pair("uses", uses.clone(), &at),
        pair(
            "needs",
            Node {
                kind: NodeKind::Seq(ids.iter().map(|i| scalar(i.clone(), &at)).collect()),
                span: at.clone(),
            },
            &at,
        ),
    ];
    let title = get(step, "title")
        .cloned()
        .unwrap_or_else(|| scalar(format!("{rel} done"), &at));
    call_step.push(pair("title", title, &at));
    if let Some(w) = get(step, "when") {
        call_step.push(pair("when", w.clone(), &at));
    }
    if let Some(outputs) = get(&child_root, "outputs") {
        call_step.push(pair("outputs", scope.rewrite(outputs, "outputs"), &at));
    }
    out.steps.push(Node {
        kind: NodeKind::Map(call_step),
        span: step.span.clone(),
    });
    Some(out)
}

/// Whether a call has only the fields a call may have (reports the first other one).
fn call_fields_only(step: &Node, diags: &mut Vec<Diagnostic>) -> bool {
    if let NodeKind::Map(pairs) = &step.kind {
        for (k, _) in pairs {
            let key = k.as_str().unwrap_or_default();
            if !CALL_FIELDS.contains(&key) {
                diags.push(
                    Diagnostic::error(
                        "uses-invalid",
                        format!("a step with `uses` cannot have `{key}`"),
                    )
                    .with_span(k.span.clone(), "not allowed with `uses`")
                    .with_help(
                        "a call has only `id`, `title`, `needs`, `when`, `uses` and `with`; put the rest in the called runbook",
                    ),
                );
                return false;
            }
        }
    }
    true
}

/// A called runbook, read, expanded and valid.
pub(super) struct Callee {
    /// Its tree, its own calls expanded.
    root: Node,
    model: crate::model::Runbook,
    /// Its path as messages show it.
    display: String,
}

/// Reads, expands and validates the runbook `rel` (relative to the caller at `path`) that a
/// call at `at` names; `None` after reporting why it cannot be called.
fn callee(
    rel: &str,
    at: &Range<usize>,
    path: &Path,
    stack: &mut Vec<(PathBuf, String)>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Callee> {
    let at = at.clone();
    let base = path.parent().unwrap_or(Path::new(""));
    let child_path = tidy(&base.join(rel));
    let display = child_path.display().to_string();
    let canon = std::fs::canonicalize(&child_path).unwrap_or(child_path.clone());
    if !may_call(&canon, &display, &at, stack, diags) {
        return None;
    }
    let loaded = match crate::load::load(&child_path) {
        Ok(l) => l,
        Err(e) => {
            diags.push(
                Diagnostic::error("uses-invalid", e.to_string())
                    .with_span(at, "cannot read this runbook")
                    .with_help("the path is relative to the calling runbook's directory"),
            );
            return None;
        }
    };
    let child_text = loaded.source.text.clone();
    let mut child_diags = Vec::new();
    let mut child_made = HashSet::new();
    let child_root = match &loaded.root {
        Ok(Some(r)) => {
            // Each step this call inlines counts once (its own calls count where they are).
            let own = steps_of(r).map_or(0, |s| {
                s.iter().filter(|st| get(st, "uses").is_none()).count()
            });
            EXPANDED.with(|c| c.set(c.get().saturating_add(own + 1)));
            stack.push((canon, display.clone()));
            let expanded = expand_in(r, &child_path, stack, &mut child_diags, &mut child_made);
            stack.pop();
            Some(expanded)
        }
        Ok(None) => None,
        Err(d) => {
            child_diags.extend(d.iter().cloned());
            None
        }
    };
    if stopped_further_down(&child_diags, &display, &at, diags) {
        return None;
    }
    let model = child_root
        .as_ref()
        .and_then(|root| read_child(root, child_made, &child_text, &mut child_diags));
    if child_root.is_none() && child_diags.is_empty() {
        child_diags.push(Diagnostic::error("empty-runbook", "the file is empty"));
    }
    let errors = error_lines(&child_diags, &child_text, &display);
    let (Some(root), Some(model), true) = (child_root, model, errors.is_empty()) else {
        diags.push(
            Diagnostic::error(
                "uses-invalid",
                format!("the called runbook {display} is not valid"),
            )
            .with_span(at, "this runbook has errors")
            .with_help(format!(
                "{}\n(run `runbook validate {display}`)",
                errors.join("\n")
            )),
        );
        return None;
    };
    Some(Callee {
        root,
        model,
        display,
    })
}

/// Whether the runbook at `canon` may be called from here: not one already being called (a
/// cycle), not deeper than [`MAX_DEPTH`], not past [`MAX_EXPANDED`] inlined steps. Reports
/// why not at `at`.
fn may_call(
    canon: &Path,
    display: &str,
    at: &Range<usize>,
    stack: &[(PathBuf, String)],
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let at = at.clone();
    if let Some(pos) = stack.iter().position(|(p, _)| p == canon) {
        let mut chain: Vec<&str> = stack[pos..].iter().map(|(_, d)| d.as_str()).collect();
        chain.push(display);
        diags.push(
            Diagnostic::error(
                "uses-cycle",
                format!("runbooks call each other in a cycle: {}", chain.join(" → ")),
            )
            .with_span(at, "calls a runbook already being called")
            .with_help("a runbook cannot call itself, directly or through others"),
        );
        return false;
    }
    if stack.len() >= MAX_DEPTH {
        diags.push(
            Diagnostic::error("uses-invalid", format!("{TOO_DEEP} {MAX_DEPTH} runbooks"))
                .with_span(at, "too deep"),
        );
        return false;
    }
    if EXPANDED.with(std::cell::Cell::get) > MAX_EXPANDED {
        diags.push(
            Diagnostic::error("uses-invalid", format!("{TOO_MANY} {MAX_EXPANDED} steps"))
                .with_span(at, "too many steps")
                .with_help("calls multiply: a runbook called N times inlines its steps N times"),
        );
        return false;
    }
    true
}

/// Whether expanding the called runbook (`display`) hit a cycle or a limit in its own calls;
/// if so, reports it here, at the call at `at`, as what it is.
fn stopped_further_down(
    child_diags: &[Diagnostic],
    display: &str,
    at: &Range<usize>,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    // A cycle found further down is reported here, as the path it is.
    if let Some(cycle) = child_diags.iter().find(|d| d.code == "uses-cycle") {
        diags.push(
            Diagnostic::error("uses-cycle", cycle.message.clone())
                .with_span(at.clone(), "calls a runbook already being called")
                .with_help("a runbook cannot call itself, directly or through others"),
        );
        return true;
    }
    // A limit reached further down is reported here, at this call, as what it is.
    if let Some(limit) = child_diags
        .iter()
        .find(|d| d.message.starts_with(TOO_DEEP) || d.message.starts_with(TOO_MANY))
    {
        diags.push(
            Diagnostic::error("uses-invalid", limit.message.clone())
                .with_span(at.clone(), "the calls made through here")
                .with_help(format!(
                    "reached through {display}; calls nest at most {MAX_DEPTH} deep and expand to at most {MAX_EXPANDED} steps"
                )),
        );
        return true;
    }
    false
}

/// Reads and checks the called runbook's expanded tree as a runbook of its own (a called
/// runbook has no `finally`); its problems go to `child_diags`.
fn read_child(
    root: &Node,
    made: HashSet<String>,
    text: &str,
    child_diags: &mut Vec<Diagnostic>,
) -> Option<crate::model::Runbook> {
    let (rb, mut d) = super::super::convert::convert_composed(root, made);
    if let Some(rb) = &rb {
        super::super::checks::check(rb, text, &mut d);
    }
    child_diags.extend(d);
    if get(root, "finally").is_some() {
        child_diags.push(
            Diagnostic::error(
                "uses-invalid",
                "a called runbook cannot have `finally` steps",
            )
            .with_span(0..0, "finally"),
        );
    }
    rb
}

/// The called runbook's errors, one `file:line:col: [code] message` line each.
fn error_lines(diags: &[Diagnostic], text: &str, display: &str) -> Vec<String> {
    diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| {
            let (l, c) = d
                .span
                .as_ref()
                .map_or((1, 1), |(r, _)| line_col(text, r.start));
            format!("{display}:{l}:{c}: [{}] {}", d.code, d.message)
        })
        .collect()
}

/// The called runbook's steps, renamed into the call's scope (ids `call.step`, the call's
/// `needs` and `when` added), pushed to `out`; returns their ids.
fn renamed_steps(
    step: &Node,
    child_root: &Node,
    scope: &Scope,
    made: &mut HashSet<String>,
    out: &mut Vec<Node>,
) -> Vec<String> {
    let at = &scope.span;
    let call_needs = get(step, "needs").cloned();
    let call_when = get(step, "when").and_then(Node::as_str).map(str::to_string);
    let child_steps = steps_of(child_root).cloned().unwrap_or_default();
    let mut ids = Vec::new();
    for s in &child_steps {
        let NodeKind::Map(pairs) = &s.kind else {
            continue;
        };
        let mut new = Vec::new();
        let mut has_needs = false;
        let mut has_when = false;
        for (k, v) in pairs {
            let key = k.as_str().unwrap_or_default();
            let v = match key {
                "id" => {
                    let full = format!("{}.{}", scope.call, v.as_str().unwrap_or_default());
                    made.insert(full.clone());
                    ids.push(full.clone());
                    scalar(full, at)
                }
                "needs" => {
                    has_needs = true;
                    scope.prefixed(v)
                }
                "when" => {
                    has_when = true;
                    let own = scope.rewrite(v, "when");
                    match (&call_when, own.as_str()) {
                        // Both may be written with braces (`{{ … }}`): join the expressions.
                        (Some(p), Some(c)) => scalar(
                            format!(
                                "({}) and ({})",
                                crate::template::expression_source(p),
                                crate::template::expression_source(c)
                            ),
                            at,
                        ),
                        _ => own,
                    }
                }
                _ => scope.rewrite(v, key),
            };
            new.push((scalar(key, at), v));
        }
        if !has_needs && let Some(n) = &call_needs {
            new.push(pair("needs", relocate(n, at), at));
        }
        if !has_when && let Some(p) = &call_when {
            new.push(pair("when", scalar(p.clone(), at), at));
        }
        out.push(Node {
            kind: NodeKind::Map(new),
            span: at.clone(),
        });
    }
    ids
}

/// `a/b/../c` as `a/c` (for messages; the file system is not asked).
pub(super) fn tidy(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.iter().collect()
}

/// Every span in `node` set to `at` (inlined text has no place in the caller's file).
pub(super) fn relocate(node: &Node, at: &Range<usize>) -> Node {
    let kind = match &node.kind {
        NodeKind::Scalar { text, plain } => NodeKind::Scalar {
            text: text.clone(),
            plain: *plain,
        },
        NodeKind::Seq(items) => NodeKind::Seq(items.iter().map(|n| relocate(n, at)).collect()),
        NodeKind::Map(pairs) => NodeKind::Map(
            pairs
                .iter()
                .map(|(k, v)| (relocate(k, at), relocate(v, at)))
                .collect(),
        ),
    };
    Node {
        kind,
        span: at.clone(),
    }
}
