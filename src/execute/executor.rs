//! The seam between the scheduler and whatever runs a step: [`StepExecutor`].
//!
//! The scheduler alone decides what starts, when, and how the run ends; an executor runs one
//! step's life (its manual confirmation, items, hosts, attempts with retries, expectations,
//! outputs) and hands back a [`StepRun`], streaming its events through the run's emitter
//! meanwhile. [`Local`] runs steps in this process (`lifecycle.rs`); a remote or distributed
//! executor implements the same trait and the scheduler does not change.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::lifecycle;
use super::shared::{Shared, StepRun};

/// A step running to its end.
pub(super) type StepFuture = Pin<Box<dyn Future<Output = StepRun> + Send>>;

/// Runs one step's attempts; what the scheduler calls for every step it starts.
pub(super) trait StepExecutor: Send + Sync {
    /// Runs step `index` of the run (a main step, or `finally` step `index - steps.len()`)
    /// to its end. Must announce the step's end through `sh` (the scheduler records the
    /// returned result) and stop soon after `sh.cancel` fires.
    fn run_step(&self, sh: Arc<Shared>, index: usize) -> StepFuture;
}

/// Runs steps in this process: each body through its kind's module in `crate::step`.
pub(super) struct Local;

impl StepExecutor for Local {
    fn run_step(&self, sh: Arc<Shared>, index: usize) -> StepFuture {
        Box::pin(lifecycle::run_step(sh, index))
    }
}
