//! The worker's side of connection-state sync with the HA peer (issue 12;
//! the records and rings are `ctl::events`).
//!
//! Out: the worker pushes a record into its events ring when it makes an
//! entry (`Create`, `connect`), when a packet changes an entry's TCP state
//! (`Update`, `forwarding`), when an entry goes (`Delete`: closed, or
//! expired with `FLAG_EXPIRED`), and when it makes or drops a persistence
//! record (`Persist`, `PersistDelete`). A full ring drops the record and
//! counts it (`SyncCounters::dropped`); nothing waits.
//!
//! Walks: every `WorkerConfig::sync_refresh` ticks, and whenever the
//! control plane asks (`SyncControl::request_bulk`: the peer started or
//! came back), the worker pushes a `Refresh` for every live entry, peer's
//! copies included (after a restart of the peer they may be all it has).
//! A walk scans at most `WALK_BUDGET` table slots per pass and pauses while
//! the ring has less than a quarter of its slots free, keeping that room
//! for live events; it resumes at the next pass. A bulk request restarts a
//! walk under way; when a bulk walk completes the worker publishes its
//! generation (`SyncControl::bulk_done`).
//!
//! In: each pass the worker applies up to `INSTALL_BUDGET` records from its
//! installs ring. An entry installed from the peer is found by this box's
//! own virtual server and server (by address: slot indexes differ between
//! boxes), gets the time it had left there, holds its full-NAT port here
//! (`LocalPorts::reserve`), counts like one made here (`flows`,
//! `conns_active`; not `conns_new`), and is marked `EntryFlags::SYNCED`:
//!
//! - it is not reported back as a `Create` (no echo between two active
//!   boxes), and its idle expiry is not reported (the peer, which forwards
//!   it, is the authority); the first packet forwarded here clears the
//!   mark, and from then on it is reported like the worker's own;
//! - a peer's `Refresh` of an entry this box forwards (not `SYNCED`) only
//!   lengthens its life, never shortens it or moves its state back; a
//!   `Create` or `Update` (a packet the peer just saw) sets both;
//! - a peer's `Delete` with `FLAG_EXPIRED` removes only `SYNCED` copies; a
//!   close removes any copy.
//!
//! A full-NAT port that is not free here (in use, another worker's share:
//! the pair's worker counts differ, or an address this box lacks) is counted
//! (`InstallFailure::LocalPort`) and the entry is installed anyway, marked
//! `BORROWED_PORT` so that its end does not free a port it does not hold:
//! the connection uses that port on the wire, and refusing the entry would
//! cut it for certain.
//!
//! Nothing here allocates, locks or panics.

use super::{ended, L4Info, Shard};
use crate::conntrack::{Dir, EntryFlags, FlowId, FlowInit, FlowKey, FlowTable, TICK_MS};
use crate::ctl::events::{RecordConsumer, RecordProducer, SyncControl, SyncKind, SyncRecord, FAMILY_V4};
use crate::state::counters::{InstallFailure, WorkerCounters};
use crate::state::snapshot::{Forwarding, Snapshot, VirtualService};
use std::sync::Arc;

/// Table slots a walk scans per pass at most (as `ctl::dump::SCAN_BUDGET`).
pub const WALK_BUDGET: u32 = 16 * 1024;
/// Records from the peer applied per pass at most.
pub const INSTALL_BUDGET: usize = 256;
/// Records popped at a time (a stack buffer).
const INSTALL_BATCH: usize = 32;

/// A worker's sync state: its two rings, the shared control cell, and
/// where its walk stands.
pub(super) struct Replication {
    out: RecordProducer,
    installs: RecordConsumer,
    control: Arc<SyncControl>,
    walk: Option<Walk>,
    /// The last bulk generation seen.
    bulk_seen: u64,
    /// The tick of the next periodic walk; None until the first pass.
    next_refresh: Option<u32>,
    /// Slots per pass (`WALK_BUDGET`; small in tests).
    pub(super) budget: u32,
}

struct Walk {
    cursor: u32,
    /// The bulk generation it answers, if it was asked for.
    bulk: Option<u64>,
}

impl Replication {
    pub(super) fn new(out: RecordProducer, installs: RecordConsumer) -> Self {
        Self { out, installs, control: Arc::new(SyncControl::default()), walk: None, bulk_seen: 0, next_refresh: None, budget: WALK_BUDGET }
    }

    pub(super) fn control(&self) -> Arc<SyncControl> {
        Arc::clone(&self.control)
    }

    /// Starts a walk when one is due, then pushes `Refresh` records for up
    /// to `budget` slots of `table`, leaving a quarter of the ring free.
    fn walk(&mut self, table: &FlowTable, counters: &WorkerCounters, now: u32, period: u32) {
        let requested = self.control.requested();
        if requested != self.bulk_seen {
            self.bulk_seen = requested;
            self.walk = Some(Walk { cursor: 0, bulk: Some(requested) });
        } else if period != 0 {
            let due = *self.next_refresh.get_or_insert(now.saturating_add(period));
            if self.walk.is_none() && now >= due {
                self.next_refresh = Some(now.saturating_add(period));
                self.walk = Some(Walk { cursor: 0, bulk: None });
            }
        }
        let Some(w) = self.walk.as_mut() else { return };
        let cap = table.capacity();
        let end = w.cursor.saturating_add(self.budget).min(cap);
        let headroom = self.out.capacity() / 4;
        while w.cursor < end {
            if let Some(f) = table.get(w.cursor) {
                if !self.out.has_room(headroom + 1) {
                    return;
                }
                push(&mut self.out, counters, SyncRecord::of_flow(SyncKind::Refresh, f, now));
            }
            w.cursor += 1;
        }
        if w.cursor >= cap {
            if let Some(g) = w.bulk {
                self.control.finish(g);
            }
            self.walk = None;
        }
    }
}

/// Pushes `rec`, counting it as sent or dropped.
#[inline]
fn push(out: &mut RecordProducer, counters: &WorkerCounters, rec: SyncRecord) {
    if out.push(rec) {
        counters.sync.sent.inc();
    } else {
        counters.sync.dropped.inc();
    }
}

/// A server of virtual server `vs_index` at `ip:port`: a member, else
/// (cold) a removed server kept for its connections.
fn find_server(snap: &Snapshot, vs_index: u16, vs: &VirtualService, ip: u32, port: u16) -> Option<u16> {
    let member = vs.members.iter().copied().find(|g| snap.servers.get(*g as usize).is_some_and(|s| s.ip == ip && s.port == port));
    member.or_else(|| find_retired_server(snap, vs_index, ip, port))
}

#[cold]
fn find_retired_server(snap: &Snapshot, vs_index: u16, ip: u32, port: u16) -> Option<u16> {
    let i = snap.servers.iter().position(|s| s.vs == vs_index && s.ip == ip && s.ip != 0 && s.port == port)?;
    u16::try_from(i).ok()
}

impl Shard {
    /// Reports entry `id` (`Create`, `Update`) when sync is on.
    #[inline]
    pub(super) fn emit_flow(&mut self, kind: SyncKind, id: FlowId) {
        let Some(r) = self.sync.as_mut() else { return };
        let Some(f) = self.table.get(id) else { return };
        push(&mut r.out, &self.counters, SyncRecord::of_flow(kind, f, self.now));
    }

    /// Reports a removed entry (`Delete`; `expired`: idle) when sync is
    /// on.
    #[inline]
    pub(super) fn emit_delete(sync: &mut Option<Replication>, counters: &WorkerCounters, f: &crate::conntrack::Flow, now: u32, expired: bool) {
        let Some(r) = sync.as_mut() else { return };
        let mut rec = SyncRecord::of_flow(SyncKind::Delete, f, now);
        if expired {
            rec.flags |= SyncRecord::FLAG_EXPIRED;
        }
        push(&mut r.out, counters, rec);
    }

    /// Reports a persistence record made (`Persist`, with its timeout) or
    /// dropped (`PersistDelete`) for the client of `p`.
    #[inline]
    pub(super) fn emit_persist(sync: &mut Option<Replication>, counters: &WorkerCounters, kind: SyncKind, p: &L4Info, server: (u32, u16), mode: Forwarding, timeout: u32) {
        let Some(r) = sync.as_mut() else { return };
        let rec = SyncRecord {
            kind,
            family: FAMILY_V4,
            proto: p.proto,
            mode,
            client_ip: p.src,
            client_port: p.sport,
            vip: p.dst,
            vport: p.dport,
            server_ip: server.0,
            server_port: server.1,
            timeout_ms: timeout.saturating_mul(TICK_MS),
            ..SyncRecord::EMPTY
        };
        push(&mut r.out, counters, rec);
    }

    /// A packet was forwarded on entry `id`, which was in state `before`
    /// with flags `flags`: an entry installed from the peer is now this
    /// box's too, and a state change is reported.
    #[inline]
    pub(super) fn after_packet(&mut self, id: FlowId, before: crate::conntrack::FlowState, flags: EntryFlags, state: crate::conntrack::FlowState) {
        if flags.contains(EntryFlags::SYNCED) {
            self.table.set_flags(id, flags.difference(EntryFlags::SYNCED));
        }
        // CLOSE (a reset) keeps the entry for `tcp_close`; its expiry
        // reports it (`Delete`).
        if state != before {
            self.emit_flow(SyncKind::Update, id);
        }
    }

    /// Slow path, once per pass: applies up to `INSTALL_BUDGET` of the
    /// peer's records, then walks on.
    pub(super) fn sync_pass(&mut self, snap: &Snapshot, now: u32) {
        let Some(mut r) = self.sync.take() else { return };
        let mut buf = [SyncRecord::EMPTY; INSTALL_BATCH];
        let mut left = INSTALL_BUDGET;
        while left > 0 {
            let want = left.min(INSTALL_BATCH);
            let n = r.installs.pop_batch(buf.get_mut(..want).unwrap_or_default());
            for rec in buf.iter().take(n) {
                match self.apply(snap, rec) {
                    Ok(()) => self.counters.sync.installed.inc(),
                    Err(why) => self.counters.sync.count_failure(why),
                }
            }
            if n < want {
                break;
            }
            left -= n;
        }
        r.walk(&self.table, &self.counters, now, self.config.sync_refresh);
        self.sync = Some(r);
    }

    /// Applies one of the peer's records (module docs for the rules).
    fn apply(&mut self, snap: &Snapshot, rec: &SyncRecord) -> Result<(), InstallFailure> {
        match rec.kind {
            SyncKind::Create | SyncKind::Update | SyncKind::Refresh => self.install_flow(snap, rec),
            SyncKind::Delete => {
                self.uninstall_flow(snap, rec);
                Ok(())
            }
            SyncKind::Persist | SyncKind::PersistDelete => self.install_persist(snap, rec),
        }
    }

    fn install_flow(&mut self, snap: &Snapshot, rec: &SyncRecord) -> Result<(), InstallFailure> {
        let expire = self.now.saturating_add(rec.timeout_ticks());
        let key = FlowKey { src_ip: rec.client_ip, dst_ip: rec.vip, src_port: rec.client_port, dst_port: rec.vport, proto: rec.proto };
        match self.table.lookup(&key, self.table.hash(&key)) {
            Some((id, Dir::Original)) => {
                let Some(f) = self.table.get(id) else { return Err(InstallFailure::Exists) };
                let replica = f.flags.contains(EntryFlags::SYNCED);
                let same = (f.server_ip, f.server_port, f.local_ip, f.local_port) == (rec.server_ip, rec.server_port, rec.local_ip, rec.local_port);
                if same && rec.kind == SyncKind::Refresh && !replica {
                    // Ours: the peer's view is older. Never expire before it.
                    let (state, longest) = (f.state, f.expire.max(expire));
                    self.table.set_state(id, state, longest);
                    return Ok(());
                }
                if same {
                    let flags = f.flags | EntryFlags::SYNCED;
                    super::established_moved(&self.counters, f.vs, f.server, f.state, rec.state);
                    self.table.set_state(id, rec.state, expire);
                    self.table.set_flags(id, flags);
                    return Ok(());
                }
                if rec.kind == SyncKind::Refresh && !replica {
                    // Another connection of the client's port, which this
                    // box forwards: it stays.
                    return Err(InstallFailure::Exists);
                }
                // The client reused its port on the peer: the new one wins.
                if let Some(old) = self.table.remove(id) {
                    ended(&old, snap, self.now, &self.counters, &mut self.local_ports, &mut self.persist);
                }
            }
            Some((_, Dir::Reply)) => return Err(InstallFailure::Exists),
            None => {}
        }
        // A source-NAT entry belongs to no virtual server.
        let (vs_index, server_index, pers) = if rec.mode == Forwarding::Snat {
            (super::snat::NO_INDEX, super::snat::NO_INDEX, None)
        } else {
            let vs_index = snap.owner_service(rec.vip, rec.vport, rec.proto).ok_or(InstallFailure::NoService)?;
            let vs = snap.services.get(vs_index as usize).ok_or(InstallFailure::NoService)?;
            let server_index = find_server(snap, vs_index, vs, rec.server_ip, rec.server_port).ok_or(InstallFailure::NoServer)?;
            (vs_index, server_index, vs.persistence.filter(|_| rec.flags & SyncRecord::FLAG_PERSIST != 0))
        };
        let full_nat = matches!(rec.mode, Forwarding::FullNat | Forwarding::Snat);
        let port_held = !full_nat || self.local_ports.reserve(rec.local_ip, rec.local_port);
        let mut flags = EntryFlags::SYNCED;
        if pers.is_some() {
            flags |= EntryFlags::PERSIST;
        }
        if !port_held {
            flags |= EntryFlags::BORROWED_PORT;
        }
        let init = FlowInit {
            proto: rec.proto,
            client_ip: rec.client_ip,
            client_port: rec.client_port,
            vip: rec.vip,
            vport: rec.vport,
            server_ip: rec.server_ip,
            server_port: rec.server_port,
            local_ip: rec.local_ip,
            local_port: rec.local_port,
            vs: vs_index,
            server: server_index,
            client_port_id: rec.client_port_id,
            client_mac: rec.client_mac,
            mode: rec.mode,
            flags,
        };
        if let Err(e) = self.table.install(&init, rec.state, expire) {
            if full_nat && port_held {
                self.local_ports.free(rec.local_ip, rec.local_port);
            }
            return Err(match e {
                crate::conntrack::InsertError::Full => InstallFailure::TableFull,
                crate::conntrack::InsertError::Exists => InstallFailure::Exists,
            });
        }
        let c = &self.counters;
        c.flows.inc();
        if let Some(v) = c.services.get(vs_index as usize) {
            v.conns_active.inc();
        }
        if let Some(s) = c.servers.get(server_index as usize) {
            s.conns_active.inc();
        }
        super::established_moved(c, vs_index, server_index, crate::conntrack::FlowState::Close, rec.state);
        if let Some(p) = pers {
            // The entry holds a reference to its client's record, as one
            // placed here does (`ended` releases it).
            let key = p.key(rec.client_ip, rec.client_port);
            match self.persist.get(key, self.now) {
                Some(r) if r.server_ip == rec.server_ip => self.persist.attach(key, self.now, p.timeout),
                _ => {
                    let epoch = snap.servers.get(server_index as usize).map_or(0, |s| s.epoch);
                    self.persist.insert(key, rec.server_ip, epoch, self.now, p.timeout);
                }
            }
        }
        if !port_held {
            self.counters.sync.count_failure(InstallFailure::LocalPort);
        }
        Ok(())
    }

    /// The peer's `Delete`: removes the same connection here, unless it
    /// only expired there and this box forwards it.
    fn uninstall_flow(&mut self, snap: &Snapshot, rec: &SyncRecord) {
        let key = FlowKey { src_ip: rec.client_ip, dst_ip: rec.vip, src_port: rec.client_port, dst_port: rec.vport, proto: rec.proto };
        let Some((id, Dir::Original)) = self.table.lookup(&key, self.table.hash(&key)) else { return };
        let Some(f) = self.table.get(id) else { return };
        if (f.server_ip, f.server_port) != (rec.server_ip, rec.server_port) {
            return;
        }
        if rec.flags & SyncRecord::FLAG_EXPIRED != 0 && !f.flags.contains(EntryFlags::SYNCED) {
            return;
        }
        if let Some(old) = self.table.remove(id) {
            ended(&old, snap, self.now, &self.counters, &mut self.local_ports, &mut self.persist);
        }
    }

    /// The peer's `Persist` / `PersistDelete`, on this box's persistence
    /// configuration of the same virtual server (key, group, netmask).
    fn install_persist(&mut self, snap: &Snapshot, rec: &SyncRecord) -> Result<(), InstallFailure> {
        let vs_index = snap.owner_service(rec.vip, rec.vport, rec.proto).ok_or(InstallFailure::NoService)?;
        let vs = snap.services.get(vs_index as usize).ok_or(InstallFailure::NoService)?;
        let p = vs.persistence.ok_or(InstallFailure::NoPersistence)?;
        let key = p.key(rec.client_ip, rec.client_port);
        if rec.kind == SyncKind::PersistDelete {
            self.persist.remove(key);
            return Ok(());
        }
        // Records name a node by address (a group's services share them).
        let server = vs.members.iter().filter_map(|g| snap.servers.get(*g as usize)).find(|s| s.ip == rec.server_ip).ok_or(InstallFailure::NoServer)?;
        if !self.persist.install(key, rec.server_ip, server.epoch, self.now, rec.timeout_ticks()) {
            self.counters.persist_evicted.inc();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
