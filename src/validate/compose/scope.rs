//! Rewriting a sub-runbook's expressions into the caller's scope (tokens, renames).

use super::*;

/// `${#VAR}` is shell, not a template comment: hide the `{` from the lexer (same length).
pub(super) fn lexable(src: &str) -> String {
    src.replace("${#", "$\u{1}#")
}

pub(super) type Tokens<'a> = Vec<(minijinja::machinery::Token<'a>, minijinja::machinery::Span)>;

pub(super) fn tokens(src: &str, expr: bool) -> Option<Tokens<'_>> {
    minijinja::machinery::tokenize(src, expr, Default::default())
        .collect::<Result<Vec<_>, _>>()
        .ok()
}

/// A template as one expression giving the same value: `{{ x }}` is `(x)` (keeping its
/// type: a list stays a list, a secret a secret), text and values join with `~`.
pub(super) fn template_expr(src: &str) -> Result<String, String> {
    use minijinja::machinery::Token;
    let lex = lexable(src);
    let toks = tokens(&lex, false).ok_or_else(|| "not a valid template".to_string())?;
    let mut parts = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i].0 {
            Token::TemplateData(t) => parts.push(string_lit(t)),
            Token::VariableStart => {
                let start = toks[i].1.end_offset as usize;
                let mut j = i + 1;
                while j < toks.len() && !matches!(toks[j].0, Token::VariableEnd) {
                    j += 1;
                }
                let Some(close) = toks.get(j) else {
                    return Err("`{{` is not closed by `}}`".into());
                };
                let end = close.1.start_offset as usize;
                let inner = src.get(start..end).unwrap_or_default().trim();
                let inner = inner.trim_start_matches('-').trim_end_matches('-').trim();
                if inner.is_empty() {
                    return Err("`{{ }}` holds no expression".into());
                }
                parts.push(format!("({inner})"));
                i = j;
            }
            Token::BlockStart => {
                return Err("`{% … %}` blocks cannot be passed to a called runbook".into());
            }
            _ => {}
        }
        i += 1;
    }
    Ok(match parts.len() {
        0 => "\"\"".into(),
        1 => parts.remove(0),
        _ => format!("({})", parts.join(" ~ ")),
    })
}

/// How a child's names map into the caller.
pub(super) struct Scope {
    pub(super) call: String,
    /// Child input → expression in the caller's scope.
    pub(super) inputs: HashMap<String, String>,
    /// The child's host and group names (prefixed with the call's id).
    pub(super) hosts: HashSet<String>,
    pub(super) span: Range<usize>,
}

impl Scope {
    /// A child node rewritten for the caller; `key` is the field it is the value of.
    pub(super) fn rewrite(&self, node: &Node, key: &str) -> Node {
        let at = &self.span;
        let kind = match &node.kind {
            NodeKind::Scalar { text, plain } => {
                let templ = text.contains("{{") || text.contains("{%");
                let text = if templ {
                    self.template(text)
                } else if EXPR_KEYS.contains(&key) || key == "outputs" {
                    self.expression(text)
                } else if key == "answers" {
                    // `for_each.answers`: a child step id, like `needs`.
                    format!("{}.{text}", self.call)
                } else if (key == "on" || key == "from") && self.hosts.contains(text) {
                    format!("{}.{text}", self.call)
                } else {
                    text.clone()
                };
                NodeKind::Scalar {
                    plain: *plain && !templ && text == *node.as_str().unwrap_or_default(),
                    text,
                }
            }
            NodeKind::Seq(items) => {
                NodeKind::Seq(items.iter().map(|n| self.rewrite(n, key)).collect())
            }
            NodeKind::Map(pairs) => NodeKind::Map(
                pairs
                    .iter()
                    .map(|(k, v)| {
                        let name = k.as_str().unwrap_or_default();
                        // Under `outputs`, every value is an expression (or `{value, secret}`).
                        let sub = match key {
                            "outputs" if matches!(v.kind, NodeKind::Map(_)) => "output",
                            "outputs" => "outputs",
                            "output" if name == "value" => "outputs",
                            _ => name,
                        };
                        (relocate(k, at), self.rewrite(v, sub))
                    })
                    .collect(),
            ),
        };
        Node {
            kind,
            span: at.clone(),
        }
    }

    /// `needs` of a child step: the child's ids, prefixed.
    pub(super) fn prefixed(&self, node: &Node) -> Node {
        let at = &self.span;
        match &node.kind {
            NodeKind::Scalar { text, .. } => scalar(format!("{}.{text}", self.call), at),
            NodeKind::Seq(items) => Node {
                kind: NodeKind::Seq(items.iter().map(|n| self.prefixed(n)).collect()),
                span: at.clone(),
            },
            NodeKind::Map(_) => relocate(node, at),
        }
    }

    /// A group's member list: child host names, prefixed.
    pub(super) fn hosts_in(&self, node: &Node) -> Node {
        let at = &self.span;
        match &node.kind {
            NodeKind::Scalar { text, .. } if self.hosts.contains(text) => {
                scalar(format!("{}.{text}", self.call), at)
            }
            NodeKind::Seq(items) => Node {
                kind: NodeKind::Seq(items.iter().map(|n| self.hosts_in(n)).collect()),
                span: at.clone(),
            },
            _ => relocate(node, at),
        }
    }

    pub(super) fn template(&self, src: &str) -> String {
        self.substitute(src, false)
    }

    pub(super) fn expression(&self, src: &str) -> String {
        self.substitute(src, true)
    }

    /// Rewrites the names a template reads: child inputs (`node`, `inputs.node`) become the
    /// caller's expressions, `steps.X` becomes `steps["CALL.X"]`. Text outside `{{ }}` and
    /// `{% %}` is untouched.
    pub(super) fn substitute(&self, src: &str, expr: bool) -> String {
        use minijinja::machinery::Token;
        let lex = lexable(src);
        let Some(toks) = tokens(&lex, expr) else {
            return src.to_string();
        };
        let mut edits: Vec<(Range<usize>, String)> = Vec::new();
        let mut inside = expr;
        let span = |i: usize| toks[i].1.start_offset as usize..toks[i].1.end_offset as usize;
        let mut i = 0;
        while i < toks.len() {
            match &toks[i].0 {
                Token::VariableStart | Token::BlockStart => inside = true,
                Token::VariableEnd | Token::BlockEnd => inside = expr,
                Token::Ident(name) if inside => {
                    let prev = i.checked_sub(1).map(|p| &toks[p].0);
                    let next = toks.get(i + 1).map(|t| &t.0);
                    let after = toks.get(i + 2).map(|t| &t.0);
                    let is_attr = matches!(prev, Some(Token::Dot | Token::Pipe))
                        || matches!(prev, Some(Token::Ident("is")));
                    if is_attr || matches!(next, Some(Token::Assign)) {
                        i += 1;
                        continue;
                    }
                    if *name == "steps" && !self.call.is_empty() {
                        match (next, after) {
                            (Some(Token::Dot), Some(Token::Ident(id))) => {
                                edits.push((
                                    span(i).start..span(i + 2).end,
                                    format!(
                                        "steps[{}]",
                                        string_lit(&format!("{}.{id}", self.call))
                                    ),
                                ));
                                i += 3;
                                continue;
                            }
                            (Some(Token::BracketOpen), Some(Token::Str(id))) => {
                                edits.push((
                                    span(i + 2),
                                    string_lit(&format!("{}.{id}", self.call)),
                                ));
                                i += 3;
                                continue;
                            }
                            _ => {}
                        }
                    }
                    if *name == "inputs"
                        && let (Some(Token::Dot), Some(Token::Ident(n))) = (next, after)
                        && let Some(e) = self.inputs.get(*n)
                    {
                        edits.push((span(i).start..span(i + 2).end, paren(e)));
                        i += 3;
                        continue;
                    }
                    if let Some(e) = self.inputs.get(*name) {
                        edits.push((span(i), paren(e)));
                    }
                }
                _ => {}
            }
            i += 1;
        }
        let mut out = String::with_capacity(src.len());
        let mut last = 0;
        for (r, text) in edits {
            out.push_str(src.get(last..r.start).unwrap_or_default());
            out.push_str(&text);
            last = r.end;
        }
        out.push_str(src.get(last..).unwrap_or_default());
        out
    }
}

/// An expression safe to put where a name stood.
pub(super) fn paren(e: &str) -> String {
    let simple = e
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        || (e.starts_with('(') && e.ends_with(')') && balanced(e));
    if simple {
        e.to_string()
    } else {
        format!("({e})")
    }
}

/// `(a) ~ (b)` starts and ends with parentheses but is not one parenthesised expression.
pub(super) fn balanced(e: &str) -> bool {
    let mut depth = 0i32;
    let n = e.len();
    for (i, c) in e.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 && i + 1 != n {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}
