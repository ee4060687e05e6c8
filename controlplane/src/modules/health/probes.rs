//! The probe engine: per server and check, a probe every `interval_ms`
//! (TCP connect, HTTP, send/expect, UDP, ICMP echo, script), judged,
//! counted towards `rise`/`fall`, and the server's state changes.
//!
//! Its cost per probe does not grow with the number of servers: probes
//! start from a timer heap (`timers`), an answer finds its probe by its
//! 4-tuple in a hash map and its socket in a shard of at most
//! `SHARD_SOCKETS` (`stack`), only probes with news or a deadline are
//! looked at, and a turn starts at most `STARTS_PER_TURN` probes and
//! ends at most `ENDS_PER_TURN` by their deadline, so ARP, the console
//! and configuration changes are never held up for long. The RTT of a
//! probe is taken from the times its frames crossed the control path:
//! from its first frame out (`take_tx`) to the arrival of the answer
//! that passed it (`on_frame`), not the turn that judged it.

mod run;
mod targets;

use super::judge::Outcome;
use super::ports::Rotation;
use super::stack::{answer_of, framed, ip_of, sent_by, Opening, ProbeLink, Shard};
use super::timers::Timers;
use super::via::{Via, ViaPorts};
use crate::config::{CheckKind, HealthCheck};
use furiwake_dataplane::state::neighbor::Neighbors;
use smoltcp::iface::SocketHandle;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Probes a turn starts at most (the rest start next turn, late by a
/// turn: a fraction of a millisecond).
const STARTS_PER_TURN: usize = 32;
/// Probes a turn ends by their deadline at most.
const ENDS_PER_TURN: usize = 64;
/// Probes in flight at most (a socket each): past that, due probes wait.
pub(super) const MAX_IN_FLIGHT: usize = 16_384;
/// Probes of a check skipped in a row for a shortage of the box's own
/// before each further one counts as a failure.
const SKIPS_BEFORE_FAILING: u32 = 3;
/// How often running script checks are looked at for their exit.
const SCRIPT_POLL: Duration = Duration::from_millis(10);

/// One server to watch: its snapshot index, where it is, and its checks.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: usize,
    pub pool: String,
    pub addr: SocketAddr,
    pub link: usize,
    /// Its next hop's neighbour slot: the MAC its probes go to.
    pub nexthop: u16,
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
    /// expect mismatch, script exit N, script timeout, unresolved).
    pub reason: String,
    pub rtt: Option<Duration>,
}

pub(super) enum Pending {
    Tcp { sent: bool, response: Vec<u8>, established: bool },
    Udp,
    Icmp { ident: u16, seq_no: u16, nonce: [u8; 8] },
    Script { child: Child },
    /// Judged; its socket goes after its shard's next poll.
    Done,
}

pub(super) struct Probe {
    pub(super) target: usize,
    pub(super) check: usize,
    /// Its link and shard, socket, and what its answers look like (None
    /// for a script).
    pub(super) at: Option<(usize, usize, SocketHandle, Opening)>,
    pub(super) mac: [u8; 6],
    pub(super) started: Instant,
    /// When its frames crossed the box (`run::Legs`: its RTT).
    pub(super) times: run::Legs,
    pub(super) deadline: Instant,
    pub(super) serial: u64,
    pub(super) pending: Pending,
    /// Already in this turn's `touched`.
    pub(super) touched: bool,
    /// Its local port is in `via` (a DSR server's probe).
    pub(super) via: bool,
}

#[derive(Default)]
struct CheckState {
    ok_run: u32,
    fail_run: u32,
    /// Probes skipped in a row for the box's own shortage.
    skip_run: u32,
    passing: bool,
    next_at: Option<Instant>,
    probe: Option<usize>,
    last_reason: String,
}

struct TargetState {
    target: Target,
    checks: Vec<CheckState>,
    up: bool,
    rtt_ewma_us: Option<f64>,
    ports: Rotation,
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
    /// Probes not started for a shortage of the box's own (`NotStarted::
    /// Shortage`): no verdict on their servers.
    pub skipped: u64,
    /// The last such shortage (`skip_reason`).
    pub last_skip: Option<&'static str>,
}

/// Why a probe did not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NotStarted {
    /// The server cannot be reached (its next hop does not answer ARP), or
    /// the check cannot ever run (a script the shell cannot start): a
    /// failed probe, as a connect that gets no answer would be.
    Unreachable(String),
    /// The box's own shortage: no probe stack on the link, no free source
    /// port for the server, a socket or a process it could not make. Not
    /// the server's fault, so no verdict on it (keepalived reschedules a
    /// check whose socket it cannot open, without a verdict); counted and
    /// shown (`skipped`), and tried again at the next interval; past
    /// `SKIPS_BEFORE_FAILING` in a row, each further one fails the check
    /// (`not probed: REASON`), so a shortage that lasts cannot keep a
    /// server up unjudged.
    Shortage(&'static str),
}



/// The probe stacks of one link: its address and MAC, its shards.
pub(super) struct LinkStacks {
    pub(super) link: ProbeLink,
    pub(super) shards: Vec<Shard>,
    /// The shard new probes go to while it has room.
    pub(super) room: usize,
}

/// A check to probe: target, check, the generation of the targets.
type Start = (u32, u16, u32);
/// A probe's deadline: its id and serial.
type Deadline = (u32, u64);

pub struct Probes {
    pub(super) links: Vec<LinkStacks>,
    targets: Vec<TargetState>,
    /// Snapshot server slot -> target index (`NONE`), so `is_up`, `rtt_us`
    /// and the console's look-ups are O(1).
    by_server: Vec<u32>,
    /// Probes by id; `free` the ids to reuse.
    pub(super) probes: Vec<Option<Probe>>,
    free: Vec<usize>,
    /// Open probes by what their answers look like (as their socket sees
    /// them: a VIP probe's answers after `via` translated them).
    pub(super) open: HashMap<Opening, usize>,
    /// The checks due to start, and apart (so a deadline never waits
    /// behind starts that cannot run) the probes' deadlines.
    starts: Timers<Start>,
    deadlines: Timers<Deadline>,
    /// `MAX_IN_FLIGHT` (smaller in tests).
    pub(super) max_in_flight: usize,
    /// Starts go at this pace (`timers::Pace`), set by `retarget`.
    pub(super) pace: super::timers::Pace,
    /// Probes with news this turn (an answer, a shard poll).
    touched: Vec<usize>,
    /// Script probes, looked at every `SCRIPT_POLL`; when last.
    scripts: Vec<usize>,
    scripts_at: Option<Instant>,
    /// Probes judged this turn, freed once their last frames are out.
    finished: Vec<usize>,
    /// Targets whose RTT changed since `take_rtts`.
    rtt_changed: Vec<usize>,
    /// Per link: frames to send, and the probes whose first frames they
    /// carry (id, serial).
    out: Vec<Vec<Vec<u8>>>,
    /// (id, serial, the request's departure rather than the first).
    stamps: Vec<Vec<(usize, u64, bool)>>,
    /// Deadlines are judged against this rather than now while answers
    /// stamped earlier may still wait in a punt ring (`judge_by`).
    horizon: Option<Instant>,
    generation: u32,
    serial: u64,
    /// The per-boot secret (`ports::boot_secret`): the source ports'
    /// order, and with `draws` the shards' seeds and echo probes' numbers.
    secret: u64,
    draws: u64,
    pub(super) epoch: Instant,
    neighbors: Arc<Neighbors>,
    /// Probes in flight to a DSR server's VIP.
    pub(super) via: ViaPorts,
    pub counters: HealthCounters,
}

const NONE: u32 = u32::MAX;

impl Probes {
    /// The engine over `links`, watching `targets`; probes go to the MACs
    /// ARP keeps in `neighbors`.
    pub fn new(links: &[ProbeLink], targets: Vec<Target>, neighbors: Arc<Neighbors>, now: Instant) -> Self {
        let mut p = Probes {
            links: links.iter().map(|l| LinkStacks { link: l.clone(), shards: Vec::new(), room: 0 }).collect(),
            targets: Vec::new(),
            by_server: Vec::new(),
            probes: Vec::new(),
            free: Vec::new(),
            open: HashMap::new(),
            starts: Timers::default(),
            deadlines: Timers::default(),
            max_in_flight: MAX_IN_FLIGHT,
            pace: super::timers::Pace::new(0.0),
            touched: Vec::new(),
            scripts: Vec::new(),
            scripts_at: None,
            finished: Vec::new(),
            rtt_changed: Vec::new(),
            out: vec![Vec::new(); links.len()],
            stamps: vec![Vec::new(); links.len()],
            horizon: None,
            generation: 0,
            serial: 0,
            secret: super::ports::boot_secret(),
            draws: 0,
            epoch: now,
            neighbors,
            via: ViaPorts::default(),
            counters: HealthCounters::default(),
        };
        p.retarget(targets, now);
        p
    }

    /// A fresh 64-bit draw from the engine's secret.
    pub(super) fn draw(&mut self) -> u64 {
        self.draws = self.draws.wrapping_add(1);
        furiwake_dataplane::hash::keyed64(self.draws, self.secret)
    }

    fn target_of(&self, server: usize) -> Option<&TargetState> {
        let i = *self.by_server.get(server)?;
        self.targets.get(i as usize)
    }

    /// A frame punted from link `link` that may belong to a probe: only
    /// an answer to an open probe reaches its shard; the rest is counted
    /// as `unsolicited` (ARP is the ARP module's, silently).
    /// `now`: when a worker received it (the answer's arrival, as the
    /// RTT counts it).
    pub fn on_frame(&mut self, link: usize, frame: &[u8], now: Instant) {
        if ip_of(frame).is_none() {
            return;
        }
        let mut f = frame.to_vec();
        // (`inbound` refuses a DSR probe's answer from the server's own
        // address instead of the VIP.)
        let pid = (self.via.inbound(&mut f))
            .then(|| ip_of(&f).and_then(answer_of))
            .flatten()
            .filter(|(dst, _)| self.links.get(link).is_some_and(|l| l.link.address_for(*dst) == Some(*dst)))
            .and_then(|(_, key)| self.open.get(&key).copied());
        let Some(pid) = pid else {
            self.counters.unsolicited += 1;
            return;
        };
        let Some(probe) = self.probes.get_mut(pid).and_then(Option::as_mut) else { return };
        let Some((l, s, _, _)) = probe.at else { return };
        if l != link {
            self.counters.unsolicited += 1;
            return;
        }
        let Some(shard) = self.links.get_mut(l).and_then(|k| k.shards.get_mut(s)) else { return };
        if shard.deliver(f.split_off(super::stack::ETH)) {
            // The latest: one probe's frames may come through several rings.
            probe.times.heard = Some(probe.times.heard.map_or(now, |h| h.max(now)));
            if !probe.touched {
                probe.touched = true;
                self.touched.push(pid);
            }
        }
    }

    /// Frames to send out of `link` (Ethernet, VIP probes translated),
    /// sent at `now`: a probe's first frame's departure, as the RTT
    /// counts it.
    pub fn take_tx(&mut self, link: usize, now: Instant) -> Vec<Vec<u8>> {
        for (pid, serial, request) in self.stamps.get_mut(link).map(std::mem::take).unwrap_or_default() {
            if let Some(p) = self.probes.get_mut(pid).and_then(Option::as_mut).filter(|p| p.serial == serial) {
                p.times.departed(request, now);
            }
        }
        self.out.get_mut(link).map(std::mem::take).unwrap_or_default()
    }

    pub fn links(&self) -> usize {
        self.links.len()
    }

    /// Is there work a turn should not sleep on (probes due)?
    pub fn busy(&self, now: Instant) -> bool {
        // Due starts while in-flight is full wait for a deadline or an
        // answer, which wake the turn themselves.
        (self.starts.is_due(now) && self.in_flight() < self.max_in_flight && self.pace.allows(now)) || self.deadlines.is_due(self.judged_at(now)) || !self.touched.is_empty()
    }

    /// Is the server behind snapshot index `server` up (true for servers
    /// without checks)?
    pub fn is_up(&self, server: usize) -> bool {
        self.target_of(server).is_none_or(|t| t.up)
    }

    /// The smoothed RTT of a server's probes.
    pub fn rtt_us(&self, server: usize) -> Option<f64> {
        self.target_of(server).and_then(|t| t.rtt_ewma_us)
    }

    /// The servers whose smoothed RTT changed since the last call, and
    /// their RTT (µs) (a server that went keeps its last one).
    pub fn take_rtts(&mut self) -> Vec<(usize, Option<f64>)> {
        std::mem::take(&mut self.rtt_changed).into_iter().filter_map(|ti| self.targets.get(ti).map(|t| (t.target.server, t.rtt_ewma_us))).collect()
    }

    /// Every server with checks and its smoothed probe RTT (µs), if any.
    pub fn rtts(&self) -> impl Iterator<Item = (usize, Option<f64>)> + '_ {
        self.targets.iter().map(|t| (t.target.server, t.rtt_ewma_us))
    }

    /// Why a down server is down (the reason of its first failing check).
    pub fn down_reason(&self, server: usize) -> Option<&str> {
        let t = self.target_of(server).filter(|t| !t.up)?;
        t.checks.iter().find(|c| !c.passing).map(|c| c.last_reason.as_str())
    }

    pub fn has_checks(&self, server: usize) -> bool {
        self.target_of(server).is_some()
    }

    /// Runs the shards with news and the due probes; returns state
    /// changes. The frames to send are then in `take_tx`. (The appliance
    /// sends between `news` and `due`, so an answer's follow-up leaves
    /// before the turn starts new probes.)
    pub fn poll(&mut self, now: Instant) -> Vec<Change> {
        let mut changes = self.news(now);
        changes.extend(self.due(now));
        changes
    }

    /// The probes with news: answers delivered, their next segments
    /// queued (a request after the handshake), verdicts.
    pub fn news(&mut self, now: Instant) -> Vec<Change> {
        let mut changes = Vec::new();
        self.poll_shards(now);
        for pid in std::mem::take(&mut self.touched) {
            if let Some(p) = self.probes.get_mut(pid).and_then(Option::as_mut) {
                p.touched = false;
            }
            self.advance(pid, now, &mut changes);
        }
        // A script's exit is looked for every `SCRIPT_POLL` (a `waitpid`
        // each), not every turn: its time is known to that much.
        if self.scripts_at.is_none_or(|at| now.duration_since(at) >= SCRIPT_POLL) {
            self.scripts_at = Some(now);
            let mut i = 0;
            while let Some(&pid) = self.scripts.get(i) {
                self.advance(pid, now, &mut changes);
                // `advance` takes a finished script off the list.
                if self.scripts.get(i) == Some(&pid) {
                    i += 1;
                }
            }
        }
        self.poll_shards(now);
        self.collect_tx();
        changes
    }

    /// The probes whose deadline passed, then those due to start.
    pub fn due(&mut self, now: Instant) -> Vec<Change> {
        let mut changes = Vec::new();
        self.timers_due(now, &mut changes);
        self.poll_shards(now);
        self.collect_tx();
        changes
    }

    /// Deadlines first (they free sockets and in-flight slots), then the
    /// probes to start while in-flight has room.
    fn timers_due(&mut self, now: Instant, changes: &mut Vec<Change>) {
        let mut ends = 0;
        let judged = self.judged_at(now);
        while ends < ENDS_PER_TURN {
            let Some((pid, serial)) = self.deadlines.pop_due(judged) else { break };
            if self.probes.get(pid as usize).and_then(Option::as_ref).is_some_and(|p| p.serial == serial) {
                ends += 1;
                self.advance(pid as usize, now, changes);
            }
        }
        let mut starts = 0;
        while starts < STARTS_PER_TURN {
            if self.in_flight() >= self.max_in_flight || !self.pace.allows(now) {
                // Full, or ahead of the pace: the due starts wait in the
                // heap for a deadline, an answer or the pace.
                break;
            }
            let Some((ti, ci, generation)) = self.starts.pop_due(now) else { break };
            if generation != self.generation {
                continue;
            }
            starts += 1;
            self.pace.take(now);
            self.start_check(ti as usize, usize::from(ci), now, changes);
        }
    }

    pub(super) fn in_flight(&self) -> usize {
        self.probes.len() - self.free.len()
    }

    /// Starts a probe of check `ci` of target `ti` and schedules the next.
    fn start_check(&mut self, ti: usize, ci: usize, now: Instant, changes: &mut Vec<Change>) {
        let Some(t) = self.targets.get_mut(ti) else { return };
        let Some(check) = t.target.checks.get(ci) else { return };
        let interval = Duration::from_millis(u64::from(*check.interval_ms.get_ref()));
        let Some(st) = t.checks.get_mut(ci) else { return };
        if st.next_at.is_some_and(|at| at > now) {
            return;
        }
        // At a fixed rate from when it was due, not from when a busy turn
        // got to it: late starts do not drift, so probes spread over the
        // interval stay spread and their answers do not come in bursts
        // (which would queue in the punt ring ahead of others).
        // Intervals that went by entirely (a turn held up, in-flight
        // full) are skipped, not made up at once: the next start is the
        // first one after now on the check's grid.
        let next = st.next_at.map_or(now, |at| next_on_grid(at, interval, now));
        st.next_at = Some(next);
        self.starts.push(next, (ti as u32, ci as u16, self.generation));
        if st.probe.is_some() {
            // The last one is still running (timeout >= interval).
            return;
        }
        let started = self.start(ti, ci, now);
        let Some(st) = self.targets.get_mut(ti).and_then(|t| t.checks.get_mut(ci)) else { return };
        st.skip_run = if matches!(started, Err(NotStarted::Shortage(_))) { st.skip_run.saturating_add(1) } else { 0 };
        let skips = st.skip_run;
        match started {
            Ok(pid) => {
                self.counters.probes += 1;
                st.probe = Some(pid);
            }
            Err(NotStarted::Unreachable(reason)) => self.record(ti, ci, Outcome::Fail(reason), changes),
            Err(NotStarted::Shortage(reason)) => {
                self.counters.skipped += 1;
                self.counters.last_skip = Some(reason);
                if skips > SKIPS_BEFORE_FAILING {
                    self.record(ti, ci, Outcome::Fail(format!("not probed: {reason}")), changes);
                }
            }
        }
    }

    /// A new probe id for `probe`; its deadline goes on the heap.
    pub(super) fn insert(&mut self, mut probe: Probe) -> usize {
        self.serial += 1;
        probe.serial = self.serial;
        let (deadline, serial) = (probe.deadline, probe.serial);
        let pid = match self.free.pop() {
            Some(i) => {
                self.probes[i] = Some(probe);
                i
            }
            None => {
                self.probes.push(Some(probe));
                self.probes.len() - 1
            }
        };
        self.deadlines.push(deadline, (pid as u32, serial));
        pid
    }

    /// Polls the shards that have something to do (an answer arrived,
    /// a probe started or ended, a retransmission is due).
    fn poll_shards(&mut self, now: Instant) {
        let epoch = self.epoch;
        for s in self.links.iter_mut().flat_map(|l| l.shards.iter_mut()) {
            if s.due(now) {
                s.poll(epoch, now);
            }
        }
    }

    /// The shards' sent packets, framed for their links; then what the
    /// finished probes held is freed (their last segments are out).
    fn collect_tx(&mut self) {
        for li in 0..self.links.len() {
            let (mac, self_ip) = (self.links[li].link.mac, self.links[li].link.address);
            for si in 0..self.links[li].shards.len() {
                let packets = std::mem::take(&mut self.links[li].shards[si].dev.tx);
                for packet in packets {
                    let Some(pid) = sent_by(&packet).and_then(|k| self.open.get(&k).copied()) else { continue };
                    let Some(p) = self.probes.get_mut(pid).and_then(Option::as_mut) else { continue };
                    if let (Some(request), Some(st)) = (p.times.wanted(), self.stamps.get_mut(li)) {
                        st.push((pid, p.serial, request));
                    }
                    let frame = self.via.outbound(framed(p.mac, mac, &packet), self_ip);
                    if let Some(out) = self.out.get_mut(li) {
                        out.push(frame);
                    }
                }
            }
        }
        for pid in std::mem::take(&mut self.finished) {
            let Some(p) = self.probes.get_mut(pid).and_then(Option::take) else { continue };
            if let Some((_, _, _, key)) = p.at {
                self.open.remove(&key);
                if p.via {
                    self.via.clear(key.local);
                }
            }
            if p.at.is_none() {
                self.scripts.retain(|&s| s != pid);
            }
            self.free.push(pid);
        }
        for s in self.links.iter_mut().flat_map(|l| l.shards.iter_mut()) {
            s.reap();
        }
    }
}

#[cfg(test)]
mod tests;

/// The first time after `now` on the grid `at + k * interval`, k >= 1.
fn next_on_grid(at: Instant, interval: Duration, now: Instant) -> Instant {
    let interval = interval.max(Duration::from_millis(1));
    let behind = now.saturating_duration_since(at);
    let k = behind.as_nanos() / interval.as_nanos() + 1;
    at.checked_add(interval * u32::try_from(k).unwrap_or(u32::MAX)).unwrap_or(now + interval)
}
