//! The probes' network side: smoltcp interfaces on IP (no Ethernet, no
//! ARP of their own), in shards of at most `SHARD_SOCKETS` sockets, fed
//! with the IP packets of the frames the workers punt and drained of the
//! packets they send; the engine puts them in Ethernet frames to the MAC
//! the appliance's ARP resolved for the server's next hop (`Neighbors`,
//! the slots the workers read).
//!
//! Why shards: smoltcp looks a segment's socket up by walking its socket
//! set and walks every socket on each poll, so one set of 10,000 probes
//! costs 10,000 steps per segment. A shard holds a bounded number, the
//! engine finds a probe's shard by its 4-tuple (a hash map) and polls
//! only the shards that have something to do: a probe's cost does not
//! grow with the number of servers. Why IP: smoltcp's neighbour cache
//! holds 3 entries and, after each ARP request it sends, stays silent for
//! a second for every address (`iface::neighbor`): a pool of thousands
//! on-link servers never resolved.
//!
//! The engine feeds a shard only answers to its open probes
//! (`Probes::on_frame`): smoltcp answers a segment no socket matches
//! with a reset and a datagram with ICMP port unreachable, and anyone can
//! send those to the self IP, so fed everything it would reflect a flood
//! one for one, past `[defence] icmp_rate`. Everything else is dropped
//! and counted (`unsolicited`).

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

/// Sockets of one shard at most.
pub(super) const SHARD_SOCKETS: usize = 32;
/// A TCP probe socket's buffers: the request goes out in one segment; the
/// answer is drained into the probe's own buffer as it comes (smoltcp
/// advertises the receive buffer as its window).
const TCP_TX: usize = 1024;
const TCP_RX: usize = 4096;
/// Packets waiting for a shard at most (more are dropped: the probe's
/// peer retransmits, or the probe times out).
const RX_MAX: usize = 256;

/// A link the probes leave from.
#[derive(Debug, Clone)]
pub struct ProbeLink {
    pub mac: [u8; 6],
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// Default gateway for servers behind a router, if any.
    pub gateway: Option<Ipv4Addr>,
    /// The link's IPv6 self address and prefix, when it has IPv6; the
    /// IPv6 default gateway.
    pub address6: Option<(Ipv6Addr, u8)>,
    pub gateway6: Option<Ipv6Addr>,
}

impl ProbeLink {
    /// The self address of `peer`'s family, when the link has one.
    pub fn address_for(&self, peer: IpAddr) -> Option<IpAddr> {
        match peer {
            IpAddr::V4(_) => Some(IpAddr::V4(self.address)),
            IpAddr::V6(_) => self.address6.map(|(a, _)| IpAddr::V6(a)),
        }
    }
}

/// IP packets in and out of one smoltcp interface.
#[derive(Default)]
pub(super) struct Queues {
    pub(super) rx: VecDeque<Vec<u8>>,
    pub(super) tx: Vec<Vec<u8>>,
}

pub(super) struct Rx(Vec<u8>);
pub(super) struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for Queues {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _t: SmolInstant) -> Option<(Rx, Tx<'_>)> {
        let f = self.rx.pop_front()?;
        Some((Rx(f), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _t: SmolInstant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = 1500;
        c
    }
}

/// One smoltcp interface and its sockets (at most `SHARD_SOCKETS`).
pub(super) struct Shard {
    pub(super) iface: Interface,
    pub(super) dev: Queues,
    pub(super) sockets: SocketSet<'static>,
    /// Probes holding a socket here.
    pub(super) used: usize,
    /// TCP sockets closed and sent their last segment: reused as they are
    /// (their buffers kept).
    free_tcp: Vec<SocketHandle>,
    /// Sockets of finished probes, freed after the next poll (which sends
    /// a TCP probe's reset).
    pub(super) closing: Vec<(SocketHandle, bool)>,
    /// When smoltcp wants to be polled (a retransmission), or at once.
    pub(super) poll_at: Option<Instant>,
    pub(super) dirty: bool,
}

impl Shard {
    /// An interface with `l`'s self IP; every destination routed (the
    /// engine chooses the MAC). `seed` seeds smoltcp's generator, which
    /// draws the TCP probes' initial sequence numbers (secret: a spoofed
    /// answer must guess them).
    pub(super) fn new(l: &ProbeLink, epoch: Instant, now: Instant, seed: u64) -> Shard {
        let mut dev = Queues::default();
        let mut cfg = IfaceConfig::new(HardwareAddress::Ip);
        cfg.random_seed = seed;
        let mut iface = Interface::new(cfg, &mut dev, smol_now(epoch, now));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(l.address), l.prefix_len));
            if let Some((a6, len)) = l.address6 {
                let _ = a.push(IpCidr::new(IpAddress::Ipv6(a6), len));
            }
        });
        // Any route: smoltcp only asks that one exists; the frame's MAC is
        // the server's next hop's, whatever the route.
        let _ = iface.routes_mut().add_default_ipv4_route(l.gateway.unwrap_or(l.address));
        if let Some((a6, _)) = l.address6 {
            let _ = iface.routes_mut().add_default_ipv6_route(l.gateway6.unwrap_or(a6));
        }
        Shard { iface, dev, sockets: SocketSet::new(Vec::new()), used: 0, free_tcp: Vec::new(), closing: Vec::new(), poll_at: None, dirty: false }
    }

    pub(super) fn has_room(&self) -> bool {
        self.used < SHARD_SOCKETS
    }

    /// A closed TCP socket: a reused one, or a new one.
    pub(super) fn tcp_socket(&mut self) -> SocketHandle {
        self.used += 1;
        match self.free_tcp.pop() {
            Some(h) => h,
            None => self.sockets.add(tcp::Socket::new(tcp::SocketBuffer::new(vec![0; TCP_TX]), tcp::SocketBuffer::new(vec![0; TCP_RX]))),
        }
    }

    /// A socket of another kind, made for one probe.
    pub(super) fn add<T: smoltcp::socket::AnySocket<'static>>(&mut self, socket: T) -> SocketHandle {
        self.used += 1;
        self.sockets.add(socket)
    }

    /// The probe is over: its socket goes after the next poll (`reap`).
    pub(super) fn close(&mut self, handle: SocketHandle, tcp: bool) {
        self.closing.push((handle, tcp));
        self.dirty = true;
    }

    /// Frees the sockets of finished probes (after a poll sent their
    /// last segments).
    pub(super) fn reap(&mut self) {
        for (h, tcp) in std::mem::take(&mut self.closing) {
            self.used = self.used.saturating_sub(1);
            if tcp {
                let s = self.sockets.get_mut::<tcp::Socket>(h);
                s.abort();
                self.free_tcp.push(h);
            } else {
                self.sockets.remove(h);
            }
        }
    }

    /// A packet for one of its probes.
    pub(super) fn deliver(&mut self, packet: Vec<u8>) -> bool {
        if self.dev.rx.len() >= RX_MAX {
            return false;
        }
        self.dev.rx.push_back(packet);
        true
    }

    /// Does it want a poll now?
    pub(super) fn due(&self, now: Instant) -> bool {
        self.dirty || !self.dev.rx.is_empty() || self.poll_at.is_some_and(|t| t <= now)
    }

    /// Runs smoltcp; what it sent is in `dev.tx`.
    pub(super) fn poll(&mut self, epoch: Instant, now: Instant) {
        let t = smol_now(epoch, now);
        self.iface.poll(t, &mut self.dev, &mut self.sockets);
        self.dirty = false;
        self.poll_at = self.iface.poll_at(t, &self.sockets).map(|p| epoch + std::time::Duration::from_micros(p.total_micros().max(0) as u64));
    }
}

/// What a probe's answers look like, as its socket sees them: protocol,
/// the self IP's `local` port (ICMP: the echo identifier), the peer and
/// its port (ICMP: 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Opening {
    pub(super) proto: u8,
    pub(super) local: u16,
    pub(super) peer: IpAddr,
    pub(super) peer_port: u16,
}

pub(super) const TCP: u8 = 6;
pub(super) const UDP: u8 = 17;
pub(super) const ICMP: u8 = 1;
/// ICMPv6's next header (RFC 4443).
pub(super) const ICMPV6: u8 = 58;
pub(super) const ETH: usize = 14;

/// An unfragmented IPv4 packet's destination and what it answers: a TCP
/// or UDP segment's (protocol, destination port, source, source port),
/// an ICMP echo reply's (1, identifier, source, 0). None for anything
/// else (other ICMP, other protocols, fragments, truncated headers).
pub(super) fn answer_of(ip: &[u8]) -> Option<(IpAddr, Opening)> {
    let (src, dst, proto, l4) = ip_parts(ip)?;
    let word = |i: usize| l4.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    // ICMP over IPv4, ICMPv6 over IPv6 only.
    let (v4, v6) = (src.is_ipv4(), src.is_ipv6());
    let open = match proto {
        TCP | UDP => Opening { proto, local: word(2)?, peer: src, peer_port: word(0)? },
        ICMP if !v4 => return None,
        ICMPV6 if !v6 => return None,
        // Echo reply (RFC 792): type 0, code 0, identifier at 4.
        ICMP if l4.get(..2)? == [0, 0] => Opening { proto, local: word(4)?, peer: src, peer_port: 0 },
        // ICMPv6 echo reply (RFC 4443 §4.2): type 129, code 0; an echo
        // probe's key is ICMP's whatever the family.
        ICMPV6 if l4.get(..2)? == [129, 0] => Opening { proto: ICMP, local: word(4)?, peer: src, peer_port: 0 },
        _ => return None,
    };
    Some((dst, open))
}

/// The probe an IP packet the stack sends belongs to: a TCP or UDP
/// segment's (protocol, source port, destination, destination port), an
/// echo request's (1, identifier, destination, 0).
pub(super) fn sent_by(ip: &[u8]) -> Option<Opening> {
    let (_, dst, proto, l4) = ip_parts(ip)?;
    let word = |i: usize| l4.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    match proto {
        TCP | UDP => Some(Opening { proto, local: word(0)?, peer: dst, peer_port: word(2)? }),
        ICMP if l4.first() == Some(&8) => Some(Opening { proto, local: word(4)?, peer: dst, peer_port: 0 }),
        ICMPV6 if l4.first() == Some(&128) => Some(Opening { proto: ICMP, local: word(4)?, peer: dst, peer_port: 0 }),
        _ => None,
    }
}

/// An unfragmented IPv4 packet's, or an IPv6 packet's without extension
/// headers (the probes send none; an answer with some is not taken),
/// source, destination, protocol and payload.
fn ip_parts(ip: &[u8]) -> Option<(IpAddr, IpAddr, u8, &[u8])> {
    if ip.first()? >> 4 == 6 {
        let at = |i: usize| ip.get(i..i + 16).and_then(|b| <[u8; 16]>::try_from(b).ok()).map(|b| IpAddr::V6(Ipv6Addr::from(b)));
        let len = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
        return Some((at(8)?, at(24)?, *ip.get(6)?, ip.get(40..40 + len)?));
    }
    let (s, d, p, l4) = ipv4(ip)?;
    Some((IpAddr::V4(s), IpAddr::V4(d), p, l4))
}

/// An unfragmented IPv4 packet's source, destination, protocol and
/// payload.
fn ipv4(ip: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u8, &[u8])> {
    let hl = usize::from(ip.first()? & 0x0f) * 4;
    let frag = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
    // More fragments, or an offset: not a whole datagram.
    if ip.first()? >> 4 != 4 || hl < 20 || frag & 0x3fff != 0 {
        return None;
    }
    let at = |i: usize| ip.get(i..i + 4).map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]));
    Some((at(12)?, at(16)?, *ip.get(9)?, ip.get(hl..)?))
}

/// The IPv4 packet inside an Ethernet frame (the control path took any
/// VLAN tag off); None for ARP and everything else.
pub(super) fn ip_of(frame: &[u8]) -> Option<&[u8]> {
    if frame.get(12..14)? != [0x08, 0x00] && frame.get(12..14)? != [0x86, 0xdd] {
        return None;
    }
    frame.get(ETH..)
}

/// `packet` in an Ethernet frame from `src` to `dst`.
pub(super) fn framed(dst: [u8; 6], src: [u8; 6], packet: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH + packet.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    let ethertype = if packet.first().is_some_and(|v| v >> 4 == 6) { [0x86, 0xdd] } else { [0x08, 0x00] };
    f.extend_from_slice(&ethertype);
    f.extend_from_slice(packet);
    f
}

pub(super) fn smol_now(epoch: Instant, now: Instant) -> SmolInstant {
    SmolInstant::from_micros(now.saturating_duration_since(epoch).as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use furiwake_dataplane::testkit::{ipv4_frame, tcp_header, udp_datagram};

    const SELF: [u8; 4] = [198, 51, 100, 1];
    const SRV: [u8; 4] = [198, 51, 100, 12];

    fn packet(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
        let f = ipv4_frame(furiwake_dataplane::wire::EthernetAddress([2, 0, 0, 0, 0, 0x12]), furiwake_dataplane::wire::EthernetAddress([2, 0, 0, 0, 0, 1]), src, dst, proto, l4, proto != ICMP);
        ip_of(&f).unwrap().to_vec()
    }

    /// What an answer is keyed by is what the probe that sent it is
    /// keyed by, reversed; fragments and other kinds are nobody's.
    #[test]
    fn answers_and_what_was_sent_key_alike() {
        let srv = IpAddr::V4(Ipv4Addr::from(SRV));
        let syn = packet(SELF, SRV, TCP, &tcp_header(61000, 80, 0x02, 1024));
        let syn_ack = packet(SRV, SELF, TCP, &tcp_header(80, 61000, 0x12, 1024));
        let want = Opening { proto: TCP, local: 61000, peer: srv, peer_port: 80 };
        assert_eq!(sent_by(&syn), Some(want));
        assert_eq!(answer_of(&syn_ack), Some((IpAddr::V4(Ipv4Addr::from(SELF)), want)));
        let pong = packet(SRV, SELF, UDP, &udp_datagram(53, 61001, b"pong"));
        assert_eq!(answer_of(&pong).map(|a| a.1), Some(Opening { proto: UDP, local: 61001, peer: srv, peer_port: 53 }));
        let echo = |kind: u8| packet(SRV, SELF, ICMP, &[kind, 0, 0, 0, 0, 7, 0, 1]);
        assert_eq!(answer_of(&echo(0)).map(|a| a.1), Some(Opening { proto: ICMP, local: 7, peer: srv, peer_port: 0 }));
        assert_eq!(answer_of(&echo(8)), None, "an echo request answers nothing");
        let mut fragment = syn_ack.clone();
        fragment[6] = 0x20;
        assert_eq!(answer_of(&fragment), None);
        assert_eq!(answer_of(&syn_ack[..22]), None, "truncated");
        assert_eq!(answer_of(&packet(SRV, SELF, 47, &[0; 8])), None);
        // IPv6: the same keys, of the other family.
        let (me6, srv6) = (0x2001_0db8_0002_u128 << 80 | 1, 0x2001_0db8_0002_u128 << 80 | 0x11);
        let mac = furiwake_dataplane::wire::EthernetAddress([2, 0, 0, 0, 0, 1]);
        let f = furiwake_dataplane::testkit::ipv6_frame(mac, mac, srv6, me6, TCP, 64, &tcp_header(80, 61000, 0x12, 1024));
        let want6 = Opening { proto: TCP, local: 61000, peer: IpAddr::V6(Ipv6Addr::from(srv6)), peer_port: 80 };
        assert_eq!(answer_of(ip_of(&f).unwrap()), Some((IpAddr::V6(Ipv6Addr::from(me6)), want6)));
        let out = furiwake_dataplane::testkit::ipv6_frame(mac, mac, me6, srv6, TCP, 64, &tcp_header(61000, 80, 0x02, 1024));
        assert_eq!(sent_by(ip_of(&out).unwrap()), Some(want6));
        assert_eq!(&framed([1; 6], [2; 6], ip_of(&out).unwrap())[12..14], &[0x86, 0xdd], "framed as IPv6");
        // ICMPv6 echo: keyed as ICMP's, request and reply alike.
        let ping = furiwake_dataplane::testkit::ipv6_frame(mac, mac, me6, srv6, ICMPV6, 64, &[128, 0, 0, 0, 0, 7, 0, 1]);
        let pong = furiwake_dataplane::testkit::ipv6_frame(mac, mac, srv6, me6, ICMPV6, 64, &[129, 0, 0, 0, 0, 7, 0, 1]);
        let echo6 = Opening { proto: ICMP, local: 7, peer: IpAddr::V6(Ipv6Addr::from(srv6)), peer_port: 0 };
        assert_eq!(sent_by(ip_of(&ping).unwrap()), Some(echo6));
        assert_eq!(answer_of(ip_of(&pong).unwrap()).map(|a| a.1), Some(echo6));
        assert_eq!(answer_of(ip_of(&ping).unwrap()), None, "an echo request answers nothing");
        // Each family's own ICMP only.
        let v4_in_v6 = furiwake_dataplane::testkit::ipv6_frame(mac, mac, srv6, me6, ICMP, 64, &[0, 0, 0, 0, 0, 7, 0, 1]);
        assert_eq!(answer_of(ip_of(&v4_in_v6).unwrap()), None, "ICMPv4 over IPv6 is nobody's");
        assert_eq!(answer_of(&packet(SRV, SELF, ICMPV6, &[129, 0, 0, 0, 0, 7, 0, 1])), None, "ICMPv6 over IPv4 is nobody's");
    }

    #[test]
    fn sockets_are_reused_after_their_last_segment() {
        let link = ProbeLink { mac: [2, 0, 0, 0, 0, 1], address: Ipv4Addr::from(SELF), prefix_len: 24, gateway: None, address6: None, gateway6: None };
        let now = Instant::now();
        let mut s = Shard::new(&link, now, now, 7);
        let a = s.tcp_socket();
        s.close(a, true);
        assert_eq!(s.used, 1, "held until the poll");
        s.poll(now, now);
        s.reap();
        assert_eq!(s.used, 0);
        assert_eq!(s.tcp_socket(), a, "the same socket, buffers and all");
        assert_eq!(s.sockets.iter().count(), 1);
    }
}
