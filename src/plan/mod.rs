//! Stage 3, **plan**: resolve inputs and lay the step graph out in waves, with every template
//! rendered as far as it can be before anything runs.
//!
//! The plan is the dry run: `runbook plan` renders it ([`render`]) and `runbook exec` executes
//! the same value, so what the plan shows is what runs. Building a plan touches nothing: no
//! process, no network. A value only known at run time is shown as a placeholder naming its
//! source (`<steps.inspect_logs.stdout>`).

mod ask;
pub(crate) use ask::plan_line as ask_line;
pub(crate) mod render;
mod show;

use minijinja::value::Value;
use serde::Serialize;

use crate::fmt::human_duration;
use crate::graph;
use crate::inputs::{self, Inputs};
use crate::model::*;
use crate::template::{
    Placeholder, SecretDisplay, Target, Templates, expression_display, expression_source,
};
use crate::validate::step_var;
use show::{Shown, is_runtime_expr, show};

/// Version of the plan's JSON form (`runbook plan --format json`); bumped on any breaking change.
pub(crate) const PLAN_SCHEMA_VERSION: u32 = 1;

/// A runbook resolved against its inputs, in waves.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub schema_version: u32,
    pub runbook: String,
    pub description: String,
    pub file: String,
    pub inputs: Vec<PlanInput>,
    pub lock: Option<String>,
    /// Step indices (into `steps`) per wave: a wave's steps may run together.
    pub waves: Vec<Vec<usize>>,
    pub steps: Vec<PlannedStep>,
    pub finally: Vec<PlannedStep>,
    /// Steps with a rollback, in the order their rollbacks would run if the run failed at the
    /// very end (reverse of plan order; at run time, reverse of completion order).
    pub rollback_order: Vec<String>,
}

/// An input as the plan shows it (secrets masked).
#[derive(Debug, Clone, Serialize)]
pub struct PlanInput {
    pub name: String,
    pub value: String,
    pub source: inputs::InputSource,
    pub secret: bool,
}

/// One step as it will run.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    /// Index of the step in the runbook (`steps` then `finally`).
    #[serde(skip)]
    pub index: usize,
    pub id: String,
    pub title: Option<String>,
    pub kind: &'static str,
    pub wave: Option<usize>,
    pub needs: Vec<String>,
    pub when: Option<PlannedCondition>,
    pub targets: Vec<PlanTarget>,
    /// `on: { hosts, from }`, `where:`, `order:`: `targets` are the group's members, and
    /// this says how the run chooses among them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chosen_at_run_time: Option<String>,
    pub action: PlannedAction,
    pub gate: Option<PlannedGate>,
    pub timeout: Option<String>,
    /// Total time for all attempts and items.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    pub retries: u32,
    pub backoff: String,
    /// `retry.when`: a failed attempt is retried only when this holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_when: Option<String>,
    pub for_each: Option<PlannedForEach>,
    pub max_parallel: Option<u32>,
    pub max_failures: Option<String>,
    pub serial: Option<u32>,
    pub idempotent: bool,
    pub read_only: bool,
    pub continue_on_failure: bool,
    /// `on_failure`: `unwind`, `stop` or `continue`.
    pub on_failure: &'static str,
    /// A point of no return (`commit: true`).
    pub commit: bool,
    pub expect: Vec<String>,
    pub outputs: Vec<PlannedOutput>,
    pub rollback: Option<PlannedRollback>,
}

/// A `when` condition: decided now if it only reads inputs, else at run time.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedCondition {
    pub expression: String,
    /// `Some(true/false)` when decided by the inputs alone.
    pub value: Option<bool>,
}

/// A resolved SSH target.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanTarget {
    pub host: String,
    pub user: Option<String>,
    pub address: String,
    pub port: Option<u16>,
    pub jump: Option<String>,
}

impl PlanTarget {
    /// `user@address:port` as ssh would be told.
    pub fn destination(&self) -> String {
        crate::fmt::destination(self.user.as_deref(), &self.address, self.port)
    }
}

/// What a step does, rendered.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PlannedAction {
    Run {
        command: String,
        env: Vec<(String, String)>,
        stdin: Option<String>,
    },
    Http(PlannedRequest),
    Wait {
        probe: Box<PlannedAction>,
        until: String,
        every: String,
        backoff: f64,
        timeout: String,
    },
    Manual {
        instructions: String,
    },
    Checkpoint,
    /// The step fails on purpose with this message.
    Fail {
        message: String,
    },
    /// A value asked of people (`ask:`).
    Ask {
        prompt: String,
        #[serde(rename = "type")]
        ty: String,
        secret: bool,
        pattern: Option<String>,
        from: u32,
        /// `from:` known at run time (the expression).
        #[serde(skip_serializing_if = "Option::is_none")]
        from_expr: Option<String>,
    },
    /// A called runbook (`uses:`), whose steps are listed before it as `<id>.<step>`.
    Uses {
        file: String,
    },
}

/// An HTTP request, rendered (secrets masked in plans).
#[derive(Debug, Clone, Serialize)]
pub struct PlannedRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub body: Option<String>,
    pub timeout: Option<String>,
    pub follow_redirects: bool,
    /// The response is kept out of output, journal and transcripts.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
    pub ca_cert: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub insecure: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedGate {
    pub message: String,
    pub approvals: u32,
    pub other_approver: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    pub timeout: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedForEach {
    /// The items if known now (secrets masked), else the expression.
    pub items: Option<Vec<String>>,
    pub expression: String,
    pub until: Option<String>,
    /// `on_item_failure: continue`: a failed item does not stop the others.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub on_item_failure_continue: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedOutput {
    pub name: String,
    pub expression: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedRollback {
    pub targets: Vec<PlanTarget>,
    pub action: PlannedAction,
    pub timeout: Option<String>,
}

/// A problem that stops a plan from being built (beyond validation).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

/// Dependencies of the main steps as indices.
pub(crate) fn step_deps(rb: &Runbook) -> Vec<Vec<usize>> {
    let index: std::collections::HashMap<String, usize> = rb
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (step_var(&s.id.name), i))
        .collect();
    rb.steps
        .iter()
        .map(|s| {
            let mut d: Vec<usize> = s
                .needs
                .iter()
                .filter_map(|n| index.get(&step_var(&n.name)).copied())
                .collect();
            d.sort_unstable();
            d.dedup();
            d
        })
        .collect()
}

/// The template context of a plan: inputs known, everything else a placeholder.
pub(crate) fn plan_context(inputs: &Inputs) -> Value {
    let mut entries = inputs.context_entries();
    let all: Vec<(String, Value)> = entries.clone();
    entries.push(("inputs".into(), crate::template::map(all)));
    entries.push((
        "steps".into(),
        Value::from_object(Placeholder("steps".into())),
    ));
    entries.push(("run".into(), Value::from_object(Placeholder("run".into()))));
    entries.push((
        "host".into(),
        Value::from_object(Placeholder("host".into())),
    ));
    entries.push((
        "item".into(),
        Value::from_object(Placeholder("item".into())),
    ));
    entries.push((
        "item_index".into(),
        Value::from_object(Placeholder("item_index".into())),
    ));
    crate::template::map(entries)
}

/// Builds the plan. `file` is shown in the header.
pub fn build(rb: &Runbook, inputs: &Inputs, file: &str) -> Result<Plan, PlanError> {
    let deps = step_deps(rb);
    let waves = graph::waves(&deps).map_err(|_| PlanError("dependency cycle".into()))?;
    let t = Templates::new(SecretDisplay::Mask);
    let ctx = plan_context(inputs);
    let mut wave_of = vec![0usize; rb.steps.len()];
    for (w, ids) in waves.iter().enumerate() {
        for &i in ids {
            wave_of[i] = w;
        }
    }
    let mut steps = Vec::with_capacity(rb.steps.len());
    for (i, step) in rb.steps.iter().enumerate() {
        steps.push(plan_step(rb, &t, &ctx, step, i, Some(wave_of[i]))?);
    }
    let mut finally = Vec::new();
    for (k, step) in rb.finally.iter().enumerate() {
        finally.push(plan_step(rb, &t, &ctx, step, rb.steps.len() + k, None)?);
    }
    let order: Vec<usize> = waves.iter().flatten().copied().collect();
    let rollback_order = order
        .iter()
        .rev()
        .filter(|&&i| rb.steps[i].rollback.is_some())
        .map(|&i| rb.steps[i].id.name.clone())
        .collect();
    let lock = match &rb.lock {
        Some(l) => Some(
            t.render(&l.src, &ctx, Target::Text)
                .map_err(|e| PlanError(format!("lock: {}", crate::template::describe_error(&e))))?,
        ),
        None => None,
    };
    Ok(Plan {
        schema_version: PLAN_SCHEMA_VERSION,
        runbook: rb.name.clone(),
        description: rb.description.clone(),
        file: file.to_string(),
        inputs: inputs
            .values
            .iter()
            .map(|r| PlanInput {
                name: r.name.clone(),
                value: r.display(),
                source: r.source.clone(),
                secret: r.secret,
            })
            .collect(),
        lock,
        waves,
        steps,
        finally,
        rollback_order,
    })
}

/// A `for_each` as planned: its items when the inputs decide them.
fn planned_for_each(t: &Templates, ctx: &Value, fe: &ForEach) -> PlannedForEach {
    let expr = expression_source(&fe.items.src);
    let items = if is_runtime_expr(t, expr) {
        None
    } else {
        t.eval(expr, ctx)
            .ok()
            .filter(|v| v.downcast_object_ref::<Placeholder>().is_none())
            .and_then(|v| {
                v.try_iter()
                    .ok()
                    .map(|it| it.map(|x| x.to_string()).collect())
            })
    };
    PlannedForEach {
        items,
        expression: expression_display(&fe.items.src).to_string(),
        until: fe
            .until
            .as_ref()
            .map(|u| expression_display(&u.src).to_string()),
        on_item_failure_continue: fe.continue_on_item_failure,
    }
}

/// Where a body runs: its `on:`, or for a wait whose probe names a host, the probe's.
fn body_on(b: &Body) -> Option<&Named> {
    b.on.as_ref().or(match &b.action {
        Action::Wait(w) => match &w.probe {
            Probe::Run { on, .. } => on.as_ref(),
            Probe::Http(_) => None,
        },
        _ => None,
    })
}

/// Resolves the SSH targets of `on:` for display (the run's resolver, masked).
pub(crate) fn targets(
    rb: &Runbook,
    t: &Templates,
    ctx: &Value,
    on: Option<&Named>,
) -> Result<Vec<PlanTarget>, PlanError> {
    let Some(on) = on else { return Ok(Vec::new()) };
    let resolved = crate::step::hosts::resolve(&Shown(t), rb, on, ctx).map_err(PlanError)?;
    Ok(resolved
        .into_iter()
        .map(|h| PlanTarget {
            host: h.name,
            user: h.user,
            address: h.address,
            port: h.port,
            jump: h.jump,
        })
        .collect())
}

/// Renders a step body's action for display (plan) with `ctx`: the run's render functions
/// with a masking renderer.
pub(crate) fn plan_action(
    t: &Templates,
    action: &Action,
    body: &Body,
    ctx: &Value,
) -> Result<PlannedAction, PlanError> {
    let r = Shown(t);
    Ok(match action {
        Action::Run(cmd) => planned_run(&r, cmd, body, ctx, false)?,
        Action::Http(h) => PlannedAction::Http(plan_request(&r, h, ctx)?),
        Action::Wait(w) => PlannedAction::Wait {
            probe: Box::new(match &w.probe {
                Probe::Run { command, .. } => planned_run(&r, command, body, ctx, true)?,
                Probe::Http(h) => PlannedAction::Http(plan_request(&r, h, ctx)?),
            }),
            until: expression_display(&w.until.src).to_string(),
            every: human_duration(w.every),
            backoff: w.backoff,
            timeout: human_duration(w.timeout),
        },
        Action::Manual(text) => PlannedAction::Manual {
            instructions: crate::step::manual::render(&r, text, ctx).map_err(PlanError)?,
        },
        Action::Checkpoint => PlannedAction::Checkpoint,
        Action::Fail(m) => PlannedAction::Fail {
            message: crate::step::fail::render(&r, m, ctx).map_err(PlanError)?,
        },
        Action::Ask(a) => ask::planned(&r, a, ctx).map_err(PlanError)?,
    })
}

/// A command as the plan shows it; `probe`: a wait's probe, which gets the body's `env:`
/// and `stdin:` too.
fn planned_run(
    r: &Shown,
    cmd: &Tmpl,
    body: &Body,
    ctx: &Value,
    probe: bool,
) -> Result<PlannedAction, PlanError> {
    let what = if probe { "probe" } else { "command" };
    let rendered = crate::step::run::render(r, cmd, body, ctx, what).map_err(PlanError)?;
    Ok(PlannedAction::Run {
        env: rendered.all_env(),
        command: rendered.command,
        stdin: rendered.stdin,
    })
}

fn plan_request(r: &Shown, h: &HttpSpec, ctx: &Value) -> Result<PlannedRequest, PlanError> {
    let rendered = crate::step::http::render(r, h, ctx).map_err(PlanError)?;
    Ok(PlannedRequest {
        method: rendered.method,
        url: rendered.url,
        headers: rendered.headers,
        query: rendered.query,
        body: rendered.body,
        timeout: h.timeout.map(human_duration),
        follow_redirects: h.follow_redirects,
        sensitive: h.sensitive,
        ca_cert: rendered.ca_cert,
        client_cert: rendered.client_cert,
        client_key: rendered.client_key,
        insecure: h.insecure,
    })
}

fn expect_lines(e: &Expect, kind: &str) -> Vec<String> {
    let mut out = Vec::new();
    match kind {
        "run" if !e.exit_codes.is_empty() && e.exit_codes != [0] => {
            out.push(format!("exit code in {:?}", e.exit_codes));
        }
        "http" if !e.status.is_empty() => out.push(format!("status in {:?}", e.status)),
        _ => {}
    }
    if let Some(r) = &e.stdout {
        out.push(format!("stdout matches /{}/", r.as_str()));
    }
    if let Some(r) = &e.stderr {
        out.push(format!("stderr matches /{}/", r.as_str()));
    }
    for (path, exp) in &e.json {
        out.push(match exp {
            JsonExpect::Exists => format!("json {path} exists"),
            JsonExpect::Equals(v) => format!("json {path} == {v}"),
        });
    }
    if let Some(b) = &e.body_contains {
        out.push(format!("body contains {b:?}"));
    }
    if let Some(t) = &e.that {
        out.push(expression_display(&t.src).to_string());
    }
    out
}

fn plan_step(
    rb: &Runbook,
    t: &Templates,
    ctx: &Value,
    step: &Step,
    index: usize,
    wave: Option<usize>,
) -> Result<PlannedStep, PlanError> {
    let when = match &step.when {
        Some(w) => {
            let expr = expression_source(&w.src);
            let value = if is_runtime_expr(t, expr) {
                None
            } else {
                t.eval(expr, ctx).ok().map(|v| v.is_true())
            };
            Some(PlannedCondition {
                expression: expression_display(&w.src).to_string(),
                value,
            })
        }
        None => None,
    };
    let for_each = step
        .for_each
        .as_ref()
        .map(|fe| planned_for_each(t, ctx, fe));
    let rollback = match &step.rollback {
        Some(b) => Some(PlannedRollback {
            targets: targets(rb, t, ctx, body_on(b))?,
            action: plan_action(t, &b.action, b, ctx)?,
            timeout: b.timeout.map(human_duration),
        }),
        None => None,
    };
    Ok(PlannedStep {
        index,
        id: step.id.name.clone(),
        title: step
            .title
            .as_ref()
            .map(|x| show(t, x, ctx, Target::Text))
            .transpose()?,
        kind: step.body.action.kind(),
        wave,
        needs: step.needs.iter().map(|n| n.name.clone()).collect(),
        when,
        targets: targets(rb, t, ctx, body_on(&step.body))?,
        chosen_at_run_time: crate::step::targets::describe(step),
        action: match &step.uses {
            Some(file) => PlannedAction::Uses { file: file.clone() },
            None => plan_action(t, &step.body.action, &step.body, ctx)?,
        },
        gate: match &step.confirm {
            Some(g) => Some(PlannedGate {
                message: show(t, &g.text, ctx, Target::Text)?,
                approvals: g.approvals,
                other_approver: g.other_approver,
                approvers: g.approvers.clone(),
                timeout: human_duration(g.timeout.unwrap_or(rb.defaults.gate_timeout)),
            }),
            None => None,
        },
        timeout: step.body.timeout.map(human_duration),
        deadline: step.deadline.map(human_duration),
        retries: step.retries,
        backoff: human_duration(step.backoff),
        retry_when: step
            .retry_when
            .as_ref()
            .map(|w| expression_display(&w.src).to_string()),
        for_each,
        max_parallel: step.max_parallel,
        max_failures: step.max_failures.map(|m| match m {
            MaxFailures::Count(n) => n.to_string(),
            MaxFailures::Percent(p) => format!("{p}%"),
        }),
        serial: step.serial,
        idempotent: step.idempotent,
        read_only: step.read_only,
        continue_on_failure: step.continue_on_failure,
        on_failure: match step.on_failure {
            crate::model::OnFailure::Unwind => "unwind",
            crate::model::OnFailure::Stop => "stop",
            crate::model::OnFailure::Continue => "continue",
        },
        commit: step.commit,
        expect: expect_lines(&step.expect, step.body.action.kind()),
        outputs: step
            .outputs
            .iter()
            .map(|(n, e)| PlannedOutput {
                name: n.name.clone(),
                expression: expression_display(&e.src).to_string(),
            })
            .collect(),
        rollback,
    })
}
