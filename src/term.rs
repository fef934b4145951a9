//! Terminal safety: text that came from outside (step output, titles, values, comments,
//! answer files) is made visible before it reaches a terminal, so it can never move the
//! cursor, clear the screen, set the title or the clipboard (OSC 52), or hide text.
//!
//! The rule (docs/security.md): every C0 control except `\n` and `\t`, ESC, DEL and every C1
//! control (U+0080–U+009F) is written as a visible escape: `\e` for ESC, `\r` for a lone
//! carriage return, `\xNN` for the other C0 controls and DEL, `\u{NN}` for C1. A `\r` just
//! before `\n` is dropped (CRLF output reads as lines). JSON outputs escape DEL and C1 as
//! `\u00NN` too (serde_json already escapes C0).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal as is.
pub(crate) fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || ('\u{80}'..='\u{9f}').contains(&c)
}

/// `s` with every unsafe character written as a visible escape (see the module docs).
pub(crate) fn visible(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\r' if it.peek() == Some(&'\n') => {}
            '\u{1b}' => out.push_str("\\e"),
            '\r' => out.push_str("\\r"),
            c if ('\u{80}'..='\u{9f}').contains(&c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Raw bytes (a step log) made safe for a terminal: invalid UTF-8 is shown as `\xNN` too.
pub(crate) fn visible_bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        out.push_str(&visible(chunk.valid()));
        for x in chunk.invalid() {
            let _ = write!(out, "\\x{x:02x}");
        }
    }
    out
}

/// `s` with every unsafe character replaced by `?` (one per byte), keeping byte offsets: for
/// source snippets whose spans point into the text.
pub(crate) fn same_offsets(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| is_unsafe(c) && c != '\r') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if is_unsafe(c) && c != '\r' {
            for _ in 0..c.len_utf8() {
                out.push('?');
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Serialized JSON with DEL and C1 escaped as `\u00NN` (they can only occur inside strings,
/// where serde_json writes them raw).
pub(crate) fn json_safe(s: String) -> String {
    if !s.chars().any(|c| ('\u{7f}'..='\u{9f}').contains(&c)) {
        return s;
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if ('\u{7f}'..='\u{9f}').contains(&c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// Every string inside a JSON value made visible.
pub(crate) fn visible_value(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => {
            if let Cow::Owned(o) = visible(s) {
                *s = o;
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(visible_value),
        serde_json::Value::Object(m) => m.values_mut().for_each(visible_value),
        _ => {}
    }
}

/// An event with every string in it made visible (for the human console).
pub(crate) fn visible_event(e: &crate::event::Stamped) -> crate::event::Stamped {
    let Ok(mut v) = serde_json::to_value(e) else {
        return e.clone();
    };
    visible_value(&mut v);
    serde_json::from_value(v).unwrap_or_else(|_| e.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(visible("a\u{1b}]52;c;x\u{7}b"), "a\\e]52;c;x\\x07b");
        assert_eq!(visible("x\u{9b}2J\u{7f}"), "x\\u{9b}2J\\x7f");
        assert_eq!(visible("l1\r\nl2\rl3\tz"), "l1\nl2\\rl3\tz");
        assert_eq!(same_offsets("a\u{1b}b\u{9b}c"), "a?b??c");
        assert_eq!(json_safe("\"\u{9b}\"".into()), "\"\\u009b\"");
        assert_eq!(visible_bytes(b"a\xff\x1b"), "a\\xff\\e");
    }
}
