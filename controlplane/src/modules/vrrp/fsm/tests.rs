use super::*;

const ME: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const PEER_LOW: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const PEER_HIGH: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);

fn params(priority: u8, preempt: bool) -> Params {
    Params { priority, advert_cs: 100, preempt, address: ME, version: 3 }
}

fn v2(priority: u8, advert_cs: u16) -> Params {
    Params { priority, advert_cs, preempt: true, address: ME, version: 2 }
}

fn list(a: Actions) -> Vec<Action> {
    a.0.iter().take(a.1).flatten().copied().collect()
}

#[test]
fn timers_follow_rfc_5798_section_6_1() {
    let p = params(200, true);
    // Skew_Time = ((256 - 200) * 100) / 256 = 21 cs.
    assert_eq!(p.skew_cs(100), 21);
    assert_eq!(p.master_down_cs(100), 321);
    assert_eq!(params(255, true).skew_cs(100), 0);
    assert_eq!(params(1, true).master_down_cs(100), 399);
}

/// RFC 3768 §6.1 (v2): Skew_Time = (256 - Priority) / 256 seconds, the
/// same for every interval; v3 scales it by the interval (RFC 5798 §6.1).
/// (priority, interval cs, v2 skew cs, v2 master down cs, v3 skew cs).
#[test]
fn v2_skew_is_in_seconds_whatever_the_interval() {
    let cases: [(u8, u16, u64, u64, u64); 6] = [
        (100, 100, 60, 360, 60),
        (100, 200, 60, 660, 121),
        (100, 25500, 60, 76560, 15539),
        (254, 300, 0, 900, 2),
        (1, 100, 99, 399, 99),
        (1, 1000, 99, 3099, 996),
    ];
    for (priority, adv, skew, down, skew3) in cases {
        assert_eq!(v2(priority, adv).skew_cs(adv), skew, "v2 priority {priority} interval {adv}");
        assert_eq!(v2(priority, adv).master_down_cs(adv), down, "v2 priority {priority} interval {adv}");
        assert_eq!(Params { version: 3, ..v2(priority, adv) }.skew_cs(adv), skew3, "v3 priority {priority} interval {adv}");
    }
    // A v2 backup's timer: 3 intervals of 2 s and the skew of 0.6 s.
    let (got, _) = step(State::Initialize, &v2(100, 200), Event::Startup, 0);
    assert_eq!(got, State::Backup { master_adver_cs: 200, master_down_at: 660 });
}

/// (description, state, params, event, now, next state, actions).
type Case = (&'static str, State, Params, Event, u64, State, Vec<Action>);

#[test]
fn transitions() {
    let b = |adv: u16, down: u64| State::Backup { master_adver_cs: adv, master_down_at: down };
    let m = |at: u64| State::Master { advert_at: at };
    let advert = |priority: u8, src: Ipv4Addr| Event::Advert { priority, interval_cs: 100, src };
    let send = |priority: u8| Action::SendAdvert { priority };
    let cases: Vec<Case> = vec![
        ("owner starts as master", State::Initialize, params(255, true), Event::Startup, 0, m(100), vec![send(255), Action::TakeAddresses]),
        ("others start as backup", State::Initialize, params(200, true), Event::Startup, 0, b(100, 321), vec![]),
        ("a stopped instance ignores adverts", State::Initialize, params(200, true), advert(100, PEER_LOW), 5, State::Initialize, vec![]),
        ("backup: master down timer not due", b(100, 321), params(200, true), Event::Tick, 320, b(100, 321), vec![]),
        ("backup: master down timer fires", b(100, 321), params(200, true), Event::Tick, 321, m(421), vec![send(200), Action::TakeAddresses]),
        ("backup: a higher master resets the timer", b(100, 321), params(200, true), advert(250, PEER_LOW), 50, b(100, 371), vec![]),
        ("backup: an equal master resets the timer", b(100, 321), params(200, true), advert(200, PEER_LOW), 50, b(100, 371), vec![]),
        ("backup with preempt: a lower master is ignored", b(100, 321), params(200, true), advert(100, PEER_HIGH), 50, b(100, 321), vec![]),
        ("backup without preempt: a lower master resets the timer", b(100, 321), params(200, false), advert(100, PEER_HIGH), 50, b(100, 371), vec![]),
        (
            "backup: the master's interval is learnt",
            b(100, 321),
            params(200, true),
            Event::Advert { priority: 250, interval_cs: 200, src: PEER_LOW },
            0,
            b(200, 643),
            vec![],
        ),
        ("backup: priority 0 leaves the skew only", b(100, 321), params(200, true), advert(0, PEER_LOW), 50, b(100, 71), vec![]),
        ("backup: shutdown", b(100, 321), params(200, true), Event::Shutdown, 1, State::Initialize, vec![]),
        ("master: advert timer not due", m(100), params(200, true), Event::Tick, 99, m(100), vec![]),
        ("master: advert timer fires", m(100), params(200, true), Event::Tick, 100, m(200), vec![send(200)]),
        ("master: a higher priority takes over", m(100), params(200, true), advert(201, PEER_LOW), 50, b(100, 50 + 321), vec![Action::DropAddresses]),
        ("master: equal priority, higher address wins", m(100), params(200, true), advert(200, PEER_HIGH), 50, b(100, 371), vec![Action::DropAddresses]),
        ("master: equal priority, lower address loses", m(100), params(200, true), advert(200, PEER_LOW), 50, m(100), vec![]),
        ("master: a lower priority is ignored", m(100), params(200, true), advert(100, PEER_HIGH), 50, m(100), vec![]),
        ("master: priority 0 is answered at once", m(100), params(200, true), advert(0, PEER_LOW), 50, m(150), vec![send(200)]),
        ("master: shutdown says priority 0", m(100), params(200, true), Event::Shutdown, 50, State::Initialize, vec![send(0), Action::DropAddresses]),
        // RFC 5798 §7.1: the address owner discards adverts, whatever they say.
        ("owner master: an equal priority from a higher address is discarded", m(100), params(255, true), advert(255, PEER_HIGH), 50, m(100), vec![]),
        ("owner master: priority 0 is discarded", m(100), params(255, true), advert(0, PEER_LOW), 50, m(100), vec![]),
        ("owner master: a lower priority is discarded", m(100), params(255, false), advert(254, PEER_HIGH), 50, m(100), vec![]),
        ("owner master: its advert timer still fires", m(100), params(255, true), Event::Tick, 100, m(200), vec![send(255)]),
        ("owner backup (priority just restored): adverts do not reset its timer", b(100, 300), params(255, false), advert(254, PEER_HIGH), 50, b(100, 300), vec![]),
        ("owner backup: its timer fires", b(100, 300), params(255, false), Event::Tick, 300, m(400), vec![send(255), Action::TakeAddresses]),
    ];
    for (what, state, p, event, now, next, actions) in cases {
        let (got, acts) = step(state, &p, event, now);
        assert_eq!(got, next, "{what}");
        assert_eq!(list(acts), actions, "{what}");
    }
}

/// Two instances fed each other's adverts: the higher priority ends up
/// master, the other backup, whichever starts first.
#[test]
fn two_instances_agree_on_the_master() {
    let hi = Params { priority: 200, advert_cs: 100, preempt: true, address: PEER_HIGH, version: 3 };
    let lo = Params { priority: 100, advert_cs: 100, preempt: true, address: PEER_LOW, version: 3 };
    for lo_starts_at in [0u64, 1000] {
        let (mut a, mut b) = (State::Initialize, State::Initialize);
        for now in 0..5000u64 {
            let mut sent = Vec::new();
            for (s, p, start) in [(&mut a, &hi, 0u64), (&mut b, &lo, lo_starts_at)] {
                let event = if now == start { Event::Startup } else { Event::Tick };
                if now < start {
                    continue;
                }
                let (next, acts) = step(*s, p, event, now);
                *s = next;
                for act in list(acts) {
                    if let Action::SendAdvert { priority } = act {
                        sent.push((p.address, priority));
                    }
                }
            }
            for (src, priority) in sent {
                let ev = Event::Advert { priority, interval_cs: 100, src };
                if src != hi.address {
                    a = step(a, &hi, ev, now).0;
                }
                if src != lo.address && now >= lo_starts_at {
                    b = step(b, &lo, ev, now).0;
                }
            }
        }
        assert!(matches!(a, State::Master { .. }), "higher priority is master (low started at {lo_starts_at}): {a:?}");
        assert!(matches!(b, State::Backup { .. }), "lower priority is backup (low started at {lo_starts_at}): {b:?}");
    }
}
