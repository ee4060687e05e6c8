//! Sync datagrams in Ethernet frames: the control lcore sends and receives
//! them over a DPDK port (it has no kernel socket there). Pure and tested.

use furiwake_dataplane::wire::ethernet::parse_l2;
use furiwake_dataplane::wire::ipv4::{protocol, Ipv4Packet, Ipv4Repr};
use furiwake_dataplane::wire::udp::{UdpPacket, UdpRepr};
use furiwake_dataplane::wire::{EtherType, EthernetAddress, EthernetFrame};
use std::net::Ipv4Addr;

/// One UDP datagram in a frame: `src:sport` -> `dst:dport`, TTL 255 (so
/// the peer's workers can tell it came from the link, RFC 5082), with
/// both checksums; padded to 60 bytes.
#[allow(clippy::too_many_arguments)]
pub fn udp_frame(src_mac: EthernetAddress, dst_mac: EthernetAddress, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut f = vec![0u8; (14 + 20 + udp_len).max(60)];
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    eth.set_dst_addr(dst_mac);
    eth.set_src_addr(src_mac);
    eth.set_ethertype(EtherType::Ipv4);
    Ipv4Repr { src_addr: src, dst_addr: dst, protocol: protocol::UDP, payload_len: udp_len, ttl: 255, dscp_ecn: 0 }.emit(&mut Ipv4Packet::new_unchecked(&mut f[14..]));
    f[42..42 + payload.len()].copy_from_slice(payload);
    UdpRepr { src_port: sport, dst_port: dport, payload_len: payload.len() }.emit(&mut UdpPacket::new_unchecked(&mut f[34..34 + udp_len]), src, dst);
    f
}

/// A received UDP datagram's addresses and payload.
pub struct Datagram<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub payload: &'a [u8],
}

/// The UDP datagram in `frame` when it is one (unfragmented, both
/// checksums right; a zero UDP checksum is refused: ours always carry one).
pub fn udp_datagram(frame: &[u8]) -> Option<Datagram<'_>> {
    let l2 = parse_l2(frame).ok().filter(|l| l.ethertype == EtherType::Ipv4)?;
    let ip = Ipv4Packet::new_checked(frame.get(l2.l3_offset..)?).ok()?;
    if ip.protocol() != protocol::UDP || ip.is_fragment() || !ip.verify_checksum() {
        return None;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let start = l2.l3_offset + ip.header_len();
    let end = l2.l3_offset + usize::from(ip.total_len());
    let udp = UdpPacket::new_checked(frame.get(start..end)?).ok()?;
    if udp.checksum() == 0 || !udp.verify_checksum(src, dst) {
        return None;
    }
    let payload = frame.get(start + 8..start + usize::from(udp.len()))?;
    Some(Datagram { src, dst, sport: udp.src_port(), dport: udp.dst_port(), payload })
}

/// True when `frame` is UDP to `port` (a cheap look before `udp_datagram`).
pub fn is_udp_to(frame: &[u8], port: u16) -> bool {
    let Ok(l2) = parse_l2(frame) else { return false };
    let Some(ip) = frame.get(l2.l3_offset..).and_then(|b| Ipv4Packet::new_checked(b).ok()) else { return false };
    let at = l2.l3_offset + ip.header_len() + 2;
    l2.ethertype == EtherType::Ipv4 && ip.protocol() == protocol::UDP && frame.get(at..at + 2).is_some_and(|p| u16::from_be_bytes([p[0], p[1]]) == port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_datagram_reads_back_and_a_flipped_bit_does_not() {
        let (a, b) = (Ipv4Addr::new(198, 51, 100, 3), Ipv4Addr::new(198, 51, 100, 4));
        let payload: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
        let f = udp_frame(EthernetAddress([2, 0, 0, 0, 0, 3]), EthernetAddress([2, 0, 0, 0, 0, 4]), a, b, 8848, 8848, &payload);
        assert!(is_udp_to(&f, 8848) && !is_udp_to(&f, 53));
        let d = udp_datagram(&f).unwrap();
        assert_eq!((d.src, d.dst, d.sport, d.dport, d.payload), (a, b, 8848, 8848, &payload[..]));
        let mut bad = f.clone();
        bad[100] ^= 0x10;
        assert!(udp_datagram(&bad).is_none(), "UDP checksum");
        let short = udp_frame(EthernetAddress([2, 0, 0, 0, 0, 3]), EthernetAddress::BROADCAST, a, b, 1, 2, b"x");
        assert_eq!(short.len(), 60);
        assert_eq!(udp_datagram(&short).unwrap().payload, b"x", "padding is not payload");
    }
}
