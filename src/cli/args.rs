//! What the operator typed: clap definitions for every subcommand. Nothing here acts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::EXIT_CODES_HELP;
use crate::plan::render::Format as PlanFormat;

const EXAMPLES: &str = "\
Examples:
  runbook validate runbooks/*.yaml
  runbook plan runbooks/vault-crash.yaml -i node=vault-2
  runbook exec runbooks/vault-crash.yaml -i node=vault-2
  runbook list runbooks/";

/// Recovery-runbook automation: validate, plan and execute YAML runbooks with gates,
/// SSH, rollback and transcripts.
#[derive(Debug, Parser)]
#[command(name = "runbook", version, about, after_help = format!("{EXAMPLES}\n\n{EXIT_CODES_HELP}"), propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// When to use colour: auto (a terminal, and NO_COLOR unset), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check runbooks and report every problem at once, with line:column and a caret.
    #[command(after_help = "\
Examples:
  runbook validate runbooks/vault-crash.yaml
  runbook validate --strict --format json runbooks/*.yaml

Exit codes:
  0  every file is valid (warnings allowed unless --strict)
  2  at least one file has errors")]
    Validate(ValidateArgs),
    /// Show exactly what a run would do (the dry run); touches nothing.
    #[command(after_help = "\
Examples:
  runbook plan runbooks/vault-crash.yaml -i node=vault-2
  runbook plan runbooks/vault-crash.yaml -i node=vault-2 --format mermaid
  runbook plan runbooks/vault-crash.yaml --inputs-file incident.yaml --format json

Exit codes:
  0  plan printed
  2  invalid runbook, inputs or usage")]
    Plan(PlanArgs),
    /// Run a runbook: live progress, gates, rollback on failure or abort.
    #[command(after_help = "\
Examples:
  runbook exec runbooks/vault-crash.yaml -i node=vault-2
  runbook exec runbooks/vault-crash.yaml -i node=vault-2 --approve halt-traffic.disable --approve restart
  runbook exec examples/local.yaml --yes --progress plain --output json > events.ndjson

Gates: on a terminal you are asked (a letter, then Enter: yes / no / show details / abort),
and `runbook approve RUN GATE` from another terminal answers the same prompt (whichever comes
first). Without a terminal a gate takes an answer given in advance (--yes, --approve ID,
--answers FILE); without one it prints the `runbook approve …` command and waits for it up to
the gate's timeout, or with --no-wait stops there at once (exit 3; `runbook resume RUN` goes on
from that gate). Manual steps need --approve ID or an answers file entry (`--yes` does not
confirm work done by hand). `finally` steps run after the unwinding, whatever happened.

Exit codes:
  0  success
  1  a step failed; rollback done
  2  invalid runbook or usage
  3  declined or aborted by the operator (or stopped at an unanswered gate)
  4  rollback incomplete: needs a human
  5  the engine itself failed (journal, internal error)
  6  busy: another run holds the runbook's lock (nothing was done)")]
    Exec(ExecArgs),
    /// Continue a run that crashed, was killed, or stopped at a gate, from its journal.
    #[command(after_help = "\
Examples:
  runbook resume 20261126-090102-vault-crash-3f9a
  runbook resume 20261126-090102-vault-crash-3f9a --skip-in-doubt --approve restart

Finished steps are not run again (their outputs are restored). A step that was in flight when
the engine stopped is re-run if it is `idempotent`; otherwise you are asked, or decide with
--rerun-in-doubt / --skip-in-doubt. Secrets are read again (environment, file or prompt).")]
    Resume(ResumeArgs),
    /// Approve a gate of a run waiting in another terminal or on another machine.
    #[command(after_help = "\
Examples:
  runbook approve 20261126-090102-vault-crash-3f9a restart --comment \"checked the disk\"

Your OS user is the approver (the owner of the answer file, not a claim in it).")]
    Approve(AnswerArgs),
    /// Reject a gate of a waiting run (it stops and rolls back).
    #[command(after_help = "\
Examples:
  runbook reject 20261126-090102-vault-crash-3f9a restart --comment \"not during peak hours\"")]
    Reject(AnswerArgs),
    /// Answer an `ask:` step of a waiting run, as your own OS user (a secret is typed at a
    /// hidden prompt or piped with --stdin, never given on the command line).
    #[command(after_help = "\
Examples:
  runbook answer 20261126-090102-vault-sealed-3f9a unseal.shares      # hidden prompt
  pass show vault/share-2 | runbook answer last unseal.shares --stdin
  runbook answer last new-node-count 3

With `from: N` each of the N answers must come from a different OS user.")]
    Answer(super::answer::AskAnswerArgs),
    /// Show one run: its state (running, waiting at a gate for whom since when, interrupted,
    /// finished), each step, and the next command to type.
    #[command(after_help = "\
Examples:
  runbook show last
  runbook show 20261126-0901        # a unique prefix of the run id is enough
  runbook show last --json")]
    Show(ShowArgs),
    /// Print a run's step logs (all steps, or one), and with --follow keep printing.
    #[command(after_help = "\
Examples:
  runbook logs last
  runbook logs last restart --follow")]
    Logs(LogsArgs),
    /// Finish the unwinding of a run that ended needing a human (exit 4): run the rollbacks
    /// that did not run, newest first, asking as usual.
    #[command(after_help = "\
Examples:
  runbook rollback last
  runbook rollback 20261126-090102-vault-crash-3f9a --yes")]
    Rollback(RollbackArgs),
    /// List recorded runs with their status.
    #[command(after_help = "\
Examples:
  runbook runs
  runbook runs --state waiting --since 1d
  runbook runs --runs-dir /var/lib/runbook/runs

Runs are listed oldest first (the newest is last, and is `last`). STATE is `running` (a live
engine), `waiting` (a live engine waits at GATE: `runbook approve`), `paused` (stopped at a gate
nobody answered: `runbook resume`), `interrupted` (the engine was killed: `runbook resume`), or
the final status with its exit code.")]
    Runs(RunsArgs),
    /// Render a run's transcript (markdown or json), or verify its journal.
    #[command(after_help = "\
Examples:
  runbook transcript 20261126-090102-vault-crash-3f9a
  runbook transcript 20261126-090102-vault-crash-3f9a --format json
  runbook transcript 20261126-090102-vault-crash-3f9a --template my-incident.md.j2
  runbook transcript 20261126-090102-vault-crash-3f9a --verify

Exit codes:
  0  rendered / the journal's hash chain is intact
  1  the hash chain is broken (a record was edited, removed or reordered)
  2  no such run or usage error")]
    Transcript(TranscriptArgs),
    /// Attach a run's transcript to an incident: pagerduty:ID, jira:KEY or webhook:URL.
    #[command(after_help = "\
Examples:
  PAGERDUTY_TOKEN=… PAGERDUTY_FROM=oncall@example.com runbook attach RUN --to pagerduty:PT4KHLK
  JIRA_BASE_URL=https://jira.example.com JIRA_USER=me JIRA_TOKEN=… runbook attach RUN --to jira:OPS-123
  runbook attach RUN --to webhook:https://hooks.example.com/runbook")]
    Attach(AttachArgs),
    /// Break a stale run lock (its process is gone).
    #[command(after_help = "\
Examples:
  runbook unlock vault-vault-2
  runbook unlock vault-vault-2 --force   # only if you are sure no run holds it")]
    Unlock(UnlockArgs),
    /// Write a run in the file format (journal, head, options) to DIR/<run id>.
    #[command(after_help = "\
Examples:
  runbook export RUN ./evidence --store postgres://alice@db.example/runbook
  runbook transcript --verify --runs-dir ./evidence RUN

The hash chain is verified first; the copy verifies with `transcript --verify` like the
original. Works from either store (docs/store.md).")]
    Export(ExportArgs),
    /// Add a run exported in the file format (a directory holding journal.jsonl) to the store.
    #[command(after_help = "\
Examples:
  runbook import ./evidence/vault-crash-1a2b3c4d5e6f7a8b --store postgres://alice@db.example/runbook

The hash chain is verified first; a run already in the store is refused.")]
    Import(ImportArgs),
    /// The shared PostgreSQL store (team mode): create or migrate its schema, check it.
    #[command(after_help = "\
Examples:
  RUNBOOK_STORE=postgres://alice@db.example/runbook runbook store init
  runbook store check --store postgres://alice@db.example/runbook

The connection string is a libpq URL or key=value string; its password is never printed
(prefer a ~/.pgpass-style secret outside the string, or PGPASSWORD-free roles with peer or
certificate authentication). With `--store`/`RUNBOOK_STORE` on exec, resume, runs, show,
transcript, approve, reject, unlock, attach, export and import, runs are kept in it
(docs/store.md).

Exit codes:
  0  reachable, schema current (init: migrations applied)
  2  invalid usage
  5  unreachable, schema missing or of another version (check), or a migration failed")]
    Store(StoreArgs),
    /// List the runbooks in a folder with their descriptions.
    #[command(after_help = "\
Examples:
  runbook list
  runbook list runbooks/")]
    List(ListArgs),
    /// Print the JSON Schema of the runbook format (for yaml-language-server and editors).
    #[command(after_help = "\
Examples:
  runbook schema > runbook.schema.json
  # then, first line of a runbook:
  # yaml-language-server: $schema=./runbook.schema.json")]
    Schema,
    /// Words for shell completion: `runs` (run ids), `gates RUN`, `steps RUN` (hidden; the
    /// bash completion script calls it).
    #[command(name = "__complete", hide = true)]
    Complete {
        /// runs, gates or steps
        what: String,
        /// The run, for gates and steps.
        run: Option<String>,
    },
    /// Print shell completions (bash also completes run ids, gates and steps).
    #[command(after_help = "\
Examples:
  runbook completions bash > /etc/bash_completion.d/runbook
  runbook completions zsh > \"${fpath[1]}/_runbook\"
  runbook completions fish > ~/.config/fish/completions/runbook.fish")]
    Completions {
        /// The shell to generate completions for.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// Runbook files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Treat warnings as errors.
    #[arg(long)]
    pub strict: bool,
    /// Output format: human (rustc-style) or json (for editors and CI).
    #[arg(long, value_enum, default_value_t = DiagFormat::Human)]
    pub format: DiagFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DiagFormat {
    Human,
    Json,
}

/// Inputs of a run, shared by `plan` and `exec`.
#[derive(Debug, Args, Clone)]
pub(crate) struct InputArgs {
    /// An input value, KEY=VALUE (repeatable). Secrets are refused here.
    #[arg(short = 'i', long = "input", value_name = "KEY=VALUE")]
    pub inputs: Vec<String>,
    /// A YAML or JSON file mapping input names to values.
    #[arg(long, value_name = "FILE")]
    pub inputs_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    /// The runbook.
    pub file: PathBuf,
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
}

#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// The runbook.
    pub file: PathBuf,
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Where runs are recorded [default: $RUNBOOK_RUNS_DIR, else
    /// $XDG_STATE_HOME/runbook/runs, i.e. ~/.local/state/runbook/runs].
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
    /// Keep runs in a shared PostgreSQL store (team mode): postgres://user@host:port/db or
    /// key=value. The password is never printed. See docs/store.md.
    #[arg(
        long = "store",
        env = "RUNBOOK_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store: Option<String>,
    #[command(flatten)]
    pub run: RunOpts,
    /// Run without a journal (benchmarks only: no resume, no remote approval, no transcript).
    #[arg(long, hide = true)]
    pub no_journal: bool,
}

/// How a run is carried out: shared by `exec` and `resume`.
#[derive(Debug, Args, Clone)]
pub(crate) struct RunOpts {
    /// Approve every gate (not manual steps).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Approve the gate or manual step of step ID (repeatable).
    #[arg(long, value_name = "ID")]
    pub approve: Vec<String>,
    /// A YAML file answering gates by step id: `restart: yes`, `fix-oom: done`, `x: abort`.
    #[arg(long, value_name = "FILE")]
    pub answers: Option<PathBuf>,
    /// Most steps running at once [default: 4; on resume, what the run used].
    #[arg(long, value_parser = clap::value_parser!(usize))]
    pub parallel: Option<usize>,
    /// Do NOT roll back on failure (experts only).
    #[arg(long)]
    pub no_rollback: bool,
    /// Progress display: auto (live on a terminal), tty, plain (one line per event).
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Also write every event as a JSON line on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub ssh: SshArgs,
    /// At a gate nobody answered, stop at once (exit 3) instead of waiting for `runbook approve`.
    #[arg(long)]
    pub no_wait: bool,
    /// When the run ends (whatever the outcome), attach its transcript: pagerduty:INCIDENT,
    /// jira:ISSUE-KEY or webhook:URL (repeatable).
    #[arg(long, value_name = "TARGET")]
    pub attach: Vec<String>,
}

/// SSH settings (host keys are always checked strictly; there is no flag to turn that off).
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct SshArgs {
    /// An ssh_config file to use instead of ~/.ssh/config.
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// A known_hosts file to check host keys against (instead of ~/.ssh/known_hosts).
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// How long to wait for a host to answer (TCP connect and SSH banner), e.g. 5s
    /// [default: 10s; on resume, what the run used].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ssh_connect_timeout: Option<std::time::Duration>,
}

impl SshArgs {
    /// The connect timeout, 10 s unless given.
    pub(crate) fn connect_timeout(&self) -> std::time::Duration {
        self.ssh_connect_timeout
            .unwrap_or(std::time::Duration::from_secs(10))
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    s.parse::<jiff::SignedDuration>()
        .ok()
        .filter(|d| !d.is_negative() && !d.is_zero())
        .map(|d| d.unsigned_abs())
        .ok_or_else(|| format!("`{s}` is not a duration (write 5s, 500ms, 1m)"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProgressMode {
    Auto,
    Tty,
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    Human,
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct RunsDirArg {
    /// Where runs are recorded [default: $RUNBOOK_RUNS_DIR, else
    /// $XDG_STATE_HOME/runbook/runs, i.e. ~/.local/state/runbook/runs].
    #[arg(long, value_name = "DIR", global = false)]
    pub runs_dir: Option<PathBuf>,
    /// Keep runs in a shared PostgreSQL store (team mode): postgres://user@host:port/db or
    /// key=value. The password is never printed. See docs/store.md.
    #[arg(
        long = "store",
        env = "RUNBOOK_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ResumeArgs {
    /// The run: its id, a unique prefix of it, or `last` (the most recently started run).
    #[arg(value_name = "RUN")]
    pub run_id: String,
    #[command(flatten)]
    pub dir: RunsDirArg,
    /// Re-run steps that were in flight (and are not `idempotent`).
    #[arg(long, conflicts_with = "skip_in_doubt")]
    pub rerun_in_doubt: bool,
    /// Treat steps that were in flight as done.
    #[arg(long)]
    pub skip_in_doubt: bool,
    /// Continue although `journal.head` is missing, damaged, or empty behind recorded work:
    /// then a removed tail of the journal cannot be ruled out (steps or rollbacks that
    /// already ran may run again).
    #[arg(long)]
    pub ignore_damaged_head: bool,
    #[command(flatten)]
    pub run: RunOpts,
}

#[derive(Debug, Args)]
pub(crate) struct AnswerArgs {
    /// The run: its id, a unique prefix of it, or `last` (the most recently started run).
    #[arg(value_name = "RUN")]
    pub run_id: String,
    /// The step whose gate (or manual step) to answer.
    pub gate: String,
    /// Why: journaled with the answer and shown in the transcript.
    #[arg(long)]
    pub comment: Option<String>,
    #[command(flatten)]
    pub dir: RunsDirArg,
}

#[derive(Debug, Args)]
pub(crate) struct RunsArgs {
    #[command(flatten)]
    pub dir: RunsDirArg,
    /// Only runs in this state: running, waiting, paused, interrupted, success (or
    /// succeeded), step-failed (or failed), aborted, rollback-incomplete, engine-failed
    /// (repeatable).
    #[arg(long, value_name = "STATE")]
    pub state: Vec<String>,
    /// Only runs started within this long (e.g. 2h, 1d) or since this time (RFC 3339).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The run: its id, a unique prefix of it, or `last` (the most recently started run).
    #[arg(value_name = "RUN")]
    pub run_id: String,
    /// Print the run's state as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dir: RunsDirArg,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// The run: its id, a unique prefix of it, or `last` (the most recently started run).
    #[arg(value_name = "RUN")]
    pub run_id: String,
    /// Only this step's log (default: every step, in the order they started).
    pub step: Option<String>,
    /// Keep printing new lines until the run ends.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Write the recorded bytes unchanged (by default control characters such as ESC are
    /// shown as `\e`, `\x07`, so a step's output cannot drive the terminal).
    #[arg(long)]
    pub raw: bool,
    #[command(flatten)]
    pub dir: RunsDirArg,
}

#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// The run: its id, a unique prefix of it, or `last` (the most recently started run).
    #[arg(value_name = "RUN")]
    pub run_id: String,
    /// Continue although `journal.head` is missing, damaged, or empty behind recorded work:
    /// then a removed tail of the journal cannot be ruled out (steps or rollbacks that
    /// already ran may run again).
    #[arg(long)]
    pub ignore_damaged_head: bool,
    #[command(flatten)]
    pub dir: RunsDirArg,
    #[command(flatten)]
    pub run: RunOpts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TranscriptFormat {
    Md,
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct TranscriptArgs {
    /// The run: its id, a unique prefix of it, or `last` (the most recently started run).
    #[arg(value_name = "RUN")]
    pub run_id: String,
    /// md: the Markdown transcript; json: the transcript's data (for your own tools).
    #[arg(long, value_enum, default_value_t = TranscriptFormat::Md)]
    pub format: TranscriptFormat,
    /// A minijinja template to render instead of the built-in Markdown one.
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// Only verify the journal's hash chain.
    #[arg(long)]
    pub verify: bool,
    #[command(flatten)]
    pub dir: RunsDirArg,
}

#[derive(Debug, Args)]
pub(crate) struct AttachArgs {
    /// The run: its id, a unique prefix of it, or `last` (the most recently started run).
    #[arg(value_name = "RUN")]
    pub run_id: String,
    /// pagerduty:INCIDENT_ID, jira:ISSUE-KEY or webhook:URL
    #[arg(long, value_name = "TARGET", required = true)]
    pub to: Vec<String>,
    #[command(flatten)]
    pub dir: RunsDirArg,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The run: its id, a unique prefix of it, or `last`.
    #[arg(value_name = "RUN")]
    pub run_id: String,
    /// Where to write it (the run goes to DIR/<run id>; DIR is created).
    #[arg(value_name = "DIR")]
    pub dest: PathBuf,
    #[command(flatten)]
    pub dir: RunsDirArg,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The exported run's directory (it holds journal.jsonl; its name is the run id).
    #[arg(value_name = "RUN_DIR")]
    pub path: PathBuf,
    #[command(flatten)]
    pub dir: RunsDirArg,
}

#[derive(Debug, Args)]
pub(crate) struct UnlockArgs {
    /// The lock key (as shown in the refusal).
    pub key: String,
    /// Break it even if its process looks alive.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub dir: RunsDirArg,
}

#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    #[command(subcommand)]
    pub(crate) action: StoreAction,
    /// The store's connection string (postgres://user@host:port/db or key=value).
    #[arg(
        long = "store",
        env = "RUNBOOK_STORE",
        global = true,
        hide_env_values = true
    )]
    pub(crate) store: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum StoreAction {
    /// Create the schema, or apply the migrations this version adds (safe to repeat).
    Init,
    /// Report connectivity, the authenticated role and the schema version.
    Check {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Folder to look in.
    #[arg(default_value = "runbooks")]
    pub dir: PathBuf,
}
