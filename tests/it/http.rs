//! HTTP steps and wait probes against real HTTP and HTTPS servers on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::harness::{Ran, runbook};
use crate::httpd::{Pki, Response, Server};

fn exec_yaml(yaml: &str, args: &[&str], env: &[(&str, &str)]) -> (Ran, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("rb.yaml");
    std::fs::write(&f, yaml.replace("{D}", &dir.path().display().to_string())).expect("write");
    let mut all = vec![
        "exec".to_string(),
        f.display().to_string(),
        "--runs-dir".into(),
        dir.path().join("runs").display().to_string(),
        "--progress".into(),
        "plain".into(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    let mut r = runbook(all);
    for (k, v) in env {
        r = r.env(k, v);
    }
    (r.run(), dir)
}

#[test]
fn get_and_put_json_with_outputs_used_later() {
    let srv = Server::start(None, |req| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/v1/sys/seal-status") => Response::json(
            200,
            serde_json::json!({"sealed": true, "t": 3, "n": 5, "progress": 0}),
        ),
        ("PUT", "/v1/kv") => Response::json(
            200,
            serde_json::json!({"echo": serde_json::from_str::<serde_json::Value>(&req.body).unwrap_or_default()}),
        ),
        _ => Response::json(404, serde_json::json!({"errors": []})),
    });
    let yaml = format!(
        r#"
runbook: h
version: 1
steps:
  - id: status
    http: {{ get: "http://127.0.0.1:{p}/v1/sys/seal-status" }}
    expect: {{ status: 200, json: {{ sealed: true }} }}
    outputs:
      threshold: json.t
  - id: write
    needs: [status]
    http:
      put: "http://127.0.0.1:{p}/v1/kv"
      json: {{ need: "{{{{ steps.status.outputs.threshold }}}}", flag: true }}
  - id: show
    needs: [write]
    run: echo got {{{{ steps.write.json.echo.need }}}} status {{{{ steps.write.status }}}}
"#,
        p = srv.port
    );
    let (ran, _d) = exec_yaml(&yaml, &[], &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("show │ got 3 status 200"),
        "{}",
        ran.stderr
    );
    let reqs = srv.requests();
    assert_eq!(reqs[1].method, "PUT");
    assert_eq!(reqs[1].header("content-type"), Some("application/json"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&reqs[1].body).ok(),
        Some(serde_json::json!({"need": "3", "flag": true}))
    );
}

#[test]
fn unexpected_status_fails_with_vault_errors() {
    let srv = Server::start(None, |_| {
        Response::json(403, serde_json::json!({"errors": ["permission denied"]}))
    });
    let yaml = format!(
        "runbook: h\nversion: 1\nsteps:\n  - id: read\n    http: {{ get: \"http://127.0.0.1:{}/v1/secret/data/app\" }}\n",
        srv.port
    );
    let (ran, _d) = exec_yaml(&yaml, &[], &[]);
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.stderr
            .contains("HTTP status 403, expected 2xx: [\"permission denied\"]"),
        "{}",
        ran.stderr
    );
}

#[test]
fn wait_succeeds_after_a_few_attempts_and_times_out_with_last_value() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let srv = Server::start(None, move |_| {
        let n = h.fetch_add(1, Ordering::SeqCst);
        if n < 3 {
            Response::json(503, serde_json::json!({"sealed": true}))
        } else {
            Response::json(200, serde_json::json!({"sealed": false}))
        }
    });
    let yaml = format!(
        r#"
runbook: w
version: 1
steps:
  - id: up
    wait:
      http: {{ get: "http://127.0.0.1:{p}/v1/sys/health" }}
      until: response.status == 200
      every: 100ms
      timeout: 10s
  - id: never
    needs: [up]
    wait:
      http: {{ get: "http://127.0.0.1:{p}/v1/sys/health" }}
      until: response.json.sealed == true
      every: 100ms
      timeout: 1s
"#,
        p = srv.port
    );
    let (ran, _d) = exec_yaml(&yaml, &["--output", "json"], &[]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let attempts: Vec<serde_json::Value> = ran
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "probe-attempt" && e["step"] == "up")
        .collect();
    assert_eq!(attempts.len(), 4, "three 503s then a 200");
    assert_eq!(attempts[3]["satisfied"], true);
    // The last value names the field the wait reads, and the part that did not hold.
    assert!(ran.stderr.contains("`response.json.sealed == true` never held; last value seen: HTTP 200 application/json, 16 B: sealed=false — response.json.sealed = false ✖"), "{}", ran.stderr);
}

#[test]
fn wait_on_a_closed_port_keeps_trying_then_names_the_cause() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("a")
        .port();
    let yaml = format!(
        "runbook: w\nversion: 1\nsteps:\n  - id: up\n    wait:\n      http: {{ get: \"http://127.0.0.1:{port}/\" }}\n      until: response.status == 200\n      every: 100ms\n      timeout: 1s\n"
    );
    let (ran, _d) = exec_yaml(&yaml, &[], &[]);
    assert_eq!(ran.code, Some(1));
    assert!(ran.stderr.contains("connection refused"), "{}", ran.stderr);
}

fn tls_yaml(port: u16, host: &str, ca: Option<&str>) -> String {
    let ca = ca
        .map(|c| format!(", ca_cert: \"{c}\""))
        .unwrap_or_default();
    format!(
        "runbook: t\nversion: 1\nsteps:\n  - id: health\n    http: {{ get: \"https://{host}:{port}/v1/sys/health\"{ca} }}\n"
    )
}

#[test]
fn https_with_the_right_ca_without_it_and_with_a_wrong_name() {
    let pki = Pki::new(&["localhost", "127.0.0.1"]);
    let srv = Server::start(Some(&pki), |_| {
        Response::json(200, serde_json::json!({"initialized": true}))
    });
    let dir = tempfile::tempdir().expect("tmp");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).expect("ca");
    let ca = ca.display().to_string();

    let (ok, _d) = exec_yaml(&tls_yaml(srv.port, "localhost", Some(&ca)), &[], &[]);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);

    let (no_ca, _d) = exec_yaml(&tls_yaml(srv.port, "localhost", None), &[], &[]);
    assert_eq!(no_ca.code, Some(1));
    assert!(
        no_ca.stderr.contains("signed by an unknown CA"),
        "{}",
        no_ca.stderr
    );

    let wrong = Pki::new(&["vault.other.example"]);
    let srv2 = Server::start(Some(&wrong), |_| Response::json(200, serde_json::json!({})));
    let ca2 = dir.path().join("ca2.pem");
    std::fs::write(&ca2, &wrong.ca_pem).expect("ca2");
    let (bad_name, _d) = exec_yaml(
        &tls_yaml(srv2.port, "localhost", Some(&ca2.display().to_string())),
        &[],
        &[],
    );
    assert_eq!(bad_name.code, Some(1));
    assert!(
        bad_name.stderr.contains("not valid for this host name"),
        "{}",
        bad_name.stderr
    );
}

#[test]
fn insecure_is_loud_in_plan_and_warned_by_validate() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("i.yaml");
    std::fs::write(&f, "runbook: i\nversion: 1\nsteps:\n  - id: h\n    http: { get: \"https://vault:8200/\", insecure: true }\n").expect("w");
    let plan = runbook(["plan".as_ref(), f.as_os_str()]).run();
    assert!(
        plan.stdout
            .contains("!!! INSECURE: certificate verification is OFF !!!"),
        "{}",
        plan.stdout
    );
    let v = runbook(["validate".as_ref(), f.as_os_str()]).run();
    assert!(v.stderr.contains("warning[insecure-tls]"));
}

#[test]
fn secret_token_and_body_never_shown() {
    let srv = Server::start(None, |req| {
        Response::json(
            200,
            serde_json::json!({"seen_token": req.header("x-vault-token"), "body": req.body}),
        )
    });
    let yaml = format!(
        r#"
runbook: s
version: 1
inputs:
  token: {{ secret: true, from_env: T }}
steps:
  - id: call
    http:
      post: "http://127.0.0.1:{p}/v1/sys/unseal"
      headers: {{ X-Vault-Token: "{{{{ token }}}}" }}
      json: {{ key: "{{{{ token }}}}" }}
  - id: echo
    needs: [call]
    run: echo {{{{ steps.call.body | quote }}}}
"#,
        p = srv.port
    );
    let canary = "tok-canary-99887766";
    let (ran, _d) = exec_yaml(&yaml, &["--output", "json"], &[("T", canary)]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(
        srv.requests()[0].header("x-vault-token"),
        Some(canary),
        "the server gets the real token"
    );
    assert!(
        !ran.stdout.contains(canary) && !ran.stderr.contains(canary),
        "leaked:\n{}\n{}",
        ran.stdout,
        ran.stderr
    );
    let plan = runbook(["plan".as_ref(), _d.path().join("rb.yaml").as_os_str()])
        .env("T", canary)
        .run();
    assert!(
        plan.stdout.contains("X-Vault-Token: ********"),
        "{}",
        plan.stdout
    );
    assert!(!plan.stdout.contains(canary));
}

/// The unseal loop: one share per request, stop as soon as `sealed` is false.
#[test]
fn unseal_loop_stops_at_the_threshold() {
    let progress = Arc::new(AtomicUsize::new(0));
    let p2 = progress.clone();
    let srv = Server::start(None, move |req| {
        let key = serde_json::from_str::<serde_json::Value>(&req.body)
            .ok()
            .and_then(|v| v["key"].as_str().map(str::to_string))
            .unwrap_or_default();
        if !key.starts_with("share-") {
            return Response::json(400, serde_json::json!({"errors": ["invalid key"]}));
        }
        let n = p2.fetch_add(1, Ordering::SeqCst) + 1;
        Response::json(
            200,
            serde_json::json!({"sealed": n < 3, "t": 3, "n": 5, "progress": if n < 3 { n } else { 0 }}),
        )
    });
    let yaml = format!(
        r#"
runbook: u
version: 1
inputs:
  keys: {{ type: list, secret: true, from_env: KEYS }}
steps:
  - id: unseal
    for_each: {{ items: keys, until: "response.json.sealed == false" }}
    http:
      put: "http://127.0.0.1:{p}/v1/sys/unseal"
      json: {{ key: "{{{{ item }}}}" }}
    expect: {{ status: 200 }}
"#,
        p = srv.port
    );
    let (ran, _d) = exec_yaml(
        &yaml,
        &[],
        &[(
            "KEYS",
            "share-0001,share-0002,share-0003,share-0004,share-0005",
        )],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(srv.requests().len(), 3, "stops once unsealed");
    assert!(!ran.stderr.contains("share-"), "{}", ran.stderr);

    progress.store(0, Ordering::SeqCst);
    let (bad, _d) = exec_yaml(&yaml, &[], &[("KEYS", "share-0001,wrong-0002,share-0003")]);
    assert_eq!(bad.code, Some(1));
    assert!(
        bad.stderr
            .contains("HTTP status 400, expected [200]: [\"invalid key\"]"),
        "{}",
        bad.stderr
    );
    assert!(!bad.stderr.contains("wrong-0002"), "{}", bad.stderr);
}

#[test]
fn client_certificates_for_mutual_tls() {
    let mut pki = Pki::new(&["localhost"]);
    pki.require_client = true;
    let srv = Server::start(Some(&pki), |_| {
        Response::json(200, serde_json::json!({"ok": true}))
    });
    let dir = tempfile::tempdir().expect("tmp");
    for (name, body) in [
        ("ca.pem", &pki.ca_pem),
        ("client.pem", &pki.client_cert_pem),
        ("client.key", &pki.client_key_pem),
    ] {
        std::fs::write(dir.path().join(name), body).expect("write pem");
    }
    let p = |n: &str| dir.path().join(n).display().to_string();
    let with = format!(
        "runbook: m\nversion: 1\nsteps:\n  - id: h\n    http: {{ get: \"https://localhost:{}/v1/sys/health\", ca_cert: \"{}\", client_cert: \"{}\", client_key: \"{}\" }}\n",
        srv.port,
        p("ca.pem"),
        p("client.pem"),
        p("client.key")
    );
    let (ok, _d) = exec_yaml(&with, &[], &[]);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    let (refused, _d) = exec_yaml(
        &tls_yaml(srv.port, "localhost", Some(&p("ca.pem"))),
        &[],
        &[],
    );
    assert_eq!(
        refused.code,
        Some(1),
        "a server that requires a client certificate refuses us without one"
    );
    assert!(
        refused.stderr.contains("request to https://localhost"),
        "{}",
        refused.stderr
    );
}

/// A redirect to another origin never carries the request's credentials; a redirect on the
/// same origin does.
#[test]
fn secret_headers_are_dropped_on_a_cross_origin_redirect() {
    let other = Server::start(None, |_| {
        Response::json(200, serde_json::json!({"landed": true}))
    });
    let other_url = format!("http://127.0.0.1:{}/landing", other.port);
    let origin = Server::start(None, move |req| match req.path.as_str() {
        "/start" => Response::redirect(307, "/again".into()),
        "/again" => Response::redirect(302, other_url.clone()),
        _ => Response::json(404, serde_json::json!({})),
    });
    let yaml = format!(
        r#"
runbook: redirect
version: 1
inputs:
  token: {{ secret: true, from_env: T }}
steps:
  - id: call
    http:
      get: "http://127.0.0.1:{p}/start"
      follow_redirects: true
      headers:
        X-Vault-Token: "{{{{ token }}}}"
        X-Custom-Auth: "Bearer {{{{ token }}}}"
        Authorization: "Basic dXNlcjpwYXNz"
        X-Plain: hello
    outputs:
      landed: json.landed
"#,
        p = origin.port
    );
    let (ran, _d) = exec_yaml(&yaml, &[], &[("T", "vault-token-0123456789")]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let first = origin.requests();
    assert_eq!(first.len(), 2, "same-origin redirect followed");
    assert_eq!(first[1].path, "/again");
    assert_eq!(
        first[1].header("x-vault-token"),
        Some("vault-token-0123456789")
    );
    let landed = other.requests();
    assert_eq!(landed.len(), 1);
    assert_eq!(landed[0].header("x-plain"), Some("hello"));
    for h in ["x-vault-token", "x-custom-auth", "authorization"] {
        assert_eq!(landed[0].header(h), None, "{h} followed the redirect");
    }
}
