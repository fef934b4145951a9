//! `approve` and `reject` through the shared store (`--store`/`RUNBOOK_STORE`): from any
//! machine, as the authenticated database role, reporting whether the waiting engine took it.

use super::args::AnswerArgs;
use super::error_line;
use crate::event::Decision;
use crate::exit::ExitStatus;
use crate::session::shared::approvals;

/// `runbook approve|reject RUN GATE` on the store `conn`.
pub(crate) fn answer(conn: &str, a: &AnswerArgs, decision: Decision) -> ExitStatus {
    let given = match approvals::give(conn, &a.run_id, &a.gate, decision, a.comment.as_deref()) {
        Ok(g) => g,
        Err(e) => {
            error_line(e);
            return ExitStatus::Invalid;
        }
    };
    let verb = if decision == Decision::Approved {
        "approval"
    } else {
        "rejection"
    };
    println!(
        "{verb} of `{}` given for run {} by role {}",
        a.gate, given.run_id, given.role
    );
    match (&given.waiting, given.taken) {
        (Some((host, pid, operator)), true) => println!(
            "the engine (pid {pid} on {host}, role {operator}) took it: gate `{}` {}",
            a.gate,
            if decision == Decision::Approved {
                "approved by you (the run goes on if no other approval is needed)"
            } else {
                "rejected: the run stops and rolls back"
            }
        ),
        (Some((host, pid, _)), false) => println!(
            "the engine (pid {pid} on {host}) waits at `{}` but has not taken this answer yet",
            a.gate
        ),
        (None, _) => println!(
            "note: no engine waits at `{}` of run {} now: the answer is used when the run gets there (or is resumed)",
            a.gate, given.run_id
        ),
    }
    ExitStatus::Success
}
