//! Applying the peer's records to this worker's table (`replicate`'s
//! module docs have the rules).

use super::super::{ended, established_moved, snat::NO_INDEX, Shard};
use super::Tombs;
use crate::conntrack::{Dir, EntryFlags, FlowId, FlowInit, FlowKey, FlowState, InsertError, ProxyTrack};
use crate::ctl::events::{SyncKind, SyncRecord};
use crate::state::counters::InstallFailure;
use crate::state::snapshot::{Forwarding, Snapshot, VirtualService};

/// The original key of a record's connection (client to VIP).
fn original_key(rec: &SyncRecord) -> FlowKey {
    FlowKey { src_ip: rec.client_ip, dst_ip: rec.vip, src_port: rec.client_port, dst_port: rec.vport, proto: rec.proto }
}

/// Whether entry `f` and record `rec` are the same connection: the same
/// reply key (server, and local address and port).
fn same_reply(f: &crate::conntrack::Flow, rec: &SyncRecord) -> bool {
    (f.server_ip, f.server_port, f.local_ip, f.local_port) == (rec.server_ip, rec.server_port, rec.local_ip, rec.local_port)
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
    /// The peer's `Create`, `Update` or `Refresh`.
    pub(super) fn install_flow(&mut self, snap: &Snapshot, rec: &SyncRecord, tombs: &Tombs) -> Result<(), InstallFailure> {
        let key = original_key(rec);
        let applied = match self.lookup_live(snap, &key, self.table.hash(&key)) {
            Some((id, Dir::Original)) => self.reconcile(snap, id, rec)?,
            Some((_, Dir::Reply)) => return Err(InstallFailure::Exists),
            // It crossed our `Delete` on the way.
            None if rec.kind == SyncKind::Refresh && tombs.recent(&key, self.now) => return Err(InstallFailure::Stale),
            None => false,
        };
        if applied {
            return Ok(());
        }
        self.install_new(snap, rec)
    }

    /// The peer's record of a connection whose key is entry `id` here: true
    /// when applied to it; false when `id` was another connection of the
    /// client's port and is gone (the record's takes its place).
    fn reconcile(&mut self, snap: &Snapshot, id: FlowId, rec: &SyncRecord) -> Result<bool, InstallFailure> {
        let Some(f) = self.table.get(id) else { return Err(InstallFailure::Exists) };
        let replica = f.flags.contains(EntryFlags::SYNCED);
        let expire = self.now.saturating_add(rec.timeout_ticks());
        if same_reply(f, rec) {
            // A packet the peer saw (`Create`, `Update`) is news whatever
            // the count says (both boxes may forward the connection); a
            // walk's view of an older version is not.
            if rec.kind == SyncKind::Refresh && rec.is_older_than(f.version()) {
                return Err(InstallFailure::Stale);
            }
            if rec.kind == SyncKind::Refresh && !replica {
                // Ours: the peer's view is older. Never expire before it.
                let (state, longest) = (f.state, f.expire.max(expire));
                self.table.set_state(id, state, longest);
                return Ok(true);
            }
            let (flags, vs, server, old) = (f.flags | EntryFlags::SYNCED | EntryFlags::ASSURED, f.vs, f.server_slot(), f.state);
            established_moved(&self.counters, vs, server, old, rec.state);
            self.table.set_state(id, rec.state, expire);
            self.table.set_flags(id, flags);
            self.adopt(id, rec);
            return Ok(true);
        }
        if rec.kind == SyncKind::Refresh && !replica {
            // Another connection of the client's port, which this box
            // forwards: it stays.
            return Err(InstallFailure::Exists);
        }
        // The client reused its port on the peer: the new one wins.
        if let Some(old) = self.table.remove(id) {
            ended(&old, snap, self.now, &self.counters, &mut self.local_ports, &mut self.persist);
        }
        Ok(false)
    }

    /// Gives entry `id` the record's version, TCP marks and SYN proxy
    /// translation (`SYN_PROXY`, so that it goes on translating here).
    fn adopt(&mut self, id: FlowId, rec: &SyncRecord) {
        let Some(mut f) = self.table.get_mut(id) else { return };
        f.set_version(rec.version);
        let Some(m) = rec.tcp else { return };
        // Already translating here: what the peer does not carry (a parked
        // segment, the last resend, the client's TSval and window) stays.
        let had = f.flags().intersects(EntryFlags::SYN_PROXY | EntryFlags::PROXY_HEADER);
        if m.proxy.is_some() {
            // The record's flag says which: a SYN proxy translation or
            // where a PROXY header goes (`SyncRecord::decode` checked).
            let kind = if rec.flags & SyncRecord::FLAG_PROXY_HEADER != 0 { EntryFlags::PROXY_HEADER } else { EntryFlags::SYN_PROXY };
            let flags = f.flags() | kind;
            // The table's: a side record given now starts from zero.
            self.table.set_flags(id, flags);
        }
        self.table.adopt_marks(id, m.end, m.ack, m.win, m.wscale, m.known);
        if let (Some(p), Some(t)) = (m.proxy, self.table.proxy_mut(id)) {
            let rest = if had { *t } else { ProxyTrack::default() };
            *t = ProxyTrack { seq_delta: p.seq_delta, ts_delta: p.ts_delta, proxy_wscale: p.wscale, proxy: p.flags, ..rest };
        }
    }

    /// A connection new here, from the peer's record.
    fn install_new(&mut self, snap: &Snapshot, rec: &SyncRecord) -> Result<(), InstallFailure> {
        // An entry here past its deadline that still holds the reply key
        // (and its local port) goes first, as the sweep would have it.
        let reply = FlowKey { src_ip: rec.server_ip, dst_ip: rec.local_ip, src_port: rec.server_port, dst_port: rec.local_port, proto: rec.proto };
        let _ = self.lookup_live(snap, &reply, self.table.hash(&reply));
        let expire = self.now.saturating_add(rec.timeout_ticks());
        // A source-NAT entry belongs to no virtual server.
        let (vs_index, server_index, pers) = if rec.mode == Forwarding::Snat {
            (NO_INDEX, NO_INDEX, None)
        } else {
            let vs_index = snap.owner_service(rec.vip, rec.vport, rec.proto).ok_or(InstallFailure::NoService)?;
            let vs = snap.services.get(vs_index as usize).ok_or(InstallFailure::NoService)?;
            let server_index = find_server(snap, vs_index, vs, rec.server_ip, rec.server_port).ok_or(InstallFailure::NoServer)?;
            (vs_index, server_index, vs.persistence.filter(|_| rec.flags & SyncRecord::FLAG_PERSIST != 0))
        };
        let full_nat = matches!(rec.mode, Forwarding::FullNat | Forwarding::Snat);
        let port_held = !full_nat || self.local_ports.reserve(rec.local_ip, rec.local_port);
        let mut flags = EntryFlags::SYNCED | EntryFlags::ASSURED;
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
        let id = match self.table.install(&init, rec.state, expire) {
            Ok(id) => id,
            Err(e) => {
                if full_nat && port_held {
                    self.local_ports.free(rec.local_ip, rec.local_port);
                }
                return Err(match e {
                    InsertError::Full => InstallFailure::TableFull,
                    InsertError::Exists => InstallFailure::Exists,
                });
            }
        };
        self.adopt(id, rec);
        self.count_installed(vs_index, crate::conntrack::server_slot(vs_index, server_index, rec.mode), rec.state);
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

    /// An installed entry counts like one made here (not as new).
    fn count_installed(&self, vs_index: u16, server_index: usize, state: FlowState) {
        let c = &self.counters;
        c.flows.inc();
        if let Some(v) = c.services.get(vs_index as usize) {
            v.conns_active.inc();
        }
        if let Some(s) = c.servers.get(server_index) {
            s.conns_active.inc();
        }
        established_moved(c, vs_index, server_index, FlowState::Close, state);
    }

    /// The peer's `Delete`: removes the same connection here (the same
    /// reply key: for full-NAT a late `Delete` of an old connection must
    /// not remove a new one that reused the client's port), unless it only
    /// expired there and this box forwards it.
    pub(super) fn uninstall_flow(&mut self, snap: &Snapshot, rec: &SyncRecord) {
        let key = original_key(rec);
        let Some((id, Dir::Original)) = self.table.lookup(&key, self.table.hash(&key)) else { return };
        let Some(f) = self.table.get(id) else { return };
        if !same_reply(f, rec) {
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
    pub(super) fn install_persist(&mut self, snap: &Snapshot, rec: &SyncRecord) -> Result<(), InstallFailure> {
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
