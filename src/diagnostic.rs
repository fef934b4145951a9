//! Problems found in a user's runbook: data first ([`Diagnostic`]), rendering second.
//!
//! A diagnostic has a stable kebab-case `code` (documented in `docs/diagnostics.md`; never reused
//! with another meaning), a severity, a message, a primary span with a label, optional related
//! spans, and help. Renderers turn a batch of them into rustc-style text (through miette) or
//! into JSON for editors and CI. Nothing here prints.

use std::ops::Range;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};
use serde::Serialize;

/// How bad a problem is. Warnings become errors under `--strict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in a runbook, pointing at the exact bytes responsible.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// Stable kebab-case identifier, e.g. `unknown-dependency`.
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    /// Byte range in the source and the label drawn under it.
    pub span: Option<(Range<usize>, String)>,
    /// Secondary spans (e.g. "first defined here").
    pub related: Vec<(Range<usize>, String)>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            span: None,
            related: Vec::new(),
            help: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    pub fn with_span(mut self, span: Range<usize>, label: impl Into<String>) -> Diagnostic {
        self.span = Some((span, label.into()));
        self
    }

    pub fn with_related(mut self, span: Range<usize>, label: impl Into<String>) -> Diagnostic {
        self.related.push((span, label.into()));
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A source file as diagnostics see it: its display name and (lossless or lossy) text.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    pub name: String,
    pub text: String,
}

impl SourceFile {
    /// 1-based line and column (in characters) of a byte offset.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Adapter giving miette what it needs to draw one diagnostic against its source.
struct Drawable<'a> {
    diag: &'a Diagnostic,
    source: NamedSource<String>,
    /// `code` prefixed with the severity, e.g. `error[unknown-field]`.
    code: String,
}

impl std::fmt::Debug for Drawable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl std::fmt::Display for Drawable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl std::error::Error for Drawable<'_> {}

impl miette::Diagnostic for Drawable<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn std::fmt::Display + 'b>> {
        Some(Box::new(&self.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diag.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn std::fmt::Display + 'b>> {
        self.diag
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        if self.diag.span.is_some() {
            Some(&self.source)
        } else {
            None
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let text_len = self.source.inner().len();
        let clamp = move |r: &Range<usize>| -> SourceSpan {
            let start = r.start.min(text_len);
            let end = r.end.clamp(start, text_len);
            (start, end - start).into()
        };
        let primary = self
            .diag
            .span
            .iter()
            .map(move |(r, l)| LabeledSpan::new_primary_with_span(Some(l.clone()), clamp(r)));
        let related = self
            .diag
            .related
            .iter()
            .map(move |(r, l)| LabeledSpan::new_with_span(Some(l.clone()), clamp(r)));
        Some(Box::new(primary.chain(related)))
    }
}

/// Renders diagnostics rustc-style, with a caret under each span. `color` picks the theme.
pub(crate) fn render_human(source: &SourceFile, diags: &[Diagnostic], color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false)
        .with_context_lines(1);
    let mut out = String::new();
    // The source and the messages (which quote values) never reach a terminal with control
    // characters in them; `?` keeps the byte offsets the spans point at.
    let text = crate::term::same_offsets(&source.text).into_owned();
    let vis = |s: &str| crate::term::visible(s).into_owned();
    for diag in diags {
        let diag = &Diagnostic {
            code: diag.code,
            severity: diag.severity,
            message: vis(&diag.message),
            span: diag.span.as_ref().map(|(r, l)| (r.clone(), vis(l))),
            related: diag
                .related
                .iter()
                .map(|(r, l)| (r.clone(), vis(l)))
                .collect(),
            help: diag.help.as_deref().map(vis),
        };
        let (line, col) = diag
            .span
            .as_ref()
            .map_or((1, 1), |(r, _)| source.line_col(r.start));
        let prefix = match diag.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let drawable = Drawable {
            diag,
            source: NamedSource::new(vis(&source.name), text.clone()).with_language("yaml"),
            code: format!("{prefix}[{}]", diag.code),
        };
        if handler.render_report(&mut out, &drawable).is_err() {
            out.push_str(&format!(
                "{prefix}[{}]: {}:{line}:{col}: {}\n",
                diag.code, source.name, diag.message
            ));
        }
        out.push('\n');
    }
    out
}

/// One diagnostic as JSON (schema documented in `docs/diagnostics.md`).
#[derive(Debug, Serialize)]
pub(crate) struct JsonDiagnostic<'a> {
    pub file: &'a str,
    pub code: &'static str,
    pub severity: Severity,
    pub message: &'a str,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub end_line: Option<usize>,
    pub end_column: Option<usize>,
    pub label: Option<&'a str>,
    pub help: Option<&'a str>,
}

/// Converts diagnostics to their JSON shape for `--format json`.
pub(crate) fn to_json<'a>(
    source: &'a SourceFile,
    diags: &'a [Diagnostic],
) -> Vec<JsonDiagnostic<'a>> {
    diags
        .iter()
        .map(|d| {
            let (start, end) = match &d.span {
                Some((r, _)) => (Some(source.line_col(r.start)), Some(source.line_col(r.end))),
                None => (None, None),
            };
            JsonDiagnostic {
                file: &source.name,
                code: d.code,
                severity: d.severity,
                message: &d.message,
                line: start.map(|p| p.0),
                column: start.map(|p| p.1),
                end_line: end.map(|p| p.0),
                end_column: end.map(|p| p.1),
                label: d.span.as_ref().map(|(_, l)| l.as_str()),
                help: d.help.as_deref(),
            }
        })
        .collect()
}

/// "did you mean `x`?" for a misspelt name, when one candidate is close enough.
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}
