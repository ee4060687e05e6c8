//! What differs between the address families on the flow path. Each
//! worker has a shard per family (`Shard<u32>`, and `Shard<u128>` made when
//! a snapshot first has an IPv6 service); the flow path (`connect`,
//! `forwarding`, `room`) is generic over `Net`, so a shard's table, local
//! ports and persistence records are its family's. What IPv6 does not have
//! yet (the SYN proxy, the PROXY header, the exception path, hairpin,
//! refusals, state sync) is reached through `Net::v4` and `Net::v4_shard`,
//! which are None for IPv6; persistence is each family's.

use super::{L4Info, Shard};
use crate::conntrack::{Addr, Flow};
use crate::lb::RealServer;
use crate::state::snapshot::{Snapshot, VirtualService};

pub(super) trait Net: Addr {
    /// A server's address of this family (an IPv4 server's in the IPv4
    /// table, an IPv6 server's in the IPv6 one).
    fn server_ip(s: &RealServer) -> Self;
    /// A full-NAT service's source addresses of this family.
    fn local_addrs(v: &VirtualService) -> &[Self];
    /// The live service on ip:port/proto.
    fn find_service(snap: &Snapshot, ip: Self, port: u16, proto: u8) -> Option<u16>;
    /// Rewrites a TCP/UDP packet's addresses and ports (`ip` from the IP
    /// header on, `l4` the transport header's offset in it), checksums
    /// kept right, TTL or hop limit down by one.
    fn rewrite(ip: &mut [u8], l4: usize, proto: u8, src: Option<(Self, u16)>, dst: Option<(Self, u16)>);
    /// Whether the packet's TCP or UDP checksum is right.
    fn l4_checksum_ok(frame: &[u8], p: &L4Info<Self>) -> bool;
    /// 32 bits of the client's address for the schedulers' hashes.
    fn sched_word(a: Self) -> u32 {
        a.steer_word()
    }
    /// An IPv4 address as this family's (IPv4 only, yet), and back.
    fn from_v4(a: u32) -> Option<Self>;
    fn to_v4(self) -> Option<u32>;
    /// IPv4's views, for what only IPv4 has yet.
    fn v4(p: &L4Info<Self>) -> Option<&L4Info<u32>>;
    fn v4_flow(f: &Flow<Self>) -> Option<&Flow<u32>>;
    fn v4_shard(s: &mut Shard<Self>) -> Option<&mut Shard<u32>>;
    /// An IPv4 address held in the IPv6 table (IPv4-mapped): the IPv4 side
    /// of a translated connection (`forward::xlate`).
    fn is_mapped(self) -> bool {
        false
    }
}

impl Net for u32 {
    #[inline(always)]
    fn server_ip(s: &RealServer) -> u32 {
        s.ip
    }
    #[inline(always)]
    fn local_addrs(v: &VirtualService) -> &[u32] {
        &v.local_addrs
    }
    #[inline(always)]
    fn find_service(snap: &Snapshot, ip: u32, port: u16, proto: u8) -> Option<u16> {
        snap.find_service(ip, port, proto)
    }
    #[inline(always)]
    fn rewrite(ip: &mut [u8], l4: usize, proto: u8, src: Option<(u32, u16)>, dst: Option<(u32, u16)>) {
        crate::forward::rewrite(ip, l4, proto, src, dst, true)
    }
    #[inline(always)]
    fn l4_checksum_ok(frame: &[u8], p: &L4Info<u32>) -> bool {
        super::classify::l4_checksum_ok(frame, p)
    }
    #[inline(always)]
    fn from_v4(a: u32) -> Option<u32> {
        Some(a)
    }
    #[inline(always)]
    fn to_v4(self) -> Option<u32> {
        Some(self)
    }
    #[inline(always)]
    fn v4(p: &L4Info<u32>) -> Option<&L4Info<u32>> {
        Some(p)
    }
    #[inline(always)]
    fn v4_flow(f: &Flow<u32>) -> Option<&Flow<u32>> {
        Some(f)
    }
    #[inline(always)]
    fn v4_shard(s: &mut Shard<u32>) -> Option<&mut Shard<u32>> {
        Some(s)
    }
}

impl Net for u128 {
    #[inline(always)]
    fn is_mapped(self) -> bool {
        crate::forward::xlate::unmapped(self).is_some()
    }
    #[inline(always)]
    fn server_ip(s: &RealServer) -> u128 {
        // A translating service's IPv4 server: mapped.
        if s.ip6 == [0; 16] { crate::forward::xlate::mapped(s.ip) } else { s.ip6() }
    }
    #[inline(always)]
    fn local_addrs(v: &VirtualService) -> &[u128] {
        &v.local_addrs6
    }
    #[inline(always)]
    fn find_service(snap: &Snapshot, ip: u128, port: u16, proto: u8) -> Option<u16> {
        snap.find_service6(ip, port, proto)
    }
    #[inline(always)]
    fn rewrite(ip: &mut [u8], l4: usize, proto: u8, src: Option<(u128, u16)>, dst: Option<(u128, u16)>) {
        crate::forward::rewrite6(ip, l4, proto, src, dst, true)
    }
    /// Over the IPv6 pseudo header (RFC 8200 §8.1).
    #[inline]
    fn l4_checksum_ok(frame: &[u8], p: &L4Info<u128>) -> bool {
        use crate::wire::checksum::{fold, sum};
        let Some(seg) = frame.get(p.l3 + p.hl..p.l3 + p.ip_len) else { return false };
        // An IPv4 datagram of a translated connection (its addresses
        // mapped) may have no UDP checksum (RFC 768); translation gives it
        // one (`forward::xlate`).
        if p.proto == crate::wire::ipv4::protocol::UDP && p.src.is_mapped() && seg.get(6..8) == Some(&[0, 0][..]) {
            return true;
        }
        let ps = crate::wire::ipv6::pseudo_header(p.src.into(), p.dst.into(), p.proto, seg.len() as u32);
        fold(sum(seg, ps)) == 0xffff
    }
    #[inline(always)]
    fn from_v4(_: u32) -> Option<u128> {
        None
    }
    #[inline(always)]
    fn to_v4(self) -> Option<u32> {
        None
    }
    #[inline(always)]
    fn v4(_: &L4Info<u128>) -> Option<&L4Info<u32>> {
        None
    }
    #[inline(always)]
    fn v4_flow(_: &Flow<u128>) -> Option<&Flow<u32>> {
        None
    }
    #[inline(always)]
    fn v4_shard(_: &mut Shard<u128>) -> Option<&mut Shard<u32>> {
        None
    }
}
