//! The table printed when a run ends.

use super::*;

/// The table printed when the run ends.
pub(crate) fn summary(
    outcome: &RunOutcome,
    titles: &HashMap<String, String>,
    color: bool,
) -> String {
    let st = Styles::new(color);
    let mut out = String::new();
    let w = outcome
        .steps
        .iter()
        .map(|s| s.id.len())
        .max()
        .unwrap_or(4)
        .max(4);
    out.push_str(&format!(
        "\n{:<w$}  {:<10}  {:>8}  {}\n",
        "STEP", "STATUS", "TIME", "TITLE / HOSTS / NOTE"
    ));
    for s in &outcome.steps {
        let status = s.status.as_str();
        let styled = match s.status {
            StepStatus::Succeeded => st.ok.apply_to(format!("{status:<10}")),
            StepStatus::Skipped | StepStatus::NotRun | StepStatus::Running => {
                st.dim.apply_to(format!("{status:<10}"))
            }
            _ => st.bad.apply_to(format!("{status:<10}")),
        };
        let mut note = titles.get(&s.id).cloned().unwrap_or_default();
        if !s.hosts.is_empty() {
            if !note.is_empty() {
                note.push_str("  ");
            }
            note.push_str(&format!("on {}", s.hosts.join(",")));
        }
        if let Some(e) = &s.error {
            if !note.is_empty() {
                note.push_str("  ");
            }
            note.push_str(&first_line(e));
        }
        let time = if s.duration_ms > 0 {
            crate::fmt::human_duration(Duration::from_millis(s.duration_ms))
        } else {
            String::new()
        };
        // Errors, titles and host names can carry text from outside (a host's stderr, an
        // answer, an input): never raw to the terminal.
        let note = crate::term::visible(&note);
        let id = crate::term::visible(&s.id);
        let row = format!("{id:<w$}  {styled}  {time:>8}  {note}");
        out.push_str(row.trim_end());
        out.push('\n');
    }
    if !outcome.rollbacks.is_empty() {
        out.push_str("\nRollback (most recent first):\n");
        for r in &outcome.rollbacks {
            let err = r
                .error
                .as_deref()
                .map(|e| format!("  {}", crate::term::visible(e)))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {:<w$}  {}{err}\n",
                crate::term::visible(&r.step),
                r.status.as_str()
            ));
        }
    }
    let head = match outcome.status {
        crate::exit::ExitStatus::Success => st.ok.apply_to("✔ run succeeded".to_string()),
        _ => st.bad.apply_to(format!(
            "✖ run ended: {}",
            crate::term::visible(&outcome.reason)
        )),
    };
    out.push_str(&format!(
        "\n{head} (exit {}, run {})\n",
        outcome.status.code(),
        outcome.run_id
    ));
    out
}
