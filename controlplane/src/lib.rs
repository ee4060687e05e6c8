//! The Furiwake appliance: configuration, control plane, and the wiring of
//! platform and dataplane behind the `furiwake` binary.

pub mod appliance;
pub mod arp;
pub mod build;
pub mod config;
pub mod console;
pub mod health;
pub mod icmp;
pub mod loads;
