//! `show`'s state line while the engine asks "roll back now?" at its terminal.

use crate::journal::state::RunState;

/// `waiting for the answer to "roll back now?" (rollback of `a`, `b`) at the terminal of…`.
pub(super) fn state_line(state: &RunState) -> String {
    let RunState::RollbackQuestion {
        engine,
        since,
        steps,
    } = state
    else {
        return state.label();
    };
    let steps: Vec<String> = steps.iter().map(|s| format!("`{s}`")).collect();
    format!(
        "waiting for the answer to \"roll back now?\" (rollback of {}) at the terminal of engine pid {} ({}@{}) since {}",
        steps.join(", "),
        engine.pid,
        engine.user,
        engine.host,
        super::inspect::short_time(since)
    )
}
