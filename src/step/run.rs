//! `run:` steps: a shell command, locally or on a host over SSH.

use minijinja::value::Value;

use super::render::Renderer;
use super::{Attempt, Call, Env, item_index_of, line_sink};
use crate::event::{Event, StepStatus};
use crate::model::*;
use crate::runner::{CommandSpec, StepError, StepErrorKind as K};

/// A `run:` body rendered: what the runner gets (besides `RUNBOOK_RUN_ID`/`RUNBOOK_STEP`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rendered {
    /// The command text: values are referenced (`"$RUNBOOK_V_NODE"`), never inserted.
    pub command: String,
    /// The variables that carry the command's values (and the secrets it names).
    pub vars: Vec<(String, String)>,
    /// The body's `env:`.
    pub env: Vec<(String, String)>,
    pub stdin: Option<String>,
}

impl Rendered {
    /// Every variable the command gets from the runbook, in the order it gets them.
    pub(crate) fn all_env(&self) -> Vec<(String, String)> {
        self.vars.iter().chain(self.env.iter()).cloned().collect()
    }
}

/// Renders a `run:` body (its command, `env:` and `stdin:`): the one render function of
/// `run` steps, used by the plan and by a run.
pub(crate) fn render(
    r: &dyn Renderer,
    command: &Tmpl,
    body: &Body,
    ctx: &Value,
    what: &str,
) -> Result<Rendered, StepError> {
    let (command, vars) = r.command(command, ctx, what)?;
    let env = body
        .env
        .iter()
        .map(|(k, v)| Ok((k.clone(), r.text(v, ctx, &format!("env {k}"))?)))
        .collect::<Result<_, StepError>>()?;
    let stdin = body
        .stdin
        .as_ref()
        .map(|s| r.text(s, ctx, "stdin"))
        .transpose()?;
    Ok(Rendered {
        command,
        vars,
        env,
        stdin,
    })
}

/// Runs a rendered command once, where `call` says, and reports how it ended.
pub(crate) async fn run_command(
    env: &Env,
    call: &Call<'_>,
    ctx: &Value,
    rendered: Rendered,
) -> Attempt {
    let Call {
        step,
        body,
        target,
        attempt,
        ..
    } = call;
    let attempt = *attempt;
    let Rendered {
        command,
        vars: mut env_vars,
        env: body_env,
        stdin,
    } = rendered;
    env_vars.extend(body_env);
    // Last, so a step's own `env:` cannot replace them: `resume` finds the processes of a
    // killed engine's steps by these two (a step started beside itself would run twice).
    env_vars.retain(|(k, _)| k != "RUNBOOK_RUN_ID" && k != "RUNBOOK_STEP");
    env_vars.push(("RUNBOOK_RUN_ID".into(), env.run_id.clone()));
    env_vars.push(("RUNBOOK_STEP".into(), step.id.name.clone()));
    let host = target.as_ref().map(|t| t.name.clone());
    env.emit(Event::StepStarted {
        step: step.id.name.clone(),
        attempt,
        host: host.clone(),
        item: call.item.clone(),
        command: Some(command.clone()),
        item_index: item_index_of(ctx),
    });
    if let Some(err) = env.observer_failure() {
        let e = format!("not started: the journal cannot be written ({err})");
        return Attempt::failed(StepError::new(K::Journal, e));
    }
    let spec = CommandSpec {
        command,
        env: env_vars,
        env_remove: env.secret_sources.clone(),
        stdin,
        timeout: body.timeout,
        log_base: Some(env.run_dir.join("steps").join(&call.log)),
        redactor: Some(env.redactor.clone()),
    };
    let sink = line_sink(env, &step.id.name, host);
    let outcome = match &target {
        None => env.local.run(spec, sink, call.cancel.clone()).await,
        Some(t) => match &env.remote {
            Some(r) => r.runner(t).run(spec, sink, call.cancel.clone()).await,
            None => {
                let e = format!("host {}: SSH is not available in this build", t.name);
                return Attempt::failed(StepError::new(K::Unreachable, e));
            }
        },
    };
    let json = serde_json::from_str::<serde_json::Value>(outcome.stdout.trim()).ok();
    let result = serde_json::json!({
        "stdout": outcome.stdout,
        "stderr": outcome.stderr,
        "exit_code": outcome.exit_code,
        "signal": outcome.signal,
        "json": json,
        "duration_ms": outcome.duration.as_millis() as u64,
        "attempt": attempt,
    });
    let where_ = target
        .as_ref()
        .map_or(String::new(), |t| format!(" on {}", t.destination()));
    if let Some(e) = outcome.error {
        return Attempt {
            status: StepStatus::Failed,
            result,
            error: Some(StepError::new(K::Unreachable, e)),
            operator: None,
        };
    }
    if outcome.timed_out {
        let t = body
            .timeout
            .map(crate::fmt::human_duration)
            .unwrap_or_default();
        return Attempt {
            status: StepStatus::TimedOut,
            result,
            error: Some(StepError::new(
                K::Timeout,
                format!("timed out after {t}{where_}; the command was stopped"),
            )),
            operator: None,
        };
    }
    if outcome.cancelled {
        return Attempt {
            status: StepStatus::Cancelled,
            result,
            error: Some(StepError::new(
                K::Cancelled,
                format!("cancelled{where_}; the command was stopped"),
            )),
            operator: None,
        };
    }
    Attempt::succeeded(result)
}
