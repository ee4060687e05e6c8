use super::*;

const ME: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 4);

fn instance(extra: &str) -> Instance {
    let interval = if extra.contains("advert_interval_ms") { "" } else { "advert_interval_ms = 100\n" };
    let cfg: VrrpConfig = toml::from_str(&format!("name = \"o\"\ninterface = \"outside\"\nvrid = 51\npriority = 200\n{interval}addresses = [\"192.0.2.100\"]\n{extra}")).unwrap();
    Instance::new(cfg, 0, ME, EthernetAddress([0, 0, 0x5e, 0, 1, 51]))
}

/// Runs `f` and returns what it asked for.
fn outs(f: impl FnOnce(&mut Vec<Out>)) -> Vec<Out> {
    let mut o = Vec::new();
    f(&mut o);
    o
}

fn master(i: &mut Instance, now: u64) {
    i.startup(now, &mut Vec::new());
    i.tick(now + 1000, false, &mut Vec::new());
    assert!(i.is_master(), "{}", i.state_name());
}

#[test]
fn preempt_delay_holds_a_higher_backup_while_the_lower_master_serves() {
    let mut i = instance("preempt_delay_ms = 1000");
    i.startup(0, &mut Vec::new());
    // A lower master advertises every 100 ms: held for 1 s (100 cs), then
    // the backup stops listening to it and its master-down timer fires.
    let mut t = 0;
    while t <= 90 {
        assert!(outs(|o| i.advert_in(100, 100, PEER, t, false, o)).is_empty(), "held at {t}");
        i.tick(t, false, &mut Vec::new());
        assert_eq!(i.state_name(), "BACKUP", "at {t}");
        t += 10;
    }
    while !i.is_master() && t < 1000 {
        i.advert_in(100, 100, PEER, t, false, &mut Vec::new());
        i.tick(t, false, &mut Vec::new());
        t += 10;
    }
    assert!(i.is_master() && t > 100 + 300, "preempted at {t} cs");
    // The hold (sync's bulk dump) keeps it from preempting at all.
    let mut held = instance("");
    held.startup(0, &mut Vec::new());
    for t in (0..1000).step_by(10) {
        held.advert_in(100, 100, PEER, t, true, &mut Vec::new());
        held.tick(t, true, &mut Vec::new());
    }
    assert_eq!(held.state_name(), "BACKUP");
}

#[test]
fn release_hands_over_and_does_not_preempt_back() {
    let mut i = instance("");
    master(&mut i, 0);
    let o = outs(|o| assert!(i.release(2000, o)));
    assert_eq!(o, vec![Out::Advert { priority: 0 }, Out::Drop]);
    assert_eq!(i.last.as_ref().unwrap().why, "released by the operator");
    for t in (2000..3000).step_by(10) {
        i.advert_in(100, 100, PEER, t, false, &mut Vec::new());
        i.tick(t, false, &mut Vec::new());
    }
    assert_eq!(i.state_name(), "BACKUP", "a released instance does not preempt");
    assert!(!outs(|o| assert!(!i.release(3000, o))).contains(&Out::Drop), "nothing to release as backup");
    // The peer goes away: it becomes master again, and is no longer released.
    i.tick(4000, false, &mut Vec::new());
    assert!(i.is_master() && !i.released);
}

#[test]
fn tracking_faults_a_master_and_lowers_priority_by_weight() {
    let mut i = instance("");
    master(&mut i, 0);
    let o = outs(|o| i.track(Some("interface outside down".into()), Vec::new(), 2000, o));
    assert_eq!(o, vec![Out::Advert { priority: 0 }, Out::Drop], "a master leaves with priority 0");
    assert_eq!(i.state_name(), "FAULT");
    assert!(outs(|o| i.tick(9000, false, o)).is_empty(), "FAULT never becomes master");
    assert!(outs(|o| i.advert_in(0, 100, PEER, 9000, false, o)).is_empty());
    assert_eq!(i.state_name(), "FAULT");
    i.track(None, Vec::new(), 9100, &mut Vec::new());
    assert_eq!(i.state_name(), "BACKUP");
    assert_eq!(i.last.as_ref().unwrap().why, "tracking recovered");

    let mut w = instance("track_weight = 60");
    w.track(None, vec!["address 192.0.2.1 unreachable".into()], 0, &mut Vec::new());
    assert_eq!((w.effective, w.lowered_by.len()), (140, 1));
    w.track(None, vec!["a".into(), "b".into(), "c".into(), "d".into()], 0, &mut Vec::new());
    assert_eq!(w.effective, 1, "never below 1");
    w.track(None, Vec::new(), 0, &mut Vec::new());
    assert_eq!(w.effective, 200);
}

#[test]
fn a_priority_zero_advert_is_the_cause_of_the_quick_takeover() {
    let mut i = instance("");
    i.startup(0, &mut Vec::new());
    i.advert_in(250, 100, PEER, 10, false, &mut Vec::new());
    assert_eq!(i.master, Some(PEER));
    i.advert_in(0, 100, PEER, 20, false, &mut Vec::new());
    // Skew of priority 200 at 100 cs: 21 cs.
    i.tick(40, false, &mut Vec::new());
    assert_eq!(i.state_name(), "BACKUP");
    i.tick(41, false, &mut Vec::new());
    assert!(i.is_master());
    assert!(i.last.as_ref().unwrap().why.contains("priority-0 advert"), "{:?}", i.last);
    assert_eq!(i.unlogged.len(), 2, "INIT -> BACKUP -> MASTER, both to log");
}

#[test]
fn adverts_carry_the_addresses_interval_and_v2_password() {
    let i = instance("version = 2\nadvert_interval_ms = 1000\nauth_password = \"secret\"");
    let a = i.advert(200);
    assert_eq!((a.version, a.vrid, a.priority, a.interval_cs), (2, 51, 200, 100));
    assert_eq!(a.addresses, vec![Ipv4Addr::new(192, 0, 2, 100)]);
    assert_eq!(a.password, Some(*b"secret\0\0"));
    assert_eq!(instance("").advert(7).password, None);
}

/// The instance as the address owner (priority 255).
fn owner(extra: &str) -> Instance {
    let mut i = instance(extra);
    i.priority = 255;
    i.effective = 255;
    i
}

/// RFC 5798 §7.1 (RFC 3768 §7.1 for v2) of an advert for the instance's
/// VRID: (description, instance, source, advert, verdict).
#[test]
fn advert_checks_follow_rfc_5798_section_7_1() {
    const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
    const OTHER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 101);
    const V2: &str = "version = 2\nadvert_interval_ms = 1000\nauth_password = \"secret\"";
    let v3 = |priority: u8, addresses: Vec<Ipv4Addr>| VrrpRepr { version: 3, vrid: 51, priority, interval_cs: 100, addresses, password: None };
    let v2 = |priority: u8, interval_cs: u16, password: &[u8; 8]| VrrpRepr { version: 2, vrid: 51, priority, interval_cs, addresses: vec![VIP], password: Some(*password) };
    type Case = (&'static str, Instance, Ipv4Addr, VrrpRepr, Result<Option<&'static str>, &'static str>);
    let cases: Vec<Case> = vec![
        ("a good advert", instance(""), PEER, v3(100, vec![VIP]), Ok(None)),
        ("a good priority-0 advert", instance(""), PEER, v3(0, vec![VIP]), Ok(None)),
        ("the owner discards a higher address's 255", owner(""), PEER, v3(255, vec![VIP]), Err("address-owner")),
        ("the owner discards a lower priority", owner(""), PEER, v3(100, vec![VIP]), Err("address-owner")),
        ("the owner discards priority 0", owner(""), PEER, v3(0, vec![VIP]), Err("address-owner")),
        ("the owner discards v2 adverts too", owner(V2), PEER, v2(254, 100, b"secret\0\0"), Err("address-owner")),
        ("another version", instance(""), PEER, v2(100, 100, b"secret\0\0"), Err("bad-version")),
        ("not a unicast peer", instance("unicast_peers = [\"192.0.2.4\"]"), Ipv4Addr::new(192, 0, 2, 5), v3(100, vec![VIP]), Err("unknown-peer")),
        ("a unicast peer", instance("unicast_peers = [\"192.0.2.4\"]"), PEER, v3(100, vec![VIP]), Ok(None)),
        ("v3: an interval of 0", instance(""), PEER, VrrpRepr { interval_cs: 0, ..v3(100, vec![VIP]) }, Err("bad-interval")),
        ("v3: another interval is learnt", instance(""), PEER, VrrpRepr { interval_cs: 200, ..v3(100, vec![VIP]) }, Ok(None)),
        ("v2: a good advert", instance(V2), PEER, v2(100, 100, b"secret\0\0"), Ok(None)),
        ("v2: a wrong password", instance(V2), PEER, v2(100, 100, b"secreT\0\0"), Err("bad-auth")),
        ("v2: no password", instance(V2), PEER, VrrpRepr { password: None, ..v2(100, 100, b"secret\0\0") }, Err("bad-auth")),
        ("v2: another interval", instance(V2), PEER, v2(100, 200, b"secret\0\0"), Err("bad-interval")),
        ("v2: an interval of 0", instance(V2), PEER, v2(100, 0, b"secret\0\0"), Err("bad-interval")),
        ("another address", instance(""), PEER, v3(100, vec![OTHER]), Err("address-mismatch")),
        ("one address more", instance(""), PEER, v3(254, vec![VIP, OTHER]), Err("address-mismatch")),
        ("no address", instance(""), PEER, v3(100, vec![]), Err("address-mismatch")),
        ("a mismatched priority-0 advert", instance(""), PEER, v3(0, vec![OTHER]), Err("address-mismatch")),
        ("mismatched addresses from the owner", instance(""), PEER, v3(255, vec![OTHER]), Ok(Some("address-mismatch (owner, accepted)"))),
        ("v2: mismatched addresses", instance(V2), PEER, VrrpRepr { addresses: vec![OTHER], ..v2(100, 100, b"secret\0\0") }, Err("address-mismatch")),
    ];
    for (what, i, src, r, want) in cases {
        assert_eq!(i.check_advert(src, &r), want, "{what}");
    }
}

/// The owner stays master whatever adverts reach it (RFC 5798 §7.1; they
/// are discarded before the state machine, and the state machine discards
/// them too), and starts as master.
#[test]
fn the_owner_stays_master() {
    let mut i = owner("");
    let o = outs(|o| i.startup(0, o));
    assert_eq!(o, vec![Out::Advert { priority: 255 }, Out::Take]);
    for (t, priority, src) in [(10, 255, Ipv4Addr::new(192, 0, 2, 200)), (20, 0, PEER), (30, 254, PEER)] {
        assert!(outs(|o| i.advert_in(priority, 100, src, t, false, o)).is_empty(), "priority {priority} from {src}");
        assert!(i.is_master(), "priority {priority} from {src}");
    }
    // Lowered by tracking it is no longer the owner: a higher advert wins.
    let mut t = owner("track_weight = 10");
    t.startup(0, &mut Vec::new());
    t.track(None, vec!["interface inside down".into()], 5, &mut Vec::new());
    assert_eq!(t.effective, 244);
    assert_eq!(t.check_advert(PEER, &t.advert(250)), Ok(None));
    assert_eq!(outs(|o| t.advert_in(250, 100, PEER, 10, false, o)), vec![Out::Drop]);
}
