//! Reading `inputs:` (types, defaults, sources, secrets).

use super::*;

pub(super) fn read_inputs(r: &mut Reader, node: &Node) -> Vec<Input> {
    let mut out = Vec::new();
    for (k, v) in map_pairs(r, node, "`inputs`") {
        let Some(name) = r.string(k, "an input name") else {
            continue;
        };
        check_identifier(r, &name, k, "input name");
        let mut input = Input {
            name,
            span: k.span.clone(),
            description: String::new(),
            required: false,
            default: None,
            default_span: None,
            ty: InputType::String,
            secret: false,
            from_env: None,
            from_file: None,
            allowed: Vec::new(),
            pattern: None,
            min_length: None,
        };
        if v.is_null() {
            out.push(input);
            continue;
        }
        let Some(f) = r.fields(v, "an input", INPUT) else {
            continue;
        };
        let what = |field: &str| format!("`{field}` of input `{}`", input.name);
        if let Some(n) = f.get("description") {
            input.description = r.string(n, &what("description")).unwrap_or_default();
        }
        if let Some(n) = f.get("required") {
            input.required = r.boolean(n, &what("required")).unwrap_or(false);
        }
        if let Some(n) = f.get("secret") {
            input.secret = r.boolean(n, &what("secret")).unwrap_or(false);
        }
        if let Some(n) = f.get("type") {
            input.ty = match n.as_str() {
                Some("string") => InputType::String,
                Some("int") => InputType::Int,
                Some("bool") => InputType::Bool,
                Some("list") => InputType::List,
                _ => {
                    r.push(
                        Diagnostic::error(
                            "invalid-value",
                            format!("{} must be string, int, bool or list", what("type")),
                        )
                        .with_span(n.span.clone(), "unknown type"),
                    );
                    InputType::String
                }
            };
        }
        if let Some(n) = f.get("list")
            && r.boolean(n, &what("list")) == Some(true)
        {
            input.ty = InputType::List;
        }
        if let Some(n) = f.get("default") {
            input.default = Some(to_json(n));
            input.default_span = Some(n.span.clone());
        }
        input.from_env = f
            .get("from_env")
            .and_then(|n| r.string(n, &what("from_env")));
        input.from_file = f
            .get("from_file")
            .and_then(|n| r.string(n, &what("from_file")));
        if let Some(n) = f.get("allowed")
            && let Some(items) = r.seq(n, &what("allowed"))
        {
            input.allowed = items
                .iter()
                .filter_map(|i| r.string(i, &what("allowed")))
                .collect();
        }
        if let Some(n) = f.get("pattern")
            && let Some(re) = r.regex(n, &what("pattern"))
        {
            // Anchor it: a pattern describes the whole value, not a part of it.
            input.pattern = regex::Regex::new(&format!("^(?:{})$", re.as_str())).ok();
        }
        if let Some(n) = f.get("min_length") {
            input.min_length = r.uint(n, &what("min_length"), 1 << 20).map(|v| v as usize);
        }
        if input.secret && input.default.is_some() {
            r.push(
                Diagnostic::error("secret-default", format!("secret input `{}` has a default", input.name))
                    .with_span(input.default_span.clone().unwrap_or(input.span.clone()), "a secret in the runbook file")
                    .with_help("secrets come from the environment (`from_env`), a file (`from_file`) or a prompt, never from the runbook"),
            );
        }
        if input.required && input.default.is_some() {
            r.push(
                Diagnostic::warning(
                    "required-with-default",
                    format!("input `{}` is required but has a default", input.name),
                )
                .with_span(
                    f.key_span("required").unwrap_or(input.span.clone()),
                    "required here",
                )
                .with_help("drop `required: true`; the default makes it optional"),
            );
        }
        out.push(input);
    }
    out
}
