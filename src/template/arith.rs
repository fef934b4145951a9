//! Arithmetic positions a value may not stand in, beyond `$(( … ))`: in bash, arithmetic
//! evaluates array subscripts, so a value `a[$(id)]` runs `id` even quoted (`(( "$V" ))`).
//! [`arithmetic_position`] reads the text around a value marker the way bash would decide
//! that the word is evaluated as arithmetic: an operand of `-eq`, `-ne`, `-lt`, `-le`, `-gt`,
//! `-ge` inside `[[ … ]]`, an argument of `let`, of `declare -i` (also `typeset`, `local`,
//! `readonly`, `export` with an `i` flag), an assignment to a variable declared `-i` in the
//! command, an array subscript (`a[{{ v }}]=…`, `${a[{{ v }}]}`), or the offset or length
//! of `${x:offset:length}`. `(( … ))` and `$[ … ]` are frames of the placer itself.

/// Ends a shell word.
fn is_break(c: char) -> bool {
    c.is_whitespace() || matches!(c, ';' | '|' | '&' | '(' | ')' | '<' | '>' | '`')
}

/// Ends a simple command.
fn is_sep(c: char) -> bool {
    matches!(c, ';' | '|' | '&' | '\n' | '(' | ')' | '`' | '{' | '}')
}

const ARITH_OPS: &[&str] = &["-eq", "-ne", "-lt", "-le", "-gt", "-ge"];

const DECLARE: &[&str] = &["declare", "typeset", "local", "readonly", "export"];

/// Words of a text, split on breaks, quotes removed.
fn words(text: &str) -> Vec<String> {
    text.split(is_break)
        .filter(|w| !w.is_empty())
        .map(|w| w.chars().filter(|c| !matches!(c, '"' | '\'')).collect())
        .collect()
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `-i`, `-ix`, `-ai`…: an option word of `declare` giving the integer attribute.
fn integer_flag(w: &str) -> bool {
    w.strip_prefix('-')
        .is_some_and(|f| f.contains('i') && f.chars().all(|c| c.is_ascii_alphabetic()))
}

/// Names declared with the integer attribute anywhere in the command text.
fn integer_names(chars: &[char]) -> Vec<String> {
    let text: String = chars.iter().collect();
    let mut out = Vec::new();
    for cmd in text.split(is_sep) {
        let ws = words(cmd);
        if ws.first().is_some_and(|w| DECLARE.contains(&w.as_str()))
            && ws.iter().any(|w| integer_flag(w))
        {
            for w in ws.iter().skip(1).filter(|w| !w.starts_with('-')) {
                let name = w.split(['=', '+', '[']).next().unwrap_or_default();
                if is_name(name) {
                    out.push(name.to_string());
                }
            }
        }
    }
    out
}

/// Whether the value marker at `i` stands where bash evaluates it as arithmetic.
/// `param` is the index just after the `${` of the innermost `${ … }` it stands in; `quoted`:
/// it stands in double quotes (where `a[` is text, not a subscript).
pub(crate) fn arithmetic_position(
    chars: &[char],
    i: usize,
    param: Option<usize>,
    quoted: bool,
) -> bool {
    if let Some(start) = param
        && param_arith(&chars[start.min(i)..i])
    {
        return true;
    }
    // The word the marker stands in, from its start.
    let word_start = chars[..i]
        .iter()
        .rposition(|c| is_break(*c))
        .map_or(0, |p| p + 1);
    let word: String = chars[word_start..i].iter().collect();
    if !quoted && param.is_none() && subscript_open(&word) {
        return true;
    }
    // `a=( [{{ v }}]=1 )`: a subscript in a compound array assignment.
    let head: String = chars[..word_start].iter().collect();
    if !quoted
        && word.starts_with('[')
        && !word.contains(']')
        && head
            .rfind("=(")
            .is_some_and(|o| head.rfind(')').is_none_or(|c| c < o))
    {
        return true;
    }
    // The simple command before the marker (inside `[[ … ]]`, `&&` and `||` do not end it).
    let before: String = chars[..word_start].iter().collect();
    let cmd_start = before.rfind(|c: char| is_sep(c)).map_or(0, |p| p + 1);
    let ws = words(&before[cmd_start..]);
    let first = ws.iter().find(|w| !w.contains('=')).map(String::as_str);
    if first == Some("let") {
        return true;
    }
    if first.is_some_and(|f| DECLARE.contains(&f)) && ws.iter().any(|w| integer_flag(w)) {
        return true;
    }
    let bare: String = word.chars().filter(|c| !matches!(c, '"' | '\'')).collect();
    if let Some(name) = bare.split(['=', '+', '[']).next()
        && bare.len() > name.len()
        && (bare[name.len()..].starts_with('=') || bare[name.len()..].starts_with("+="))
        && integer_names(chars).iter().any(|n| n == name)
    {
        return true;
    }
    in_double_bracket_arith(chars, i, word_start)
}

/// The word starts `name[` with no `]` after it: the marker is in an array subscript
/// (`a[{{ v }}]=1`, `unset a[{{ v }}]`).
fn subscript_open(word: &str) -> bool {
    let Some(open) = word.find('[') else {
        return false;
    };
    !word[open..].contains(']') && is_name(&word[..open])
}

/// Inside `${ … }` (text from after `${` to the marker): a subscript or a substring offset.
fn param_arith(inner: &[char]) -> bool {
    let mut j = 0;
    if matches!(inner.first(), Some('!' | '#')) {
        j = 1;
    }
    let name_end = inner[j..]
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map_or(inner.len(), |p| j + p);
    j = if name_end == j { j + 1 } else { name_end };
    if inner.get(j) == Some(&'[') {
        match inner[j..].iter().position(|c| *c == ']') {
            None => return true,
            Some(p) => j += p + 1,
        }
    }
    inner.get(j) == Some(&':') && !matches!(inner.get(j + 1), Some('-' | '=' | '?' | '+'))
}

/// Inside `[[ … ]]`, an operand of an arithmetic comparison.
fn in_double_bracket_arith(chars: &[char], i: usize, word_start: usize) -> bool {
    let before: String = chars[..word_start].iter().collect();
    let ws = words(&before);
    let open = ws.iter().rposition(|w| w == "[[");
    let close = ws.iter().rposition(|w| w == "]]");
    let Some(open) = open else {
        return false;
    };
    if close.is_some_and(|c| c > open) {
        return false;
    }
    if ws.last().is_some_and(|w| ARITH_OPS.contains(&w.as_str())) {
        return true;
    }
    // The word after the marker's word.
    let mut j = i;
    while j < chars.len() && !is_break(chars[j]) {
        j += 1;
    }
    let after: String = chars[j..].iter().take_while(|c| **c != '\n').collect();
    words(&after)
        .first()
        .is_some_and(|w| ARITH_OPS.contains(&w.as_str()))
}

#[cfg(test)]
mod tests {
    use super::super::shell::{CLOSE, OPEN};
    use super::*;

    fn at(cmd: &str) -> bool {
        let text = cmd.replace("@0", &format!("{OPEN}0{CLOSE}"));
        let chars: Vec<char> = text.chars().collect();
        let i = chars.iter().position(|c| *c == OPEN).unwrap_or(0);
        let param = text
            .find("${")
            .filter(|p| *p < text.find(OPEN).unwrap_or(0))
            .map(|p| text[..p + 2].chars().count());
        let quoted = chars[..i].iter().filter(|c| **c == '"').count() % 2 == 1;
        arithmetic_position(&chars, i, param, quoted)
    }

    #[test]
    fn positions() {
        for cmd in [
            "[[ @0 -eq 1 ]]",
            "[[ 1 -lt \"@0\" ]]",
            "[[ x && @0 -ge 2 ]]",
            "let x=@0",
            "let \"x = @0\"",
            "declare -i x=@0",
            "local -ri x=@0",
            "declare -i x; x=@0",
            "a[@0]=1",
            "unset a[@0]",
            "a=([@0]=1)",
            "declare -a a=( [1]=x [@0]=y )",
            "${a[@0]}",
            "${x:@0}",
            "${x:1:@0}",
            "${x: @0}",
        ] {
            assert!(at(cmd), "{cmd}");
        }
        for cmd in [
            "[ @0 -eq 1 ]",
            "[[ @0 == x ]]",
            "[[ 1 -eq 1 ]] && echo @0",
            "echo @0 -eq",
            "declare x=@0",
            "x=@0",
            "${x:-@0}",
            "${x:=@0}",
            "${x/@0/y}",
            "echo [@0]",
            "a=(x) ; echo [@0]",
            "echo \"a[@0]\"",
            "echo a]@0",
        ] {
            assert!(!at(cmd), "{cmd}");
        }
    }
}
