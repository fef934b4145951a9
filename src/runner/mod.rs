//! Step runners: one per way of running a command (local shell, SSH) behind one interface,
//! plus the HTTP client. The engine decides *what* to run; runners only run it.

pub(crate) mod ask_socket;
pub(crate) mod capture;
pub(crate) mod http;
pub(crate) mod local;
pub(crate) mod ssh;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::event::Stream;

/// A shell command to run, fully rendered.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub command: String,
    /// Extra environment (step `env`, secrets as `RUNBOOK_SECRET_*`, run metadata).
    pub env: Vec<(String, String)>,
    /// Variables of the engine's own environment a command must not inherit (secret sources).
    pub env_remove: Vec<String>,
    pub stdin: Option<String>,
    pub timeout: Option<Duration>,
    /// Where full stdout/stderr go (`NAME.stdout.log`, `NAME.stderr.log`); `None` keeps none.
    pub log_base: Option<PathBuf>,
    /// Masks secrets in the log files.
    pub redactor: Option<Arc<crate::redact::Redactor>>,
}

/// How a command ended.
#[derive(Debug, Clone, Default)]
pub struct CommandOutcome {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub cancelled: bool,
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
    /// The command could not be run at all (spawn failure, connection refused…): one line.
    pub error: Option<String>,
}

/// Receives each complete output line as it arrives.
pub(crate) type LineSink = Arc<dyn Fn(Stream, String) + Send + Sync>;

/// Cancellation shared by everything a run started: flips to true once, on abort.
#[derive(Debug, Clone)]
pub struct Cancel(pub watch::Receiver<bool>);

impl Cancel {
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once cancelled (never, if the sender is gone without cancelling).
    pub async fn cancelled(&mut self) {
        loop {
            if *self.0.borrow_and_update() {
                return;
            }
            if self.0.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Why a step (or one attempt of it) failed, classified so a front end can tell a typo in a
/// template from a host that is down. The message is one line, secrets masked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub kind: StepErrorKind,
    pub message: String,
}

/// The classes of [`StepError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepErrorKind {
    /// A template could not be rendered (an undefined value, a value unfit for its place),
    /// or `when`/`for_each`/`outputs` could not be evaluated.
    Render,
    /// The hosts of `on:` could not be resolved.
    Hosts,
    /// Nothing answered: a command could not be started or reached, a request got no
    /// response (connection refused, TLS, DNS, redirects), SSH is not available.
    Unreachable,
    /// It ran, and the result did not meet the step's expectations (exit code, HTTP status,
    /// output, JSON, `that`, `until` never held).
    Expectation,
    /// It ran out of time.
    Timeout,
    /// It was stopped: the run was aborted or interrupted.
    Cancelled,
    /// A person declined, aborted or did not confirm.
    Operator,
    /// The journal could not be written, so it was not started (fail-secure).
    Journal,
}

impl StepError {
    pub fn new(kind: StepErrorKind, message: impl Into<String>) -> StepError {
        StepError {
            kind,
            message: message.into(),
        }
    }

    /// A template that could not be rendered or evaluated.
    pub fn render(message: impl Into<String>) -> StepError {
        StepError::new(StepErrorKind::Render, message)
    }

    /// Hosts of `on:` that could not be resolved.
    pub fn hosts(message: impl Into<String>) -> StepError {
        StepError::new(StepErrorKind::Hosts, message)
    }
}

/// A boxed future, for runners behind `dyn`.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs shell commands somewhere (here, or on a remote host).
pub trait CommandRunner: Send + Sync {
    /// Runs `spec`; streams lines to `sink`; stops the command (and everything it started)
    /// on timeout or when `cancel` fires.
    fn run<'a>(
        &'a self,
        spec: CommandSpec,
        sink: LineSink,
        cancel: Cancel,
    ) -> BoxFuture<'a, CommandOutcome>;
}

/// A resolved SSH destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SshTarget {
    /// The runbook's host name (`lb`, `node`).
    pub name: String,
    pub user: Option<String>,
    pub address: String,
    pub port: Option<u16>,
    /// ProxyJump (`user@host:port`), already resolved.
    pub jump: Option<String>,
    pub identity_file: Option<String>,
    pub known_hosts: Option<String>,
}

impl SshTarget {
    /// `user@address:port`, as shown to people.
    pub fn destination(&self) -> String {
        crate::fmt::destination(self.user.as_deref(), &self.address, self.port)
    }
}

/// Gives a runner for a remote host (one multiplexed connection per host, reused).
pub trait RemoteRunners: Send + Sync {
    fn runner(&self, target: &SshTarget) -> Arc<dyn CommandRunner>;
    /// Closes every connection (end of run).
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// An HTTP request, fully rendered.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// Names of headers whose value holds a secret: dropped on a cross-origin redirect (as
    /// are `Authorization`, `Cookie`, `X-Vault-Token`… whatever their value).
    pub secret_headers: Vec<String>,
    pub query: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub json_body: bool,
    pub timeout: Option<Duration>,
    pub follow_redirects: bool,
    pub ca_cert: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub insecure: bool,
}

/// An HTTP response.
#[derive(Debug, Clone, Default)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub json: Option<serde_json::Value>,
    pub duration: Duration,
    /// Where the response came from when redirects were followed (without the query).
    pub redirected_to: Option<String>,
}

/// Sends HTTP requests. The error is one line naming the URL and the cause.
pub trait HttpClient: Send + Sync {
    fn send<'a>(
        &'a self,
        req: HttpRequest,
        cancel: Cancel,
    ) -> BoxFuture<'a, Result<HttpResponse, StepError>>;
}
