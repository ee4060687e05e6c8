//! The control plane's features, one folder each. A module holds its
//! state and has up to four faces: its configuration (what the lb module
//! compiles for it), its step in the control loop, its console commands
//! (`show` renderers and actions) and its metrics and report lines. The
//! composition root (`appliance`) owns the modules and wires them; a
//! module reaches another only through its methods.
//!
//! - `arp`: neighbours, next hops, gratuitous ARP, ICMP echo.
//! - `health`: the probes and the servers' states.
//! - `host`: the exception path's kernel side: the appliance's own
//!   network namespace behind the host link, its addresses.
//! - `l7`: the L7 engine, the appliance's own HTTP reverse proxy there.
//! - `lb`: the configuration compiled into the workers' snapshot and
//!   changed at run time; the operator's server states; loads.
//! - `console`: the operator's CLI and its dispatcher over the others.
//! - `metrics`: the Prometheus server and text format.
//! - `text`: tables and the configuration's TOML, for every face.
//!
//! Dependencies go one way: console -> lb -> {arp, health} -> metrics,
//! text, all over `runtime`. Coming: `vrrp` (RFC 5798 failover of the
//! VIPs: owns the addresses the arp module announces, gates the lb
//! module's publishing on mastership) and `sync` (connection-state sync to
//! the peer, over the workers' `ctl::events` rings; its datagram format,
//! `sync::wire`, is there), each a folder here with the same faces.

pub mod arp;
pub mod console;
pub mod health;
pub mod host;
pub mod l7;
pub mod lb;
pub mod metrics;
pub mod sync;
pub mod text;
pub mod vrrp;
