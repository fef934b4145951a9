//! Runs kept in PostgreSQL (`--store`, issue 17) against a real server (tests/it/pg.rs): the
//! journal in the database with the file journal's chain, runs seen and resumed from "another
//! machine" (a second runs directory, nothing local), export/import, the database stopped
//! mid-run, and no secret in any row.

use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;

use crate::exec::{Scratch, wait_for};
use crate::harness::{Ran, runbook};
use crate::pg::{PASSWORD, Pg};

/// A server with the schema created.
fn store() -> Pg {
    let pg = Pg::start();
    let init = runbook(["store", "init", "--store", &pg.url()]).run();
    assert_eq!(init.code, Some(0), "{}", init.snapshot());
    pg
}

/// `runbook ARGS --runs-dir RUNS --store URL`.
fn rb(pg: &Pg, runs: &std::path::Path, args: &[&str]) -> Ran {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend([
        "--runs-dir".into(),
        runs.display().to_string(),
        "--store".into(),
        pg.url(),
    ]);
    runbook(all).run()
}

fn no_password(ran: &Ran) {
    let all = format!("{}{}", ran.stdout, ran.stderr);
    assert!(!all.contains(PASSWORD), "password printed: {all}");
}

/// The one run id under `runs`.
fn only_run(runs: &std::path::Path) -> String {
    let ids: Vec<String> = std::fs::read_dir(runs)
        .expect("runs dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids[0].clone()
}

const THREE: &str = r#"
runbook: three
version: 1
steps:
  - id: a
    run: echo a >> {D}/count-a
  - id: b
    needs: [a]
    run: echo b >> {D}/count-b
  - id: c
    needs: [b]
    run: echo c >> {D}/count-c
"#;

#[test]
fn journal_in_the_database_is_read_and_verified_from_another_machine() {
    let pg = store();
    let s = Scratch::new();
    s.runbook(THREE);
    let here = s.path("here");
    let ran = rb(
        &pg,
        &here,
        &["exec", &s.path("runbook.yaml").display().to_string()],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.snapshot());
    no_password(&ran);
    let id = only_run(&here);

    // "Another machine": a runs directory that has never seen the run.
    let there = s.path("there");
    let runs = rb(&pg, &there, &["runs"]);
    assert_eq!(runs.code, Some(0), "{}", runs.snapshot());
    assert!(runs.stdout.contains(&id), "{}", runs.snapshot());
    let show = rb(&pg, &there, &["show", &id[..12]]);
    assert_eq!(show.code, Some(0), "{}", show.snapshot());
    assert!(show.stdout.contains("succeeded"), "{}", show.snapshot());
    let verify = rb(&pg, &there, &["transcript", "--verify", "last"]);
    assert_eq!(verify.code, Some(0), "{}", verify.snapshot());
    assert!(
        verify.stdout.contains("hash chain intact") && verify.stdout.contains("sealed end"),
        "{}",
        verify.snapshot()
    );
    let transcript = rb(&pg, &there, &["transcript", &id]);
    assert_eq!(transcript.code, Some(0), "{}", transcript.snapshot());
    assert!(
        transcript.stdout.contains("three"),
        "{}",
        transcript.snapshot()
    );
    for r in [&runs, &show, &verify, &transcript] {
        no_password(r);
    }
    // The database holds exactly the file journal's lines (same bytes, same chain).
    let local = s.read(&format!("here/{id}/journal.jsonl"));
    let copy = s.read(&format!("there/{id}/journal.jsonl"));
    assert!(local.lines().count() >= 8, "{local}");
    assert_eq!(local, copy);

    // Tampering with a row is caught by `transcript --verify` like an edited file.
    pg.sql(&format!(
        "UPDATE runbook_record SET line = replace(line, '\"b\"', '\"B\"') WHERE run_id = '{id}' AND seq = 3"
    ));
    let tampered = rb(&pg, &s.path("third"), &["transcript", "--verify", &id]);
    assert_eq!(tampered.code, Some(1), "{}", tampered.snapshot());
    assert!(
        tampered.stderr.contains("hash chain is broken"),
        "{}",
        tampered.snapshot()
    );
}

#[test]
fn export_then_import_round_trip_verifies() {
    let pg = store();
    let s = Scratch::new();
    s.runbook(THREE);
    // A run of the file store, imported into the database, exported back.
    let ran = s.exec(&[]);
    assert_eq!(ran.code, Some(0), "{}", ran.snapshot());
    let id = only_run(&s.path("runs"));
    let original = s.read(&format!("runs/{id}/journal.jsonl"));

    let imported = rb(
        &pg,
        &s.path("cache"),
        &[
            "import",
            &s.path(&format!("runs/{id}")).display().to_string(),
        ],
    );
    assert_eq!(imported.code, Some(0), "{}", imported.snapshot());
    let again = rb(
        &pg,
        &s.path("cache"),
        &[
            "import",
            &s.path(&format!("runs/{id}")).display().to_string(),
        ],
    );
    assert_eq!(again.code, Some(2), "{}", again.snapshot());
    assert!(
        again.stderr.contains("already in the store"),
        "{}",
        again.snapshot()
    );

    let out = s.path("exported");
    let exported = rb(
        &pg,
        &s.path("cache2"),
        &["export", &id, &out.display().to_string()],
    );
    assert_eq!(exported.code, Some(0), "{}", exported.snapshot());
    no_password(&exported);
    assert_eq!(s.read(&format!("exported/{id}/journal.jsonl")), original);
    let verify = runbook([
        "transcript",
        "--verify",
        "--runs-dir",
        &out.display().to_string(),
        &id,
    ])
    .run();
    assert_eq!(verify.code, Some(0), "{}", verify.snapshot());
    assert!(
        verify.stdout.contains("sealed end present"),
        "{}",
        verify.snapshot()
    );

    // And a run of the database exported by the file store's own export (a plain copy).
    let copied = runbook([
        "export",
        &id,
        &s.path("copied").display().to_string(),
        "--runs-dir",
        &out.display().to_string(),
    ])
    .run();
    assert_eq!(copied.code, Some(0), "{}", copied.snapshot());
    assert_eq!(s.read(&format!("copied/{id}/journal.jsonl")), original);

    // An edited export is refused on import: nothing broken enters the store.
    let edited = s.path(&format!("exported/{id}/journal.jsonl"));
    std::fs::write(&edited, original.replacen("\"a\"", "\"A\"", 1)).expect("edit");
    pg.sql(&format!("DELETE FROM runbook_record WHERE run_id = '{id}'"));
    pg.sql(&format!("DELETE FROM runbook_run WHERE run_id = '{id}'"));
    let refused = rb(
        &pg,
        &s.path("cache"),
        &[
            "import",
            &s.path(&format!("exported/{id}")).display().to_string(),
        ],
    );
    assert_eq!(refused.code, Some(2), "{}", refused.snapshot());
    assert!(refused.stderr.contains("chain"), "{}", refused.snapshot());
    assert!(pg.all_rows_as_text().iter().all(|r| !r.contains(&id)));
}

const CANARY: &str = "s3cr3t/Canary+Pg?x=1&TOPSECRETPG";

fn canary_forms() -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let url: String = CANARY
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    vec![
        CANARY.to_string(),
        "TOPSECRETPG".to_string(),
        b64.encode(CANARY),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(CANARY),
        url.clone(),
        url.to_lowercase(),
        CANARY.bytes().map(|b| format!("{b:02x}")).collect(),
    ]
}

#[test]
fn secret_canary_absent_from_every_table() {
    let pg = store();
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: canary
version: 1
inputs:
  token: { secret: true, from_env: CANARY }
  plain: { default: visible-input-value }
steps:
  - id: echo
    run: >-
      printf '%s\n' {{ token }};
      printf '%s' {{ token }} | base64;
      python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' {{ token }};
      printf '%s' {{ token }} | od -An -tx1 | tr -d ' \n'; echo;
      echo {{ plain }}
  - id: fail
    needs: [echo]
    run: echo "failing with {{ token }}" >&2; exit 3
"#,
    );
    let ran = runbook([
        "exec".to_string(),
        s.path("runbook.yaml").display().to_string(),
        "--runs-dir".into(),
        s.path("runs").display().to_string(),
    ])
    .env("RUNBOOK_STORE", pg.url())
    .env("CANARY", CANARY)
    .run();
    assert_eq!(ran.code, Some(1), "{}", ran.snapshot());
    no_password(&ran);
    let rows = pg.all_rows_as_text();
    assert!(
        rows.iter().any(|r| r.contains("visible-input-value")),
        "the run is not in the database: {rows:?}"
    );
    assert!(rows.iter().any(|r| r.contains("failing with")), "{rows:?}");
    for row in &rows {
        for f in canary_forms() {
            assert!(!row.contains(&f), "a row holds the secret ({f}): {row}");
        }
        assert!(!row.contains(PASSWORD), "a row holds the password: {row}");
    }
}

/// Waits for `child` (bounded), returning its exit code and stderr.
fn finish(mut child: std::process::Child) -> (Option<i32>, String) {
    crate::exec::wait_output(&mut child, Duration::from_secs(60))
}

const HELD: &str = r#"
runbook: held
version: 1
steps:
  - id: a
    idempotent: true
    run: echo a >> {D}/count-a; touch {D}/a-started; while [ ! -f {D}/go ]; do sleep 0.05; done
  - id: b
    needs: [a]
    run: echo b >> {D}/count-b
  - id: c
    needs: [b]
    run: echo c >> {D}/count-c
"#;

fn spawn_exec(s: &Scratch, pg: &Pg, runs: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("exec")
        .arg(s.path("runbook.yaml"))
        .args([
            "--progress",
            "plain",
            "--runs-dir",
            runs,
            "--store",
            &pg.url(),
        ])
        .env("NO_COLOR", "1")
        .env_remove("RUNBOOK_STORE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

#[test]
fn database_stopped_mid_run_stops_before_the_next_step_then_resumes() {
    let pg = store();
    let s = Scratch::new();
    s.runbook(HELD);
    let here = s.path("here").display().to_string();
    let child = spawn_exec(&s, &pg, &here);
    wait_for(&s.path("a-started"), Duration::from_secs(30));
    pg.stop();
    std::fs::write(s.path("go"), "").expect("go");
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(5), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    assert!(stderr.contains("resume"), "{stderr}");
    assert_eq!(
        s.read("count-b"),
        "",
        "b started without its record: {stderr}"
    );

    // Unreachable: resume says so (exit 5) and changes nothing.
    let down = rb(&pg, &s.path("here"), &["resume", "last"]);
    assert_eq!(down.code, Some(5), "{}", down.snapshot());
    no_password(&down);

    pg.start_server();
    let id = only_run(&s.path("here"));
    let resumed = rb(&pg, &s.path("here"), &["resume", &id]);
    assert_eq!(resumed.code, Some(0), "{}", resumed.snapshot());
    assert_eq!(s.read("count-b"), "b\n");
    assert_eq!(s.read("count-c"), "c\n");
    let verify = rb(&pg, &s.path("elsewhere"), &["transcript", "--verify", &id]);
    assert_eq!(verify.code, Some(0), "{}", verify.snapshot());
    assert!(
        verify.stdout.contains("sealed end"),
        "{}",
        verify.snapshot()
    );
}

#[test]
fn kill_nine_then_resume_from_another_machine() {
    let pg = store();
    let s = Scratch::new();
    s.runbook(HELD);
    let here = s.path("here").display().to_string();
    let mut child = spawn_exec(&s, &pg, &here);
    wait_for(&s.path("a-started"), Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    // The killed engine's step ends on its own, as it would on the first machine.
    std::fs::write(s.path("go"), "").expect("go");
    crate::harness::settle(&s.path("here"));
    let id = only_run(&s.path("here"));

    let there = s.path("there");
    let show = rb(&pg, &there, &["show", &id]);
    assert_eq!(show.code, Some(0), "{}", show.snapshot());
    assert!(show.stdout.contains("interrupted"), "{}", show.snapshot());
    let resumed = rb(&pg, &there, &["resume", &id]);
    assert_eq!(resumed.code, Some(0), "{}", resumed.snapshot());
    no_password(&resumed);
    assert_eq!(s.read("count-b"), "b\n");
    assert_eq!(s.read("count-c"), "c\n");
    // Both machines now see the finished run, from the database.
    for runs in [&there, &s.path("here")] {
        let verify = rb(&pg, runs, &["transcript", "--verify", &id]);
        assert_eq!(verify.code, Some(0), "{}", verify.snapshot());
        assert!(
            verify.stdout.contains("sealed end"),
            "{}",
            verify.snapshot()
        );
    }
    assert_eq!(
        s.read(&format!("here/{id}/journal.jsonl")),
        s.read(&format!("there/{id}/journal.jsonl"))
    );
}

#[test]
fn a_run_live_on_one_machine_is_shown_live_and_not_continued_on_another() {
    let pg = store();
    let s = Scratch::new();
    s.runbook(HELD);
    let here = s.path("here").display().to_string();
    let child = spawn_exec(&s, &pg, &here);
    wait_for(&s.path("a-started"), Duration::from_secs(30));
    let id = only_run(&s.path("here"));

    let there = s.path("there");
    let show = rb(&pg, &there, &["show", &id, "--json"]);
    assert_eq!(show.code, Some(0), "{}", show.snapshot());
    let v: serde_json::Value = serde_json::from_str(&show.stdout).expect("json");
    assert_eq!(v["state"]["state"], "running", "{}", show.snapshot());
    let runs = rb(&pg, &there, &["runs", "--state", "running"]);
    assert!(runs.stdout.contains(&id), "{}", runs.snapshot());
    let resumed = rb(&pg, &there, &["resume", &id]);
    assert_eq!(resumed.code, Some(6), "{}", resumed.snapshot());
    assert!(
        resumed.stderr.contains("from another machine"),
        "{}",
        resumed.snapshot()
    );
    assert_eq!(s.read("count-a"), "a\n", "a second engine started a step");

    std::fs::write(s.path("go"), "").expect("go");
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(0), "{stderr}");
    let show = rb(&pg, &there, &["show", &id, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&show.stdout).expect("json");
    assert_eq!(v["state"]["state"], "finished", "{}", show.snapshot());
    assert_eq!(s.read("count-b"), "b\n");
}
