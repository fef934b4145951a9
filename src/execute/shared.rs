//! What every task of a run shares: the step environment, the options, the event emitter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::executor::{Local, StepExecutor};
use super::stream::AnswerStream;
use super::{Options, Prior, Services};
use crate::event::{Decision, Event, Observer, Stamped, StepStatus, now};
use crate::inputs::{InputSource, InputValue, Inputs};
use crate::model::{Runbook, Step};
use crate::redact::{Redactor, redact_free_text};
use crate::runner::local::LocalRunner;
use crate::runner::{Cancel, StepError};
use crate::step::context::Ctx;
use crate::step::context::Results;
use crate::step::{Env, EventSink};
use crate::template::SecretDisplay;
use crate::template::Templates;

/// Sends events to observers, redacted and stamped. The only way events leave a run: the
/// journal is one of its observers, so this is the run's only journal writer.
pub(super) struct Emitter {
    observers: Mutex<Observers>,
    redactor: Arc<Redactor>,
    /// The observers' lock was poisoned (an observer panicked): records may have been lost,
    /// so the run stops as an engine failure, like a journal that cannot be written.
    poisoned: AtomicBool,
}

struct Observers {
    list: Vec<Box<dyn Observer>>,
    /// Set when a required observer (the journal) failed: the run must stop.
    failed: Option<String>,
}

impl Emitter {
    pub(super) fn new(observers: Vec<Box<dyn Observer>>, redactor: Arc<Redactor>) -> Emitter {
        Emitter {
            observers: Mutex::new(Observers {
                list: observers,
                failed: None,
            }),
            redactor,
            poisoned: AtomicBool::new(false),
        }
    }
}

impl EventSink for Emitter {
    fn emit(&self, e: Event) {
        let event = redact_free_text(&self.redactor, e);
        let stamped = Stamped { at: now(), event };
        let Ok(mut obs) = self.observers.lock() else {
            self.poisoned.store(true, Ordering::SeqCst);
            return;
        };
        let Observers { list, failed } = &mut *obs;
        for o in list.iter_mut() {
            if let Err(err) = o.on_event(&stamped)
                && o.required()
                && failed.is_none()
            {
                *failed = Some(err.0);
            }
        }
    }

    fn failure(&self) -> Option<String> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Some("internal error: an observer panicked; events may be lost".into());
        }
        match self.observers.lock() {
            Ok(obs) => obs.failed.clone(),
            Err(_) => {
                self.poisoned.store(true, Ordering::SeqCst);
                Some("internal error: an observer panicked; events may be lost".into())
            }
        }
    }
}

/// Why the run is stopping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StopKind {
    Failed,
    Declined,
    Aborted,
    /// A gate nobody could answer: stop here, roll nothing back, resume later.
    Paused,
    EngineFailed,
}

/// Done units of a resumed run, by step: (item index, host) → result.
pub(super) type DoneUnits = HashMap<String, HashMap<(usize, Option<String>), serde_json::Value>>;

/// The run as its tasks see it (read-only but for the results and the redactor, which are
/// shared by design).
pub(super) struct Shared {
    pub(super) env: Arc<Env>,
    pub(super) opts: Options,
    pub(super) services: Services,
    /// Masking templates, for gate previews.
    pub(super) mask: Templates,
    pub(super) cancel: Cancel,
    pub(super) items_done: DoneUnits,
    /// Answers to streamed asks a resumed run already has (see `ask::prefill`).
    pub(super) prior_answers: HashMap<String, Vec<super::PriorAnswer>>,
    /// The answer streams of asks whose answers a step consumes as they arrive, by step
    /// index; opened by the scheduler when it starts the ask.
    streams: Mutex<HashMap<usize, Arc<AnswerStream>>>,
    /// Runs the steps the scheduler starts (this process, unless a test or a distributed
    /// front end says otherwise).
    pub(super) executor: Arc<dyn StepExecutor>,
}

impl Shared {
    /// Step `id` is skipped for `reason` (already redacted): said, and its result (for the
    /// templates of later steps) says so.
    pub(super) fn skipped(&self, id: &str, reason: &str) {
        self.emit(Event::StepSkipped {
            step: id.to_string(),
            reason: reason.into(),
        });
        self.env.results.set(
            &crate::validate::step_var(id),
            &crate::event::skipped_result(reason),
        );
    }

    /// Builds what every task of the run shares.
    pub(super) fn new(
        rb: Arc<Runbook>,
        inputs: Arc<Inputs>,
        opts: Options,
        observers: Vec<Box<dyn Observer>>,
        services: Services,
        cancel: Cancel,
        prior: &Prior,
    ) -> Shared {
        let redactor = Arc::new(Redactor::new(&inputs.secret_values()));
        let run_json = serde_json::json!({
            "id": opts.run_id,
            "user": opts.user,
            "host": opts.host,
            "runbook": rb.name,
            "status": "running",
        });
        // Environment variables of this process that hold a secret: no command inherits them.
        let secret_sources = inputs
            .values
            .iter()
            .filter_map(|r| match &r.source {
                InputSource::Env(name) if r.secret => Some(name.clone()),
                _ => None,
            })
            .chain(
                std::env::vars_os()
                    .filter_map(|(k, _)| k.into_string().ok())
                    .filter(|k| k.starts_with("RUNBOOK_SECRET_")),
            )
            .collect();
        let env = Env {
            secret_env: inputs.secret_env(),
            sink: Arc::new(Emitter::new(observers, redactor.clone())),
            rb,
            inputs,
            late: std::sync::Mutex::default(),
            results: Results::default(),
            run_json,
            templates: Templates::new(SecretDisplay::Reveal),
            redactor,
            secret_sources,
            run_id: opts.run_id.clone(),
            run_dir: opts.run_dir.clone(),
            local: services
                .local
                .clone()
                .unwrap_or_else(|| Arc::new(LocalRunner)),
            remote: services.remote.clone(),
            http: services.http.clone(),
        };
        Shared {
            env: Arc::new(env),
            opts,
            services,
            mask: Templates::new(SecretDisplay::Mask),
            cancel,
            items_done: prior.items_done.clone(),
            prior_answers: prior.answers.clone(),
            streams: Mutex::default(),
            executor: Arc::new(Local),
        }
    }

    /// The first event: `run-started`, or `run-resumed` with what was in doubt.
    pub(super) fn announce(&self, prior: &Prior) {
        let sh = self;
        let (rb, inputs, opts) = (&sh.env.rb, &sh.env.inputs, &sh.opts);
        if prior.resumed {
            let mut in_doubt: Vec<(String, String)> = prior
                .in_doubt
                .iter()
                .map(|(k, rerun)| {
                    let how = if *rerun { "re-run" } else { "treated as done" };
                    (k.clone(), how.to_string())
                })
                .collect();
            in_doubt.sort();
            sh.emit(Event::RunResumed {
                user: opts.user.clone(),
                host: opts.host.clone(),
                in_doubt,
            });
            return;
        }
        sh.emit(Event::RunStarted {
            run_id: opts.run_id.clone(),
            runbook: rb.name.clone(),
            file: opts.file.clone(),
            user: opts.user.clone(),
            host: opts.host.clone(),
            inputs: inputs
                .values
                .iter()
                .map(|r| (r.name.clone(), r.display()))
                .collect(),
            steps: rb.steps.len() + rb.finally.len(),
            dry_run: false,
            values: inputs
                .values
                .iter()
                .filter_map(|r| match &r.value {
                    InputValue::Plain(v) if !r.secret => Some((r.name.clone(), v.clone())),
                    _ => None,
                })
                .collect(),
            file_sha256: opts.file_sha256.clone(),
            lock: opts.lock.clone(),
        });
    }

    pub(super) fn emit(&self, e: Event) {
        self.env.emit(e);
    }

    pub(super) fn observer_failure(&self) -> Option<String> {
        self.env.observer_failure()
    }

    pub(super) fn step(&self, i: usize) -> &Step {
        self.env.step(i)
    }

    pub(super) fn ctx(&self) -> Ctx {
        self.env.ctx()
    }

    /// The step that consumes the answers of ask `id` as they arrive, if any.
    pub(super) fn consumer_of(&self, id: &str) -> Option<String> {
        self.env
            .rb
            .steps
            .iter()
            .find(|s| {
                s.for_each
                    .as_ref()
                    .and_then(|fe| fe.answers.as_ref())
                    .is_some_and(|a| a.name == id)
            })
            .map(|s| s.id.name.clone())
    }

    /// Opens the answer stream of ask step `i` if a step consumes its answers (the
    /// scheduler, as it starts the ask).
    pub(super) fn open_stream(&self, i: usize) {
        let Some(step) = self.env.rb.steps.get(i) else {
            return;
        };
        if matches!(step.body.action, crate::model::Action::Ask(_))
            && self.consumer_of(&step.id.name).is_some()
            && let Ok(mut m) = self.streams.lock()
        {
            m.insert(i, Arc::new(AnswerStream::new()));
        }
    }

    /// The answer stream of ask step `i`, once opened.
    pub(super) fn stream(&self, i: usize) -> Option<Arc<AnswerStream>> {
        self.streams.lock().ok().and_then(|m| m.get(&i).cloned())
    }
}

/// How one step (all its items and hosts) ended.
#[derive(Debug, Clone)]
pub(super) struct StepRun {
    pub(super) index: usize,
    pub(super) status: StepStatus,
    pub(super) result: serde_json::Value,
    pub(super) error: Option<StepError>,
    /// Set when the operator declined or aborted at a manual step.
    pub(super) operator: Option<Decision>,
    /// A manual step nobody could confirm: the run pauses here (resumable).
    pub(super) paused: bool,
    pub(super) duration: Duration,
    pub(super) hosts: Vec<String>,
}
