//! What each forwarding mode does to a packet, as pure functions over frame
//! bytes: address and port rewriting with incremental checksums (`nat`,
//! used by NAT, full-NAT and dsr-dscp, with `set_dscp`), encapsulation
//! (`tunnel`, dsr-tunnel), the answers to refused connections and to
//! packets too big for a tunnel (`refusal`), ICMP error translation
//! (`icmp_xlate`), full-NAT's per-worker source ports (`local_ports`), and
//! the PROXY protocol header full-NAT puts before a client's stream
//! (`proxy_header`).
//! The pipeline decides which applies; these only rewrite. (dsr-l2 changes
//! the Ethernet addresses only, which every mode does.)

pub mod icmp_xlate;
pub mod local_ports;
pub mod nat;
pub mod proxy_header;
pub mod refusal;
pub mod synproxy;
pub mod tunnel;
pub mod tunnel6;
pub mod xlate;

pub use icmp_xlate::{translate_icmp_error, IcmpXlate};
pub use local_ports::{LocalPorts, HOST_PORT_MAX, HOST_PORT_MIN, LOCAL_PORT_MAX, LOCAL_PORT_MIN, PROBE_PORT_MIN};
pub use nat::{rewrite, rewrite6, rewrite_addrs, rewrite_ports, set_dscp, set_dscp6};
pub use refusal::{build_frag_needed, build_refusal, frag_needed_len, is_unicast_host, refusal_len};
pub use tunnel::{encapsulate, Outer, TunnelKind};
pub use tunnel6::{build_packet_too_big6, encapsulate6, packet_too_big6_len, Outer6};
