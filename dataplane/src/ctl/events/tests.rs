use super::*;
use crate::conntrack::track::{PROXY_ON, PROXY_OPEN, PROXY_TS};
use crate::conntrack::{FlowState, Forwarding};
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
fn bulk_requests_are_named_by_id_and_end_at_a_ring_position() {
    let c = SyncControl::default();
    assert_eq!((c.requested(), c.bulk_end(0), c.bulk_end(7)), (0, None, None));
    c.request_bulk(7);
    c.request_bulk(7);
    assert_eq!(c.requested(), 7, "a re-ask is the same request");
    c.finish(7, 41);
    assert_eq!((c.bulk_end(7), c.bulk_end(8)), (Some(41), None));
    c.request_bulk(8);
    assert_eq!(c.bulk_end(7), Some(41), "the last finished walk until the next ends");
    c.finish(8, u32::MAX);
    assert_eq!((c.bulk_end(7), c.bulk_end(8)), (None, Some(u32::MAX)));
}

#[test]
fn the_consumer_knows_when_it_has_read_past_a_position() {
    // Positions wrap during the test.
    let (mut p, mut c) = channel_at(4, u32::MAX - 1);
    assert!(c.has_read(p.position()), "nothing pushed, nothing to read");
    assert!(p.push(rec(1)) && p.push(rec(2)));
    let end = p.position();
    assert!(p.push(rec(3)));
    assert!(!c.has_read(end));
    let mut out = [SyncRecord::EMPTY; 1];
    c.pop_batch(&mut out);
    assert!(!c.has_read(end));
    c.pop_batch(&mut out);
    assert!(c.has_read(end), "records after the position do not matter");
    c.pop_batch(&mut out);
    assert!(c.has_read(end) && c.has_read(p.position()));
}

fn established_marks(proxy: Option<ProxyState>) -> TcpMarks {
    TcpMarks { end: [1011, 5011], ack: [5011, 1011], win: [4000, 8000], wscale: [2, 7], known: 0xff, proxy }
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
        version: 0x0102,
        client_ip: 0xc000_020a,
        client_port: 40000,
        vip: 0xc000_0264,
        vport: 80,
        server_ip: 0xc633_640b,
        server_port: 8080,
        local_ip: 0xc633_6401,
        local_port: 1025,
        timeout_ms: 900_000,
        tcp: None,
    };
    let mut b = [0u8; SyncRecord::MAX_WIRE_LEN];
    assert_eq!(r.encode(&mut b), 44);
    #[rustfmt::skip]
    let want: [u8; 44] = [
        2, 4, 6, 2, 1, 1, 3, 0,
        2, 0, 0, 0, 0, 0x10, 1, 2,
        192, 0, 2, 10, 192, 0, 2, 100, 198, 51, 100, 11, 198, 51, 100, 1,
        0x9c, 0x40, 0, 80, 0x1f, 0x90, 0x04, 0x01,
        0, 0x0d, 0xbb, 0xa0,
    ];
    assert_eq!(b[..44], want);
    assert_eq!(SyncRecord::decode(&b), Some(r));
    assert_eq!(r.timeout_ticks(), 9000);
    assert_eq!(SyncRecord { timeout_ms: 101, ..r }.timeout_ticks(), 2, "rounded up");

    // A TCP entry's marks follow (ext 1).
    let t = SyncRecord { tcp: Some(established_marks(None)), ..r };
    assert_eq!((t.encode(&mut b), t.wire_len()), (72, 72));
    assert_eq!(b[7], 1);
    assert_eq!(b[..44][8..], want[8..]);
    #[rustfmt::skip]
    let marks: [u8; 28] = [
        0, 0, 3, 0xf3, 0, 0, 0x13, 0x93, 0, 0, 0x13, 0x93, 0, 0, 3, 0xf3,
        0, 0, 0x0f, 0xa0, 0, 0, 0x1f, 0x40,
        2, 7, 0xff, 0,
    ];
    assert_eq!(b[44..72], marks);
    assert_eq!(SyncRecord::decode(&b[..72]), Some(t));
    assert_eq!(SyncRecord::decode(&b[..71]), None, "short");

    // A proxied one's translation after them (ext 2).
    let proxy = ProxyState { seq_delta: 0x8000_0001, ts_delta: 77, wscale: [7, 9], flags: PROXY_ON | PROXY_OPEN | PROXY_TS };
    let p = SyncRecord { flags: SyncRecord::FLAG_PROXIED, tcp: Some(established_marks(Some(proxy))), ..r };
    assert_eq!((p.encode(&mut b), p.wire_len()), (84, SyncRecord::MAX_WIRE_LEN));
    assert_eq!((b[5], b[7]), (SyncRecord::FLAG_PROXIED, 2));
    assert_eq!(b[44..72], marks);
    assert_eq!(b[72..84], [0x80, 0, 0, 1, 0, 0, 0, 77, 7, 9, 7, 0]);
    assert_eq!(SyncRecord::decode(&b), Some(p));
}

#[test]
fn unknown_bytes_are_refused() {
    let mut b = [0u8; SyncRecord::MAX_WIRE_LEN];
    SyncRecord::EMPTY.encode(&mut b);
    assert!(SyncRecord::decode(&b).is_some());
    assert_eq!(SyncRecord::decode(&b[..SyncRecord::WIRE_LEN - 1]), None, "short");
    for (at, bad) in [(0, 0u8), (0, 7), (1, 6), (3, FlowState::ALL.len() as u8), (4, 200), (5, 0x08), (5, 0x40), (7, 3)] {
        let mut x = b;
        x[at] = bad;
        assert_eq!(SyncRecord::decode(&x), None, "byte {at} = {bad}");
    }
    // Marks only on a live TCP entry's record, a translation only with
    // (and always with) FLAG_PROXIED, scales up to 14, known proxy flags.
    let tcp = SyncRecord { kind: SyncKind::Refresh, proto: 6, tcp: Some(established_marks(None)), ..SyncRecord::EMPTY };
    tcp.encode(&mut b);
    assert!(SyncRecord::decode(&b).is_some());
    for (at, bad) in [(2, 17u8), (0, SyncKind::Delete as u8), (0, SyncKind::Persist as u8), (5, SyncRecord::FLAG_PROXIED), (5, SyncRecord::FLAG_PROXY_HEADER), (68, 15), (69, 200)] {
        let mut x = b;
        x[at] = bad;
        assert_eq!(SyncRecord::decode(&x), None, "byte {at} = {bad}");
    }
    let proxy = ProxyState { flags: PROXY_ON, ..ProxyState::default() };
    let proxied = SyncRecord { flags: SyncRecord::FLAG_PROXIED, tcp: Some(established_marks(Some(proxy))), ..tcp };
    proxied.encode(&mut b);
    assert!(SyncRecord::decode(&b).is_some());
    for (at, bad) in [(5, 0u8), (7, 1), (80, 15), (82, 0), (82, PROXY_OPEN), (82, 0x09)] {
        let mut x = b;
        x[at] = bad;
        assert_eq!(SyncRecord::decode(&x), None, "byte {at} = {bad}");
    }
    // A proxied entry's Delete carries the flag and no marks.
    let del = SyncRecord { kind: SyncKind::Delete, tcp: None, ..proxied };
    assert_eq!(del.encode(&mut b), 44);
    assert_eq!(SyncRecord::decode(&b), Some(del));
}

#[test]
fn versions_compare_as_serial_numbers() {
    let r = |version| SyncRecord { version, ..SyncRecord::EMPTY };
    assert!(r(4).is_older_than(5));
    assert!(!r(5).is_older_than(5) && !r(6).is_older_than(5));
    assert!(r(u16::MAX).is_older_than(2), "the counter wraps (RFC 1982)");
    assert!(!r(2).is_older_than(u16::MAX));
}

const MODES: [Forwarding; 6] = [Forwarding::Nat, Forwarding::FullNat, Forwarding::DsrL2, Forwarding::DsrDscp, Forwarding::DsrTunnel, Forwarding::Snat];

fn any_marks() -> impl Strategy<Value = TcpMarks> {
    let proxy = (any::<u32>(), any::<u32>(), [0..=14u8, 0..=14u8], any::<bool>(), any::<bool>()).prop_map(|(seq_delta, ts_delta, wscale, open, ts)| ProxyState {
        seq_delta,
        ts_delta,
        wscale,
        flags: PROXY_ON | if open { PROXY_OPEN } else { 0 } | if ts { PROXY_TS } else { 0 },
    });
    (any::<[u32; 6]>(), [0..=14u8, 0..=14u8], any::<u8>(), proptest::option::of(proxy))
        .prop_map(|(m, wscale, known, proxy)| TcpMarks { end: [m[0], m[1]], ack: [m[2], m[3]], win: [m[4], m[5]], wscale, known, proxy })
}

fn any_record() -> impl Strategy<Value = SyncRecord> {
    let head = (0..SyncKind::ALL.len(), prop_oneof![Just(6u8), Just(17u8), any::<u8>()], 0..FlowState::ALL.len(), 0..MODES.len(), any::<bool>(), any::<bool>(), any::<u8>(), any::<[u8; 6]>());
    let addrs = (any::<[u32; 4]>(), any::<[u16; 4]>(), any::<u32>(), any::<u16>(), any_marks());
    (head, addrs).prop_map(|((k, proto, s, mode, persist, expired, port_id, mac), (ips, ports, t, version, marks))| {
        let kind = SyncKind::ALL.get(k).copied().unwrap_or(SyncKind::Create);
        // Marks go with live TCP entries only; FLAG_PROXIED with a
        // translation on those.
        let tcp = (proto == 6 && kind.is_live()).then_some(marks);
        let proxied = tcp.is_some_and(|m| m.proxy.is_some());
        SyncRecord {
            kind,
            family: FAMILY_V4,
            proto,
            state: FlowState::ALL.get(s).copied().unwrap_or(FlowState::Close),
            mode: MODES.get(mode).copied().unwrap_or(Forwarding::Nat),
            flags: if persist { SyncRecord::FLAG_PERSIST } else { 0 } | if expired { SyncRecord::FLAG_EXPIRED } else { 0 } | if proxied { SyncRecord::FLAG_PROXIED } else { 0 },
            client_port_id: port_id,
            client_mac: mac,
            version,
            client_ip: ips[0],
            vip: ips[1],
            server_ip: ips[2],
            local_ip: ips[3],
            client_port: ports[0],
            vport: ports[1],
            server_port: ports[2],
            local_port: ports[3],
            timeout_ms: t,
            tcp,
        }
    })
}

proptest! {
    #[test]
    fn records_round_trip(r in any_record()) {
        let mut b = [0u8; SyncRecord::MAX_WIRE_LEN];
        let n = r.encode(&mut b);
        prop_assert_eq!(n, r.wire_len());
        prop_assert_eq!(SyncRecord::decode(&b[..n]), Some(r));
        prop_assert_eq!(SyncRecord::decode(&b[..n - 1]), None);
    }

    #[test]
    fn decode_never_panics_and_what_it_accepts_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        if let Some(r) = SyncRecord::decode(&bytes) {
            let mut b = [0u8; SyncRecord::MAX_WIRE_LEN];
            let n = r.encode(&mut b);
            // Equal but for the reserved bytes (71, 83), written as 0.
            let mut want = [0u8; SyncRecord::MAX_WIRE_LEN];
            want[..n].copy_from_slice(&bytes[..n]);
            for at in [71, 83].into_iter().filter(|at| *at < n) {
                want[at] = 0;
            }
            prop_assert_eq!(b, want);
        }
    }
}

#[test]
fn a_ring_slot_stays_small() {
    // Two rings a worker of 8192 slots each (`runtime::workers`): 88 bytes
    // a slot, with room for the marks and the translation.
    assert_eq!(core::mem::size_of::<SyncRecord>(), 88);
}
