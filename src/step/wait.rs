//! `wait:` steps: poll a probe (a command or a request) until a condition holds.

use std::time::{Duration, Instant};

use super::context::result_entries;
use super::render::Live;
use super::{Attempt, Call, Env, hide_response, hosts, http, is_sensitive, run};
use crate::event::{Event, StepStatus};
use crate::model::*;
use crate::runner::{StepError, StepErrorKind as K};
use crate::template::expression_source;

/// Polls a probe until its condition holds or the wait times out.
pub(crate) async fn run_wait(env: &Env, call: &Call<'_>, w: &WaitSpec) -> Attempt {
    let (step, extra, cancel) = (call.step, &call.extra, &call.cancel);
    let t0 = Instant::now();
    let mut every = w.every;
    let mut attempt = 0u32;
    let ctx = call.ctx(env);
    loop {
        attempt += 1;
        let remaining = w.timeout.saturating_sub(t0.elapsed());
        let probe = Call {
            item: None,
            attempt,
            ..call.clone()
        };
        let a = match &w.probe {
            Probe::Run { command, on } => {
                let cmd = match run::render(&Live(env), command, call.body, &ctx, "probe") {
                    Ok(c) => c,
                    Err(e) => return Attempt::failed(e),
                };
                let target = match on {
                    Some(on) => match hosts::ssh_targets(env, on, &ctx) {
                        Ok(t) => t.into_iter().next(),
                        Err(e) => {
                            let e = format!("cannot resolve hosts: {e}");
                            return Attempt::failed(StepError::new(K::Hosts, e));
                        }
                    },
                    None => call.target.clone(),
                };
                let body = Body {
                    timeout: Some(remaining.max(Duration::from_millis(100))),
                    ..call.body.clone()
                };
                let probe = Call {
                    body: &body,
                    target,
                    log: format!("{}.probe{attempt}", call.log),
                    ..probe
                };
                run::run_command(env, &probe, &ctx, cmd).await
            }
            Probe::Http(h) => {
                let h2 = HttpSpec {
                    timeout: Some(
                        h.timeout
                            .unwrap_or(remaining)
                            .min(remaining)
                            .max(Duration::from_millis(100)),
                    ),
                    ..(**h).clone()
                };
                let mut a = http::run_http(env, &probe, &h2, &ctx, false).await;
                // A probe that cannot connect yet is an attempt that saw nothing, not a failure.
                if a.status == StepStatus::Failed {
                    a.result = serde_json::json!({ "status": 0, "error": a.error.as_ref().map(|e| &e.message), "json": null, "body": "" });
                }
                a
            }
        };
        if a.status == StepStatus::Cancelled || cancel.is_cancelled() {
            return Attempt {
                status: StepStatus::Cancelled,
                result: a.result,
                error: Some(StepError::new(K::Cancelled, "cancelled while waiting")),
                operator: None,
            };
        }
        let (value, satisfied) = judge(env, step, w, extra, &a.result, attempt);
        env.emit(Event::ProbeAttempt {
            step: step.id.name.clone(),
            attempt,
            value: value.clone(),
            satisfied,
        });
        let last_value = value;
        if satisfied {
            let mut result = a.result;
            if let serde_json::Value::Object(m) = &mut result {
                m.insert("attempts".into(), serde_json::Value::from(attempt));
            }
            return Attempt {
                status: StepStatus::Succeeded,
                result,
                error: None,
                operator: None,
            };
        }
        if t0.elapsed() + every > w.timeout {
            let t = crate::fmt::human_duration(w.timeout);
            return Attempt {
                status: StepStatus::TimedOut,
                result: a.result,
                error: Some(StepError::new(
                    K::Timeout,
                    format!(
                        "waited {t} ({attempt} attempts) and `{}` never held; last value seen: {last_value}",
                        expression_source(&w.until.src)
                    ),
                )),
                operator: None,
            };
        }
        let mut c = cancel.clone();
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = c.cancelled() => return Attempt { status: StepStatus::Cancelled, result: serde_json::Value::Null, error: Some(StepError::new(K::Cancelled, "cancelled while waiting")), operator: None },
        }
        every = every.mul_f64(w.backoff);
    }
}

/// What a probe saw (for progress and a timeout's message) and whether `until` holds.
fn judge(
    env: &Env,
    step: &Step,
    w: &WaitSpec,
    extra: &[(String, minijinja::Value)],
    result: &serde_json::Value,
    attempt: u32,
) -> (String, bool) {
    let mut ex = extra.to_vec();
    ex.extend(result_entries(result, attempt));
    let until = expression_source(&w.until.src);
    let value = if is_sensitive(step) {
        let mut hidden = result.clone();
        hide_response(&mut hidden);
        describe_probe(&env.redactor, &hidden, &w.until.src)
    } else {
        let value = describe_probe(&env.redactor, result, &w.until.src);
        let ctx = env.ctx().with(ex.clone());
        match super::readable::until_parts(&env.redactor, &env.templates, until, &ctx) {
            Some(parts) => format!("{value} — {parts}"),
            None => value,
        }
    };
    let satisfied = env
        .templates
        .eval(until, &env.ctx().with(ex))
        .is_ok_and(|v| v.is_true());
    (value, satisfied)
}

/// A short description of a probe result for progress and timeouts.
pub(crate) fn describe_probe(
    redactor: &crate::redact::Redactor,
    r: &serde_json::Value,
    until: &str,
) -> String {
    // Secrets are masked before the cut (a cut secret is no longer recognised).
    let cut = |s: &str| -> String {
        let masked = redactor.mask_text(s);
        let s = masked.trim();
        if s.chars().count() > 200 {
            format!("{}…", s.chars().take(200).collect::<String>())
        } else {
            s.to_string()
        }
    };
    if let Some(e) = r.get("error").and_then(|e| e.as_str()) {
        return cut(e);
    }
    if let Some(status) = r.get("status").and_then(serde_json::Value::as_u64) {
        let headers: Vec<(String, String)> = r
            .get("headers")
            .and_then(|h| h.as_object())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        return super::readable::http_summary(
            redactor,
            u16::try_from(status).unwrap_or(0),
            &headers,
            r.get("body").and_then(|b| b.as_str()).unwrap_or_default(),
            r.get("json").filter(|j| !j.is_null()),
            &super::readable::json_paths([until]),
        );
    }
    let code = r
        .get("exit_code")
        .map(|c| c.to_string())
        .unwrap_or_default();
    let out = r.get("stdout").and_then(|s| s.as_str()).unwrap_or_default();
    cut(&format!("exit {code}: {out}"))
}
