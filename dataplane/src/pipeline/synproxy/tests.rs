//! The SYN proxy through the pipeline: the cookie handshake, the server
//! side opened with the client's SYN, the parked first segment, and the
//! translation both ways.

use super::super::tests::{addr, assert_checksums, snapshot, CLIENT, CLIENT_MAC, IN, IN_MAC, OUT, OUT_MAC, SERVER_MAC, SRV, VIP};
use super::super::fuzz::TestPkt;
use super::super::*;
use crate::state::rcu::rcu;
use crate::conntrack::FlowState;
use crate::state::snapshot::SynProxy;
use crate::testkit::ipv4_frame;
use crate::wire::tcp::{flags as tcpf, TcpOptions, TcpPacket};

/// The test worker's cookie key.
const COOKIE_KEY: [u64; 2] = [0x5eed_0000_c00c_1e00, 0x0bad_cafe_dead_beef];

fn worker(mode: SynProxy, threshold: u32) -> Worker {
    worker_keyed(mode, threshold, 0xfeed, COOKIE_KEY)
}

fn worker_keyed(mode: SynProxy, threshold: u32, hash_key: u64, cookie_key: [u64; 2]) -> Worker {
    let mut snap = snapshot();
    snap.services[0].syn_proxy = mode;
    let (publisher, mut readers) = rcu(Box::new(snap), 1);
    std::mem::forget(publisher);
    let n = Arc::new(Neighbors::new(4));
    n.set(0, SERVER_MAC[0]);
    n.set(1, SERVER_MAC[1]);
    let cfg = WorkerConfig { flows: 64, hash_key, cookie_key, syn_proxy_threshold: threshold, syn_proxy_rate: 1_000_000, ..WorkerConfig::default() };
    Worker::new(cfg, readers.remove(0), n)
}

/// A TCP segment with `opts` (padded to 4) and `payload`.
#[allow(clippy::too_many_arguments, reason = "a segment's fields, in header order")]
fn seg(sport: u16, dport: u16, flags: u8, seq: u32, ack: u32, win: u16, opts: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut o = opts.to_vec();
    while !o.len().is_multiple_of(4) {
        o.push(1);
    }
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = (((20 + o.len()) / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&win.to_be_bytes());
    t.extend_from_slice(&o);
    t.extend_from_slice(payload);
    t
}

fn ts(val: u32, ecr: u32) -> Vec<u8> {
    let mut o = vec![1, 1, 8, 10];
    o.extend_from_slice(&val.to_be_bytes());
    o.extend_from_slice(&ecr.to_be_bytes());
    o
}

fn send(w: &mut Worker, frame: Vec<u8>, port: u16) -> (Verdict, Vec<u8>) {
    let mut p = TestPkt { data: frame, cap: 2048, head: 128, port };
    let v = w.process_packet(&mut p, false);
    (v, p.data)
}

fn tcp_of(f: &[u8]) -> TcpPacket<&[u8]> {
    let hl = usize::from(f[14] & 0x0f) * 4;
    TcpPacket::new_checked(&f[14 + hl..]).unwrap()
}

const ISN: u32 = 0x1000;
const S_ISN: u32 = 0x7000_0000;

#[test]
fn a_proxied_connection_from_cookie_to_translated_data() {
    let mut w = worker(SynProxy::On, u32::MAX);
    // SYN: MSS 1460, SACK permitted, timestamps, window scale 6.
    let mut opts = vec![2, 4, 0x05, 0xb4, 4, 2];
    opts.extend(ts(1111, 0));
    opts.extend([1, 3, 3, 6]);
    let syn = ipv4_frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg(40000, 80, tcpf::SYN, ISN, 0, 64240, &opts, b""), true);
    let (v, f) = send(&mut w, syn, OUT);
    assert_eq!(v, Verdict::Forward(OUT), "answered by the box");
    assert_checksums(&f);
    assert_eq!((&f[0..6], addr(&f, 26), addr(&f, 30)), (&CLIENT_MAC.0[..], VIP, CLIENT));
    let t = tcp_of(&f);
    assert_eq!((t.flags(), t.ack_number()), (tcpf::SYN | tcpf::ACK, ISN + 1));
    let o = TcpOptions::parse(t.options());
    assert_eq!((o.mss, o.wscale, o.sack_perm), (Some(1460), Some(7), true));
    let (our_ts, echo) = o.timestamp.unwrap();
    assert_eq!(echo, 1111);
    let cookie = t.seq_number();
    assert_eq!(w.table().len(), 0, "a SYN makes no entry");
    assert_eq!(w.counters().syn_cookies.get(), 1);

    // A forged ACK.
    let bad = ipv4_frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg(40000, 80, tcpf::ACK, ISN + 1, cookie ^ 0x55, 502, &ts(1112, our_ts), b""), true);
    assert_eq!(send(&mut w, bad, OUT).0, Verdict::Drop(DropReason::SynCookieInvalid));

    // The ACK: the server gets the client's SYN.
    let ack = ipv4_frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg(40000, 80, tcpf::ACK, ISN + 1, cookie + 1, 502, &ts(1112, our_ts), b""), true);
    let (v, f) = send(&mut w, ack, OUT);
    assert_eq!(v, Verdict::Forward(IN));
    assert_checksums(&f);
    let server = addr(&f, 30);
    let s = SRV.iter().position(|a| *a == server).unwrap();
    assert_eq!((&f[0..6], addr(&f, 26)), (&SERVER_MAC[s].0[..], CLIENT), "NAT: from the client");
    let t = tcp_of(&f);
    assert_eq!((t.flags(), t.seq_number(), t.dst_port()), (tcpf::SYN, ISN, 8080));
    let o = TcpOptions::parse(t.options());
    assert_eq!((o.mss, o.wscale, o.sack_perm, o.timestamp), (Some(1460), Some(6), true, Some((1112, 0))), "the client's options, from the cookie");
    assert_eq!(t.window_len(), 502 << 6);
    assert_eq!(w.table().len(), 1);

    // The GET arrives before the server answers: parked.
    let get = ipv4_frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg(40000, 80, tcpf::ACK | tcpf::PSH, ISN + 1, cookie + 1, 502, &ts(1113, our_ts), b"GET /\r\n\r\n"), true);
    assert_eq!(send(&mut w, get.clone(), OUT).0, Verdict::Consumed);
    // Its retransmission at once: the SYN went out a moment ago.
    assert_eq!(send(&mut w, get.clone(), OUT).0, Verdict::Drop(DropReason::SynProxyPending));
    // Its retransmission 400 ms later, before the answer (the SYN or its
    // answer may be lost): the SYN again, from the cookie it returns.
    w.shard.now += 4;
    let (v, f) = send(&mut w, get.clone(), OUT);
    assert_eq!(v, Verdict::Forward(IN), "resent");
    let t = tcp_of(&f);
    assert_eq!((t.flags(), t.seq_number(), addr(&f, 30)), (tcpf::SYN, ISN, server));
    assert_eq!(TcpOptions::parse(t.options()).wscale, Some(6));
    assert_eq!(w.counters().syn_resent.get(), 1);
    // Review S9: more of them at once (a client holding one cookie) send
    // no more SYNs until 200 ms have passed.
    for _ in 0..50 {
        assert_eq!(send(&mut w, get.clone(), OUT).0, Verdict::Drop(DropReason::SynProxyPending));
    }
    assert_eq!(w.counters().syn_resent.get(), 1);
    // A segment that returns no cookie: dropped.
    let odd = ipv4_frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg(40000, 80, tcpf::ACK, ISN + 5000, cookie + 1, 502, &ts(1113, our_ts), b"x"), true);
    assert_eq!(send(&mut w, odd, OUT).0, Verdict::Drop(DropReason::SynProxyPending));

    // The server's SYN-ACK (scale 9): the parked GET goes to it, carrying
    // the handshake's last ACK in the server's sequence space.
    let mut sopts = vec![2, 4, 0x05, 0xb4, 4, 2];
    sopts.extend(ts(9000, 1112));
    sopts.extend([1, 3, 3, 9]);
    let synack = ipv4_frame(SERVER_MAC[s], IN_MAC, server, CLIENT, 6, &seg(8080, 40000, tcpf::SYN | tcpf::ACK, S_ISN, ISN + 1, 65535, &sopts, b""), true);
    let (v, f) = send(&mut w, synack, IN);
    assert_eq!(v, Verdict::Forward(IN));
    assert_checksums(&f);
    assert_eq!(addr(&f, 30), server);
    let t = tcp_of(&f);
    assert_eq!((t.seq_number(), t.ack_number(), t.payload()), (ISN + 1, S_ISN + 1, &b"GET /\r\n\r\n"[..]));
    assert_eq!(TcpOptions::parse(t.options()).timestamp, Some((1113, 9000)), "TSecr in the server's clock");
    assert_eq!(w.table().iter().next().unwrap().1.state, FlowState::Established);
    assert_eq!(w.counters().syn_proxied.get(), 1);

    // The server's answer reaches the client in the cookie's sequence
    // space, its clock and window as the client knows them.
    let data = ipv4_frame(SERVER_MAC[s], IN_MAC, server, CLIENT, 6, &seg(8080, 40000, tcpf::ACK | tcpf::PSH, S_ISN + 1, ISN + 10, 100, &ts(9005, 1113), b"HTTP/1.0 200"), true);
    let (v, f) = send(&mut w, data, IN);
    assert_eq!(v, Verdict::Forward(OUT));
    assert_checksums(&f);
    assert_eq!((addr(&f, 26), addr(&f, 30)), (VIP, CLIENT));
    let t = tcp_of(&f);
    assert_eq!((t.seq_number(), t.ack_number(), t.window_len()), (cookie + 1, ISN + 10, 100 << 9 >> 7));
    assert_eq!(TcpOptions::parse(t.options()).timestamp, Some((our_ts + 5, 1113)));

    // The client's ACK, with a SACK block, goes the other way.
    let mut copts = ts(1114, our_ts + 5);
    copts.extend([1, 1, 5, 10]);
    copts.extend((cookie + 1).to_be_bytes());
    copts.extend((cookie + 13).to_be_bytes());
    let ack = ipv4_frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg(40000, 80, tcpf::ACK, ISN + 10, cookie + 13, 502, &copts, b""), true);
    let (v, f) = send(&mut w, ack, OUT);
    assert_eq!(v, Verdict::Forward(IN));
    assert_checksums(&f);
    let t = tcp_of(&f);
    assert_eq!(t.ack_number(), S_ISN + 13);
    let o = t.options();
    assert_eq!(&o[16..24], &[(S_ISN + 1).to_be_bytes(), (S_ISN + 13).to_be_bytes()].concat()[..], "SACK block in the server's space");

    // A reset from the server at its next byte ends it for the client.
    let rst = ipv4_frame(SERVER_MAC[s], IN_MAC, server, CLIENT, 6, &seg(8080, 40000, tcpf::RST, S_ISN + 13, 0, 0, &[], b""), true);
    let (v, f) = send(&mut w, rst, IN);
    assert_eq!(v, Verdict::Forward(OUT));
    assert_eq!(tcp_of(&f).seq_number(), cookie + 13);
    assert_eq!(w.table().iter().next().unwrap().1.state, FlowState::Close);
}

#[test]
fn without_timestamps_the_cookie_keeps_the_mss_only() {
    let mut w = worker(SynProxy::On, u32::MAX);
    let syn = ipv4_frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg(40001, 80, tcpf::SYN, ISN, 0, 64240, &[2, 4, 0x05, 0x78, 1, 3, 3, 7], b""), true);
    let (_, f) = send(&mut w, syn, OUT);
    let t = tcp_of(&f);
    let o = TcpOptions::parse(t.options());
    assert_eq!((o.wscale, o.timestamp), (None, None), "no scaling without a timestamp to carry it");
    let cookie = t.seq_number();
    let ack = ipv4_frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg(40001, 80, tcpf::ACK, ISN + 1, cookie + 1, 64240, &[], b""), true);
    let (v, f) = send(&mut w, ack, OUT);
    assert_eq!(v, Verdict::Forward(IN));
    let o = TcpOptions::parse(tcp_of(&f).options());
    assert_eq!((o.mss, o.wscale, o.sack_perm, o.timestamp), (Some(1300), None, false, None), "MSS 1400 kept as 1300, the table's");
    // The server answers: the box sends the ACK itself.
    let server = addr(&f, 30);
    let s = SRV.iter().position(|a| *a == server).unwrap();
    let synack = ipv4_frame(SERVER_MAC[s], IN_MAC, server, CLIENT, 6, &seg(8080, 40001, tcpf::SYN | tcpf::ACK, S_ISN, ISN + 1, 65535, &[2, 4, 0x05, 0xb4], b""), true);
    let (v, f) = send(&mut w, synack, IN);
    assert_eq!(v, Verdict::Forward(IN));
    assert_checksums(&f);
    let t = tcp_of(&f);
    assert_eq!((t.flags(), t.seq_number(), t.ack_number(), t.window_len()), (tcpf::ACK, ISN + 1, S_ISN + 1, 64240));
    assert_eq!(&f[0..6], &SERVER_MAC[s].0[..]);
}

/// The cookie key alone decides: the ACK of a cookie another box (the HA
/// peer, or this one before a restart) made under its own cookie key is
/// refused even when the flow-table keys are equal, as the pair's are; a
/// worker with the same cookie key and another flow-table key accepts it.
#[test]
fn a_cookie_checks_only_under_the_cookie_key_it_was_made_with() {
    let syn = ipv4_frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg(40002, 80, tcpf::SYN, ISN, 0, 64240, &[2, 4, 0x05, 0xb4], b""), true);
    let (_, f) = send(&mut worker(SynProxy::On, u32::MAX), syn, OUT);
    let cookie = tcp_of(&f).seq_number();
    let ack = || ipv4_frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg(40002, 80, tcpf::ACK, ISN + 1, cookie + 1, 64240, &[], b""), true);
    for other in [[COOKIE_KEY[0] ^ 1, COOKIE_KEY[1]], [COOKIE_KEY[0], COOKIE_KEY[1] ^ 1], [0xfeed, 0xfeed]] {
        let mut peer = worker_keyed(SynProxy::On, u32::MAX, 0xfeed, other);
        assert_eq!(send(&mut peer, ack(), OUT).0, Verdict::Drop(DropReason::SynCookieInvalid), "under {other:x?}");
        assert_eq!(peer.table().len(), 0);
    }
    let mut same = worker_keyed(SynProxy::On, u32::MAX, 0x1234, COOKIE_KEY);
    assert_eq!(send(&mut same, ack(), OUT).0, Verdict::Forward(IN));
}

#[test]
fn auto_turns_on_past_the_threshold() {
    let mut w = worker(SynProxy::Auto, 3);
    let syn = |p: u16| ipv4_frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg(p, 80, tcpf::SYN, ISN, 0, 64240, &[], b""), true);
    for p in 1..=3 {
        assert_eq!(send(&mut w, syn(p), OUT).0, Verdict::Forward(IN), "below the threshold: to a server");
    }
    assert_eq!(w.table().embryonic(), 3);
    let (v, f) = send(&mut w, syn(4), OUT);
    assert_eq!(v, Verdict::Forward(OUT), "answered with a cookie");
    assert_eq!(tcp_of(&f).flags(), tcpf::SYN | tcpf::ACK);
    assert_eq!(w.table().len(), 3);
    // An ACK that is no cookie, while cookies are out: named.
    let ack = ipv4_frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg(9, 80, tcpf::ACK, ISN + 1, 77, 100, &[], b""), true);
    assert_eq!(send(&mut w, ack, OUT).0, Verdict::Drop(DropReason::SynCookieInvalid));
}

/// The client's ACK lost, its first request opens the connection (it
/// returns the cookie too): the server's SYN-ACK still completes it.
#[test]
fn the_first_request_can_open_the_connection() {
    let mut w = worker(SynProxy::On, u32::MAX);
    let syn = ipv4_frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg(40002, 80, tcpf::SYN, ISN, 0, 64240, &[2, 4, 0x05, 0xb4], b""), true);
    let (_, f) = send(&mut w, syn, OUT);
    let cookie = tcp_of(&f).seq_number();
    let get = ipv4_frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg(40002, 80, tcpf::ACK | tcpf::PSH, ISN + 1, cookie + 1, 502, &[], b"GET /\r\n\r\n"), true);
    let (v, f) = send(&mut w, get, OUT);
    assert_eq!(v, Verdict::Forward(IN));
    assert_eq!(tcp_of(&f).flags(), tcpf::SYN);
    let server = addr(&f, 30);
    let s = SRV.iter().position(|a| *a == server).unwrap();
    let synack = ipv4_frame(SERVER_MAC[s], IN_MAC, server, CLIENT, 6, &seg(8080, 40002, tcpf::SYN | tcpf::ACK, S_ISN, ISN + 1, 65535, &[2, 4, 0x05, 0xb4], b""), true);
    let (v, f) = send(&mut w, synack, IN);
    assert_eq!(v, Verdict::Forward(IN), "the parked request goes to the server");
    let t = tcp_of(&f);
    assert_eq!((t.seq_number(), t.ack_number(), t.payload()), (ISN + 1, S_ISN + 1, &b"GET /\r\n\r\n"[..]));
}

/// No packets: a pass does the slow path only (sync installs).
struct Idle;

impl crate::io::PacketIo for Idle {
    type Pkt = TestPkt;
    fn rx_queues(&self) -> usize {
        0
    }
    fn rx_burst(&mut self, _q: usize, _b: &mut crate::io::Burst<TestPkt>) {}
    fn tx(&mut self, _port: u16, _p: TestPkt) {}
    fn punt(&mut self, p: TestPkt) -> Result<(), TestPkt> {
        Err(p)
    }
    fn flush(&mut self) -> crate::io::TxReport {
        crate::io::TxReport::default()
    }
}

/// State sync (review C5): a proxied connection's records carry its
/// translation, so the HA peer's copy goes on translating after a
/// failover instead of forwarding the server's own sequence numbers.
#[test]
fn a_proxied_connection_goes_on_translating_on_the_ha_peer() {
    use crate::conntrack::track::{PROXY_ON, PROXY_OPEN, PROXY_TS};
    use crate::ctl::events::{channel, SyncKind, SyncRecord};
    let (ev_p, mut events) = channel(64);
    let (_in_p, in_c) = channel(64);
    let mut a = worker(SynProxy::On, u32::MAX).with_sync(ev_p, in_c);
    let (b_ev_p, _b_events) = channel(64);
    let (mut b_installs, b_in_c) = channel(64);
    let mut b = worker(SynProxy::On, u32::MAX).with_sync(b_ev_p, b_in_c);

    // On A: SYN (timestamps, scale 6), the cookie's ACK, the server's
    // SYN-ACK (timestamps, scale 9).
    let mut opts = vec![2, 4, 0x05, 0xb4, 4, 2];
    opts.extend(ts(1111, 0));
    opts.extend([1, 3, 3, 6]);
    let (_, f) = send(&mut a, ipv4_frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg(40000, 80, tcpf::SYN, ISN, 0, 64240, &opts, b""), true), OUT);
    let t = tcp_of(&f);
    let cookie = t.seq_number();
    let our_ts = TcpOptions::parse(t.options()).timestamp.unwrap().0;
    let ack = ipv4_frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg(40000, 80, tcpf::ACK, ISN + 1, cookie + 1, 502, &ts(1112, our_ts), b""), true);
    let (v, f) = send(&mut a, ack, OUT);
    assert_eq!(v, Verdict::Forward(IN));
    let server = addr(&f, 30);
    let s = SRV.iter().position(|x| *x == server).unwrap();
    let mut sopts = vec![2, 4, 0x05, 0xb4, 4, 2];
    sopts.extend(ts(9000, 1112));
    sopts.extend([1, 3, 3, 9]);
    let synack = ipv4_frame(SERVER_MAC[s], IN_MAC, server, CLIENT, 6, &seg(8080, 40000, tcpf::SYN | tcpf::ACK, S_ISN, ISN + 1, 65535, &sopts, b""), true);
    assert_eq!(send(&mut a, synack, IN).0, Verdict::Forward(IN), "the handshake's last ACK, written by the box");

    // A's records: the Create once the cookie set the translation up, the
    // Update once the server answered; each through the wire form.
    let mut buf = [SyncRecord::EMPTY; 8];
    let n = events.pop_batch(&mut buf);
    let records = &buf[..n];
    assert_eq!(records.iter().map(|r| (r.kind, r.state)).collect::<Vec<_>>(), [(SyncKind::Create, FlowState::SynSent), (SyncKind::Update, FlowState::Established)]);
    assert!(records.iter().all(|r| r.flags & SyncRecord::FLAG_PROXIED != 0));
    let proxy = |r: &SyncRecord| r.tcp.and_then(|m| m.proxy).unwrap();
    assert_eq!((proxy(&records[0]).flags, proxy(&records[0]).seq_delta), (PROXY_ON | PROXY_TS, cookie), "before the answer: the cookie");
    let (id, _) = a.table().iter().next().unwrap();
    let at = *a.table().proxy(id).unwrap();
    let p = proxy(&records[1]);
    assert_eq!((p.flags, p.seq_delta, p.ts_delta, p.wscale), (PROXY_ON | PROXY_OPEN | PROXY_TS, at.seq_delta, at.ts_delta, at.proxy_wscale));
    let mut wire = [0u8; SyncRecord::MAX_WIRE_LEN];
    for r in records {
        let len = r.encode(&mut wire);
        assert_eq!(len, SyncRecord::MAX_WIRE_LEN);
        assert!(b_installs.push(SyncRecord::decode(&wire[..len]).unwrap()));
    }
    b.poll(&mut Idle, 1);
    assert_eq!(b.counters().sync.installed.get(), 2);

    // B's copy: proxied, the same translation.
    let (bid, bf) = b.table().iter().next().unwrap();
    assert!(bf.flags.contains(EntryFlags::SYN_PROXY));
    assert_eq!(bf.state, FlowState::Established);
    let bt = *b.table().proxy(bid).unwrap();
    assert_eq!((bt.seq_delta, bt.ts_delta, bt.proxy_wscale, bt.proxy), (at.seq_delta, at.ts_delta, at.proxy_wscale, at.proxy));

    // Failover: the server's data reaches the client through B in the
    // cookie's sequence space, its clock and window as the client knows
    // them, as A would have sent it.
    let data = ipv4_frame(SERVER_MAC[s], IN_MAC, server, CLIENT, 6, &seg(8080, 40000, tcpf::ACK | tcpf::PSH, S_ISN + 1, ISN + 1, 100, &ts(9005, 1112), b"HTTP/1.0 200"), true);
    let (v, f) = send(&mut b, data, IN);
    assert_eq!(v, Verdict::Forward(OUT));
    assert_checksums(&f);
    let t = tcp_of(&f);
    assert_eq!((t.seq_number(), t.ack_number(), t.window_len()), (cookie + 1, ISN + 1, 100 << 9 >> 7));
    assert_eq!(TcpOptions::parse(t.options()).timestamp, Some((our_ts + 5, 1112)));
    // And the client's ACK reaches the server in its space.
    let ack = ipv4_frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg(40000, 80, tcpf::ACK, ISN + 1, cookie + 13, 502, &ts(1114, our_ts + 5), b""), true);
    let (v, f) = send(&mut b, ack, OUT);
    assert_eq!(v, Verdict::Forward(IN));
    assert_checksums(&f);
    let t = tcp_of(&f);
    assert_eq!((t.ack_number(), TcpOptions::parse(t.options()).timestamp), (S_ISN + 13, Some((1114, 9005))));
}
