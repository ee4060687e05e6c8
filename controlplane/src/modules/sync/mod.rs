//! Connection-state sync with the HA peer (issue 12), on the control lcore
//! over a DPDK port.
//!
//! - `wire`: the datagram (header, the workers' `SyncRecord`s, an
//!   HMAC-SHA256 tag) and the keys.
//! - `fresh`: which authentic datagrams may change anything (nonce echo,
//!   the current sender, the 64-wide replay window).
//! - `pair`: the pair's invariants, checked on every datagram.
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
//!    interface, from the peer, `on_frame`) had their cheap checks on
//!    arrival (`wire::precheck`) and wait in a bounded inbox (`inbox`, the
//!    rest dropped as `inbox-full`); at most 64 of them get
//!    their tag checked per turn, so a flood of junk cannot stall the loop
//!    that also sends the VRRP adverts. Then freshness (`fresh`): only
//!    fresh datagrams from the current sender, whose pair fingerprint is
//!    ours (`pair`), have their records put into the installs ring of the
//!    worker that owns the connection here (`pipeline::owner_of`, under
//!    the pair's ownership key) or their bulk request served;
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
//! 4. a `Hello` every second, so each side knows the other is there (and
//!    learns its nonce); the keys and the fingerprint are looked at again
//!    then (`config reload` may change them), and the nonce rotated.
//!
//! Nothing blocks: a full installs ring drops the record (counted; the
//! next refresh repairs it); while ARP asks for an unresolved peer MAC
//! (once a second), messages without records go to broadcast and records
//! are dropped (counted `unresolved`: the connection table never goes to
//! the whole segment), and a bulk dump that lost some is walked again once
//! the MAC is known (`REWALKS` times at most) before its `BulkEnd`.

pub mod frame;
pub mod fresh;
mod inbox;
mod learned;
mod owner;
mod pair;
mod show;
pub mod wire;

use crate::config::Config;
use crate::modules::arp::Arp;
use crate::runtime::{Runtime, SyncEnds, SyncSetup};
use furiwake_dataplane::conntrack::{Forwarding, TICK_MS};
use furiwake_dataplane::ctl::events::SyncRecord;
use furiwake_dataplane::pipeline::{owner_of, Owners};
use furiwake_dataplane::wire::EthernetAddress;
use fresh::{Freshness, Nonces, Verdict};
use inbox::Inbox;
pub use owner::Ownership;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wire::{Header, Keys, MessageType, SyncKey, MAX_RECORDS};

const HELLO_EVERY: Duration = Duration::from_secs(1);
/// A box's own bulk request ids have the top bit clear; the walks it runs
/// again for the peer's request (records lost to an unresolved MAC) have
/// it set, so neither is mistaken for the other.
const REQUEST_ID_MASK: u32 = 0x7fff_ffff;
/// Walks run again for one request at most, before the dump is said to be
/// done anyway (the next refresh repairs the rest).
const REWALKS: u8 = 3;
/// ARP requests for an unresolved peer, one a second at most.
const ARP_EVERY: Duration = Duration::from_secs(1);
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
    /// Peer restarts seen (a new current sender id after the first).
    pub peer_restarts: u64,
    /// The L7 engine's learned persistence records sent and received.
    pub learned_sent: u64,
    pub learned_received: u64,
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
    keys: Keys,
    /// The configuration's key texts, to see a `config reload` change them.
    key_texts: (String, Option<String>),
    /// The peer's current key id, as its fresh datagrams say.
    peer_key: Option<u8>,
    /// The workers' ownership key (installs go to the owner worker).
    pub owner: Ownership,
    /// The steering of `owners_key` (`owner_of`), rebuilt when the key
    /// changes.
    owners: Owners,
    owners_key: u64,
    limit: Duration,
    sender: u32,
    seq: u64,
    nonces: Nonces,
    fresh: Freshness,
    /// This box's pair fingerprint, and the peer's as last seen.
    fingerprint: u64,
    pub peer_fingerprint: Option<u64>,
    ends: Vec<SyncEnds>,
    inbox: Inbox,
    buf: Vec<u8>,
    pub counters: Counters,
    pub asked: Asked,
    /// The id of this box's bulk request (random, not 0).
    bulk_id: u32,
    /// The peer's bulk request being served: its id, and the id the
    /// workers' walks answer (another when a walk's records were lost to
    /// an unresolved peer MAC: the dump is walked again).
    serving: Option<(u32, u32)>,
    /// Records dropped as `unresolved` since the current walk began, and
    /// the walks run again for the request being served.
    lost_unresolved: bool,
    rewalks: u8,
    /// The last ARP request for the unresolved peer.
    last_arp: Option<Instant>,
    /// The ownership key the peer offered last (fresh Hellos only): full-NAT
    /// records are taken only while it is ours.
    peer_owner: Option<u64>,
    /// A full-NAT record was refused for it since the pair last agreed:
    /// agreeing asks for the bulk dump again.
    refused_full_nat: bool,
    /// Whether this box serves (master of a VRRP instance): it then keeps
    /// its ownership key (`consider_offer`).
    serving_vips: bool,
    /// The last valid datagram from the peer, and its lag (our clock minus
    /// its `sent_us`).
    pub peer_seen: Option<Instant>,
    pub lag: Option<Duration>,
    /// The largest lag seen since the last `show sync` window (a second).
    pub lag_max: Duration,
    last_hello: Option<Instant>,
    /// Bulk requests go out from here for `limit` (at start, and again
    /// when this box takes the pair's ownership key).
    ask_from: Instant,
    /// The L7 engine's records from the peer, not yet taken (`learned`),
    /// and whether the peer needs all of this box's again.
    learned_in: Vec<wire::LearnedRecord>,
    learned_bulk: bool,
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// `N` random bytes from the kernel; an error fails the start (a fixed id
/// or nonce would make every boot look alike).
fn urandom<const N: usize>() -> Result<[u8; N], String> {
    use std::io::Read;
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).map_err(|e| format!("sync: /dev/urandom: {e}"))?;
    Ok(b)
}

/// `[sync]`'s keys; None when `key` is empty.
fn keys(s: &crate::config::SyncConfig) -> Option<Keys> {
    let mut k = Keys::new(SyncKey::new(&s.key_bytes())?);
    k.previous = s.previous_key_bytes().and_then(|b| SyncKey::new(&b));
    Some(k)
}

/// The key to send with: `key`, unless a `previous_key` is configured and
/// the peer (whose current key id is `peer_key`) has not shown it has `key`
/// too.
fn send_key(keys: &Keys, peer_key: Option<u8>) -> &SyncKey {
    match &keys.previous {
        Some(p) if peer_key != Some(keys.current.id()) => p,
        _ => &keys.current,
    }
}

/// The workers' setup for `[sync]`: the refresh.
pub fn setup(cfg: &Config) -> Option<SyncSetup> {
    let s = cfg.sync.as_ref()?;
    SyncKey::new(&s.key_bytes())?;
    Some(SyncSetup { refresh_ticks: s.refresh_s.get_ref() * (1000 / TICK_MS) })
}

impl Sync {
    /// Ok(None) without `[sync]`; an error when the kernel gives no random
    /// bytes.
    pub fn new(cfg: &Config, rt: &mut Runtime) -> Result<Option<Sync>, String> {
        let Some(s) = cfg.sync.as_ref() else { return Ok(None) };
        let Some(link) = rt.links().iter().position(|l| l.name() == s.interface.get_ref()) else { return Ok(None) };
        let Some(keys) = keys(s) else { return Ok(None) };
        let sender = u32::from_ne_bytes(urandom()?).max(1);
        let now = Instant::now();
        Ok(Some(Sync {
            link,
            src: rt.links()[link].address().addr,
            peer: *s.peer.get_ref(),
            port: *s.port.get_ref(),
            keys,
            key_texts: (s.key_text().to_string(), s.previous_key.as_ref().map(|k| k.get_ref().clone())),
            peer_key: None,
            owner: Ownership { key: rt.workers().owner_key(), born_us: now_us(), adopted: None },
            owners: Owners::new(rt.workers().len() as u16, rt.workers().owner_key()),
            owners_key: rt.workers().owner_key(),
            limit: Duration::from_millis(u64::from(*s.bulk_limit_ms.get_ref())),
            sender,
            seq: 0,
            nonces: Nonces::new(urandom()?, now),
            fresh: Freshness::default(),
            fingerprint: pair::fingerprint(cfg, rt, rt.workers().owner_key()),
            peer_fingerprint: None,
            ends: rt.workers_mut().take_sync_ends(),
            inbox: Inbox::default(),
            buf: Vec::with_capacity(wire::MAX_DATAGRAM),
            counters: Counters::default(),
            asked: Asked::default(),
            bulk_id: (u32::from_ne_bytes(urandom::<4>()?) & REQUEST_ID_MASK) | 1,
            serving: None,
            lost_unresolved: false,
            rewalks: 0,
            last_arp: None,
            peer_owner: None,
            refused_full_nat: false,
            serving_vips: false,
            peer_seen: None,
            lag: None,
            lag_max: Duration::ZERO,
            last_hello: None,
            ask_from: now,
            learned_in: Vec::new(),
            learned_bulk: false,
        }))
    }

    /// A `config reload` may have changed the keys (a re-keying) or the
    /// services (the fingerprint): looked at once a second.
    fn follow_config(&mut self, cfg: &Config, rt: &Runtime) {
        self.fingerprint = pair::fingerprint(cfg, rt, self.owner.key);
        let Some(s) = cfg.sync.as_ref() else { return };
        let texts = (s.key_text().to_string(), s.previous_key.as_ref().map(|k| k.get_ref().clone()));
        if texts != self.key_texts {
            if let Some(k) = keys(s) {
                self.keys = k;
                self.key_texts = texts;
                crate::out::event(&format!(
                    "sync: keys changed: key {:02x}{}",
                    self.keys.current.id(),
                    self.keys.previous.as_ref().map_or(String::new(), |p| format!(", previous_key {:02x}", p.id()))
                ));
            }
        }
    }

    /// The key to send with (`send_key`).
    fn send_key(&self) -> &SyncKey {
        send_key(&self.keys, self.peer_key)
    }

    /// Preemption is held while the bulk dump asked for at start has not
    /// arrived and `bulk_limit_ms` has not passed.
    pub fn holds_preempt(&self) -> bool {
        self.asked.done.is_none() && self.ask_from.elapsed() < self.limit
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
        if let Err(e) = wire::precheck(d.payload, &self.keys) {
            self.drop(e.name());
            return true;
        }
        if !self.inbox.push(d.payload) {
            self.drop("inbox-full");
        }
        true
    }

    fn drop(&mut self, why: &'static str) {
        *self.counters.dropped.entry(why).or_default() += 1;
    }

    /// The control-loop step (module docs).
    pub fn step(&mut self, rt: &mut Runtime, arp: &mut Arp, cfg: &Config, serving: bool) {
        let now = Instant::now();
        self.serving_vips = serving;
        self.receive(rt, now);
        self.drain_events(rt, arp);
        if let Some((id, walk)) = self.serving {
            let done = self.ends.iter().all(|e| e.control.bulk_end(walk).is_some_and(|end| e.events.has_read(end)));
            let resolved = arp.neighbor(self.peer).is_some();
            if done && self.lost_unresolved && self.rewalks < REWALKS {
                // Some of it never left: once the peer's MAC is known, walk
                // again rather than say done.
                if resolved {
                    self.rewalks += 1;
                    let again = !REQUEST_ID_MASK | (walk.wrapping_add(1) & REQUEST_ID_MASK);
                    for e in &self.ends {
                        e.control.request_bulk(again);
                    }
                    self.serving = Some((id, again));
                    self.lost_unresolved = false;
                }
            } else if done {
                self.serving = None;
                self.counters.bulk_requests_served += 1;
                self.send_with(rt, arp, MessageType::BulkEnd, &[], Some(id));
            }
        }
        if self.asked.done.is_none() && now.duration_since(self.ask_from) < self.limit.max(BULK_ASK_EVERY) && self.asked.last_ask.is_none_or(|t| now.duration_since(t) >= BULK_ASK_EVERY) {
            self.asked.since.get_or_insert(now);
            self.asked.last_ask = Some(now);
            self.counters.bulk_requests_sent += 1;
            self.send_with(rt, arp, MessageType::BulkRequest, &[], Some(self.bulk_id));
        }
        if self.last_hello.is_none_or(|t| now.duration_since(t) >= HELLO_EVERY) {
            self.last_hello = Some(now);
            self.nonces.rotate(now);
            self.follow_config(cfg, rt);
            self.send_with(rt, arp, MessageType::Hello, &[], None);
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

    fn receive(&mut self, rt: &mut Runtime, now: Instant) {
        let mut budget = inbox::VERIFY_PER_TURN;
        while let Some(dgram) = self.inbox.pop(&mut budget) {
            self.take(rt, &dgram, now);
            self.inbox.recycle(dgram);
        }
    }

    /// One queued datagram: the tag, freshness, the pair check, then what
    /// it carries.
    fn take(&mut self, rt: &mut Runtime, dgram: &[u8], now: Instant) {
        let (header, mut records) = match wire::decode(dgram, &self.keys) {
            Ok(x) => x,
            Err(e) => return self.drop(e.name()),
        };
        let fresh = self.nonces.fresh(header.echo);
        let verdict = self.fresh.check(&header, fresh, now);
        match verdict {
            Verdict::Fresh | Verdict::Unfresh => {}
            Verdict::NewSender => {
                self.counters.peer_restarts = self.fresh.restarts;
                crate::out::event(&format!("sync: peer {} is current (sender {:08x})", self.peer, header.sender));
                // A Hello at once: a starting peer learns this box's nonce
                // and ownership offer without waiting for the next second;
                // and the L7 engine's records, all of them.
                self.last_hello = None;
                self.learned_bulk = true;
            }
            Verdict::Stale => return self.drop("stale"),
            Verdict::NotCurrent => return self.drop("not-current"),
        }
        if verdict == Verdict::Unfresh {
            // A Hello at most: its nonce was learnt (`fresh`); it proves
            // nothing of the peer's presence (it may be a replay).
            if header.msg != MessageType::Hello {
                self.drop("unfresh");
            }
            return;
        }
        self.counters.datagrams_received += 1;
        self.peer_seen = Some(now);
        let lag = Duration::from_micros(now_us().saturating_sub(header.sent_us));
        self.lag = Some(lag);
        self.lag_max = self.lag_max.max(lag);
        self.peer_key = Some(header.sender_key);
        // Said once per change of what differs; the ownership keys differ
        // only until the younger box takes the older (its own event).
        let (ours, theirs) = (pair::without_owner(self.fingerprint), pair::without_owner(header.fingerprint));
        if self.peer_fingerprint.map(pair::without_owner) != Some(theirs) && theirs != ours {
            crate::out::event(&format!("sync: peer {} does not match this box: {}; {}", self.peer, pair::differences(ours, theirs), self.refused_what(header.fingerprint)));
        }
        self.peer_fingerprint = Some(header.fingerprint);
        // Another ownership key breaks full-NAT records only (`pair`).
        let full_nat_only = pair::only_owner_key(self.fingerprint, header.fingerprint);
        match header.msg {
            MessageType::Hello => self.consider_offer(rt, &header, records.offer(), now),
            _ if header.fingerprint != self.fingerprint && !full_nat_only => self.drop("pair-mismatch"),
            MessageType::BulkRequest => {
                let Some(id) = records.bulk_id() else { return };
                // A re-ask while the walks go on changes nothing; one
                // after the answer (lost on the way) has it sent again.
                if self.serving.map(|s| s.0) != Some(id) {
                    for e in &self.ends {
                        e.control.request_bulk(id);
                    }
                    crate::out::event(&format!("sync: peer {} asked for a bulk dump (request {id:08x})", self.peer));
                    self.serving = Some((id, id));
                    self.lost_unresolved = false;
                    self.rewalks = 0;
                    self.learned_bulk = true;
                }
            }
            MessageType::Learned => {
                let learned = records.take_learned();
                self.counters.learned_received += learned.len() as u64;
                // Bounded: the appliance takes them every turn.
                if self.learned_in.len() < 1 << 16 {
                    self.learned_in.extend(learned);
                }
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
                if self.owners.workers() != self.ends.len().max(1) as u16 || self.owners_key != self.owner.key {
                    self.owners = Owners::new(self.ends.len() as u16, self.owner.key);
                    self.owners_key = self.owner.key;
                }
                let snap = rt.workers().published();
                // Full-NAT only under the same ownership key: the one the
                // peer offered, not a byte of the fingerprint (which two
                // keys share one time in 256).
                let same_owner = !full_nat_only && self.peer_owner == Some(self.owner.key);
                for rec in records {
                    if !same_owner && rec.mode == Forwarding::FullNat {
                        self.drop("pair-mismatch");
                        self.refused_full_nat = true;
                        continue;
                    }
                    self.counters.records_received += 1;
                    if self.asked.done.is_none() {
                        self.asked.records += 1;
                    }
                    let w = snap.map_or(0, |s| owner_of(s, &self.owners, &rec)) as usize;
                    if self.ends.get_mut(w).is_some_and(|e| e.installs.push(rec)) {
                        self.counters.records_queued += 1;
                    } else {
                        self.counters.install_ring_full += 1;
                    }
                }
            }
        }
    }

    /// The pair check fails: the peer's fingerprint is not ours; what
    /// differs and what is refused.
    pub fn mismatch(&self) -> Option<String> {
        self.peer_fingerprint.filter(|f| *f != self.fingerprint).map(|f| format!("{}; {}", pair::differences(self.fingerprint, f), self.refused_what(f)))
    }

    fn refused_what(&self, theirs: u64) -> &'static str {
        if pair::only_owner_key(self.fingerprint, theirs) {
            "its full-NAT records are refused"
        } else {
            "its records are refused"
        }
    }

    /// The header of the next datagram of type `msg` (its sequence number
    /// taken).
    fn next_header(&mut self, msg: MessageType) -> Header {
        self.seq += 1;
        Header {
            msg,
            key_id: 0,
            sender_key: self.keys.current.id(),
            sender: self.sender,
            seq: self.seq,
            sent_us: now_us(),
            nonce: self.nonces.current(),
            echo: self.fresh.echo(Instant::now()),
            fingerprint: self.fingerprint,
        }
    }

    /// One datagram to the peer.
    fn send(&mut self, rt: &mut Runtime, arp: &mut Arp, msg: MessageType, records: &[SyncRecord]) {
        self.send_with(rt, arp, msg, records, None);
    }

    /// `send`, and for `BulkRequest` and `BulkEnd` the request id.
    fn send_with(&mut self, rt: &mut Runtime, arp: &mut Arp, msg: MessageType, records: &[SyncRecord], bulk_id: Option<u32>) {
        let header = self.next_header(msg);
        let key = send_key(&self.keys, self.peer_key);
        let encoded = match (bulk_id, msg) {
            (Some(id), _) => wire::encode_bulk(&mut self.buf, key, &header, id),
            (None, MessageType::Hello) => wire::encode_hello(&mut self.buf, key, &header, self.owner.key, self.owner.born_us, self.serving_vips),
            (None, _) => wire::encode(&mut self.buf, key, &header, records),
        };
        if encoded.is_err() {
            self.drop("encode");
            return;
        }
        let link = &rt.links()[self.link];
        let src_mac = link.mac();
        let dst_mac = match arp.neighbor(self.peer) {
            Some(n) => n.mac,
            // Records carry the connection table: never to broadcast
            // (review S9). The next refresh repairs what is dropped.
            None => {
                if self.last_arp.is_none_or(|t| t.elapsed() >= ARP_EVERY) {
                    self.last_arp = Some(Instant::now());
                    arp.ask(rt, self.link, self.peer);
                }
                if !records.is_empty() {
                    self.drop("unresolved");
                    self.lost_unresolved = true;
                    return;
                }
                EthernetAddress::BROADCAST
            }
        };
        let f = frame::udp_frame(src_mac, dst_mac, self.src, self.peer, self.port, self.port, &self.buf);
        rt.send_frame(self.link, &f);
        self.counters.datagrams_sent += 1;
        self.counters.records_sent += records.len() as u64;
    }
}
