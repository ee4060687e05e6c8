//! A new connection: schedule (or follow a persistence record), create
//! the entry, forward the first packet; or refuse it.

use super::family::Net;
use super::{L4Info, Reject, Shard, Verdict};
use crate::conntrack::{EntryFlags, FlowId, FlowInit, FlowKey, FlowState, InsertError};
use crate::ctl::events::SyncKind;
use crate::forward as nat;
use crate::lb::{self, PersistTable};
use crate::state::counters::DropReason;
use crate::state::snapshot::{Forwarding, Snapshot, SynProxy};
use crate::wire::ethernet::EthernetFrame;
use crate::wire::ipv4::protocol;
use crate::wire::tcp::flags as tcpf;

/// How to refuse a new connection no server can take: answer it
/// (`Verdict::Reject`) unless no answer may be sent — to a source that is
/// not one host (`forward::is_unicast_host`), about a frame sent to or from a
/// group MAC address (RFC 1122 §3.2.2: no ICMP error about a link-layer
/// broadcast; RFC 1122 §4.2.3.10: a SYN to a broadcast or multicast address
/// is discarded) — or no port to answer from: then a plain drop.
#[cold]
fn refusal<A: Net>(snap: &Snapshot, frame: &[u8], p: &L4Info<A>, in_port: u16) -> Verdict {
    // (IPv6 refusals are not built yet.)
    let Some(p) = A::v4(p) else { return Verdict::Drop(DropReason::NoServer) };
    let eth = EthernetFrame::new_unchecked(frame);
    let answerable = nat::is_unicast_host(p.src)
        && !eth.dst_addr().is_multicast()
        && !eth.src_addr().is_multicast()
        && snap.port(in_port).is_some();
    match (u8::try_from(p.l3), u8::try_from(p.hl)) {
        (Ok(l3), Ok(hl)) if answerable => Verdict::Reject(Reject { proto: p.proto, l3, hl }),
        _ => Verdict::Drop(DropReason::NoServer),
    }
}

impl Shard {
    /// The SYN proxy's share of a new connection (IPv4): a SYN answered
    /// with a cookie, a cookie's ACK opened; None when it does not take
    /// the packet.
    fn syn_proxy_first(&mut self, snap: &Snapshot, frame: &mut [u8], p: &L4Info, vs_index: u16, in_port: u16) -> Option<Verdict> {
        let vs = snap.services.get(vs_index as usize)?;
        if vs.syn_proxy == SynProxy::Off {
            return None;
        }
        let syn = p.tcp_flags & (tcpf::SYN | tcpf::ACK | tcpf::RST) == tcpf::SYN;
        if syn && self.proxying(vs.syn_proxy) {
            return Some(self.answer_syn(snap, frame, p, in_port, false));
        }
        // A source over its cap: cookies for it alone.
        if syn && self.source_over_cap(p.src) {
            return Some(self.answer_syn(snap, frame, p, in_port, true));
        }
        // An ACK may return a cookie sent in the last two periods.
        if p.tcp_flags & (tcpf::SYN | tcpf::ACK | tcpf::RST) == tcpf::ACK && (vs.syn_proxy == SynProxy::On || self.now < self.cookies_valid_until) {
            return Some(self.cookie_ack(snap, frame, p, vs_index, in_port));
        }
        None
    }
}

impl<A: Net> Shard<A> {
    /// A first packet to a virtual server: schedule, create the entry,
    /// forward.
    pub(super) fn new_connection(&mut self, snap: &Snapshot, frame: &mut [u8], p: &L4Info<A>, vs_index: u16, in_port: u16) -> Verdict {
        if p.proto == protocol::TCP {
            if snap.services.get(vs_index as usize).is_none() {
                return Verdict::Drop(DropReason::NoVirtualServer);
            }
            // The SYN proxy answers SYNs itself and opens on a cookie's ACK.
            if let (Some(p4), Some(s4)) = (A::v4(p), A::v4_shard(self)) {
                if let Some(v) = s4.syn_proxy_first(snap, frame, p4, vs_index, in_port) {
                    return v;
                }
            }
            // Only a SYN opens a TCP connection (RFC 9293 §3.5).
            if p.tcp_flags & (tcpf::SYN | tcpf::ACK | tcpf::RST) != tcpf::SYN {
                return Verdict::Drop(DropReason::TcpNoFlow);
            }
        }
        match self.open_entry(snap, frame, p, vs_index, in_port, EntryFlags::empty()) {
            Ok(id) => self.forward_original(snap, frame, p, id),
            Err(v) => v,
        }
    }

    /// Verifies a new connection's first packet, makes room, schedules and
    /// creates its entry (with `flags`), counted and reported to the HA
    /// peer; or the verdict that refuses it.
    pub(super) fn open_entry(&mut self, snap: &Snapshot, frame: &mut [u8], p: &L4Info<A>, vs_index: u16, in_port: u16, flags: EntryFlags) -> Result<FlowId, Verdict> {
        let Some(vs) = snap.services.get(vs_index as usize) else { return Err(Verdict::Drop(DropReason::NoVirtualServer)) };
        // A garbage first packet must not take a table entry (nor a turn of
        // the scheduler).
        if frame.get(p.l3 + p.hl..p.l3 + p.ip_len).is_none() {
            return Err(Verdict::Drop(DropReason::Ipv4BadTotalLength));
        }
        if !A::l4_checksum_ok(frame, p) {
            return Err(Verdict::Drop(DropReason::L4BadChecksum));
        }
        if !self.make_room(snap, vs_index, p.proto) {
            return Err(Verdict::Drop(DropReason::FlowTableFull));
        }
        // The appliance's own stack serves it (the exception path).
        if vs.forwarding == Forwarding::Local {
            return match (A::v4(p), A::v4_shard(self)) {
                (Some(p4), Some(s4)) => s4.open_local(frame, p4, vs_index, in_port, flags),
                _ => Err(Verdict::Drop(DropReason::NoVirtualServer)),
            };
        }
        let (server_index, persisted) = self.pick(snap, vs_index, p);
        let Some(server_index) = server_index else {
            return Err(refusal(snap, frame, p, in_port));
        };
        let Some(server) = snap.servers.get(server_index as usize) else { return Err(Verdict::Drop(DropReason::NoServer)) };
        let server_ip = A::server_ip(server);
        let (mode, local) = self.local_side(snap, vs_index, p, server, persisted)?;
        let (local_ip, local_port) = local;
        let reply_key = FlowKey { src_ip: server_ip, dst_ip: local_ip, src_port: server.port, dst_port: local_port, proto: p.proto };
        self.table.prefetch_insert(self.table.hash(&reply_key));
        let client_mac = EthernetFrame::new_unchecked(&*frame).src_addr();
        let init = FlowInit {
            proto: p.proto,
            client_ip: p.src,
            client_port: p.sport,
            vip: p.dst,
            vport: p.dport,
            server_ip,
            server_port: server.port,
            local_ip,
            local_port,
            vs: vs_index,
            server: server_index,
            client_port_id: in_port as u8,
            client_mac: client_mac.0,
            flags: {
                let flags = if persisted { flags | EntryFlags::PERSIST } else { flags };
                let header = vs.proxy_header && mode == Forwarding::FullNat && p.proto == crate::conntrack::IPPROTO_TCP && A::v4(p).is_some();
                if header { flags | EntryFlags::PROXY_HEADER } else { flags }
            },
            mode,
        };
        let id = self.insert_new(snap, &init, &reply_key, persisted, p)?;
        let c = &self.counters;
        c.flows.inc();
        if let Some(v) = c.services.get(vs_index as usize) {
            v.conns_new.inc();
            v.conns_active.inc();
        }
        if let Some(s) = c.servers.get(server_index as usize) {
            s.conns_new.inc();
            s.conns_active.inc();
        }
        if let Some(s4) = A::v4_shard(self) {
            if init.flags.contains(EntryFlags::PROXY_HEADER) {
                s4.pheader_open(id, p.seg.seq);
            }
            s4.emit_flow(SyncKind::Create, id);
        }
        Ok(id)
    }

    /// The server for a new connection: the persistence record's, else
    /// the scheduler's; and whether a record was made or followed.
    #[inline]
    fn pick(&mut self, snap: &Snapshot, vs_index: u16, p: &L4Info<A>) -> (Option<u16>, bool) {
        let Some(vs) = snap.services.get(vs_index as usize) else { return (None, false) };
        if let Some(pers) = vs.persistence {
            return self.persistent_pick(snap, vs_index, p, &pers);
        }
        let flow = lb::Flow4 { src: A::sched_word(p.src), dst: A::sched_word(p.dst), sport: p.sport, dport: p.dport, proto: p.proto };
        (self.sched.pick_for(vs_index as usize, vs, &snap.servers, &flow, self.loads.as_deref()), false)
    }

    /// A new connection's mode and its address and port on the server's
    /// side: the client's own (NAT, DSR), or a local address and port
    /// (full-NAT; hairpin, IPv4: a NAT client on its servers' segment goes
    /// out from the self IP). On no port left, the persistence reference is
    /// given back and the verdict returned.
    #[inline]
    fn local_side(&mut self, snap: &Snapshot, vs_index: u16, p: &L4Info<A>, server: &lb::RealServer, persisted: bool) -> Result<(Forwarding, (A, u16)), Verdict> {
        let Some(vs) = snap.services.get(vs_index as usize) else { return Err(Verdict::Drop(DropReason::NoVirtualServer)) };
        // Hairpin (seeds 002, 004): a NAT client on the servers' own
        // segment would get the server's answer directly, from the server's
        // address; source NAT to the self IP brings the answer back here.
        let hairpin_src = A::v4(p).and_then(|p4| snap.port(server.tx_port).filter(|pv| vs.forwarding == Forwarding::Nat && pv.on_link(p4.src))).map(|pv| pv.self_ip);
        let mode = if hairpin_src.is_some() { Forwarding::FullNat } else { vs.forwarding };
        if mode != Forwarding::FullNat {
            // (Source NAT entries are made by `snat`; no entry is a gateway's.)
            return Ok((mode, (p.src, p.sport)));
        }
        let port = match (hairpin_src, A::v4_shard(self)) {
            (Some(self_ip), Some(s4)) => s4.local_ports.alloc(&[self_ip]).map(|(a, port)| (a, port, true)),
            _ => None,
        };
        let mut port = match port {
            Some((a, port, _)) => A::from_v4(a).map(|a| (a, port)),
            None if hairpin_src.is_some() => None,
            None => self.local_ports.alloc(A::local_addrs(vs)),
        };
        if port.is_none() && hairpin_src.is_none() && self.free_a_port(snap, vs_index, p.proto, A::local_addrs(vs)) {
            port = self.local_ports.alloc(A::local_addrs(vs));
        }
        match port {
            Some(l) => Ok((mode, l)),
            None => {
                if persisted {
                    self.release_persisted(snap, vs_index, p, server);
                }
                Err(Verdict::Drop(DropReason::NoLocalPort))
            }
        }
    }

    /// Inserts a new connection's entry (`process` just missed its
    /// original key), a closing entry holding its reply key reclaimed; on
    /// failure its local port and persistence reference given back.
    #[inline]
    fn insert_new(&mut self, snap: &Snapshot, init: &FlowInit<A>, reply_key: &FlowKey<A>, persisted: bool, p: &L4Info<A>) -> Result<FlowId, Verdict> {
        let mut inserted = self.table.insert_after_miss(init, self.now);
        if inserted == Err(InsertError::Exists) && self.reclaim_closing(snap, reply_key) {
            inserted = self.table.insert_after_miss(init, self.now);
        }
        match inserted {
            Ok(id) => Ok(id),
            Err(e) => {
                if init.mode == Forwarding::FullNat {
                    self.local_ports.free(init.local_ip, init.local_port);
                }
                if let (true, Some(server)) = (persisted, snap.servers.get(init.server as usize)) {
                    self.release_persisted(snap, init.vs, p, server);
                }
                Err(Verdict::Drop(match e {
                    InsertError::Full => DropReason::FlowTableFull,
                    InsertError::Exists => DropReason::FlowExists,
                }))
            }
        }
    }

    /// Gives back the persistence reference a new connection took.
    #[cold]
    fn release_persisted(&mut self, snap: &Snapshot, vs_index: u16, p: &L4Info<A>, server: &lb::RealServer) {
        if let Some(pers) = snap.services.get(vs_index as usize).and_then(|v| v.persistence) {
            self.persist.release(pers.key(p.src, p.sport), A::server_ip(server), self.now, pers.timeout);
        }
    }

}

impl<A: Net> Shard<A> {
    /// Picks a server for a new connection of a persistent service: the
    /// client's record, when it names a server of this service that can
    /// take the connection (and, unless `keep_on_down`, has not gone down
    /// since), else the scheduler's choice, recorded. Returns the server
    /// and whether the connection references a record.
    #[inline]
    fn persistent_pick(&mut self, snap: &Snapshot, vs_index: u16, p: &L4Info<A>, pers: &lb::Persistence) -> (Option<u16>, bool) {
        let Some(vs) = snap.services.get(vs_index as usize) else { return (None, false) };
        let key = pers.key(p.src, p.sport);
        let loads = self.loads.as_deref();
        let mut keep_record = false;
        if let Some(rec) = self.persist.get(key, self.now) {
            let member = vs.members.iter().copied().find(|g| snap.servers.get(*g as usize).is_some_and(|s| A::server_ip(s) == rec.server_ip));
            let stale = member.and_then(|g| snap.servers.get(g as usize)).is_some_and(|s| s.epoch != rec.epoch);
            match member {
                Some(g) if !stale || pers.keep_on_down => {
                    if lb::available(&snap.servers, g, loads) || sticky(&snap.servers, g, loads) {
                        self.persist.attach(key, self.now, pers.timeout);
                        self.counters.persisted.inc();
                        return (Some(g), true);
                    }
                    // Down or full: elsewhere this time; the record waits
                    // for its server when it is kept, else it is replaced.
                    keep_record = pers.keep_on_down && !snap.servers.get(g as usize).is_some_and(|s| s.enabled);
                }
                Some(_) => {
                    self.persist.remove(key);
                    if let (Some(p4), Some(ip)) = (A::v4(p), rec.server_ip.to_v4()) {
                        Shard::emit_persist(&mut self.sync, &self.counters, SyncKind::PersistDelete, p4, (ip, 0), vs.forwarding, 0);
                    }
                }
                // Made by another service of the group whose pool has a
                // node this one lacks: leave it to that service. A node no
                // service of the group has any more (removed): replace it.
                None => keep_record = group_has::<A>(snap, pers.group, rec.server_ip),
            }
        }
        let flow = lb::Flow4 { src: A::sched_word(p.src), dst: A::sched_word(p.dst), sport: p.sport, dport: p.dport, proto: p.proto };
        let pick = self.sched.pick_for(vs_index as usize, vs, &snap.servers, &flow, loads);
        let Some(server) = pick.and_then(|g| snap.servers.get(g as usize)) else { return (pick, false) };
        if keep_record {
            return (pick, false);
        }
        if !self.persist.insert(key, A::server_ip(server), server.epoch, self.now, pers.timeout) {
            self.counters.persist_evicted.inc();
        }
        self.counters.persist_records.inc();
        // (Synced for IPv4: `[sync]` has no IPv6 yet.)
        if let Some(p4) = A::v4(p) {
            Shard::emit_persist(&mut self.sync, &self.counters, SyncKind::Persist, p4, (server.ip, server.port), vs.forwarding, pers.timeout);
        }
        (pick, true)
    }

}

impl<A: Net> Shard<A> {
    /// With NAT, a client's connections to two virtual ports that lead to
    /// one server:port look the same from the server's side, so a new one
    /// can find its reply key held by an older one that is closing (the
    /// client reused its port, RFC 9293 §3.6.1): the closing entry goes, as
    /// a SYN reusing a TIME_WAIT entry's own key does. An open one stays,
    /// and the new connection is refused (`flow-exists`). True when the key
    /// is free now. Cold path.
    #[cold]
    fn reclaim_closing(&mut self, snap: &Snapshot, reply_key: &FlowKey<A>) -> bool {
        let Some((id, _)) = self.table.lookup(reply_key, self.table.hash(reply_key)) else { return false };
        // One past its deadline goes as expired (`lookup_live`).
        if self.table.get(id).is_some_and(|f| f.expire <= self.now) {
            self.expire_found(snap, id);
            return true;
        }
        if !self.table.get(id).is_some_and(|f| matches!(f.state, FlowState::TimeWait | FlowState::Close)) {
            return false;
        }
        self.remove(snap, id);
        true
    }
}

/// Does a live service of persistence group `group` list a server at
/// `ip`? (Rare path: a record naming a node the current service lacks.)
#[cold]
fn group_has<A: Net>(snap: &Snapshot, group: u16, ip: A) -> bool {
    snap.services.iter().filter(|v| !v.retired && v.persistence.is_some_and(|p| p.group == group)).any(|v| {
        v.members.iter().any(|g| snap.servers.get(*g as usize).is_some_and(|s| A::server_ip(s) == ip))
    })
}

/// A drained server takes the clients its records name, below its
/// connection limit.
#[inline]
fn sticky(servers: &[lb::RealServer], g: u16, loads: Option<&lb::Loads>) -> bool {
    servers.get(g as usize).is_some_and(|s| {
        s.sticky_only && (s.max_connections == 0 || loads.is_none_or(|l| l.get(g as usize) < s.max_connections as u64))
    })
}

/// A connection placed by a persistence record ended: the record loses a
/// reference (the service's persistence as the current snapshot has it).
#[inline]
pub(super) fn release<A: crate::conntrack::Addr>(persist: &mut PersistTable<A>, snap: &Snapshot, vs: u16, client_ip: A, client_port: u16, server_ip: A, now: u32) {
    if let Some(p) = snap.services.get(vs as usize).and_then(|v| v.persistence) {
        persist.release(p.key(client_ip, client_port), server_ip, now, p.timeout);
    }
}
