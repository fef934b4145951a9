//! `runbook store init|check`: the shared PostgreSQL store's schema (docs/store.md).

use super::{StoreAction, StoreArgs, error_line};
use crate::exit::ExitStatus;
use crate::session::shared::{self as store, pg};

pub(super) fn cmd_store(a: &StoreArgs) -> ExitStatus {
    let Some(conn) = a.store.as_deref().filter(|s| !s.trim().is_empty()) else {
        error_line("no store given: pass --store postgres://… or set RUNBOOK_STORE");
        return ExitStatus::Invalid;
    };
    match &a.action {
        StoreAction::Init => match pg::init(conn) {
            Ok((before, after)) => {
                let url = store::redact(conn);
                match before {
                    Some(b) if b == after => {
                        println!("store {url}: schema version {after}, already current")
                    }
                    Some(b) => println!("store {url}: schema migrated from version {b} to {after}"),
                    None => println!("store {url}: schema created at version {after}"),
                }
                ExitStatus::Success
            }
            Err(e) => {
                error_line(e);
                ExitStatus::EngineFailed
            }
        },
        StoreAction::Check { json } => match pg::check(conn) {
            Ok(s) => {
                if *json {
                    match serde_json::to_string_pretty(&s) {
                        Ok(t) => println!("{t}"),
                        Err(e) => {
                            error_line(e);
                            return ExitStatus::EngineFailed;
                        }
                    }
                } else {
                    println!("store:    {}", s.store);
                    println!("server:   PostgreSQL {}", s.server_version);
                    println!("role:     {}", s.role);
                    println!("database: {}", s.database);
                    println!("tls:      {}", s.tls);
                    match s.schema_version {
                        Some(v) if s.current() => println!("schema:   version {v} (current)"),
                        Some(v) => println!(
                            "schema:   version {v}, this runbook expects {}: run `runbook store init`",
                            s.expected_version
                        ),
                        None => println!("schema:   none: run `runbook store init`"),
                    }
                }
                if s.current() {
                    ExitStatus::Success
                } else {
                    ExitStatus::EngineFailed
                }
            }
            Err(e) => {
                error_line(e);
                ExitStatus::EngineFailed
            }
        },
    }
}
