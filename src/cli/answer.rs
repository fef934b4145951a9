//! `runbook answer RUN STEP [VALUE]`: give a waiting `ask:` step its value from another
//! terminal, as your own OS user. A secret is read from a hidden prompt or from stdin,
//! never from the command line. With the PostgreSQL store (`--store`), from any machine
//! through the database, as the authenticated role (`session::shared::ask`).

use std::io::{BufRead, IsTerminal};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use clap::Args;

use super::store::{open_for, resolve_in, run_id_of};
use super::{RunsDirArg, error_line};
use crate::exit::ExitStatus;
use crate::runner::ask_socket;

#[derive(Debug, Args)]
pub(crate) struct AskAnswerArgs {
    /// The run: its id, a unique prefix of it, or `last`.
    #[arg(value_name = "RUN")]
    pub run_id: String,
    /// The `ask:` step to answer.
    pub step: String,
    /// The value (not for a secret: those are typed at a hidden prompt or piped on stdin).
    pub value: Option<String>,
    /// Read the value from the first line of stdin (for a script or a password manager).
    #[arg(long)]
    pub stdin: bool,
    #[command(flatten)]
    pub dir: RunsDirArg,
}

pub(crate) fn cmd_ask_answer(a: &AskAnswerArgs) -> ExitStatus {
    let store = match open_for(&a.dir) {
        Ok(s) => s,
        Err(s) => return s,
    };
    let dir: PathBuf = match resolve_in(store.as_ref(), &a.run_id) {
        Ok(d) => d,
        Err(s) => return s,
    };
    let run_id = run_id_of(&dir);
    if a.value.is_some() && a.stdin {
        error_line("give the value either on the command line or with --stdin, not both");
        return ExitStatus::Invalid;
    }
    // The shared store: the answer goes through the database, identity = the role.
    if let Some(conn) = a.dir.store.as_deref().filter(|c| !c.is_empty()) {
        // Refused (exit 2) unless the ask was published by the run's engine role.
        let ask = match crate::session::shared::ask::hello(conn, &run_id, &a.step) {
            Ok(h) => h,
            Err(e) => {
                error_line(e);
                return ExitStatus::Invalid;
            }
        };
        let Some(value) = read_value(a, &ask.hello, &run_id) else {
            return ExitStatus::Invalid;
        };
        return verdict(crate::session::shared::ask::send(
            conn,
            &run_id,
            &a.step,
            &ask.operator,
            &value,
        ));
    }
    let owner = match std::fs::metadata(&dir) {
        Ok(m) => m.uid(),
        Err(e) => {
            error_line(format!("cannot read {}: {e}", dir.display()));
            return ExitStatus::Invalid;
        }
    };
    let (conn, hello) = match ask_socket::connect(&run_id, &a.step, owner) {
        Ok(c) => c,
        Err(e) => {
            error_line(e);
            return ExitStatus::Invalid;
        }
    };
    let Some(value) = read_value(a, &hello, &run_id) else {
        return ExitStatus::Invalid;
    };
    verdict(ask_socket::send(&conn, value))
}

/// The engine's verdict as the command's output and exit status.
fn verdict<E: std::fmt::Display>(v: Result<ask_socket::Verdict, E>) -> ExitStatus {
    match v {
        Ok(v) if v.ok => {
            eprintln!("{}", v.message);
            ExitStatus::Success
        }
        Ok(v) => {
            error_line(v.message);
            ExitStatus::Invalid
        }
        Err(e) => {
            error_line(e);
            ExitStatus::EngineFailed
        }
    }
}

/// The value: from the command line, stdin or a (hidden) prompt, checked against the ask.
fn read_value(a: &AskAnswerArgs, hello: &ask_socket::Hello, run_id: &str) -> Option<String> {
    if hello.secret && a.value.is_some() {
        error_line(format!(
            "`{}` asks for a secret: it is never taken from the command line (shell history, `ps`); run `runbook answer {run_id} {}` to type it at a hidden prompt, or pipe it with --stdin",
            a.step, a.step
        ));
        return None;
    }
    let spec = spec_of(hello);
    let interactive = !a.stdin && a.value.is_none() && std::io::stdin().is_terminal();
    if interactive {
        eprintln!("run {run_id} asks `{}`:", hello.step);
        for l in hello.prompt.lines() {
            eprintln!("  {l}");
        }
        let mut notes = vec![format!("type: {}", hello.ty)];
        if let Some(p) = &hello.pattern {
            notes.push(format!("must match /{p}/"));
        }
        if hello.need > 1 {
            notes.push(format!(
                "{} answers from distinct users, {} in so far",
                hello.need, hello.have
            ));
        }
        eprintln!("  ({})", notes.join(", "));
    }
    let value = loop {
        let raw = match (&a.value, interactive) {
            (Some(v), _) => Some(v.clone()),
            (None, true) if hello.secret => super::ask_prompt::read_hidden("answer"),
            (None, true) => {
                eprint!("answer: ");
                super::console::read_line_until(None)
            }
            (None, false) => {
                let mut line = String::new();
                match std::io::stdin().lock().read_line(&mut line) {
                    Ok(n) if n > 0 => Some(line),
                    _ => None,
                }
            }
        };
        let Some(raw) = raw.map(|r| r.trim_end_matches(['\r', '\n']).to_string()) else {
            error_line("no answer given (end of input)");
            return None;
        };
        // Checked here first, so a typo is asked again at once; the run checks it again.
        match crate::step::ask::parse_answer(&spec, &raw) {
            Ok(_) => break raw,
            Err(why) if interactive => eprintln!("{why}; asked again"),
            Err(why) => {
                error_line(why);
                return None;
            }
        }
    };
    Some(value)
}

/// The ask as the run described it (for checking the answer before sending it).
fn spec_of(h: &ask_socket::Hello) -> crate::model::AskSpec {
    use crate::model::InputType;
    crate::model::AskSpec {
        prompt: crate::model::Tmpl {
            src: h.prompt.clone(),
            span: 0..0,
        },
        ty: match h.ty.as_str() {
            "int" => InputType::Int,
            "bool" => InputType::Bool,
            _ => InputType::String,
        },
        secret: h.secret,
        pattern: h
            .pattern
            .as_ref()
            .and_then(|p| regex::Regex::new(&format!("^(?:{p})$")).ok()),
        from: h.need,
        from_expr: None,
        timeout: None,
    }
}
