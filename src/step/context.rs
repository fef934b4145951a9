//! What templates see at run time: inputs, earlier steps' results, the run, the host, the item.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};

use crate::inputs::Inputs;
use crate::template::{map, to_value};

/// Results of finished steps, by template name (`halt_traffic`), shared with running steps.
#[derive(Debug, Default, Clone)]
pub(crate) struct Results(pub Arc<RwLock<HashMap<String, Value>>>);

impl Results {
    /// A step's result as templates see it (`None` before it finished).
    pub(crate) fn get(&self, step_var: &str) -> Option<Value> {
        self.0.read().ok()?.get(step_var).cloned()
    }

    pub(crate) fn set(&self, step_var: &str, result: &serde_json::Value) {
        if let Ok(mut m) = self.0.write() {
            m.insert(step_var.to_string(), to_value(result));
        }
    }

    /// Like [`Results::set`], with the outputs named in `secret` as secrets: masked wherever
    /// shown, passed to commands in `RUNBOOK_SECRET_<STEP>_<OUTPUT>`.
    pub(crate) fn set_with_secrets(
        &self,
        step_var: &str,
        result: &serde_json::Value,
        secret: &[String],
    ) {
        let serde_json::Value::Object(fields) = result else {
            return self.set(step_var, result);
        };
        if secret.is_empty() {
            return self.set(step_var, result);
        }
        let mut entries: Vec<(String, Value)> = Vec::new();
        for (k, v) in fields {
            if k == "outputs"
                && let serde_json::Value::Object(outs) = v
            {
                let outs = outs.iter().map(|(name, value)| {
                    let v = if secret.contains(name)
                        && let serde_json::Value::Array(items) = value
                    {
                        // A list of secrets (`ask: { secret: true, from: N }`): each item is
                        // a secret of its own, so `for_each` can go over them.
                        Value::from(
                            items
                                .iter()
                                .enumerate()
                                .map(|(i, item)| {
                                    Value::from_object(crate::template::Secret {
                                        env_name: crate::template::secret_env_name(
                                            &format!("{step_var}_{name}_{i}"),
                                            None,
                                        ),
                                        value: json_text(item),
                                    })
                                })
                                .collect::<Vec<_>>(),
                        )
                    } else if secret.contains(name) {
                        Value::from_object(crate::template::Secret {
                            env_name: crate::template::secret_env_name(
                                &format!("{step_var}_{name}"),
                                None,
                            ),
                            value: json_text(value),
                        })
                    } else {
                        to_value(value)
                    };
                    (name.clone(), v)
                });
                entries.push((k.clone(), map(outs)));
            } else {
                entries.push((k.clone(), to_value(v)));
            }
        }
        if let Ok(mut m) = self.0.write() {
            m.insert(step_var.to_string(), map(entries));
        }
    }
}

/// A JSON value as text: strings without quotes.
pub(crate) fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Object for Results {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?.replace('-', "_");
        self.0.read().ok()?.get(&key).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let keys: Vec<Value> = self
            .0
            .read()
            .map(|m| m.keys().map(|k| Value::from(k.as_str())).collect())
            .unwrap_or_default();
        Enumerator::Values(keys)
    }
}

/// Everything a step's templates can read.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub base: Vec<(String, Value)>,
}

impl Ctx {
    /// Inputs, `inputs`, `steps`, `run`.
    pub(crate) fn new(inputs: &Inputs, results: &Results, run: serde_json::Value) -> Ctx {
        let mut base = inputs.context_entries();
        let all = base.clone();
        base.push(("inputs".into(), map(all)));
        base.push(("steps".into(), Value::from_object(results.clone())));
        base.push(("run".into(), to_value(run)));
        Ctx { base }
    }

    /// The context with extra names (item, host, result…).
    pub(crate) fn with(&self, extra: Vec<(String, Value)>) -> Value {
        let mut all = self.base.clone();
        all.extend(extra);
        map(all)
    }
}

/// The names an expression over a result sees: `result`, `response`, and each field at top
/// level (`stdout`, `exit_code`, `json`, `status`, `body`, `headers`), plus `attempt`.
pub(crate) fn result_entries(result: &serde_json::Value, attempt: u32) -> Vec<(String, Value)> {
    let v = to_value(result);
    let mut out = vec![
        ("result".to_string(), v.clone()),
        ("response".to_string(), v),
        ("attempt".to_string(), Value::from(attempt)),
    ];
    // Exactly the names `validate` accepts in these expressions: one list, so the two never
    // disagree (a field this result lacks is null, not undefined).
    for &k in crate::validate::RESULT_NAMES {
        if !matches!(k, "result" | "response" | "attempt") {
            let field = result.get(k).cloned().unwrap_or(serde_json::Value::Null);
            out.push((k.to_string(), to_value(field)));
        }
    }
    out
}
