//! A YAML document as a tree of [`Node`]s, each carrying the byte span it came from.
//!
//! Built from `saphyr-parser` events rather than through serde, so that validation can walk the
//! whole document and report *every* problem at once (serde stops at the first), and so that
//! every scalar keeps its exact span for carets. Duplicate keys, alias bombs, and runaway
//! nesting are refused here, before anything else looks at the document.

use std::ops::Range;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::diagnostic::Diagnostic;

/// Deepest nesting accepted; runbooks are shallow and the limit keeps recursion bounded.
const MAX_DEPTH: usize = 64;
/// Most nodes a document may expand to (aliases included): stops "billion laughs".
const MAX_NODES: usize = 1_000_000;
/// Most scalar bytes aliases may add (a 4 MiB scalar behind 2,000 aliases is 8 GB).
const MAX_ALIAS_BYTES: usize = 32 * 1024 * 1024;

/// One YAML value with the byte range it occupies in the source.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: NodeKind,
    pub span: Range<usize>,
}

/// The shape of a [`Node`]. Scalars stay text: the reader decides what type it expects.
#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    /// A scalar; `plain` is false for quoted and block scalars (which are always strings).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// True for `~`, `null`, `Null`, `NULL` and the empty plain scalar.
    pub(crate) fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The scalar's text, if this is a scalar.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// What the node is, for "expected X, found Y" messages.
    pub(crate) fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar { .. } if self.is_null() => "null",
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }

    /// Bytes of scalar text in this subtree (used to bound alias expansion).
    fn text_bytes(&self) -> usize {
        match &self.kind {
            NodeKind::Scalar { text, .. } => text.len(),
            NodeKind::Seq(items) => items.iter().map(Node::text_bytes).sum(),
            NodeKind::Map(pairs) => pairs
                .iter()
                .map(|(k, v)| k.text_bytes() + v.text_bytes())
                .sum(),
        }
    }

    /// Number of nodes in this subtree (used to bound alias expansion).
    fn weight(&self) -> usize {
        match &self.kind {
            NodeKind::Scalar { .. } => 1,
            NodeKind::Seq(items) => 1 + items.iter().map(Node::weight).sum::<usize>(),
            NodeKind::Map(pairs) => {
                1 + pairs
                    .iter()
                    .map(|(k, v)| k.weight() + v.weight())
                    .sum::<usize>()
            }
        }
    }
}

/// A container being built while its events stream in.
enum Open {
    Seq {
        start: usize,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        start: usize,
        anchor: usize,
        pairs: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

/// Converts the parser's character-indexed markers to byte offsets.
struct Offsets {
    /// Byte offset of each char index; empty when the source is ASCII (identity).
    table: Vec<usize>,
    len: usize,
}

impl Offsets {
    fn new(src: &str) -> Offsets {
        let table = if src.is_ascii() {
            Vec::new()
        } else {
            src.char_indices().map(|(b, _)| b).collect()
        };
        Offsets {
            table,
            len: src.len(),
        }
    }

    fn byte(&self, char_index: usize) -> usize {
        if self.table.is_empty() {
            char_index.min(self.len)
        } else {
            self.table.get(char_index).copied().unwrap_or(self.len)
        }
    }

    fn range(&self, span: Span) -> Range<usize> {
        self.byte(span.start.index())..self.byte(span.end.index())
    }
}

/// The most likely cause of a syntax error at byte `at`, from the line it is on.
fn syntax_help(src: &str, at: usize) -> &'static str {
    let at = at.min(src.len());
    let start = src[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = src[at..].find('\n').map_or(src.len(), |i| at + i);
    let line = &src[start..end];
    if line.contains("{{") {
        "quote this value: `{{` starts a YAML mapping (inside `{ … }` too); write the templated value as \"…{{ x }}…\""
    } else if line.starts_with('\t') || line.trim_start_matches(' ').starts_with('\t') {
        "YAML uses spaces, not tabs, for indentation"
    } else {
        "check quotes, colons, indentation (spaces, not tabs) and list dashes near this point"
    }
}

/// Parses one YAML document into a [`Node`] tree.
///
/// Returns every problem found: a syntax error ends parsing, but duplicate keys are all reported.
/// An empty document yields `Ok(None)`.
pub(crate) fn parse(src: &str) -> Result<Option<Node>, Vec<Diagnostic>> {
    let offsets = Offsets::new(src);
    let mut diags = Vec::new();
    let mut tree = Tree::default();
    let mut documents = 0usize;

    for item in Parser::new_from_str(src) {
        let (event, span) = match item {
            Ok(pair) => pair,
            Err(err) => {
                let at = offsets.byte(err.marker().index());
                let end = next_char_boundary(src, at);
                diags.push(
                    Diagnostic::error("yaml-syntax", format!("YAML syntax error: {}", err.info()))
                        .with_span(at..end, "here")
                        .with_help(syntax_help(src, at)),
                );
                return Err(diags);
            }
        };
        let range = offsets.range(span);
        let finished: Result<Option<(Node, usize)>, Box<Diagnostic>> = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    Err(Box::new(
                        Diagnostic::error(
                            "multiple-documents",
                            "a runbook file holds exactly one YAML document",
                        )
                        .with_span(
                            range.start..range.end.max(range.start + 3).min(src.len()),
                            "a second document starts here",
                        )
                        .with_help("put each runbook in its own file"),
                    ))
                } else {
                    Ok(None)
                }
            }
            Event::Scalar(text, style, anchor, _tag) => Ok(Some((
                Node {
                    kind: NodeKind::Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                    span: scalar_range(src, range),
                },
                anchor,
            ))),
            Event::Alias(id) => tree.alias(id, range).map(|node| Some((node, 0))),
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => tree
                .open(matches!(event, Event::SequenceStart(..)), anchor, range)
                .map(|()| None),
            Event::SequenceEnd | Event::MappingEnd => Ok(tree.close(range, &mut diags)),
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => Ok(None),
        };
        let attached = match finished {
            Ok(Some((node, anchor))) => tree.attach(node, anchor),
            Ok(None) => Ok(()),
            Err(d) => Err(d),
        };
        if let Err(d) = attached {
            diags.push(*d);
            return Err(diags);
        }
    }

    if diags.is_empty() {
        Ok(tree.root)
    } else {
        Err(diags)
    }
}

/// The tree being built: the collections still open, the anchors, and what aliases expanded
/// so far (bounded: an alias bomb is refused).
#[derive(Default)]
struct Tree {
    stack: Vec<Open>,
    anchors: Vec<Option<Node>>,
    root: Option<Node>,
    total_nodes: usize,
    alias_bytes: usize,
}

impl Tree {
    /// An alias: a copy of the node its anchor names, at the alias's place.
    fn alias(&mut self, id: usize, range: Range<usize>) -> Result<Node, Box<Diagnostic>> {
        let Some(anchored) = self.anchors.get(id).and_then(Option::as_ref) else {
            return Err(Box::new(
                Diagnostic::error("yaml-syntax", "alias refers to an unknown anchor")
                    .with_span(range, "unknown anchor"),
            ));
        };
        self.total_nodes += anchored.weight();
        self.alias_bytes += anchored.text_bytes();
        if self.alias_bytes > MAX_ALIAS_BYTES {
            return Err(Box::new(
                Diagnostic::error(
                    "alias-expansion",
                    "aliases expand this document beyond 32 MiB of text",
                )
                .with_span(range, "this alias")
                .with_help("a runbook never needs this much text; this looks like an alias bomb"),
            ));
        }
        if self.total_nodes > MAX_NODES {
            return Err(Box::new(
                Diagnostic::error(
                    "alias-expansion",
                    "aliases expand this document beyond 1,000,000 values",
                )
                .with_span(range, "this alias")
                .with_help("a runbook never needs this many values; this looks like an alias bomb"),
            ));
        }
        let mut node = anchored.clone();
        node.span = range;
        Ok(node)
    }

    /// A sequence (`seq`) or mapping starts.
    fn open(
        &mut self,
        seq: bool,
        anchor: usize,
        range: Range<usize>,
    ) -> Result<(), Box<Diagnostic>> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(Box::new(
                Diagnostic::error(
                    "nesting-too-deep",
                    format!("values are nested more than {MAX_DEPTH} levels deep"),
                )
                .with_span(range, "too deep here")
                .with_help("a runbook is a few levels deep; flatten this structure"),
            ));
        }
        self.stack.push(if seq {
            Open::Seq {
                start: range.start,
                anchor,
                items: Vec::new(),
            }
        } else {
            Open::Map {
                start: range.start,
                anchor,
                pairs: Vec::new(),
                key: None,
            }
        });
        Ok(())
    }

    /// The innermost open sequence or mapping ends: its node and anchor.
    fn close(&mut self, range: Range<usize>, diags: &mut Vec<Diagnostic>) -> Option<(Node, usize)> {
        match self.stack.pop() {
            Some(Open::Seq {
                start,
                anchor,
                items,
            }) => {
                let end = items
                    .last()
                    .map_or(range.end, |n| n.span.end.max(range.end));
                Some((
                    Node {
                        kind: NodeKind::Seq(items),
                        span: start..end.max(start),
                    },
                    anchor,
                ))
            }
            Some(Open::Map {
                start,
                anchor,
                pairs,
                ..
            }) => {
                check_duplicate_keys(&pairs, diags);
                let end = pairs
                    .last()
                    .map_or(range.end, |(_, v)| v.span.end.max(range.end));
                Some((
                    Node {
                        kind: NodeKind::Map(pairs),
                        span: start..end.max(start),
                    },
                    anchor,
                ))
            }
            None => None,
        }
    }

    /// A finished node: counted, remembered under its anchor, put where it belongs.
    fn attach(&mut self, node: Node, anchor: usize) -> Result<(), Box<Diagnostic>> {
        self.total_nodes += 1;
        if self.total_nodes > MAX_NODES {
            return Err(Box::new(
                Diagnostic::error("alias-expansion", "document has more than 1,000,000 values")
                    .with_span(node.span.clone(), "here"),
            ));
        }
        if anchor > 0 {
            if self.anchors.len() <= anchor {
                self.anchors.resize(anchor + 1, None);
            }
            self.anchors[anchor] = Some(node.clone());
        }
        match self.stack.last_mut() {
            Some(Open::Seq { items, .. }) => items.push(node),
            Some(Open::Map { pairs, key, .. }) => match key.take() {
                Some(k) => pairs.push((k, node)),
                None => *key = Some(node),
            },
            None => self.root = Some(node),
        }
        Ok(())
    }
}

/// Reports each key that repeats an earlier key of the same mapping.
fn check_duplicate_keys(pairs: &[(Node, Node)], diags: &mut Vec<Diagnostic>) {
    let mut seen: std::collections::HashMap<&str, &Node> = std::collections::HashMap::new();
    for (key, _) in pairs {
        let Some(text) = key.as_str() else { continue };
        if let Some(first) = seen.get(text) {
            diags.push(
                Diagnostic::error("duplicate-key", format!("duplicate key `{text}`"))
                    .with_span(key.span.clone(), "defined again here")
                    .with_related(first.span.clone(), "first defined here")
                    .with_help("YAML keys must be unique within a mapping; remove or rename one"),
            );
        } else {
            seen.insert(text, key);
        }
    }
}

/// The span of a scalar's *value*: for quoted scalars the parser's span covers the quotes;
/// carets look best under the text itself, so keep it as is (quotes included) but never empty.
fn scalar_range(src: &str, range: Range<usize>) -> Range<usize> {
    if range.start >= range.end {
        range.start..next_char_boundary(src, range.start)
    } else {
        range
    }
}

/// The offset one character after `at` (or `at` itself at the end of input).
fn next_char_boundary(src: &str, at: usize) -> usize {
    let at = at.min(src.len());
    src[at..].chars().next().map_or(at, |c| at + c.len_utf8())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(src: &str) -> Node {
        match parse(src) {
            Ok(Some(node)) => node,
            other => panic!("unexpected parse result: {other:?}"),
        }
    }

    #[test]
    fn spans_point_at_values() {
        let src = "a: hello\nb: [1, 2]\n";
        let node = root(src);
        let NodeKind::Map(pairs) = &node.kind else {
            panic!("not a map")
        };
        assert_eq!(&src[pairs[0].1.span.clone()], "hello");
        assert_eq!(&src[pairs[1].0.span.clone()], "b");
    }

    #[test]
    fn duplicate_keys_are_all_reported() {
        let Err(diags) = parse("a: 1\na: 2\nb: 1\nb: 2\n") else {
            panic!("expected errors")
        };
        assert_eq!(diags.len(), 2);
        assert!(diags.iter().all(|d| d.code == "duplicate-key"));
    }

    #[test]
    fn billion_laughs_is_refused() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let Err(diags) = parse(&doc) else {
            panic!("expected refusal")
        };
        assert_eq!(diags[0].code, "alias-expansion");
    }

    #[test]
    fn multibyte_offsets_are_bytes() {
        let src = "é: ünïcode\n";
        let node = root(src);
        let NodeKind::Map(pairs) = &node.kind else {
            panic!("not a map")
        };
        assert_eq!(&src[pairs[0].1.span.clone()], "ünïcode");
    }
}
