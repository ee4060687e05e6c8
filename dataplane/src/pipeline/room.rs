//! Room in a worker's connection table for a new entry: the unreplied
//! caps (per service, per source bucket), the early drop of the oldest
//! unreplied entry, and full-NAT ports given back by unanswered entries
//! (README, "Defence"; Linux conntrack's early drop).

use super::Shard;
use crate::conntrack::{EntryFlags, FlowId};
use crate::state::snapshot::{Forwarding, Snapshot};

impl Shard {
    /// Makes room for a new entry (TCP or UDP: both start unreplied) of
    /// service slot `vs` from `src`. First the caps: a service holding
    /// `unreplied_per_service` unreplied entries, or a source bucket
    /// holding `unreplied_per_source`, gives up its own oldest (so a flood
    /// at one service, or from one source, churns its own entries only).
    /// Then, when the table is full or holds `embryonic_max` unreplied
    /// entries, the oldest unreplied entry goes (a SYN or spoofed-UDP
    /// flood's, most likely: Linux conntrack's early drop of entries not
    /// `IPS_ASSURED`), never one its server answered. False when the table
    /// is full of answered entries.
    #[inline]
    pub(super) fn make_room(&mut self, snap: &Snapshot, vs: u16, src: u32, proto: u8) -> bool {
        if let Some(id) = self.over_cap(vs, src, proto) {
            self.remove(snap, id);
            self.counters.unreplied_capped.inc();
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

    /// The entry a cap gives up for a new one of `vs` from `src`: the
    /// oldest unreplied entry of the same service, or of the same source
    /// bucket, when that group is at its cap (`FlowTable::oldest_unreplied_where`).
    fn over_cap(&self, vs: u16, src: u32, proto: u8) -> Option<FlowId> {
        let t = &self.table;
        if t.unreplied_of_service(vs) >= self.config.unreplied_per_service {
            return t.oldest_unreplied_where(proto, |f| f.vs == vs);
        }
        if t.unreplied_of_source(src) >= self.config.unreplied_per_source {
            return t.oldest_unreplied_where(proto, |f| t.same_source(f.client_ip, src));
        }
        None
    }

    /// Full-NAT's local ports of `vs` ran out: gives back the port of its
    /// oldest unreplied full-NAT entry (a spoofed flood's, most likely),
    /// so unanswered connections cannot hold every port. False when none
    /// is among the oldest.
    pub(super) fn free_a_port(&mut self, snap: &Snapshot, vs: u16, proto: u8) -> bool {
        match self.table.oldest_unreplied_where(proto, |f| f.vs == vs && f.mode == Forwarding::FullNat && !f.flags.contains(EntryFlags::BORROWED_PORT)) {
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
