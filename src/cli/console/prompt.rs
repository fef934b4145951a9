//! Gates asked on the terminal: the line prompt and rollback confirmation.

use super::*;

/// Asks gates on the terminal: a line prompt (`y`/`n`/`d`/`a`) that works on any terminal
/// and in a pseudo-terminal driven by tests.
pub(crate) struct TtyPrompter {
    pub(crate) mp: Option<MultiProgress>,
    pub(crate) color: bool,
    pub(crate) lock: Mutex<()>,
}

impl TtyPrompter {
    fn with_suspended<R>(&self, f: impl FnOnce() -> R) -> R {
        let _guard = self.lock.lock();
        match &self.mp {
            Some(mp) => mp.suspend(f),
            None => f(),
        }
    }
}

/// Reads one line from stdin, giving up (`None`) soon after `stop` is set. The terminal is in
/// canonical mode, so once stdin is readable a whole line (or end of input) is there.
pub(crate) fn read_line_until(stop: Option<&AtomicBool>) -> Option<String> {
    use std::io::BufRead;
    loop {
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            return None;
        }
        let mut fds = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut fds, 1, 100) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return None;
        }
        if n == 0 {
            continue;
        }
        let mut line = String::new();
        return match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        };
    }
}

impl TtyPrompter {
    fn ask_inner(&self, req: &GateRequest, stop: Option<&AtomicBool>) -> Option<Decision> {
        let st = Styles::new(self.color);
        self.with_suspended(|| {
            let term = Term::stderr();
            let kind = if req.manual { "MANUAL STEP" } else { "GATE" };
            let _ = term.write_line(&format!(
                "\n{} {}",
                st.warn.apply_to(format!("── {kind}: {} ──", crate::term::visible(&req.step))),
                ""
            ));
            for l in req.message.lines() {
                let _ = term.write_line(&format!("  {}", crate::term::visible(l)));
            }
            if !req.targets.is_empty() {
                let _ = term.write_line(&format!(
                    "  on: {}",
                    crate::term::visible(&req.targets.join(", "))
                ));
            }
            let choices = if req.manual {
                "[d]one / [n]ot done / [s]how details / [a]bort"
            } else {
                "[y]es / [n]o / [s]how details / [a]bort"
            };
            loop {
                let _ = term.write_str(&format!(
                    "{} {choices} (then Enter): ",
                    st.bold.apply_to("?")
                ));
                let Some(answer) = read_line_until(stop) else {
                    if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                        let _ = term.write_line(&format!(
                            "\n  {}",
                            st.warn.apply_to(
                                "prompt withdrawn: answered from another terminal (runbook approve/reject), or the run is stopping"
                            )
                        ));
                        return None;
                    }
                    return Some(Decision::Aborted);
                };
                match answer.trim().to_ascii_lowercase().as_str() {
                    "y" | "yes" if !req.manual => return Some(Decision::Approved),
                    "d" | "done" if req.manual => return Some(Decision::Approved),
                    "n" | "no" | "not done" => return Some(Decision::Declined),
                    "a" | "abort" => return Some(Decision::Aborted),
                    "s" | "show" | "details" => {
                        let _ = term.write_line(&format!("  {}", st.dim.apply_to("will run:")));
                        for l in req.preview.lines() {
                            let _ = term.write_line(&format!("    {}", crate::term::visible(l)));
                        }
                    }
                    _ => {
                        let _ =
                            term.write_line("  please answer with one of the letters in brackets");
                    }
                }
            }
        })
    }
}

impl Prompter for TtyPrompter {
    fn ask_value(
        &self,
        req: &crate::execute::AskRequest,
        check: &crate::execute::AskCheck,
        stop: &AtomicBool,
    ) -> Option<String> {
        self.with_suspended(|| crate::cli::ask_prompt::ask_value(self.color, req, check, stop))
    }

    fn ask(&self, req: &GateRequest) -> Decision {
        self.ask_inner(req, None).unwrap_or(Decision::Aborted)
    }

    fn ask_until(&self, req: &GateRequest, stop: &AtomicBool) -> Option<Decision> {
        self.ask_inner(req, Some(stop))
    }

    fn confirm_rollback(&self, steps: &[String], reason: &str, stop: &AtomicBool) -> Option<bool> {
        let st = Styles::new(self.color);
        self.with_suspended(|| {
            let term = Term::stderr();
            let _ = term.write_line(&format!(
                "\n{} {}",
                st.bad.apply_to("── the run is stopping:"),
                crate::term::visible(reason)
            ));
            let _ = term.write_line(&format!(
                "  completed steps to undo, in this order: {}",
                crate::term::visible(&steps.join(" ← "))
            ));
            loop {
                let _ = term.write_str(&format!(
                    "{} roll back now? [y]es / [n]o (leave as is, needs a human): ",
                    st.bold.apply_to("?")
                ));
                let Some(answer) = read_line_until(Some(stop)) else {
                    if stop.load(Ordering::SeqCst) {
                        let _ = term.write_line("");
                        return None;
                    }
                    return Some(true);
                };
                match answer.trim().to_ascii_lowercase().as_str() {
                    "y" | "yes" | "" => return Some(true),
                    "n" | "no" => return Some(false),
                    _ => {}
                }
            }
        })
    }
}
