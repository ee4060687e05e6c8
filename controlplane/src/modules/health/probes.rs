//! The probe engine: per server and check, a probe every `interval_ms`
//! (TCP connect, HTTP, send/expect, UDP, ICMP echo, script), judged,
//! counted towards `rise`/`fall`, and the server's state changes.

use super::judge::{contains, judge_http, kill_group, Outcome};
use super::stack::{smol_now, Opening, ProbeLink, Stack, ICMP, TCP, UDP};
use super::via::{Via, ViaPorts};
use crate::config::{CheckKind, HealthCheck};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::{icmp, tcp, udp};
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpAddress, Ipv4Address};
use std::net::SocketAddrV4;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Source ports of probes: above the full-NAT range (`forward::LOCAL_PORT_MAX`),
/// so replies never match a full-NAT connection and are punted to us.
const PROBE_PORT_MIN: u16 = furiwake_dataplane::forward::PROBE_PORT_MIN;
const PROBE_PORT_MAX: u16 = u16::MAX;
/// Bytes of a response kept for matching (status line, body substring).
const RESPONSE_MAX: usize = 16 * 1024;

/// One server to watch: its snapshot index, where it is, and its checks.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: usize,
    pub pool: String,
    pub addr: SocketAddrV4,
    pub link: usize,
    pub checks: Vec<HealthCheck>,
    /// A direct-server-return server: TCP and UDP probes go to the VIP it
    /// holds, as clients reach it (`via`).
    pub via: Option<Via>,
}

/// A state change, for the log and the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub target: usize,
    pub up: bool,
    /// Why it went down (timeout, refused, bad status N, body mismatch,
    /// expect mismatch, script exit N, script timeout, unreachable).
    pub reason: String,
    pub rtt: Option<Duration>,
}


enum Pending {
    Tcp { handle: SocketHandle, link: usize, sent: bool, response: Vec<u8>, established: Option<Instant> },
    Udp { handle: SocketHandle, link: usize },
    Icmp { handle: SocketHandle, link: usize, ident: u16, sent: bool, target: Ipv4Address },
    Script { child: Child },
}

struct Probe {
    started: Instant,
    deadline: Instant,
    pending: Pending,
}

#[derive(Default)]
struct CheckState {
    ok_run: u32,
    fail_run: u32,
    passing: bool,
    next_at: Option<Instant>,
    probe: Option<Probe>,
    last_reason: String,
}

struct TargetState {
    target: Target,
    checks: Vec<CheckState>,
    up: bool,
    rtt_ewma_us: Option<f64>,
}

/// One check of one server as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckStatus {
    pub name: String,
    pub kind: CheckKind,
    /// Counts toward the server being up (after `rise` successes).
    pub passing: bool,
    /// Consecutive successes / failures so far (one of them is 0).
    pub ok_run: u32,
    pub fail_run: u32,
    /// Why the last failure failed (kept after later successes).
    pub last_reason: String,
}

impl CheckStatus {
    /// `ok`, `fail: REASON`, or `pending` before the first result.
    pub fn last_result(&self) -> String {
        if self.ok_run > 0 {
            "ok".to_string()
        } else if self.fail_run > 0 {
            format!("fail: {}", self.last_reason)
        } else {
            "pending".to_string()
        }
    }
}

/// Counters for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct HealthCounters {
    pub probes: u64,
    pub failures: u64,
    pub state_changes: u64,
    /// Frames for the probe stack that answer no open probe: dropped.
    pub unsolicited: u64,
}

pub struct Probes {
    stacks: Vec<Stack>,
    targets: Vec<TargetState>,
    next_port: u16,
    next_ident: u16,
    epoch: Instant,
    /// Probes in flight to a DSR server's VIP.
    via: ViaPorts,
    pub counters: HealthCounters,
}

impl Probes {
    pub fn new(links: &[ProbeLink], targets: Vec<Target>, now: Instant) -> Self {
        let stacks = links.iter().map(|l| Stack::new(l, now)).collect();
        let targets = targets
            .into_iter()
            .map(|t| {
                let checks = t
                    .checks
                    .iter()
                    .enumerate()
                    // Spread the first probes so a large pool does not burst.
                    .map(|(i, _)| CheckState { next_at: Some(now + Duration::from_millis(10 * i as u64)), ..Default::default() })
                    .collect();
                TargetState { target: t, checks, up: false, rtt_ewma_us: None }
            })
            .collect();
        Probes { stacks, targets, next_port: PROBE_PORT_MIN, next_ident: 1, epoch: now, via: ViaPorts::default(), counters: HealthCounters::default() }
    }

    /// A frame punted from link `link` that may belong to a probe: only
    /// an answer to an open probe reaches its stack (`Stack::solicited`);
    /// the rest is counted as `unsolicited`.
    pub fn on_frame(&mut self, link: usize, frame: &[u8]) {
        if let Some(s) = self.stacks.get_mut(link) {
            if s.dev.rx.len() < 1024 {
                let mut f = frame.to_vec();
                // (`inbound` refuses a DSR probe's answer from the
                // server's own address instead of the VIP.)
                if self.via.inbound(&mut f) && s.solicited(&f) {
                    s.dev.rx.push_back(f);
                } else {
                    self.counters.unsolicited += 1;
                }
            }
        }
    }

    /// Frames to send out of `link` (VIP probes translated).
    pub fn take_tx(&mut self, link: usize) -> Vec<Vec<u8>> {
        let Some(s) = self.stacks.get_mut(link) else { return Vec::new() };
        let self_ip = s.iface.ipv4_addr().unwrap_or(Ipv4Address::UNSPECIFIED);
        std::mem::take(&mut s.dev.tx).into_iter().map(|f| self.via.outbound(f, self_ip)).collect()
    }

    pub fn links(&self) -> usize {
        self.stacks.len()
    }

    /// Is the server behind snapshot index `server` up (true for servers
    /// without checks)?
    pub fn is_up(&self, server: usize) -> bool {
        self.targets.iter().find(|t| t.target.server == server).is_none_or(|t| t.up)
    }

    /// The smoothed RTT of a server's probes.
    pub fn rtt_us(&self, server: usize) -> Option<f64> {
        self.targets.iter().find(|t| t.target.server == server).and_then(|t| t.rtt_ewma_us)
    }

    /// Every server with checks and its smoothed probe RTT (µs), if any.
    pub fn rtts(&self) -> impl Iterator<Item = (usize, Option<f64>)> + '_ {
        self.targets.iter().map(|t| (t.target.server, t.rtt_ewma_us))
    }

    /// Why a down server is down (the reason of its first failing check).
    pub fn down_reason(&self, server: usize) -> Option<&str> {
        let t = self.targets.iter().find(|t| t.target.server == server && !t.up)?;
        t.checks.iter().find(|c| !c.passing).map(|c| c.last_reason.as_str())
    }

    pub fn has_checks(&self, server: usize) -> bool {
        self.targets.iter().any(|t| t.target.server == server)
    }

    fn port(&mut self) -> u16 {
        let p = self.next_port;
        self.next_port = if p == PROBE_PORT_MAX { PROBE_PORT_MIN } else { p + 1 };
        p
    }

    /// Runs the stacks and the probes; returns state changes.
    pub fn poll(&mut self, now: Instant) -> Vec<Change> {
        let t = smol_now(self.epoch, now);
        for s in &mut self.stacks {
            s.iface.poll(t, &mut s.dev, &mut s.sockets);
        }
        let mut changes = Vec::new();
        for ti in 0..self.targets.len() {
            for ci in 0..self.targets[ti].checks.len() {
                self.step(ti, ci, now, &mut changes);
            }
        }
        // Send what the probes queued.
        for s in &mut self.stacks {
            s.iface.poll(t, &mut s.dev, &mut s.sockets);
        }
        changes
    }

    fn step(&mut self, ti: usize, ci: usize, now: Instant, changes: &mut Vec<Change>) {
        let check = self.targets[ti].target.checks[ci].clone();
        let outcome = match self.targets[ti].checks[ci].probe.take() {
            Some(probe) => match self.advance(&check, probe, now) {
                Ok(outcome) => Some(outcome),
                Err(probe) => {
                    self.targets[ti].checks[ci].probe = Some(probe);
                    return;
                }
            },
            None => None,
        };
        if let Some(outcome) = outcome {
            self.record(ti, ci, &check, outcome, now, changes);
        }
        let st = &self.targets[ti].checks[ci];
        if st.probe.is_none() && st.next_at.is_some_and(|at| now >= at) {
            self.counters.probes += 1;
            let probe = self.start(ti, &check, now);
            let st = &mut self.targets[ti].checks[ci];
            st.next_at = Some(now + Duration::from_millis(u64::from(*check.interval_ms.get_ref())));
            match probe {
                Ok(p) => st.probe = Some(p),
                Err(reason) => self.record(ti, ci, &check, Outcome::Fail(reason), now, changes),
            }
        }
    }

    fn record(&mut self, ti: usize, ci: usize, check: &HealthCheck, outcome: Outcome, now: Instant, changes: &mut Vec<Change>) {
        let _ = now;
        let ts = &mut self.targets[ti];
        let st = &mut ts.checks[ci];
        let mut rtt = None;
        match outcome {
            Outcome::Pass(d) => {
                st.ok_run += 1;
                st.fail_run = 0;
                if st.ok_run >= (*check.rise.get_ref()).max(1) {
                    st.passing = true;
                }
                let us = d.as_secs_f64() * 1e6;
                ts.rtt_ewma_us = Some(ts.rtt_ewma_us.map_or(us, |e| e * 0.8 + us * 0.2));
                rtt = Some(d);
            }
            Outcome::Fail(reason) => {
                self.counters.failures += 1;
                st.fail_run += 1;
                st.ok_run = 0;
                if st.fail_run >= (*check.fall.get_ref()).max(1) {
                    st.passing = false;
                }
                st.last_reason = reason;
            }
        }
        let up = ts.checks.iter().all(|c| c.passing);
        if up != ts.up {
            ts.up = up;
            self.counters.state_changes += 1;
            let reason = if up { String::new() } else { ts.checks.iter().find(|c| !c.passing).map(|c| c.last_reason.clone()).unwrap_or_default() };
            changes.push(Change { target: ti, up, reason, rtt });
        }
    }

    fn start(&mut self, ti: usize, check: &HealthCheck, now: Instant) -> Result<Probe, String> {
        let target = self.targets[ti].target.clone();
        let port = check.port.as_ref().map_or(target.addr.port(), |p| *p.get_ref());
        let ip = *target.addr.ip();
        let deadline = now + Duration::from_millis(u64::from((*check.timeout_ms.get_ref()).max(1)));
        let link = target.link;
        let pending = match check.kind {
            CheckKind::Tcp | CheckKind::Http | CheckKind::SendExpect => {
                let local = self.port();
                let s = self.stacks.get_mut(link).ok_or("no link")?;
                let sock = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 4096]), tcp::SocketBuffer::new(vec![0; RESPONSE_MAX]));
                let handle = s.sockets.add(sock);
                let cx = s.iface.context();
                if s.sockets.get_mut::<tcp::Socket>(handle).connect(cx, (IpAddress::Ipv4(ip), port), local).is_err() {
                    s.close(handle);
                    return Err("unreachable".into());
                }
                s.expect(handle, Opening { proto: TCP, local, peer: ip, peer_port: port });
                self.via.set(local, ip, target.via);
                Pending::Tcp { handle, link, sent: false, response: Vec::new(), established: None }
            }
            CheckKind::Udp => {
                let local = self.port();
                let s = self.stacks.get_mut(link).ok_or("no link")?;
                let meta = vec![udp::PacketMetadata::EMPTY; 4];
                let mut sock = udp::Socket::new(udp::PacketBuffer::new(meta.clone(), vec![0; 2048]), udp::PacketBuffer::new(meta, vec![0; 2048]));
                sock.bind(local).map_err(|_| "bind".to_string())?;
                let payload = check.send.clone().unwrap_or_else(|| "ping".into());
                sock.send_slice(payload.as_bytes(), (IpAddress::Ipv4(ip), port)).map_err(|_| "send".to_string())?;
                let handle = s.sockets.add(sock);
                s.expect(handle, Opening { proto: UDP, local, peer: ip, peer_port: port });
                self.via.set(local, ip, target.via);
                Pending::Udp { handle, link }
            }
            CheckKind::Icmp => {
                let ident = self.next_ident;
                self.next_ident = self.next_ident.wrapping_add(1).max(1);
                let s = self.stacks.get_mut(link).ok_or("no link")?;
                let meta = vec![icmp::PacketMetadata::EMPTY; 4];
                let mut sock = icmp::Socket::new(icmp::PacketBuffer::new(meta.clone(), vec![0; 1024]), icmp::PacketBuffer::new(meta, vec![0; 1024]));
                sock.bind(icmp::Endpoint::Ident(ident)).map_err(|_| "bind".to_string())?;
                let handle = s.sockets.add(sock);
                s.expect(handle, Opening { proto: ICMP, local: ident, peer: ip, peer_port: 0 });
                Pending::Icmp { handle, link, ident, sent: false, target: *target.addr.ip() }
            }
            CheckKind::Script => {
                let cmd = check.command.clone().unwrap_or_default();
                let child = Command::new("/bin/sh")
                    .args(["-c", &cmd])
                    // Its own process group: a timeout kills what the shell
                    // started too (dash forks even for `sh -c 'sleep 30'`).
                    .process_group(0)
                    .env("FURIWAKE_SERVER_IP", target.addr.ip().to_string())
                    .env("FURIWAKE_SERVER_PORT", port.to_string())
                    .env("FURIWAKE_VIP", target.via.map(|v| v.vip.to_string()).unwrap_or_default())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| format!("script not started: {e}"))?;
                Pending::Script { child }
            }
        };
        Ok(Probe { started: now, deadline, pending })
    }

    /// Moves a probe on; `Err` gives it back when it is still running.
    fn advance(&mut self, check: &HealthCheck, mut probe: Probe, now: Instant) -> Result<Outcome, Probe> {
        let timed_out = now >= probe.deadline;
        let elapsed = now.duration_since(probe.started);
        match &mut probe.pending {
            Pending::Script { child } => match child.try_wait() {
                Ok(Some(status)) => Ok(match status.code() {
                    Some(0) => Outcome::Pass(elapsed),
                    Some(n) => Outcome::Fail(format!("script exit {n}")),
                    None => Outcome::Fail("script killed".into()),
                }),
                _ if timed_out => {
                    kill_group(child);
                    Ok(Outcome::Fail("script timeout".into()))
                }
                _ => Err(probe),
            },
            Pending::Udp { handle, link } => {
                let (handle, link) = (*handle, *link);
                let Some(s) = self.stacks.get_mut(link) else { return Ok(Outcome::Fail("no link".into())) };
                let sock = s.sockets.get_mut::<udp::Socket>(handle);
                let got = sock.recv().ok().map(|(d, _)| d.to_vec());
                let result = match got {
                    Some(d) => Some(match &check.expect {
                        Some(e) if !contains(&d, e.as_bytes()) => Outcome::Fail("expect mismatch".into()),
                        _ => Outcome::Pass(elapsed),
                    }),
                    None if timed_out => Some(Outcome::Fail("timeout".into())),
                    None => None,
                };
                match result {
                    Some(r) => {
                        s.close(handle);
                        Ok(r)
                    }
                    None => Err(probe),
                }
            }
            Pending::Icmp { handle, link, ident, sent, target } => {
                let (handle, link, ident, target_ip) = (*handle, *link, *ident, Some(*target));
                let Some(s) = self.stacks.get_mut(link) else { return Ok(Outcome::Fail("no link".into())) };
                let sock = s.sockets.get_mut::<icmp::Socket>(handle);
                if !*sent {
                    if let Some(dst) = target_ip {
                        let repr = Icmpv4Repr::EchoRequest { ident, seq_no: 1, data: b"furiwake" };
                        if let Ok(buf) = sock.send(repr.buffer_len(), IpAddress::Ipv4(dst)) {
                            let mut pkt = Icmpv4Packet::new_unchecked(buf);
                            repr.emit(&mut pkt, &smoltcp::phy::ChecksumCapabilities::default());
                            *sent = true;
                        }
                    }
                }
                let mut result = None;
                while let Ok((data, from)) = sock.recv() {
                    if let Ok(pkt) = Icmpv4Packet::new_checked(data) {
                        if let Ok(Icmpv4Repr::EchoReply { ident: id, .. }) = Icmpv4Repr::parse(&pkt, &smoltcp::phy::ChecksumCapabilities::default()) {
                            if id == ident && Some(from) == target_ip.map(IpAddress::Ipv4) {
                                result = Some(Outcome::Pass(elapsed));
                            }
                        }
                    }
                }
                let result = result.or_else(|| timed_out.then(|| Outcome::Fail("timeout".into())));
                match result {
                    Some(r) => {
                        s.close(handle);
                        Ok(r)
                    }
                    None => Err(probe),
                }
            }
            Pending::Tcp { handle, link, sent, response, established } => {
                let (handle, link) = (*handle, *link);
                let Some(s) = self.stacks.get_mut(link) else { return Ok(Outcome::Fail("no link".into())) };
                let sock = s.sockets.get_mut::<tcp::Socket>(handle);
                let state = sock.state();
                if established.is_none() && matches!(state, tcp::State::Established | tcp::State::CloseWait) {
                    *established = Some(now);
                }
                let mut result: Option<Outcome> = None;
                match check.kind {
                    CheckKind::Tcp => {
                        if established.is_some() {
                            result = Some(Outcome::Pass(elapsed));
                        }
                    }
                    _ => {
                        if established.is_some() && !*sent && sock.may_send() {
                            let req: Option<String> = match check.kind {
                                CheckKind::Http => Some(check.request.clone().unwrap_or_else(|| "GET / HTTP/1.0\r\n\r\n".into())),
                                _ => check.send.clone(),
                            };
                            if let Some(r) = req {
                                let _ = sock.send_slice(r.as_bytes());
                            }
                            *sent = true;
                        }
                        let mut buf = [0u8; 2048];
                        while sock.can_recv() {
                            match sock.recv_slice(&mut buf) {
                                Ok(n) if n > 0 => {
                                    if response.len() < RESPONSE_MAX {
                                        response.extend_from_slice(&buf[..n.min(RESPONSE_MAX - response.len())]);
                                    }
                                }
                                _ => break,
                            }
                        }
                        if check.kind == CheckKind::SendExpect {
                            let expect = check.expect.clone().unwrap_or_default();
                            if established.is_some() && contains(response, expect.as_bytes()) {
                                result = Some(Outcome::Pass(elapsed));
                            } else if established.is_some() && !sock.may_recv() {
                                result = Some(Outcome::Fail("expect mismatch".into()));
                            }
                        } else if established.is_some() && !sock.may_recv() {
                            // The server closed: the whole response is in.
                            result = Some(judge_http(check, response, elapsed));
                        } else if established.is_some() && timed_out && !response.is_empty() {
                            result = Some(judge_http(check, response, elapsed));
                        }
                    }
                }
                if result.is_none() {
                    // No socket timeout is set, so a connection attempt that
                    // closed before our deadline was answered with a RST.
                    if established.is_none() && state == tcp::State::Closed {
                        result = Some(Outcome::Fail("refused".into()));
                    } else if timed_out {
                        result = Some(Outcome::Fail("timeout".into()));
                    }
                }
                match result {
                    Some(r) => {
                        // RST: a probe leaves no state on the server.
                        sock.abort();
                        let t = smol_now(self.epoch, now);
                        s.iface.poll(t, &mut s.dev, &mut s.sockets);
                        s.close(handle);
                        Ok(r)
                    }
                    None => Err(probe),
                }
            }
        }
    }

    /// The target of change `i`.
    pub fn target(&self, i: usize) -> Option<&Target> {
        self.targets.get(i).map(|t| &t.target)
    }

    /// Every target, for the console.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.targets.iter().map(|t| &t.target)
    }

    /// Where each check of snapshot server `server` stands, for the
    /// console (`show servers`, `show health`); empty without checks.
    pub fn check_status(&self, server: usize) -> Vec<CheckStatus> {
        let Some(t) = self.targets.iter().find(|t| t.target.server == server) else { return Vec::new() };
        t.target
            .checks
            .iter()
            .zip(&t.checks)
            .map(|(h, c)| CheckStatus {
                name: h.name.get_ref().clone(),
                kind: h.kind,
                passing: c.passing,
                ok_run: c.ok_run,
                fail_run: c.fail_run,
                last_reason: c.last_reason.clone(),
            })
            .collect()
    }

    /// Ends every probe (scripts killed, sockets closed).
    /// Replaces the targets (a configuration change): a target with the
    /// same server slot, address and checks keeps its state, probes in
    /// flight included; the others start down, as at start; the probes of
    /// targets that went are stopped.
    pub fn retarget(&mut self, targets: Vec<Target>, now: Instant) {
        let mut old: Vec<Option<TargetState>> = std::mem::take(&mut self.targets).into_iter().map(Some).collect();
        let same = |a: &Target, b: &Target| {
            // By value: a check moved in the file is the same check.
            a.server == b.server && a.addr == b.addr && a.link == b.link && a.checks == b.checks && a.via == b.via
        };
        for t in targets {
            let kept = old.iter_mut().find(|o| o.as_ref().is_some_and(|o| same(&o.target, &t))).and_then(Option::take);
            let state = match kept {
                Some(mut st) => {
                    st.target = t;
                    st
                }
                None => {
                    let checks = t.checks.iter().enumerate().map(|(i, _)| CheckState { next_at: Some(now + Duration::from_millis(10 * i as u64)), ..Default::default() }).collect();
                    TargetState { target: t, checks, up: false, rtt_ewma_us: None }
                }
            };
            self.targets.push(state);
        }
        for mut st in old.into_iter().flatten() {
            for c in &mut st.checks {
                match c.probe.take().map(|p| p.pending) {
                    Some(Pending::Script { mut child }) => kill_group(&mut child),
                    Some(Pending::Tcp { handle, link, .. } | Pending::Udp { handle, link } | Pending::Icmp { handle, link, .. }) => {
                        if let Some(s) = self.stacks.get_mut(link) {
                            s.close(handle);
                        }
                    }
                    None => {}
                }
            }
        }
    }

    pub fn shutdown(&mut self) {
        for t in &mut self.targets {
            for c in &mut t.checks {
                if let Some(Probe { pending: Pending::Script { child }, .. }) = c.probe.as_mut() {
                    kill_group(child);
                }
                c.probe = None;
            }
        }
    }
}

#[cfg(test)]
mod tests;
