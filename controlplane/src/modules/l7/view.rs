//! What the L7 engine serves, as the control plane last published it: the
//! `Local` services of the snapshot (their VIP, their sources, their
//! pool's members with the health and operator states the workers see)
//! and the snapshot itself, whose schedules the engine picks servers with
//! (`lb::Scheduler`, the same code and the same states as L4).

use furiwake_dataplane::state::snapshot::{Forwarding, Snapshot};
use std::net::{Ipv4Addr, SocketAddrV4};

/// One `protocol = "http"` virtual server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Its snapshot slot (`Snapshot::services`).
    pub slot: u16,
    pub name: String,
    /// Where it listens (the VIP, on `fwhost0`).
    pub addr: SocketAddrV4,
    /// Where its connections to servers come from.
    pub sources: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, Default)]
pub struct View {
    pub services: Vec<Service>,
    pub snap: Snapshot,
}

impl View {
    /// The view of `snap`.
    pub fn of(snap: &Snapshot) -> View {
        let services = snap
            .services
            .iter()
            .enumerate()
            .filter(|(_, v)| v.forwarding == Forwarding::Local && !v.retired)
            .map(|(i, v)| Service {
                slot: i as u16,
                name: v.name.clone(),
                addr: SocketAddrV4::new(Ipv4Addr::from(v.ip), v.port),
                sources: v.local_addrs.iter().map(|a| Ipv4Addr::from(*a)).collect(),
            })
            .collect();
        View { services, snap: snap.clone() }
    }

    pub fn service(&self, slot: u16) -> Option<&Service> {
        self.services.iter().find(|s| s.slot == slot)
    }
}
