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

pub(crate) mod shell;
pub(crate) mod url;

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};

/// The text shown in place of a secret.
pub(crate) const MASK: &str = "********";

/// Whether non-shell renders reveal secret values (execution) or mask them (plan, display).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretDisplay {
    Mask,
    Reveal,
}

/// Where a rendered template ends up, which decides quoting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Plain text (URL, title, body): values inserted as they are.
    Text,
}

/// A secret value inside a template context. Renders masked unless the formatter reveals it.
#[derive(Debug)]
pub(crate) struct Secret {
    /// Environment variable that carries the value to a command.
    pub env_name: String,
    pub value: String,
}

impl Object for Secret {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    /// Masked, except while a revealing environment renders: then a filter or operator over
    /// a secret (`token ~ 'x'`, `keys | join(' ')`) yields the real derived value, which is
    /// itself handled as a secret (an environment variable in commands, masked in output).
    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if REVEAL.with(Cell::get) {
            REVEALED.with(|c| c.set(c.get() + 1));
            f.write_str(&self.value)
        } else {
            f.write_str(MASK)
        }
    }

    fn is_true(self: &Arc<Self>) -> bool {
        !self.value.is_empty()
    }
}

thread_local! {
    /// Whether secrets render as their value (set only while a revealing render runs).
    static REVEAL: Cell<bool> = const { Cell::new(false) };
    /// Secrets revealed since the last value was written (a value computed from one is one).
    static REVEALED: Cell<u32> = const { Cell::new(0) };
    /// Values written by the current render that were computed from a secret.
    static DERIVED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// The values of the command being rendered (set only while a command renders).
    static SLOTS: RefCell<Option<Slots>> = const { RefCell::new(None) };
}

/// Values collected while a command renders, each carried by an environment variable.
#[derive(Debug, Default)]
struct Slots {
    /// (variable name, value, is a secret)
    items: Vec<(String, String, bool)>,
    /// Whether a value derived from a secret was seen (it is bound like any value).
    plain_count: usize,
}

impl Slots {
    fn bind(&mut self, name: Option<&str>, value: String, secret: bool) -> usize {
        if let Some(i) = self
            .items
            .iter()
            .position(|(n, v, s)| *v == value && *s == secret && name.is_none_or(|x| x == n))
        {
            return i;
        }
        let name = match name {
            Some(n) => n.to_string(),
            None => {
                self.plain_count += 1;
                format!("RUNBOOK_V{}", self.plain_count)
            }
        };
        self.items.push((name, value, secret));
        self.items.len() - 1
    }
}

/// Resets the reveal flag when a render ends (also on error or panic).
struct RevealGuard(bool);

impl RevealGuard {
    fn set(on: bool) -> RevealGuard {
        RevealGuard(REVEAL.with(|r| r.replace(on)))
    }
}

impl Drop for RevealGuard {
    fn drop(&mut self) {
        REVEAL.with(|r| r.set(self.0));
    }
}

/// A command rendered for the shell: the text, and the environment that carries its values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ShellCommand {
    /// The command, where every value is a reference such as `"${RUNBOOK_V1}"`.
    pub command: String,
    /// The variables it references: `RUNBOOK_V1=…` for values, `RUNBOOK_SECRET_X=…` for the
    /// secrets this command uses (and only those). Masked when rendered for display.
    pub env: Vec<(String, String)>,
    /// Values computed from a secret (`token[:8]`, `token | upper`): secrets too, for the
    /// redactor (the engine adds them before anything runs).
    pub derived_secrets: Vec<String>,
}

/// Starts a render: forgets what earlier renders revealed.
fn start_render() {
    REVEALED.with(|c| c.set(0));
    DERIVED.with(|d| d.borrow_mut().clear());
}

/// Whether the value just written was computed from a secret (records it if so).
fn note_derived(text: &str) -> bool {
    let tainted = REVEALED.with(|c| c.replace(0)) > 0;
    if tainted && !text.is_empty() {
        DERIVED.with(|d| d.borrow_mut().push(text.to_string()));
    }
    tainted
}

/// The values computed from a secret by the last [`Templates::render_url`] on this thread.
pub(crate) fn take_derived_secrets() -> Vec<String> {
    take_derived()
}

fn take_derived() -> Vec<String> {
    DERIVED.with(|d| std::mem::take(&mut *d.borrow_mut()))
}

/// A value only known when the run gets there (`steps.x.stdout`): renders as `<steps.x.stdout>`.
#[derive(Debug)]
pub(crate) struct Placeholder(pub String);

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
pub(crate) fn to_value<T: serde::Serialize>(v: T) -> Value {
    Value::from(minijinja::value::Serde(v))
}

/// A template map from key/value pairs (`Value::from_iter` of pairs makes a list, not a map).
pub(crate) fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
    Value::from(
        entries
            .into_iter()
            .map(|(k, v)| (k.into(), v))
            .collect::<std::collections::BTreeMap<String, Value>>(),
    )
}

/// The name of the environment variable that carries secret `input` (item `index` of a list).
pub(crate) fn secret_env_name(input: &str, index: Option<usize>) -> String {
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
pub(crate) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r#"'\''"#))
}

/// The one template environment, configured for strictness, quoting and secrets.
pub(crate) struct Templates {
    env: Environment<'static>,
    secrets: SecretDisplay,
}

const SHELL_NAME: &str = "command.sh";
const URL_NAME: &str = "url";
const TEXT_NAME: &str = "text";

impl Templates {
    pub(crate) fn new(secrets: SecretDisplay) -> Templates {
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
            // Decided by the template, not by `{% autoescape %}`: a command cannot turn it off.
            if state.name() == SHELL_NAME || state.name() == URL_NAME {
                return shell_format(out, value, secrets);
            }
            if let Some(secret) = value.downcast_object_ref::<Secret>() {
                let text = if secrets == SecretDisplay::Reveal {
                    secret.value.as_str()
                } else {
                    MASK
                };
                return out.write_str(text).map_err(Error::from);
            }
            let text = value.to_string();
            note_derived(&text);
            out.write_str(&text).map_err(Error::from)
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
        Templates { env, secrets }
    }

    /// Variables a template reads that it does not define itself (`a`, `steps.x.stdout`).
    pub(crate) fn template_variables(&self, src: &str) -> Result<HashSet<String>, Error> {
        Ok(self
            .env
            .template_from_named_str(TEXT_NAME, &protect_dollar_hash(src))?
            .undeclared_variables(true))
    }

    /// Variables an expression reads.
    pub(crate) fn expression_variables(&self, src: &str) -> Result<HashSet<String>, Error> {
        Ok(self.env.compile_expression(src)?.undeclared_variables(true))
    }

    /// Renders a template for `target` against `ctx`. A shell command renders with its values
    /// as references (see [`Templates::render_command`] for the environment that goes with it).
    pub(crate) fn render(&self, src: &str, ctx: &Value, target: Target) -> Result<String, Error> {
        match target {
            Target::Text => self.render_text(src, ctx).map(|(t, _)| t),
        }
    }

    /// Renders text; also returns the values in it computed from a secret (secrets too).
    pub(crate) fn render_text(
        &self,
        src: &str,
        ctx: &Value,
    ) -> Result<(String, Vec<String>), Error> {
        let _reveal = RevealGuard::set(self.secrets == SecretDisplay::Reveal);
        start_render();
        let out = self
            .env
            .template_from_named_str(TEXT_NAME, &protect_dollar_hash(src))?
            .render(ctx);
        let derived = take_derived();
        Ok((out?, derived))
    }

    /// Renders a shell command: every value (input, step output, loop item, secret) goes to
    /// the command through an environment variable, referenced in a way that is correct for
    /// the quoting context where the template stands; values marked `| raw` are inserted as
    /// they are. A value in a context where no reference is safe is an error.
    pub(crate) fn render_command(&self, src: &str, ctx: &Value) -> Result<ShellCommand, Error> {
        if shell::has_marker_chars(src) {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "the command contains reserved characters U+E000/U+E001",
            ));
        }
        let _reveal = RevealGuard::set(self.secrets == SecretDisplay::Reveal);
        let src = protect_dollar_hash(src);
        let tmpl = self.env.template_from_named_str(SHELL_NAME, &src)?;
        start_render();
        let previous = SLOTS.with(|s| s.replace(Some(Slots::default())));
        let rendered = tmpl.render(ctx);
        let slots = SLOTS.with(|s| s.replace(previous)).unwrap_or_default();
        let derived_secrets = take_derived();
        let rendered = rendered?;
        let names: Vec<String> = slots.items.iter().map(|(n, _, _)| n.clone()).collect();
        let command = shell::place(&rendered, &names).map_err(|errs| {
            let first = errs
                .first()
                .map(|e| e.context.to_string())
                .unwrap_or_default();
            Error::new(
                ErrorKind::InvalidOperation,
                format!("a value stands {first}; move it out of that quoting context"),
            )
        })?;
        let env = slots.items.into_iter().map(|(n, v, _)| (n, v)).collect();
        Ok(ShellCommand {
            command,
            env,
            derived_secrets,
        })
    }

    /// Renders a URL: each value is percent-encoded for the component where it stands, and
    /// may not change the scheme or the host (see [`url`]).
    pub(crate) fn render_url(&self, src: &str, ctx: &Value) -> Result<String, Error> {
        if shell::has_marker_chars(src) {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "the URL contains reserved characters U+E000/U+E001",
            ));
        }
        let _reveal = RevealGuard::set(self.secrets == SecretDisplay::Reveal);
        let tmpl = self.env.template_from_named_str(URL_NAME, src)?;
        start_render();
        let previous = SLOTS.with(|s| s.replace(Some(Slots::default())));
        let rendered = tmpl.render(ctx);
        let slots = SLOTS.with(|s| s.replace(previous)).unwrap_or_default();
        let rendered = rendered?;
        let values: Vec<String> = slots.items.into_iter().map(|(_, v, _)| v).collect();
        url::place(&rendered, &values).map_err(|e| Error::new(ErrorKind::InvalidOperation, e))
    }

    /// Evaluates an expression against `ctx`.
    pub(crate) fn eval(&self, src: &str, ctx: &Value) -> Result<Value, Error> {
        let _reveal = RevealGuard::set(self.secrets == SecretDisplay::Reveal);
        self.env.compile_expression(src)?.eval(ctx)
    }
}

/// Writes one value of a shell command: a marker bound to an environment variable, or the
/// value itself when the template marked it `| raw`.
fn shell_format(
    out: &mut minijinja::Output<'_>,
    value: &Value,
    secrets: SecretDisplay,
) -> Result<(), Error> {
    if value.is_safe() {
        let text = value.to_string();
        note_derived(&text);
        return out.write_str(&text).map_err(Error::from);
    }
    let index = SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        let slots = slots.as_mut()?;
        Some(
            if let Some(secret) = value.downcast_object_ref::<Secret>() {
                let shown = match secrets {
                    SecretDisplay::Reveal => secret.value.clone(),
                    SecretDisplay::Mask => MASK.to_string(),
                };
                slots.bind(Some(&secret.env_name), shown, true)
            } else {
                let text = value.to_string();
                note_derived(&text);
                slots.bind(None, text, false)
            },
        )
    });
    match index {
        Some(i) => out.write_str(&shell::marker(i)).map_err(Error::from),
        // Rendered outside render_command (cannot happen): quote as the last line of defence.
        None => out
            .write_str(&shell_quote(&value.to_string()))
            .map_err(Error::from),
    }
}

/// Checks a rendered host address (`host`, `1.2.3.4`, `[::1]`) or user name: a value that
/// could be read as an option (`-oProxyCommand=…`) or change the destination (`a@b`, `a/b`,
/// spaces) is refused.
pub(crate) fn check_host_part(what: &str, value: &str) -> Result<(), String> {
    let allowed = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(c, '.' | '-' | '_')
            || (what != "user" && matches!(c, ':' | '[' | ']' | '%'))
    };
    if value.is_empty()
        || value.len() > 253
        || value.starts_with('-')
        || !value.chars().all(allowed)
    {
        return Err(format!(
            "the {what} `{}` is not a valid {what} (letters, digits, `.`, `-`, `_`{})",
            value.escape_debug(),
            if what == "user" {
                ""
            } else {
                ", `:` and `[ ]`"
            }
        ));
    }
    Ok(())
}

/// What `validate` needs to know about a command template, read from its tokens.
#[derive(Debug, Default)]
pub(crate) struct CommandAnalysis {
    /// Values written `| raw` (or `| safe`): the root variable and where.
    pub raw: Vec<(String, std::ops::Range<usize>)>,
    /// `{% autoescape %}` and `{% filter %}` blocks, which have no place in a command.
    pub blocks: Vec<(String, std::ops::Range<usize>)>,
    /// Values standing in a quoting context where no reference is safe.
    pub unsafe_contexts: Vec<(shell::Unsafe, std::ops::Range<usize>)>,
}

/// A template's text with every `{{ … }}` replaced by a marker (raw ones by `x`), every
/// `{% … %}` dropped (so every branch counts), and for each marker its source range and the
/// root variable it reads.
struct Skeleton {
    text: String,
    values: Vec<(String, std::ops::Range<usize>)>,
    raw: Vec<(String, std::ops::Range<usize>)>,
    blocks: Vec<(String, std::ops::Range<usize>)>,
}

fn skeleton(src: &str) -> Option<Skeleton> {
    use minijinja::machinery::{Token, tokenize};
    let mut out = Skeleton {
        text: String::new(),
        values: Vec::new(),
        raw: Vec::new(),
        blocks: Vec::new(),
    };
    let tokens: Vec<(Token<'_>, minijinja::machinery::Span)> =
        tokenize(src, false, Default::default())
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i].0 {
            Token::TemplateData(text) => out.text.push_str(text),
            Token::VariableStart | Token::BlockStart => {
                let block = matches!(tokens[i].0, Token::BlockStart);
                let start = tokens[i].1.start_offset as usize;
                let mut j = i + 1;
                while j < tokens.len()
                    && !matches!(tokens[j].0, Token::VariableEnd | Token::BlockEnd)
                {
                    j += 1;
                }
                let end = tokens.get(j).map_or(src.len(), |t| t.1.end_offset as usize);
                let inner = &tokens[(i + 1).min(j)..j];
                if block {
                    if let Some((Token::Ident(kw @ ("autoescape" | "filter")), _)) = inner.first() {
                        out.blocks.push(((*kw).to_string(), start..end));
                    }
                } else {
                    let mut idents = inner.iter().filter_map(|(t, _)| match t {
                        Token::Ident(s) | Token::Str(s) => Some(*s),
                        _ => None,
                    });
                    let root = match idents.next() {
                        Some("inputs") => idents.next().unwrap_or("inputs"),
                        Some(r) => r,
                        None => "",
                    }
                    .to_string();
                    let raw = inner.windows(2).any(|w| {
                        matches!(w[0].0, Token::Pipe)
                            && matches!(w[1].0, Token::Ident("raw" | "safe"))
                    });
                    if raw {
                        out.raw.push((root, start..end));
                        out.text.push('x');
                    } else {
                        out.text.push_str(&shell::marker(out.values.len()));
                        out.values.push((root, start..end));
                    }
                }
                i = j;
            }
            _ => {}
        }
        i += 1;
    }
    Some(out)
}

/// Reads a command template's tokens: which values are raw, which blocks it uses, and in
/// which quoting context each `{{ … }}` stands (every branch of every `{% if %}` counts).
pub(crate) fn analyse_command(src: &str) -> CommandAnalysis {
    let src = protect_dollar_hash(src);
    let mut out = CommandAnalysis::default();
    let Some(sk) = skeleton(&src) else {
        return out;
    };
    out.raw = sk.raw;
    out.blocks = sk.blocks;
    let names = vec![String::new(); sk.values.len()];
    if let Err(errs) = shell::place(&sk.text, &names) {
        for e in errs {
            if let Some((_, r)) = sk.values.get(e.index) {
                out.unsafe_contexts.push((e.context, r.clone()));
            }
        }
    }
    out
}

/// The values of a URL template that decide where the request goes (its scheme, host or
/// port, or the whole origin): root variable, source range, and whether it is the origin.
pub(crate) fn url_origin_values(src: &str) -> Vec<(String, std::ops::Range<usize>, url::Part)> {
    let Some(sk) = skeleton(src) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let _ = url::walk(&sk.text, |i, part| {
        if matches!(
            part,
            url::Part::Start | url::Part::Scheme | url::Part::Authority
        ) && let Some((root, range)) = sk.values.get(i)
        {
            found.push((root.clone(), range.clone(), part));
        }
        Ok(String::new())
    });
    found
}

/// `${#VAR}` (the length of a variable) is shell, not the start of a template comment: the
/// `{#` is kept as literal text.
fn protect_dollar_hash(src: &str) -> Cow<'_, str> {
    if !src.contains("${#") || src.contains("{% raw") || src.contains("{%- raw") {
        return Cow::Borrowed(src);
    }
    let mut out = String::with_capacity(src.len() + 32);
    let mut rest = src;
    while !rest.is_empty() {
        let skip_to = |rest: &str, open: &str, close: &str| -> Option<usize> {
            rest.strip_prefix(open).map(|r| {
                r.find(close)
                    .map_or(rest.len(), |p| open.len() + p + close.len())
            })
        };
        if let Some(n) = skip_to(rest, "{{", "}}")
            .or_else(|| skip_to(rest, "{%", "%}"))
            .or_else(|| skip_to(rest, "{#", "#}"))
        {
            out.push_str(&rest[..n]);
            rest = &rest[n..];
        } else if let Some(r) = rest.strip_prefix("${#") {
            out.push_str("${% raw %}{#{% endraw %}");
            rest = r;
        } else {
            let c = rest.chars().next().map_or(1, char::len_utf8);
            out.push_str(&rest[..c]);
            rest = &rest[c..];
        }
    }
    Cow::Owned(out)
}

/// Strips one `{{ … }}` wrapper from an expression, so `when: "{{ x }}"` and `when: x` agree.
pub(crate) fn expression_source(src: &str) -> &str {
    let t = src.trim();
    match t.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")) {
        Some(inner) if !inner.contains("{{") => inner.trim(),
        _ => t,
    }
}

/// Describes a minijinja error in one line (without the template dump).
pub(crate) fn describe_error(err: &Error) -> String {
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
    fn shell_values_travel_in_the_environment() {
        let t = Templates::new(SecretDisplay::Reveal);
        let out = t
            .render_command(
                r#"restart {{ node }} "{{ evil }}" {{ q }} {{ node }}"#,
                &ctx(),
            )
            .ok();
        let expected = ShellCommand {
            command: r#"restart "${RUNBOOK_V1}" "${RUNBOOK_V2}" "${RUNBOOK_V3}" "${RUNBOOK_V1}""#
                .into(),
            env: vec![
                ("RUNBOOK_V1".into(), "vault-2".into()),
                ("RUNBOOK_V2".into(), "a; rm -rf /".into()),
                ("RUNBOOK_V3".into(), "it's".into()),
            ],
            derived_secrets: Vec::new(),
        };
        assert_eq!(out, Some(expected));
    }

    #[test]
    fn autoescape_cannot_be_turned_off_in_commands() {
        let t = Templates::new(SecretDisplay::Reveal);
        let out = t
            .render_command(
                "{% autoescape false %}echo {{ evil }}{% endautoescape %}",
                &ctx(),
            )
            .ok()
            .map(|c| c.command);
        assert_eq!(out.as_deref(), Some(r#"echo "${RUNBOOK_V1}""#));
    }

    #[test]
    fn single_quotes_are_refused() {
        let t = Templates::new(SecretDisplay::Reveal);
        assert!(t.render_command("echo '{{ evil }}'", &ctx()).is_err());
    }

    #[test]
    fn dollar_hash_is_shell() {
        let t = Templates::new(SecretDisplay::Reveal);
        let out = t
            .render_command("echo ${#HOME} {# note #}{{ node }}", &ctx())
            .ok()
            .map(|c| c.command);
        assert_eq!(out.as_deref(), Some(r#"echo ${#HOME} "${RUNBOOK_V1}""#));
    }

    #[test]
    fn raw_is_explicit() {
        let t = Templates::new(SecretDisplay::Reveal);
        let out = t
            .render_command("{{ evil | raw }}", &ctx())
            .map(|c| c.command);
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
        let ctx = map([
            (
                "token",
                Value::from_object(Secret {
                    env_name: "RUNBOOK_SECRET_TOKEN".into(),
                    value: "hunter2".into(),
                }),
            ),
            ("node", Value::from("vault-2")),
        ]);
        let shell = t.render_command("curl -H {{ token }}", &ctx).ok();
        assert_eq!(
            shell,
            Some(ShellCommand {
                command: r#"curl -H "${RUNBOOK_SECRET_TOKEN}""#.into(),
                env: vec![("RUNBOOK_SECRET_TOKEN".into(), "hunter2".into())],
                derived_secrets: Vec::new(),
            })
        );
        let derived = t
            .render_command("echo {{ node }} {{ token | upper }}", &ctx)
            .ok();
        assert_eq!(
            derived.as_ref().map(|c| c.env.clone()),
            Some(vec![
                ("RUNBOOK_V1".into(), "vault-2".into()),
                ("RUNBOOK_V2".into(), "HUNTER2".into())
            ])
        );
        // Only the value computed from the secret is a secret.
        assert_eq!(
            derived.map(|c| c.derived_secrets),
            Some(vec!["HUNTER2".to_string()])
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
        let out = t
            .render_command("echo {{ steps.inspect.stdout }}", &ctx)
            .ok();
        assert_eq!(
            out.map(|c| c.env),
            Some(vec![("RUNBOOK_V1".into(), "<steps.inspect.stdout>".into())])
        );
    }
}
