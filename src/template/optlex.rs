//! Option injection: a shell word that starts with a value and whose text starts with `-`
//! would be read by the program as an option (`tar -xf a.tar {{ member }}` or
//! `{{ member }}.conf` with `member=--to-command=…`, `cat {{ a }}{{ b }}` with `-` and `-help`).
//! Such a word is refused at run time unless it is a number (`-5`) or an earlier standalone
//! `--` word of the same simple command ended its options (`rm -- {{ f }}`; a `--` of another
//! command, before `;`, `&&`, `|`, a newline or inside `$( … )`, does not count). A word whose
//! first character is text of the template (`--file={{ f }}`, `./{{ f }}`) is never an option.

use super::optword::WRAPPERS;
use super::shell::{CLOSE, OPEN};

/// A word refused as an option: which value starts it, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OptionWord {
    /// Marker number of the value that gives the word its first character.
    pub index: usize,
    /// Line of the command (1-based) where the word stands.
    pub line: usize,
    /// Position of the word in its simple command (1 = the program).
    pub word: usize,
}

/// The word being read: whether text of the template comes before any value character.
#[derive(Debug, Default, Clone)]
struct Word {
    started: bool,
    literal_first: bool,
    first: Option<usize>,
    text: String,
    line: usize,
}

/// One simple command: its words so far and whether `--` ended its options.
#[derive(Debug, Default, Clone)]
struct Cmd {
    word: Word,
    words: usize,
    ended: bool,
    /// The program (after assignments and wrappers such as `sudo`), once read.
    program: Option<String>,
    /// `sh -c script -- {{ v }}`: the `--` is the script's `$0`, the value its `$1`, which the
    /// script may pass to a program as an option; such a `--` ends nothing.
    shell_script: bool,
}

const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "mksh", "busybox"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    Top,
    Paren,
    Backtick,
}

#[derive(Debug, Clone)]
enum Frame {
    Code { cmd: Cmd, parens: u32, close: Close },
    Double,
    Param,
}

/// A number (`-5`, `-0.5`) is never refused.
fn is_number(s: &str) -> bool {
    let rest = s.strip_prefix('-').unwrap_or(s);
    rest.chars().any(|c| c.is_ascii_digit()) && rest.chars().all(|c| c.is_ascii_digit() || c == '.')
}

struct Lexer<'a> {
    chars: Vec<char>,
    values: &'a [(String, bool)],
    frames: Vec<Frame>,
    heredocs: Vec<(String, bool)>,
    line: usize,
    i: usize,
}

impl Lexer<'_> {
    fn cmd(&mut self) -> Option<&mut Cmd> {
        self.frames.iter_mut().rev().find_map(|f| match f {
            Frame::Code { cmd, .. } => Some(cmd),
            _ => None,
        })
    }

    fn literal(&mut self, c: char) {
        let line = self.line;
        if let Some(cmd) = self.cmd() {
            let w = &mut cmd.word;
            if !w.started {
                w.line = line;
            }
            w.started = true;
            if w.first.is_none() {
                w.literal_first = true;
            }
            if w.text.len() < 256 {
                w.text.push(c);
            }
        }
    }

    /// An expansion of the shell (`$X`, `$( … )`): unknown text, possibly empty.
    fn unknown(&mut self) {
        let line = self.line;
        if let Some(cmd) = self.cmd() {
            if !cmd.word.started {
                cmd.word.line = line;
            }
            cmd.word.started = true;
        }
    }

    fn value(&mut self, idx: usize) {
        let v = self
            .values
            .get(idx)
            .map(|(v, _)| v.clone())
            .unwrap_or_default();
        let line = self.line;
        if let Some(cmd) = self.cmd() {
            let w = &mut cmd.word;
            if !w.started {
                w.line = line;
            }
            w.started = true;
            if w.first.is_none() && !w.literal_first && !v.is_empty() {
                w.first = Some(idx);
            }
            if w.text.len() < 256 {
                w.text.extend(v.chars().take(256));
            }
        }
    }

    /// Ends the current word of the innermost command; a refused word is returned.
    fn end_word(&mut self) -> Option<OptionWord> {
        let cmd = self.cmd()?;
        let w = std::mem::take(&mut cmd.word);
        if !w.started {
            return None;
        }
        cmd.words += 1;
        match &cmd.program {
            None => {
                let assignment = w.text.split_once('=').is_some_and(|(n, _)| {
                    !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
                if !assignment && !WRAPPERS.contains(&w.text.as_str()) {
                    let base = w.text.rsplit('/').next().unwrap_or_default();
                    cmd.program = Some(base.to_string());
                }
            }
            Some(p) if SHELLS.contains(&p.as_str()) => {
                if w.text.starts_with('-') && !w.text.starts_with("--") && w.text.contains('c') {
                    cmd.shell_script = true;
                }
            }
            Some(_) => {}
        }
        if let Some(index) = w.first
            && !cmd.ended
            && w.text.starts_with('-')
            && !is_number(&w.text)
        {
            return Some(OptionWord {
                index,
                line: w.line,
                word: cmd.words,
            });
        }
        if w.first.is_none() && w.text == "--" && !cmd.shell_script {
            cmd.ended = true;
        }
        None
    }

    /// Ends the word and the simple command (`;`, `&&`, `|`, newline, `(`, `)`).
    fn end_command(&mut self) -> Option<OptionWord> {
        let hit = self.end_word();
        if let Some(cmd) = self.cmd() {
            *cmd = Cmd::default();
        }
        hit
    }

    fn marker(&self) -> Option<(usize, usize)> {
        if self.chars.get(self.i) != Some(&OPEN) {
            return None;
        }
        let len = self.chars[self.i..].iter().position(|c| *c == CLOSE)?;
        let end = self.i + len;
        let idx = self.chars[self.i + 1..end]
            .iter()
            .collect::<String>()
            .parse()
            .ok()?;
        Some((idx, end + 1))
    }

    /// Skips `$(( … ))` or `(( … ))` from the first `(`: returns past the closing `))`.
    fn skip_arith(&mut self) {
        let mut depth = 0u32;
        while self.i < self.chars.len() {
            match self.chars[self.i] {
                '(' => depth += 1,
                ')' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        self.i += 1;
                        return;
                    }
                }
                '\n' => self.line += 1,
                _ => {}
            }
            self.i += 1;
        }
    }

    /// A `$` at `self.i`; `self.i` ends on the next character to read.
    fn dollar(&mut self) {
        let next = self.chars.get(self.i + 1).copied();
        match next {
            Some('(') if self.chars.get(self.i + 2) == Some(&'(') => {
                self.unknown();
                self.i += 1;
                self.skip_arith();
            }
            Some('(') => {
                self.unknown();
                self.i += 2;
                self.frames.push(Frame::Code {
                    cmd: Cmd::default(),
                    parens: 0,
                    close: Close::Paren,
                });
            }
            Some('{') => {
                self.unknown();
                self.i += 2;
                self.frames.push(Frame::Param);
            }
            Some('\'') => {
                self.i += 2;
                while self.i < self.chars.len() && self.chars[self.i] != '\'' {
                    if self.chars[self.i] == '\\' {
                        self.i += 1;
                    }
                    if let Some(&c) = self.chars.get(self.i) {
                        self.literal(c);
                    }
                    self.i += 1;
                }
                self.i += 1;
            }
            Some(c) if c.is_ascii_alphanumeric() || c == '_' => {
                self.unknown();
                self.i += 1;
                while self
                    .chars
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    self.i += 1;
                }
            }
            Some('@' | '*' | '#' | '?' | '$' | '!' | '-') => {
                self.unknown();
                self.i += 2;
            }
            _ => {
                self.literal('$');
                self.i += 1;
            }
        }
    }

    /// `<<` (not `<<<`) at `self.i`: the delimiter of a here-document whose body is data.
    fn heredoc(&mut self) {
        self.i += 2;
        if self.chars.get(self.i) == Some(&'-') {
            self.i += 1;
        }
        while matches!(self.chars.get(self.i), Some(' ' | '\t')) {
            self.i += 1;
        }
        let mut delim = String::new();
        while let Some(&d) = self.chars.get(self.i) {
            if d.is_whitespace() || ";&|<>()".contains(d) || d == OPEN {
                break;
            }
            if !matches!(d, '\'' | '"' | '\\') {
                delim.push(d);
            }
            self.i += 1;
        }
        if !delim.is_empty() {
            self.heredocs.push((delim, true));
        }
    }

    /// After the newline at `self.i - 1`: skips the bodies of the announced here-documents.
    fn heredoc_bodies(&mut self) {
        for (delim, _) in std::mem::take(&mut self.heredocs) {
            while self.i < self.chars.len() {
                let end = self.chars[self.i..]
                    .iter()
                    .position(|&c| c == '\n')
                    .map_or(self.chars.len(), |p| self.i + p);
                let line: String = self.chars[self.i..end].iter().collect();
                self.i = end + 1;
                self.line += 1;
                if line.trim_start_matches('\t') == delim {
                    break;
                }
            }
        }
    }

    /// Reads one thing in a code frame; `Some` when a word is refused.
    fn code(&mut self, c: char, parens: u32, close: Close) -> Option<Option<OptionWord>> {
        let next = self.chars.get(self.i + 1).copied();
        let hit = match c {
            '\\' if next == Some('\n') => {
                self.i += 2;
                self.line += 1;
                return None;
            }
            // `\{{ v }}`: the backslash is dropped (the value is literal anyway).
            '\\' if next == Some(OPEN) => None,
            '\\' => {
                if let Some(n) = next {
                    self.literal(n);
                    self.i += 1;
                }
                None
            }
            '\'' => {
                self.unknown();
                self.i += 1;
                while self.i < self.chars.len() && self.chars[self.i] != '\'' {
                    let ch = self.chars[self.i];
                    if ch == '\n' {
                        self.line += 1;
                    }
                    self.literal(ch);
                    self.i += 1;
                }
                None
            }
            '"' => {
                self.unknown();
                self.frames.push(Frame::Double);
                None
            }
            '`' if close == Close::Backtick => {
                let hit = self.end_word();
                self.frames.pop();
                hit
            }
            '`' => {
                self.unknown();
                self.frames.push(Frame::Code {
                    cmd: Cmd::default(),
                    parens: 0,
                    close: Close::Backtick,
                });
                None
            }
            '$' => {
                self.dollar();
                return None;
            }
            '#' if self.cmd().is_some_and(|c| !c.word.started) => {
                while self.i < self.chars.len() && self.chars[self.i] != '\n' {
                    self.i += 1;
                }
                return None;
            }
            '(' if next == Some('(') && self.cmd().is_some_and(|c| !c.word.started) => {
                let hit = self.end_command();
                self.skip_arith();
                return Some(hit);
            }
            '(' => {
                let hit = self.end_command();
                self.set_parens(parens + 1);
                hit
            }
            ')' => {
                let hit = self.end_command();
                if parens > 0 {
                    self.set_parens(parens - 1);
                } else if close == Close::Paren {
                    self.frames.pop();
                }
                hit
            }
            '<' if next == Some('<') && self.chars.get(self.i + 2) != Some(&'<') => {
                let hit = self.end_word();
                self.heredoc();
                return Some(hit);
            }
            '\n' => {
                let hit = self.end_command();
                self.line += 1;
                self.i += 1;
                if !self.heredocs.is_empty() {
                    self.heredoc_bodies();
                }
                return Some(hit);
            }
            ';' | '&' | '|' => self.end_command(),
            '<' | '>' => self.end_word(),
            c if c.is_whitespace() => self.end_word(),
            c => {
                self.literal(c);
                None
            }
        };
        self.i += 1;
        Some(hit)
    }

    fn set_parens(&mut self, n: u32) {
        if let Some(Frame::Code { parens, .. }) = self.frames.last_mut() {
            *parens = n;
        }
    }

    /// Inside double quotes or `${ … }`.
    fn quoted(&mut self, c: char, param: bool) {
        let next = self.chars.get(self.i + 1).copied();
        match c {
            '\\' if next == Some(OPEN) => {}
            '\\' => {
                if let Some(n) = next {
                    if !param {
                        self.literal(n);
                    }
                    self.i += 1;
                }
            }
            '"' if !param => {
                self.frames.pop();
            }
            '}' if param => {
                self.frames.pop();
            }
            '"' => self.frames.push(Frame::Double),
            '`' => self.frames.push(Frame::Code {
                cmd: Cmd::default(),
                parens: 0,
                close: Close::Backtick,
            }),
            '$' => {
                self.dollar();
                return;
            }
            '\n' => {
                self.line += 1;
                if !param {
                    self.literal(c);
                }
            }
            // In `${ … }` names and operators are not text of the word (it may be empty).
            c if !param => self.literal(c),
            _ => {}
        }
        self.i += 1;
    }

    fn run(&mut self) -> Option<OptionWord> {
        while self.i < self.chars.len() {
            if let Some((idx, next)) = self.marker() {
                self.value(idx);
                self.i = next;
                continue;
            }
            let c = self.chars[self.i];
            match self.frames.last().cloned() {
                Some(Frame::Code { parens, close, .. }) => {
                    if let Some(Some(hit)) = self.code(c, parens, close) {
                        return Some(hit);
                    }
                }
                Some(Frame::Double) => self.quoted(c, false),
                Some(Frame::Param) => self.quoted(c, true),
                None => break,
            }
        }
        // End of the text: every open word ends.
        while !self.frames.is_empty() {
            if let Some(hit) = self.end_word() {
                return Some(hit);
            }
            self.frames.pop();
        }
        None
    }
}

/// The first word of a rendered command (values as markers, `values[i]` the text of marker
/// `i`) that starts with a value and would be read as an option, if any.
pub(crate) fn option_word(rendered: &str, values: &[(String, bool)]) -> Option<OptionWord> {
    Lexer {
        chars: rendered.chars().collect(),
        values,
        frames: vec![Frame::Code {
            cmd: Cmd::default(),
            parens: 0,
            close: Close::Top,
        }],
        heredocs: Vec::new(),
        line: 1,
        i: 0,
    }
    .run()
}

#[cfg(test)]
#[path = "optlex_tests.rs"]
mod tests;
