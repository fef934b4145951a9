//! How durations and SSH destinations are shown, the same way in plans, progress, errors
//! and transcripts.

use std::time::Duration;

/// `user@address:port` as ssh is told and people are shown (user and port when set).
pub(crate) fn destination(user: Option<&str>, address: &str, port: Option<u16>) -> String {
    let mut s = String::new();
    if let Some(u) = user {
        s.push_str(u);
        s.push('@');
    }
    s.push_str(address);
    if let Some(p) = port {
        s.push_str(&format!(":{p}"));
    }
    s
}

/// Formats a duration compactly (`90s` → `1m 30s`), for plans and progress.
pub(crate) fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if s > 0 || parts.is_empty() {
        let frac = d.subsec_millis();
        if frac > 0 && h == 0 && m == 0 {
            parts.push(format!("{:.1}s", d.as_secs_f64()));
        } else {
            parts.push(format!("{s}s"));
        }
    }
    parts.join(" ")
}
