//! `http:` steps: one request, its summary and its body log.

use minijinja::value::Value;

use super::render::{Live, Renderer};
use super::{Attempt, Call, Env, item_index_of};
use crate::event::{Event, Stream};
use crate::model::*;
use crate::runner::{HttpRequest, StepError, StepErrorKind as K};

/// Sends the request of `h` once. `echo`: print a summary of the response (not for probes,
/// which report through `probe-attempt` events).
pub(crate) async fn run_http(
    env: &Env,
    call: &Call<'_>,
    h: &HttpSpec,
    ctx: &Value,
    echo: bool,
) -> Attempt {
    let (step, attempt) = (call.step, call.attempt);
    let Some(client) = &env.http else {
        let e = "HTTP is not available in this build";
        return Attempt::failed(StepError::new(K::Unreachable, e));
    };
    let req = match http_request(env, h, ctx) {
        Ok(r) => r,
        Err(e) => return Attempt::failed(e),
    };
    env.emit(Event::StepStarted {
        step: step.id.name.clone(),
        attempt,
        host: None,
        item: call.item.clone(),
        command: Some(format!("{} {}", req.method, req.url)),
        item_index: item_index_of(ctx),
    });
    if let Some(err) = env.observer_failure() {
        let e = format!("not sent: the journal cannot be written ({err})");
        return Attempt::failed(StepError::new(K::Journal, e));
    }
    let timeout = h.timeout.or(step.body.timeout);
    let req = crate::runner::HttpRequest { timeout, ..req };
    match client.send(req, call.cancel.clone()).await {
        Ok(resp) => {
            // Wait probes report through `probe-attempt` events instead.
            if echo {
                // A sensitive response is neither summarised nor kept in the step log.
                let (summary, log) = if h.sensitive {
                    ("(sensitive: response not shown)".to_string(), String::new())
                } else {
                    (
                        super::readable::http_summary(
                            &env.redactor,
                            resp.status,
                            &resp.headers,
                            &resp.body,
                            resp.json.as_ref(),
                            &http_fields(step),
                        ),
                        http_body_log(env, step, attempt, &resp.body),
                    )
                };
                let went = resp
                    .redirected_to
                    .as_ref()
                    .map(|u| format!("(redirected to {u}) "))
                    .unwrap_or_default();
                env.emit(Event::Output {
                    step: step.id.name.clone(),
                    host: None,
                    stream: Stream::Stdout,
                    line: format!("{went}{summary}{log}"),
                });
            }
            let headers: serde_json::Map<_, _> = resp
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            Attempt::succeeded(serde_json::json!({
                "status": resp.status,
                "headers": headers,
                "body": resp.body,
                "json": resp.json,
                "duration_ms": resp.duration.as_millis() as u64,
                "attempt": attempt,
            }))
        }
        Err(e) => Attempt::failed(e),
    }
}

/// The JSON fields an HTTP step reads (its `expect.json`, `expect.that` and outputs).
pub(crate) fn http_fields(step: &Step) -> Vec<String> {
    let mut fields: Vec<String> = step.expect.json.iter().map(|(p, _)| p.clone()).collect();
    let sources = step
        .expect
        .that
        .iter()
        .map(|t| t.src.as_str())
        .chain(step.outputs.iter().map(|(_, t)| t.src.as_str()));
    for p in super::readable::json_paths(sources) {
        if !fields.contains(&p) {
            fields.push(p);
        }
    }
    fields
}

/// Writes an HTTP response body (redacted) to the step's log; ` (body: PATH)` when it did.
fn http_body_log(env: &Env, step: &Step, attempt: u32, body: &str) -> String {
    use std::io::Write;
    if body.is_empty() {
        return String::new();
    }
    let path = env
        .run_dir
        .join("steps")
        .join(format!("{}.http{attempt}.body.log", step.id.name));
    match crate::sys::open_private(&path)
        .and_then(|mut f| f.write_all(env.redactor.text(body).as_bytes()))
    {
        Ok(()) => format!(" (full body: {})", path.display()),
        Err(_) => String::new(),
    }
}

/// An `http:` spec rendered: the request as sent (the plan shows this with secrets masked).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rendered {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub body: Option<String>,
    /// The body is JSON (`body: {json: …}`).
    pub json_body: bool,
    pub ca_cert: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

/// Renders an `http:` spec: the one render function of `http` steps (and HTTP probes),
/// used by the plan and by a run.
pub(crate) fn render(r: &dyn Renderer, h: &HttpSpec, ctx: &Value) -> Result<Rendered, StepError> {
    let pairs = |list: &[(String, Tmpl)], what: &str| -> Result<Vec<(String, String)>, StepError> {
        list.iter()
            .map(|(k, v)| Ok((k.clone(), r.text(v, ctx, &format!("{what} {k}"))?)))
            .collect()
    };
    let path = |t: &Option<Tmpl>, what: &str| t.as_ref().map(|t| r.text(t, ctx, what)).transpose();
    let (body, json_body) = match &h.body {
        Some(HttpBody::Raw(t)) => (Some(r.text(t, ctx, "body")?), false),
        Some(HttpBody::Json(j)) => (Some(json_body(r, j, ctx)?.to_string()), true),
        None => (None, false),
    };
    let headers = pairs(&h.headers, "header")?;
    Ok(Rendered {
        method: method(r, h, ctx)?,
        url: r.url(&h.url, ctx)?,
        headers,
        query: pairs(&h.query, "query")?,
        body,
        json_body,
        ca_cert: path(&h.ca_cert, "ca_cert")?,
        client_cert: path(&h.client_cert, "client_cert")?,
        client_key: path(&h.client_key, "client_key")?,
    })
}

/// The request's method: literal, or a template rendered and checked against the methods
/// allowed (the plan shows a run-time value as its placeholder).
fn method(r: &dyn Renderer, h: &HttpSpec, ctx: &Value) -> Result<String, StepError> {
    let Some(t) = &h.method_tmpl else {
        return Ok(h.method.clone());
    };
    let text = r.text(t, ctx, "method")?;
    let upper = text.trim().to_ascii_uppercase();
    if crate::validate::HTTP_METHODS.contains(&upper.as_str()) {
        return Ok(upper);
    }
    if r.is_plan() && text.contains('<') {
        return Ok(text);
    }
    Err(StepError::render(format!(
        "method: `{text}` is not an HTTP method (allowed: {})",
        crate::validate::HTTP_METHODS.join(", ")
    )))
}

/// Renders an `http` spec into a request (secrets revealed: only the client sees them).
pub(crate) fn http_request(env: &Env, h: &HttpSpec, ctx: &Value) -> Result<HttpRequest, StepError> {
    let r = render(&Live(env), h, ctx)?;
    // A header whose value the redactor would mask holds a secret (or a value derived from one).
    let secret_headers = r
        .headers
        .iter()
        .filter(|(_, v)| env.redactor.mask_text(v) != v.as_str())
        .map(|(k, _)| k.clone())
        .collect();
    Ok(HttpRequest {
        method: r.method,
        url: r.url,
        headers: r.headers,
        secret_headers,
        query: r.query,
        body: r.body.map(String::into_bytes),
        json_body: r.json_body,
        timeout: h.timeout,
        follow_redirects: h.follow_redirects,
        ca_cert: r.ca_cert.map(Into::into),
        client_cert: r.client_cert.map(Into::into),
        client_key: r.client_key.map(Into::into),
        insecure: h.insecure,
    })
}

/// Renders a JSON body template, leaf by leaf.
pub(crate) fn json_body(
    r: &dyn Renderer,
    j: &JsonTmpl,
    ctx: &Value,
) -> Result<serde_json::Value, StepError> {
    Ok(match j {
        JsonTmpl::Null => serde_json::Value::Null,
        JsonTmpl::Bool(b) => serde_json::Value::Bool(*b),
        JsonTmpl::Number(n) => serde_json::Value::Number(n.clone()),
        JsonTmpl::String(t) => serde_json::Value::String(r.text(t, ctx, "json body")?),
        JsonTmpl::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|i| json_body(r, i, ctx))
                .collect::<Result<_, _>>()?,
        ),
        JsonTmpl::Object(pairs) => serde_json::Value::Object(
            pairs
                .iter()
                .map(|(k, v)| Ok((k.clone(), json_body(r, v, ctx)?)))
                .collect::<Result<_, StepError>>()?,
        ),
    })
}
