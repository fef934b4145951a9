//! `checked_input`: a called runbook's input rules, applied to the value a caller passes it.
//!
//! A `with:` value that is a template is only known at run time, so the call binds the
//! child's input to `(EXPR) | checked_input(name, type, pattern, allowed)`: the child's
//! `type`, `pattern` and `allowed` hold for it exactly as for a value given on the command
//! line (attack report 13, D20: a library runbook guarding `node` with a pattern could be
//! handed `../../etc/passwd`). The error names the input and the rule, never the value (it
//! may be computed from a secret).

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};

use super::Secret;

/// Part of every refusal's text (the plan shows such a refusal instead of failing: the call
/// may be skipped at run time).
pub(crate) const REFUSAL: &str = "the value passed in `with:`";

pub(super) fn checked_input(
    v: Value,
    name: String,
    ty: String,
    pattern: String,
    allowed: Vec<String>,
) -> Result<Value, Error> {
    // A secret passed by name was checked where it was given; it stays a secret here. A
    // plan's placeholder for a run-time value is checked when the run knows the value.
    if v.downcast_object_ref::<Secret>().is_some()
        || v.is_undefined()
        || v.is_none()
        || v.downcast_object_ref::<super::Placeholder>().is_some()
    {
        return Ok(v);
    }
    let refuse = |rule: String| {
        Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("input `{name}` of the called runbook: {REFUSAL} {rule}"),
        ))
    };
    let text = match v.kind() {
        ValueKind::String => v.as_str().unwrap_or_default().to_string(),
        ValueKind::Number | ValueKind::Bool => v.to_string(),
        _ if ty == "list" => return Ok(v),
        _ => return refuse(format!("is not a {ty}")),
    };
    let v = match ty.as_str() {
        "int" => match text.trim().parse::<i64>() {
            Ok(n) => Value::from(n),
            Err(_) => return refuse("is not an integer".into()),
        },
        "bool" => match text.as_str() {
            "true" | "True" | "TRUE" => Value::from(true),
            "false" | "False" | "FALSE" => Value::from(false),
            _ => return refuse("is not true or false".into()),
        },
        _ => v,
    };
    if !allowed.is_empty() && !allowed.contains(&text) {
        return refuse(format!("is not one of {}", allowed.join(", ")));
    }
    if !pattern.is_empty() {
        // The pattern was checked by `validate`; compiled as the regex filters do.
        let re = super::functions::compile_regex(&pattern)?;
        if !re.is_match(&text) {
            return refuse(format!("does not match {pattern}"));
        }
    }
    Ok(v)
}

/// `src` with every `((E) | checked_input(…))` shown as `E`: how an expression that reads
/// a called runbook's input is displayed (the plan, skip reasons), as its author wrote it.
pub(crate) fn strip_checked(src: &str) -> std::borrow::Cow<'_, str> {
    const MARK: &str = ") | checked_input(";
    if !src.contains(MARK) {
        return std::borrow::Cow::Borrowed(src);
    }
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if src[i..].starts_with("((")
            && let Some((inner, end)) = wrapped(src, i)
        {
            out.push_str(&strip_checked(inner));
            i = end;
            continue;
        }
        let c = src[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    std::borrow::Cow::Owned(out)
}

/// At `start` (`((`): the inner expression and the end of a whole `((E) | checked_input(…))`.
fn wrapped(src: &str, start: usize) -> Option<(&str, usize)> {
    let inner_start = start + 2;
    let inner_end = close_of(src, inner_start)?;
    let rest = &src[inner_end..];
    let args_start = inner_end + ") | checked_input(".len();
    if !rest.starts_with(") | checked_input(") {
        return None;
    }
    let args_end = close_of(src, args_start)?;
    if !src[args_end..].starts_with("))") {
        return None;
    }
    Some((&src[inner_start..inner_end], args_end + 2))
}

/// The index of the `)` closing the parenthesis opened just before `from` (strings skipped).
fn close_of(src: &str, from: usize) -> Option<usize> {
    let b = src.as_bytes();
    let mut depth = 0usize;
    let mut i = from;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' if depth > 0 => depth -= 1,
            b')' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::strip_checked;

    #[test]
    fn wrappers_are_shown_as_written() {
        let w = r#"((node) | checked_input("node", "string", "^(?:[a-z)]+)$", ["a", "b)"]))"#;
        assert_eq!(strip_checked(w), "node");
        let e = format!("servers[{w}] is defined and x[((y + [\")\"])[0])] == {w}");
        assert_eq!(
            strip_checked(&e),
            "servers[node] is defined and x[((y + [\")\"])[0])] == node"
        );
        assert_eq!(strip_checked("a and (b)"), "a and (b)");
    }
}
