//! Reading one step: its fields, body, rollback, gate, items and failure policy.

use super::*;

pub(super) fn read_steps(
    r: &mut Reader,
    node: &Node,
    defaults: &Defaults,
    what: &str,
) -> Vec<Step> {
    let Some(items) = r.seq(node, what) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|n| read_step(r, n, defaults))
        .collect()
}

pub(super) fn read_step(r: &mut Reader, node: &Node, defaults: &Defaults) -> Option<Step> {
    let f = r.fields(node, "a step", STEP)?;
    let id = read_id(r, &f)?;
    let id_name = id.name.clone();
    let what = |field: &str| format!("`{field}` of step `{id_name}`");
    let body = read_body(r, &f, &what, true);
    let confirm = f
        .get("confirm")
        .and_then(|n| read_gate(r, n, &what("confirm")));
    let body = body.unwrap_or_else(|| checkpoint(r, &f, node, &id, confirm.is_some(), &what));
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
        targets: Targets::default(),
        deadline: None,
        retry_when: None,
        span: node.span.clone(),
        id,
    };
    crate::validate::targets::read_step_fields(r, &f, &mut step, defaults);
    step.continue_on_failure = step.on_failure == OnFailure::Continue;
    // The run-wide timeout bounds commands and requests; waits carry their own, and a
    // manual step or a gate waits for a person, which no default should cut short.
    if step.body.timeout.is_none() && matches!(step.body.action, Action::Run(_) | Action::Http(_)) {
        step.body.timeout = defaults.timeout;
    }
    if let Some(n) = f.get("outputs") {
        read_outputs(r, n, &mut step, &what("outputs"));
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
    crate::validate::ask::complete_step(r, &mut step);
    Some(step)
}

/// A step's `id` (reported when missing or not a valid id; a missing one ends the step).
fn read_id(r: &mut Reader, f: &Fields<'_>) -> Option<Named> {
    let id = match f.get("id") {
        Some(n) => r.named(n, "a step `id`")?,
        None => {
            r.missing(f, "id", "every step");
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
    Some(id)
}

/// The body of a step without a kind: a checkpoint (only a `confirm`), or a call (`uses`);
/// a step with neither is reported as doing nothing.
fn checkpoint(
    r: &mut Reader,
    f: &Fields<'_>,
    node: &Node,
    id: &Named,
    has_confirm: bool,
    what: &dyn Fn(&str) -> String,
) -> Body {
    if f.has("uses") {
        // A call: its work is the inlined steps before it.
    } else if !has_confirm && !f.pairs_empty_of(KINDS) {
        // A kind was given but failed to read: already reported.
    } else if !has_confirm {
        let span = id.span.clone();
        r.push(
            Diagnostic::error("missing-step-kind", format!("step `{}` does nothing", id.name))
                .with_span(span, "this step")
                .with_help("give it one of `run`, `http`, `wait` or `manual` (or only a `confirm` for a checkpoint)"),
        );
    }
    Body {
        action: Action::Checkpoint,
        on: f
            .get("on")
            .and_then(|n| crate::validate::targets::read_on(r, n, &what("on"), true)),
        timeout: None,
        env: Vec::new(),
        stdin: None,
        span: node.span.clone(),
    }
}

/// A step's `outputs:`: `name: expression`, or `name: { value: expression, secret: true }`.
fn read_outputs(r: &mut Reader, n: &Node, step: &mut Step, what: &str) {
    for (k, v) in map_pairs(r, n, what) {
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

impl Fields<'_> {
    /// True when none of `keys` is present.
    pub(super) fn pairs_empty_of(&self, keys: &[&str]) -> bool {
        keys.iter().all(|k| !self.has(k))
    }
}

pub(super) fn read_rollback(r: &mut Reader, node: &Node, step: &str) -> Option<Body> {
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
pub(super) fn read_body(
    r: &mut Reader,
    f: &Fields<'_>,
    what: &dyn Fn(&str) -> String,
    is_step: bool,
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
        "ask" => Action::Ask(Box::new(crate::validate::ask::read_ask(
            r,
            node,
            &what("ask"),
        )?)),
        "http" => Action::Http(Box::new(read_http(r, node, &what("http"))?)),
        _ => Action::Wait(Box::new(read_wait(r, node, &what("wait"))?)),
    };
    Some(Body {
        action,
        on: f
            .get("on")
            .and_then(|n| crate::validate::targets::read_on(r, n, &what("on"), is_step)),
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

pub(super) fn read_gate(r: &mut Reader, node: &Node, what: &str) -> Option<Gate> {
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

pub(super) fn read_for_each(r: &mut Reader, node: &Node, what: &str) -> Option<ForEach> {
    match &node.kind {
        NodeKind::Scalar { .. } => Some(ForEach {
            items: r.tmpl(node, what)?,
            until: None,
            continue_on_item_failure: false,
            answers: None,
        }),
        NodeKind::Seq(_) => Some(ForEach {
            items: Tmpl {
                src: to_json(node).to_string(),
                span: node.span.clone(),
            },
            until: None,
            continue_on_item_failure: false,
            answers: None,
        }),
        NodeKind::Map(_) => {
            let f = r.fields(node, what, FOR_EACH)?;
            let answers = match f.get("answers") {
                Some(n) => Some(crate::validate::ask::read_answers(r, n, what)?),
                None => None,
            };
            let items = match f.get("items") {
                Some(n) => read_for_each(r, n, what)?.items,
                // `answers:` alone: nothing to loop over when the ask was skipped.
                None if answers.is_some() => Tmpl {
                    src: "[]".into(),
                    span: node.span.clone(),
                },
                None => {
                    r.missing(&f, "items", what);
                    return None;
                }
            };
            let continue_on_item_failure = match f.get("on_item_failure") {
                None => false,
                Some(n) => match n.as_str() {
                    Some("continue") => true,
                    Some("stop") => false,
                    _ => {
                        r.push(
                            Diagnostic::error(
                                "invalid-value",
                                format!("`on_item_failure` of {what} must be `stop` or `continue`"),
                            )
                            .with_span(n.span.clone(), "not one of them")
                            .with_help("`stop` (the default) ends the loop at the first failed item; `continue` runs the rest"),
                        );
                        false
                    }
                },
            };
            Some(ForEach {
                items,
                until: f.get("until").and_then(|n| r.tmpl(n, what)),
                continue_on_item_failure,
                answers,
            })
        }
    }
}

pub(super) fn read_max_failures(r: &mut Reader, node: &Node, what: &str) -> Option<MaxFailures> {
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
pub(super) fn read_on_failure(
    r: &mut Reader,
    f: &Fields<'_>,
    what: &dyn Fn(&str) -> String,
) -> OnFailure {
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
