//! The JSON Schema of runbook format version 1, for editors (yaml-language-server) and CI.
//! A copy lives in `docs/runbook.schema.json`; a test keeps it identical to this.

use serde_json::{Value, json};

fn string() -> Value {
    json!({ "type": "string" })
}

fn duration() -> Value {
    json!({ "type": "string", "pattern": "^\\s*[0-9]", "description": "A duration with a unit: 500ms, 30s, 5m, 1h30m" })
}

fn string_map() -> Value {
    json!({ "type": "object", "additionalProperties": { "type": "string" } })
}

fn names() -> Value {
    json!({ "oneOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" } } ] })
}

fn http() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "method": { "oneOf": [
                { "enum": ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "LIST"] },
                { "type": "string", "pattern": "\\{\\{", "description": "A template rendered at run time; must give one of the methods above" }
            ] },
            "url": string(), "get": string(), "put": string(), "post": string(),
            "delete": string(), "patch": string(), "head": string(),
            "headers": string_map(), "query": string_map(),
            "json": {}, "body": string(),
            "timeout": duration(),
            "follow_redirects": { "type": "boolean" },
            "sensitive": { "type": "boolean" },
            "ca_cert": string(), "client_cert": string(), "client_key": string(),
            "insecure": { "type": "boolean" }
        }
    })
}

fn wait() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["until", "timeout"],
        "properties": {
            "run": string(), "on": string(), "http": http(),
            "until": string(), "every": duration(),
            "backoff": { "type": "number", "minimum": 1, "maximum": 10 },
            "timeout": duration()
        }
    })
}

fn body_properties() -> serde_json::Map<String, Value> {
    let v = json!({
        "run": { "type": "string", "description": "Shell command (sh -c); values are shell-quoted" },
        "http": http(),
        "wait": wait(),
        "manual": { "type": "string", "description": "Instructions the operator performs and confirms" },
        "on": { "type": "string", "description": "A host or group; absent = local" },
        "timeout": duration(),
        "env": string_map(),
        "stdin": string()
    });
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

fn step() -> Value {
    let mut props = body_properties();
    let extra = json!({
        "id": { "type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]*$" },
        "title": string(),
        "needs": names(),
        "when": { "type": "string", "description": "Expression; the step is skipped when false" },
        "confirm": { "oneOf": [ string(), {
            "type": "object", "additionalProperties": false, "required": ["message"],
            "properties": {
                "message": string(),
                "approvals": { "type": "integer", "minimum": 1, "maximum": 10 },
                "other_approver": { "type": "boolean" },
                "approvers": { "type": "array", "items": string() },
                "timeout": duration()
            }
        } ] },
        "retries": { "type": "integer", "minimum": 0, "maximum": 100 },
        "backoff": duration(),
        "expect": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "exit_code": { "oneOf": [ { "type": "integer" }, { "type": "array", "items": { "type": "integer" } } ] },
                "status": { "oneOf": [ { "type": "integer" }, { "type": "array", "items": { "type": "integer" } } ] },
                "stdout": string(), "stderr": string(),
                "json": { "type": "object" },
                "body_contains": string(),
                "that": string()
            }
        },
        "outputs": { "type": "object", "additionalProperties": { "oneOf": [ string(), {
            "type": "object", "additionalProperties": false, "required": ["value"],
            "properties": { "value": string(), "secret": { "type": "boolean" } }
        } ] } },
        "for_each": { "oneOf": [ string(), { "type": "array" }, {
            "type": "object", "additionalProperties": false,
            "anyOf": [ { "required": ["items"] }, { "required": ["answers"] } ],
            "properties": { "items": {}, "until": string(), "on_item_failure": { "enum": ["stop", "continue"] },
                "answers": { "type": "string", "description": "An earlier `ask:` step (in `needs`): one item per answer, run as each arrives while the ask goes on collecting; `items` is then the list used when that step was skipped" } }
        } ] },
        "max_parallel": { "type": "integer", "minimum": 1 },
        "max_failures": { "oneOf": [ { "type": "integer", "minimum": 0 }, { "type": "string", "pattern": "^[0-9]+%$" } ] },
        "serial": { "type": "integer", "minimum": 1 },
        "idempotent": { "type": "boolean" },
        "read_only": { "type": "boolean" },
        "continue_on_failure": { "type": "boolean", "description": "Old spelling of on_failure: continue" },
        "on_failure": { "enum": ["unwind", "stop", "continue"], "description": "unwind (default): undo completed steps; stop: stop without undoing (exit 4); continue: go on" },
        "commit": { "type": "boolean", "description": "Point of no return: once this step succeeds, earlier steps' rollbacks are discharged" },
        "fail": { "type": "string", "description": "Fail the run here with this message (a template)" },
        "ask": { "description": "Ask people for a value mid-run (a terminal, or `runbook answer RUN STEP`); the answer is steps.<id>.outputs.value (all answers: .values)",
            "oneOf": [ string(), {
            "type": "object", "additionalProperties": false, "required": ["prompt"],
            "properties": {
                "prompt": string(),
                "type": { "enum": ["string", "int", "bool"] },
                "secret": { "type": "boolean", "description": "Hidden input; never journaled or shown; asked again on resume" },
                "pattern": { "type": "string", "description": "Regular expression the whole answer must match (asked again otherwise)" },
                "from": { "oneOf": [ { "type": "integer", "minimum": 1, "maximum": 50 }, string() ], "description": "Collect this many answers, each from a distinct OS user (an expression: known at run time)" },
                "timeout": string()
            }
        } ] },
        "uses": { "type": "string", "description": "Call another runbook (path relative to this file); its steps run as part of this run" },
        "with": { "type": "object", "description": "Inputs of the called runbook (`uses`)" },
        "on": { "oneOf": [
            { "type": "string", "description": "A host or group; absent = local" },
            { "type": "object", "additionalProperties": false, "required": ["from"],
              "description": "Members of a group chosen at run time",
              "properties": {
                "hosts": { "description": "Expression giving member names or addresses (a list, or one string)" },
                "from": { "type": "string", "description": "The declared group they must belong to" }
              } }
        ] },
        "where": { "type": "string", "description": "Expression over `host` (name, address, user, port, vars): keep the members for which it is true" },
        "order": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "by": { "type": "string", "description": "Sort key: an expression over `host`" },
                "reverse": { "type": "boolean" },
                "first": { "description": "Members (names or addresses; an expression) run first" },
                "last": { "description": "Members (names or addresses; an expression) run last, e.g. the leader" }
            }
        },
        "deadline": duration(),
        "retry": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "retries": { "type": "integer", "minimum": 0, "maximum": 100 },
                "backoff": duration(),
                "when": { "type": "string", "description": "Expression over the failed attempt's result: retry only when true" }
            }
        },
        "rollback": { "oneOf": [ string(), { "type": "object", "additionalProperties": false, "properties": Value::Object(body_properties()) } ] }
    });
    if let Value::Object(m) = extra {
        props.extend(m);
    }
    json!({ "type": "object", "additionalProperties": false, "required": ["id"], "properties": Value::Object(props) })
}

/// The schema as a JSON value.
pub(crate) fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://runbook.dev/schema/runbook-v1.json",
        "title": "runbook format version 1",
        "type": "object",
        "additionalProperties": false,
        "required": ["runbook", "version", "steps"],
        "properties": {
            "runbook": string(),
            "version": { "const": 1 },
            "description": string(),
            "inputs": {
                "type": "object",
                "additionalProperties": {
                    "oneOf": [ { "type": "null" }, {
                        "type": "object", "additionalProperties": false,
                        "properties": {
                            "description": string(),
                            "required": { "type": "boolean" },
                            "default": {},
                            "type": { "enum": ["string", "int", "bool", "list"] },
                            "list": { "type": "boolean" },
                            "secret": { "type": "boolean" },
                            "from_env": string(),
                            "from_file": string(),
                            "allowed": { "type": "array", "items": { "type": "string" } },
                            "pattern": string(),
                            "min_length": { "type": "integer", "minimum": 0 }
                        }
                    } ]
                }
            },
            "hosts": {
                "type": "object",
                "additionalProperties": {
                    "type": "object", "additionalProperties": false, "required": ["address"],
                    "properties": {
                        "address": string(), "user": string(),
                        "port": { "type": "integer", "minimum": 1, "maximum": 65535 },
                        "identity_file": string(), "jump": string(), "known_hosts": string(),
                        "vars": { "type": "object", "description": "Literal values `where:`/`order:` read as host.vars.NAME" }
                    }
                }
            },
            "groups": { "type": "object", "additionalProperties": names() },
            "defaults": {
                "type": "object", "additionalProperties": false,
                "properties": {
                    "timeout": duration(),
                    "retries": { "type": "integer", "minimum": 0 },
                    "backoff": duration(),
                    "gate_timeout": duration()
                }
            },
            "lock": string(),
            "steps": { "type": "array", "items": step() },
            "finally": { "type": "array", "items": step() },
            "outputs": { "type": "object", "description": "Values a caller (`uses:`) reads as steps.<call>.outputs.NAME", "additionalProperties": string() }
        }
    })
}

/// The schema, pretty-printed (what `runbook schema` prints).
pub(crate) fn schema_json() -> String {
    serde_json::to_string_pretty(&schema()).unwrap_or_default()
}
