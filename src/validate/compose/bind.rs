//! Binding `with:` values to a sub-runbook's inputs as template expressions.

use super::*;

/// The expression each child input stands for: what `with:` passed, else its default.
pub(super) fn bind_inputs(
    step: &Node,
    inputs: &[Input],
    display: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<HashMap<String, String>> {
    let mut ok = true;
    let mut given: HashMap<String, &Node> = HashMap::new();
    if let Some(with) = get(step, "with") {
        match &with.kind {
            NodeKind::Map(pairs) => {
                for (k, v) in pairs {
                    let name = k.as_str().unwrap_or_default();
                    if inputs.iter().any(|i| i.name == name) {
                        given.insert(name.to_string(), v);
                    } else {
                        let mut d = Diagnostic::error(
                            "uses-input",
                            format!("{display} has no input `{name}`"),
                        )
                        .with_span(k.span.clone(), "no such input");
                        if let Some(h) = did_you_mean(name, inputs.iter().map(|i| i.name.as_str()))
                        {
                            d = d.with_help(h);
                        }
                        diags.push(d);
                        ok = false;
                    }
                }
            }
            _ if with.is_null() => {}
            _ => {
                diags.push(
                    Diagnostic::error("uses-input", "`with` must be a mapping of input: value")
                        .with_span(with.span.clone(), "not a mapping"),
                );
                return None;
            }
        }
    }
    let call_span = get(step, "uses").map_or(step.span.clone(), |u| u.span.clone());
    let mut subst: HashMap<String, String> = HashMap::new();
    for input in inputs {
        let expr = if let Some(v) = given.get(&input.name) {
            match value_expr(v, input) {
                Ok(e) => e,
                Err(msg) => {
                    diags.push(
                        Diagnostic::error(
                            "uses-input",
                            format!("input `{}` of {display}: {msg}", input.name),
                        )
                        .with_span(v.span.clone(), format!("expected {}", input.ty.as_str())),
                    );
                    ok = false;
                    continue;
                }
            }
        } else if let Some(default) = &input.default {
            let scope = Scope {
                call: String::new(),
                inputs: subst.clone(),
                hosts: HashSet::new(),
                span: call_span.clone(),
            };
            match json_expr(default, &scope) {
                Ok(e) => e,
                Err(msg) => {
                    diags.push(
                        Diagnostic::error(
                            "uses-input",
                            format!("default of input `{}` of {display}: {msg}", input.name),
                        )
                        .with_span(call_span.clone(), "in this call"),
                    );
                    ok = false;
                    continue;
                }
            }
        } else if input.required || input.secret {
            diags.push(
                Diagnostic::error(
                    "uses-input",
                    format!(
                        "{display} needs input `{}`{}",
                        input.name,
                        if input.secret {
                            " (a secret: pass it by name, e.g. `{{ my_secret }}`)"
                        } else {
                            ""
                        }
                    ),
                )
                .with_span(call_span.clone(), "missing in `with`")
                .with_help(format!("add `with: {{ {}: ... }}` to the call", input.name)),
            );
            ok = false;
            continue;
        } else {
            "none".to_string()
        };
        subst.insert(input.name.clone(), expr);
    }
    ok.then_some(subst)
}

/// A `with:` value as an expression in the caller's scope, checked against the input's type.
pub(super) fn value_expr(v: &Node, input: &Input) -> Result<String, String> {
    match &v.kind {
        NodeKind::Scalar { text, plain } => {
            if text.contains("{{") || text.contains("{%") {
                return template_expr(text).map(|e| checked(e, input));
            }
            if input.secret {
                return Err(
                    "a secret is passed by name (`{{ my_secret }}`), never written in the runbook"
                        .into(),
                );
            }
            match input.ty {
                InputType::Int => text
                    .parse::<i64>()
                    .map(|n| n.to_string())
                    .map_err(|_| format!("`{text}` is not an integer")),
                InputType::Bool => match text.as_str() {
                    "true" | "True" | "TRUE" => Ok("true".into()),
                    "false" | "False" | "FALSE" => Ok("false".into()),
                    _ => Err(format!("`{text}` is not true or false")),
                },
                InputType::List => Err("a list is expected (`[a, b]` or `{{ a_list }}`)".into()),
                InputType::String => {
                    if *plain && v.is_null() {
                        return Err("null is not a string".into());
                    }
                    if !input.allowed.is_empty() && !input.allowed.contains(text) {
                        return Err(format!(
                            "`{text}` is not one of {}",
                            input.allowed.join(", ")
                        ));
                    }
                    if let Some(p) = &input.pattern
                        && !p.is_match(text)
                    {
                        return Err(format!("`{text}` does not match {}", p.as_str()));
                    }
                    Ok(string_lit(text))
                }
            }
        }
        NodeKind::Seq(items) if input.ty == InputType::List => {
            let mut parts = Vec::new();
            for item in items {
                match item.as_str() {
                    Some(t) if t.contains("{{") || t.contains("{%") => {
                        parts.push(template_expr(t)?)
                    }
                    Some(t) => parts.push(string_lit(t)),
                    None => return Err("list items must be strings".into()),
                }
            }
            Ok(format!("[{}]", parts.join(", ")))
        }
        _ => Err(format!("{} is not a {}", v.describe(), input.ty.as_str())),
    }
}

/// `expr` with the child input's rules applied when it is evaluated (a template's value is
/// only known at run time): see `template/checked.rs`.
fn checked(expr: String, input: &Input) -> String {
    let rules = input.pattern.is_some()
        || !input.allowed.is_empty()
        || matches!(input.ty, InputType::Int | InputType::Bool);
    if !rules || input.secret {
        return expr;
    }
    let allowed: Vec<String> = input.allowed.iter().map(|a| string_lit(a)).collect();
    format!(
        "(({expr}) | checked_input({}, {}, {}, [{}]))",
        string_lit(&input.name),
        string_lit(input.ty.as_str()),
        string_lit(input.pattern.as_ref().map_or("", |p| p.as_str())),
        allowed.join(", ")
    )
}

pub(super) fn string_lit(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A default value (in the child's scope) as an expression in the caller's scope.
pub(super) fn json_expr(v: &serde_json::Value, scope: &Scope) -> Result<String, String> {
    Ok(match v {
        serde_json::Value::Null => "none".into(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => {
            if s.contains("{{") || s.contains("{%") {
                template_expr(&scope.template(s))?
            } else {
                string_lit(s)
            }
        }
        serde_json::Value::Array(items) => {
            let parts: Result<Vec<String>, String> =
                items.iter().map(|i| json_expr(i, scope)).collect();
            format!("[{}]", parts?.join(", "))
        }
        serde_json::Value::Object(map) => {
            let parts: Result<Vec<String>, String> = map
                .iter()
                .map(|(k, v)| Ok(format!("{}: {}", string_lit(k), json_expr(v, scope)?)))
                .collect();
            format!("{{{}}}", parts?.join(", "))
        }
    })
}
