//! A secret canary in every encoding a program is likely to print it in, split across reads
//! and lines and the event cut, must not reach the terminal, `--output json`, any file of the
//! run directory, or a webhook; step logs stay byte-exact for everything else.

use base64::Engine as _;

use crate::exec::Scratch;
use crate::harness::runbook;
use crate::httpd::{Response, Server};

const CANARY: &str = "p@ss w0rd/42-xTOPSEC\"Q7";

/// The forms the test writes itself (the runbook also makes programs produce some).
fn forms() -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let url = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    vec![
        CANARY.to_string(),
        CANARY.to_uppercase(),
        CANARY.to_lowercase(),
        b64.encode(CANARY),
        b64.encode(format!("a{CANARY}")),
        b64.encode(format!("ab{CANARY}")),
        b64.encode(format!("admin:{CANARY}")),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("zz{CANARY}")),
        CANARY.bytes().map(|b| format!("{b:02x}")).collect(),
        CANARY.bytes().map(|b| format!("{b:02X}")).collect(),
        url(CANARY),
        url(CANARY).to_lowercase(),
        url(CANARY).replace("%20", "+"),
        serde_json::to_string(CANARY).unwrap_or_default(),
        CANARY.replace('/', "\\/").replace('"', "\\u0022"),
    ]
}

/// Pieces of each form that identify the secret (the middle 8 bytes), and the plain secret's
/// distinctive word in both cases.
fn probes() -> Vec<String> {
    let mut p: Vec<String> = forms()
        .iter()
        .map(|f| f[f.len() / 2 - 4..f.len() / 2 + 4].to_string())
        .collect();
    p.extend(["xTOPSEC".into(), "xtopsec".into(), "XTOPSEC".into()]);
    p
}

fn assert_clean(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for p in probes() {
        assert!(
            !text.contains(&p),
            "{what} leaks `{p}`:\n{}",
            &text[..text.len().min(4000)]
        );
    }
}

fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn secret_canary_in_every_encoding_never_leaves_the_engine() {
    let s = Scratch::new();
    let mut text = String::new();
    for f in forms() {
        text.push_str(&format!("{f}\nmid {f} line\n"));
    }
    std::fs::write(s.path("forms.txt"), text).expect("write forms");
    s.runbook(
        r#"
runbook: canary
version: 1
inputs:
  token: { secret: true, from_env: CANARY }
steps:
  - id: forms
    run: cat {D}/forms.txt; dd if={D}/forms.txt bs=5 status=none
  - id: programs
    run: >-
      printf '%s' {{ token }} | base64;
      printf 'a%s' {{ token }} | base64;
      printf 'ab%s' {{ token }} | base64;
      printf 'admin:%s' {{ token }} | base64;
      printf '%s' {{ token }} | od -An -tx1 | tr -d ' \n'; echo;
      printf '%s' {{ token }} | xxd -p -u | tr -d '\n'; echo;
      printf '%s\n' {{ token }} | tr a-z A-Z;
      python3 -c 'import sys, urllib.parse, json; s = sys.argv[1]; print(urllib.parse.quote(s)); print(urllib.parse.quote_plus(s)); print(json.dumps(s)); print(json.dumps({"k": s}))' {{ token }};
      printf '%s\n' {{ token }} >&2
  - id: split
    run: >-
      printf '%s' {{ token }} | head -c 9; sleep 0.3;
      printf '%s\n' {{ token }} | tail -c +10;
      printf '%s' {{ token }} | base64 | head -c 11; sleep 0.3;
      printf '%s' {{ token }} | base64 | tail -c +12
  - id: long_lines
    run: >-
      head -c 1048572 /dev/zero | tr '\0' a; printf '%s\n' {{ token }};
      head -c 4090 /dev/zero | tr '\0' b; printf '%s\n' {{ token }};
      head -c 4093 /dev/zero | tr '\0' c; printf '%s\n' {{ token }}
  - id: bytes
    run: printf 'bad \377\376 bytes %s end\n' {{ token }}
  - id: fail
    needs: [forms, programs, split, long_lines, bytes]
    run: echo "failing with {{ token }}" >&2; exit 3
"#,
    );
    let ran = runbook([
        "exec".to_string(),
        s.path("runbook.yaml").display().to_string(),
        "--runs-dir".into(),
        s.path("runs").display().to_string(),
        "--output".into(),
        "json".into(),
    ])
    .env("CANARY", CANARY)
    .run();
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert_clean("--output json", ran.stdout.as_bytes());
    assert_clean("stderr", ran.stderr.as_bytes());
    assert!(ran.stdout.contains("********"), "nothing was masked");

    let plain = runbook([
        "exec".to_string(),
        s.path("runbook.yaml").display().to_string(),
        "--runs-dir".into(),
        s.path("runs").display().to_string(),
        "--progress".into(),
        "plain".into(),
    ])
    .env("CANARY", CANARY)
    .run();
    assert_eq!(plain.code, Some(1), "{}", plain.stderr);
    assert_clean("terminal stdout", plain.stdout.as_bytes());
    assert_clean("terminal stderr", plain.stderr.as_bytes());

    let mut all = Vec::new();
    files(&s.path("runs"), &mut all);
    assert!(all.len() > 5, "{all:?}");
    let mut saw_bytes_log = false;
    for f in &all {
        let data = std::fs::read(f).unwrap_or_default();
        assert_clean(&f.display().to_string(), &data);
        if f.file_name().is_some_and(|n| n == "bytes.stdout.log") {
            // Byte-exact: the invalid UTF-8 is kept, only the secret is masked.
            assert_eq!(data, b"bad \xff\xfe bytes ******** end\n".to_vec());
            saw_bytes_log = true;
        }
        if f.file_name().is_some_and(|n| n == "long_lines.stdout.log") {
            assert_eq!(data.len(), 1048572 + 4090 + 4093 + 3 * 9);
        }
    }
    assert!(saw_bytes_log, "no step log for `bytes`: {all:?}");

    let hook = Server::start(None, |_| Response::json(204, serde_json::json!({})));
    let id = std::fs::read_dir(s.path("runs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| !n.starts_with('.'))
        .expect("a run");
    let ran = runbook([
        "attach".to_string(),
        id,
        "--runs-dir".into(),
        s.path("runs").display().to_string(),
        "--to".into(),
        format!("webhook:http://127.0.0.1:{}/hook", hook.port),
    ])
    .run();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let reqs = hook.requests();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].body.contains("transcript_version"));
    assert_clean("webhook body", reqs[0].body.as_bytes());
}

#[test]
fn a_command_gets_only_the_secrets_it_references() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: scoped
version: 1
inputs:
  token: { secret: true, from_env: TOKEN }
  other: { secret: true, from_env: OTHER }
  keys: { type: list, secret: true, from_env: KEYS }
steps:
  - id: unrelated
    run: env > {D}/unrelated.env
  - id: uses_token
    run: env > {D}/token.env; test -n {{ token }}
  - id: derived
    run: printf '%s' {{ token | upper }} {{ other ~ '-x' }} > {D}/derived
  - id: pieces
    env: { P: "{{ (token | string)[4:14] }}" }
    run: echo "prefix {{ (token | string)[:10] }}"; echo "env $P"
  - id: joined
    env: { JOINED: "{{ keys | join(' ') }}" }
    run: printf '%s|%s' "$JOINED" "{{ keys | join(',') }}" > {D}/joined
"#,
    );
    let ran = runbook([
        "exec".to_string(),
        s.path("runbook.yaml").display().to_string(),
        "--runs-dir".into(),
        s.path("runs").display().to_string(),
    ])
    .env("TOKEN", "token-value-1234")
    .env("OTHER", "other-value-5678")
    .env("KEYS", "unseal-key-0001,unseal-key-0002")
    .run();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let unrelated = s.read("unrelated.env");
    assert!(!unrelated.contains("token-value-1234") && !unrelated.contains("other-value-5678"));
    assert!(!unrelated.contains("RUNBOOK_SECRET_"), "{unrelated}");
    let token = s.read("token.env");
    assert!(token.contains("RUNBOOK_SECRET_TOKEN=token-value-1234"));
    assert!(!token.contains("other-value-5678"));
    // A filter over a secret yields the derived secret, never the mask.
    assert_eq!(s.read("derived"), "TOKEN-VALUE-1234other-value-5678-x");
    assert!(!ran.stderr.contains("TOKEN-VALUE-1234"), "{}", ran.stderr);
    // A piece of a secret computed by a template is a secret too.
    assert!(ran.stderr.contains("prefix ********"), "{}", ran.stderr);
    assert!(ran.stderr.contains("env ********"), "{}", ran.stderr);
    assert!(
        !ran.stderr.contains("token-valu") && !ran.stderr.contains("n-value-12"),
        "{}",
        ran.stderr
    );
    assert_eq!(
        s.read("joined"),
        "unseal-key-0001 unseal-key-0002|unseal-key-0001,unseal-key-0002"
    );
}

/// A token created by one step (an HTTP login marked `sensitive`, its output `secret`) is
/// usable by later steps — in a command and in a header — and never printed or recorded.
#[test]
fn a_secret_output_is_usable_later_and_never_recorded() {
    const TOKEN: &str = "hvs.created-token-7e1d90aa";
    let srv = Server::start(None, |req| match req.path.as_str() {
        "/v1/auth/login" => Response::json(
            200,
            serde_json::json!({"auth": {"client_token": TOKEN, "policies": ["ops"]}}),
        ),
        _ => Response::json(200, serde_json::json!({"ok": true})),
    });
    let s = Scratch::new();
    s.runbook(&format!(
        r#"
runbook: login
version: 1
steps:
  - id: login
    http:
      post: "http://127.0.0.1:{p}/v1/auth/login"
      json: {{ role: ops }}
      sensitive: true
    outputs:
      token: {{ value: json.auth.client_token, secret: true }}
      policies: json.auth.policies | join(',')
  - id: use_in_command
    needs: [login]
    run: test {{{{ steps.login.outputs.token }}}} = '{TOKEN}' && echo "using {{{{ steps.login.outputs.token }}}} for {{{{ steps.login.outputs.policies }}}}"
  - id: use_in_header
    needs: [login]
    http:
      get: "http://127.0.0.1:{p}/v1/sys/health"
      headers: {{ X-Vault-Token: "{{{{ steps.login.outputs.token }}}}" }}
"#,
        p = srv.port
    ));
    let ran = runbook([
        "exec".to_string(),
        s.path("runbook.yaml").display().to_string(),
        "--runs-dir".into(),
        s.path("runs").display().to_string(),
        "--output".into(),
        "json".into(),
    ])
    .run();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stdout.contains("using ******** for ops"),
        "{}",
        ran.stdout
    );
    let reqs = srv.requests();
    assert_eq!(
        reqs.iter()
            .find(|r| r.path == "/v1/sys/health")
            .and_then(|r| r.header("x-vault-token")),
        Some(TOKEN)
    );
    let probe = &TOKEN[4..20];
    assert!(
        !ran.stdout.contains(probe) && !ran.stderr.contains(probe),
        "{}",
        ran.stdout
    );
    assert!(
        !ran.stdout.contains("client_token"),
        "the sensitive body was shown: {}",
        ran.stdout
    );
    let mut all = Vec::new();
    files(&s.path("runs"), &mut all);
    for f in &all {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).into_owned();
        assert!(!text.contains(probe), "{} holds the token", f.display());
        assert!(
            !text.contains("client_token"),
            "{} holds the sensitive body",
            f.display()
        );
    }
}

/// A failing sensitive request says what failed, not what the response held.
#[test]
fn a_failed_sensitive_request_does_not_show_its_response() {
    let srv = Server::start(None, |_| {
        Response::json(
            400,
            serde_json::json!({"errors": ["token hvs.leaked-in-error-9f8e7d is expired"]}),
        )
    });
    let s = Scratch::new();
    s.runbook(&format!(
        r#"
runbook: sens
version: 1
steps:
  - id: login
    http:
      post: "http://127.0.0.1:{p}/v1/auth/login"
      sensitive: true
    expect: {{ status: 200 }}
"#,
        p = srv.port
    ));
    let ran = runbook([
        "exec".to_string(),
        s.path("runbook.yaml").display().to_string(),
        "--runs-dir".into(),
        s.path("runs").display().to_string(),
        "--output".into(),
        "json".into(),
    ])
    .run();
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stdout.contains("HTTP status 400, expected [200]"),
        "{}",
        ran.stdout
    );
    let mut all = Vec::new();
    files(&s.path("runs"), &mut all);
    let mut texts = vec![ran.stdout.clone(), ran.stderr.clone()];
    texts.extend(
        all.iter()
            .map(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).into_owned()),
    );
    for t in texts {
        assert!(!t.contains("leaked-in-error"), "{t}");
    }
}
