//! Room in a worker's connection table for a new entry: the unreplied
//! cap per service, the early drop of the oldest unreplied entry, and
//! full-NAT ports given back by unanswered entries (README, "Defence";
//! Linux conntrack's early drop); and the per-source cap, which answers
//! SYNs with cookies rather than evict. And expiry: the sweep's share of
//! each pass, a full table's reclaim, expiry on lookup.

use super::family::Net;
use super::{ended, Shard, EXPIRE_BUDGET};
use crate::conntrack::{EntryFlags, FlowId};
use crate::state::snapshot::{Forwarding, Snapshot};

/// Entries a full table looks at for expired ones before it evicts or
/// refuses (`FlowTable::reclaim`): a bounded cost per new connection.
const RECLAIM_SCAN: u32 = 64;

impl<A: Net> Shard<A> {
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
    pub(super) fn source_over_cap(&self, src: A) -> bool {
        self.table.unreplied_of_source(src) >= self.config.unreplied_per_source
    }

    /// Full-NAT's local ports of `vs` (on `addrs`) ran out: gives back the
    /// port of its oldest unreplied full-NAT entry on one of them (a
    /// spoofed flood's, most likely; not a hairpin one's, on a self IP),
    /// so unanswered connections cannot hold every port. False when none
    /// is among the oldest.
    pub(super) fn free_a_port(&mut self, snap: &Snapshot, vs: u16, proto: u8, addrs: &[A]) -> bool {
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

/// Expiry: the sweep's pass, a full table's reclaim and expiry on lookup
/// (`conntrack::sweep`).
impl<A: Net> Shard<A> {
    /// Removes idle connections whose time has come. Sync reports each
    /// (`Delete`, expired), but for copies of the peer's entries that saw
    /// no packet here.
    pub(super) fn expire(&mut self, snap: &Snapshot, now: u32) {
        self.expire_by(snap, now, None);
    }

    /// `expire`, or with `Some(scan)` the table's `reclaim` of the next
    /// `scan` entries (the table is full).
    pub(super) fn expire_by(&mut self, snap: &Snapshot, now: u32, reclaim: Option<u32>) -> u32 {
        let (counters, local_ports, persist, sync) = (&self.counters, &mut self.local_ports, &mut self.persist, &mut self.sync);
        let on_expire = |f: &crate::conntrack::Flow<A>| {
            if let Some(f4) = A::v4_flow(f).filter(|f| !f.flags.contains(EntryFlags::SYNCED)) {
                Shard::emit_delete(sync, counters, f4, now, true);
            }
            ended(f, snap, now, counters, local_ports, persist)
        };
        match reclaim {
            Some(scan) => self.table.reclaim(now, scan, on_expire),
            None => self.table.expire(now, EXPIRE_BUDGET, on_expire),
        }
    }

    /// The table's lookup of `key` (hashed `hash`), but an entry past its
    /// deadline that the sweep has not reached yet (`conntrack::sweep`) is
    /// expired here, as the sweep would have, and not found (Linux
    /// conntrack's expiry on lookup). Every lookup of the pipeline goes
    /// through it, so nothing is revived, answered or blocked by an entry
    /// whose time is up.
    #[inline]
    pub(super) fn lookup_live(&mut self, snap: &Snapshot, key: &crate::conntrack::FlowKey<A>, hash: u32) -> Option<(FlowId, crate::conntrack::Dir)> {
        let found = self.table.lookup(key, hash)?;
        if self.table.get(found.0).is_some_and(|f| f.expire <= self.now) {
            self.expire_found(snap, found.0);
            return None;
        }
        Some(found)
    }

    /// Removes connection `id` as the sweep would have: found by a lookup
    /// after its deadline, before the sweep came by (`conntrack::sweep`).
    pub(super) fn expire_found(&mut self, snap: &Snapshot, id: FlowId) {
        let now = self.now;
        if let Some(f) = self.table.remove(id) {
            if let Some(f4) = A::v4_flow(&f).filter(|f| !f.flags.contains(EntryFlags::SYNCED)) {
                Shard::emit_delete(&mut self.sync, &self.counters, f4, now, true);
            }
            ended(&f, snap, now, &self.counters, &mut self.local_ports, &mut self.persist);
        }
    }
}
