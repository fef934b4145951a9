//! Option injection: a shell word that starts with a value and whose text starts with `-`
//! would be read by the program as an option (`tar -xf a.tar {{ member }}` or
//! `{{ member }}.conf` with `member=--to-command=…`, `cat {{ a }}{{ b }}` with `-` and `-help`).
//! Such a word is refused at run time unless it is a number (`-5`) or an earlier standalone
//! `--` word of the same simple command ended its options (`rm -- {{ f }}`; a `--` of another
//! command, before `;`, `&&`, `|`, a newline or inside `$( … )`, does not count). A word whose
//! first character is text of the template (`--file={{ f }}`, `./{{ f }}`) is never an option.

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
}

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

/// Characters that end a shell word.
fn is_break(c: char) -> bool {
    c.is_whitespace() || matches!(c, ';' | '|' | '&' | '(' | ')' | '<' | '>' | '`')
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
        if w.first.is_none() && w.text == "--" {
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

/// Programs that read options from their arguments, where a value starting with `-` changes
/// what they do (`tar --to-command=…`, `find -delete`, `rsync -e …`, `curl -o …`).
const TAKES_OPTIONS: &[&str] = &[
    "bao",
    "cat",
    "chgrp",
    "chmod",
    "chown",
    "cp",
    "curl",
    "cut",
    "dd",
    "df",
    "diff",
    "docker",
    "du",
    "file",
    "find",
    "git",
    "grep",
    "gzip",
    "head",
    "install",
    "jq",
    "journalctl",
    "kill",
    "kubectl",
    "ln",
    "ls",
    "mkdir",
    "mv",
    "openssl",
    "pg_dump",
    "psql",
    "readlink",
    "rm",
    "rmdir",
    "rsync",
    "scp",
    "sed",
    "sort",
    "ssh",
    "stat",
    "systemctl",
    "tail",
    "tar",
    "tee",
    "touch",
    "truncate",
    "uniq",
    "unzip",
    "vault",
    "wc",
    "wget",
    "xargs",
    "xz",
    "zip",
];

/// Words that run the next word as the command (`sudo rm …`).
const WRAPPERS: &[&str] = &[
    "sudo", "doas", "env", "exec", "time", "nice", "nohup", "command",
];

/// A value of a command template that stands as a whole argument word of a program known to
/// take options, with no `--` before it in that command: `(root variable, source range,
/// program)`. The run refuses such a value if it starts with `-`; the lint says so before.
pub(crate) fn unended_option_words(src: &str) -> Vec<(String, std::ops::Range<usize>, String)> {
    let src = super::analyse::protect_dollar_hash(src);
    let Some(sk) = super::analyse::skeleton(&src) else {
        return Vec::new();
    };
    let chars: Vec<char> = sk.text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != OPEN {
            i += 1;
            continue;
        }
        let Some(len) = chars[i..].iter().position(|c| *c == CLOSE) else {
            break;
        };
        let end = i + len;
        let idx: Option<usize> = chars[i + 1..end].iter().collect::<String>().parse().ok();
        let prefix: String = chars[..i].iter().collect();
        let (prev, next) = (chars[..i].last(), chars.get(end + 1));
        // Inside double quotes the value is a word of its own only as `"{{ v }}"`.
        let quoted = prefix.chars().filter(|c| *c == '"').count() % 2 == 1;
        let whole = if quoted {
            prev == Some(&'"') && next == Some(&'"')
        } else {
            prev.is_none_or(|c| is_break(*c)) && next.is_none_or(|c| is_break(*c))
        };
        // A redirection's target is a file name, not an argument.
        let redirect = prefix.trim_end().ends_with(['<', '>']);
        if let Some(idx) = idx
            && whole
            && !redirect
            && !prefix.contains("<<")
            && let Some(program) = command_of(&prefix)
            && let Some((root, range)) = sk.values.get(idx)
        {
            out.push((root.clone(), range.clone(), program));
        }
        i = end + 1;
    }
    out
}

/// The program of the simple command a value stands in (`prefix` is the text before it), if
/// it is one known to take options and no `--` ended them.
fn command_of(prefix: &str) -> Option<String> {
    let segment = prefix
        .rsplit(|c| matches!(c, ';' | '|' | '&' | '\n' | '(' | ')' | '`' | '{'))
        .next()
        .unwrap_or(prefix);
    let words: Vec<&str> = segment.split_whitespace().collect();
    if words.contains(&"--") {
        return None;
    }
    let mut rest = words.iter().skip_while(|w| {
        let assignment = w.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        assignment || WRAPPERS.contains(w)
    });
    let program = rest.next()?.trim_matches(|c| matches!(c, '"' | '\''));
    let program = program.rsplit('/').next().unwrap_or(program);
    TAKES_OPTIONS
        .contains(&program)
        .then(|| program.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(i: usize) -> String {
        super::super::shell::marker(i)
    }

    fn hit(cmd: &str, v: &[&str]) -> Option<(usize, usize, usize)> {
        let mut text = cmd.to_string();
        for i in 0..v.len() {
            text = text.replace(&format!("@{i}"), &m(i));
        }
        let values: Vec<(String, bool)> = v.iter().map(|s| (s.to_string(), false)).collect();
        option_word(&text, &values).map(|h| (h.index, h.line, h.word))
    }

    #[test]
    fn words() {
        let opt = ["--to-command=x", "-5"];
        assert_eq!(hit("tar -xf a @0", &opt), Some((0, 1, 4)));
        assert_eq!(hit("tar -xf a \"@0\"", &opt), Some((0, 1, 4)));
        assert_eq!(hit("x;@0", &opt), Some((0, 1, 1)));
        assert_eq!(hit("tar -xf a -- @0", &opt), None);
        assert_eq!(hit("tar --file=@0", &opt), None);
        assert_eq!(hit("ls ./@0", &opt), None);
        assert_eq!(hit("seq @1", &opt), None);
        assert_eq!(hit("seq @1.5", &opt), None);
    }

    #[test]
    fn a_value_starting_a_word() {
        let opt = ["--to-command=id #", "-5"];
        assert_eq!(hit("tar -xf a.tar -C out @0.conf", &opt), Some((0, 1, 6)));
        assert_eq!(hit("cat \"@0p\"", &opt), Some((0, 1, 2)));
        assert_eq!(hit("cat @0\"x\"", &opt), Some((0, 1, 2)));
        assert_eq!(hit("cat ''@0", &opt), Some((0, 1, 2)));
        assert_eq!(hit("cat ${X:-@0}", &opt), Some((0, 1, 2)));
        assert_eq!(hit("cat $(echo x)@0", &opt), Some((0, 1, 2)));
        assert_eq!(hit("cat \\@0", &opt), Some((0, 1, 2)));
        assert_eq!(hit("cat @1x", &opt), Some((1, 1, 2)));
        assert_eq!(hit("cat x@0 y@0", &opt), None);
        assert_eq!(hit("cat \"x\"@0", &opt), None);
        // Several values: the first non-empty one gives the word its first character.
        assert_eq!(hit("cat @0@1", &["-", "-help"]), Some((0, 1, 2)));
        assert_eq!(hit("cat @0@1", &["", "--help"]), Some((1, 1, 2)));
        assert_eq!(hit("cat @0@1", &["x", "--help"]), None);
        // In `$( … )` and backticks the inner command counts.
        assert_eq!(hit("echo \"$(cat @0)\"", &opt), Some((0, 1, 2)));
        assert_eq!(hit("echo `cat @0`", &opt), Some((0, 1, 2)));
        // Here-document bodies and comments are not words.
        assert_eq!(hit("cat <<EOF\n@0\nEOF\ncat x", &opt), None);
        assert_eq!(hit("cat <<EOF\n@0\nEOF\ncat @0", &opt), Some((0, 4, 2)));
        assert_eq!(hit("echo x # @0", &opt), None);
        assert_eq!(hit("jq . <<< @0", &opt), Some((0, 1, 3)));
    }

    #[test]
    fn a_double_dash_counts_in_its_own_command_only() {
        let f = ["--help"];
        for cmd in [
            "echo -- ; cat @0",
            "echo -- && cat @0",
            "echo -- || cat @0",
            "echo -- | cat @0",
            "echo --\ncat @0",
            "echo \"--\"; cat @0",
            "x=--; cat @0",
            "cat -- x; cat @0",
            "cat \"$(echo -- )\" @0",
            "(echo --) cat @0",
            "{ echo --; } ; cat @0",
            "echo -- & cat @0",
        ] {
            assert!(hit(cmd, &f).is_some(), "{cmd}");
        }
        for cmd in [
            "cat -- @0",
            "cat \"--\" @0",
            "cat -n -- x @0",
            "echo x; cat -- @0",
            "cat -- \\\n @0",
        ] {
            assert_eq!(hit(cmd, &f), None, "{cmd}");
        }
        // A `--` made of a value does not end the options.
        assert!(hit("cat @1 @0", &["--help", "--"]).is_some());
    }

    #[test]
    fn lint() {
        let progs = |src: &str| -> Vec<String> {
            unended_option_words(src)
                .into_iter()
                .map(|(r, _, p)| format!("{r}:{p}"))
                .collect()
        };
        assert_eq!(progs("tar -xf a.tar {{ member }}"), ["member:tar"]);
        assert_eq!(progs("sudo rm -f \"{{ f }}\""), ["f:rm"]);
        assert_eq!(progs("cd /x && X=1 /bin/rm {{ f }}"), ["f:rm"]);
        assert!(progs("rm -- {{ f }}").is_empty());
        assert!(progs("rm ./{{ f }}").is_empty());
        assert!(progs("tar --file={{ f }}").is_empty());
        assert!(progs("echo {{ f }}").is_empty());
        assert!(progs("grep -q \"x {{ f }} y\" /etc/x").is_empty());
        assert!(progs("cat a > {{ f }}").is_empty());
        assert!(progs("{{ prog }} -x").is_empty());
        assert!(progs("cat <<EOF\n{{ f }}\nEOF").is_empty());
    }
}
