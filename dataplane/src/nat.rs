//! Address and port rewriting with incremental checksum updates
//! (RFC 1624), full-NAT local port pools, and the refusals (TCP RST, ICMP
//! port unreachable) of new connections no server can take, built in place.

use crate::wire::checksum::{self, update16, update32};
use crate::wire::ethernet::EthernetAddress;
use crate::wire::ipv4::protocol;
use crate::wire::tcp::flags as tcpf;

// Byte offsets inside the IPv4 header (RFC 791 §3.1).
const IP_TOTAL_LEN: usize = 2;
const IP_TTL: usize = 8;
const IP_CHECK: usize = 10;
const IP_SRC: usize = 12;
const IP_DST: usize = 16;
// Inside TCP (RFC 9293 §3.1) and UDP (RFC 768) headers.
const L4_SPORT: usize = 0;
const L4_DPORT: usize = 2;
const TCP_SEQ: usize = 4;
const TCP_ACK: usize = 8;
const TCP_DOFF: usize = 12;
const TCP_FLAGS: usize = 13;
const TCP_CHECK: usize = 16;
const UDP_CHECK: usize = 6;

#[inline(always)]
fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Where the L4 checksum lives, if the segment carries one we must keep
/// right: TCP always; UDP unless it is 0 ("no checksum", RFC 768).
#[inline(always)]
fn l4_check_at(proto: u8, l4: &[u8]) -> Option<usize> {
    match proto {
        protocol::TCP if l4.len() >= TCP_CHECK + 2 => Some(TCP_CHECK),
        protocol::UDP if l4.len() >= UDP_CHECK + 2 && get16(l4, UDP_CHECK) != 0 => Some(UDP_CHECK),
        _ => None,
    }
}

/// Rewrites the addresses and ports of an IPv4 TCP/UDP packet in place and
/// updates the IPv4 header checksum and the L4 checksum incrementally.
/// `ip` is the IPv4 header and payload (from the IP header on), `hl` the
/// header length; `src`/`dst` are the new (address, port), `None` to keep.
/// With `decrement_ttl`, TTL drops by one (RFC 1812 §5.3.1; the caller
/// refused TTL <= 1). The caller validated the header lengths.
#[inline]
pub fn rewrite(ip: &mut [u8], hl: usize, proto: u8, src: Option<(u32, u16)>, dst: Option<(u32, u16)>, decrement_ttl: bool) {
    let mut ip_check = get16(ip, IP_CHECK);
    let (hdr, l4) = ip.split_at_mut(hl);
    let l4_at = l4_check_at(proto, l4);
    let mut l4_check = l4_at.map_or(0, |at| get16(l4, at));
    if let Some((addr, port)) = src {
        let old = get32(hdr, IP_SRC);
        put32(hdr, IP_SRC, addr);
        ip_check = update32(ip_check, old, addr);
        // The pseudo header covers the addresses (RFC 9293 §3.1, RFC 768).
        l4_check = update32(l4_check, old, addr);
        let oldp = get16(l4, L4_SPORT);
        put16(l4, L4_SPORT, port);
        l4_check = update16(l4_check, oldp, port);
    }
    if let Some((addr, port)) = dst {
        let old = get32(hdr, IP_DST);
        put32(hdr, IP_DST, addr);
        ip_check = update32(ip_check, old, addr);
        l4_check = update32(l4_check, old, addr);
        let oldp = get16(l4, L4_DPORT);
        put16(l4, L4_DPORT, port);
        l4_check = update16(l4_check, oldp, port);
    }
    if decrement_ttl {
        // TTL shares a 16-bit word with the protocol field.
        let old = get16(hdr, IP_TTL);
        hdr[IP_TTL] = hdr[IP_TTL].wrapping_sub(1);
        ip_check = update16(ip_check, old, get16(hdr, IP_TTL));
    }
    put16(hdr, IP_CHECK, ip_check);
    if let Some(at) = l4_at {
        // A computed UDP checksum of 0 goes out as 0xffff (RFC 768).
        if proto == protocol::UDP && l4_check == 0 {
            l4_check = 0xffff;
        }
        put16(l4, at, l4_check);
    }
}

/// Rewrites only the IPv4 addresses (for the outer header of ICMP errors),
/// with the header checksum; optionally decrements TTL.
#[inline]
pub fn rewrite_addrs(hdr: &mut [u8], src: Option<u32>, dst: Option<u32>, decrement_ttl: bool) {
    let mut check = get16(hdr, IP_CHECK);
    if let Some(a) = src {
        check = update32(check, get32(hdr, IP_SRC), a);
        put32(hdr, IP_SRC, a);
    }
    if let Some(a) = dst {
        check = update32(check, get32(hdr, IP_DST), a);
        put32(hdr, IP_DST, a);
    }
    if decrement_ttl {
        let old = get16(hdr, IP_TTL);
        hdr[IP_TTL] = hdr[IP_TTL].wrapping_sub(1);
        check = update16(check, old, get16(hdr, IP_TTL));
    }
    put16(hdr, IP_CHECK, check);
}

/// Rewrites the first 4 bytes (ports) of an embedded TCP/UDP header.
#[inline]
pub fn rewrite_ports(l4: &mut [u8], sport: Option<u16>, dport: Option<u16>) {
    if l4.len() < 4 {
        return;
    }
    if let Some(p) = sport {
        put16(l4, L4_SPORT, p);
    }
    if let Some(p) = dport {
        put16(l4, L4_DPORT, p);
    }
}

// Refusals: a new connection no server can take is answered at once, as a
// host with no listener would (IPVS with no real server, an F5 pool down),
// by turning its first packet into the answer in place.

/// IPv4 header of a refusal: no options.
const REFUSAL_IP_HL: usize = 20;
/// TTL of refusals: the box originates them (RFC 1700's default, as Linux).
const REFUSAL_TTL: u8 = 64;
/// TOS of ICMP errors: precedence 6, internetwork control (RFC 1812
/// §4.3.2.5).
const ICMP_ERROR_TOS: u8 = 0xc0;
/// Bytes of the refused datagram's payload an ICMP error quotes after its
/// IPv4 header (RFC 792; RFC 1122 §3.2.2: "at least the first 8 data
/// octets").
const ICMP_QUOTED_DATA: usize = 8;

/// True when `addr` names one host an answer may go to: not "this network"
/// (0/8), loopback (127/8), multicast (224/4), reserved (240/4) nor the
/// limited broadcast (RFC 1812 §4.3.2.7, RFC 1122 §3.2.2: no ICMP error
/// about such a source; the same holds for a TCP RST, which would reach
/// every host or none).
#[inline]
pub fn is_unicast_host(addr: u32) -> bool {
    let first = (addr >> 24) as u8;
    first != 0 && first != 127 && first < 224
}

/// Frame length of the refusal of a TCP segment or UDP datagram whose IPv4
/// header (`hl` bytes) starts at `l3`: a bare TCP RST, or an ICMP error
/// quoting the header and 8 bytes of payload. 0 for other protocols.
#[inline]
pub fn refusal_len(proto: u8, l3: usize, hl: usize) -> usize {
    match proto {
        protocol::TCP => l3 + REFUSAL_IP_HL + 20,
        protocol::UDP => l3 + REFUSAL_IP_HL + crate::wire::icmp::HEADER_LEN + hl + ICMP_QUOTED_DATA,
        _ => 0,
    }
}

/// Turns the first packet of a refused connection — a TCP SYN or a UDP
/// datagram, already validated, whose IPv4 header (`hl` bytes) starts at
/// `l3` — into its answer, in place, and returns the answer's frame
/// length; `None`, the frame untouched, when `frame` is shorter than the
/// packet's headers or than `refusal_len`, or `proto` is neither TCP nor
/// UDP.
///
/// - TCP: the reset a closed port sends (RFC 9293 §3.10.7.1, §3.5.2): the
///   segment has no ACK, so `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`,
///   where SYN and FIN count in SEG.LEN.
/// - UDP: ICMP destination unreachable, port unreachable (RFC 1122
///   §4.1.3.1; RFC 792), quoting the datagram's IPv4 header and the first 8
///   bytes of its payload (RFC 1122 §3.2.2; RFC 1812 §4.3.2.3 lets more be
///   quoted, the minimum keeps the answer small).
///
/// The answer goes from the packet's destination (the VIP) back to its
/// source, TTL 64, DF with ID 0 (an atomic datagram, RFC 6864 §4.1), with
/// full checksums; at L2 back to the frame's source MAC from `port_mac`
/// (the port it arrived on), any VLAN tag kept. The caller resizes the
/// frame: to at least `refusal_len` before, to the returned length after.
pub fn build_refusal(frame: &mut [u8], l3: usize, hl: usize, proto: u8, port_mac: EthernetAddress) -> Option<usize> {
    let need = refusal_len(proto, l3, hl);
    // The header and the first 20 bytes of its payload (a TCP header; a
    // UDP header and more) are read below.
    if need == 0 || hl < REFUSAL_IP_HL || l3 < crate::wire::ethernet::HEADER_LEN || frame.len() < need.max(l3 + hl + 20) {
        return None;
    }
    // L2: back where it came from.
    frame.copy_within(6..12, 0);
    frame[6..12].copy_from_slice(&port_mac.0);
    let ip = &mut frame[l3..];
    let (src, dst) = (get32(ip, IP_SRC), get32(ip, IP_DST));
    let ip_len = get16(ip, IP_TOTAL_LEN) as usize;
    let (len, tos) = if proto == protocol::TCP {
        let l4 = &ip[hl..];
        let (sport, dport, seq, flags) = (get16(l4, L4_SPORT), get16(l4, L4_DPORT), get32(l4, TCP_SEQ), l4[TCP_FLAGS]);
        let data = ip_len.saturating_sub(hl + ((l4[TCP_DOFF] >> 4) as usize) * 4);
        let seg_len = data as u32 + u32::from(flags & tcpf::SYN != 0) + u32::from(flags & tcpf::FIN != 0);
        let t = &mut ip[REFUSAL_IP_HL..REFUSAL_IP_HL + 20];
        t.fill(0);
        put16(t, L4_SPORT, dport);
        put16(t, L4_DPORT, sport);
        put32(t, TCP_ACK, seq.wrapping_add(seg_len));
        t[TCP_DOFF] = 5 << 4;
        t[TCP_FLAGS] = tcpf::RST | tcpf::ACK;
        // Window, urgent pointer: 0. Checksum over the pseudo header (RFC
        // 9293 §3.1) with the new addresses.
        let sum = checksum::sum(t, checksum::pseudo_header(dst.into(), src.into(), protocol::TCP, 20));
        put16(t, TCP_CHECK, !checksum::fold(sum));
        (20, 0)
    } else {
        // Quote first: the header is about to be overwritten.
        let quoted = hl + ICMP_QUOTED_DATA;
        let at = REFUSAL_IP_HL + crate::wire::icmp::HEADER_LEN;
        ip.copy_within(..quoted, at);
        let m = &mut ip[REFUSAL_IP_HL..at + quoted];
        m[..at - REFUSAL_IP_HL].fill(0);
        m[0] = crate::wire::icmp::kind::DEST_UNREACHABLE;
        m[1] = crate::wire::icmp::unreachable::PORT;
        let c = checksum::checksum(m);
        put16(m, 2, c);
        (m.len(), ICMP_ERROR_TOS)
    };
    let h = &mut ip[..REFUSAL_IP_HL];
    h.fill(0);
    h[0] = 0x45;
    h[1] = tos;
    put16(h, IP_TOTAL_LEN, (REFUSAL_IP_HL + len) as u16);
    h[6] = 0x40; // DF
    h[IP_TTL] = REFUSAL_TTL;
    h[IP_TTL + 1] = if proto == protocol::TCP { protocol::TCP } else { protocol::ICMP };
    put32(h, IP_SRC, dst);
    put32(h, IP_DST, src);
    let c = checksum::checksum(h);
    put16(h, IP_CHECK, c);
    Some(l3 + REFUSAL_IP_HL + len)
}

/// First port handed out to full-NAT connections.
pub const LOCAL_PORT_MIN: u16 = 1024;

/// Last port handed out to full-NAT connections. The ports above it
/// (`PROBE_PORT_MIN..=65535`) are the control plane's: its health probes
/// leave from the self IP, which is also the default full-NAT local
/// address, and their replies are punted to it when no connection entry
/// matches. Keeping the two ranges apart means a probe reply can never hit
/// a full-NAT connection's entry, and is never steered to the worker that
/// owns a full-NAT port (`worker::owner`).
pub const LOCAL_PORT_MAX: u16 = 60999;

/// First source port of the control plane's health probes (up to 65535);
/// see `LOCAL_PORT_MAX`.
pub const PROBE_PORT_MIN: u16 = 61000;

const _: () = assert!(LOCAL_PORT_MIN <= LOCAL_PORT_MAX && LOCAL_PORT_MAX < PROBE_PORT_MIN);

/// A worker's full-NAT source ports, per local address. Each worker owns
/// the ports `p` with `p % workers == worker`, so a reply's destination
/// port names the worker that owns its connection (design.md, "Flow
/// ownership").
#[derive(Debug, Default)]
pub struct LocalPorts {
    worker: u16,
    workers: u16,
    /// (address, free ports as a stack). Capacity is fixed at creation:
    /// `free` never reallocates.
    pools: Vec<(u32, Vec<u16>)>,
    next: usize,
}

impl LocalPorts {
    pub fn new(worker: u16, workers: u16) -> Self {
        Self { worker, workers: workers.max(1), pools: Vec::new(), next: 0 }
    }

    /// Adds pools for addresses not seen before (slow path: snapshot
    /// change). Pools of known addresses keep their state.
    pub fn ensure(&mut self, addrs: &[u32]) {
        for a in addrs {
            if self.pools.iter().any(|(x, _)| x == a) {
                continue;
            }
            let ports: Vec<u16> = (LOCAL_PORT_MIN..=LOCAL_PORT_MAX).rev().filter(|p| p % self.workers == self.worker % self.workers).collect();
            self.pools.push((*a, ports));
        }
    }

    /// A free (address, port) among `candidates`, round robin over them.
    #[inline]
    pub fn alloc(&mut self, candidates: &[u32]) -> Option<(u32, u16)> {
        let n = candidates.len();
        for i in 0..n {
            let addr = candidates[(self.next + i) % n];
            if let Some((_, free)) = self.pools.iter_mut().find(|(a, _)| *a == addr) {
                if let Some(port) = free.pop() {
                    self.next = (self.next + i + 1) % n;
                    return Some((addr, port));
                }
            }
        }
        None
    }

    /// Returns a port taken by `alloc`.
    #[inline]
    pub fn free(&mut self, addr: u32, port: u16) {
        if let Some((_, free)) = self.pools.iter_mut().find(|(a, _)| *a == addr) {
            if free.len() < free.capacity() {
                free.push(port);
            }
        }
    }

    /// Ports free for `addr`.
    pub fn available(&self, addr: u32) -> usize {
        self.pools.iter().find(|(a, _)| *a == addr).map_or(0, |(_, f)| f.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;

    /// IPv4 + TCP SYN 192.0.2.10:40000 -> 192.0.2.100:80 with correct
    /// checksums.
    fn syn() -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&40u16.to_be_bytes());
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[192, 0, 2, 10]);
        p[16..20].copy_from_slice(&[192, 0, 2, 100]);
        let c = checksum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&80u16.to_be_bytes());
        p[24..28].copy_from_slice(&1u32.to_be_bytes());
        p[32] = 0x50;
        p[33] = 0x02;
        p[34..36].copy_from_slice(&64240u16.to_be_bytes());
        fill_tcp(&mut p);
        p
    }

    fn fill_tcp(p: &mut [u8]) {
        p[36] = 0;
        p[37] = 0;
        let src = std::net::Ipv4Addr::new(p[12], p[13], p[14], p[15]);
        let dst = std::net::Ipv4Addr::new(p[16], p[17], p[18], p[19]);
        let ps = checksum::pseudo_header(src, dst, 6, (p.len() - 20) as u16);
        let c = !checksum::fold(checksum::sum(&p[20..], ps));
        p[36..38].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn rewrite_keeps_checksums_valid() {
        let mut p = syn();
        let server = u32::from(std::net::Ipv4Addr::new(198, 51, 100, 11));
        let local = u32::from(std::net::Ipv4Addr::new(198, 51, 100, 1));
        rewrite(&mut p, 20, 6, Some((local, 1025)), Some((server, 8080)), true);
        assert_eq!(&p[12..16], &[198, 51, 100, 1]);
        assert_eq!(&p[16..20], &[198, 51, 100, 11]);
        assert_eq!(get16(&p, 20), 1025);
        assert_eq!(get16(&p, 22), 8080);
        assert_eq!(p[8], 63);
        assert_eq!(checksum::checksum(&p[..20]), 0, "IPv4 header checksum valid");
        let mut full = p.clone();
        fill_tcp(&mut full);
        assert_eq!(&p[36..38], &full[36..38], "incremental TCP checksum equals recomputed");
    }

    #[test]
    fn udp_without_checksum_stays_without() {
        let mut p = syn();
        p[9] = 17;
        p[24..26].copy_from_slice(&20u16.to_be_bytes()); // UDP length
        p[26..28].copy_from_slice(&[0, 0]); // no checksum
        let c = checksum::checksum(&{
            let mut h = p[..20].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        });
        p[10..12].copy_from_slice(&c.to_be_bytes());
        rewrite(&mut p, 20, 17, None, Some((0x01020304, 53)), false);
        assert_eq!(&p[26..28], &[0, 0]);
        assert_eq!(checksum::checksum(&p[..20]), 0);
    }

    #[test]
    fn local_ports_are_partitioned_and_recycled() {
        let mut w0 = LocalPorts::new(0, 2);
        let mut w1 = LocalPorts::new(1, 2);
        w0.ensure(&[7, 8]);
        w1.ensure(&[7]);
        let (a, p) = w0.alloc(&[7, 8]).unwrap();
        assert_eq!((a, p % 2), (7, 0));
        let (a2, _) = w0.alloc(&[7, 8]).unwrap();
        assert_eq!(a2, 8, "round robin over addresses");
        let (_, q) = w1.alloc(&[7]).unwrap();
        assert_eq!(q % 2, 1);
        let before = w0.available(7);
        w0.free(7, p);
        assert_eq!(w0.available(7), before + 1);
        assert_eq!(w0.available(7), (60999 + 1 - 1024) / 2);
        assert_eq!(w0.alloc(&[9]), None);
    }

    #[test]
    fn local_ports_leave_probe_ports_alone() {
        let mut w = LocalPorts::new(0, 1);
        w.ensure(&[7]);
        assert_eq!(w.available(7), usize::from(LOCAL_PORT_MAX - LOCAL_PORT_MIN) + 1);
        let mut ports = Vec::new();
        while let Some((_, p)) = w.alloc(&[7]) {
            ports.push(p);
        }
        assert_eq!(ports.len(), 60999 - 1024 + 1);
        assert_eq!(ports.iter().min(), Some(&LOCAL_PORT_MIN));
        assert_eq!(ports.iter().max(), Some(&LOCAL_PORT_MAX), "never a probe port");
        assert!(ports.iter().all(|p| *p < PROBE_PORT_MIN));
    }

    fn frame_around(ip: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xa0]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x10]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(ip);
        f
    }

    #[test]
    fn refusal_of_a_syn_with_data_and_fin_acknowledges_all_of_it() {
        // SYN|FIN with 3 bytes of data: SEG.LEN = 1 + 3 + 1 (RFC 9293 §3.4).
        let mut p = syn();
        p.extend_from_slice(b"abc");
        p[2..4].copy_from_slice(&43u16.to_be_bytes());
        p[33] = tcpf::SYN | tcpf::FIN;
        let mut f = frame_around(&p);
        let mac = EthernetAddress([2, 0, 0, 0, 0, 0xa0]);
        let len = build_refusal(&mut f, 14, 20, protocol::TCP, mac).unwrap();
        assert_eq!(len, refusal_len(protocol::TCP, 14, 20));
        assert_eq!(len, 54);
        let t = &f[34..54];
        assert_eq!(get32(t, TCP_SEQ), 0);
        assert_eq!(get32(t, TCP_ACK), 1 + 5);
        assert_eq!(t[TCP_FLAGS], tcpf::RST | tcpf::ACK);
    }

    #[test]
    fn refusal_refuses_what_it_cannot_build() {
        let mac = EthernetAddress::default();
        let mut f = frame_around(&syn());
        let short = refusal_len(protocol::UDP, 14, 20) - 1;
        let mut g = f.clone();
        g.resize(short, 0);
        let before = g.clone();
        assert_eq!(build_refusal(&mut g, 14, 20, protocol::UDP, mac), None, "no room for the ICMP error");
        assert_eq!(g, before, "untouched");
        assert_eq!(build_refusal(&mut f, 14, 20, 47, mac), None, "not TCP/UDP");
        assert_eq!(build_refusal(&mut f[..50], 14, 20, protocol::TCP, mac), None, "TCP header cut");
        assert_eq!(build_refusal(&mut f, 14, 16, protocol::TCP, mac), None, "bad header length");
    }

    #[test]
    fn unicast_hosts() {
        for (a, ok) in [
            ([192, 0, 2, 10], true),
            ([223, 255, 255, 254], true),
            ([0, 0, 0, 0], false),
            ([0, 1, 2, 3], false),
            ([127, 0, 0, 1], false),
            ([224, 0, 0, 1], false),
            ([239, 1, 1, 1], false),
            ([240, 0, 0, 1], false),
            ([255, 255, 255, 255], false),
        ] {
            assert_eq!(is_unicast_host(u32::from_be_bytes(a)), ok, "{a:?}");
        }
    }
}
