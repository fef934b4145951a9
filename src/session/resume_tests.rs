//! Rollback units in flight, from synthetic journals.

use super::*;
use crate::event::Stamped;

fn runbook() -> Runbook {
    let yaml = "runbook: t\nversion: 1\nsteps:\n  - id: fe\n    for_each: [a, b, c]\n    run: 'true'\n    rollback: 'true'\n";
    let loaded = crate::load::load_bytes("t.yaml".into(), yaml.as_bytes().to_vec());
    crate::validate::validate(&loaded)
        .runbook
        .expect("validated")
}

fn records(events: Vec<Event>) -> Vec<journal::Record> {
    events
        .into_iter()
        .enumerate()
        .map(|(k, event)| journal::Record {
            v: 1,
            seq: k as u64,
            prev: String::new(),
            stamped: Stamped {
                at: String::new(),
                event,
            },
        })
        .collect()
}

fn started(unit: Option<usize>) -> Vec<Event> {
    let mut out = Vec::new();
    if let Some(k) = unit {
        out.push(Event::RollbackItemStarted {
            step: "fe".into(),
            unit: format!("item {k}"),
            item_index: Some(k),
            host: None,
        });
    }
    out.push(Event::StepStarted {
        step: "fe".into(),
        attempt: 1,
        host: None,
        item: None,
        command: Some("true".into()),
        item_index: unit,
    });
    out
}

fn rollback_started() -> Event {
    Event::RollbackStarted {
        step: "fe".into(),
        reason: "x".into(),
    }
}

/// With unit records, only the unit announced and not finished is in doubt.
#[test]
fn only_the_unit_in_flight_is_in_doubt() {
    let mut ev = vec![rollback_started()];
    ev.extend(started(Some(2)));
    ev.push(Event::RollbackItemFinished {
        step: "fe".into(),
        unit: "item 2".into(),
        status: StepStatus::Succeeded,
    });
    ev.extend(started(Some(1)));
    let got = rollbacks_in_flight(&runbook(), &records(ev), &Prior::default());
    assert_eq!(got, vec![("fe".to_string(), Some("item 1".to_string()))]);
}

/// Cut between two units: nothing in doubt (the rest simply runs).
#[test]
fn between_units_nothing_is_in_doubt() {
    let mut ev = vec![rollback_started()];
    ev.extend(started(Some(2)));
    ev.push(Event::RollbackItemFinished {
        step: "fe".into(),
        unit: "item 2".into(),
        status: StepStatus::Succeeded,
    });
    ev.push(Event::RollbackItemStarted {
        step: "fe".into(),
        unit: "item 1".into(),
        item_index: Some(1),
        host: None,
    });
    let got = rollbacks_in_flight(&runbook(), &records(ev), &Prior::default());
    assert!(got.is_empty(), "{got:?}");
}

/// A journal written before unit records existed: the rollback as a whole, as before.
#[test]
fn an_old_journal_decides_the_whole_rollback() {
    let mut ev = vec![rollback_started()];
    // Old engines announced each item's undo command alone.
    ev.extend(started(Some(2)).into_iter().skip(1));
    ev.extend(started(Some(1)).into_iter().skip(1));
    let got = rollbacks_in_flight(&runbook(), &records(ev), &Prior::default());
    assert_eq!(got, vec![("fe".to_string(), None)]);
}
