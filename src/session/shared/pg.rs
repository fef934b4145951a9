//! The PostgreSQL store: connecting and the versioned schema.
//!
//! Migrations are numbered and applied in order inside one transaction that holds a
//! transaction-level advisory lock, so two `store init` racing apply each migration once. The
//! applied versions are rows of `runbook_schema` (version, name, applied_at, applied_by).

use std::time::Duration;

use tokio_postgres::{Client, NoTls};

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
             ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
         CREATE INDEX runbook_run_created ON runbook_run (created_at);",
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

fn runtime() -> Result<tokio::runtime::Runtime, StoreError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreError::Connect {
            url: String::new(),
            msg: e.to_string(),
        })
}

/// Connects (10 s connect timeout unless the string sets `connect_timeout`). The connection's
/// driver runs on the current runtime.
pub(super) async fn connect(conn: &str) -> Result<Client, StoreError> {
    let url = redact(conn);
    let mut config: tokio_postgres::Config =
        conn.parse()
            .map_err(|e: tokio_postgres::Error| StoreError::Connect {
                url: url.clone(),
                msg: format!("invalid connection string: {e}"),
            })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config.application_name("runbook");
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| StoreError::Connect {
            url: url.clone(),
            msg: describe(&e),
        })?;
    tokio::spawn(async move {
        // Errors surface on the client's next query.
        let _ = connection.await;
    });
    Ok(client)
}

/// An error's message with its cause (tokio-postgres puts the useful part in the source).
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
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
        Ok(Status {
            store: url.clone(),
            server_version: row.get(0),
            role: row.get(1),
            database: row.get(2),
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
