//! The one integration test binary: runs the real `runbook` binary on real files (and, in the
//! exec/ssh/lab modules, against real processes and servers).

mod exec;
mod harness;
mod http;
mod httpd;
mod journal;
mod lab;
mod operator;
mod plan;
mod runsafety;
mod ssh;
mod sshd;
mod validate;
