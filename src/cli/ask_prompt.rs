//! The terminal side of `ask:`: a line prompt, without echo for a secret, asked again until
//! the answer has the right type and matches the pattern; withdrawn when the answer comes
//! from elsewhere. Also the hidden prompt `runbook answer` reads a secret with.

use std::sync::atomic::{AtomicBool, Ordering};

use console::Term;

use super::console::{Styles, read_line_until};
use crate::execute::{AskCheck, AskRequest};

/// Turns terminal echo off on stdin while alive (restored on drop).
pub(crate) struct NoEcho(Option<libc::termios>);

impl NoEcho {
    pub(crate) fn new() -> NoEcho {
        // SAFETY: termios is plain data; tcgetattr fills it for fd 0 or fails.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(0, &mut t) } != 0 {
            return NoEcho(None);
        }
        let saved = t;
        t.c_lflag &= !(libc::ECHO | libc::ECHONL);
        t.c_lflag |= libc::ICANON;
        // SAFETY: a termios obtained from tcgetattr, modified, for fd 0.
        if unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) } != 0 {
            return NoEcho(None);
        }
        NoEcho(Some(saved))
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            // SAFETY: restoring the settings read in `new`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, t);
            }
        }
    }
}

/// Asks `req` on the terminal until `check` accepts the answer. `None`: an empty line, end
/// of input, or `stop` set (answered elsewhere).
pub(crate) fn ask_value(
    color: bool,
    req: &AskRequest,
    check: &AskCheck,
    stop: &AtomicBool,
) -> Option<String> {
    let st = Styles::new(color);
    let term = Term::stderr();
    let _ = term.write_line(&format!(
        "\n{}",
        st.warn.apply_to(format!("── ASK: {} ──", req.step))
    ));
    for l in req.prompt.lines() {
        let _ = term.write_line(&format!("  {l}"));
    }
    let _ = term.write_line(&format!("  {}", st.dim.apply_to(&req.notes)));
    if !req.elsewhere.is_empty() {
        let _ = term.write_line(&format!("  {}", st.dim.apply_to(&req.elsewhere)));
    }
    loop {
        let _ = term.write_str(&format!(
            "{} {}: ",
            st.bold.apply_to("?"),
            if req.secret {
                "answer (hidden)"
            } else {
                "answer"
            }
        ));
        let line = {
            let _echo = req.secret.then(NoEcho::new);
            read_line_until(Some(stop))
        };
        if req.secret {
            let _ = term.write_line("");
        }
        let Some(mut line) = line else {
            if stop.load(Ordering::SeqCst) {
                let _ = term.write_line(&format!(
                    "  {}",
                    st.warn.apply_to(
                        "prompt withdrawn: answered from another terminal, or the run is stopping"
                    )
                ));
            }
            return None;
        };
        let answer = line.trim_end_matches(['\r', '\n']).to_string();
        wipe(&mut line);
        if answer.is_empty() {
            return None;
        }
        match check(&answer) {
            Ok(()) => return Some(answer),
            Err(why) => {
                let _ = term.write_line(&format!("  {}; asked again", st.bad.apply_to(why)));
            }
        }
    }
}

/// Overwrites a string's bytes before it is dropped (best effort).
pub(crate) fn wipe(s: &mut String) {
    let n = s.len();
    s.clear();
    s.extend(std::iter::repeat_n('\0', n));
    s.clear();
}

/// Reads one hidden line from the terminal (`runbook answer` for a secret).
pub(crate) fn read_hidden(label: &str) -> Option<String> {
    let term = Term::stderr();
    let _ = term.write_str(&format!("{label} (hidden): "));
    let line = {
        let _echo = NoEcho::new();
        read_line_until(None)
    };
    let _ = term.write_line("");
    line.map(|l| l.trim_end_matches(['\r', '\n']).to_string())
}
