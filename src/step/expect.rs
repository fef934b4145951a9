//! A step's success rule: `expect` (and the defaults: exit 0, HTTP 2xx), JSON paths.

use minijinja::value::Value;

use super::context::result_entries;
use super::{Attempt, Env, is_sensitive};
use crate::event::StepStatus;
use crate::model::*;
use crate::runner::{StepError, StepErrorKind};
use crate::template::expression_source;

/// Checks a successful execution against `expect` (and the defaults: exit 0, HTTP 2xx).
pub(crate) fn check_expect(
    env: &Env,
    step: &Step,
    body: &Body,
    a: Attempt,
    extra: Vec<(String, Value)>,
) -> Attempt {
    let e = &step.expect;
    let r = &a.result;
    let fail = |msg: String| Attempt {
        status: StepStatus::Failed,
        result: a.result.clone(),
        error: Some(StepError::new(StepErrorKind::Expectation, msg)),
        operator: None,
    };
    let kind_failure = match &body.action {
        Action::Run(_) => exit_failure(e, r),
        Action::Http(h) => http_failure(e, r, h.sensitive),
        _ => None,
    };
    if let Some(msg) = kind_failure {
        return fail(msg);
    }
    if let Some(re) = &e.stdout
        && !re.is_match(r.get("stdout").and_then(|s| s.as_str()).unwrap_or_default())
    {
        return fail(format!("stdout does not match /{}/", re.as_str()));
    }
    if let Some(re) = &e.stderr
        && !re.is_match(r.get("stderr").and_then(|s| s.as_str()).unwrap_or_default())
    {
        return fail(format!("stderr does not match /{}/", re.as_str()));
    }
    for (path, exp) in &e.json {
        let found = r
            .get("json")
            .and_then(|j| crate::step::expect::json_path(j, path));
        match (exp, found) {
            (JsonExpect::Exists, Some(_)) => {}
            (JsonExpect::Exists, None) => return fail(format!("JSON path {path} is missing")),
            (JsonExpect::Equals(want), Some(got)) if crate::step::expect::json_equal(want, got) => {
            }
            (JsonExpect::Equals(want), got) => {
                let got = match got {
                    None => "missing".to_string(),
                    Some(_) if is_sensitive(step) => "something else (sensitive)".to_string(),
                    Some(g) => g.to_string(),
                };
                return fail(format!("JSON path {path} is {got}, expected {want}"));
            }
        }
    }
    if let Some(that) = &e.that {
        let mut ex = extra;
        ex.extend(result_entries(r, 1));
        match env.eval_bool(that, ex) {
            Ok(true) => {}
            Ok(false) => {
                return fail(format!(
                    "expectation `{}` is false",
                    expression_source(&that.src)
                ));
            }
            Err(err) => {
                return fail(format!(
                    "expectation `{}`: {err}",
                    expression_source(&that.src)
                ));
            }
        }
    }
    a
}

/// Whether `got` is `want`, a string holding the same JSON value counting as equal.
pub(crate) fn json_equal(want: &serde_json::Value, got: &serde_json::Value) -> bool {
    if want == got {
        return true;
    }
    // `expect.json: {a.b: 3}` matches "3" and 3 alike: YAML authors rarely mean the difference.
    match (want, got) {
        (serde_json::Value::String(w), other) | (other, serde_json::Value::String(w)) => {
            !other.is_string()
                && serde_json::from_str::<serde_json::Value>(w).is_ok_and(|parsed| parsed == *other)
        }
        _ => false,
    }
}

/// Looks up `a.b[0].c` in a JSON value.
pub(crate) fn json_path<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let mut cur = v;
    for part in path.trim_start_matches("$.").split('.') {
        let (name, rest) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            let n: usize = idx.trim_end_matches(']').parse().ok()?;
            cur = cur.get(n)?;
        }
    }
    Some(cur)
}

/// Why a command's exit does not meet `expect.exit_code` (default 0), if it does not.
fn exit_failure(e: &Expect, r: &serde_json::Value) -> Option<String> {
    let code = r.get("exit_code").and_then(serde_json::Value::as_i64);
    let ok_codes: Vec<i64> = if e.exit_codes.is_empty() {
        vec![0]
    } else {
        e.exit_codes.iter().map(|&c| i64::from(c)).collect()
    };
    match code {
        Some(c) if ok_codes.contains(&c) => None,
        Some(c) => {
            let stderr = r.get("stderr").and_then(|s| s.as_str()).unwrap_or_default();
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default();
            let tail = if last.is_empty() {
                String::new()
            } else {
                format!(": {last}")
            };
            Some(format!("exited with code {c}{tail}"))
        }
        None => {
            let sig = r
                .get("signal")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(0);
            Some(format!("killed by signal {sig}"))
        }
    }
}

/// Why a response does not meet `expect.status` (default 2xx) or `body_contains`.
fn http_failure(e: &Expect, r: &serde_json::Value, sensitive: bool) -> Option<String> {
    let status = r
        .get("status")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0) as u16;
    let ok = if e.status.is_empty() {
        (200..300).contains(&status)
    } else {
        e.status.contains(&status)
    };
    if !ok {
        // A sensitive response stays out of the error message too.
        let errors = r
            .get("json")
            .and_then(|j| j.get("errors"))
            .filter(|_| !sensitive)
            .map(|v| format!(": {v}"))
            .unwrap_or_default();
        let expected = if e.status.is_empty() {
            "2xx".to_string()
        } else {
            format!("{:?}", e.status)
        };
        return Some(format!("HTTP status {status}, expected {expected}{errors}"));
    }
    match &e.body_contains {
        Some(needle)
            if !r
                .get("body")
                .and_then(|b| b.as_str())
                .unwrap_or_default()
                .contains(needle.as_str()) =>
        {
            Some(format!("response body does not contain {needle:?}"))
        }
        _ => None,
    }
}
