//! Values in URL templates, encoded for the component where they stand.
//!
//! A URL template is rendered with every value replaced by a marker (as commands are); [`place`]
//! then reads the literal text to know where each marker stands:
//!
//! - a value that *starts* the URL (`{{ vault_addr }}/v1/…`) must itself be an origin:
//!   `http(s)://host[:port][/path]`, without user info, query or fragment;
//! - a value in the scheme is refused; a value in the authority (`http://{{ node }}:8200`)
//!   must be a host name, address or port — letters, digits, `.`, `-`, `_`, `:`, `[ ]` — so it
//!   cannot move the request to another host (`127.0.0.1:9/steal#`);
//! - in the path, a value is one segment: everything but `A-Z a-z 0-9 - . _ ~` is
//!   percent-encoded (`/` too); a value that makes a whole segment `.` or `..` (alone or
//!   with the text next to it) is refused: servers and proxies normalise dot segments, even
//!   percent-encoded (`%2E%2E`), so the request would climb to another path;
//! - in the query and the fragment, everything but those characters is percent-encoded
//!   (`&`, `=`, `+`, `#` included).

use std::fmt::Write as _;

use super::shell::{CLOSE, OPEN};

/// Where in a URL a position is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// Nothing but a value so far: the value must be an origin.
    Start,
    Scheme,
    Authority,
    Path,
    Query,
    Fragment,
}

/// Why a value cannot stand where it is in a URL: the request would go somewhere else, or
/// could not be sent at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UrlError {
    /// A value begins the URL but has no `scheme://`.
    #[error("`{0}` begins the URL but is not an address like https://host:port")]
    NoScheme(String),
    #[error("`{0}`: only http and https URLs are sent")]
    NotHttp(String),
    /// A value begins the URL with user info, a query, a fragment or spaces.
    #[error(
        "`{0}` begins the URL but is not an address like https://host:port (no user info, query or fragment)"
    )]
    NotAnOrigin(String),
    #[error("a value (`{0}`) stands in the URL's scheme; write the scheme literally")]
    InScheme(String),
    #[error(
        "`{}` is not a host name, address or port and cannot stand in the URL's host",
        .0.escape_debug()
    )]
    NotAHost(String),
    /// A value makes a path segment `.` or `..`.
    #[error(
        "a value makes the URL path segment `{0}`: servers resolve it to another path; refused"
    )]
    DotSegment(String),
    #[error("malformed URL template")]
    Malformed,
}

/// Percent-encodes everything but the unreserved characters.
fn encode(value: &str) -> String {
    if value == "." || value == ".." {
        return value.replace('.', "%2E");
    }
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn host_chars(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'))
}

/// Checks a value that begins a URL: an http(s) origin, optionally with a path.
fn check_origin(value: &str) -> Result<(), UrlError> {
    let Some((scheme, rest)) = value.split_once("://") else {
        return Err(UrlError::NoScheme(value.to_string()));
    };
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return Err(UrlError::NotHttp(value.to_string()));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let path = &rest[authority.len()..];
    if !host_chars(authority)
        || path.contains(['?', '#', '\\'])
        || value.contains(char::is_whitespace)
    {
        return Err(UrlError::NotAnOrigin(value.to_string()));
    }
    Ok(())
}

/// Reads the parts of `rendered`; calls `each(index, part)` for every marker, which returns
/// the text to put there.
pub(super) fn walk(
    rendered: &str,
    mut each: impl FnMut(usize, Part) -> Result<String, UrlError>,
) -> Result<String, UrlError> {
    let mut out = String::with_capacity(rendered.len());
    let mut part = Part::Start;
    let mut chars = rendered.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == OPEN {
            let mut n = 0usize;
            let mut closed = false;
            for (_, d) in chars.by_ref() {
                if d == CLOSE {
                    closed = true;
                    break;
                }
                n = n
                    .saturating_mul(10)
                    .saturating_add(d.to_digit(10).unwrap_or(0) as usize);
            }
            if !closed {
                return Err(UrlError::Malformed);
            }
            out.push_str(&each(n, part)?);
            if part == Part::Start {
                part = Part::Path;
            }
            continue;
        }
        match part {
            Part::Start | Part::Scheme => {
                if rendered[i..].starts_with("://") {
                    out.push_str("://");
                    chars.next();
                    chars.next();
                    part = Part::Authority;
                    continue;
                }
                part = Part::Scheme;
            }
            Part::Authority | Part::Path => {
                if c == '/' && part == Part::Authority {
                    part = Part::Path;
                } else if c == '?' {
                    part = Part::Query;
                } else if c == '#' {
                    part = Part::Fragment;
                }
            }
            Part::Query if c == '#' => part = Part::Fragment,
            Part::Query | Part::Fragment => {}
        }
        out.push(c);
    }
    Ok(out)
}

/// Brackets a path value in the output while [`place`] checks the segments.
const SEG_OPEN: char = '\u{E002}';
const SEG_CLOSE: char = '\u{E003}';

/// Replaces each marker with its value, encoded for where it stands.
pub(super) fn place(rendered: &str, values: &[String]) -> Result<String, UrlError> {
    let out = place_marked(rendered, values)?;
    check_dot_segments(&out)?;
    Ok(out.replace([SEG_OPEN, SEG_CLOSE], ""))
}

/// Refuses a path segment that a value made `.` or `..` (percent-encoded dots count).
fn check_dot_segments(marked: &str) -> Result<(), UrlError> {
    let Some(after_scheme) = marked.find("://").map(|i| i + 3) else {
        return Ok(());
    };
    let rest = &marked[after_scheme..];
    let Some(path_start) = rest.find('/') else {
        return Ok(());
    };
    let path = &rest[path_start..];
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    for seg in path.split('/') {
        if !seg.contains(SEG_OPEN) {
            continue;
        }
        let plain = seg
            .replace([SEG_OPEN, SEG_CLOSE], "")
            .replace("%2E", ".")
            .replace("%2e", ".");
        if plain == "." || plain == ".." {
            return Err(UrlError::DotSegment(plain));
        }
    }
    Ok(())
}

fn place_marked(rendered: &str, values: &[String]) -> Result<String, UrlError> {
    walk(rendered, |i, part| {
        let v = values.get(i).map(String::as_str).unwrap_or_default();
        match part {
            Part::Start => check_origin(v).map(|()| v.to_string()),
            Part::Scheme => Err(UrlError::InScheme(v.to_string())),
            Part::Authority if host_chars(v) => Ok(v.to_string()),
            Part::Authority => Err(UrlError::NotAHost(v.to_string())),
            Part::Path => Ok(format!("{SEG_OPEN}{}{SEG_CLOSE}", encode(v))),
            Part::Query | Part::Fragment => Ok(encode(v)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::shell::marker;
    use super::*;

    fn p(t: &str, vals: &[&str]) -> Result<String, UrlError> {
        let mut s = t.to_string();
        for i in 0..vals.len() {
            s = s.replace(&format!("@{i}"), &marker(i));
        }
        place(&s, &vals.iter().map(|v| v.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn components() {
        assert_eq!(
            p(
                "http://@0:8200/v1/@1?x=@2#@3",
                &["vault-2", "a/b c", "1&y=2+3", "f#g"]
            )
            .ok(),
            Some("http://vault-2:8200/v1/a%2Fb%20c?x=1%26y%3D2%2B3#f%23g".into())
        );
        assert!(p("@0/v1/sys/@1", &["https://127.0.0.1:8201", ".."]).is_err());
        assert!(p("http://h/a/@0/x", &["."]).is_err());
        assert!(p("http://h/a/.@0/x", &["."]).is_err());
        assert!(p("http://h/a/@0@1?q", &[".", "."]).is_err());
        assert_eq!(
            p("http://h/a/@0.txt?q=@1", &["..", ".."]).ok(),
            Some("http://h/a/%2E%2E.txt?q=%2E%2E".into())
        );
    }

    #[test]
    fn authority_and_scheme_are_not_free() {
        assert!(p("http://@0:8200/x", &["127.0.0.1:42281/steal#"]).is_err());
        assert!(p("http://@0/x", &["evil@host"]).is_err());
        assert!(p("@0://h/x", &["http"]).is_err());
        assert!(p("@0/x", &["https://u:p@evil"]).is_err());
        assert!(p("@0/x", &["https://h/?q"]).is_err());
        assert!(p("@0/x", &["file:///etc/passwd"]).is_err());
    }
}
