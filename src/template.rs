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

mod arith;
mod optlex;
pub(crate) mod optword;
pub(crate) mod shell;
pub(crate) mod url;

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};

mod analyse;
mod checked;
pub(crate) mod compare;
pub(crate) use checked::{REFUSAL as CHECKED_INPUT_REFUSAL, strip_checked};
pub(crate) use functions::expression_display;
mod functions;
pub(crate) mod taint;
use analyse::protect_dollar_hash;
pub(crate) use analyse::{analyse_command, check_host_part, subscript_paths, url_origin_values};
pub(crate) use functions::{describe_error, expression_source};
use functions::{regex_findall, regex_search};
pub(crate) use taint::json_leaves;

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
    if tainted {
        taint::wrote_secret();
    }
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
                    taint::wrote_secret();
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
        env.add_filter("raw", |v: Value| -> Result<Value, Error> {
            // However the secret was reached (`inputs['t' ~ 'ok']`, a derived value), `| raw`
            // would put it in the command's text (argv): refused at run time too.
            let text = v.to_string();
            if v.downcast_object_ref::<Secret>().is_some() || taint::read_secret() {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "`| raw` cannot be applied to a secret or a value computed from one (it would be in the command's text); drop `| raw`",
                ));
            }
            Ok(Value::from_safe_string(text))
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
        env.add_filter("regex_search", regex_search);
        env.add_filter("regex_findall", regex_findall);
        env.add_filter("checked_input", checked::checked_input);
        env.add_filter("from_json", |text: String| -> Result<Value, Error> {
            serde_json::from_str::<serde_json::Value>(&text)
                .map(to_value)
                .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("from_json: {e}")))
        });
        env.add_filter("b64decode", |text: String| -> Result<String, Error> {
            use base64::Engine as _;
            let bad = |what: String| Error::new(ErrorKind::InvalidOperation, what);
            let t = text.trim();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(t)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(t))
                .map_err(|e| {
                    // The error names a character and its offset: not those of a secret.
                    if taint::read_secret() {
                        bad("b64decode: not base64".into())
                    } else {
                        bad(format!("b64decode: not base64: {e}"))
                    }
                })?;
            String::from_utf8(bytes)
                .map_err(|_| bad("b64decode: the bytes are not UTF-8 text".into()))
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

    /// Filters (`x | name`) and tests (`x is name`) a template or expression uses that the
    /// environment does not have: `(name, is_test)`.
    pub(crate) fn unknown_filters(&self, src: &str, expr: bool) -> Vec<(String, bool)> {
        use minijinja::machinery::{Token, tokenize};
        let text = protect_dollar_hash(src);
        let Ok(tokens) = tokenize(&text, expr, Default::default()).collect::<Result<Vec<_>, _>>()
        else {
            return Vec::new();
        };
        let mut out: Vec<(String, bool)> = Vec::new();
        for (i, (tok, _)) in tokens.iter().enumerate() {
            let Token::Ident(name) = tok else { continue };
            let prev = i.checked_sub(1).map(|p| &tokens[p].0);
            let prev2 = i.checked_sub(2).map(|p| &tokens[p].0);
            let is_filter = matches!(prev, Some(Token::Pipe));
            let is_test = matches!(prev, Some(Token::Ident("is")))
                || (matches!(prev, Some(Token::Ident("not")))
                    && matches!(prev2, Some(Token::Ident("is"))));
            if !(is_filter || is_test) || out.iter().any(|(n, _)| n == name) {
                continue;
            }
            let probe = if is_test {
                format!("none is {name}")
            } else {
                format!("none | {name}")
            };
            let unknown = match self.env.compile_expression(&probe) {
                Ok(e) => match e.eval(()) {
                    Err(err) => matches!(
                        err.kind(),
                        ErrorKind::UnknownFilter | ErrorKind::UnknownTest
                    ),
                    Ok(_) => false,
                },
                Err(err) => matches!(
                    err.kind(),
                    ErrorKind::UnknownFilter | ErrorKind::UnknownTest
                ),
            };
            if unknown {
                out.push((name.to_string(), is_test));
            }
        }
        out
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
        let values: Vec<(String, bool)> = slots
            .items
            .iter()
            .map(|(_, v, s)| (v.clone(), *s))
            .collect();
        if let Some(hit) = optlex::option_word(&rendered, &values) {
            let (v, secret) = values.get(hit.index).cloned().unwrap_or_default();
            let shown = if secret || derived_secrets.contains(&v) {
                "(a secret)".to_string()
            } else {
                format!("`{}`", v.chars().take(40).collect::<String>())
            };
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "the value {shown} starts with `-` and stands as a word of its own or at \
                     its start (line {}, word {} of its command): the program would read it \
                     as an option; put `--` before it in that command, or join it after text \
                     (`./{{{{ x }}}}`, `--opt={{{{ x }}}}`)",
                    hit.line, hit.word
                ),
            ));
        }
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
        url::place(&rendered, &values)
            .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
    }

    /// Evaluates an expression against `ctx`.
    pub(crate) fn eval(&self, src: &str, ctx: &Value) -> Result<Value, Error> {
        self.refuse_secret_comparison(src, ctx)?;
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

#[cfg(test)]
mod tests;
