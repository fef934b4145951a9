//! Attack 13, D0: another team member tries to take over a run's `ask:` in the store
//! (publish it first, read the shares given to it, forge the verdicts the key holders see).
//! Migration 5 ties an ask to the run's engine role (the session holding the run's lock).

use std::process::Command;
use std::time::Duration;

use super::{answer_from_elsewhere, engine, eventually, journal, run_id, team_store};
use crate::exec::Scratch;

/// `sql` as the role of `url` through `psql`: (succeeded, stdout, stderr).
fn psql_as(url: &str, sql: &str) -> (bool, String, String) {
    psql_session(url, &[sql])
}

/// Each of `sqls` in turn in one `psql` session as the role of `url`, stopping at an error.
fn psql_session(url: &str, sqls: &[&str]) -> (bool, String, String) {
    let mut c = Command::new("psql");
    c.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .arg(url);
    for sql in sqls {
        c.args(["-c", sql]);
    }
    let out = c.output().expect("psql");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// A run whose ask `shares` (secret, from 2) comes after a step that waits for `{D}/go`.
const HOLDERS: &str = r#"
runbook: holders
version: 1
steps:
  - id: pre
    run: while [ ! -e {D}/go ]; do sleep 0.05; done
  - id: shares
    needs: [pre]
    ask: { prompt: "Your unseal share", secret: true, from: 2 }
  - id: apply
    needs: [shares]
    read_only: true
    for_each: "{{ steps.shares.outputs.values }}"
    run: printf '%s\n' "{{ item }}" >> {D}/applied
"#;

/// The attacker's sequence, step by step: bob publishes alice's ask first (refused by the
/// store); a row left by bob anyway (as the previous schema allowed) is refused by `runbook
/// answer` naming both roles, and a share given to the run meanwhile is not visible to bob;
/// bob's forged verdicts are refused; the engine takes the row over when it reaches the ask and
/// the key holders' shares reach it, and only it.
#[test]
fn another_member_cannot_take_over_a_runs_ask_read_its_shares_or_forge_verdicts() {
    let pg = team_store();
    let (alice, bob, carol) = (
        pg.url_as("alice", "alice-pw"),
        pg.url_as("bob", "bob-pw"),
        pg.url_as("carol", "carol-pw"),
    );
    let m = Scratch::new();
    m.runbook(HOLDERS);
    let mut e = engine(&m, &alice);
    eventually("alice's engine holds the run in the store", || {
        pg.query("SELECT coalesce(runbook_run_engine(run_id), '') FROM runbook_run") == "alice"
    });
    let id = run_id(&m).expect("run id");
    // 1. bob publishes the ask first (the attack's exact statement): refused.
    let hello = format!(
        r#"{{"run":"{id}","step":"shares","prompt":"Your unseal share","secret":true,"type":"string","pattern":null,"need":2,"have":0}}"#
    );
    let (ok, _, err) = psql_as(
        &bob,
        &format!(
            "INSERT INTO runbook_ask (run_id, step, hello) VALUES ('{id}', 'shares', '{hello}')"
        ),
    );
    assert!(!ok && err.contains("row-level security"), "{err}");
    assert_eq!(pg.query("SELECT count(*) FROM runbook_ask"), "0");
    // 2. A row by bob left in the store anyway (inserted as schema 4 allowed; here by the
    // table's owner with the stamp trigger off).
    pg.query(&format!(
        "ALTER TABLE runbook_ask DISABLE TRIGGER runbook_ask_stamp;
         INSERT INTO runbook_ask (run_id, step, hello, operator) VALUES ('{id}', 'shares', '{hello}', 'bob');
         ALTER TABLE runbook_ask ENABLE TRIGGER runbook_ask_stamp;"
    ));
    // The key holder's `runbook answer` refuses it, naming both roles, and sends nothing.
    let (code, out) = answer_from_elsewhere(&carol, &id, "shares", "CarolShareCanary-31d7");
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("published by role `bob`")
            && out.contains("runs as role `alice`")
            && out.contains("refusing to answer"),
        "{out}"
    );
    assert_eq!(pg.query("SELECT count(*) FROM runbook_ask_reply"), "0");
    // A share given to the run by hand meanwhile: bob, the row's operator, does not see it.
    let (ok, _, err) = psql_as(
        &carol,
        &format!(
            "INSERT INTO runbook_ask_reply (run_id, step, value) VALUES ('{id}', 'shares', 'HandShare-55e1')"
        ),
    );
    assert!(ok, "{err}");
    assert_eq!(
        psql_as(&bob, "SELECT count(*) FROM runbook_ask_reply").1,
        "0"
    );
    let (ok, taken, _) = psql_as(&bob, "DELETE FROM runbook_ask_reply RETURNING value");
    assert!(ok && taken.is_empty(), "bob took {taken}");
    assert!(psql_as(&carol, "DELETE FROM runbook_ask_reply").0);
    // 3. Forged verdicts for the next reply ids: refused (old and new form).
    let (ok, _, err) = psql_as(
        &bob,
        &format!(
            "INSERT INTO runbook_ask_verdict (id, run_id, step, answerer, ok, message)
             SELECT g, '{id}', 'shares', 'carol', false, 'wrong key; answer again'
               FROM generate_series(1, 50) g"
        ),
    );
    assert!(!ok && err.contains("row-level security"), "{err}");
    let (ok, _, _) = psql_as(
        &bob,
        "INSERT INTO runbook_ask_verdict (id, ok, message)
         SELECT g, true, 'accepted' FROM generate_series(1, 50) g",
    );
    assert!(!ok);
    assert_eq!(pg.query("SELECT count(*) FROM runbook_ask_verdict"), "0");
    // 4. The engine reaches the ask and takes the row over; the shares reach it.
    std::fs::write(m.path("go"), "").expect("go");
    eventually("alice's engine owns the ask", || {
        pg.query("SELECT operator FROM runbook_ask") == "alice"
    });
    let (one, two) = ("ShareOneCanary-8e21", "ShareTwoCanary-c4f0");
    let (code, out) = answer_from_elsewhere(&carol, &id, "shares", one);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("accepted from carol (1 of 2)"), "{out}");
    // bob cannot take the engine's ask over, nor write a verdict about it.
    psql_as(&bob, "UPDATE runbook_ask SET hello = '{}'");
    psql_as(&bob, "DELETE FROM runbook_ask");
    assert_eq!(pg.query("SELECT operator FROM runbook_ask"), "alice");
    let (ok, _, err) = psql_as(
        &bob,
        &format!(
            "INSERT INTO runbook_ask_verdict (id, run_id, step, answerer, ok, message)
             VALUES (999, '{id}', 'shares', 'bob', true, 'accepted')"
        ),
    );
    assert!(!ok && err.contains("row-level security"), "{err}");
    let (code, out) = answer_from_elsewhere(&bob, &id, "shares", two);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("accepted from bob (2 of 2)"), "{out}");
    let (code, err) = crate::exec::wait_output(&mut e, Duration::from_secs(60));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(m.read("applied"), format!("{one}\n{two}\n"));
    assert!(journal(&m).contains("\"user\":\"carol\""));
    for row in pg.all_rows_as_text() {
        for secret in [one, two, "HandShare-55e1"] {
            assert!(!row.contains(secret), "share in a row after the run: {row}");
        }
    }
    for t in ["runbook_ask", "runbook_ask_reply", "runbook_ask_verdict"] {
        assert_eq!(pg.query(&format!("SELECT count(*) FROM {t}")), "0", "{t}");
    }
}

/// An engine that cannot publish its ask (here: the team lost the UPDATE privilege while a
/// row of bob's is in the way) does not wait on an ask nobody can answer: it pauses at the
/// ask like a gate nobody answers (exit 3), naming the role whose row is in the way.
#[test]
fn an_ask_the_engine_cannot_publish_pauses_the_run_naming_the_other_role() {
    let pg = team_store();
    let alice = pg.url_as("alice", "alice-pw");
    let m = Scratch::new();
    m.runbook(HOLDERS);
    let mut e = engine(&m, &alice);
    eventually("alice's engine holds the run in the store", || {
        pg.query("SELECT coalesce(runbook_run_engine(run_id), '') FROM runbook_run") == "alice"
    });
    let id = run_id(&m).expect("run id");
    pg.query(&format!(
        "REVOKE UPDATE ON runbook_ask FROM runbook_team;
         ALTER TABLE runbook_ask DISABLE TRIGGER runbook_ask_stamp;
         INSERT INTO runbook_ask (run_id, step, hello, operator) VALUES ('{id}', 'shares', '{{}}', 'bob');
         ALTER TABLE runbook_ask ENABLE TRIGGER runbook_ask_stamp;"
    ));
    std::fs::write(m.path("go"), "").expect("go");
    let (code, err) = crate::exec::wait_output(&mut e, Duration::from_secs(60));
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("cannot publish `shares` in the store")
            && err.contains("published by role `bob`"),
        "{err}"
    );
    assert!(!err.contains("only this machine can answer"), "{err}");
    assert!(!err.contains("each runs `runbook answer"), "{err}");
    assert!(!m.path("applied").exists());
    assert_eq!(pg.query("SELECT operator FROM runbook_ask"), "bob");
    // The run is paused: bob takes its engine lock with plain SQL and publishes an ask in the
    // same session. Holding the lock is not enough: bob does not own the run.
    let key = format!(
        "('x' || lpad(substr(encode(sha256(convert_to('{id}', 'UTF8')), 'hex'), 1, 7), 8, '0'))::bit(32)::integer"
    );
    let (ok, out, err) = psql_session(
        &pg.url_as("bob", "bob-pw"),
        &[
            &format!(
                "SELECT runbook_run_engine('{id}') \
                   FROM (SELECT pg_advisory_lock(x'72756e00'::integer, {key})) l"
            ),
            &format!(
                "INSERT INTO runbook_ask (run_id, step, hello) VALUES ('{id}', 'apply', '{{}}')"
            ),
        ],
    );
    assert_eq!(out, "bob", "bob holds the run's lock");
    assert!(!ok && err.contains("row-level security"), "{err}");
    assert_eq!(pg.query("SELECT count(*) FROM runbook_ask"), "1");
}

/// D8: the engine prints its waiting line (with the `runbook answer` command) only once the
/// ask is in the store, so an answer given as soon as that line appears is taken.
#[test]
fn an_answer_given_as_soon_as_the_waiting_line_appears_is_taken() {
    let pg = team_store();
    let (alice, carol) = (
        pg.url_as("alice", "alice-pw"),
        pg.url_as("carol", "carol-pw"),
    );
    let m = Scratch::new();
    m.runbook(
        r#"
runbook: early
version: 1
steps:
  - id: shares
    ask: { prompt: "Your unseal share", secret: true }
  - id: apply
    needs: [shares]
    read_only: true
    run: printf '%s\n' "{{ steps.shares.outputs.value }}" > {D}/applied
"#,
    );
    let log = std::fs::File::create(m.path("engine.err")).expect("log");
    let mut e = m
        .command(&["--progress", "plain"])
        .env("RUNBOOK_STORE", &alice)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn engine");
    eventually("the engine prints its waiting line", || {
        m.read("engine.err").contains("runbook answer")
    });
    let id = run_id(&m).expect("run id");
    let (code, out) = answer_from_elsewhere(&carol, &id, "shares", "EarlyShare-0b9d");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("accepted from carol"), "{out}");
    let (code, _) = crate::exec::wait_output(&mut e, Duration::from_secs(60));
    assert_eq!(code, Some(0), "{}", m.read("engine.err"));
    assert_eq!(m.read("applied"), "EarlyShare-0b9d\n");
}
