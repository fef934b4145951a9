//! `ask:` steps: how the plan shows them and how an answer is checked (type, pattern,
//! length of a secret). Asking itself (the terminal, `runbook answer`) is in
//! `execute/ask.rs`; the channel other users answer through in `runner/ask_socket.rs`.

use minijinja::value::Value;

use super::render::Renderer;
use crate::model::{AskSpec, InputType, MIN_SECRET_LEN};

/// Renders the prompt.
pub(crate) fn prompt(
    r: &dyn Renderer,
    spec: &AskSpec,
    ctx: &Value,
) -> Result<String, crate::runner::StepError> {
    r.text(&spec.prompt, ctx, "ask")
}

/// The pattern as the author wrote it (without the anchors validation added).
pub(crate) fn unanchored(p: &str) -> String {
    p.strip_prefix("^(?:")
        .and_then(|p| p.strip_suffix(")$"))
        .unwrap_or(p)
        .to_string()
}

/// Checks one answer: the typed value, or why it is refused (never quoting a secret).
/// Why an answer is not accepted (its type or pattern; never quoting a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadAnswer(pub String);

impl std::fmt::Display for BadAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn parse_answer(spec: &AskSpec, raw: &str) -> Result<serde_json::Value, BadAnswer> {
    parse_answer_text(spec, raw).map_err(BadAnswer)
}

fn parse_answer_text(spec: &AskSpec, raw: &str) -> Result<serde_json::Value, String> {
    let text = raw.trim_end_matches(['\r', '\n']);
    let shown = |t: &str| {
        if spec.secret {
            "the answer".to_string()
        } else {
            format!("`{t}`")
        }
    };
    if text.is_empty() {
        return Err("the answer is empty".into());
    }
    if spec.secret && text.chars().count() < MIN_SECRET_LEN {
        return Err(format!(
            "a secret answer must be at least {MIN_SECRET_LEN} characters (shorter ones cannot be masked safely)"
        ));
    }
    if let Some(p) = &spec.pattern
        && !p.is_match(text)
    {
        return Err(format!(
            "{} does not match the pattern /{}/",
            shown(text),
            unanchored(p.as_str())
        ));
    }
    match spec.ty {
        InputType::Int => text
            .trim()
            .parse::<i64>()
            .map(serde_json::Value::from)
            .map_err(|_| format!("{} is not a whole number", shown(text))),
        InputType::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" => Ok(serde_json::Value::Bool(true)),
            "false" | "no" | "n" | "0" => Ok(serde_json::Value::Bool(false)),
            _ => Err(format!("{} is not yes/no (true/false)", shown(text))),
        },
        InputType::String | InputType::List => Ok(serde_json::Value::String(text.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Tmpl;

    fn spec(ty: InputType, secret: bool, pattern: Option<&str>) -> AskSpec {
        AskSpec {
            prompt: Tmpl {
                src: "p".into(),
                span: 0..1,
            },
            ty,
            secret,
            pattern: pattern.and_then(|p| regex::Regex::new(&format!("^(?:{p})$")).ok()),
            from: 1,
            from_expr: None,
            timeout: None,
        }
    }

    #[test]
    fn answers_are_typed_and_checked_and_secrets_never_quoted() {
        let s = spec(InputType::Int, false, None);
        assert_eq!(parse_answer(&s, "42\n"), Ok(serde_json::json!(42)));
        assert!(parse_answer(&s, "x").is_err_and(|e| e.0.contains("`x`")));
        let s = spec(InputType::Bool, false, None);
        assert_eq!(parse_answer(&s, "yes"), Ok(serde_json::json!(true)));
        let s = spec(InputType::String, true, Some("[a-z]+"));
        let e = parse_answer(&s, "CANARY-SECRET-1").unwrap_err();
        assert!(!e.0.contains("CANARY"), "{e}");
        assert!(parse_answer(&s, "short").is_err_and(|e| e.0.contains("at least")));
        assert_eq!(
            parse_answer(&s, "abcdefghij"),
            Ok(serde_json::json!("abcdefghij"))
        );
    }
}
