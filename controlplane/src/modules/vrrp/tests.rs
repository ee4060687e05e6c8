//! The module's own checks around the instances: adverts from frame to
//! state machine, counted by reason; the operator's priority.

use super::*;
use furiwake_dataplane::wire::vrrp::{VrrpRepr, MULTICAST};

const ME: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 4);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);

fn vrrp(priority: u8, group: bool, synced: bool) -> Vrrp {
    let group = if group { "group = \"pair\"\n" } else { "" };
    let cfg: crate::config::Vrrp =
        toml::from_str(&format!("name = \"o\"\ninterface = \"outside\"\nvrid = 51\npriority = {priority}\nadvert_interval_ms = 100\naddresses = [\"192.0.2.100\"]\n{group}")).unwrap();
    Vrrp::of(vec![Instance::new(cfg, 0, ME, frames::virtual_mac(51))], synced)
}

fn frame(priority: u8, interval_cs: u16, addresses: Vec<Ipv4Addr>) -> Vec<u8> {
    let r = VrrpRepr { version: 3, vrid: 51, priority, interval_cs, addresses, password: None };
    frames::advert_frame(EthernetAddress([2, 0, 0, 0, 0, 4]), frames::MULTICAST_MAC, PEER, MULTICAST, &r)
}

/// Feeds `frame` at `now` as `step` does; what the instance asked for.
fn feed(v: &mut Vrrp, frame: &[u8], now: u64) -> Vec<Out> {
    assert!(v.on_frame(0, frame));
    let mut outs = Vec::new();
    for (li, r) in std::mem::take(&mut v.inbox) {
        v.advert_in(li, r, now, &mut outs);
    }
    outs.into_iter().map(|(_, o)| o).collect()
}

fn refused(v: &Vrrp, reason: &str) -> u64 {
    v.instances[0].counters.refused.get(reason).copied().unwrap_or(0) + v.refused.get(reason).copied().unwrap_or(0)
}

/// The attacks of RFC 5798 §7.1's checks, each performed on a master:
/// (description, our priority, advert priority, interval, addresses,
/// still master, counted reason).
#[test]
fn adverts_a_master_must_not_follow_are_discarded_and_counted() {
    let other = Ipv4Addr::new(192, 0, 2, 101);
    type Case = (&'static str, u8, u8, u16, Vec<Ipv4Addr>, bool, &'static str);
    let cases: [Case; 6] = [
        ("the owner discards a 255 from a higher address", 255, 255, 100, vec![VIP], true, "address-owner"),
        ("the owner discards a mismatched 255", 255, 255, 100, vec![other], true, "address-owner"),
        ("a mismatched higher priority is dropped", 200, 254, 100, vec![other], true, "address-mismatch"),
        ("an interval of 0 is refused before any instance", 200, 254, 0, vec![VIP], true, "bad-interval"),
        ("a matching higher priority wins", 200, 254, 100, vec![VIP], false, ""),
        ("a mismatched owner wins (RFC 5798 §7.1: processing continues)", 200, 255, 100, vec![other], false, "address-mismatch (owner, accepted)"),
    ];
    for (what, ours, theirs, interval, addresses, stays, reason) in cases {
        let mut v = vrrp(ours, false, false);
        v.instances[0].startup(0, &mut Vec::new());
        v.instances[0].tick(1000, false, &mut Vec::new());
        assert!(v.instances[0].is_master(), "{what}");
        let outs = feed(&mut v, &frame(theirs, interval, addresses), 1010);
        assert_eq!(v.instances[0].is_master(), stays, "{what}: {outs:?}");
        assert_eq!(outs.is_empty(), stays, "{what}: {outs:?}");
        if !reason.is_empty() {
            assert_eq!(refused(&v, reason), 1, "{what}: {:?} {:?}", v.refused, v.instances[0].counters.refused);
        }
    }
}

/// `vrrp NAME priority 255` is refused where check-config refuses the
/// owner: with `[sync]` and in a sync group.
#[test]
fn the_operator_cannot_make_an_owner_check_config_refuses() {
    for (group, synced, ok) in [(false, false, true), (true, false, false), (false, true, false)] {
        let mut v = vrrp(200, group, synced);
        let r = v.set_priority("o", 255);
        assert_eq!(r.is_ok(), ok, "group {group} sync {synced}: {r:?}");
        assert_eq!(v.instances[0].priority, if ok { 255 } else { 200 });
        assert!(v.set_priority("o", 254).is_ok());
    }
}
