//! One probe's life: started on a shard with room (a socket reused or
//! made, a source port from its server's rotation), moved on when it has
//! news or its deadline passed, judged.

use super::super::judge::{contains, judge_http, kill_group, Outcome};
use super::super::stack::{Opening, Shard, ICMP, TCP, UDP};
use super::{Change, NotStarted, Pending, Probe, Probes};
use crate::config::{CheckKind, HealthCheck};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::{icmp, tcp, udp};
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpAddress};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bytes of a response kept for matching (status line, body substring).
const RESPONSE_MAX: usize = 16 * 1024;

impl Probes {
    /// Answers the workers received up to `horizon` have all been
    /// delivered (`on_frame`), later ones may still wait in a punt ring:
    /// a deadline is judged passed only once the horizon is past it, so
    /// an answer that arrived in time is not a timeout because the
    /// control loop was held up. None: every answer received is in (the
    /// rings were drained), deadlines go by now.
    pub fn judge_by(&mut self, horizon: Option<Instant>) {
        self.horizon = horizon;
    }

    /// The time deadlines are judged against at `now` (`judge_by`).
    pub(super) fn judged_at(&self, now: Instant) -> Instant {
        self.horizon.map_or(now, |h| h.min(now))
    }

    /// Starts check `ci` of target `ti`: the new probe's id, or why it
    /// could not start (a failure).
    pub(super) fn start(&mut self, ti: usize, ci: usize, now: Instant) -> Result<usize, NotStarted> {
        let t = self.targets.get(ti).ok_or(NotStarted::Shortage("no target"))?;
        let check = t.target.checks.get(ci).ok_or(NotStarted::Shortage("no check"))?;
        let deadline = now + Duration::from_millis(u64::from((*check.timeout_ms.get_ref()).max(1)));
        let probe = |at, mac, pending| Probe { target: ti, check: ci, at, mac, started: now, times: Legs::default(), deadline, serial: 0, pending, touched: false, via: false };
        if check.kind == CheckKind::Script {
            let child = spawn(check, t)?;
            let pid = self.insert(probe(None, [0; 6], Pending::Script { child }));
            self.scripts.push(pid);
            return Ok(pid);
        }
        // The appliance's ARP keeps the server's next hop resolved.
        let mac = self.neighbors.get(t.target.nexthop).ok_or_else(|| NotStarted::Unreachable("unresolved".into()))?.0;
        let (link, via) = (t.target.link, t.target.via);
        let si = self.shard_with_room(link, now).ok_or(NotStarted::Shortage("no link"))?;
        let (key, handle, pending) = self.open_socket(ti, ci, link, si)?;
        let mut p = probe(Some((link, si, handle, key)), mac, pending);
        p.via = via.is_some() && key.proto != ICMP;
        let pid = self.insert(p);
        self.open.insert(key, pid);
        if let (Some(_), std::net::IpAddr::V4(peer)) = (via.filter(|_| key.proto != ICMP), key.peer) {
            self.via.set(key.local, peer, via);
        }
        Ok(pid)
    }

    /// A shard of link `li` with room for one more socket (a new one when
    /// all are full).
    fn shard_with_room(&mut self, li: usize, now: Instant) -> Option<usize> {
        let epoch = self.epoch;
        let seed = self.draw();
        let l = self.links.get_mut(li)?;
        // The last shard that had room usually still has; else the newest
        // with room (shards are at most MAX_IN_FLIGHT / 32, whatever the
        // number of servers), else a new one.
        if l.shards.get(l.room).is_some_and(Shard::has_room) {
            return Some(l.room);
        }
        let i = match l.shards.iter().rposition(Shard::has_room) {
            Some(i) => i,
            None => {
                l.shards.push(Shard::new(&l.link, epoch, now, seed));
                l.shards.len() - 1
            }
        };
        l.room = i;
        Some(i)
    }

    /// The socket of check `ci` of target `ti` on shard `si` of link
    /// `li`: connected (TCP), bound with its datagram queued (UDP), bound
    /// to its identifier (ICMP).
    fn open_socket(&mut self, ti: usize, ci: usize, li: usize, si: usize) -> Result<(Opening, SocketHandle, Pending), NotStarted> {
        // An echo probe's identifier, sequence number and payload, drawn
        // from the engine's secret: a spoofed reply must guess all three.
        let draws = (self.draw(), self.draw());
        let (open, vias) = (&self.open, &self.via);
        let t = self.targets.get_mut(ti).ok_or(NotStarted::Shortage("no target"))?;
        let check = t.target.checks.get(ci).ok_or(NotStarted::Shortage("no check"))?;
        let peer_port = check.port.as_ref().map_or(t.target.addr.port(), |p| *p.get_ref());
        let peer = t.target.addr.ip();
        let shard = self.links.get_mut(li).and_then(|l| l.shards.get_mut(si)).ok_or(NotStarted::Shortage("no link"))?;
        let proto = match check.kind {
            CheckKind::Udp => UDP,
            CheckKind::Icmp => ICMP,
            _ => TCP,
        };
        if proto == ICMP {
            let mut ident = (draws.0 as u16).max(1);
            while open.contains_key(&Opening { proto, local: ident, peer, peer_port: 0 }) {
                ident = ident.wrapping_add(1).max(1);
            }
            let (seq_no, nonce) = ((draws.0 >> 16) as u16, draws.1.to_ne_bytes());
            let meta = vec![icmp::PacketMetadata::EMPTY; 4];
            let mut sock = icmp::Socket::new(icmp::PacketBuffer::new(meta.clone(), vec![0; 1024]), icmp::PacketBuffer::new(meta, vec![0; 1024]));
            sock.bind(icmp::Endpoint::Ident(ident)).map_err(|_| NotStarted::Shortage("bind"))?;
            let caps = smoltcp::phy::ChecksumCapabilities::default();
            match peer {
                std::net::IpAddr::V4(peer4) => {
                    let repr = Icmpv4Repr::EchoRequest { ident, seq_no, data: &nonce };
                    let buf = sock.send(repr.buffer_len(), IpAddress::Ipv4(peer4)).map_err(|_| NotStarted::Shortage("send"))?;
                    repr.emit(&mut Icmpv4Packet::new_unchecked(buf), &caps);
                }
                // ICMPv6 echo (RFC 4443 §4.1): the stack fills the source
                // and the checksum over the pseudo header when it sends.
                std::net::IpAddr::V6(peer6) => {
                    let repr = Icmpv6Repr::EchoRequest { ident, seq_no, data: &nonce };
                    let buf = sock.send(repr.buffer_len(), IpAddress::Ipv6(peer6)).map_err(|_| NotStarted::Shortage("send"))?;
                    repr.emit(&std::net::Ipv6Addr::UNSPECIFIED, &peer6, &mut Icmpv6Packet::new_unchecked(buf), &caps);
                }
            }
            let handle = shard.add(sock);
            shard.dirty = true;
            return Ok((Opening { proto, local: ident, peer, peer_port: 0 }, handle, Pending::Icmp { ident, seq_no, nonce }));
        }
        let local = t.ports.next(|p| open.contains_key(&Opening { proto, local: p, peer, peer_port }) || vias.holds(p)).ok_or(NotStarted::Shortage("no free port"))?;
        let key = Opening { proto, local, peer, peer_port };
        if proto == UDP {
            let meta = vec![udp::PacketMetadata::EMPTY; 4];
            let mut sock = udp::Socket::new(udp::PacketBuffer::new(meta.clone(), vec![0; 2048]), udp::PacketBuffer::new(meta, vec![0; 2048]));
            sock.bind(local).map_err(|_| NotStarted::Shortage("bind"))?;
            let payload = check.send.clone().unwrap_or_else(|| "ping".into());
            sock.send_slice(payload.as_bytes(), (IpAddress::from(peer), peer_port)).map_err(|_| NotStarted::Shortage("send"))?;
            let handle = shard.add(sock);
            shard.dirty = true;
            return Ok((key, handle, Pending::Udp));
        }
        let handle = shard.tcp_socket();
        let cx = shard.iface.context();
        if shard.sockets.get_mut::<tcp::Socket>(handle).connect(cx, (IpAddress::from(peer), peer_port), local).is_err() {
            shard.close(handle, true);
            return Err(NotStarted::Shortage("connect refused by the probe stack"));
        }
        shard.dirty = true;
        Ok((key, handle, Pending::Tcp { sent: false, response: Vec::new(), established: false }))
    }

    /// Moves probe `pid` on; judged, it ends and counts.
    pub(super) fn advance(&mut self, pid: usize, now: Instant, changes: &mut Vec<Change>) {
        // A deadline passes by the horizon of what has been delivered.
        let judged = self.judged_at(now);
        let Some(p) = self.probes.get_mut(pid).and_then(Option::as_mut) else { return };
        if matches!(p.pending, Pending::Done) {
            return;
        }
        let Some(check) = self.targets.get(p.target).and_then(|t| t.target.checks.get(p.check)) else {
            // Its target or check went without stopping it: end it here,
            // so nothing it holds (socket, port, in-flight slot) leaks.
            self.stop(pid);
            return;
        };
        let timed_out = judged >= p.deadline;
        let rtt = p.times.rtt(p.started, now);
        let outcome = match p.at {
            None => script(&mut p.pending, timed_out, rtt),
            Some((li, si, h, _)) => {
                let Some(shard) = self.links.get_mut(li).and_then(|l| l.shards.get_mut(si)) else { return };
                let outcome = match &mut p.pending {
                    Pending::Tcp { sent, response, established } => {
                        let was_sent = *sent;
                        let o = tcp_step(check, shard, h, sent, response, established, timed_out, rtt);
                        // The handshake's answer, and the request's
                        // departure to come: the two legs of the RTT.
                        if *established && p.times.answered.is_none() {
                            p.times.answered = p.times.heard;
                        }
                        p.times.request_next |= *sent && !was_sent;
                        o
                    }
                    Pending::Udp => udp_step(check, shard, h, timed_out, rtt),
                    Pending::Icmp { ident, seq_no, nonce } => icmp_step(shard, h, (*ident, *seq_no, nonce), p.at.map(|a| a.3.peer), timed_out, rtt),
                    _ => None,
                };
                if outcome.is_some() {
                    shard.close(h, matches!(p.pending, Pending::Tcp { .. }));
                }
                outcome
            }
        };
        let Some(outcome) = outcome else { return };
        p.pending = Pending::Done;
        let (ti, ci) = (p.target, p.check);
        self.finished.push(pid);
        if let Some(st) = self.targets.get_mut(ti).and_then(|t| t.checks.get_mut(ci)) {
            st.probe = None;
        }
        self.record(ti, ci, outcome, changes);
    }
}

/// When a probe's frames crossed the box: departures as the control
/// lcore hands them to the link, arrivals as a worker received them (its
/// stamp, `Runtime::punted_at`).
#[derive(Debug, Default, Clone, Copy)]
pub(in crate::modules::health) struct Legs {
    /// Its first frame's departure, and its last answer's arrival.
    pub(super) sent: Option<Instant>,
    pub(super) heard: Option<Instant>,
    /// An exchange of two round trips (http, send-expect): the arrival of
    /// the handshake's answer and the departure of the request. The box's
    /// own time between the two (a turn of the control loop, however long)
    /// is not the server's, so the RTT is the sum of the two legs.
    pub(super) answered: Option<Instant>,
    pub(super) request: Option<Instant>,
    /// The next departure is the request's.
    pub(super) request_next: bool,
}

impl Legs {
    /// Which departure the probe's next frame is, if the RTT counts it:
    /// the first (false) or the request's (true).
    pub(super) fn wanted(&mut self) -> Option<bool> {
        if self.sent.is_none() {
            Some(false)
        } else {
            std::mem::take(&mut self.request_next).then_some(true)
        }
    }

    /// A frame `wanted` named left at `now`.
    pub(super) fn departed(&mut self, request: bool, now: Instant) {
        let at = if request { &mut self.request } else { &mut self.sent };
        at.get_or_insert(now);
    }

    /// The RTT: the two legs when both are known, else first departure to
    /// last arrival, else the time since the probe started.
    pub(super) fn rtt(&self, started: Instant, now: Instant) -> Duration {
        let leg = |from: Option<Instant>, to: Option<Instant>| from.zip(to).and_then(|(f, t)| t.checked_duration_since(f));
        match (leg(self.sent, self.answered), leg(self.request, self.heard)) {
            (Some(first), Some(second)) => first + second,
            _ => leg(self.sent, self.heard).unwrap_or_else(|| now.saturating_duration_since(started)),
        }
    }
}

/// Runs a script check's command (`/bin/sh -c`).
fn spawn(check: &HealthCheck, t: &super::TargetState) -> Result<std::process::Child, NotStarted> {
    let port = check.port.as_ref().map_or(t.target.addr.port(), |p| *p.get_ref());
    Command::new("/bin/sh")
        .args(["-c", check.command.as_deref().unwrap_or_default()])
        // Its own process group: a timeout kills what the shell started
        // too (dash forks even for `sh -c 'sleep 30'`).
        .process_group(0)
        .env("FURIWAKE_SERVER_IP", t.target.addr.ip().to_string())
        .env("FURIWAKE_SERVER_PORT", port.to_string())
        .env("FURIWAKE_VIP", t.target.via.map(|v| v.vip.to_string()).unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| match e.raw_os_error() {
            // The box short of processes, memory or descriptors: not the
            // server's fault.
            Some(libc::EAGAIN | libc::ENOMEM | libc::EMFILE | libc::ENFILE) => NotStarted::Shortage("script not started: no process"),
            // Anything else (the shell missing, a command it cannot take)
            // would fail every time: a failure, with its reason.
            _ => NotStarted::Unreachable(format!("script not started: {e}")),
        })
}

fn script(pending: &mut Pending, timed_out: bool, elapsed: Duration) -> Option<Outcome> {
    let Pending::Script { child } = pending else { return None };
    match child.try_wait() {
        Ok(Some(status)) => Some(match status.code() {
            Some(0) => Outcome::Pass(elapsed),
            Some(n) => Outcome::Fail(format!("script exit {n}")),
            None => Outcome::Fail("script killed".into()),
        }),
        _ if timed_out => {
            kill_group(child);
            Some(Outcome::Fail("script timeout".into()))
        }
        _ => None,
    }
}

fn udp_step(check: &HealthCheck, shard: &mut Shard, h: SocketHandle, timed_out: bool, rtt: Duration) -> Option<Outcome> {
    let sock = shard.sockets.get_mut::<udp::Socket>(h);
    match sock.recv().ok().map(|(d, _)| d.to_vec()) {
        Some(d) => Some(match &check.expect {
            Some(e) if !contains(&d, e.as_bytes()) => Outcome::Fail("expect mismatch".into()),
            _ => Outcome::Pass(rtt),
        }),
        None if timed_out => Some(Outcome::Fail("timeout".into())),
        None => None,
    }
}

/// An echo probe: passed by the reply that carries its identifier,
/// sequence number and payload, from its server.
fn icmp_step(shard: &mut Shard, h: SocketHandle, sent: (u16, u16, &[u8; 8]), target: Option<std::net::IpAddr>, timed_out: bool, rtt: Duration) -> Option<Outcome> {
    let sock = shard.sockets.get_mut::<icmp::Socket>(h);
    let caps = smoltcp::phy::ChecksumCapabilities::default();
    let mut result = None;
    while let Ok((data, from)) = sock.recv() {
        let ours = match from {
            IpAddress::Ipv4(_) => {
                let reply = Icmpv4Packet::new_checked(data).ok().and_then(|pkt| Icmpv4Repr::parse(&pkt, &caps).ok());
                matches!(reply, Some(Icmpv4Repr::EchoReply { ident, seq_no, data }) if (ident, seq_no, data) == (sent.0, sent.1, &sent.2[..]))
            }
            // (The stack checked the checksum when the reply came in.)
            IpAddress::Ipv6(from6) => {
                let reply = Icmpv6Packet::new_checked(data).ok().and_then(|pkt| Icmpv6Repr::parse(&from6, &std::net::Ipv6Addr::UNSPECIFIED, &pkt, &smoltcp::phy::ChecksumCapabilities::ignored()).ok());
                matches!(reply, Some(Icmpv6Repr::EchoReply { ident, seq_no, data }) if (ident, seq_no, data) == (sent.0, sent.1, &sent.2[..]))
            }
        };
        if ours && Some(from) == target.map(IpAddress::from) {
            result = Some(Outcome::Pass(rtt));
        }
    }
    result.or_else(|| timed_out.then(|| Outcome::Fail("timeout".into())))
}

/// A TCP probe (tcp, http, send-expect) with its news: established,
/// request sent, answer read and judged.
#[allow(clippy::too_many_arguments, reason = "the probe's parts, borrowed apart from the engine")]
fn tcp_step(check: &HealthCheck, shard: &mut Shard, h: SocketHandle, sent: &mut bool, response: &mut Vec<u8>, established: &mut bool, timed_out: bool, rtt: Duration) -> Option<Outcome> {
    let sock = shard.sockets.get_mut::<tcp::Socket>(h);
    let state = sock.state();
    if !*established && matches!(state, tcp::State::Established | tcp::State::CloseWait) {
        *established = true;
    }
    let result = match check.kind {
        CheckKind::Tcp => established.then_some(Outcome::Pass(rtt)),
        _ if !*established => None,
        _ => {
            if !*sent && sock.may_send() {
                let req = match check.kind {
                    CheckKind::Http => Some(check.request.as_deref().unwrap_or("GET / HTTP/1.0\r\n\r\n")),
                    _ => check.send.as_deref(),
                };
                if let Some(r) = req {
                    let _ = sock.send_slice(r.as_bytes());
                    shard.dirty = true;
                }
                *sent = true;
            }
            read_answer(check, sock, response, timed_out, rtt)
        }
    };
    let result = result.or_else(|| {
        // No socket timeout is set, so a connection attempt that closed
        // before our deadline was answered with a RST.
        if !*established && state == tcp::State::Closed {
            Some(Outcome::Fail("refused".into()))
        } else {
            timed_out.then(|| Outcome::Fail("timeout".into()))
        }
    });
    if result.is_some() {
        // RST: a probe leaves no state on the server.
        shard.sockets.get_mut::<tcp::Socket>(h).abort();
    }
    result
}

/// What the server said so far, judged when it is all in (the server
/// closed, or the deadline came with something said).
fn read_answer(check: &HealthCheck, sock: &mut tcp::Socket, response: &mut Vec<u8>, timed_out: bool, rtt: Duration) -> Option<Outcome> {
    let mut buf = [0u8; 2048];
    while sock.can_recv() {
        match sock.recv_slice(&mut buf) {
            Ok(n) if n > 0 => {
                let room = RESPONSE_MAX.saturating_sub(response.len());
                response.extend_from_slice(buf.get(..n.min(room)).unwrap_or_default());
            }
            _ => break,
        }
    }
    if check.kind == CheckKind::SendExpect {
        let expect = check.expect.as_deref().unwrap_or_default();
        if contains(response, expect.as_bytes()) {
            Some(Outcome::Pass(rtt))
        } else {
            (!sock.may_recv()).then(|| Outcome::Fail("expect mismatch".into()))
        }
    } else if !sock.may_recv() || (timed_out && !response.is_empty()) {
        // The server closed: the whole response is in.
        Some(judge_http(check, response, rtt))
    } else {
        None
    }
}
