//! `runbook` runs recovery runbooks: declarative YAML step graphs with gates, SSH execution,
//! rollback and transcripts.
//!
//! The pipeline is **load → validate → plan → execute → transcript**, and every stage only
//! depends on earlier ones: `load` reads a file into a span-carrying YAML tree; `validate`
//! turns it into a [`Runbook`] or a list of [`Diagnostic`]s (every problem at once, with
//! line:column and a caret; [`check_source`] is that first half as a library call); `plan`
//! resolves inputs and builds the wave-ordered step graph (the dry run *is* this value,
//! rendered: [`build_plan`], or a [`PlanError`]); [`execute`] runs the runbook over the same
//! graph, each step through its kind's module in `step/` (the same render function the plan
//! used), emitting [`Event`]s that [`Observer`]s consume (the console, the JSON stream, and the
//! journal, which `resume` replays) and ending in a [`RunOutcome`] whose failed steps carry a
//! typed [`StepError`]; `session` is what a run needs around the engine for any front end (run
//! ids, where runs live, what a resumed run already knows); `transcript` tells a run from its
//! journal and attaches it to incidents. Only `cli` knows about command-line flags and only it
//! prints.
//!
//! Every module is private; the public API is the `pub use` set at the end of this file:
//! [`main`] (the binary), [`check_source`]/[`Checked`] (load → validate), [`build_plan`] and
//! [`PlanError`], [`execute`] with its [`Options`], [`Services`], [`Prompter`],
//! [`AnswerSource`] and [`RunOutcome`], the [`Event`] contract and [`Observer`], [`StepError`],
//! [`ExitStatus`] and [`RunId`].
//!
//! Module map (leaves first; no module imports a later stage, and none imports `cli`):
//! - `event`: the [`Event`] contract and the [`Observer`] trait (journal, transcript,
//!   console and JSON stream all read it).
//! - `redact`: the one streaming redactor every byte leaving the engine passes through.
//! - `sys`: current user and host, approver rules, files and directories only their owner reads.
//! - `fmt`: durations and SSH destinations as people see them.
//! - `exit`: outcome → process exit code, in one place.
//! - `load`: bytes → YAML tree with spans (duplicate keys refused).
//! - `validate`: tree → [`Runbook`]; structural reading and semantic checks.
//! - `diagnostic`: problems in a runbook and their renderers.
//! - `check`: load → validate as one library call ([`check_source`]), diagnostics rendered.
//! - `model`: the validated runbook types. `schema`: the JSON Schema of the format.
//! - `template`: minijinja, strict undefined, shell quoting, URLs, secrets, placeholders.
//! - `graph`: waves and cycle paths.
//! - `inputs`: resolved inputs (read by plan and execute).
//! - `plan`: the [`Plan`] and its text/json/dot/mermaid renderers.
//! - `runner`: one runner per way of running (`local.rs`, `ssh.rs`), the HTTP client, and
//!   [`StepError`], a step's failure classified by kind (what `step/` returns too).
//! - `step`: one module per step kind (`run`, `http`, `wait`, `manual`) with its render
//!   function (shared by plan and run), success rule (`expect.rs`) and readable results;
//!   `hosts.rs` resolves `on:`, `context.rs` builds what templates see, `render.rs` is the
//!   plan/run renderer seam.
//! - `execute`: `scheduler.rs` (sole owner of run state), `executor.rs` (the `StepExecutor`
//!   seam every step runs through; `lifecycle.rs` is the in-process one: one step's
//!   attempts), `fanout.rs` (hosts and items), `gate.rs` (answers, incl. an
//!   [`AnswerSource`] for remote ones, and manual rollbacks' confirmation), `unwind.rs` (LIFO
//!   rollback), `shared.rs` (the emitter: the only way events, hence journal records, leave a
//!   run).
//! - `journal`: the hash-chained run journal (`writer.rs` the observer, `read.rs` load and
//!   verify, `copy.rs` verified copies), locks, remote answers, liveness, run state; it is
//!   given the files it works on (`RunFiles`).
//! - `session`: [`RunId`], `store.rs` (the `Store` trait, runs directory, finding a run;
//!   `store/layout.rs`: `RunDir`, the only place that knows the run-directory layout;
//!   `store/file.rs`: the file store), `error.rs`
//!   (`SessionError { kind, message }`), `prior.rs`, the PostgreSQL store in `shared/`.
//! - `transcript`: transcripts (`timeline.rs`, `files.rs`), typed `TranscriptError`, and
//!   incident attachment.
//! - `cli`: clap arguments, subcommands, console output, prompts.

mod check;
mod cli;
mod diagnostic;
mod event;
mod execute;
mod exit;
mod fmt;
mod graph;
mod inputs;
mod journal;
mod load;
mod model;
mod plan;
mod redact;
mod runner;
mod schema;
mod session;
mod step;
mod sys;
mod template;
mod term;
mod transcript;
mod validate;

pub use check::{Checked, check_source};
pub use cli::main;
pub use diagnostic::Diagnostic;
pub use event::{Event, Observer, ObserverError, Stamped, StepStatus};
pub use execute::{
    AnswerSource, AskCheck, AskRequest, FeedError, Options, Prompter, RemoteAnswer,
    RollbackSummary, RunOutcome, Services, StepSummary, execute,
};
pub use exit::ExitStatus;
pub use model::Runbook;
pub use plan::{Plan, PlanError, build as build_plan};
pub use runner::{StepError, StepErrorKind};
pub use session::RunId;
