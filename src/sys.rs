//! What the engine needs from the operating system: who and where it runs, and files and
//! directories only their owner can read (logs, the journal, answers, locks).

/// The OS user running this process: the real uid's name, not `$USER` (which anyone can set,
/// and which gate checks such as `other_approver` must not trust).
pub(crate) fn current_user() -> String {
    // SAFETY: getuid has no preconditions.
    user_name(unsafe { libc::getuid() })
}

/// The name of user `uid` (from /etc/passwd), or `uid N`.
pub(crate) fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.get(2) == Some(&uid.to_string().as_str())).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// This machine's host name.
pub(crate) fn current_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into())
}

/// Creates (or appends to) a file readable only by its owner.
pub(crate) fn open_private(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
        if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(std::io::Error::other(format!(
                "{} is a symbolic link; refusing to write through it",
                dir.display()
            )));
        }
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        // A symlink planted where a log or the journal goes is refused, not followed.
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Creates a directory (and parents) readable only by its owner.
pub(crate) fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Whether `user` may answer a gate whose `approvers:` is `allowed` (users, `group:NAME`);
/// an empty list allows anyone. Group membership comes from /etc/group and /etc/passwd.
pub(crate) fn may_answer(allowed: &[String], user: &str) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let primary_gid = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&user)).then(|| f.get(3).map(|g| g.to_string()))?
    });
    allowed.iter().any(|a| match a.strip_prefix("group:") {
        None => a == user,
        Some(group) => groups.lines().any(|l| {
            let f: Vec<&str> = l.split(':').collect();
            f.first() == Some(&group)
                && (f.get(2).map(|g| g.to_string()) == primary_gid
                    || f.get(3)
                        .is_some_and(|m| m.split(',').any(|m| m.trim() == user)))
        }),
    })
}

/// Why [`read_regular_bounded`] refused a file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BoundedReadError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// A FIFO, a device, a directory…
    #[error("not a regular file")]
    NotRegular,
    /// Bigger than allowed (`size`: its size when known beforehand).
    #[error("{}", too_big(*.size, *.max))]
    TooBig { size: Option<u64>, max: u64 },
    #[error("not UTF-8 text")]
    NotText,
}

fn too_big(size: Option<u64>, max: u64) -> String {
    match size {
        Some(n) => format!("{n} bytes, more than the {max} allowed"),
        None => format!("more than the {max} bytes allowed"),
    }
}

/// Reads a regular file of at most `max` bytes as text: a FIFO, a device (`/dev/zero`), a
/// directory or a bigger file is refused with a one-line reason, never read or waited on.
pub(crate) fn read_regular_bounded(
    path: &std::path::Path,
    max: u64,
) -> Result<String, BoundedReadError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO must not wait for a writer; the type is checked on the
    // opened file (no swap between the check and the read).
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(BoundedReadError::NotRegular);
    }
    if m.len() > max {
        let size = Some(m.len());
        return Err(BoundedReadError::TooBig { size, max });
    }
    let mut buf = Vec::new();
    f.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(BoundedReadError::TooBig { size: None, max });
    }
    String::from_utf8(buf).map_err(|_| BoundedReadError::NotText)
}

/// 64 random bits from the kernel (run ids, answer nonces, the ask socket's fallback name:
/// nobody may guess them); falls back to the standard library's randomly keyed hasher.
pub(crate) fn random_u64() -> u64 {
    use std::io::Read;
    let mut buf = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok()
    {
        return u64::from_le_bytes(buf);
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
