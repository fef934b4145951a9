//! Issue 14 §5–6: hosts chosen at run time (`on: { hosts, from }`, `where:`, `order:`) on a
//! real sshd, per-host results of group steps, `deadline`, `retry.when`, a templated HTTP
//! `method`, `for_each … on_item_failure: continue`, and the http-step lint.

use crate::exec::Scratch;
use crate::harness::{Ran, insta_settings, runbook};
use crate::httpd::{Response, Server};
use crate::sshd::{Keys, Sshd};

/// Runs `runbook exec` on `yaml` with the test keys' ssh_config.
fn exec_ssh(keys: &Keys, yaml: &str, args: &[&str]) -> (Ran, std::path::PathBuf) {
    let dir = keys.path("work");
    let _ = std::fs::create_dir_all(&dir);
    let f = dir.join("rb.yaml");
    std::fs::write(&f, yaml.replace("{D}", &dir.display().to_string())).expect("write");
    let mut all = vec![
        "exec".to_string(),
        f.display().to_string(),
        "--ssh-config".into(),
        keys.ssh_config().display().to_string(),
        "--runs-dir".into(),
        dir.join("runs").display().to_string(),
        "--progress".into(),
        "plain".into(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    (runbook(all).run(), dir)
}

/// Hosts chosen at run time from an earlier step's output, filtered by `where:` over host
/// vars, ordered leader last (the leader named by its address), run one at a time on a real
/// sshd with strict host keys; each host's stdout is readable as `hosts.<h>.stdout`; a later
/// failure undoes each host on that host, in reverse order of the run, with `host.*` bound.
#[test]
fn leader_last_over_a_run_time_group_on_real_sshd() {
    crate::sshd::require();
    let keys = Keys::new();
    let addrs = ["127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24"];
    let sshd = Sshd::start(&keys, &addrs, "host");
    for a in addrs {
        keys.trust(a, sshd.port, "host");
    }
    let yaml = format!(
        r#"
runbook: leader-last
version: 1
hosts:
  v1: {{ address: 127.0.0.21, port: {p}, user: root, vars: {{ role: voter }} }}
  v2: {{ address: 127.0.0.22, port: {p}, user: root, vars: {{ role: voter }} }}
  v3: {{ address: 127.0.0.23, port: {p}, user: root, vars: {{ role: voter }} }}
  v4: {{ address: 127.0.0.24, port: {p}, user: root, vars: {{ role: witness }} }}
groups:
  cluster: [v1, v2, v3, v4]
steps:
  - id: find-nodes
    read_only: true
    run: echo "v4 v1 v2 v3"
    outputs:
      nodes: stdout | split | list
  - id: leader
    read_only: true
    run: echo 127.0.0.21
    outputs:
      host: stdout | trim
  - id: restart
    needs: [find-nodes, leader]
    on: {{ hosts: "{{{{ steps.find_nodes.outputs.nodes }}}}", from: cluster }}
    where: host.vars.role == 'voter'
    order: {{ last: "{{{{ steps.leader.outputs.host }}}}" }}
    serial: 1
    confirm: Restart one node at a time, the leader last?
    run: |
      at=$(echo "$SSH_CONNECTION" | cut -d' ' -f3)
      echo "{{{{ host.name }}}}-$at" >> {{D}}/done
      echo "on-$at"
    rollback: echo "undo-{{{{ host.name }}}}-$(echo "$SSH_CONNECTION" | cut -d' ' -f3)" >> {{D}}/undo
    outputs:
      v2_said: hosts.v2.stdout | trim
  - id: report
    needs: [restart]
    run: |
      echo "v3 said {{{{ steps.restart.hosts.v3.stdout | trim }}}}" >> {{D}}/report
      echo "v2 said {{{{ steps.restart.outputs.v2_said }}}}" >> {{D}}/report
      echo "ran on {{{{ steps.restart.hosts_succeeded | join(',') }}}}" >> {{D}}/report
  - id: later
    needs: [report]
    run: exit 1
"#,
        p = sshd.port
    );
    let (ran, dir) = exec_ssh(&keys, &yaml, &["--yes"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    // v4 is a witness (filtered out by `where`); v1 (the leader, by address) runs last.
    assert_eq!(
        read("done"),
        "v2-127.0.0.22\nv3-127.0.0.23\nv1-127.0.0.21\n",
        "{}",
        ran.stderr
    );
    assert_eq!(
        read("report"),
        "v3 said on-127.0.0.23\nv2 said on-127.0.0.22\nran on v2,v3,v1\n"
    );
    // Undone on each host, on that host, last run first undone.
    assert_eq!(
        read("undo"),
        "undo-v1-127.0.0.21\nundo-v3-127.0.0.23\nundo-v2-127.0.0.22\n",
        "{}",
        ran.stderr
    );
}

/// A name the run-time expression gives that is not a member of the group is refused before
/// anything connects, with the name, the group and its members in the error.
#[test]
fn a_run_time_member_not_in_the_group_is_refused_naming_it() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: not-member
version: 1
hosts:
  v1: { address: 127.0.0.31 }
  v2: { address: 127.0.0.32 }
groups:
  cluster: [v1, v2]
steps:
  - id: find
    read_only: true
    run: echo "v1 vault-9"
    outputs:
      nodes: stdout | split | list
  - id: act
    needs: [find]
    on: { hosts: steps.find.outputs.nodes, from: cluster }
    confirm: go?
    run: echo never >> {D}/ran
"#,
    );
    let ran = s.exec(&["--yes"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("host `vault-9` (from `steps.find.outputs.nodes`) is not a member of group `cluster` (members: v1, v2)"),
        "{}",
        ran.stderr
    );
    assert_eq!(s.read("ran"), "", "nothing ran on any host");
}

/// The plan shows the group's members and how the run chooses among them, the deadline,
/// `retry.when`, a templated method and `on_item_failure`.
#[test]
fn plan_shows_run_time_targets_deadline_retry_when_and_method() {
    let s = Scratch::new();
    let f = s.runbook(
        r#"
runbook: plan-targets
version: 1
inputs:
  verb: { allowed: [PUT, POST], default: PUT }
hosts:
  v1: { address: 10.0.0.1, user: ops, vars: { zone: b } }
  v2: { address: 10.0.0.2, user: ops, vars: { zone: a } }
groups:
  cluster: [v1, v2]
steps:
  - id: find-down
    read_only: true
    run: echo v1 v2
    outputs:
      nodes: stdout | split | list
  - id: restart
    needs: [find-down]
    on: { hosts: "{{ steps.find_down.outputs.nodes }}", from: cluster }
    where: host.vars.zone != 'c'
    order: { by: host.vars.zone, last: "'v1'" }
    serial: 1
    confirm: Restart?
    deadline: 10m
    timeout: 1m
    retry: { retries: 3, backoff: 5s, when: "exit_code == 75" }
    run: systemctl restart vault
  - id: tell
    needs: [restart]
    idempotent: true
    http: { method: "{{ verb }}", url: "https://lb.example/api/restarted" }
  - id: each
    read_only: true
    for_each: { items: [a, b], on_item_failure: continue }
    run: echo {{ item }}
"#,
    );
    let ran = runbook(["plan".as_ref(), f.as_os_str()]).run();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stdout
            .contains("hosts of cluster chosen at run time by"),
        "{}",
        ran.stdout
    );
    insta_settings().bind(|| insta::assert_snapshot!("plan-run-time-targets", ran.stdout));
    let json = runbook([
        "plan".as_ref(),
        f.as_os_str(),
        "--format".as_ref(),
        "json".as_ref(),
    ])
    .run();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("plan json");
    let restart = &v["steps"][1];
    assert_eq!(restart["deadline"], "10m");
    assert_eq!(restart["retry_when"], "exit_code == 75");
    assert_eq!(restart["targets"].as_array().map(Vec::len), Some(2));
    assert!(
        restart["chosen_at_run_time"]
            .as_str()
            .is_some_and(|t| t.contains("last: 'v1'")),
        "{restart}"
    );
    assert_eq!(v["steps"][2]["action"]["method"], "PUT");
}

/// `deadline` bounds every attempt and the pauses between them: a step that would retry 20
/// times stops at the deadline with a timeout naming it, and a single attempt longer than
/// the deadline is cut (its process killed) although its own `timeout` is longer.
#[test]
fn deadline_across_retries_fails_with_a_timeout_naming_it() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: deadline
version: 1
steps:
  - id: flaky
    read_only: true
    deadline: 1500ms
    retries: 20
    backoff: 100ms
    run: echo try >> {D}/tries; sleep 0.4; exit 3
    on_failure: continue
  - id: long
    read_only: true
    deadline: 1s
    timeout: 1h
    run: echo started >> {D}/long; sleep 30; echo finished >> {D}/long
    on_failure: continue
  - id: items
    read_only: true
    deadline: 1s
    for_each: { items: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], on_item_failure: continue }
    run: echo {{ item }} >> {D}/items; sleep 0.4
    on_failure: continue
"#,
    );
    let ran = s.exec(&["--yes", "--output", "json"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let tries = s.read("tries").lines().count();
    assert!((1..21).contains(&tries), "{tries} attempts");
    assert_eq!(s.read("long"), "started\n", "the attempt was cut");
    let items = s.read("items").lines().count();
    assert!((1..10).contains(&items), "{items} items ran");
    let events = crate::exec::events(&ran.stdout);
    for (step, deadline) in [("flaky", "1.5s"), ("long", "1s"), ("items", "1s")] {
        let finished = events
            .iter()
            .find(|e| e["event"] == "step-finished" && e["step"] == step)
            .unwrap_or_else(|| panic!("{step} finished: {}", ran.stdout));
        assert_eq!(finished["status"], "timed-out", "{finished}");
        let error = finished["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with(&format!(
                "deadline {deadline} of step `{step}` passed after"
            )),
            "{error}"
        );
    }
}

/// `retry.when` retries a failed attempt only while the expression over its result holds
/// (an exit code, or text on stderr).
#[test]
fn retry_when_retries_only_while_the_condition_holds() {
    let s = Scratch::new();
    s.runbook(
        r#"
runbook: retry-when
version: 1
steps:
  - id: busy
    read_only: true
    retry: { retries: 10, backoff: 10ms, when: "exit_code == 75" }
    run: |
      echo x >> {D}/busy
      [ "$(wc -l < {D}/busy)" -ge 3 ] && exit 1
      exit 75
    on_failure: continue
  - id: locked
    read_only: true
    retry: { retries: 10, backoff: 10ms, when: "'locked' in stderr" }
    run: |
      echo x >> {D}/locked
      [ "$(wc -l < {D}/locked)" -ge 2 ] && exit 0
      echo "database is locked" >&2; exit 1
"#,
    );
    let ran = s.exec(&["--yes"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stderr.contains("failed busy"), "{}", ran.stderr);
    // Attempts 1 and 2 exit 75 (retried); attempt 3 exits 1: not retried.
    assert_eq!(s.read("busy").lines().count(), 3, "{}", ran.stderr);
    assert_eq!(s.read("locked").lines().count(), 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("✔ ok locked"), "{}", ran.stderr);
}

/// A templated `method` is rendered at run time (here from a step's output) and checked
/// against the allowed methods; a value that is not a method fails the step before sending.
#[test]
fn method_template_is_rendered_and_checked() {
    let srv = Server::start(None, |req| {
        Response::json(200, serde_json::json!({ "method": req.method }))
    });
    let s = Scratch::new();
    s.runbook(&format!(
        r#"
runbook: method
version: 1
inputs:
  verb: {{ default: post }}
steps:
  - id: pick
    read_only: true
    run: echo put
  - id: send
    needs: [pick]
    idempotent: true
    http: {{ method: "{{{{ steps.pick.stdout | trim }}}}", url: "http://127.0.0.1:{p}/a" }}
  - id: second
    needs: [send]
    idempotent: true
    http: {{ method: "{{{{ verb }}}}", url: "http://127.0.0.1:{p}/b" }}
"#,
        p = srv.port
    ));
    let ran = s.exec(&["--yes"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let seen: Vec<(String, String)> = srv
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    assert_eq!(
        seen,
        [
            ("PUT".to_string(), "/a".to_string()),
            ("POST".into(), "/b".into())
        ]
    );
    let bad = s.exec(&["--yes", "-i", "verb=FETCH"]);
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    assert!(
        bad.stderr.contains("method: `FETCH` is not an HTTP method"),
        "{}",
        bad.stderr
    );
    assert_eq!(srv.requests().len(), 3, "nothing sent with FETCH");
}

/// `for_each: { on_item_failure: continue }` runs every item, one after another or
/// `max_parallel` at once, and the step still fails (then unwinds) at the end.
#[test]
fn on_item_failure_continue_runs_the_remaining_items() {
    for parallel in ["", "max_parallel: 2"] {
        let s = Scratch::new();
        s.runbook(&format!(
            r#"
runbook: items
version: 1
steps:
  - id: first
    run: "true"
    rollback: echo undo >> {{D}}/undo
  - id: each
    needs: [first]
    read_only: true
    {parallel}
    for_each: {{ items: [1, 2, 3], on_item_failure: continue }}
    run: echo {{{{ item }}}} >> {{D}}/items; test {{{{ item }}}} != 1
"#
        ));
        let ran = s.exec(&["--yes"]);
        assert_eq!(ran.code, Some(1), "{parallel}: {}", ran.stderr);
        let mut items: Vec<String> = s.read("items").lines().map(String::from).collect();
        items.sort();
        assert_eq!(items, ["1", "2", "3"], "{parallel}");
        assert_eq!(
            s.read("undo"),
            "undo\n",
            "{parallel}: the failure still unwinds"
        );
    }
}

/// The remote-step lint covers `http` steps that change things: a PUT without a gate or a
/// rollback is flagged; a GET, a gated PUT and an idempotent PUT are not.
#[test]
fn the_unguarded_lint_covers_http_steps_that_change_things() {
    let s = Scratch::new();
    let f = s.runbook(
        r#"
runbook: lint
version: 1
steps:
  - id: read
    http: { get: "https://vault.example/v1/sys/health" }
  - id: write
    http: { put: "https://vault.example/v1/sys/seal" }
  - id: gated
    confirm: Seal?
    http: { post: "https://vault.example/v1/sys/seal" }
  - id: share
    idempotent: true
    http: { put: "https://vault.example/v1/sys/unseal" }
  - id: picked
    http: { method: "{{ 'DELETE' }}", url: "https://vault.example/v1/x" }
"#,
    );
    let ran = runbook(["validate".as_ref(), f.as_os_str()]).run();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let text = format!("{}{}", ran.stdout, ran.stderr);
    assert!(
        text.contains("step `write` sends a PUT request without a gate or a rollback"),
        "{text}"
    );
    assert!(
        text.contains("step `picked` sends a request (method chosen at run time)"),
        "{text}"
    );
    for quiet in ["`read`", "`gated`", "`share`"] {
        assert!(!text.contains(&format!("step {quiet}")), "{quiet}: {text}");
    }
}

/// In a called runbook (`uses:`), run-time members are the child's own host names (inlined
/// as `<call>.<host>`): `a` matches `call.a`, and a stranger is refused naming it.
#[test]
fn a_called_runbook_chooses_its_own_hosts_at_run_time() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path("lib")).expect("lib");
    std::fs::write(
        s.path("lib/child.yaml"),
        r#"
runbook: child
version: 1
inputs:
  nodes: { type: list }
hosts:
  a: { address: 127.0.0.41 }
  b: { address: 127.0.0.42 }
groups:
  g: [a, b]
steps:
  - id: act
    on: { hosts: nodes, from: g }
    confirm: go?
    run: echo hi
"#,
    )
    .expect("child");
    s.runbook(
        r#"
runbook: parent
version: 1
steps:
  - id: find
    read_only: true
    run: echo a stranger
    outputs:
      nodes: stdout | split | list
  - id: call
    needs: [find]
    uses: lib/child.yaml
    with:
      nodes: "{{ steps.find.outputs.nodes }}"
"#,
    );
    let ran = s.exec(&["--yes"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("host `stranger`")
            && ran
                .stderr
                .contains("is not a member of group `call.g` (members: call.a, call.b)"),
        "{}",
        ran.stderr
    );
}

/// `on: "{{ … }}"` (a template where a name belongs) is refused with the run-time form to
/// write instead; `where`/`order` without a group and `from:` naming a host are refused too.
#[test]
fn run_time_targets_are_checked_by_validate() {
    let s = Scratch::new();
    let f = s.runbook(
        r#"
runbook: bad-targets
version: 1
hosts:
  v1: { address: 10.0.0.1 }
groups:
  cluster: [v1]
steps:
  - id: find
    read_only: true
    run: echo v1
  - id: templated
    needs: [find]
    on: "{{ steps.find.stdout }}"
    read_only: true
    run: "true"
  - id: no-group
    read_only: true
    where: host.name == 'v1'
    run: "true"
  - id: from-host
    needs: [find]
    on: { hosts: steps.find.stdout, from: v1 }
    read_only: true
    run: "true"
"#,
    );
    let ran = runbook(["validate".as_ref(), f.as_os_str()]).run();
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    for needle in [
        "write `on: { hosts: \"{{ steps.find.stdout }}\", from: GROUP }`",
        "step `no-group` chooses hosts (`where`/`order`) but has no `on:` group",
        "step `from-host` chooses its hosts at run time, so `on:` must name a group, and `v1` is a host",
    ] {
        assert!(ran.stderr.contains(needle), "{needle}\n{}", ran.stderr);
    }
}

/// A run paused at the gate of a run-time fan-out resumes with the same choice: the members
/// and the order come from the journaled outputs of the earlier steps, which do not run again.
#[test]
fn a_paused_run_time_fan_out_resumes_with_the_same_hosts_and_order() {
    crate::sshd::require();
    let keys = Keys::new();
    let addrs = ["127.0.0.25", "127.0.0.26", "127.0.0.27"];
    let sshd = Sshd::start(&keys, &addrs, "host");
    for a in addrs {
        keys.trust(a, sshd.port, "host");
    }
    let yaml = format!(
        r#"
runbook: resume-targets
version: 1
hosts:
  n5: {{ address: 127.0.0.25, port: {p}, user: root }}
  n6: {{ address: 127.0.0.26, port: {p}, user: root }}
  n7: {{ address: 127.0.0.27, port: {p}, user: root }}
groups:
  nodes: [n5, n6, n7]
steps:
  - id: pick
    read_only: true
    run: echo pick >> {{D}}/pick; echo "n7,n5"
    outputs:
      chosen: stdout | trim
  - id: act
    needs: [pick]
    on: {{ hosts: steps.pick.outputs.chosen, from: nodes }}
    order: {{ by: host.name }}
    serial: 1
    confirm: Act on the chosen nodes?
    run: echo "{{{{ host.name }}}}-$(echo "$SSH_CONNECTION" | cut -d' ' -f3)" >> {{D}}/done
    rollback: "true"
"#,
        p = sshd.port
    );
    let (first, dir) = exec_ssh(&keys, &yaml, &["--no-wait"]);
    assert_eq!(first.code, Some(3), "{}", first.stderr);
    let runs = dir.join("runs");
    let id = std::fs::read_dir(&runs)
        .expect("runs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .find(|n| n.contains("resume-targets"))
        .expect("a run");
    let resumed = runbook([
        "resume".to_string(),
        id,
        "--runs-dir".into(),
        runs.display().to_string(),
        "--approve".into(),
        "act".into(),
        "--progress".into(),
        "plain".into(),
    ])
    .run();
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    assert_eq!(read("pick"), "pick\n", "pick ran once");
    assert_eq!(
        read("done"),
        "n5-127.0.0.25\nn7-127.0.0.27\n",
        "{}",
        resumed.stderr
    );
}
