//! The control plane's features, one folder each.

pub mod arp;
pub mod console;
pub mod health;
pub mod lb;
pub mod text;
