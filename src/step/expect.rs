//! What a step's `expect` compares: JSON paths and loose JSON equality.

/// Whether `got` is `want`, a string holding the same JSON value counting as equal.
pub fn json_equal(want: &serde_json::Value, got: &serde_json::Value) -> bool {
    if want == got {
        return true;
    }
    // `expect.json: {a.b: 3}` matches "3" and 3 alike: YAML authors rarely mean the difference.
    match (want, got) {
        (serde_json::Value::String(w), other) | (other, serde_json::Value::String(w)) => {
            !other.is_string()
                && serde_json::from_str::<serde_json::Value>(w).is_ok_and(|parsed| parsed == *other)
        }
        _ => false,
    }
}

/// Looks up `a.b[0].c` in a JSON value.
pub fn json_path<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let mut cur = v;
    for part in path.trim_start_matches("$.").split('.') {
        let (name, rest) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            let n: usize = idx.trim_end_matches(']').parse().ok()?;
            cur = cur.get(n)?;
        }
    }
    Some(cur)
}
