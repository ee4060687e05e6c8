//! The unreplied caps and full-NAT's ports under a flood (issue 20: per
//! service, per source, local ports).

use super::super::tests::*;
use super::super::*;
use crate::state::rcu::rcu;
use crate::state::snapshot::SnatRule;
use crate::wire::tcp::flags as tcpf;

fn worker_of(snap: Snapshot, config: WorkerConfig) -> Worker {
    let (publisher, mut readers) = rcu(Box::new(snap), 1);
    std::mem::forget(publisher);
    let n = Arc::new(Neighbors::new(4));
    n.set(0, SERVER_MAC[0]);
    n.set(1, SERVER_MAC[1]);
    Worker::new(config, readers.remove(0), n)
}

fn spoofed_syn(i: u32, dport: u16) -> Vec<u8> {
    let src = [203, 0, 113, (i % 250) as u8 + 3];
    frame(CLIENT_MAC, OUT_MAC, src, VIP, 6, &tcp(1024 + i as u16, dport, tcpf::SYN), true)
}

fn ports_of(w: &Worker, vs: u16) -> Vec<u16> {
    let mut v: Vec<u16> = w.table().iter().filter(|(_, f)| f.vs == vs).map(|(_, f)| f.client_port).collect();
    v.sort();
    v
}

/// A SYN flood at one service (slot 0, port 80) evicts that service's own
/// half-open entries once it holds `unreplied_per_service`; another
/// service's handshakes in progress (slot 1, port 81) are untouched, though
/// they are the oldest in the table.
#[test]
fn a_flood_at_one_service_evicts_only_its_own_entries() {
    let mut w = worker_of(snapshot(), WorkerConfig { flows: 256, embryonic_max: 200, unreplied_per_service: 8, ..WorkerConfig::default() });
    for sport in [40000, 40001, 40002] {
        let mut f = syn(sport, 81);
        assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    }
    for i in 0..100 {
        let mut f = spoofed_syn(i, 80);
        assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN), "flood packet {i}");
    }
    assert_eq!(w.table().unreplied_of_service(0), 8);
    assert_eq!(ports_of(&w, 0), (1024 + 92..1024 + 100).collect::<Vec<u16>>(), "the newest of the flood");
    assert_eq!(ports_of(&w, 1), vec![40000, 40001, 40002], "the other service's handshakes stay");
    assert_eq!(w.counters().unreplied_capped.get(), 92);
    assert_eq!(w.counters().embryonic_evicted.get(), 0);
}

/// One source opening handshakes it never completes holds at most
/// `unreplied_per_source` of them; its next SYNs are answered with
/// cookies (no entry), so nothing of anyone's is evicted: a sender
/// spoofing a victim's address cannot evict the victim's handshakes, and
/// the victim's own SYNs still connect through the cookies.
#[test]
fn one_source_past_its_cap_gets_cookies() {
    let mut w = worker_of(snapshot(), WorkerConfig { flows: 256, embryonic_max: 200, unreplied_per_source: 4, ..WorkerConfig::default() });
    for i in 0..5 {
        let mut f = spoofed_syn(i, 80);
        assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    }
    let mut cookies = 0;
    for sport in 40000..40050 {
        let mut f = syn(sport, 80);
        match w.process(&mut f, OUT, false) {
            Verdict::Forward(IN) => {}
            // The cookie SYN-ACK (`process_packet` builds it).
            Verdict::Rebuild => cookies += 1,
            v => panic!("{sport}: {v:?}"),
        }
    }
    assert_eq!(w.table().unreplied_of_source(ip(CLIENT)), 4);
    assert_eq!(cookies, 46);
    assert_eq!(w.table().len(), 5 + 4, "the others' five and the source's first four");
    assert_eq!((w.counters().unreplied_capped.get(), w.counters().embryonic_evicted.get()), (0, 0), "nothing evicted");
}

/// Full-NAT with four local ports: unanswered handshakes from spoofed
/// sources hold three, an established connection the fourth; a new client
/// takes the port of the oldest unanswered one. Once every port is held by
/// an established connection, a new one is refused (`no-local-port`).
#[test]
fn unanswered_full_nat_entries_give_their_ports_back() {
    let mut snap = snapshot();
    snap.snat = vec![SnatRule { net: ip([198, 51, 100, 128]), mask: 0xffff_ff80, link: IN, addr: ip(SELF_IN), port_min: 2000, port_max: 2003 }];
    snap.index();
    let mut w = worker_of(snap, WorkerConfig { flows: 256, ..WorkerConfig::default() });
    let answer = |w: &mut Worker, f: &[u8], sport: u16| {
        let s = SRV.iter().position(|a| *a == addr(f, 30)).unwrap();
        let mut r = frame(SERVER_MAC[s], IN_MAC, SRV[s], SELF_IN, 6, &tcp(8080, port(f, 34), tcpf::SYN | tcpf::ACK), true);
        assert_eq!(w.process(&mut r, IN, false), Verdict::Forward(OUT), "answer to {sport}");
        let mut a = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(sport, 81, tcpf::ACK), true);
        assert_eq!(w.process(&mut a, OUT, false), Verdict::Forward(IN), "handshake of {sport}");
    };
    let mut f = syn(40000, 81);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    answer(&mut w, &f, 40000);
    for i in 0..3 {
        let mut f = spoofed_syn(i, 81);
        assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN));
    }
    for sport in 40001..40004 {
        let mut f = syn(sport, 81);
        assert_eq!(w.process(&mut f, OUT, false), Verdict::Forward(IN), "{sport} takes an unanswered entry's port");
        answer(&mut w, &f, sport);
    }
    assert_eq!(w.counters().unreplied_capped.get(), 3);
    assert_eq!(ports_of(&w, 1), vec![40000, 40001, 40002, 40003]);
    let mut f = syn(40004, 81);
    assert_eq!(w.process(&mut f, OUT, false), Verdict::Drop(DropReason::NoLocalPort), "established connections keep their ports");
    assert_eq!(ports_of(&w, 1).len(), 4);
}
