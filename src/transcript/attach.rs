//! Attaching a transcript to an incident: a PagerDuty note (REST API v2), a Jira attachment
//! plus comment (REST API v2; Cloud and self-hosted), or a webhook POST of the JSON transcript.
//!
//! Credentials come from the environment, never flags: `PAGERDUTY_TOKEN`, `PAGERDUTY_FROM`;
//! `JIRA_BASE_URL`, `JIRA_USER` (omit for a Data Center personal access token), `JIRA_TOKEN`;
//! `RUNBOOK_WEBHOOK_TOKEN` (optional bearer). Base URLs can be changed with
//! `RUNBOOK_PAGERDUTY_URL` (default `https://api.pagerduty.com`). A failed attachment is retried
//! with backoff; the transcript stays in the run directory, and `runbook attach` can be re-run.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;

use super::{
    ErrorKind, MARKDOWN_TEMPLATE, NOTE_TEMPLATE, Transcript, TranscriptError, load, render,
};

/// Where to attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    PagerDuty(String),
    Jira(String),
    Webhook(String),
}

impl Target {
    pub(crate) fn parse(s: &str) -> Result<Target, TranscriptError> {
        let (kind, rest) = s.split_once(':').ok_or_else(|| {
            usage(format!(
                "`{s}` is not pagerduty:INCIDENT, jira:ISSUE-KEY or webhook:URL"
            ))
        })?;
        if rest.is_empty() {
            return Err(usage(format!("`{s}` names no incident, issue or URL")));
        }
        match kind {
            "pagerduty" if rest.chars().all(|c| c.is_ascii_alphanumeric()) => {
                Ok(Target::PagerDuty(rest.into()))
            }
            "jira" if rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => {
                Ok(Target::Jira(rest.into()))
            }
            "webhook" if rest.starts_with("http://") || rest.starts_with("https://") => {
                Ok(Target::Webhook(rest.into()))
            }
            "pagerduty" | "jira" => Err(usage(format!("`{rest}` is not a valid {kind} id"))),
            "webhook" => Err(usage(format!("`{rest}` is not an http(s) URL"))),
            _ => Err(usage(format!(
                "unknown attachment target `{kind}`: use pagerduty:, jira: or webhook:"
            ))),
        }
    }
}

fn usage(message: String) -> TranscriptError {
    TranscriptError::new(ErrorKind::Usage, message)
}

fn env(name: &str) -> Result<String, TranscriptError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| TranscriptError::new(ErrorKind::Credentials, format!("{name} is not set")))
}

/// PagerDuty notes are limited in size: keep the summary well inside.
const NOTE_LIMIT: usize = 24_000;

fn cap(s: String, limit: usize) -> String {
    if s.len() <= limit {
        return s;
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[… truncated; full transcript in the run directory]",
        &s[..end]
    )
}

/// One request, retried with backoff on connection errors, 429 and 5xx.
fn delivery(message: String) -> TranscriptError {
    TranscriptError::new(ErrorKind::Delivery, message)
}

async fn send(
    build: impl Fn() -> reqwest::RequestBuilder,
    what: &str,
) -> Result<(u16, String), TranscriptError> {
    let mut delay = Duration::from_millis(500);
    let mut last = String::new();
    for attempt in 1..=4 {
        match build().send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                if resp.status().is_success() {
                    let at = resp.url().as_str();
                    return Ok((status, at.split('?').next().unwrap_or(at).to_string()));
                }
                let body: String = resp
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect();
                last = format!("{what}: HTTP {status} {body}");
                if status != 429 && status < 500 {
                    return Err(delivery(last));
                }
            }
            Err(e) if e.is_redirect() => {
                // Not retried: the redirect (to another origin) is the answer.
                let mut why = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    why = s.to_string();
                    src = s.source();
                }
                return Err(delivery(format!("{what}: {why}")));
            }
            Err(e) => {
                last = format!(
                    "{what}: {}",
                    if e.is_timeout() {
                        "timed out".to_string()
                    } else if e.is_connect() {
                        "cannot connect".to_string()
                    } else {
                        "request failed".to_string()
                    }
                )
            }
        }
        if attempt < 4 {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    Err(delivery(format!("{last} (after 4 attempts)")))
}

/// Attaches run `run_dir`'s transcript to `target`. Returns a one-line confirmation.
pub(crate) async fn attach_run(run_dir: &Path, target: &str) -> Result<String, TranscriptError> {
    let target = Target::parse(target)?;
    let t = load(run_dir)?;
    let client = client()?;
    match target {
        Target::PagerDuty(id) => to_pagerduty(&client, &t, &id).await,
        Target::Jira(key) => to_jira(&client, &t, &key).await,
        Target::Webhook(url) => to_webhook(&client, &t, &url).await,
    }
}

/// The HTTP client of attachments: rustls, 30 s, same-origin redirects only.
fn client() -> Result<reqwest::Client, TranscriptError> {
    reqwest::Client::builder()
    .use_rustls_tls()
    .timeout(Duration::from_secs(30))
    .user_agent(concat!("runbook/", env!("CARGO_PKG_VERSION")))
    // The transcript (and the token) never follow a redirect to another origin.
    .redirect(reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else {
            return attempt.follow();
        };
        let (from, to) = (first.origin(), attempt.url().origin());
        if from != to {
            let msg = format!(
                "redirected to another origin, {}: not followed (the transcript is not sent there)",
                to.ascii_serialization()
            );
            attempt.error(msg)
        } else if attempt.previous().len() > 5 {
            attempt.error("more than 5 redirects")
        } else {
            attempt.follow()
        }
    }))
    .build()
    .map_err(|e| delivery(e.to_string()))
}

/// A note on PagerDuty incident `id`.
async fn to_pagerduty(
    client: &reqwest::Client,
    t: &Transcript,
    id: &str,
) -> Result<String, TranscriptError> {
    let token = env("PAGERDUTY_TOKEN")?;
    let from = env("PAGERDUTY_FROM")?;
    let base = std::env::var("RUNBOOK_PAGERDUTY_URL")
        .unwrap_or_else(|_| "https://api.pagerduty.com".into());
    let note = cap(render(t, NOTE_TEMPLATE)?, NOTE_LIMIT);
    let body = serde_json::json!({ "note": { "content": note } });
    let url = format!("{}/incidents/{id}/notes", base.trim_end_matches('/'));
    send(
        || {
            client
                .post(&url)
                .header("Authorization", format!("Token token={token}"))
                .header("From", &from)
                .header("Accept", "application/vnd.pagerduty+json;version=2")
                .header("Content-Type", "application/json")
                .body(body.to_string())
        },
        &format!("PagerDuty incident {id}"),
    )
    .await?;
    Ok(format!("attached: note added to PagerDuty incident {id}"))
}

/// The Markdown transcript attached to Jira issue `key`, and a comment.
async fn to_jira(
    client: &reqwest::Client,
    t: &Transcript,
    key: &str,
) -> Result<String, TranscriptError> {
    let base = env("JIRA_BASE_URL")?;
    let token = env("JIRA_TOKEN")?;
    let auth = match std::env::var("JIRA_USER").ok().filter(|u| !u.is_empty()) {
        Some(user) => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"))
        ),
        None => format!("Bearer {token}"),
    };
    let md = render(t, MARKDOWN_TEMPLATE)?;
    let boundary = format!(
        "runbook-{}",
        crate::journal::sha256_hex(t.run_id.as_bytes())
            .get(..24)
            .unwrap_or("boundary")
    );
    let filename = format!("runbook-{}.md", t.run_id);
    let mut multipart = Vec::new();
    multipart.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: text/markdown\r\n\r\n").as_bytes());
    multipart.extend(md.as_bytes());
    multipart.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    let base = base.trim_end_matches('/').to_string();
    let url = format!("{base}/rest/api/2/issue/{key}/attachments");
    send(
        || {
            client
                .post(&url)
                .header("Authorization", &auth)
                .header("X-Atlassian-Token", "no-check")
                .header("Accept", "application/json")
                .header(
                    "Content-Type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(multipart.clone())
        },
        &format!("Jira issue {key} (attachment)"),
    )
    .await?;
    let comment = serde_json::json!({ "body": cap(render(t, NOTE_TEMPLATE)?, 30_000) + &format!("\nAttached: {filename}") });
    let url = format!("{base}/rest/api/2/issue/{key}/comment");
    send(
        || {
            client
                .post(&url)
                .header("Authorization", &auth)
                .header("Accept", "application/json")
                .header("Content-Type", "application/json")
                .body(comment.to_string())
        },
        &format!("Jira issue {key} (comment)"),
    )
    .await?;
    Ok(format!(
        "attached: {filename} and a comment added to Jira issue {key}"
    ))
}

/// The JSON transcript posted to a webhook.
async fn to_webhook(
    client: &reqwest::Client,
    t: &Transcript,
    url: &str,
) -> Result<String, TranscriptError> {
    let body = serde_json::to_string(t).map_err(|e| delivery(e.to_string()))?;
    let token = std::env::var("RUNBOOK_WEBHOOK_TOKEN")
        .ok()
        .filter(|v| !v.is_empty());
    let shown = url.split('?').next().unwrap_or(url).to_string();
    let at = send(
        || {
            let rb = client
                .post(url)
                .header("Content-Type", "application/json")
                .body(body.clone());
            match &token {
                Some(tk) => rb.header("Authorization", format!("Bearer {tk}")),
                None => rb,
            }
        },
        &format!("webhook {shown}"),
    )
    .await
    .map(|(_, at)| at)?;
    let went = if at == shown {
        String::new()
    } else {
        format!(" (redirected to {at})")
    };
    Ok(format!("attached: transcript posted to {shown}{went}"))
}
