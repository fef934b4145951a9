//! A real PostgreSQL server for the store tests: `initdb` + `pg_ctl` as the unprivileged test
//! user (PostgreSQL refuses to run as root) in a temporary data directory, listening on a free
//! loopback port, stopped when dropped. The superuser `postgres` has a password (scram over
//! TCP), so tests see whether a password could leak into output.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::sshd::{TEST_USER, ensure_test_user, free_port};

pub(crate) const PASSWORD: &str = "pg-canary-Pw-7c1e";

fn bin(name: &str) -> PathBuf {
    // Debian installs the server programs off PATH, under /usr/lib/postgresql/VERSION/bin.
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut dirs: Vec<PathBuf> = rd.flatten().map(|e| e.path().join("bin")).collect();
        dirs.sort();
        if let Some(p) = dirs.iter().rev().map(|d| d.join(name)).find(|p| p.exists()) {
            return p;
        }
    }
    PathBuf::from(name)
}

fn test_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, TEST_USER])
            .output()
            .expect("id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    (id("-u"), id("-g"))
}

pub(crate) struct Pg {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) port: u16,
    /// Extra server options (`-c k=v …`) from [`Pg::start_with`].
    options: String,
}

impl Pg {
    pub(crate) fn start() -> Pg {
        Pg::start_with(|_| String::new())
    }

    /// [`Pg::start`], after `setup` wrote what it needs into the server's directory (files
    /// there are handed to the server's user) and returned extra server options (`-c k=v …`).
    pub(crate) fn start_with(setup: impl FnOnce(&std::path::Path) -> String) -> Pg {
        assert!(
            bin("initdb").exists() || Command::new("initdb").arg("--version").output().is_ok(),
            "missing initdb: install postgresql (as root, scripts/test does it)"
        );
        ensure_test_user();
        let (uid, gid) = test_ids();
        let dir = tempfile::Builder::new()
            .prefix("runbook-pg-")
            .tempdir()
            .expect("tempdir");
        let chown = |p: &std::path::Path| {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown");
        };
        chown(dir.path());
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).expect("pwfile");
        chown(&pwfile);
        let data = dir.path().join("data");
        let as_test = |prog: &str| {
            let mut c = Command::new(bin(prog));
            c.uid(uid)
                .gid(gid)
                .env("HOME", dir.path())
                .env_remove("PGDATA")
                .current_dir(dir.path())
                .stdout(Stdio::null());
            c
        };
        let ok = as_test("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--no-locale",
                "-E",
                "UTF8",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "initdb failed");
        let options = setup(dir.path());
        for e in std::fs::read_dir(dir.path()).expect("readdir").flatten() {
            chown(&e.path());
        }
        let pg = Pg {
            dir,
            port: free_port(),
            options,
        };
        pg.start_server();
        pg
    }

    /// Starts the server on its data directory (again, after [`Pg::stop`]).
    pub(crate) fn start_server(&self) {
        let (uid, gid) = test_ids();
        let ok = Command::new(bin("pg_ctl"))
            .uid(uid)
            .gid(gid)
            .env("HOME", self.dir.path())
            .env_remove("PGDATA")
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off {}",
                self.port,
                self.dir.path().display(),
                self.options
            ))
            .args(["-w", "-t", "60", "start"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "pg_ctl start failed: {}",
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        );
    }

    /// Runs SQL statements as the superuser.
    pub(crate) fn sql(&self, sql: &str) {
        let url = self.url();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(conn);
            client.batch_execute(sql).await.expect("sql");
        });
    }

    /// Every row of every table in the `public` schema, each cast to text (all its columns).
    pub(crate) fn all_rows_as_text(&self) -> Vec<String> {
        let url = self.url();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(conn);
            let tables: Vec<String> = client
                .query(
                    "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'",
                    &[],
                )
                .await
                .expect("tables")
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert!(!tables.is_empty(), "no tables");
            let mut out = Vec::new();
            for t in tables {
                for r in client
                    .query(&format!("SELECT t::text FROM {t} t"), &[])
                    .await
                    .expect("rows")
                {
                    out.push(format!("{t}: {}", r.get::<_, String>(0)));
                }
            }
            out
        })
    }

    /// The superuser's URL with its password.
    pub(crate) fn url(&self) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// Runs `sql` as the superuser with `psql` (over the Unix socket); panics on failure.
    /// Returns the rows, one a line, fields separated by `|`.
    pub(crate) fn query(&self, sql: &str) -> String {
        let (uid, gid) = test_ids();
        let out = Command::new(bin("psql"))
            .uid(uid)
            .gid(gid)
            .env("HOME", self.dir.path())
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
            ])
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-d", "postgres", "-c", sql])
            .current_dir(self.dir.path())
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The URL of login role `role` with password `password`.
    pub(crate) fn url_as(&self, role: &str, password: &str) -> String {
        format!(
            "postgres://{role}:{password}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    fn ctl(&self, action: &str) {
        let (uid, gid) = test_ids();
        let _ = Command::new(bin("pg_ctl"))
            .uid(uid)
            .gid(gid)
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "fast", "-w", action])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    pub(crate) fn stop(&self) {
        self.ctl("stop");
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.stop();
    }
}
