//! State sync between two workers standing for the two boxes of a pair:
//! what worker A reports, installed on worker B (same snapshot), makes B
//! forward A's connections.

use super::super::tests::*;
use super::super::{owner, owner_of, Owners, Verdict, Worker};
use crate::conntrack::{EntryFlags, FlowState, Timeouts};
use crate::ctl::events::{channel, RecordConsumer, RecordProducer, SyncKind, SyncRecord};
use crate::io::{Burst, PacketIo};
use crate::state::counters::InstallFailure;
use crate::state::snapshot::Snapshot;
use crate::wire::tcp::flags as tcpf;

/// A worker with sync on, its events (what it reports) and its installs
/// (what the peer sends it).
struct Box_ {
    w: Worker,
    events: RecordConsumer,
    installs: RecordProducer,
}

fn synced(snap: Snapshot, id: u16, workers: u16, ring: usize) -> Box_ {
    let (ev_p, ev_c) = channel(ring);
    let (in_p, in_c) = channel(ring);
    let w = worker_on(snap, 64, id, workers, true).with_sync(ev_p, in_c);
    Box_ { w, events: ev_c, installs: in_p }
}

fn pair(snap: fn() -> Snapshot) -> (Box_, Box_) {
    (synced(snap(), 0, 1, 256), synced(snap(), 0, 1, 256))
}

fn drain(c: &mut RecordConsumer) -> Vec<SyncRecord> {
    let mut out = Vec::new();
    let mut buf = [SyncRecord::EMPTY; 8];
    loop {
        let n = c.pop_batch(&mut buf);
        out.extend_from_slice(&buf[..n]);
        if n == 0 {
            return out;
        }
    }
}

/// No packets: a pass does the slow path only (installs, walks).
struct Idle;

impl PacketIo for Idle {
    type Pkt = Pkt;
    fn rx_queues(&self) -> usize {
        0
    }
    fn rx_burst(&mut self, _q: usize, _b: &mut Burst<Pkt>) {}
    fn tx(&mut self, _port: u16, _p: Pkt) {}
    fn punt(&mut self, p: Pkt) -> Result<(), Pkt> {
        Err(p)
    }
    fn flush(&mut self) -> crate::io::TxReport {
        crate::io::TxReport::default()
    }
}

/// Sends `records` to `to` and lets it apply them in a pass at `now`.
fn deliver(records: &[SyncRecord], to: &mut Box_, now: u32) {
    for r in records {
        assert!(to.installs.push(*r));
    }
    to.w.poll(&mut Idle, now);
}

fn send(w: &mut Worker, mut f: Vec<u8>, port: u16) -> (Verdict, Vec<u8>) {
    let v = w.process(&mut f, port, false);
    (v, f)
}

fn client(flags: u8, sport: u16, vport: u16) -> Vec<u8> {
    frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &tcp(sport, vport, flags), true)
}

fn server(s: usize, flags: u8, to: [u8; 4], dport: u16) -> Vec<u8> {
    frame(SERVER_MAC[s], IN_MAC, SRV[s], to, 6, &tcp(8080, dport, flags), true)
}

/// SYN, SYN-ACK, ACK of client port `sport` to VIP:80 through `w`.
fn handshake(w: &mut Worker, sport: u16) {
    let (v, f) = send(w, client(tcpf::SYN, sport, 80), OUT);
    assert_eq!(v, Verdict::Forward(IN));
    let s = SRV.iter().position(|a| *a == addr(&f, 30)).unwrap();
    assert_eq!(send(w, server(s, tcpf::SYN | tcpf::ACK, CLIENT, sport), IN).0, Verdict::Forward(OUT));
    assert_eq!(send(w, client(tcpf::ACK, sport, 80), OUT).0, Verdict::Forward(IN));
}

/// SYN, SYN-ACK, ACK of client port `sport` to VIP:81 (full-NAT) through
/// `w`: the local port.
fn full_nat_handshake(w: &mut Worker, sport: u16) -> u16 {
    let (v, f) = send(w, client(tcpf::SYN, sport, 81), OUT);
    assert_eq!(v, Verdict::Forward(IN));
    let (s, lport) = (SRV.iter().position(|a| *a == addr(&f, 30)).unwrap(), port(&f, 34));
    assert_eq!(send(w, server(s, tcpf::SYN | tcpf::ACK, SELF_IN, lport), IN).0, Verdict::Forward(OUT));
    assert_eq!(send(w, client(tcpf::ACK, sport, 81), OUT).0, Verdict::Forward(IN));
    lport
}

fn kinds(rs: &[SyncRecord]) -> Vec<(SyncKind, FlowState)> {
    rs.iter().map(|r| (r.kind, r.state)).collect()
}

/// Issue 20 (review H6): nothing while the handshake is under way (a
/// spoofed SYN flood fills neither the sync link nor the peer's table);
/// the `Create` when the client completes it, then each state change.
#[test]
fn a_new_connection_reports_create_once_answered_then_each_state_change() {
    let (mut a, _) = pair(snapshot);
    a.w.shard.now = 10;
    let (v, f) = send(&mut a.w, client(tcpf::SYN, 40000, 80), OUT);
    assert_eq!(v, Verdict::Forward(IN));
    assert_eq!(addr(&f, 30), SRV[0]);
    assert_eq!(send(&mut a.w, server(0, tcpf::SYN | tcpf::ACK, CLIENT, 40000), IN).0, Verdict::Forward(OUT));
    assert!(drain(&mut a.events).is_empty(), "SYN_SENT and SYN_RECV are not reported");
    assert_eq!(send(&mut a.w, client(tcpf::ACK, 40000, 80), OUT).0, Verdict::Forward(IN));
    assert_eq!(send(&mut a.w, client(tcpf::ACK | tcpf::PSH, 40000, 80), OUT).0, Verdict::Forward(IN));
    let got = drain(&mut a.events);
    assert_eq!(kinds(&got), [(SyncKind::Create, FlowState::Established)], "no record for a packet that changes nothing");
    let c = got[0];
    assert_eq!((c.client_ip, c.client_port, c.vip, c.vport, c.proto), (ip(CLIENT), 40000, ip(VIP), 80, 6));
    assert_eq!((c.server_ip, c.server_port, c.local_ip, c.local_port), (ip(SRV[0]), 8080, ip(CLIENT), 40000));
    assert_eq!((c.client_mac, c.client_port_id), (CLIENT_MAC.0, OUT as u8));
    assert_eq!(c.timeout_ms, Timeouts::default().tcp_established * 100);
    assert_eq!(a.w.counters().sync.sent.get(), 1);

    // A RST closes it: an Update to CLOSE, then the Delete when its
    // `tcp_close` runs out.
    assert_eq!(send(&mut a.w, client(tcpf::RST, 40000, 80), OUT).0, Verdict::Forward(IN));
    let got = drain(&mut a.events);
    assert_eq!(kinds(&got), [(SyncKind::Update, FlowState::Close)]);
    assert_eq!(got[0].timeout_ms, Timeouts::default().tcp_close * 100);
    a.w.poll(&mut Idle, 10 + Timeouts::default().tcp_close);
    let got = drain(&mut a.events);
    assert_eq!(kinds(&got), [(SyncKind::Delete, FlowState::Close)]);
}

#[test]
fn installed_entries_forward_both_directions_and_are_not_echoed() {
    let (mut a, mut b) = pair(snapshot);
    handshake(&mut a.w, 40000);
    let records = drain(&mut a.events);
    deliver(&records, &mut b, 0);
    let bc = b.w.counters();
    assert_eq!(bc.sync.installed.get(), 1);
    assert_eq!(bc.sync.install_failed_total(), 0);
    assert!(drain(&mut b.events).is_empty(), "installs are not reported back");
    assert_eq!(b.w.table().len(), 1);
    let (_, f) = b.w.table().iter().next().unwrap();
    assert_eq!(f.state, FlowState::Established);
    assert!(f.flags.contains(EntryFlags::SYNCED));
    assert_eq!((bc.flows.get(), bc.services[0].conns_active.get(), bc.servers[0].conns_active.get()), (1, 1, 1));
    assert_eq!(bc.services[0].conns_new.get(), 0, "not a new connection here");

    // B takes over: the client's next segment, and the server's answer.
    let (v, f) = send(&mut b.w, client(tcpf::ACK | tcpf::PSH, 40000, 80), OUT);
    assert_eq!(v, Verdict::Forward(IN));
    assert_eq!((addr(&f, 30), port(&f, 36)), (SRV[0], 8080));
    assert_eq!(&f[0..6], &SERVER_MAC[0].0);
    assert_checksums(&f);
    let (v, r) = send(&mut b.w, server(0, tcpf::ACK, CLIENT, 40000), IN);
    assert_eq!(v, Verdict::Forward(OUT));
    assert_eq!((addr(&r, 26), port(&r, 34), addr(&r, 30)), (VIP, 80, CLIENT));
    assert_eq!(&r[0..6], &CLIENT_MAC.0, "to the client's MAC from the record");
    assert_checksums(&r);
    let (_, f) = b.w.table().iter().next().unwrap();
    assert!(!f.flags.contains(EntryFlags::SYNCED), "forwarded here: B's own now");
    assert!(drain(&mut b.events).is_empty(), "no state change, nothing to report");

    // A peer's Refresh never shortens an entry the box forwards.
    let expire = b.w.table().iter().next().unwrap().1.expire;
    let stale = SyncRecord { kind: SyncKind::Refresh, state: FlowState::SynSent, timeout_ms: 100, ..records[0] };
    deliver(&[stale], &mut b, 0);
    let (_, f) = b.w.table().iter().next().unwrap();
    assert_eq!((f.state, f.expire), (FlowState::Established, expire));
}

#[test]
fn full_nat_entries_keep_their_local_port_on_the_peer() {
    // Two workers per box; the owner is the same worker on both.
    let snap = snapshot();
    let owners = Owners::new(2, 0);
    let sport = (40000..41000).find(|p| owner(&snap, &owners, ip(CLIENT), *p, ip(VIP), 81, 6) == 1).unwrap();
    let mut a = synced(snapshot(), 1, 2, 256);
    let mut b = synced(snapshot(), 1, 2, 256);
    let lport = full_nat_handshake(&mut a.w, sport);
    let records = drain(&mut a.events);
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].local_ip, records[0].local_port, records[0].mode), (ip(SELF_IN), lport, crate::conntrack::Forwarding::FullNat));
    assert_eq!(owner_of(&snap, &owners, &records[0]), 1, "the record goes to the worker that owns the connection");

    let free_before = b.w.shard.local_ports.available(ip(SELF_IN));
    deliver(&records, &mut b, 0);
    assert_eq!(b.w.counters().sync.installed.get(), 1);
    assert!(!b.w.shard.local_ports.is_free(ip(SELF_IN), lport), "B holds the port");
    assert_eq!(b.w.shard.local_ports.available(ip(SELF_IN)), free_before - 1);

    // The server's next segment reaches B at the local port; the client's
    // ACK leaves B from the same local port.
    let s = SRV.iter().position(|a| ip(*a) == records[0].server_ip).unwrap();
    let (v, r) = send(&mut b.w, server(s, tcpf::ACK, SELF_IN, lport), IN);
    assert_eq!(v, Verdict::Forward(OUT));
    assert_eq!((addr(&r, 26), port(&r, 34), addr(&r, 30), port(&r, 36)), (VIP, 81, CLIENT, sport));
    assert_checksums(&r);
    let (v, f) = send(&mut b.w, client(tcpf::ACK, sport, 81), OUT);
    assert_eq!(v, Verdict::Forward(IN));
    assert_eq!((addr(&f, 26), port(&f, 34)), (SELF_IN, lport));
    // New connections on B never get that port.
    for p in 0..200u16 {
        let other = (41000 + p * 7..).find(|q| owner(&snap, &owners, ip(CLIENT), *q, ip(VIP), 81, 6) == 1).unwrap();
        let (v, f) = send(&mut b.w, client(tcpf::SYN, other, 81), OUT);
        if v == Verdict::Forward(IN) {
            assert_ne!(port(&f, 34), lport);
        }
    }

    // A closes it: B removes its copy and frees the port.
    assert_eq!(send(&mut a.w, client(tcpf::RST, sport, 81), OUT).0, Verdict::Forward(IN));
    a.w.poll(&mut Idle, a.w.shard.now + Timeouts::default().tcp_close);
    let del = drain(&mut a.events);
    assert_eq!(del.iter().map(|r| r.kind).collect::<Vec<_>>(), [SyncKind::Update, SyncKind::Delete]);
    let before = b.w.table().len();
    deliver(&del, &mut b, 0);
    assert_eq!(b.w.table().len(), before - 1);
    assert!(b.w.shard.local_ports.is_free(ip(SELF_IN), lport));
}

#[test]
fn a_port_not_free_on_the_peer_is_counted_and_not_freed_by_the_copy() {
    let mut b = synced(snapshot(), 0, 1, 256);
    let (_, f) = send(&mut b.w, client(tcpf::SYN, 40000, 81), OUT);
    let taken = port(&f, 34);
    drain(&mut b.events);
    // The peer's connection (another client) at the same local port, to
    // the other server: the reply keys differ, both entries fit.
    let rec = SyncRecord {
        kind: SyncKind::Create,
        proto: 6,
        state: FlowState::SynSent,
        mode: crate::conntrack::Forwarding::FullNat,
        client_ip: ip([192, 0, 2, 11]),
        client_port: 5555,
        vip: ip(VIP),
        vport: 81,
        server_ip: ip(SRV[1]),
        server_port: 8080,
        local_ip: ip(SELF_IN),
        local_port: taken,
        timeout_ms: 1000,
        ..SyncRecord::EMPTY
    };
    deliver(&[rec], &mut b, 0);
    let c = b.w.counters();
    assert_eq!((c.sync.installed.get(), c.sync.install_failed(InstallFailure::LocalPort)), (1, 1));
    assert_eq!(b.w.table().len(), 2, "installed anyway");
    // The copy goes; the port stays with the connection that holds it.
    deliver(&[SyncRecord { kind: SyncKind::Delete, ..rec }], &mut b, 0);
    assert_eq!(b.w.table().len(), 1);
    assert!(!b.w.shard.local_ports.is_free(ip(SELF_IN), taken));
}

#[test]
fn a_full_events_ring_drops_and_counts() {
    let mut a = synced(snapshot(), 0, 1, 2);
    for sport in 40000..40003 {
        handshake(&mut a.w, sport);
    }
    let c = a.w.counters();
    assert_eq!((c.sync.sent.get(), c.sync.dropped.get()), (2, 1));
    assert_eq!(drain(&mut a.events).len(), 2);
    assert_eq!(a.w.table().len(), 3, "forwarding does not depend on the ring");
}

#[test]
fn a_bulk_walk_refreshes_every_entry_across_passes() {
    // An 8-slot ring keeps 2 free for live events: the walk pauses.
    let mut a = synced(snapshot(), 0, 1, 8);
    for sport in 40000..40010 {
        handshake(&mut a.w, sport);
        drain(&mut a.events);
    }
    a.w.shard.sync.as_mut().unwrap().budget = 4;
    let control = a.w.sync_control().unwrap();
    control.request_bulk(9);
    let mut refreshed = Vec::new();
    let mut passes = 0;
    while control.bulk_end(9).is_none() {
        a.w.poll(&mut Idle, 5);
        let got = drain(&mut a.events);
        assert!(got.len() <= 6, "a quarter of the ring left for live events");
        refreshed.extend(got);
        passes += 1;
        assert!(passes < 100);
    }
    assert!(passes >= 64 / 4, "{passes} passes for 64 slots, 4 a pass");
    assert_eq!(refreshed.len(), 10);
    assert!(refreshed.iter().all(|r| r.kind == SyncKind::Refresh));
    let mut ports: Vec<_> = refreshed.iter().map(|r| r.client_port).collect();
    ports.sort_unstable();
    assert_eq!(ports, (40000..40010).collect::<Vec<_>>(), "each entry once");
    a.w.poll(&mut Idle, 6);
    assert!(drain(&mut a.events).is_empty(), "done until asked again");
    control.request_bulk(9);
    a.w.poll(&mut Idle, 7);
    assert!(drain(&mut a.events).is_empty(), "a re-ask of a request answered: nothing again");
    control.request_bulk(10);
    let mut again = 0;
    for now in 8..40 {
        a.w.poll(&mut Idle, now);
        again += drain(&mut a.events).len();
    }
    assert_eq!(again, 10, "a new request: all again");
}

/// C2: the peer asks again every second until it hears `BulkEnd`; a walk
/// longer than that must still finish, and its end must not wait for the
/// events ring to be empty.
#[test]
fn a_bulk_walk_longer_than_the_re_ask_interval_completes_under_live_events() {
    let (ev_p, mut events) = channel(1024);
    let (_in_p, in_c) = channel(16);
    let mut w = worker_on(snapshot(), 4096, 0, 1, true).with_sync(ev_p, in_c);
    for sport in 0..2000u16 {
        handshake(&mut w, 10000 + sport);
        drain(&mut events);
    }
    w.shard.sync.as_mut().unwrap().budget = 64;
    let control = w.sync_control().unwrap();
    // 4096 slots at 64 a pass: 64 passes; the peer re-asks every 10.
    control.request_bulk(0x5eed);
    let (mut refreshed, mut passes, mut live) = (Vec::new(), 0u32, 0u16);
    let end = loop {
        if passes % 10 == 9 {
            // The peer's re-ask (same id).
            control.request_bulk(0x5eed);
        }
        w.poll(&mut Idle, 5);
        passes += 1;
        // A live event every pass: the ring is never empty when looked at.
        handshake(&mut w, 30000 + live);
        live += 1;
        if let Some(end) = control.bulk_end(0x5eed) {
            break end;
        }
        // The control plane reads all but the last record.
        let mut buf = [SyncRecord::EMPTY; 1];
        while events.len() > 1 {
            events.pop_batch(&mut buf);
            refreshed.extend(buf.iter().filter(|r| r.kind == SyncKind::Refresh).map(|r| r.client_port));
        }
        assert!(passes < 200, "the walk never ends");
    };
    assert!((64..=70).contains(&passes), "{passes} passes: the re-asks did not restart it");
    assert!(!events.is_empty() && !events.has_read(end), "the walk's last records are still in the ring");
    let rest = drain(&mut events);
    assert!(events.has_read(end), "read past the walk's end: the answer is complete, live events behind it or not");
    refreshed.extend(rest.iter().filter(|r| r.kind == SyncKind::Refresh).map(|r| r.client_port));
    refreshed.sort_unstable();
    let before: Vec<_> = refreshed.iter().copied().filter(|p| *p < 30000).collect();
    assert_eq!(before, (10000..12000).collect::<Vec<_>>(), "every entry made before the walk, once");
    assert!(refreshed.len() <= 2000 + usize::from(live), "those made during it at most once");
}

#[test]
fn periodic_refresh_skips_the_peers_copies_and_a_bulk_walk_includes_them() {
    let (mut a, mut b) = pair(snapshot);
    handshake(&mut a.w, 40000);
    deliver(&drain(&mut a.events), &mut b, 0);
    handshake(&mut b.w, 40001);
    drain(&mut b.events);
    b.w.shard.config.sync_refresh = 50;
    b.w.poll(&mut Idle, 1);
    b.w.poll(&mut Idle, 50);
    assert!(drain(&mut b.events).is_empty(), "the first walk is a period after the first pass");
    b.w.poll(&mut Idle, 51);
    let got = drain(&mut b.events);
    assert_eq!(got.iter().map(|r| r.client_port).collect::<Vec<_>>(), [40001], "B's own entry, not A's copy");
    b.w.poll(&mut Idle, 100);
    assert!(drain(&mut b.events).is_empty());
    b.w.poll(&mut Idle, 101);
    assert_eq!(drain(&mut b.events).len(), 1, "every 50 ticks");
    // A restarted peer asks for everything: the copies too.
    b.w.sync_control().unwrap().request_bulk(3);
    b.w.poll(&mut Idle, 102);
    let mut ports: Vec<_> = drain(&mut b.events).iter().map(|r| r.client_port).collect();
    ports.sort_unstable();
    assert_eq!(ports, [40000, 40001]);
    // A gets its own back: left as it is, nothing echoes.
    let expire = a.w.table().iter().next().unwrap().1.expire;
    deliver(&got, &mut a, 103);
    assert_eq!(a.w.table().iter().find(|(_, f)| f.client_port == 40000).unwrap().1.expire, expire);
    assert!(drain(&mut a.events).is_empty());
}

/// C1: A closes a connection while B's refresh of its copy is on the way
/// (here a bulk walk's: periodic walks no longer send copies). Neither the
/// closed entry nor, once it is gone, a new one may come back from it.
#[test]
fn a_refresh_crossing_a_close_resurrects_nothing() {
    let (mut a, mut b) = pair(snapshot);
    a.w.shard.now = 10;
    handshake(&mut a.w, 40000);
    deliver(&drain(&mut a.events), &mut b, 10);
    b.w.sync_control().unwrap().request_bulk(1);
    b.w.poll(&mut Idle, 11);
    let in_flight = drain(&mut b.events);
    assert_eq!(kinds(&in_flight), [(SyncKind::Refresh, FlowState::Established)]);

    // A resets it: CLOSE for `tcp_close`, and B's older view must neither
    // move it back nor keep it longer.
    assert_eq!(send(&mut a.w, client(tcpf::RST, 40000, 80), OUT).0, Verdict::Forward(IN));
    let closed = drain(&mut a.events);
    assert_eq!(kinds(&closed), [(SyncKind::Update, FlowState::Close)]);
    assert!(in_flight[0].is_older_than(closed[0].version));
    let expire = a.w.table().iter().next().unwrap().1.expire;
    deliver(&in_flight, &mut a, 12);
    let (_, f) = a.w.table().iter().next().unwrap();
    assert_eq!((f.state, f.expire), (FlowState::Close, expire), "not lengthened to the established timeout");
    assert_eq!(a.w.counters().sync.install_failed(InstallFailure::Stale), 1);

    // It goes; B's refresh arrives after the Delete went out.
    a.w.poll(&mut Idle, expire);
    let del = drain(&mut a.events);
    assert_eq!(kinds(&del), [(SyncKind::Delete, FlowState::Close)]);
    deliver(&in_flight, &mut a, expire + 1);
    assert_eq!(a.w.table().len(), 0, "not re-installed");
    assert_eq!(a.w.counters().sync.install_failed(InstallFailure::Stale), 2);
    let c = a.w.counters();
    assert_eq!((c.flows.get(), c.services[0].conns_active.get()), (0, 0));
    // B applies the Delete; long after, a refresh installs again (the
    // tombstone is for crossings only).
    deliver(&del, &mut b, 12);
    assert_eq!(b.w.table().len(), 0);
    deliver(&in_flight, &mut a, expire + 1 + super::TOMB_TICKS);
    assert_eq!(a.w.table().len(), 1);
}

#[test]
fn a_record_older_than_the_copy_changes_nothing() {
    let (mut a, mut b) = pair(snapshot);
    handshake(&mut a.w, 40000);
    let records = drain(&mut a.events);
    // The server's FIN: one more.
    assert_eq!(send(&mut a.w, server(0, tcpf::FIN | tcpf::ACK, CLIENT, 40000), IN).0, Verdict::Forward(OUT));
    let records: Vec<_> = records.into_iter().chain(drain(&mut a.events)).collect();
    assert_eq!(records.iter().map(|r| r.version).collect::<Vec<_>>(), [0, 1], "one more at each change");
    deliver(&records, &mut b, 0);
    assert_eq!(b.w.table().iter().next().unwrap().1.version(), 1);
    // A walk's view of the ESTABLISHED version (read before the update
    // went out): ignored.
    let closing = records[1].state;
    deliver(&[SyncRecord { kind: SyncKind::Refresh, ..records[0] }], &mut b, 0);
    assert_eq!(b.w.table().iter().next().unwrap().1.state, closing);
    assert_eq!(b.w.counters().sync.install_failed(InstallFailure::Stale), 1);
    // The same version is not older.
    deliver(&[SyncRecord { kind: SyncKind::Refresh, timeout_ms: 5000, ..records[1] }], &mut b, 0);
    assert_eq!(b.w.table().iter().next().unwrap().1.expire, 50);
    // B takes over and closes its side: the count goes on from A's.
    assert_eq!(send(&mut b.w, client(tcpf::FIN | tcpf::ACK, 40000, 80), OUT).0, Verdict::Forward(IN));
    let got = drain(&mut b.events);
    assert_eq!((got[0].kind, got[0].version), (SyncKind::Update, 2));
    deliver(&got, &mut a, 0);
    assert_eq!(a.w.table().iter().next().unwrap().1.state, got[0].state);
}

#[test]
fn tcp_records_carry_the_marks_and_the_copy_judges_resets_by_them() {
    let (mut a, mut b) = pair(snapshot);
    handshake(&mut a.w, 40000);
    let records = drain(&mut a.events);
    let m = records[0].tcp.expect("a TCP entry's marks");
    let (id, _) = a.w.table().iter().next().unwrap();
    let t = a.w.table().track(id).unwrap();
    assert_eq!((m.end, m.ack, m.win, m.wscale, m.known, m.proxy), (t.end, t.ack, t.win, t.wscale, t.known_marks(), None));
    // Through the wire form.
    let mut buf = [0u8; SyncRecord::MAX_WIRE_LEN];
    let wired: Vec<_> = records
        .iter()
        .map(|r| {
            let n = r.encode(&mut buf);
            SyncRecord::decode(&buf[..n]).unwrap()
        })
        .collect();
    deliver(&wired, &mut b, 0);
    let (bid, _) = b.w.table().iter().next().unwrap();
    let bt = b.w.table().track(bid).unwrap();
    // The marks, as hints: judged as picked up mid-stream (they may be
    // refresh_s old), not as a handshake seen here.
    assert_eq!((bt.end, bt.ack, bt.wscale, bt.known_marks()), (t.end, t.ack, t.wscale, t.known_marks() & !0x30));
    // Windows kept at the liberal scale of marks picked up mid-stream
    // (`conntrack::marks`): never narrower, less than a unit wider.
    assert!(bt.win.iter().zip(t.win).all(|(b, a)| *b >= a && *b - a < 1 << 14), "{:?} {:?}", bt.win, t.win);
    assert!(!bt.handshake_seen());
    // A blind reset far from the marks is not taken on the copy: forwarded
    // for the server to judge, the entry kept.
    let mut rst = tcp(40000, 80, tcpf::RST);
    rst[4..8].copy_from_slice(&t.end[0].wrapping_add(0x4000_0000).to_be_bytes());
    let f = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &rst, true);
    send(&mut b.w, f, OUT);
    assert_eq!(b.w.table().iter().next().unwrap().1.state, FlowState::Established);
    // At the server's next byte, it is.
    let mut rst = tcp(40000, 80, tcpf::RST);
    rst[4..8].copy_from_slice(&t.ack[1].to_be_bytes());
    let f = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &rst, true);
    send(&mut b.w, f, OUT);
    assert_eq!(b.w.table().iter().next().unwrap().1.state, FlowState::Close);
    // UDP, Delete and persistence records carry none.
    assert!(drain(&mut a.events).is_empty());
    assert_eq!(SyncRecord::of_flow(SyncKind::Delete, a.w.table().get(id).unwrap(), Some(&t), None, 0).tcp, None);
}

#[test]
fn a_late_delete_spares_a_full_nat_connection_that_reused_the_port() {
    let mut b = synced(snapshot(), 0, 1, 256);
    let lport = full_nat_handshake(&mut b.w, 40000);
    let now = drain(&mut b.events)[0];
    // The Delete of an older connection of the same client port to the
    // same server, from another local port.
    let old = SyncRecord { kind: SyncKind::Delete, local_port: lport ^ 1, ..now };
    deliver(&[old], &mut b, 0);
    assert_eq!(b.w.table().len(), 1, "another connection: kept");
    deliver(&[SyncRecord { kind: SyncKind::Delete, ..now }], &mut b, 0);
    assert_eq!(b.w.table().len(), 0);
}

#[test]
fn the_time_left_is_honoured_and_a_copys_expiry_is_not_reported() {
    let (mut a, mut b) = pair(snapshot);
    a.w.shard.now = 10;
    handshake(&mut a.w, 40000);
    drain(&mut a.events);
    let life = Timeouts::default().tcp_established;
    // 100 ticks later a bulk walk reports 100 ticks less left.
    let control = a.w.sync_control().unwrap();
    control.request_bulk(1);
    a.w.poll(&mut Idle, 110);
    let got = drain(&mut a.events);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].timeout_ms, (life - 100) * 100);
    // B installs it at its tick 1000: it expires at 1500.
    deliver(&got, &mut b, 1000);
    assert_eq!(b.w.table().iter().next().unwrap().1.expire, 1000 + life - 100);
    b.w.poll(&mut Idle, 1000 + life - 101);
    assert_eq!(b.w.table().len(), 1);
    b.w.poll(&mut Idle, 1000 + life - 100);
    assert_eq!(b.w.table().len(), 0, "expired when A's would");
    assert_eq!(b.w.counters().flows.get(), 0);
    assert!(drain(&mut b.events).is_empty(), "a copy's expiry is the peer's business");
    // A's own expiry is reported, marked as such.
    a.w.poll(&mut Idle, 10 + life);
    let got = drain(&mut a.events);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].kind, got[0].flags & SyncRecord::FLAG_EXPIRED), (SyncKind::Delete, SyncRecord::FLAG_EXPIRED));
}

#[test]
fn an_expiry_delete_spares_a_copy_forwarded_here_and_a_close_does_not() {
    let (mut a, mut b) = pair(snapshot);
    handshake(&mut a.w, 40000);
    handshake(&mut a.w, 40001);
    let records = drain(&mut a.events);
    deliver(&records, &mut b, 0);
    assert_eq!(b.w.table().len(), 2);
    // B forwards a packet of the first: its copy is B's own now.
    assert_eq!(send(&mut b.w, client(tcpf::ACK, 40000, 80), OUT).0, Verdict::Forward(IN));
    let expired = |r: &SyncRecord| SyncRecord { kind: SyncKind::Delete, flags: SyncRecord::FLAG_EXPIRED, ..*r };
    let first = *records.iter().find(|r| r.client_port == 40000).unwrap();
    let second = *records.iter().find(|r| r.client_port == 40001).unwrap();
    deliver(&[expired(&first), expired(&second)], &mut b, 0);
    assert_eq!(b.w.table().len(), 1, "only the copy B never forwarded goes");
    assert_eq!(b.w.table().iter().next().unwrap().1.client_port, 40000);
    deliver(&[SyncRecord { kind: SyncKind::Delete, ..first }], &mut b, 0);
    assert_eq!(b.w.table().len(), 0, "a close removes it");
    let c = b.w.counters();
    assert_eq!((c.flows.get(), c.services[0].conns_active.get(), c.servers[0].conns_active.get()), (0, 0, 0));
}

#[test]
fn install_failures_are_counted_by_reason() {
    let (mut a, mut b) = pair(snapshot);
    handshake(&mut a.w, 40000);
    let r = drain(&mut a.events)[0];
    let bad = [
        SyncRecord { vport: 8443, ..r },
        SyncRecord { server_ip: ip([10, 9, 9, 9]), ..r },
        SyncRecord { kind: SyncKind::Persist, ..r },
    ];
    deliver(&bad, &mut b, 0);
    let c = b.w.counters();
    assert_eq!(c.sync.install_failed(InstallFailure::NoService), 1);
    assert_eq!(c.sync.install_failed(InstallFailure::NoServer), 1);
    assert_eq!(c.sync.install_failed(InstallFailure::NoPersistence), 1);
    assert_eq!((c.sync.installed.get(), b.w.table().len()), (0, 0));
    // A full table on B.
    let mut small = synced(snapshot(), 0, 1, 16);
    small.w.shard.table = crate::conntrack::FlowTable::new(1, Timeouts::default());
    deliver(&[r, SyncRecord { client_port: 1, local_port: 1, ..r }], &mut small, 0);
    assert_eq!(small.w.counters().sync.install_failed(InstallFailure::TableFull), 1);
}

#[test]
fn persistence_records_follow_their_clients() {
    let snap = || persistent_snapshot(u32::MAX, false);
    let (mut a, mut b) = pair(snap);
    // Round robin sends a first client to server 0 and a second to 1.
    let other = [192, 0, 2, 77];
    let mut f = frame(CLIENT_MAC, OUT_MAC, other, VIP, 6, &tcp(1000, 80, tcpf::SYN), true);
    assert_eq!(a.w.process(&mut f, OUT, false), Verdict::Forward(IN));
    assert_eq!(addr(&f, 30), SRV[0]);
    drain(&mut a.events);
    let (_, f) = send(&mut a.w, client(tcpf::SYN, 2000, 80), OUT);
    assert_eq!(addr(&f, 30), SRV[1]);
    assert_eq!(send(&mut a.w, server(1, tcpf::SYN | tcpf::ACK, CLIENT, 2000), IN).0, Verdict::Forward(OUT));
    assert_eq!(send(&mut a.w, client(tcpf::ACK, 2000, 80), OUT).0, Verdict::Forward(IN));
    let got = drain(&mut a.events);
    assert_eq!(got.iter().map(|r| r.kind).collect::<Vec<_>>(), [SyncKind::Persist, SyncKind::Create]);
    assert_eq!(got[0].timeout_ms, PERSIST_TIMEOUT * 100);
    assert_eq!(got[1].flags, SyncRecord::FLAG_PERSIST);
    deliver(&got, &mut b, 0);
    assert_eq!(b.w.persist_records(), 1);
    assert_eq!(b.w.counters().sync.install_failed_total(), 0);
    // B's round robin would say server 0; the record says 1.
    let (_, f) = send(&mut b.w, client(tcpf::SYN, 2001, 80), OUT);
    assert_eq!(addr(&f, 30), SRV[1], "the client's server, from A's record");
    // The installed entry holds a reference: when both of B's entries
    // end, the record lives its timeout, then goes.
    deliver(&[SyncRecord { kind: SyncKind::Delete, ..got[1] }], &mut b, 0);
    assert_eq!(send(&mut b.w, client(tcpf::RST, 2001, 80), OUT).0, Verdict::Forward(IN));
    let closed = b.w.shard.now + Timeouts::default().tcp_close;
    b.w.poll(&mut Idle, closed);
    assert_eq!(b.w.persist_records(), 1);
    b.w.shard.now = closed + PERSIST_TIMEOUT + 1;
    assert_eq!(b.w.persist_records(), 0);
}

#[test]
fn owner_of_agrees_with_the_classify_path() {
    let snap = snapshot();
    for workers in [1u16, 2, 3, 8] {
        let owners = Owners::new(workers, 0x1234_5678);
        for sport in 40000..40050 {
            let rec = SyncRecord { proto: 6, client_ip: ip(CLIENT), client_port: sport, vip: ip(VIP), vport: 81, ..SyncRecord::EMPTY };
            assert_eq!(owner_of(&snap, &owners, &rec), owner(&snap, &owners, ip(CLIENT), sport, ip(VIP), 81, 6));
        }
    }
}

/// Issue 20 (review H6): a spoofed flood's entries never reach the peer.
/// SYNs nobody completes and UDP nobody answers send no record (nor a
/// `Delete` when they go); a UDP flow's first answer sends its `Create`;
/// direct server return, which never sees an answer, reports at once.
#[test]
fn unanswered_entries_are_not_replicated() {
    let (mut a, _) = pair(snapshot);
    for i in 0..20u8 {
        let src = [203, 0, 113, 10 + i];
        let mut f = frame(CLIENT_MAC, OUT_MAC, src, VIP, 6, &tcp(1000 + u16::from(i), 80, tcpf::SYN), true);
        assert_eq!(a.w.process(&mut f, OUT, false), Verdict::Forward(IN));
        let mut u = frame(CLIENT_MAC, OUT_MAC, src, VIP, 17, &udp(2000 + u16::from(i), 53, b"q"), true);
        assert_eq!(a.w.process(&mut u, OUT, false), Verdict::Forward(IN));
    }
    // A spoofed SYN, then a reset at its sequence number + 1: CLOSE, never
    // answered.
    let mut f = frame(CLIENT_MAC, OUT_MAC, [203, 0, 113, 99], VIP, 6, &tcp(999, 80, tcpf::SYN), true);
    assert_eq!(a.w.process(&mut f, OUT, false), Verdict::Forward(IN));
    let rst = tcp(999, 80, tcpf::RST); // at 1001: the SYN's 1000 + 1
    let mut f = frame(CLIENT_MAC, OUT_MAC, [203, 0, 113, 99], VIP, 6, &rst, true);
    assert_eq!(a.w.process(&mut f, OUT, false), Verdict::Forward(IN));
    assert!(a.w.table().iter().any(|(_, f)| f.client_port == 999 && f.state == FlowState::Close));
    assert_eq!(a.w.table().len(), 41);
    assert!(drain(&mut a.events).is_empty(), "nothing for the flood");
    let mut walk = Vec::new();
    a.w.sync_control().unwrap().request_bulk(1);
    for now in 1..4 {
        a.w.poll(&mut Idle, now);
        walk.extend(drain(&mut a.events));
    }
    assert!(walk.is_empty(), "nor in a bulk walk: {:?}", kinds(&walk));
    a.w.poll(&mut Idle, 10 + Timeouts::default().udp_unreplied.max(Timeouts::default().tcp_syn));
    assert_eq!(a.w.table().len(), 0);
    assert!(drain(&mut a.events).is_empty(), "nor when they expire");

    // A real UDP client: its server's answer sends the Create.
    let mut q = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 17, &udp(5000, 53, b"query"), true);
    assert_eq!(a.w.process(&mut q, OUT, false), Verdict::Forward(IN));
    assert!(drain(&mut a.events).is_empty());
    let s = SRV.iter().position(|x| *x == addr(&q, 30)).unwrap();
    let mut r = frame(SERVER_MAC[s], IN_MAC, SRV[s], CLIENT, 17, &udp(8080, 5000, b"answer"), true);
    assert_eq!(a.w.process(&mut r, IN, false), Verdict::Forward(OUT));
    assert_eq!(kinds(&drain(&mut a.events)), [(SyncKind::Create, FlowState::Udp)]);

    // Direct server return: reported with its first packet.
    let dsr = || {
        let mut s = snapshot();
        s.services[2].forwarding = crate::state::snapshot::Forwarding::DsrL2;
        s.index();
        s
    };
    let (mut d, _) = pair(dsr);
    let mut q = frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 17, &udp(5001, 53, b"query"), true);
    assert_eq!(d.w.process(&mut q, OUT, false), Verdict::Forward(IN));
    assert_eq!(kinds(&drain(&mut d.events)), [(SyncKind::Create, FlowState::UdpUnreplied)]);
}

/// Issue 20: the pair's ownership key changed (this box took the peer's,
/// `SyncControl::set_owner_key`): at its next pass the worker hashes with
/// it and drops the entries another worker owns under it, silently (no
/// `Delete`: the peer holds those connections), releasing their counters.
#[test]
fn a_new_ownership_key_drops_the_entries_another_worker_owns() {
    let mut a = synced(snapshot(), 0, 1, 256);
    for sport in 40000..40040 {
        handshake(&mut a.w, sport);
    }
    let records = drain(&mut a.events);
    let mut b = synced(snapshot(), 0, 2, 256);
    deliver(&records, &mut b, 1);
    assert_eq!(b.w.table().len(), 40);
    let key = 0x005e_ed0f_0123_4567;
    let snap = snapshot();
    let ours: Vec<u16> = (40000..40040).filter(|p| owner(&snap, &Owners::new(2, key), ip(CLIENT), *p, ip(VIP), 80, 6) == 0).collect();
    assert!(!ours.is_empty() && ours.len() < 40, "{ours:?}");
    b.w.sync_control().unwrap().set_owner_key(key);
    b.w.poll(&mut Idle, 2);
    assert_eq!(b.w.shard.config.owner_key, key);
    let mut left: Vec<u16> = b.w.table().iter().map(|(_, f)| f.client_port).collect();
    left.sort_unstable();
    assert_eq!(left, ours);
    let c = b.w.counters();
    assert_eq!((c.sync.rehomed.get(), c.flows.get()), (40 - ours.len() as u64, ours.len() as u64));
    assert!(drain(&mut b.events).is_empty(), "no Delete for the peer's connections");
    // The same key again changes nothing.
    b.w.poll(&mut Idle, 3);
    assert_eq!(b.w.table().len() as usize, ours.len());
}

/// A full-NAT connection with a PROXY header (issue 21) taken over by the
/// peer: its record says where the header goes, so the standby goes on
/// moving the client's numbers up and the server's down.
#[test]
fn a_standby_goes_on_shifting_a_proxy_header_connection() {
    fn with_header() -> Snapshot {
        let mut s = snapshot();
        s.services[1].proxy_header = true;
        s.services[1].syn_proxy = crate::state::snapshot::SynProxy::Off;
        s
    }
    let set32 = |f: &mut Vec<u8>, at: usize, v: u32| {
        f[at..at + 4].copy_from_slice(&v.to_be_bytes());
        crate::testkit::fill_l4_checksum(f);
    };
    let (mut a, mut b) = pair(with_header);
    let (v, f) = send(&mut a.w, client(tcpf::SYN, 40000, 81), OUT);
    assert_eq!(v, Verdict::Forward(IN));
    let (s, lport) = (SRV.iter().position(|x| *x == addr(&f, 30)).unwrap(), port(&f, 34));
    assert_eq!(send(&mut a.w, server(s, tcpf::SYN | tcpf::ACK, SELF_IN, lport), IN).0, Verdict::Forward(OUT));
    let mut ack = pkt(client(tcpf::ACK, 40000, 81));
    assert_eq!(a.w.process_packet(&mut ack, false), Verdict::Forward(IN));
    assert_eq!(ack.data.len(), 54 + 28, "the header rode the handshake's last ACK");
    let records = drain(&mut a.events);
    assert!(!records.is_empty() && records.iter().all(|r| r.flags & SyncRecord::FLAG_PROXY_HEADER != 0), "{records:?}");
    deliver(&records, &mut b, 0);
    let (_, e) = b.w.table().iter().next().unwrap();
    assert!(e.flags.contains(EntryFlags::PROXY_HEADER));
    // B: the client's data past the header (1001 + 100) moves up by 28.
    let mut later = client(tcpf::ACK | tcpf::PSH, 40000, 81);
    set32(&mut later, 38, 1101);
    let (v, f) = send(&mut b.w, later, OUT);
    assert_eq!(v, Verdict::Forward(IN));
    assert_eq!(u32::from_be_bytes([f[38], f[39], f[40], f[41]]), 1101 + 28);
    assert_checksums(&f);
    // The server's ACK of it comes back down by 28.
    let mut r = server(s, tcpf::ACK, SELF_IN, lport);
    set32(&mut r, 42, 1101 + 28);
    let (v, r) = send(&mut b.w, r, IN);
    assert_eq!(v, Verdict::Forward(OUT));
    assert_eq!(u32::from_be_bytes([r[42], r[43], r[44], r[45]]), 1101);
    assert_checksums(&r);
}
