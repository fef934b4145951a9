//! HTTP requests with reqwest (rustls): TLS verification on unless a request says `insecure`,
//! private CAs via `ca_cert`, client certificates, and one-line errors that say *which* TLS
//! problem it was (unknown CA, certificate not valid for the name, expired…).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{BoxFuture, Cancel, HttpClient, HttpRequest, HttpResponse, StepError, StepErrorKind};

/// Largest response body kept (the rest is dropped, and said so).
const MAX_BODY: usize = 8 * 1024 * 1024;
/// Per-request timeout when neither the request nor the step gives one.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What makes two requests need different clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    ca_cert: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    insecure: bool,
}

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

/// Headers that carry credentials whatever their value.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-vault-token",
    "x-api-key",
];

fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Sends requests, keeping one connection pool per TLS configuration.
#[derive(Default)]
pub(crate) struct ReqwestClient {
    clients: Mutex<HashMap<ClientKey, reqwest::Client>>,
}

impl ReqwestClient {
    fn client(&self, key: &ClientKey) -> Result<reqwest::Client, String> {
        if let Ok(map) = self.clients.lock()
            && let Some(c) = map.get(key)
        {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("runbook/", env!("CARGO_PKG_VERSION")))
            // Redirects are followed by `send` itself, which knows which headers are secret.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10));
        if let Some(ca) = &key.ca_cert {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("cannot read ca_cert {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                format!(
                    "ca_cert {} is not a PEM certificate bundle: {e}",
                    ca.display()
                )
            })?;
            if certs.is_empty() {
                return Err(format!("ca_cert {} holds no certificate", ca.display()));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        match (&key.client_cert, &key.client_key) {
            (Some(cert), key_path) => {
                let mut pem = std::fs::read(cert)
                    .map_err(|e| format!("cannot read client_cert {}: {e}", cert.display()))?;
                if let Some(k) = key_path {
                    pem.push(b'\n');
                    pem.extend(
                        std::fs::read(k)
                            .map_err(|e| format!("cannot read client_key {}: {e}", k.display()))?,
                    );
                }
                let id = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| format!("client certificate {}: {e}", cert.display()))?;
                b = b.identity(id);
            }
            (None, Some(k)) => {
                return Err(format!(
                    "client_key {} given without client_cert",
                    k.display()
                ));
            }
            (None, None) => {}
        }
        if key.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        let client = b
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", chain(&e)))?;
        if let Ok(mut map) = self.clients.lock() {
            map.insert(key.clone(), client.clone());
        }
        Ok(client)
    }
}

/// The whole error chain in one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// Names the cause of a failed request in words an operator acts on.
/// A transport error as a [`StepError`]: a timeout, or nothing answered.
fn transport(e: &reqwest::Error, url: &str) -> StepError {
    let kind = if e.is_timeout() {
        StepErrorKind::Timeout
    } else {
        StepErrorKind::Unreachable
    };
    StepError::new(kind, classify(e, url))
}

fn classify(e: &reqwest::Error, url: &str) -> String {
    let text = chain(e);
    let lower = text.to_ascii_lowercase();
    let cause = if e.is_timeout() {
        "timed out".to_string()
    } else if lower.contains("unknownissuer") || lower.contains("unknown issuer") {
        "TLS: the server's certificate is signed by an unknown CA (give the CA with `ca_cert`)"
            .to_string()
    } else if lower.contains("notvalidforname")
        || lower.contains("not valid for name")
        || lower.contains("certificate is not valid for")
    {
        "TLS: the server's certificate is not valid for this host name".to_string()
    } else if lower.contains("expired") {
        "TLS: the server's certificate has expired".to_string()
    } else if lower.contains("invalid peer certificate")
        || lower.contains("certificate") && lower.contains("tls")
    {
        format!("TLS: bad certificate ({})", last_part(&text))
    } else if lower.contains("dns error")
        || lower.contains("failed to lookup address")
        || lower.contains("name or service not known")
    {
        "DNS: the host name does not resolve".to_string()
    } else if lower.contains("connection refused") {
        "connection refused (nothing listens there)".to_string()
    } else if lower.contains("connection reset") {
        "connection reset by the server".to_string()
    } else if e.is_connect() {
        format!("cannot connect ({})", last_part(&text))
    } else {
        last_part(&text)
    };
    format!("{} {}: {cause}", "request to", strip_query(url))
}

fn last_part(text: &str) -> String {
    text.rsplit(": ").next().unwrap_or(text).to_string()
}

/// The URL without its query string (which may carry secrets).
fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

impl HttpClient for ReqwestClient {
    fn send<'a>(
        &'a self,
        req: HttpRequest,
        mut cancel: Cancel,
    ) -> BoxFuture<'a, Result<HttpResponse, StepError>> {
        let unreachable = |m: String| StepError::new(StepErrorKind::Unreachable, m);
        Box::pin(async move {
            let key = ClientKey {
                ca_cert: req.ca_cert.clone().filter(|p| !p.as_os_str().is_empty()),
                client_cert: req
                    .client_cert
                    .clone()
                    .filter(|p| !p.as_os_str().is_empty()),
                client_key: req.client_key.clone().filter(|p| !p.as_os_str().is_empty()),
                insecure: req.insecure,
            };
            let client = self.client(&key).map_err(unreachable)?;
            let method = reqwest::Method::from_bytes(req.method.as_bytes())
                .map_err(|_| unreachable(format!("`{}` is not an HTTP method", req.method)))?;
            let mut url = reqwest::Url::parse(&req.url).map_err(|e| {
                unreachable(format!("`{}` is not a URL: {e}", strip_query(&req.url)))
            })?;
            let timeout = req.timeout.unwrap_or(DEFAULT_TIMEOUT);
            let mut method = method;
            let mut headers = req.headers.clone();
            let mut body = req.body.clone();
            let mut query = req.query.clone();
            let mut redirects = 0usize;
            let build = |method: &reqwest::Method,
                         url: &reqwest::Url,
                         headers: &[(String, String)],
                         query: &[(String, String)],
                         body: &Option<Vec<u8>>| {
                let mut rb = client.request(method.clone(), url.clone()).timeout(timeout);
                if !query.is_empty() {
                    rb = rb.query(query);
                }
                for (k, v) in headers {
                    rb = rb.header(k.as_str(), v.as_str());
                }
                if req.json_body && body.is_some() {
                    rb = rb.header("content-type", "application/json");
                }
                if let Some(b) = body {
                    rb = rb.body(b.clone());
                }
                rb
            };
            let t0 = Instant::now();
            let send = async {
                let resp = loop {
                    let resp = build(&method, &url, &headers, &query, &body)
                        .send()
                        .await
                        .map_err(|e| transport(&e, &req.url))?;
                    let location = resp
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|l| l.to_str().ok())
                        .and_then(|l| url.join(l).ok());
                    let next = match location {
                        Some(next) if req.follow_redirects && resp.status().is_redirection() => {
                            next
                        }
                        _ => break resp,
                    };
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(unreachable(format!(
                            "{}: more than {MAX_REDIRECTS} redirects",
                            strip_query(&req.url)
                        )));
                    }
                    if !matches!(next.scheme(), "http" | "https") {
                        return Err(unreachable(format!(
                            "{}: redirected to a non-HTTP URL",
                            strip_query(&req.url)
                        )));
                    }
                    let status = resp.status().as_u16();
                    let keeps_body = !(status == 303
                        || (matches!(status, 301 | 302) && method == reqwest::Method::POST));
                    if !same_origin(&url, &next) && keeps_body && body.is_some() {
                        // A body (a password, a token) is never re-sent to another origin.
                        return Err(unreachable(format!(
                            "{}: redirected (HTTP {status}) to another origin, {}: the request body is not sent there",
                            strip_query(url.as_str()),
                            strip_query(next.as_str())
                        )));
                    }
                    if !same_origin(&url, &next) {
                        // Credentials never follow a request to another origin.
                        drop_credentials(&mut headers, &req.secret_headers);
                        query.clear();
                    }
                    if !keeps_body {
                        method = reqwest::Method::GET;
                        body = None;
                    }
                    url = next;
                };
                let mut r = read_response(resp, &req.url, t0).await?;
                r.redirected_to = (redirects > 0).then(|| strip_query(url.as_str()));
                Ok(r)
            };
            tokio::select! {
                r = send => r,
                () = cancel.cancelled() => Err(StepError::new(
                    StepErrorKind::Cancelled,
                    format!("request to {} cancelled", strip_query(&req.url)),
                )),
            }
        })
    }
}

/// Removes the headers that carry credentials (the usual ones and the runbook's secret ones).
fn drop_credentials(headers: &mut Vec<(String, String)>, secret_headers: &[String]) {
    headers.retain(|(k, _)| {
        let k = k.to_ascii_lowercase();
        !CREDENTIAL_HEADERS.contains(&k.as_str())
            && !secret_headers.iter().any(|s| s.eq_ignore_ascii_case(&k))
    });
}

/// Reads the final response of a request to `url` sent at `t0`: status, headers, and at most
/// `MAX_BODY` bytes of its body.
async fn read_response(
    mut resp: reqwest::Response,
    url: &str,
    t0: Instant,
) -> Result<HttpResponse, StepError> {
    let status = resp.status().as_u16();
    let headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport(&e, url))? {
        let room = MAX_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let json = serde_json::from_str(&body).ok();
    Ok(HttpResponse {
        status,
        headers,
        body,
        json,
        duration: t0.elapsed(),
        redirected_to: None,
    })
}
