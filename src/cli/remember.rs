//! What a run needs to be continued later, recorded at `exec` in the run directory's options file (`RunDir::options`)
//! (0600): the paths of the SSH config and known_hosts, and how it ran (parallelism, connect
//! timeout, `--no-wait`, `--no-rollback`). Input values are in the journal already (`values`
//! of `run-started`). Never secrets: secret inputs are read again on resume; answers and attach targets (a webhook URL may carry a token) are
//! not kept. `runbook resume RUN` and `runbook rollback RUN` use these unless flags override.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RunOpts;
use crate::session::store::RunDir;

/// The recorded options (fields may be added, never renamed).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Remembered {
    #[serde(default)]
    pub(crate) ssh_config: Option<PathBuf>,
    #[serde(default)]
    pub(crate) known_hosts: Option<PathBuf>,
    #[serde(default)]
    pub(crate) ssh_connect_timeout_ms: Option<u64>,
    #[serde(default)]
    pub(crate) parallel: Option<usize>,
    #[serde(default)]
    pub(crate) no_wait: bool,
    #[serde(default)]
    pub(crate) no_rollback: bool,
}

fn absolute(p: &Option<PathBuf>) -> Option<PathBuf> {
    p.as_ref()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
}

/// Records `f` in `run_dir` (the first exec writes it; a resume updates it with what it used).
pub(crate) fn save(run_dir: &Path, f: &RunOpts) -> std::io::Result<()> {
    let r = Remembered {
        ssh_config: absolute(&f.ssh.ssh_config),
        known_hosts: absolute(&f.ssh.known_hosts),
        ssh_connect_timeout_ms: f
            .ssh
            .ssh_connect_timeout
            .map(|d| d.as_millis().try_into().unwrap_or(u64::MAX)),
        parallel: f.parallel,
        no_wait: f.no_wait,
        no_rollback: f.no_rollback,
    };
    let path = RunDir::new(run_dir).options();
    let tmp = path.with_file_name(format!(".{}.tmp", crate::journal::file_name(&path)));
    let _ = std::fs::remove_file(&tmp);
    {
        use std::io::Write;
        let mut file = crate::sys::open_private(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(&r).unwrap_or_default())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, &path)
}

/// The options recorded for the run in `run_dir` (none for runs recorded before this existed).
pub(crate) fn load(run_dir: &Path) -> Remembered {
    std::fs::read(RunDir::new(run_dir).options())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// `f` with every option the operator did not give taken from what the run recorded.
pub(crate) fn merged(run_dir: &Path, f: &RunOpts) -> RunOpts {
    let r = load(run_dir);
    let mut out = f.clone();
    if out.ssh.ssh_config.is_none() {
        out.ssh.ssh_config = r.ssh_config;
    }
    if out.ssh.known_hosts.is_none() {
        out.ssh.known_hosts = r.known_hosts;
    }
    if out.ssh.ssh_connect_timeout.is_none() {
        out.ssh.ssh_connect_timeout = r
            .ssh_connect_timeout_ms
            .map(std::time::Duration::from_millis);
    }
    if out.parallel.is_none() {
        out.parallel = r.parallel;
    }
    out.no_wait |= r.no_wait;
    out.no_rollback |= r.no_rollback;
    out
}
