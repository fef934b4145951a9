//! SSH steps against real OpenSSH servers on loopback.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::exec::alive;
use crate::harness::{Ran, runbook};
use crate::sshd::{Keys, Sshd, TEST_USER, ensure_test_user, free_port};

/// SSH tests need sshd: a missing one fails the test with one line, never a silent skip.
fn skip() -> bool {
    crate::sshd::require();
    false
}

/// Runs `runbook exec` on `yaml` with the test keys' ssh_config.
fn exec(keys: &Keys, yaml: &str, args: &[&str]) -> (Ran, std::path::PathBuf) {
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

#[test]
fn command_on_one_host_with_output_captured() {
    if skip() {
        return;
    }
    let keys = Keys::new();
    let sshd = Sshd::start(&keys, &["127.0.0.1"], "host");
    keys.trust("127.0.0.1", sshd.port, "host");
    let yaml = format!(
        r#"
runbook: one
version: 1
hosts:
  node: {{ address: 127.0.0.1, port: {p}, user: root }}
steps:
  - id: who
    on: node
    read_only: true
    run: echo "hello from $(hostname)"; id -un; echo "step=$RUNBOOK_STEP"
    outputs:
      user: stdout.splitlines()[1] if false else (stdout | grep('root'))
  - id: show
    needs: [who]
    run: echo remote said {{{{ steps.who.outputs.user }}}}
"#,
        p = sshd.port
    );
    let (ran, _) = exec(&keys, &yaml, &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("who@node │ hello from"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("who@node │ step=who"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("show │ remote said root"),
        "{}",
        ran.stderr
    );
}

#[test]
fn group_fan_out_with_serial_and_max_parallel() {
    if skip() {
        return;
    }
    let keys = Keys::new();
    let addrs = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];
    let sshd = Sshd::start(&keys, &addrs, "host");
    for a in addrs {
        keys.trust(a, sshd.port, "host");
    }
    let yaml = format!(
        r#"
runbook: fan
version: 1
hosts:
  v1: {{ address: 127.0.0.11, port: {p}, user: root }}
  v2: {{ address: 127.0.0.12, port: {p}, user: root }}
  v3: {{ address: 127.0.0.13, port: {p}, user: root }}
groups:
  vault: [v1, v2, v3]
steps:
  - id: rolling
    on: vault
    serial: 1
    confirm: Restart one node at a time?
    run: echo start-{{{{ host.name }}}} >> {{D}}/serial; sleep 0.3; echo end-{{{{ host.name }}}} >> {{D}}/serial
  - id: pairs
    needs: [rolling]
    on: vault
    max_parallel: 2
    confirm: Two at a time?
    run: |
      n=$(ls {{D}}/running 2>/dev/null | wc -l); echo $n >> {{D}}/concurrency
      mkdir -p {{D}}/running; touch {{D}}/running/{{{{ host.name }}}}; sleep 0.5
      ls {{D}}/running | wc -l >> {{D}}/concurrency; rm {{D}}/running/{{{{ host.name }}}}
  - id: report
    needs: [pairs]
    run: echo v2 exit {{{{ steps.rolling.hosts.v2.exit_code }}}}
"#,
        p = sshd.port
    );
    let (ran, dir) = exec(&keys, &yaml, &["--yes"]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let serial = std::fs::read_to_string(dir.join("serial")).expect("serial log");
    let lines: Vec<&str> = serial.lines().collect();
    assert_eq!(lines.len(), 6);
    for pair in lines.chunks(2) {
        assert_eq!(
            pair[0].replace("start-", ""),
            pair[1].replace("end-", ""),
            "serial batches overlapped: {serial}"
        );
    }
    let conc = std::fs::read_to_string(dir.join("concurrency")).expect("concurrency log");
    let max = conc
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    assert!(max <= 2, "more than 2 hosts at once: {conc}");
    assert!(ran.stderr.contains("report │ v2 exit 0"), "{}", ran.stderr);
}

#[test]
fn a_down_host_is_a_clear_error_and_max_failures_is_respected() {
    if skip() {
        return;
    }
    let keys = Keys::new();
    let sshd = Sshd::start(&keys, &["127.0.0.1"], "host");
    keys.trust("127.0.0.1", sshd.port, "host");
    let dead = free_port();
    keys.trust("127.0.0.1", dead, "host");
    let yaml = |max: &str| {
        format!(
            r#"
runbook: down
version: 1
hosts:
  up1: {{ address: 127.0.0.1, port: {p}, user: root }}
  dead: {{ address: 127.0.0.1, port: {dead}, user: root }}
  up2: {{ address: 127.0.0.1, port: {p}, user: root }}
groups:
  all: [up1, dead, up2]
steps:
  - id: touch
    on: all
    max_parallel: 1
    max_failures: {max}
    read_only: true
    run: echo {{{{ host.name }}}} >> {{D}}/touched
"#,
            p = sshd.port
        )
    };
    let (strict, dir) = exec(&keys, &yaml("0"), &[]);
    assert_eq!(strict.code, Some(1), "{}", strict.stderr);
    assert!(
        strict.stderr.contains(&format!(
            "dead: host dead (root@127.0.0.1:{dead}): connection refused"
        )),
        "{}",
        strict.stderr
    );
    assert!(
        strict.stderr.contains("not started: up2"),
        "{}",
        strict.stderr
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("touched")).unwrap_or_default(),
        "up1\n"
    );
    let _ = std::fs::remove_file(dir.join("touched"));
    let (tolerant, dir) = exec(&keys, &yaml("1"), &[]);
    assert_eq!(tolerant.code, Some(0), "{}", tolerant.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join("touched")).unwrap_or_default(),
        "up1\nup2\n"
    );
}

#[test]
fn unknown_and_changed_host_keys_are_refused_before_anything_runs() {
    if skip() {
        return;
    }
    let keys = Keys::new();
    let sshd = Sshd::start(&keys, &["127.0.0.1"], "host");
    let yaml = format!(
        "runbook: k\nversion: 1\nhosts:\n  node: {{ address: 127.0.0.1, port: {p}, user: root }}\nsteps:\n  - id: mark\n    on: node\n    read_only: true\n    run: touch {{D}}/marker\n",
        p = sshd.port
    );
    let (unknown, dir) = exec(&keys, &yaml, &[]);
    assert_eq!(unknown.code, Some(1), "{}", unknown.stderr);
    assert!(
        unknown
            .stderr
            .contains("its host key is not known, so the connection is refused"),
        "{}",
        unknown.stderr
    );
    assert!(
        unknown
            .stderr
            .contains(&format!("ssh-keyscan -p {} 127.0.0.1", sshd.port)),
        "{}",
        unknown.stderr
    );
    assert!(
        !dir.join("marker").exists(),
        "command ran on an unknown host"
    );

    keys.trust("127.0.0.1", sshd.port, "other-host");
    let (changed, dir) = exec(&keys, &yaml, &[]);
    assert_eq!(changed.code, Some(1), "{}", changed.stderr);
    assert!(
        changed.stderr.contains("HOST KEY CHANGED"),
        "{}",
        changed.stderr
    );
    assert!(
        !dir.join("marker").exists(),
        "command ran despite a changed host key"
    );
}

#[test]
fn proxy_jump_through_a_second_sshd() {
    if skip() {
        return;
    }
    let keys = Keys::new();
    let bastion = Sshd::start(&keys, &["127.0.0.1"], "host");
    let inner = Sshd::start(&keys, &["127.0.0.21"], "other-host");
    keys.trust("127.0.0.1", bastion.port, "host");
    keys.trust("127.0.0.21", inner.port, "other-host");
    let yaml = format!(
        r#"
runbook: jump
version: 1
hosts:
  bastion: {{ address: 127.0.0.1, port: {b}, user: root }}
  inner: {{ address: 127.0.0.21, port: {i}, user: root, jump: bastion }}
steps:
  - id: hop
    on: inner
    read_only: true
    run: echo behind the bastion
"#,
        b = bastion.port,
        i = inner.port
    );
    let (ran, dir) = exec(&keys, &yaml, &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stderr.contains("hop@inner │ behind the bastion"));
    let log = bastion.log_text();
    assert!(
        log.contains("direct-tcpip") || log.contains("direct_tcpip"),
        "the bastion forwarded nothing:\n{log}"
    );
    assert!(log.contains("127.0.0.21"), "{log}");
    let plan = runbook(["plan".as_ref(), dir.join("rb.yaml").as_os_str()]).run();
    assert!(
        plan.stdout.contains(&format!(
            "inner (root@127.0.0.21:{}) via root@127.0.0.1:{}",
            inner.port, bastion.port
        )),
        "{}",
        plan.stdout
    );
}

fn remote_sleep_yaml(port: u16, timeout: &str) -> String {
    format!(
        r#"
runbook: sleepy
version: 1
hosts:
  node: {{ address: 127.0.0.1, port: {port}, user: {TEST_USER} }}
steps:
  - id: first
    run: echo first >> {{D}}/done
    rollback: echo undo-first >> {{D}}/undo
  - id: sleepy
    needs: [first]
    on: node
    read_only: true
    {timeout}
    run: echo $$ > /tmp/rb-remote-pid-{port}; exec sleep 300
"#
    )
}

fn remote_pid(port: u16) -> Option<i32> {
    std::fs::read_to_string(format!("/tmp/rb-remote-pid-{port}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[test]
fn remote_timeout_stops_the_remote_process() {
    if skip() {
        return;
    }
    ensure_test_user();
    let keys = Keys::new();
    let sshd = Sshd::start(&keys, &["127.0.0.1"], "host");
    keys.trust("127.0.0.1", sshd.port, "host");
    let t0 = Instant::now();
    let (ran, dir) = exec(&keys, &remote_sleep_yaml(sshd.port, "timeout: 2s"), &[]);
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.stderr.contains("timed out after 2s"), "{}", ran.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join("undo")).unwrap_or_default(),
        "undo-first\n"
    );
    let pid = remote_pid(sshd.port).expect("remote pid");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!alive(pid), "remote sleep {pid} survived the timeout");
}

#[test]
fn sigint_stops_the_remote_process() {
    if skip() {
        return;
    }
    ensure_test_user();
    let keys = Keys::new();
    let sshd = Sshd::start(&keys, &["127.0.0.1"], "host");
    keys.trust("127.0.0.1", sshd.port, "host");
    let dir = keys.path("work");
    std::fs::create_dir_all(&dir).expect("dir");
    let f = dir.join("rb.yaml");
    std::fs::write(
        &f,
        remote_sleep_yaml(sshd.port, "").replace("{D}", &dir.display().to_string()),
    )
    .expect("write");
    let _ = std::fs::remove_file(format!("/tmp/rb-remote-pid-{}", sshd.port));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("exec")
        .arg(&f)
        .arg("--ssh-config")
        .arg(keys.ssh_config())
        .arg("--runs-dir")
        .arg(dir.join("runs"))
        .args(["--progress", "plain"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let t0 = Instant::now();
    let pid = loop {
        if let Some(p) = remote_pid(sshd.port) {
            break p;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "remote command never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(alive(pid));
    // SAFETY: kill(2) on the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    use wait_timeout::ChildExt;
    let status = child
        .wait_timeout(Duration::from_secs(30))
        .expect("wait")
        .expect("exited");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read");
    assert_eq!(status.code(), Some(3), "{err}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!alive(pid), "remote sleep {pid} survived Ctrl-C:\n{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("undo")).unwrap_or_default(),
        "undo-first\n"
    );
}

#[test]
fn secrets_are_not_in_the_remote_process_list() {
    if skip() {
        return;
    }
    let keys = Keys::new();
    let sshd = Sshd::start(&keys, &["127.0.0.1"], "host");
    keys.trust("127.0.0.1", sshd.port, "host");
    let canary = "remote-canary-5150-xyz";
    let yaml = format!(
        r#"
runbook: s
version: 1
inputs:
  token: {{ secret: true, from_env: TOKEN }}
hosts:
  node: {{ address: 127.0.0.1, port: {p}, user: root }}
steps:
  - id: use
    on: node
    read_only: true
    run: touch {{D}}/started; sleep 2; printf %s {{{{ token }}}} | sha256sum
"#,
        p = sshd.port
    );
    let dir = keys.path("work");
    std::fs::create_dir_all(&dir).expect("dir");
    let f = dir.join("rb.yaml");
    std::fs::write(&f, yaml.replace("{D}", &dir.display().to_string())).expect("w");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .arg("exec")
        .arg(&f)
        .arg("--ssh-config")
        .arg(keys.ssh_config())
        .arg("--runs-dir")
        .arg(dir.join("runs"))
        .args(["--progress", "plain"])
        .env("TOKEN", canary)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let t0 = Instant::now();
    while !dir.join("started").exists() {
        assert!(t0.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(20));
    }
    let ps = std::process::Command::new("ps")
        .args(["-eww", "-o", "args"])
        .output()
        .expect("ps");
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(!ps.contains(canary), "secret visible in ps:\n{ps}");
    assert!(
        ps.contains("RUNBOOK_SECRET_TOKEN") || ps.contains("sleep 2"),
        "the remote command should be running:\n{ps}"
    );
    use wait_timeout::ChildExt;
    let status = child
        .wait_timeout(Duration::from_secs(30))
        .expect("wait")
        .expect("exit");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read");
    assert_eq!(status.code(), Some(0), "{err}");
    // The command got the real value: its hash matches.
    let hash = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s {canary} | sha256sum"))
        .output()
        .expect("sha256sum");
    let hash = String::from_utf8_lossy(&hash.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains(&hash), "{err}");
    assert!(!err.contains(canary));
}

#[test]
fn rollback_over_ssh_after_a_later_local_failure() {
    if skip() {
        return;
    }
    let keys = Keys::new();
    let sshd = Sshd::start(&keys, &["127.0.0.1"], "host");
    keys.trust("127.0.0.1", sshd.port, "host");
    let yaml = format!(
        r#"
runbook: rb
version: 1
hosts:
  lb: {{ address: 127.0.0.1, port: {p}, user: root }}
steps:
  - id: halt
    on: lb
    confirm: Halt?
    run: echo disabled > {{D}}/lb-state
    rollback: {{ on: lb, run: "echo enabled > {{D}}/lb-state" }}
  - id: break
    needs: [halt]
    run: exit 9
"#,
        p = sshd.port
    );
    let (ran, dir) = exec(&keys, &yaml, &["--yes"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join("lb-state")).unwrap_or_default(),
        "enabled\n"
    );
    assert!(
        ran.stderr.contains("rollback of halt ✔ ok"),
        "{}",
        ran.stderr
    );
}

#[test]
fn no_master_is_left_behind() {
    if skip() {
        return;
    }
    let keys = Keys::new();
    let sshd = Sshd::start(&keys, &["127.0.0.1"], "host");
    keys.trust("127.0.0.1", sshd.port, "host");
    let yaml = format!(
        "runbook: m\nversion: 1\nhosts:\n  n: {{ address: 127.0.0.1, port: {p}, user: root }}\nsteps:\n  - id: a\n    on: n\n    read_only: true\n    run: 'true'\n  - id: b\n    needs: [a]\n    on: n\n    read_only: true\n    run: 'true'\n",
        p = sshd.port
    );
    let (ran, _) = exec(&keys, &yaml, &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    std::thread::sleep(Duration::from_millis(300));
    let ps = std::process::Command::new("ps")
        .args(["-eww", "-o", "args"])
        .output()
        .expect("ps");
    let ps = String::from_utf8_lossy(&ps.stdout);
    let port = format!("-p {}", sshd.port);
    assert!(
        !ps.lines()
            .any(|l| l.starts_with("ssh") && l.contains(&port)),
        "an ssh master survived:\n{ps}"
    );
    // One connection served both steps: the server saw exactly one authentication.
    let accepted = sshd.log_text().matches("Accepted publickey").count();
    assert_eq!(accepted, 1, "{}", sshd.log_text());
}

#[test]
fn refused_key_unresolvable_name_and_known_hosts_flag_each_get_one_clear_line() {
    if skip() {
        return;
    }
    let keys = Keys::new();
    let sshd = Sshd::start(&keys, &["127.0.0.1"], "host");
    keys.trust("127.0.0.1", sshd.port, "host");
    // A key the server does not know.
    let stranger = keys.path("stranger");
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok);
    let yaml = format!(
        "runbook: f\nversion: 1\nhosts:\n  node: {{ address: 127.0.0.1, port: {p}, user: root, identity_file: {k} }}\n  ghost: {{ address: no-such-host.invalid, user: root }}\nsteps:\n  - id: a\n    on: node\n    read_only: true\n    continue_on_failure: true\n    run: touch {{D}}/a\n  - id: b\n    on: ghost\n    read_only: true\n    continue_on_failure: true\n    run: touch {{D}}/b\n",
        p = sshd.port,
        k = stranger.display()
    );
    // An ssh_config that offers no key of its own: only the runbook's identity_file is tried.
    let bare = keys.path("bare_ssh_config");
    std::fs::write(
        &bare,
        format!("Host *\n  IdentitiesOnly yes\n  IdentityAgent none\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  BatchMode yes\n", keys.path("known_hosts").display()),
    )
    .expect("config");
    let dir = keys.path("work");
    std::fs::create_dir_all(&dir).expect("dir");
    let f = dir.join("rb.yaml");
    std::fs::write(&f, yaml.replace("{D}", &dir.display().to_string())).expect("write");
    let ran = runbook([
        "exec".as_ref(),
        f.as_os_str(),
        "--ssh-config".as_ref(),
        bare.as_os_str(),
        "--runs-dir".as_ref(),
        dir.join("runs").as_os_str(),
        "--progress".as_ref(),
        "plain".as_ref(),
    ])
    .run();
    assert!(
        ran.stderr.contains(&format!(
            "host node (root@127.0.0.1:{}): authentication refused",
            sshd.port
        )),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr
            .contains("host ghost (root@no-such-host.invalid): the name does not resolve"),
        "{}",
        ran.stderr
    );
    assert!(!dir.join("a").exists() && !dir.join("b").exists());

    // --known-hosts overrides the ssh_config's file: an empty one refuses the host.
    let empty = keys.path("empty_known_hosts");
    std::fs::write(&empty, "").expect("empty");
    let yaml = format!(
        "runbook: k\nversion: 1\nhosts:\n  node: {{ address: 127.0.0.1, port: {p}, user: root }}\nsteps:\n  - id: a\n    on: node\n    read_only: true\n    run: touch {{D}}/k\n",
        p = sshd.port
    );
    let (ran, dir) = exec(
        &keys,
        &yaml,
        &["--known-hosts", &empty.display().to_string()],
    );
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("its host key is not known"),
        "{}",
        ran.stderr
    );
    assert!(!dir.join("k").exists());
}

/// A host that accepts the TCP connection but never speaks SSH (a hung sshd, a black hole
/// behind a proxy): the connect timeout turns it into one clear line, after retries.
#[test]
fn connect_timeout_is_a_clear_error() {
    if skip() {
        return;
    }
    let keys = Keys::new();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming().flatten() {
            held.push(s); // accept, never answer
        }
    });
    keys.trust("127.0.0.1", port, "host");
    let yaml = format!(
        "runbook: t\nversion: 1\nhosts:\n  mute: {{ address: 127.0.0.1, port: {port}, user: root }}\nsteps:\n  - id: a\n    on: mute\n    read_only: true\n    run: touch {{D}}/ran\n"
    );
    let t0 = Instant::now();
    let (ran, dir) = exec(&keys, &yaml, &["--ssh-connect-timeout", "1s"]);
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains(&format!(
            "host mute (root@127.0.0.1:{port}): connection timed out"
        )),
        "{}",
        ran.stderr
    );
    assert!(!dir.join("ran").exists());
}

/// The bastion is checked against the same known_hosts as the target, strictly: a wrong
/// bastion key in `--known-hosts` stops the run before anything runs, even when the user's
/// ssh_config would trust it.
#[test]
fn a_wrong_bastion_key_is_refused() {
    if skip() {
        return;
    }
    let keys = Keys::new();
    let bastion = Sshd::start(&keys, &["127.0.0.1"], "host");
    let inner = Sshd::start(&keys, &["127.0.0.21"], "other-host");
    // The ssh_config's known_hosts trusts both correctly...
    keys.trust("127.0.0.1", bastion.port, "host");
    keys.trust("127.0.0.21", inner.port, "other-host");
    // ...the one given with --known-hosts has the wrong key for the bastion.
    let strict = keys.path("strict_known_hosts");
    std::fs::write(
        &strict,
        format!(
            "[127.0.0.1]:{} {}\n[127.0.0.21]:{} {}\n",
            bastion.port,
            keys.host_pub("other-host"),
            inner.port,
            keys.host_pub("other-host")
        ),
    )
    .expect("write");
    let yaml = format!(
        r#"
runbook: jump
version: 1
hosts:
  bastion: {{ address: 127.0.0.1, port: {b}, user: root }}
  inner: {{ address: 127.0.0.21, port: {i}, user: root, jump: bastion }}
steps:
  - id: hop
    on: inner
    read_only: true
    run: touch {{D}}/ran
"#,
        b = bastion.port,
        i = inner.port
    );
    let strict_arg = strict.display().to_string();
    let (ran, dir) = exec(&keys, &yaml, &["--known-hosts", &strict_arg]);
    assert_ne!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        !dir.join("ran").exists(),
        "the step ran through an unverified bastion"
    );

    // With the right bastion key in that file, the same run goes through.
    std::fs::write(
        &strict,
        format!(
            "[127.0.0.1]:{} {}\n[127.0.0.21]:{} {}\n",
            bastion.port,
            keys.host_pub("host"),
            inner.port,
            keys.host_pub("other-host")
        ),
    )
    .expect("write");
    let (ran, dir) = exec(&keys, &yaml, &["--known-hosts", &strict_arg]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(dir.join("ran").exists());
}

/// A serial fan-out that fails on host 2: host 1 is undone, on host 1 (`$SSH_CONNECTION`
/// names the address the command ran at), with `host.*` bound; host 2 (failed) and host 3
/// (not started) are not "undone". The rollback is a bare string: it runs where the step ran.
#[test]
fn serial_fan_out_failing_on_host_2_undoes_host_1_on_host_1() {
    if skip() {
        return;
    }
    let keys = Keys::new();
    let addrs = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];
    let sshd = Sshd::start(&keys, &addrs, "host");
    for a in addrs {
        keys.trust(a, sshd.port, "host");
    }
    let yaml = format!(
        r#"
runbook: fan-undo
version: 1
hosts:
  v1: {{ address: 127.0.0.11, port: {p}, user: root }}
  v2: {{ address: 127.0.0.12, port: {p}, user: root }}
  v3: {{ address: 127.0.0.13, port: {p}, user: root }}
groups:
  vault: [v1, v2, v3]
steps:
  - id: rolling
    on: vault
    serial: 1
    confirm: One node at a time?
    run: |
      at=$(echo "$SSH_CONNECTION" | cut -d' ' -f3)
      echo "did-{{{{ host.name }}}}-$at" >> {{D}}/done
      [ "$at" != 127.0.0.12 ]
    rollback: echo "undo-{{{{ host.name }}}}-$(echo "$SSH_CONNECTION" | cut -d' ' -f3)" >> {{D}}/undo
"#,
        p = sshd.port
    );
    let (ran, dir) = exec(&keys, &yaml, &["--yes"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    assert_eq!(read("done"), "did-v1-127.0.0.11\ndid-v2-127.0.0.12\n");
    assert_eq!(read("undo"), "undo-v1-127.0.0.11\n", "{}", ran.stderr);
    assert!(
        ran.stderr.contains("rollback of rolling ✔ ok"),
        "{}",
        ran.stderr
    );
}
