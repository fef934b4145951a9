//! Step kinds: how each kind of step is rendered, run and judged.

pub mod context;
pub mod expect;
pub mod readable;
