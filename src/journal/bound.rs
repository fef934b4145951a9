//! Results cut to a bounded size before they are journaled (head and tail kept).

use crate::event::{Event, Stamped};

/// Longest stdout/stderr kept in a journaled result (head and tail).
const RESULT_TEXT: usize = 32 * 1024;

fn cut_text(s: &str) -> String {
    if s.len() <= 2 * RESULT_TEXT {
        return s.to_string();
    }
    let mut head = RESULT_TEXT;
    while !s.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = s.len() - RESULT_TEXT;
    while !s.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}\n[… {} bytes omitted; see the step log …]\n{}",
        &s[..head],
        tail - head,
        &s[tail..]
    )
}

fn cut_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.len() > 2 * RESULT_TEXT => *s = cut_text(s),
        serde_json::Value::Array(a) => a.iter_mut().for_each(cut_json),
        serde_json::Value::Object(m) => m.values_mut().for_each(cut_json),
        _ => {}
    }
}

/// Whether a value holds a string that `cut_json` would cut.
fn too_long(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.len() > 2 * RESULT_TEXT,
        serde_json::Value::Array(a) => a.iter().any(too_long),
        serde_json::Value::Object(m) => m.values().any(too_long),
        _ => false,
    }
}

/// The event with big results cut to a bounded size (borrowed as it is when nothing is cut).
pub(super) fn bounded(s: &Stamped) -> std::borrow::Cow<'_, Stamped> {
    match &s.event {
        Event::StepFinished { result, .. } if too_long(result) => {
            let mut s = s.clone();
            if let Event::StepFinished { result, .. } = &mut s.event {
                cut_json(result);
            }
            std::borrow::Cow::Owned(s)
        }
        _ => std::borrow::Cow::Borrowed(s),
    }
}
