//! Renderers of a [`Plan`]: readable text (fits 80 columns), JSON (versioned), DOT, Mermaid.
//! All deterministic: the same runbook and inputs give the same bytes.

use std::fmt::Write as _;

use super::{Plan, PlanTarget, PlannedAction, PlannedStep};

/// Output formats of `runbook plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
    Dot,
    Mermaid,
}

pub(crate) fn render(plan: &Plan, format: Format) -> String {
    match format {
        Format::Text => text(plan),
        Format::Json => serde_json::to_string_pretty(plan).unwrap_or_default() + "\n",
        Format::Dot => dot(plan),
        Format::Mermaid => mermaid(plan),
    }
}

/// Wraps `s` at word boundaries into lines of at most `width` columns; the first line starts
/// with `first`, the others with `rest`. Words longer than a line are split.
fn wrap<'p>(out: &mut String, first: &'p str, rest: &'p str, s: &str, width: usize) {
    wrap_with(out, first, rest, s, width, "")
}

/// Wraps code: a source line that had to be broken continues after a `↪` marker, so a reader
/// never mistakes a wrapped piece for a new line of the command.
fn wrap_code<'p>(out: &mut String, first: &'p str, rest: &'p str, s: &str) {
    wrap_with(out, first, rest, s, 80, "↪")
}

fn wrap_with<'p>(
    out: &mut String,
    first: &'p str,
    rest: &'p str,
    s: &str,
    width: usize,
    mark: &str,
) {
    fn flush<'p>(out: &mut String, current: &mut String, prefix: &mut &'p str, rest: &'p str) {
        let _ = writeln!(out, "{}{}", prefix, current.trim_end());
        *prefix = rest;
        current.clear();
    }
    let mut prefix = first;
    if s.is_empty() {
        let _ = writeln!(out, "{}", prefix.trim_end());
        return;
    }
    for line in s.lines() {
        let room = width.saturating_sub(prefix.chars().count()).max(20);
        let indent: String = line.chars().take_while(|c| *c == ' ').collect();
        let mut current = String::new();
        if line.trim().is_empty() {
            flush(out, &mut current, &mut prefix, rest);
            continue;
        }
        current.push_str(&indent);
        for word in line.split(' ').filter(|w| !w.is_empty()) {
            let used = current.chars().count();
            let wlen = word.chars().count();
            if used > indent.len() && used + 1 + wlen > room {
                flush(out, &mut current, &mut prefix, rest);
                current.push_str(&indent);
                current.push_str(mark);
            }
            if current.chars().count() > indent.len() {
                current.push(' ');
            }
            let mut chars: Vec<char> = word.chars().collect();
            while current.chars().count() + chars.len() > room && chars.len() > room / 2 {
                let take = room.saturating_sub(current.chars().count()).max(1);
                let head: String = chars.drain(..take.min(chars.len())).collect();
                current.push_str(&head);
                flush(out, &mut current, &mut prefix, rest);
            }
            current.extend(chars);
        }
        flush(out, &mut current, &mut prefix, rest);
    }
}

fn target_line(targets: &[PlanTarget]) -> String {
    targets
        .iter()
        .map(|t| {
            let mut s = format!("{} ({})", t.host, t.destination());
            if let Some(j) = &t.jump {
                s.push_str(&format!(" via {j}"));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn action_lines(out: &mut String, action: &PlannedAction, indent: &str) {
    let field = |name: &str| format!("{indent}{name:<9} ");
    let cont = format!("{indent}{:<9} ", "");
    match action {
        PlannedAction::Run {
            command,
            env,
            stdin,
        } => {
            wrap_code(out, &field("run:"), &cont, command);
            for (k, v) in env {
                wrap(out, &field("env:"), &cont, &format!("{k}={v}"), 80);
            }
            if let Some(s) = stdin {
                wrap_code(out, &field("stdin:"), &cont, s);
            }
        }
        PlannedAction::Http(r) => {
            wrap(
                out,
                &field("http:"),
                &cont,
                &format!("{} {}", r.method, r.url),
                80,
            );
            for (k, v) in &r.query {
                wrap(out, &field("query:"), &cont, &format!("{k}={v}"), 80);
            }
            for (k, v) in &r.headers {
                wrap(out, &field("header:"), &cont, &format!("{k}: {v}"), 80);
            }
            if let Some(b) = &r.body {
                wrap(out, &field("body:"), &cont, b, 80);
            }
            if let Some(ca) = &r.ca_cert {
                wrap(out, &field("ca_cert:"), &cont, ca, 80);
            }
            if r.insecure {
                wrap(
                    out,
                    &field("TLS:"),
                    &cont,
                    "!!! INSECURE: certificate verification is OFF !!!",
                    80,
                );
            }
        }
        PlannedAction::Wait {
            probe,
            until,
            every,
            backoff,
            timeout,
        } => {
            let mut poll = format!("every {every}");
            if *backoff > 1.0 {
                poll.push_str(&format!(" (x{backoff} each attempt)"));
            }
            poll.push_str(&format!(", up to {timeout}"));
            wrap(out, &field("wait:"), &cont, &poll, 80);
            action_lines(out, probe, &format!("{indent}  "));
            wrap(out, &field("until:"), &cont, until, 80);
        }
        PlannedAction::Manual { instructions } => {
            wrap(out, &field("manual:"), &cont, instructions, 80)
        }
        PlannedAction::Checkpoint => wrap(out, &field("checkpoint"), &cont, "(gate only)", 80),
        PlannedAction::Fail { message } => wrap(out, &field("fail:"), &cont, message, 80),
        PlannedAction::Ask { .. } => wrap(
            out,
            &field("ask:"),
            &cont,
            &crate::plan::ask_line(action),
            80,
        ),
        PlannedAction::Uses { file } => wrap(
            out,
            &field("uses:"),
            &cont,
            &format!("{file} (its steps are the ones above named after this step)"),
            80,
        ),
    }
}

fn for_each_lines(out: &mut String, fe: &crate::plan::PlannedForEach) {
    let field = |name: &str| format!("      {name:<9} ");
    let cont = format!("      {:<9} ", "");
    let items = match &fe.items {
        Some(items) => format!("[{}]", items.join(", ")),
        None => format!("{} (at run time)", fe.expression),
    };
    match &fe.answers {
        Some(a) => {
            let text = format!("one item per answer to `{a}`, as they arrive");
            wrap(out, &field("for each:"), &cont, &text, 80);
            if fe.items.as_ref().is_none_or(|i| !i.is_empty()) {
                let text = format!("if `{a}` is skipped: {items}");
                wrap(out, &field("else:"), &cont, &text, 80);
            }
        }
        None => wrap(out, &field("for each:"), &cont, &items, 80),
    }
    if let Some(u) = &fe.until {
        wrap(out, &field("stop when:"), &cont, u, 80);
    }
    if fe.on_item_failure_continue {
        let text = "a failed item does not stop the others (the step fails at the end)";
        wrap(out, &field("items:"), &cont, text, 80);
    }
}

fn step_text(out: &mut String, s: &PlannedStep) {
    let mut head = format!("  ● {}", s.id);
    if let Some(t) = &s.title {
        head.push_str(&format!(" — {t}"));
    }
    wrap(out, &head, "      ", "", 80);
    let field = |name: &str| format!("      {name:<9} ");
    let cont = format!("      {:<9} ", "");
    if !s.needs.is_empty() {
        wrap(out, &field("needs:"), &cont, &s.needs.join(", "), 80);
    }
    if let Some(w) = &s.when {
        let decided = match w.value {
            Some(true) => " (true now: will run)",
            Some(false) => " (false now: will be SKIPPED)",
            None => " (decided at run time)",
        };
        wrap(
            out,
            &field("when:"),
            &cont,
            &format!("{}{decided}", w.expression),
            80,
        );
    }
    if let Some(how) = &s.chosen_at_run_time {
        wrap(out, &field("on:"), &cont, how, 80);
        wrap(out, &field("members:"), &cont, &target_line(&s.targets), 80);
    } else if !s.targets.is_empty() {
        wrap(out, &field("on:"), &cont, &target_line(&s.targets), 80);
    }
    if let Some(g) = &s.gate {
        let mut text = format!("\"{}\"", g.message);
        if g.approvals > 1 {
            text.push_str(&format!(" ({} approvals)", g.approvals));
        }
        if g.other_approver {
            text.push_str(" (approver ≠ operator)");
        }
        if !g.approvers.is_empty() {
            text.push_str(&format!(" (approvers: {})", g.approvers.join(", ")));
        }
        wrap(out, &field("confirm:"), &cont, &text, 80);
    }
    if let Some(fe) = &s.for_each {
        for_each_lines(out, fe);
    }
    action_lines(out, &s.action, "      ");
    let mut limits = Vec::new();
    if let Some(t) = &s.timeout {
        limits.push(format!("timeout {t}"));
    }
    if let Some(d) = &s.deadline {
        limits.push(format!("deadline {d} (all attempts and items)"));
    }
    if s.retries > 0 {
        let mut r = format!("retries {} (backoff {})", s.retries, s.backoff);
        if let Some(w) = &s.retry_when {
            r.push_str(&format!(" only when {w}"));
        }
        limits.push(r);
    }
    if let Some(p) = s.max_parallel {
        limits.push(format!("max_parallel {p}"));
    }
    if let Some(m) = &s.max_failures {
        limits.push(format!("max_failures {m}"));
    }
    if let Some(n) = s.serial {
        limits.push(format!("serial {n}"));
    }
    if s.idempotent {
        limits.push("idempotent".into());
    }
    if s.read_only {
        limits.push("read-only".into());
    }
    if s.continue_on_failure {
        limits.push("continues on failure".into());
    }
    if s.on_failure == "stop" {
        limits.push("on failure: stops WITHOUT undoing".into());
    }
    if !limits.is_empty() {
        wrap(out, &field("limits:"), &cont, &limits.join(", "), 80);
    }
    for e in &s.expect {
        wrap(out, &field("expect:"), &cont, e, 80);
    }
    for o in &s.outputs {
        wrap(
            out,
            &field("output:"),
            &cont,
            &format!("{} = {}", o.name, o.expression),
            80,
        );
    }
    if s.commit {
        wrap(
            out,
            &field("commit:"),
            &cont,
            "point of no return: once this step succeeds, the rollbacks of the steps completed before it are discharged (never run)",
            80,
        );
    }
    if let Some(r) = &s.rollback {
        let mut where_ = String::from("undo");
        if !r.targets.is_empty() {
            where_.push_str(&format!(" on {}", target_line(&r.targets)));
        }
        wrap(out, &field("rollback:"), &cont, &where_, 80);
        action_lines(out, &r.action, "        ");
    }
}

/// The readable plan.
pub(crate) fn text(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Plan: {} ({})", plan.runbook, plan.file);
    if !plan.description.is_empty() {
        // Paragraphs are re-flowed; the YAML's own line breaks are not meaningful here.
        for para in plan.description.split("\n\n") {
            let flowed = para.split_whitespace().collect::<Vec<_>>().join(" ");
            wrap(&mut out, "  ", "  ", &flowed, 80);
        }
    }
    if !plan.inputs.is_empty() {
        let _ = writeln!(out, "\nInputs");
        let width = plan.inputs.iter().map(|i| i.name.len()).max().unwrap_or(0);
        for i in &plan.inputs {
            let line = format!("  {:<width$} = {}  ({})", i.name, i.value, i.source);
            wrap(&mut out, &line, "      ", "", 80);
        }
    }
    if let Some(l) = &plan.lock {
        let _ = writeln!(out, "\nLock: {l}");
    }
    let total = plan.steps.len();
    for (w, ids) in plan.waves.iter().enumerate() {
        let together = if ids.len() > 1 {
            format!(" ({} steps may run together)", ids.len())
        } else {
            String::new()
        };
        let _ = writeln!(out, "\nWave {}{together}", w + 1);
        for &i in ids {
            if let Some(s) = plan.steps.get(i) {
                step_text(&mut out, s);
            }
        }
    }
    if !plan.finally.is_empty() {
        let _ = writeln!(out, "\nFinally (always, in order)");
        for s in &plan.finally {
            step_text(&mut out, s);
        }
    }
    if !plan.rollback_order.is_empty() {
        let _ = writeln!(
            out,
            "\nOn failure, completed steps are undone in reverse order of completion:"
        );
        wrap(&mut out, "  ", "  ", &plan.rollback_order.join(" ← "), 80);
        let commits: Vec<&str> = plan
            .steps
            .iter()
            .filter(|s| s.commit)
            .map(|s| s.id.as_str())
            .collect();
        if !commits.is_empty() {
            let _ = writeln!(
                out,
                "  except what completed before a commit that succeeded ({}): discharged",
                commits.join(", ")
            );
        }
    }
    let gates = plan
        .steps
        .iter()
        .chain(&plan.finally)
        .filter(|s| s.gate.is_some())
        .count();
    let _ = writeln!(
        out,
        "\n{total} step{}, {} wave{}, {gates} gate{}. Nothing was run.",
        if total == 1 { "" } else { "s" },
        plan.waves.len(),
        if plan.waves.len() == 1 { "" } else { "s" },
        if gates == 1 { "" } else { "s" },
    );
    out
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Graphviz DOT: one node per step, an edge per `needs`.
pub(crate) fn dot(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", dot_escape(&plan.runbook));
    let _ = writeln!(out, "  rankdir=TB;");
    let _ = writeln!(out, "  node [shape=box, fontname=\"monospace\"];");
    for s in plan.steps.iter().chain(&plan.finally) {
        let mut label = format!("{}\\n[{}]", dot_escape(&s.id), s.kind);
        if !s.targets.is_empty() {
            let hosts: Vec<&str> = s.targets.iter().map(|t| t.host.as_str()).collect();
            label.push_str(&format!(" on {}", dot_escape(&hosts.join(","))));
        }
        let mut attrs = format!("label=\"{label}\"");
        if s.gate.is_some() {
            attrs.push_str(", style=bold, color=orange");
        }
        if s.when.is_some() {
            attrs.push_str(", shape=diamond");
        }
        if s.rollback.is_some() {
            attrs.push_str(", peripheries=2");
        }
        let _ = writeln!(out, "  \"{}\" [{attrs}];", dot_escape(&s.id));
    }
    for s in &plan.steps {
        for n in &s.needs {
            let _ = writeln!(out, "  \"{}\" -> \"{}\";", dot_escape(n), dot_escape(&s.id));
        }
    }
    // Finally steps hang off the last wave, in order.
    let mut prev: Vec<String> = plan
        .waves
        .last()
        .map(|w| {
            w.iter()
                .filter_map(|&i| plan.steps.get(i).map(|s| s.id.clone()))
                .collect()
        })
        .unwrap_or_default();
    for f in &plan.finally {
        for p in &prev {
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\" [style=dashed];",
                dot_escape(p),
                dot_escape(&f.id)
            );
        }
        prev = vec![f.id.clone()];
    }
    out.push_str("}\n");
    out
}

fn mermaid_escape(s: &str) -> String {
    s.replace('"', "#quot;")
}

/// Mermaid flowchart: paste into Markdown (GitHub, GitLab, Confluence) to draw the graph.
pub(crate) fn mermaid(plan: &Plan) -> String {
    let mut out = String::from("flowchart TD\n");
    let all: Vec<&PlannedStep> = plan.steps.iter().chain(&plan.finally).collect();
    let node = |i: usize| format!("s{i}");
    for (i, s) in all.iter().enumerate() {
        let mut label = format!("{} [{}]", s.id, s.kind);
        if s.gate.is_some() {
            label.push_str(" ✋");
        }
        let (open, close) = if s.when.is_some() {
            ("{", "}")
        } else {
            ("[", "]")
        };
        let _ = writeln!(
            out,
            "  {}{open}\"{}\"{close}",
            node(i),
            mermaid_escape(&label)
        );
    }
    let index = |id: &str| all.iter().position(|s| s.id == id);
    for (i, s) in plan.steps.iter().enumerate() {
        for n in &s.needs {
            if let Some(j) = index(n) {
                let _ = writeln!(out, "  {} --> {}", node(j), node(i));
            }
        }
    }
    let mut prev: Vec<usize> = plan.waves.last().cloned().unwrap_or_default();
    for (k, _) in plan.finally.iter().enumerate() {
        let i = plan.steps.len() + k;
        for &p in &prev {
            let _ = writeln!(out, "  {} -.-> {}", node(p), node(i));
        }
        prev = vec![i];
    }
    out
}
