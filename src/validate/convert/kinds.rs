//! Reading the step kinds' bodies: `http:`, `wait:` and `expect:`.

use super::*;

pub(super) fn read_http(r: &mut Reader, node: &Node, what: &str) -> Option<HttpSpec> {
    let f = r.fields(node, what, HTTP)?;
    let verbs: Vec<&str> = HTTP_VERBS.iter().copied().filter(|v| f.has(v)).collect();
    let (method, url) = match (verbs.as_slice(), f.get("url")) {
        ([verb], None) => (
            (verb.to_ascii_uppercase(), None),
            f.get(verb).and_then(|n| r.tmpl(n, what)),
        ),
        ([], Some(u)) => {
            let method = match f.get("method") {
                Some(m) => crate::validate::targets::read_method(r, m, what),
                None => ("GET".to_string(), None),
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
    let (method, method_tmpl) = method;
    if method_tmpl.is_none() && !crate::validate::targets::METHODS.contains(&method.as_str()) {
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
        method_tmpl,
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

pub(super) fn json_tmpl(node: &Node) -> JsonTmpl {
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

pub(super) fn read_wait(r: &mut Reader, node: &Node, what: &str) -> Option<WaitSpec> {
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

pub(super) fn codes<T: TryFrom<u64>>(r: &mut Reader, node: &Node, what: &str, max: u64) -> Vec<T> {
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

pub(super) fn read_expect(r: &mut Reader, node: &Node, what: &str) -> Expect {
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
