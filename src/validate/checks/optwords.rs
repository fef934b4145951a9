//! The `--` lint: a value that stands as a whole argument word of a program known to take
//! options is refused at run time if it starts with `-` (template/optword.rs); the lint says
//! so at validate time, with the fix.

use super::*;

/// Values no option can come from: an `int` or `bool` input, an input whose `allowed:` values
/// or `pattern:` keep it from starting with `-`, a host's name and the run's own fields.
fn cannot_start_with_dash(rb: &Runbook, root: &str) -> bool {
    if matches!(root, "host" | "run" | "item_index") {
        return true;
    }
    let Some(input) = rb.input(root) else {
        return false;
    };
    if matches!(input.ty, InputType::Int | InputType::Bool) {
        return true;
    }
    if !input.allowed.is_empty() {
        return input.allowed.iter().all(|a| !a.starts_with('-'));
    }
    input.pattern.as_ref().is_some_and(|p| {
        [
            "-",
            "-a",
            "--a",
            "-a=b",
            "--to-command=x",
            "-oProxyCommand=x",
        ]
        .iter()
        .all(|probe| !p.is_match(probe))
    })
}

impl<'a> Checker<'a> {
    pub(super) fn option_words(&mut self, t: &Tmpl) {
        for (root, range, program) in crate::template::optword::unended_option_words(&t.src) {
            if cannot_start_with_dash(self.rb, &root) {
                continue;
            }
            let written = t.src.get(range.clone()).unwrap_or_default().to_string();
            let span = self.map_range(t, Some(range));
            self.push(
                Diagnostic::warning(
                    "value-may-be-option",
                    format!("`{written}` is a whole argument of `{program}`, which reads options"),
                )
                .with_span(span, "a value starting with `-` would be an option")
                .with_help(format!(
                    "write `--` before it (`{program} … -- {written}`) so `{program}` stops reading options there; otherwise the run stops if the value starts with `-`. Or join it to text (`./{written}`), or constrain the input (`pattern:`, `allowed:`)"
                )),
            );
        }
    }
}
