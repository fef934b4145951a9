//! Where runs are kept when not (only) in the local run directory: the shared PostgreSQL store
//! selected by `--store postgres://…` / `RUNBOOK_STORE` (team mode, issue 17).
//!
//! Connecting (password never printed, TLS: [`tls`]), the versioned schema ([`pg`]: `runbook
//! store init` / `store check`), runs and their journals ([`journal`]: the [`Store`]
//! implementation), runbook locks across machines ([`lock`]) and gates answered from anywhere
//! ([`approvals`]). See docs/store.md.
//!
//! [`Store`]: crate::session::store::Store

pub(crate) mod approvals;
pub(crate) mod ask;
pub(crate) mod conn;
pub(crate) mod journal;
pub(crate) mod lock;
pub(crate) mod pg;
mod sink;
pub(crate) mod team;
pub(crate) mod tls;

/// A connection string with its password replaced by `***`, for every message that names it.
/// Handles the URL form (`postgres://user:pw@host/db?password=pw`) and the key=value form
/// (`host=h password=pw`).
pub(crate) fn redact(conn: &str) -> String {
    let lower = conn.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        let scheme_end = conn.find("://").map_or(0, |i| i + 3);
        let (scheme, rest) = conn.split_at(scheme_end);
        // Userinfo ends at the last '@' before the path or query.
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(auth_end);
        let authority = match authority.rfind('@') {
            Some(at) => {
                let (userinfo, host) = authority.split_at(at);
                match userinfo.find(':') {
                    Some(c) => format!("{}:***{host}", &userinfo[..c]),
                    None => authority.to_string(),
                }
            }
            None => authority.to_string(),
        };
        let tail = match tail.find('?') {
            Some(q) => {
                let (path, query) = tail.split_at(q + 1);
                let params: Vec<String> = query
                    .split('&')
                    .map(|p| match p.split_once('=') {
                        Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                        _ => p.to_string(),
                    })
                    .collect();
                format!("{path}{}", params.join("&"))
            }
            None => tail.to_string(),
        };
        return format!("{scheme}{authority}{tail}");
    }
    // key=value form: values may be quoted with single quotes and contain spaces.
    let mut out = String::new();
    let mut rest = conn;
    while let Some(eq) = rest.find('=') {
        let key_part = &rest[..eq];
        out.push_str(key_part);
        out.push('=');
        let key = key_part
            .trim_end()
            .rsplit(char::is_whitespace)
            .next()
            .unwrap_or("");
        let after = &rest[eq + 1..];
        let after_trim = after.trim_start();
        out.push_str(&after[..after.len() - after_trim.len()]);
        let (value, next) = if let Some(q) = after_trim.strip_prefix('\'') {
            // Quoted: up to the next unescaped quote.
            let mut end = q.len();
            let mut esc = false;
            for (i, ch) in q.char_indices() {
                if esc {
                    esc = false;
                } else if ch == '\\' {
                    esc = true;
                } else if ch == '\'' {
                    end = i;
                    break;
                }
            }
            let stop = (end + 2).min(after_trim.len());
            (&after_trim[..stop], &after_trim[stop..])
        } else {
            let end = after_trim
                .find(char::is_whitespace)
                .unwrap_or(after_trim.len());
            (&after_trim[..end], &after_trim[end..])
        };
        if key.trim().eq_ignore_ascii_case("password") {
            out.push_str("***");
        } else {
            out.push_str(value);
        }
        rest = next;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn url_password_masked() {
        assert_eq!(
            redact("postgres://alice:s3cr%40t@db.example:5432/runbook?sslmode=require&password=x"),
            "postgres://alice:***@db.example:5432/runbook?sslmode=require&password=***"
        );
        assert_eq!(
            redact("postgresql://alice@db/rb"),
            "postgresql://alice@db/rb"
        );
        assert_eq!(redact("postgres://a:p@ss@h/d"), "postgres://a:***@h/d");
    }

    #[test]
    fn key_value_password_masked() {
        assert_eq!(
            redact("host=db user=alice password=hunter2 dbname=rb"),
            "host=db user=alice password=*** dbname=rb"
        );
        assert_eq!(
            redact("host=db password='a b\\' c' user=x"),
            "host=db password=*** user=x"
        );
        assert_eq!(redact("password = pw"), "password = ***");
    }
}
