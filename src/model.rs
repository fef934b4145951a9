//! The validated runbook: what `validate` produces and every later stage consumes.
//!
//! Unlike the YAML tree, nothing here is optional that validation could have settled: kinds are
//! resolved, durations parsed, defaults applied. Spans survive where a later stage may still
//! need to point at the user's text (templates, ids, host references).

use std::ops::Range;
use std::time::Duration;

/// A template (or expression) string and where it sits in the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Tmpl {
    pub src: String,
    pub span: Range<usize>,
}

/// A name with the span that introduced it (step ids, host references, needs entries).
#[derive(Debug, Clone, PartialEq)]
pub struct Named {
    pub name: String,
    pub span: Range<usize>,
}

/// A whole runbook, version 1.
#[derive(Debug, Clone)]
pub struct Runbook {
    pub name: String,
    pub version: u32,
    pub description: String,
    pub inputs: Vec<Input>,
    pub hosts: Vec<Host>,
    pub groups: Vec<Group>,
    pub defaults: Defaults,
    pub lock: Option<Tmpl>,
    pub steps: Vec<Step>,
    /// Steps that always run at the end, in order, whatever happened before.
    pub finally: Vec<Step>,
    /// What a caller reads as `steps.<call>.outputs.NAME` (`uses:`): expressions over the
    /// steps' results.
    pub outputs: Vec<(Named, Tmpl)>,
}

impl Runbook {
    pub fn input(&self, name: &str) -> Option<&Input> {
        self.inputs.iter().find(|i| i.name == name)
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Names of the hosts a target (`on:`) refers to: the host itself or a group's members.
    pub fn target_hosts(&self, target: &str) -> Vec<&Host> {
        if let Some(h) = self.host(target) {
            return vec![h];
        }
        self.group(target)
            .map(|g| g.hosts.iter().filter_map(|n| self.host(&n.name)).collect())
            .unwrap_or_default()
    }

    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id.name == id)
    }
}

/// The declared type of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Int,
    Bool,
    List,
}

impl InputType {
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Int => "int",
            InputType::Bool => "bool",
            InputType::List => "list",
        }
    }
}

/// A declared input of the runbook.
#[derive(Debug, Clone)]
pub struct Input {
    pub name: String,
    pub span: Range<usize>,
    pub description: String,
    pub required: bool,
    /// Default value; strings in it are templates over earlier inputs.
    pub default: Option<serde_json::Value>,
    pub default_span: Option<Range<usize>>,
    pub ty: InputType,
    /// Never accepted on the command line; masked everywhere.
    pub secret: bool,
    pub from_env: Option<String>,
    pub from_file: Option<String>,
    pub allowed: Vec<String>,
    pub pattern: Option<regex::Regex>,
    /// Shortest value accepted for a secret (default [`MIN_SECRET_LEN`]).
    pub min_length: Option<usize>,
}

/// Secrets shorter than this are refused unless the input sets `min_length` lower: a short
/// value cannot be masked safely (it would mask that word everywhere, or nothing).
pub(crate) const MIN_SECRET_LEN: usize = 8;

/// An SSH host.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub span: Range<usize>,
    /// Templated (e.g. `"{{ node }}"`).
    pub address: Tmpl,
    pub user: Option<Tmpl>,
    pub port: Option<u16>,
    pub identity_file: Option<String>,
    /// Another declared host used as ProxyJump, or a literal `user@host:port`.
    pub jump: Option<Named>,
    pub known_hosts: Option<String>,
    /// `vars:` — literal values `where:` and `order:` read as `host.vars.NAME`.
    pub vars: serde_json::Map<String, serde_json::Value>,
}

/// A named set of hosts.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub span: Range<usize>,
    pub hosts: Vec<Named>,
}

/// Run-wide defaults applied to every step that does not set its own.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub timeout: Option<Duration>,
    pub retries: u32,
    pub backoff: Duration,
    /// How long a gate waits for an answer when nobody is at a terminal.
    pub gate_timeout: Duration,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            timeout: None,
            retries: 0,
            backoff: Duration::from_secs(1),
            gate_timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// How many host failures a fan-out tolerates before it stops starting hosts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxFailures {
    Count(u32),
    Percent(u32),
}

impl MaxFailures {
    /// The tolerated count for `total` hosts.
    pub fn allowed(self, total: usize) -> usize {
        match self {
            MaxFailures::Count(n) => n as usize,
            MaxFailures::Percent(p) => total * p as usize / 100,
        }
    }
}

/// One step of the graph.
#[derive(Debug, Clone)]
pub struct Step {
    pub id: Named,
    pub title: Option<Tmpl>,
    pub needs: Vec<Named>,
    pub when: Option<Tmpl>,
    /// What the step does, where, with its own timeout and environment.
    pub body: Body,
    pub confirm: Option<Gate>,
    pub retries: u32,
    pub backoff: Duration,
    pub expect: Expect,
    /// Named outputs: expressions over the step's result.
    pub outputs: Vec<(Named, Tmpl)>,
    /// Outputs declared `secret: true`: masked everywhere, passed to commands as secrets.
    pub secret_outputs: Vec<String>,
    pub for_each: Option<ForEach>,
    pub max_parallel: Option<u32>,
    pub max_failures: Option<MaxFailures>,
    pub serial: Option<u32>,
    pub idempotent: bool,
    /// Changes nothing (inspection only): needs neither a gate nor a rollback.
    pub read_only: bool,
    /// `on_failure: continue` (or the old `continue_on_failure: true`).
    pub continue_on_failure: bool,
    /// What a failure of this step does to the run.
    pub on_failure: OnFailure,
    /// A point of no return: once it succeeds, the rollbacks of the steps that completed
    /// before it are discharged (never run).
    pub commit: bool,
    pub rollback: Option<Body>,
    /// `uses:` — this step stands for a called runbook whose steps were inlined before it
    /// (ids `<this id>.<child id>`); it does nothing itself but carry the child's outputs.
    pub uses: Option<String>,
    /// Which members of the `on:` group run, and in which order, decided at run time
    /// (`on: { hosts, from }`, `where:`, `order:`).
    pub targets: Targets,
    /// Total time for the step: all attempts, retries and items (`timeout` is per attempt).
    pub deadline: Option<Duration>,
    /// `retry.when`: retry a failed attempt only when this is true over its result.
    pub retry_when: Option<Tmpl>,
    /// Span of the whole step mapping.
    pub span: Range<usize>,
}

/// `on_failure:` — what a step's failure does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Stop and undo the completed steps in reverse order (the default).
    #[default]
    Unwind,
    /// Stop without undoing anything: the completed rollbacks are left for a human
    /// (`runbook rollback RUN`); exit 4.
    Stop,
    /// The run goes on; dependants still run.
    Continue,
}

/// A confirmation gate before a step.
#[derive(Debug, Clone)]
pub struct Gate {
    pub text: Tmpl,
    /// Distinct users who must approve (remote approvals).
    pub approvals: u32,
    /// The approver must not be the operator who started the run.
    pub other_approver: bool,
    /// Who may answer (users, or `group:NAME`); empty: anyone who can reach the run.
    pub approvers: Vec<String>,
    pub timeout: Option<Duration>,
}

/// What runs, where: shared by steps and rollbacks.
#[derive(Debug, Clone)]
pub struct Body {
    pub action: Action,
    /// `on:` a host or group; `None` runs locally.
    pub on: Option<Named>,
    pub timeout: Option<Duration>,
    pub env: Vec<(String, Tmpl)>,
    pub stdin: Option<Tmpl>,
    pub span: Range<usize>,
}

/// The kind of work a step does.
#[derive(Debug, Clone)]
pub enum Action {
    /// A shell command (`sh -c`), local or over SSH.
    Run(Tmpl),
    Http(Box<HttpSpec>),
    Wait(Box<WaitSpec>),
    /// Instructions the operator carries out and confirms.
    Manual(Tmpl),
    /// Nothing but its gate: a checkpoint where the operator must say yes to go on.
    Checkpoint,
    /// Stop here: the step fails with this message (a template).
    Fail(Tmpl),
    /// Ask people for a value mid-run (`ask:`); the answer is the step's output.
    Ask(Box<AskSpec>),
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Run(_) => "run",
            Action::Http(_) => "http",
            Action::Wait(_) => "wait",
            Action::Manual(_) => "manual",
            Action::Checkpoint => "checkpoint",
            Action::Fail(_) => "fail",
            Action::Ask(_) => "ask",
        }
    }
}

/// `ask:` — a value asked of people while the run goes on (see docs/format.md).
#[derive(Debug, Clone)]
pub struct AskSpec {
    /// What the person is asked (a template).
    pub prompt: Tmpl,
    /// `string`, `int` or `bool`: an answer that does not parse is asked again.
    pub ty: InputType,
    /// Hidden input; never journaled or shown; asked again on resume.
    pub secret: bool,
    /// The whole answer must match (anchored).
    pub pattern: Option<regex::Regex>,
    /// How many answers, each from a distinct OS user (1: one answer from anyone).
    pub from: u32,
    /// `from: "{{ expr }}"`: the count, known at run time (e.g. the threshold a server
    /// reports); `from` is then 1 until it is evaluated.
    pub from_expr: Option<Tmpl>,
    /// How long to wait for answers from elsewhere (default: `defaults.gate_timeout`).
    pub timeout: Option<Duration>,
}

/// A JSON value whose strings are templates.
#[derive(Debug, Clone)]
pub enum JsonTmpl {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(Tmpl),
    Array(Vec<JsonTmpl>),
    Object(Vec<(String, JsonTmpl)>),
}

/// The body of an HTTP request.
#[derive(Debug, Clone)]
pub enum HttpBody {
    Json(JsonTmpl),
    Raw(Tmpl),
}

/// An HTTP request.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    pub method: String,
    /// `method: "{{ … }}"`: the method is rendered at run time (and checked then).
    pub method_tmpl: Option<Tmpl>,
    pub url: Tmpl,
    pub headers: Vec<(String, Tmpl)>,
    pub query: Vec<(String, Tmpl)>,
    pub body: Option<HttpBody>,
    pub timeout: Option<Duration>,
    pub follow_redirects: bool,
    /// The response is not shown, journaled or kept in transcripts; outputs are computed
    /// from it in memory.
    pub sensitive: bool,
    pub ca_cert: Option<Tmpl>,
    pub client_cert: Option<Tmpl>,
    pub client_key: Option<Tmpl>,
    pub insecure: bool,
}

/// A probe polled until a condition holds.
#[derive(Debug, Clone)]
pub struct WaitSpec {
    pub probe: Probe,
    pub until: Tmpl,
    pub every: Duration,
    /// Multiplier applied to the interval after each attempt (1.0 = fixed).
    pub backoff: f64,
    pub timeout: Duration,
}

/// What a wait polls.
#[derive(Debug, Clone)]
pub enum Probe {
    Run { command: Tmpl, on: Option<Named> },
    Http(Box<HttpSpec>),
}

/// What decides a step's success beyond "it ran".
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// Accepted exit codes (run steps); empty means `[0]`.
    pub exit_codes: Vec<i32>,
    pub stdout: Option<regex::Regex>,
    pub stderr: Option<regex::Regex>,
    /// Accepted HTTP statuses; empty means any 2xx.
    pub status: Vec<u16>,
    /// JSON path (dotted, `a.b[0].c`) → expected value; `exists` checks presence only.
    pub json: Vec<(String, JsonExpect)>,
    pub body_contains: Option<String>,
    /// A free expression over the result that must be true.
    pub that: Option<Tmpl>,
}

/// One JSON path expectation.
#[derive(Debug, Clone)]
pub enum JsonExpect {
    Equals(serde_json::Value),
    Exists,
}

/// Fan a step out over a list; optionally stop as soon as `until` holds.
#[derive(Debug, Clone)]
pub struct ForEach {
    /// An expression evaluating to a list.
    pub items: Tmpl,
    pub until: Option<Tmpl>,
    /// `on_item_failure: continue`: a failed item does not stop the loop (the step still
    /// fails at the end).
    pub continue_on_item_failure: bool,
    /// `answers: ASK`: one item per answer to that `ask:` step, run as each arrives, while
    /// the ask goes on collecting; `items` is then the list used when the ask was skipped
    /// (`[]` when absent: the step is skipped too).
    pub answers: Option<Named>,
}

/// Members of a group chosen at run time (see `docs/format.md`, "Targets at run time").
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// `on: { hosts: EXPR, from: GROUP }`: the members (names or addresses) the expression
    /// gives; every one must be a member of the group.
    pub hosts: Option<Tmpl>,
    /// `where:` — keep the members for which this expression over `host` is true.
    pub filter: Option<Tmpl>,
    /// `order:` — the order in which the members run.
    pub order: Option<Order>,
}

impl Targets {
    pub fn is_runtime(&self) -> bool {
        self.hosts.is_some() || self.filter.is_some() || self.order.is_some()
    }
}

/// `order: { by, reverse, first, last }`.
#[derive(Debug, Clone, Default)]
pub struct Order {
    /// A sort key: an expression over `host` (stable sort).
    pub by: Option<Tmpl>,
    pub reverse: bool,
    /// Members (a name, an address, or a list of them) moved to the front, in that order.
    pub first: Option<Tmpl>,
    /// Members moved to the end, in that order (e.g. the leader last).
    pub last: Option<Tmpl>,
}
