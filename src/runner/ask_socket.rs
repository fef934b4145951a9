//! The channel `runbook answer RUN STEP` uses to give a waiting `ask:` its value.
//!
//! Answers to an ask never touch a file: while a step waits, the engine listens on a Unix
//! socket in the abstract namespace (no path, so nothing in the run directory, nothing to
//! clean up, no `sun_path` length limit), named from a hash of the run id and step id. Both
//! ends check who is on the other side with `SO_PEERCRED`, which the kernel fills in:
//!
//! - the engine attributes each answer to the connecting process's OS user (what `from: N`
//!   counts distinct users with), never to anything the answerer claims;
//! - `runbook answer` sends nothing unless the listening process belongs to the owner of
//!   the run directory: another user who grabbed the name first gets no share.
//!
//! One exchange per connection, one JSON line each way at most [`MAX_LINE`] bytes: the
//! engine says what it asks ([`Hello`]), the answerer sends the value ([`Reply`]), the engine
//! says whether it was taken ([`Verdict`]).

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

/// Longest line either side reads.
pub(crate) const MAX_LINE: u64 = 64 * 1024;

/// What the engine says first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub run: String,
    pub step: String,
    pub prompt: String,
    pub secret: bool,
    #[serde(rename = "type")]
    pub ty: String,
    pub pattern: Option<String>,
    /// Answers needed in all, and already taken.
    pub need: u32,
    pub have: u32,
}

/// The answerer's value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Reply {
    pub value: String,
}

/// Taken or not, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    pub ok: bool,
    pub message: String,
}

/// The abstract socket name for `step` of run `run_id`.
pub(crate) fn name(run_id: &str, step: &str) -> String {
    let h = crate::fmt::sha256_hex(format!("{run_id}\0{step}").as_bytes());
    format!("runbook-ask-{}", &h[..32])
}

fn addr(name: &str) -> std::io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
}

/// Listens for answers to `step` (the engine side).
///
/// The name is predictable (the answerer must find it knowing only the run id), so another
/// local user can bind it first. Then the engine listens under the name with a random
/// suffix, which nobody can take in advance; `runbook answer` finds it in `/proc/net/unix`
/// and, as always, sends only to a listener owned by the run's owner.
pub(crate) fn listen(run_id: &str, step: &str) -> std::io::Result<tokio::net::UnixListener> {
    let base = name(run_id, step);
    let mut last = None;
    for attempt in 0..8 {
        let n = if attempt == 0 {
            base.clone()
        } else {
            format!("{base}-{:016x}", crate::sys::random_u64())
        };
        match std::os::unix::net::UnixListener::bind_addr(&addr(&n)?) {
            Ok(l) => {
                l.set_nonblocking(true)?;
                return tokio::net::UnixListener::from_std(l);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::AddrInUse)))
}

/// The names a listener for `step` may have: the plain one first, then any suffixed one
/// the kernel lists (see [`listen`]).
fn candidates(run_id: &str, step: &str) -> Vec<String> {
    let base = name(run_id, step);
    let prefix = format!("@{base}-");
    let mut out = vec![base];
    if let Ok(table) = std::fs::read_to_string("/proc/net/unix") {
        for line in table.lines().skip(1) {
            if let Some(path) = line.split_whitespace().nth(7)
                && let Some(rest) = path.strip_prefix(&prefix)
                && rest.len() == 16
                && rest.bytes().all(|b| b.is_ascii_hexdigit())
            {
                let n = path[1..].to_string();
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
    }
    out
}

/// The uid of the process at the other end of a connected socket (`SO_PEERCRED`).
pub(crate) fn peer_uid(fd: std::os::fd::RawFd) -> std::io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for the call; the kernel writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// The answerer's side: connects, checks the listener is the run's owner (`owner_uid`), and
/// returns the connection with the engine's [`Hello`]. A listener of anybody else (a name
/// taken first by another user) is passed over; if no listener of the owner is found, the
/// refusal names who holds the name.
pub(crate) fn connect(
    run_id: &str,
    step: &str,
    owner_uid: u32,
) -> Result<(std::os::unix::net::UnixStream, Hello), AskChannelError> {
    let mut refusal = None;
    for n in candidates(run_id, step) {
        match connect_one(&n, run_id, step, owner_uid) {
            Ok(found) => return Ok(found),
            Err(ConnectError::Absent) => {}
            Err(ConnectError::Foreign(msg)) => refusal = Some(msg),
            Err(ConnectError::Other(msg)) => return Err(AskChannelError(msg)),
        }
    }
    Err(AskChannelError(refusal.unwrap_or_else(|| format!(
        "run {run_id} is not waiting for an answer to `{step}` now (is the run at that step? a paused run asks again when resumed)"
    ))))
}

/// Why `runbook answer` could not reach the waiting ask or deliver its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AskChannelError(pub String);

impl std::fmt::Display for AskChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for AskChannelError {
    fn from(s: String) -> Self {
        AskChannelError(s)
    }
}

enum ConnectError {
    /// Nobody listens under this name.
    Absent,
    /// Somebody other than the run's owner listens under it.
    Foreign(String),
    Other(String),
}

fn connect_one(
    n: &str,
    run_id: &str,
    step: &str,
    owner_uid: u32,
) -> Result<(std::os::unix::net::UnixStream, Hello), ConnectError> {
    use std::os::fd::AsRawFd;
    let s = std::os::unix::net::UnixStream::connect_addr(
        &addr(n).map_err(|e| ConnectError::Other(e.to_string()))?,
    )
    .map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => {
            ConnectError::Absent
        }
        _ => ConnectError::Other(format!("cannot reach run {run_id}: {e}")),
    })?;
    let uid = peer_uid(s.as_raw_fd())
        .map_err(|e| ConnectError::Other(format!("cannot check who listens: {e}")))?;
    if uid != owner_uid && uid != 0 {
        return Err(ConnectError::Foreign(format!(
            "the process listening for `{step}` of run {run_id} belongs to {}, not to the run's owner ({}): refusing to send it anything",
            crate::sys::user_name(uid),
            crate::sys::user_name(owner_uid)
        )));
    }
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(30)));
    let mut reader = std::io::BufReader::new(&s);
    let hello: Hello = read_json(&mut reader).map_err(ConnectError::Other)?;
    if hello.run != run_id || hello.step != step {
        return Err(ConnectError::Other(
            "the listener answered for another run or step: refusing".into(),
        ));
    }
    Ok((s, hello))
}

/// Sends the value and reads the verdict (the answerer's side).
pub(crate) fn send(
    s: &std::os::unix::net::UnixStream,
    value: String,
) -> Result<Verdict, AskChannelError> {
    let mut line = serde_json::to_vec(&Reply { value }).map_err(|e| e.to_string())?;
    line.push(b'\n');
    (&*s)
        .write_all(&line)
        .map_err(|e| format!("cannot send the answer: {e}"))?;
    // Wipe our copy of the value (best effort: the line held it).
    line.iter_mut().for_each(|b| *b = 0);
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(120)));
    let mut reader = std::io::BufReader::new(s);
    Ok(read_json(&mut reader)?)
}

fn read_json<T: serde::de::DeserializeOwned>(r: &mut impl BufRead) -> Result<T, String> {
    use std::io::Read;
    let mut line = Vec::new();
    r.take(MAX_LINE)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("the run did not answer: {e}"))?;
    if line.is_empty() {
        return Err("the run closed the connection (it stopped waiting?)".into());
    }
    serde_json::from_slice(&line).map_err(|_| "the run sent something unexpected".to_string())
}
