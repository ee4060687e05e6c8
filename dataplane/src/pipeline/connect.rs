//! A new connection: schedule (or follow a persistence record), create
//! the entry, forward the first packet; or refuse it.

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
fn refusal(snap: &Snapshot, frame: &[u8], p: &L4Info, in_port: u16) -> Verdict {
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
    /// A first packet to a virtual server: schedule, create the entry,
    /// forward.
    pub(super) fn new_connection(&mut self, snap: &Snapshot, frame: &mut [u8], p: &L4Info, vs_index: u16, in_port: u16) -> Verdict {
        if p.proto == protocol::TCP {
            let Some(vs) = snap.services.get(vs_index as usize) else { return Verdict::Drop(DropReason::NoVirtualServer) };
            // The SYN proxy answers SYNs itself and opens on a cookie's ACK.
            if vs.syn_proxy != SynProxy::Off {
                let syn = p.tcp_flags & (tcpf::SYN | tcpf::ACK | tcpf::RST) == tcpf::SYN;
                if syn && self.proxying(vs.syn_proxy) {
                    return self.answer_syn(snap, frame, p, in_port, false);
                }
                // A source over its cap: cookies for it alone.
                if syn && self.source_over_cap(p.src) {
                    return self.answer_syn(snap, frame, p, in_port, true);
                }
                // An ACK may return a cookie sent in the last two periods.
                if p.tcp_flags & (tcpf::SYN | tcpf::ACK | tcpf::RST) == tcpf::ACK && (vs.syn_proxy == SynProxy::On || self.now < self.cookies_valid_until) {
                    return self.cookie_ack(snap, frame, p, vs_index, in_port);
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
    pub(super) fn open_entry(&mut self, snap: &Snapshot, frame: &mut [u8], p: &L4Info, vs_index: u16, in_port: u16, flags: EntryFlags) -> Result<FlowId, Verdict> {
        let Some(vs) = snap.services.get(vs_index as usize) else { return Err(Verdict::Drop(DropReason::NoVirtualServer)) };
        // A garbage first packet must not take a table entry (nor a turn of
        // the scheduler).
        if frame.get(p.l3 + p.hl..p.l3 + p.ip_len).is_none() {
            return Err(Verdict::Drop(DropReason::Ipv4BadTotalLength));
        }
        if !super::classify::l4_checksum_ok(frame, p) {
            return Err(Verdict::Drop(DropReason::L4BadChecksum));
        }
        if !self.make_room(snap, vs_index, p.proto) {
            return Err(Verdict::Drop(DropReason::FlowTableFull));
        }
        // The appliance's own stack serves it (the exception path).
        if vs.forwarding == Forwarding::Local {
            return self.open_local(frame, p, vs_index, in_port, flags);
        }
        let (server_index, persisted) = match vs.persistence {
            Some(pers) => self.persistent_pick(snap, vs_index, p, &pers),
            None => {
                let flow = lb::Flow4 { src: p.src, dst: p.dst, sport: p.sport, dport: p.dport, proto: p.proto };
                (self.sched.pick_for(vs_index as usize, vs, &snap.servers, &flow, self.loads.as_deref()), false)
            }
        };
        let Some(server_index) = server_index else {
            return Err(refusal(snap, frame, p, in_port));
        };
        let Some(server) = snap.servers.get(server_index as usize) else { return Err(Verdict::Drop(DropReason::NoServer)) };
        // Hairpin (seeds 002, 004): a NAT client on the servers' own
        // segment would get the server's answer directly, from the server's
        // address; source NAT to the self IP brings the answer back here.
        let hairpin = vs.forwarding == Forwarding::Nat && snap.port(server.tx_port).is_some_and(|pv| pv.on_link(p.src));
        let mode = if hairpin { Forwarding::FullNat } else { vs.forwarding };
        let (local_ip, local_port) = match mode {
            // (Source NAT entries are made by `snat`; no entry is a gateway's.)
            Forwarding::Nat | Forwarding::DsrL2 | Forwarding::DsrDscp | Forwarding::DsrTunnel | Forwarding::Snat | Forwarding::Gateway | Forwarding::Local | Forwarding::LocalOut => (p.src, p.sport),
            Forwarding::FullNat => {
                let hairpin_src = [snap.port(server.tx_port).map_or(0, |pv| pv.self_ip)];
                let addrs = if hairpin { &hairpin_src[..] } else { &vs.local_addrs[..] };
                let mut port = self.local_ports.alloc(addrs);
                if port.is_none() && !hairpin && self.free_a_port(snap, vs_index, p.proto, addrs) {
                    port = self.local_ports.alloc(addrs);
                }
                match port {
                    Some(l) => l,
                    None => {
                        if let (true, Some(pers)) = (persisted, vs.persistence) {
                            self.persist.release(pers.key(p.src, p.sport), server.ip, self.now, pers.timeout);
                        }
                        return Err(Verdict::Drop(DropReason::NoLocalPort));
                    }
                }
            }
        };
        let reply_key = FlowKey { src_ip: server.ip, dst_ip: local_ip, src_port: server.port, dst_port: local_port, proto: p.proto };
        self.table.prefetch_insert(self.table.hash(&reply_key));
        let client_mac = EthernetFrame::new_unchecked(&*frame).src_addr();
        let init = FlowInit {
            proto: p.proto,
            client_ip: p.src,
            client_port: p.sport,
            vip: p.dst,
            vport: p.dport,
            server_ip: server.ip,
            server_port: server.port,
            local_ip,
            local_port,
            vs: vs_index,
            server: server_index,
            client_port_id: in_port as u8,
            client_mac: client_mac.0,
            flags: {
                let flags = if persisted { flags | EntryFlags::PERSIST } else { flags };
                let header = vs.proxy_header && mode == Forwarding::FullNat && p.proto == crate::conntrack::IPPROTO_TCP;
                if header { flags | EntryFlags::PROXY_HEADER } else { flags }
            },
            mode,
        };
        // `process` just missed the original key in this table.
        let mut inserted = self.table.insert_after_miss(&init, self.now);
        if inserted == Err(InsertError::Exists) && self.reclaim_closing(snap, &reply_key) {
            inserted = self.table.insert_after_miss(&init, self.now);
        }
        let id = match inserted {
            Ok(id) => id,
            Err(e) => {
                if mode == Forwarding::FullNat {
                    self.local_ports.free(local_ip, local_port);
                }
                if let (true, Some(pers)) = (persisted, vs.persistence) {
                    self.persist.release(pers.key(p.src, p.sport), server.ip, self.now, pers.timeout);
                }
                return Err(Verdict::Drop(match e {
                    InsertError::Full => DropReason::FlowTableFull,
                    InsertError::Exists => DropReason::FlowExists,
                }));
            }
        };
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
        if init.flags.contains(EntryFlags::PROXY_HEADER) {
            self.pheader_open(id, p.seg.seq);
        }
        self.emit_flow(SyncKind::Create, id);
        Ok(id)
    }

    /// Picks a server for a new connection of a persistent service: the
    /// client's record, when it names a server of this service that can
    /// take the connection (and, unless `keep_on_down`, has not gone down
    /// since), else the scheduler's choice, recorded. Returns the server
    /// and whether the connection references a record.
    #[inline]
    fn persistent_pick(&mut self, snap: &Snapshot, vs_index: u16, p: &L4Info, pers: &lb::Persistence) -> (Option<u16>, bool) {
        let Some(vs) = snap.services.get(vs_index as usize) else { return (None, false) };
        let key = pers.key(p.src, p.sport);
        let loads = self.loads.as_deref();
        let mut keep_record = false;
        if let Some(rec) = self.persist.get(key, self.now) {
            let member = vs.members.iter().copied().find(|g| snap.servers.get(*g as usize).is_some_and(|s| s.ip == rec.server_ip));
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
                    Shard::emit_persist(&mut self.sync, &self.counters, SyncKind::PersistDelete, p, (rec.server_ip, 0), vs.forwarding, 0);
                }
                // Made by another service of the group whose pool has a
                // node this one lacks: leave it to that service. A node no
                // service of the group has any more (removed): replace it.
                None => keep_record = group_has(snap, pers.group, rec.server_ip),
            }
        }
        let flow = lb::Flow4 { src: p.src, dst: p.dst, sport: p.sport, dport: p.dport, proto: p.proto };
        let pick = self.sched.pick_for(vs_index as usize, vs, &snap.servers, &flow, loads);
        let Some(server) = pick.and_then(|g| snap.servers.get(g as usize)) else { return (pick, false) };
        if keep_record {
            return (pick, false);
        }
        if !self.persist.insert(key, server.ip, server.epoch, self.now, pers.timeout) {
            self.counters.persist_evicted.inc();
        }
        self.counters.persist_records.inc();
        Shard::emit_persist(&mut self.sync, &self.counters, SyncKind::Persist, p, (server.ip, server.port), vs.forwarding, pers.timeout);
        (pick, true)
    }

    /// With NAT, a client's connections to two virtual ports that lead to
    /// one server:port look the same from the server's side, so a new one
    /// can find its reply key held by an older one that is closing (the
    /// client reused its port, RFC 9293 §3.6.1): the closing entry goes, as
    /// a SYN reusing a TIME_WAIT entry's own key does. An open one stays,
    /// and the new connection is refused (`flow-exists`). True when the key
    /// is free now. Cold path.
    #[cold]
    fn reclaim_closing(&mut self, snap: &Snapshot, reply_key: &FlowKey) -> bool {
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
fn group_has(snap: &Snapshot, group: u16, ip: u32) -> bool {
    snap.services.iter().filter(|v| !v.retired && v.persistence.is_some_and(|p| p.group == group)).any(|v| {
        v.members.iter().any(|g| snap.servers.get(*g as usize).is_some_and(|s| s.ip == ip))
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
pub(super) fn release(persist: &mut PersistTable, snap: &Snapshot, vs: u16, client_ip: u32, client_port: u16, server_ip: u32, now: u32) {
    if let Some(p) = snap.services.get(vs as usize).and_then(|v| v.persistence) {
        persist.release(p.key(client_ip, client_port), server_ip, now, p.timeout);
    }
}
