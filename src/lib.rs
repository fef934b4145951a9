//! `runbook` runs recovery runbooks: declarative YAML step graphs with gates, SSH execution,
//! rollback and transcripts.
//!
//! The pipeline is **load → validate → plan → execute → transcript**, and every stage only
//! depends on earlier ones: [`load`] reads a file into a span-carrying YAML tree; [`validate`]
//! turns it into a [`model::Runbook`] or a list of [`diagnostic::Diagnostic`]s (every problem at
//! once, with line:column and a caret); [`plan`] resolves inputs and builds the wave-ordered step
//! graph (the dry run *is* this value, rendered); [`execute`] runs the runbook over the same
//! graph, emitting events that observers consume (the console, the JSON stream, and the
//! [`journal`], which `resume` replays); [`transcript`] tells a run from its journal and attaches
//! it to incidents. Only [`cli`] knows about command-line flags and only it prints.
//!
//! Module map:
//! - [`load`]: bytes → [`load::Node`] tree (YAML via `saphyr-parser`, spans, duplicate keys).
//! - [`validate`]: tree → [`model::Runbook`]; structural reading and semantic checks.
//! - [`model`]: the validated runbook types.
//! - [`template`]: minijinja, strict undefined, shell quoting, secrets, placeholders.
//! - [`graph`]: waves and cycle paths.
//! - [`plan`]: inputs resolution, the [`plan::Plan`], and its text/json/dot/mermaid renderers.
//! - [`execute`]: the engine (scheduler, gates, rollback, `finally`), events, the redactor,
//!   readable results (`readable.rs`: HTTP summaries, `until` part by part), and one runner
//!   per way of running (`runner/local.rs`, `runner/ssh.rs`, `runner/http.rs`).
//! - [`journal`]: the hash-chained run journal, locks, remote answers, engine liveness
//!   (`live.rs`) and where a run stands (`state.rs`: running, waiting at GATE, paused, …).
//! - [`transcript`]: transcripts (minijinja templates in `templates/`) and incident attachment.
//! - [`diagnostic`]: problems in a runbook and their renderers.
//! - [`schema`]: the JSON Schema of the format.
//! - [`exit`]: outcome → process exit code, in one place.
//! - [`cli`]: clap arguments, subcommands, output; the run store (`store.rs`: per-user runs
//!   dir, ids by prefix and `last`), `runs`/`show`/`logs` (`inspect.rs`), options a run
//!   remembers for `resume` (`remember.rs`).

pub mod cli;
pub mod diagnostic;
pub mod execute;
pub mod exit;
pub mod graph;
pub mod journal;
pub mod load;
pub mod model;
pub mod plan;
pub mod schema;
pub mod store;
pub mod template;
pub mod transcript;
pub mod validate;
