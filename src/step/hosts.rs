//! Where a step runs: `on:` a host or a group, resolved to SSH targets. One resolver for the
//! plan (masked) and the run (real values, each part checked to be one host name).

use minijinja::value::Value;

use super::render::{HostPart, Renderer};
use crate::model::*;
use crate::runner::{SshTarget, StepError};

/// Resolves the hosts of `on:` (a host or a group) with `r`.
pub(crate) fn resolve(
    r: &dyn Renderer,
    rb: &Runbook,
    on: &Named,
    ctx: &Value,
) -> Result<Vec<SshTarget>, StepError> {
    let part = |h: &Host, t: &Tmpl, p: HostPart| {
        r.host_part(t, ctx, p)
            .map_err(|e| StepError::hosts(format!("{} of host `{}`: {e}", p.as_str(), h.name)))
    };
    let resolve = |h: &Host| -> Result<SshTarget, StepError> {
        let address = part(h, &h.address, HostPart::Address)?;
        let user = match &h.user {
            Some(u) => Some(part(h, u, HostPart::User)?),
            None => None,
        };
        let jump = match &h.jump {
            Some(j) => Some(match rb.host(&j.name) {
                Some(jh) => {
                    let user = match &jh.user {
                        Some(u) => Some(part(jh, u, HostPart::User)?),
                        None => None,
                    };
                    let address = part(jh, &jh.address, HostPart::Address)?;
                    crate::fmt::destination(user.as_deref(), &address, jh.port)
                }
                None => j.name.clone(),
            }),
            None => None,
        };
        Ok(SshTarget {
            name: h.name.clone(),
            user,
            address,
            port: h.port,
            jump,
            identity_file: h.identity_file.clone(),
            known_hosts: h.known_hosts.clone(),
        })
    };
    rb.target_hosts(&on.name).into_iter().map(resolve).collect()
}

/// Resolves the SSH targets of `on:` with run-time values.
pub(crate) fn ssh_targets(
    env: &super::Env,
    on: &Named,
    ctx: &Value,
) -> Result<Vec<SshTarget>, StepError> {
    resolve(&super::render::Live(env), &env.rb, on, ctx)
}
