//! Secret inputs asked when first needed: at a terminal, an input that is not `required` and
//! was not provided is not asked at the start (a branch that uses it may be skipped); it is
//! asked here, through the same prompter as gates, right before the first step that uses it
//! runs, and never if that step is skipped. Without a terminal the step fails naming itself
//! and the input (`step::lazy`).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::gate::WithdrawOnDrop;
use super::shared::Shared;
use super::{AskCheck, AskRequest};
use crate::model::Step;

/// Asks, one by one, every input `step` uses that nobody provided (`only`: in this template
/// source of the step, its `when`). `Err`: why the step cannot run (no terminal, nobody
/// answered, or the prompt was withdrawn by a signal).
pub(super) async fn ask_missing(
    sh: &Arc<Shared>,
    step: &Step,
    only: Option<&str>,
) -> Result<(), String> {
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
        let req = AskRequest {
            step: step.id.name.clone(),
            prompt,
            secret: true,
            notes: format!(
                "needed now by step `{}`; hidden input, never recorded",
                step.id.name
            ),
            elsewhere: String::new(),
        };
        let input2 = input.clone();
        let check: AskCheck =
            Arc::new(move |raw: &str| crate::inputs::late_secret(&input2, raw).map(|_| ()));
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
        let resolved =
            crate::inputs::late_secret(&input, &raw).map_err(|e| format!("input `{name}`: {e}"))?;
        if let crate::inputs::InputValue::Secret(values) = &resolved.value {
            sh.env.redactor.add(values);
        }
        match sh.env.late.lock() {
            Ok(mut l) => l.push(resolved),
            Err(p) => p.into_inner().push(resolved),
        }
    }
}
