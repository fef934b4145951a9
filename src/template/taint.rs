//! Taint: a value computed from a secret is a secret.
//!
//! An expression (`outputs:`, `for_each`) or a template (an input's `default`) that reads a
//! secret while it is evaluated yields a value derived from it (`token | reverse`,
//! `token[:9]`, `"Bearer " ~ token`). The engine treats such a value as a secret itself: it is
//! registered with the redactor (in all its encodings) the moment it is computed, and it is
//! bound in templates as a [`Secret`], so it renders masked and reaches commands only through
//! an environment variable. See docs/format.md, "Secrets".

use std::cell::Cell;

use minijinja::Error;
use minijinja::value::Value;

use super::{REVEALED, RevealGuard, Secret, SecretDisplay, Templates};

/// The items of a list, and the texts the redactor must learn (the items computed from a
/// secret).
pub(crate) type TaintedItems = (Vec<Value>, Vec<String>);

thread_local! {
    /// Secrets written as they are by text renders since the last reset.
    static WROTE: Cell<u32> = const { Cell::new(0) };
}

/// Whether a secret was read since the current value started (a filter's arguments may hold
/// one: its error must not quote them).
pub(super) fn read_secret() -> bool {
    REVEALED.with(Cell::get) > 0
}

/// Notes that a text render wrote a secret's value.
pub(super) fn wrote_secret() {
    WROTE.with(|c| c.set(c.get() + 1));
}

impl Templates {
    /// Renders text; also says whether the text holds a secret or a value computed from one.
    pub(crate) fn render_text_tainted(
        &self,
        src: &str,
        ctx: &Value,
    ) -> Result<(String, bool), Error> {
        WROTE.with(|c| c.set(0));
        let (text, derived) = self.render_text(src, ctx)?;
        let tainted = !derived.is_empty() || WROTE.with(|c| c.replace(0)) > 0;
        Ok((text, tainted))
    }

    /// Evaluates an expression and converts its value to JSON while secrets are revealed;
    /// also says whether the evaluation read a secret (then the value is a secret too).
    pub(crate) fn eval_json_tainted(
        &self,
        src: &str,
        ctx: &Value,
    ) -> Result<(serde_json::Value, bool), Error> {
        self.refuse_secret_comparison(src, ctx)?;
        let _reveal = RevealGuard::set(self.secrets == SecretDisplay::Reveal);
        REVEALED.with(|c| c.set(0));
        let v = self.env.compile_expression(src)?.eval(ctx)?;
        let json = serde_json::to_value(&v).unwrap_or(serde_json::Value::Null);
        let tainted = REVEALED.with(|c| c.replace(0)) > 0;
        Ok((json, tainted))
    }

    /// Evaluates an expression; also says whether it read a secret. Each item of a tainted
    /// list that is text or a number comes back as a [`Secret`] (carried to commands in
    /// `{env_prefix}_{index}`); the texts of all of them are returned for the redactor.
    /// `None`: the value is not a list.
    pub(crate) fn eval_items_tainted(
        &self,
        src: &str,
        ctx: &Value,
        env_prefix: &str,
    ) -> Result<Option<TaintedItems>, Error> {
        self.refuse_secret_comparison(src, ctx)?;
        let _reveal = RevealGuard::set(self.secrets == SecretDisplay::Reveal);
        REVEALED.with(|c| c.set(0));
        let v = self.env.compile_expression(src)?.eval(ctx)?;
        let Ok(items) = v.try_iter() else {
            return Ok(None);
        };
        let items: Vec<Value> = items.collect();
        // Rendering an item that is a secret counts as reading it.
        let texts: Vec<String> = items.iter().map(|i| i.to_string()).collect();
        let jsons: Vec<serde_json::Value> = items
            .iter()
            .map(|i| serde_json::to_value(i).unwrap_or(serde_json::Value::Null))
            .collect();
        if REVEALED.with(|c| c.replace(0)) == 0 {
            return Ok(Some((items, Vec::new())));
        }
        // Which items depend on a secret: those that come out different when secrets are
        // masked (all of them when that evaluation fails or changes the list's length).
        let masked: Option<Vec<String>> = {
            let _mask = RevealGuard::set(false);
            self.env
                .compile_expression(src)
                .and_then(|e| e.eval(ctx))
                .ok()
                .and_then(|v| {
                    v.try_iter()
                        .ok()
                        .map(|it| it.map(|i| i.to_string()).collect())
                })
        };
        let masked = masked.filter(|m: &Vec<String>| m.len() == items.len());
        let mut learnt = Vec::new();
        let mut out = Vec::with_capacity(items.len());
        for (i, (item, (text, json))) in items
            .into_iter()
            .zip(texts.into_iter().zip(jsons))
            .enumerate()
        {
            if masked.as_ref().and_then(|m| m.get(i)) == Some(&text) {
                out.push(item);
                continue;
            }
            if json.is_object() || json.is_array() {
                json_leaves(&json, &mut learnt);
                out.push(item);
                continue;
            }
            push_derived(&mut learnt, text.clone());
            out.push(Value::from_object(Secret {
                env_name: format!("{env_prefix}_{i}"),
                value: text,
            }));
        }
        Ok(Some((out, learnt)))
    }
}

/// Derived values shorter than this are not given to the redactor: as short secrets they would
/// mask every `1` or `ok` of the run, and they reveal next to nothing. They still render
/// masked in templates (they are bound as secrets).
pub(crate) const MIN_DERIVED_LEN: usize = 3;

/// Every text and number inside a JSON value (what the redactor must learn of a tainted one).
pub(crate) fn json_leaves(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => push_derived(out, s.clone()),
        serde_json::Value::Number(n) => push_derived(out, n.to_string()),
        serde_json::Value::Bool(_) | serde_json::Value::Null => {}
        serde_json::Value::Array(items) => items.iter().for_each(|i| json_leaves(i, out)),
        serde_json::Value::Object(m) => {
            // The whole value as JSON too: `tojson` of it, or the list a later step prints.
            m.values().for_each(|i| json_leaves(i, out));
        }
    }
    if v.is_array() || v.is_object() {
        out.push(v.to_string());
    }
}

/// Adds a derived value for the redactor unless it is too short to mask (see
/// [`MIN_DERIVED_LEN`]).
pub(crate) fn push_derived(out: &mut Vec<String>, s: String) {
    if s.chars().count() >= MIN_DERIVED_LEN {
        out.push(s);
    }
}

/// Whether a `{{ … }}` reads `inputs` or `steps` through a computed key (`inputs[name]`,
/// `steps['a' ~ b]`): which value it reaches is known only at run time. `Some(Some(name))`
/// when the key is one bare variable (`inputs[which]`), `Some(None)` for another expression.
pub(crate) fn computed_key(src: &str) -> Option<Option<String>> {
    use minijinja::machinery::{Token, tokenize};
    let toks: Vec<_> = tokenize(src, false, Default::default())
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    toks.iter().enumerate().find_map(|(i, (t, _))| {
        if !matches!(t, Token::Ident("inputs" | "steps"))
            || !matches!(toks.get(i + 1), Some((Token::BracketOpen, _)))
        {
            return None;
        }
        match (toks.get(i + 2), toks.get(i + 3)) {
            (Some((Token::Str(_) | Token::String(_), _)), Some((Token::BracketClose, _))) => None,
            (Some((Token::Ident(k), _)), Some((Token::BracketClose, _))) => {
                Some(Some((*k).to_string()))
            }
            _ => Some(None),
        }
    })
}
