//! The one redactor between the engine and everything that leaves it.
//!
//! It knows every secret value of the run, and also their base64 and URL-encoded forms (a
//! command that echoes `base64 <<< $TOKEN` must not leak it either). Every event passes
//! through [`Redactor::event`] before any observer sees it; error messages too.

use base64::Engine as _;

use super::event::Event;
use crate::template::MASK;

/// Shortest secret that is redacted: masking every "a" in the output helps nobody.
const MIN_SECRET_LEN: usize = 4;

/// Replaces secret values (and their encodings) with a mask.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is masked whole.
    needles: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: &[String]) -> Redactor {
        let mut needles = Vec::new();
        for s in secrets.iter().filter(|s| s.len() >= MIN_SECRET_LEN) {
            let b64 = base64::engine::general_purpose::STANDARD;
            let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let forms = [
                s.clone(),
                b64.encode(s.as_bytes()),
                b64.encode(format!("{s}\n").as_bytes()),
                b64url.encode(s.as_bytes()),
                percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                    .to_string(),
                s.replace('"', "\\\""),
            ];
            for f in forms {
                // Base64 padding differs with the text around it; match without it.
                let f = f.trim_end_matches('=').to_string();
                if f.len() >= MIN_SECRET_LEN && !needles.contains(&f) {
                    needles.push(f);
                }
            }
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        Redactor { needles }
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// Masks every secret in `s`.
    pub fn text(&self, s: &str) -> String {
        let mut out = s.to_string();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), MASK);
            }
        }
        out
    }

    /// Masks every secret in a JSON value (strings, recursively).
    pub fn json(&self, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => *s = self.text(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| self.json(i)),
            serde_json::Value::Object(m) => m.values_mut().for_each(|i| self.json(i)),
            _ => {}
        }
    }

    /// Masks every string in an event.
    pub fn event(&self, e: &Event) -> Event {
        if self.is_empty() {
            return e.clone();
        }
        match serde_json::to_value(e) {
            Ok(mut v) => {
                self.json(&mut v);
                serde_json::from_value(v).unwrap_or_else(|_| Event::Warning {
                    message: "an event could not be redacted and was dropped".into(),
                })
            }
            Err(_) => Event::Warning {
                message: "an event could not be redacted and was dropped".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_plain_and_encoded_forms() {
        let r = Redactor::new(&["s3cr3t-token".into()]);
        assert_eq!(r.text("tok=s3cr3t-token;"), format!("tok={MASK};"));
        let b64 = base64::engine::general_purpose::STANDARD.encode("s3cr3t-token");
        assert!(!r.text(&b64).contains(b64.trim_end_matches('=')));
        let url = "s3cr3t%2Dtoken";
        assert!(!r.text(url).contains(url));
    }

    #[test]
    fn short_values_are_not_masked() {
        let r = Redactor::new(&["a".into()]);
        assert_eq!(r.text("banana"), "banana");
    }
}
