//! The fingerprint of a runbook with every runbook it calls through `uses:`.
//!
//! A run records it when it starts and `resume`/`rollback` refuse to go on if it changed:
//! the called steps (and their rollbacks) are part of the run as much as the caller's, so
//! an edited `lib/unseal.yaml` must be noticed like an edited caller.

use std::path::{Path, PathBuf};

/// Calls deeper than this are refused by `validate` anyway.
const MAX_DEPTH: usize = 16;

/// SHA-256 of `top_bytes` alone when the runbook calls nothing (what older runs recorded),
/// else of its bytes followed by each call's `uses:` path and the called file's bytes, in
/// call order (depth first).
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
    let rels: Vec<String> = super::compose::calls(&root)
        .into_iter()
        .filter_map(|u| u.as_str().map(str::to_string))
        .collect();
    for rel in rels {
        let child = base.join(&rel);
        let canon = std::fs::canonicalize(&child).unwrap_or(child.clone());
        let again = seen.contains(&canon);
        let data = crate::load::read_bounded(&child).ok();
        // The path as the caller wrote it (the same whether the run was started with a
        // relative path and resumed with the absolute one).
        called.push((rel.clone(), data.clone()));
        if again {
            continue;
        }
        seen.push(canon);
        if let Some(d) = data {
            walk(&child, &d, depth + 1, seen, called);
        }
    }
}
