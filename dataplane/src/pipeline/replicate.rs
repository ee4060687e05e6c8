//! The worker's side of connection-state sync with the HA peer (issue 12;
//! the records and rings are `ctl::events`).
//!
//! Out: the worker pushes a record into its events ring when it makes an
//! entry (`Create`, `connect`; a SYN-proxied one once its translation is
//! set, `synproxy`), when a packet changes an entry's TCP state
//! (`Update`, `forwarding`), when an entry goes (`Delete`: closed, or
//! expired with `FLAG_EXPIRED`), and when it makes or drops a persistence
//! record (`Persist`, `PersistDelete`). A full ring drops the record and
//! counts it (`SyncCounters::dropped`); nothing waits. Records of live TCP
//! entries carry the entry's sequence marks and, when proxied, its
//! translation; every entry record carries the entry's last-change
//! counter (`Flow::version`), bumped at each `Update`.
//!
//! Only assured entries are replicated (`replicable`; IPVS syncs a
//! connection only past its `sync_threshold` packets): a TCP entry that
//! has not left its handshake (SYN_SENT, SYN_RECV, or one a spoofed reset
//! ended there) or a UDP one its server has not answered sends no record,
//! so a spoofed flood at a NAT or full-NAT service fills neither the sync
//! link nor the peer's table. Reaching ESTABLISHED or the server's first
//! answer (`EntryFlags::ASSURED`) sends its `Create`. Exceptions: a
//! SYN-proxied entry (its client returned a cookie: known real) from its
//! start, and direct-server-return UDP, which never sees an answer (a
//! spoofed flood at such a service does reach the sync link: the events
//! ring drops what it cannot hold, counted).
//!
//! Walks: every `WorkerConfig::sync_refresh` ticks the worker pushes a
//! `Refresh` for every live entry of its own: not the copies of the
//! peer's (`SYNCED`), which echoed back could re-install on the peer a
//! connection it has just closed. When the control plane asks
//! (`SyncControl::request_bulk`: the peer started or came back) the walk
//! includes the copies (after a restart of the peer they may be all it
//! has). A walk scans at most `WALK_BUDGET` table slots per pass and
//! pauses while the ring has less than a quarter of its slots free,
//! keeping that room for live events; it resumes at the next pass. A bulk
//! request with a new id restarts a walk under way (the peer's re-asks
//! carry the same id and change nothing); when a bulk walk completes the
//! worker publishes its id and the ring position after its last record
//! (`SyncControl::bulk_end`).
//!
//! In: each pass the worker applies up to `INSTALL_BUDGET` records from its
//! installs ring. An entry installed from the peer is found by this box's
//! own virtual server and server (by address: slot indexes differ between
//! boxes), gets the time it had left there, its version, its TCP marks
//! (`Track::adopt`) and SYN proxy translation, holds its full-NAT port here
//! (`LocalPorts::reserve`), counts like one made here (`flows`,
//! `conns_active`; not `conns_new`), and is marked `EntryFlags::SYNCED`:
//!
//! - it is not reported back as a `Create` (no echo between two active
//!   boxes), and its idle expiry is not reported (the peer, which forwards
//!   it, is the authority); the first packet forwarded here clears the
//!   mark, and from then on it is reported like the worker's own;
//! - a `Refresh` older than the entry here (its version) is ignored
//!   (`InstallFailure::Stale`): the entry changed since the peer's walk
//!   read it; a `Create` or `Update` (a packet the peer saw) always
//!   applies;
//! - a peer's `Refresh` of an entry this box forwards (not `SYNCED`) only
//!   lengthens its life, never shortens it or moves its state back; a
//!   `Create` or `Update` (a packet the peer just saw) sets both;
//! - a `Refresh` of a connection this worker closed within `TOMB_TICKS`
//!   (`Tombs`) installs nothing: it crossed the `Delete` on the way;
//! - a peer's `Delete` removes the copy with the same reply key (server
//!   and local address and port), and with `FLAG_EXPIRED` only a `SYNCED`
//!   copy; a close removes any copy.
//!
//! A full-NAT port that is not free here (in use, another worker's share:
//! the pair's worker counts differ, or an address this box lacks) is counted
//! (`InstallFailure::LocalPort`) and the entry is installed anyway, marked
//! `BORROWED_PORT` so that its end does not free a port it does not hold:
//! the connection uses that port on the wire, and refusing the entry would
//! cut it for certain.
//!
//! Nothing here allocates, locks or panics.

use super::{L4Info, Shard};
use crate::conntrack::track::PROXY_ON;
use crate::conntrack::{EntryFlags, FlowId, FlowKey, FlowState, FlowTable, TICK_MS};
use crate::ctl::events::{RecordConsumer, RecordProducer, SyncControl, SyncKind, SyncRecord, FAMILY_V4};
use crate::state::counters::{InstallFailure, WorkerCounters};
use crate::state::snapshot::{Forwarding, Snapshot};
use std::sync::Arc;

mod install;
mod rehome;

/// Table slots a walk scans per pass at most (as `ctl::dump::SCAN_BUDGET`).
pub const WALK_BUDGET: u32 = 16 * 1024;
/// Records from the peer applied per pass at most.
pub const INSTALL_BUDGET: usize = 256;
/// Records popped at a time (a stack buffer).
const INSTALL_BATCH: usize = 32;
/// How long a connection closed here refuses the peer's `Refresh` of it
/// (10 s): far longer than a record spends in the rings and on the wire.
pub const TOMB_TICKS: u32 = 10_000 / TICK_MS;
/// Connections closed lately that are remembered (a direct-mapped table,
/// 96 KiB a worker): at 3,000 closes a second a tomb lasts about a second
/// before another takes its slot, longer than a crossing takes.
const TOMBS: usize = 4096;

/// A worker's sync state: its two rings, the shared control cell, and
/// where its walk stands.
pub(super) struct Replication {
    out: RecordProducer,
    installs: RecordConsumer,
    control: Arc<SyncControl>,
    walk: Option<Walk>,
    /// The last bulk request id seen (0: none).
    bulk_seen: u32,
    /// The tick of the next periodic walk; None until the first pass.
    next_refresh: Option<u32>,
    /// Slots per pass (`WALK_BUDGET`; small in tests).
    pub(super) budget: u32,
    tombs: Tombs,
    /// Where the walk after an ownership-key change stands (`rehome`).
    rehome: Option<u32>,
}

struct Walk {
    cursor: u32,
    /// The bulk request it answers, if it was asked for (it then includes
    /// the peer's copies).
    bulk: Option<u32>,
}

/// Connections this worker closed lately, by original key: a `Refresh`
/// of one from the peer was sent before the peer applied the `Delete`.
/// Direct-mapped by a keyed hash (`crate::hash`, the worker's key), so
/// that nobody can aim a connection at another's slot; a collision
/// forgets the older one.
struct Tombs {
    /// `TOMBS` slots, allocated once (`Worker::with_sync`).
    slots: Box<[Option<(FlowKey, u32)>]>,
    /// The worker's hash key (`WorkerConfig::hash_key`), set each pass.
    key: u64,
}

impl Tombs {
    fn slot(&self, k: &FlowKey) -> usize {
        let ips = u64::from(k.src_ip) << 32 | u64::from(k.dst_ip);
        let rest = u64::from(k.src_port) << 24 | u64::from(k.dst_port) << 8 | u64::from(k.proto);
        // Reduced below TOMBS.
        (crate::hash::keyed64(crate::hash::keyed64(ips, self.key) ^ rest, self.key) % TOMBS as u64) as usize
    }

    fn bury(&mut self, k: FlowKey, now: u32) {
        let i = self.slot(&k);
        if let Some(s) = self.slots.get_mut(i) {
            *s = Some((k, now));
        }
    }

    /// Whether `k` was closed within `TOMB_TICKS` of `now`.
    fn recent(&self, k: &FlowKey, now: u32) -> bool {
        matches!(self.slots.get(self.slot(k)), Some(Some((key, at))) if key == k && now.wrapping_sub(*at) < TOMB_TICKS)
    }
}

impl Replication {
    pub(super) fn new(out: RecordProducer, installs: RecordConsumer) -> Self {
        Self {
            out,
            installs,
            control: Arc::new(SyncControl::default()),
            walk: None,
            bulk_seen: 0,
            next_refresh: None,
            budget: WALK_BUDGET,
            tombs: Tombs { slots: vec![None; TOMBS].into_boxed_slice(), key: 0 },
            rehome: None,
        }
    }

    pub(super) fn control(&self) -> Arc<SyncControl> {
        Arc::clone(&self.control)
    }

    /// Starts a walk when one is due, then pushes `Refresh` records for up
    /// to `budget` slots of `table`, leaving a quarter of the ring free.
    fn walk(&mut self, table: &FlowTable, counters: &WorkerCounters, now: u32, period: u32) {
        let requested = self.control.requested();
        if requested != self.bulk_seen {
            // A new request (the same one again is the peer re-asking).
            self.bulk_seen = requested;
            self.walk = Some(Walk { cursor: 0, bulk: Some(requested) });
        } else if period != 0 {
            let due = *self.next_refresh.get_or_insert(now.saturating_add(period));
            if self.walk.is_none() && now >= due {
                self.next_refresh = Some(now.saturating_add(period));
                self.walk = Some(Walk { cursor: 0, bulk: None });
            }
        }
        let Some(w) = self.walk.as_mut() else { return };
        let cap = table.capacity();
        let end = w.cursor.saturating_add(self.budget).min(cap);
        let headroom = self.out.capacity() / 4;
        while w.cursor < end {
            // A periodic walk reports this box's own entries only (module
            // docs: an echo of the peer's copies resurrects).
            // An entry past its deadline is gone, the sweep just has not
            // come by (`conntrack::sweep`): not reported.
            if let Some(f) = table.get(w.cursor).filter(|f| f.expire > now && replicable(f) && (w.bulk.is_some() || !f.flags.contains(EntryFlags::SYNCED))) {
                if !self.out.has_room(headroom + 1) {
                    return;
                }
                push(&mut self.out, counters, SyncRecord::of_flow(SyncKind::Refresh, f, table.track(w.cursor).as_ref(), table.proxy(w.cursor), now));
            }
            w.cursor += 1;
        }
        if w.cursor >= cap {
            if let Some(id) = w.bulk {
                self.control.finish(id, self.out.position());
            }
            self.walk = None;
        }
    }
}

/// Whether entry `f` is reported to the peer (module docs): not while
/// nobody has answered it.
#[inline]
pub(super) fn replicable(f: &crate::conntrack::Flow) -> bool {
    replicable_with(f.flags, f.mode, f.proto)
}

/// `replicable` for an entry with `flags`, `mode` and protocol `proto`.
#[inline]
pub(super) fn replicable_with(flags: EntryFlags, mode: Forwarding, proto: u8) -> bool {
    !mode.is_local() && (flags.intersects(EntryFlags::ASSURED | EntryFlags::SYN_PROXY) || (mode.is_dsr() && proto != crate::conntrack::IPPROTO_TCP))
}

/// Pushes `rec`, counting it as sent or dropped.
#[inline]
fn push(out: &mut RecordProducer, counters: &WorkerCounters, rec: SyncRecord) {
    if out.push(rec) {
        counters.sync.sent.inc();
    } else {
        counters.sync.dropped.inc();
    }
}

impl Shard {
    /// Reports entry `id` (`Create`, `Update`: its version goes up) when
    /// sync is on. A SYN-proxied entry is reported once its translation
    /// is set (`synproxy::cookie_ack`), not when `open_entry` makes it.
    #[inline]
    pub(super) fn emit_flow(&mut self, kind: SyncKind, id: FlowId) {
        let Some(r) = self.sync.as_mut() else { return };
        let Some(f) = self.table.get(id).filter(|f| replicable(f)) else { return };
        if kind == SyncKind::Create && f.flags.contains(EntryFlags::SYN_PROXY) && self.table.proxy(id).is_none_or(|t| t.proxy & PROXY_ON == 0) {
            return;
        }
        if kind == SyncKind::Update {
            let v = f.version().wrapping_add(1);
            if let Some(mut m) = self.table.get_mut(id) {
                m.set_version(v);
            }
        }
        let (Some(f), track) = (self.table.get(id), self.table.track(id)) else { return };
        push(&mut r.out, &self.counters, SyncRecord::of_flow(kind, f, track.as_ref(), self.table.proxy(id), self.now));
    }

    /// Reports a removed entry (`Delete`; `expired`: idle) when sync is
    /// on. A closed connection (not an idle one, which the peer may still
    /// forward) is remembered for `TOMB_TICKS`.
    #[inline]
    pub(super) fn emit_delete(sync: &mut Option<Replication>, counters: &WorkerCounters, f: &crate::conntrack::Flow, now: u32, expired: bool) {
        let Some(r) = sync.as_mut() else { return };
        // Never reported, so the peer has nothing to delete.
        if !replicable(f) {
            return;
        }
        let mut rec = SyncRecord::of_flow(SyncKind::Delete, f, None, None, now);
        if expired {
            rec.flags |= SyncRecord::FLAG_EXPIRED;
        }
        if !expired || matches!(f.state, FlowState::Close | FlowState::TimeWait) {
            r.tombs.bury(f.original_key(), now);
        }
        push(&mut r.out, counters, rec);
    }

    /// Reports a persistence record made (`Persist`, with its timeout) or
    /// dropped (`PersistDelete`) for the client of `p`.
    #[inline]
    pub(super) fn emit_persist(sync: &mut Option<Replication>, counters: &WorkerCounters, kind: SyncKind, p: &L4Info, server: (u32, u16), mode: Forwarding, timeout: u32) {
        let Some(r) = sync.as_mut() else { return };
        let rec = SyncRecord {
            kind,
            family: FAMILY_V4,
            proto: p.proto,
            mode,
            client_ip: p.src,
            client_port: p.sport,
            vip: p.dst,
            vport: p.dport,
            server_ip: server.0,
            server_port: server.1,
            timeout_ms: timeout.saturating_mul(TICK_MS),
            ..SyncRecord::EMPTY
        };
        push(&mut r.out, counters, rec);
    }

    /// A packet was forwarded on entry `id`, which was in state `before`
    /// with flags `flags`: an entry installed from the peer is now this
    /// box's too, and a state change is reported.
    #[inline]
    pub(super) fn after_packet(&mut self, id: FlowId, before: crate::conntrack::FlowState, flags: EntryFlags, state: crate::conntrack::FlowState) {
        // Past the handshake (ESTABLISHED, or closing from SYN_RECV: the
        // client's FIN), or answered UDP; a reset in the handshake is not.
        let assures = !flags.contains(EntryFlags::ASSURED) && !state.is_unreplied() && state != FlowState::Close;
        let mut now_flags = flags.difference(EntryFlags::SYNCED);
        if assures {
            now_flags |= EntryFlags::ASSURED;
        }
        if now_flags != flags {
            self.table.set_flags(id, now_flags);
        }
        // CLOSE (a reset) keeps the entry for `tcp_close`; its expiry
        // reports it (`Delete`). Being assured makes an entry the peer's
        // business: its `Create`.
        if state != before || assures {
            let (mode, proto) = self.table.get(id).map_or((Forwarding::Nat, 0), |f| (f.mode, f.proto));
            let kind = if replicable_with(flags, mode, proto) { SyncKind::Update } else { SyncKind::Create };
            self.emit_flow(kind, id);
        }
    }

    /// Slow path, once per pass: applies up to `INSTALL_BUDGET` of the
    /// peer's records, then walks on.
    pub(super) fn sync_pass(&mut self, snap: &Snapshot, now: u32) {
        let Some(mut r) = self.sync.take() else { return };
        r.tombs.key = self.config.hash_key;
        self.rehome_step(snap, &mut r);
        let mut buf = [SyncRecord::EMPTY; INSTALL_BATCH];
        let mut left = INSTALL_BUDGET;
        while left > 0 {
            let want = left.min(INSTALL_BATCH);
            let n = r.installs.pop_batch(buf.get_mut(..want).unwrap_or_default());
            for rec in buf.iter().take(n) {
                match self.apply(snap, rec, &r.tombs) {
                    Ok(()) => self.counters.sync.installed.inc(),
                    Err(why) => self.counters.sync.count_failure(why),
                }
            }
            if n < want {
                break;
            }
            left -= n;
        }
        r.walk(&self.table, &self.counters, now, self.config.sync_refresh);
        self.sync = Some(r);
    }

    /// Applies one of the peer's records (module docs for the rules).
    fn apply(&mut self, snap: &Snapshot, rec: &SyncRecord, tombs: &Tombs) -> Result<(), InstallFailure> {
        match rec.kind {
            SyncKind::Create | SyncKind::Update | SyncKind::Refresh => self.install_flow(snap, rec, tombs),
            SyncKind::Delete => {
                self.uninstall_flow(snap, rec);
                Ok(())
            }
            SyncKind::Persist | SyncKind::PersistDelete => self.install_persist(snap, rec),
        }
    }
}

#[cfg(test)]
mod tests;
