//! Events the engine emits. Observers (console, JSON stream, journal, transcript) consume them.
//!
//! Names and fields are a contract: the JSON event stream (`--output json`) and the journal
//! serialise these as they are. Add fields freely; never rename or change the meaning of one.

use serde::{Deserialize, Serialize};

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a step (or one host/item of it) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    Skipped,
    /// Did not run because the run stopped first.
    NotRun,
    /// Started and not finished yet: the scheduler's state for a step in flight. Never the
    /// status of a finished event.
    Running,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::TimedOut => "timed-out",
            StepStatus::Cancelled => "cancelled",
            StepStatus::Skipped => "skipped",
            StepStatus::NotRun => "not-run",
            StepStatus::Running => "running",
        }
    }
}

/// An operator's decision at a gate or manual step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Yes / done.
    Approved,
    /// No: do not run this step; the run stops and rolls back.
    Declined,
    /// Stop everything now and roll back.
    Aborted,
}

/// An answer to an `ask:` that a step consumes as the answers arrive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Streamed {
    /// The consuming step's item (`item_index`) this answer is.
    pub index: usize,
    /// The answer; never for a secret ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
}

/// How an answer was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnsweredBy {
    Terminal,
    /// `--yes`
    YesFlag,
    /// `--approve ID`
    ApproveFlag,
    AnswersFile,
    /// `runbook approve` / `runbook reject` from another terminal.
    Remote,
    /// A resumed run replaying an earlier answer.
    Journal,
}

/// One event of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    RunStarted {
        run_id: String,
        runbook: String,
        file: String,
        user: String,
        host: String,
        inputs: Vec<(String, String)>,
        steps: usize,
        dry_run: bool,
        /// Non-secret input values, so `resume` can restore them.
        #[serde(default)]
        values: serde_json::Map<String, serde_json::Value>,
        /// SHA-256 of the runbook file: `resume` refuses a file that changed since.
        #[serde(default)]
        file_sha256: String,
        #[serde(default)]
        lock: Option<String>,
    },
    RunResumed {
        user: String,
        host: String,
        /// Steps that were in flight when the engine stopped, and what was decided for each.
        in_doubt: Vec<(String, String)>,
    },
    StepSkipped {
        step: String,
        reason: String,
    },
    GateAsked {
        step: String,
        message: String,
        /// Where the step will run (`user@host:port`, or `local`).
        targets: Vec<String>,
        /// What will run (rendered, secrets masked).
        preview: String,
        manual: bool,
        /// A person confirms a manual rollback was done (`step` is then `ID (rollback)`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        rollback: bool,
    },
    GateWaiting {
        step: String,
        /// Exactly how to answer from elsewhere.
        how_to_answer: String,
    },
    /// Someone answered an `ask:` step (who, never what).
    AskAnswered {
        step: String,
        user: String,
        by: AnsweredBy,
        /// Answers taken so far, and needed in all.
        have: u32,
        need: u32,
        /// For an ask whose answers a step consumes as they arrive (`for_each.answers`):
        /// which item this answer is, and the answer when it is not secret (a resumed run
        /// takes it back from here).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        streamed: Option<Streamed>,
    },
    /// An input nobody gave at the start was asked when a step first needed it (`value`: a
    /// plain input's answer, restored on resume; never a secret's, asked again instead).
    InputGiven {
        input: String,
        step: String,
        secret: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<serde_json::Value>,
    },
    GateAnswered {
        step: String,
        decision: Decision,
        user: String,
        from_host: String,
        by: AnsweredBy,
        comment: Option<String>,
    },
    StepStarted {
        step: String,
        attempt: u32,
        host: Option<String>,
        item: Option<String>,
        command: Option<String>,
        /// Index of the `for_each` item (`resume` decides in-doubt items by it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item_index: Option<usize>,
    },
    /// One item of a `for_each` step, or one host of a fan-out, is about to run (before its
    /// `step-started`).
    ItemStarted {
        step: String,
        item_index: usize,
        /// Set for one host of a fan-out (`on:` several hosts).
        #[serde(default)]
        host: Option<String>,
    },
    /// One item of a `for_each` step, or one host of a fan-out, ended: `resume` does not run
    /// it again.
    ItemFinished {
        step: String,
        item_index: usize,
        #[serde(default)]
        host: Option<String>,
        status: StepStatus,
        /// The item's result (redacted text; tags kept), restored on resume.
        #[serde(default)]
        result: serde_json::Value,
    },
    Output {
        step: String,
        host: Option<String>,
        stream: Stream,
        line: String,
    },
    ProbeAttempt {
        step: String,
        attempt: u32,
        value: String,
        satisfied: bool,
    },
    Retry {
        step: String,
        attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    HostFinished {
        step: String,
        host: String,
        status: StepStatus,
        exit_code: Option<i32>,
        duration_ms: u64,
        error: Option<String>,
    },
    StepFinished {
        step: String,
        status: StepStatus,
        exit_code: Option<i32>,
        duration_ms: u64,
        error: Option<String>,
        outputs: serde_json::Map<String, serde_json::Value>,
        /// The step's result as later templates see it (redacted), for resume.
        #[serde(default)]
        result: serde_json::Value,
    },
    /// The engine asks at its terminal whether to roll back now (`steps`, newest first);
    /// the answer is a `rollback-started` or `rollback-not-run` record.
    RollbackAsked {
        steps: Vec<String>,
        reason: String,
    },
    RollbackStarted {
        step: String,
        reason: String,
    },
    RollbackFinished {
        step: String,
        status: StepStatus,
        duration_ms: u64,
        error: Option<String>,
    },
    /// One unit of a rollback that runs per item (`for_each`), per host (a fan-out) or per
    /// target (`rollback.on:`) is about to run (before its command's `step-started`).
    RollbackItemStarted {
        step: String,
        /// Which unit, unique within the step's rollback (`item 2`, `host h1`,
        /// `host h1 on t2`, `on t2`): `resume` decides by it.
        unit: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item_index: Option<usize>,
        /// The host the unit undoes (a fan-out's host) or runs on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    /// One unit of a rollback ended (its error, if any, is in the step's `rollback-finished`):
    /// `resume` and `runbook rollback` do not run a unit that succeeded again.
    RollbackItemFinished {
        step: String,
        unit: String,
        status: StepStatus,
    },
    RollbackNotRun {
        step: String,
        reason: String,
    },
    /// A `commit: true` step succeeded: the rollbacks of `steps` will never run.
    RollbacksDischarged {
        by: String,
        steps: Vec<String>,
    },
    Warning {
        message: String,
    },
    RunFinished {
        status: crate::exit::ExitStatus,
        exit_code: u8,
        reason: String,
        duration_ms: u64,
        /// The run stopped at a gate nobody answered: `resume` continues it there.
        #[serde(default)]
        resumable: bool,
    },
}

/// An event with the time it happened (RFC 3339, UTC).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stamped {
    pub at: String,
    #[serde(flatten)]
    pub event: Event,
}

/// The result of a step skipped because its `when` was false, as templates and `resume` see
/// it (the `step-skipped` event carries only the reason: this is the one place that builds
/// the rest).
pub(crate) fn skipped_result(reason: &str) -> serde_json::Value {
    serde_json::json!({ "outcome": "skipped", "skipped": true, "reason": reason })
}

/// The current time as RFC 3339 with milliseconds.
pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Millisecond)
        .map_or_else(|_| jiff::Timestamp::now().to_string(), |t| t.to_string())
}

/// Why an observer could not take an event (a journal that cannot be written, a closed
/// stdout): the run stops when the observer is [`Observer::required`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObserverError(pub String);

impl std::fmt::Display for ObserverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for ObserverError {
    fn from(s: String) -> Self {
        ObserverError(s)
    }
}

/// Receives every event (already redacted).
pub trait Observer: Send {
    /// An `Err` from an observer that [`Observer::required`] stops the run (exit 5).
    fn on_event(&mut self, e: &Stamped) -> Result<(), ObserverError>;
    /// Whether the run must stop if this observer fails (the journal is; the console is not).
    fn required(&self) -> bool {
        false
    }
}
