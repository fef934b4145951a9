//! `ask:` steps at run time: the value comes from the operator's terminal or from
//! `runbook answer RUN STEP` in another terminal (through `runner::ask_socket`), and with
//! `from: N` from N distinct OS users. A secret answer is added to the redactor the moment
//! it is taken, so it is masked in every event, log and journal line after that; the
//! answer itself is never an event (only who answered).
//!
//! Nobody can answer (no terminal and `--no-wait`, or no journal), or nobody did within the
//! timeout: the step does not run and the run pauses, exactly like a gate; `resume` asks again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::gate::WithdrawOnDrop;
use super::shared::{Shared, StepRun};
use super::{AskCheck, AskRequest};
use crate::event::{AnsweredBy, Event, StepStatus};
use crate::model::*;
use crate::runner::ask_socket::{self, Hello, Verdict};
use crate::runner::{StepError, StepErrorKind as K};
use crate::template::Target;

/// One answer that came through the shared store: its database role, the value, and where
/// to send the engine's verdict.
pub struct StoreAnswer {
    pub role: String,
    pub value: String,
    pub verdict: tokio::sync::oneshot::Sender<Verdict>,
}

/// How long one connected answerer may take to send a value.
const ANSWER_WAIT: Duration = Duration::from_secs(15 * 60);

/// One answer taken.
struct Taken {
    user: String,
    value: serde_json::Value,
}

/// An answer from `runbook answer`: the OS user (from the kernel), the raw value, and where
/// to send the verdict.
struct Incoming {
    user: String,
    value: String,
    verdict: oneshot::Sender<Verdict>,
}

/// Asks step `i` and, once enough answers are in, finishes it (outputs `value`, `values`).
pub(super) async fn run_ask(sh: &Arc<Shared>, i: usize, run: StepRun, t0: Instant) -> StepRun {
    let step = sh.step(i).clone();
    let Action::Ask(spec) = &step.body.action else {
        return run;
    };
    let id = step.id.name.clone();
    let prompt =
        match sh
            .env
            .templates
            .render(&spec.prompt.src, &sh.ctx().with(vec![]), Target::Text)
        {
            Ok(p) => sh.env.redactor.text(&p),
            Err(e) => {
                let e = StepError::new(
                    K::Render,
                    format!("ask: {}", crate::template::describe_error(&e)),
                );
                return super::lifecycle::finish(
                    sh,
                    run,
                    t0,
                    StepStatus::Failed,
                    serde_json::Value::Null,
                    Some(e),
                );
            }
        };
    sh.emit(Event::StepStarted {
        step: id.clone(),
        attempt: 1,
        host: None,
        item: None,
        command: Some(format!("ask: {prompt}")),
        item_index: None,
    });
    let mut spec = (**spec).clone();
    if let Some(expr) = &spec.from_expr {
        let n = sh
            .env
            .templates
            .eval(
                crate::template::expression_source(&expr.src),
                &sh.ctx().with(vec![]),
            )
            .map_err(|e| crate::template::describe_error(&e))
            .and_then(|v| {
                i64::try_from(v.clone())
                    .ok()
                    .filter(|n| (1..=50).contains(n))
                    .ok_or_else(|| format!("`from` must be a whole number from 1 to 50, not {v}"))
            });
        match n {
            Ok(n) => spec.from = n as u32,
            Err(e) => {
                let e = StepError::new(K::Render, format!("ask: {e}"));
                let null = serde_json::Value::Null;
                return super::lifecycle::finish(sh, run, t0, StepStatus::Failed, null, Some(e));
            }
        }
    }
    let spec = &spec;
    match collect(sh, &step, spec, &prompt).await {
        Ok(taken) => {
            let values: Vec<serde_json::Value> = taken.iter().map(|t| t.value.clone()).collect();
            let users: Vec<String> = taken.iter().map(|t| t.user.clone()).collect();
            let result = serde_json::json!({
                "value": values.first().cloned().unwrap_or(serde_json::Value::Null),
                "values": values,
                "answered_by": users,
            });
            finish_ok(sh, &step, run, t0, result)
        }
        Err(Stopped::Cancelled) => {
            let e = StepError::new(
                K::Operator,
                format!("the run stopped while `{id}` was asking"),
            );
            let mut run = super::lifecycle::finish(
                sh,
                run,
                t0,
                StepStatus::Cancelled,
                serde_json::Value::Null,
                Some(e),
            );
            run.operator = Some(crate::event::Decision::Aborted);
            run
        }
        Err(Stopped::Paused(why)) => {
            let e = StepError::new(K::Operator, why);
            let mut run = super::lifecycle::finish(
                sh,
                run,
                t0,
                StepStatus::NotRun,
                serde_json::Value::Null,
                Some(e),
            );
            run.operator = Some(crate::event::Decision::Aborted);
            run.paused = true;
            run
        }
    }
}

/// Evaluates the step's outputs over the answers and announces the end.
fn finish_ok(
    sh: &Shared,
    step: &Step,
    run: StepRun,
    t0: Instant,
    mut result: serde_json::Value,
) -> StepRun {
    let mut outputs = serde_json::Map::new();
    let (mut status, mut error) = (StepStatus::Succeeded, None);
    if let Err(e) = super::lifecycle::evaluate_outputs(sh, step, &result, &mut outputs) {
        status = StepStatus::Failed;
        error = Some(StepError::new(K::Render, e));
    }
    if let serde_json::Value::Object(m) = &mut result {
        m.insert("outputs".into(), serde_json::Value::Object(outputs));
        m.insert("outcome".into(), status.as_str().into());
        m.insert("skipped".into(), false.into());
    }
    super::lifecycle::finish(sh, run, t0, status, result, error)
}

enum Stopped {
    /// A signal: the run is stopping.
    Cancelled,
    /// Nobody answered (or could): the run pauses, `resume` asks again.
    Paused(String),
}

/// The pattern as written (without the anchors).
fn pattern_text(spec: &AskSpec) -> Option<String> {
    spec.pattern.as_ref().map(|p| {
        let s = p.as_str();
        s.strip_prefix("^(?:")
            .and_then(|s| s.strip_suffix(")$"))
            .unwrap_or(s)
            .to_string()
    })
}

/// Collects `spec.from` answers from distinct users.
async fn collect(
    sh: &Arc<Shared>,
    step: &Step,
    spec: &AskSpec,
    prompt: &str,
) -> Result<Vec<Taken>, Stopped> {
    let id = step.id.name.clone();
    let need = spec.from as usize;
    let mut taken: Vec<Taken> = Vec::new();
    let answer_cmd = sh.opts.remote.as_ref().map(|r| {
        format!(
            "{} {id}",
            r.approve_cmd
                .replacen("runbook approve", "runbook answer", 1)
        )
    });
    // The channel other users answer through (only for a journaled run: it has an owner
    // the answerer can check).
    // With the shared store every answer comes through it (identity = database role), so
    // the local socket (identity = OS user) stays closed.
    let store = sh.opts.remote.as_ref().and_then(|r| r.answers.store());
    let listener = match &answer_cmd {
        Some(_) if store.is_none() => match ask_socket::listen(&sh.opts.run_id, &id) {
            Ok(l) => Some(l),
            Err(e) => {
                sh.emit(Event::Warning {
                    message: format!("cannot open the answer channel for `{id}` ({e}): only this terminal can answer"),
                });
                None
            }
        },
        _ => None,
    };
    let wait = sh.opts.remote.as_ref().is_some_and(|r| r.wait);
    let remote_open = listener.is_some() || store.is_some();
    let how = match (&answer_cmd, need) {
        (Some(c), 1) => format!("answer with `{c}` from another terminal"),
        (Some(c), n) if store.is_some() => format!(
            "{n} answers from {n} distinct database roles needed: each runs `{c}` with their own role"
        ),
        (Some(c), n) => {
            format!("{n} answers from {n} distinct OS users needed: each runs `{c}` as themselves")
        }
        (None, _) => "run on a terminal to answer".to_string(),
    };
    // Nobody at a terminal and nobody may answer from elsewhere now: pause like a gate.
    if sh.services.prompter.is_none() && (!remote_open || !wait) {
        let how = match &answer_cmd {
            Some(c) => format!(
                "resume the run (`{}`) without --no-wait and answer with `{c}`, or resume on a terminal",
                c.replacen("runbook answer", "runbook resume", 1)
                    .trim_end_matches(&format!(" {id}"))
            ),
            None => how.clone(),
        };
        sh.emit(Event::GateWaiting {
            step: id.clone(),
            how_to_answer: how,
        });
        return Err(Stopped::Paused(format!(
            "step `{id}` is waiting for an answer"
        )));
    }
    let limit = spec.timeout.unwrap_or(sh.env.rb.defaults.gate_timeout);
    let deadline = Instant::now() + limit;
    let (tx, mut rx) = mpsc::channel::<Incoming>(16);
    let hello = Hello {
        run: sh.opts.run_id.clone(),
        step: id.clone(),
        prompt: prompt.to_string(),
        secret: spec.secret,
        ty: spec.ty.as_str().into(),
        pattern: pattern_text(spec),
        need: spec.from,
        have: 0,
    };
    let have = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let accept_task = listener.map(|l| {
        let tx = tx.clone();
        let hello = hello.clone();
        let have = have.clone();
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = l.accept().await else {
                    continue;
                };
                let tx = tx.clone();
                let mut hello = hello.clone();
                hello.have = have.load(Ordering::SeqCst);
                tokio::spawn(serve(conn, hello, tx));
            }
        })
    });
    let _abort = AbortOnDrop(accept_task);
    // Shared store: answers from any machine by role; "waiting" is printed once published (D8).
    let _feed = match &store {
        Some(conn) if wait => {
            let (stx, mut srx) = mpsc::channel::<StoreAnswer>(16);
            let fed = match sh.opts.remote.as_ref() {
                Some(r) => r.answers.ask_feed(&hello, stx),
                None => Err(format!("no store for {conn}")),
            };
            match fed {
                Ok(f) => {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        while let Some(a) = srx.recv().await {
                            let inc = Incoming {
                                user: a.role,
                                value: a.value,
                                verdict: a.verdict,
                            };
                            if tx.send(inc).await.is_err() {
                                break;
                            }
                        }
                    });
                    Some(f)
                }
                // Not in the store under this engine's role (attack 13, D0): a pause.
                Err(e) => {
                    let message = format!("cannot publish `{id}` in the store: {e}");
                    sh.emit(Event::Warning { message });
                    return Err(Stopped::Paused(format!(
                        "step `{id}`: its ask is not in the store"
                    )));
                }
            }
        }
        _ => None,
    };
    if remote_open && wait {
        sh.emit(Event::GateWaiting {
            step: id.clone(),
            how_to_answer: format!(
                "{how} (waiting up to {})",
                crate::fmt::human_duration(limit)
            ),
        });
    }
    // The terminal: the operator's own answer (one of the N), racing the others.
    let mut terminal = terminal_prompt(sh, spec, &id, prompt, need, answer_cmd.as_deref());
    let mut cancel = sh.cancel.clone();
    loop {
        let now = Instant::now();
        if now >= deadline {
            sh.emit(Event::Warning {
                message: format!(
                    "nobody answered `{id}` within {} ({} of {need} answers)",
                    crate::fmt::human_duration(limit),
                    taken.len()
                ),
            });
            return Err(Stopped::Paused(format!(
                "step `{id}` is waiting for an answer"
            )));
        }
        tokio::select! {
            t = async { match &mut terminal { Some((h, _)) => h.await, None => std::future::pending().await } } => {
                terminal = None;
                // None: an empty line ("not me"), end of input, or withdrawn: the others
                // may still answer from elsewhere.
                if let Some(raw) = t.ok().flatten() {
                    let user = sh.opts.user.clone();
                    // The prompt checked it already; taken as the operator's answer.
                    if let Err(why) = take(sh, spec, &id, &mut taken, user, &raw, AnsweredBy::Terminal) {
                        sh.emit(Event::Warning { message: why });
                    }
                }
            }
            Some(inc) = rx.recv() => {
                // The terminal prompt holds the display while it is open: withdraw it before
                // anything is printed (an answer just typed there is taken first), and open
                // it again below while the operator may still answer.
                let reopen = terminal.is_some();
                if let Some((h, stop)) = terminal.take() {
                    stop.store(true, Ordering::SeqCst);
                    if let Some(raw) = h.await.ok().flatten() {
                        let user = sh.opts.user.clone();
                        if let Err(why) = take(sh, spec, &id, &mut taken, user, &raw, AnsweredBy::Terminal) {
                            sh.emit(Event::Warning { message: why });
                        }
                    }
                }
                let user = inc.user;
                let verdict = match take(sh, spec, &id, &mut taken, user, &inc.value, AnsweredBy::Remote) {
                    Ok(msg) => Verdict { ok: true, message: msg },
                    Err(why) => {
                        sh.emit(Event::Warning { message: why.clone() });
                        Verdict { ok: false, message: why }
                    }
                };
                have.store(taken.len() as u32, Ordering::SeqCst);
                let _ = inc.verdict.send(verdict);
                if reopen
                    && taken.len() < need
                    && !taken.iter().any(|t| t.user == sh.opts.user)
                {
                    terminal = terminal_prompt(sh, spec, &id, prompt, need, answer_cmd.as_deref());
                }
            }
            () = tokio::time::sleep(deadline.saturating_duration_since(now).min(Duration::from_millis(500))) => {}
            () = cancel.cancelled() => return Err(Stopped::Cancelled),
        }
        if taken.len() >= need {
            if let Some((h, stop)) = terminal.take() {
                stop.store(true, Ordering::SeqCst);
                let _ = h.await;
            }
            return Ok(taken);
        }
        if terminal.is_none() && !(remote_open && wait) {
            return Err(Stopped::Paused(format!(
                "step `{id}` is waiting for an answer"
            )));
        }
    }
}

/// Aborts the accepting task when the ask ends (the socket closes with it).
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

type TerminalTask = (tokio::task::JoinHandle<Option<String>>, Arc<AtomicBool>);

/// Starts the terminal prompt, if there is a terminal.
fn terminal_prompt(
    sh: &Shared,
    spec: &AskSpec,
    id: &str,
    prompt: &str,
    need: usize,
    answer_cmd: Option<&str>,
) -> Option<TerminalTask> {
    let p = sh.services.prompter.clone()?;
    let mut notes = vec![format!("type: {}", spec.ty.as_str())];
    if let Some(pt) = pattern_text(spec) {
        notes.push(format!("must match /{pt}/"));
    }
    if spec.secret {
        notes.push("hidden input, never recorded".into());
    }
    let elsewhere = match (answer_cmd, need) {
        (Some(c), 1) => format!("or answer with `{c}` from another terminal"),
        (Some(c), n) => format!(
            "{n} answers from distinct OS users: yours here (or an empty line if you hold none), the others with `{c}`"
        ),
        (None, _) => String::new(),
    };
    let req = AskRequest {
        step: id.to_string(),
        prompt: prompt.to_string(),
        secret: spec.secret,
        notes: notes.join(", "),
        elsewhere,
    };
    let spec2 = spec.clone();
    let check: AskCheck =
        Arc::new(move |raw: &str| crate::step::ask::parse_answer(&spec2, raw).map(|_| ()));
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let guard = WithdrawOnDrop(stop.clone());
    let h = tokio::task::spawn_blocking(move || {
        let _keep = guard;
        p.ask_value(&req, &check, &stop2)
    });
    Some((h, stop))
}

/// Takes one answer: checks it (type, pattern, a user who already answered), remembers a
/// secret for masking, and records who answered. `Ok`: the line for the answerer.
fn take(
    sh: &Shared,
    spec: &AskSpec,
    id: &str,
    taken: &mut Vec<Taken>,
    user: String,
    raw: &str,
    by: AnsweredBy,
) -> Result<String, String> {
    let need = spec.from as usize;
    if taken.len() >= need {
        return Err(format!("`{id}` already has its {need} answer(s)"));
    }
    if spec.from > 1 && taken.iter().any(|t| t.user == user) {
        let who = match sh.opts.remote.as_ref().and_then(|r| r.answers.store()) {
            Some(_) => "database role",
            None => "OS user",
        };
        return Err(format!(
            "{user} already answered `{id}`: each of the {need} answers must come from a different {who} ({} more needed from others)",
            need - taken.len()
        ));
    }
    let value = crate::step::ask::parse_answer(spec, raw).map_err(|why| {
        format!("the answer to `{id}` from {user} was refused: {why}; answer again")
    })?;
    if spec.secret
        && let serde_json::Value::String(s) = &value
    {
        sh.env.redactor.add(std::slice::from_ref(s));
    }
    taken.push(Taken {
        user: user.clone(),
        value,
    });
    sh.emit(Event::AskAnswered {
        step: id.to_string(),
        user: user.clone(),
        by,
        have: taken.len() as u32,
        need: spec.from,
    });
    Ok(format!(
        "answer to `{id}` accepted from {user} ({} of {need})",
        taken.len()
    ))
}

/// One connection from `runbook answer`: say what is asked, read the value, pass it to the
/// step with the peer's uid (from the kernel), send back the verdict.
async fn serve(mut conn: tokio::net::UnixStream, hello: Hello, tx: mpsc::Sender<Incoming>) {
    let Ok(cred) = conn.peer_cred() else {
        return;
    };
    let uid = cred.uid();
    let Ok(mut line) = serde_json::to_vec(&hello) else {
        return;
    };
    line.push(b'\n');
    if conn.write_all(&line).await.is_err() {
        return;
    }
    let (rd, mut wr) = conn.split();
    let mut reader = tokio::io::BufReader::new(rd).take(ask_socket::MAX_LINE);
    let mut buf = Vec::new();
    let read = tokio::time::timeout(ANSWER_WAIT, reader.read_until(b'\n', &mut buf)).await;
    let verdict = match read {
        Ok(Ok(n)) if n > 0 => match serde_json::from_slice::<ask_socket::Reply>(&buf) {
            Ok(reply) => {
                let (vtx, vrx) = oneshot::channel();
                if tx
                    .send(Incoming {
                        user: crate::sys::user_name(uid),
                        value: reply.value,
                        verdict: vtx,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                match vrx.await {
                    Ok(v) => v,
                    Err(_) => Verdict {
                        ok: false,
                        message: "the run stopped asking before taking the answer".into(),
                    },
                }
            }
            Err(_) => Verdict {
                ok: false,
                message: "not an answer".into(),
            },
        },
        _ => return,
    };
    buf.iter_mut().for_each(|b| *b = 0);
    if let Ok(mut out) = serde_json::to_vec(&verdict) {
        out.push(b'\n');
        let _ = wr.write_all(&out).await;
    }
}
