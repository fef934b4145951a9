//! What each event prints on the console.

use super::*;

/// What each event prints.
impl Console {
    /// A run starts, resumes, warns or ends.
    pub(super) fn run_event(&mut self, ts: &str, e: &Event) {
        match e {
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
            Event::Warning { message } => {
                self.line(format!(
                    "{ts} {} {message}",
                    self.st.warn.apply_to("warning:")
                ));
            }
            Event::RunFinished { .. } => {
                if let Some(l) = &self.live {
                    l.total.finish_and_clear();
                    for pb in l.bars.values() {
                        pb.finish_and_clear();
                    }
                }
            }
            _ => {}
        }
    }

    /// A gate or manual step is asked, waits or is answered.
    pub(super) fn gate_event(&mut self, ts: &str, e: &Event) {
        match e {
            Event::GateAsked {
                step,
                message,
                manual,
                rollback,
                ..
            } => {
                let kind = if *rollback {
                    "rollback by hand"
                } else if *manual {
                    "manual"
                } else {
                    "gate"
                };
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
            _ => {}
        }
    }

    /// A step starts, is skipped, probes, retries, or ends on one host.
    pub(super) fn step_event(&mut self, ts: &str, e: &Event) {
        match e {
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
            Event::AskAnswered {
                step,
                user,
                have,
                need,
                ..
            } => {
                self.line(format!(
                    "{ts}   {step}: answered by {user} ({have} of {need})"
                ));
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
                self.flush_collapsed(&format!("{step}/{host}"), step, ts);
                let err = error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                self.line(format!(
                    "{ts}   {step}@{host} {}{err}",
                    self.status_word(*status)
                ));
            }
            _ => {}
        }
    }

    /// A line of a step's output: shown up to `SHOWN_LINES`, then only its last `TAIL_LINES`.
    pub(super) fn output(&mut self, ts: &str, e: &Event) {
        let Event::Output {
            step,
            host,
            stream,
            line,
        } = e
        else {
            return;
        };
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

    /// A step ends: its bars close, collapsed output is flushed, its line printed.
    pub(super) fn step_finished(&mut self, ts: &str, e: &Event) {
        let Event::StepFinished {
            step,
            status,
            duration_ms,
            error,
            outputs,
            ..
        } = e
        else {
            return;
        };
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
            self.flush_collapsed(&k, step, ts);
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
                .map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_string)))
                .collect();
            format!("  {}", self.st.dim.apply_to(kv.join(" ")))
        };
        self.line(format!(
            "{ts} {} {step}{} ({d}){err}{outs}",
            self.status_word(*status),
            self.title(step)
        ));
    }

    /// The unwinding: rollbacks start, end, do not run, or are discharged.
    pub(super) fn rollback_event(&mut self, ts: &str, e: &Event) {
        match e {
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
            _ => {}
        }
    }
}
