//! Neighbours: ARP and ICMP echo on the control lcore.

pub mod icmp;
pub mod neighbor;
