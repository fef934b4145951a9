//! Option injection: a value that is a whole argument word of a command and starts with `-`
//! would be read by the program as an option (`tar -xf a.tar {{ member }}` with
//! `member=--to-command=…`). Such a value is refused at run time unless it is a number
//! (`-5`) or the command ends the options first with a standalone `--` word before it.
//! A value joined to other text (`--file={{ f }}`, `./{{ f }}`) is never an option word.

use super::shell::{CLOSE, OPEN};

/// Characters that end a shell word.
fn is_break(c: char) -> bool {
    c.is_whitespace() || matches!(c, ';' | '|' | '&' | '(' | ')' | '<' | '>' | '`')
}

/// Index of the first value (by marker number) that would become an option word, if any.
/// `values[i]` is the text of marker `i`.
pub(crate) fn option_word(rendered: &str, values: &[(String, bool)]) -> Option<usize> {
    let chars: Vec<char> = rendered.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != OPEN {
            i += 1;
            continue;
        }
        let len = chars[i..].iter().position(|c| *c == CLOSE)?;
        let end = i + len;
        let idx: Option<usize> = chars[i + 1..end].iter().collect::<String>().parse().ok();
        // The word around the marker, quotes removed: just the marker → its own word.
        let before = chars[..i]
            .iter()
            .rev()
            .take_while(|c| !is_break(**c))
            .filter(|c| !matches!(c, '"' | '\''))
            .count();
        let after = chars[end + 1..]
            .iter()
            .take_while(|c| !is_break(**c))
            .filter(|c| !matches!(c, '"' | '\''))
            .count();
        let prefix: String = chars[..i].iter().collect();
        let ended = prefix.split(is_break).any(|w| w == "--");
        let heredoc = prefix.contains("<<");
        if let Some(idx) = idx
            && before == 0
            && after == 0
            && !ended
            && !heredoc
            && let Some((v, _)) = values.get(idx)
            && v.starts_with('-')
            && v.parse::<f64>().is_err()
        {
            return Some(idx);
        }
        i = end + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(i: usize) -> String {
        super::super::shell::marker(i)
    }

    #[test]
    fn words() {
        let v = vec![("--to-command=x".to_string(), false), ("-5".into(), false)];
        assert_eq!(option_word(&format!("tar -xf a {}", m(0)), &v), Some(0));
        assert_eq!(option_word(&format!("tar -xf a \"{}\"", m(0)), &v), Some(0));
        assert_eq!(option_word(&format!("x;{}", m(0)), &v), Some(0));
        assert_eq!(option_word(&format!("tar -xf a -- {}", m(0)), &v), None);
        assert_eq!(option_word(&format!("tar --file={}", m(0)), &v), None);
        assert_eq!(option_word(&format!("ls ./{}", m(0)), &v), None);
        assert_eq!(option_word(&format!("seq {}", m(1)), &v), None);
    }
}
