//! Error descriptions and the regex filters templates may call.

use super::*;

/// Strips one `{{ … }}` wrapper from an expression, so `when: "{{ x }}"` and `when: x` agree.
pub(crate) fn expression_source(src: &str) -> &str {
    let t = src.trim();
    match t.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")) {
        Some(inner) if !inner.contains("{{") => inner.trim(),
        _ => t,
    }
}

/// [`expression_source`] as people read it: a called runbook's input rules
/// (`checked_input`, see `checked.rs`) are not shown.
pub(crate) fn expression_display(src: &str) -> std::borrow::Cow<'_, str> {
    super::checked::strip_checked(expression_source(src))
}

/// Describes a minijinja error in one line (without the template dump).
pub(crate) fn describe_error(err: &Error) -> String {
    match err.detail() {
        Some(detail) => format!("{}: {detail}", kind_text(err.kind())),
        None => kind_text(err.kind()).to_string(),
    }
}

pub(super) fn kind_text(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::SyntaxError => "syntax error",
        ErrorKind::UndefinedError => "undefined value",
        ErrorKind::UnknownFilter => "unknown filter",
        ErrorKind::UnknownFunction => "unknown function",
        ErrorKind::UnknownTest => "unknown test",
        ErrorKind::InvalidOperation => "invalid operation",
        ErrorKind::OutOfFuel => "template took too long",
        ErrorKind::BadSerialization => "value cannot be used here",
        _ => "template error",
    }
}

pub(super) fn compile_regex(pattern: &str) -> Result<regex::Regex, Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            // The regex error quotes the pattern (line by line, with a caret): not when the
            // pattern or the text may be computed from a secret.
            let detail = if super::taint::read_secret() {
                "bad regular expression (not shown: it is computed from a secret)".to_string()
            } else {
                format!("bad regular expression: {e}")
            };
            Error::new(ErrorKind::InvalidOperation, detail)
        })
}

/// The text a match stands for: its first capture group if the pattern has one.
pub(super) fn match_text(re: &regex::Regex, caps: &regex::Captures<'_>) -> String {
    let group = if re.captures_len() > 1 { 1 } else { 0 };
    caps.get(group)
        .map_or(String::new(), |m| m.as_str().to_string())
}

/// `text | regex_search('pat')`: the first match (its first group, if any), or none.
pub(super) fn regex_search(text: String, pattern: String) -> Result<Value, Error> {
    let re = compile_regex(&pattern)?;
    Ok(re
        .captures(&text)
        .map_or(Value::from(()), |c| Value::from(match_text(&re, &c))))
}

/// `text | regex_findall('pat')`: every match (its first group, if any), as a list.
pub(super) fn regex_findall(text: String, pattern: String) -> Result<Value, Error> {
    let re = compile_regex(&pattern)?;
    let all: Vec<String> = re
        .captures_iter(&text)
        .map(|c| match_text(&re, &c))
        .collect();
    Ok(Value::from(all))
}
