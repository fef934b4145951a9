//! A test-only stand-in for HashiCorp Vault, for runbook's lab (no package registry reachable
//! here carries Vault). It follows the documented shapes of the HTTP API the runbooks use:
//! `sys/seal-status`, `sys/unseal` (`key`, `reset`), `sys/health` (200 active, 429 standby,
//! 501 not initialised, 503 sealed; `standbyok`), `sys/leader`,
//! `sys/storage/raft/configuration` (token), `auth/token/lookup-self`, and a KV v2 read with
//! policy checks. It starts sealed and unseals only with a threshold of valid shares of a real
//! Shamir split. Three nodes form a cluster: each reports its state on a cluster port, and the
//! lowest unsealed node id that sees a quorum leads.
//!
//! Usage:
//!   vault-standin init --shares 5 --threshold 3 --out DIR   # seal.json, unseal-keys, root-token
//!   vault-standin server --config vault.hcl

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const VERSION: &str = "1.15.6+standin";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        Some("init") => init(&args[2..]),
        Some("server") => server(&args[2..]),
        Some("free-port") => match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(a) => {
                println!("{}", a.port());
                0
            }
            Err(e) => {
                eprintln!("{e}");
                1
            }
        },
        _ => {
            eprintln!(
                "usage: vault-standin init --shares N --threshold T --out DIR | server --config FILE"
            );
            2
        }
    };
    std::process::exit(code);
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut buf);
    }
    buf
}

/// Splits a fresh root key with Shamir's scheme and writes the lab's seal material.
fn init(args: &[String]) -> i32 {
    let shares: u8 = flag(args, "--shares")
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let threshold: u8 = flag(args, "--threshold")
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let Some(out) = flag(args, "--out") else {
        eprintln!("init needs --out DIR");
        return 2;
    };
    let root_key = random_bytes(32);
    let sharks = sharks::Sharks(threshold);
    let dealer = sharks.dealer(&root_key);
    let keys: Vec<String> = dealer
        .take(shares as usize)
        .map(|s| base64::engine::general_purpose::STANDARD.encode(Vec::from(&s)))
        .collect();
    let root_token = format!("hvs.{}", hex(&random_bytes(12)));
    let app_token = format!("hvs.{}", hex(&random_bytes(12)));
    let seal = json!({
        "t": threshold, "n": shares,
        "key_sha256": hex(&Sha256::digest(&root_key)),
        "root_token_sha256": hex(&Sha256::digest(root_token.as_bytes())),
        "app_token_sha256": hex(&Sha256::digest(app_token.as_bytes())),
        "cluster_id": hex(&random_bytes(8)),
    });
    let write = |name: &str, body: String| -> bool {
        use std::os::unix::fs::OpenOptionsExt;
        let path = std::path::Path::new(out).join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => f.write_all(body.as_bytes()).is_ok(),
            Err(e) => {
                eprintln!("cannot write {}: {e}", path.display());
                false
            }
        }
    };
    let ok = write("seal.json", seal.to_string())
        && write("unseal-keys", keys.join("\n") + "\n")
        && write("root-token", root_token + "\n")
        && write("app-token", app_token + "\n");
    if ok { 0 } else { 1 }
}

/// The node's configuration, read from an HCL-like file.
#[derive(Clone)]
struct Config {
    path: String,
    node_id: String,
    api_addr: String,
    cluster_addr: String,
    peers: Vec<(String, String)>,
    seal_file: String,
    log_file: String,
}

/// Parses the subset of vault.hcl the lab writes; any other shape is a parse error, reported
/// the way Vault reports it.
fn parse_config(path: &str) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("Error loading configuration from {path}: {e}"))?;
    let mut vals: BTreeMap<String, String> = BTreeMap::new();
    let mut depth = 0i32;
    let mut block = String::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.ends_with('{') {
            depth += 1;
            block = line
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            continue;
        }
        if line == "}" {
            depth -= 1;
            if depth < 0 {
                return Err(format!(
                    "Error parsing {path}: At {}:1: unexpected token: }}",
                    n + 1
                ));
            }
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!(
                "Error parsing {path}: At {}:{}: key '{line}' expected start of object ('{{') or assignment ('=')",
                n + 1,
                raw.len() - raw.trim_start().len() + 1
            ));
        };
        let key = if depth > 0 {
            format!("{block}.{}", k.trim())
        } else {
            k.trim().to_string()
        };
        vals.insert(key, v.trim().trim_matches('"').to_string());
    }
    if depth != 0 {
        return Err(format!(
            "Error parsing {path}: At {}:1: object expected closing RBRACE got: EOF",
            text.lines().count() + 1
        ));
    }
    let get = |k: &str| {
        vals.get(k)
            .cloned()
            .ok_or_else(|| format!("Error parsing {path}: missing `{k}`"))
    };
    let peers = vals
        .get("peers")
        .map(|p| {
            p.trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .filter_map(|x| x.trim().trim_matches('"').split_once('='))
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        })
        .unwrap_or_default();
    Ok(Config {
        path: path.to_string(),
        node_id: get("node_id")?,
        api_addr: get("listener.address")?,
        cluster_addr: get("cluster_address")?,
        peers,
        seal_file: get("seal_file")?,
        log_file: get("log_file")?,
    })
}

/// A journald-style timestamp (UTC): `Nov 26 09:41:02`.
fn stamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {:2} {:02}:{:02}:{:02}",
        MONTHS[(m - 1) as usize],
        d,
        tod / 3600,
        (tod % 3600) / 60,
        tod % 60
    )
}

struct Log {
    file: String,
    node: String,
}

impl Log {
    /// Appends a line as journald shows a unit's output: `DATE HOST vault[PID]: MSG`.
    fn vault(&self, msg: &str) {
        self.raw(&format!("vault[{}]: {msg}", std::process::id()));
    }

    fn raw(&self, what: &str) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.file)
        {
            let _ = writeln!(f, "{} {} {what}", stamp(), self.node);
        }
    }
}

struct State {
    sealed: bool,
    progress: Vec<Vec<u8>>,
    /// Peer node id → unsealed, from the last poll of its cluster port.
    peers_up: BTreeMap<String, bool>,
    leader: Option<String>,
}

struct Node {
    cfg: Config,
    seal: Value,
    state: Mutex<State>,
    log: Log,
}

fn server(args: &[String]) -> i32 {
    let Some(path) = flag(args, "--config") else {
        eprintln!("server needs --config FILE");
        return 2;
    };
    let log_file = std::path::Path::new(path)
        .with_file_name("vault.log")
        .display()
        .to_string();
    let cfg = match parse_config(path) {
        Ok(c) => c,
        Err(e) => {
            let node = std::fs::read_to_string(path)
                .ok()
                .and_then(|t| {
                    t.lines().find_map(|l| {
                        l.trim().strip_prefix("node_id").map(|v| {
                            v.trim_start_matches([' ', '='])
                                .trim_matches('"')
                                .to_string()
                        })
                    })
                })
                .unwrap_or_else(|| "vault".into());
            Log {
                file: log_file,
                node,
            }
            .vault(&e);
            eprintln!("{e}");
            return 1;
        }
    };
    let log = Log {
        file: cfg.log_file.clone(),
        node: cfg.node_id.clone(),
    };
    let seal: Value = match std::fs::read_to_string(&cfg.seal_file)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
    {
        Some(v) => v,
        None => {
            log.vault(&format!(
                "core: failed to read seal configuration from {}",
                cfg.seal_file
            ));
            return 1;
        }
    };
    let api = match TcpListener::bind(&cfg.api_addr) {
        Ok(l) => l,
        Err(e) => {
            log.vault(&format!(
                "Error initializing listener of type tcp: listen tcp {}: bind: {e}",
                cfg.api_addr
            ));
            return 1;
        }
    };
    let cluster = match TcpListener::bind(&cfg.cluster_addr) {
        Ok(l) => l,
        Err(e) => {
            log.vault(&format!(
                "Error initializing cluster listener: listen tcp {}: {e}",
                cfg.cluster_addr
            ));
            return 1;
        }
    };
    log.vault("==> Vault server configuration:");
    log.vault(&format!(
        "             Api Address: http://{}",
        cfg.api_addr
    ));
    log.vault(&format!(
        "         Cluster Address: https://{}",
        cfg.cluster_addr
    ));
    log.vault("                 Storage: raft (HA available)");
    log.vault(&format!("                 Version: Vault v{VERSION}"));
    log.vault("==> Vault server started! Log data will stream in below:");
    log.vault("core: vault is sealed");
    let node = Arc::new(Node {
        state: Mutex::new(State {
            sealed: true,
            progress: Vec::new(),
            peers_up: BTreeMap::new(),
            leader: None,
        }),
        cfg,
        seal,
        log,
    });
    let n2 = node.clone();
    std::thread::spawn(move || {
        for s in cluster.incoming().flatten() {
            let unsealed = n2.state.lock().map(|s| !s.sealed).unwrap_or(false);
            let mut s = s;
            let _ = writeln!(
                s,
                "{}",
                json!({ "node_id": n2.cfg.node_id, "unsealed": unsealed })
            );
        }
    });
    let n3 = node.clone();
    std::thread::spawn(move || poll_peers(&n3));
    for stream in api.incoming().flatten() {
        let n = node.clone();
        std::thread::spawn(move || {
            let _ = handle(&n, stream);
        });
    }
    0
}

/// Asks each peer's cluster port whether it is up and unsealed; elects the leader.
fn poll_peers(node: &Node) {
    loop {
        let mut up = BTreeMap::new();
        for (id, addr) in &node.cfg.peers {
            let ok = addr
                .parse()
                .ok()
                .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_millis(200)).ok())
                .and_then(|s| {
                    let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
                    let mut line = String::new();
                    BufReader::new(s).read_line(&mut line).ok()?;
                    serde_json::from_str::<Value>(&line).ok()
                })
                .and_then(|v| v["unsealed"].as_bool())
                .unwrap_or(false);
            up.insert(id.clone(), ok);
        }
        if let Ok(mut st) = node.state.lock() {
            let total = node.cfg.peers.len() + 1;
            let mut voters: Vec<&String> =
                up.iter().filter(|(_, u)| **u).map(|(id, _)| id).collect();
            if !st.sealed {
                voters.push(&node.cfg.node_id);
            }
            let leader = if voters.len() * 2 > total {
                voters.into_iter().min().cloned()
            } else {
                None
            };
            if leader != st.leader && !st.sealed {
                match &leader {
                    Some(l) if *l == node.cfg.node_id => node
                        .log
                        .vault("core: acquired lock, enabling active operation"),
                    Some(l) => node
                        .log
                        .vault(&format!("core: entering standby mode (active node: {l})")),
                    None => node
                        .log
                        .vault("storage.raft: no leader: quorum lost, waiting for peers"),
                }
            }
            st.leader = leader;
            st.peers_up = up;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

struct Req {
    method: String,
    path: String,
    query: String,
    token: Option<String>,
    body: String,
}

fn read_req(stream: &mut TcpStream) -> Option<Req> {
    let mut r = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    let mut len = 0usize;
    let mut token = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().unwrap_or(0),
                "x-vault-token" => token = Some(v.trim().to_string()),
                "authorization" => {
                    token = v
                        .trim()
                        .strip_prefix("Bearer ")
                        .map(str::to_string)
                        .or(token)
                }
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; len.min(1 << 20)];
    r.read_exact(&mut body).ok()?;
    Some(Req {
        method,
        path,
        query,
        token,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn respond(stream: &mut TcpStream, status: u16, body: &Value) -> std::io::Result<()> {
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncache-control: no-store\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    )?;
    stream.flush()
}

fn errors(msg: &str) -> Value {
    json!({ "errors": [msg] })
}

fn token_is(node: &Node, token: &Option<String>, which: &str) -> bool {
    let Some(t) = token else { return false };
    node.seal[which].as_str() == Some(hex(&Sha256::digest(t.as_bytes())).as_str())
}

fn seal_status(node: &Node, st: &State) -> Value {
    let mut v = json!({
        "type": "shamir", "initialized": true, "sealed": st.sealed,
        "t": node.seal["t"], "n": node.seal["n"], "progress": st.progress.len(),
        "nonce": "", "version": VERSION, "build_date": "2026-01-01T00:00:00Z",
        "migration": false, "recovery_seal": false, "storage_type": "raft",
    });
    if !st.sealed {
        v["cluster_name"] = json!("vault-cluster-lab");
        v["cluster_id"] = node.seal["cluster_id"].clone();
    }
    v
}

fn decode_share(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
        .or_else(|| {
            s.len()
                .is_multiple_of(2)
                .then(|| {
                    (0..s.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&s[i..i + 2], 16))
                        .collect::<Result<Vec<u8>, _>>()
                        .ok()
                })
                .flatten()
        })
        .filter(|b| b.len() > 1)
}

fn handle(node: &Node, mut stream: TcpStream) -> std::io::Result<()> {
    let Some(req) = read_req(&mut stream) else {
        return Ok(());
    };
    let Ok(mut st) = node.state.lock() else {
        return respond(&mut stream, 500, &errors("internal error"));
    };
    let t = node.seal["t"].as_u64().unwrap_or(3) as usize;
    let me = node.cfg.node_id.clone();
    let (status, body) = match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/v1/sys/seal-status") => (200, seal_status(node, &st)),
        ("PUT" | "POST", "/v1/sys/unseal") => {
            let v: Value = serde_json::from_str(&req.body).unwrap_or(json!({}));
            if v["reset"].as_bool() == Some(true) {
                st.progress.clear();
                (200, seal_status(node, &st))
            } else if !st.sealed {
                (200, seal_status(node, &st))
            } else {
                match v["key"].as_str().and_then(decode_share) {
                    None => (400, errors("'key' must be a valid hex or base64 string")),
                    Some(share) if st.progress.contains(&share) => (200, seal_status(node, &st)),
                    Some(share) => {
                        st.progress.push(share);
                        if st.progress.len() >= t {
                            let shares: Vec<sharks::Share> = st
                                .progress
                                .iter()
                                .filter_map(|b| sharks::Share::try_from(b.as_slice()).ok())
                                .collect();
                            let key = sharks::Sharks(t as u8).recover(shares.iter()).ok();
                            st.progress.clear();
                            match key {
                                Some(k)
                                    if node.seal["key_sha256"].as_str()
                                        == Some(hex(&Sha256::digest(&k)).as_str()) =>
                                {
                                    st.sealed = false;
                                    node.log.vault("core: vault is unsealed");
                                    node.log.vault("core: entering standby mode");
                                    (200, seal_status(node, &st))
                                }
                                _ => {
                                    node.log.vault("core: failed to unseal: cipher: message authentication failed");
                                    (400, errors("cipher: message authentication failed"))
                                }
                            }
                        } else {
                            (200, seal_status(node, &st))
                        }
                    }
                }
            }
        }
        ("GET" | "HEAD", "/v1/sys/health") => {
            let standbyok = req
                .query
                .split('&')
                .any(|kv| kv == "standbyok=true" || kv == "standbyok");
            let active = st.leader.as_deref() == Some(me.as_str());
            let code = if st.sealed {
                503
            } else if active || standbyok {
                200
            } else {
                429
            };
            (
                code,
                json!({
                    "initialized": true, "sealed": st.sealed, "standby": !st.sealed && !active,
                    "performance_standby": false, "replication_performance_mode": "disabled",
                    "replication_dr_mode": "disabled",
                    "server_time_utc": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                    "version": VERSION, "cluster_name": "vault-cluster-lab", "cluster_id": node.seal["cluster_id"],
                }),
            )
        }
        ("GET", "/v1/sys/leader") if st.sealed => (503, errors("Vault is sealed")),
        ("GET", "/v1/sys/leader") => {
            let leader = st.leader.clone();
            let addr = |id: &str| -> (String, String) {
                if id == me {
                    return (
                        format!("http://{}", node.cfg.api_addr),
                        format!("https://{}", node.cfg.cluster_addr),
                    );
                }
                let c = node
                    .cfg
                    .peers
                    .iter()
                    .find(|(p, _)| p == id)
                    .map(|(_, a)| a.clone())
                    .unwrap_or_default();
                (String::new(), format!("https://{c}"))
            };
            let (la, lca) = leader.as_deref().map(addr).unwrap_or_default();
            (
                200,
                json!({
                    "ha_enabled": true, "is_self": leader.as_deref() == Some(me.as_str()),
                    "active_time": "0001-01-01T00:00:00Z", "leader_address": la,
                    "leader_cluster_address": lca, "performance_standby": false,
                    "performance_standby_last_remote_wal": 0, "raft_committed_index": 42, "raft_applied_index": 42,
                }),
            )
        }
        (_, p) if st.sealed && p.starts_with("/v1/") => (503, errors("Vault is sealed")),
        ("GET", "/v1/sys/storage/raft/configuration") => {
            if !token_is(node, &req.token, "root_token_sha256") {
                (403, errors("permission denied"))
            } else {
                let mut ids: Vec<(String, String)> = node.cfg.peers.clone();
                ids.push((me.clone(), node.cfg.cluster_addr.clone()));
                ids.sort();
                let servers: Vec<Value> = ids
                    .into_iter()
                    .map(|(id, addr)| json!({
                        "node_id": id, "address": addr, "leader": st.leader.as_deref() == Some(id.as_str()),
                        "protocol_version": "3", "voter": true,
                    }))
                    .collect();
                (
                    200,
                    json!({ "request_id": hex(&random_bytes(8)), "lease_id": "", "renewable": false, "lease_duration": 0,
                    "data": { "config": { "index": 42, "servers": servers } }, "wrap_info": null, "warnings": null, "auth": null }),
                )
            }
        }
        ("GET", "/v1/auth/token/lookup-self") => {
            if token_is(node, &req.token, "root_token_sha256") {
                (
                    200,
                    json!({ "data": { "display_name": "root", "policies": ["root"], "ttl": 0, "renewable": false } }),
                )
            } else if token_is(node, &req.token, "app_token_sha256") {
                (
                    200,
                    json!({ "data": { "display_name": "token-app", "policies": ["default", "app-read"], "ttl": 2764800, "renewable": true } }),
                )
            } else {
                (403, errors("permission denied"))
            }
        }
        ("GET", p) if p.starts_with("/v1/secret/data/") => {
            let path = &p["/v1/secret/data/".len()..];
            let allowed = token_is(node, &req.token, "root_token_sha256")
                || (token_is(node, &req.token, "app_token_sha256") && path.starts_with("app/"));
            if !allowed {
                (403, errors("permission denied"))
            } else if path == "app/config" {
                (
                    200,
                    json!({ "data": { "data": { "db_host": "db.internal", "db_user": "app" }, "metadata": { "version": 1, "destroyed": false, "deletion_time": "" } } }),
                )
            } else {
                (404, json!({ "errors": [] }))
            }
        }
        ("POST", "/v1/sys/lab/fault") => {
            let v: Value = serde_json::from_str(&req.body).unwrap_or(json!({}));
            let kind = v["kind"].as_str().unwrap_or("crash").to_string();
            let _ = respond(&mut stream, 204, &Value::Null);
            drop(st);
            fault(node, &kind);
        }
        _ => (404, json!({ "errors": [] })),
    };
    respond(&mut stream, status, &body)
}

/// Dies the way a real Vault does for `kind`, leaving the log lines an operator would find.
fn fault(node: &Node, kind: &str) -> ! {
    let pid = std::process::id();
    match kind {
        "oom" => {
            node.log
                .vault("core: periodic: cache size 7.8 GiB, 2.1M leases in memory");
            node.log.raw(&format!("kernel: Out of memory: Killed process {pid} (vault) total-vm:9812344kB, anon-rss:8123456kB, file-rss:0kB, shmem-rss:0kB"));
        }
        "storage" => {
            node.log
                .vault("storage.raft: failed to heartbeat: context deadline exceeded");
            node.log.vault("core: failed to acquire lock: error=\"raft: leadership lost while committing log\"");
            node.log.vault("core: shutting down");
        }
        "config" => {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .append(true)
                .open(&node.cfg.path)
            {
                let _ = writeln!(
                    f,
                    "listener \"tcp\" {{\n  address = \"0.0.0.0:8200\"\n  tls_disable = tru e"
                );
            }
            node.log
                .vault("core: received SIGHUP, reloading configuration");
            node.log.vault(&format!(
                "Error parsing {}: At 12:3: object expected closing RBRACE got: EOF",
                node.cfg.path
            ));
        }
        "listener" => {
            if let Ok(text) = std::fs::read_to_string(&node.cfg.path) {
                let port = node.cfg.api_addr.rsplit(':').next().unwrap_or("8200");
                let _ = std::fs::write(
                    &node.cfg.path,
                    text.replace(
                        &format!("address = \"{}\"", node.cfg.api_addr),
                        &format!("address = \"127.0.0.2:{port}\""),
                    ),
                );
            }
            node.log.vault("core: shutting down");
        }
        _ => {
            node.log
                .vault("panic: runtime error: invalid memory address or nil pointer dereference");
            node.log
                .vault("[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x1c2e4b7]");
        }
    }
    std::process::exit(if kind == "oom" { 137 } else { 2 })
}
