//! The PROXY header through the pipeline: a full-NAT connection whose
//! client stream starts with it, the numbers of both sides lined up, an
//! ICMP error's quote, and its sync record.

use super::super::fuzz::TestPkt;
use super::super::tests::{addr, assert_checksums, ip, snapshot, CLIENT, CLIENT_MAC, IN, IN_MAC, OUT, OUT_MAC, SELF_IN, SERVER_MAC, SRV, VIP};
use super::super::*;
use crate::conntrack::FlowState;
use crate::ctl::events::{SyncKind, SyncRecord};
use crate::forward::proxy_header::{v2, LEN};
use crate::state::rcu::rcu;
use crate::state::snapshot::SynProxy;
use crate::testkit::ipv4_frame;
use crate::wire::tcp::{flags as tcpf, TcpPacket};

fn worker() -> Worker {
    let mut snap = snapshot();
    // VIP:81, full-NAT.
    snap.services[1].proxy_header = true;
    snap.services[1].syn_proxy = SynProxy::Off;
    let (publisher, mut readers) = rcu(Box::new(snap), 1);
    std::mem::forget(publisher);
    let n = Arc::new(Neighbors::new(4));
    n.set(0, SERVER_MAC[0]);
    n.set(1, SERVER_MAC[1]);
    Worker::new(WorkerConfig { flows: 64, hash_key: 7, ..WorkerConfig::default() }, readers.remove(0), n)
}

fn seg(sport: u16, dport: u16, flags: u8, seq: u32, ack: u32, opts: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = (((20 + opts.len()) / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    t.extend_from_slice(opts);
    t.extend_from_slice(payload);
    t
}

fn send(w: &mut Worker, frame: Vec<u8>, port: u16) -> (Verdict, Vec<u8>) {
    let mut p = TestPkt { data: frame, cap: 2048, head: 128, port };
    let v = w.process_packet(&mut p, false);
    (v, p.data)
}

fn tcp_of(f: &[u8]) -> TcpPacket<&[u8]> {
    let hl = usize::from(f[14] & 0x0f) * 4;
    let end = 14 + usize::from(u16::from_be_bytes([f[16], f[17]]));
    TcpPacket::new_checked(&f[14 + hl..end]).unwrap()
}

/// Across the sequence-space wrap.
const ISN: u32 = 0xffff_fff0;
const S_ISN: u32 = 0x7000_0000;
const SPORT: u16 = 40000;

fn client(flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    ipv4_frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg(SPORT, 81, flags, seq, ack, &[], payload), true)
}

#[test]
fn the_client_stream_starts_with_the_header_and_both_sides_numbers_line_up() {
    let mut w = worker();
    let p = ISN.wrapping_add(1);
    // The SYN goes as it came (its MSS too).
    let (v, f) = send(&mut w, ipv4_frame(CLIENT_MAC, OUT_MAC, CLIENT, VIP, 6, &seg(SPORT, 81, tcpf::SYN, ISN, 0, &[2, 4, 0x05, 0xb4], b""), true), OUT);
    assert_eq!(v, Verdict::Forward(IN));
    assert_eq!((addr(&f, 26), addr(&f, 30)), (SELF_IN, SRV[0]));
    let lport = u16::from_be_bytes([f[34], f[35]]);
    assert_eq!(tcp_of(&f).seq_number(), ISN);
    // The SYN-ACK: the client is told an MSS the header's length smaller.
    let server = |flags: u8, seq: u32, ack: u32, opts: &[u8]| ipv4_frame(SERVER_MAC[0], IN_MAC, SRV[0], SELF_IN, 6, &seg(8080, lport, flags, seq, ack, opts, b""), true);
    let (v, f) = send(&mut w, server(tcpf::SYN | tcpf::ACK, S_ISN, p, &[2, 4, 0x05, 0xb4]), IN);
    assert_eq!(v, Verdict::Forward(OUT));
    assert_checksums(&f);
    assert_eq!(tcp_of(&f).ack_number(), p);
    assert_eq!(u16::from_be_bytes([f[54 + 2], f[54 + 3]]), 1460 - LEN as u16, "MSS");
    // The handshake's last ACK carries the header.
    let header = v2(ip(CLIENT), SPORT, ip(VIP), 81);
    let (v, f) = send(&mut w, client(tcpf::ACK, p, S_ISN + 1, b""), OUT);
    assert_eq!(v, Verdict::Forward(IN));
    assert_checksums(&f);
    assert_eq!(tcp_of(&f).seq_number(), p);
    assert_eq!(tcp_of(&f).payload(), &header[..]);
    assert_eq!(w.table().get(0).map(|e| e.state), Some(FlowState::Established));
    // The first data, before the server acknowledged the header: the
    // header again in front (the same bytes at the same place).
    let (v, f) = send(&mut w, client(tcpf::ACK | tcpf::PSH, p, S_ISN + 1, b"GET"), OUT);
    assert_eq!(v, Verdict::Forward(IN));
    assert_checksums(&f);
    assert_eq!(tcp_of(&f).payload(), [&header[..], b"GET"].concat());
    // The server acknowledges the header and "GET", with a SACK block: the
    // client sees its own numbers.
    let mut sack = vec![1, 1, 5, 10];
    sack.extend_from_slice(&p.wrapping_add(LEN + 10).to_be_bytes());
    sack.extend_from_slice(&p.wrapping_add(LEN + 20).to_be_bytes());
    let (v, f) = send(&mut w, server(tcpf::ACK, S_ISN + 1, p.wrapping_add(LEN + 3), &sack), IN);
    assert_eq!(v, Verdict::Forward(OUT));
    assert_checksums(&f);
    let t = tcp_of(&f);
    assert_eq!(t.ack_number(), p.wrapping_add(3));
    assert_eq!(&t.options()[4..12], [p.wrapping_add(10).to_be_bytes(), p.wrapping_add(20).to_be_bytes()].concat());
    // Later data moves up by the header; the first again (a
    // retransmission once acknowledged) too, without the header.
    let (v, f) = send(&mut w, client(tcpf::ACK | tcpf::PSH, p.wrapping_add(3), S_ISN + 1, b"more"), OUT);
    assert_eq!(v, Verdict::Forward(IN));
    assert_checksums(&f);
    assert_eq!((tcp_of(&f).seq_number(), tcp_of(&f).payload()), (p.wrapping_add(3 + LEN), &b"more"[..]));
    let (_, f) = send(&mut w, client(tcpf::ACK | tcpf::PSH, p, S_ISN + 1, b"GET"), OUT);
    assert_eq!((tcp_of(&f).seq_number(), tcp_of(&f).payload()), (p.wrapping_add(LEN), &b"GET"[..]));
    // The entry's sync record says where the header goes; the peer's copy
    // reads it back.
    let (e, t) = (*w.table().get(0).unwrap(), w.table().track(0).unwrap());
    let rec = SyncRecord::of_flow(SyncKind::Update, &e, Some(&t), w.table().proxy(0), 0);
    assert_ne!(rec.flags & SyncRecord::FLAG_PROXY_HEADER, 0);
    let mut buf = [0u8; SyncRecord::MAX_WIRE_LEN];
    let n = rec.encode(&mut buf);
    let back = SyncRecord::decode(&buf[..n]).expect("decodes");
    assert_eq!(back.tcp.and_then(|m| m.proxy).map(|x| x.seq_delta), Some(p));
    assert_eq!(back, rec);
    // A record that says both (SYN proxy and header) is refused.
    buf[5] |= SyncRecord::FLAG_PROXIED;
    assert_eq!(SyncRecord::decode(&buf[..n]), None);
    // The client's reset is judged in its own numbers: passed on, moved.
    let (v, f) = send(&mut w, client(tcpf::RST, p.wrapping_add(7), 0, b""), OUT);
    assert_eq!(v, Verdict::Forward(IN));
    assert_eq!(tcp_of(&f).seq_number(), p.wrapping_add(7 + LEN));
}

#[test]
fn a_buffer_without_room_is_dropped_by_name() {
    let mut w = worker();
    let p = ISN.wrapping_add(1);
    let (_, f) = send(&mut w, client(tcpf::SYN, ISN, 0, b""), OUT);
    let lport = u16::from_be_bytes([f[34], f[35]]);
    let synack = ipv4_frame(SERVER_MAC[0], IN_MAC, SRV[0], SELF_IN, 6, &seg(8080, lport, tcpf::SYN | tcpf::ACK, S_ISN, p, &[], b""), true);
    send(&mut w, synack, IN);
    let frame = client(tcpf::ACK, p, S_ISN + 1, b"");
    let mut cramped = TestPkt { cap: frame.len(), data: frame, head: 128, port: OUT };
    assert_eq!(w.process_packet(&mut cramped, false), Verdict::Drop(DropReason::ProxyHeaderNoRoom));
}

/// SYN, SYN-ACK (MSS 1460) through a fresh worker: the local port.
fn opened(w: &mut Worker) -> u16 {
    let (_, f) = send(w, client(tcpf::SYN, ISN, 0, b""), OUT);
    let lport = u16::from_be_bytes([f[34], f[35]]);
    let synack = ipv4_frame(SERVER_MAC[0], IN_MAC, SRV[0], SELF_IN, 6, &seg(8080, lport, tcpf::SYN | tcpf::ACK, S_ISN, ISN.wrapping_add(1), &[2, 4, 0x05, 0xb4], b""), true);
    assert_eq!(send(w, synack, IN).0, Verdict::Forward(OUT));
    lport
}

/// The review's attacks (issue 21): data of the client's own before the
/// header, data on a SYN, a SYN that would move the header once the server
/// has answered, a reset at the header's place, a segment the header
/// would take past the MTU.
#[test]
fn a_client_cannot_put_anything_before_the_header_or_move_it() {
    let mut w = worker();
    let p = ISN.wrapping_add(1);
    // TCP Fast Open: data on the SYN would reach the server first.
    let (v, _) = send(&mut w, client(tcpf::SYN, ISN, 0, b"\r\n\r\n\0\r\nQUIT\n"), OUT);
    assert_eq!(v, Verdict::Drop(DropReason::ProxyHeaderOrder));
    opened(&mut w);
    // One byte before P and a forged header after it: the server would
    // take what lies from P on before the box's header.
    let (v, _) = send(&mut w, client(tcpf::ACK | tcpf::PSH, ISN, S_ISN + 1, b"x\r\n\r\n\0\r\nQUIT\n"), OUT);
    assert_eq!(v, Verdict::Drop(DropReason::ProxyHeaderOrder));
    // A keep-alive probe at P - 1 without data passes untouched.
    let (v, f) = send(&mut w, client(tcpf::ACK, ISN, S_ISN + 1, b""), OUT);
    assert_eq!(v, Verdict::Forward(IN));
    assert_eq!(tcp_of(&f).seq_number(), ISN);
    // A SYN with another ISN once the server has answered moves nothing.
    send(&mut w, client(tcpf::SYN, 0x1234_5678, 0, b""), OUT);
    let (v, f) = send(&mut w, client(tcpf::ACK, p, S_ISN + 1, b""), OUT);
    assert_eq!(v, Verdict::Forward(IN));
    assert_eq!(tcp_of(&f).payload(), &v2(ip(CLIENT), SPORT, ip(VIP), 81)[..], "the header still goes at the first P");
    // A reset at P before the header: unshifted.
    let (v, f) = send(&mut w, client(tcpf::RST, p, 0, b""), OUT);
    assert_eq!(v, Verdict::Forward(IN));
    assert_eq!(tcp_of(&f).seq_number(), p);
}

#[test]
fn a_segment_the_header_would_take_past_the_mtu_is_dropped() {
    let mut w = worker();
    let p = ISN.wrapping_add(1);
    opened(&mut w);
    // 1460 bytes: the client ignored the 1432 it was told.
    let (v, _) = send(&mut w, client(tcpf::ACK | tcpf::PSH, p, S_ISN + 1, &[b'a'; 1460]), OUT);
    assert_eq!(v, Verdict::Drop(DropReason::ProxyHeaderTooBig));
    let (v, f) = send(&mut w, client(tcpf::ACK | tcpf::PSH, p, S_ISN + 1, &[b'a'; 1432]), OUT);
    assert_eq!(v, Verdict::Forward(IN));
    assert_eq!(f.len(), 14 + 1500);
    assert_checksums(&f);
}

#[test]
fn once_acknowledged_every_number_moves_far_past_two_gigabytes() {
    let mut w = worker();
    let p = ISN.wrapping_add(1);
    let lport = opened(&mut w);
    send(&mut w, client(tcpf::ACK, p, S_ISN + 1, b""), OUT);
    let ack = ipv4_frame(SERVER_MAC[0], IN_MAC, SRV[0], SELF_IN, 6, &seg(8080, lport, tcpf::ACK, S_ISN + 1, p.wrapping_add(LEN), &[], b""), true);
    assert_eq!(send(&mut w, ack, IN).0, Verdict::Forward(OUT));
    // 3 GB into the stream (tracking calls it implausible and passes it).
    let far = p.wrapping_add(3_000_000_000);
    let (v, f) = send(&mut w, client(tcpf::ACK | tcpf::PSH, far, S_ISN + 1, b"x"), OUT);
    assert_eq!(v, Verdict::Forward(IN));
    assert_eq!(tcp_of(&f).seq_number(), far.wrapping_add(LEN));
    let back = ipv4_frame(SERVER_MAC[0], IN_MAC, SRV[0], SELF_IN, 6, &seg(8080, lport, tcpf::ACK, S_ISN + 1, far.wrapping_add(LEN + 1), &[], b""), true);
    let (v, f) = send(&mut w, back, IN);
    assert_eq!(v, Verdict::Forward(OUT));
    assert_eq!(tcp_of(&f).ack_number(), far.wrapping_add(1));
}
