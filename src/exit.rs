//! Exit codes: every way a run can end maps to a process exit code here, and only here.

/// How the tool ended. The numbers are a contract with scripts; never change their meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitStatus {
    /// Everything succeeded.
    Success = 0,
    /// A step failed; rollback done.
    StepFailed = 1,
    /// Invalid runbook or usage.
    Invalid = 2,
    /// Declined or aborted by the operator; rollback done.
    Aborted = 3,
    /// Rollback incomplete: needs a human.
    RollbackIncomplete = 4,
    /// The engine itself failed (journal, internal error).
    EngineFailed = 5,
    /// Nothing was done: another run holds the target's lock, or this run's engine is live.
    Busy = 6,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(s: ExitStatus) -> Self {
        std::process::ExitCode::from(s.code())
    }
}

/// The table printed in `--help`.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  a step failed; rollback done
  2  invalid runbook or usage
  3  declined or aborted by the operator; rollback done
  4  rollback incomplete: needs a human
  5  the engine itself failed (journal, internal error)
  6  busy: another run holds the lock (nothing was done)";
