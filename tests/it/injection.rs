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

/// Makes `a.tar` holding `app.conf` in `dir`, and `dir/out`.
fn tarball(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("out")).expect("mkdir");
    std::fs::write(dir.join("app.conf"), "x").expect("write");
    assert!(
        std::process::Command::new("tar")
            .args(["-cf", "a.tar", "app.conf"])
            .current_dir(dir)
            .status()
            .is_ok_and(|st| st.success())
    );
}

/// Attack 13 D14: a value that starts a word (joined to text after it, or several values) and
/// reads as an option is refused before the step runs, and a `--` of another simple command
/// does not protect it. Each runbook would run `touch MARKER` through `tar --to-command=`.
#[test]
fn a_value_starting_a_word_never_becomes_an_option() {
    let s = Scratch::new();
    tarball(s.dir.path());
    let marker = s.path("MARKER");
    let evil = format!("--to-command=touch {} #", marker.display());
    let tar = "tar -xf {D}/a.tar -C {D}/out";
    // (command, expected `line L, word W`)
    let cases = [
        (format!("{tar} {{{{ v }}}}.conf"), "line 1, word 6"),
        (format!("{tar} \"{{{{ v }}}}.conf\""), "line 1, word 6"),
        (format!("{tar} {{{{ e }}}}{{{{ v }}}}"), "line 1, word 6"),
        (format!("{tar} ${{NOPE:-{{{{ v }}}}}}"), "line 1, word 6"),
        (format!("echo -- ; {tar} {{{{ v }}}}"), "line 1, word 6"),
        (format!("echo -- && {tar} {{{{ v }}}}"), "line 1, word 6"),
        (format!("echo -- || {tar} {{{{ v }}}}"), "line 1, word 6"),
        (format!("echo -- | {tar} {{{{ v }}}}"), "line 1, word 6"),
        (
            format!("echo --\n      {tar} {{{{ v }}}}"),
            "line 2, word 6",
        ),
        (format!("echo \"--\"; {tar} {{{{ v }}}}"), "line 1, word 6"),
        (format!("x=--; {tar} {{{{ v }}}}"), "line 1, word 6"),
        (
            format!("cat -- /dev/null; {tar} {{{{ v }}}}"),
            "line 1, word 6",
        ),
        (
            format!("echo \"$(echo --)\" $({tar} {{{{ v }}}})"),
            "line 1, word 6",
        ),
        (
            format!("sh -c '{tar} \"$1\"' -- {{{{ v }}}}"),
            "line 1, word 5",
        ),
    ];
    for (cmd, place) in &cases {
        s.runbook(&format!(
            "runbook: opt\nversion: 1\ninputs:\n  v: {{}}\n  e: {{ default: \"\" }}\nsteps:\n  - id: before\n    run: echo first\n  - id: restore\n    needs: [before]\n    run: |\n      {cmd}\n"
        ));
        let ran = s.exec(&["--yes", "-i", &format!("v={evil}")]);
        assert_eq!(ran.code, Some(1), "{cmd}:\n{}", ran.stderr);
        assert!(!marker.exists(), "{cmd}: the value became a tar option");
        assert!(
            ran.stderr.contains("failed restore")
                && ran.stderr.contains("starts with `-`")
                && ran.stderr.contains(place),
            "{cmd}:\n{}",
            ran.stderr
        );
    }
    // Two values forming `--help`; `cat {{ name }}p` with `--hel`.
    s.runbook("runbook: opt\nversion: 1\ninputs:\n  a: {}\n  b: {}\nsteps:\n  - id: two\n    run: cat {{ a }}{{ b }}\n  - id: suffix\n    run: cat {{ a }}p\n");
    let ran = s.exec(&["--yes", "-i", "a=-", "-i", "b=-help"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(!ran.stderr.contains("Usage"), "{}", ran.stderr);
    assert!(ran.stderr.contains("failed two"), "{}", ran.stderr);
    // After `--` in the same command, joined after text, a number: accepted, and the value
    // reaches tar as a member name (so nothing runs).
    s.runbook(&format!(
        "runbook: opt\nversion: 1\ninputs:\n  v: {{}}\n  n: {{ type: int, default: -2 }}\nsteps:\n  - id: ended\n    run: {tar} -- {{{{ v }}}}.conf || true\n  - id: joined\n    run: {tar} ./{{{{ v }}}} || true; echo n={{{{ n }}}}x\n"
    ));
    let ran = s.exec(&["--yes", "-i", &format!("v={evil}")]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(!marker.exists(), "a value after -- ran a command");
    assert!(ran.stderr.contains("n=-2x"), "{}", ran.stderr);
    let ran = s.exec(&["--yes", "-i", "v=app"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(s.read("out/app.conf"), "x");
}

/// A secret value that would be an option is refused without being shown.
#[test]
fn an_option_refusal_does_not_show_a_secret() {
    let s = Scratch::new();
    tarball(s.dir.path());
    let marker = s.path("MARKER");
    s.runbook("runbook: opt\nversion: 1\ninputs:\n  token: { secret: true, from_env: TOKEN }\nsteps:\n  - id: restore\n    run: tar -xf {D}/a.tar -C {D}/out {{ token }}.conf\n");
    let evil = format!("--to-command=touch {} #", marker.display());
    let ran = crate::harness::runbook([
        "exec".to_string(),
        s.path("runbook.yaml").display().to_string(),
        "--yes".into(),
        "--runs-dir".into(),
        s.path("runs").display().to_string(),
    ])
    .env("TOKEN", &evil)
    .run();
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(!marker.exists());
    assert!(
        ran.stderr.contains("(a secret) starts with `-`") && ran.stderr.contains("line 1, word 6"),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("to-command"), "{}", ran.stderr);
    assert!(!ran.stdout.contains("to-command"), "{}", ran.stdout);
}

/// Runs `runbook` with `args` in a private mount namespace where `/bin/sh` is bash, as on
/// RHEL, Fedora or Amazon Linux (the system's `/bin/sh` is not touched).
fn with_bash_as_sh(args: &[String]) -> crate::harness::Ran {
    let bin = env!("CARGO_BIN_EXE_runbook");
    let quoted: Vec<String> = std::iter::once(bin.to_string())
        .chain(args.iter().cloned())
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    let script = format!(
        "mount --make-rprivate / && mount --bind /bin/bash /bin/sh && test -n \"$(/bin/sh -c 'echo $BASH_VERSION')\" || exit 97; exec {}",
        quoted.join(" ")
    );
    let out = std::process::Command::new("unshare")
        .args(["-m", "/bin/bash", "-c", &script])
        .env("NO_COLOR", "1")
        .output()
        .expect("unshare");
    crate::harness::Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Attack 13 D15: bash evaluates array subscripts in every arithmetic context, so a quoted
/// value `a[$(touch MARKER)]` would run code there. Each such position is a validate error
/// (`unsafe-quoting-context`), and `exec` refuses before anything runs, also with bash as sh.
#[test]
fn values_in_arithmetic_contexts_are_refused() {
    let s = Scratch::new();
    let marker = s.path("MARKER");
    let evil = format!("v=a[$(touch {})]", marker.display());
    let commands = [
        "(( {{ v }} )) && echo t",
        "for (( i = {{ v }}; i < 2; i++ )); do :; done",
        "[[ {{ v }} -eq 1 ]] && echo t",
        "[[ 1 -ne \"{{ v }}\" ]] && echo t",
        "[[ 1 -lt {{ v }} || 1 -le {{ v }} || 1 -gt {{ v }} || 1 -ge {{ v }} ]]",
        "let x={{ v }}",
        "x=abc; echo ${x:{{ v }}:1}",
        "x=abc; echo \"${x:1:{{ v }}}\"",
        "echo $[ {{ v }} ]",
        "declare -i x={{ v }}",
        "typeset -i x; x={{ v }}",
        "f() { local -i x={{ v }}; }; f",
        "a=(1 2); echo ${a[{{ v }}]}",
        "a[{{ v }}]=1",
        "a=([{{ v }}]=1)",
        "echo $(( {{ v }} ))",
    ];
    let unshare = std::path::Path::new("/usr/bin/unshare").exists()
        && std::path::Path::new("/bin/bash").exists();
    for cmd in commands {
        s.runbook(&format!(
            "runbook: arith\nversion: 1\ninputs:\n  v: {{ default: \"1\" }}\nsteps:\n  - id: first\n    run: touch {{D}}/first\n  - id: calc\n    run: |\n      {cmd}\n"
        ));
        let ran =
            crate::harness::runbook(["validate", &s.path("runbook.yaml").display().to_string()])
                .run();
        assert_eq!(ran.code, Some(2), "{cmd}:\n{}{}", ran.stdout, ran.stderr);
        let all = format!("{}{}", ran.stdout, ran.stderr);
        assert!(all.contains("unsafe-quoting-context"), "{cmd}:\n{all}");
        assert!(all.contains("arithmetic context"), "{cmd}:\n{all}");
        let args = vec![
            "exec".to_string(),
            s.path("runbook.yaml").display().to_string(),
            "--yes".into(),
            "-i".into(),
            evil.clone(),
            "--runs-dir".into(),
            s.path("runs").display().to_string(),
        ];
        let ran = if unshare {
            with_bash_as_sh(&args)
        } else {
            crate::harness::runbook(args).run()
        };
        assert_eq!(ran.code, Some(2), "{cmd}:\n{}", ran.stderr);
        assert!(!marker.exists(), "{cmd}: the value ran as code");
        assert!(!s.path("first").exists(), "{cmd}: a step ran");
    }
    // Not arithmetic: `[ … -eq … ]` reads a plain number; `${x:-…}` is a default.
    s.runbook("runbook: arith\nversion: 1\ninputs:\n  v: { default: \"1\" }\nsteps:\n  - id: calc\n    run: |\n      [ {{ v }} -eq 1 ] 2>/dev/null; echo \"${NOPE:-{{ v }}}\" > {D}/default\n");
    let args = vec![
        "exec".to_string(),
        s.path("runbook.yaml").display().to_string(),
        "--yes".into(),
        "-i".into(),
        evil.clone(),
        "--runs-dir".into(),
        s.path("runs").display().to_string(),
    ];
    let ran = if unshare {
        with_bash_as_sh(&args)
    } else {
        crate::harness::runbook(args).run()
    };
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(!marker.exists(), "the value ran as code");
    assert_eq!(
        s.read("default"),
        format!("a[$(touch {})]\n", marker.display())
    );
}

/// Attack 13 D16: `\{{ v }}` used to render as `\0`, dropping the value; the backslash is now
/// dropped and the value arrives intact.
#[test]
fn a_backslash_before_a_value_keeps_the_value() {
    let s = Scratch::new();
    s.runbook("runbook: bs\nversion: 1\ninputs:\n  v: {}\nsteps:\n  - id: a\n    run: |\n      printf '%s|' \\{{ v }} end > {D}/out\n      printf '%s|' \"\\{{ v }}\" >> {D}/out\n");
    let ran = s.exec(&["--yes", "-i", "v=hello world * $(x)"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(s.read("out"), "hello world * $(x)|end|hello world * $(x)|");
}

/// D14 over SSH: the same refusal for a remote step, before anything reaches the host.
#[test]
fn a_value_starting_a_word_is_refused_on_a_remote_host() {
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
    tarball(&dir);
    let marker = dir.join("MARKER");
    let yaml = format!(
        "runbook: remote\nversion: 1\ninputs:\n  v: {{}}\nhosts:\n  node: {{ address: 127.0.0.1, port: {p}, user: root }}\nsteps:\n  - id: restore\n    on: node\n    run: echo --; tar -xf {d}/a.tar -C {d}/out {{{{ v }}}}.conf\n",
        p = sshd.port,
        d = dir.display()
    );
    let f = dir.join("rb.yaml");
    std::fs::write(&f, yaml).expect("write");
    let ran = crate::harness::runbook([
        "exec".to_string(),
        f.display().to_string(),
        "--yes".into(),
        "--ssh-config".into(),
        keys.ssh_config().display().to_string(),
        "--runs-dir".into(),
        dir.join("runs").display().to_string(),
        "-i".into(),
        format!("v=--to-command=touch {} #", marker.display()),
    ])
    .run();
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        !marker.exists(),
        "the value became a tar option on the host"
    );
    assert!(
        ran.stderr.contains("failed restore") && ran.stderr.contains("line 1, word 6"),
        "{}",
        ran.stderr
    );
}
