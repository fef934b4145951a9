//! The command line: parse once, dispatch to a stage, print. The only module that prints.

mod answer;
mod args;
mod ask_prompt;
mod console;
mod exec;
mod inspect;
mod remember;
mod rollback_question;
mod runs;
mod shared;
mod store;
mod team;
mod transfer;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

pub(crate) use args::*;

use crate::diagnostic::{self, Diagnostic};
use crate::exit::ExitStatus;
use crate::inputs;
use crate::load;
use crate::model::Runbook;
use crate::plan;
use crate::validate;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitStatus::Invalid.into()
            } else {
                ExitStatus::Success.into()
            };
        }
    };
    run(cli).into()
}

/// Whether to colour stderr: a terminal, `NO_COLOR` unset, `TERM` not dumb, unless forced.
pub(crate) fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var("TERM").map_or(true, |t| t != "dumb")
        }
    }
}

fn run(cli: Cli) -> ExitStatus {
    let color = use_color(cli.color);
    if !matches!(
        cli.command,
        Command::Exec(_) | Command::Resume(_) | Command::Rollback(_) | Command::Attach(_)
    ) {
        quiet_on_closed_pipe();
    }
    match cli.command {
        Command::Validate(a) => cmd_validate(&a, color),
        Command::Plan(a) => cmd_plan(&a, color),
        Command::Exec(a) => exec::cmd_exec(&a, color),
        Command::Resume(a) => runs::cmd_resume(&a, color),
        Command::Approve(a) => runs::cmd_answer(&a, crate::event::Decision::Approved),
        Command::Answer(a) => answer::cmd_ask_answer(&a),
        Command::Reject(a) => runs::cmd_answer(&a, crate::event::Decision::Declined),
        Command::Runs(a) => inspect::cmd_runs(&a),
        Command::Show(a) => inspect::cmd_show(&a),
        Command::Logs(a) => inspect::cmd_logs(&a),
        Command::Rollback(a) => runs::cmd_rollback(&a, color),
        Command::Transcript(a) => runs::cmd_transcript(&a),
        Command::Attach(a) => runs::cmd_attach(&a),
        Command::Unlock(a) => runs::cmd_unlock(&a),
        Command::Export(a) => transfer::cmd_export(&a),
        Command::Import(a) => transfer::cmd_import(&a),
        Command::Store(a) => shared::cmd_store(&a),
        Command::List(a) => cmd_list(&a),
        Command::Schema => {
            println!("{}", crate::schema::schema_json());
            ExitStatus::Success
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "runbook",
                &mut std::io::stdout(),
            );
            if shell == clap_complete::Shell::Bash {
                print!("{BASH_DYNAMIC}");
            }
            ExitStatus::Success
        }
        Command::Complete { what, run } => inspect::cmd_complete(&what, run.as_deref()),
    }
}

/// Commands that only print (`show last --json | head`) end quietly when their reader goes
/// away, as Unix tools do, instead of panicking in `println!` on EPIPE. Not for commands that
/// run steps: a command that closes its stdin early must not kill the engine before rollback.
fn quiet_on_closed_pipe() {
    // SAFETY: restores the default disposition of SIGPIPE, before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Added to the bash completions: run ids (and `last`) where a command takes a run, gate names
/// after `approve`/`reject RUN`, step ids after `logs RUN`; everything else as clap generates.
const BASH_DYNAMIC: &str = r#"
_runbook_dynamic() {
    local cur="${COMP_WORDS[COMP_CWORD]}" sub="${COMP_WORDS[1]}"
    case "$sub" in
        show|logs|resume|rollback|approve|reject|transcript|attach)
            if [ "$COMP_CWORD" -eq 2 ] && [[ "$cur" != -* ]]; then
                COMPREPLY=($(compgen -W "$(runbook __complete runs 2>/dev/null)" -- "$cur"))
                return 0
            fi
            if [ "$COMP_CWORD" -eq 3 ] && [[ "$cur" != -* ]]; then
                case "$sub" in
                    approve|reject)
                        COMPREPLY=($(compgen -W "$(runbook __complete gates "${COMP_WORDS[2]}" 2>/dev/null)" -- "$cur"))
                        return 0 ;;
                    logs)
                        COMPREPLY=($(compgen -W "$(runbook __complete steps "${COMP_WORDS[2]}" 2>/dev/null)" -- "$cur"))
                        return 0 ;;
                esac
            fi ;;
    esac
    _runbook "$@"
}
complete -F _runbook_dynamic -o bashdefault -o default runbook
"#;

/// Prints a one-line error for the tool failing (not a runbook problem).
pub(crate) fn error_line(msg: impl std::fmt::Display) {
    // The message may quote a value from outside (a run id, a path, a host's answer).
    eprintln!("error: {}", crate::term::visible(&msg.to_string()));
}

/// Loads and validates one file, printing diagnostics; the runbook if it has no errors.
pub(crate) fn load_runbook(path: &Path, color: bool, strict: bool) -> Result<Runbook, ExitStatus> {
    let loaded = match load::load(path) {
        Ok(l) => l,
        Err(e) => {
            error_line(e);
            return Err(ExitStatus::Invalid);
        }
    };
    let v = validate::validate(&loaded);
    if !v.diagnostics.is_empty() {
        eprint!(
            "{}",
            diagnostic::render_human(&loaded.source, &v.diagnostics, color)
        );
    }
    match v.runbook {
        Some(rb) if !strict || v.diagnostics.is_empty() => Ok(rb),
        _ => {
            eprintln!("{}", summary(&loaded.source.name, &v.diagnostics));
            Err(ExitStatus::Invalid)
        }
    }
}

fn summary(name: &str, diags: &[Diagnostic]) -> String {
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    format!(
        "{name}: {}, {}",
        plural(errors, "error"),
        plural(warnings, "warning")
    )
}

fn cmd_validate(a: &ValidateArgs, color: bool) -> ExitStatus {
    let mut failed = false;
    let mut json = Vec::new();
    for path in &a.files {
        let loaded = match load::load(path) {
            Ok(l) => l,
            Err(e) => {
                error_line(&e);
                failed = true;
                continue;
            }
        };
        let v = validate::validate(&loaded);
        let bad = v.has_errors(a.strict);
        failed |= bad;
        match a.format {
            DiagFormat::Json => {
                for d in diagnostic::to_json(&loaded.source, &v.diagnostics) {
                    json.push(serde_json::to_value(d).unwrap_or_default());
                }
            }
            DiagFormat::Human => {
                if !v.diagnostics.is_empty() {
                    eprint!(
                        "{}",
                        diagnostic::render_human(&loaded.source, &v.diagnostics, color)
                    );
                }
                if bad {
                    eprintln!("{}", summary(&loaded.source.name, &v.diagnostics));
                } else {
                    let steps = v
                        .runbook
                        .as_ref()
                        .map_or(0, |r| r.steps.len() + r.finally.len());
                    let warn = v.diagnostics.len();
                    let extra = if warn > 0 {
                        format!(", {warn} warning{}", if warn == 1 { "" } else { "s" })
                    } else {
                        String::new()
                    };
                    println!(
                        "ok: {} ({steps} step{}{extra})",
                        loaded.source.name,
                        if steps == 1 { "" } else { "s" }
                    );
                }
            }
        }
    }
    if a.format == DiagFormat::Json {
        let doc = serde_json::json!({ "version": 1, "valid": !failed, "diagnostics": json });
        println!(
            "{}",
            crate::term::json_safe(serde_json::to_string_pretty(&doc).unwrap_or_default())
        );
    }
    if failed {
        ExitStatus::Invalid
    } else {
        ExitStatus::Success
    }
}

/// Turns `-i` pairs and `--inputs-file` into what `plan::inputs` takes.
pub(crate) fn provided(a: &InputArgs) -> Result<inputs::Provided, ExitStatus> {
    let mut p = inputs::Provided::default();
    let mut bad = false;
    for s in &a.inputs {
        match inputs::parse_pair(s) {
            Ok(pair) => p.pairs.push(pair),
            Err(e) => {
                error_line(format!("-i {e}"));
                bad = true;
            }
        }
    }
    if let Some(f) = &a.inputs_file {
        match inputs::read_inputs_file(f) {
            Ok(v) => p.file = v,
            Err(e) => {
                error_line(e);
                bad = true;
            }
        }
    }
    if bad { Err(ExitStatus::Invalid) } else { Ok(p) }
}

/// Prints every input problem and returns the usage exit status.
pub(crate) fn input_errors(errors: &[String]) -> ExitStatus {
    for e in errors {
        error_line(e);
    }
    ExitStatus::Invalid
}

fn cmd_plan(a: &PlanArgs, color: bool) -> ExitStatus {
    let rb = match load_runbook(&a.file, color, false) {
        Ok(rb) => rb,
        Err(s) => return s,
    };
    let provided = match provided(&a.inputs) {
        Ok(p) => p,
        Err(s) => return s,
    };
    let resolved = match inputs::resolve(&rb, &provided, None) {
        Ok(r) => r,
        Err(errors) => return input_errors(&errors),
    };
    match plan::build(&rb, &resolved, &a.file.display().to_string()) {
        Ok(p) => {
            let text = plan::render::render(&p, a.format);
            // Titles, descriptions and commands come from the file: never raw to a terminal.
            let text = match a.format {
                plan::render::Format::Json => crate::term::json_safe(text),
                _ => crate::term::visible(&text).into_owned(),
            };
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            ExitStatus::Success
        }
        Err(e) => {
            error_line(e);
            ExitStatus::Invalid
        }
    }
}

fn cmd_list(a: &ListArgs) -> ExitStatus {
    let entries = match std::fs::read_dir(&a.dir) {
        Ok(e) => e,
        Err(e) => {
            error_line(format!("cannot read {}: {e}", a.dir.display()));
            return ExitStatus::Invalid;
        }
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    let mut rows = Vec::new();
    for path in &files {
        let Ok(loaded) = load::load(path) else {
            continue;
        };
        let v = validate::validate(&loaded);
        let (name, desc) = match &v.runbook {
            Some(rb) => (rb.name.clone(), rb.description.clone()),
            None => (
                String::from("?"),
                format!("(invalid: run `runbook validate {}`)", path.display()),
            ),
        };
        rows.push((path.display().to_string(), name, desc));
    }
    if rows.is_empty() {
        println!("no runbooks in {}", a.dir.display());
        return ExitStatus::Success;
    }
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    for (path, name, desc) in rows {
        let line = format!("{path:<w$}  {name}: {}", first_sentence(&desc, 100));
        println!("{}", crate::term::visible(&line));
    }
    ExitStatus::Success
}

/// The first sentence of a description's first paragraph (lines joined), cut at a word
/// boundary with `…` only if that sentence is longer than `max` characters.
pub(crate) fn first_sentence(desc: &str, max: usize) -> String {
    let para: Vec<&str> = desc
        .trim()
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    let text = para.join(" ");
    let sentence = match text.find(". ") {
        Some(i) => &text[..=i],
        None => text.as_str(),
    };
    if sentence.chars().count() <= max {
        return sentence.to_string();
    }
    // Too long: end at the last clause boundary that fits, else at a word.
    let head: String = sentence.chars().take(max).collect();
    if let Some(i) = head.rfind([',', ';', ':']).filter(|&i| i > 30) {
        return format!("{} …", &head[..i]);
    }
    let mut out = String::new();
    for word in sentence.split_whitespace() {
        if out.chars().count() + word.chars().count() + 1 > max {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    format!("{out} …")
}

#[cfg(test)]
mod tests {
    use super::first_sentence;

    #[test]
    fn list_shows_whole_sentences() {
        assert_eq!(
            first_sentence(
                "Recover a Vault node\nthat crashed. Then verify.\n\nMore.",
                100
            ),
            "Recover a Vault node that crashed."
        );
        assert_eq!(first_sentence("one two three four", 9), "one two …");
    }
}
