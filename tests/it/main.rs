//! The one integration test binary: runs the real `runbook` binary on real files (and, in the
//! exec/ssh/lab modules, against real processes and servers).

mod approvals;
mod ask;
mod ask_lazy;
mod exec;
mod hardening;
mod harness;
mod hostile;
mod http;
mod httpd;
mod injection;
mod journal;
mod lab;
mod operator;
mod pg;
mod pgstore;
mod plan;
mod promises;
mod runsafety;
mod scoped;
mod secrets;
mod ssh;
mod sshd;
mod store;
mod taint;
mod targets;
mod team;
mod uses;
mod validate;
