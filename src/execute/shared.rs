//! What every task of a run shares: the step environment, the options, the event emitter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Options, Services};
use crate::event::{Decision, Event, Observer, Stamped, StepStatus, now};
use crate::model::Step;
use crate::redact::{Redactor, redact_free_text};
use crate::runner::Cancel;
use crate::step::context::Ctx;
use crate::step::{Env, EventSink};
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
                *failed = Some(err);
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
}

impl Shared {
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
}

/// How one step (all its items and hosts) ended.
#[derive(Debug, Clone)]
pub(super) struct StepRun {
    pub(super) index: usize,
    pub(super) status: StepStatus,
    pub(super) result: serde_json::Value,
    pub(super) error: Option<String>,
    /// Set when the operator declined or aborted at a manual step.
    pub(super) operator: Option<Decision>,
    /// A manual step nobody could confirm: the run pauses here (resumable).
    pub(super) paused: bool,
    pub(super) duration: Duration,
    pub(super) hosts: Vec<String>,
}
