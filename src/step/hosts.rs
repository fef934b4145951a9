//! Where a step runs: `on:` a host or a group, resolved to SSH targets.

use minijinja::value::Value;

use super::Env;
use crate::model::*;
use crate::runner::SshTarget;
use crate::template::Target;

/// Resolves the SSH targets of `on:` with run-time values.
pub fn ssh_targets(env: &Env, on: &Named, ctx: &Value) -> Result<Vec<SshTarget>, String> {
    let render = |t: &Tmpl| {
        env.templates
            .render(&t.src, ctx, Target::Text)
            .map_err(|e| crate::template::describe_error(&e))
    };
    // A rendered address or user must stay one host name: never an option or a second host.
    let checked = |t: &Tmpl, what: &str| -> Result<String, String> {
        let v = render(t)?;
        crate::template::check_host_part(what, &v)?;
        Ok(v)
    };
    let render = |t: &Tmpl| checked(t, "user");
    let address = |t: &Tmpl| checked(t, "host address");
    let resolve = |h: &Host| -> Result<SshTarget, String> {
        let jump = match &h.jump {
            Some(j) => Some(match env.rb.host(&j.name) {
                Some(jh) => {
                    let user = jh.user.as_ref().map(&render).transpose()?;
                    crate::fmt::destination(user.as_deref(), &address(&jh.address)?, jh.port)
                }
                None => j.name.clone(),
            }),
            None => None,
        };
        Ok(SshTarget {
            name: h.name.clone(),
            user: h.user.as_ref().map(&render).transpose()?,
            address: address(&h.address)?,
            port: h.port,
            jump,
            identity_file: h.identity_file.clone(),
            known_hosts: h.known_hosts.clone(),
        })
    };
    env.rb
        .target_hosts(&on.name)
        .into_iter()
        .map(resolve)
        .collect()
}
