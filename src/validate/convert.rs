//! Structural reading: YAML tree → [`Runbook`], best effort.
//!
//! A field that fails to read records a diagnostic and falls back to a neutral value, so the
//! semantic checks still run over the rest of the document and the operator sees every
//! problem in one pass.

use std::time::Duration;

use super::reader::{Fields, Reader, to_json};
use crate::diagnostic::Diagnostic;
use crate::load::{Node, NodeKind};
use crate::model::*;

mod inputs;
mod kinds;
mod step;
use inputs::read_inputs;
use kinds::{read_expect, read_http, read_wait};
use step::read_steps;

pub(super) const TOP: &[&str] = &[
    "runbook",
    "version",
    "description",
    "inputs",
    "hosts",
    "groups",
    "defaults",
    "lock",
    "steps",
    "finally",
    "outputs",
];
pub(super) const INPUT: &[&str] = &[
    "description",
    "required",
    "default",
    "type",
    "list",
    "secret",
    "from_env",
    "from_file",
    "allowed",
    "pattern",
    "min_length",
];
pub(super) const HOST: &[&str] = &[
    "address",
    "user",
    "port",
    "identity_file",
    "jump",
    "known_hosts",
    "vars",
];
pub(super) const DEFAULTS: &[&str] = &["timeout", "retries", "backoff", "gate_timeout"];
pub(super) const STEP: &[&str] = &[
    "id",
    "title",
    "needs",
    "when",
    "run",
    "http",
    "wait",
    "manual",
    "fail",
    "ask",
    "on",
    "confirm",
    "timeout",
    "retries",
    "backoff",
    "expect",
    "outputs",
    "for_each",
    "max_parallel",
    "max_failures",
    "serial",
    "idempotent",
    "read_only",
    "continue_on_failure",
    "rollback",
    "env",
    "stdin",
    "uses",
    "with",
    "commit",
    "on_failure",
    "where",
    "order",
    "deadline",
    "retry",
];
pub(super) const BODY: &[&str] = &[
    "run", "http", "wait", "manual", "on", "timeout", "env", "stdin",
];
pub(super) const KINDS: &[&str] = &["run", "http", "wait", "manual", "fail", "ask"];
pub(super) const GATE: &[&str] = &[
    "message",
    "approvals",
    "other_approver",
    "approvers",
    "timeout",
];
pub(super) const HTTP: &[&str] = &[
    "method",
    "url",
    "get",
    "put",
    "post",
    "delete",
    "patch",
    "head",
    "headers",
    "query",
    "json",
    "body",
    "timeout",
    "follow_redirects",
    "sensitive",
    "ca_cert",
    "client_cert",
    "client_key",
    "insecure",
];
pub(super) const OUTPUT: &[&str] = &["value", "secret"];
pub(super) const HTTP_VERBS: &[&str] = &["get", "put", "post", "delete", "patch", "head"];
pub(super) const WAIT: &[&str] = &["run", "on", "http", "until", "every", "backoff", "timeout"];
pub(super) const EXPECT: &[&str] = &[
    "exit_code",
    "stdout",
    "stderr",
    "status",
    "json",
    "body_contains",
    "that",
];
pub(super) const FOR_EACH: &[&str] = &["items", "until", "on_item_failure", "answers"];

/// Reads the whole document. `None` only when the root is not a runbook mapping at all.
/// YAML tree → [`Runbook`]; `composed` are the dotted names `uses:` expansion made.
pub(super) fn convert_composed(
    root: &Node,
    composed: std::collections::HashSet<String>,
) -> (Option<Runbook>, Vec<Diagnostic>) {
    let mut r = Reader::new();
    r.composed = composed;
    let runbook = read_runbook(&mut r, root);
    (runbook, r.diags)
}

fn read_runbook(r: &mut Reader, root: &Node) -> Option<Runbook> {
    let f = r.fields(root, "the runbook", TOP)?;
    let name = match f.get("runbook") {
        Some(n) => r.string(n, "`runbook` (the name)").unwrap_or_default(),
        None => {
            r.missing(&f, "runbook", "a runbook");
            String::new()
        }
    };
    let version = match f.get("version") {
        Some(n) => match r.uint(n, "`version`", u64::from(u32::MAX)) {
            Some(1) => 1,
            Some(v) => {
                r.push(
                    Diagnostic::error(
                        "unsupported-version",
                        format!("runbook format version {v} is not supported"),
                    )
                    .with_span(n.span.clone(), "this version")
                    .with_help("this runbook binary reads format version 1"),
                );
                1
            }
            None => 1,
        },
        None => {
            r.missing(&f, "version", "a runbook");
            1
        }
    };
    let description = f
        .get("description")
        .and_then(|n| r.string(n, "`description`"))
        .unwrap_or_default();
    let inputs = f
        .get("inputs")
        .map(|n| read_inputs(r, n))
        .unwrap_or_default();
    let hosts = f.get("hosts").map(|n| read_hosts(r, n)).unwrap_or_default();
    let groups = f
        .get("groups")
        .map(|n| read_groups(r, n))
        .unwrap_or_default();
    let defaults = f
        .get("defaults")
        .map(|n| read_defaults(r, n))
        .unwrap_or_default();
    let lock = f.get("lock").and_then(|n| r.tmpl(n, "`lock`"));
    let steps = match f.get("steps") {
        Some(n) => read_steps(r, n, &defaults, "`steps`"),
        None => {
            r.missing(&f, "steps", "a runbook");
            Vec::new()
        }
    };
    let finally = f
        .get("finally")
        .map(|n| read_steps(r, n, &defaults, "`finally`"))
        .unwrap_or_default();
    let mut outputs = Vec::new();
    if let Some(n) = f.get("outputs") {
        for (k, v) in map_pairs(r, n, "`outputs`") {
            let (Some(name), Some(expr)) = (r.named(k, "an output name"), r.tmpl(v, "an output"))
            else {
                continue;
            };
            outputs.push((name, expr));
        }
    }
    Some(Runbook {
        outputs,
        name,
        version,
        description,
        inputs,
        hosts,
        groups,
        defaults,
        lock,
        steps,
        finally,
    })
}

fn map_pairs<'n>(r: &mut Reader, node: &'n Node, what: &str) -> &'n [(Node, Node)] {
    match &node.kind {
        NodeKind::Map(pairs) => pairs,
        _ if node.is_null() => &[],
        _ => {
            r.push(
                Diagnostic::error(
                    "wrong-type",
                    format!("{what} must be a mapping, found {}", node.describe()),
                )
                .with_span(node.span.clone(), "expected a mapping"),
            );
            &[]
        }
    }
}

fn check_identifier(r: &mut Reader, name: &str, node: &Node, what: &str) {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        r.push(
            Diagnostic::error(
                "invalid-id",
                format!("{what} `{name}` is not a valid identifier"),
            )
            .with_span(node.span.clone(), "letters, digits and `_` only")
            .with_help(
                "template variables use this name, so it must look like `node` or `vault_addr`",
            ),
        );
    }
}

/// Host and group names become parts of file names (`steps/STEP.HOST.stdout.log`) and
/// labels: letters, digits, `-` and `_`, starting with a letter or digit.
fn check_name(r: &mut Reader, name: &str, node: &Node, what: &str) {
    let ok = r.composed.contains(name)
        || name.len() <= 100
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        r.push(
            Diagnostic::error("invalid-id", format!("{what} `{name}` is not valid"))
                .with_span(node.span.clone(), "letters, digits, `-` and `_` only")
                .with_help("names are used in file names and labels: use a short name such as `vault-2` or `lb`"),
        );
    }
}

fn read_hosts(r: &mut Reader, node: &Node) -> Vec<Host> {
    let mut out = Vec::new();
    for (k, v) in map_pairs(r, node, "`hosts`") {
        let Some(name) = r.string(k, "a host name") else {
            continue;
        };
        check_name(r, &name, k, "host name");
        let Some(f) = r.fields(v, "a host", HOST) else {
            continue;
        };
        let what = |field: &str| format!("`{field}` of host `{name}`");
        let address = match f.get("address") {
            Some(n) => r.tmpl(n, &what("address")),
            None => {
                r.missing(&f, "address", &format!("host `{name}`"));
                None
            }
        };
        let port = f
            .get("port")
            .and_then(|n| r.uint(n, &what("port"), 65535))
            .map(|p| p as u16);
        out.push(Host {
            span: k.span.clone(),
            address: address.unwrap_or(Tmpl {
                src: String::new(),
                span: k.span.clone(),
            }),
            user: f.get("user").and_then(|n| r.tmpl(n, &what("user"))),
            port,
            identity_file: f
                .get("identity_file")
                .and_then(|n| r.string(n, &what("identity_file"))),
            jump: f.get("jump").and_then(|n| r.named(n, &what("jump"))),
            known_hosts: f
                .get("known_hosts")
                .and_then(|n| r.string(n, &what("known_hosts"))),
            vars: super::targets::read_vars(r, f.get("vars"), &what("vars")),
            name,
        });
    }
    out
}

fn read_groups(r: &mut Reader, node: &Node) -> Vec<Group> {
    let mut out = Vec::new();
    for (k, v) in map_pairs(r, node, "`groups`") {
        let Some(name) = r.string(k, "a group name") else {
            continue;
        };
        check_name(r, &name, k, "group name");
        let hosts = r.names(v, &format!("the hosts of group `{name}`"));
        out.push(Group {
            name,
            span: k.span.clone(),
            hosts,
        });
    }
    out
}

fn read_defaults(r: &mut Reader, node: &Node) -> Defaults {
    let mut d = Defaults::default();
    let Some(f) = r.fields(node, "`defaults`", DEFAULTS) else {
        return d;
    };
    if let Some(n) = f.get("timeout") {
        d.timeout = r.duration(n, "`defaults.timeout`");
    }
    if let Some(n) = f.get("retries") {
        d.retries = r.uint(n, "`defaults.retries`", 100).unwrap_or(0) as u32;
    }
    if let Some(n) = f.get("backoff")
        && let Some(b) = r.duration(n, "`defaults.backoff`")
    {
        d.backoff = b;
    }
    if let Some(n) = f.get("gate_timeout")
        && let Some(t) = r.duration(n, "`defaults.gate_timeout`")
    {
        d.gate_timeout = t;
    }
    d
}
