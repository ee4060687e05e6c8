//! What each forwarding mode does to a packet, as pure functions over frame
//! bytes: address and port rewriting with incremental checksums (`nat`,
//! used by NAT and full-NAT), the answers to refused connections
//! (`refusal`), ICMP error translation (`icmp_xlate`), and full-NAT's per-worker source ports (`local_ports`).
//! The pipeline decides which applies; these only rewrite.
//!
//! Room for the direct-server-return modes: `dsr_l2` (MAC rewrite),
//! `dsr_dscp` and `dsr_tunnel` (encapsulation) will sit beside `nat`.

pub mod icmp_xlate;
pub mod local_ports;
pub mod nat;
pub mod refusal;

pub use icmp_xlate::{translate_icmp_error, IcmpXlate};
pub use local_ports::{LocalPorts, LOCAL_PORT_MAX, LOCAL_PORT_MIN, PROBE_PORT_MIN};
pub use nat::{rewrite, rewrite_addrs, rewrite_ports, set_dscp};
pub use refusal::{build_refusal, is_unicast_host, refusal_len};
