//! Run ids: sortable by time, readable, unguessable (`20261126-090102-vault-crash-3f9a…`).

use std::fmt;

/// A run's id: its directory's name in the runs directory, and how people name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(String);

impl RunId {
    /// A new id for a run of `runbook`.
    pub fn new(runbook: &str) -> RunId {
        RunId(new_run_id(runbook))
    }

    /// An existing id (from a run directory's name or the journal).
    pub fn from_existing(id: impl Into<String>) -> RunId {
        RunId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A new run id: sortable by time, readable, unique enough (`20261126-090102-vault-crash-3f9a`).
fn new_run_id(runbook: &str) -> String {
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    let name: String = runbook
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!(
        "{}-{name}-{:016x}",
        now.strftime("%Y%m%d-%H%M%S"),
        crate::sys::random_u64()
    )
}
