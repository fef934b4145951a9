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

mod bind;
mod call;
mod scope;
use bind::{bind_inputs, string_lit};
use call::{call, relocate};
use scope::{Scope, template_expr};

/// Keys whose string values are expressions (written without braces).
/// (`where`, `by`, `first`, `last`, `hosts`: targets chosen at run time, under a step or
/// its `on:`/`order:`.)
const EXPR_KEYS: &[&str] = &[
    "when", "until", "that", "for_each", "items", "where", "by", "first", "last", "hosts",
];
/// Fields a calling step may have besides `uses`.
pub(super) const CALL_FIELDS: &[&str] = &["id", "title", "needs", "when", "uses", "with"];
/// Deepest chain of calls.
const MAX_DEPTH: usize = 16;
/// Most steps all the calls of one runbook may expand to (calls nest: 4 calls a level, 7
/// levels deep already make 38,000 steps).
const MAX_EXPANDED: usize = 2000;
/// The message starts of the limits, re-reported at the top call site.
const TOO_DEEP: &str = "calls nest deeper than";
const TOO_MANY: &str = "calls expand to more than";

thread_local! {
    /// Steps expanded so far by the current [`expand`].
    static EXPANDED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

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
    EXPANDED.with(|c| c.set(0));
    let node = expand_in(root, &path, &mut stack, diags, &mut names);
    Some((node, names))
}

fn has_uses(root: &Node) -> bool {
    !calls(root).is_empty()
}

/// The `uses:` values of a runbook's steps and finally steps, in order.
pub(super) fn calls(root: &Node) -> Vec<&Node> {
    ["steps", "finally"]
        .into_iter()
        .filter_map(|key| match &get(root, key)?.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        })
        .flatten()
        .filter_map(|st| get(st, "uses"))
        .collect()
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
