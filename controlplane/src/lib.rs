//! The Furiwake appliance: configuration, control plane, and the wiring of
//! platform and dataplane behind the `furiwake` binary.

pub mod appliance;
pub mod config;
pub mod fuzz;
pub mod modules;
pub mod out;
pub mod runtime;
pub mod service;

/// `furiwake console` and the console's language (`furiwake::console::client::main`).
pub use modules::console;
