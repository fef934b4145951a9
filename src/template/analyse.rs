//! What validate reads from a template without rendering it: raw values, URL origins, host parts.

use super::*;

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
pub(super) struct Skeleton {
    pub(super) text: String,
    pub(super) values: Vec<(String, std::ops::Range<usize>)>,
    raw: Vec<(String, std::ops::Range<usize>)>,
    blocks: Vec<(String, std::ops::Range<usize>)>,
}

pub(super) fn skeleton(src: &str) -> Option<Skeleton> {
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
pub(super) fn protect_dollar_hash(src: &str) -> Cow<'_, str> {
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
