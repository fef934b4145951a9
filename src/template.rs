//! Templates and expressions: one minijinja environment, strict about undefined values.
//!
//! Every templated string of a runbook (commands, URLs, titles, gate texts) and every expression
//! (`when`, `until`, `expect.that`, `outputs`, `for_each`) goes through [`Templates`], so that
//! validate, plan and execute agree on what a template means.
//!
//! Rules that must stay true:
//! - An undefined variable is an error, never an empty string.
//! - In shell commands every interpolated value is shell-quoted unless the template marks it
//!   `| raw` (which `validate` flags).
//! - A secret never becomes part of a shell command's text: in a command it renders as a
//!   reference to an environment variable (`"${RUNBOOK_SECRET_X}"`) that the runner sets; in
//!   a plan it renders masked; it is only revealed where the engine sends it itself (an HTTP
//!   body or header), and the redactor masks it in everything shown.

use std::collections::HashSet;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};

/// The text shown in place of a secret.
pub const MASK: &str = "********";

/// Whether non-shell renders reveal secret values (execution) or mask them (plan, display).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretDisplay {
    Mask,
    Reveal,
}

/// Where a rendered template ends up, which decides quoting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A shell command: values are shell-quoted, secrets become env references.
    Shell,
    /// Plain text (URL, title, body): values inserted as they are.
    Text,
}

/// A secret value inside a template context. Renders masked unless the formatter reveals it.
#[derive(Debug)]
pub struct Secret {
    /// Environment variable that carries the value to a command.
    pub env_name: String,
    pub value: String,
}

impl Object for Secret {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }

    fn is_true(self: &Arc<Self>) -> bool {
        !self.value.is_empty()
    }
}

/// A value only known when the run gets there (`steps.x.stdout`): renders as `<steps.x.stdout>`.
#[derive(Debug)]
pub struct Placeholder(pub String);

impl Object for Placeholder {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.to_string();
        Some(Value::from_object(Placeholder(format!("{}.{key}", self.0))))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Empty
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{}>", self.0)
    }
}

/// Converts any serialisable value into a template value.
pub fn to_value<T: serde::Serialize>(v: T) -> Value {
    Value::from(minijinja::value::Serde(v))
}

/// A template map from key/value pairs (`Value::from_iter` of pairs makes a list, not a map).
pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
    Value::from(
        entries
            .into_iter()
            .map(|(k, v)| (k.into(), v))
            .collect::<std::collections::BTreeMap<String, Value>>(),
    )
}

/// The name of the environment variable that carries secret `input` (item `index` of a list).
pub fn secret_env_name(input: &str, index: Option<usize>) -> String {
    let base: String = input
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    match index {
        Some(i) => format!("RUNBOOK_SECRET_{base}_{i}"),
        None => format!("RUNBOOK_SECRET_{base}"),
    }
}

/// Quotes `s` for POSIX `sh`; plain words stay as they are.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r#"'\''"#))
}

/// The one template environment, configured for strictness, quoting and secrets.
pub struct Templates {
    env: Environment<'static>,
}

const SHELL_NAME: &str = "command.sh";
const TEXT_NAME: &str = "text";

impl Templates {
    pub fn new(secrets: SecretDisplay) -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_recursion_limit(64);
        // Bounded work per render: a hostile template cannot loop forever.
        env.set_fuel(Some(5_000_000));
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".sh") {
                AutoEscape::Custom("shell".into())
            } else {
                AutoEscape::None
            }
        });
        env.set_formatter(move |out, state, value| {
            let shell = matches!(state.auto_escape(), AutoEscape::Custom(name) if name == "shell");
            if let Some(secret) = value.downcast_object_ref::<Secret>() {
                let text = if shell {
                    format!("\"${{{}}}\"", secret.env_name)
                } else if secrets == SecretDisplay::Reveal {
                    secret.value.clone()
                } else {
                    MASK.to_string()
                };
                return out.write_str(&text).map_err(Error::from);
            }
            if value.downcast_object_ref::<Placeholder>().is_some() || !shell || value.is_safe() {
                return write!(out, "{value}").map_err(Error::from);
            }
            out.write_str(&shell_quote(&value.to_string()))
                .map_err(Error::from)
        });
        env.add_filter("raw", |v: Value| -> Value {
            Value::from_safe_string(v.to_string())
        });
        env.add_filter("quote", |v: Value| -> Value {
            Value::from_safe_string(shell_quote(&v.to_string()))
        });
        env.add_filter("grep", |text: String, needle: String| -> String {
            text.lines()
                .filter(|l| l.contains(needle.as_str()))
                .collect::<Vec<_>>()
                .join("\n")
        });
        env.add_filter("tojson_compact", |v: Value| -> Result<String, Error> {
            serde_json::to_string(&v)
                .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
        });
        Templates { env }
    }

    /// Checks a template's syntax.
    pub fn check_template(&self, src: &str) -> Result<(), Error> {
        self.env.template_from_named_str(TEXT_NAME, src).map(|_| ())
    }

    /// Checks an expression's syntax.
    pub fn check_expression(&self, src: &str) -> Result<(), Error> {
        self.env.compile_expression(src).map(|_| ())
    }

    /// Variables a template reads that it does not define itself (`a`, `steps.x.stdout`).
    pub fn template_variables(&self, src: &str) -> Result<HashSet<String>, Error> {
        Ok(self
            .env
            .template_from_named_str(TEXT_NAME, src)?
            .undeclared_variables(true))
    }

    /// Variables an expression reads.
    pub fn expression_variables(&self, src: &str) -> Result<HashSet<String>, Error> {
        Ok(self.env.compile_expression(src)?.undeclared_variables(true))
    }

    /// Renders a template for `target` against `ctx`.
    pub fn render(&self, src: &str, ctx: &Value, target: Target) -> Result<String, Error> {
        let name = match target {
            Target::Shell => SHELL_NAME,
            Target::Text => TEXT_NAME,
        };
        self.env.template_from_named_str(name, src)?.render(ctx)
    }

    /// Evaluates an expression against `ctx`.
    pub fn eval(&self, src: &str, ctx: &Value) -> Result<Value, Error> {
        self.env.compile_expression(src)?.eval(ctx)
    }
}

/// Strips one `{{ … }}` wrapper from an expression, so `when: "{{ x }}"` and `when: x` agree.
pub fn expression_source(src: &str) -> &str {
    let t = src.trim();
    match t.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")) {
        Some(inner) if !inner.contains("{{") => inner.trim(),
        _ => t,
    }
}

/// Describes a minijinja error in one line (without the template dump).
pub fn describe_error(err: &Error) -> String {
    match err.detail() {
        Some(detail) => format!("{}: {detail}", kind_text(err.kind())),
        None => kind_text(err.kind()).to_string(),
    }
}

fn kind_text(kind: ErrorKind) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Value {
        crate::template::to_value(
            serde_json::json!({"node": "vault-2", "evil": "a; rm -rf /", "q": "it's"}),
        )
    }

    #[test]
    fn shell_values_are_quoted() {
        let t = Templates::new(SecretDisplay::Reveal);
        let out = t.render(
            "restart {{ node }} {{ evil }} {{ q }}",
            &ctx(),
            Target::Shell,
        );
        assert_eq!(
            out.ok().as_deref(),
            Some(r#"restart vault-2 'a; rm -rf /' 'it'\''s'"#)
        );
    }

    #[test]
    fn raw_is_explicit() {
        let t = Templates::new(SecretDisplay::Reveal);
        let out = t.render("{{ evil | raw }}", &ctx(), Target::Shell);
        assert_eq!(out.ok().as_deref(), Some("a; rm -rf /"));
    }

    #[test]
    fn undefined_is_an_error() {
        let t = Templates::new(SecretDisplay::Reveal);
        assert!(t.render("{{ nope }}", &ctx(), Target::Text).is_err());
        assert!(t.eval("nope == 1", &ctx()).is_err());
    }

    #[test]
    fn secrets_become_env_references_in_commands() {
        let t = Templates::new(SecretDisplay::Reveal);
        let ctx = map([(
            "token",
            Value::from_object(Secret {
                env_name: "RUNBOOK_SECRET_TOKEN".into(),
                value: "hunter2".into(),
            }),
        )]);
        let shell = t.render("curl -H {{ token }}", &ctx, Target::Shell).ok();
        assert_eq!(
            shell.as_deref(),
            Some(r#"curl -H "${RUNBOOK_SECRET_TOKEN}""#)
        );
        let text = t.render("{{ token }}", &ctx, Target::Text).ok();
        assert_eq!(text.as_deref(), Some("hunter2"));
        let masked = Templates::new(SecretDisplay::Mask)
            .render("{{ token }}", &ctx, Target::Text)
            .ok();
        assert_eq!(masked.as_deref(), Some(MASK));
    }

    #[test]
    fn placeholders_render_their_path() {
        let t = Templates::new(SecretDisplay::Mask);
        let ctx = map([("steps", Value::from_object(Placeholder("steps".into())))]);
        let out = t.render("echo {{ steps.inspect.stdout }}", &ctx, Target::Shell);
        assert_eq!(out.ok().as_deref(), Some("echo <steps.inspect.stdout>"));
    }
}
