//! `runbook exec`: resolve inputs, set up observers, gates and signals, run, summarise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::console::{Console, JsonLines, TtyPrompter, summary};
use super::{
    ExecArgs, OutputFormat, ProgressMode, error_line, input_errors, load_runbook, provided,
};
use crate::execute::capture::create_private_dir;
use crate::execute::event::Decision;
use crate::execute::{self, Answers, Observer, Options, Services, current_host, current_user};
use crate::exit::ExitStatus;
use crate::plan::inputs;

/// Where runs are recorded: `--runs-dir`, `$RUNBOOK_RUNS_DIR`, or `.runbook/runs`.
pub(crate) fn runs_dir(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("RUNBOOK_RUNS_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".runbook/runs"))
}

/// A new run id: sortable by time, readable, unique enough (`20261126-090102-vault-crash-3f9a`).
pub(crate) fn new_run_id(runbook: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(now.timestamp().as_nanosecond() as u128);
    let name: String = runbook
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!(
        "{}-{name}-{:04x}",
        now.strftime("%Y%m%d-%H%M%S"),
        h.finish() & 0xffff
    )
}

/// Reads `--answers FILE`: a mapping of step id to yes/no/abort/done.
fn read_answers(path: &Path) -> Result<HashMap<String, Decision>, String> {
    let pairs = inputs::read_inputs_file(path)?;
    let mut out = HashMap::new();
    for (k, v) in pairs {
        let text = match &v {
            serde_json::Value::Bool(true) => "yes".to_string(),
            serde_json::Value::Bool(false) => "no".to_string(),
            serde_json::Value::String(s) => s.to_ascii_lowercase(),
            other => other.to_string(),
        };
        let d = match text.as_str() {
            "yes" | "y" | "approve" | "approved" | "done" => Decision::Approved,
            "no" | "n" | "decline" | "declined" | "not done" => Decision::Declined,
            "abort" => Decision::Aborted,
            _ => {
                return Err(format!(
                    "{}: `{k}: {text}` must be yes, no, done or abort",
                    path.display()
                ));
            }
        };
        out.insert(k, d);
    }
    Ok(out)
}

/// Counts SIGINT/SIGTERM; the engine aborts on the first and stops unwinding on the second.
pub(crate) fn signal_counter() -> watch::Receiver<u32> {
    let (tx, rx) = watch::channel(0u32);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tx.send_modify(|n| *n += 1);
        }
    });
    rx
}

/// SSH options from the flags (files must exist: a typo must not silently fall back).
pub(crate) fn ssh_options(a: &super::SshArgs) -> crate::execute::runner::ssh::SshOptions {
    crate::execute::runner::ssh::SshOptions {
        config_file: a.ssh_config.clone(),
        known_hosts: a.known_hosts.clone(),
        connect_timeout: None,
    }
}

pub(crate) fn cmd_exec(a: &ExecArgs, color: bool) -> ExitStatus {
    let rb = match load_runbook(&a.file, color, false) {
        Ok(rb) => rb,
        Err(s) => return s,
    };
    let provided = match provided(&a.inputs) {
        Ok(p) => p,
        Err(s) => return s,
    };
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let mut prompt_secret = |input: &crate::model::Input| -> Option<String> {
        if !interactive {
            return None;
        }
        let label = if input.description.is_empty() {
            input.name.clone()
        } else {
            format!("{} ({})", input.name, input.description)
        };
        dialoguer::Password::new()
            .with_prompt(label)
            .allow_empty_password(false)
            .interact()
            .ok()
    };
    for f in [&a.ssh.ssh_config, &a.ssh.known_hosts]
        .into_iter()
        .flatten()
    {
        if !f.is_file() {
            error_line(format!("{} does not exist", f.display()));
            return ExitStatus::Invalid;
        }
    }
    let resolved = match inputs::resolve(&rb, &provided, Some(&mut prompt_secret)) {
        Ok(r) => r,
        Err(errors) => return input_errors(&errors),
    };
    let mut answers = Answers {
        yes: a.yes,
        approve: a.approve.iter().cloned().collect(),
        file: HashMap::new(),
    };
    if let Some(f) = &a.answers {
        match read_answers(f) {
            Ok(m) => answers.file = m,
            Err(e) => {
                error_line(e);
                return ExitStatus::Invalid;
            }
        }
    }
    for id in answers.approve.iter().chain(answers.file.keys()) {
        if rb.step(id).is_none() && !rb.finally.iter().any(|s| &s.id.name == id) {
            error_line(format!(
                "--approve/--answers names `{id}`, which is not a step of {}",
                rb.name
            ));
            return ExitStatus::Invalid;
        }
    }
    let run_id = new_run_id(&rb.name);
    let run_dir = runs_dir(a.runs_dir.as_deref()).join(&run_id);
    if let Err(e) = create_private_dir(&run_dir) {
        error_line(format!(
            "cannot create the run directory {}: {e}",
            run_dir.display()
        ));
        return ExitStatus::EngineFailed;
    }
    let tty_progress = match a.progress {
        ProgressMode::Auto => std::io::stderr().is_terminal(),
        ProgressMode::Tty => true,
        ProgressMode::Plain => false,
    };
    let (console, mp) = Console::new(tty_progress, color, rb.steps.len() + rb.finally.len());
    let mut observers: Vec<Box<dyn Observer>> = vec![Box::new(console)];
    if a.output == OutputFormat::Json {
        observers.push(Box::new(JsonLines));
    }
    if a.no_rollback {
        eprintln!(
            "{}",
            super::console::Styles::new(color)
                .bad
                .apply_to("!!! --no-rollback: if this run fails, NOTHING will be undone !!!")
        );
    }
    let prompter: Option<Arc<dyn execute::Prompter>> = if interactive {
        Some(Arc::new(TtyPrompter {
            mp,
            color,
            lock: Mutex::new(()),
        }))
    } else {
        None
    };
    let opts = Options {
        run_id,
        run_dir,
        file: a.file.display().to_string(),
        parallel: a.parallel,
        answers,
        no_rollback: a.no_rollback,
        confirm_rollback: interactive && !a.yes,
        user: current_user(),
        host: current_host(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error_line(format!("cannot start the async runtime: {e}"));
            return ExitStatus::EngineFailed;
        }
    };
    let has_remote = !rb.hosts.is_empty();
    let remote: Option<Arc<dyn crate::execute::runner::RemoteRunners>> = if has_remote {
        let opts = ssh_options(&a.ssh);
        match crate::execute::runner::ssh::SshPool::new(opts) {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                error_line(format!("cannot prepare SSH control sockets: {e}"));
                return ExitStatus::EngineFailed;
            }
        }
    } else {
        None
    };
    let services = Services {
        prompter,
        remote,
        http: Some(Arc::new(
            crate::execute::runner::http::ReqwestClient::default(),
        )),
    };
    let outcome = runtime.block_on(async {
        let signals = signal_counter();
        execute::execute(
            Arc::new(rb),
            Arc::new(resolved),
            opts,
            observers,
            services,
            signals,
            Default::default(),
        )
        .await
    });
    eprint!("{}", summary(&outcome, color));
    runtime.shutdown_background();
    outcome.status
}
