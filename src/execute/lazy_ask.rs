//! Inputs asked when first needed: an input nobody gave that only steps which may be skipped
//! read (or a secret that is not `required`) is not asked at the start (`inputs::lazy`); it
//! is asked here, through the same prompter as gates, right before the first step (or `when`)
//! that reads it, and never if that step is skipped — hidden for a secret, echoed otherwise,
//! its type, `allowed` and `pattern` checked and asked again on a bad answer. A `when` that
//! is decided without it (`false and x`) does not ask it. A plain answer
//! is journaled (`input-given`, so `resume` does not ask again); a secret's never is. Without
//! a terminal the step fails naming itself and the input (`step::lazy`).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::gate::WithdrawOnDrop;
use super::shared::Shared;
use super::{AskCheck, AskRequest};
use crate::event::Event;
use crate::inputs::InputValue;
use crate::model::Step;

/// [`ask_missing`], withdrawn (an error) when a signal arrives.
pub(super) async fn ask_or_withdraw(
    sh: &Arc<Shared>,
    step: &Step,
    only: Option<&str>,
    signals: &mut super::scheduler::Signals,
) -> Result<(), String> {
    tokio::select! {
        r = ask_missing(sh, step, only) => r,
        _ = signals.changed() => {
            signals.take_new();
            Err("the prompt was withdrawn: the run is stopping".to_string())
        }
    }
}

/// Asks, one by one, every input `step` reads that nobody provided (`only`: in this template
/// source of the step, its `when`). `Err`: why the step cannot run (no terminal, nobody
/// answered, or the prompt was withdrawn by a signal).
pub(super) async fn ask_missing(
    sh: &Arc<Shared>,
    step: &Step,
    only: Option<&str>,
) -> Result<(), String> {
    if let Some(when) = only
        && decided_without_missing(sh, when)
    {
        return Ok(());
    }
    loop {
        let inputs = sh.env.inputs_now();
        let Some((name, why)) = crate::step::lazy::missing_input(&sh.env.rb, &inputs, step, only)
        else {
            return Ok(());
        };
        let (Some(p), Some(input)) = (sh.services.prompter.clone(), sh.env.rb.input(&name)) else {
            return Err(why);
        };
        let input = input.clone();
        let prompt = if input.description.is_empty() {
            format!("input `{name}`")
        } else {
            format!("input `{name}` ({})", input.description)
        };
        let mut rules = vec![input.ty.as_str().to_string()];
        if let Some(p) = &input.pattern {
            rules.push(format!("pattern {}", p.as_str()));
        }
        if !input.allowed.is_empty() {
            rules.push(format!("one of {}", input.allowed.join(", ")));
        }
        let notes = if input.secret {
            format!(
                "needed now by step `{}`; hidden input, never recorded",
                step.id.name
            )
        } else {
            format!(
                "needed now by step `{}`; {}",
                step.id.name,
                rules.join(", ")
            )
        };
        let req = AskRequest {
            step: step.id.name.clone(),
            prompt,
            secret: input.secret,
            notes,
            elsewhere: String::new(),
        };
        let input2 = input.clone();
        let check: AskCheck = Arc::new(move |raw: &str| {
            crate::inputs::late_value(&input2, raw)
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        // A signal drops this future: the prompt is withdrawn with it, like a gate's.
        let guard = WithdrawOnDrop(stop);
        let answer = tokio::task::spawn_blocking(move || {
            let _keep = guard;
            p.ask_value(&req, &check, &stop2)
        })
        .await
        .ok()
        .flatten();
        let Some(raw) = answer else {
            return Err(format!("{why} (nobody answered the prompt)"));
        };
        let resolved = crate::inputs::late_value(&input, &raw).map_err(|e| e.to_string())?;
        let value = match &resolved.value {
            InputValue::Secret(values) => {
                sh.env.redactor.add(values);
                None
            }
            InputValue::Plain(v) => Some(v.clone()),
            InputValue::Unknown => None,
        };
        // Recorded before anything uses it: `resume` takes a plain value from here.
        sh.emit(Event::InputGiven {
            input: name.clone(),
            step: step.id.name.clone(),
            secret: input.secret,
            value,
        });
        match sh.env.late.lock() {
            Ok(mut l) => l.push(resolved),
            Err(p) => p.into_inner().push(resolved),
        }
    }
}

/// Whether a `when` is decided without the inputs nobody gave yet: evaluated with them absent
/// (reading an absent one is an error), `mode == 'repair' and ticket != ''` with another mode,
/// or a call's `(call's when) and (step's own)` with the call's false, never reads `ticket`.
/// Then nothing is asked for it; the step asks before it runs, if it runs.
fn decided_without_missing(sh: &Shared, when: &str) -> bool {
    let now = sh.env.inputs_now();
    let known = crate::inputs::Inputs {
        values: now
            .values
            .iter()
            .filter(|r| !matches!(r.value, InputValue::Unknown))
            .cloned()
            .collect(),
    };
    if known.values.len() == now.values.len() {
        return true;
    }
    let ctx = crate::step::context::Ctx::new(&known, &sh.env.results, sh.env.run_json.clone());
    sh.env
        .templates
        .eval(
            crate::template::expression_source(when),
            &ctx.with(Vec::new()),
        )
        .is_ok()
}
