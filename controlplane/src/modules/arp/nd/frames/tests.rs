//! ND and echo frames against scapy's (2.5, Debian 12): what the box
//! reads, and what it writes byte for byte.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

const BOX: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xa0]);
const CLIENT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0x10]);
const SELF: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const CLIENT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);

/// `Ether()/IPv6(hlim=255)/ICMPv6ND_NS(tgt=SELF)/ICMPv6NDOptSrcLLAddr()`
/// from the client to SELF's solicited-node group.
const NS: &str = "3333ff00000202000000001086dd6000000000203aff20010db8000100000000000000000010ff0200000000000000000001ff00000287001c070000000020010db80001000000000000000000020101020000000010";
/// The solicited answer: R, S, O and the target link-layer option.
const NA: &str = "0200000000100200000000a086dd6000000000203aff20010db800010000000000000000000220010db8000100000000000000000010880009c1e000000020010db800010000000000000000000202010200000000a0";
/// The unsolicited one to all-nodes: R and O.
const UNA: &str = "3333000000010200000000a086dd6000000000203aff20010db8000100000000000000000002ff02000000000000000000000000000188007887a000000020010db800010000000000000000000202010200000000a0";
/// The box's solicitation for 2001:db8:1::1.
const NS_OUT: &str = "3333ff0000010200000000a086dd6000000000203aff20010db8000100000000000000000002ff0200000000000000000001ff00000187001b870000000020010db800010000000000000000000101010200000000a0";
const ECHO: &str = "0200000000a002000000001086dd6000000000103a4020010db800010000000000000000001020010db80001000000000000000000028000564e123400076675726977616b65";
const REPLY: &str = "0200000000100200000000a086dd6000000000103a4020010db800010000000000000000000220010db80001000000000000000000108100554e123400076675726977616b65";
/// Duplicate address detection: from ::, no source link-layer option.
const DAD: &str = "3333ff00000202000000001086dd6000000000183aff00000000000000000000000000000000ff0200000000000000000001ff00000287004cea0000000020010db8000100000000000000000002";

#[test]
fn solicitations_are_read_and_answered_as_scapy_writes_them() {
    assert_eq!(read(&hex(NS)), Ok(Message::Solicit { src: CLIENT, target: SELF, src_mac: Some(CLIENT_MAC) }));
    assert_eq!(read(&hex(DAD)), Ok(Message::Solicit { src: Ipv6Addr::UNSPECIFIED, target: SELF, src_mac: None }));
    let mut buf = [0u8; NA_FRAME_LEN];
    assert_eq!(write_advert(&mut buf, BOX, SELF, CLIENT, CLIENT_MAC, true), NA_FRAME_LEN);
    assert_eq!(buf.to_vec(), hex(NA));
    assert_eq!(write_advert(&mut buf, BOX, SELF, ALL_NODES, icmpv6::multicast_mac(ALL_NODES), false), NA_FRAME_LEN);
    assert_eq!(buf.to_vec(), hex(UNA));
    let mut ns = [0u8; NS_FRAME_LEN];
    assert_eq!(write_solicit(&mut ns, BOX, SELF, Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1)), NS_FRAME_LEN);
    assert_eq!(ns.to_vec(), hex(NS_OUT));
    // Its own answer reads back as an advert of SELF at the box's MAC.
    assert_eq!(read(&hex(NA)), Ok(Message::Advert { target: SELF, mac: BOX, solicited: true, over: true }));
    assert_eq!(write_advert(&mut [0u8; 10], BOX, SELF, CLIENT, CLIENT_MAC, true), 0, "too short a buffer");
}

#[test]
fn echo_requests_are_answered_in_place() {
    let mut f = hex(ECHO);
    assert_eq!(read(&f), Ok(Message::Echo { dst: SELF }));
    assert!(echo_reply(&mut f));
    assert_eq!(f, hex(REPLY));
    let mut bad = hex(ECHO);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(read(&bad), Err(Refused::Invalid), "a wrong checksum");
}

/// RFC 4861 §7.1.1 and §7.1.2: each check refuses a frame on its own.
#[test]
fn invalid_neighbor_discovery_is_refused() {
    // Changes at byte offsets of the NS frame; the checksum refilled so
    // that only the check under test fails.
    let refill = |mut f: Vec<u8>| {
        let (src, dst) = (Ipv6Addr::from(<[u8; 16]>::try_from(&f[22..38]).unwrap()), Ipv6Addr::from(<[u8; 16]>::try_from(&f[38..54]).unwrap()));
        Icmpv6Packet::new_unchecked(&mut f[54..]).fill_checksum(src, dst);
        f
    };
    let with = |at: usize, v: u8| {
        let mut f = hex(NS);
        f[at] = v;
        refill(f)
    };
    assert_eq!(read(&with(0, 0x33)), read(&hex(NS)), "the refill alone changes nothing");
    assert_eq!(read(&with(21, 64)), Err(Refused::Invalid), "hop limit 64");
    assert_eq!(read(&with(55, 1)), Err(Refused::Invalid), "code 1");
    assert_eq!(read(&with(62, 0xff)), Err(Refused::Invalid), "a multicast target");
    assert_eq!(read(&with(79, 0)), Err(Refused::Invalid), "an option of length 0");
    let mut cut = hex(NS);
    cut[57] ^= 0x55;
    assert_eq!(read(&cut), Err(Refused::Invalid), "a wrong checksum");
    // DAD with a source link-layer option, or not to a solicited-node
    // group.
    let mut dad_ll = hex(NS);
    dad_ll[22..38].fill(0);
    assert_eq!(read(&refill(dad_ll)), Err(Refused::Invalid));
    let mut dad_unicast = hex(DAD);
    dad_unicast[38..54].copy_from_slice(&SELF.octets());
    assert_eq!(read(&refill(dad_unicast)), Err(Refused::Invalid));
    // A solicited advert to a group.
    let mut na = hex(NA);
    na[38..54].copy_from_slice(&ALL_NODES.octets());
    assert_eq!(read(&refill(na)), Err(Refused::Invalid));
    // Not ND: another module's.
    let mut tcp = hex(ECHO);
    tcp[20] = 6;
    assert_eq!(read(&tcp), Err(Refused::NotNd));
    assert_eq!(read(&hex(&UNA[..60])), Err(Refused::NotNd), "truncated");
}

/// An MLDv2 report as scapy writes it (`IPv6ExtHdrHopByHop(RouterAlert,
/// PadN)/ICMPv6MLReport2` with two CHANGE_TO_EXCLUDE records).
#[test]
fn mld_reports_are_written_as_scapy_writes_them() {
    const MLD: &str = "3333000000160200000000a086dd6000000000380001fe80000000000000000000fffe0000a0ff0200000000000000000000000000163a000502000001008f006ead0000000204000000ff0200000000000000000001ff00000204000000ff0200000000000000000001ff0000a0";
    let ll = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 0xa0);
    let groups = [Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 2), Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0xa0)];
    let mut buf = vec![0u8; mld_report_len(2)];
    assert_eq!(write_mld_report(&mut buf, BOX, ll, &groups), 110);
    assert_eq!(buf, hex(MLD));
}

/// scapy's MLDv2 general query (`IPv6(hlim=1)/IPv6ExtHdrHopByHop(
/// RouterAlert, PadN)/ICMPv6MLQuery2()` from fe80::1 to ff02::1) is read
/// as a query; not with another hop limit or from a global address.
#[test]
fn mld_queries_are_read_from_the_link_only() {
    const QUERY: &str = "33330000000102000000000186dd6000000000240001fe800000000000000000000000000001ff0200000000000000000000000000013a0005020000010082005913271000000000000000000000000000000000000000000000";
    assert_eq!(read(&hex(QUERY)), Ok(Message::MldQuery));
    let mut hops = hex(QUERY);
    hops[21] = 2;
    assert_eq!(read(&hops), Err(Refused::Invalid));
    let mut global = hex(QUERY);
    global[22] = 0x20;
    global[23] = 0x01;
    assert_eq!(read(&global), Err(Refused::Invalid));
}
