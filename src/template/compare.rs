//! Comparing a secret is always false: a secret is bound in templates as an object (so that it
//! renders masked), and minijinja compares an object with a string, a number or another
//! object as different, with no hook to change that. `token == 'x'`, `token != 'x'`,
//! `token in ['a', 'b']`, `token is eq('x')`, `token is string` are therefore silently false
//! (or true), whatever the secret holds; `(token | string) == 'x'` compares its text and works.
//!
//! This module finds the operands of comparisons and tests in a template or an expression,
//! read from its tokens: an operand that is a bare path (`token`, `inputs.token`,
//! `inputs['token']`, `steps.login.outputs.session`) directly beside the operator. `validate`
//! reports those that name a secret (`secret-comparison`), and evaluation refuses an
//! expression where such an operand turns out to hold a secret at run time (a value computed
//! from one that `validate` could not know).

use minijinja::machinery::{Token, tokenize};

/// Tests whose answer over a secret object is not the answer over its text.
const COMPARING_TESTS: &[&str] = &[
    "eq",
    "equalto",
    "ne",
    "lt",
    "lessthan",
    "le",
    "gt",
    "greaterthan",
    "ge",
    "in",
    "sameas",
    "string",
    "startingwith",
    "endingwith",
    "lower",
    "upper",
    "number",
];

/// A bare path standing as the operand of a comparison or a test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Operand {
    /// The path's parts (`["inputs", "token"]`); `None` for a part that is computed
    /// (`inputs[name]`).
    pub parts: Vec<Option<String>>,
    /// Where the operand stands in the source (byte range).
    pub range: std::ops::Range<usize>,
    /// The operator or test, as written (`==`, `in`, `is eq`).
    pub op: String,
}

impl Operand {
    /// The path, for tests (`inputs['token']` → `inputs.token`).
    #[cfg(test)]
    pub(crate) fn path(&self) -> String {
        let mut out = String::new();
        for (i, p) in self.parts.iter().enumerate() {
            match p {
                Some(p) if i == 0 => out.push_str(p),
                Some(p) if p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                    out.push('.');
                    out.push_str(p);
                }
                Some(p) => out.push_str(&format!("[{p:?}]")),
                None => out.push_str("[…]"),
            }
        }
        out
    }
}

type Tok<'a> = (Token<'a>, minijinja::machinery::Span);

/// Operators that bind tighter than a comparison: an operand next to one is a computed value
/// (a string or a number), not the secret itself.
fn binds_tighter(t: &Token<'_>) -> bool {
    binds_tighter_before(t)
        || matches!(
            t,
            Token::Dot | Token::ParenOpen | Token::BracketOpen | Token::Ident("is")
        )
}

/// Operators that bind tighter than a comparison, before an operand (`'a' ~ tok`, `x | f`).
fn binds_tighter_before(t: &Token<'_>) -> bool {
    matches!(
        t,
        Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::FloorDiv
            | Token::Pow
            | Token::Mod
            | Token::Tilde
            | Token::Pipe
    )
}

fn key_of(t: &Token<'_>) -> Option<String> {
    match t {
        Token::Ident(s) | Token::Str(s) => Some((*s).to_string()),
        Token::String(s) => Some(s.to_string()),
        Token::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The path ending at token `end` (inclusive), read backwards: its first token and parts.
fn path_ending_at(toks: &[Tok<'_>], end: usize) -> Option<(usize, Vec<Option<String>>)> {
    let mut parts = Vec::new();
    let mut i = end;
    loop {
        match &toks[i].0 {
            Token::Ident(s) => {
                parts.push(Some((*s).to_string()));
                if i >= 2 && matches!(toks[i - 1].0, Token::Dot) {
                    i -= 2;
                    continue;
                }
                break;
            }
            Token::BracketClose => {
                // `[ key ]`: a literal key, or a computed one (anything else inside).
                let mut depth = 0usize;
                let mut j = i;
                loop {
                    match toks[j].0 {
                        Token::BracketClose => depth += 1,
                        Token::BracketOpen => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    if j == 0 {
                        return None;
                    }
                    j -= 1;
                }
                let inner = &toks[j + 1..i];
                let key = match inner {
                    [(t @ (Token::Str(_) | Token::String(_) | Token::Int(_)), _)] => key_of(t),
                    _ => None,
                };
                parts.push(key);
                if j == 0 {
                    return None;
                }
                i = j - 1;
                // The bracket follows a path: keep reading it.
                if !matches!(toks[i].0, Token::Ident(_) | Token::BracketClose) {
                    return None;
                }
            }
            _ => return None,
        }
    }
    parts.reverse();
    // A name after `|` is a filter, not a value.
    if i > 0 && binds_tighter_before(&toks[i - 1].0) {
        return None;
    }
    Some((i, parts))
}

/// The path starting at token `start`: its last token and parts.
fn path_starting_at(toks: &[Tok<'_>], start: usize) -> Option<(usize, Vec<Option<String>>)> {
    let Token::Ident(first) = &toks.get(start)?.0 else {
        return None;
    };
    if matches!(
        *first,
        "not" | "true" | "false" | "none" | "True" | "False" | "None"
    ) {
        return None;
    }
    let mut parts = vec![Some((*first).to_string())];
    let mut i = start;
    loop {
        match toks.get(i + 1).map(|t| &t.0) {
            Some(Token::Dot) => match toks.get(i + 2).map(|t| &t.0) {
                Some(Token::Ident(s)) => {
                    parts.push(Some((*s).to_string()));
                    i += 2;
                }
                _ => return None,
            },
            Some(Token::BracketOpen) => {
                let mut depth = 0usize;
                let mut j = i + 1;
                loop {
                    match toks.get(j)?.0 {
                        Token::BracketOpen => depth += 1,
                        Token::BracketClose => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                let key = match &toks[i + 2..j] {
                    [(t @ (Token::Str(_) | Token::String(_) | Token::Int(_)), _)] => key_of(t),
                    _ => None,
                };
                parts.push(key);
                i = j;
            }
            _ => break,
        }
    }
    // Followed by a filter, a call or an operator that binds tighter: a computed value.
    if let Some((next, _)) = toks.get(i + 1)
        && binds_tighter(next)
    {
        return None;
    }
    Some((i, parts))
}

fn op_text(t: &Token<'_>) -> Option<&'static str> {
    Some(match t {
        Token::Eq => "==",
        Token::Ne => "!=",
        Token::Lt => "<",
        Token::Lte => "<=",
        Token::Gt => ">",
        Token::Gte => ">=",
        Token::Ident("in") => "in",
        _ => return None,
    })
}

/// The bare paths standing beside a comparison (`==`, `!=`, `<`, `<=`, `>`, `>=`, `in`,
/// `not in`) or before a comparing test (`is eq(…)`, `is string`…), in a template
/// (`expr` false) or an expression. Nothing for a source that does not tokenize.
pub(crate) fn compared_paths(src: &str, expr: bool) -> Vec<Operand> {
    let Ok(toks) = tokenize(src, expr, Default::default()).collect::<Result<Vec<Tok<'_>>, _>>()
    else {
        return Vec::new();
    };
    let span = |a: usize, b: usize| toks[a].1.start_offset as usize..toks[b].1.end_offset as usize;
    let mut out = Vec::new();
    for k in 0..toks.len() {
        if let Some(op) = op_text(&toks[k].0) {
            // `a not in b`: the left operand stands before `not`.
            let negated = op == "in" && k > 0 && matches!(toks[k - 1].0, Token::Ident("not"));
            let left_end = if negated {
                k.checked_sub(2)
            } else {
                k.checked_sub(1)
            };
            let op = if negated { "not in" } else { op };
            if let Some(e) = left_end
                && let Some((s, parts)) = path_ending_at(&toks, e)
            {
                out.push(Operand {
                    parts,
                    range: span(s, e),
                    op: op.to_string(),
                });
            }
            if let Some((e, parts)) = path_starting_at(&toks, k + 1) {
                out.push(Operand {
                    parts,
                    range: span(k + 1, e),
                    op: op.to_string(),
                });
            }
        } else if matches!(toks[k].0, Token::Ident("is")) && k > 0 {
            let mut t = k + 1;
            if matches!(toks.get(t).map(|t| &t.0), Some(Token::Ident("not"))) {
                t += 1;
            }
            let test = match toks.get(t).map(|t| &t.0) {
                Some(Token::Ident(name)) if COMPARING_TESTS.contains(name) => *name,
                Some(tok) => match op_text(tok) {
                    Some(o) => o,
                    None => continue,
                },
                None => continue,
            };
            if let Some((s, parts)) = path_ending_at(&toks, k - 1) {
                out.push(Operand {
                    parts,
                    range: span(s, k - 1),
                    op: format!("is {test}"),
                });
            }
        }
    }
    out
}

impl super::Templates {
    /// Refuses an expression that compares a value holding a secret at run time (a secret
    /// input, a secret output, a value computed from a secret): the comparison would be
    /// silently false. The message names the path, never the value.
    pub(crate) fn refuse_secret_comparison(
        &self,
        src: &str,
        ctx: &minijinja::Value,
    ) -> Result<(), minijinja::Error> {
        if !src.contains(['=', '<', '>', ' ']) {
            return Ok(());
        }
        for op in compared_paths(src, true) {
            let Some(text) = src.get(op.range.clone()) else {
                continue;
            };
            let Ok(v) = self.env.compile_expression(text).and_then(|e| e.eval(ctx)) else {
                continue;
            };
            if v.downcast_object_ref::<super::Secret>().is_some() {
                return Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!(
                        "`{text}` holds a secret: `{text} {op} …` would always be false (a secret is compared as a masked object, not as its text); compare its text: `({text} | string) {op} …`",
                        op = op.op
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(src: &str) -> Vec<String> {
        compared_paths(src, true)
            .iter()
            .map(Operand::path)
            .collect()
    }

    #[test]
    fn operands() {
        assert_eq!(paths("tok == 'x'"), ["tok"]);
        assert_eq!(paths("'x' != inputs.tok"), ["inputs.tok"]);
        assert_eq!(paths("inputs['tok'] == 'x'"), ["inputs.tok"]);
        assert_eq!(
            paths("steps.login.outputs.session == 'x' and a < 3"),
            ["steps.login.outputs.session", "a"]
        );
        assert_eq!(paths("tok not in ['a', 'b']"), ["tok"]);
        assert_eq!(paths("tok is eq('x')"), ["tok"]);
        assert_eq!(paths("tok is not string"), ["tok"]);
        assert_eq!(paths("inputs[name] == 'x'"), ["inputs[…]"]);
        // Computed values compare as text: not a bare secret.
        assert!(paths("(tok | string) == 'x'").is_empty());
        assert!(paths("tok | string == 'x'").is_empty());
        assert!(paths("'x' == tok | string").is_empty());
        assert!(paths("tok ~ '' == 'x'").is_empty());
        assert!(paths("tok is defined").is_empty());
        assert!(paths("f(tok) == 'x'").is_empty());
        assert_eq!(paths("f(tok == 'x')"), ["tok"]);
        assert_eq!(
            compared_paths("{% if tok == 'x' %}a{% endif %}", false)[0].path(),
            "tok"
        );
        assert!(compared_paths("{{ broken", false).is_empty());
    }
}
