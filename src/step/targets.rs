//! Targets chosen at run time: which members of a step's `on:` group run, and in which order
//! (`on: { hosts, from }`, `where:`, `order:`). Members are always hosts of a declared group,
//! so their addresses, users and host keys are the runbook's; a name the expressions give
//! that is not a member is an error naming it.

use minijinja::value::Value;

use super::Env;
use crate::model::*;
use crate::runner::{SshTarget, StepError};
use crate::template::{describe_error, expression_source, to_value};

/// `host` as `where:` and `order.by` see it.
pub(crate) fn host_var(rb: &Runbook, t: &SshTarget) -> Value {
    let vars = rb.host(&t.name).map(|h| h.vars.clone()).unwrap_or_default();
    to_value(serde_json::json!({
        "name": t.name, "address": t.address, "user": t.user, "port": t.port, "vars": vars,
    }))
}

/// Selects and orders `all` (the resolved members of the step's group) for one item.
pub(crate) fn select(
    env: &Env,
    step: &Step,
    all: Vec<SshTarget>,
    extra: &[(String, Value)],
) -> Result<Vec<SshTarget>, StepError> {
    let tg = &step.targets;
    if !tg.is_runtime() {
        return Ok(all);
    }
    let group = step.body.on.as_ref().map_or("", |o| o.name.as_str());
    let eval = |e: &Tmpl, more: Vec<(String, Value)>, what: &str| -> Result<Value, StepError> {
        let mut names = extra.to_vec();
        names.extend(more);
        let ctx = env.ctx().with(names);
        env.templates
            .eval(expression_source(&e.src), &ctx)
            .map_err(|err| {
                StepError::hosts(
                    env.redactor
                        .text(&format!("`{what}`: {}", describe_error(&err))),
                )
            })
    };
    let mut chosen: Vec<SshTarget> = match &tg.hosts {
        None => all.clone(),
        Some(e) => {
            let v = eval(e, Vec::new(), "on.hosts")?;
            let mut out: Vec<SshTarget> = Vec::new();
            for name in names_of(&v) {
                let t = member(&all, &name, group, expression_source(&e.src))?;
                if !out.iter().any(|o| o.name == t.name) {
                    out.push(t);
                }
            }
            out
        }
    };
    if let Some(w) = &tg.filter {
        let mut kept = Vec::new();
        for t in chosen {
            let host = vec![("host".to_string(), host_var(&env.rb, &t))];
            if eval(w, host, "where")?.is_true() {
                kept.push(t);
            }
        }
        chosen = kept;
    }
    let Some(order) = &tg.order else {
        return Ok(chosen);
    };
    if let Some(by) = &order.by {
        let mut keyed = Vec::new();
        for t in chosen {
            let host = vec![("host".to_string(), host_var(&env.rb, &t))];
            keyed.push((eval(by, host, "order.by")?, t));
        }
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        chosen = keyed.into_iter().map(|(_, t)| t).collect();
    }
    if order.reverse {
        chosen.reverse();
    }
    let pick = |e: &Tmpl, what: &str| -> Result<Vec<String>, StepError> {
        let v = eval(e, Vec::new(), what)?;
        names_of(&v)
            .iter()
            .map(|n| member(&all, n, group, expression_source(&e.src)).map(|t| t.name))
            .collect()
    };
    if let Some(first) = &order.first {
        let names = pick(first, "order.first")?;
        let (mut front, rest): (Vec<_>, Vec<_>) =
            chosen.into_iter().partition(|t| names.contains(&t.name));
        front.sort_by_key(|t| names.iter().position(|n| *n == t.name));
        chosen = front.into_iter().chain(rest).collect();
    }
    if let Some(last) = &order.last {
        let names = pick(last, "order.last")?;
        let (mut back, rest): (Vec<_>, Vec<_>) =
            chosen.into_iter().partition(|t| names.contains(&t.name));
        back.sort_by_key(|t| names.iter().position(|n| *n == t.name));
        chosen = rest.into_iter().chain(back).collect();
    }
    Ok(chosen)
}

/// The member of the group named (or addressed) `name`, or an error naming it.
/// In a called runbook (`uses:`) hosts are prefixed with the call (`unseal.vault1`): the
/// child's own names match too.
fn member(all: &[SshTarget], name: &str, group: &str, expr: &str) -> Result<SshTarget, StepError> {
    let prefixed = group
        .rsplit_once('.')
        .map(|(call, _)| format!("{call}.{name}"));
    all.iter()
        .find(|t| t.name == name || prefixed.as_ref().is_some_and(|p| *p == t.name))
        .or_else(|| all.iter().find(|t| t.address == name))
        .cloned()
        .ok_or_else(|| {
            let members: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
            StepError::hosts(format!(
                "host `{name}` (from `{expr}`) is not a member of group `{group}` (members: {})",
                members.join(", ")
            ))
        })
}

/// Host names from a value: a list of strings, or one string (split on commas, spaces and
/// newlines); `none` gives none.
fn names_of(v: &Value) -> Vec<String> {
    if v.is_none() || v.is_undefined() {
        return Vec::new();
    }
    if let Some(s) = v.as_str() {
        return s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect();
    }
    match v.try_iter() {
        Ok(items) => items.flat_map(|i| names_of(&i)).collect::<Vec<String>>(),
        Err(_) => vec![v.to_string()],
    }
}

/// What the plan says about a step whose hosts are chosen at run time.
pub(crate) fn describe(step: &Step) -> Option<String> {
    let tg = &step.targets;
    if !tg.is_runtime() {
        return None;
    }
    let group = step.body.on.as_ref().map_or("", |o| o.name.as_str());
    let mut how = Vec::new();
    if let Some(h) = &tg.hosts {
        how.push(format!("hosts: {}", expression_source(&h.src)));
    }
    if let Some(w) = &tg.filter {
        how.push(format!("where: {}", expression_source(&w.src)));
    }
    if let Some(o) = &tg.order {
        if let Some(by) = &o.by {
            how.push(format!("order by: {}", expression_source(&by.src)));
        }
        if o.reverse {
            how.push("reversed".into());
        }
        if let Some(f) = &o.first {
            how.push(format!("first: {}", expression_source(&f.src)));
        }
        if let Some(l) = &o.last {
            how.push(format!("last: {}", expression_source(&l.src)));
        }
    }
    Some(format!(
        "hosts of {group} chosen at run time by {}",
        how.join("; ")
    ))
}
