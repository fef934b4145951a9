//! `runbook plan`: the dry run, in all four formats, touching nothing.

use crate::harness::{insta_settings, runbook};

const VAULT: &str = "runbooks/vault-crash.yaml";

#[test]
fn vault_plan_in_every_format() {
    for format in ["text", "json", "dot", "mermaid"] {
        let ran = runbook(["plan", VAULT, "-i", "node=vault-2", "--format", format]).run();
        assert_eq!(ran.code, Some(0), "{format}: {}", ran.stderr);
        insta_settings()
            .bind(|| insta::assert_snapshot!(format!("plan-vault-crash-{format}"), ran.stdout));
    }
}

#[test]
fn plan_is_deterministic() {
    let a = runbook(["plan", VAULT, "-i", "node=vault-2", "--format", "json"]).run();
    let b = runbook(["plan", VAULT, "-i", "node=vault-2", "--format", "json"]).run();
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn json_plan_has_schema_version_and_waves() {
    let ran = runbook(["plan", VAULT, "-i", "node=vault-2", "--format", "json"]).run();
    let v: serde_json::Value = serde_json::from_str(&ran.stdout).expect("json");
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["waves"][0], serde_json::json!([0]));
    assert_eq!(v["steps"][0]["id"], "triage");
    let halt = v["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == "halt-traffic.disable"))
        .expect("halt-traffic.disable (lib/lb-drain.yaml, called as halt-traffic)");
    assert_eq!(
        halt["gate"]["message"],
        "Disable vault/vault-2 in HAProxy (cause: <steps.triage.outputs.cause>)?"
    );
}

#[test]
fn missing_required_inputs_are_named_together() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("two.yaml");
    std::fs::write(&f, "runbook: two\nversion: 1\ninputs:\n  a: { required: true }\n  b: { required: true }\nsteps:\n  - id: s\n    run: echo {{ a }} {{ b }}\n").expect("write");
    let ran = runbook(["plan".as_ref(), f.as_os_str()]).run();
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr.contains("missing required inputs `a`, `b`"),
        "{}",
        ran.stderr
    );
}

#[test]
fn secrets_are_refused_on_the_command_line_and_masked() {
    let ran = runbook([
        "plan",
        VAULT,
        "-i",
        "node=vault-2",
        "-i",
        "vault_token=s.canary",
    ])
    .run();
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr
            .contains("input `vault_token` is secret and is refused on the command line"),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("s.canary"));
    let ok = runbook(["plan", VAULT, "-i", "node=vault-2"])
        .env("VAULT_TOKEN", "s.canary-token")
        .env("VAULT_UNSEAL_KEYS", "share-one,share-two")
        .run();
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert!(
        !ok.stdout.contains("canary") && !ok.stdout.contains("share-"),
        "secret in plan:\n{}",
        ok.stdout
    );
    assert!(ok.stdout.contains("X-Vault-Token: ********"));
    assert!(ok.stdout.contains("(env VAULT_TOKEN)"));
}

#[test]
fn input_constraints_and_unknown_inputs() {
    let ran = runbook(["plan", VAULT, "-i", "node=vault 2; rm -rf /", "-i", "nod=x"]).run();
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr
            .contains("unknown input `nod` (did you mean `node`?)"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("input `node` must match"),
        "{}",
        ran.stderr
    );
}

#[test]
fn shell_values_are_quoted_in_the_plan() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("q.yaml");
    std::fs::write(
        &f,
        "runbook: q\nversion: 1\ninputs:\n  msg: {}\nsteps:\n  - id: s\n    run: echo {{ msg }}\n",
    )
    .expect("write");
    let ran = runbook([
        "plan".as_ref(),
        f.as_os_str(),
        "-i".as_ref(),
        "msg=a; touch /tmp/pwned".as_ref(),
    ])
    .run();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    // The plan shows what runs: the command references the value, the value is in the env.
    assert!(
        ran.stdout.contains(r#"echo "${RUNBOOK_V1}""#),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("RUNBOOK_V1=a; touch /tmp/pwned"),
        "{}",
        ran.stdout
    );
}

#[test]
fn inputs_file_is_read() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("incident.yaml");
    std::fs::write(
        &f,
        "node: vault-3\npeer_addrs: ['https://vault-1:8200', 'https://vault-2:8200']\n",
    )
    .expect("write");
    let ran = runbook([
        "plan".as_ref(),
        VAULT.as_ref(),
        "--inputs-file".as_ref(),
        f.as_os_str(),
    ])
    .run();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stdout
            .contains("node             = vault-3  (inputs file)"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("PEERS=https://vault-1:8200 https://vault-2:8200"),
        "{}",
        ran.stdout
    );
}

#[test]
fn when_decided_by_inputs_is_shown() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("w.yaml");
    std::fs::write(&f, "runbook: w\nversion: 1\ninputs:\n  deep: { type: bool, default: false }\nsteps:\n  - id: s\n    when: deep\n    run: echo deep\n").expect("write");
    let ran = runbook(["plan".as_ref(), f.as_os_str()]).run();
    assert!(
        ran.stdout.contains("deep (false now: will be SKIPPED)"),
        "{}",
        ran.stdout
    );
}

/// Every runbook of the library validates with `--strict` and has a plan snapshot.
#[test]
fn library_runbooks_validate_strictly_and_plans_are_stable() {
    let cases: [(&str, &[&str]); 13] = [
        ("vault-crash", &["-i", "node=vault-2"]),
        ("vault-triage", &["-i", "node=vault-2"]),
        ("vault-audit", &["-i", "node=vault-1"]),
        (
            "vault-kv-policy",
            &[
                "-i",
                "policy=app",
                "-i",
                "client_token_file=/etc/app/token",
                "-i",
                "check_path=secret/data/app/db",
            ],
        ),
        ("vault-token", &["-i", "client_token_file=/etc/app/token"]),
        (
            "vault-tls-rotate",
            &[
                "-i",
                "node=vault-2",
                "-i",
                "new_cert=/etc/vault.d/tls/new.crt",
                "-i",
                "new_key=/etc/vault.d/tls/new.key",
            ],
        ),
        ("vault-raft-peers-json", &["-i", "node=vault-1"]),
        (
            "vault-oom",
            &[
                "-i",
                "node=vault-2",
                "-i",
                "memory_max=4G",
                "-i",
                "cache_size=32768",
            ],
        ),
        ("vault-storage", &["-i", "node=vault-2"]),
        ("vault-config", &["-i", "node=vault-2"]),
        ("vault-listener", &["-i", "node=vault-2"]),
        (
            "vault-slow-storage",
            &["-i", "vault_addr=https://vault-1:8200"],
        ),
        ("vault-sealed", &["-i", "node=vault-2"]),
    ];
    for (name, inputs) in cases {
        let file = format!("runbooks/{name}.yaml");
        let v = runbook(["validate", "--strict", &file]).run();
        assert_eq!(v.code, Some(0), "{name}: {}{}", v.stdout, v.stderr);
        if name == "vault-crash" {
            continue; // its plans are snapshotted in every format above
        }
        let mut args = vec!["plan", file.as_str()];
        args.extend_from_slice(inputs);
        let ran = runbook(args).run();
        assert_eq!(ran.code, Some(0), "{name}: {}", ran.stderr);
        insta_settings().bind(|| insta::assert_snapshot!(format!("plan-{name}-text"), ran.stdout));
    }
}
