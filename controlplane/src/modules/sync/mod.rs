//! Connection-state sync with the HA peer (issue 12), on the control lcore
//! over a DPDK port.
//!
//! - `wire`: the datagram (header, the workers' `SyncRecord`s, an
//!   HMAC-SHA256 tag) and the replay window.
//! - `frame`: the datagram in an Ethernet/IPv4/UDP frame, both ways.
//! - `show`: `show sync`, metrics, the report line.
//!
//! The workers' side (events, refresh and bulk walks, installs) is
//! `furiwake_dataplane::pipeline::replicate`; the rings between them are
//! `ctl::events`, one pair per worker, whose control ends this module
//! holds (`runtime::workers::SyncEnds`).
//!
//! Its step in the control loop (`step`, every turn):
//! 1. each worker's events ring is drained into datagrams of at most 32
//!    records, sent to the peer at once (a turn is the batching window);
//! 2. datagrams the workers punted (UDP to the sync port on the sync
//!    interface, `on_frame`) were checked on arrival: the tag, then the
//!    replay window; their records go into the installs ring of the worker
//!    that owns the connection here (`pipeline::owner_of`, under the hash
//!    key both boxes derive from the shared secret);
//! 3. bulk dumps: at start this box asks the peer (`BulkRequest` with a
//!    random request id, again every second with the same id until the
//!    peer's `BulkEnd` echoing it, or `bulk_limit_ms`), and holds VRRP
//!    preemption meanwhile (a returning master must not take the VIPs back
//!    before it knows the connections the backup accepted). Asked by the
//!    peer, it starts a bulk walk on every worker (a re-ask with the same
//!    id leaves the walks going) and sends `BulkEnd` once each worker's
//!    walk is done and this side has read its events ring past the
//!    walk's last record (`SyncControl::bulk_end`): records behind it, live
//!    events, do not hold the answer back;
//! 4. a `Hello` every second, so each side knows the other is there.
//!
//! Nothing blocks: a full installs ring drops the record (counted; the
//! next refresh repairs it), an unresolved peer MAC sends to broadcast
//! while ARP asks.

pub mod frame;
mod show;
pub mod wire;

use crate::config::Config;
use crate::modules::arp::Arp;
use crate::runtime::{Runtime, SyncEnds, SyncSetup};
use furiwake_dataplane::conntrack::TICK_MS;
use furiwake_dataplane::ctl::events::SyncRecord;
use furiwake_dataplane::pipeline::{owner_of, Owners};
use furiwake_dataplane::wire::EthernetAddress;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wire::{Header, MessageType, Replay, ReplayVerdict, SyncKey, MAX_RECORDS};

/// Datagrams kept between two turns at most.
const INBOX: usize = 1024;
const HELLO_EVERY: Duration = Duration::from_secs(1);
const BULK_ASK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub datagrams_sent: u64,
    pub records_sent: u64,
    pub datagrams_received: u64,
    pub records_received: u64,
    /// Records put into a worker's installs ring.
    pub records_queued: u64,
    /// Datagrams dropped, by reason (`bad-hmac`, `stale`, ...).
    pub dropped: BTreeMap<&'static str, u64>,
    /// Records dropped here: the owner worker's installs ring was full.
    pub install_ring_full: u64,
    pub bulk_requests_sent: u64,
    pub bulk_requests_served: u64,
}

/// A bulk dump this box asked for.
#[derive(Debug, Default, Clone, Copy)]
pub struct Asked {
    pub since: Option<Instant>,
    pub last_ask: Option<Instant>,
    /// Records received since the ask.
    pub records: u64,
    /// When the peer's `BulkEnd` came, and how many records it took.
    pub done: Option<(Instant, u64, Duration)>,
}

pub struct Sync {
    link: usize,
    src: Ipv4Addr,
    peer: Ipv4Addr,
    port: u16,
    key: SyncKey,
    hash_key: u64,
    limit: Duration,
    sender: u32,
    seq: u64,
    replay: Replay,
    ends: Vec<SyncEnds>,
    inbox: Vec<Vec<u8>>,
    buf: Vec<u8>,
    pub counters: Counters,
    pub asked: Asked,
    /// The id of this box's bulk request (random, not 0).
    bulk_id: u32,
    /// The id of the peer's bulk request being served.
    serving: Option<u32>,
    /// The last valid datagram from the peer, and its lag (our clock minus
    /// its `sent_us`).
    pub peer_seen: Option<Instant>,
    pub lag: Option<Duration>,
    /// The largest lag seen since the last `show sync` window (a second).
    pub lag_max: Duration,
    last_hello: Option<Instant>,
    started: Instant,
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// A bulk request id for this boot: random, mixed with the clock, not 0.
/// The peer takes an id it has answered for a re-ask and answers at once,
/// so two boots must not share one.
fn bulk_request_id() -> u32 {
    let mut b = [0u8; 4];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    // The clock's low bits, when urandom fails.
    (u32::from_ne_bytes(b) ^ now_us() as u32) | 1
}

/// The workers' setup for `[sync]`: the shared hash key and the refresh.
pub fn setup(cfg: &Config) -> Option<SyncSetup> {
    let s = cfg.sync.as_ref()?;
    let key = SyncKey::new(&s.key_bytes())?;
    Some(SyncSetup { hash_key: key.hash_key(), refresh_ticks: s.refresh_s.get_ref() * (1000 / TICK_MS) })
}

impl Sync {
    /// None without `[sync]`.
    pub fn new(cfg: &Config, rt: &mut Runtime) -> Option<Sync> {
        let s = cfg.sync.as_ref()?;
        let link = rt.links().iter().position(|l| l.name() == s.interface.get_ref())?;
        let key = SyncKey::new(&s.key_bytes())?;
        let mut id = [0u8; 4];
        let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut id));
        Some(Sync {
            link,
            src: rt.links()[link].address().addr,
            peer: *s.peer.get_ref(),
            port: *s.port.get_ref(),
            hash_key: key.hash_key(),
            key,
            limit: Duration::from_millis(u64::from(*s.bulk_limit_ms.get_ref())),
            sender: u32::from_ne_bytes(id) | 1,
            seq: 0,
            replay: Replay::default(),
            ends: rt.workers_mut().take_sync_ends(),
            inbox: Vec::new(),
            buf: Vec::with_capacity(wire::MAX_DATAGRAM),
            counters: Counters::default(),
            asked: Asked::default(),
            bulk_id: bulk_request_id(),
            serving: None,
            peer_seen: None,
            lag: None,
            lag_max: Duration::ZERO,
            last_hello: None,
            started: Instant::now(),
        })
    }

    /// Preemption is held while the bulk dump asked for at start has not
    /// arrived and `bulk_limit_ms` has not passed.
    pub fn holds_preempt(&self) -> bool {
        self.asked.done.is_none() && self.started.elapsed() < self.limit
    }

    /// Records still waiting in the workers' installs rings.
    pub fn installs_pending(&self) -> usize {
        self.ends.iter().map(|e| e.installs.len()).sum()
    }

    /// A punted frame: the sync module's when it is UDP to its port on its
    /// interface (true). Checked at once, kept for `step`.
    pub fn on_frame(&mut self, li: usize, frame: &[u8]) -> bool {
        if li != self.link || !frame::is_udp_to(frame, self.port) {
            return false;
        }
        let Some(d) = frame::udp_datagram(frame) else {
            self.drop("bad-udp");
            return true;
        };
        if d.src != self.peer || d.dst != self.src || d.sport != self.port || d.dport != self.port {
            self.drop("not-the-peer");
            return true;
        }
        if self.inbox.len() >= INBOX {
            self.drop("inbox-full");
            return true;
        }
        self.inbox.push(d.payload.to_vec());
        true
    }

    fn drop(&mut self, why: &'static str) {
        *self.counters.dropped.entry(why).or_default() += 1;
    }

    /// The control-loop step (module docs).
    pub fn step(&mut self, rt: &mut Runtime, arp: &mut Arp) {
        let now = Instant::now();
        self.receive(rt, now);
        self.drain_events(rt, arp);
        if let Some(id) = self.serving {
            let done = self.ends.iter().all(|e| e.control.bulk_end(id).is_some_and(|end| e.events.has_read(end)));
            if done {
                self.serving = None;
                self.counters.bulk_requests_served += 1;
                self.send_with(rt, arp, MessageType::BulkEnd, &[], Some(id));
            }
        }
        if self.asked.done.is_none() && now.duration_since(self.started) < self.limit.max(BULK_ASK_EVERY) && self.asked.last_ask.is_none_or(|t| now.duration_since(t) >= BULK_ASK_EVERY) {
            self.asked.since.get_or_insert(now);
            self.asked.last_ask = Some(now);
            self.counters.bulk_requests_sent += 1;
            self.send_with(rt, arp, MessageType::BulkRequest, &[], Some(self.bulk_id));
        }
        if self.last_hello.is_none_or(|t| now.duration_since(t) >= HELLO_EVERY) {
            self.last_hello = Some(now);
            self.send(rt, arp, MessageType::Hello, &[]);
        }
    }

    /// The workers' records, in datagrams of up to 32.
    fn drain_events(&mut self, rt: &mut Runtime, arp: &mut Arp) {
        let mut buf = [SyncRecord::EMPTY; MAX_RECORDS];
        for w in 0..self.ends.len() {
            loop {
                let n = self.ends[w].events.pop_batch(&mut buf);
                if n == 0 {
                    break;
                }
                let records = buf.get(..n).unwrap_or_default();
                self.send(rt, arp, MessageType::Records, records);
            }
        }
    }

    fn receive(&mut self, rt: &Runtime, now: Instant) {
        let owners = Owners::new(self.ends.len() as u16, self.hash_key);
        for dgram in std::mem::take(&mut self.inbox) {
            let (header, records) = match wire::decode(&dgram, &self.key) {
                Ok(x) => x,
                Err(e) => {
                    self.drop(e.name());
                    continue;
                }
            };
            match self.replay.check(&header) {
                ReplayVerdict::Accept => {}
                ReplayVerdict::NewSender => {
                    crate::out::event(&format!("sync: peer {} (re)started (sender {:08x})", self.peer, header.sender));
                }
                ReplayVerdict::Stale => {
                    self.drop("stale");
                    continue;
                }
                ReplayVerdict::OldSender => {
                    self.drop("old-sender");
                    continue;
                }
            }
            self.counters.datagrams_received += 1;
            self.peer_seen = Some(now);
            let lag = Duration::from_micros(now_us().saturating_sub(header.sent_us));
            self.lag = Some(lag);
            self.lag_max = self.lag_max.max(lag);
            match header.msg {
                MessageType::Hello => {}
                MessageType::BulkRequest => {
                    let Some(id) = records.bulk_id() else { continue };
                    for e in &self.ends {
                        e.control.request_bulk(id);
                    }
                    // A re-ask while the walks go on changes nothing.
                    if self.serving != Some(id) {
                        crate::out::event(&format!("sync: peer {} asked for a bulk dump (request {id:08x})", self.peer));
                    }
                    self.serving = Some(id);
                }
                MessageType::BulkEnd => {
                    if records.bulk_id() != Some(self.bulk_id) {
                        // The answer to another boot's request.
                        self.drop("bulk-end-other");
                    } else if self.asked.done.is_none() {
                        let took = self.asked.since.map_or(Duration::ZERO, |t| now.duration_since(t));
                        self.asked.done = Some((now, self.asked.records, took));
                        crate::out::event(&format!("sync: bulk dump from {} complete: {} records in {} ms", self.peer, self.asked.records, took.as_millis()));
                    }
                }
                MessageType::Records => {
                    let snap = rt.workers().published();
                    for rec in records {
                        self.counters.records_received += 1;
                        if self.asked.done.is_none() {
                            self.asked.records += 1;
                        }
                        let w = snap.map_or(0, |s| owner_of(s, owners, &rec)) as usize;
                        if self.ends.get_mut(w).is_some_and(|e| e.installs.push(rec)) {
                            self.counters.records_queued += 1;
                        } else {
                            self.counters.install_ring_full += 1;
                        }
                    }
                }
            }
        }
    }

    /// One datagram to the peer.
    fn send(&mut self, rt: &mut Runtime, arp: &mut Arp, msg: MessageType, records: &[SyncRecord]) {
        self.send_with(rt, arp, msg, records, None);
    }

    /// `send`, and for `BulkRequest` and `BulkEnd` the request id.
    fn send_with(&mut self, rt: &mut Runtime, arp: &mut Arp, msg: MessageType, records: &[SyncRecord], bulk_id: Option<u32>) {
        self.seq += 1;
        let header = Header { msg, sender: self.sender, seq: self.seq, sent_us: now_us() };
        let encoded = match bulk_id {
            Some(id) => wire::encode_bulk(&mut self.buf, &self.key, &header, id),
            None => wire::encode(&mut self.buf, &self.key, &header, records),
        };
        if encoded.is_err() {
            self.drop("encode");
            return;
        }
        let link = &rt.links()[self.link];
        let src_mac = link.mac();
        let dst_mac = match arp.neighbor(self.peer) {
            Some(n) => n.mac,
            None => {
                arp.ask(rt, self.link, self.peer);
                EthernetAddress::BROADCAST
            }
        };
        let f = frame::udp_frame(src_mac, dst_mac, self.src, self.peer, self.port, self.port, &self.buf);
        rt.send_frame(self.link, &f);
        self.counters.datagrams_sent += 1;
        self.counters.records_sent += records.len() as u64;
    }
}
