//! `ask:` steps at run time: the value comes from the operator's terminal or from
//! `runbook answer RUN STEP` in another terminal (through `runner::ask_socket`), and with
//! `from: N` from N distinct OS users. A secret answer is added to the redactor the moment
//! it is taken, so it is masked in every event, log and journal line after that; the
//! answer itself is never an event (only who answered).
//!
//! Nobody can answer (no terminal and `--no-wait`, or no journal), or nobody did within the
//! timeout: the step does not run and the run pauses, exactly like a gate; `resume` asks again.
//!
//! When a later step consumes the answers as they arrive (`for_each: { answers: … }`), each
//! answer taken also goes into the ask's [`AnswerStream`] (see `stream.rs`), and the ask stops
//! waiting as soon as that step needs no more.

use std::sync::Arc;
use std::time::Instant;

use super::shared::{Shared, StepRun};
use super::stream::{Answer, AnswerStream, End, EndOnDrop};
use crate::event::{AnsweredBy, Event, StepStatus};
use crate::model::*;
use crate::runner::{StepError, StepErrorKind as K};
use crate::template::Target;

pub(crate) use super::ask_channels::StoreAnswer;

/// One answer taken.
pub(super) struct Taken {
    pub(super) user: String,
    pub(super) value: serde_json::Value,
    /// Its place among the answers (the consuming step's item index).
    pub(super) index: usize,
}

/// Why an ask ended without its answers.
pub(super) enum Stopped {
    /// A signal: the run is stopping.
    Cancelled,
    /// Nobody answered (or could): the run pauses, `resume` asks again.
    Paused(String),
}

/// Asks step `i` and, once enough answers are in, finishes it (outputs `value`, `values`).
pub(super) async fn run_ask(sh: &Arc<Shared>, i: usize, run: StepRun, t0: Instant) -> StepRun {
    let step = sh.step(i).clone();
    let Action::Ask(spec) = &step.body.action else {
        return run;
    };
    let stream = sh.stream(i);
    // However this ends, the consuming step learns it.
    let _end = EndOnDrop(stream.clone());
    let id = step.id.name.clone();
    let failed = |run, why: String| {
        let e = StepError::new(K::Render, format!("ask: {why}"));
        let null = serde_json::Value::Null;
        super::lifecycle::finish(sh, run, t0, StepStatus::Failed, null, Some(e))
    };
    let ctx = sh.ctx().with(vec![]);
    let prompt = match sh
        .env
        .templates
        .render(&spec.prompt.src, &ctx, Target::Text)
    {
        Ok(p) => sh.env.redactor.text(&p),
        Err(e) => return failed(run, crate::template::describe_error(&e)),
    };
    sh.emit(Event::StepStarted {
        step: id.clone(),
        attempt: 1,
        host: None,
        item: None,
        command: Some(format!("ask: {prompt}")),
        item_index: None,
    });
    let mut spec = (**spec).clone();
    if let Some(expr) = &spec.from_expr {
        match answers_needed(sh, expr) {
            Ok(n) => spec.from = n,
            Err(e) => return failed(run, e),
        }
    }
    let collected = super::ask_wait::collect(sh, &step, &spec, &prompt, stream.as_deref()).await;
    let (status, why) = match collected {
        Ok(mut taken) => {
            if let Some(s) = &stream {
                s.end(End::Complete);
            }
            taken.sort_by_key(|t| t.index);
            let values: Vec<serde_json::Value> = taken.iter().map(|t| t.value.clone()).collect();
            let users: Vec<String> = taken.iter().map(|t| t.user.clone()).collect();
            let result = serde_json::json!({
                "value": values.first().cloned().unwrap_or(serde_json::Value::Null),
                "values": values,
                "answered_by": users,
            });
            return finish_ok(sh, &step, run, t0, result);
        }
        Err(Stopped::Cancelled) => {
            let why = format!("the run stopped while `{id}` was asking");
            if let Some(s) = &stream {
                s.end(End::Stopped(why.clone()));
            }
            (StepStatus::Cancelled, why)
        }
        Err(Stopped::Paused(why)) => {
            if let Some(s) = &stream {
                s.end(End::Paused(why.clone()));
            }
            (StepStatus::NotRun, why)
        }
    };
    let e = StepError::new(K::Operator, why);
    let null = serde_json::Value::Null;
    let mut run = super::lifecycle::finish(sh, run, t0, status, null, Some(e));
    run.operator = Some(crate::event::Decision::Aborted);
    run.paused = status == StepStatus::NotRun;
    run
}

/// `from: "{{ expr }}"`: the number of answers, known now.
fn answers_needed(sh: &Shared, expr: &Tmpl) -> Result<u32, String> {
    let src = crate::template::expression_source(&expr.src);
    let v = sh
        .env
        .templates
        .eval(src, &sh.ctx().with(vec![]))
        .map_err(|e| crate::template::describe_error(&e))?;
    i64::try_from(v.clone())
        .ok()
        .filter(|n| (1..=50).contains(n))
        .map(|n| n as u32)
        .ok_or_else(|| format!("`from` must be a whole number from 1 to 50, not {v}"))
}

/// Evaluates the step's outputs over the answers and announces the end.
fn finish_ok(
    sh: &Shared,
    step: &Step,
    run: StepRun,
    t0: Instant,
    mut result: serde_json::Value,
) -> StepRun {
    let mut outputs = serde_json::Map::new();
    let (mut status, mut error) = (StepStatus::Succeeded, None);
    if let Err(e) = super::lifecycle::evaluate_outputs(sh, step, &result, &mut outputs) {
        status = StepStatus::Failed;
        error = Some(StepError::new(K::Render, e));
    }
    if let serde_json::Value::Object(m) = &mut result {
        m.insert("outputs".into(), serde_json::Value::Object(outputs));
        m.insert("outcome".into(), status.as_str().into());
        m.insert("skipped".into(), false.into());
    }
    super::lifecycle::finish(sh, run, t0, status, result, error)
}

/// The pattern as written (without the anchors).
pub(super) fn pattern_text(spec: &AskSpec) -> Option<String> {
    spec.pattern
        .as_ref()
        .map(|p| crate::step::ask::unanchored(p.as_str()))
}

/// A resumed run's answers to a streamed ask that are not asked again: those whose item
/// is done (a secret's value is not kept: `null`), and plain ones from the journal (their
/// item runs again). A secret whose item is not done is asked again.
/// If the consuming step finished before the resume, it needs no more answers: the stream
/// says so and the ask asks nobody.
pub(super) fn prefill(sh: &Shared, id: &str, stream: Option<&AnswerStream>) -> Vec<Taken> {
    let Some(stream) = stream else {
        return Vec::new();
    };
    let consumer = sh.consumer_of(id);
    let finished = consumer
        .as_deref()
        .is_some_and(|c| sh.env.results.get(&crate::validate::step_var(c)).is_some());
    if let (true, Some(c)) = (finished, &consumer) {
        stream.consumer_done(format!("`{c}` finished before the resume"));
    }
    let Some(prior) = sh.prior_answers.get(id) else {
        return Vec::new();
    };
    let done = |k: usize| {
        finished
            || consumer.as_deref().is_some_and(|c| {
                sh.items_done
                    .get(c)
                    .is_some_and(|m| m.contains_key(&(k, None)))
            })
    };
    // The latest answer for each item.
    let mut latest: std::collections::BTreeMap<usize, &super::PriorAnswer> = Default::default();
    for a in prior {
        latest.insert(a.index, a);
    }
    let mut taken = Vec::new();
    for (k, a) in latest {
        let value = match (&a.value, done(k)) {
            (Some(v), _) => v.clone(),
            (None, true) => serde_json::Value::Null,
            (None, false) => continue,
        };
        stream.push(Answer {
            index: k,
            value: value.clone(),
        });
        taken.push(Taken {
            user: a.user.clone(),
            value,
            index: k,
        });
    }
    taken
}

/// Takes one answer: checks it (type, pattern, a user who already answered), remembers a
/// secret for masking, records who answered, and hands it to a consuming step. `Ok`: the
/// line for the answerer.
pub(super) fn take(
    sh: &Shared,
    spec: &AskSpec,
    id: &str,
    taken: &mut Vec<Taken>,
    stream: Option<&AnswerStream>,
    (user, raw, by): (String, &str, AnsweredBy),
) -> Result<String, String> {
    let need = spec.from as usize;
    if taken.len() >= need {
        return Err(format!("`{id}` already has its {need} answer(s)"));
    }
    if spec.from > 1 && taken.iter().any(|t| t.user == user) {
        let who = match sh.opts.remote.as_ref().and_then(|r| r.answers.store()) {
            Some(_) => "database role",
            None => "OS user",
        };
        return Err(format!(
            "{user} already answered `{id}`: each of the {need} answers must come from a different {who} ({} more needed from others)",
            need - taken.len()
        ));
    }
    let value = crate::step::ask::parse_answer(spec, raw).map_err(|why| {
        format!("the answer to `{id}` from {user} was refused: {why}; answer again")
    })?;
    if spec.secret
        && let serde_json::Value::String(s) = &value
    {
        sh.env.redactor.add(std::slice::from_ref(s));
    }
    let index = stream.map_or(taken.len(), AnswerStream::free_index);
    taken.push(Taken {
        user: user.clone(),
        value: value.clone(),
        index,
    });
    // Journaled before the consuming step can start its item.
    sh.emit(Event::AskAnswered {
        step: id.to_string(),
        user: user.clone(),
        by,
        have: taken.len() as u32,
        need: spec.from,
        streamed: stream.map(|_| crate::event::Streamed {
            index,
            value: (!spec.secret).then(|| value.clone()),
        }),
    });
    if let Some(s) = stream {
        s.push(Answer { index, value });
    }
    Ok(format!(
        "answer to `{id}` accepted from {user} ({} of {need})",
        taken.len()
    ))
}
