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
pub(super) const FOR_EACH: &[&str] = &["items", "until"];

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

fn read_inputs(r: &mut Reader, node: &Node) -> Vec<Input> {
    let mut out = Vec::new();
    for (k, v) in map_pairs(r, node, "`inputs`") {
        let Some(name) = r.string(k, "an input name") else {
            continue;
        };
        check_identifier(r, &name, k, "input name");
        let mut input = Input {
            name,
            span: k.span.clone(),
            description: String::new(),
            required: false,
            default: None,
            default_span: None,
            ty: InputType::String,
            secret: false,
            from_env: None,
            from_file: None,
            allowed: Vec::new(),
            pattern: None,
            min_length: None,
        };
        if v.is_null() {
            out.push(input);
            continue;
        }
        let Some(f) = r.fields(v, "an input", INPUT) else {
            continue;
        };
        let what = |field: &str| format!("`{field}` of input `{}`", input.name);
        if let Some(n) = f.get("description") {
            input.description = r.string(n, &what("description")).unwrap_or_default();
        }
        if let Some(n) = f.get("required") {
            input.required = r.boolean(n, &what("required")).unwrap_or(false);
        }
        if let Some(n) = f.get("secret") {
            input.secret = r.boolean(n, &what("secret")).unwrap_or(false);
        }
        if let Some(n) = f.get("type") {
            input.ty = match n.as_str() {
                Some("string") => InputType::String,
                Some("int") => InputType::Int,
                Some("bool") => InputType::Bool,
                Some("list") => InputType::List,
                _ => {
                    r.push(
                        Diagnostic::error(
                            "invalid-value",
                            format!("{} must be string, int, bool or list", what("type")),
                        )
                        .with_span(n.span.clone(), "unknown type"),
                    );
                    InputType::String
                }
            };
        }
        if let Some(n) = f.get("list")
            && r.boolean(n, &what("list")) == Some(true)
        {
            input.ty = InputType::List;
        }
        if let Some(n) = f.get("default") {
            input.default = Some(to_json(n));
            input.default_span = Some(n.span.clone());
        }
        input.from_env = f
            .get("from_env")
            .and_then(|n| r.string(n, &what("from_env")));
        input.from_file = f
            .get("from_file")
            .and_then(|n| r.string(n, &what("from_file")));
        if let Some(n) = f.get("allowed")
            && let Some(items) = r.seq(n, &what("allowed"))
        {
            input.allowed = items
                .iter()
                .filter_map(|i| r.string(i, &what("allowed")))
                .collect();
        }
        if let Some(n) = f.get("pattern")
            && let Some(re) = r.regex(n, &what("pattern"))
        {
            // Anchor it: a pattern describes the whole value, not a part of it.
            input.pattern = regex::Regex::new(&format!("^(?:{})$", re.as_str())).ok();
        }
        if let Some(n) = f.get("min_length") {
            input.min_length = r.uint(n, &what("min_length"), 1 << 20).map(|v| v as usize);
        }
        if input.secret && input.default.is_some() {
            r.push(
                Diagnostic::error("secret-default", format!("secret input `{}` has a default", input.name))
                    .with_span(input.default_span.clone().unwrap_or(input.span.clone()), "a secret in the runbook file")
                    .with_help("secrets come from the environment (`from_env`), a file (`from_file`) or a prompt, never from the runbook"),
            );
        }
        if input.required && input.default.is_some() {
            r.push(
                Diagnostic::warning(
                    "required-with-default",
                    format!("input `{}` is required but has a default", input.name),
                )
                .with_span(
                    f.key_span("required").unwrap_or(input.span.clone()),
                    "required here",
                )
                .with_help("drop `required: true`; the default makes it optional"),
            );
        }
        out.push(input);
    }
    out
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

fn read_steps(r: &mut Reader, node: &Node, defaults: &Defaults, what: &str) -> Vec<Step> {
    let Some(items) = r.seq(node, what) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|n| read_step(r, n, defaults))
        .collect()
}

fn read_step(r: &mut Reader, node: &Node, defaults: &Defaults) -> Option<Step> {
    let f = r.fields(node, "a step", STEP)?;
    let id = match f.get("id") {
        Some(n) => r.named(n, "a step `id`")?,
        None => {
            r.missing(&f, "id", "every step");
            return None;
        }
    };
    let valid_id = r.composed.contains(&id.name)
        || id.name.len() <= 100
            && id
                .name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && id
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_id {
        r.push(
            Diagnostic::error("invalid-id", format!("step id `{}` is not valid", id.name))
                .with_span(id.span.clone(), "letters, digits, `-` and `_` only")
                .with_help("use a short kebab-case name such as `halt-traffic`"),
        );
    }
    let id_name = id.name.clone();
    let what = |field: &str| format!("`{field}` of step `{id_name}`");
    let body = read_body(r, &f, &what, true);
    let confirm = f
        .get("confirm")
        .and_then(|n| read_gate(r, n, &what("confirm")));
    let body = match body {
        Some(b) => b,
        None => {
            if f.has("uses") {
                // A call: its work is the inlined steps before it.
            } else if confirm.is_none() && !f.pairs_empty_of(KINDS) {
                // A kind was given but failed to read: already reported.
            } else if confirm.is_none() {
                let span = id.span.clone();
                r.push(
                    Diagnostic::error("missing-step-kind", format!("step `{}` does nothing", id.name))
                        .with_span(span, "this step")
                        .with_help("give it one of `run`, `http`, `wait` or `manual` (or only a `confirm` for a checkpoint)"),
                );
            }
            Body {
                action: Action::Checkpoint,
                on: f.get("on").and_then(|n| r.named(n, &what("on"))),
                timeout: None,
                env: Vec::new(),
                stdin: None,
                span: node.span.clone(),
            }
        }
    };
    let mut step = Step {
        title: f.get("title").and_then(|n| r.tmpl(n, &what("title"))),
        needs: f
            .get("needs")
            .map(|n| r.names(n, &what("needs")))
            .unwrap_or_default(),
        when: f.get("when").and_then(|n| r.tmpl(n, &what("when"))),
        body,
        confirm,
        retries: f
            .get("retries")
            .and_then(|n| r.uint(n, &what("retries"), 100))
            .map_or(defaults.retries, |n| n as u32),
        backoff: f
            .get("backoff")
            .and_then(|n| r.duration(n, &what("backoff")))
            .unwrap_or(defaults.backoff),
        expect: f
            .get("expect")
            .map(|n| read_expect(r, n, &what("expect")))
            .unwrap_or_default(),
        outputs: Vec::new(),
        secret_outputs: Vec::new(),
        for_each: f
            .get("for_each")
            .and_then(|n| read_for_each(r, n, &what("for_each"))),
        max_parallel: f
            .get("max_parallel")
            .and_then(|n| r.uint(n, &what("max_parallel"), 10_000))
            .map(|n| n.max(1) as u32),
        max_failures: f
            .get("max_failures")
            .and_then(|n| read_max_failures(r, n, &what("max_failures"))),
        serial: f
            .get("serial")
            .and_then(|n| r.uint(n, &what("serial"), 10_000))
            .map(|n| n.max(1) as u32),
        idempotent: f
            .get("idempotent")
            .and_then(|n| r.boolean(n, &what("idempotent")))
            .unwrap_or(false),
        read_only: f
            .get("read_only")
            .and_then(|n| r.boolean(n, &what("read_only")))
            .unwrap_or(false),
        continue_on_failure: false,
        on_failure: read_on_failure(r, &f, &what),
        commit: f
            .get("commit")
            .and_then(|n| r.boolean(n, &what("commit")))
            .unwrap_or(false),
        rollback: None,
        uses: f.get("uses").and_then(|n| r.string(n, &what("uses"))),
        span: node.span.clone(),
        id,
    };
    step.continue_on_failure = step.on_failure == OnFailure::Continue;
    // The run-wide timeout bounds commands and requests; waits carry their own, and a
    // manual step or a gate waits for a person, which no default should cut short.
    if step.body.timeout.is_none() && matches!(step.body.action, Action::Run(_) | Action::Http(_)) {
        step.body.timeout = defaults.timeout;
    }
    if let Some(n) = f.get("outputs") {
        for (k, v) in map_pairs(r, n, &what("outputs")) {
            // `name: expression`, or `name: { value: expression, secret: true }`.
            let fields = if matches!(v.kind, crate::load::NodeKind::Map(_)) {
                r.fields(v, "an output", OUTPUT)
            } else {
                None
            };
            let (v, secret) = match fields {
                Some(f) => {
                    let secret = f
                        .get("secret")
                        .and_then(|n| r.boolean(n, "`secret` of an output"))
                        .unwrap_or(false);
                    match f.get("value") {
                        Some(value) => (value, secret),
                        None => {
                            r.missing(&f, "value", "an output");
                            continue;
                        }
                    }
                }
                None => (v, false),
            };
            if let (Some(name), Some(expr)) = (
                r.named(k, "an output name"),
                r.tmpl(v, "an output expression"),
            ) {
                check_identifier(r, &name.name, k, "output name");
                if secret {
                    step.secret_outputs.push(name.name.clone());
                }
                step.outputs.push((name, expr));
            }
        }
    }
    if let Some(n) = f.get("rollback") {
        step.rollback = read_rollback(r, n, &step.id.name);
        // `rollback: "cmd"` on a remote step undoes it where it ran: on the same host(s).
        if n.as_str().is_some()
            && let Some(b) = &mut step.rollback
        {
            b.on = step.body.on.clone();
        }
    }
    super::ask::complete_step(r, &mut step);
    Some(step)
}

impl Fields<'_> {
    /// True when none of `keys` is present.
    fn pairs_empty_of(&self, keys: &[&str]) -> bool {
        keys.iter().all(|k| !self.has(k))
    }
}

fn read_rollback(r: &mut Reader, node: &Node, step: &str) -> Option<Body> {
    // `rollback: "command"` is shorthand for a local `run`.
    if let Some(text) = node.as_str()
        && !node.is_null()
    {
        return Some(Body {
            action: Action::Run(Tmpl {
                src: text.to_string(),
                span: node.span.clone(),
            }),
            on: None,
            timeout: None,
            env: Vec::new(),
            stdin: None,
            span: node.span.clone(),
        });
    }
    let f = r.fields(node, "a rollback", BODY)?;
    let what = |field: &str| format!("`rollback.{field}` of step `{step}`");
    let body = read_body(r, &f, &what, false);
    if body.is_none() && f.pairs_empty_of(KINDS) {
        r.push(
            Diagnostic::error(
                "missing-step-kind",
                format!("the rollback of step `{step}` does nothing"),
            )
            .with_span(node.span.clone(), "this rollback")
            .with_help("give it one of `run`, `http`, `wait` or `manual`"),
        );
    }
    body
}

/// Reads the kind (`run`/`http`/`wait`/`manual`) and where/how it runs.
fn read_body(
    r: &mut Reader,
    f: &Fields<'_>,
    what: &dyn Fn(&str) -> String,
    _is_step: bool,
) -> Option<Body> {
    let present: Vec<&str> = KINDS.iter().copied().filter(|k| f.has(k)).collect();
    if present.len() > 1 {
        let second = present[1];
        r.push(
            Diagnostic::error(
                "multiple-step-kinds",
                format!(
                    "a step does one thing, but this one has both `{}` and `{second}`",
                    present[0]
                ),
            )
            .with_span(
                f.key_span(second).unwrap_or(f.node.span.clone()),
                "second kind",
            )
            .with_help("split it into two steps joined by `needs`"),
        );
    }
    let kind = *present.first()?;
    let node = f.get(kind)?;
    let action = match kind {
        "run" => Action::Run(r.tmpl(node, &what("run"))?),
        "manual" => Action::Manual(r.tmpl(node, &what("manual"))?),
        "fail" => Action::Fail(r.tmpl(node, &what("fail"))?),
        "ask" => Action::Ask(Box::new(super::ask::read_ask(r, node, &what("ask"))?)),
        "http" => Action::Http(Box::new(read_http(r, node, &what("http"))?)),
        _ => Action::Wait(Box::new(read_wait(r, node, &what("wait"))?)),
    };
    Some(Body {
        action,
        on: f.get("on").and_then(|n| r.named(n, &what("on"))),
        timeout: f
            .get("timeout")
            .and_then(|n| r.duration(n, &what("timeout"))),
        env: f
            .get("env")
            .map(|n| r.tmpl_map(n, &what("env")))
            .unwrap_or_default(),
        stdin: f.get("stdin").and_then(|n| r.tmpl(n, &what("stdin"))),
        span: f.node.span.clone(),
    })
}

fn read_gate(r: &mut Reader, node: &Node, what: &str) -> Option<Gate> {
    if node.as_str().is_some() {
        return Some(Gate {
            text: r.tmpl(node, what)?,
            approvals: 1,
            other_approver: false,
            approvers: Vec::new(),
            timeout: None,
        });
    }
    let f = r.fields(node, what, GATE)?;
    let text = match f.get("message") {
        Some(n) => r.tmpl(n, what)?,
        None => {
            r.missing(&f, "message", what);
            return None;
        }
    };
    Some(Gate {
        text,
        approvals: f
            .get("approvals")
            .and_then(|n| r.uint(n, what, 10))
            .map_or(1, |n| n.max(1) as u32),
        other_approver: f
            .get("other_approver")
            .and_then(|n| r.boolean(n, what))
            .unwrap_or(false),
        approvers: f
            .get("approvers")
            .and_then(|n| r.seq(n, what))
            .map(|items| items.iter().filter_map(|i| r.string(i, what)).collect())
            .unwrap_or_default(),
        timeout: f.get("timeout").and_then(|n| r.duration(n, what)),
    })
}

fn read_http(r: &mut Reader, node: &Node, what: &str) -> Option<HttpSpec> {
    let f = r.fields(node, what, HTTP)?;
    let verbs: Vec<&str> = HTTP_VERBS.iter().copied().filter(|v| f.has(v)).collect();
    let (method, url) = match (verbs.as_slice(), f.get("url")) {
        ([verb], None) => (
            verb.to_ascii_uppercase(),
            f.get(verb).and_then(|n| r.tmpl(n, what)),
        ),
        ([], Some(u)) => {
            let method = match f.get("method") {
                Some(m) => r.string(m, what).unwrap_or_default().to_ascii_uppercase(),
                None => "GET".to_string(),
            };
            (method, r.tmpl(u, what))
        }
        _ => {
            r.push(
                Diagnostic::error("invalid-request", format!("{what} needs exactly one of `url` or `get`/`put`/`post`/`delete`/`patch`/`head`"))
                    .with_span(f.node.span.start..f.node.span.start + 1, "this request")
                    .with_help("write `get: https://…` or `method: PUT` with `url: https://…`"),
            );
            return None;
        }
    };
    if ![
        "GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "LIST",
    ]
    .contains(&method.as_str())
    {
        r.push(
            Diagnostic::error("invalid-value", format!("`{method}` is not an HTTP method"))
                .with_span(
                    f.get("method")
                        .map_or(f.node.span.clone(), |n| n.span.clone()),
                    "unknown method",
                ),
        );
    }
    if f.has("json") && f.has("body") {
        r.push(
            Diagnostic::error(
                "invalid-request",
                "a request has either `json` or `body`, not both",
            )
            .with_span(
                f.key_span("body").unwrap_or(f.node.span.clone()),
                "second body",
            ),
        );
    }
    let body = if let Some(n) = f.get("json") {
        Some(HttpBody::Json(json_tmpl(n)))
    } else {
        f.get("body")
            .and_then(|n| r.tmpl(n, what))
            .map(HttpBody::Raw)
    };
    let insecure = f
        .get("insecure")
        .and_then(|n| r.boolean(n, what))
        .unwrap_or(false);
    if insecure {
        r.push(
            Diagnostic::warning(
                "insecure-tls",
                "TLS certificate verification is turned off for this request",
            )
            .with_span(
                f.key_span("insecure").unwrap_or(f.node.span.clone()),
                "insecure: true",
            )
            .with_help("give the private CA with `ca_cert: /path/ca.pem` instead"),
        );
    }
    Some(HttpSpec {
        method,
        url: url?,
        headers: f
            .get("headers")
            .map(|n| r.tmpl_map(n, what))
            .unwrap_or_default(),
        query: f
            .get("query")
            .map(|n| r.tmpl_map(n, what))
            .unwrap_or_default(),
        body,
        timeout: f.get("timeout").and_then(|n| r.duration(n, what)),
        follow_redirects: f
            .get("follow_redirects")
            .and_then(|n| r.boolean(n, what))
            .unwrap_or(false),
        sensitive: f
            .get("sensitive")
            .and_then(|n| r.boolean(n, what))
            .unwrap_or(false),
        ca_cert: f.get("ca_cert").and_then(|n| r.tmpl(n, what)),
        client_cert: f.get("client_cert").and_then(|n| r.tmpl(n, what)),
        client_key: f.get("client_key").and_then(|n| r.tmpl(n, what)),
        insecure,
    })
}

fn json_tmpl(node: &Node) -> JsonTmpl {
    match &node.kind {
        NodeKind::Seq(items) => JsonTmpl::Array(items.iter().map(json_tmpl).collect()),
        NodeKind::Map(pairs) => JsonTmpl::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), json_tmpl(v)))
                .collect(),
        ),
        NodeKind::Scalar { text, .. } => match to_json(node) {
            serde_json::Value::Null => JsonTmpl::Null,
            serde_json::Value::Bool(b) => JsonTmpl::Bool(b),
            serde_json::Value::Number(n) => JsonTmpl::Number(n),
            _ => JsonTmpl::String(Tmpl {
                src: text.clone(),
                span: node.span.clone(),
            }),
        },
    }
}

fn read_wait(r: &mut Reader, node: &Node, what: &str) -> Option<WaitSpec> {
    let f = r.fields(node, what, WAIT)?;
    let probe = match (f.get("run"), f.get("http")) {
        (Some(cmd), None) => Probe::Run {
            command: r.tmpl(cmd, what)?,
            on: f.get("on").and_then(|n| r.named(n, what)),
        },
        (None, Some(h)) => Probe::Http(Box::new(read_http(r, h, what)?)),
        _ => {
            r.push(
                Diagnostic::error(
                    "invalid-wait",
                    format!("{what} polls exactly one probe: `run` or `http`"),
                )
                .with_span(f.node.span.start..f.node.span.start + 1, "this wait"),
            );
            return None;
        }
    };
    let until = match f.get("until") {
        Some(n) => r.tmpl(n, what)?,
        None => {
            r.missing(&f, "until", what);
            return None;
        }
    };
    let timeout = match f.get("timeout") {
        Some(n) => r.duration(n, what)?,
        None => {
            r.missing(&f, "timeout", what);
            return None;
        }
    };
    let backoff = match f.get("backoff") {
        Some(n) => match n.as_str().and_then(|s| s.parse::<f64>().ok()) {
            Some(b) if (1.0..=10.0).contains(&b) => b,
            _ => {
                r.push(
                    Diagnostic::error(
                        "invalid-value",
                        format!("`backoff` of {what} is a factor from 1 to 10"),
                    )
                    .with_span(n.span.clone(), "e.g. 1.5"),
                );
                1.0
            }
        },
        None => 1.0,
    };
    Some(WaitSpec {
        probe,
        until,
        every: f
            .get("every")
            .and_then(|n| r.duration(n, what))
            .unwrap_or(Duration::from_secs(2)),
        backoff,
        timeout,
    })
}

fn codes<T: TryFrom<u64>>(r: &mut Reader, node: &Node, what: &str, max: u64) -> Vec<T> {
    let items: Vec<&Node> = match &node.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    items
        .into_iter()
        .filter_map(|n| r.uint(n, what, max))
        .filter_map(|n| T::try_from(n).ok())
        .collect()
}

fn read_expect(r: &mut Reader, node: &Node, what: &str) -> Expect {
    let mut e = Expect::default();
    let Some(f) = r.fields(node, what, EXPECT) else {
        return e;
    };
    if let Some(n) = f.get("exit_code") {
        e.exit_codes = codes::<i32>(r, n, what, 255);
    }
    if let Some(n) = f.get("status") {
        e.status = codes::<u16>(r, n, what, 599);
    }
    e.stdout = f.get("stdout").and_then(|n| r.regex(n, what));
    e.stderr = f.get("stderr").and_then(|n| r.regex(n, what));
    e.body_contains = f.get("body_contains").and_then(|n| r.string(n, what));
    e.that = f.get("that").and_then(|n| r.tmpl(n, what));
    if let Some(n) = f.get("json") {
        for (k, v) in map_pairs(r, n, what) {
            let Some(path) = r.string(k, what) else {
                continue;
            };
            let exp = match &v.kind {
                NodeKind::Map(pairs)
                    if pairs.len() == 1 && pairs[0].0.as_str() == Some("exists") =>
                {
                    JsonExpect::Exists
                }
                _ => JsonExpect::Equals(to_json(v)),
            };
            e.json.push((path, exp));
        }
    }
    e
}

fn read_for_each(r: &mut Reader, node: &Node, what: &str) -> Option<ForEach> {
    match &node.kind {
        NodeKind::Scalar { .. } => Some(ForEach {
            items: r.tmpl(node, what)?,
            until: None,
        }),
        NodeKind::Seq(_) => Some(ForEach {
            items: Tmpl {
                src: to_json(node).to_string(),
                span: node.span.clone(),
            },
            until: None,
        }),
        NodeKind::Map(_) => {
            let f = r.fields(node, what, FOR_EACH)?;
            let items = match f.get("items") {
                Some(n) => read_for_each(r, n, what)?.items,
                None => {
                    r.missing(&f, "items", what);
                    return None;
                }
            };
            Some(ForEach {
                items,
                until: f.get("until").and_then(|n| r.tmpl(n, what)),
            })
        }
    }
}

fn read_max_failures(r: &mut Reader, node: &Node, what: &str) -> Option<MaxFailures> {
    let text = node.as_str().unwrap_or_default().trim();
    if let Some(p) = text.strip_suffix('%') {
        if let Ok(p) = p.trim().parse::<u32>()
            && p <= 100
        {
            return Some(MaxFailures::Percent(p));
        }
    } else if let Ok(n) = text.parse::<u32>() {
        return Some(MaxFailures::Count(n));
    }
    r.push(
        Diagnostic::error(
            "invalid-value",
            format!("{what} is a count (`1`) or a percentage (`30%`)"),
        )
        .with_span(node.span.clone(), "not a count or percentage"),
    );
    None
}

/// `on_failure: unwind | stop | continue`; `continue_on_failure: true` is the old spelling of
/// `continue` (both at once is an error).
fn read_on_failure(r: &mut Reader, f: &Fields<'_>, what: &dyn Fn(&str) -> String) -> OnFailure {
    let old = f
        .get("continue_on_failure")
        .and_then(|n| r.boolean(n, &what("continue_on_failure")));
    let Some(n) = f.get("on_failure") else {
        return if old == Some(true) {
            OnFailure::Continue
        } else {
            OnFailure::Unwind
        };
    };
    if old.is_some() {
        r.push(
            Diagnostic::error(
                "invalid-value",
                format!(
                    "{} and `continue_on_failure` say the same thing",
                    what("on_failure")
                ),
            )
            .with_span(n.span.clone(), "keep only this one")
            .with_help("`continue_on_failure: true` is the old spelling of `on_failure: continue`"),
        );
    }
    match n.as_str() {
        Some("unwind") => OnFailure::Unwind,
        Some("stop") => OnFailure::Stop,
        Some("continue") => OnFailure::Continue,
        _ => {
            r.push(
                Diagnostic::error(
                    "invalid-value",
                    format!(
                        "{} must be `unwind`, `stop` or `continue`",
                        what("on_failure")
                    ),
                )
                .with_span(n.span.clone(), "not one of these"),
            );
            OnFailure::Unwind
        }
    }
}
