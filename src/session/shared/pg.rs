//! The PostgreSQL store: connecting and the versioned schema.
//!
//! Migrations are numbered and applied in order inside one transaction that holds a
//! transaction-level advisory lock, so two `store init` racing apply each migration once. The
//! applied versions are rows of `runbook_schema` (version, name, applied_at, applied_by).

use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::{Client, NoTls, Notification};

use super::redact;

/// The schema version this binary writes and reads.
pub(crate) const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// (version, name, SQL). Never edit an applied migration: add the next one. (Issue 17: the
/// journal is 1-2 (branch u17); locks, approvals and roles take 3 onwards (branch u17b).)
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "journal",
        "CREATE TABLE runbook_run (
         run_id     text PRIMARY KEY,
         runbook    text NOT NULL,
         created_at timestamptz NOT NULL DEFAULT now(),
         created_by text NOT NULL DEFAULT current_user
     );
     CREATE TABLE runbook_record (
         run_id   text NOT NULL REFERENCES runbook_run(run_id),
         seq      bigint NOT NULL,
         line     text NOT NULL,
         PRIMARY KEY (run_id, seq)
     );",
    ),
    (
        2,
        "journal head and run options",
        "ALTER TABLE runbook_run
             ADD COLUMN file       text NOT NULL DEFAULT '',
             ADD COLUMN options    text,
             ADD COLUMN head_count bigint NOT NULL DEFAULT 0,
             ADD COLUMN head_last  text NOT NULL
                 DEFAULT '0000000000000000000000000000000000000000000000000000000000000000',
             ADD COLUMN sealed     boolean NOT NULL DEFAULT false,
             ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now(),
             ADD COLUMN engine_user    text,
             ADD COLUMN engine_host    text,
             ADD COLUMN engine_pid     integer,
             ADD COLUMN engine_started text;
         CREATE INDEX runbook_run_created ON runbook_run (created_at);",
    ),
    // Cross-machine coordination (docs/store.md): who holds a runbook `lock` (the lock itself
    // is a session advisory lock, see `lock.rs`), gates waiting for an answer, and answers
    // (their author stamped by the server: the authenticated role, never the client's word),
    // each insert announced with NOTIFY.
    (
        3,
        "coordination",
        "CREATE TABLE runbook_lock (
         key         text PRIMARY KEY,
         run_id      text NOT NULL,
         os_user     text NOT NULL,
         role        text NOT NULL DEFAULT session_user,
         host        text NOT NULL,
         pid         integer NOT NULL,
         backend_pid integer NOT NULL DEFAULT pg_backend_pid(),
         started     timestamptz NOT NULL DEFAULT now(),
         kept        boolean NOT NULL DEFAULT false
     );
     CREATE TABLE runbook_gate (
         run_id         text NOT NULL,
         step           text NOT NULL,
         operator       text NOT NULL DEFAULT session_user,
         host           text NOT NULL,
         pid            integer NOT NULL,
         needed         integer NOT NULL,
         other_approver boolean NOT NULL,
         approvers      text[] NOT NULL,
         waiting        boolean NOT NULL DEFAULT true,
         asked_at       timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (run_id, step)
     );
     CREATE TABLE runbook_answer (
         id       bigserial PRIMARY KEY,
         run_id   text NOT NULL,
         step     text NOT NULL,
         decision text NOT NULL CHECK (decision IN ('approved', 'rejected')),
         comment  text,
         host     text NOT NULL,
         role     text NOT NULL DEFAULT session_user,
         groups   text[] NOT NULL DEFAULT '{}',
         at       timestamptz NOT NULL DEFAULT now()
     );
     CREATE FUNCTION runbook_answer_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
         NEW.role := session_user;
         NEW.groups := ARRAY(SELECT r.rolname::text FROM pg_roles r
                             WHERE r.rolname <> session_user
                               AND pg_has_role(session_user, r.oid, 'MEMBER'));
         NEW.at := now();
         PERFORM pg_notify('runbook_answer', NEW.run_id);
         RETURN NEW;
     END $$;
     CREATE TRIGGER runbook_answer_stamp BEFORE INSERT OR UPDATE ON runbook_answer
         FOR EACH ROW EXECUTE FUNCTION runbook_answer_stamp();",
    ),
    // `ask:` answered from any machine (issue 17): the ask waiting (no secret), the answers in
    // transit (deleted by the engine in the statement that reads them), and the verdicts.
    (
        4,
        "asks",
        "CREATE TABLE runbook_ask (
         run_id   text NOT NULL,
         step     text NOT NULL,
         hello    text NOT NULL,
         operator text NOT NULL DEFAULT session_user,
         asked_at timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (run_id, step)
     );
     CREATE TABLE runbook_ask_reply (
         id     bigserial PRIMARY KEY,
         run_id text NOT NULL,
         step   text NOT NULL,
         role   text NOT NULL DEFAULT session_user,
         value  text NOT NULL,
         at     timestamptz NOT NULL DEFAULT now()
     );
     CREATE TABLE runbook_ask_verdict (
         id      bigint PRIMARY KEY,
         ok      boolean NOT NULL,
         message text NOT NULL
     );
     CREATE FUNCTION runbook_ask_reply_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
         NEW.role := session_user;
         NEW.at := now();
         PERFORM pg_notify('runbook_ask', NEW.id::text);
         RETURN NEW;
     END $$;
     CREATE TRIGGER runbook_ask_reply_stamp BEFORE INSERT OR UPDATE ON runbook_ask_reply
         FOR EACH ROW EXECUTE FUNCTION runbook_ask_reply_stamp();
     CREATE FUNCTION runbook_ask_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
         NEW.operator := session_user;
         RETURN NEW;
     END $$;
     CREATE TRIGGER runbook_ask_stamp BEFORE INSERT OR UPDATE ON runbook_ask
         FOR EACH ROW EXECUTE FUNCTION runbook_ask_stamp();
     ALTER TABLE runbook_ask ENABLE ROW LEVEL SECURITY;
     CREATE POLICY runbook_ask_read ON runbook_ask FOR SELECT USING (true);
     CREATE POLICY runbook_ask_add ON runbook_ask FOR INSERT WITH CHECK (true);
     CREATE POLICY runbook_ask_own ON runbook_ask FOR UPDATE USING (operator = session_user);
     CREATE POLICY runbook_ask_end ON runbook_ask FOR DELETE USING (operator = session_user);
     ALTER TABLE runbook_ask_reply ENABLE ROW LEVEL SECURITY;
     CREATE POLICY runbook_ask_reply_give ON runbook_ask_reply FOR INSERT WITH CHECK (true);
     CREATE POLICY runbook_ask_reply_see ON runbook_ask_reply FOR SELECT USING (
         role = session_user OR EXISTS (SELECT 1 FROM runbook_ask a
             WHERE a.run_id = runbook_ask_reply.run_id AND a.step = runbook_ask_reply.step
               AND a.operator = session_user));
     CREATE POLICY runbook_ask_reply_take ON runbook_ask_reply FOR DELETE USING (
         role = session_user OR EXISTS (SELECT 1 FROM runbook_ask a
             WHERE a.run_id = runbook_ask_reply.run_id AND a.step = runbook_ask_reply.step
               AND a.operator = session_user));",
    ),
    // Attack report 13, D11: with the documented team grants any member could UPDATE another
    // engineer's run (its options: an ssh config whose ProxyCommand the owner's `resume`
    // ran) or truncate its journal and reset the head. A run, its records and its gates are
    // now written only by the role that started it (or a role that is a member of it: an
    // administrator hands a run over with `GRANT alice TO bob`); records are append-only for
    // everybody; answers can be given by anyone but taken (deleted) only by the run's engine.
    (
        5,
        "run integrity",
        "CREATE FUNCTION runbook_owns(owner text) RETURNS boolean LANGUAGE sql STABLE AS $$
         SELECT owner = session_user OR EXISTS (SELECT 1 FROM pg_roles r
             WHERE r.rolname = owner AND pg_has_role(session_user, r.oid, 'MEMBER'))
     $$;
     CREATE FUNCTION runbook_owns_run(id text) RETURNS boolean LANGUAGE sql STABLE AS $$
         SELECT EXISTS (SELECT 1 FROM runbook_run r WHERE r.run_id = id AND runbook_owns(r.created_by))
     $$;
     CREATE FUNCTION runbook_run_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
         IF TG_OP = 'INSERT' THEN
             NEW.created_by := session_user;
         ELSE
             NEW.created_by := OLD.created_by;
         END IF;
         RETURN NEW;
     END $$;
     CREATE TRIGGER runbook_run_stamp BEFORE INSERT OR UPDATE ON runbook_run
         FOR EACH ROW EXECUTE FUNCTION runbook_run_stamp();
     ALTER TABLE runbook_run ENABLE ROW LEVEL SECURITY;
     CREATE POLICY runbook_run_read ON runbook_run FOR SELECT USING (true);
     CREATE POLICY runbook_run_add ON runbook_run FOR INSERT WITH CHECK (true);
     CREATE POLICY runbook_run_own ON runbook_run FOR UPDATE
         USING (runbook_owns(created_by)) WITH CHECK (runbook_owns(created_by));
     ALTER TABLE runbook_record ENABLE ROW LEVEL SECURITY;
     CREATE POLICY runbook_record_read ON runbook_record FOR SELECT USING (true);
     CREATE POLICY runbook_record_add ON runbook_record FOR INSERT
         WITH CHECK (runbook_owns_run(run_id));
     ALTER TABLE runbook_gate ENABLE ROW LEVEL SECURITY;
     CREATE POLICY runbook_gate_read ON runbook_gate FOR SELECT USING (true);
     CREATE POLICY runbook_gate_add ON runbook_gate FOR INSERT WITH CHECK (runbook_owns_run(run_id));
     CREATE POLICY runbook_gate_own ON runbook_gate FOR UPDATE
         USING (runbook_owns_run(run_id)) WITH CHECK (runbook_owns_run(run_id));
     CREATE POLICY runbook_gate_end ON runbook_gate FOR DELETE USING (runbook_owns_run(run_id));
     ALTER TABLE runbook_answer ENABLE ROW LEVEL SECURITY;
     CREATE POLICY runbook_answer_read ON runbook_answer FOR SELECT USING (true);
     CREATE POLICY runbook_answer_give ON runbook_answer FOR INSERT WITH CHECK (true);
     CREATE POLICY runbook_answer_take ON runbook_answer FOR DELETE USING (runbook_owns_run(run_id));",
    ),
];

/// Arbitrary key of the advisory lock that serialises `store init`.
const INIT_LOCK: i64 = 0x7275_6e62_6f6f_6b01;

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("cannot connect to the store {url}: {msg}")]
    Connect { url: String, msg: String },
    #[error("store {url}: {msg}")]
    Query { url: String, msg: String },
    #[error(
        "store {url} has schema version {found}, newer than this runbook knows ({SCHEMA_VERSION}): upgrade runbook"
    )]
    TooNew { url: String, found: i32 },
}

/// What `store check` reports.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Status {
    /// The connection string, password masked.
    pub(crate) store: String,
    pub(crate) server_version: String,
    /// The authenticated role (the identity approvals will carry).
    pub(crate) role: String,
    pub(crate) database: String,
    /// The connection's protection as the server reports it, e.g. `TLSv1.3, certificate
    /// and host name verified`, or `none`.
    pub(crate) tls: String,
    /// The highest applied migration, `None` before `store init`.
    pub(crate) schema_version: Option<i32>,
    /// The version this binary expects.
    pub(crate) expected_version: i32,
}

impl Status {
    /// Whether this binary can use the store as it is.
    pub(crate) fn current(&self) -> bool {
        self.schema_version == Some(SCHEMA_VERSION)
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, StoreError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreError::Connect {
            url: String::new(),
            msg: e.to_string(),
        })
}

/// Connects (10 s connect timeout unless the string sets `connect_timeout`), with TLS when
/// `sslmode` asks for it ([`super::tls`]). The connection's driver runs on the current runtime.
pub(crate) async fn connect(conn: &str) -> Result<Client, StoreError> {
    connect_listening(conn).await.map(|(client, _)| client)
}

/// [`connect`], also returning the connection's notifications (LISTEN/NOTIFY); the receiver
/// ends when the connection does (so it also tells a held session lock is gone).
pub(crate) async fn connect_listening(
    conn: &str,
) -> Result<(Client, UnboundedReceiver<Notification>), StoreError> {
    let url = redact(conn);
    let err = |msg: String| StoreError::Connect {
        url: url.clone(),
        msg,
    };
    let super::tls::Prepared {
        mut config, tls, ..
    } = super::tls::prepare(conn).map_err(err)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    // A peer that vanishes without closing (a dead machine) is noticed within a minute.
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(20));
    config.application_name("runbook");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let tls_err = |e: tokio_postgres::Error| {
        let m = describe(&e);
        if m.contains("invalid peer certificate") {
            err(format!(
                "{m} (the server's certificate must be signed by the CA in sslrootcert and, with verify-full, name the host connected to)"
            ))
        } else {
            err(m)
        }
    };
    let client = match tls {
        Some(tls) => {
            let (client, connection) = config.connect(tls).await.map_err(tls_err)?;
            tokio::spawn(drive(connection, tx));
            client
        }
        None => {
            let (client, connection) =
                config.connect(NoTls).await.map_err(|e| err(describe(&e)))?;
            tokio::spawn(drive(connection, tx));
            client
        }
    };
    Ok((client, rx))
}

/// Runs a connection, forwarding its notifications; errors surface on the client's next query.
async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    tx: tokio::sync::mpsc::UnboundedSender<Notification>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                let _ = tx.send(n);
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
}

/// An error's message with its cause (tokio-postgres puts the useful part in the source).
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_string();
    }
    match std::error::Error::source(e) {
        Some(src) => format!("{e}: {src}"),
        None => e.to_string(),
    }
}

pub(super) async fn applied_version(client: &Client, url: &str) -> Result<Option<i32>, StoreError> {
    let q = |e: tokio_postgres::Error| StoreError::Query {
        url: url.to_string(),
        msg: describe(&e),
    };
    let exists: bool = client
        .query_one("SELECT to_regclass('runbook_schema') IS NOT NULL", &[])
        .await
        .map_err(q)?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let v: Option<i32> = client
        .query_one("SELECT max(version) FROM runbook_schema", &[])
        .await
        .map_err(q)?
        .get(0);
    Ok(v)
}

/// `store check`: connectivity, identity and schema version.
pub(crate) fn check(conn: &str) -> Result<Status, StoreError> {
    let url = redact(conn);
    runtime()?.block_on(async {
        let client = connect(conn).await?;
        let q = |e: tokio_postgres::Error| StoreError::Query {
            url: url.clone(),
            msg: describe(&e),
        };
        let row = client
            .query_one(
                "SELECT current_setting('server_version'), current_user::text, current_database()::text",
                &[],
            )
            .await
            .map_err(q)?;
        let schema_version = applied_version(&client, &url).await?;
        let ssl = client
            .query_opt(
                "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl",
                &[],
            )
            .await
            .map_err(q)?
            .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default());
        let mode = super::tls::prepare(conn).map(|p| p.mode).ok();
        let tls = match (ssl, mode) {
            (None, _) => "none".to_string(),
            (Some(v), m) => format!(
                "{v}, {}",
                match m {
                    Some(super::tls::Mode::VerifyFull) => "certificate and host name verified",
                    Some(super::tls::Mode::VerifyCa) => "certificate verified (host name not checked)",
                    _ => "certificate not verified",
                }
            ),
        };
        Ok(Status {
            store: url.clone(),
            server_version: row.get(0),
            role: row.get(1),
            database: row.get(2),
            tls,
            schema_version,
            expected_version: SCHEMA_VERSION,
        })
    })
}

/// `store init`: applies every migration newer than the store's version, in one transaction.
/// Returns (version before, version after).
pub(crate) fn init(conn: &str) -> Result<(Option<i32>, i32), StoreError> {
    let url = redact(conn);
    runtime()?.block_on(async {
        let mut client = connect(conn).await?;
        let q = |e: tokio_postgres::Error| StoreError::Query {
            url: url.clone(),
            msg: describe(&e),
        };
        let tx = client.transaction().await.map_err(q)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INIT_LOCK])
            .await
            .map_err(q)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS runbook_schema (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now(),
                 applied_by text NOT NULL DEFAULT current_user
             )",
        )
        .await
        .map_err(q)?;
        let before: Option<i32> = tx
            .query_one("SELECT max(version) FROM runbook_schema", &[])
            .await
            .map_err(q)?
            .get(0);
        if let Some(found) = before.filter(|v| *v > SCHEMA_VERSION) {
            return Err(StoreError::TooNew { url, found });
        }
        for (version, name, sql) in MIGRATIONS {
            if before.is_some_and(|b| b >= *version) {
                continue;
            }
            tx.batch_execute(sql).await.map_err(q)?;
            tx.execute(
                "INSERT INTO runbook_schema (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await
            .map_err(q)?;
        }
        tx.commit().await.map_err(q)?;
        Ok((before, SCHEMA_VERSION))
    })
}
