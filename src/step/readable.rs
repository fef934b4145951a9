//! Results made readable for a person at 3 a.m.: an HTTP response as status, content type,
//! size and the JSON fields the step reads (the full body goes to the step log), and a wait's
//! `until` shown as the values of its parts (`leader count = 0 ✖`) instead of a body cut
//! where the interesting field starts.

use minijinja::Value;

use crate::redact::Redactor;
use crate::template::Templates;

/// Longest value shown for one field or sub-expression.
const VALUE_CHARS: usize = 80;

/// `s` cut to `n` characters, its secrets masked first: a cut must never leave a piece of a
/// secret the redactor can no longer recognise.
fn cut(r: &Redactor, s: &str, n: usize) -> String {
    let masked = r.mask_text(s);
    let s = masked.trim();
    if s.chars().count() > n {
        format!("{}…", s.chars().take(n).collect::<String>())
    } else {
        s.to_string()
    }
}

/// `1.2 KB`, `830 B`.
pub(crate) fn size(bytes: usize) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KB", b as f64 / 1024.0),
        b => format!("{:.1} MB", b as f64 / (1024.0 * 1024.0)),
    }
}

/// Dotted JSON paths (`data.sealed`, `servers[0].leader`) that expression sources read from
/// `json.` / `response.json.` / `result.json.`, in order of appearance, without repeats.
pub(crate) fn json_paths<'a>(sources: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let re = regex::Regex::new(r"\bjson((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])+)")
        .unwrap_or_else(|_| unreachable_regex());
    let mut out: Vec<String> = Vec::new();
    for src in sources {
        for c in re.captures_iter(src) {
            let p = c[1].trim_start_matches('.').to_string();
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// A regex that matches nothing (the literal pattern above always compiles; this keeps the
/// code free of `unwrap`).
fn unreachable_regex() -> regex::Regex {
    regex::Regex::new("$^").unwrap_or_else(|_| unreachable_regex())
}

/// One line for an HTTP response: `HTTP 200 application/json, 1.2 KB: sealed=false, leader=…`.
/// `fields` are dotted paths into the JSON body; without any, its top-level scalar fields.
pub(crate) fn http_summary(
    r: &Redactor,
    status: u16,
    headers: &[(String, String)],
    body: &str,
    json: Option<&serde_json::Value>,
    fields: &[String],
) -> String {
    let ctype = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.split(';').next().unwrap_or_default().trim().to_string())
        .unwrap_or_default();
    let mut head = format!("HTTP {status}");
    if !ctype.is_empty() {
        head.push_str(&format!(" {ctype}"));
    }
    head.push_str(&format!(", {}", size(body.len())));
    let detail = match json {
        Some(j) if !fields.is_empty() => fields
            .iter()
            .map(|p| {
                let v = crate::step::expect::json_path(j, p).map_or("(absent)".to_string(), |v| {
                    cut(r, &v.to_string(), VALUE_CHARS)
                });
                format!("{p}={v}")
            })
            .collect::<Vec<_>>()
            .join(", "),
        Some(serde_json::Value::Object(m)) => {
            let scalars: Vec<String> = m
                .iter()
                .filter(|(_, v)| !v.is_object() && !v.is_array())
                .take(6)
                .map(|(k, v)| format!("{k}={}", cut(r, &v.to_string(), VALUE_CHARS)))
                .collect();
            let nested = m.len() - scalars.len();
            let mut s = scalars.join(", ");
            if nested > 0 {
                if !s.is_empty() {
                    s.push_str(", ");
                }
                s.push_str(&format!("+{nested} more field(s)"));
            }
            s
        }
        Some(other) => cut(r, &other.to_string(), VALUE_CHARS),
        None if ctype.contains("html") => String::new(),
        None => {
            let first = body
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default();
            let more = body.lines().filter(|l| !l.trim().is_empty()).count() > 1;
            format!(
                "{}{}",
                cut(r, first, VALUE_CHARS),
                if more { " …" } else { "" }
            )
        }
    };
    if detail.is_empty() {
        head
    } else {
        format!("{head}: {detail}")
    }
}

/// Splits an expression at its top-level `and` / `or` (outside brackets and quotes).
pub(crate) fn conjuncts(src: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut cur = String::new();
    let words: Vec<char> = src.chars().collect();
    let mut i = 0;
    while i < words.len() {
        let c = words[i];
        if let Some(q) = quote {
            cur.push(c);
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
        if depth == 0 && c.is_whitespace() {
            let rest: String = words[i + 1..].iter().collect();
            let kw = ["and", "or"]
                .into_iter()
                .find(|k| rest.starts_with(k) && rest[k.len()..].starts_with(char::is_whitespace));
            if let Some(k) = kw {
                if !cur.trim().is_empty() {
                    parts.push(cur.trim().to_string());
                }
                cur.clear();
                i += 1 + k.len();
                continue;
            }
        }
        cur.push(c);
        i += 1;
    }
    if !cur.trim().is_empty() {
        parts.push(cur.trim().to_string());
    }
    parts
}

/// The left side of a comparison (`a | length == 1` → `a | length`), if it is one.
fn left_side(expr: &str) -> Option<&str> {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let b = expr.as_bytes();
    for (i, ch) in expr.char_indices() {
        if let Some(q) = quote {
            if ch == q {
                quote = None;
            }
            continue;
        }
        match ch {
            '\'' | '"' => quote = Some(ch),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            '=' | '!' | '<' | '>' if depth == 0 => {
                let next = b.get(i + 1).copied();
                let is_cmp = match ch {
                    '=' | '!' => next == Some(b'='),
                    _ => true,
                };
                if is_cmp && i > 0 {
                    return Some(expr[..i].trim());
                }
            }
            _ => {}
        }
    }
    None
}

/// `until` shown part by part: each top-level `and`/`or` operand with whether it held and, for
/// a comparison, the value of its left side: ``status = 200 ✔; servers | … | length = 0 ✖``.
/// `None` when the expression has a single part that is not a comparison (nothing to add).
pub(crate) fn until_parts(r: &Redactor, t: &Templates, src: &str, ctx: &Value) -> Option<String> {
    let parts = conjuncts(src);
    if parts.len() == 1 && left_side(&parts[0]).is_none() {
        return None;
    }
    let shown: Vec<String> = parts
        .iter()
        .map(|p| {
            let held = t.eval(p, ctx).map(|v| v.is_true());
            let mark = match held {
                Ok(true) => "✔",
                Ok(false) => "✖",
                Err(_) => "?",
            };
            match left_side(p) {
                Some(lhs) => {
                    let v = t
                        .eval(lhs, ctx)
                        .map(|v| cut(r, &show_value(&v), VALUE_CHARS))
                        .unwrap_or_else(|e| format!("(error: {})", cut(r, &e.to_string(), 60)));
                    format!("{} = {v} {mark}", cut(r, lhs, 60))
                }
                None => format!("{} {mark}", cut(r, p, 60)),
            }
        })
        .collect();
    Some(shown.join("; "))
}

fn show_value(v: &Value) -> String {
    if v.is_undefined() {
        return "undefined".into();
    }
    if v.is_none() {
        return "null".into();
    }
    match v.as_str() {
        Some(s) => format!("{s:?}"),
        None => serde_json::to_string(v).unwrap_or_else(|_| v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_top_level_and_or_only() {
        assert_eq!(
            conjuncts("a == 1 and (b or c) and d | select('x and y') | list | length == 0"),
            vec![
                "a == 1",
                "(b or c)",
                "d | select('x and y') | list | length == 0"
            ]
        );
        assert_eq!(conjuncts("sandwich == 1"), vec!["sandwich == 1"]);
    }

    #[test]
    fn left_sides_of_comparisons() {
        assert_eq!(left_side("x | length == 1"), Some("x | length"));
        assert_eq!(left_side("a.b != 'x'"), Some("a.b"));
        assert_eq!(left_side("n >= 3"), Some("n"));
        assert_eq!(left_side("f('a==b')"), None);
    }

    #[test]
    fn paths_read_from_json() {
        assert_eq!(
            json_paths(["response.json.sealed == false and json.data.servers[0].leader"]),
            vec!["sealed", "data.servers[0].leader"]
        );
    }

    #[test]
    fn http_summary_names_type_size_and_fields() {
        let j = serde_json::json!({"sealed": false, "version": "1.2", "data": {"x": 1}});
        let h = vec![(
            "Content-Type".to_string(),
            "application/json; charset=utf-8".to_string(),
        )];
        let body = j.to_string();
        assert_eq!(
            http_summary(&Redactor::default(), 200, &h, &body, Some(&j), &[]),
            format!(
                "HTTP 200 application/json, {} B: sealed=false, version=\"1.2\", +1 more field(s)",
                body.len()
            )
        );
        assert_eq!(
            http_summary(
                &Redactor::default(),
                200,
                &h,
                &body,
                Some(&j),
                &["data.x".into(), "nope".into()]
            ),
            format!(
                "HTTP 200 application/json, {} B: data.x=1, nope=(absent)",
                body.len()
            )
        );
        let html = vec![("content-type".to_string(), "text/html".to_string())];
        assert_eq!(
            http_summary(
                &Redactor::default(),
                503,
                &html,
                "<html><body>down</body></html>",
                None,
                &[]
            ),
            "HTTP 503 text/html, 30 B"
        );
    }
}
