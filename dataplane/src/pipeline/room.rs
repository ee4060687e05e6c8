//! Room in a worker's connection table for a new entry: the unreplied
//! cap per service, the early drop of the oldest unreplied entry, and
//! full-NAT ports given back by unanswered entries (README, "Defence";
//! Linux conntrack's early drop); and the per-source cap, which answers
//! SYNs with cookies rather than evict.

use super::Shard;
use crate::conntrack::{EntryFlags, FlowId};
use crate::state::snapshot::{Forwarding, Snapshot};

/// Entries a full table looks at for expired ones before it evicts or
/// refuses (`FlowTable::reclaim`): a bounded cost per new connection.
const RECLAIM_SCAN: u32 = 64;

impl Shard {
    /// Makes room for a new entry (TCP or UDP: both start unreplied) of
    /// service slot `vs`. First the cap: a service holding
    /// `unreplied_per_service` unreplied entries gives up its own oldest
    /// (so a flood at one service churns its own entries only).
    /// Then, when the table is full or holds `embryonic_max` unreplied
    /// entries, the oldest unreplied entry goes (a SYN or spoofed-UDP
    /// flood's, most likely: Linux conntrack's early drop of entries not
    /// `IPS_ASSURED`), never one its server answered. False when the table
    /// is full of answered entries.
    #[inline]
    pub(super) fn make_room(&mut self, snap: &Snapshot, vs: u16, proto: u8) -> bool {
        if let Some(id) = self.over_cap(vs, proto) {
            self.remove(snap, id);
            self.counters.unreplied_capped.inc();
        }
        if self.table.is_full() {
            // What expired since the sweep last came by goes first.
            self.expire_by(snap, self.now, Some(RECLAIM_SCAN));
        }
        let over = self.table.unreplied() >= self.config.embryonic_max;
        if !over && !self.table.is_full() {
            return true;
        }
        match self.table.oldest_unreplied() {
            Some(id) => {
                self.remove(snap, id);
                self.counters.embryonic_evicted.inc();
                true
            }
            None => !self.table.is_full(),
        }
    }

    /// The entry the service cap gives up for a new one of `vs`: its
    /// oldest unreplied entry, when it holds `unreplied_per_service`
    /// (`FlowTable::oldest_unreplied_where`).
    fn over_cap(&self, vs: u16, proto: u8) -> Option<FlowId> {
        let t = &self.table;
        (t.unreplied_of_service(vs) >= self.config.unreplied_per_service).then(|| t.oldest_unreplied_where(proto, |f| f.vs == vs)).flatten()
    }

    /// Whether `src`'s source bucket holds `unreplied_per_source`
    /// unreplied entries: its next SYNs are answered with cookies (a
    /// service whose `syn_proxy` is not off), so they make no entry until
    /// the client answers. Never an eviction: a sender that spoofs a
    /// victim's address lands in the victim's bucket, and must not be
    /// able to evict the victim's handshakes (the victim's own SYNs are
    /// answered with cookies meanwhile, and connect).
    #[inline]
    pub(super) fn source_over_cap(&self, src: u32) -> bool {
        self.table.unreplied_of_source(src) >= self.config.unreplied_per_source
    }

    /// Full-NAT's local ports of `vs` (on `addrs`) ran out: gives back the
    /// port of its oldest unreplied full-NAT entry on one of them (a
    /// spoofed flood's, most likely; not a hairpin one's, on a self IP),
    /// so unanswered connections cannot hold every port. False when none
    /// is among the oldest.
    pub(super) fn free_a_port(&mut self, snap: &Snapshot, vs: u16, proto: u8, addrs: &[u32]) -> bool {
        match self.table.oldest_unreplied_where(proto, |f| f.vs == vs && f.mode == Forwarding::FullNat && !f.flags.contains(EntryFlags::BORROWED_PORT) && addrs.contains(&f.local_ip)) {
            Some(id) => {
                self.remove(snap, id);
                self.counters.unreplied_capped.inc();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests;
