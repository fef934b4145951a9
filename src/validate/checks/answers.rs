//! `for_each: { answers: ASK }`: the step that consumes an `ask:` step's answers as they
//! arrive (`invalid-answers`). It starts as soon as the ask starts, so the ask must be one of
//! its direct `needs`, and nothing about the step may wait for the ask to finish.

use super::*;

impl Checker<'_> {
    /// Every `for_each.answers` names an earlier `ask:` step this step needs, consumed by no
    /// other step, and the consuming step has nothing that would wait for the ask's end.
    pub(super) fn answers(&mut self) {
        let rb = self.rb;
        let main = rb.steps.len();
        let mut consumer: HashMap<String, &str> = HashMap::new();
        for (i, step) in self.all_steps() {
            let Some(a) = step.for_each.as_ref().and_then(|fe| fe.answers.as_ref()) else {
                continue;
            };
            let this = step.id.name.as_str();
            let bad = |msg: String, label: &str, help: String| {
                Diagnostic::error("invalid-answers", msg)
                    .with_span(a.span.clone(), label.to_string())
                    .with_help(help)
            };
            let Some(&j) = self.by_var.get(&step_var(&a.name)) else {
                let names = rb.steps.iter().map(|s| s.id.name.as_str());
                let help = did_you_mean(&a.name, names).unwrap_or_else(|| {
                    "`answers:` names the `ask:` step whose answers this step consumes".into()
                });
                let msg = format!(
                    "step `{this}` consumes the answers of `{}`, which is not a step",
                    a.name
                );
                self.push(bad(msg, "no step with this id", help));
                continue;
            };
            let Some((_, ask)) = self.all_steps().nth(j) else {
                continue;
            };
            let ask_id = ask.id.name.clone();
            if !matches!(ask.body.action, Action::Ask(_)) {
                let msg = format!(
                    "step `{this}` consumes the answers of `{ask_id}`, which is a `{}` step, not an `ask:`",
                    ask.body.action.kind()
                );
                let help = "loop over a list with `for_each: { items: … }`; `answers:` is only for `ask:` steps (one item per answer, as each arrives)".to_string();
                self.push(bad(msg, "not an ask step", help));
                continue;
            }
            let needed = i < main
                && j < main
                && step
                    .needs
                    .iter()
                    .any(|n| step_var(&n.name) == step_var(&ask_id));
            if !needed {
                let msg = format!(
                    "step `{this}` consumes the answers of `{ask_id}`, which is not one of its `needs`"
                );
                let help = if i >= main || j >= main {
                    "`finally` steps cannot consume answers as they arrive: loop over `steps.<id>.outputs.values` instead".to_string()
                } else {
                    format!(
                        "add `{ask_id}` to the `needs` of `{this}`: the step starts as soon as `{ask_id}` starts asking"
                    )
                };
                self.push(bad(msg, "not before this step", help));
                continue;
            }
            if let Some(other) = consumer.insert(step_var(&ask_id), this) {
                let msg = format!(
                    "the answers of `{ask_id}` are consumed by both `{other}` and `{this}`"
                );
                let help = format!(
                    "one step consumes the answers as they arrive; others loop over `steps.{}.outputs.values` once `{ask_id}` is done",
                    step_var(&ask_id)
                );
                self.push(bad(msg, "consumed twice", help));
            }
            if step.confirm.is_some() {
                let msg = format!(
                    "step `{this}` consumes answers as they arrive: it cannot have a `confirm:` gate"
                );
                let help = format!(
                    "the gate would be asked while `{ask_id}` is asking; put the gate on `{ask_id}` or on a step before it"
                );
                self.push(bad(msg, "starts while the ask is asking", help));
            }
            if step.max_parallel.is_some_and(|p| p > 1) {
                let msg = format!(
                    "step `{this}` consumes answers one at a time, in the order they arrive: it cannot have `max_parallel`"
                );
                self.push(bad(
                    msg,
                    "items run in arrival order",
                    "remove `max_parallel`".into(),
                ));
            }
            if let Some(w) = &step.when
                && reads_step(&w.src, &ask_id)
            {
                let msg = format!(
                    "the `when` of step `{this}` reads `{ask_id}`, whose answers are not known when `{this}` starts"
                );
                let d = Diagnostic::error("invalid-answers", msg)
                    .with_span(w.span.clone(), "evaluated when the ask starts")
                    .with_help(format!(
                        "decide per answer with `for_each.until`; this `when` may read only what is known before `{ask_id}` is answered"
                    ));
                self.push(d);
            }
        }
    }
}

/// Whether template or expression `src` reads `steps.<id>` (any spelling).
fn reads_step(src: &str, id: &str) -> bool {
    let var = step_var(id);
    let dotted = format!("steps.{var}");
    let ends_word = |rest: &str| {
        !rest
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    };
    src.match_indices(&dotted)
        .any(|(k, m)| ends_word(&src[k + m.len()..]))
        || [format!("steps[\"{id}\"]"), format!("steps['{id}']")]
            .iter()
            .any(|s| src.contains(s.as_str()))
}
