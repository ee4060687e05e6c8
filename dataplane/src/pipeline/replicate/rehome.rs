//! The pair's ownership key changed (`SyncControl::set_owner_key`: this
//! box adopted its peer's, docs/architecture.md "Hashing"): the worker
//! takes the new key, its full-NAT port shares with it (`LocalPorts::rekey`:
//! the ports of the connections it keeps stay taken), and drops the
//! entries another worker owns under it. The steering's tables are built
//! here, in one pass (a few milliseconds with many local addresses, once
//! per adopted key).

use super::super::{ended, owner, Owners, Shard};
use crate::conntrack::{Flow, Forwarding};
use super::Replication;
use crate::state::snapshot::Snapshot;

impl Shard {
    /// Takes a new ownership key from the control cell, then walks up to
    /// `Replication::budget` slots a pass, dropping each entry this worker
    /// no longer owns: without a `Delete` (the peer holds the connection;
    /// the bulk dump the control plane asks for again brings it back to
    /// its owner here), its port and counters released
    /// (`SyncCounters::rehomed`).
    pub(super) fn rehome_step(&mut self, snap: &Snapshot, r: &mut Replication) {
        let key = r.control.owner_key();
        if key != 0 && key != self.config.owner_key {
            self.config.owner_key = key;
            // Slow path, once per adopted key: the tables of the new
            // steering (no allocation in `rekey`).
            self.owners = Owners::new(self.config.workers, key);
            self.local_ports.rekey(&self.owners);
            // The IPv6 shard follows the key too (its entries are not
            // synced: none to rehome).
            if let Some(v6) = self.v6.as_mut() {
                v6.config.owner_key = key;
                v6.owners.clone_from(&self.owners);
                v6.local_ports.rekey(&self.owners);
            }
            r.rehome = Some(0);
        }
        let Some(mut cursor) = r.rehome else { return };
        let cap = self.table.capacity();
        let end = cursor.saturating_add(r.budget).min(cap);
        while cursor < end {
            if self.table.get(cursor).is_some_and(|f| !self.owns(snap, f)) {
                if let Some(f) = self.table.remove(cursor) {
                    ended(&f, snap, self.now, &self.counters, &mut self.local_ports, &mut self.persist);
                    self.counters.sync.rehomed.inc();
                }
            }
            cursor += 1;
        }
        r.rehome = (cursor < cap).then_some(cursor);
    }

    /// Whether this worker owns `f` under the current key: its client side,
    /// and the local port its replies come back to (a borrowed one too:
    /// replies go where the port is queued).
    fn owns(&self, snap: &Snapshot, f: &Flow) -> bool {
        let id = self.config.id;
        let local = matches!(f.mode, Forwarding::FullNat | Forwarding::Snat);
        owner(snap, &self.owners, f.client_ip, f.client_port, f.vip, f.vport, f.proto) == id && (!local || self.owners.worker(f.local_ip, f.local_port) == id)
    }
}
