//! The pair's ownership key changed (`SyncControl::set_owner_key`: this
//! box adopted its peer's, docs/architecture.md "Hashing"): the worker
//! takes the new key, and drops the entries another worker owns under it.

use super::super::{ended, owner, Owners, Shard};
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
            r.rehome = Some(0);
        }
        let Some(mut cursor) = r.rehome else { return };
        let owners = Owners::new(self.config.workers, self.config.owner_key);
        let cap = self.table.capacity();
        let end = cursor.saturating_add(r.budget).min(cap);
        while cursor < end {
            let theirs = self.table.get(cursor).is_some_and(|f| owner(snap, owners, f.client_ip, f.client_port, f.vip, f.vport, f.proto) != self.config.id);
            if theirs {
                if let Some(f) = self.table.remove(cursor) {
                    ended(&f, snap, self.now, &self.counters, &mut self.local_ports, &mut self.persist);
                    self.counters.sync.rehomed.inc();
                }
            }
            cursor += 1;
        }
        r.rehome = (cursor < cap).then_some(cursor);
    }
}
