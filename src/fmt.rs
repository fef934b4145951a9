//! How durations, SSH destinations and digests are shown, the same way in plans, progress, errors
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

/// Hex SHA-256 of bytes (the journal chain, answer-channel names).
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in d {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}
