//! The one redactor between the engine and everything that leaves it.
//!
//! It knows every secret value of the run and finds each one in the forms a program is
//! likely to print it in:
//!
//! - as it is, and case-folded (ASCII): `TOKEN`, `token`;
//! - URL-encoded, byte by byte in any mix: `%40` or `%40`, `%2f` or `%2F`, space as `%20` or
//!   `+`, characters left as they are (what Python, curl or an HTTP client produce);
//! - JSON-escaped: `\"`, `\\`, `\/`, `\n`, `\u0041`;
//! - hex, both cases;
//! - base64 (standard and URL-safe alphabets) at all three alignments, so it is found inside
//!   a longer encoded text too (`base64("user:" + secret)`, an HTTP Basic header).
//!
//! Text is masked with [`Redactor::mask_text`]; byte streams (command output on its way to a
//! log) go through a [`StreamRedactor`], which finds secrets split across reads and lines
//! and leaves every other byte exactly as it was (invalid UTF-8 included).
//!
//! What no redactor can catch: a program that encrypts, compresses, hashes or otherwise
//! transforms a secret before printing it, or prints it a piece at a time with other text in
//! between (see docs/format.md).

mod events;

pub(crate) use events::redact_free_text;

use std::borrow::Cow;

use std::sync::Arc;

use base64::Engine as _;
use regex::bytes::Regex;

use crate::template::MASK;

/// Secrets at least this long are searched in every encoding; shorter ones (allowed only with
/// an explicit `min_length`) are masked only as whole tokens, as they are.
pub(crate) const FULL_MATCH_LEN: usize = 8;

/// Bytes that continue a token: a short secret next to one of these is not masked.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
}

/// Replaces secret values (and their encodings) with a mask. Secrets learnt during the run
/// (outputs marked `secret: true`) are added with [`Redactor::add`].
#[derive(Debug, Default)]
pub struct Redactor {
    secrets: std::sync::RwLock<Vec<String>>,
    compiled: std::sync::RwLock<Arc<Compiled>>,
}

/// The patterns for one set of secrets.
#[derive(Debug, Default)]
struct Compiled {
    /// Secrets of [`FULL_MATCH_LEN`] bytes or more, in every encoding.
    full: Option<Regex>,
    /// Shorter secrets, as they are, checked for token boundaries.
    short: Option<Regex>,
    /// Longest text a match can span (what a stream must hold back).
    max_match: usize,
    /// Whether a secret contains a newline (then a stream cannot release text at newlines).
    multiline: bool,
}

/// A pattern that matches byte `b` of a secret as itself or any escape of it.
fn byte_pattern(b: u8) -> String {
    let itself = if b.is_ascii_alphanumeric() {
        (b as char).to_string()
    } else {
        format!("\\x{b:02x}")
    };
    let mut alts = vec![itself, format!("%(?i:{b:02x})")];
    if b.is_ascii() {
        alts.push(format!("\\\\u(?i:{:04x})", b));
        match b {
            b' ' => alts.push("\\+".into()),
            b'"' | b'\\' | b'/' => alts.push(format!("\\\\\\x{b:02x}")),
            b'\n' => {
                alts.push("\\\\n".into());
                // A line end may come back as CRLF (a terminal, `ssh -t`, Windows, HTTP).
                alts.push("\\x0d\\x0a".into());
                alts.push(r"\\r\\n".into());
            }
            b'\r' => alts.push("\\\\r".into()),
            b'\t' => alts.push("\\\\t".into()),
            _ => {}
        }
    }
    format!("(?:{})", alts.join("|"))
}

/// A pattern that matches character `c` of a secret: an ASCII one as [`byte_pattern`]; any
/// other as its UTF-8 bytes (raw or percent-encoded) or its JSON `\uXXXX` escape (Python's
/// `json.dumps`, surrogate pairs beyond the BMP), in its own, upper and lower case.
fn char_pattern(c: char) -> String {
    if c.is_ascii() {
        return byte_pattern(c as u8);
    }
    let mut forms: Vec<String> = vec![c.to_string()];
    forms.push(c.to_uppercase().collect());
    forms.push(c.to_lowercase().collect());
    forms.sort();
    forms.dedup();
    let mut alts = Vec::new();
    for f in &forms {
        // Raw bytes, and percent-encoded byte by byte (each byte raw or `%XX`).
        alts.push(
            f.bytes()
                .map(|b| format!("(?:\\x{b:02x}|%(?i:{b:02x}))"))
                .collect::<String>(),
        );
        // JSON escape of each UTF-16 unit.
        let mut units = [0u16; 2];
        let escaped: String = f
            .chars()
            .flat_map(|ch| ch.encode_utf16(&mut units).to_vec())
            .map(|u| format!("\\\\u(?i:{u:04x})"))
            .collect();
        alts.push(escaped);
    }
    format!("(?:{})", alts.join("|"))
}

/// The base64 characters that encode `s` whatever precedes it, for each alignment.
fn base64_cores(s: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for engine in [
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        for k in 0..3usize {
            let mut data = vec![0u8; k];
            data.extend_from_slice(s);
            let enc = engine.encode(&data);
            // Character i holds bits [6i, 6i+6); keep those entirely inside the secret.
            let first = (8 * k).div_ceil(6);
            let last = (8 * (k + s.len())) / 6;
            if let Some(core) = enc.get(first..last)
                && core.len() >= FULL_MATCH_LEN
                && !out.contains(&core.to_string())
            {
                out.push(core.to_string());
            }
        }
    }
    out
}

impl Redactor {
    /// A redactor for `secrets` (empty values are ignored).
    pub fn new(secrets: &[String]) -> Redactor {
        let list: Vec<String> = secrets.iter().filter(|s| !s.is_empty()).cloned().collect();
        Redactor {
            compiled: std::sync::RwLock::new(Arc::new(Compiled::new(&list))),
            secrets: std::sync::RwLock::new(list),
        }
    }

    /// Adds secrets learnt during the run; everything shown from now on masks them too.
    pub fn add(&self, more: &[String]) {
        let Ok(mut list) = self.secrets.write() else {
            return;
        };
        let before = list.len();
        for m in more {
            if !m.is_empty() && !list.contains(m) {
                list.push(m.clone());
            }
        }
        if list.len() != before
            && let Ok(mut c) = self.compiled.write()
        {
            *c = Arc::new(Compiled::new(&list));
        }
    }

    fn current(&self) -> Arc<Compiled> {
        self.compiled.read().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.current().is_empty()
    }

    /// Masks every secret in `s`.
    pub fn mask_text<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let c = self.current();
        if c.is_empty() {
            return Cow::Borrowed(s);
        }
        let (ranges, _) = c.matches(s.as_bytes(), None, true);
        if ranges.is_empty() {
            return Cow::Borrowed(s);
        }
        let out = splice(s.as_bytes(), &ranges);
        Cow::Owned(String::from_utf8_lossy(&out).into_owned())
    }
}

impl Compiled {
    fn new(secrets: &[String]) -> Compiled {
        let mut full = Vec::new();
        let mut short = Vec::new();
        let mut max_match = 0usize;
        let mut multiline = false;
        // Each line of a multi-line secret (a PEM key, a kubeconfig, a token file) is key
        // material too: programs print it line by line (`head -1`, `sed -n 2p`, an error
        // quoting one line). Lines long enough to be found safely are secrets of their own.
        let lines: Vec<String> = secrets
            .iter()
            .filter(|s| s.contains('\n'))
            .flat_map(|s| s.split('\n'))
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| l.len() >= FULL_MATCH_LEN)
            .map(str::to_string)
            .collect();
        let mut secrets: Vec<&String> = secrets
            .iter()
            .chain(lines.iter())
            .filter(|s| !s.is_empty())
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        for s in secrets {
            let bytes = s.as_bytes();
            multiline |= bytes.contains(&b'\n');
            max_match = max_match.max(6 * bytes.len());
            if bytes.len() < FULL_MATCH_LEN {
                short.push(regex::escape(s));
                continue;
            }
            // As it is or escaped, byte by byte, case-folded.
            let escaped: String = s.chars().map(char_pattern).collect();
            full.push(format!("(?i:{escaped})"));
            // Hex, both cases.
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            full.push(format!("(?i:{hex})"));
            for core in base64_cores(bytes) {
                full.push(regex::escape(&core));
            }
        }
        let build = |alts: &[String], wrap: fn(&str) -> String| -> Option<Regex> {
            if alts.is_empty() {
                return None;
            }
            regex::bytes::RegexBuilder::new(&wrap(&alts.join("|")))
                .unicode(false)
                .size_limit(256 * 1024 * 1024)
                .build()
                .ok()
        };
        Compiled {
            full: build(&full, |a| a.to_string()),
            short: build(&short, |a| format!("({a})")),
            max_match: max_match + 2,
            multiline,
        }
    }

    fn is_empty(&self) -> bool {
        self.full.is_none() && self.short.is_none()
    }

    /// The secrets' ranges in `buf`; `at_end`: nothing follows `buf`. A short secret right at
    /// the end of an unfinished buffer is reported in the second value (decide later).
    fn matches(
        &self,
        buf: &[u8],
        prev: Option<u8>,
        at_end: bool,
    ) -> (Vec<(usize, usize)>, Option<usize>) {
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        if let Some(re) = &self.full {
            ranges.extend(re.find_iter(buf).map(|m| (m.start(), m.end())));
        }
        let mut undecided = None;
        if let Some(re) = &self.short {
            for m in re.find_iter(buf) {
                let before = if m.start() == 0 {
                    prev
                } else {
                    buf.get(m.start() - 1).copied()
                };
                if before.is_some_and(is_token_byte) {
                    continue;
                }
                match buf.get(m.end()) {
                    Some(&b) if is_token_byte(b) => continue,
                    None if !at_end => {
                        undecided.get_or_insert(m.start());
                        continue;
                    }
                    _ => {}
                }
                if !ranges.iter().any(|&(s, e)| m.start() < e && s < m.end()) {
                    ranges.push((m.start(), m.end()));
                }
            }
        }
        ranges.sort_unstable();
        (ranges, undecided)
    }
}

impl Redactor {
    /// Masks every secret in `s` (owned result).
    pub fn text(&self, s: &str) -> String {
        self.mask_text(s).into_owned()
    }

    /// Masks every secret in a JSON value (strings, recursively).
    pub fn json(&self, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => {
                if let Cow::Owned(m) = self.mask_text(s) {
                    *s = m;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| self.json(i)),
            serde_json::Value::Object(m) => m.values_mut().for_each(|i| self.json(i)),
            _ => {}
        }
    }

    /// A redactor for one byte stream.
    pub fn stream(self: &std::sync::Arc<Self>) -> StreamRedactor {
        StreamRedactor {
            redactor: self.clone(),
            pending: Vec::new(),
            prev: None,
        }
    }
}

/// `buf` with each range replaced by the mask.
fn splice(buf: &[u8], ranges: &[(usize, usize)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(buf.len());
    let mut at = 0;
    for &(s, e) in ranges {
        if s < at {
            continue;
        }
        out.extend_from_slice(&buf[at..s]);
        out.extend_from_slice(MASK.as_bytes());
        at = e;
    }
    out.extend_from_slice(&buf[at..]);
    out
}

/// Masks secrets in a byte stream that arrives in pieces: holds back only the bytes that
/// could be the start of a secret, passes everything else through unchanged.
#[derive(Debug)]
pub struct StreamRedactor {
    redactor: std::sync::Arc<Redactor>,
    pending: Vec<u8>,
    /// The last byte released (a short secret must start a token).
    prev: Option<u8>,
}

impl StreamRedactor {
    /// Longest text a secret can span in any of its encodings (0 without secrets).
    pub fn margin(&self) -> usize {
        let c = self.redactor.current();
        if c.is_empty() { 0 } else { c.max_match }
    }

    /// Adds bytes; returns the bytes that can be released.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.redactor.is_empty() {
            return chunk.to_vec();
        }
        self.pending.extend_from_slice(chunk);
        self.release(false)
    }

    /// The end of the stream: returns the rest.
    pub fn finish(&mut self) -> Vec<u8> {
        if self.redactor.is_empty() {
            return std::mem::take(&mut self.pending);
        }
        self.release(true)
    }

    fn release(&mut self, at_end: bool) -> Vec<u8> {
        let buf = std::mem::take(&mut self.pending);
        let r = self.redactor.current();
        let (ranges, undecided) = r.matches(&buf, self.prev, at_end);
        let last_end = ranges.last().map_or(0, |&(_, e)| e);
        let mut cut = if at_end {
            buf.len()
        } else {
            let window = buf.len().saturating_sub(r.max_match);
            // Without multi-line secrets, nothing before the last newline can start one.
            let newline = if r.multiline {
                None
            } else {
                buf.iter().rposition(|&b| b == b'\n').map(|p| p + 1)
            };
            window.max(newline.unwrap_or(0)).max(last_end)
        };
        if let Some(u) = undecided
            && u >= last_end
        {
            cut = cut.min(u);
        }
        let done: Vec<(usize, usize)> = ranges.into_iter().filter(|&(_, e)| e <= cut).collect();
        let out = splice(&buf[..cut], &done);
        if cut > 0 {
            self.prev = buf.get(cut - 1).copied();
        }
        self.pending = buf[cut..].to_vec();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "p@ss w0rd/42-x\"TOP";

    fn forms(s: &str) -> Vec<String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut v = vec![
            s.to_string(),
            s.to_uppercase(),
            s.to_lowercase(),
            b64.encode(s),
            b64.encode(format!("a{s}")),
            b64.encode(format!("ab{s}")),
            b64.encode(format!("admin:{s}")),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("x{s}")),
            s.bytes().map(|b| format!("{b:02x}")).collect(),
            s.bytes().map(|b| format!("{b:02X}")).collect(),
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
                .to_lowercase(),
            "p%40ss+w0rd%2F42-x%22TOP".to_string(),
            serde_json::to_string(s).unwrap_or_default(),
            s.replace('/', "\\/").replace('"', "\\u0022"),
        ];
        v.retain(|f| !f.is_empty());
        v
    }

    /// Whether the masked text still shows a recognisable piece of the secret's form.
    fn leaks(masked: &str, form: &str) -> bool {
        masked.contains(form) || masked.contains(&form[..form.len() / 2 + 4])
    }

    #[test]
    fn masks_every_encoding() {
        let r = Redactor::new(&[S.into()]);
        for f in forms(S) {
            let text = format!("before {f} after");
            let masked = r.text(&text);
            assert!(!leaks(&masked, &f), "{f} -> {masked}");
            assert!(
                masked.starts_with("before ") && masked.ends_with(" after"),
                "{masked}"
            );
        }
    }

    #[test]
    fn each_line_of_a_multi_line_secret_and_crlf_endings_are_masked() {
        let key = "Line1_of_the_Secret_KEY_aaaa\nLine2_of_the_Secret_KEY_bbbb\nshort\n";
        let r = Arc::new(Redactor::new(&[key.into()]));
        let crlf = key.replace('\n', "\r\n");
        for text in [
            format!("a {key} b"),
            format!("a {crlf} b"),
            "exited with code 1: Line2_of_the_Secret_KEY_bbbb".to_string(),
            "Line1_of_the_Secret_KEY_aaaa\r\n".to_string(),
        ] {
            let masked = r.text(&text);
            assert!(!masked.contains("_Secret_KEY_"), "{text:?} -> {masked:?}");
            let mut s = r.stream();
            let mut out = Vec::new();
            for b in text.as_bytes() {
                out.extend(s.push(std::slice::from_ref(b)));
            }
            out.extend(s.finish());
            let out = String::from_utf8_lossy(&out);
            assert!(!out.contains("_Secret_KEY_"), "stream {text:?} -> {out:?}");
        }
        // A line too short to be found safely is left alone, and so is ordinary text.
        assert_eq!(r.text("short story"), "short story");
    }

    #[test]
    fn streams_split_at_every_byte() {
        let r = Arc::new(Redactor::new(&[S.into()]));
        for f in forms(S) {
            let text = format!("line one\nx{f}y\n\u{ff}\u{fe} tail");
            for split in 0..text.len() {
                let mut s = r.stream();
                let mut out = s.push(&text.as_bytes()[..split]);
                out.extend(s.push(&text.as_bytes()[split..]));
                out.extend(s.finish());
                let out = String::from_utf8_lossy(&out).into_owned();
                assert!(!leaks(&out, &f), "{f} split at {split}: {out}");
                assert!(out.starts_with("line one\nx") && out.ends_with("y\n\u{ff}\u{fe} tail"));
            }
        }
    }

    #[test]
    fn non_secret_bytes_are_kept_exactly() {
        let r = Arc::new(Redactor::new(&[S.into()]));
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let mut s = r.stream();
        let mut out = Vec::new();
        for c in data.chunks(7) {
            out.extend(s.push(c));
        }
        out.extend(s.finish());
        assert_eq!(out, data);
    }

    #[test]
    fn lines_are_released_without_waiting() {
        let r = Arc::new(Redactor::new(&[S.into()]));
        let mut s = r.stream();
        assert_eq!(s.push(b"hello\n"), b"hello\n".to_vec());
    }

    #[test]
    fn short_secrets_mask_whole_tokens_only() {
        let r = Redactor::new(&["root".into()]);
        assert_eq!(
            r.text("generate-root as root"),
            format!("generate-root as {MASK}")
        );
        assert_eq!(r.text("root"), MASK);
        let r = Arc::new(r);
        let mut s = r.stream();
        let mut out = s.push(b"user roo");
        out.extend(s.push(b"t\nuser roo"));
        out.extend(s.push(b"ts\n"));
        out.extend(s.finish());
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("user {MASK}\nuser roots\n")
        );
    }
}
