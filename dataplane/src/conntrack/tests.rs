//! Tests of the connection table through its public API.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::tcp::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use super::*;
use std::collections::HashMap;
use std::time::Instant;

const SYN: u8 = TCP_SYN;
const SYN_ACK: u8 = TCP_SYN | TCP_ACK;
const ACK: u8 = TCP_ACK;
const FIN_ACK: u8 = TCP_FIN | TCP_ACK;

const VIP: u32 = 0xc000_0201; // 192.0.2.1
const LOCAL: u32 = 0xc633_6401; // 198.51.100.1

/// A full-NAT flow `i`: client 10.x.y.z:(1024 + i % 50000) -> VIP:80,
/// server 172.16.0.(i % 8):8080, local LOCAL:(i-derived port).
fn fnat(proto: u8, i: u32) -> FlowInit {
    FlowInit {
        proto,
        client_ip: 0x0a00_0000 | (i / 50_000),
        client_port: 1024 + (i % 50_000) as u16,
        vip: VIP,
        vport: 80,
        server_ip: 0xac10_0000 | (i % 8),
        server_port: 8080,
        local_ip: LOCAL + (i >> 16),
        local_port: i as u16,
        vs: 3,
        server: (i % 8) as u16,
        client_port_id: 1,
        client_mac: [2, 0, 0, 0, 0, (i % 251) as u8],
        flags: EntryFlags::from_bits_retain(0x5a),
        mode: Forwarding::FullNat,
    }
}

/// A plain-NAT flow: the reply goes to the client itself.
fn nat(proto: u8, i: u32) -> FlowInit {
    let f = fnat(proto, i);
    FlowInit { local_ip: f.client_ip, local_port: f.client_port, mode: Forwarding::Nat, ..f }
}

fn orig_key(i: &FlowInit) -> FlowKey {
    FlowKey { src_ip: i.client_ip, dst_ip: i.vip, src_port: i.client_port, dst_port: i.vport, proto: i.proto }
}

fn reply_key(i: &FlowInit) -> FlowKey {
    FlowKey {
        src_ip: i.server_ip,
        dst_ip: i.local_ip,
        src_port: i.server_port,
        dst_port: i.local_port,
        proto: i.proto,
    }
}

fn find(t: &FlowTable, k: &FlowKey) -> Option<(FlowId, Dir)> {
    t.lookup(k, t.hash(k))
}

/// A long timeout, in ticks (several minutes).
const LONG: u32 = 4096;

fn expire_all(t: &mut FlowTable, now: u32) -> Vec<Flow> {
    let mut gone = Vec::new();
    t.expire(now, u32::MAX, |f| gone.push(*f));
    gone
}

#[test]
#[cfg_attr(miri, ignore = "a million entries or operations: hours under Miri; the smaller tests cover the same code")]
fn flow_entry_size_and_memory() {
    // Issue 23: an IPv4 connection in at most 96 bytes: the entry's line,
    // the 24-byte marks, two bucket heads; the SYN proxy's side table is
    // committed only where used (`FlowTable::proxy_memory_bytes`).
    let entry = core::mem::size_of::<Flow>();
    let marks = core::mem::size_of::<crate::conntrack::Marks>();
    let per_conn = entry + marks + 2 * core::mem::size_of::<u32>();
    println!("flow entry {entry} B + marks {marks} B + 2 bucket heads = {per_conn} B/conn; IPv6 entry {} B", core::mem::size_of::<Flow<u128>>());
    assert_eq!((entry, marks, per_conn), (64, 24, 96));
    for cap in [1u32 << 20, 1_000_000, 3_333_333] {
        let t = FlowTable::<u32>::new(cap, Timeouts::default());
        assert_eq!(t.buckets(), 2 * cap);
        let per = t.memory_bytes() as f64 / f64::from(cap);
        println!("capacity {cap}: {} buckets, {} B total, {per:.2} B/conn with index; side table {} B reserved", t.buckets(), t.memory_bytes(), t.proxy_memory_bytes());
        assert!(per <= 96.0, "{per}");
    }
}

#[test]
fn flow_both_directions_find_the_same_entry() {
    let mut t = FlowTable::new(64, Timeouts::default());
    for (n, init) in [fnat(IPPROTO_TCP, 1), nat(IPPROTO_UDP, 2), nat(IPPROTO_ICMP, 3)].iter().enumerate() {
        let id = t.insert(init, 10).unwrap();
        assert_eq!(find(&t, &orig_key(init)), Some((id, Dir::Original)));
        assert_eq!(find(&t, &reply_key(init)), Some((id, Dir::Reply)));
        let f = t.get(id).unwrap();
        assert_eq!(f.original_key(), orig_key(init));
        assert_eq!(f.reply_key(), reply_key(init));
        assert_eq!(
            (f.proto(), f.client_ip(), f.client_port(), f.vip(), f.vport()),
            (init.proto, init.client_ip, init.client_port, init.vip, init.vport)
        );
        assert_eq!(
            (f.server_ip(), f.server_port(), f.local_ip(), f.local_port()),
            (init.server_ip, init.server_port, init.local_ip, init.local_port)
        );
        assert_eq!((f.vs(), f.server(), f.client_port_id()), (init.vs, init.server, init.client_port_id));
        assert_eq!((f.client_mac(), f.flags()), (init.client_mac, init.flags));
        assert_eq!(t.len(), n as u32 + 1);
    }
    let s = |id| t.get(id).unwrap().state();
    assert_eq!((s(0), s(1), s(2)), (FlowState::SynSent, FlowState::UdpUnreplied, FlowState::Icmp));
    assert_eq!(t.get(0).unwrap().expire(), 10 + t.timeouts().tcp_syn);
    assert_eq!(t.get(1).unwrap().expire(), 10 + t.timeouts().udp_unreplied);
    assert_eq!(t.get(2).unwrap().expire(), 10 + t.timeouts().icmp);

    // Neither the reversed original key nor another protocol matches.
    let k = orig_key(&fnat(IPPROTO_TCP, 1));
    let rev = FlowKey { src_ip: k.dst_ip, dst_ip: k.src_ip, src_port: k.dst_port, dst_port: k.src_port, ..k };
    assert_eq!(find(&t, &rev), None);
    assert_eq!(find(&t, &FlowKey { proto: IPPROTO_UDP, ..k }), None);
    assert_eq!(find(&t, &FlowKey { src_port: k.src_port + 1, ..k }), None);
}

#[test]
fn flow_insert_exists_on_duplicate_keys() {
    let mut t = FlowTable::new(64, Timeouts::default());
    let a = fnat(IPPROTO_TCP, 7);
    let id = t.insert(&a, 0).unwrap();
    // Same original key, different server.
    let dup_orig = FlowInit { server_ip: 0x0101_0101, local_port: 1, ..a };
    assert_eq!(t.insert(&dup_orig, 0), Err(InsertError::Exists));
    // Same reply key, different client.
    let dup_reply = FlowInit { client_ip: 0x0b00_0001, ..a };
    assert_eq!(t.insert(&dup_reply, 0), Err(InsertError::Exists));
    // A new flow whose original key is the existing flow's reply key.
    let r = reply_key(&a);
    let cross = FlowInit {
        client_ip: r.src_ip,
        client_port: r.src_port,
        vip: r.dst_ip,
        vport: r.dst_port,
        server_ip: 0x0202_0202,
        local_ip: 0x0303_0303,
        ..a
    };
    assert_eq!(t.insert(&cross, 0), Err(InsertError::Exists));
    // A flow whose two keys are equal is ambiguous.
    let same = FlowInit { server_ip: a.client_ip, server_port: a.client_port, local_ip: a.vip, local_port: a.vport, ..a };
    assert_eq!(t.insert(&same, 0), Err(InsertError::Exists));
    // The same tuple under another protocol is another flow.
    let udp = FlowInit { proto: IPPROTO_UDP, ..a };
    let id2 = t.insert(&udp, 0).unwrap();
    assert_ne!(id, id2);
    assert_eq!(t.len(), 2);
    assert_eq!(find(&t, &orig_key(&a)), Some((id, Dir::Original)));
    assert_eq!(find(&t, &reply_key(&udp)), Some((id2, Dir::Reply)));
}

#[test]
fn flow_full_table_keeps_existing_entries() {
    let cap = 16;
    let mut t = FlowTable::new(cap, Timeouts::default());
    let ids: Vec<_> = (0..cap).map(|i| t.insert(&fnat(IPPROTO_UDP, i), i).unwrap()).collect();
    assert_eq!(t.len(), cap);
    assert_eq!(t.insert(&fnat(IPPROTO_UDP, 1000), 50), Err(InsertError::Full));
    // An existing key still reports Exists rather than Full.
    assert_eq!(t.insert(&fnat(IPPROTO_UDP, 3), 50), Err(InsertError::Exists));
    assert_eq!(t.len(), cap);
    for (i, &id) in ids.iter().enumerate() {
        let init = fnat(IPPROTO_UDP, i as u32);
        assert_eq!(find(&t, &orig_key(&init)), Some((id, Dir::Original)));
        assert_eq!(find(&t, &reply_key(&init)), Some((id, Dir::Reply)));
        assert_eq!(t.get(id).unwrap().expire(), i as u32 + t.timeouts().udp_unreplied);
    }
    assert_eq!(find(&t, &orig_key(&fnat(IPPROTO_UDP, 1000))), None);

    let mut empty = FlowTable::new(0, Timeouts::default());
    assert_eq!(empty.insert(&fnat(IPPROTO_UDP, 0), 0), Err(InsertError::Full));
    assert_eq!(find(&empty, &orig_key(&fnat(IPPROTO_UDP, 0))), None);
    assert_eq!(empty.expire(1_000_000, 10, |_| {}), 0);
    assert!(empty.is_empty());
}

#[test]
fn flow_remove_recycles_the_entry() {
    let cap = 4;
    let mut t = FlowTable::new(cap, Timeouts::default());
    for i in 0..cap {
        t.insert(&nat(IPPROTO_TCP, i), 0).unwrap();
    }
    let victim = fnat(IPPROTO_TCP, 2);
    let (id, _) = find(&t, &orig_key(&nat(IPPROTO_TCP, 2))).unwrap();
    let gone = t.remove(id).unwrap();
    assert_eq!(gone.original_key(), orig_key(&nat(IPPROTO_TCP, 2)));
    assert_eq!(t.len(), cap - 1);
    assert!(t.get(id).is_none());
    assert!(t.get_mut(id).is_none());
    assert_eq!(t.remove(id), None);
    assert_eq!(t.on_packet(id, Dir::Original, ACK, 1), FlowState::Close);
    assert!(!t.set_flags(id, EntryFlags::PERSIST));
    assert_eq!(find(&t, &gone.original_key()), None);
    assert_eq!(find(&t, &gone.reply_key()), None);
    assert_eq!(t.iter().count(), cap as usize - 1);
    // The freed entry is reused, and the old keys can come back.
    let id2 = t.insert(&victim, 5).unwrap();
    assert_eq!(id2, id);
    assert_eq!(find(&t, &orig_key(&victim)), Some((id, Dir::Original)));
    assert_eq!(find(&t, &reply_key(&victim)), Some((id, Dir::Reply)));
    assert_eq!(t.insert(&fnat(IPPROTO_TCP, 99), 5), Err(InsertError::Full));
    // Out-of-range ids are just unknown.
    assert_eq!(t.remove(cap), None);
    assert_eq!(t.remove(u32::MAX), None);
    assert!(t.get(u32::MAX).is_none());
    // The removed entry is free: expiring everything finds the 4 live
    // ones only.
    assert_eq!(t.expire(1_000_000, u32::MAX, |_| {}), cap);
    assert!(t.is_empty());
}

#[test]
fn flow_remove_from_shared_chains() {
    // A tiny table forces long chains: remove from head, middle and tail.
    let mut t = FlowTable::new(2, Timeouts::default());
    assert_eq!(t.buckets(), 4);
    let mut t2 = FlowTable::new(64, Timeouts::default());
    let inits: Vec<_> = (0..64).map(|i| fnat(IPPROTO_UDP, i * 7919)).collect();
    let ids: Vec<_> = inits.iter().map(|i| t2.insert(i, 0).unwrap()).collect();
    for &k in &[0usize, 63, 31, 1, 62, 30] {
        t2.remove(ids[k]).unwrap();
    }
    for (k, init) in inits.iter().enumerate() {
        let want = if [0usize, 63, 31, 1, 62, 30].contains(&k) { None } else { Some(ids[k]) };
        assert_eq!(find(&t2, &orig_key(init)).map(|x| x.0), want);
        assert_eq!(find(&t2, &reply_key(init)).map(|x| x.0), want);
    }
    t.insert(&fnat(IPPROTO_UDP, 1), 0).unwrap();
    t.insert(&fnat(IPPROTO_UDP, 2), 0).unwrap();
    t.remove(0).unwrap();
    assert_eq!(find(&t, &reply_key(&fnat(IPPROTO_UDP, 2))), Some((1, Dir::Reply)));
}

#[test]
fn flow_get_mut_and_flags() {
    let mut t = FlowTable::new(8, Timeouts::default());
    let id = t.insert(&fnat(IPPROTO_UDP, 1), 0).unwrap();
    assert!(t.set_flags(id, EntryFlags::from_bits_retain(0x81)));
    assert_eq!(t.get(id).unwrap().flags().bits(), 0x81);
    let mut f = t.get_mut(id).unwrap();
    assert_eq!(f.flags.bits(), 0x81);
    f.set_flags(EntryFlags::from_bits_retain(0x03));
    f.set_client_mac([1, 2, 3, 4, 5, 6]);
    f.set_client_port_id(7);
    f.set_indices(9, 10);
    let f = t.get(id).unwrap();
    assert_eq!((f.flags.bits(), f.client_mac, f.client_port_id, f.vs, f.server), (0x03, [1, 2, 3, 4, 5, 6], 7, 9, 10));
    assert_eq!(find(&t, &orig_key(&fnat(IPPROTO_UDP, 1))), Some((id, Dir::Original)));
}

#[test]
fn flow_tcp_open_close_through_the_table() {
    let to = Timeouts::default();
    let mut t = FlowTable::new(8, to);
    let init = fnat(IPPROTO_TCP, 1);
    let id = t.insert(&init, 0).unwrap();
    let steps = [
        (Dir::Original, SYN, FlowState::SynSent, to.tcp_syn),
        (Dir::Reply, SYN_ACK, FlowState::SynRecv, to.tcp_syn),
        (Dir::Original, ACK, FlowState::Established, to.tcp_established),
        (Dir::Reply, ACK, FlowState::Established, to.tcp_established),
        (Dir::Original, FIN_ACK, FlowState::FinWait, to.tcp_fin),
        (Dir::Reply, FIN_ACK, FlowState::TimeWait, to.tcp_time_wait),
        (Dir::Original, ACK, FlowState::TimeWait, to.tcp_time_wait),
        // Port reuse: a new SYN reopens the entry.
        (Dir::Original, SYN, FlowState::SynSent, to.tcp_syn),
        (Dir::Reply, SYN_ACK, FlowState::SynRecv, to.tcp_syn),
        (Dir::Original, ACK, FlowState::Established, to.tcp_established),
        (Dir::Reply, TCP_RST, FlowState::Close, to.tcp_close),
    ];
    let mut now = 0;
    for (i, &(dir, flags, state, timeout)) in steps.iter().enumerate() {
        now += 3;
        assert_eq!(t.on_packet(id, dir, flags, now), state, "step {i}");
        let f = t.get(id).unwrap();
        assert_eq!(f.state(), state);
        assert_eq!(f.expire(), now + timeout, "step {i}");
        assert_eq!(t.expire(now, u32::MAX, |_| {}), 0);
    }
    // CLOSE lasts tcp_close ticks, although the entry was linked for the
    // 900 s ESTABLISHED deadline a packet earlier.
    assert_eq!(t.expire(now + to.tcp_close - 1, u32::MAX, |_| {}), 0);
    let gone = expire_all(&mut t, now + to.tcp_close);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].state(), FlowState::Close);
    assert!(t.is_empty());
}

#[test]
fn flow_expires_exactly_at_its_timeout() {
    let to = Timeouts::default();
    for step in [1u32, 7, 100, 1000] {
        let mut t = FlowTable::new(8, to);
        let start = 12_345;
        t.expire(start, u32::MAX, |_| {});
        let udp = t.insert(&fnat(IPPROTO_UDP, 1), start).unwrap();
        let icmp = t.insert(&nat(IPPROTO_ICMP, 2), start).unwrap();
        let tcp = t.insert(&fnat(IPPROTO_TCP, 3), start).unwrap();
        let mut gone_at = HashMap::new();
        let mut now = start;
        while now < start + to.udp_unreplied.max(to.icmp).max(to.tcp_syn) + 10 {
            // Step up to each deadline - 1 and to each deadline exactly.
            let mut next = now + step;
            for d in [to.udp_unreplied, to.icmp, to.tcp_syn] {
                for e in [start + d - 1, start + d] {
                    if e > now && e < next {
                        next = e;
                    }
                }
            }
            now = next;
            t.expire(now, u32::MAX, |f| {
                gone_at.insert(f.proto(), now);
            });
        }
        assert_eq!(gone_at[&IPPROTO_UDP], start + to.udp_unreplied, "step {step}");
        assert_eq!(gone_at[&IPPROTO_ICMP], start + to.icmp, "step {step}");
        assert_eq!(gone_at[&IPPROTO_TCP], start + to.tcp_syn, "step {step}");
        assert!(t.get(udp).is_none() && t.get(icmp).is_none() && t.get(tcp).is_none());
    }
}

#[test]
fn flow_refresh_extends_and_long_timeouts_work() {
    let to = Timeouts::default();
    assert!(to.tcp_established > 2 * LONG);
    let mut t = FlowTable::new(8, to);
    let udp = t.insert(&fnat(IPPROTO_UDP, 1), 0).unwrap();
    // Answered: the long UDP timeout from now on.
    t.on_packet(udp, Dir::Reply, 0, 0);
    let tcp = t.insert(&fnat(IPPROTO_TCP, 2), 0).unwrap();
    t.on_packet(tcp, Dir::Reply, SYN_ACK, 1);
    t.on_packet(tcp, Dir::Original, ACK, 2);
    assert_eq!(t.get(tcp).unwrap().expire(), 2 + to.tcp_established);
    // Refresh the UDP flow at 1000: it now lives until 1000 + udp.
    for now in 1..=1000 {
        t.expire(now, u32::MAX, |_| panic!("nothing is due at {now}"));
    }
    t.on_packet(udp, Dir::Reply, 0, 1000);
    let mut gone = Vec::new();
    for now in 1001..=2 + to.tcp_established {
        t.expire(now, u32::MAX, |f| gone.push((f.proto(), now)));
    }
    assert_eq!(gone, vec![(IPPROTO_UDP, 1000 + to.udp), (IPPROTO_TCP, 2 + to.tcp_established)]);
    assert!(t.is_empty());

    // A timeout of several laps, reached in a few large strides.
    let long = Timeouts { udp_unreplied: 5 * LONG + 17, ..to };
    let mut t = FlowTable::new(8, long);
    t.insert(&fnat(IPPROTO_UDP, 1), 100).unwrap();
    let deadline = 100 + long.udp_unreplied;
    for now in [1000, 5000, 9000, 13_000, 17_000, deadline - 1] {
        assert_eq!(t.expire(now, u32::MAX, |_| {}), 0, "at {now}");
    }
    assert_eq!(t.expire(deadline, u32::MAX, |_| {}), 1);
}

#[test]
fn flow_shorter_timeout_applies_at_once() {
    // ESTABLISHED (900 s) -> CLOSE (10 s) must not wait for the old slot.
    let to = Timeouts::default();
    let mut t = FlowTable::new(8, to);
    let id = t.insert(&fnat(IPPROTO_TCP, 1), 0).unwrap();
    t.on_packet(id, Dir::Reply, SYN_ACK, 1);
    t.on_packet(id, Dir::Original, ACK, 2);
    t.expire(500, u32::MAX, |_| {});
    t.on_packet(id, Dir::Original, TCP_RST, 600);
    assert_eq!(t.expire(600 + to.tcp_close - 1, u32::MAX, |_| {}), 0);
    assert_eq!(t.expire(600 + to.tcp_close, u32::MAX, |_| {}), 1);

    // The same with no expire call for long.
    let mut t = FlowTable::new(8, to);
    let now = 1_000_000;
    let id = t.insert(&fnat(IPPROTO_TCP, 1), now).unwrap();
    t.on_packet(id, Dir::Reply, SYN_ACK, now);
    t.on_packet(id, Dir::Original, ACK, now);
    t.on_packet(id, Dir::Reply, TCP_RST, now + 1);
    assert_eq!(t.expire(now + to.tcp_close, u32::MAX, |_| {}), 0);
    assert_eq!(t.expire(now + 1 + to.tcp_close, u32::MAX, |_| {}), 1);

    // set_timeouts applies from the next packet on.
    let mut t = FlowTable::new(8, to);
    let id = t.insert(&fnat(IPPROTO_UDP, 1), 0).unwrap();
    t.set_timeouts(Timeouts { udp_unreplied: 50, ..to });
    assert_eq!(t.timeouts().udp_unreplied, 50);
    assert_eq!(t.get(id).unwrap().expire(), to.udp_unreplied);
    t.on_packet(id, Dir::Original, 0, 10);
    assert_eq!(t.expire(59, u32::MAX, |_| {}), 0);
    assert_eq!(t.expire(60, u32::MAX, |_| {}), 1);
}

#[test]
fn flow_expire_respects_budget() {
    let to = Timeouts::default();
    let mut t = FlowTable::new(128, to);
    for i in 0..100 {
        // Spread over 5 deadlines.
        t.insert(&fnat(IPPROTO_UDP, i), i % 5).unwrap();
    }
    let due = 4 + to.udp_unreplied;
    assert_eq!(t.expire(due - 5, 30, |_| {}), 0);
    let mut seen = Vec::new();
    let mut calls = Vec::new();
    loop {
        let n = t.expire(due, 30, |f| seen.push(f.expire()));
        calls.push(n);
        if n == 0 {
            break;
        }
    }
    assert_eq!(calls, vec![30, 30, 30, 10, 0]);
    assert!(seen.iter().all(|&e| e <= due));
    assert!(t.is_empty());
    assert_eq!(t.expire(due + 1, 0, |_| {}), 0);
}

/// A table larger than `SWEEP_WHOLE` is swept a stretch at a time: no
/// call looks at more than `SCAN_PER_CALL` entries, a call at the same
/// tick as the last lap's end owes nothing, and every due entry is gone
/// within one lap (`sweep_lap_ticks`) of its deadline, none before it.
#[test]
#[cfg_attr(miri, ignore = "a million entries or operations: hours under Miri; the smaller tests cover the same code")]
fn flow_a_large_table_is_swept_within_a_lap() {
    let to = Timeouts::default();
    let cap = 100_000;
    let mut t = FlowTable::new(cap, to);
    let lap = t.sweep_lap_ticks();
    assert_eq!(lap, LAP_TICKS_MIN);
    let mut rng = crate::testkit::Rng(0x5eed);
    // Entries spread over the ids, with deadlines over 50 ticks.
    for i in 0..60_000 {
        t.insert(&fnat(IPPROTO_UDP, i), rng.below(50) as u32).unwrap();
    }
    let mut late = 0u32;
    let mut gone = 0u32;
    for now in 1..=to.udp_unreplied + 50 + lap {
        // Many calls a tick, as a worker makes.
        for _ in 0..8 {
            let before = t.sweep_position();
            t.expire(now, u32::MAX, |f| {
                assert!(f.expire() <= now, "removed before its deadline");
                late = late.max(now - f.expire());
                gone += 1;
            });
            let moved = (t.sweep_position() + cap - before) % cap;
            assert!(moved <= SCAN_PER_CALL);
        }
    }
    assert_eq!(gone, 60_000);
    assert!(t.is_empty());
    assert!(late <= lap, "an entry stayed {late} ticks past its deadline (lap {lap})");
    // Laps scale with the table past 4M entries a second.
    assert_eq!(super::sweep::Sweep::new(10_000_000).lap_ticks(10_000_000), 25);
}

/// A full table's `reclaim` frees what expired since the sweep passed,
/// from the sweep's cursor, whatever the sweep owes.
#[test]
fn flow_a_full_table_reclaims_what_expired() {
    let to = Timeouts::default();
    let cap = 8192;
    let mut t = FlowTable::new(cap, to);
    for i in 0..cap {
        t.insert(&fnat(IPPROTO_UDP, i), 0).unwrap();
    }
    assert!(t.is_full());
    // Nothing is due: nothing goes, and no second scan in the tick.
    assert_eq!(t.reclaim(1, 64, |_| panic!("nothing is due")), 0);
    let at = t.sweep_position();
    assert_eq!(t.reclaim(1, 64, |_| panic!("nothing is due")), 0);
    assert_eq!(t.sweep_position(), at, "a dry tick scans once");
    let due = to.udp_unreplied;
    // The sweep owes nothing at this tick (a call at the same tick paid
    // it), yet the full table finds room.
    t.expire(due - 1, u32::MAX, |_| {});
    assert_eq!(t.reclaim(due, 64, |f| assert!(f.expire() <= due)), 64);
    assert_eq!(t.len(), cap - 64);
    assert!(t.insert(&fnat(IPPROTO_UDP, cap + 1), due).is_ok());
}

/// Review of the side table, L1: a SYN proxy or PROXY header flag set
/// after the insert gives a zeroed side record, not the last tenant's.
#[test]
fn a_side_record_given_later_starts_from_zero() {
    use crate::conntrack::track::PROXY_OPEN;
    let mut t = FlowTable::new(8, Timeouts::default());
    let id = t.insert(&FlowInit { flags: EntryFlags::SYN_PROXY, ..fnat(IPPROTO_TCP, 1) }, 0).unwrap();
    if let Some(p) = t.proxy_mut(id) {
        (p.proxy, p.seq_delta, p.park) = (PROXY_OPEN | 1, 0xdead_beef, 3);
    }
    t.remove(id);
    let id2 = t.insert(&FlowInit { flags: EntryFlags::empty(), ..fnat(IPPROTO_TCP, 2) }, 0).unwrap();
    assert_eq!(id2, id);
    assert!(t.proxy(id2).is_none(), "no side record without the flag");
    // Through the entry's own setter the side bits do not change at all.
    t.get_mut(id2).unwrap().set_flags(EntryFlags::SYN_PROXY);
    assert!(t.proxy(id2).is_none());
    assert!(t.set_flags(id2, EntryFlags::SYN_PROXY));
    assert_eq!(*t.proxy(id2).unwrap(), crate::conntrack::ProxyTrack::default());
}

#[test]
fn flow_expire_after_a_long_pause() {
    let to = Timeouts::default();
    let mut t = FlowTable::new(1024, to);
    // The clock starts far from 0 and nobody called expire before.
    let base = 3_000_000_000;
    for i in 0..1000 {
        let id = t.insert(&fnat(IPPROTO_UDP, i), base + i).unwrap();
        if i % 2 == 0 {
            t.on_packet(id, Dir::Reply, 0, base + 1000 + i);
        }
    }
    // A table this small is swept whole at each tick: one call removes
    // every due entry.
    let now = base + 999 + to.udp_unreplied;
    let n = t.expire(now, u32::MAX, |f| assert!(f.expire() <= now));
    assert_eq!(n, 1000 - 500);
    assert!(t.iter().all(|(_, f)| f.expire() > now));
    // Budgeted, after another pause.
    let later = base + 1_000_000;
    let mut total = 0;
    let mut calls = 0;
    while total < 500 {
        total += t.expire(later, 64, |_| {});
        calls += 1;
    }
    assert_eq!((total, calls), (500, 8));
    assert!(t.is_empty());
}

#[test]
#[cfg_attr(miri, ignore = "a million entries or operations: hours under Miri; the smaller tests cover the same code")]
fn flow_hash_spreads_keys() {
    // Sequential clients, ports and servers (the worst case for a weak
    // hash) still fill buckets like a Poisson process of rate 1/2.
    let cap = 1 << 16;
    let mut t = FlowTable::new(cap, Timeouts::default());
    for i in 0..cap {
        t.insert(&fnat(IPPROTO_TCP, i), 0).unwrap();
    }
    let mut hist = [0u32; 16];
    t.chain_histogram(&mut hist);
    let buckets = f64::from(t.buckets());
    // 2 * cap links over 2 * cap buckets: Poisson(1): P(0) = 0.368.
    let empty = f64::from(hist[0]) / buckets;
    println!("chain length histogram: {:?}", &hist[..8]);
    assert!((empty - 0.368).abs() < 0.01, "empty fraction {empty}");
    assert!(hist[10..].iter().all(|&n| n == 0));
    // Deterministic for one key.
    let k = orig_key(&fnat(IPPROTO_TCP, 1));
    assert_eq!(t.hash(&k), t.hash(&k));
    assert_ne!(t.hash(&k), t.hash(&FlowKey { proto: 17, ..k }));
}

/// The same table over IPv6 addresses: two cache lines an entry, the same
/// operations and semantics.
#[test]
fn an_ipv6_table_tracks_both_directions() {
    assert_eq!(core::mem::size_of::<Flow<u128>>(), 128);
    let mut t = FlowTable::<u128>::keyed(1024, Timeouts::default(), 7);
    let (client, vip, server, local) = (0x2001_0db8_0000_0000_0000_0000_0000_000au128, 0x2001_0db8_0000_0000_0000_0000_0000_0064u128, 0x2001_0db8_0001_0000_0000_0000_0000_000bu128, 0x2001_0db8_0001_0000_0000_0000_0000_0001u128);
    let init = FlowInit { proto: IPPROTO_TCP, client_ip: client, client_port: 40000, vip, vport: 443, server_ip: server, server_port: 8443, local_ip: local, local_port: 1025, mode: Forwarding::FullNat, ..FlowInit::default() };
    let id = t.insert(&init, 0).unwrap();
    let orig = FlowKey { src_ip: client, dst_ip: vip, src_port: 40000, dst_port: 443, proto: IPPROTO_TCP };
    let reply = FlowKey { src_ip: server, dst_ip: local, src_port: 8443, dst_port: 1025, proto: IPPROTO_TCP };
    assert_eq!(t.lookup(&orig, t.hash(&orig)), Some((id, Dir::Original)));
    assert_eq!(t.lookup(&reply, t.hash(&reply)), Some((id, Dir::Reply)));
    // Addresses that differ only in their upper 64 bits are other keys.
    let other = FlowKey { src_ip: client ^ (1 << 100), ..orig };
    assert_ne!(t.hash(&other), t.hash(&orig));
    assert_eq!(t.lookup(&other, t.hash(&other)), None);
    assert_eq!(t.insert(&init, 1), Err(InsertError::Exists));
    assert_eq!(t.on_packet(id, Dir::Reply, TCP_SYN | TCP_ACK, 1), FlowState::SynRecv);
    assert_eq!(t.remove(id).map(|f| f.server_ip), Some(server));
    assert!(t.is_empty());
}

/// The attack keyed hashing defeats (`crate::hash`): one client, one VIP,
/// source ports chosen offline so that every connection lands in one
/// bucket of a table whose key the attacker knows. Under another key the
/// same connections spread like any others.
#[test]
fn colliding_keys_spread_under_another_key() {
    let to = Timeouts::default();
    let known = FlowTable::keyed(256, to, 0x5eed_0001);
    let unknown = FlowTable::keyed(256, to, 0x5eed_0002);
    let key = |port: u16| FlowKey { src_ip: 0xc000_020a, dst_ip: VIP, src_port: port, dst_port: 80, proto: IPPROTO_TCP };
    let target = known.bucket_index(known.hash(&key(1024)));
    let chosen: Vec<u16> = (1024..=u16::MAX).filter(|p| known.bucket_index(known.hash(&key(*p))) == target).take(40).collect();
    assert_eq!(chosen.len(), 40, "64k ports give ~125 per bucket of 512");
    let fill = |mut t: FlowTable| {
        for p in &chosen {
            let init = FlowInit { proto: IPPROTO_TCP, client_ip: 0xc000_020a, client_port: *p, vip: VIP, vport: 80, server_ip: 0xac10_0001, server_port: 8080, local_ip: LOCAL, local_port: *p, mode: Forwarding::FullNat, ..FlowInit::default() };
            assert!(t.insert(&init, 0).is_ok());
        }
        let mut hist = [0u32; 64];
        t.chain_histogram(&mut hist);
        hist.iter().rposition(|n| *n > 0).unwrap_or(0)
    };
    let longest_known = fill(FlowTable::keyed(256, to, 0x5eed_0001));
    let longest_unknown = fill(unknown);
    println!("longest chain: {longest_known} under the attacker's key, {longest_unknown} under another");
    assert!(longest_known >= 40, "all 40 original keys in one chain: {longest_known}");
    assert!(longest_unknown <= 4, "spread under another key: {longest_unknown}");
}

#[test]
#[cfg_attr(miri, ignore = "a million entries or operations: hours under Miri; the smaller tests cover the same code")]
fn flow_million_entries() {
    const N: u32 = 1_000_000;
    const BATCH: usize = 32;
    let to = Timeouts::default();
    let mut t = FlowTable::new(N, to);
    let inits: Vec<_> = (0..N).map(|i| fnat(IPPROTO_TCP, i)).collect();

    let start = Instant::now();
    for (i, init) in inits.iter().enumerate() {
        assert_eq!(t.insert(init, i as u32 / 10_000).map(|_| ()), Ok(()));
    }
    let insert_ns = start.elapsed().as_nanos() as f64 / f64::from(N);
    assert_eq!(t.len(), N);
    assert_eq!(t.insert(&fnat(IPPROTO_TCP, N), 100), Err(InsertError::Full));

    // Burst-style lookups: hash and prefetch a batch, then look each up.
    let mut keys = Vec::with_capacity(2 * N as usize);
    for init in &inits {
        keys.push((orig_key(init), Dir::Original));
        keys.push((reply_key(init), Dir::Reply));
    }
    let start = Instant::now();
    let mut found = 0u32;
    let mut hashes = [0u32; BATCH];
    for chunk in keys.chunks(BATCH) {
        for (h, (k, _)) in hashes.iter_mut().zip(chunk) {
            *h = t.hash(k);
            t.prefetch(*h);
        }
        for (h, (k, dir)) in hashes.iter().zip(chunk) {
            if let Some((_, d)) = t.lookup(k, *h) {
                found += u32::from(d == *dir);
            }
        }
    }
    let lookup_ns = start.elapsed().as_nanos() as f64 / keys.len() as f64;
    assert_eq!(found, 2 * N);
    // And each pair finds the same id.
    for (k, init) in inits.iter().enumerate().step_by(997) {
        let _ = k;
        assert_eq!(find(&t, &orig_key(init)).unwrap().0, find(&t, &reply_key(init)).unwrap().0);
    }

    // A refresh per flow (the packet path's other write).
    let start = Instant::now();
    for id in 0..N {
        t.on_packet(id, Dir::Reply, SYN_ACK, 150);
    }
    let refresh_ns = start.elapsed().as_nanos() as f64 / f64::from(N);

    // Nothing is due before the SYN timeout; everything is at it.
    assert_eq!(t.expire(150 + to.tcp_syn - 1, u32::MAX, |_| {}), 0);
    let start = Instant::now();
    let mut n = 0;
    loop {
        let r = t.expire(150 + to.tcp_syn, 4096, |_| {});
        if r == 0 {
            break;
        }
        n += r;
    }
    let expire_ns = start.elapsed().as_nanos() as f64 / f64::from(N);
    assert_eq!(n, N);
    assert!(t.is_empty());
    assert_eq!(find(&t, &keys[12345].0), None);
    println!(
        "1M flows ({}): insert {insert_ns:.1} ns/op, lookup {lookup_ns:.1} ns/op (batched, both dirs), \
         on_packet {refresh_ns:.1} ns/op, expire {expire_ns:.1} ns/op",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
}

use crate::testkit::Rng;

#[derive(Clone, Copy, Debug)]
struct Model {
    init: FlowInit,
    state: FlowState,
    fin: u8,
    expire: u32,
}

#[test]
#[cfg_attr(miri, ignore = "a million entries or operations: hours under Miri; the smaller tests cover the same code")]
fn flow_randomized_against_a_model() {
    const CAP: u32 = 256;
    const OPS: u32 = 200_000;
    let to = Timeouts {
        tcp_syn: 300,
        tcp_established: 2 * LONG + 300,
        tcp_fin: 200,
        tcp_time_wait: 150,
        tcp_close: 30,
        udp: 1500,
        icmp: 50,
        udp_unreplied: 1500,
    };
    // FLOW_MODEL_SEED=<u64> replays another sequence.
    let seed = std::env::var("FLOW_MODEL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x9e37_79b9_7f4a_7c15);
    let mut rng = Rng(seed | 1);
    let mut t = FlowTable::new(CAP, to);
    let mut keys: HashMap<FlowKey, (FlowId, Dir)> = HashMap::new();
    let mut flows: HashMap<FlowId, Model> = HashMap::new();
    let mut now: u32 = 1;
    let mut stats = [0u32; 8];

    // A small key space, so duplicates, Full and chain sharing happen.
    let gen = |rng: &mut Rng| {
        let proto = [IPPROTO_TCP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP][rng.below(4) as usize];
        let client_ip = 0x0a00_0000 | rng.below(40) as u32;
        let client_port = 1000 + rng.below(16) as u16;
        let full_nat = rng.below(2) == 0;
        FlowInit {
            proto,
            client_ip,
            client_port,
            vip: VIP + rng.below(2) as u32,
            vport: 80,
            server_ip: 0xac10_0000 | rng.below(4) as u32,
            server_port: 8080,
            local_ip: if full_nat { LOCAL } else { client_ip },
            local_port: if full_nat { rng.below(600) as u16 } else { client_port },
            vs: rng.below(3) as u16,
            server: rng.below(4) as u16,
            client_port_id: rng.below(2) as u8,
            client_mac: [2, 0, 0, 0, 0, rng.below(256) as u8],
            flags: EntryFlags::from_bits_retain(rng.below(256) as u8),
            mode: if full_nat { Forwarding::FullNat } else { Forwarding::Nat },
        }
    };
    let flag_choices = [TCP_SYN, SYN_ACK, ACK, FIN_ACK, TCP_FIN, TCP_RST, ACK | TCP_RST, 0];

    for op in 0..OPS {
        match rng.below(100) {
            0..=29 => {
                let init = gen(&mut rng);
                let (ok, rk) = (orig_key(&init), reply_key(&init));
                let got = t.insert(&init, now);
                let want_err = if ok == rk || keys.contains_key(&ok) || keys.contains_key(&rk) {
                    Some(InsertError::Exists)
                } else if flows.len() == CAP as usize {
                    Some(InsertError::Full)
                } else {
                    None
                };
                match (got, want_err) {
                    (Ok(id), None) => {
                        assert!(id < CAP && !flows.contains_key(&id), "op {op}: id {id} reused while live");
                        let state = match init.proto {
                            IPPROTO_TCP => FlowState::SynSent,
                            IPPROTO_ICMP => FlowState::Icmp,
                            _ => FlowState::UdpUnreplied,
                        };
                        flows.insert(id, Model { init, state, fin: 0, expire: now + to.for_state(state) });
                        keys.insert(ok, (id, Dir::Original));
                        keys.insert(rk, (id, Dir::Reply));
                        stats[0] += 1;
                    }
                    (Err(e), Some(w)) => {
                        assert_eq!(e, w, "op {op}");
                        stats[if e == InsertError::Full { 1 } else { 2 }] += 1;
                    }
                    (g, w) => panic!("op {op}: insert got {g:?}, model wants {w:?}"),
                }
            }
            30..=54 => {
                // Look up a known key half the time, a random one otherwise.
                let k = if !keys.is_empty() && rng.below(2) == 0 {
                    let n = rng.below(keys.len() as u64) as usize;
                    *keys.keys().nth(n).unwrap()
                } else {
                    let init = gen(&mut rng);
                    if rng.below(2) == 0 {
                        orig_key(&init)
                    } else {
                        reply_key(&init)
                    }
                };
                let h = t.hash(&k);
                t.prefetch(h);
                assert_eq!(t.lookup(&k, h), keys.get(&k).copied(), "op {op}: {k:?}");
                stats[3] += 1;
            }
            55..=64 => {
                let id = rng.below(u64::from(CAP) + 2) as u32;
                let got = t.remove(id);
                match flows.remove(&id) {
                    Some(m) => {
                        let f = got.unwrap_or_else(|| panic!("op {op}: remove({id}) missed"));
                        assert_eq!(f.original_key(), orig_key(&m.init));
                        assert_eq!(f.reply_key(), reply_key(&m.init));
                        assert_eq!((f.state(), f.expire(), f.flags()), (m.state, m.expire, m.init.flags));
                        keys.remove(&orig_key(&m.init));
                        keys.remove(&reply_key(&m.init));
                        stats[4] += 1;
                    }
                    None => assert!(got.is_none(), "op {op}: removed unknown {id}"),
                }
            }
            65..=84 => {
                let id = if !flows.is_empty() && rng.below(8) != 0 {
                    let n = rng.below(flows.len() as u64) as usize;
                    *flows.keys().nth(n).unwrap()
                } else {
                    rng.below(u64::from(CAP)) as u32
                };
                let dir = if rng.below(2) == 0 { Dir::Original } else { Dir::Reply };
                let flags = flag_choices[rng.below(flag_choices.len() as u64) as usize];
                let got = t.on_packet(id, dir, flags, now);
                match flows.get_mut(&id) {
                    Some(m) => {
                        m.state = next_state(m.state, dir, flags, &mut m.fin);
                        m.expire = now + to.for_state(m.state);
                        assert_eq!(got, m.state, "op {op}");
                        let f = t.get(id).unwrap();
                        assert_eq!((f.state(), f.expire(), f.fin_seen()), (m.state, m.expire, m.fin));
                        stats[5] += 1;
                    }
                    None => assert_eq!(got, FlowState::Close),
                }
            }
            _ => {
                // Mostly small steps; now and then a long pause, which
                // flushes most of the table.
                now += match rng.below(2000) {
                    0 => 3 * LONG + rng.below(u64::from(LONG)) as u32,
                    1..=40 => rng.below(40) as u32,
                    _ => rng.below(3) as u32,
                };
                let budget = if rng.below(3) == 0 { 1 + rng.below(20) as u32 } else { u32::MAX };
                let mut removed = Vec::new();
                let n = t.expire(now, budget, |f| removed.push(*f));
                assert_eq!(n as usize, removed.len());
                assert!(n <= budget);
                for f in &removed {
                    let (id, _) = keys[&f.original_key()];
                    let m = flows.remove(&id).unwrap();
                    assert!(m.expire <= now, "op {op}: removed {id} early ({} > {now})", m.expire);
                    assert_eq!(f.expire(), m.expire);
                    keys.remove(&orig_key(&m.init));
                    keys.remove(&reply_key(&m.init));
                }
                if n < budget {
                    // The sweep caught up (a small table: a whole lap per
                    // tick): nothing due may be left.
                    let late: Vec<_> = flows.iter().filter(|(_, m)| m.expire <= now).collect();
                    assert!(late.is_empty(), "op {op}: due but kept at {now}: {late:?}");
                }
                stats[6] += 1;
                stats[7] += n;
            }
        }
        assert_eq!(t.len() as usize, flows.len(), "op {op}");
        if op % 1000 == 0 {
            let live: HashMap<FlowId, FlowKey> = t.iter().map(|(id, f)| (id, f.original_key())).collect();
            assert_eq!(live.len(), flows.len());
            for (id, m) in &flows {
                assert_eq!(live.get(id), Some(&orig_key(&m.init)));
                assert_eq!(find(&t, &reply_key(&m.init)), Some((*id, Dir::Reply)));
            }
        }
    }
    println!(
        "model: {} inserts, {} full, {} exists, {} lookups, {} removes, {} packets, {} expire calls removing {}; \
         {} live at tick {now}",
        stats[0],
        stats[1],
        stats[2],
        stats[3],
        stats[4],
        stats[5],
        stats[6],
        stats[7],
        flows.len()
    );
    assert!(stats[1] > 0 && stats[2] > 0 && stats[7] > 0);
}
