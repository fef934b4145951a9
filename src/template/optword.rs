//! Option injection, the lint: a value standing as a whole argument word of a program known
//! to read options, with no `--` before it (`value-may-be-option`). The run-time refusal is
//! in [`super::optlex`].

use super::shell::{CLOSE, OPEN};

/// Characters that end a shell word.
fn is_break(c: char) -> bool {
    c.is_whitespace() || matches!(c, ';' | '|' | '&' | '(' | ')' | '<' | '>' | '`')
}

/// Programs that read options from their arguments, where a value starting with `-` changes
/// what they do (`tar --to-command=…`, `find -delete`, `rsync -e …`, `curl -o …`).
const TAKES_OPTIONS: &[&str] = &[
    "bao",
    "cat",
    "chgrp",
    "chmod",
    "chown",
    "cp",
    "curl",
    "cut",
    "dd",
    "df",
    "diff",
    "docker",
    "du",
    "file",
    "find",
    "git",
    "grep",
    "gzip",
    "head",
    "install",
    "jq",
    "journalctl",
    "kill",
    "kubectl",
    "ln",
    "ls",
    "mkdir",
    "mv",
    "openssl",
    "pg_dump",
    "psql",
    "readlink",
    "rm",
    "rmdir",
    "rsync",
    "scp",
    "sed",
    "sort",
    "ssh",
    "stat",
    "systemctl",
    "tail",
    "tar",
    "tee",
    "touch",
    "truncate",
    "uniq",
    "unzip",
    "vault",
    "wc",
    "wget",
    "xargs",
    "xz",
    "zip",
];

/// Words that run the next word as the command (`sudo rm …`).
pub(super) const WRAPPERS: &[&str] = &[
    "sudo", "doas", "env", "exec", "time", "nice", "nohup", "command",
];

/// A value of a command template that stands as a whole argument word of a program known to
/// take options, with no `--` before it in that command: `(root variable, source range,
/// program)`. The run refuses such a value if it starts with `-`; the lint says so before.
pub(crate) fn unended_option_words(src: &str) -> Vec<(String, std::ops::Range<usize>, String)> {
    let src = super::analyse::protect_dollar_hash(src);
    let Some(sk) = super::analyse::skeleton(&src) else {
        return Vec::new();
    };
    let chars: Vec<char> = sk.text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != OPEN {
            i += 1;
            continue;
        }
        let Some(len) = chars[i..].iter().position(|c| *c == CLOSE) else {
            break;
        };
        let end = i + len;
        let idx: Option<usize> = chars[i + 1..end].iter().collect::<String>().parse().ok();
        let prefix: String = chars[..i].iter().collect();
        let (prev, next) = (chars[..i].last(), chars.get(end + 1));
        // Inside double quotes the value is a word of its own only as `"{{ v }}"`.
        let quoted = prefix.chars().filter(|c| *c == '"').count() % 2 == 1;
        let whole = if quoted {
            prev == Some(&'"') && next == Some(&'"')
        } else {
            prev.is_none_or(|c| is_break(*c)) && next.is_none_or(|c| is_break(*c))
        };
        // A redirection's target is a file name, not an argument.
        let redirect = prefix.trim_end().ends_with(['<', '>']);
        if let Some(idx) = idx
            && whole
            && !redirect
            && !prefix.contains("<<")
            && let Some(program) = command_of(&prefix)
            && let Some((root, range)) = sk.values.get(idx)
        {
            out.push((root.clone(), range.clone(), program));
        }
        i = end + 1;
    }
    out
}

/// The program of the simple command a value stands in (`prefix` is the text before it), if
/// it is one known to take options and no `--` ended them.
fn command_of(prefix: &str) -> Option<String> {
    let segment = prefix
        .rsplit([';', '|', '&', '\n', '(', ')', '`', '{'])
        .next()
        .unwrap_or(prefix);
    let words: Vec<&str> = segment.split_whitespace().collect();
    if words.contains(&"--") {
        return None;
    }
    let mut rest = words.iter().skip_while(|w| {
        let assignment = w.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        assignment || WRAPPERS.contains(w)
    });
    let program = rest.next()?.trim_matches(|c| matches!(c, '"' | '\''));
    let program = program.rsplit('/').next().unwrap_or(program);
    TAKES_OPTIONS
        .contains(&program)
        .then(|| program.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint() {
        let progs = |src: &str| -> Vec<String> {
            unended_option_words(src)
                .into_iter()
                .map(|(r, _, p)| format!("{r}:{p}"))
                .collect()
        };
        assert_eq!(progs("tar -xf a.tar {{ member }}"), ["member:tar"]);
        assert_eq!(progs("sudo rm -f \"{{ f }}\""), ["f:rm"]);
        assert_eq!(progs("cd /x && X=1 /bin/rm {{ f }}"), ["f:rm"]);
        assert!(progs("rm -- {{ f }}").is_empty());
        assert!(progs("rm ./{{ f }}").is_empty());
        assert!(progs("tar --file={{ f }}").is_empty());
        assert!(progs("echo {{ f }}").is_empty());
        assert!(progs("grep -q \"x {{ f }} y\" /etc/x").is_empty());
        assert!(progs("cat a > {{ f }}").is_empty());
        assert!(progs("{{ prog }} -x").is_empty());
        assert!(progs("cat <<EOF\n{{ f }}\nEOF").is_empty());
    }
}
