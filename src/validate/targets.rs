//! Reading the step fields of issue 14 §5–6 that live beside the core ones: targets chosen at
//! run time (`on: { hosts, from }`, `where:`, `order:`), `deadline:`, `retry:`, host `vars:`
//! and a templated HTTP `method:`. Their semantic checks are at the end ([`group_results`]).

use crate::diagnostic::Diagnostic;
use crate::load::{Node, NodeKind};
use crate::model::*;

use super::reader::{Fields, Reader, to_json};

/// Keys of `on:` as a mapping.
pub(super) const ON: &[&str] = &["hosts", "from"];
/// Keys of `order:`.
pub(super) const ORDER: &[&str] = &["by", "reverse", "first", "last"];
/// Keys of `retry:`.
pub(super) const RETRY: &[&str] = &["retries", "backoff", "when"];
/// HTTP methods a request may use (a templated method is checked against these when rendered).
pub(crate) const METHODS: &[&str] = &[
    "GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "LIST",
];

/// `on:` — a host or group name; for a step (`step`), also `{ hosts: EXPR, from: GROUP }`.
/// Returns the name (the group, for the mapping); `hosts` is read by [`read_step_fields`].
pub(super) fn read_on(r: &mut Reader, node: &Node, what: &str, step: bool) -> Option<Named> {
    if !matches!(node.kind, NodeKind::Map(_)) {
        let text = node.as_str().unwrap_or_default();
        if step && (text.contains("{{") || text.contains("{%")) {
            r.push(
                Diagnostic::error("invalid-value", format!("{what} names a host or group; hosts chosen at run time name their group"))
                    .with_span(node.span.clone(), "a template")
                    .with_help(format!("write `on: {{ hosts: \"{text}\", from: GROUP }}`: the members must be hosts of a declared group, so their addresses and host keys are known")),
            );
            return None;
        }
        return r.named(node, what);
    }
    if !step {
        r.push(
            Diagnostic::error("wrong-type", format!("{what} must be a host or group name"))
                .with_span(node.span.clone(), "a mapping")
                .with_help("a rollback runs where the step ran: on the hosts of a run-time fan-out that completed, with `host.*` bound; write `on:` only to run it elsewhere"),
        );
        return None;
    }
    let f = r.fields(node, what, ON)?;
    match f.get("from") {
        Some(n) => r.named(n, what),
        None => {
            r.missing(&f, "from", what);
            None
        }
    }
}

/// `where:`, `order:`, `deadline:`, `retry:` and `on.hosts` of a step.
pub(super) fn read_step_fields(
    r: &mut Reader,
    f: &Fields<'_>,
    step: &mut Step,
    defaults: &Defaults,
) {
    let id = step.id.name.clone();
    let what = |field: &str| format!("`{field}` of step `{id}`");
    if let Some(n) = f.get("on")
        && let NodeKind::Map(pairs) = &n.kind
    {
        let hosts = pairs
            .iter()
            .find(|(k, v)| k.as_str() == Some("hosts") && !v.is_null());
        step.targets.hosts = hosts.and_then(|(_, v)| r.tmpl(v, &what("on.hosts")));
    }
    step.targets.filter = f.get("where").and_then(|n| r.tmpl(n, &what("where")));
    step.targets.order = f
        .get("order")
        .and_then(|n| read_order(r, n, &what("order")));
    if step.targets.is_runtime() {
        let group = step.body.on.as_ref().filter(|_| step.uses.is_none());
        if group.is_none() {
            let at = f
                .key_span("where")
                .or(f.key_span("order"))
                .unwrap_or(step.id.span.clone());
            r.push(
                Diagnostic::error(
                    "invalid-value",
                    format!("step `{id}` chooses hosts (`where`/`order`) but has no `on:` group"),
                )
                .with_span(at, "nothing to choose from")
                .with_help("add `on: GROUP` (or `on: { hosts: EXPR, from: GROUP }`)"),
            );
        }
    }
    step.deadline = f
        .get("deadline")
        .and_then(|n| r.duration(n, &what("deadline")));
    if let Some(n) = f.get("retry") {
        read_retry(r, n, f, step, defaults, &what("retry"));
    }
}

fn read_order(r: &mut Reader, node: &Node, what: &str) -> Option<Order> {
    let f = r.fields(node, what, ORDER)?;
    let order = Order {
        by: f.get("by").and_then(|n| r.tmpl(n, what)),
        reverse: f
            .get("reverse")
            .and_then(|n| r.boolean(n, what))
            .unwrap_or(false),
        first: f.get("first").and_then(|n| r.tmpl(n, what)),
        last: f.get("last").and_then(|n| r.tmpl(n, what)),
    };
    if order.by.is_none() && order.first.is_none() && order.last.is_none() && !order.reverse {
        r.push(
            Diagnostic::error("invalid-value", format!("{what} says nothing"))
                .with_span(node.span.clone(), "empty order")
                .with_help("give `by: EXPR` (a sort key over `host`), `first:`/`last:` (hosts), or `reverse: true`"),
        );
    }
    Some(order)
}

fn read_retry(
    r: &mut Reader,
    node: &Node,
    step_fields: &Fields<'_>,
    step: &mut Step,
    defaults: &Defaults,
    what: &str,
) {
    let Some(f) = r.fields(node, what, RETRY) else {
        return;
    };
    for key in ["retries", "backoff"] {
        if f.has(key) && step_fields.has(key) {
            r.push(
                Diagnostic::error("invalid-value", format!("`{key}` is given twice: on the step and under `retry`"))
                    .with_span(f.key_span(key).unwrap_or(node.span.clone()), "keep only one")
                    .with_help("`retry: { retries, backoff, when }` is the same as the step's `retries`/`backoff` plus a condition"),
            );
        }
    }
    if let Some(n) = f.get("retries")
        && let Some(v) = r.uint(n, what, 100)
    {
        step.retries = v as u32;
    }
    if let Some(n) = f.get("backoff")
        && let Some(d) = r.duration(n, what)
    {
        step.backoff = d;
    }
    step.retry_when = f.get("when").and_then(|n| r.tmpl(n, what));
    if step.retry_when.is_some() && step.retries == 0 && defaults.retries == 0 {
        r.push(
            Diagnostic::error(
                "invalid-value",
                format!("{what} has a `when` but no retries"),
            )
            .with_span(
                f.key_span("when").unwrap_or(node.span.clone()),
                "never used",
            )
            .with_help("add `retries: N` under `retry:`"),
        );
    }
}

/// A host's `vars:` (literal values).
pub(super) fn read_vars(
    r: &mut Reader,
    node: Option<&Node>,
    what: &str,
) -> serde_json::Map<String, serde_json::Value> {
    let Some(node) = node else {
        return serde_json::Map::new();
    };
    match to_json(node) {
        serde_json::Value::Object(m) => m,
        _ => {
            r.push(
                Diagnostic::error("wrong-type", format!("{what} must be a mapping"))
                    .with_span(node.span.clone(), "expected a mapping")
                    .with_help("write `vars: { role: voter, zone: a }`"),
            );
            serde_json::Map::new()
        }
    }
}

/// `method:` of a request: a literal (upper-cased) or a template rendered at run time.
pub(super) fn read_method(r: &mut Reader, node: &Node, what: &str) -> (String, Option<Tmpl>) {
    let text = node.as_str().unwrap_or_default();
    if text.contains("{{") || text.contains("{%") {
        return (String::new(), r.tmpl(node, what));
    }
    (
        r.string(node, what)
            .unwrap_or_default()
            .to_ascii_uppercase(),
        None,
    )
}

/// Whether a request changes things: any method but GET/HEAD/OPTIONS (a templated method
/// may be anything).
pub(super) fn http_changes(h: &HttpSpec) -> bool {
    h.method_tmpl.is_some() || !matches!(h.method.as_str(), "GET" | "HEAD" | "OPTIONS" | "LIST")
}

/// Fields of a step's result that a group step has per host only (`hosts.<h>.stdout`).
pub(super) const PER_HOST: &[&str] = &[
    "stdout",
    "stderr",
    "exit_code",
    "json",
    "status",
    "body",
    "headers",
];

/// Whether a step fans out over a group (its result is per host).
pub(super) fn is_group_step(rb: &Runbook, step: &Step) -> bool {
    step.uses.is_none()
        && step
            .body
            .on
            .as_ref()
            .is_some_and(|on| rb.group(&on.name).is_some())
}

/// The `group-step-result` diagnostic: `steps.X.stdout` on a group step.
pub(super) fn group_result_error(
    rb: &Runbook,
    step: &Step,
    field: &str,
    reference: &str,
    own: bool,
    span: std::ops::Range<usize>,
) -> Diagnostic {
    let var = super::step_var(&step.id.name);
    let group = step.body.on.as_ref().map_or("", |o| o.name.as_str());
    let first = rb
        .group(group)
        .and_then(|g| g.hosts.first())
        .map_or("HOST".to_string(), |h| h.name.clone());
    let host_ref = if first.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!(".{first}")
    } else {
        format!("['{first}']")
    };
    Diagnostic::error(
        "group-step-result",
        format!(
            "`{reference}`: step `{}` runs on group `{group}`, so it has a `{field}` per host, not one",
            step.id.name
        ),
    )
    .with_span(span, "one value per host")
    .with_help(if own {
        format!("did you mean `hosts{host_ref}.{field}`? (`hosts` maps each host's name to its result)")
    } else {
        format!("did you mean `steps.{var}.hosts{host_ref}.{field}`? (`hosts` maps each host's name to its result)")
    })
}
