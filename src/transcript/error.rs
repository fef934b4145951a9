//! Why a transcript could not be made, written or attached: a message for the operator and a
//! kind a front end classifies it by.

/// What kind of failure a [`TranscriptError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The operator's request is wrong: an attachment target that is not one.
    Usage,
    /// The template failed to render.
    Template,
    /// The run's journal could not be read or cannot be trusted.
    Journal,
    /// A transcript file could not be written.
    Io,
    /// An attachment needs a credential or setting from the environment that is not set.
    Credentials,
    /// The incident tool or webhook could not be reached or refused the attachment.
    Delivery,
}

/// Why a transcript could not be made, written or attached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct TranscriptError {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
}

impl TranscriptError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> TranscriptError {
        TranscriptError {
            kind,
            message: message.into(),
        }
    }
}

impl From<crate::journal::JournalError> for TranscriptError {
    fn from(e: crate::journal::JournalError) -> TranscriptError {
        TranscriptError::new(ErrorKind::Journal, e.to_string())
    }
}
