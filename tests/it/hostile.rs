//! Hostile files and values the tool is given: endless devices, FIFOs, huge files, alias
//! bombs and secrets too short to mask. Each is refused with a clear error, never a hang, an
//! abort or unbounded memory.

use std::time::Duration;

use crate::exec::Scratch;
use crate::harness::runbook;

fn mkfifo(path: &std::path::Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "mkfifo failed");
}

#[test]
fn endless_and_special_files_are_refused_as_runbooks() {
    let s = Scratch::new();
    mkfifo(&s.path("fifo.yaml"));
    let big = s.path("big.yaml");
    let mut text = String::from("runbook: big\nversion: 1\nsteps:\n  - id: a\n    run: true\n# ");
    text.push_str(&"x".repeat(17 * 1024 * 1024));
    std::fs::write(&big, text).expect("write");
    for (path, why) in [
        ("/dev/zero".to_string(), "not a regular file"),
        (
            s.path("fifo.yaml").display().to_string(),
            "not a regular file",
        ),
        (big.display().to_string(), "larger than 16 MiB"),
    ] {
        for cmd in ["validate", "plan", "exec"] {
            let ran = runbook([cmd, path.as_str()])
                .timeout(Duration::from_secs(30))
                .run();
            assert_eq!(ran.code, Some(2), "{cmd} {path}: {}", ran.stderr);
            assert!(ran.stderr.contains(why), "{cmd} {path}: {}", ran.stderr);
        }
    }
}

#[test]
fn endless_inputs_files_and_from_file_are_refused() {
    let s = Scratch::new();
    mkfifo(&s.path("fifo"));
    s.runbook(&format!(
        "runbook: f\nversion: 1\ninputs:\n  a: {{ from_file: /dev/zero, default: x }}\n  b: {{ secret: true, from_file: {} }}\nsteps:\n  - id: s\n    run: touch {{D}}/ran; echo {{{{ a }}}} {{{{ b }}}}\n",
        s.path("fifo").display()
    ));
    let ran = s.exec(&["--inputs-file", "/dev/zero"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("not a regular file"), "{}", ran.stderr);
    let ran = s.exec(&[]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("not a regular file"), "{}", ran.stderr);
    assert!(!s.path("ran").exists());
}

#[test]
fn an_alias_bomb_of_large_scalars_is_a_diagnostic() {
    let s = Scratch::new();
    let mut text = format!(
        "runbook: bomb\nversion: 1\nx: &big \"{}\"\nsteps:\n  - id: a\n    run: true\n    env:\n",
        "y".repeat(4 * 1024 * 1024 - 64)
    );
    for i in 0..2000 {
        text.push_str(&format!("      V{i}: *big\n"));
    }
    std::fs::write(s.path("bomb.yaml"), text).expect("write");
    let ran = runbook(["validate".as_ref(), s.path("bomb.yaml").as_os_str()]).run();
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("alias-expansion"), "{}", ran.stderr);
    assert!(ran.stderr.contains("32 MiB"), "{}", ran.stderr);
}

#[test]
fn short_secrets_are_refused_unless_allowed_and_then_masked_as_words_only() {
    let s = Scratch::new();
    s.runbook("runbook: short\nversion: 1\ninputs:\n  pw: { secret: true, from_env: PW }\nsteps:\n  - id: a\n    run: touch {D}/ran\n");
    let ran = runbook([
        "exec".to_string(),
        s.path("runbook.yaml").display().to_string(),
        "--runs-dir".into(),
        s.path("runs").display().to_string(),
    ])
    .env("PW", "root")
    .run();
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(ran.stderr.contains("secret-too-short"), "{}", ran.stderr);
    assert!(!s.path("ran").exists());

    s.runbook("runbook: short\nversion: 1\ninputs:\n  pw: { secret: true, from_env: PW, min_length: 4 }\nsteps:\n  - id: a\n    run: echo generate-root {{ pw }} rooted; echo \"$X\"\n    env: { X: \"{{ pw }}\" }\n");
    let ran = runbook([
        "exec".to_string(),
        s.path("runbook.yaml").display().to_string(),
        "--runs-dir".into(),
        s.path("runs").display().to_string(),
        "--progress".into(),
        "plain".into(),
    ])
    .env("PW", "root")
    .run();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("generate-root ******** rooted"),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains(" root\n"), "{}", ran.stderr);
}
