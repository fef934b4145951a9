//! A transcript loaded from a run directory, rendered through a template, and written
//! beside the journal.

use std::path::{Path, PathBuf};

use super::{ErrorKind, MARKDOWN_TEMPLATE, Transcript, TranscriptError, build};
use crate::journal;
use crate::session::store::RunDir;

/// Renders with a template (the built-in Markdown one unless `template` is given).
pub(crate) fn render(t: &Transcript, template: &str) -> Result<String, TranscriptError> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    env.set_fuel(Some(50_000_000));
    env.render_str(template, crate::template::to_value(t))
        .map_err(|e| {
            TranscriptError::new(
                ErrorKind::Template,
                format!("template: {}", crate::template::describe_error(&e)),
            )
        })
}

/// Reads a run's journal and builds its transcript. A broken chain is reported (and the
/// transcript of the readable prefix is not produced: a tampered record must not be trusted).
pub(crate) fn load(run_dir: &Path) -> Result<Transcript, journal::JournalError> {
    load_with(run_dir, None)
}

/// `load`, given the run's runbook when the caller has it (the engine, right after the run):
/// the runbook file is then not read and validated again.
fn load_with(
    run_dir: &Path,
    rb: Option<&crate::model::Runbook>,
) -> Result<Transcript, journal::JournalError> {
    let run = RunDir::new(run_dir);
    let records = journal::read(&run.files())?;
    let run_id = run.id();
    let mut t = build(&run_id, &records, true);
    match rb {
        Some(rb) => from_runbook(&mut t, rb),
        None => {
            if let Some(rb) = crate::load::load(Path::new(&t.file))
                .ok()
                .and_then(|l| crate::validate::validate(&l).runbook)
            {
                from_runbook(&mut t, &rb);
            }
        }
    }
    Ok(t)
}

/// Fills in what the journal does not hold but the runbook does (when its file is still
/// there): step titles, and the command of each rollback, both rendered with the run's inputs
/// as journaled (secrets already masked there).
fn from_runbook(t: &mut Transcript, rb: &crate::model::Runbook) {
    let entries: Vec<(String, minijinja::Value)> = t
        .inputs
        .iter()
        .map(|nv| (nv.name.clone(), minijinja::Value::from(nv.value.clone())))
        .collect();
    let mut all = entries.clone();
    all.push(("inputs".into(), crate::template::map(entries)));
    let ctx = crate::template::map(all);
    let tpl = crate::template::Templates::new(crate::template::SecretDisplay::Mask);
    let render = |src: &str| {
        tpl.render(src, &ctx, crate::template::Target::Text)
            .unwrap_or_else(|_| src.to_string())
    };
    for s in &mut t.steps {
        if let Some(title) = rb.step(&s.id).and_then(|st| st.title.as_ref()) {
            s.title = Some(render(&title.src));
        } else if let Some(title) = rb
            .finally
            .iter()
            .find(|f| f.id.name == s.id)
            .and_then(|f| f.title.as_ref())
        {
            s.title = Some(render(&title.src));
        }
    }
    for r in &mut t.rollbacks {
        r.command = rb
            .step(&r.step)
            .and_then(|st| st.rollback.as_ref())
            .and_then(|b| match &b.action {
                crate::model::Action::Run(c) => Some(render(c.src.trim())),
                crate::model::Action::Manual(m) => {
                    Some(format!("(by hand) {}", render(m.src.trim())))
                }
                _ => None,
            });
    }
}

/// Writes `transcript.md` and `transcript.json` (0600) into the run directory (`rb`: the
/// run's runbook, when the caller has it loaded).
pub(crate) fn write_files_with(
    run_dir: &Path,
    rb: Option<&crate::model::Runbook>,
) -> Result<Vec<PathBuf>, TranscriptError> {
    let t = load_with(run_dir, rb)?;
    // Both files are read in terminals (`cat`, `less -R`): control characters made visible.
    let md = crate::term::visible(&render(&t, MARKDOWN_TEMPLATE)?).into_owned();
    let json = crate::term::json_safe(
        serde_json::to_string_pretty(&t)
            .map_err(|e| TranscriptError::new(ErrorKind::Io, e.to_string()))?,
    );
    let mut out = Vec::new();
    let [md_path, json_path] = RunDir::new(run_dir).transcripts();
    for (p, body) in [(md_path, md), (json_path, json)] {
        let _ = std::fs::remove_file(&p);
        use std::io::Write;
        let failed = |e: std::io::Error| {
            TranscriptError::new(ErrorKind::Io, format!("{}: {e}", p.display()))
        };
        let mut f = crate::sys::open_private(&p).map_err(failed)?;
        f.write_all(body.as_bytes()).map_err(failed)?;
        out.push(p);
    }
    Ok(out)
}
