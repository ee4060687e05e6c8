//! Packets of a known connection, both directions: rewrite by the entry's
//! forwarding mode, address the next hop, count.

use super::family::Net;
use super::{Encap, Encap6, L4Info, Shard, TooBig, Verdict, Xlate};
use crate::conntrack::track::PROXY_OPEN;
use crate::conntrack::{Check, Dir, EntryFlags, FlowId, FlowState};
use crate::wire::tcp::flags as tcpf;
use crate::forward as nat;
use crate::state::counters::DropReason;
use crate::state::snapshot::{Forwarding, Snapshot};
use crate::wire::ethernet::{EthernetAddress, EthernetFrame};

impl<A: Net> Shard<A> {
    /// Accounts a packet of connection `id` travelling `dir`: sequence
    /// tracking, state, expiry (`FlowTable::on_segment`), the established
    /// gauges, and state sync's update. A reset outside the receiver's
    /// window comes back as the drop to return; one inside it passes
    /// without changing the state (RFC 5961 §3.2: the endpoint challenges
    /// it).
    #[inline]
    pub(super) fn account(&mut self, id: FlowId, dir: Dir, p: &L4Info<A>) -> Result<FlowState, Verdict> {
        let Some(f) = self.table.get(id) else { return Err(Verdict::Drop(DropReason::TcpNoFlow)) };
        let (old, flags, vs, server) = (f.state, f.flags, f.vs, f.server_slot());
        let mut seg = p.seg;
        // A proxied connection is tracked in the client's view.
        if flags.contains(EntryFlags::SYN_PROXY) && dir == Dir::Reply {
            if let Some(t) = self.table.proxy(id).filter(|t| t.proxy & PROXY_OPEN != 0) {
                let s = super::synproxy::shift_of(t);
                seg.seq = seg.seq.wrapping_sub(s.seq);
                seg.win = ((u32::from(seg.win) << s.wscale_from) >> s.wscale_to).min(0xffff) as u16;
            }
        }
        // So is one with a PROXY header (the server acknowledges it too).
        if flags.contains(EntryFlags::PROXY_HEADER) && dir == Dir::Reply {
            if let Some((at, acked)) = A::v4_shard(self).and_then(|s4| s4.pheader_at(id)) {
                seg.ack = nat::proxy_header::client_view(seg.ack, at, acked);
            }
        }
        let (state, check) = self.table.on_segment(id, dir, &seg, self.now);
        match check {
            Check::Pass => {}
            Check::RstInWindow => self.counters.rst_in_window.inc(),
            Check::RstOutOfWindow => return Err(Verdict::Drop(DropReason::TcpRstOutOfWindow)),
            // Forwarded (the endpoint judges it); nothing here moved.
            Check::Implausible => self.counters.tcp_implausible.inc(),
        }
        if state != old {
            super::established_moved(&self.counters, vs, server, old, state);
        }
        if let Some(s4) = A::v4_shard(self).filter(|s| s.sync.is_some()) {
            s4.after_packet(id, old, flags, state);
        }
        Ok(state)
    }

    /// Client to server: DNAT (and SNAT for full-NAT), L2 to the server's
    /// next hop.
    pub(super) fn forward_original(&mut self, snap: &Snapshot, frame: &mut [u8], p: &L4Info<A>, id: FlowId) -> Verdict {
        let flags = self.table.get(id).map_or(EntryFlags::empty(), |f| f.flags);
        if let (Some(p4), Some(s4)) = (A::v4(p), A::v4_shard(self)) {
            if s4.proxy_waiting(flags, id) && p4.tcp_flags & tcpf::RST == 0 {
                return s4.proxy_pending(snap, id, frame, p4);
            }
        }
        if let Err(v) = self.account(id, Dir::Original, p) {
            return v;
        }
        let Some(f) = self.table.get(id) else { return Verdict::Drop(DropReason::TcpNoFlow) };
        let (vs, server_index, server_ip, server_port, local_ip, local_port) = (f.vs, f.server_slot(), f.server_ip, f.server_port, f.local_ip, f.local_port);
        let (mode, client_ip, client_port) = (f.mode, f.client_ip, f.client_port);
        if mode == Forwarding::Local {
            return match (A::v4(p), A::v4_shard(self)) {
                (Some(p4), Some(s4)) => {
                    s4.proxy_to_server(flags, id, frame, p4);
                    s4.deliver_to_host(snap, frame, p4, vs)
                }
                _ => Verdict::Drop(DropReason::NoVirtualServer),
            };
        }
        let Some(server) = snap.servers.get(server_index) else { return Verdict::Drop(DropReason::NoServer) };
        if server.reset {
            self.remove(snap, id);
            return Verdict::Drop(DropReason::ServerDown);
        }
        let Some(mac) = self.neighbors.get(server.nexthop) else { return Verdict::Drop(DropReason::NeighborUnresolved) };
        let Some(out) = snap.port(server.tx_port) else { return Verdict::Drop(DropReason::NoServer) };
        // The range was validated by the parse (`classify`).
        let Some(ip) = frame.get_mut(p.l3..p.l3 + p.ip_len) else { return Verdict::Drop(DropReason::Ipv4BadTotalLength) };
        let mut encap = None;
        match mode {
            // RFC 7915: the header changes family in `process_packet`.
            Forwarding::FullNat if client_ip.is_mapped() || server_ip.is_mapped() => match xlate_room(ip, p, client_ip.is_mapped(), out.mtu) {
                Ok(()) => encap = Some(Verdict::Xlate(Xlate { id, reply: false, port: server.tx_port, l3: p.l3 as u8, hl: p.hl as u8, ip_len: p.ip_len as u16 })),
                Err(v) => return v,
            },
            Forwarding::Nat => A::rewrite(ip, p.hl, p.proto, None, Some((server_ip, server_port))),
            Forwarding::FullNat => A::rewrite(ip, p.hl, p.proto, Some((local_ip, local_port)), Some((server_ip, server_port))),
            // MAT: IP and L4 untouched (the server holds the VIP), only the
            // Ethernet addresses below; no TTL decrement, as IPVS's DR.
            Forwarding::DsrL2 => {}
            // `classify` sends source-NAT entries to `forward_snat`, the
            // stack's own to `forward_local_out`; `Local` left above.
            Forwarding::Snat | Forwarding::Gateway | Forwarding::Local | Forwarding::LocalOut => return Verdict::Drop(DropReason::NoVirtualServer),
            // L3 DSR (IPv4): to the server's address, the VIP named by the
            // DSCP; or inside a tunnel to it.
            Forwarding::DsrDscp | Forwarding::DsrTunnel => match l3_dsr_any(snap, ip, p, vs, mode, (client_ip, client_port), (server_ip, server_port), (server_index, server.tx_port)) {
                Ok(e) => encap = e,
                Err(v) => return v,
            },
        }
        if let (Some(p4), Some(s4)) = (A::v4(p), A::v4_shard(self)) {
            s4.proxy_to_server(flags, id, frame, p4);
        }
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(mac);
        eth.set_src_addr(out.mac);
        self.count(vs, server_index, p.ip_len as u64, Dir::Original);
        if flags.contains(EntryFlags::PROXY_HEADER) && mode == Forwarding::FullNat {
            if let (Some(p4), Some(s4)) = (A::v4(p), A::v4_shard(self)) {
                match s4.pheader_to_server(id, frame, p4) {
                    Ok(None) => {}
                    Ok(Some(header)) => return s4.pheader_insert(server.tx_port, out.mtu, frame, p4, header),
                    Err(v) => return v,
                }
            }
        }
        encap.unwrap_or(Verdict::Forward(server.tx_port))
    }

    /// Server to client: SNAT back to the VIP (and DNAT to the client for
    /// full-NAT), L2 back to the MAC the client's packets came from.
    pub(super) fn forward_reply(&mut self, snap: &Snapshot, frame: &mut [u8], p: &L4Info<A>, id: FlowId) -> Verdict {
        let flags = self.table.get(id).map_or(EntryFlags::empty(), |f| f.flags);
        if let (Some(p4), Some(s4)) = (A::v4(p), A::v4_shard(self)) {
            if s4.proxy_waiting(flags, id) {
                return s4.server_answer(snap, frame, p4, id);
            }
        }
        if let Err(v) = self.account(id, Dir::Reply, p) {
            return v;
        }
        let Some(f) = self.table.get(id) else { return Verdict::Drop(DropReason::TcpNoFlow) };
        let mode = f.mode;
        let (vs, server_index, out_port) = (f.vs, f.server_slot(), f.client_port_id as u16);
        let (vip, vport, client_ip, client_port, client_mac) = (f.vip, f.vport, f.client_ip, f.client_port, f.client_mac);
        let translated = mode == Forwarding::FullNat && (client_ip.is_mapped() || f.server_ip.is_mapped());
        let grows = f.server_ip.is_mapped();
        if snap.servers.get(server_index).is_some_and(|s| s.reset) {
            self.remove(snap, id);
            return Verdict::Drop(DropReason::ServerDown);
        }
        let Some(out) = snap.port(out_port) else { return Verdict::Drop(DropReason::NoVirtualServer) };
        let Some(ip) = frame.get_mut(p.l3..p.l3 + p.ip_len) else { return Verdict::Drop(DropReason::Ipv4BadTotalLength) };
        match mode {
            // Translated (RFC 7915): in `process_packet`.
            Forwarding::FullNat if translated => {
                if let Err(v) = xlate_room(ip, p, grows, out.mtu) {
                    return v;
                }
            }
            Forwarding::Nat => A::rewrite(ip, p.hl, p.proto, Some((vip, vport)), None),
            Forwarding::FullNat => A::rewrite(ip, p.hl, p.proto, Some((vip, vport)), Some((client_ip, client_port))),
            // A DSR server that routes its replies through the box anyway
            // (already from the VIP): routed on to the client.
            Forwarding::DsrL2 | Forwarding::DsrDscp | Forwarding::DsrTunnel => A::rewrite(ip, p.hl, p.proto, None, None),
            // The appliance's own stack answers from the VIP: untouched.
            Forwarding::Local => {}
            // `classify` sends source-NAT entries to `forward_snat`, the
            // stack's own to `forward_local_out`.
            Forwarding::Snat | Forwarding::Gateway | Forwarding::LocalOut => return Verdict::Drop(DropReason::NoVirtualServer),
        }
        if flags.contains(EntryFlags::SYN_PROXY) {
            if let (Some(t), Some(seg)) = (self.table.proxy(id).filter(|t| t.proxy & PROXY_OPEN != 0), frame.get_mut(p.l3 + p.hl..p.l3 + p.ip_len)) {
                nat::synproxy::to_client(seg, &super::synproxy::shift_of(t));
            }
        }
        if flags.contains(EntryFlags::PROXY_HEADER) && mode == Forwarding::FullNat {
            if let (Some(p4), Some(s4)) = (A::v4(p), A::v4_shard(self)) {
                s4.pheader_to_client(id, frame, p4);
            }
        }
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(EthernetAddress(client_mac));
        eth.set_src_addr(out.mac);
        self.count(vs, server_index, p.ip_len as u64, Dir::Reply);
        if translated {
            return Verdict::Xlate(Xlate { id, reply: true, port: out_port, l3: p.l3 as u8, hl: p.hl as u8, ip_len: p.ip_len as u16 });
        }
        Verdict::Forward(out_port)
    }
}

impl Shard {
    /// A SYN-proxied connection's client segment, into the server's
    /// sequence space.
    #[inline]
    fn proxy_to_server(&self, flags: EntryFlags, id: FlowId, frame: &mut [u8], p: &L4Info) {
        if flags.contains(EntryFlags::SYN_PROXY) {
            if let (Some(t), Some(seg)) = (self.table.proxy(id).filter(|t| t.proxy & PROXY_OPEN != 0), frame.get_mut(p.l3 + p.hl..p.l3 + p.ip_len)) {
                nat::synproxy::to_server(seg, &super::synproxy::shift_of(t));
            }
        }
    }
}

/// The outer header of a `dsr-tunnel` connection's packets: one per flow,
/// its source (and GUE source port) from the client's address and port
/// (`forward::tunnel::flow_hash`), out of `self_ip` unless the service has
/// a `tunnel_source`. ICMP errors about tunnel packets are checked
/// against it (`icmp`).
#[inline]
pub(super) fn tunnel_outer(t: &crate::state::snapshot::TunnelSpec, self_ip: u32, client_ip: u32, client_port: u16, proto: u8, server_ip: u32) -> nat::Outer {
    let h = nat::tunnel::flow_hash(client_ip, client_port, proto);
    let (net, host_mask) = t.source.unwrap_or((self_ip, 0));
    let (src, sport) = nat::tunnel::entropy(h, net, host_mask);
    nat::Outer { kind: t.kind, src, dst: server_ip, sport, dport: t.port }
}

impl<A: Net> Shard<A> {
    /// A packet of `len` bytes of server slot `server` of service `vs`,
    /// toward the server (`Dir::Original`) or back to the client: its
    /// service's and its server's counters.
    #[inline]
    fn count(&self, vs: u16, server: usize, len: u64, dir: Dir) {
        let services = self.counters.services.get(vs as usize).map(|c| (&c.in_pkts, &c.in_bytes, &c.out_pkts, &c.out_bytes));
        let servers = self.counters.servers.get(server).map(|c| (&c.in_pkts, &c.in_bytes, &c.out_pkts, &c.out_bytes));
        for (in_pkts, in_bytes, out_pkts, out_bytes) in services.into_iter().chain(servers) {
            let (pkts, bytes) = if dir == Dir::Original { (in_pkts, in_bytes) } else { (out_pkts, out_bytes) };
            pkts.inc();
            bytes.add(len);
        }
    }
}

/// L3 direct server return's rewrite of a client packet (`ip`, IPv4):
/// `dsr-dscp` to the server's address with the service's DSCP;
/// `dsr-tunnel` the outer header to add (`Verdict::Encap`), or the
/// too-big answer when the tunnel's MTU cannot take it.
#[inline]
#[allow(clippy::too_many_arguments, reason = "the entry's fields, read once by the caller")]
fn l3_dsr(snap: &Snapshot, ip: &mut [u8], p: &L4Info, vs: u16, mode: Forwarding, (client_ip, client_port): (u32, u16), (server_ip, server_port): (u32, u16), tx_port: u16) -> Result<Option<Encap>, Verdict> {
    if mode == Forwarding::DsrDscp {
        // Routed, so TTL goes down.
        nat::rewrite(ip, p.hl, p.proto, None, Some((server_ip, server_port)), true);
        if let Some(v) = snap.services.get(vs as usize) {
            nat::set_dscp(ip, v.dscp);
        }
        return Ok(None);
    }
    // The packet untouched inside an outer header to the server, added by
    // `process_packet` (`Verdict::Encap`).
    let Some(t) = snap.services.get(vs as usize).and_then(|v| v.tunnel) else { return Err(Verdict::Drop(DropReason::NoVirtualServer)) };
    let Some(out) = snap.port(tx_port) else { return Err(Verdict::Drop(DropReason::NoServer)) };
    let overhead = t.kind.overhead();
    if p.ip_len + overhead > out.mtu as usize {
        // RFC 1191 §4: with DF the sender learns the tunnel's MTU; without,
        // the box does not fragment.
        let df = ip.get(6).is_some_and(|b| b & 0x40 != 0);
        if df && nat::is_unicast_host(p.src) {
            return Err(Verdict::TooBig(TooBig { l3: p.l3 as u8, hl: p.hl as u8, mtu: out.mtu.saturating_sub(overhead as u16), len6: 0, xlate: false }));
        }
        return Err(Verdict::Drop(DropReason::TunnelTooBig));
    }
    Ok(Some(Encap { port: tx_port, l3: p.l3 as u8, ip_len: p.ip_len as u16, outer: tunnel_outer(&t, out.self_ip, client_ip, client_port, p.proto, server_ip) }))
}

/// `dsr-tunnel` over IPv6 (RFC 2473): the client's packet (`l3`,
/// `ip_len` bytes) untouched inside an outer IPv6 header to the server,
/// added by `process_packet` (`Verdict::Encap6`); or, when the
/// encapsulation would take it past the link's MTU, Packet Too Big with
/// the tunnel's MTU (RFC 2473 §7.1: IPv6 has no DF, every sender learns;
/// a tunnel MTU below IPv6's 1280 cannot be told, and the packet is
/// dropped as `tunnel-too-big`).
#[inline]
fn tunnel6(snap: &Snapshot, (l3, ip_len, proto): (usize, usize, u8), vs: u16, (client, client_port): (u128, u16), server: usize, tx_port: u16) -> Result<Verdict, Verdict> {
    let Some(t) = snap.services.get(vs as usize).and_then(|v| v.tunnel) else { return Err(Verdict::Drop(DropReason::NoVirtualServer)) };
    let Some(out) = snap.port(tx_port) else { return Err(Verdict::Drop(DropReason::NoServer)) };
    let overhead = t.kind.overhead6();
    if ip_len + overhead > out.mtu as usize {
        let mtu = out.mtu.saturating_sub(overhead as u16);
        if usize::from(mtu) < nat::tunnel6::MIN_MTU {
            return Err(Verdict::Drop(DropReason::TunnelTooBig));
        }
        return Err(Verdict::TooBig(TooBig { l3: l3 as u8, hl: 0, mtu, len6: ip_len as u16, xlate: false }));
    }
    let hash = nat::tunnel::flow_hash6(client, client_port, proto) as u32;
    Ok(Verdict::Encap6(Encap6 { port: tx_port, l3: l3 as u8, ip_len: ip_len as u16, kind: t.kind, dport: t.port, server: server as u32, hash }))
}

/// Whether a translated packet (`ip`, its headers per `p`) fits: an IPv4
/// one with options, or an IPv6 one with extension headers, is not
/// translated (`xlate-headers`); one growing into IPv6 (`grows`: 20 bytes
/// more) past the link's `mtu` is answered, with DF, with fragmentation
/// needed carrying the MTU less 20 (RFC 7915 §4: the sender learns the
/// translated path's MTU), and dropped without (`xlate-too-big`).
#[inline]
fn xlate_room<A: Net>(ip: &[u8], p: &L4Info<A>, grows: bool, mtu: u16) -> Result<(), Verdict> {
    let fixed = if grows { 20 } else { 40 };
    if p.hl != fixed {
        return Err(Verdict::Drop(DropReason::XlateHeaders));
    }
    if grows && p.ip_len + crate::forward::xlate::DELTA > usize::from(mtu) {
        // (Answered only to one host, RFC 1812 §4.3.2.7: the IPv4 source,
        // mapped, is `steer_word`'s.)
        let df = ip.get(6).is_some_and(|b| b & 0x40 != 0);
        return Err(if df && nat::is_unicast_host(crate::conntrack::Addr::steer_word(p.src)) {
            Verdict::TooBig(TooBig { l3: p.l3 as u8, hl: p.hl as u8, mtu: mtu.saturating_sub(crate::forward::xlate::DELTA as u16), len6: 0, xlate: true })
        } else {
            Verdict::Drop(DropReason::XlateTooBig)
        });
    }
    Ok(())
}

/// L3 direct server return of either family (`l3_dsr` for IPv4,
/// `tunnel6` and the traffic class for IPv6): the verdict to return after
/// the MACs are set (`Verdict::Encap`/`Encap6`), or none (sent as is).
#[inline]
#[allow(clippy::too_many_arguments, reason = "the entry's fields, read once by the caller")]
fn l3_dsr_any<A: Net>(snap: &Snapshot, ip: &mut [u8], p: &L4Info<A>, vs: u16, mode: Forwarding, (client_ip, client_port): (A, u16), (server_ip, server_port): (A, u16), (server_index, tx_port): (usize, u16)) -> Result<Option<Verdict>, Verdict> {
    match (A::v4(p), client_ip.to_v4(), server_ip.to_v4(), client_ip.ip()) {
        (Some(p4), Some(client), Some(server4), _) => l3_dsr(snap, ip, p4, vs, mode, (client, client_port), (server4, server_port), tx_port).map(|e| e.map(Verdict::Encap)),
        (None, _, _, core::net::IpAddr::V6(client)) if mode == Forwarding::DsrTunnel => tunnel6(snap, (p.l3, p.ip_len, p.proto), vs, (u128::from(client), client_port), server_index, tx_port).map(Some),
        // `dsr-dscp` over IPv6: to the server's address, the VIP named by
        // the traffic class's DSCP; routed, so the hop limit goes down.
        (None, _, _, core::net::IpAddr::V6(_)) => {
            A::rewrite(ip, p.hl, p.proto, None, Some((server_ip, server_port)));
            nat::set_dscp6(ip, snap.services.get(vs as usize).map_or(0, |v| v.dscp));
            Ok(None)
        }
        _ => Err(Verdict::Drop(DropReason::NoVirtualServer)),
    }
}
