//! The probes' network side: one smoltcp interface per data link, fed
//! with the frames the workers punt and drained of the frames it sends
//! (the control loop moves them through the ports).
//!
//! The stack sees only answers to what it asked (`Stack::solicited`):
//! smoltcp answers a segment no socket matches with a reset and a
//! datagram with ICMP port unreachable, and anyone can send those to the
//! self IP, so fed everything it would reflect a flood one for one, past
//! `[defence] icmp_rate`. Everything else is dropped and counted
//! (`unsolicited`).

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Instant;

/// A link the probes leave from.
#[derive(Debug, Clone)]
pub struct ProbeLink {
    pub mac: [u8; 6],
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// Default gateway for servers behind a router, if any.
    pub gateway: Option<Ipv4Addr>,
}

/// Frames in and out of one smoltcp interface.
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
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c
    }
}

pub(super) struct Stack {
    pub(super) iface: Interface,
    pub(super) dev: Queues,
    pub(super) sockets: SocketSet<'static>,
    /// What each open probe socket waits for.
    open: Vec<(SocketHandle, Opening)>,
}

/// The answers a probe socket waits for: from `peer:peer_port`, to the
/// self IP's `local` port (ICMP: echo replies with identifier `local`,
/// `peer_port` 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Opening {
    pub(super) proto: u8,
    pub(super) local: u16,
    pub(super) peer: Ipv4Addr,
    pub(super) peer_port: u16,
}

pub(super) const TCP: u8 = 6;
pub(super) const UDP: u8 = 17;
pub(super) const ICMP: u8 = 1;

/// An unfragmented IPv4 frame's destination and what it answers: a TCP
/// or UDP segment's (protocol, destination port, source, source port),
/// an ICMP echo reply's (1, identifier, source, 0). None for anything
/// else (other ICMP, other protocols, fragments, truncated headers).
fn answer_of(frame: &[u8]) -> Option<(Ipv4Addr, Opening)> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(14..)?;
    let hl = usize::from(ip.first()? & 0x0f) * 4;
    let frag = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
    // More fragments, or an offset: not a whole datagram.
    if ip.first()? >> 4 != 4 || hl < 20 || frag & 0x3fff != 0 {
        return None;
    }
    let at = |i: usize| ip.get(i..i + 4).map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]));
    let (src, dst, proto) = (at(12)?, at(16)?, *ip.get(9)?);
    let l4 = ip.get(hl..)?;
    let word = |i: usize| l4.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let open = match proto {
        TCP | UDP => Opening { proto, local: word(2)?, peer: src, peer_port: word(0)? },
        // Echo reply (RFC 792): type 0, code 0, identifier at 4.
        ICMP if l4.get(..2)? == [0, 0] => Opening { proto, local: word(4)?, peer: src, peer_port: 0 },
        _ => return None,
    };
    Some((dst, open))
}

impl Stack {
    /// An interface with `l`'s MAC, self IP and default gateway.
    pub(super) fn new(l: &ProbeLink, now: Instant) -> Stack {
        let mut dev = Queues::default();
        let cfg = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(l.mac)));
        let mut iface = Interface::new(cfg, &mut dev, smol_now(now, now));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(l.address), l.prefix_len));
        });
        if let Some(gw) = l.gateway {
            let _ = iface.routes_mut().add_default_ipv4_route(gw);
        }
        Stack { iface, dev, sockets: SocketSet::new(Vec::new()), open: Vec::new() }
    }

    /// Socket `handle` is a probe waiting for `open`.
    pub(super) fn expect(&mut self, handle: SocketHandle, open: Opening) {
        self.open.retain(|&(h, _)| h != handle);
        self.open.push((handle, open));
    }

    /// The probe is over: its socket and what it waited for go.
    pub(super) fn close(&mut self, handle: SocketHandle) {
        self.open.retain(|&(h, _)| h != handle);
        self.sockets.remove(handle);
    }

    /// Does the stack wait for `frame`: ARP (its next hops' replies), or
    /// an answer to an open probe, to its own address?
    pub(super) fn solicited(&self, frame: &[u8]) -> bool {
        if frame.get(12..14) == Some(&[0x08, 0x06]) {
            return true;
        }
        let Some((dst, answer)) = answer_of(frame) else { return false };
        self.iface.ipv4_addr() == Some(dst) && self.open.iter().any(|(_, o)| *o == answer)
    }
}

pub(super) fn smol_now(epoch: Instant, now: Instant) -> SmolInstant {
    SmolInstant::from_micros(now.duration_since(epoch).as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use furiwake_dataplane::testkit::{ipv4_frame, tcp_header, udp_datagram};
    use smoltcp::socket::udp;

    const SELF: [u8; 4] = [198, 51, 100, 1];
    const SRV: [u8; 4] = [198, 51, 100, 12];
    const OTHER: [u8; 4] = [198, 51, 100, 50];

    fn frame(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
        ipv4_frame(furiwake_dataplane::wire::EthernetAddress([2, 0, 0, 0, 0, 0x12]), furiwake_dataplane::wire::EthernetAddress([2, 0, 0, 0, 0, 1]), src, dst, proto, l4, proto != ICMP)
    }

    fn echo(kind: u8, ident: u16) -> Vec<u8> {
        let mut e = vec![kind, 0, 0, 0, 0, 0, 0, 1];
        e[4..6].copy_from_slice(&ident.to_be_bytes());
        e
    }

    /// Only the exact answers to open probes pass: the peer, its port,
    /// the probe's port or echo identifier, to the self IP, unfragmented.
    #[test]
    fn only_answers_to_open_probes_are_solicited() {
        let link = ProbeLink { mac: [2, 0, 0, 0, 0, 1], address: Ipv4Addr::from(SELF), prefix_len: 24, gateway: None };
        let mut s = Stack::new(&link, Instant::now());
        let meta = || vec![udp::PacketMetadata::EMPTY; 1];
        let mut handles = (0..3).map(|_| s.sockets.add(udp::Socket::new(udp::PacketBuffer::new(meta(), vec![0; 64]), udp::PacketBuffer::new(meta(), vec![0; 64]))));
        let (h_tcp, h_udp, h_icmp) = (handles.next().unwrap(), handles.next().unwrap(), handles.next().unwrap());
        let srv = Ipv4Addr::from(SRV);
        s.expect(h_tcp, Opening { proto: TCP, local: 61000, peer: srv, peer_port: 80 });
        s.expect(h_udp, Opening { proto: UDP, local: 61001, peer: srv, peer_port: 53 });
        s.expect(h_icmp, Opening { proto: ICMP, local: 7, peer: srv, peer_port: 0 });

        let syn_ack = frame(SRV, SELF, TCP, &tcp_header(80, 61000, 0x12, 1024));
        assert!(s.solicited(&syn_ack));
        assert!(s.solicited(&frame(SRV, SELF, UDP, &udp_datagram(53, 61001, b"pong"))));
        assert!(s.solicited(&frame(SRV, SELF, ICMP, &echo(0, 7))));
        let mut arp = syn_ack.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(s.solicited(&arp), "ARP: the stack resolves its next hops");

        let mut fragment = syn_ack.clone();
        fragment[20] = 0x20; // more fragments
        for (what, f) in [
            ("a SYN from another host", frame(OTHER, SELF, TCP, &tcp_header(80, 61000, 0x02, 1024))),
            ("the server, another port", frame(SRV, SELF, TCP, &tcp_header(81, 61000, 0x12, 1024))),
            ("the server, to a port no probe has", frame(SRV, SELF, TCP, &tcp_header(80, 22, 0x02, 1024))),
            ("to another address", frame(SRV, OTHER, TCP, &tcp_header(80, 61000, 0x12, 1024))),
            ("UDP to a TCP probe's port", frame(SRV, SELF, UDP, &udp_datagram(80, 61000, b"x"))),
            ("UDP from another host", frame(OTHER, SELF, UDP, &udp_datagram(53, 61001, b"x"))),
            ("an echo request", frame(SRV, SELF, ICMP, &echo(8, 7))),
            ("an echo reply with another identifier", frame(SRV, SELF, ICMP, &echo(0, 8))),
            ("an echo reply from another host", frame(OTHER, SELF, ICMP, &echo(0, 7))),
            ("another protocol", frame(SRV, SELF, 47, &[0; 8])),
            ("a fragment", fragment),
            ("a truncated header", syn_ack[..36].to_vec()),
        ] {
            assert!(!s.solicited(&f), "{what}");
        }
        s.close(h_tcp);
        assert!(!s.solicited(&syn_ack), "the probe is over");
        assert!(s.solicited(&frame(SRV, SELF, UDP, &udp_datagram(53, 61001, b"pong"))), "the other probes are still open");
    }
}
