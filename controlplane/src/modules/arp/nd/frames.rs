//! Neighbor Discovery (RFC 4861) and ICMPv6 echo (RFC 4443 §4) frames on
//! the control lcore, pure: a punted frame read and validated (§7.1's
//! checks), the advertisement, solicitation and echo reply the box sends
//! built.

use furiwake_dataplane::wire::ethernet::{parse_l2, EtherType, EthernetAddress};
use furiwake_dataplane::wire::icmpv6::{self, kind, option, Icmpv6Packet, NA_LEN, NA_OVERRIDE, NA_ROUTER, NA_SOLICITED, ND_HOP_LIMIT, NS_LEN};
use furiwake_dataplane::wire::ipv6::{next_header, Ipv6Packet, HEADER_LEN};
use std::net::Ipv6Addr;

/// ff02::1, all nodes (RFC 4291 §2.7.1).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// What a punted IPv6 frame is, for the ND module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// A Neighbor Solicitation for `target` (RFC 4861 §4.3); `src` is
    /// unspecified for duplicate address detection, `src_mac` its source
    /// link-layer option.
    Solicit { src: Ipv6Addr, target: Ipv6Addr, src_mac: Option<EthernetAddress> },
    /// A Neighbor Advertisement (§4.4): `target` is at `mac` (its target
    /// link-layer option, else the frame's source).
    Advert { target: Ipv6Addr, mac: EthernetAddress, solicited: bool, over: bool },
    /// An echo request (RFC 4443 §4.1) to `dst`.
    Echo { dst: Ipv6Addr },
    /// A multicast listener query (RFC 3810 §5.1): the box answers with a
    /// report of its groups.
    MldQuery,
}

/// Why a punted IPv6 frame was not taken (counted by the module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not ICMPv6 ND nor an echo request: another module's (probes).
    NotNd,
    /// Fails RFC 4861 §7.1 or the ICMPv6 checksum: discarded.
    Invalid,
}

/// Reads a punted frame (untagged: the runtime took the tag off).
pub fn read(frame: &[u8]) -> Result<Message, Refused> {
    let l2 = parse_l2(frame).map_err(|_| Refused::NotNd)?;
    if l2.ethertype != EtherType::Ipv6 {
        return Err(Refused::NotNd);
    }
    let ip = Ipv6Packet::new_checked(frame.get(l2.l3_offset..).unwrap_or_default()).map_err(|_| Refused::NotNd)?;
    // A listener query comes behind a hop-by-hop header (its Router
    // Alert), from a link-local address with hop limit 1 (RFC 3810
    // §5.1.14, §6.2).
    if ip.next_header() == next_header::HOP_BY_HOP {
        let chain = ip.walk().map_err(|_| Refused::NotNd)?;
        let m = ip.payload().get(chain.offset..).unwrap_or_default();
        let query = chain.proto == next_header::ICMPV6 && m.first() == Some(&kind::MLD_QUERY);
        if !query {
            return Err(Refused::NotNd);
        }
        let m = Icmpv6Packet::new_checked(m).map_err(|_| Refused::Invalid)?;
        let link_local = ip.src_addr().segments()[0] & 0xffc0 == 0xfe80;
        return if ip.hop_limit() == 1 && link_local && m.verify_checksum(ip.src_addr(), ip.dst_addr()) { Ok(Message::MldQuery) } else { Err(Refused::Invalid) };
    }
    // ND and echo come without extension headers here (RFC 4861 §7.1:
    // an NS/NA behind a fragment header is invalid; the box answers no
    // echo that comes with a chain).
    if ip.next_header() != next_header::ICMPV6 {
        return Err(Refused::NotNd);
    }
    let m = Icmpv6Packet::new_checked(ip.payload()).map_err(|_| Refused::NotNd)?;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    match m.msg_type() {
        kind::ECHO_REQUEST if m.verify_checksum(src, dst) && m.msg_code() == 0 => Ok(Message::Echo { dst }),
        kind::ECHO_REQUEST => Err(Refused::Invalid),
        kind::NEIGHBOR_SOLICIT | kind::NEIGHBOR_ADVERT => nd(&ip, &m, frame),
        _ => Err(Refused::NotNd),
    }
}

/// RFC 4861 §7.1.1 and §7.1.2: hop limit 255, checksum, code 0, at least
/// 24 bytes, a unicast target, options of nonzero length; an NS from the
/// unspecified address only to a solicited-node group and without a
/// source link-layer option; an NA to a group never solicited.
fn nd(ip: &Ipv6Packet<&[u8]>, m: &Icmpv6Packet<&[u8]>, frame: &[u8]) -> Result<Message, Refused> {
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let len_ok = m.as_bytes().len() >= icmpv6::ND_LEN;
    if ip.hop_limit() != ND_HOP_LIMIT || m.msg_code() != 0 || !len_ok || !m.verify_checksum(src, dst) || m.nd_target().is_multicast() {
        return Err(Refused::Invalid);
    }
    if m.msg_type() == kind::NEIGHBOR_SOLICIT {
        let src_mac = m.nd_link_addr(option::SOURCE_LL).map_err(|_| Refused::Invalid)?;
        // An answer to a group MAC would be a broadcast of the box's.
        if src_mac.is_some_and(|m| m.is_multicast()) {
            return Err(Refused::Invalid);
        }
        let solicited_group = dst.segments()[..6] == [0xff02, 0, 0, 0, 0, 1] && dst.octets()[12] == 0xff;
        if src.is_unspecified() && (src_mac.is_some() || !solicited_group) {
            return Err(Refused::Invalid);
        }
        return Ok(Message::Solicit { src, target: m.nd_target(), src_mac });
    }
    let flags = m.na_flags();
    if dst.is_multicast() && flags & NA_SOLICITED != 0 {
        return Err(Refused::Invalid);
    }
    let mac = m.nd_link_addr(option::TARGET_LL).map_err(|_| Refused::Invalid)?;
    if mac.is_some_and(|m| m.is_multicast()) {
        return Err(Refused::Invalid);
    }
    let frame_src = furiwake_dataplane::wire::EthernetFrame::new_unchecked(frame).src_addr();
    Ok(Message::Advert { target: m.nd_target(), mac: mac.unwrap_or(frame_src), solicited: flags & NA_SOLICITED != 0, over: flags & NA_OVERRIDE != 0 })
}

/// The length of an ND frame: Ethernet, IPv6, the message and its option.
pub const NA_FRAME_LEN: usize = 14 + HEADER_LEN + NA_LEN;
pub const NS_FRAME_LEN: usize = 14 + HEADER_LEN + NS_LEN;

/// Writes the Ethernet and IPv6 headers of an ND message (`len` bytes of
/// ICMPv6, hop limit 255) into `buf`.
fn headers(buf: &mut [u8], src_mac: EthernetAddress, dst_mac: EthernetAddress, src: Ipv6Addr, dst: Ipv6Addr, len: usize) {
    let Some(h) = buf.get_mut(..14 + HEADER_LEN) else { return };
    h.fill(0);
    h[0..6].copy_from_slice(&dst_mac.0);
    h[6..12].copy_from_slice(&src_mac.0);
    h[12..14].copy_from_slice(&[0x86, 0xdd]);
    h[14] = 0x60;
    h[18..20].copy_from_slice(&(len as u16).to_be_bytes());
    h[20] = next_header::ICMPV6;
    h[21] = ND_HOP_LIMIT;
    h[22..38].copy_from_slice(&src.octets());
    h[38..54].copy_from_slice(&dst.octets());
}

/// An advertisement of `target` at `mac` from `src` (the target itself,
/// RFC 4861 §7.2.4) to `dst` at `dst_mac`: solicited when answering a
/// unicast solicitation, unsolicited to all-nodes otherwise (§7.2.6);
/// always with the override and router flags (the box forwards).
pub fn write_advert(buf: &mut [u8], mac: EthernetAddress, target: Ipv6Addr, dst: Ipv6Addr, dst_mac: EthernetAddress, solicited: bool) -> usize {
    if buf.len() < NA_FRAME_LEN {
        return 0;
    }
    headers(buf, mac, dst_mac, target, dst, NA_LEN);
    let flags = NA_ROUTER | NA_OVERRIDE | if solicited { NA_SOLICITED } else { 0 };
    icmpv6::write_neighbor_advert(&mut buf[14 + HEADER_LEN..], target, mac, flags, target, dst);
    NA_FRAME_LEN
}

/// A solicitation for `target` from `src` at `mac`, to the target's
/// solicited-node group (§7.2.2).
pub fn write_solicit(buf: &mut [u8], mac: EthernetAddress, src: Ipv6Addr, target: Ipv6Addr) -> usize {
    if buf.len() < NS_FRAME_LEN {
        return 0;
    }
    let group = icmpv6::solicited_node(target);
    headers(buf, mac, icmpv6::multicast_mac(group), src, group, NS_LEN);
    icmpv6::write_neighbor_solicit(&mut buf[14 + HEADER_LEN..], target, mac, src, group);
    NS_FRAME_LEN
}

/// ff02::16, all MLDv2-capable routers (RFC 3810 §5.2.14).
pub const MLD_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);

/// The length of an MLDv2 report frame of `groups` records.
pub fn mld_report_len(groups: usize) -> usize {
    14 + HEADER_LEN + 8 + 8 + 20 * groups
}

/// An MLDv2 report (RFC 3810 §5.2) that the link listens to `groups`
/// (each a CHANGE_TO_EXCLUDE record with no source: a join), from the
/// link-local address `src` (§5.2.13) at `mac` to all MLDv2 routers with
/// hop limit 1 behind a hop-by-hop header holding the Router Alert option
/// (RFC 2711): what a switch that snoops MLD forwards the groups by.
pub fn write_mld_report(buf: &mut [u8], mac: EthernetAddress, src: Ipv6Addr, groups: &[Ipv6Addr]) -> usize {
    let len = mld_report_len(groups.len());
    let Some(b) = buf.get_mut(..len) else { return 0 };
    b.fill(0);
    let icmp_len = 8 + 20 * groups.len();
    headers(b, mac, icmpv6::multicast_mac(MLD_ROUTERS), src, MLD_ROUTERS, 8 + icmp_len);
    b[20] = next_header::HOP_BY_HOP;
    b[21] = 1;
    // Hop-by-hop: next ICMPv6, length 0 (8 bytes), Router Alert (type 5,
    // length 2, value 0: MLD), PadN of 0 bytes.
    b[54..62].copy_from_slice(&[next_header::ICMPV6, 0, 5, 2, 0, 0, 1, 0]);
    let m = &mut b[62..];
    m[0] = kind::MLD2_REPORT;
    m[6..8].copy_from_slice(&(groups.len() as u16).to_be_bytes());
    for (i, g) in groups.iter().enumerate() {
        let r = &mut m[8 + 20 * i..8 + 20 * (i + 1)];
        r[0] = 4;
        r[4..20].copy_from_slice(&g.octets());
    }
    Icmpv6Packet::new_unchecked(&mut m[..icmp_len]).fill_checksum(src, MLD_ROUTERS);
    len
}

/// Turns an echo request (as `read` found it) into its reply in place:
/// addresses and MACs swapped, hop limit 64, type 129, checksum refilled.
pub fn echo_reply(frame: &mut [u8]) -> bool {
    let Ok(l2) = parse_l2(frame) else { return false };
    let l3 = l2.l3_offset;
    let Some(ip_bytes) = frame.get_mut(l3..) else { return false };
    let Ok(mut ip) = Ipv6Packet::new_checked(ip_bytes) else { return false };
    let (s, d) = (ip.src_addr(), ip.dst_addr());
    ip.set_src_addr(d);
    ip.set_dst_addr(s);
    ip.set_hop_limit(64);
    let mut m = Icmpv6Packet::new_unchecked(ip.payload_mut());
    m.set_msg_type(kind::ECHO_REPLY);
    m.fill_checksum(d, s);
    let mut eth = furiwake_dataplane::wire::EthernetFrame::new_unchecked(&mut *frame);
    let (a, b) = (eth.src_addr(), eth.dst_addr());
    eth.set_src_addr(b);
    eth.set_dst_addr(a);
    true
}

#[cfg(test)]
mod tests;
