//! `runbook validate`: one fixture per diagnostic code, snapshot-tested; no panic on any input.

use std::time::Duration;

use crate::harness::{fixture, insta_settings, root, runbook};

/// Every fixture under `tests/fixtures/diagnostics/CODE.yaml` triggers exactly the diagnostic
/// it is named after, exits 2 (with `--strict` for the warnings), and renders as snapshotted.
#[test]
fn every_diagnostic_code_has_a_fixture_and_snapshot() {
    let dir = fixture("diagnostics");
    let mut codes = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let code = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let rel = format!("tests/fixtures/diagnostics/{code}.yaml");
        let ran = runbook(["validate", "--strict", &rel]).run();
        assert_eq!(ran.code, Some(2), "{code}: expected exit 2\n{}", ran.stderr);
        assert!(
            ran.stderr.contains(&format!("[{code}]")),
            "{code} not reported:\n{}",
            ran.stderr
        );
        insta_settings().bind(|| insta::assert_snapshot!(format!("diag-{code}"), ran.snapshot()));
        codes.push(code);
    }
    // Every code documented in docs/diagnostics.md has a fixture, and vice versa.
    let doc =
        std::fs::read_to_string(root().join("docs/diagnostics.md")).expect("docs/diagnostics.md");
    for code in &codes {
        assert!(
            doc.contains(&format!("`{code}`")),
            "{code} is not documented in docs/diagnostics.md"
        );
    }
    let documented: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("### `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    for code in documented {
        assert!(
            codes.iter().any(|c| c == code),
            "documented code {code} has no fixture"
        );
    }
}

#[test]
fn json_format_gives_positions_for_editors() {
    let ran = runbook([
        "validate",
        "--format",
        "json",
        "tests/fixtures/diagnostics/unknown-field.yaml",
    ])
    .run();
    assert_eq!(ran.code, Some(2));
    let v: serde_json::Value = serde_json::from_str(&ran.stdout).expect("json");
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"], "unknown-field");
    assert_eq!(d["line"], 6);
    assert_eq!(d["column"], 5);
    assert_eq!(d["help"], "did you mean `timeout`?");
    assert_eq!(v["valid"], false);
}

#[test]
fn warnings_pass_unless_strict() {
    let f = "tests/fixtures/diagnostics/unused-input.yaml";
    let lenient = runbook(["validate", f]).run();
    assert_eq!(lenient.code, Some(0), "{}", lenient.stderr);
    assert!(lenient.stderr.contains("warning[unused-input]"));
    let strict = runbook(["validate", "--strict", f]).run();
    assert_eq!(strict.code, Some(2));
}

#[test]
fn all_problems_are_reported_in_one_pass() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("many.yaml");
    std::fs::write(
        &f,
        "runbook: many\nversion: 1\nsteps:\n  - id: a\n    run: echo {{ nope }}\n    timout: 1s\n  - id: a\n    needs: [zz]\n    run: echo\n    timeout: 5\n",
    )
    .expect("write");
    let ran = runbook(["validate".as_ref(), f.as_os_str()]).run();
    assert_eq!(ran.code, Some(2));
    for code in [
        "undefined-variable",
        "unknown-field",
        "duplicate-step-id",
        "unknown-dependency",
        "bad-duration",
    ] {
        assert!(
            ran.stderr.contains(&format!("[{code}]")),
            "missing {code}:\n{}",
            ran.stderr
        );
    }
}

#[test]
fn colour_only_when_asked() {
    let f = "tests/fixtures/diagnostics/unknown-field.yaml";
    let plain = runbook(["validate", f]).run();
    assert!(
        !plain.stderr.contains('\u{1b}'),
        "escape codes without a terminal"
    );
    let forced = runbook(["--color", "always", "validate", f]).run();
    assert!(forced.stderr.contains('\u{1b}'));
}

/// `runbooks/*.yaml` and the shared pieces they call, `runbooks/lib/*.yaml`.
fn shipped() -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for dir in ["runbooks", "runbooks/lib"] {
        let entries = std::fs::read_dir(root().join(dir)).expect("runbooks");
        out.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml")),
        );
    }
    assert!(out.iter().any(|p| p.ends_with("lib/unseal.yaml")));
    out
}

#[test]
fn shipped_runbooks_are_valid_strictly() {
    for p in shipped() {
        let ran = runbook(["validate".as_ref(), "--strict".as_ref(), p.as_os_str()]).run();
        assert_eq!(ran.code, Some(0), "{}:\n{}", p.display(), ran.stderr);
    }
}

/// Every fixture and shipped runbook, cut at every byte offset, goes through the library's
/// load and validate (`runbook::check_source`) without a panic: each prefix is either a valid runbook or yields at
/// least one error diagnostic. A sample of prefixes also goes through the real binary, which
/// must exit 0 or 2 (never crash, never hang).
#[test]
fn truncated_input_never_panics() {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(fixture("diagnostics"))
        .expect("fixtures")
        .flatten()
        .map(|e| e.path())
        .collect();
    let shipped: Vec<std::path::PathBuf> = shipped();
    files.extend(shipped.iter().cloned());
    files.sort();
    let tmp = tempfile::tempdir().expect("tmp");
    let mut sampled = 0;
    for path in files {
        let bytes = std::fs::read(&path).expect("read");
        // Every cut of the fixtures; for the shipped runbooks (tens of KiB in all, each cut
        // validated from scratch), every cut near the start and the end and an odd stride
        // between, so the test stays minutes-bounded as the library grows.
        let stride = if shipped.contains(&path) {
            (bytes.len() / 1500).max(1) | 1
        } else {
            1
        };
        let edge = |cut: usize| cut < 256 || cut + 256 > bytes.len();
        for cut in (0..=bytes.len()).filter(|c| edge(*c) || c % stride == 0) {
            let prefix = bytes[..cut].to_vec();
            let v = runbook::check_source("cut.yaml", prefix.clone());
            assert!(
                v.runbook().is_some() || v.diagnostics().iter().any(|d| d.is_error()),
                "{} cut at {cut}: invalid but no error",
                path.display()
            );
            // Rendering must not panic either (spans at the very end, multibyte boundaries).
            let _ = v.render(false);
            if cut % 97 == 0 {
                let f = tmp.path().join("cut.yaml");
                std::fs::write(&f, &prefix).expect("write");
                let ran = runbook(["validate".as_ref(), f.as_os_str()])
                    .timeout(Duration::from_secs(20))
                    .run();
                let expected = if v.has_errors(false) {
                    Some(2)
                } else {
                    Some(0)
                };
                assert_eq!(
                    ran.code,
                    expected,
                    "{} cut at {cut}:\n{}",
                    path.display(),
                    ran.stderr
                );
                sampled += 1;
            }
        }
    }
    assert!(sampled > 50);
}

fn hostile(name: &str, bytes: Vec<u8>) {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = tmp.path().join(name);
    std::fs::write(&f, bytes).expect("write");
    let ran = runbook(["validate".as_ref(), f.as_os_str()])
        .timeout(Duration::from_secs(30))
        .run();
    assert_eq!(ran.code, Some(2), "{name}: {}", ran.stderr);
    assert!(
        ran.stderr.contains("error["),
        "{name}: no diagnostic:\n{}",
        ran.stderr
    );
}

#[test]
fn hostile_documents_get_a_diagnostic() {
    hostile(
        "deep-seq.yaml",
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
    );
    hostile("deep-map.yaml", "{a: ".repeat(50_000).into_bytes());
    let mut deep_block = String::new();
    for i in 0..500 {
        deep_block.push_str(&" ".repeat(i * 2));
        deep_block.push_str("k:\n");
    }
    hostile("deep-block.yaml", deep_block.into_bytes());
    hostile(
        "huge-scalar.yaml",
        format!(
            "runbook: big\nversion: 1\nsteps:\n  - id: a\n    run: {{{{ {} }}}}\n",
            "x".repeat(8_000_000)
        )
        .into_bytes(),
    );
    let mut laughs = String::from(
        "runbook: lol\nversion: 1\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..10 {
        laughs.push_str(&format!(
            "l{i}: &l{i} [{}]\n",
            vec![format!("*l{}", i - 1); 9].join(", ")
        ));
    }
    laughs.push_str("steps: []\n");
    hostile("laughs.yaml", laughs.into_bytes());
    hostile("binary.yaml", vec![0xff, 0xfe, 0x00, 0x80, b'\n', 0xc3]);
    hostile(
        "tabs.yaml",
        b"runbook: tabs\nversion: 1\nsteps:\n\t- id: a\n\t  run: echo\n".to_vec(),
    );
    hostile(
        "nul.yaml",
        b"runbook: a\x00b\nversion: 1\nsteps: 3\n".to_vec(),
    );
    hostile("scalar-root.yaml", b"just a string\n".to_vec());
    hostile(
        "huge-template.yaml",
        format!(
            "runbook: t\nversion: 1\nsteps:\n  - id: a\n    run: \"{}\"\n",
            "{{ (".repeat(20_000)
        )
        .into_bytes(),
    );
}

#[test]
fn unreadable_file_is_a_clear_error() {
    let ran = runbook(["validate", "no/such/file.yaml"]).run();
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr.contains("cannot read no/such/file.yaml"),
        "{}",
        ran.stderr
    );
}

#[test]
fn schema_copy_is_current() {
    let ran = runbook(["schema"]).run();
    assert_eq!(ran.code, Some(0));
    let committed = std::fs::read_to_string(root().join("docs/runbook.schema.json"))
        .expect("docs/runbook.schema.json");
    assert_eq!(
        ran.stdout.trim(),
        committed.trim(),
        "docs/runbook.schema.json is stale: run `runbook schema > docs/runbook.schema.json`"
    );
    let v: serde_json::Value = serde_json::from_str(&ran.stdout).expect("schema is JSON");
    assert_eq!(v["properties"]["version"]["const"], 1);
}

#[test]
fn list_shows_descriptions() {
    let ran = runbook(["list", "runbooks"]).run();
    assert_eq!(ran.code, Some(0));
    assert!(ran.stdout.contains("runbooks/vault-crash.yaml"));
    assert!(
        ran.stdout
            .contains("vault-crash: Recover a crashed Vault or OpenBao node")
    );
    for name in [
        "vault-triage",
        "vault-audit",
        "vault-kv-policy",
        "vault-token",
    ] {
        assert!(
            ran.stdout.contains(&format!("runbooks/{name}.yaml")),
            "{name} is listed:\n{}",
            ran.stdout
        );
    }
}

#[test]
fn help_documents_exit_codes_and_completions_work() {
    let ran = runbook(["--help"]).run();
    assert!(
        ran.stdout.contains("4  rollback incomplete"),
        "{}",
        ran.stdout
    );
    for sub in [
        "validate",
        "plan",
        "exec",
        "resume",
        "approve",
        "reject",
        "runs",
        "transcript",
        "attach",
        "unlock",
        "list",
        "schema",
        "completions",
    ] {
        let h = runbook([sub, "--help"]).run();
        assert_eq!(h.code, Some(0));
        assert!(
            h.stdout.contains("Examples:"),
            "{sub} --help has no examples"
        );
    }
    for shell in ["bash", "zsh", "fish"] {
        let c = runbook(["completions", shell]).run();
        assert_eq!(c.code, Some(0));
        assert!(c.stdout.contains("runbook"));
    }
    let v = runbook(["--version"]).run();
    assert!(v.stdout.starts_with("runbook "));
    let bad = runbook(["frobnicate"]).run();
    assert_eq!(bad.code, Some(2));
}

/// An unquoted `{{` (in a flow mapping or as a whole value) is named as the cause, not tabs.
#[test]
fn unquoted_template_gets_the_quote_hint() {
    let dir = tempfile::tempdir().expect("tmp");
    for (name, yaml) in [
        (
            "flow.yaml",
            "runbook: x\nversion: 1\nsteps:\n  - id: a\n    http: { get: http://x/{{ node }} }\n",
        ),
        (
            "plain.yaml",
            "runbook: x\nversion: 1\nsteps:\n  - id: a\n    run: {{ node }}\n",
        ),
    ] {
        let f = dir.path().join(name);
        std::fs::write(&f, yaml).expect("write");
        let ran = crate::harness::runbook(["validate".to_string(), f.display().to_string()]).run();
        assert_eq!(ran.code, Some(2), "{name}: {}", ran.stderr);
        assert!(
            ran.stderr
                .contains("quote this value: `{{` starts a YAML mapping"),
            "{name}: {}",
            ran.stderr
        );
        assert!(!ran.stderr.contains("tabs"), "{name}: {}", ran.stderr);
    }
}

/// Regression: `runbook show last --json | head -1` panicked with "failed printing to stdout:
/// Broken pipe"; a printing command now ends quietly when its reader goes away.
#[test]
fn printing_commands_end_quietly_on_a_closed_pipe() {
    let runs = tempfile::tempdir().expect("tmp");
    let bin = env!("CARGO_BIN_EXE_runbook");
    let made = crate::harness::runbook([
        "exec".as_ref(),
        "examples/local.yaml".as_ref(),
        "--yes".as_ref(),
        "--runs-dir".as_ref(),
        runs.path().as_os_str(),
    ])
    .run();
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    // `true` exits at once: every write of the command meets a closed pipe.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{bin}' show last --json --runs-dir '{}' | true",
            runs.path().display()
        ))
        .current_dir(crate::harness::root())
        .output()
        .expect("sh");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}
