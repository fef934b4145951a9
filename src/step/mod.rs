//! Step kinds: how each kind of step is rendered, run and judged.
//!
//! One module per kind (`run`, `http`, `wait`, `manual`), each with its render function, its
//! success rule and its preview; [`hosts`] resolves `on:`; [`context`] builds what templates
//! see. A step kind runs against an [`Env`] (what a run lends its steps: templates, the
//! redactor, runners, an event sink) and returns an [`Attempt`]; it never touches the run's
//! state or the journal: the scheduler in `execute/` owns those.

pub(crate) mod ask;
pub(crate) mod context;
pub(crate) mod expect;
pub(crate) mod fail;
pub(crate) mod hosts;
pub(crate) mod http;
pub(crate) mod lazy;
pub(crate) mod manual;
pub(crate) mod readable;
pub(crate) mod render;
pub(crate) mod run;
pub(crate) mod targets;
pub(crate) mod wait;

use std::path::PathBuf;
use std::sync::Arc;

use minijinja::value::Value;

use crate::event::{Decision, Event, StepStatus, Stream};
use crate::inputs::Inputs;
use crate::model::*;
use crate::redact::Redactor;
use crate::runner::{
    Cancel, CommandRunner, HttpClient, LineSink, RemoteRunners, SshTarget, StepError,
    StepErrorKind as K,
};
use crate::template::{Target, Templates};
use context::{Ctx, Results};

/// Where a step's events go. The scheduler implements it (redacting, stamping and handing
/// them to observers, the journal among them).
pub(crate) trait EventSink: Send + Sync {
    fn emit(&self, e: Event);
    /// Why events can no longer be recorded (the journal failed): nothing new may start.
    fn failure(&self) -> Option<String>;
}

/// What a run lends its steps: everything a step kind needs to render and run a body.
pub(crate) struct Env {
    pub rb: Arc<Runbook>,
    pub inputs: Arc<Inputs>,
    /// Secret inputs not provided up front and asked at a terminal when a step first needed
    /// them (`execute::lazy_ask`): they replace the unknown ones in `inputs`.
    pub late: std::sync::Mutex<Vec<crate::inputs::Resolved>>,
    /// Results of finished steps, for templates.
    pub results: Results,
    /// `run.*` in templates.
    pub run_json: serde_json::Value,
    /// Templates that reveal secrets (what runs); the plan uses masking ones.
    pub templates: Templates,
    pub redactor: Arc<Redactor>,
    pub sink: Arc<dyn EventSink>,
    /// `RUNBOOK_SECRET_*` variables: a command gets those it names.
    pub secret_env: Vec<(String, String)>,
    /// Environment variables of this process that hold a secret (`from_env`): no command
    /// inherits them.
    pub secret_sources: Vec<String>,
    pub run_id: String,
    /// Per-step logs go under `run_dir/steps/`.
    pub run_dir: PathBuf,
    /// Runs commands on this machine (the real [`crate::runner::local::LocalRunner`]).
    pub local: Arc<dyn CommandRunner>,
    pub remote: Option<Arc<dyn RemoteRunners>>,
    pub http: Option<Arc<dyn HttpClient>>,
}

impl Env {
    pub(crate) fn emit(&self, e: Event) {
        self.sink.emit(e);
    }

    /// Why the journal cannot be written, if it cannot.
    pub(crate) fn observer_failure(&self) -> Option<String> {
        self.sink.failure()
    }

    /// Step `i` of the runbook (`steps`, then `finally`).
    pub(crate) fn step(&self, i: usize) -> &Step {
        let main = self.rb.steps.len();
        if i < main {
            &self.rb.steps[i]
        } else {
            &self.rb.finally[i - main]
        }
    }

    /// The template context as it stands now.
    pub(crate) fn ctx(&self) -> Ctx {
        Ctx::new(&self.inputs_now(), &self.results, self.run_json.clone())
    }

    /// The inputs as they stand now: those resolved at the start, with the ones asked when
    /// first needed filled in.
    pub(crate) fn inputs_now(&self) -> Arc<Inputs> {
        let late = match self.late.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        if late.is_empty() {
            return self.inputs.clone();
        }
        let mut now = (*self.inputs).clone();
        for r in now.values.iter_mut() {
            if let Some(l) = late.iter().find(|l| l.name == r.name) {
                *r = l.clone();
            }
        }
        Arc::new(now)
    }

    /// `RUNBOOK_SECRET_*` variables, with those of inputs asked when first needed.
    pub(crate) fn secret_env_now(&self) -> Vec<(String, String)> {
        let late = match self.late.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        if late.is_empty() {
            return self.secret_env.clone();
        }
        let mut out = self.secret_env.clone();
        out.extend(
            Inputs {
                values: late.clone(),
            }
            .secret_env(),
        );
        out
    }

    /// Evaluates a boolean expression with `extra` variables (secrets masked in the error).
    pub(crate) fn eval_bool(
        &self,
        expr: &Tmpl,
        extra: Vec<(String, Value)>,
    ) -> Result<bool, StepError> {
        let ctx = self.ctx().with(extra);
        self.templates
            .eval(crate::template::expression_source(&expr.src), &ctx)
            .map(|v| v.is_true())
            .map_err(|e| {
                StepError::render(self.redactor.text(&crate::template::describe_error(&e)))
            })
    }
}

/// One execution of a body: which step, where, for which item, which attempt.
#[derive(Clone)]
pub(crate) struct Call<'a> {
    pub step: &'a Step,
    pub body: &'a Body,
    /// Template variables of this execution (`item`, `item_index`, `host`).
    pub extra: Vec<(String, Value)>,
    pub target: Option<SshTarget>,
    /// The item, as shown in progress.
    pub item: Option<String>,
    pub attempt: u32,
    /// The step log's name under `steps/`.
    pub log: String,
    pub cancel: Cancel,
}

impl Call<'_> {
    /// The template context of this execution.
    pub(crate) fn ctx(&self, env: &Env) -> Value {
        env.ctx().with(self.extra.clone())
    }
}

/// The result of one execution of a body on one host.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub status: StepStatus,
    pub result: serde_json::Value,
    pub error: Option<StepError>,
    /// Set when the operator declined or aborted (a manual step).
    pub operator: Option<Decision>,
}

impl Attempt {
    pub(crate) fn failed(error: StepError) -> Attempt {
        Attempt {
            status: StepStatus::Failed,
            result: serde_json::json!({ "error": error.message }),
            error: Some(error),
            operator: None,
        }
    }

    pub(crate) fn succeeded(result: serde_json::Value) -> Attempt {
        Attempt {
            status: StepStatus::Succeeded,
            result,
            error: None,
            operator: None,
        }
    }
}

/// Runs a body once (no retries, no expectations: the lifecycle adds those).
pub(crate) async fn run_body(env: &Arc<Env>, call: &Call<'_>) -> Attempt {
    let ctx = call.ctx(env);
    match &call.body.action {
        Action::Run(cmd) => {
            let spec = match run::render(&render::Live(env), cmd, call.body, &ctx, "command") {
                Ok(c) => c,
                Err(e) => return Attempt::failed(e),
            };
            run::run_command(env, call, &ctx, spec).await
        }
        Action::Http(h) => http::run_http(env, call, h, &ctx, true).await,
        Action::Wait(w) => wait::run_wait(env, call, w).await,
        Action::Manual(_) | Action::Checkpoint => {
            Attempt::succeeded(serde_json::json!({ "confirmed": true }))
        }
        // Asked by the engine before the body would run (execute/ask.rs): never here.
        Action::Ask(_) => Attempt::failed(StepError::new(K::Render, "an ask is not a body")),
        Action::Fail(m) => match fail::render(&render::Live(env), m, &ctx) {
            Ok(text) => Attempt::failed(StepError::new(K::Expectation, text)),
            Err(e) => Attempt::failed(e),
        },
    }
}

/// Whether a step's HTTP response must stay out of events, the journal and transcripts.
pub(crate) fn is_sensitive(step: &Step) -> bool {
    match &step.body.action {
        Action::Http(h) => h.sensitive,
        Action::Wait(w) => matches!(&w.probe, Probe::Http(h) if h.sensitive),
        _ => false,
    }
}

/// Replaces a response's body, JSON and headers (and every item's) with a note.
pub(crate) fn hide_response(result: &mut serde_json::Value) {
    if let serde_json::Value::Object(m) = result {
        for k in ["body", "json", "headers"] {
            if m.contains_key(k) {
                m.insert(
                    k.into(),
                    serde_json::Value::String("<sensitive: not recorded>".into()),
                );
            }
        }
        if let Some(serde_json::Value::Array(items)) = m.get_mut("items") {
            items.iter_mut().for_each(hide_response);
        }
    }
}

/// The `for_each` item index in a step's context, if any.
pub(crate) fn item_index_of(ctx: &Value) -> Option<usize> {
    ctx.get_attr("item_index")
        .ok()
        .and_then(|v| usize::try_from(v).ok())
}

/// Streams a command's output lines as events.
pub(crate) fn line_sink(env: &Env, step: &str, host: Option<String>) -> LineSink {
    let sink = env.sink.clone();
    let step = step.to_string();
    Arc::new(move |stream: Stream, line: String| {
        sink.emit(Event::Output {
            step: step.clone(),
            host: host.clone(),
            stream,
            line,
        });
    })
}

/// Renders a text template with run-time values; values derived from a secret become secrets.
pub(crate) fn render(
    env: &Env,
    t: &Tmpl,
    ctx: &Value,
    target: Target,
    what: &str,
) -> Result<String, StepError> {
    let Target::Text = target;
    let (text, derived) = env.templates.render_text(&t.src, ctx).map_err(|e| {
        StepError::render(format!("{what}: {}", crate::template::describe_error(&e)))
    })?;
    // Values computed from a secret are secrets: masked wherever they show up.
    env.redactor.add(&derived);
    Ok(text)
}
