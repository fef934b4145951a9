//! `run:` steps: a shell command, locally or on a host over SSH.

use minijinja::value::Value;

use super::{Attempt, Call, Env, item_index_of, line_sink, render};
use crate::event::{Event, StepStatus};
use crate::model::*;
use crate::runner::{CommandRunner, CommandSpec};
use crate::template::{ShellCommand, Target};

/// Renders a shell command: values travel in the environment, never in the text. The
/// command also gets the secrets it names literally (`$RUNBOOK_SECRET_X`), and no others.
pub fn render_command(
    env: &Env,
    t: &Tmpl,
    ctx: &Value,
    what: &str,
) -> Result<ShellCommand, String> {
    let mut cmd = env
        .templates
        .render_command(&t.src, ctx)
        .map_err(|e| format!("{what}: {}", crate::template::describe_error(&e)))?;
    for (k, v) in &env.secret_env {
        if t.src.contains(k.as_str()) && !cmd.env.iter().any(|(n, _)| n == k) {
            cmd.env.push((k.clone(), v.clone()));
        }
    }
    Ok(cmd)
}

/// Runs a rendered command once, where `call` says, and reports how it ended.
pub async fn run_command(
    env: &Env,
    call: &Call<'_>,
    ctx: &Value,
    command: ShellCommand,
) -> Attempt {
    let Call {
        step,
        body,
        target,
        attempt,
        ..
    } = call;
    let attempt = *attempt;
    let ShellCommand {
        command,
        env: mut vars,
        derived_secrets,
    } = command;
    // Values computed from a secret are secrets: masked before anything can print them.
    env.redactor.add(&derived_secrets);
    vars.push(("RUNBOOK_RUN_ID".into(), env.run_id.clone()));
    vars.push(("RUNBOOK_STEP".into(), step.id.name.clone()));
    for (k, v) in &body.env {
        match render(env, v, ctx, Target::Text, &format!("env {k}")) {
            Ok(v) => vars.push((k.clone(), v)),
            Err(e) => return Attempt::failed(e),
        }
    }
    let stdin = match &body.stdin {
        Some(s) => match render(env, s, ctx, Target::Text, "stdin") {
            Ok(v) => Some(v),
            Err(e) => return Attempt::failed(e),
        },
        None => None,
    };
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
        return Attempt::failed(format!(
            "not started: the journal cannot be written ({err})"
        ));
    }
    let spec = CommandSpec {
        command,
        env: vars,
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
                return Attempt::failed(format!(
                    "host {}: SSH is not available in this build",
                    t.name
                ));
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
            error: Some(e),
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
            error: Some(format!(
                "timed out after {t}{where_}; the command was stopped"
            )),
            operator: None,
        };
    }
    if outcome.cancelled {
        return Attempt {
            status: StepStatus::Cancelled,
            result,
            error: Some(format!("cancelled{where_}; the command was stopped")),
            operator: None,
        };
    }
    Attempt::succeeded(result)
}
