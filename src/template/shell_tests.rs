//! Tests of the placer: references per quoting context and refused contexts.
use super::*;

fn names() -> Vec<String> {
    vec!["V0".into(), "V1".into()]
}

fn p(s: &str) -> Result<String, Vec<PlaceError>> {
    place(
        &s.replace("@0", &marker(0)).replace("@1", &marker(1)),
        &names(),
    )
}

#[test]
fn contexts() {
    assert_eq!(p("echo @0").ok().as_deref(), Some(r#"echo "${V0}""#));
    assert_eq!(
        p(r#"echo "a @0 b""#).ok().as_deref(),
        Some(r#"echo "a ${V0} b""#)
    );
    assert_eq!(
        p(r#"echo "$(cat @0)""#).ok().as_deref(),
        Some(r#"echo "$(cat "${V0}")""#)
    );
    assert_eq!(
        p(r#"echo "${X:-@0}" @1"#).ok().as_deref(),
        Some(r#"echo "${X:-${V0}}" "${V1}""#)
    );
    assert_eq!(
        p("echo `ls @0`").ok().as_deref(),
        Some(r#"echo `ls "${V0}"`"#)
    );
    assert_eq!(
        p("cat <<EOF\nhi @0\nEOF\necho @1").ok().as_deref(),
        Some("cat <<EOF\nhi ${V0}\nEOF\necho \"${V1}\"")
    );
    assert_eq!(
        p("jq -r .x <<< @0; cat <<@1").ok().as_deref(),
        Some(r#"jq -r .x <<< "${V0}"; cat <<"${V1}""#)
    );
    assert_eq!(
        p("echo 'it''s' \\' @0").ok().as_deref(),
        Some("echo 'it''s' \\' \"${V0}\"")
    );
}

#[test]
fn unsafe_contexts() {
    let ctx = |s: &str| p(s).err().map(|e| e[0].context);
    assert_eq!(ctx("echo 'a @0'"), Some(Unsafe::SingleQuotes));
    assert_eq!(ctx("echo $'a @0'"), Some(Unsafe::AnsiCQuotes));
    assert_eq!(ctx("echo $(( @0 + 1 ))"), Some(Unsafe::Arithmetic));
    assert_eq!(ctx("cat <<'EOF'\n@0\nEOF\n"), Some(Unsafe::QuotedHereDoc));
    assert_eq!(ctx("echo \"'@0'\""), None);
}

#[test]
fn arithmetic_contexts() {
    let ctx = |s: &str| p(s).err().map(|e| e[0].context);
    for cmd in [
        "(( @0 )) && echo t",
        "for (( i=@0; i<3; i++ )); do :; done",
        "[[ @0 -eq 1 ]]",
        "let x=@0",
        "x=abc; echo ${x:@0:1}",
        "echo $[ @0 ]",
        "echo $[ 1 + [@0] ]",
        "declare -i x=@0",
        "a=(1 2); echo ${a[@0]}",
        "echo \"${a[@0]}\"",
        "a[@0]=1",
    ] {
        assert_eq!(ctx(cmd), Some(Unsafe::Arithmetic), "{cmd}");
    }
    for cmd in [
        "( (echo @0) )",
        "[ @0 -eq 1 ]",
        "printf '%d\\n' @0",
        "echo ${x:-@0} $[ 1 ] @1",
        "echo \"a[@0]\"",
    ] {
        assert_eq!(ctx(cmd), None, "{cmd}");
    }
}

#[test]
fn a_backslash_before_a_value_is_dropped() {
    assert_eq!(
        p("echo \\@0 end").ok().as_deref(),
        Some(r#"echo "${V0}" end"#)
    );
    assert_eq!(p("echo \"\\@0\"").ok().as_deref(), Some(r#"echo "${V0}""#));
    assert_eq!(
        p("cat <<EOF\n\\@0\nEOF\n").ok().as_deref(),
        Some("cat <<EOF\n${V0}\nEOF\n")
    );
    assert_eq!(p("echo \\\\@0").ok().as_deref(), Some(r#"echo \\"${V0}""#));
}
