//! What an SSH failure means: unreachable, authentication, host key, and whether to retry.

use super::*;

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

/// One line naming the host and the cause, and whether retrying can help.
pub(super) fn classify(t: &SshTarget, text: &str) -> (String, bool) {
    let lower = text.to_ascii_lowercase();
    let dest = t.destination();
    let hostport = match t.port {
        Some(p) => format!("[{}]:{p}", t.address),
        None => t.address.clone(),
    };
    let scan = match t.port {
        Some(p) => format!("ssh-keyscan -p {p} {}", t.address),
        None => format!("ssh-keyscan {}", t.address),
    };
    if lower.contains("remote host identification has changed")
        || lower.contains("host key for") && lower.contains("has changed")
    {
        return (
            format!(
                "host {} ({dest}): HOST KEY CHANGED — refusing to connect. Someone may be intercepting the connection, or the host was rebuilt. Verify the new key out of band; only then remove the old one with `ssh-keygen -R '{hostport}'` and add the new one",
                t.name
            ),
            false,
        );
    }
    if lower.contains("host key verification failed")
        || lower.contains("no ") && lower.contains("host key is known")
    {
        return (
            format!(
                "host {} ({dest}): its host key is not known, so the connection is refused (no trust on first use). Verify the key's fingerprint out of band (`{scan} | ssh-keygen -lf -`), then add it to known_hosts (`{scan} >> ~/.ssh/known_hosts`) or pass --known-hosts FILE",
                t.name
            ),
            false,
        );
    }
    if lower.contains("permission denied") || lower.contains("too many authentication failures") {
        return (
            format!(
                "host {} ({dest}): authentication refused (check the user, the key or the agent)",
                t.name
            ),
            false,
        );
    }
    if lower.contains("could not resolve hostname")
        || lower.contains("name or service not known")
        || lower.contains("temporary failure in name resolution")
    {
        return (
            format!("host {} ({dest}): the name does not resolve", t.name),
            false,
        );
    }
    if lower.contains("connection timed out") || lower.contains("operation timed out") {
        return (
            format!("host {} ({dest}): connection timed out", t.name),
            true,
        );
    }
    if lower.contains("connection refused") {
        return (
            format!(
                "host {} ({dest}): connection refused (is sshd running on that port?)",
                t.name
            ),
            true,
        );
    }
    if lower.contains("connection reset")
        || lower.contains("connection closed")
        || lower.contains("kex_exchange_identification")
    {
        return (
            format!(
                "host {} ({dest}): connection reset during the handshake",
                t.name
            ),
            true,
        );
    }
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim();
    (
        format!("host {} ({dest}): cannot connect: {last}", t.name),
        false,
    )
}
