//! Unit tests of the template environment: quoting, secrets, placeholders, filters.

use super::*;

fn ctx() -> Value {
    crate::template::to_value(
        serde_json::json!({"node": "vault-2", "evil": "a; rm -rf /", "q": "it's"}),
    )
}

#[test]
fn shell_values_travel_in_the_environment() {
    let t = Templates::new(SecretDisplay::Reveal);
    let out = t
        .render_command(
            r#"restart {{ node }} "{{ evil }}" {{ q }} {{ node }}"#,
            &ctx(),
        )
        .ok();
    let expected = ShellCommand {
        command: r#"restart "${RUNBOOK_V1}" "${RUNBOOK_V2}" "${RUNBOOK_V3}" "${RUNBOOK_V1}""#
            .into(),
        env: vec![
            ("RUNBOOK_V1".into(), "vault-2".into()),
            ("RUNBOOK_V2".into(), "a; rm -rf /".into()),
            ("RUNBOOK_V3".into(), "it's".into()),
        ],
        derived_secrets: Vec::new(),
    };
    assert_eq!(out, Some(expected));
}

#[test]
fn autoescape_cannot_be_turned_off_in_commands() {
    let t = Templates::new(SecretDisplay::Reveal);
    let out = t
        .render_command(
            "{% autoescape false %}echo {{ evil }}{% endautoescape %}",
            &ctx(),
        )
        .ok()
        .map(|c| c.command);
    assert_eq!(out.as_deref(), Some(r#"echo "${RUNBOOK_V1}""#));
}

#[test]
fn single_quotes_are_refused() {
    let t = Templates::new(SecretDisplay::Reveal);
    assert!(t.render_command("echo '{{ evil }}'", &ctx()).is_err());
}

#[test]
fn dollar_hash_is_shell() {
    let t = Templates::new(SecretDisplay::Reveal);
    let out = t
        .render_command("echo ${#HOME} {# note #}{{ node }}", &ctx())
        .ok()
        .map(|c| c.command);
    assert_eq!(out.as_deref(), Some(r#"echo ${#HOME} "${RUNBOOK_V1}""#));
}

#[test]
fn raw_is_explicit() {
    let t = Templates::new(SecretDisplay::Reveal);
    let out = t
        .render_command("{{ evil | raw }}", &ctx())
        .map(|c| c.command);
    assert_eq!(out.ok().as_deref(), Some("a; rm -rf /"));
}

#[test]
fn undefined_is_an_error() {
    let t = Templates::new(SecretDisplay::Reveal);
    assert!(t.render("{{ nope }}", &ctx(), Target::Text).is_err());
    assert!(t.eval("nope == 1", &ctx()).is_err());
}

#[test]
fn secrets_become_env_references_in_commands() {
    let t = Templates::new(SecretDisplay::Reveal);
    let ctx = map([
        (
            "token",
            Value::from_object(Secret {
                env_name: "RUNBOOK_SECRET_TOKEN".into(),
                value: "hunter2".into(),
            }),
        ),
        ("node", Value::from("vault-2")),
    ]);
    let shell = t.render_command("curl -H {{ token }}", &ctx).ok();
    assert_eq!(
        shell,
        Some(ShellCommand {
            command: r#"curl -H "${RUNBOOK_SECRET_TOKEN}""#.into(),
            env: vec![("RUNBOOK_SECRET_TOKEN".into(), "hunter2".into())],
            derived_secrets: Vec::new(),
        })
    );
    let derived = t
        .render_command("echo {{ node }} {{ token | upper }}", &ctx)
        .ok();
    assert_eq!(
        derived.as_ref().map(|c| c.env.clone()),
        Some(vec![
            ("RUNBOOK_V1".into(), "vault-2".into()),
            ("RUNBOOK_V2".into(), "HUNTER2".into())
        ])
    );
    // Only the value computed from the secret is a secret.
    assert_eq!(
        derived.map(|c| c.derived_secrets),
        Some(vec!["HUNTER2".to_string()])
    );
    let text = t.render("{{ token }}", &ctx, Target::Text).ok();
    assert_eq!(text.as_deref(), Some("hunter2"));
    let masked = Templates::new(SecretDisplay::Mask)
        .render("{{ token }}", &ctx, Target::Text)
        .ok();
    assert_eq!(masked.as_deref(), Some(MASK));
}

#[test]
fn placeholders_render_their_path() {
    let t = Templates::new(SecretDisplay::Mask);
    let ctx = map([("steps", Value::from_object(Placeholder("steps".into())))]);
    let out = t
        .render_command("echo {{ steps.inspect.stdout }}", &ctx)
        .ok();
    assert_eq!(
        out.map(|c| c.env),
        Some(vec![("RUNBOOK_V1".into(), "<steps.inspect.stdout>".into())])
    );
}
