//! No input can change a command: hostile values in every position of a command, locally, in
//! loops, through step outputs and on a remote host. The marker file must never exist, and
//! each value must arrive byte for byte where it was meant to go.

use crate::exec::Scratch;
use crate::sshd::{Keys, Sshd, available};

/// Payloads that each try to run `touch MARKER` in some quoting context.
fn payloads(marker: &str) -> Vec<String> {
    vec![
        format!("$(touch {marker})"),
        format!("`touch {marker}`"),
        format!("x; touch {marker}"),
        format!("x\ntouch {marker}"),
        format!("x' ; touch {marker} ; echo '"),
        format!("x\" ; touch {marker} ; echo \""),
        format!("x\\\" ; touch {marker} ; echo \\\""),
        format!("\\$(touch {marker})\\"),
        format!("}} ; touch {marker} ; {{"),
        format!("*) touch {marker} ;; (*"),
        format!("$((1)) $(( $(touch {marker}) ))"),
    ]
}

const LOCAL: &str = r#"
runbook: injection
version: 1
inputs:
  v: {}
  items: { type: list }
steps:
  - id: unquoted
    run: printf '%s' {{ v }} > {D}/out/unquoted
  - id: double_quoted
    run: printf '%s' "{{ v }}" > {D}/out/double_quoted; echo "deploying {{ v }} now"
  - id: mixed
    run: printf '%s|%s' "pre{{ v }}post" x{{ v }}y > {D}/out/mixed
  - id: subst
    run: printf '%s' "$(printf '%s' {{ v }})" > {D}/out/subst
  - id: heredoc
    run: |
      cat > {D}/out/heredoc <<EOF
      {{ v }}
      EOF
  - id: env
    env: { VALUE: "{{ v }}" }
    run: printf '%s' "$VALUE" > {D}/out/env
  - id: stdin
    stdin: "{{ v }}"
    run: cat > {D}/out/stdin
  - id: produce
    run: printf '%s' "$VALUE"
    env: { VALUE: "{{ v }}" }
  - id: consume
    needs: [produce]
    run: printf '%s' {{ steps.produce.stdout }} > {D}/out/from_output
  - id: loop
    for_each: items
    run: printf '%s' {{ item }} >> {D}/out/loop
  - id: hashlen
    run: V=abc; echo "len=${#V}" > {D}/out/hashlen
"#;

#[test]
fn hostile_values_never_change_a_local_command() {
    let s = Scratch::new();
    let marker = s.path("MARKER").display().to_string();
    std::fs::create_dir_all(s.path("out")).expect("mkdir");
    s.runbook(LOCAL);
    for p in payloads(&marker) {
        let _ = std::fs::remove_dir_all(s.path("out"));
        std::fs::create_dir_all(s.path("out")).expect("mkdir");
        let ran = s.exec(&[
            "--yes",
            "-i",
            &format!("v={p}"),
            "-i",
            &format!("items={}", "a,b"),
        ]);
        assert_eq!(ran.code, Some(0), "payload {p:?}:\n{}", ran.stderr);
        assert!(!s.path("MARKER").exists(), "payload {p:?} ran a command");
        for f in [
            "unquoted",
            "double_quoted",
            "subst",
            "env",
            "stdin",
            "from_output",
        ] {
            let got = s.read(&format!("out/{f}"));
            // `$(…)` strips trailing newlines; nothing else may change.
            assert_eq!(got, p, "payload {p:?} arrived changed in `{f}`");
        }
        assert_eq!(s.read("out/mixed"), format!("pre{p}post|x{p}y"));
        assert_eq!(s.read("out/heredoc"), format!("{p}\n"));
        assert_eq!(s.read("out/hashlen"), "len=3\n");
    }
}

#[test]
fn hostile_loop_items_never_change_a_command() {
    let s = Scratch::new();
    let marker = s.path("MARKER").display().to_string();
    std::fs::create_dir_all(s.path("out")).expect("mkdir");
    s.runbook(
        r#"
runbook: items
version: 1
inputs:
  items: { type: list }
steps:
  - id: loop
    for_each: items
    run: printf '[%s]' {{ item }} "{{ item }}" >> {D}/out/loop
"#,
    );
    // List items given as text are split on commas, spaces and newlines: use items free of those.
    let items = [
        format!("$(touch${{IFS}}{marker})"),
        "`touch${IFS}/tmp/x`".to_string(),
        format!("';touch${{IFS}}{marker};'"),
        format!("\";touch${{IFS}}{marker};\""),
    ];
    let ran = s.exec(&["-i", &format!("items={}", items.join(","))]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(!s.path("MARKER").exists());
    let expected: String = items.iter().map(|i| format!("[{i}][{i}]")).collect();
    assert_eq!(s.read("out/loop"), expected);
}

#[test]
fn values_in_single_quotes_are_refused_before_anything_runs() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: q
version: 1
inputs:
  v: {}
steps:
  - id: first
    run: touch {D}/first
  - id: quoted
    run: echo 'deploying {{ v }} now'
"#,
    );
    let ran = s.exec(&["--yes", "-i", "v=x' ; touch /tmp/nope ; '"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("unsafe-quoting-context"),
        "{}",
        ran.stderr
    );
    assert!(
        !s.path("first").exists(),
        "a step ran although the runbook is invalid"
    );
}

#[test]
fn raw_and_autoescape_are_caught_on_the_template_not_its_text() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: raw
version: 1
inputs:
  name: { default: x }
  token: { secret: true, from_env: TOKEN }
steps:
  - id: a
    run: echo {{ (name)|raw }} {{ inputs["name"] | raw }}
  - id: b
    run: "{% autoescape false %}echo {{ name }}{% endautoescape %}"
  - id: c
    run: echo {{ inputs["token"]|raw }}
"#,
    );
    let ran =
        crate::harness::runbook(["validate".as_ref(), s.path("runbook.yaml").as_os_str()]).run();
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert_eq!(
        ran.stderr.matches("warning[raw-shell-insertion]").count(),
        2,
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("error[escaping-block-in-command]"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("error[secret-raw-in-shell]"),
        "{}",
        ran.stderr
    );
}

#[test]
fn hostile_values_never_change_a_remote_command() {
    if !available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "sshd must be installed in CI"
        );
        return;
    }
    let keys = Keys::new();
    let sshd = Sshd::start(&keys, &["127.0.0.1"], "host");
    keys.trust("127.0.0.1", sshd.port, "host");
    let dir = keys.path("work");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let marker = dir.join("MARKER").display().to_string();
    let yaml = format!(
        r#"
runbook: remote
version: 1
inputs:
  v: {{}}
  token: {{ secret: true, from_env: TOKEN }}
hosts:
  node: {{ address: 127.0.0.1, port: {p}, user: root }}
steps:
  - id: unrelated
    on: node
    read_only: true
    run: env > {d}/remote.env
  - id: uses_token
    on: node
    read_only: true
    run: test {{{{ token }}}} = remote-token-0123456789 && env > {d}/remote-token.env
  - id: remote
    on: node
    read_only: true
    run: printf '%s' {{{{ v }}}} > {d}/remote-unquoted; printf '%s' "x{{{{ v }}}}" > {d}/remote-double; printf '%s' {{{{ v }}}}
  - id: back_home
    needs: [remote]
    run: printf '%s' "{{{{ steps.remote.stdout }}}}" > {d}/local-from-remote
"#,
        p = sshd.port,
        d = dir.display()
    );
    let f = dir.join("rb.yaml");
    std::fs::write(&f, yaml).expect("write");
    for p in payloads(&marker) {
        let ran = crate::harness::runbook([
            "exec".to_string(),
            f.display().to_string(),
            "--ssh-config".into(),
            keys.ssh_config().display().to_string(),
            "--runs-dir".into(),
            dir.join("runs").display().to_string(),
            "-i".into(),
            format!("v={p}"),
        ])
        .env("TOKEN", "remote-token-0123456789")
        .run();
        assert_eq!(ran.code, Some(0), "payload {p:?}:\n{}", ran.stderr);
        assert!(!dir.join("MARKER").exists(), "payload {p:?} ran a command");
        let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap_or_default();
        assert_eq!(read("remote-unquoted"), p);
        assert_eq!(read("remote-double"), format!("x{p}"));
        assert_eq!(read("local-from-remote"), p);
        // Only the step that references the secret gets it on the host.
        assert!(!read("remote.env").contains("remote-token-0123456789"));
        assert!(!read("remote.env").contains("RUNBOOK_SECRET_"));
        assert!(read("remote-token.env").contains("RUNBOOK_SECRET_TOKEN=remote-token-0123456789"));
    }
}

/// Values in URLs are encoded per component and cannot move the request to another host.
#[test]
fn url_values_cannot_change_where_a_request_goes() {
    use crate::httpd::{Response, Server};
    let good = Server::start(None, |_| {
        Response::json(200, serde_json::json!({"ok": true}))
    });
    let evil = Server::start(None, |_| {
        Response::json(200, serde_json::json!({"stolen": true}))
    });
    let s = Scratch::new();
    let yaml = format!(
        r#"
runbook: url
version: 1
inputs:
  node: {{ pattern: ".*" }}
  seg: {{}}
  q: {{}}
  token: {{ secret: true, from_env: TOKEN }}
steps:
  - id: call
    http:
      get: "http://{{{{ node }}}}:{p}/v1/{{{{ seg }}}}/x?q={{{{ q }}}}&k=1"
      headers: {{ X-Vault-Token: "{{{{ token }}}}" }}
"#,
        p = good.port
    );
    s.runbook(&yaml);
    let run = |node: &str| {
        crate::harness::runbook([
            "exec".to_string(),
            s.path("runbook.yaml").display().to_string(),
            "--runs-dir".into(),
            s.path("runs").display().to_string(),
            "-i".into(),
            format!("node={node}"),
            "-i".into(),
            "seg=../../sys/a b?c#d".into(),
            "-i".into(),
            "q=1&k=2#x+y".into(),
        ])
        .env("TOKEN", "vault-token-123456")
        .run()
    };
    let ran = run(&format!("127.0.0.1:{}/steal#", evil.port));
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("cannot stand in the URL's host"),
        "{}",
        ran.stderr
    );
    assert!(
        evil.requests().is_empty(),
        "the request went to another host"
    );
    assert!(good.requests().is_empty());

    let ran = run("127.0.0.1");
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let reqs = good.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].path,
        "/v1/..%2F..%2Fsys%2Fa%20b%3Fc%23d/x?q=1%26k%3D2%23x%2By&k=1"
    );
    assert!(evil.requests().is_empty());
}

#[test]
fn host_names_and_addresses_are_identifiers() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: hosts
version: 1
hosts:
  "../../../tmp/x": { address: 127.0.0.1 }
steps:
  - id: a
    on: "../../../tmp/x"
    read_only: true
    run: "true"
"#,
    );
    let ran =
        crate::harness::runbook(["validate".as_ref(), s.path("runbook.yaml").as_os_str()]).run();
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("host name `../../../tmp/x` is not valid"),
        "{}",
        ran.stderr
    );

    s.runbook(
        r#"
runbook: hosts
version: 1
inputs:
  addr: {}
hosts:
  node: { address: "{{ addr }}", user: root }
steps:
  - id: a
    on: node
    read_only: true
    run: "true"
"#,
    );
    let ran = s.exec(&["-i", "addr=-oProxyCommand=touch /tmp/x"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("is not a valid host address"),
        "{}",
        ran.stderr
    );
}
