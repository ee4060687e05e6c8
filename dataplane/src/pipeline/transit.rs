//! Traffic through the box rather than to it, stateless:
//!
//! - a gateway service (firewall load balancing, seed 002's "sandwich"):
//!   whatever arrives on its link for a host that is not the box's and no
//!   VIP goes to a pool member (a firewall's leg) picked by a hash of the
//!   two addresses that is the same both ways, so the gateway service on
//!   the firewalls' other side (`pair`) picks the same firewall for the
//!   answers; a firewall is used while its legs are up on both sides. Only
//!   the Ethernet addresses change.
//! - a `route` link (`[[interface]] route`): what arrives there for other
//!   hosts is routed as a router does (RFC 1812: TTL down, next hop by the
//!   longest prefix), to the firewalls' return side.
//!
//! Both come after the connection table and the VIPs: a connection the box
//! tracks keeps its path.

use super::{Shard, Verdict};
use crate::forward as nat;
use crate::state::counters::DropReason;
use crate::state::snapshot::Snapshot;
use crate::wire::ethernet::EthernetFrame;

impl Shard {
    /// Forwards a packet in transit that arrived on `link`, when a gateway
    /// service or `route` applies there; None when neither does.
    #[inline]
    pub(super) fn transit(&mut self, snap: &Snapshot, frame: &mut [u8], l3: usize, link: u16, src: u32, dst: u32) -> Option<Verdict> {
        if let Some(vs) = snap.gateway_of(link) {
            return Some(self.via_gateway(snap, frame, vs, src, dst));
        }
        if snap.port(link).is_some_and(|p| p.route) {
            return Some(self.route_on(snap, frame, l3, dst));
        }
        None
    }

    /// The gateway service `vs_index`: a member by the symmetric hash,
    /// among those up here and on the paired side.
    fn via_gateway(&mut self, snap: &Snapshot, frame: &mut [u8], vs_index: u16, src: u32, dst: u32) -> Verdict {
        let Some(vs) = snap.services.get(vs_index as usize) else { return Verdict::Drop(DropReason::NoServer) };
        let pair = vs.pair.and_then(|p| snap.services.get(p as usize));
        let up = |members: &[u16], i: usize| members.get(i).and_then(|g| snap.servers.get(*g as usize)).is_some_and(|s| s.enabled);
        let usable = |i: &usize| up(&vs.members, *i) && pair.is_none_or(|p| up(&p.members, *i));
        let n = (0..vs.members.len()).filter(usable).count();
        if n == 0 {
            return Verdict::Drop(DropReason::NoServer);
        }
        // The same for both directions of a flow (and for its fragments).
        let (a, b) = if src < dst { (src, dst) } else { (dst, src) };
        let k = (crate::hash::keyed64(u64::from(a) << 32 | u64::from(b), 0) % n as u64) as usize;
        let Some(g) = (0..vs.members.len()).filter(usable).nth(k).and_then(|i| vs.members.get(i).copied()) else { return Verdict::Drop(DropReason::NoServer) };
        let Some(server) = snap.servers.get(g as usize) else { return Verdict::Drop(DropReason::NoServer) };
        let Some(mac) = self.neighbors.get(server.nexthop) else { return Verdict::Drop(DropReason::NeighborUnresolved) };
        let Some(out) = snap.port(server.tx_port) else { return Verdict::Drop(DropReason::NoServer) };
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(mac);
        eth.set_src_addr(out.mac);
        let len = frame.len() as u64;
        if let Some(c) = self.counters.services.get(vs_index as usize) {
            c.in_pkts.inc();
            c.in_bytes.add(len);
        }
        if let Some(c) = self.counters.servers.get(g as usize) {
            c.in_pkts.inc();
            c.in_bytes.add(len);
        }
        Verdict::Forward(server.tx_port)
    }

    /// Routes a packet (RFC 1812 §5.2, §5.3.1: TTL decremented, a packet
    /// that would reach 0 dropped, the next hop by the longest matching
    /// prefix, an on-link host resolved on demand).
    fn route_on(&mut self, snap: &Snapshot, frame: &mut [u8], l3: usize, dst: u32) -> Verdict {
        if frame.get(l3 + 8).is_none_or(|ttl| *ttl <= 1) {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        let Some(route) = snap.route(dst) else { return Verdict::Drop(DropReason::NoVirtualServer) };
        let mac = match route.via {
            Some(slot) => self.neighbors.get(slot),
            None => self.neighbors.host(route.link, dst),
        };
        let Some(mac) = mac else { return Verdict::Drop(DropReason::NeighborUnresolved) };
        let Some(out) = snap.port(route.link) else { return Verdict::Drop(DropReason::NoVirtualServer) };
        let Some(hdr) = frame.get_mut(l3..l3 + 20) else { return Verdict::Drop(DropReason::Ipv4Truncated) };
        nat::rewrite_addrs(hdr, None, None, true);
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(mac);
        eth.set_src_addr(out.mac);
        self.counters.routed.inc();
        Verdict::Forward(route.link)
    }
}
