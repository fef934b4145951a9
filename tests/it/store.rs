//! `runbook store init|check` against a real PostgreSQL server (tests/it/pg.rs).

use crate::harness::runbook;
use crate::pg::{PASSWORD, Pg};

#[test]
fn init_then_check_and_repeat() {
    let pg = Pg::start();
    let url = pg.url();

    let before = runbook(["store", "check", "--store", &url]).run();
    assert_eq!(before.code, Some(5), "{}", before.snapshot());
    assert!(
        before.stdout.contains("schema:   none"),
        "{}",
        before.snapshot()
    );
    assert!(
        before.stdout.contains("role:     postgres"),
        "{}",
        before.snapshot()
    );

    let init = runbook(["store", "init"]).env("RUNBOOK_STORE", &url).run();
    assert_eq!(init.code, Some(0), "{}", init.snapshot());
    assert!(
        init.stdout.contains("schema created at version "),
        "{}",
        init.snapshot()
    );

    let again = runbook(["store", "init", "--store", &url]).run();
    assert_eq!(again.code, Some(0), "{}", again.snapshot());
    assert!(
        again.stdout.contains("already current"),
        "{}",
        again.snapshot()
    );

    let check = runbook(["store", "check", "--json", "--store", &url]).run();
    assert_eq!(check.code, Some(0), "{}", check.snapshot());
    let v: serde_json::Value = serde_json::from_str(&check.stdout).expect("json");
    assert_eq!(v["schema_version"], v["expected_version"]);
    assert!(
        v["expected_version"].as_i64().is_some_and(|n| n >= 2),
        "{v}"
    );
    assert_eq!(v["role"], "postgres");

    for ran in [&before, &init, &again, &check] {
        let all = format!("{}{}", ran.stdout, ran.stderr);
        assert!(!all.contains(PASSWORD), "password printed: {all}");
        assert!(all.contains("postgres:***@127.0.0.1"), "{all}");
    }
}

#[test]
fn two_inits_racing_apply_the_schema_once() {
    let pg = Pg::start();
    let url = pg.url();
    let a = {
        let url = url.clone();
        std::thread::spawn(move || runbook(["store", "init", "--store", &url]).run())
    };
    let b = runbook(["store", "init", "--store", &url]).run();
    let a = a.join().expect("thread");
    assert_eq!(a.code, Some(0), "{}", a.snapshot());
    assert_eq!(b.code, Some(0), "{}", b.snapshot());
    let created = [&a, &b]
        .iter()
        .filter(|r| r.stdout.contains("schema created"))
        .count();
    assert_eq!(created, 1, "{}\n{}", a.snapshot(), b.snapshot());
}

#[test]
fn unreachable_or_wrong_password_exits_5_without_the_password() {
    let pg = Pg::start();
    let wrong = format!(
        "postgres://postgres:wrong-{PASSWORD}@127.0.0.1:{}/postgres",
        pg.port
    );
    let bad = runbook(["store", "check", "--store", &wrong]).run();
    assert_eq!(bad.code, Some(5), "{}", bad.snapshot());
    assert!(bad.stderr.contains("cannot connect"), "{}", bad.snapshot());
    assert!(!bad.stderr.contains(PASSWORD), "{}", bad.snapshot());

    let url = pg.url();
    pg.stop();
    let down = runbook(["store", "init", "--store", &url]).run();
    assert_eq!(down.code, Some(5), "{}", down.snapshot());
    assert!(
        down.stderr.contains("cannot connect"),
        "{}",
        down.snapshot()
    );
    assert!(!down.stderr.contains(PASSWORD), "{}", down.snapshot());

    let kv = format!(
        "host=127.0.0.1 port={} user=postgres password={PASSWORD}",
        pg.port
    );
    let down = runbook(["store", "check", "--store", &kv]).run();
    assert_eq!(down.code, Some(5), "{}", down.snapshot());
    assert!(down.stderr.contains("password=***"), "{}", down.snapshot());
    assert!(!down.stderr.contains(PASSWORD), "{}", down.snapshot());

    let none = runbook(["store", "check"]).run();
    assert_eq!(none.code, Some(2), "{}", none.snapshot());
}
