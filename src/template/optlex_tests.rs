//! Tests of the option-word refusal.
use super::*;

fn m(i: usize) -> String {
    super::super::shell::marker(i)
}

fn hit(cmd: &str, v: &[&str]) -> Option<(usize, usize, usize)> {
    let mut text = cmd.to_string();
    for i in 0..v.len() {
        text = text.replace(&format!("@{i}"), &m(i));
    }
    let values: Vec<(String, bool)> = v.iter().map(|s| (s.to_string(), false)).collect();
    option_word(&text, &values).map(|h| (h.index, h.line, h.word))
}

#[test]
fn words() {
    let opt = ["--to-command=x", "-5"];
    assert_eq!(hit("tar -xf a @0", &opt), Some((0, 1, 4)));
    assert_eq!(hit("tar -xf a \"@0\"", &opt), Some((0, 1, 4)));
    assert_eq!(hit("x;@0", &opt), Some((0, 1, 1)));
    assert_eq!(hit("tar -xf a -- @0", &opt), None);
    assert_eq!(hit("tar --file=@0", &opt), None);
    assert_eq!(hit("ls ./@0", &opt), None);
    assert_eq!(hit("seq @1", &opt), None);
    assert_eq!(hit("seq @1.5", &opt), None);
}

#[test]
fn a_value_starting_a_word() {
    let opt = ["--to-command=id #", "-5"];
    assert_eq!(hit("tar -xf a.tar -C out @0.conf", &opt), Some((0, 1, 6)));
    assert_eq!(hit("cat \"@0p\"", &opt), Some((0, 1, 2)));
    assert_eq!(hit("cat @0\"x\"", &opt), Some((0, 1, 2)));
    assert_eq!(hit("cat ''@0", &opt), Some((0, 1, 2)));
    assert_eq!(hit("cat ${X:-@0}", &opt), Some((0, 1, 2)));
    assert_eq!(hit("cat $(echo x)@0", &opt), Some((0, 1, 2)));
    assert_eq!(hit("cat \\@0", &opt), Some((0, 1, 2)));
    assert_eq!(hit("cat @1x", &opt), Some((1, 1, 2)));
    assert_eq!(hit("cat x@0 y@0", &opt), None);
    assert_eq!(hit("cat \"x\"@0", &opt), None);
    // Several values: the first non-empty one gives the word its first character.
    assert_eq!(hit("cat @0@1", &["-", "-help"]), Some((0, 1, 2)));
    assert_eq!(hit("cat @0@1", &["", "--help"]), Some((1, 1, 2)));
    assert_eq!(hit("cat @0@1", &["x", "--help"]), None);
    // In `$( … )` and backticks the inner command counts.
    assert_eq!(hit("echo \"$(cat @0)\"", &opt), Some((0, 1, 2)));
    assert_eq!(hit("echo `cat @0`", &opt), Some((0, 1, 2)));
    // Here-document bodies and comments are not words.
    assert_eq!(hit("cat <<EOF\n@0\nEOF\ncat x", &opt), None);
    assert_eq!(hit("cat <<EOF\n@0\nEOF\ncat @0", &opt), Some((0, 4, 2)));
    assert_eq!(hit("echo x # @0", &opt), None);
    assert_eq!(hit("jq . <<< @0", &opt), Some((0, 1, 3)));
}

#[test]
fn a_double_dash_counts_in_its_own_command_only() {
    let f = ["--help"];
    for cmd in [
        "echo -- ; cat @0",
        "echo -- && cat @0",
        "echo -- || cat @0",
        "echo -- | cat @0",
        "echo --\ncat @0",
        "echo \"--\"; cat @0",
        "x=--; cat @0",
        "cat -- x; cat @0",
        "cat \"$(echo -- )\" @0",
        "(echo --) cat @0",
        "{ echo --; } ; cat @0",
        "echo -- & cat @0",
        "sh -c \"cat \\\"\\$1\\\"\" -- @0",
        "sudo bash -ec 'cat \"$1\"' -- @0",
    ] {
        assert!(hit(cmd, &f).is_some(), "{cmd}");
    }
    for cmd in [
        "cat -- @0",
        "cat \"--\" @0",
        "cat -n -- x @0",
        "echo x; cat -- @0",
        "cat -- \\\n @0",
    ] {
        assert_eq!(hit(cmd, &f), None, "{cmd}");
    }
    // A `--` made of a value does not end the options.
    assert!(hit("cat @1 @0", &["--help", "--"]).is_some());
}
