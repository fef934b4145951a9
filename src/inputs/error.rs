//! What can be wrong with the inputs of a run: one typed error per problem, each shown as
//! one line (a secret's value is never part of one).

/// One problem with an input (or with how inputs were given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// `-i` or an inputs file names an input the runbook does not take.
    Unknown {
        name: String,
        /// A did-you-mean, if a declared input is close.
        hint: Option<String>,
        /// Every input the runbook takes.
        takes: Vec<String>,
    },
    /// A secret given on the command line or in an inputs file.
    SecretRefused {
        name: String,
        from_env: Option<String>,
    },
    /// Required inputs nobody gave, that the run needs from the start (named all at once).
    Missing(Vec<String>),
    /// A required secret needed from the start, with no terminal to ask it on.
    SecretNotProvided {
        name: String,
        from_env: Option<String>,
    },
    /// A secret shorter than its `min_length` (it could not be masked reliably).
    SecretTooShort {
        name: String,
        len: usize,
        min: usize,
    },
    /// A value that breaks the input's `type`, `allowed` or `pattern`; the message names the
    /// rule (and never a secret's value).
    Invalid { name: String, message: String },
    /// `from_file` could not be read.
    Unreadable {
        name: String,
        secret: bool,
        path: String,
        error: String,
    },
    /// The input's `default` could not be computed.
    Default { name: String, error: String },
    /// An answer at a prompt was empty.
    Empty { name: String },
    /// `-i` without `KEY=VALUE`.
    NotKeyValue(String),
    /// An inputs file that is not a mapping, or not YAML.
    InputsFile { path: String, message: String },
    /// An inputs file that could not be read.
    Load(String),
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputError::Unknown { name, hint, takes } => {
                let hint = hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default();
                let takes = if takes.is_empty() {
                    "no inputs".to_string()
                } else {
                    takes.join(", ")
                };
                write!(
                    f,
                    "unknown input `{name}`{hint}; this runbook takes: {takes}"
                )
            }
            InputError::SecretRefused { name, from_env } => {
                let how = match from_env {
                    Some(var) => format!("set it in the environment variable {var}"),
                    None => "it will be asked for with a hidden prompt".to_string(),
                };
                write!(
                    f,
                    "input `{name}` is secret and is refused on the command line and in inputs files (they leak into shell history and process lists); {how}"
                )
            }
            InputError::Missing(names) => {
                let flags: Vec<String> = names.iter().map(|m| format!("-i {m}=…")).collect();
                let quoted: Vec<String> = names.iter().map(|m| format!("`{m}`")).collect();
                write!(
                    f,
                    "missing required input{} {}: pass {}",
                    if names.len() > 1 { "s" } else { "" },
                    quoted.join(", "),
                    flags.join(" ")
                )
            }
            InputError::SecretNotProvided { name, from_env } => {
                let how = from_env
                    .as_ref()
                    .map_or(String::new(), |v| format!(" (set {v})"));
                write!(
                    f,
                    "secret input `{name}` was not provided{how} and cannot be prompted for without a terminal"
                )
            }
            InputError::SecretTooShort { name, len, min } => write!(
                f,
                "input `{name}` (secret-too-short): the secret is {len} characters, shorter than {min}; a short secret cannot be masked reliably in output. Use a longer one, or set `min_length:` on the input to accept it (it is then masked only where it stands as a whole word)"
            ),
            InputError::Invalid { message, .. } => f.write_str(message),
            InputError::Unreadable {
                name,
                secret,
                path,
                error,
            } => write!(
                f,
                "{}input `{name}`: cannot read {path}: {error}",
                if *secret { "secret " } else { "" }
            ),
            InputError::Default { name, error } => {
                write!(f, "default of input `{name}`: {error}")
            }
            InputError::Empty { name } => write!(f, "input `{name}`: an answer is needed"),
            InputError::NotKeyValue(s) => write!(f, "`{s}` is not KEY=VALUE"),
            InputError::InputsFile { path, message } => write!(f, "{path}: {message}"),
            InputError::Load(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for InputError {}

/// For callers that still report errors as text (`--answers FILE` reuses the inputs-file
/// reader).
impl From<InputError> for String {
    fn from(e: InputError) -> String {
        e.to_string()
    }
}
