//! Waiting for the answers of an `ask:`: the operator's terminal racing `runbook answer`
//! from elsewhere (`ask_channels.rs`), until the ask has its answers, nobody answered in
//! time (pause), a signal arrives, or the step consuming the answers needs no more.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::ask::{Stopped, Taken, pattern_text, prefill, take};
use super::ask_channels::{self, Incoming};
use super::gate::WithdrawOnDrop;
use super::shared::Shared;
use super::stream::AnswerStream;
use super::{AskCheck, AskRequest};
use crate::event::{AnsweredBy, Event};
use crate::model::*;
use crate::runner::ask_socket::{Hello, Verdict};

/// Collects `spec.from` answers from distinct users (fewer if the consuming step of a
/// streamed ask needs no more).
pub(super) async fn collect(
    sh: &Arc<Shared>,
    step: &Step,
    spec: &AskSpec,
    prompt: &str,
    stream: Option<&AnswerStream>,
) -> Result<Vec<Taken>, Stopped> {
    let id = step.id.name.clone();
    let need = spec.from as usize;
    let taken = prefill(sh, &id, stream);
    if taken.len() >= need || stream.and_then(AnswerStream::consumer_is_done).is_some() {
        return Ok(taken);
    }
    let answer_cmd = sh.opts.remote.as_ref().map(|r| {
        format!(
            "{} {id}",
            r.approve_cmd
                .replacen("runbook approve", "runbook answer", 1)
        )
    });
    let store = sh.opts.remote.as_ref().and_then(|r| r.answers.store());
    let wait = sh.opts.remote.as_ref().is_some_and(|r| r.wait);
    let (tx, rx) = mpsc::channel::<Incoming>(16);
    let hello = Hello {
        run: sh.opts.run_id.clone(),
        step: id.clone(),
        prompt: prompt.to_string(),
        secret: spec.secret,
        ty: spec.ty.as_str().into(),
        pattern: pattern_text(spec),
        need: spec.from,
        have: taken.len() as u32,
    };
    // Nobody at a terminal and nobody may answer from elsewhere now: pause like a gate
    // (without opening anything).
    let can_open = answer_cmd.is_some();
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
    if sh.services.prompter.is_none() && (!can_open || !wait) {
        let how = match &answer_cmd {
            Some(c) => format!(
                "resume the run (`{}`) without --no-wait and answer with `{c}`, or resume on a terminal",
                c.replacen("runbook answer", "runbook resume", 1)
                    .trim_end_matches(&format!(" {id}"))
            ),
            None => how.clone(),
        };
        return Err(pause(sh, &id, how));
    }
    let channels = ask_channels::open(sh, &id, &hello, &tx);
    if channels.unpublished {
        return Err(Stopped::Paused(format!(
            "step `{id}`: its ask is not in the store"
        )));
    }
    if sh.services.prompter.is_none() && !channels.open {
        return Err(pause(sh, &id, how));
    }
    let limit = spec.timeout.unwrap_or(sh.env.rb.defaults.gate_timeout);
    if channels.open && wait {
        sh.emit(Event::GateWaiting {
            step: id.clone(),
            how_to_answer: format!(
                "{how} (waiting up to {})",
                crate::fmt::human_duration(limit)
            ),
        });
    }
    let w = Waiting {
        sh,
        spec,
        id,
        prompt,
        answer_cmd,
        stream,
        remote: channels.open && wait,
        limit,
    };
    let have = channels.have.clone();
    let got = w.run(taken, rx, &have).await;
    drop(channels);
    got
}

/// Says the ask waits for an answer nobody can give now: the run pauses.
fn pause(sh: &Shared, id: &str, how: String) -> Stopped {
    sh.emit(Event::GateWaiting {
        step: id.to_string(),
        how_to_answer: how,
    });
    Stopped::Paused(format!("step `{id}` is waiting for an answer"))
}

/// One ask waiting for its answers.
struct Waiting<'a> {
    sh: &'a Arc<Shared>,
    spec: &'a AskSpec,
    id: String,
    prompt: &'a str,
    answer_cmd: Option<String>,
    stream: Option<&'a AnswerStream>,
    /// Answers may come from elsewhere.
    remote: bool,
    limit: Duration,
}

impl Waiting<'_> {
    fn take(
        &self,
        taken: &mut Vec<Taken>,
        user: String,
        raw: &str,
        by: AnsweredBy,
    ) -> Result<String, String> {
        take(
            self.sh,
            self.spec,
            &self.id,
            taken,
            self.stream,
            (user, raw, by),
        )
    }

    /// Takes what was typed at the terminal (the prompt checked it already), if anything.
    fn typed(&self, taken: &mut Vec<Taken>, raw: Option<String>) {
        if let Some(raw) = raw {
            let user = self.sh.opts.user.clone();
            if let Err(why) = self.take(taken, user, &raw, AnsweredBy::Terminal) {
                self.sh.emit(Event::Warning { message: why });
            }
        }
    }

    async fn run(
        &self,
        mut taken: Vec<Taken>,
        mut rx: mpsc::Receiver<Incoming>,
        have: &std::sync::atomic::AtomicU32,
    ) -> Result<Vec<Taken>, Stopped> {
        let (sh, id, need) = (self.sh, &self.id, self.spec.from as usize);
        let deadline = Instant::now() + self.limit;
        let paused = || Stopped::Paused(format!("step `{id}` is waiting for an answer"));
        // The terminal: the operator's own answer (one of the N), racing the others.
        let mut terminal = self.terminal();
        let mut cancel = sh.cancel.clone();
        let mut consumer = self.stream.map(AnswerStream::subscribe);
        loop {
            let now = Instant::now();
            if now >= deadline {
                let (limit, have) = (crate::fmt::human_duration(self.limit), taken.len());
                let message =
                    format!("nobody answered `{id}` within {limit} ({have} of {need} answers)");
                sh.emit(Event::Warning { message });
                return Err(paused());
            }
            tokio::select! {
                t = async { match &mut terminal { Some((h, _)) => h.await, None => std::future::pending().await } } => {
                    // None: an empty line ("not me"), end of input, or withdrawn: the others
                    // may still answer from elsewhere.
                    terminal = None;
                    self.typed(&mut taken, t.ok().flatten());
                }
                Some(inc) = rx.recv() => {
                    // The terminal prompt holds the display while it is open: withdraw it
                    // before anything is printed (an answer just typed there is taken first),
                    // and open it again below while the operator may still answer.
                    let reopen = terminal.is_some();
                    if let Some((h, stop)) = terminal.take() {
                        stop.store(true, Ordering::SeqCst);
                        self.typed(&mut taken, h.await.ok().flatten());
                    }
                    let verdict = match self.take(&mut taken, inc.user, &inc.value, AnsweredBy::Remote) {
                        Ok(message) => Verdict { ok: true, message },
                        Err(why) => {
                            sh.emit(Event::Warning { message: why.clone() });
                            Verdict { ok: false, message: why }
                        }
                    };
                    have.store(taken.len() as u32, Ordering::SeqCst);
                    let _ = inc.verdict.send(verdict);
                    if reopen && taken.len() < need && !taken.iter().any(|t| t.user == sh.opts.user) {
                        terminal = self.terminal();
                    }
                }
                _ = changed(&mut consumer) => {}
                () = tokio::time::sleep(deadline.saturating_duration_since(now).min(Duration::from_millis(500))) => {}
                () = cancel.cancelled() => return Err(Stopped::Cancelled),
            }
            let enough = taken.len() >= need;
            let not_needed = self.stream.and_then(AnswerStream::consumer_is_done);
            if enough || not_needed.is_some() {
                if let Some((h, stop)) = terminal.take() {
                    stop.store(true, Ordering::SeqCst);
                    let _ = h.await;
                }
                if let (false, Some(why)) = (enough, not_needed) {
                    let message = format!(
                        "`{id}` stops asking after {} of {need} answers: {why}",
                        taken.len()
                    );
                    sh.emit(Event::Warning { message });
                }
                return Ok(taken);
            }
            if terminal.is_none() && !self.remote {
                return Err(paused());
            }
        }
    }

    /// Starts the terminal prompt, if there is a terminal.
    fn terminal(&self) -> Option<TerminalTask> {
        let need = self.spec.from as usize;
        terminal_prompt(
            self.sh,
            self.spec,
            &self.id,
            self.prompt,
            need,
            self.answer_cmd.as_deref(),
        )
    }
}

/// Waits until `sub` changes; forever without one (or once its sender is gone).
async fn changed(sub: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    if let Some(s) = sub
        && s.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
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
    let check: AskCheck = Arc::new(move |raw: &str| {
        crate::step::ask::parse_answer(&spec2, raw)
            .map(|_| ())
            .map_err(|e| e.0)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let guard = WithdrawOnDrop(stop.clone());
    let h = tokio::task::spawn_blocking(move || {
        let _keep = guard;
        p.ask_value(&req, &check, &stop2)
    });
    Some((h, stop))
}
