//! Health checks.

pub mod probes;
