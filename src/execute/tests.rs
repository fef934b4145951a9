//! In-process tests of the scheduler and the unwinding, with a fake command runner: no
//! processes, so they pin the engine's own rules (wave order, `--parallel`, `max_parallel`,
//! skip propagation, LIFO unwinding, failing rollbacks, cancellation, a panicking observer).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::{Options, Prior, RunOutcome, Services};
use crate::event::{Event, Observer, Stamped, StepStatus};
use crate::exit::ExitStatus;
use crate::runner::{
    BoxFuture, Cancel, CommandOutcome, CommandRunner, CommandSpec, LineSink, StepError,
    StepErrorKind,
};

/// What the fake runner was handed, in the order commands started.
#[derive(Default)]
struct Log {
    started: Mutex<Vec<CommandSpec>>,
    running: AtomicUsize,
    most: AtomicUsize,
}

/// A command runner that runs nothing. `fail…` exits 1; `block…` runs until cancelled;
/// `pair…` waits (bounded) until another command runs beside it, so concurrency is seen
/// without relying on timing; anything else exits 0 at once.
struct FakeRunner(Arc<Log>);

impl CommandRunner for FakeRunner {
    fn run<'a>(
        &'a self,
        spec: CommandSpec,
        _sink: LineSink,
        mut cancel: Cancel,
    ) -> BoxFuture<'a, CommandOutcome> {
        Box::pin(async move {
            let log = &self.0;
            let cmd = spec.command.clone();
            if let Ok(mut s) = log.started.lock() {
                s.push(spec);
            }
            let now = log.running.fetch_add(1, Ordering::SeqCst) + 1;
            log.most.fetch_max(now, Ordering::SeqCst);
            let mut out = CommandOutcome {
                exit_code: Some(0),
                ..CommandOutcome::default()
            };
            if cmd.starts_with("fail") {
                out.exit_code = Some(1);
            } else if cmd.starts_with("block") {
                cancel.cancelled().await;
                out.exit_code = None;
                out.cancelled = true;
            } else if cmd.starts_with("pair") {
                for _ in 0..100 {
                    if log.most.load(Ordering::SeqCst) >= 2 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            log.running.fetch_sub(1, Ordering::SeqCst);
            out
        })
    }
}

/// Keeps every event.
struct Collect(Arc<Mutex<Vec<Event>>>);

impl Observer for Collect {
    fn on_event(&mut self, e: &Stamped) -> Result<(), crate::event::ObserverError> {
        if let Ok(mut v) = self.0.lock() {
            v.push(e.event.clone());
        }
        Ok(())
    }
}

/// Panics at the first output line, holding the emitter's lock.
struct Panicky;

impl Observer for Panicky {
    fn on_event(&mut self, e: &Stamped) -> Result<(), crate::event::ObserverError> {
        if matches!(e.event, Event::StepStarted { .. }) {
            panic!("observer bug");
        }
        Ok(())
    }
}

struct Run {
    outcome: RunOutcome,
    log: Arc<Log>,
    events: Vec<Event>,
}

impl Run {
    fn commands(&self) -> Vec<String> {
        self.log
            .started
            .lock()
            .map(|s| s.iter().map(|c| c.command.clone()).collect())
            .unwrap_or_default()
    }

    fn status(&self, id: &str) -> Option<StepStatus> {
        self.outcome
            .steps
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.status)
    }

    fn kind(&self, id: &str) -> Option<StepErrorKind> {
        self.outcome
            .steps
            .iter()
            .find(|s| s.id == id)
            .and_then(|s| s.error_kind)
    }

    fn rollbacks(&self) -> Vec<(String, StepStatus)> {
        self.outcome
            .rollbacks
            .iter()
            .map(|r| (r.step.clone(), r.status))
            .collect()
    }
}

fn runbook(yaml: &str) -> crate::model::Runbook {
    let loaded = crate::load::load_bytes("test.yaml".into(), yaml.as_bytes().to_vec());
    let v = crate::validate::validate(&loaded);
    assert!(
        !v.has_errors(false),
        "{:?}",
        v.diagnostics
            .iter()
            .map(|d| d.message.clone())
            .collect::<Vec<_>>()
    );
    v.runbook.expect("validated")
}

/// How the tests run: `--yes`, runs under `dir`.
fn options(dir: &std::path::Path, parallel: usize) -> Options {
    Options {
        run_id: "0123456789abcdef".into(),
        run_dir: dir.to_path_buf(),
        file: "test.yaml".into(),
        parallel,
        answers: super::Answers {
            yes: true,
            ..Default::default()
        },
        no_rollback: false,
        confirm_rollback: false,
        user: "tester".into(),
        host: "here".into(),
        file_sha256: String::new(),
        lock: None,
        remote: None,
    }
}

/// Runs `yaml` with the fake runner; `signal_after` sends a signal once that many commands
/// started.
async fn run(
    yaml: &str,
    parallel: usize,
    observers: Vec<Box<dyn Observer>>,
    signal_after: Option<usize>,
) -> Run {
    let rb = runbook(yaml);
    let inputs =
        crate::inputs::resolve(&rb, &crate::inputs::Provided::default(), None).expect("inputs");
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = options(dir.path(), parallel);
    let log = Arc::new(Log::default());
    let services = Services {
        local: Some(Arc::new(FakeRunner(log.clone()))),
        ..Services::default()
    };
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut all: Vec<Box<dyn Observer>> = vec![Box::new(Collect(events.clone()))];
    all.extend(observers);
    let (tx, rx) = watch::channel(0u32);
    if let Some(n) = signal_after {
        let log = log.clone();
        tokio::spawn(async move {
            while log.started.lock().map(|s| s.len()).unwrap_or(0) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let _ = tx.send(1);
            // Keep the sender: a dropped one reads as "no more signals".
            std::future::pending::<()>().await;
        });
    } else {
        std::mem::forget(tx);
    }
    let outcome = super::execute(
        Arc::new(rb),
        Arc::new(inputs),
        opts,
        all,
        services,
        rx,
        Prior::default(),
    )
    .await;
    let events = events.lock().map(|e| e.clone()).unwrap_or_default();
    Run {
        outcome,
        log,
        events,
    }
}

#[tokio::test]
async fn steps_start_in_wave_order() {
    let r = run(
        r#"
runbook: waves
version: 1
steps:
  - { id: a, run: echo a }
  - { id: b, run: echo b, needs: [a] }
  - { id: c, run: echo c, needs: [a] }
  - { id: d, run: echo d, needs: [b, c] }
"#,
        4,
        vec![],
        None,
    )
    .await;
    assert_eq!(r.outcome.status, ExitStatus::Success);
    let cmds = r.commands();
    assert_eq!(cmds.first().map(String::as_str), Some("echo a"));
    assert_eq!(cmds.last().map(String::as_str), Some("echo d"));
    assert_eq!(cmds.len(), 4);
}

#[tokio::test]
async fn parallel_bounds_the_steps_running_at_once() {
    let yaml = r#"
runbook: wide
version: 1
steps:
  - { id: a, run: pair a }
  - { id: b, run: pair b }
  - { id: c, run: pair c }
  - { id: d, run: pair d }
"#;
    let one = run(yaml, 1, vec![], None).await;
    assert_eq!(one.outcome.status, ExitStatus::Success);
    assert_eq!(one.log.most.load(Ordering::SeqCst), 1);
    let two = run(yaml, 2, vec![], None).await;
    assert_eq!(two.outcome.status, ExitStatus::Success);
    assert_eq!(two.log.most.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn max_parallel_bounds_for_each_items() {
    let r = run(
        r#"
runbook: items
version: 1
steps:
  - id: each
    for_each: [1, 2, 3, 4, 5, 6]
    max_parallel: 3
    run: pair {{ item }}
"#,
        8,
        vec![],
        None,
    )
    .await;
    assert_eq!(r.outcome.status, ExitStatus::Success);
    let most = r.log.most.load(Ordering::SeqCst);
    assert!((2..=3).contains(&most), "{most} items ran at once");
    assert_eq!(r.commands().len(), 6);
}

#[tokio::test]
async fn a_skipped_step_lets_its_dependents_run_and_a_failed_one_does_not() {
    let r = run(
        r#"
runbook: skips
version: 1
steps:
  - { id: a, run: echo a, when: "false" }
  - { id: b, run: echo b, needs: [a] }
  - { id: c, run: fail c, needs: [b] }
  - { id: d, run: echo d, needs: [c] }
"#,
        4,
        vec![],
        None,
    )
    .await;
    assert_eq!(r.outcome.status, ExitStatus::StepFailed);
    assert_eq!(r.status("a"), Some(StepStatus::Skipped));
    assert_eq!(r.status("b"), Some(StepStatus::Succeeded));
    assert_eq!(r.status("c"), Some(StepStatus::Failed));
    assert_eq!(r.kind("c"), Some(StepErrorKind::Expectation));
    assert_eq!(r.status("d"), Some(StepStatus::NotRun));
    assert!(!r.commands().contains(&"echo d".to_string()));
    // The skipped result is recorded once, as an event.
    let skipped = r
        .events
        .iter()
        .filter(|e| matches!(e, Event::StepSkipped { step, .. } if step == "a"))
        .count();
    assert_eq!(skipped, 1);
}

#[tokio::test]
async fn rollbacks_unwind_in_reverse_order_of_completion() {
    let r = run(
        r#"
runbook: lifo
version: 1
steps:
  - { id: a, run: echo a, rollback: undo a }
  - { id: b, run: echo b, rollback: undo b, needs: [a] }
  - { id: c, run: echo c, rollback: undo c, needs: [b] }
  - { id: d, run: fail d, rollback: undo d, needs: [c] }
"#,
        4,
        vec![],
        None,
    )
    .await;
    assert_eq!(r.outcome.status, ExitStatus::StepFailed);
    let undo: Vec<String> = r
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("undo"))
        .collect();
    // `d` failed: its rollback was never registered.
    assert_eq!(undo, ["undo c", "undo b", "undo a"]);
    assert_eq!(
        r.rollbacks(),
        [
            ("c".to_string(), StepStatus::Succeeded),
            ("b".to_string(), StepStatus::Succeeded),
            ("a".to_string(), StepStatus::Succeeded),
        ]
    );
}

#[tokio::test]
async fn a_failing_rollback_is_recorded_and_unwinding_continues() {
    let r = run(
        r#"
runbook: badundo
version: 1
steps:
  - { id: a, run: echo a, rollback: undo a }
  - { id: b, run: echo b, rollback: fail undo b, needs: [a] }
  - { id: c, run: fail c, needs: [b] }
"#,
        4,
        vec![],
        None,
    )
    .await;
    assert_eq!(r.outcome.status, ExitStatus::RollbackIncomplete);
    assert_eq!(
        r.rollbacks(),
        [
            ("b".to_string(), StepStatus::Failed),
            ("a".to_string(), StepStatus::Succeeded),
        ]
    );
    assert!(r.outcome.reason.contains("rollback incomplete"));
}

#[tokio::test]
async fn a_signal_cancels_running_steps_starts_nothing_and_unwinds() {
    let r = run(
        r#"
runbook: cancel
version: 1
steps:
  - { id: a, run: echo a, rollback: undo a }
  - { id: b, run: block b, needs: [a] }
  - { id: c, run: echo c, needs: [b] }
"#,
        4,
        vec![],
        Some(2),
    )
    .await;
    assert_eq!(r.outcome.status, ExitStatus::Aborted);
    assert_eq!(r.status("b"), Some(StepStatus::Cancelled));
    assert_eq!(r.kind("b"), Some(StepErrorKind::Cancelled));
    assert_eq!(r.status("c"), Some(StepStatus::NotRun));
    assert_eq!(r.commands(), ["echo a", "block b", "undo a"]);
    assert!(!r.outcome.resumable);
}

#[tokio::test]
async fn a_panicking_observer_stops_the_run_as_an_engine_failure() {
    let r = run(
        r#"
runbook: panicky
version: 1
steps:
  - { id: a, run: echo a }
  - { id: b, run: echo b, needs: [a] }
"#,
        4,
        vec![Box::new(Panicky)],
        None,
    )
    .await;
    assert_eq!(r.outcome.status, ExitStatus::EngineFailed);
    assert!(r.outcome.resumable);
    assert!(!r.commands().contains(&"echo b".to_string()));
}

#[tokio::test]
async fn failures_are_classified() {
    let r = run(
        r#"
runbook: kinds
version: 1
inputs:
  addr: { default: "-oProxyCommand=x" }
hosts:
  bad: { address: "{{ addr }}" }
steps:
  - { id: a, run: echo a, for_each: "3", continue_on_failure: true }
  - { id: b, run: echo b, needs: [a] }
  - { id: c, on: bad, run: echo c, needs: [b] }
"#,
        4,
        vec![],
        None,
    )
    .await;
    assert_eq!(r.kind("a"), Some(StepErrorKind::Render));
    assert_eq!(r.status("b"), Some(StepStatus::Succeeded));
    assert_eq!(r.kind("c"), Some(StepErrorKind::Hosts));
}

mod scripted;
