use super::*;
use proptest::prelude::*;

fn rec(i: u32) -> SyncRecord {
    SyncRecord { client_ip: i, client_port: i as u16, timeout_ms: i.wrapping_mul(7), ..SyncRecord::EMPTY }
}

#[test]
fn capacity_is_a_power_of_two() {
    assert_eq!(channel(0).0.capacity(), 1);
    assert_eq!(channel(3).0.capacity(), 4);
    assert_eq!(channel(1024).1.capacity(), 1024);
}

#[test]
#[cfg_attr(miri, ignore = "allocates MAX_RING (16M) slots: minutes under Miri")]
fn capacity_is_capped() {
    assert_eq!(channel(usize::MAX).0.capacity(), MAX_RING);
}

#[test]
fn a_full_ring_refuses_and_a_drained_one_takes_again() {
    let (mut p, mut c) = channel(4);
    for i in 0..4 {
        assert!(p.push(rec(i)));
    }
    assert!(!p.push(rec(4)), "full");
    assert!(!p.has_room(1));
    assert_eq!((p.len(), c.len()), (4, 4));
    let mut out = [SyncRecord::EMPTY; 3];
    assert_eq!(c.pop_batch(&mut out), 3);
    assert_eq!(out, [rec(0), rec(1), rec(2)]);
    assert!(p.has_room(3) && !p.has_room(4));
    assert!(p.push(rec(5)));
    let mut out = [SyncRecord::EMPTY; 8];
    assert_eq!(c.pop_batch(&mut out), 2);
    assert_eq!(out[..2], [rec(3), rec(5)]);
    assert_eq!(c.pop_batch(&mut out), 0);
    assert!(c.is_empty() && p.is_empty());
    assert_eq!(c.pop_batch(&mut []), 0);
}

#[test]
fn slots_and_positions_wrap_around() {
    // Positions start just below u32::MAX, so they wrap during the test;
    // slots wrap every 8 records.
    let (mut p, mut c) = channel_at(8, u32::MAX - 20);
    let mut next_in = 0u32;
    let mut next_out = 0u32;
    let mut out = [SyncRecord::EMPTY; 5];
    for round in 0..100 {
        for _ in 0..(round % 7) {
            if p.push(rec(next_in)) {
                next_in += 1;
            }
        }
        let n = c.pop_batch(&mut out[..(round % 5) + 1]);
        for r in &out[..n] {
            assert_eq!(*r, rec(next_out));
            next_out += 1;
        }
        assert!(c.len() <= 8);
    }
    while let n @ 1.. = c.pop_batch(&mut out) {
        for r in &out[..n] {
            assert_eq!(*r, rec(next_out));
            next_out += 1;
        }
    }
    assert_eq!(next_out, next_in);
    assert!(next_in > 100);
}

#[test]
#[cfg_attr(miri, ignore = "spinning threads: slow under Miri; loom checks the protocol")]
fn two_threads_pass_every_record_in_order() {
    let (mut p, mut c) = channel(64);
    const N: u32 = 200_000;
    let producer = std::thread::spawn(move || {
        let mut i = 0;
        while i < N {
            if p.push(rec(i)) {
                i += 1;
            } else {
                std::hint::spin_loop();
            }
        }
    });
    let mut expected = 0;
    let mut out = [SyncRecord::EMPTY; 16];
    while expected < N {
        let n = c.pop_batch(&mut out);
        for r in &out[..n] {
            assert_eq!(*r, rec(expected));
            expected += 1;
        }
    }
    producer.join().unwrap();
}

#[test]
fn bulk_requests_count_generations() {
    let c = SyncControl::default();
    assert_eq!(c.bulk_done(), 0);
    assert_eq!(c.request_bulk(), 1);
    assert_eq!(c.request_bulk(), 2);
    assert_eq!(c.requested(), 2);
    c.finish(2);
    assert_eq!(c.bulk_done(), 2);
}

#[test]
fn the_wire_layout_is_fixed() {
    let r = SyncRecord {
        kind: SyncKind::Update,
        family: FAMILY_V4,
        proto: 6,
        state: FlowState::Established,
        mode: Forwarding::FullNat,
        flags: SyncRecord::FLAG_PERSIST,
        client_port_id: 3,
        client_mac: [2, 0, 0, 0, 0, 0x10],
        client_ip: 0xc000_020a,
        client_port: 40000,
        vip: 0xc000_0264,
        vport: 80,
        server_ip: 0xc633_640b,
        server_port: 8080,
        local_ip: 0xc633_6401,
        local_port: 1025,
        timeout_ms: 900_000,
    };
    let mut b = [0u8; SyncRecord::WIRE_LEN];
    r.encode(&mut b);
    #[rustfmt::skip]
    let want: [u8; 44] = [
        2, 4, 6, 2, 1, 1, 3, 0,
        2, 0, 0, 0, 0, 0x10, 0, 0,
        192, 0, 2, 10, 192, 0, 2, 100, 198, 51, 100, 11, 198, 51, 100, 1,
        0x9c, 0x40, 0, 80, 0x1f, 0x90, 0x04, 0x01,
        0, 0x0d, 0xbb, 0xa0,
    ];
    assert_eq!(b, want);
    assert_eq!(SyncRecord::decode(&b), Some(r));
    assert_eq!(r.timeout_ticks(), 9000);
    assert_eq!(SyncRecord { timeout_ms: 101, ..r }.timeout_ticks(), 2, "rounded up");
}

#[test]
fn unknown_bytes_are_refused() {
    let mut b = [0u8; SyncRecord::WIRE_LEN];
    SyncRecord::EMPTY.encode(&mut b);
    assert!(SyncRecord::decode(&b).is_some());
    assert_eq!(SyncRecord::decode(&b[..SyncRecord::WIRE_LEN - 1]), None, "short");
    for (at, bad) in [(0, 0u8), (0, 7), (1, 6), (3, FlowState::ALL.len() as u8), (4, 200), (5, 0x02)] {
        let mut x = b;
        x[at] = bad;
        assert_eq!(SyncRecord::decode(&x), None, "byte {at} = {bad}");
    }
}

fn any_record() -> impl Strategy<Value = SyncRecord> {
    let head = (0..SyncKind::ALL.len(), any::<u8>(), 0..FlowState::ALL.len(), any::<bool>(), any::<bool>(), any::<bool>(), any::<u8>(), any::<[u8; 6]>());
    let addrs = (any::<[u32; 4]>(), any::<[u16; 4]>(), any::<u32>());
    (head, addrs).prop_map(|((k, proto, s, full, persist, expired, port_id, mac), (ips, ports, t))| SyncRecord {
        kind: SyncKind::ALL.get(k).copied().unwrap_or(SyncKind::Create),
        family: FAMILY_V4,
        proto,
        state: FlowState::ALL.get(s).copied().unwrap_or(FlowState::Close),
        mode: if full { Forwarding::FullNat } else { Forwarding::Nat },
        flags: if persist { SyncRecord::FLAG_PERSIST } else { 0 } | if expired { SyncRecord::FLAG_EXPIRED } else { 0 },
        client_port_id: port_id,
        client_mac: mac,
        client_ip: ips[0],
        vip: ips[1],
        server_ip: ips[2],
        local_ip: ips[3],
        client_port: ports[0],
        vport: ports[1],
        server_port: ports[2],
        local_port: ports[3],
        timeout_ms: t,
    })
}

proptest! {
    #[test]
    fn records_round_trip(r in any_record()) {
        let mut b = [0u8; SyncRecord::WIRE_LEN];
        r.encode(&mut b);
        prop_assert_eq!(SyncRecord::decode(&b), Some(r));
    }

    #[test]
    fn decode_never_panics_and_what_it_accepts_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Some(r) = SyncRecord::decode(&bytes) {
            let mut b = [0u8; SyncRecord::WIRE_LEN];
            r.encode(&mut b);
            // Equal but for the reserved bytes (7, 14, 15), written as 0.
            let mut want = [0u8; SyncRecord::WIRE_LEN];
            want.copy_from_slice(&bytes[..SyncRecord::WIRE_LEN]);
            want[7] = 0;
            want[14] = 0;
            want[15] = 0;
            prop_assert_eq!(b, want);
        }
    }
}
