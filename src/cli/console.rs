//! The operator's view of a run: live progress on a terminal (indicatif), plain timestamped
//! lines otherwise, a summary table at the end; and the terminal prompter for gates.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use console::{Style, Term};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::event::Observer;
use crate::event::{Decision, Event, Stamped, StepStatus, Stream};
use crate::execute::{GateRequest, Prompter, RunOutcome};

mod prompt;
mod summary;
pub(crate) use prompt::TtyPrompter;
pub(crate) use summary::summary;

/// Styles, or none when colour is off.
#[derive(Clone)]
pub(crate) struct Styles {
    pub(crate) ok: Style,
    pub(crate) bad: Style,
    pub(crate) warn: Style,
    pub(crate) dim: Style,
    pub(crate) bold: Style,
}

impl Styles {
    pub(crate) fn new(color: bool) -> Styles {
        let s = |st: Style| {
            if color {
                st.force_styling(true)
            } else {
                Style::new().force_styling(false)
            }
        };
        Styles {
            ok: s(Style::new().green()),
            bad: s(Style::new().red().bold()),
            warn: s(Style::new().yellow().bold()),
            dim: s(Style::new().dim()),
            bold: s(Style::new().bold()),
        }
    }
}

/// Live progress on a terminal.
pub(crate) struct Live {
    mp: MultiProgress,
    total: ProgressBar,
    bars: HashMap<String, ProgressBar>,
    done: u64,
}

/// Output lines of one step (or one host of it) shown as they come; past this many, the rest
/// is kept back and the step's end shows its last lines and where the full log is.
const SHOWN_LINES: usize = 20;
/// Lines shown at the end of a step whose output was collapsed.
const TAIL_LINES: usize = 5;

/// Output of one step (per host) beyond [`SHOWN_LINES`].
#[derive(Default)]
struct Collapsed {
    count: usize,
    tail: std::collections::VecDeque<String>,
}

/// Prints events for a person: live bars on a TTY, plain lines otherwise.
pub(crate) struct Console {
    live: Option<Live>,
    st: Styles,
    quiet_output: bool,
    /// Step id → its title, rendered with the run's inputs.
    titles: HashMap<String, String>,
    /// `runbook logs RUN` for the "full output" hint.
    logs_cmd: String,
    /// Output lines seen per `step/host`.
    output: HashMap<String, Collapsed>,
}

impl Console {
    pub(crate) fn new(
        tty: bool,
        color: bool,
        steps: usize,
        titles: HashMap<String, String>,
        logs_cmd: String,
    ) -> (Console, Option<MultiProgress>) {
        let live = if tty {
            let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let total = mp.add(ProgressBar::new(steps as u64));
            total.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} [{bar:30}] {pos}/{len} steps  {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            total.set_prefix("runbook");
            // The total time runs on while a step runs (not only when a step ends).
            total.enable_steady_tick(Duration::from_millis(500));
            Some(Live {
                mp,
                total,
                bars: HashMap::new(),
                done: 0,
            })
        } else {
            None
        };
        let mp = live.as_ref().map(|l| l.mp.clone());
        (
            Console {
                live,
                st: Styles::new(color),
                quiet_output: false,
                titles,
                logs_cmd,
                output: HashMap::new(),
            },
            mp,
        )
    }

    fn line(&self, text: String) {
        match &self.live {
            Some(l) => {
                let _ = l.mp.println(text);
            }
            None => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{text}");
            }
        }
    }

    fn stamp(&self, at: &str) -> String {
        // `2026-11-26T09:01:02.345Z` → `09:01:02`
        let t = at.split('T').nth(1).unwrap_or(at);
        self.st.dim.apply_to(t.get(..8).unwrap_or(t)).to_string()
    }

    fn bar_for(&mut self, key: &str, label: &str) {
        let Some(l) = &mut self.live else { return };
        if l.bars.contains_key(key) {
            return;
        }
        let pb = l.mp.insert_before(&l.total, ProgressBar::new_spinner());
        pb.set_style(
            ProgressStyle::with_template("  {spinner} {prefix} {elapsed:>4} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        pb.set_prefix(label.to_string());
        pb.enable_steady_tick(Duration::from_millis(120));
        l.bars.insert(key.to_string(), pb);
    }

    fn bar_done(&mut self, key: &str) {
        if let Some(l) = &mut self.live
            && let Some(pb) = l.bars.remove(key)
        {
            pb.finish_and_clear();
        }
    }

    /// ` — Title` for a step that has one.
    fn title(&self, step: &str) -> String {
        match self.titles.get(step) {
            Some(t) if !t.is_empty() => format!(" — {t}"),
            _ => String::new(),
        }
    }

    /// Prints what was kept back of `key`'s output: its last lines and the log command.
    fn flush_collapsed(&mut self, key: &str, step: &str, ts: &str) {
        let Some(c) = self.output.remove(key) else {
            return;
        };
        if c.count <= SHOWN_LINES {
            return;
        }
        let hidden = c.count - SHOWN_LINES - c.tail.len();
        self.line(format!(
            "{ts}   {}",
            self.st.dim.apply_to(format!(
                "… {hidden} more line(s) not shown; full output: {} {step}",
                self.logs_cmd
            ))
        ));
        for l in c.tail {
            self.line(l);
        }
    }

    fn status_word(&self, s: StepStatus) -> String {
        match s {
            StepStatus::Succeeded => self.st.ok.apply_to("✔ ok").to_string(),
            StepStatus::Skipped => self.st.dim.apply_to("⊘ skipped").to_string(),
            StepStatus::NotRun => self.st.dim.apply_to("· not run").to_string(),
            StepStatus::Running => self.st.dim.apply_to("… running").to_string(),
            StepStatus::Cancelled => self.st.warn.apply_to("✖ cancelled").to_string(),
            StepStatus::TimedOut => self.st.bad.apply_to("✖ timed out").to_string(),
            StepStatus::Failed => self.st.bad.apply_to("✖ failed").to_string(),
        }
    }
}

impl Observer for Console {
    fn on_event(&mut self, e: &Stamped) -> Result<(), String> {
        // Untrusted text (output, titles, values, comments) never reaches the terminal raw.
        let clean = crate::term::visible_event(e);
        let e = &clean;
        let ts = self.stamp(&e.at);
        match &e.event {
            Event::RunStarted {
                run_id,
                runbook,
                user,
                host,
                ..
            } => {
                self.line(format!(
                    "{ts} {} {runbook}  run {run_id}  by {user}@{host}",
                    self.st.bold.apply_to("▶ run")
                ));
            }
            Event::RunResumed {
                user,
                host,
                in_doubt,
            } => {
                self.line(format!(
                    "{ts} {} by {user}@{host}",
                    self.st.bold.apply_to("▶ resumed")
                ));
                for (step, what) in in_doubt {
                    self.line(format!("{ts}   {step} was in flight: {what}"));
                }
            }
            Event::StepSkipped { step, reason } => {
                if let Some(l) = &mut self.live {
                    l.done += 1;
                    l.total.set_position(l.done);
                }
                self.line(format!(
                    "{ts} {} {step}: {reason}",
                    self.st.dim.apply_to("⊘ skip")
                ));
            }
            Event::GateAsked {
                step,
                message,
                manual,
                ..
            } => {
                let kind = if *manual { "manual" } else { "gate" };
                self.line(format!(
                    "{ts} {} {step}: {message}",
                    self.st.warn.apply_to(format!("? {kind}"))
                ));
            }
            Event::GateWaiting {
                step,
                how_to_answer,
            } => {
                self.line(format!(
                    "{ts} {} {step} is waiting for an answer: {how_to_answer}",
                    self.st.warn.apply_to("⏸ waiting")
                ));
            }
            Event::GateAnswered {
                step,
                decision,
                user,
                by,
                ..
            } => {
                let d = match decision {
                    Decision::Approved => self.st.ok.apply_to("approved").to_string(),
                    Decision::Declined => self.st.bad.apply_to("declined").to_string(),
                    Decision::Aborted => self.st.bad.apply_to("aborted").to_string(),
                };
                let how = serde_json::to_value(by)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                self.line(format!("{ts}   {step}: {d} by {user} ({how})"));
            }
            Event::StepStarted {
                step,
                attempt,
                host,
                item,
                command,
                ..
            } => {
                let mut label = step.clone();
                if let Some(h) = host {
                    label.push_str(&format!(" @{h}"));
                }
                if let Some(i) = item {
                    label.push_str(&format!(" [{i}]"));
                }
                if *attempt > 1 {
                    label.push_str(&format!(" (try {attempt})"));
                }
                let key = format!("{step}/{}", host.clone().unwrap_or_default());
                label.push_str(&self.title(step));
                if self.live.is_some() {
                    self.bar_for(&key, &label);
                } else {
                    let cmd = command.as_deref().map(first_line).unwrap_or_default();
                    self.line(format!("{ts} ▶ {label}: {}", self.st.dim.apply_to(cmd)));
                }
            }
            Event::Output {
                step,
                host,
                stream,
                line,
            } => {
                let key = format!("{step}/{}", host.clone().unwrap_or_default());
                if let Some(l) = &self.live
                    && let Some(pb) = l.bars.get(&key)
                {
                    pb.set_message(line.clone());
                }
                if !self.quiet_output {
                    let who = match host {
                        Some(h) => format!("{step}@{h}"),
                        None => step.clone(),
                    };
                    let bar = if *stream == Stream::Stderr {
                        "┃"
                    } else {
                        "│"
                    };
                    let text = format!(
                        "{ts}   {} {line}",
                        self.st.dim.apply_to(format!("{who} {bar}"))
                    );
                    let c = self.output.entry(key).or_default();
                    c.count += 1;
                    if c.count <= SHOWN_LINES {
                        self.line(text);
                    } else {
                        if c.count == SHOWN_LINES + 1 {
                            let note = format!(
                                "{ts}   {}",
                                self.st.dim.apply_to(format!(
                                    "… {who}: more output; its last {TAIL_LINES} lines are shown when it ends"
                                ))
                            );
                            self.line(note);
                        }
                        let c = self
                            .output
                            .entry(format!("{step}/{}", host.clone().unwrap_or_default()))
                            .or_default();
                        c.tail.push_back(text);
                        if c.tail.len() > TAIL_LINES {
                            c.tail.pop_front();
                        }
                    }
                }
            }
            Event::ProbeAttempt {
                step,
                attempt,
                value,
                satisfied,
            } => {
                let key = format!("{step}/");
                if let Some(l) = &self.live
                    && let Some(pb) = l.bars.get(&key)
                {
                    pb.set_message(format!("attempt {attempt}: {value}"));
                } else {
                    let mark = if *satisfied { "✔" } else { "…" };
                    self.line(format!("{ts}   {step} attempt {attempt} {mark} {value}"));
                }
            }
            Event::Retry {
                step,
                attempt,
                delay_ms,
                reason,
            } => {
                self.line(format!(
                    "{ts} {} {step}: {reason}; attempt {attempt} in {}",
                    self.st.warn.apply_to("↻ retry"),
                    crate::fmt::human_duration(Duration::from_millis(*delay_ms))
                ));
            }
            Event::HostFinished {
                step,
                host,
                status,
                error,
                ..
            } => {
                self.bar_done(&format!("{step}/{host}"));
                self.flush_collapsed(&format!("{step}/{host}"), step, &ts);
                let err = error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                self.line(format!(
                    "{ts}   {step}@{host} {}{err}",
                    self.status_word(*status)
                ));
            }
            Event::StepFinished {
                step,
                status,
                duration_ms,
                error,
                outputs,
                ..
            } => {
                let keys: Vec<String> = self
                    .live
                    .as_ref()
                    .map(|l| {
                        l.bars
                            .keys()
                            .filter(|k| k.starts_with(&format!("{step}/")))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                for k in keys {
                    self.bar_done(&k);
                }
                let pending: Vec<String> = self
                    .output
                    .keys()
                    .filter(|k| k.starts_with(&format!("{step}/")))
                    .cloned()
                    .collect();
                for k in pending {
                    self.flush_collapsed(&k, step, &ts);
                }
                if let Some(l) = &mut self.live {
                    l.done += 1;
                    l.total.set_position(l.done);
                }
                let d = crate::fmt::human_duration(Duration::from_millis(*duration_ms));
                let err = error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                let outs = if outputs.is_empty() {
                    String::new()
                } else {
                    let kv: Vec<String> = outputs
                        .iter()
                        .map(|(k, v)| {
                            format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_string))
                        })
                        .collect();
                    format!("  {}", self.st.dim.apply_to(kv.join(" ")))
                };
                self.line(format!(
                    "{ts} {} {step}{} ({d}){err}{outs}",
                    self.status_word(*status),
                    self.title(step)
                ));
            }
            Event::RollbackStarted { step, .. } => {
                self.line(format!(
                    "{ts} {} {step}",
                    self.st.warn.apply_to("↶ rollback")
                ));
            }
            Event::RollbackFinished {
                step,
                status,
                error,
                ..
            } => {
                let err = error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                self.line(format!(
                    "{ts}   rollback of {step} {}{err}",
                    self.status_word(*status)
                ));
            }
            Event::RollbackNotRun { step, reason } => {
                self.line(format!(
                    "{ts} {} rollback of {step} NOT run: {reason}",
                    self.st.bad.apply_to("!")
                ));
            }
            Event::RollbacksDischarged { by, steps } => {
                self.line(format!(
                    "{ts} ⚑ commit {by}: rollbacks of {} discharged (they will not run)",
                    steps.join(", ")
                ));
            }
            Event::Warning { message } => {
                self.line(format!(
                    "{ts} {} {message}",
                    self.st.warn.apply_to("warning:")
                ));
            }
            Event::ItemStarted { .. } | Event::ItemFinished { .. } => {}
            Event::RunFinished { .. } => {
                if let Some(l) = &self.live {
                    l.total.finish_and_clear();
                    for pb in l.bars.values() {
                        pb.finish_and_clear();
                    }
                }
            }
        }
        Ok(())
    }
}

fn first_line(s: &str) -> String {
    let mut lines = s.lines();
    let first = lines.next().unwrap_or_default().to_string();
    if lines.next().is_some() {
        format!("{first} …")
    } else {
        first
    }
}

/// Writes every event as one JSON line on stdout (`--output json`), for other tools.
pub(crate) struct JsonLines;

impl Observer for JsonLines {
    fn on_event(&mut self, e: &Stamped) -> Result<(), String> {
        let line = crate::term::json_safe(serde_json::to_string(e).map_err(|e| e.to_string())?);
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())
    }
}
