use super::*;
use crate::state::snapshot::{Forwarding, VirtualService};

fn vs(schedule: Schedule, n: u16) -> VirtualService {
    VirtualService { schedule, members: (0..n).collect(), ..VirtualService::test(Forwarding::Nat) }
}

fn servers(n: usize) -> Vec<RealServer> {
    (0..n).map(|i| RealServer { ip: 0xc633_640b + i as u32, port: 8080, enabled: true, ..Default::default() }).collect()
}

/// `servers`' addresses with these weights, for `Schedule::hashed`.
fn by_addr(weights: &[u32]) -> Vec<(u32, u16, u32)> {
    weights.iter().enumerate().map(|(i, w)| (0xc633_640b + i as u32, 8080, *w)).collect()
}

#[test]
fn round_robin_is_exact() {
    let v = vs(Schedule::round_robin(3), 3);
    let s = servers(3);
    let mut sch = Scheduler::default();
    sch.resize(1);
    let mut count = [0; 3];
    for _ in 0..30 {
        count[sch.pick(0, &v, &s).unwrap() as usize] += 1;
    }
    assert_eq!(count, [10, 10, 10]);
}

/// A pool of every server slot, 65,536 (`limits::MAX_SERVERS`): round
/// robin lists them all, the last included, and picks (review S4 H2: the
/// count cast to `u16` made the sequence empty).
#[test]
fn round_robin_over_every_slot_picks_them_all() {
    let n = crate::limits::MAX_SERVERS;
    let Schedule::Sequence(seq) = Schedule::round_robin(n) else { panic!("a sequence") };
    assert_eq!((seq.len(), seq.last()), (n, Some(&u16::MAX)));
    let v = VirtualService { schedule: Schedule::round_robin(n), members: (0..=u16::MAX).collect(), ..VirtualService::test(Forwarding::Nat) };
    let s = servers(n);
    let mut sch = Scheduler::default();
    sch.resize(1);
    let picks: Vec<u16> = (0..3).filter_map(|_| sch.pick(0, &v, &s)).collect();
    assert_eq!(picks.len(), 3, "every pick finds a server");
}

#[test]
fn smooth_weighted_interleaves() {
    assert_eq!(Schedule::weighted(&[3, 1, 1]), Schedule::Sequence(Box::new([0, 1, 0, 2, 0])));
    let v = vs(Schedule::weighted(&[3, 1, 1]), 3);
    let s = servers(3);
    let mut sch = Scheduler::default();
    sch.resize(1);
    let mut count = [0; 3];
    for _ in 0..30 {
        count[sch.pick(0, &v, &s).unwrap() as usize] += 1;
    }
    assert_eq!(count, [18, 6, 6]);
    assert_eq!(Schedule::weighted(&[0, 2]), Schedule::Sequence(Box::new([1])), "weights divided by their gcd");
    assert_eq!(Schedule::weighted(&[6, 2, 2]), Schedule::weighted(&[3, 1, 1]));
}

/// Item 4 of issue 23: building a weighted sequence does not cost total
/// weight x pool size for a large pool (stride scheduling), keeps the
/// ratios, and stays bounded in length.
#[test]
fn large_weighted_pools_build_in_proportion_and_bounded() {
    let weights: Vec<u32> = (0..10_000u32).map(|i| 1 + i % 7).collect();
    let Schedule::Sequence(seq) = Schedule::weighted(&weights) else { panic!() };
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    assert_eq!(seq.len() as u64, total);
    let mut count = vec![0u32; weights.len()];
    for p in seq.iter() {
        count[*p as usize] += 1;
    }
    assert_eq!(count, weights, "each server exactly its weight");
    // Interleaved: the first tenth of the sequence holds a tenth of each
    // heavy server's turns, give or take one.
    let tenth = &seq[..seq.len() / 10];
    let sevens = weights.iter().enumerate().filter(|(_, w)| **w == 7).map(|(i, _)| i as u16).take(50);
    for i in sevens {
        let n = tenth.iter().filter(|p| **p == i).count();
        assert!(n <= 2, "server {i} bunched at the start: {n} of 7");
    }
    let heavy: Vec<u32> = (0..10_000u32).map(|i| 10_000 - i % 3).collect();
    let Schedule::Sequence(seq) = Schedule::weighted(&heavy) else { panic!() };
    assert!(seq.len() as u64 <= MAX_SEQUENCE + 10_000, "{} positions", seq.len());
    assert!((0..10_000u16).all(|i| seq.contains(&i)), "every server keeps a turn");
}

/// Least-connections over a group larger than `TWO_CHOICES_FROM`: two
/// random candidates, the lighter wins; never a server that cannot take
/// it or of a lower group.
#[test]
fn large_groups_pick_the_better_of_two() {
    let n = 1000usize;
    let mut s = servers(n);
    for (i, x) in s.iter_mut().enumerate() {
        x.weight = 1;
        x.priority = if i < 900 { 1 } else { 0 };
    }
    s[5].enabled = false;
    s[7].weight = 0;
    let mut v = vs(Schedule::LeastConnections { weighted: false }, n as u16);
    v.groups = Group::of(&v.members, &s);
    assert_eq!(v.groups.len(), 2);
    assert_eq!(v.groups[0].positions.len(), 900);
    let loads = Loads::new(n);
    for i in 0..n {
        loads.set(i, i as u64);
    }
    let mut sch = Scheduler::default();
    sch.resize(1);
    let picks: Vec<u16> = (0..2000).map(|_| sch.pick_for(0, &v, &s, &Flow4::default(), Some(&loads)).unwrap()).collect();
    assert!(picks.iter().all(|p| *p < 900 && *p != 5 && *p != 7), "only the active group's servers that can take it");
    let mean = picks.iter().map(|p| *p as f64).sum::<f64>() / picks.len() as f64;
    // The lesser of two uniform draws over 0..900 averages 300.
    assert!(mean < 360.0, "the lighter of two: mean load {mean}");
    let distinct: std::collections::BTreeSet<u16> = picks.iter().copied().collect();
    assert!(distinct.len() > 300, "spread, not one server: {}", distinct.len());
    // The top group down: the next one takes over.
    for x in s.iter_mut().take(900) {
        x.enabled = false;
    }
    assert!(sch.pick_for(0, &v, &s, &Flow4::default(), Some(&loads)).is_some_and(|p| p >= 900));
}

#[test]
fn disabled_servers_are_skipped_and_none_when_all_down() {
    let v = vs(Schedule::round_robin(3), 3);
    let mut s = servers(3);
    s[1].enabled = false;
    let mut sch = Scheduler::default();
    sch.resize(1);
    let picks: Vec<_> = (0..4).map(|_| sch.pick(0, &v, &s).unwrap()).collect();
    assert_eq!(picks, [0, 2, 0, 2]);
    s.iter_mut().for_each(|x| x.enabled = false);
    assert_eq!(sch.pick(0, &v, &s), None);
    assert_eq!(sch.pick(5, &v, &s), None, "unknown service");
}

#[test]
fn least_connections_follows_loads_and_weights() {
    let v = vs(Schedule::LeastConnections { weighted: false }, 3);
    let mut s = servers(3);
    s.iter_mut().for_each(|x| x.weight = 1);
    let loads = Loads::new(3);
    loads.set(0, 5);
    loads.set(1, 2);
    loads.set(2, 9);
    let mut sch = Scheduler::default();
    sch.resize(1);
    assert_eq!(sch.pick_for(0, &v, &s, &Flow4::default(), Some(&loads)), Some(1));
    // Weighted: 9 connections on weight 10 beats 2 on weight 1.
    let w = vs(Schedule::LeastConnections { weighted: true }, 3);
    s[2].weight = 10;
    assert_eq!(sch.pick_for(0, &w, &s, &Flow4::default(), Some(&loads)), Some(2));
    // Equal loads rotate.
    let eq = Loads::new(3);
    let picks: Vec<_> = (0..3).map(|_| sch.pick_for(0, &v, &s, &Flow4::default(), Some(&eq)).unwrap()).collect();
    let mut sorted = picks.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 3, "{picks:?}");
    s[1].enabled = false;
    assert_ne!(sch.pick_for(0, &v, &s, &Flow4::default(), Some(&loads)), Some(1));
}

#[test]
fn source_hash_keeps_a_client_on_one_server() {
    let v = vs(Schedule::hashed(HashKey::SourceIp, &by_addr(&[1, 1, 1])), 3);
    let s = servers(3);
    let mut sch = Scheduler::default();
    sch.resize(1);
    let mut seen = [0u32; 3];
    for client in 0..3000u32 {
        let a = Flow4 { src: 0xc612_0000 + client, sport: 1000, ..Default::default() };
        let b = Flow4 { sport: 2000, dport: 443, ..a };
        let pa = sch.pick_for(0, &v, &s, &a, None).unwrap();
        assert_eq!(pa, sch.pick_for(0, &v, &s, &b, None).unwrap(), "same client, other ports: same server");
        seen[pa as usize] += 1;
    }
    assert!(seen.iter().all(|n| *n > 800), "{seen:?}");
}

/// A restart rebuilds the table from the config: the same clients must
/// land on the same servers (no random seed anywhere).
#[test]
fn source_hash_is_stable_across_restarts() {
    let picks = || {
        let v = vs(Schedule::hashed(HashKey::SourceIp, &by_addr(&[1, 2, 1])), 3);
        let s = servers(3);
        let mut sch = Scheduler::default();
        sch.resize(1);
        (0..1000u32).map(|c| sch.pick_for(0, &v, &s, &Flow4 { src: 0xcb00_7100 + c, ..Default::default() }, None).unwrap()).collect::<Vec<_>>()
    };
    let first = picks();
    assert_eq!(first, picks());
    // Pinned: a change of hash or table is a deliberate one (servers
    // became keyed by address rather than position in issue 11).
    assert_eq!(&first[..8], &[0, 0, 1, 1, 1, 1, 0, 1]);
}

#[test]
fn maglev_moves_only_the_down_servers_flows() {
    let all = vs(Schedule::hashed(HashKey::FiveTuple, &by_addr(&[1, 1, 1, 1])), 4);
    let without_2 = vs(Schedule::hashed(HashKey::FiveTuple, &by_addr(&[1, 1, 0, 1])), 4);
    let mut s = servers(4);
    let mut sch = Scheduler::default();
    sch.resize(1);
    let mut moved_others = 0;
    for i in 0..4000u32 {
        let f = Flow4 { src: 0x0a00_0000 + i, dst: 1, sport: (i % 60000) as u16, dport: 80, proto: 6 };
        let before = sch.pick_for(0, &all, &s, &f, None).unwrap();
        s[2].enabled = false;
        let after = sch.pick_for(0, &without_2, &s, &f, None).unwrap();
        s[2].enabled = true;
        assert_ne!(after, 2);
        if before != 2 && before != after {
            moved_others += 1;
        }
    }
    assert!(moved_others < 4000 / 50, "{moved_others} flows of healthy servers moved");
}

/// Maglev is keyed by server address: removing one of ten members
/// (from the pool, so the others' positions shift) moves only the
/// removed server's flows, plus at most 1% of the others.
#[test]
fn maglev_removal_by_address_moves_only_the_removed_servers_share() {
    let all: Vec<(u32, u16, u32)> = (0..10u32).map(|i| (0xc633_6400 + 7 * i, 8080, 1)).collect();
    let mut fewer = all.clone();
    let gone = fewer.remove(3);
    let (Schedule::Hash { table: before, .. }, Schedule::Hash { table: after, .. }) =
        (Schedule::hashed(HashKey::FiveTuple, &all), Schedule::hashed(HashKey::FiveTuple, &fewer))
    else {
        panic!("hash schedules")
    };
    let addr = |list: &[(u32, u16, u32)], pos: u16| list.get(pos as usize).map(|s| (s.0, s.1));
    let (mut of_gone, mut moved) = (0usize, 0usize);
    for (b, a) in before.iter().zip(after.iter()) {
        let (was, now) = (addr(&all, *b), addr(&fewer, *a));
        if was == Some((gone.0, gone.1)) {
            of_gone += 1;
        } else if was != now {
            moved += 1;
        }
    }
    let others = before.len() - of_gone;
    let frac = moved as f64 / others as f64;
    println!("removed 1 of 10: {of_gone} slots of its own reassigned, {moved} of {others} others moved ({:.3}%)", 100.0 * frac);
    assert!((of_gone as f64 / before.len() as f64 - 0.1).abs() < 0.01, "the removed server had ~10%: {of_gone}");
    assert!(frac <= 0.01, "others moved: {:.3}%", 100.0 * frac);
}

#[test]
fn servers_at_max_connections_are_skipped() {
    let v = vs(Schedule::round_robin(3), 3);
    let mut s = servers(3);
    s[0].max_connections = 2;
    let loads = Loads::new(3);
    loads.set(0, 2);
    let mut sch = Scheduler::default();
    sch.resize(1);
    let picks: Vec<_> = (0..4).map(|_| sch.pick_for(0, &v, &s, &Flow4::default(), Some(&loads)).unwrap()).collect();
    assert!(!picks.contains(&0), "{picks:?}");
    loads.set(0, 1);
    let picks: Vec<_> = (0..3).map(|_| sch.pick_for(0, &v, &s, &Flow4::default(), Some(&loads)).unwrap()).collect();
    assert!(picks.contains(&0), "below its limit again: {picks:?}");
    loads.set(1, 5);
    loads.set(2, 5);
    s[1].max_connections = 5;
    s[2].max_connections = 5;
    loads.set(0, 2);
    assert_eq!(sch.pick_for(0, &v, &s, &Flow4::default(), Some(&loads)), None, "all full");
}

#[test]
fn priority_groups_spill_to_the_next_and_the_sorry_pool_last() {
    let v = vs(Schedule::round_robin(4), 4);
    let mut s = servers(4);
    s[0].priority = 10;
    s[1].priority = 10;
    s[2].priority = 0;
    s[3].priority = -1; // sorry pool
    let mut sch = Scheduler::default();
    sch.resize(1);
    let picks: Vec<_> = (0..4).map(|_| sch.pick(0, &v, &s).unwrap()).collect();
    assert!(picks.iter().all(|p| *p < 2), "highest group only: {picks:?}");
    s[0].enabled = false;
    assert!((0..4).all(|_| sch.pick(0, &v, &s) == Some(1)), "one left in the group");
    s[1].max_connections = 1;
    let loads = Loads::new(4);
    loads.set(1, 1);
    assert_eq!(sch.pick_for(0, &v, &s, &Flow4::default(), Some(&loads)), Some(2), "full group spills");
    s[2].enabled = false;
    assert_eq!(sch.pick_for(0, &v, &s, &Flow4::default(), Some(&loads)), Some(3), "sorry pool last");
    s[3].enabled = false;
    assert_eq!(sch.pick_for(0, &v, &s, &Flow4::default(), Some(&loads)), None);
}

/// `n` picks from a fresh scheduler with `loads`.
fn picks(v: &VirtualService, s: &[RealServer], loads: &Loads, n: usize) -> Vec<u16> {
    let mut sch = Scheduler::default();
    sch.resize(1);
    (0..n).filter_map(|_| sch.pick_for(0, v, s, &Flow4::default(), Some(loads))).collect()
}

fn weighted_servers(weights: &[u32]) -> Vec<RealServer> {
    let mut s = servers(weights.len());
    s.iter_mut().zip(weights).for_each(|(x, w)| x.weight = *w);
    s
}

fn loads_with(conns: &[u64], rtt: &[Option<u64>], bps: &[u64]) -> Loads {
    let l = Loads::new(conns.len().max(rtt.len()).max(bps.len()));
    conns.iter().enumerate().for_each(|(i, v)| l.set(i, *v));
    rtt.iter().enumerate().for_each(|(i, v)| l.set_rtt_us(i, *v));
    bps.iter().enumerate().for_each(|(i, v)| l.set_bytes_per_s(i, *v));
    l
}

fn distinct(p: &[u16]) -> Vec<u16> {
    let mut d = p.to_vec();
    d.sort();
    d.dedup();
    d
}

#[test]
fn loads_hold_rtt_and_bandwidth_beside_connections() {
    let l = Loads::new(2);
    assert_eq!((l.get(0), l.rtt_us(0), l.bytes_per_s(0)), (0, None, 0));
    l.set(0, 4);
    l.set_rtt_us(0, Some(250));
    l.set_bytes_per_s(0, 1_000_000);
    l.set_rtt_us(1, Some(0));
    assert_eq!((l.get(0), l.rtt_us(0), l.bytes_per_s(0)), (4, Some(250), 1_000_000));
    assert_eq!(l.rtt_us(1), Some(1), "a measured 0 is not 'no measurement'");
    l.set_rtt_us(0, None);
    assert_eq!(l.rtt_us(0), None);
    // Out of range: nothing, no panic.
    l.set(9, 1);
    l.set_rtt_us(9, Some(1));
    l.set_bytes_per_s(9, 1);
    assert_eq!((l.get(9), l.rtt_us(9), l.bytes_per_s(9)), (0, None, 0));
}

#[test]
fn fastest_picks_the_lowest_rtt() {
    let v = vs(Schedule::Fastest, 3);
    let s = weighted_servers(&[1, 1, 1]);
    let l = loads_with(&[50, 0, 0], &[Some(900), Some(300), Some(2500)], &[]);
    assert_eq!(picks(&v, &s, &l, 6), [1; 6], "lowest RTT, connections do not matter");
    // Weights do not matter either, except 0 (never chosen).
    let s = weighted_servers(&[10, 1, 10]);
    assert_eq!(picks(&v, &s, &l, 3), [1; 3]);
    let s = weighted_servers(&[1, 0, 1]);
    assert_eq!(picks(&v, &s, &l, 3), [0; 3]);
}

#[test]
fn fastest_rotates_ties_and_rtts_within_the_band() {
    let v = vs(Schedule::Fastest, 3);
    let s = weighted_servers(&[1, 1, 1]);
    // 300 and 380 µs are within 100 µs: equal; 2000 is not.
    let l = loads_with(&[], &[Some(300), Some(380), Some(2000)], &[]);
    let p = picks(&v, &s, &l, 6);
    assert_eq!(p, [0, 1, 0, 1, 0, 1], "alternate within the band");
    // 10 ms and 11 ms are within 1/8 of 10 ms; 12 ms is not.
    let l = loads_with(&[], &[Some(10_000), Some(11_000), Some(12_000)], &[]);
    assert_eq!(distinct(&picks(&v, &s, &l, 6)), [0, 1]);
    // Exactly equal: all three take turns.
    let l = loads_with(&[], &[Some(500); 3], &[]);
    assert_eq!(picks(&v, &s, &l, 6), [0, 1, 2, 0, 1, 2]);
}

#[test]
fn fastest_ranks_unmeasured_servers_last_but_uses_them() {
    let v = vs(Schedule::Fastest, 3);
    let mut s = weighted_servers(&[1, 1, 1]);
    let l = loads_with(&[], &[None, Some(800), None], &[]);
    assert_eq!(picks(&v, &s, &l, 4), [1; 4], "a measured server beats unmeasured ones");
    s[1].enabled = false;
    assert_eq!(picks(&v, &s, &l, 4), [0, 2, 0, 2], "only unmeasured left: usable, rotating");
    let none = Loads::new(3);
    s[1].enabled = true;
    assert_eq!(picks(&v, &s, &none, 3), [0, 1, 2], "no RTT anywhere: round robin");
    let mut sch = Scheduler::default();
    sch.resize(1);
    assert!(sch.pick(0, &v, &s).is_some(), "no loads at all: still a server");
}

#[test]
fn fastest_skips_disabled_and_full_servers() {
    let v = vs(Schedule::Fastest, 3);
    let mut s = weighted_servers(&[1, 1, 1]);
    let l = loads_with(&[0, 4, 0], &[Some(900), Some(300), Some(600)], &[]);
    s[1].enabled = false;
    assert_eq!(picks(&v, &s, &l, 3), [2; 3]);
    s[1].enabled = true;
    s[1].max_connections = 4;
    assert_eq!(picks(&v, &s, &l, 3), [2; 3], "the fastest is full");
    s.iter_mut().for_each(|x| x.enabled = false);
    assert_eq!(picks(&v, &s, &l, 1), []);
}

#[test]
fn least_bandwidth_picks_the_lowest_rate_per_weight() {
    let v = vs(Schedule::LeastBandwidth, 3);
    let mut s = weighted_servers(&[1, 1, 1]);
    let l = loads_with(&[0, 9, 0], &[], &[5_000_000, 100_000, 3_000_000]);
    assert_eq!(picks(&v, &s, &l, 3), [1; 3], "bytes/s, not connections");
    // Weighted: 3 MB/s on weight 10 is 300 kB/s per unit.
    s[2].weight = 10;
    let l = loads_with(&[], &[], &[5_000_000, 1_000_000, 3_000_000]);
    assert_eq!(picks(&v, &s, &l, 3), [2; 3]);
    s[2].weight = 0;
    assert_eq!(picks(&v, &s, &l, 3), [1; 3], "weight 0: never chosen");
    s[1].enabled = false;
    assert_eq!(picks(&v, &s, &l, 3), [0; 3], "disabled skipped");
}

#[test]
fn least_bandwidth_breaks_ties_by_connections_then_rotates() {
    let v = vs(Schedule::LeastBandwidth, 3);
    let s = weighted_servers(&[1, 1, 1]);
    let l = loads_with(&[3, 1, 2], &[], &[0, 0, 0]);
    assert_eq!(picks(&v, &s, &l, 2), [1, 1], "idle alike: fewer connections");
    let l = loads_with(&[0, 0, 0], &[], &[0, 0, 0]);
    assert_eq!(picks(&v, &s, &l, 6), [0, 1, 2, 0, 1, 2], "all equal: turns");
    let l = loads_with(&[0, 0, 0], &[], &[700, 0, 0]);
    assert_eq!(picks(&v, &s, &l, 4), [1, 2, 1, 2], "the busy one sits out");
}

#[test]
fn composite_weighs_connections_by_response_time() {
    let v = vs(Schedule::Composite, 3);
    let mut s = weighted_servers(&[1, 1, 1]);
    // Idle: the fastest.
    let l = loads_with(&[0, 0, 0], &[Some(1000), Some(300), Some(600)], &[]);
    assert_eq!(picks(&v, &s, &l, 2), [1, 1]);
    // (1+0)*1000, (1+5)*300 = 1800, (1+0)*600: the fast one has too many.
    let l = loads_with(&[0, 5, 0], &[Some(1000), Some(300), Some(600)], &[]);
    assert_eq!(picks(&v, &s, &l, 2), [2, 2]);
    // Weighted like weighted-least-connections: (1+3)*1000/4 = 1000 beats
    // (1+0)*1200/1.
    s[0].weight = 4;
    let l = loads_with(&[3, 0, 0], &[Some(1000), Some(1200), Some(1300)], &[]);
    assert_eq!(picks(&v, &s, &l, 2), [0, 0]);
    s[0].weight = 1;
    // No RTT anywhere: least connections; equal: turns.
    let l = loads_with(&[5, 2, 9], &[], &[]);
    assert_eq!(picks(&v, &s, &l, 2), [1, 1]);
    let l = loads_with(&[1, 1, 1], &[Some(400); 3], &[]);
    assert_eq!(picks(&v, &s, &l, 3), [0, 1, 2]);
    // Unmeasured ranks after measured ones even when loaded.
    let l = loads_with(&[0, 1000, 0], &[None, Some(500), None], &[]);
    assert_eq!(picks(&v, &s, &l, 2), [1, 1]);
    // Disabled and full servers are skipped.
    let l = loads_with(&[0, 0, 1], &[Some(1000), Some(300), Some(600)], &[]);
    s[1].enabled = false;
    s[2].max_connections = 1;
    assert_eq!(picks(&v, &s, &l, 2), [0, 0]);
}

#[test]
fn load_aware_algorithms_respect_priority_groups() {
    // Servers 0 and 1 in group 10, server 2 (the best by every measure)
    // in group 0: it only gets connections once group 10 is full.
    let l = loads_with(&[3, 2, 0], &[Some(900), Some(300), Some(10)], &[9000, 8000, 0]);
    for schedule in [Schedule::Fastest, Schedule::LeastBandwidth, Schedule::Composite, Schedule::LeastConnections { weighted: true }] {
        let v = vs(schedule.clone(), 3);
        let mut s = weighted_servers(&[1, 1, 1]);
        s[0].priority = 10;
        s[1].priority = 10;
        assert_eq!(picks(&v, &s, &l, 4), [1; 4], "{schedule:?}: best of the top group");
        s[1].max_connections = 2;
        assert_eq!(picks(&v, &s, &l, 2), [0; 2], "{schedule:?}");
        s[0].max_connections = 3;
        assert_eq!(picks(&v, &s, &l, 2), [2; 2], "{schedule:?}: group full, spill");
    }
}
