//! The fingerprint of a runbook with every runbook it calls through `uses:`.
//!
//! A run records it when it starts and `resume`/`rollback` refuse to go on if it changed:
//! the called steps (and their rollbacks) are part of the run as much as the caller's, so
//! an edited `lib/unseal.yaml` must be noticed like an edited caller.

use std::path::{Path, PathBuf};

use crate::load::{Node, NodeKind};

/// Calls deeper than this are refused by `validate` anyway.
const MAX_DEPTH: usize = 16;

/// SHA-256 of `top_bytes` alone when the runbook calls nothing (what older runs recorded),
/// else of its bytes followed by each called file's path and bytes, in call order.
pub(crate) fn composition_sha256(top: &Path, top_bytes: &[u8]) -> String {
    let mut seen: Vec<PathBuf> = vec![std::fs::canonicalize(top).unwrap_or(top.to_path_buf())];
    let mut called: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    walk(top, top_bytes, 0, &mut seen, &mut called);
    if called.is_empty() {
        return crate::fmt::sha256_hex(top_bytes);
    }
    let mut all = top_bytes.to_vec();
    for (path, bytes) in called {
        all.extend_from_slice(b"\0uses\0");
        all.extend_from_slice(path.as_bytes());
        all.push(0);
        match bytes {
            Some(b) => all.extend_from_slice(&b),
            None => all.extend_from_slice(b"\0unreadable"),
        }
    }
    crate::fmt::sha256_hex(&all)
}

fn walk(
    path: &Path,
    bytes: &[u8],
    depth: usize,
    seen: &mut Vec<PathBuf>,
    called: &mut Vec<(String, Option<Vec<u8>>)>,
) {
    if depth >= MAX_DEPTH {
        return;
    }
    let loaded = crate::load::load_bytes(path.display().to_string(), bytes.to_vec());
    let Ok(Some(root)) = loaded.root else {
        return;
    };
    let base = path.parent().unwrap_or(Path::new(""));
    for rel in uses_of(&root) {
        let child = base.join(&rel);
        let canon = std::fs::canonicalize(&child).unwrap_or(child.clone());
        let again = seen.contains(&canon);
        let data = crate::load::read_bounded(&child).ok();
        called.push((child.display().to_string(), data.clone()));
        if again {
            continue;
        }
        seen.push(canon);
        if let Some(d) = data {
            walk(&child, &d, depth + 1, seen, called);
        }
    }
}

/// The `uses:` paths of a runbook's steps and finally steps, in order.
fn uses_of(root: &Node) -> Vec<String> {
    let mut out = Vec::new();
    let NodeKind::Map(pairs) = &root.kind else {
        return out;
    };
    for (k, v) in pairs {
        if !matches!(k.as_str(), Some("steps" | "finally")) {
            continue;
        }
        let NodeKind::Seq(steps) = &v.kind else {
            continue;
        };
        for st in steps {
            if let NodeKind::Map(fields) = &st.kind
                && let Some((_, u)) = fields.iter().find(|(k, _)| k.as_str() == Some("uses"))
                && let Some(rel) = u.as_str()
            {
                out.push(rel.to_string());
            }
        }
    }
    out
}
