//! Team mode against a real PostgreSQL server (tests/it/pg.rs): a runbook's `lock` held across
//! "machines" (two engines with separate run directories), gates answered from another OS user
//! connecting as another database role (LISTEN/NOTIFY), identity = the authenticated role, and
//! TLS to the server with a CA.
//!
//! Roles: the test cluster authenticates TCP connections with scram passwords (pg_hba from
//! `initdb --auth-host=scram-sha-256`); the test creates login roles with passwords and a
//! `runbook_team` group holding the grants docs/store.md lists.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::exec::Scratch;
use crate::harness::runbook;
use crate::pg::{PASSWORD, Pg};
use crate::sshd::{TEST_USER, ensure_test_user};

/// A store with the schema and three engineers: alice, bob, carol (carol also a key holder).
fn team_store() -> Pg {
    let pg = Pg::start();
    let init = runbook(["store", "init", "--store", &pg.url()]).run();
    assert_eq!(init.code, Some(0), "{}", init.snapshot());
    pg.query(
        "CREATE ROLE runbook_team NOLOGIN;
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO runbook_team;
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO runbook_team;
         CREATE ROLE key_holders NOLOGIN;
         CREATE ROLE alice LOGIN PASSWORD 'alice-pw' IN ROLE runbook_team;
         CREATE ROLE bob LOGIN PASSWORD 'bob-pw' IN ROLE runbook_team;
         CREATE ROLE carol LOGIN PASSWORD 'carol-pw' IN ROLE runbook_team, key_holders;",
    );
    pg
}

fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("uid")
}

/// An engine on "machine" `s` (its own run directory), connected as `store`.
fn engine(s: &Scratch, store: &str) -> Child {
    s.command(&["--progress", "plain"])
        .env("RUNBOOK_STORE", store)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn engine")
}

fn stderr_of(child: &mut Child) -> String {
    use std::io::Read;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    err
}

/// Waits (bounded) until `f` holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(30), "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_id(s: &Scratch) -> Option<String> {
    std::fs::read_dir(s.path("runs"))
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| !n.starts_with('.'))
}

fn journal(s: &Scratch) -> String {
    run_id(s)
        .map(|id| s.read(&format!("runs/{id}/journal.jsonl")))
        .unwrap_or_default()
}

const RACER: &str = "runbook: racer\nversion: 1\nlock: shared-target\nsteps:\n  - id: hold\n    run: touch {D}/ran; sleep 60\n";

#[test]
fn two_machines_race_for_one_lock_one_runs_and_kill_9_frees_it() {
    let pg = team_store();
    let alice = pg.url_as("alice", "alice-pw");
    let bob = pg.url_as("bob", "bob-pw");
    let (m1, m2) = (Scratch::new(), Scratch::new());
    m1.runbook(RACER);
    m2.runbook(RACER);
    let mut a = engine(&m1, &alice);
    let mut b = engine(&m2, &bob);
    // Exactly one exits at once, refused; the other runs.
    let (mut winner, wm, mut loser, lm) = loop {
        if a.try_wait().expect("wait").is_some() {
            break (b, &m2, a, &m1);
        }
        if b.try_wait().expect("wait").is_some() {
            break (a, &m1, b, &m2);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let code = loser.wait().expect("status").code();
    let err = stderr_of(&mut loser);
    assert_eq!(code, Some(6), "the loser exits busy: {err}");
    eventually("the winner runs its step", || wm.path("ran").exists());
    assert!(!lm.path("ran").exists(), "both engines ran the step");
    let winner_id = run_id(wm).expect("winner's run");
    assert!(
        err.contains(&format!("`shared-target` is locked by run {winner_id}")),
        "the holder is named: {err}"
    );
    assert!(err.contains("its engine is running"), "{err}");
    assert!(
        !err.contains("alice-pw") && !err.contains("bob-pw"),
        "{err}"
    );
    // The store says who holds it, and a live lock cannot be broken.
    let row = pg.query("SELECT run_id, kept FROM runbook_lock WHERE key = 'shared-target'");
    assert_eq!(row, format!("{winner_id}|f"));
    let unlock = runbook(["unlock", "shared-target"])
        .env("RUNBOOK_STORE", &bob)
        .run();
    assert_eq!(unlock.code, Some(2), "{}", unlock.snapshot());
    assert!(
        unlock
            .stderr
            .contains("cannot be unlocked while that session is alive"),
        "{}",
        unlock.snapshot()
    );

    // kill -9 the holder: its database session ends, and with it the lock.
    winner.kill().expect("kill -9");
    let _ = winner.wait();
    eventually("the server ends the killed engine's session", || {
        pg.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == "0"
    });
    lm.runbook(
        "runbook: racer\nversion: 1\nlock: shared-target\nsteps:\n  - id: hold\n    run: touch {D}/ran\n",
    );
    let mut c = engine(lm, &bob);
    let (code, err) = crate::exec::wait_output(&mut c, Duration::from_secs(60));
    assert_eq!(code, Some(0), "{err}");
    assert!(lm.path("ran").exists());
    assert!(
        err.contains(&format!("lock `shared-target` was left by run {winner_id}"))
            && err.contains("taken over"),
        "{err}"
    );
    // A finished run leaves no lock behind.
    assert_eq!(
        pg.query("SELECT count(*) FROM runbook_lock"),
        "0",
        "lock row left"
    );
}

#[test]
fn a_paused_run_keeps_its_lock_until_resumed_or_unlocked_with_force() {
    let pg = team_store();
    let alice = pg.url_as("alice", "alice-pw");
    let m1 = Scratch::new();
    m1.runbook(
        "runbook: paused\nversion: 1\nlock: node-1\nsteps:\n  - id: gate\n    confirm: go?\n    run: 'true'\n",
    );
    let paused = m1
        .command(&["--progress", "plain", "--no-wait"])
        .env("RUNBOOK_STORE", &alice)
        .output()
        .expect("run");
    assert_eq!(
        paused.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&paused.stderr)
    );
    let id = run_id(&m1).expect("run id");
    assert_eq!(
        pg.query("SELECT run_id, kept FROM runbook_lock"),
        format!("{id}|t")
    );
    // Another machine is refused with the way out.
    let m2 = Scratch::new();
    m2.runbook("runbook: other\nversion: 1\nlock: node-1\nsteps:\n  - id: a\n    run: 'true'\n");
    let refused = m2
        .command(&["--progress", "plain"])
        .env("RUNBOOK_STORE", &alice)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(6), "{err}");
    assert!(
        err.contains(&format!("`node-1` is locked by run {id}"))
            && err.contains("stopped but resumable")
            && err.contains("runbook unlock node-1"),
        "{err}"
    );
    let no_force = runbook(["unlock", "node-1"])
        .env("RUNBOOK_STORE", &alice)
        .run();
    assert_eq!(no_force.code, Some(2), "{}", no_force.snapshot());
    let forced = runbook(["unlock", "node-1", "--force"])
        .env("RUNBOOK_STORE", &alice)
        .run();
    assert_eq!(forced.code, Some(0), "{}", forced.snapshot());
    assert!(
        forced
            .stdout
            .contains(&format!("broke lock `node-1` held by run {id}")),
        "{}",
        forced.snapshot()
    );
    let ok = m2
        .command(&["--progress", "plain"])
        .env("RUNBOOK_STORE", &alice)
        .output()
        .expect("run");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

/// `runbook approve` as another OS user (rbtest) with another database role.
fn approve_as_test_user(store: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(args)
        .uid(uid_of(TEST_USER))
        .env("USER", TEST_USER)
        .env("HOME", "/")
        .env("NO_COLOR", "1")
        .env("RUNBOOK_STORE", store)
        .output()
        .expect("run as the test user")
}

#[test]
fn a_two_person_gate_needs_two_roles_and_approvers_may_name_role_groups() {
    ensure_test_user();
    let pg = team_store();
    let (alice, bob, carol) = (
        pg.url_as("alice", "alice-pw"),
        pg.url_as("bob", "bob-pw"),
        pg.url_as("carol", "carol-pw"),
    );
    let m = Scratch::new();
    m.runbook(
        r#"
runbook: quorum
version: 1
steps:
  - id: surgery
    confirm: { message: "Remove a raft peer?", approvals: 2, other_approver: true }
    run: echo surgery >> {D}/done
  - id: unseal
    needs: [surgery]
    confirm: { message: "Unseal?", approvers: ["group:key_holders"] }
    run: echo unseal >> {D}/done
"#,
    );
    let mut e = engine(&m, &alice);
    eventually("the engine waits at `surgery`", || {
        journal(&m).contains("\"event\":\"gate-waiting\"")
    });
    let id = run_id(&m).expect("run id");
    let prefix = &id[..id.len() - 8];
    // The gate is a row naming what it needs.
    eventually("the gate row", || {
        pg.query("SELECT step, needed, other_approver, operator FROM runbook_gate WHERE waiting")
            == "surgery|2|t|alice"
    });

    // bob, from another OS user: counted, identity from the database.
    let out = approve_as_test_user(
        &bob,
        &["approve", prefix, "surgery", "--comment", "ok by me"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "approval of `surgery` given for run {id} by role bob"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("took it"), "{stdout}");
    // bob again: the same role twice does not make two people.
    let again = approve_as_test_user(&bob, &["approve", &id, "surgery"]);
    assert!(again.status.success());
    eventually("the second approval by bob refused", || {
        journal(&m).contains("bob already approved `surgery`")
    });
    // The operator's own role does not count either.
    let own = runbook(["approve", &id, "surgery"])
        .env("RUNBOOK_STORE", &alice)
        .run();
    assert_eq!(own.code, Some(0), "{}", own.snapshot());
    eventually("the operator's approval refused", || {
        journal(&m).contains("approval of `surgery` by alice does not count")
    });
    assert!(!m.path("done").exists(), "ran with one approver");
    // carol: the second person.
    let second = runbook(["approve", &id, "surgery"])
        .env("RUNBOOK_STORE", &carol)
        .run();
    assert_eq!(second.code, Some(0), "{}", second.snapshot());
    eventually("surgery ran", || m.read("done").contains("surgery"));

    // `approvers: [group:key_holders]`: a database role group; bob is not in it.
    eventually("the engine waits at `unseal`", || {
        pg.query("SELECT step FROM runbook_gate WHERE waiting") == "unseal"
    });
    let out = approve_as_test_user(&bob, &["approve", &id, "unseal"]);
    assert!(out.status.success());
    eventually("bob refused at unseal", || {
        journal(&m).contains("bob answered `unseal` but is not among its approvers")
    });
    let ok = runbook(["approve", &id, "unseal"])
        .env("RUNBOOK_STORE", &carol)
        .run();
    assert_eq!(ok.code, Some(0), "{}", ok.snapshot());
    let (code, err) = crate::exec::wait_output(&mut e, Duration::from_secs(60));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(m.read("done"), "surgery\nunseal\n");
    // The journal carries the roles; answers are used once; decided gates are no rows.
    let j = journal(&m);
    for who in ["\"user\":\"bob\"", "\"user\":\"carol\""] {
        assert!(j.contains(who), "{who} in {j}");
    }
    assert!(j.contains("ok by me"));
    assert_eq!(pg.query("SELECT count(*) FROM runbook_answer"), "0");
    assert_eq!(pg.query("SELECT count(*) FROM runbook_gate"), "0");
    // A finished run takes no more answers (none left behind in the table).
    let late = runbook(["approve", &id, "unseal"])
        .env("RUNBOOK_STORE", &bob)
        .run();
    assert_eq!(late.code, Some(2), "{}", late.snapshot());
    assert!(
        late.stderr.contains("already finished"),
        "{}",
        late.snapshot()
    );
    assert_eq!(pg.query("SELECT count(*) FROM runbook_answer"), "0");
}

#[test]
fn a_forged_author_is_replaced_by_the_authenticated_role() {
    let pg = team_store();
    // bob writes a row claiming to be alice, straight into the table.
    let out = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .arg(pg.url_as("bob", "bob-pw"))
        .args([
            "-c",
            "INSERT INTO runbook_answer (run_id, step, decision, host, role, groups) \
             VALUES ('r', 's', 'approved', 'h', 'alice', '{key_holders}') RETURNING role, groups",
        ])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "bob|{runbook_team}"
    );
}

#[test]
fn store_approval_withdraws_a_terminal_prompt() {
    let pg = team_store();
    let alice = pg.url_as("alice", "alice-pw");
    let bob = pg.url_as("bob", "bob-pw");
    let s = Scratch::new();
    s.runbook("runbook: prompt\nversion: 1\nsteps:\n  - id: restart\n    confirm: Restart vault-2?\n    run: echo restarted >> {D}/done\n");
    let mut cmd = s.command(&["--progress", "plain"]);
    cmd.env("TERM", "dumb").env("RUNBOOK_STORE", &alice);
    let mut p = rexpect::session::spawn_command(cmd, Some(30_000)).expect("spawn in pty");
    p.exp_string("(then Enter)").expect("prompt");
    let id = run_id(&s).expect("run id");
    let ok = runbook(["approve", &id, "restart"])
        .env("RUNBOOK_STORE", &bob)
        .run();
    assert_eq!(ok.code, Some(0), "{}", ok.snapshot());
    p.exp_string("answered from another terminal")
        .expect("prompt withdrawn");
    p.exp_eof().expect("exit");
    let status = p.process.wait().expect("status");
    assert!(format!("{status:?}").contains(", 0)"), "{status:?}");
    assert_eq!(s.read("done"), "restarted\n");
    assert!(journal(&s).contains("\"user\":\"bob\""));
}

/// A CA and a server certificate for `localhost` (not 127.0.0.1), as PEM: (ca, cert, key).
fn pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "runbook test store CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("cert");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[test]
fn tls_with_a_ca_verify_full_works_and_a_wrong_ca_is_refused() {
    let (ca, cert, key) = pki();
    let (other_ca, _, _) = pki();
    let pg = Pg::start_with(|dir| {
        std::fs::write(dir.join("server.crt"), &cert).expect("cert");
        std::fs::write(dir.join("server.key"), &key).expect("key");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod");
        format!(
            "-c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
            dir.display()
        )
    });
    let scratch = Scratch::new();
    std::fs::write(scratch.path("ca.pem"), &ca).expect("ca");
    std::fs::write(scratch.path("other-ca.pem"), &other_ca).expect("ca");
    let url = |host: &str, mode: &str, ca: &str| {
        format!(
            "postgres://postgres:{PASSWORD}@{host}:{}/postgres?sslmode={mode}&sslrootcert={}",
            pg.port,
            scratch.path(ca).display()
        )
    };
    let init = runbook([
        "store",
        "init",
        "--store",
        &url("localhost", "verify-full", "ca.pem"),
    ])
    .run();
    assert_eq!(init.code, Some(0), "{}", init.snapshot());
    let check = runbook([
        "store",
        "check",
        "--store",
        &url("localhost", "verify-full", "ca.pem"),
    ])
    .run();
    assert_eq!(check.code, Some(0), "{}", check.snapshot());
    assert!(
        check
            .stdout
            .contains("tls:      TLSv1.3, certificate and host name verified"),
        "{}",
        check.snapshot()
    );

    // A CA that did not sign the server's certificate: refused, in one line, no password.
    let wrong = runbook([
        "store",
        "check",
        "--store",
        &url("localhost", "verify-full", "other-ca.pem"),
    ])
    .run();
    assert_eq!(wrong.code, Some(5), "{}", wrong.snapshot());
    assert_eq!(
        wrong.stderr.trim().lines().count(),
        1,
        "{}",
        wrong.snapshot()
    );
    assert!(
        wrong.stderr.contains("invalid peer certificate")
            && wrong.stderr.contains("signed by the CA in sslrootcert"),
        "{}",
        wrong.snapshot()
    );
    assert!(!wrong.stderr.contains(PASSWORD), "{}", wrong.snapshot());

    // The certificate names localhost: verify-full to 127.0.0.1 is refused, verify-ca is not.
    let name = runbook([
        "store",
        "check",
        "--store",
        &url("127.0.0.1", "verify-full", "ca.pem"),
    ])
    .run();
    assert_eq!(name.code, Some(5), "{}", name.snapshot());
    assert!(
        name.stderr
            .contains("certificate not valid for name \"127.0.0.1\""),
        "{}",
        name.snapshot()
    );
    let ca_only = runbook([
        "store",
        "check",
        "--store",
        &url("127.0.0.1", "verify-ca", "ca.pem"),
    ])
    .run();
    assert_eq!(ca_only.code, Some(0), "{}", ca_only.snapshot());
    assert!(
        ca_only
            .stdout
            .contains("certificate verified (host name not checked)"),
        "{}",
        ca_only.snapshot()
    );

    // Without sslmode the connection is plain, as before.
    let plain = runbook(["store", "check", "--store", &pg.url()]).run();
    assert_eq!(plain.code, Some(0), "{}", plain.snapshot());
    assert!(
        plain.stdout.contains("tls:      none"),
        "{}",
        plain.snapshot()
    );
}

/// `runbook answer RUN STEP --store …` as database role `url`, from a "machine" with no run
/// directory of its own (a fresh, empty `--runs-dir`), the value piped on stdin.
fn answer_from_elsewhere(url: &str, id: &str, step: &str, value: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let elsewhere = Scratch::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["answer", id, step, "--stdin", "--runs-dir"])
        .arg(elsewhere.path("runs"))
        .env("RUNBOOK_STORE", url)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn runbook answer");
    if let Some(mut i) = child.stdin.take() {
        let _ = writeln!(i, "{value}");
    }
    let out = child.wait_with_output().expect("runbook answer");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// Key holders give their unseal shares from any machine: each answer goes through the
/// database with the authenticated role as identity, the same role twice is refused, and the
/// secret is in no table while the engine waits (one share in) nor after the run.
#[test]
fn ask_from_two_roles_through_the_store_and_no_share_in_any_table() {
    let pg = team_store();
    let (alice, bob, carol) = (
        pg.url_as("alice", "alice-pw"),
        pg.url_as("bob", "bob-pw"),
        pg.url_as("carol", "carol-pw"),
    );
    let m = Scratch::new();
    m.runbook(
        r#"
runbook: holders
version: 1
steps:
  - id: shares
    ask: { prompt: "Your unseal share", secret: true, from: 2 }
  - id: apply
    needs: [shares]
    read_only: true
    for_each: "{{ steps.shares.outputs.values }}"
    run: printf '%s\n' "{{ item }}" >> {D}/applied
"#,
    );
    let mut e = engine(&m, &alice);
    eventually("the ask is published in the store", || {
        pg.query("SELECT step, operator FROM runbook_ask") == "shares|alice"
    });
    let id = run_id(&m).expect("run id");
    let (one, two) = ("ShareOneCanary-7f3a", "ShareTwoCanary-91bc");
    let (code, out) = answer_from_elsewhere(&bob, &id, "shares", one);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("accepted from bob (1 of 2)"), "{out}");
    // bob again: the same role is one person.
    let (code, twice) = answer_from_elsewhere(&bob, &id, "shares", two);
    assert_eq!(code, Some(2), "{twice}");
    assert!(
        twice.contains("bob already answered `shares`")
            && twice.contains("different database role"),
        "{twice}"
    );
    // The engine still waits with one share in: no table holds it.
    assert!(!m.path("applied").exists());
    assert_eq!(
        pg.query("SELECT hello::json->>'have' FROM runbook_ask"),
        "1"
    );
    for row in pg.all_rows_as_text() {
        assert!(!row.contains(one), "share in a row while waiting: {row}");
    }
    // An answer in transit is visible to its author and the waiting engine's role only
    // (row-level security), and nobody can take over the engine's ask.
    let as_role = |url: &str, sql: &str| {
        let out = Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg(url)
            .args(["-c", sql])
            .output()
            .expect("psql");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    as_role(
        &bob,
        "INSERT INTO runbook_ask_reply (run_id, step, value) VALUES ('elsewhere', 's', 'InTransit')",
    );
    assert_eq!(
        as_role(&bob, "SELECT value FROM runbook_ask_reply"),
        "InTransit"
    );
    assert_eq!(
        as_role(&carol, "SELECT count(*) FROM runbook_ask_reply"),
        "0"
    );
    as_role(&bob, "DELETE FROM runbook_ask_reply");
    as_role(&carol, "UPDATE runbook_ask SET hello = '{}'");
    assert_eq!(pg.query("SELECT operator FROM runbook_ask"), "alice");
    assert_ne!(pg.query("SELECT hello FROM runbook_ask"), "{}");
    let (code, out) = answer_from_elsewhere(&carol, &id, "shares", two);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("accepted from carol (2 of 2)"), "{out}");
    let (code, err) = crate::exec::wait_output(&mut e, Duration::from_secs(60));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(m.read("applied"), format!("{one}\n{two}\n"));
    assert!(err.contains("answered by bob (1 of 2)"), "{err}");
    let j = journal(&m);
    assert!(j.contains("\"user\":\"carol\""), "{j}");
    for row in pg.all_rows_as_text() {
        for secret in [one, two] {
            assert!(!row.contains(secret), "share in a row after the run: {row}");
        }
    }
    assert!(!j.contains(one) && !j.contains(two));
    assert!(!err.contains(one) && !err.contains(two), "{err}");
    for t in ["runbook_ask", "runbook_ask_reply", "runbook_ask_verdict"] {
        assert_eq!(pg.query(&format!("SELECT count(*) FROM {t}")), "0", "{t}");
    }
    // The run is over: nobody waits, an answer is refused and nothing is stored.
    let (code, late) = answer_from_elsewhere(&carol, &id, "shares", one);
    assert_eq!(code, Some(2), "{late}");
    assert!(late.contains("no engine of run"), "{late}");
}

/// `psql` as login URL `url`: whether it succeeded, and its output.
fn psql_as(url: &str, sql: &str) -> (bool, String) {
    let out = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .arg(url)
        .args(["-c", sql])
        .output()
        .expect("psql");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    )
}

/// Attack report 13, D11: with the documented team grants, bob could rewrite alice's run
/// (its options: an ssh config whose ProxyCommand alice's `resume` ran; its journal: delete
/// records and reset the head so a finished step ran again). Only the run's own role writes
/// it now; bob still reads it (approving its gates is `a_two_person_gate_…`).
#[test]
fn another_team_member_cannot_rewrite_a_run() {
    let pg = team_store();
    let alice = pg.url_as("alice", "alice-pw");
    let bob = pg.url_as("bob", "bob-pw");
    let s = Scratch::new();
    s.runbook(
        "runbook: own\nversion: 1\nsteps:\n  - id: x\n    run: echo x >> {D}/m\n  - id: g\n    needs: [x]\n    confirm: go?\n    run: echo g >> {D}/m\n",
    );
    let paused = runbook([
        "exec",
        &s.path("runbook.yaml").display().to_string(),
        "--no-wait",
        "--runs-dir",
        &s.path("runs").display().to_string(),
    ])
    .env("RUNBOOK_STORE", &alice)
    .run();
    assert_eq!(paused.code, Some(3), "{}", paused.snapshot());
    let id = run_id(&s).expect("run id");
    let before = pg.query(&format!(
        "SELECT head_count || ':' || coalesce(options, '') FROM runbook_run WHERE run_id = '{id}'"
    ));
    // Every way of rewriting the run is refused or changes nothing.
    for sql in [
        format!(
            "UPDATE runbook_run SET options = '{{}}', file = '/tmp/evil.yaml' WHERE run_id = '{id}' RETURNING 1"
        ),
        format!("UPDATE runbook_run SET head_count = 1 WHERE run_id = '{id}' RETURNING 1"),
        format!("DELETE FROM runbook_record WHERE run_id = '{id}' RETURNING 1"),
        format!("UPDATE runbook_record SET line = 'x' WHERE run_id = '{id}' RETURNING 1"),
        format!(
            "INSERT INTO runbook_record (run_id, seq, line) VALUES ('{id}', 999, '{{}}') RETURNING 1"
        ),
        format!("DELETE FROM runbook_run WHERE run_id = '{id}' RETURNING 1"),
        format!("UPDATE runbook_run SET created_by = 'bob' WHERE run_id = '{id}' RETURNING 1"),
    ] {
        let (ok, out) = psql_as(&bob, &sql);
        assert!(!ok || out.is_empty(), "bob could: {sql}\n{out}");
    }
    let after = pg.query(&format!(
        "SELECT head_count || ':' || coalesce(options, '') FROM runbook_run WHERE run_id = '{id}'"
    ));
    assert_eq!(before, after);
    // bob still sees the run; alice resumes it to the end, nothing twice.
    let (ok, out) = psql_as(
        &bob,
        &format!("SELECT count(*) FROM runbook_record WHERE run_id = '{id}'"),
    );
    assert!(ok && out != "0", "{out}");
    let done = runbook([
        "resume",
        &id,
        "--yes",
        "--runs-dir",
        &s.path("runs").display().to_string(),
    ])
    .env("RUNBOOK_STORE", &alice)
    .run();
    assert_eq!(done.code, Some(0), "{}", done.snapshot());
    assert_eq!(s.read("m"), "x\ng\n");
}
