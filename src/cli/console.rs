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

mod events;
mod prompt;
mod summary;
pub(crate) use prompt::{TtyPrompter, read_line_until};
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
    fn on_event(&mut self, e: &Stamped) -> Result<(), crate::event::ObserverError> {
        // Untrusted text (output, titles, values, comments) never reaches the terminal raw.
        let clean = crate::term::visible_event(e);
        let e = &clean;
        let ts = self.stamp(&e.at);
        match &e.event {
            Event::RunStarted { .. }
            | Event::RunResumed { .. }
            | Event::Warning { .. }
            | Event::RunFinished { .. } => self.run_event(&ts, &e.event),
            Event::GateAsked { .. } | Event::GateWaiting { .. } | Event::GateAnswered { .. } => {
                self.gate_event(&ts, &e.event)
            }
            Event::StepSkipped { .. }
            | Event::AskAnswered { .. }
            | Event::StepStarted { .. }
            | Event::ProbeAttempt { .. }
            | Event::Retry { .. }
            | Event::HostFinished { .. } => self.step_event(&ts, &e.event),
            Event::Output { .. } => self.output(&ts, &e.event),
            Event::StepFinished { .. } => self.step_finished(&ts, &e.event),
            Event::RollbackStarted { .. }
            | Event::RollbackFinished { .. }
            | Event::RollbackNotRun { .. }
            | Event::RollbacksDischarged { .. } => self.rollback_event(&ts, &e.event),
            // The prompt itself was on the terminal.
            Event::ItemStarted { .. }
            | Event::ItemFinished { .. }
            | Event::InputGiven { .. }
            | Event::RollbackItemStarted { .. }
            | Event::RollbackItemFinished { .. }
            // The question itself is the prompter's (`confirm_rollback`).
            | Event::RollbackAsked { .. } => {}
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
    fn on_event(&mut self, e: &Stamped) -> Result<(), crate::event::ObserverError> {
        let line = crate::term::json_safe(serde_json::to_string(e).map_err(|e| e.to_string())?);
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
        Ok(())
    }
}
