use super::*;
use crate::testkit::Rng;

fn ip(a: [u8; 4]) -> u32 {
    u32::from_be_bytes(a)
}

/// Microsoft's RSS verification suite (the key and IPv4/TCP vectors of
/// "Verifying the RSS Hash Calculation").
#[test]
fn toeplitz_matches_the_specification_vectors() {
    let key: [u8; KEY_LEN] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
        0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];
    let cases = [
        (ip([66, 9, 149, 187]), 2794, ip([161, 142, 100, 80]), 1766, 0x51cc_c178, 0x323e_8fc2),
        (ip([199, 92, 111, 2]), 14230, ip([65, 69, 140, 83]), 4739, 0xc626_b0ea, 0xd718_262a),
        (ip([24, 19, 198, 95]), 12898, ip([12, 22, 207, 184]), 38024, 0x5c2b_394a, 0xd2d0_a5de),
        (ip([38, 27, 205, 30]), 48228, ip([209, 142, 163, 6]), 2217, 0xafc7_327f, 0x8298_9176),
        (ip([153, 39, 163, 191]), 44251, ip([202, 188, 127, 2]), 1303, 0x10e8_28a2, 0x5d18_09c5),
    ];
    for (src, sport, dst, dport, tcp, ipv4) in cases {
        assert_eq!(toeplitz(&key, &ipv4_input(src, dst, sport, dport)), tcp, "tcp {src:x}");
        assert_eq!(toeplitz(&key, &ipv4_input(src, dst, sport, dport)[..8]), ipv4, "ipv4 {src:x}");
    }
}

#[test]
fn the_client_key_queues_by_the_source_alone() {
    let s = Steering::new(2, 0x1234);
    let mut rng = Rng(9);
    for _ in 0..20_000 {
        let (c, cp, x, y) = (rng.next_u64() as u32, rng.next_u64() as u16, rng.next_u64() as u32, rng.next_u64() as u16);
        let h = toeplitz(&s.keys().client, &ipv4_input(c, x, cp, y));
        assert_eq!(h as usize % RETA_SIZE, s.index(c, cp), "{c:x}:{cp} -> {x:x}:{y}");
    }
}

#[test]
fn the_server_key_queues_a_reply_where_its_client_was() {
    for seed in [0, 1, 0xdead_beef, u64::MAX] {
        let s = Steering::new(3, seed);
        let mut rng = Rng(seed ^ 5);
        for _ in 0..5_000 {
            let (c, cp, srv, sp) = (rng.next_u64() as u32, rng.next_u64() as u16, rng.next_u64() as u32, rng.next_u64() as u16);
            let reply = toeplitz(&s.keys().server, &ipv4_input(srv, c, sp, cp));
            assert_eq!(reply as usize % RETA_SIZE, s.index(c, cp), "seed {seed}: reply from {srv:x}:{sp}");
        }
    }
}

#[test]
fn keys_and_reta_follow_the_seed() {
    assert_eq!(Steering::new(4, 77), Steering::new(4, 77));
    assert_ne!(Steering::new(4, 77).keys(), Steering::new(4, 78).keys());
    let k = *Steering::new(4, 77).keys();
    assert!(k.spread != k.client && k.spread != k.server && k.spread.iter().any(|b| *b != 0), "the one-arm key is a key of its own");
    let s = Steering::new(4, 77);
    for w in 0..4 {
        assert_eq!(s.reta().iter().filter(|r| **r == w).count(), RETA_SIZE / 4, "worker {w}'s share of the RETA");
    }
    assert!(Steering::new(1, 5).reta().iter().all(|r| *r == 0));
    assert_eq!(Steering::new(1, 5).worker(0x0a00_0001, 80), 0);
}

/// Clients, and the ports of one address, spread over the workers.
#[test]
fn clients_and_local_ports_spread_evenly() {
    for workers in [2u16, 3, 4, 8] {
        for seed in 0..8u64 {
            let s = Steering::new(workers, seed);
            let mut count = vec![0usize; usize::from(workers)];
            let mut rng = Rng(seed + 1);
            let n = 40_000;
            for _ in 0..n {
                count[usize::from(s.worker(rng.next_u64() as u32, rng.next_u64() as u16))] += 1;
            }
            let fair = n / usize::from(workers);
            assert!(count.iter().all(|c| c.abs_diff(fair) < fair / 10), "{workers} workers, seed {seed}: random clients {count:?}");
            let mut ports = vec![0usize; usize::from(workers)];
            for p in 1024..=49151u16 {
                ports[usize::from(s.worker(ip([198, 51, 100, 2]), p))] += 1;
            }
            let fair = (49151 - 1024) / usize::from(workers);
            assert!(ports.iter().all(|c| c.abs_diff(fair) < fair / 5), "{workers} workers, seed {seed}: ports {ports:?}");
            // Clients of one /24 with sequential ports, as behind a NAT.
            let mut seq = vec![0usize; usize::from(workers)];
            for i in 0..4096u32 {
                seq[usize::from(s.worker(ip([203, 0, 113, 0]) + (i % 256), 30000 + (i / 256) as u16))] += 1;
            }
            assert!(seq.iter().all(|c| *c > 0), "{workers} workers, seed {seed}: one /24 {seq:?}");
        }
    }
}
