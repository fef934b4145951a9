//! Stage 4, **execute**: run a validated runbook against resolved inputs.
//!
//! The [`engine`] schedules steps over the graph (as soon as their `needs` are done, bounded by
//! `--parallel`), asks gates, runs each step through a runner (local shell, SSH, HTTP), checks
//! expectations, retries, records results for later templates, and on failure, a declined
//! gate or Ctrl-C stops starting steps, stops running ones and unwinds the registered
//! rollbacks in reverse order of completion. Everything it does is an [`event::Event`], passed
//! through the [`redact::Redactor`] to observers; it prints nothing itself.

pub mod capture;
pub mod context;
pub mod engine;
pub mod event;
pub mod readable;
pub mod redact;
pub mod runner;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use event::{Decision, Stamped};

pub use engine::execute;

/// Answers given before the run (flags and answers file), consulted before any prompt.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    /// `--yes`: approve every gate (not manual steps: those need a person's word).
    pub yes: bool,
    /// `--approve ID`: approve the gate or manual step of these steps.
    pub approve: HashSet<String>,
    /// `--answers FILE`: step id → decision.
    pub file: HashMap<String, Decision>,
}

/// What a gate or manual step asks.
#[derive(Debug, Clone)]
pub struct GateRequest {
    pub step: String,
    pub message: String,
    pub targets: Vec<String>,
    /// The rendered command/request (secrets masked).
    pub preview: String,
    pub manual: bool,
}

/// Asks a person (on a terminal). Blocking; the engine calls it off the async threads.
pub trait Prompter: Send + Sync {
    /// A gate or manual step: yes/done, no, abort.
    fn ask(&self, req: &GateRequest) -> Decision;
    /// Like [`Prompter::ask`], but gives up (`None`) soon after `stop` is set: an answer came
    /// from elsewhere. The default cannot be interrupted.
    fn ask_until(
        &self,
        req: &GateRequest,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Option<Decision> {
        let _ = stop;
        Some(self.ask(req))
    }
    /// Before unwinding: run these rollbacks now? `None`: withdrawn (`stop` was set: a signal
    /// arrived while asking).
    fn confirm_rollback(
        &self,
        steps: &[String],
        reason: &str,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Option<bool>;
}

/// Receives every event (already redacted).
pub trait Observer: Send {
    /// An `Err` from an observer that [`Observer::required`] stops the run (exit 5).
    fn on_event(&mut self, e: &Stamped) -> Result<(), String>;
    /// Whether the run must stop if this observer fails (the journal is; the console is not).
    fn required(&self) -> bool {
        false
    }
}

/// How the engine was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub run_id: String,
    /// Per-step logs go under `run_dir/steps/`.
    pub run_dir: PathBuf,
    pub file: String,
    /// Most steps running at once.
    pub parallel: usize,
    pub answers: Answers,
    /// Skip rollback entirely (experts only; printed loudly).
    pub no_rollback: bool,
    /// Ask the prompter before unwinding (on a terminal without `--yes`).
    pub confirm_rollback: bool,
    pub user: String,
    pub host: String,
    /// SHA-256 of the runbook file (journaled; `resume` checks it).
    pub file_sha256: String,
    /// The rendered lock key, if the runbook has one.
    pub lock: Option<String>,
    /// Remote approvals: where answers arrive, and whether to wait for them.
    pub remote: Option<RemoteGates>,
}

/// How gates are answered from elsewhere (`runbook approve`).
#[derive(Debug, Clone)]
pub struct RemoteGates {
    /// The run directory (answers arrive in `answers/`).
    pub run_dir: PathBuf,
    /// Wait for remote answers at a gate (else stop with exit 3 at once: `--no-wait`).
    pub wait: bool,
    /// The command prefix that answers this run, e.g. `runbook approve 2026…-vault-crash-3f9a`.
    pub approve_cmd: String,
}

/// Where steps can run besides locally; filled in by the CLI.
#[derive(Clone, Default)]
pub struct Services {
    pub prompter: Option<Arc<dyn Prompter>>,
    pub remote: Option<Arc<dyn runner::RemoteRunners>>,
    pub http: Option<Arc<dyn runner::HttpClient>>,
}

/// One step's line in the final summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepSummary {
    pub id: String,
    pub status: event::StepStatus,
    pub duration_ms: u64,
    pub hosts: Vec<String>,
    pub error: Option<String>,
}

/// One rollback's line in the final summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RollbackSummary {
    pub step: String,
    pub status: event::StepStatus,
    pub error: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub status: crate::exit::ExitStatus,
    pub reason: String,
    pub steps: Vec<StepSummary>,
    pub rollbacks: Vec<RollbackSummary>,
    pub run_id: String,
}

/// The OS user running this process: the real uid's name, not `$USER` (which anyone can set,
/// and which gate checks such as `other_approver` must not trust).
pub fn current_user() -> String {
    // SAFETY: getuid has no preconditions.
    user_name(unsafe { libc::getuid() })
}

/// The name of user `uid` (from /etc/passwd), or `uid N`.
pub fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.get(2) == Some(&uid.to_string().as_str())).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// This machine's host name.
pub fn current_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into())
}
