//! The scheduler driven through its `StepExecutor` seam by a scripted executor (no step
//! kind runs), and manual rollbacks confirmed through the gate path.

use super::*;
use crate::execute::executor::{StepExecutor, StepFuture};
use crate::execute::shared::{Shared, StepRun};

/// A step executor that runs nothing: it records the steps the scheduler hands it and ends
/// each at once, steps whose id starts with `bad` as failed. The scheduler is seen apart from
/// any step kind, as a remote executor would see it.
struct Scripted(Arc<Mutex<Vec<String>>>);

impl StepExecutor for Scripted {
    fn run_step(&self, sh: Arc<Shared>, index: usize) -> StepFuture {
        let started = self.0.clone();
        Box::pin(async move {
            let id = sh.step(index).id.name.clone();
            if let Ok(mut s) = started.lock() {
                s.push(id.clone());
            }
            let failed = id.starts_with("bad");
            let status = if failed {
                StepStatus::Failed
            } else {
                StepStatus::Succeeded
            };
            StepRun {
                index,
                status,
                result: serde_json::json!({ "outcome": status.as_str(), "skipped": false }),
                error: failed.then(|| StepError::new(StepErrorKind::Expectation, "scripted")),
                operator: None,
                paused: false,
                duration: Duration::ZERO,
                hosts: Vec::new(),
            }
        })
    }
}

/// Runs `yaml` with `Scripted` as the step executor (rollbacks go to the fake runner), with
/// `--approve` for each of `approve`.
async fn run_scripted(yaml: &str, approve: &[&str]) -> (Run, Vec<String>) {
    let rb = runbook(yaml);
    let inputs =
        crate::inputs::resolve(&rb, &crate::inputs::Provided::default(), None).expect("inputs");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Log::default());
    let services = Services {
        local: Some(Arc::new(FakeRunner(log.clone()))),
        ..Services::default()
    };
    let events = Arc::new(Mutex::new(Vec::new()));
    let observers: Vec<Box<dyn Observer>> = vec![Box::new(Collect(events.clone()))];
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let prior = Prior::default();
    let mut opts = options(dir.path(), 4);
    opts.answers.approve = approve.iter().map(|s| s.to_string()).collect();
    let mut shared = Shared::new(
        Arc::new(rb),
        Arc::new(inputs),
        opts,
        observers,
        services,
        Cancel(cancel_rx),
        &prior,
    );
    let started = Arc::new(Mutex::new(Vec::new()));
    shared.executor = Arc::new(Scripted(started.clone()));
    let (tx, rx) = watch::channel(0u32);
    let outcome = crate::execute::scheduler::drive(shared, cancel_tx, rx, prior).await;
    drop(tx);
    let events = events.lock().map(|e| e.clone()).unwrap_or_default();
    let started = started.lock().map(|s| s.clone()).unwrap_or_default();
    (
        Run {
            outcome,
            log,
            events,
        },
        started,
    )
}

#[tokio::test]
async fn the_scheduler_runs_steps_only_through_its_step_executor() {
    let (r, started) = run_scripted(
        r#"
runbook: seam
version: 1
steps:
  - { id: a, run: echo a, rollback: undo a }
  - { id: b, run: echo b, needs: [a] }
  - { id: c, run: echo c, needs: [a] }
  - { id: bad, run: echo bad, needs: [b, c] }
  - { id: d, run: echo d, needs: [bad] }
finally:
  - { id: fin, run: echo fin }
"#,
        &[],
    )
    .await;
    // Wave order, the failed step's dependent never handed over, `finally` last.
    assert_eq!(started.first().map(String::as_str), Some("a"));
    assert_eq!(&started[3..], ["bad", "fin"]);
    assert!(started[1..3].contains(&"b".to_string()) && started[1..3].contains(&"c".to_string()));
    assert_eq!(r.outcome.status, ExitStatus::StepFailed);
    assert_eq!(r.status("d"), Some(StepStatus::NotRun));
    assert_eq!(r.kind("bad"), Some(StepErrorKind::Expectation));
    // Nothing of the main steps reached the command runner: only the unwinding did.
    assert_eq!(r.commands(), ["undo a"]);
    assert_eq!(r.rollbacks(), [("a".to_string(), StepStatus::Succeeded)]);
}

const MANUAL_UNDO: &str = r#"
runbook: by-hand
version: 1
steps:
  - { id: a, run: echo a, rollback: { manual: "put the disk back in {{ run.id }}" } }
  - { id: bad, run: echo bad, needs: [a] }
"#;

#[tokio::test]
async fn a_manual_rollback_is_confirmed_through_the_gate_and_journaled() {
    let (r, _) = run_scripted(MANUAL_UNDO, &["a (rollback)"]).await;
    assert_eq!(r.rollbacks(), [("a".to_string(), StepStatus::Succeeded)]);
    let asked = r.events.iter().any(|e| {
        matches!(e, Event::GateAsked { step, manual: true, rollback: true, message, .. }
            if step == "a (rollback)" && message == "put the disk back in 0123456789abcdef")
    });
    assert!(asked, "{:?}", r.events);
    let answered = r.events.iter().any(|e| {
        matches!(e, Event::GateAnswered { step, decision: crate::event::Decision::Approved,
            by: crate::event::AnsweredBy::ApproveFlag, .. } if step == "a (rollback)")
    });
    assert!(answered, "{:?}", r.events);
    // `--approve a` answers the step's own gate, not its undo; `--yes` neither.
    let (r, _) = run_scripted(MANUAL_UNDO, &["a"]).await;
    assert_eq!(r.rollbacks(), [("a".to_string(), StepStatus::Failed)]);
    assert_eq!(r.outcome.status, ExitStatus::RollbackIncomplete);
}

#[tokio::test]
async fn a_manual_rollback_nobody_can_confirm_is_not_done_and_asks_nothing() {
    let (r, _) = run_scripted(MANUAL_UNDO, &[]).await;
    assert_eq!(r.rollbacks(), [("a".to_string(), StepStatus::Failed)]);
    assert!(
        !r.events
            .iter()
            .any(|e| matches!(e, Event::GateAsked { .. } | Event::GateAnswered { .. })),
        "{:?}",
        r.events
    );
}
