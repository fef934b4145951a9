//! The leftovers of the last attack on the promises ("secrets never leak", "no injection",
//! "resume never redoes finished work"), each through the real binary: secret comparisons,
//! secrets shown in `fail:`/titles, `| raw` through a computed key, an emptied
//! `journal.head`, the `--` lint, the rollback question in `show`, and the triage's advice.

use crate::exec::Scratch;
use crate::harness::{Ran, root, runbook};

fn validate(s: &Scratch, yaml: &str) -> Ran {
    let p = s.runbook(yaml);
    runbook(["validate".to_string(), p.display().to_string()]).run()
}

/// The triage's advice (`triage.next`) names the runbook its own `recover-CAUSE` step calls.
#[test]
fn triage_next_names_the_runbook_its_recover_step_calls() {
    let file = root().join("runbooks/vault-triage.yaml");
    let ran = runbook([
        "plan".to_string(),
        file.display().to_string(),
        "-i".into(),
        "node=vault-2".into(),
        "--format".into(),
        "json".into(),
    ])
    .run();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let plan: serde_json::Value = serde_json::from_str(&ran.stdout).expect("plan JSON");
    let steps = plan["steps"].as_array().expect("steps");
    let conclude = steps
        .iter()
        .find(|s| s["id"] == "conclude")
        .and_then(|s| s["action"]["command"].as_str())
        .expect("the conclude command");
    // `say CAUSE "evidence" NEXT` with a literal cause and a literal runbook.
    let say = regex::Regex::new(r#"say ([a-z-]+) "[^"]*" ([a-z0-9-]+\.yaml)"#).expect("regex");
    let mut checked = Vec::new();
    for c in say.captures_iter(conclude) {
        let (cause, next) = (&c[1], &c[2]);
        let Some(call) = steps
            .iter()
            .find(|s| s["id"] == format!("recover-{cause}"))
        else {
            continue;
        };
        assert_eq!(
            call["action"]["file"], next,
            "triage.next for `{cause}` names {next} but recover-{cause} calls {}",
            call["action"]["file"]
        );
        checked.push(cause.to_string());
    }
    assert!(checked.contains(&"sealed".to_string()), "{checked:?}");
}
