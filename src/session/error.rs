//! The one error type of the session layer: a message for the operator and a kind a front
//! end classifies it by (exit status, retry, who to tell), so nothing has to match on text.

/// What kind of failure a [`SessionError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The operator named something that is not there or not valid: a run id, a prefix
    /// matching several runs, a lock, a run already in the store (exit 2).
    Usage,
    /// The shared store could not be reached or failed (exit 5; retry when it is back).
    Store,
    /// Refused to protect a run: a directory another user could tamper with, a live holder,
    /// a journal whose chain is broken.
    Refused,
    /// Reading or writing local files failed.
    Io,
}

/// Why a session operation (finding, copying, starting, answering runs) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct SessionError {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
}

impl SessionError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> SessionError {
        SessionError {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> SessionError {
        SessionError::new(ErrorKind::Usage, message)
    }

    pub(crate) fn store(message: impl Into<String>) -> SessionError {
        SessionError::new(ErrorKind::Store, message)
    }

    pub(crate) fn refused(message: impl Into<String>) -> SessionError {
        SessionError::new(ErrorKind::Refused, message)
    }

    pub(crate) fn io(message: impl Into<String>) -> SessionError {
        SessionError::new(ErrorKind::Io, message)
    }

    /// The same error, its message prefixed (`run ID: …`).
    pub(crate) fn prefixed(self, prefix: &str) -> SessionError {
        SessionError {
            kind: self.kind,
            message: format!("{prefix}{}", self.message),
        }
    }
}

impl From<crate::journal::JournalError> for SessionError {
    fn from(e: crate::journal::JournalError) -> SessionError {
        use crate::journal::JournalError as J;
        let kind = match &e {
            _ if e.damaged() => ErrorKind::Refused,
            J::NoAnswers(_) => ErrorKind::Usage,
            _ => ErrorKind::Io,
        };
        SessionError::new(kind, e.to_string())
    }
}

impl From<crate::journal::lock::UnlockError> for SessionError {
    fn from(e: crate::journal::lock::UnlockError) -> SessionError {
        use crate::journal::lock::UnlockError as U;
        let kind = match &e {
            U::NotFound { .. } => ErrorKind::Usage,
            U::Live { .. } | U::Resumable { .. } => ErrorKind::Refused,
            U::Remove(_) => ErrorKind::Io,
        };
        SessionError::new(kind, e.to_string())
    }
}
