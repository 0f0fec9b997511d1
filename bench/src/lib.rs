//! Duet's load generator and consistency checker, as a library so the test
//! suite can run a smoke-sized benchmark in-process (the `duet-bench`
//! binary is a thin CLI over it).

pub mod append;
pub mod chat;
pub mod checker;
pub mod client;
pub mod connections;
pub mod floor;
pub mod pacer;
pub mod proxy;
pub mod report;
mod session;
