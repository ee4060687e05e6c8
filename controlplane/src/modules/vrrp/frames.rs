//! VRRP advertisements in Ethernet frames: built for sending, and checked
//! on receipt as RFC 5798 §7.1 asks (the instance's own checks, VRID and
//! authentication, are the caller's). Pure: unit-tested here.

use furiwake_dataplane::wire::ethernet::parse_l2;
use furiwake_dataplane::wire::ipv4::{protocol, Ipv4Packet, Ipv4Repr};
use furiwake_dataplane::wire::vrrp::{VrrpPacket, VrrpRepr, MULTICAST};
use furiwake_dataplane::wire::{EtherType, EthernetAddress, EthernetFrame, WireError};
use std::net::Ipv4Addr;

/// The virtual router MAC of `vrid` (RFC 5798 §7.3): 00-00-5E-00-01-{VRID}.
pub fn virtual_mac(vrid: u8) -> EthernetAddress {
    EthernetAddress([0x00, 0x00, 0x5e, 0x00, 0x01, vrid])
}

/// The Ethernet address of 224.0.0.18 (RFC 1112 §6.4).
pub const MULTICAST_MAC: EthernetAddress = EthernetAddress([0x01, 0x00, 0x5e, 0x00, 0x00, 0x12]);

/// The IPv4 TTL adverts are sent with and must arrive with (RFC 5798
/// §5.1.1.3): it proves the sender is on the link.
pub const TTL: u8 = 255;

/// An advert frame: `src_mac` -> `dst_mac`, `src` -> `dst` (224.0.0.18 or
/// a unicast peer), TTL 255, precedence "internetwork control" as
/// keepalived sends them. The frame's bytes, padded to 60.
pub fn advert_frame(src_mac: EthernetAddress, dst_mac: EthernetAddress, src: Ipv4Addr, dst: Ipv4Addr, repr: &VrrpRepr) -> Vec<u8> {
    let vlen = repr.buffer_len();
    let len = (14 + 20 + vlen).max(60);
    let mut f = vec![0u8; len];
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    eth.set_dst_addr(dst_mac);
    eth.set_src_addr(src_mac);
    eth.set_ethertype(EtherType::Ipv4);
    let ip = Ipv4Repr { src_addr: src, dst_addr: dst, protocol: protocol::VRRP, payload_len: vlen, ttl: TTL, dscp_ecn: 0xc0 };
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut f[14..]));
    // Not a fragment; DF set by `emit` is harmless, keepalived sets none:
    // clear it so the two peers' adverts look alike in a capture.
    let mut p = Ipv4Packet::new_unchecked(&mut f[14..]);
    p.set_flags_frag(false, false, 0);
    p.fill_checksum();
    let _ = repr.emit(&mut f[34..34 + vlen], src, dst);
    f
}

/// Why a punted VRRP frame was not accepted (counted by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not IPv4 protocol 112 in a well-formed frame.
    Malformed,
    /// TTL other than 255 (RFC 5798 §7.1 item 3).
    Ttl,
    /// Version or type not ours (§7.1 items 4 and 5 of the header checks).
    Version,
    /// Checksum over the pseudo-header (v3) or the message (v2) (§7.1).
    Checksum,
    /// An advertisement interval of 0: a backup would learn it (RFC 5798
    /// §6.4.2), declare the master dead at once and take over, every turn
    /// (flapping). No configuration sends it (v3 10 ms at least, v2 1 s).
    Interval,
}

impl Refused {
    pub fn name(self) -> &'static str {
        match self {
            Refused::Malformed => "malformed",
            Refused::Ttl => "bad-ttl",
            Refused::Version => "bad-version",
            Refused::Checksum => "bad-checksum",
            Refused::Interval => "bad-interval",
        }
    }
}

/// An advert that passed the header checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_mac: EthernetAddress,
    pub repr: VrrpRepr,
}

/// True when `frame` carries IPv4 protocol 112 (so VRRP should see it).
pub fn is_vrrp(frame: &[u8]) -> bool {
    parse_l2(frame).ok().filter(|l2| l2.ethertype == EtherType::Ipv4).and_then(|l2| frame.get(l2.l3_offset + 9)).is_some_and(|p| *p == protocol::VRRP)
}

/// Checks a punted frame as RFC 5798 §7.1 asks of every advert.
pub fn receive(frame: &[u8]) -> Result<Received, Refused> {
    let l2 = parse_l2(frame).map_err(|_| Refused::Malformed)?;
    let eth = EthernetFrame::new_checked(frame).map_err(|_| Refused::Malformed)?;
    let ip = frame.get(l2.l3_offset..).and_then(|b| Ipv4Packet::new_checked(b).ok()).ok_or(Refused::Malformed)?;
    if !ip.verify_checksum() || ip.protocol() != protocol::VRRP || ip.is_fragment() {
        return Err(Refused::Malformed);
    }
    if ip.ttl() != TTL {
        return Err(Refused::Ttl);
    }
    let v = VrrpPacket::new_checked(ip.payload()).map_err(|e| if e == WireError::Unsupported { Refused::Version } else { Refused::Malformed })?;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if !v.verify_checksum(src, dst) {
        return Err(Refused::Checksum);
    }
    if v.interval_cs() == 0 {
        return Err(Refused::Interval);
    }
    Ok(Received { src, dst, src_mac: eth.src_addr(), repr: VrrpRepr::parse(&v) })
}

/// The destination of adverts when no unicast peer is configured.
pub fn group() -> (Ipv4Addr, EthernetAddress) {
    (MULTICAST, MULTICAST_MAC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(version: u8) -> VrrpRepr {
        VrrpRepr {
            version,
            vrid: 51,
            priority: 200,
            interval_cs: 100,
            addresses: vec![Ipv4Addr::new(192, 0, 2, 100)],
            password: (version == 2).then_some(*b"secret\0\0"),
        }
    }

    #[test]
    fn built_adverts_pass_the_receive_checks_in_both_versions() {
        for v in [2, 3] {
            let src = Ipv4Addr::new(192, 0, 2, 3);
            let f = advert_frame(virtual_mac(51), MULTICAST_MAC, src, MULTICAST, &repr(v));
            assert!(f.len() >= 60);
            assert!(is_vrrp(&f));
            let r = receive(&f).unwrap();
            assert_eq!((r.src, r.dst, r.src_mac), (src, MULTICAST, virtual_mac(51)));
            assert_eq!(r.repr, repr(v));
        }
    }

    #[test]
    fn wrong_ttl_checksum_and_garbage_are_refused_by_name() {
        let src = Ipv4Addr::new(192, 0, 2, 3);
        let good = advert_frame(virtual_mac(51), MULTICAST_MAC, src, MULTICAST, &repr(3));
        let mut ttl = good.clone();
        let mut p = Ipv4Packet::new_unchecked(&mut ttl[14..]);
        p.set_ttl(64);
        p.fill_checksum();
        assert_eq!(receive(&ttl), Err(Refused::Ttl));
        let mut sum = good.clone();
        sum[34 + 2] ^= 1; // the priority, under the VRRP checksum
        assert_eq!(receive(&sum), Err(Refused::Checksum));
        assert_eq!(receive(&good[..30]), Err(Refused::Malformed));
        let mut ver = good.clone();
        ver[34] = 0x32; // v3, type 2: not an advertisement
        assert_eq!(receive(&ver), Err(Refused::Version));
        assert_eq!(Refused::Checksum.name(), "bad-checksum");
    }

    /// An interval of 0, with a right checksum, in either version, is
    /// refused by name; 1 (10 ms in v3, 1 s in v2) is the least accepted.
    #[test]
    fn an_interval_of_zero_is_refused_as_bad_interval() {
        let src = Ipv4Addr::new(192, 0, 2, 3);
        for (v, least) in [(3u8, 1u16), (2, 100)] {
            let mut f = advert_frame(virtual_mac(51), MULTICAST_MAC, src, MULTICAST, &repr(v));
            // The interval's bytes: v3 the 12 bits at 4..6, v2 the byte at 5.
            if v == 3 {
                f[34 + 4] &= 0xf0;
            }
            f[34 + 5] = 0;
            VrrpPacket::new_unchecked(&mut f[34..]).fill_checksum(src, MULTICAST);
            assert_eq!(receive(&f), Err(Refused::Interval), "v{v}");
            assert_eq!(Refused::Interval.name(), "bad-interval");
            f[34 + 5] = 1;
            VrrpPacket::new_unchecked(&mut f[34..]).fill_checksum(src, MULTICAST);
            assert_eq!(receive(&f).map(|r| r.repr.interval_cs), Ok(least), "v{v}");
        }
    }
}
