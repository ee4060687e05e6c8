//! ICMP echo on the control lcore (RFC 792): the box answers pings to its
//! self IPs and VIPs.

use furiwake_dataplane::wire::ethernet::parse_l2;
use furiwake_dataplane::wire::icmp::{kind, IcmpPacket};
use furiwake_dataplane::wire::ipv4::{protocol, Ipv4Packet};
use furiwake_dataplane::wire::EthernetFrame;
use std::net::Ipv4Addr;

/// Turns an echo request addressed to an address `owns` accepts into the
/// echo reply, in place (addresses and MACs swapped, TTL 64, checksums
/// recomputed). False, frame untouched, for anything else.
pub fn echo_reply(frame: &mut [u8], owns: impl Fn(Ipv4Addr) -> bool) -> bool {
    let Ok(l2) = parse_l2(frame) else { return false };
    let l3 = l2.l3_offset;
    let (hl, total) = {
        let Ok(ip) = Ipv4Packet::new_checked(&frame[l3..]) else { return false };
        if ip.protocol() != protocol::ICMP || !ip.verify_checksum() || ip.is_fragment() || !owns(ip.dst_addr()) {
            return false;
        }
        let Ok(msg) = IcmpPacket::new_checked(ip.payload()) else { return false };
        if msg.msg_type() != kind::ECHO_REQUEST || !msg.verify_checksum() {
            return false;
        }
        (ip.header_len(), ip.total_len() as usize)
    };
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[l3..l3 + total]);
        let (s, d) = (ip.src_addr(), ip.dst_addr());
        ip.set_src_addr(d);
        ip.set_dst_addr(s);
        ip.set_ttl(64);
        ip.fill_checksum();
    }
    {
        let mut msg = IcmpPacket::new_unchecked(&mut frame[l3 + hl..l3 + total]);
        msg.set_msg_type(kind::ECHO_REPLY);
        msg.set_msg_code(0);
        msg.fill_checksum();
    }
    let mut eth = EthernetFrame::new_unchecked(&mut *frame);
    let (s, d) = (eth.src_addr(), eth.dst_addr());
    eth.set_src_addr(d);
    eth.set_dst_addr(s);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use furiwake_dataplane::wire::checksum;

    fn request(dst: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 16];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12] = 0x08;
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&36u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 1;
        ip[12..16].copy_from_slice(&[192, 0, 2, 10]);
        ip[16..20].copy_from_slice(&dst);
        let c = checksum::checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let m = &mut f[34..];
        m[0] = 8;
        m[4..6].copy_from_slice(&7u16.to_be_bytes());
        m[6..8].copy_from_slice(&1u16.to_be_bytes());
        m[8..].copy_from_slice(b"pingpong");
        let c = checksum::checksum(m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn answers_own_addresses_only() {
        let vip = Ipv4Addr::new(192, 0, 2, 100);
        let mut f = request([192, 0, 2, 100]);
        assert!(echo_reply(&mut f, |a| a == vip));
        assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&f[26..30], &[192, 0, 2, 100], "source is the VIP");
        assert_eq!(&f[30..34], &[192, 0, 2, 10]);
        assert_eq!(f[34], 0, "echo reply");
        assert_eq!(checksum::checksum(&f[14..34]), 0);
        assert_eq!(checksum::checksum(&f[34..]), 0);
        assert_eq!(&f[42..], b"pingpong");
        let mut other = request([192, 0, 2, 99]);
        let before = other.clone();
        assert!(!echo_reply(&mut other, |a| a == vip));
        assert_eq!(other, before);
    }
}
