//! Typed reads from the YAML tree that record a diagnostic instead of failing.
//!
//! Every reader returns `Option`: `None` means "a problem was recorded, carry on", so one pass
//! over the document finds every problem.

use std::ops::Range;
use std::time::Duration;

use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::load::{Node, NodeKind};
use crate::model::{Named, Tmpl};

/// Collects diagnostics while the document is read.
pub(crate) struct Reader {
    pub(crate) diags: Vec<Diagnostic>,
    /// Names made by inlining a called runbook (`unseal.check`): valid although dotted.
    pub(crate) composed: std::collections::HashSet<String>,
}

/// The fields of one mapping, after unknown keys were reported.
pub(crate) struct Fields<'n> {
    pub(crate) node: &'n Node,
    pairs: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    pub(crate) fn get(&self, key: &str) -> Option<&'n Node> {
        self.pairs
            .iter()
            .find(|(k, _, v)| *k == key && !v.is_null())
            .map(|(_, _, v)| *v)
    }

    /// The span of a key (for "this field" carets).
    pub(crate) fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.pairs
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, k, _)| k.span.clone())
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

impl Reader {
    pub(crate) fn new() -> Reader {
        Reader {
            diags: Vec::new(),
            composed: std::collections::HashSet::new(),
        }
    }

    pub(crate) fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn wrong_type(&mut self, node: &Node, expected: &str, what: &str) {
        let mut d = Diagnostic::error(
            "wrong-type",
            format!("{what} must be {expected}, found {}", node.describe()),
        )
        .with_span(node.span.clone(), format!("expected {expected}"));
        // `run: {{ node }}` is a mapping whose only key is a mapping: a template left unquoted.
        if let NodeKind::Map(pairs) = &node.kind
            && pairs.len() == 1
            && matches!(pairs[0].0.kind, NodeKind::Map(_))
        {
            d = d.with_help(
                "quote this value: `{{` starts a YAML mapping; write it as \"{{ … }}\" (or use a block scalar `|`)",
            );
        }
        self.push(d);
    }

    /// Reads a mapping, reporting keys not in `known` (with a suggestion).
    pub(crate) fn fields<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        known: &[&str],
    ) -> Option<Fields<'n>> {
        let NodeKind::Map(pairs) = &node.kind else {
            self.wrong_type(node, "a mapping", what);
            return None;
        };
        let mut out = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            let Some(key) = k.as_str() else {
                self.wrong_type(k, "a string key", what);
                continue;
            };
            if known.contains(&key) {
                out.push((key, k, v));
            } else {
                let mut d =
                    Diagnostic::error("unknown-field", format!("unknown field `{key}` in {what}"))
                        .with_span(k.span.clone(), "not a field here");
                d = d.with_help(match did_you_mean(key, known.iter().copied()) {
                    Some(s) => s,
                    None => format!("expected one of: {}", known.join(", ")),
                });
                self.push(d);
            }
        }
        Some(Fields { node, pairs: out })
    }

    /// Reports a missing required field at the mapping.
    pub(crate) fn missing(&mut self, fields: &Fields<'_>, key: &str, what: &str) {
        let span = fields.node.span.clone();
        let span = span.start..(span.start + 1).min(span.end.max(span.start + 1));
        self.push(
            Diagnostic::error("missing-field", format!("{what} needs a `{key}` field"))
                .with_span(span, format!("`{key}` missing here")),
        );
    }

    pub(crate) fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match node.as_str() {
            Some(s) if !node.is_null() => Some(s.to_string()),
            _ => {
                self.wrong_type(node, "a string", what);
                None
            }
        }
    }

    pub(crate) fn named(&mut self, node: &Node, what: &str) -> Option<Named> {
        self.string(node, what).map(|name| Named {
            name,
            span: node.span.clone(),
        })
    }

    pub(crate) fn tmpl(&mut self, node: &Node, what: &str) -> Option<Tmpl> {
        self.string(node, what).map(|src| Tmpl {
            src,
            span: node.span.clone(),
        })
    }

    pub(crate) fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.as_str() {
            Some("true" | "True" | "TRUE") => Some(true),
            Some("false" | "False" | "FALSE") => Some(false),
            _ => {
                self.wrong_type(node, "true or false", what);
                None
            }
        }
    }

    pub(crate) fn uint(&mut self, node: &Node, what: &str, max: u64) -> Option<u64> {
        match node.as_str().map(|s| s.parse::<u64>()) {
            Some(Ok(n)) if n <= max => Some(n),
            Some(Ok(_)) => {
                self.push(
                    Diagnostic::error("invalid-value", format!("{what} must be at most {max}"))
                        .with_span(node.span.clone(), "too large"),
                );
                None
            }
            _ => {
                self.wrong_type(node, "a whole number", what);
                None
            }
        }
    }

    pub(crate) fn duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
        let text = node.as_str().unwrap_or_default().trim();
        let help = "write a duration with a unit: 500ms, 30s, 5m, 1h30m";
        if text.chars().all(|c| c.is_ascii_digit()) && !text.is_empty() {
            self.push(
                Diagnostic::error("bad-duration", format!("{what} `{text}` has no unit"))
                    .with_span(node.span.clone(), "no unit")
                    .with_help(format!("write `{text}s` for seconds; {help}")),
            );
            return None;
        }
        match text.parse::<jiff::SignedDuration>() {
            Ok(d) if !d.is_negative() => Some(d.unsigned_abs()),
            _ => {
                self.push(
                    Diagnostic::error("bad-duration", format!("{what} `{text}` is not a duration"))
                        .with_span(node.span.clone(), "not a duration")
                        .with_help(help),
                );
                None
            }
        }
    }

    pub(crate) fn seq<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.kind {
            NodeKind::Seq(items) => Some(items),
            _ => {
                self.wrong_type(node, "a list", what);
                None
            }
        }
    }

    /// A list of names; a single scalar is accepted as a one-element list.
    pub(crate) fn names(&mut self, node: &Node, what: &str) -> Vec<Named> {
        match &node.kind {
            NodeKind::Seq(items) => items.iter().filter_map(|n| self.named(n, what)).collect(),
            NodeKind::Scalar { .. } => self.named(node, what).into_iter().collect(),
            NodeKind::Map(_) => {
                self.wrong_type(node, "a list of names", what);
                Vec::new()
            }
        }
    }

    /// A mapping of string keys to templates (headers, env, query).
    pub(crate) fn tmpl_map(&mut self, node: &Node, what: &str) -> Vec<(String, Tmpl)> {
        let NodeKind::Map(pairs) = &node.kind else {
            self.wrong_type(node, "a mapping", what);
            return Vec::new();
        };
        pairs
            .iter()
            .filter_map(|(k, v)| {
                let key = self.string(k, what)?;
                let val = self.tmpl(v, what)?;
                Some((key, val))
            })
            .collect()
    }

    pub(crate) fn regex(&mut self, node: &Node, what: &str) -> Option<regex::Regex> {
        let text = self.string(node, what)?;
        match regex::Regex::new(&text) {
            Ok(r) => Some(r),
            Err(e) => {
                let msg = e.to_string();
                let last = msg.lines().last().unwrap_or("invalid").to_string();
                self.push(
                    Diagnostic::error(
                        "invalid-pattern",
                        format!("{what} is not a valid regular expression"),
                    )
                    .with_span(node.span.clone(), last),
                );
                None
            }
        }
    }
}

/// Converts a YAML node to plain JSON (numbers and booleans resolved for plain scalars).
pub(crate) fn to_json(node: &Node) -> serde_json::Value {
    match &node.kind {
        NodeKind::Scalar { text, plain } => {
            if !plain {
                return serde_json::Value::String(text.clone());
            }
            if node.is_null() {
                return serde_json::Value::Null;
            }
            match text.as_str() {
                "true" | "True" | "TRUE" => return serde_json::Value::Bool(true),
                "false" | "False" | "FALSE" => return serde_json::Value::Bool(false),
                _ => {}
            }
            if let Ok(i) = text.parse::<i64>() {
                return serde_json::Value::from(i);
            }
            if let Ok(f) = text.parse::<f64>()
                && let Some(n) = serde_json::Number::from_f64(f)
                && text.chars().any(|c| c.is_ascii_digit())
            {
                return serde_json::Value::Number(n);
            }
            serde_json::Value::String(text.clone())
        }
        NodeKind::Seq(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        NodeKind::Map(pairs) => serde_json::Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), to_json(v)))
                .collect(),
        ),
    }
}
