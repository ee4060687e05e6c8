//! Refusals: a new connection no server can take is answered at once, as a
//! host with no listener would (IPVS with no real server, an F5 pool down),
//! by turning its first packet into the answer in place: a TCP RST
//! (RFC 9293 §3.10.7.1) or an ICMP port unreachable (RFC 792).

use super::nat::{get16, get32, put16, put32, IP_CHECK, IP_DST, IP_SRC, IP_TOTAL_LEN, IP_TTL, L4_DPORT, L4_SPORT, TCP_ACK, TCP_CHECK, TCP_DOFF, TCP_FLAGS, TCP_SEQ};
use crate::wire::checksum;
use crate::wire::ethernet::EthernetAddress;
use crate::wire::ipv4::protocol;
use crate::wire::tcp::flags as tcpf;

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
    let answer = match proto {
        protocol::TCP => Answer::Reset,
        protocol::UDP => Answer::Icmp { code: crate::wire::icmp::unreachable::PORT, mtu: 0 },
        _ => return None,
    };
    build(frame, l3, hl, answer, port_mac)
}

/// Frame length of `build_frag_needed`'s answer to a packet whose IPv4
/// header (`hl` bytes) starts at `l3`.
#[inline]
pub fn frag_needed_len(l3: usize, hl: usize) -> usize {
    refusal_len(protocol::UDP, l3, hl)
}

/// Turns a packet too big for the next hop, with DF set, into ICMP
/// destination unreachable, fragmentation needed and DF set (RFC 792),
/// carrying the next hop's `mtu` (RFC 1191 §4), in place, as
/// `build_refusal` builds a port unreachable: from the packet's
/// destination back to its source (a VIP's client then lowers its path
/// MTU towards the VIP), quoting the header and 8 bytes. The packet may be
/// TCP or UDP; `None`, untouched, when the frame is shorter than
/// `frag_needed_len` or the headers.
pub fn build_frag_needed(frame: &mut [u8], l3: usize, hl: usize, mtu: u16, port_mac: EthernetAddress) -> Option<usize> {
    build(frame, l3, hl, Answer::Icmp { code: crate::wire::icmp::unreachable::FRAG_NEEDED, mtu }, port_mac)
}

/// What `build` makes of the packet.
#[derive(Clone, Copy)]
enum Answer {
    /// A TCP RST.
    Reset,
    /// An ICMP destination unreachable with `code`; `mtu` in the next-hop
    /// MTU field (RFC 1191 §4; 0 for the other codes, RFC 792's "unused").
    Icmp { code: u8, mtu: u16 },
}

#[allow(clippy::indexing_slicing, reason = "every offset is below `need`, and the frame is at least that long and holds the whole headers: checked on entry")]
fn build(frame: &mut [u8], l3: usize, hl: usize, answer: Answer, port_mac: EthernetAddress) -> Option<usize> {
    let proto = match answer {
        Answer::Reset => protocol::TCP,
        Answer::Icmp { .. } => protocol::UDP,
    };
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
    let (len, tos) = if let Answer::Reset = answer {
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
        if let Answer::Icmp { code, mtu } = answer {
            m[1] = code;
            put16(m, crate::wire::icmp::field::NEXT_HOP_MTU, mtu);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::nat::tests::syn;

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
