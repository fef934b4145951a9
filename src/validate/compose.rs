//! `uses:` — a step that calls another runbook, expanded when the runbook is loaded.
//!
//! The called runbook (the child) is validated on its own first, then its steps are inlined
//! into the caller's step list with prefixed ids (`unseal.check`), its hosts and groups with
//! prefixed names (`unseal.node`), and every template rewritten to the caller's scope: a child
//! input becomes the expression the caller passed in `with:` (or the child's default), and
//! `steps.X` becomes `steps["unseal.X"]`. The call itself stays as a step (`id` of the call)
//! that needs every child step and carries the child's top-level `outputs:`, so the caller
//! reads `steps.unseal.outputs.NAME`. The inlined steps are ordinary steps: one journal, one
//! transcript, one lock, gates and rollbacks exactly as if written in the caller.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::load::{Node, NodeKind};
use crate::model::{Input, InputType};

/// Keys whose string values are expressions (written without braces).
/// (`where`, `by`, `first`, `last`, `hosts`: targets chosen at run time, under a step or
/// its `on:`/`order:`.)
const EXPR_KEYS: &[&str] = &[
    "when", "until", "that", "for_each", "items", "where", "by", "first", "last", "hosts",
];
/// Fields a calling step may have besides `uses`.
const CALL_FIELDS: &[&str] = &["id", "title", "needs", "when", "uses", "with"];
/// Deepest chain of calls.
const MAX_DEPTH: usize = 16;

/// Expands every `uses:` step of `root` (a runbook read from `file`).
/// `None` when nothing calls another runbook (the tree is used as it is); else the expanded
/// tree and the dotted names the expansion made (`unseal.check`, `unseal.node`).
pub(super) fn expand(
    root: &Node,
    file: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<(Node, HashSet<String>)> {
    if !has_uses(root) {
        return None;
    }
    let path = PathBuf::from(file);
    let canon = std::fs::canonicalize(&path).unwrap_or(path.clone());
    let mut stack = vec![(canon, file.to_string())];
    let mut names = HashSet::new();
    let node = expand_in(root, &path, &mut stack, diags, &mut names);
    Some((node, names))
}

fn has_uses(root: &Node) -> bool {
    let any = |key| match get(root, key).map(|n| &n.kind) {
        Some(NodeKind::Seq(s)) => s.iter().any(|st| get(st, "uses").is_some()),
        _ => false,
    };
    any("steps") || any("finally")
}

fn steps_of(root: &Node) -> Option<&Vec<Node>> {
    match &get(root, "steps")?.kind {
        NodeKind::Seq(items) => Some(items),
        _ => None,
    }
}

fn get<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match &node.kind {
        NodeKind::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn scalar(text: impl Into<String>, span: &Range<usize>) -> Node {
    Node {
        kind: NodeKind::Scalar {
            text: text.into(),
            plain: false,
        },
        span: span.clone(),
    }
}

fn pair(key: &str, value: Node, span: &Range<usize>) -> (Node, Node) {
    (scalar(key, span), value)
}

fn expand_in(
    root: &Node,
    path: &Path,
    stack: &mut Vec<(PathBuf, String)>,
    diags: &mut Vec<Diagnostic>,
    names: &mut HashSet<String>,
) -> Node {
    if !has_uses(root) {
        return root.clone();
    }
    let NodeKind::Map(top) = &root.kind else {
        return root.clone();
    };
    let mut new_top: Vec<(Node, Node)> = Vec::new();
    let mut extra_hosts: Vec<(Node, Node)> = Vec::new();
    let mut extra_groups: Vec<(Node, Node)> = Vec::new();
    for (k, v) in top {
        if k.as_str() == Some("finally")
            && let NodeKind::Seq(steps) = &v.kind
        {
            for s in steps {
                if let Some(u) = get(s, "uses") {
                    diags.push(
                        Diagnostic::error("uses-invalid", "a `finally` step cannot call a runbook")
                            .with_span(u.span.clone(), "`uses` in `finally`")
                            .with_help(
                                "call it from `steps`; `finally` steps run one by one at the end",
                            ),
                    );
                }
            }
        }
        if k.as_str() != Some("steps") {
            new_top.push((k.clone(), v.clone()));
            continue;
        }
        let NodeKind::Seq(steps) = &v.kind else {
            new_top.push((k.clone(), v.clone()));
            continue;
        };
        let mut out = Vec::new();
        for step in steps {
            if get(step, "uses").is_none() {
                out.push(step.clone());
                continue;
            }
            match call(step, path, stack, diags, names) {
                Some(c) => {
                    out.extend(c.steps);
                    extra_hosts.extend(c.hosts);
                    extra_groups.extend(c.groups);
                }
                // Keep the call as a step so ids and `needs` still resolve; it is an error.
                None => out.push(call_placeholder(step)),
            }
        }
        new_top.push((
            k.clone(),
            Node {
                kind: NodeKind::Seq(out),
                span: v.span.clone(),
            },
        ));
    }
    for (name, extra) in [("hosts", extra_hosts), ("groups", extra_groups)] {
        if extra.is_empty() {
            continue;
        }
        match new_top.iter_mut().find(|(k, _)| k.as_str() == Some(name)) {
            Some((
                _,
                Node {
                    kind: NodeKind::Map(pairs),
                    ..
                },
            )) => pairs.extend(extra),
            Some(_) => {}
            None => new_top.push(pair(
                name,
                Node {
                    kind: NodeKind::Map(extra),
                    span: root.span.clone(),
                },
                &root.span,
            )),
        }
    }
    Node {
        kind: NodeKind::Map(new_top),
        span: root.span.clone(),
    }
}

/// A failed call, kept as a no-op step with the call's id, title, needs and when.
fn call_placeholder(step: &Node) -> Node {
    let mut pairs = Vec::new();
    if let NodeKind::Map(ps) = &step.kind {
        for (k, v) in ps {
            if matches!(k.as_str(), Some("id" | "title" | "needs" | "when" | "uses")) {
                pairs.push((k.clone(), v.clone()));
            }
        }
    }
    Node {
        kind: NodeKind::Map(pairs),
        span: step.span.clone(),
    }
}

struct Expanded {
    steps: Vec<Node>,
    hosts: Vec<(Node, Node)>,
    groups: Vec<(Node, Node)>,
}

/// Line and column of a byte offset in `text`, 1-based.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn call(
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
    let Some(rel) = uses.as_str().filter(|s| !s.is_empty()) else {
        diags.push(
            Diagnostic::error("uses-invalid", "`uses` must name a runbook file")
                .with_span(at, "not a file name"),
        );
        return None;
    };
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
                return None;
            }
        }
    }
    let base = path.parent().unwrap_or(Path::new(""));
    let child_path = tidy(&base.join(rel));
    let display = child_path.display().to_string();
    let canon = std::fs::canonicalize(&child_path).unwrap_or(child_path.clone());
    if let Some(pos) = stack.iter().position(|(p, _)| *p == canon) {
        let mut chain: Vec<&str> = stack[pos..].iter().map(|(_, d)| d.as_str()).collect();
        chain.push(&display);
        diags.push(
            Diagnostic::error(
                "uses-cycle",
                format!("runbooks call each other in a cycle: {}", chain.join(" → ")),
            )
            .with_span(at, "calls a runbook already being called")
            .with_help("a runbook cannot call itself, directly or through others"),
        );
        return None;
    }
    if stack.len() >= MAX_DEPTH {
        diags.push(
            Diagnostic::error(
                "uses-invalid",
                format!("calls nest deeper than {MAX_DEPTH} runbooks"),
            )
            .with_span(at, "too deep"),
        );
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
    // A cycle found further down is reported here, as the path it is.
    if let Some(cycle) = child_diags.iter().find(|d| d.code == "uses-cycle") {
        diags.push(
            Diagnostic::error("uses-cycle", cycle.message.clone())
                .with_span(at, "calls a runbook already being called")
                .with_help("a runbook cannot call itself, directly or through others"),
        );
        return None;
    }
    let mut model = None;
    if let Some(root) = &child_root {
        let (rb, mut d) = super::convert::convert_composed(root, child_made);
        if let Some(rb) = &rb {
            super::checks::check(rb, &child_text, &mut d);
        }
        child_diags.extend(d);
        model = rb;
        if get(root, "finally").is_some() {
            child_diags.push(
                Diagnostic::error(
                    "uses-invalid",
                    "a called runbook cannot have `finally` steps",
                )
                .with_span(0..0, "finally"),
            );
        }
    } else if child_diags.is_empty() {
        child_diags.push(Diagnostic::error("empty-runbook", "the file is empty"));
    }
    let errors: Vec<String> = child_diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| {
            let (l, c) = d
                .span
                .as_ref()
                .map_or((1, 1), |(r, _)| line_col(&child_text, r.start));
            format!("{display}:{l}:{c}: [{}] {}", d.code, d.message)
        })
        .collect();
    let (Some(child_root), Some(model), true) = (child_root, model, errors.is_empty()) else {
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
    let call_needs = get(step, "needs").cloned();
    let call_when = get(step, "when").and_then(Node::as_str).map(str::to_string);
    let child_steps = steps_of(&child_root).cloned().unwrap_or_default();
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
                    scalar(full, &at)
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
                            &at,
                        ),
                        _ => own,
                    }
                }
                _ => scope.rewrite(v, key),
            };
            new.push((scalar(key, &at), v));
        }
        if !has_needs && let Some(n) = &call_needs {
            new.push(pair("needs", relocate(n, &at), &at));
        }
        if !has_when && let Some(p) = &call_when {
            new.push(pair("when", scalar(p.clone(), &at), &at));
        }
        out.steps.push(Node {
            kind: NodeKind::Map(new),
            span: at.clone(),
        });
    }
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

/// `a/b/../c` as `a/c` (for messages; the file system is not asked).
fn tidy(p: &Path) -> PathBuf {
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
fn relocate(node: &Node, at: &Range<usize>) -> Node {
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

/// The expression each child input stands for: what `with:` passed, else its default.
fn bind_inputs(
    step: &Node,
    inputs: &[Input],
    display: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<HashMap<String, String>> {
    let mut ok = true;
    let mut given: HashMap<String, &Node> = HashMap::new();
    if let Some(with) = get(step, "with") {
        match &with.kind {
            NodeKind::Map(pairs) => {
                for (k, v) in pairs {
                    let name = k.as_str().unwrap_or_default();
                    if inputs.iter().any(|i| i.name == name) {
                        given.insert(name.to_string(), v);
                    } else {
                        let mut d = Diagnostic::error(
                            "uses-input",
                            format!("{display} has no input `{name}`"),
                        )
                        .with_span(k.span.clone(), "no such input");
                        if let Some(h) = did_you_mean(name, inputs.iter().map(|i| i.name.as_str()))
                        {
                            d = d.with_help(h);
                        }
                        diags.push(d);
                        ok = false;
                    }
                }
            }
            _ if with.is_null() => {}
            _ => {
                diags.push(
                    Diagnostic::error("uses-input", "`with` must be a mapping of input: value")
                        .with_span(with.span.clone(), "not a mapping"),
                );
                return None;
            }
        }
    }
    let call_span = get(step, "uses").map_or(step.span.clone(), |u| u.span.clone());
    let mut subst: HashMap<String, String> = HashMap::new();
    for input in inputs {
        let expr = if let Some(v) = given.get(&input.name) {
            match value_expr(v, input) {
                Ok(e) => e,
                Err(msg) => {
                    diags.push(
                        Diagnostic::error(
                            "uses-input",
                            format!("input `{}` of {display}: {msg}", input.name),
                        )
                        .with_span(v.span.clone(), format!("expected {}", input.ty.as_str())),
                    );
                    ok = false;
                    continue;
                }
            }
        } else if let Some(default) = &input.default {
            let scope = Scope {
                call: String::new(),
                inputs: subst.clone(),
                hosts: HashSet::new(),
                span: call_span.clone(),
            };
            match json_expr(default, &scope) {
                Ok(e) => e,
                Err(msg) => {
                    diags.push(
                        Diagnostic::error(
                            "uses-input",
                            format!("default of input `{}` of {display}: {msg}", input.name),
                        )
                        .with_span(call_span.clone(), "in this call"),
                    );
                    ok = false;
                    continue;
                }
            }
        } else if input.required || input.secret {
            diags.push(
                Diagnostic::error(
                    "uses-input",
                    format!(
                        "{display} needs input `{}`{}",
                        input.name,
                        if input.secret {
                            " (a secret: pass it by name, e.g. `{{ my_secret }}`)"
                        } else {
                            ""
                        }
                    ),
                )
                .with_span(call_span.clone(), "missing in `with`")
                .with_help(format!("add `with: {{ {}: ... }}` to the call", input.name)),
            );
            ok = false;
            continue;
        } else {
            "none".to_string()
        };
        subst.insert(input.name.clone(), expr);
    }
    ok.then_some(subst)
}

/// A `with:` value as an expression in the caller's scope, checked against the input's type.
fn value_expr(v: &Node, input: &Input) -> Result<String, String> {
    match &v.kind {
        NodeKind::Scalar { text, plain } => {
            if text.contains("{{") || text.contains("{%") {
                return template_expr(text);
            }
            if input.secret {
                return Err(
                    "a secret is passed by name (`{{ my_secret }}`), never written in the runbook"
                        .into(),
                );
            }
            match input.ty {
                InputType::Int => text
                    .parse::<i64>()
                    .map(|n| n.to_string())
                    .map_err(|_| format!("`{text}` is not an integer")),
                InputType::Bool => match text.as_str() {
                    "true" | "True" | "TRUE" => Ok("true".into()),
                    "false" | "False" | "FALSE" => Ok("false".into()),
                    _ => Err(format!("`{text}` is not true or false")),
                },
                InputType::List => Err("a list is expected (`[a, b]` or `{{ a_list }}`)".into()),
                InputType::String => {
                    if *plain && v.is_null() {
                        return Err("null is not a string".into());
                    }
                    if !input.allowed.is_empty() && !input.allowed.contains(text) {
                        return Err(format!(
                            "`{text}` is not one of {}",
                            input.allowed.join(", ")
                        ));
                    }
                    Ok(string_lit(text))
                }
            }
        }
        NodeKind::Seq(items) if input.ty == InputType::List => {
            let mut parts = Vec::new();
            for item in items {
                match item.as_str() {
                    Some(t) if t.contains("{{") || t.contains("{%") => {
                        parts.push(template_expr(t)?)
                    }
                    Some(t) => parts.push(string_lit(t)),
                    None => return Err("list items must be strings".into()),
                }
            }
            Ok(format!("[{}]", parts.join(", ")))
        }
        _ => Err(format!("{} is not a {}", v.describe(), input.ty.as_str())),
    }
}

fn string_lit(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A default value (in the child's scope) as an expression in the caller's scope.
fn json_expr(v: &serde_json::Value, scope: &Scope) -> Result<String, String> {
    Ok(match v {
        serde_json::Value::Null => "none".into(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => {
            if s.contains("{{") || s.contains("{%") {
                template_expr(&scope.template(s))?
            } else {
                string_lit(s)
            }
        }
        serde_json::Value::Array(items) => {
            let parts: Result<Vec<String>, String> =
                items.iter().map(|i| json_expr(i, scope)).collect();
            format!("[{}]", parts?.join(", "))
        }
        serde_json::Value::Object(map) => {
            let parts: Result<Vec<String>, String> = map
                .iter()
                .map(|(k, v)| Ok(format!("{}: {}", string_lit(k), json_expr(v, scope)?)))
                .collect();
            format!("{{{}}}", parts?.join(", "))
        }
    })
}

/// `${#VAR}` is shell, not a template comment: hide the `{` from the lexer (same length).
fn lexable(src: &str) -> String {
    src.replace("${#", "$\u{1}#")
}

type Tokens<'a> = Vec<(minijinja::machinery::Token<'a>, minijinja::machinery::Span)>;

fn tokens(src: &str, expr: bool) -> Option<Tokens<'_>> {
    minijinja::machinery::tokenize(src, expr, Default::default())
        .collect::<Result<Vec<_>, _>>()
        .ok()
}

/// A template as one expression giving the same value: `{{ x }}` is `(x)` (keeping its
/// type: a list stays a list, a secret a secret), text and values join with `~`.
fn template_expr(src: &str) -> Result<String, String> {
    use minijinja::machinery::Token;
    let lex = lexable(src);
    let toks = tokens(&lex, false).ok_or_else(|| "not a valid template".to_string())?;
    let mut parts = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i].0 {
            Token::TemplateData(t) => parts.push(string_lit(t)),
            Token::VariableStart => {
                let start = toks[i].1.end_offset as usize;
                let mut j = i + 1;
                while j < toks.len() && !matches!(toks[j].0, Token::VariableEnd) {
                    j += 1;
                }
                let end = toks.get(j).map_or(src.len(), |t| t.1.start_offset as usize);
                let inner = src.get(start..end).unwrap_or_default().trim();
                let inner = inner.trim_start_matches('-').trim_end_matches('-').trim();
                parts.push(format!("({inner})"));
                i = j;
            }
            Token::BlockStart => {
                return Err("`{% … %}` blocks cannot be passed to a called runbook".into());
            }
            _ => {}
        }
        i += 1;
    }
    Ok(match parts.len() {
        0 => "\"\"".into(),
        1 => parts.remove(0),
        _ => format!("({})", parts.join(" ~ ")),
    })
}

/// How a child's names map into the caller.
struct Scope {
    call: String,
    /// Child input → expression in the caller's scope.
    inputs: HashMap<String, String>,
    /// The child's host and group names (prefixed with the call's id).
    hosts: HashSet<String>,
    span: Range<usize>,
}

impl Scope {
    /// A child node rewritten for the caller; `key` is the field it is the value of.
    fn rewrite(&self, node: &Node, key: &str) -> Node {
        let at = &self.span;
        let kind = match &node.kind {
            NodeKind::Scalar { text, plain } => {
                let templ = text.contains("{{") || text.contains("{%");
                let text = if templ {
                    self.template(text)
                } else if EXPR_KEYS.contains(&key) || key == "outputs" {
                    self.expression(text)
                } else if (key == "on" || key == "from") && self.hosts.contains(text) {
                    format!("{}.{text}", self.call)
                } else {
                    text.clone()
                };
                NodeKind::Scalar {
                    plain: *plain && !templ && text == *node.as_str().unwrap_or_default(),
                    text,
                }
            }
            NodeKind::Seq(items) => {
                NodeKind::Seq(items.iter().map(|n| self.rewrite(n, key)).collect())
            }
            NodeKind::Map(pairs) => NodeKind::Map(
                pairs
                    .iter()
                    .map(|(k, v)| {
                        let name = k.as_str().unwrap_or_default();
                        // Under `outputs`, every value is an expression (or `{value, secret}`).
                        let sub = match key {
                            "outputs" if matches!(v.kind, NodeKind::Map(_)) => "output",
                            "outputs" => "outputs",
                            "output" if name == "value" => "outputs",
                            _ => name,
                        };
                        (relocate(k, at), self.rewrite(v, sub))
                    })
                    .collect(),
            ),
        };
        Node {
            kind,
            span: at.clone(),
        }
    }

    /// `needs` of a child step: the child's ids, prefixed.
    fn prefixed(&self, node: &Node) -> Node {
        let at = &self.span;
        match &node.kind {
            NodeKind::Scalar { text, .. } => scalar(format!("{}.{text}", self.call), at),
            NodeKind::Seq(items) => Node {
                kind: NodeKind::Seq(items.iter().map(|n| self.prefixed(n)).collect()),
                span: at.clone(),
            },
            NodeKind::Map(_) => relocate(node, at),
        }
    }

    /// A group's member list: child host names, prefixed.
    fn hosts_in(&self, node: &Node) -> Node {
        let at = &self.span;
        match &node.kind {
            NodeKind::Scalar { text, .. } if self.hosts.contains(text) => {
                scalar(format!("{}.{text}", self.call), at)
            }
            NodeKind::Seq(items) => Node {
                kind: NodeKind::Seq(items.iter().map(|n| self.hosts_in(n)).collect()),
                span: at.clone(),
            },
            _ => relocate(node, at),
        }
    }

    fn template(&self, src: &str) -> String {
        self.substitute(src, false)
    }

    fn expression(&self, src: &str) -> String {
        self.substitute(src, true)
    }

    /// Rewrites the names a template reads: child inputs (`node`, `inputs.node`) become the
    /// caller's expressions, `steps.X` becomes `steps["CALL.X"]`. Text outside `{{ }}` and
    /// `{% %}` is untouched.
    fn substitute(&self, src: &str, expr: bool) -> String {
        use minijinja::machinery::Token;
        let lex = lexable(src);
        let Some(toks) = tokens(&lex, expr) else {
            return src.to_string();
        };
        let mut edits: Vec<(Range<usize>, String)> = Vec::new();
        let mut inside = expr;
        let span = |i: usize| toks[i].1.start_offset as usize..toks[i].1.end_offset as usize;
        let mut i = 0;
        while i < toks.len() {
            match &toks[i].0 {
                Token::VariableStart | Token::BlockStart => inside = true,
                Token::VariableEnd | Token::BlockEnd => inside = expr,
                Token::Ident(name) if inside => {
                    let prev = i.checked_sub(1).map(|p| &toks[p].0);
                    let next = toks.get(i + 1).map(|t| &t.0);
                    let after = toks.get(i + 2).map(|t| &t.0);
                    let is_attr = matches!(prev, Some(Token::Dot | Token::Pipe))
                        || matches!(prev, Some(Token::Ident("is")));
                    if is_attr || matches!(next, Some(Token::Assign)) {
                        i += 1;
                        continue;
                    }
                    if *name == "steps" && !self.call.is_empty() {
                        match (next, after) {
                            (Some(Token::Dot), Some(Token::Ident(id))) => {
                                edits.push((
                                    span(i).start..span(i + 2).end,
                                    format!(
                                        "steps[{}]",
                                        string_lit(&format!("{}.{id}", self.call))
                                    ),
                                ));
                                i += 3;
                                continue;
                            }
                            (Some(Token::BracketOpen), Some(Token::Str(id))) => {
                                edits.push((
                                    span(i + 2),
                                    string_lit(&format!("{}.{id}", self.call)),
                                ));
                                i += 3;
                                continue;
                            }
                            _ => {}
                        }
                    }
                    if *name == "inputs"
                        && let (Some(Token::Dot), Some(Token::Ident(n))) = (next, after)
                        && let Some(e) = self.inputs.get(*n)
                    {
                        edits.push((span(i).start..span(i + 2).end, paren(e)));
                        i += 3;
                        continue;
                    }
                    if let Some(e) = self.inputs.get(*name) {
                        edits.push((span(i), paren(e)));
                    }
                }
                _ => {}
            }
            i += 1;
        }
        let mut out = String::with_capacity(src.len());
        let mut last = 0;
        for (r, text) in edits {
            out.push_str(src.get(last..r.start).unwrap_or_default());
            out.push_str(&text);
            last = r.end;
        }
        out.push_str(src.get(last..).unwrap_or_default());
        out
    }
}

/// An expression safe to put where a name stood.
fn paren(e: &str) -> String {
    let simple = e
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        || (e.starts_with('(') && e.ends_with(')') && balanced(e));
    if simple {
        e.to_string()
    } else {
        format!("({e})")
    }
}

/// `(a) ~ (b)` starts and ends with parentheses but is not one parenthesised expression.
fn balanced(e: &str) -> bool {
    let mut depth = 0i32;
    let n = e.len();
    for (i, c) in e.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 && i + 1 != n {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}
