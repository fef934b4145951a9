//! Stage 4, **execute**: run a validated runbook against resolved inputs.
//!
//! The `scheduler` starts steps over the graph (as soon as their `needs` are done, bounded by
//! `--parallel`) and asks their gates (`gate`); `lifecycle` runs one step: its items and
//! hosts (`fanout`), each body through its kind's module in `crate::step` (local shell,
//! SSH, HTTP, probes), expectations, retries, outputs. On failure, a declined gate or Ctrl-C
//! the scheduler stops starting steps, cancels running ones and `unwind` runs the registered
//! rollbacks in reverse order of completion. Everything it does is an [`event::Event`],
//! passed through the redactor to observers by the emitter in `shared` (the only way records
//! reach the journal); it prints nothing itself and knows nothing of the journal or the CLI:
//! remote answers arrive through an [`AnswerSource`].

mod ask;
mod ask_channels;
mod ask_wait;
mod consume;
mod deadline;
mod executor;
mod fanout;
mod finally;
mod gate;
mod items;
mod lazy_ask;
mod lifecycle;
mod reask;
mod scheduler;
mod shared;
mod stream;
mod unwind;

#[cfg(test)]
mod render_tests;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use crate::event::{self, Decision, StepStatus};

pub(crate) use ask::StoreAnswer;
pub use gate::{AnswerSource, FeedError, RemoteAnswer};
pub use scheduler::execute;
pub(crate) use scheduler::partly_done;

/// What a resumed run already knows (empty for a fresh run).
#[derive(Debug, Clone, Default)]
pub struct Prior {
    /// Steps that finished before: status and result.
    pub done: HashMap<String, (StepStatus, serde_json::Value)>,
    /// Steps whose rollbacks are registered, in completion order.
    pub rollbacks: Vec<String>,
    /// Gates already approved (not asked again).
    pub approved: std::collections::HashSet<String>,
    /// Steps that were in flight: `true` re-runs them, `false` treats them as done.
    pub in_doubt: HashMap<String, bool>,
    /// The run was unwinding when it stopped: finish the rollback, run nothing new.
    pub unwinding: bool,
    /// Rollbacks that already ran.
    pub rolled_back: std::collections::HashSet<String>,
    /// Units of per-item / per-host rollbacks that already ran (or were in doubt and treated
    /// as done), by step: not run again. Keyed by the `unit` of `rollback-item-started`.
    pub rollback_units_done: HashMap<String, HashSet<String>>,
    /// Why the run started unwinding (`true`: declined or aborted, exit 3; `false`: a step
    /// failed, exit 1), when the journal says.
    pub unwind_cause: Option<(bool, String)>,
    /// This is a resumed run (emit `run-resumed`, not `run-started`).
    pub resumed: bool,
    /// `for_each` items not to run again, by step: their results (finished before, or in
    /// doubt and treated as done). Items not listed run.
    /// Keyed by item index and, for one host of a fan-out, the host.
    pub items_done: HashMap<String, HashMap<(usize, Option<String>), serde_json::Value>>,
    /// Answers to asks whose answers a step consumes as they arrive, by ask step, in journal
    /// order (a later answer for the same item replaces an earlier one).
    pub answers: HashMap<String, Vec<PriorAnswer>>,
}

/// One answer to a streamed ask, as the journal has it.
#[derive(Debug, Clone)]
pub struct PriorAnswer {
    /// The consuming step's item it is.
    pub index: usize,
    pub user: String,
    /// The answer (`None`: a secret, never journaled).
    pub value: Option<serde_json::Value>,
}

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

/// What an `ask:` step asks on the terminal.
#[derive(Debug, Clone)]
pub struct AskRequest {
    pub step: String,
    pub prompt: String,
    /// Read without echo.
    pub secret: bool,
    /// Type, pattern, "hidden".
    pub notes: String,
    /// How others answer (`runbook answer …`), or empty.
    pub elsewhere: String,
}

/// Checks an answer typed at the terminal (type, pattern): `Err` says why it is asked again.
pub type AskCheck = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Asks a person (on a terminal). Blocking; the engine calls it off the async threads.
pub trait Prompter: Send + Sync {
    /// An `ask:` step: a value, asked again until `check` accepts it. `None`: an empty line
    /// (not this person: others answer), end of input, or withdrawn (`stop` was set).
    fn ask_value(
        &self,
        req: &AskRequest,
        check: &AskCheck,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Option<String> {
        let _ = (req, check, stop);
        None
    }
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
    /// Where answers arrive (the run's `answers/` directory).
    pub answers: Arc<dyn AnswerSource>,
    /// Wait for remote answers at a gate (else stop with exit 3 at once: `--no-wait`).
    pub wait: bool,
    /// The command prefix that answers this run, e.g. `runbook approve 2026…-vault-crash-3f9a`.
    pub approve_cmd: String,
}

/// Where steps can run besides locally; filled in by the CLI.
#[derive(Clone, Default)]
pub struct Services {
    /// Runs commands here; `None`: the real local runner (tests give a fake one).
    pub local: Option<Arc<dyn crate::runner::CommandRunner>>,
    pub prompter: Option<Arc<dyn Prompter>>,
    pub remote: Option<Arc<dyn crate::runner::RemoteRunners>>,
    pub http: Option<Arc<dyn crate::runner::HttpClient>>,
}

/// One step's line in the final summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepSummary {
    pub id: String,
    pub status: event::StepStatus,
    pub duration_ms: u64,
    pub hosts: Vec<String>,
    pub error: Option<String>,
    /// What kind of failure `error` is (a template, a host down, an expectation…).
    pub error_kind: Option<crate::runner::StepErrorKind>,
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
    /// The run stopped where `resume` can continue it (a gate nobody answered, a journal
    /// that could not be written).
    pub resumable: bool,
    pub steps: Vec<StepSummary>,
    pub rollbacks: Vec<RollbackSummary>,
    pub run_id: String,
}
