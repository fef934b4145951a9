//! `runbook exec`: resolve inputs, set up observers, gates and signals, run, summarise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::console::{Console, JsonLines, TtyPrompter, summary};
use super::{
    ExecArgs, OutputFormat, ProgressMode, error_line, input_errors, load_runbook, provided,
};
use crate::event::Decision;
use crate::event::Observer;
use crate::execute::{self, Answers, Options, Services};
use crate::exit::ExitStatus;
use crate::inputs;
use crate::session::RunId;
use crate::session::request::RunRequest;
use crate::session::store::Store;
use crate::sys::{current_host, current_user};

/// Most steps running at once unless `--parallel` says otherwise.
pub(crate) const DEFAULT_PARALLEL: usize = 4;

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

/// Counts SIGINT/SIGTERM/SIGHUP; the engine aborts on the first and stops unwinding on the
/// second. SIGHUP (terminal closed, SSH session to the jump box dropped) unwinds like Ctrl-C.
pub(crate) fn signal_counter() -> watch::Receiver<u32> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = watch::channel(0u32);
    // Registered before the engine starts anything (not later, inside the task).
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return rx;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
            tx.send_modify(|n| *n += 1);
        }
    });
    rx
}

/// SSH options from the flags.
pub(crate) fn ssh_options(a: &super::SshArgs) -> crate::runner::ssh::SshOptions {
    crate::runner::ssh::SshOptions {
        config_file: a.ssh_config.clone(),
        known_hosts: a.known_hosts.clone(),
        connect_timeout: Some(a.connect_timeout()),
    }
}

/// Asks for a secret with a hidden prompt (terminal only). An input that is not `required`
/// is not asked here: the engine asks it right before the first step that uses it (never,
/// if that step is skipped).
pub(crate) fn secret_prompter(
    interactive: bool,
) -> impl FnMut(&crate::model::Input) -> Option<String> {
    move |input: &crate::model::Input| {
        if !interactive || !input.required {
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
    }
}

fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
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
    let mut prompt = secret_prompter(interactive());
    let resolved = match inputs::resolve(&rb, &provided, Some(&mut prompt)) {
        Ok(r) => r,
        Err(errors) => return input_errors(&errors),
    };
    let bytes = crate::load::read_bounded(&a.file).unwrap_or_default();
    let file_abs = std::fs::canonicalize(&a.file).unwrap_or_else(|_| a.file.clone());
    let run_id = RunId::new(&rb.name).to_string();
    let store = match super::store::open(a.store.as_deref(), a.runs_dir.as_deref()) {
        Ok(s) => s,
        Err(s) => return s,
    };
    let req = RunRequest {
        rb,
        inputs: resolved,
        file: file_abs,
        file_sha256: crate::validate::composition_sha256(&a.file, &bytes),
        run_id,
        prior: execute::Prior::default(),
        live: None,
        no_journal: a.no_journal,
    };
    launch(req, store.as_ref(), &a.run, color)
}

/// Every step's title rendered with the run's inputs (secrets masked); the raw text if it
/// reads something only known later.
pub(crate) fn step_titles(
    rb: &crate::model::Runbook,
    resolved: &inputs::Inputs,
) -> HashMap<String, String> {
    let t = crate::template::Templates::new(crate::template::SecretDisplay::Mask);
    let ctx = crate::plan::plan_context(resolved);
    rb.steps
        .iter()
        .chain(rb.finally.iter())
        .filter_map(|s| {
            let title = s.title.as_ref()?;
            let text = t
                .render(&title.src, &ctx, crate::template::Target::Text)
                .unwrap_or_else(|_| title.src.clone());
            Some((s.id.name.clone(), crate::term::visible(&text).into_owned()))
        })
        .collect()
}

/// Runs (or resumes) a run in `store`: lock, journal, observers, services, engine,
/// transcript, attach.
pub(crate) fn launch(
    req: RunRequest,
    store: &dyn Store,
    f: &super::RunOpts,
    color: bool,
) -> ExitStatus {
    let meta = req.meta();
    let RunRequest {
        rb,
        inputs: resolved,
        file,
        file_sha256,
        run_id,
        prior,
        live,
        no_journal,
    } = req;
    let answers = match checked_options(&rb, f) {
        Ok(a) => a,
        Err(e) => {
            error_line(e);
            return ExitStatus::Invalid;
        }
    };
    let user = current_user();
    let started = match crate::session::start::start(&rb, &resolved, store, &run_id, &user, live) {
        Ok(s) => s,
        Err(e) => {
            error_line(e.message);
            return e.status;
        }
    };
    let crate::session::start::Started {
        run_dir,
        lock_key,
        mut lock,
        live: _live,
    } = started;
    if let Err(e) = super::remember::save(&run_dir, f) {
        error_line(format!("cannot record the run's options: {e}"));
        return ExitStatus::EngineFailed;
    }
    let interactive = interactive();
    let tty_progress = match f.progress {
        ProgressMode::Auto => std::io::stderr().is_terminal(),
        ProgressMode::Tty => true,
        ProgressMode::Plain => false,
    };
    let titles = step_titles(&rb, &resolved);
    let (console, mp) = Console::new(
        tty_progress,
        color,
        rb.steps.len() + rb.finally.len(),
        titles.clone(),
        format!("runbook logs{} {run_id}", store.flags()),
    );
    let journal = if no_journal {
        None
    } else {
        match store.begin(&meta, &run_dir) {
            Ok(sink) => Some((run_dir.as_path(), sink)),
            Err(e) if e.busy => {
                error_line(e.message);
                return ExitStatus::Busy;
            }
            Err(e) => {
                error_line(format!("cannot record run {run_id}: {}", e.message));
                return ExitStatus::EngineFailed;
            }
        }
    };
    let observers = match observers(console, f.output, journal) {
        Ok(o) => o,
        Err(e) => {
            error_line(e);
            return ExitStatus::EngineFailed;
        }
    };
    let st = super::console::Styles::new(color);
    if f.no_rollback {
        eprintln!(
            "{}",
            st.bad
                .apply_to("!!! --no-rollback: if this run fails, NOTHING will be undone !!!")
        );
    }
    if no_journal {
        eprintln!(
            "{}",
            st.warn.apply_to(
                "--no-journal: this run cannot be resumed, approved remotely or transcribed"
            )
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
    let runs_flag = store.flags();
    // A store that authenticates people (PostgreSQL): the operator is the database role.
    let user = store.identity().unwrap_or(user);
    let remote_answers = if no_journal {
        None
    } else {
        match store.answers(&run_dir, &run_id) {
            Ok(a) => Some(a),
            Err(e) => {
                error_line(e);
                return ExitStatus::EngineFailed;
            }
        }
    };
    let opts = Options {
        run_id: run_id.clone(),
        run_dir: run_dir.clone(),
        file: file.display().to_string(),
        parallel: f.parallel.unwrap_or(DEFAULT_PARALLEL),
        answers,
        no_rollback: f.no_rollback,
        confirm_rollback: interactive && !f.yes,
        user,
        host: current_host(),
        file_sha256,
        lock: lock_key.clone(),
        remote: remote_answers.map(|answers| execute::RemoteGates {
            answers,
            wait: !f.no_wait,
            approve_cmd: format!("runbook approve{runs_flag} {run_id}"),
        }),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error_line(format!("cannot start the async runtime: {e}"));
            return ExitStatus::EngineFailed;
        }
    };
    let remote: Option<Arc<dyn crate::runner::RemoteRunners>> = if rb.hosts.is_empty() {
        None
    } else {
        match crate::runner::ssh::SshPool::new(ssh_options(&f.ssh)) {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                error_line(format!("cannot prepare SSH control sockets: {e}"));
                return ExitStatus::EngineFailed;
            }
        }
    };
    let services = Services {
        local: None,
        prompter,
        remote,
        http: Some(Arc::new(crate::runner::http::ReqwestClient::default())),
    };
    let rb = Arc::new(rb);
    let outcome = runtime.block_on(async {
        let signals = signal_counter();
        execute::execute(
            rb.clone(),
            Arc::new(resolved),
            opts,
            observers,
            services,
            signals,
            prior,
        )
        .await
    });
    eprint!("{}", summary(&outcome, &titles, color));
    if let Some(l) = &lock
        && l.lost()
    {
        eprintln!(
            "warning: the store's session holding lock `{}` ended during the run: the lock did not protect it from then on",
            lock_key.as_deref().unwrap_or("?")
        );
    }
    if outcome.resumable {
        // Resumable: keep the lock for `runbook resume`.
        if let Some(l) = &mut lock {
            l.keep();
        }
        eprintln!("resume with: runbook resume{runs_flag} {run_id}");
    }
    if outcome.status == ExitStatus::RollbackIncomplete && !no_journal {
        eprintln!(
            "finish the unwinding with: runbook rollback{runs_flag} {run_id}   (see what is left: runbook show{runs_flag} {run_id})"
        );
    }
    if !no_journal && outcome.status != ExitStatus::EngineFailed {
        transcribe_and_attach(&runtime, &run_dir, &rb, &f.attach, &runs_flag, &run_id);
    }
    runtime.shutdown_background();
    outcome.status
}

/// After a run: writes its transcript and attaches it where `--attach` said, printing where
/// each went (a failed attachment keeps the transcript and says how to retry).
fn transcribe_and_attach(
    runtime: &tokio::runtime::Runtime,
    run_dir: &Path,
    rb: &crate::model::Runbook,
    attach: &[String],
    runs_flag: &str,
    run_id: &str,
) {
    match crate::transcript::write_files_with(run_dir, Some(rb)) {
        Ok(paths) => eprintln!(
            "transcript: {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Err(e) => error_line(format!("cannot write the transcript: {e}")),
    }
    for target in attach {
        match runtime.block_on(crate::transcript::attach::attach_run(run_dir, target)) {
            Ok(msg) => eprintln!("{msg}"),
            Err(e) => error_line(format!(
                "{e}; the transcript is kept in {}: re-run `runbook attach{runs_flag} {run_id} --to {target}`",
                run_dir.display()
            )),
        }
    }
}

/// Who sees the run's events: the console, the JSON stream (`--output json`), the journal.
fn observers(
    console: Console,
    output: OutputFormat,
    journal_in: Option<(&Path, Option<Box<dyn crate::journal::RecordSink>>)>,
) -> Result<Vec<Box<dyn Observer>>, String> {
    let mut observers: Vec<Box<dyn Observer>> = vec![Box::new(console)];
    if output == OutputFormat::Json {
        observers.push(Box::new(JsonLines));
    }
    if let Some((run_dir, sink)) = journal_in {
        let j = crate::journal::Journal::open_with(run_dir, sink)
            .map_err(|e| format!("cannot open the journal in {}: {e}", run_dir.display()))?;
        observers.push(Box::new(j));
    }
    Ok(observers)
}

/// Checks the run's options before anything is created (files named exist, answered steps
/// exist, attachment targets parse) and reads the answers given in advance.
fn checked_options(rb: &crate::model::Runbook, f: &super::RunOpts) -> Result<Answers, String> {
    for p in [&f.ssh.ssh_config, &f.ssh.known_hosts]
        .into_iter()
        .flatten()
    {
        if !p.is_file() {
            return Err(format!("{} does not exist", p.display()));
        }
    }
    let mut answers = Answers {
        yes: f.yes,
        approve: f.approve.iter().cloned().collect(),
        file: HashMap::new(),
    };
    if let Some(path) = f.answers.as_deref() {
        answers.file = read_answers(path)?;
    }
    for id in answers.approve.iter().chain(answers.file.keys()) {
        if rb.step(id).is_none() && !rb.finally.iter().any(|s| &s.id.name == id) {
            return Err(format!(
                "--approve/--answers names `{id}`, which is not a step of {}",
                rb.name
            ));
        }
    }
    for target in &f.attach {
        crate::transcript::attach::Target::parse(target)?;
    }
    Ok(answers)
}
