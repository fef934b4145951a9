//! Where a value stands in a shell command: the quoting context of each interpolation.
//!
//! A command template is rendered with every value replaced by a marker (see [`marker`]);
//! [`place`] then reads the rendered text the way a POSIX shell would and replaces each marker
//! with a reference to the environment variable that carries the value, written so that it is
//! correct where it stands:
//!
//! - unquoted (`echo {{ v }}`): `"${RUNBOOK_V1}"`, one word, no globbing;
//! - inside double quotes (`echo "a {{ v }} b"`), in `${…}` inside double quotes, and in the
//!   body of a here-document whose delimiter is not quoted: `${RUNBOOK_V1}`;
//! - inside single quotes, `$'…'`, a quoted here-document or an arithmetic context
//!   (`$(( … ))`, `(( … ))`, `$[ … ]`, and the positions of [`super::arith`]): refused, because
//!   no reference works there (single quotes) or bash evaluates the value as code (arithmetic
//!   evaluates array subscripts: `a[$(id)]`).
//! - after a backslash (`\{{ v }}`): the backslash is dropped, the value arrives as it is.
//!
//! The value itself never becomes part of the command text, so no value can change the
//! command whatever it contains: the shell does not re-read the result of an expansion.

use std::fmt;

/// First and last character of a value marker (private-use code points).
pub(crate) const OPEN: char = '\u{E000}';
pub(crate) const CLOSE: char = '\u{E001}';

/// The marker for value `index` in a rendered command.
pub(crate) fn marker(index: usize) -> String {
    format!("{OPEN}{index}{CLOSE}")
}

/// Whether a text contains a marker character (a template may not).
pub(crate) fn has_marker_chars(s: &str) -> bool {
    s.contains(OPEN) || s.contains(CLOSE)
}

/// A quoting context where a value cannot be placed safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unsafe {
    SingleQuotes,
    AnsiCQuotes,
    QuotedHereDoc,
    Arithmetic,
}

impl fmt::Display for Unsafe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unsafe::SingleQuotes => "inside single quotes, where no variable is expanded",
            Unsafe::AnsiCQuotes => "inside `$'…'`, where no variable is expanded",
            Unsafe::QuotedHereDoc => {
                "in a here-document with a quoted delimiter, where no variable is expanded"
            }
            Unsafe::Arithmetic => {
                "in an arithmetic context (`$(( ))`, `(( ))`, `$[ ]`, `let`, `declare -i`, \
                 `[[ … -eq … ]]`, an array subscript, `${x:offset}`), where bash evaluates the \
                 value as code"
            }
        })
    }
}

/// A value placed in an unsafe context: which one and which value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlaceError {
    pub index: usize,
    pub context: Unsafe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// Top level, `$( … )` or `` `…` ``: `parens` counts open `(` of subshells/groups.
    Code {
        parens: u32,
        backtick: bool,
    },
    Double,
    /// `${ … }`: index just after the `${`.
    Param(usize),
    /// `$(( … ))` or `(( … ))`: depth of `(` inside.
    Arith(u32),
    /// `$[ … ]`: depth of `[` inside.
    Bracket(u32),
}

/// How to write the reference to value `index` where it stands; `None` if unsafe.
fn reference(frames: &[Frame], name: &str) -> String {
    let quoted = frames.iter().rev().any(|f| matches!(f, Frame::Double));
    let in_code = matches!(frames.last(), Some(Frame::Code { .. }));
    if quoted && !in_code {
        format!("${{{name}}}")
    } else {
        format!("\"${{{name}}}\"")
    }
}

/// Replaces every marker in `rendered` with a reference to `names[index]`, or returns every
/// marker that stands in an unsafe context.
pub(crate) fn place(rendered: &str, names: &[String]) -> Result<String, Vec<PlaceError>> {
    let mut p = Placer {
        chars: rendered.chars().collect(),
        names,
        out: String::with_capacity(rendered.len()),
        errors: Vec::new(),
        frames: vec![Frame::Code {
            parens: 0,
            backtick: false,
        }],
        heredocs: Vec::new(),
        i: 0,
    };
    while p.i < p.chars.len() {
        if p.step() {
            p.i += 1;
        }
    }
    if p.errors.is_empty() {
        Ok(p.out)
    } else {
        Err(p.errors)
    }
}

/// One [`place`] pass: where the shell's reading stands and what it is inside.
struct Placer<'a> {
    chars: Vec<char>,
    names: &'a [String],
    out: String,
    errors: Vec<PlaceError>,
    frames: Vec<Frame>,
    /// Here-documents announced on the current line: delimiter, quoted, strip tabs.
    heredocs: Vec<(String, bool, bool)>,
    i: usize,
}

/// Reads a marker at `i`; returns (index, next position).
fn read_marker(chars: &[char], i: usize) -> Option<(usize, usize)> {
    if chars.get(i) != Some(&OPEN) {
        return None;
    }
    let mut j = i + 1;
    let mut n = 0usize;
    while let Some(c) = chars.get(j).and_then(|c| c.to_digit(10)) {
        n = n.saturating_mul(10).saturating_add(c as usize);
        j += 1;
    }
    (chars.get(j) == Some(&CLOSE)).then_some((n, j + 1))
}

impl Placer<'_> {
    fn name_of(&self, idx: usize) -> String {
        self.names.get(idx).cloned().unwrap_or_default()
    }

    /// Reads what stands at `self.i`. `true`: `self.i` is on the last character consumed
    /// (the caller moves past it); `false`: `self.i` is already on the next one.
    fn step(&mut self) -> bool {
        let c = self.chars[self.i];
        if let Some((idx, next)) = read_marker(&self.chars, self.i) {
            let param = match self.frames.last() {
                Some(Frame::Param(start)) => Some(*start),
                _ => None,
            };
            let arith = matches!(
                self.frames.last(),
                Some(Frame::Arith(_) | Frame::Bracket(_))
            ) || super::arith::arithmetic_position(
                &self.chars,
                self.i,
                param,
                matches!(self.frames.last(), Some(Frame::Double)),
            );
            match self.frames.last() {
                _ if arith => self.errors.push(PlaceError {
                    index: idx,
                    context: Unsafe::Arithmetic,
                }),
                _ => self
                    .out
                    .push_str(&reference(&self.frames, &self.name_of(idx))),
            }
            self.i = next;
            return false;
        }
        let next = self.chars.get(self.i + 1).copied();
        let top = self.frames.last().copied().unwrap_or(Frame::Code {
            parens: 0,
            backtick: false,
        });
        match top {
            Frame::Code { parens, backtick } => return self.code(c, next, parens, backtick),
            Frame::Double => self.double(c, next),
            Frame::Param(_) => self.param(c, next),
            Frame::Arith(depth) => self.arith(c, next, depth),
            Frame::Bracket(depth) => self.bracket(c, depth),
        }
        true
    }

    /// Top level, `$( … )` or `` `…` ``.
    fn code(&mut self, c: char, next: Option<char>, parens: u32, backtick: bool) -> bool {
        match c {
            '\\' => self.escaped(c, next),
            // Single quotes: nothing inside is special, nothing can be placed.
            '\'' => self.single_quoted(),
            '"' => {
                self.out.push(c);
                self.frames.push(Frame::Double);
            }
            '`' if backtick => {
                self.out.push(c);
                self.frames.pop();
            }
            '`' => {
                self.out.push(c);
                self.frames.push(Frame::Code {
                    parens: 0,
                    backtick: true,
                });
            }
            '$' => self.dollar(),
            // `(( … ))` as a command: arithmetic.
            '(' if next == Some('(') && word_start(&self.chars, self.i) => {
                self.out.push_str("((");
                self.i += 1;
                self.frames.push(Frame::Arith(0));
            }
            '(' => {
                self.out.push(c);
                set_parens(&mut self.frames, parens + 1);
            }
            ')' => {
                self.out.push(c);
                if parens == 0 {
                    if self.frames.len() > 1 {
                        self.frames.pop();
                    }
                } else {
                    set_parens(&mut self.frames, parens - 1);
                }
            }
            '#' if word_start(&self.chars, self.i) => {
                self.comment();
                return false;
            }
            '<' if next == Some('<') && self.chars.get(self.i + 2) == Some(&'<') => {
                // A here-string (`<<< word`): the word is an ordinary word.
                self.out.push_str("<<<");
                self.i += 3;
                return false;
            }
            '<' if next == Some('<') => {
                self.heredoc_start();
                return false;
            }
            '\n' if !self.heredocs.is_empty() => {
                self.heredoc_bodies();
                return false;
            }
            _ => self.out.push(c),
        }
        true
    }

    /// Inside double quotes.
    fn double(&mut self, c: char, next: Option<char>) {
        match c {
            '\\' => self.escaped(c, next),
            '"' => {
                self.out.push(c);
                self.frames.pop();
            }
            '`' => {
                self.out.push(c);
                self.frames.push(Frame::Code {
                    parens: 0,
                    backtick: true,
                });
            }
            '$' => self.dollar(),
            _ => self.out.push(c),
        }
    }

    /// Inside `${ … }`.
    fn param(&mut self, c: char, next: Option<char>) {
        match c {
            '\\' => self.escaped(c, next),
            '}' => {
                self.out.push(c);
                self.frames.pop();
            }
            '"' => {
                self.out.push(c);
                self.frames.push(Frame::Double);
            }
            '\'' if !self.frames.iter().any(|f| matches!(f, Frame::Double)) => {
                self.single_quoted();
            }
            '$' => self.dollar(),
            _ => self.out.push(c),
        }
    }

    /// Inside `$(( … ))`, `depth` open `(` deep.
    fn arith(&mut self, c: char, next: Option<char>, depth: u32) {
        match c {
            '(' => {
                self.out.push(c);
                self.frames.pop();
                self.frames.push(Frame::Arith(depth + 1));
            }
            ')' if depth > 0 => {
                self.out.push(c);
                self.frames.pop();
                self.frames.push(Frame::Arith(depth - 1));
            }
            ')' if next == Some(')') => {
                self.out.push_str("))");
                self.i += 1;
                self.frames.pop();
            }
            '$' => self.dollar(),
            _ => self.out.push(c),
        }
    }

    /// `$[ … ]` (old bash arithmetic), `depth` open `[` deep.
    fn bracket(&mut self, c: char, depth: u32) {
        self.out.push(c);
        let inner = match c {
            '[' => Some(depth + 1),
            ']' if depth > 0 => Some(depth - 1),
            ']' => None,
            _ => return,
        };
        self.frames.pop();
        if let Some(d) = inner {
            self.frames.push(Frame::Bracket(d));
        }
    }

    /// A backslash and the character it escapes. Before a value the backslash is dropped:
    /// the value is taken as it is (it never needed escaping).
    fn escaped(&mut self, c: char, next: Option<char>) {
        if next == Some(OPEN) {
            return;
        }
        self.out.push(c);
        if let Some(n) = next {
            self.out.push(n);
            self.i += 1;
        }
    }

    /// A `$` at `self.i`.
    fn dollar(&mut self) {
        self.i = dollar(
            &self.chars,
            self.i,
            &mut self.out,
            &mut self.frames,
            &mut self.errors,
        );
    }

    /// `'…'` from its opening quote at `self.i` to its closing one: every marker inside is
    /// refused.
    fn single_quoted(&mut self) {
        self.out.push('\'');
        self.i += 1;
        while self.i < self.chars.len() && self.chars[self.i] != '\'' {
            if let Some((idx, nx)) = read_marker(&self.chars, self.i) {
                self.errors.push(PlaceError {
                    index: idx,
                    context: Unsafe::SingleQuotes,
                });
                self.i = nx;
                continue;
            }
            self.out.push(self.chars[self.i]);
            self.i += 1;
        }
        if self.i < self.chars.len() {
            self.out.push('\'');
        }
    }

    /// A comment: nothing in it runs; kept as written up to the newline.
    fn comment(&mut self) {
        while self.i < self.chars.len() && self.chars[self.i] != '\n' {
            if let Some((idx, nx)) = read_marker(&self.chars, self.i) {
                self.out
                    .push_str(&reference(&self.frames, &self.name_of(idx)));
                self.i = nx;
                continue;
            }
            self.out.push(self.chars[self.i]);
            self.i += 1;
        }
    }

    /// `<<` or `<<-` and the delimiter word: the body starts at the next line.
    fn heredoc_start(&mut self) {
        let chars = &self.chars;
        let mut i = self.i;
        self.out.push_str("<<");
        i += 2;
        let strip = chars.get(i) == Some(&'-');
        if strip {
            self.out.push('-');
            i += 1;
        }
        while matches!(chars.get(i), Some(' ' | '\t')) {
            self.out.push(chars[i]);
            i += 1;
        }
        let mut delim = String::new();
        let mut quoted = false;
        while let Some(&d) = chars.get(i) {
            if d.is_whitespace() || ";&|<>()".contains(d) || d == OPEN {
                break;
            }
            if d == '\'' || d == '"' || d == '\\' {
                quoted = true;
            } else {
                delim.push(d);
            }
            self.out.push(d);
            i += 1;
        }
        if !delim.is_empty() {
            self.heredocs.push((delim, quoted, strip));
        }
        self.i = i;
    }

    /// The newline at `self.i` ends a line that announced here-documents: their bodies, each
    /// up to its delimiter line.
    fn heredoc_bodies(&mut self) {
        let chars = &self.chars;
        let mut i = self.i;
        self.out.push('\n');
        i += 1;
        for (delim, quoted, strip) in std::mem::take(&mut self.heredocs) {
            // Body lines up to the delimiter line.
            loop {
                if i >= chars.len() {
                    break;
                }
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == '\n')
                    .map_or(chars.len(), |p| i + p);
                let line: String = chars[i..end].iter().collect();
                let bare = if strip {
                    line.trim_start_matches('\t')
                } else {
                    line.as_str()
                };
                let is_end = bare == delim;
                let mut j = i;
                while j < end {
                    if chars[j] == '\\' && !quoted && chars.get(j + 1) == Some(&OPEN) {
                        j += 1;
                        continue;
                    }
                    if let Some((idx, nx)) = read_marker(chars, j) {
                        if quoted {
                            self.errors.push(PlaceError {
                                index: idx,
                                context: Unsafe::QuotedHereDoc,
                            });
                        } else {
                            let name = self.names.get(idx).cloned().unwrap_or_default();
                            self.out.push_str(&format!("${{{name}}}"));
                        }
                        j = nx;
                        continue;
                    }
                    self.out.push(chars[j]);
                    j += 1;
                }
                if end < chars.len() {
                    self.out.push('\n');
                }
                i = end + 1;
                if is_end {
                    break;
                }
            }
        }
        self.i = i;
    }
}

fn set_parens(frames: &mut [Frame], n: u32) {
    if let Some(Frame::Code { parens, .. }) = frames.last_mut() {
        *parens = n;
    }
}

fn word_start(chars: &[char], i: usize) -> bool {
    i == 0 || chars[i - 1].is_whitespace() || ";&|()<>".contains(chars[i - 1])
}

/// Handles a `$` at `i`; returns the index of the last character consumed.
fn dollar(
    chars: &[char],
    i: usize,
    out: &mut String,
    frames: &mut Vec<Frame>,
    errors: &mut Vec<PlaceError>,
) -> usize {
    let in_double = matches!(frames.last(), Some(Frame::Double));
    match (chars.get(i + 1), chars.get(i + 2)) {
        (Some('('), Some('(')) => {
            out.push_str("$((");
            frames.push(Frame::Arith(0));
            i + 2
        }
        (Some('('), _) => {
            out.push_str("$(");
            frames.push(Frame::Code {
                parens: 0,
                backtick: false,
            });
            i + 1
        }
        (Some('{'), _) => {
            out.push_str("${");
            frames.push(Frame::Param(i + 2));
            i + 1
        }
        (Some('['), _) => {
            out.push_str("$[");
            frames.push(Frame::Bracket(0));
            i + 1
        }
        (Some('\''), _) if !in_double => {
            out.push_str("$'");
            let mut j = i + 2;
            while j < chars.len() && chars[j] != '\'' {
                if let Some((idx, nx)) = read_marker(chars, j) {
                    errors.push(PlaceError {
                        index: idx,
                        context: Unsafe::AnsiCQuotes,
                    });
                    j = nx;
                    continue;
                }
                if chars[j] == '\\' && j + 1 < chars.len() {
                    out.push('\\');
                    j += 1;
                }
                out.push(chars[j]);
                j += 1;
            }
            if j < chars.len() {
                out.push('\'');
            }
            j
        }
        _ => {
            out.push('$');
            i
        }
    }
}

#[cfg(test)]
#[path = "shell_tests.rs"]
mod tests;
