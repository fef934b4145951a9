//! Sessions: what a run needs around the engine, for any front end (the CLI today, a server
//! tomorrow): run ids, where runs live ([`store`]), starting a run's directory, lock and
//! liveness ([`start`]), and what a resumed run already knows ([`prior`], read from its
//! journal).

mod dirs;
pub(crate) mod error;
mod id;
pub(crate) mod prior;
pub(crate) mod request;
pub(crate) mod resume;
pub(crate) mod shared;
pub(crate) mod start;
pub(crate) mod store;

pub use id::RunId;
