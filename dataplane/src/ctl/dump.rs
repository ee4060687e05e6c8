//! Connection-table and persistence-table dumps for the console (`show
//! connections`, `show persistence`).
//!
//! Each worker owns its flow table alone, so the control plane cannot read
//! it. Instead it asks: one `FlowDump` per worker, a request/response cell
//! with a preallocated result buffer, after grout's shared fields that say
//! who reads and writes them (`modules/infra/control/worker.h`).
//!
//! ```text
//!            control: request()             worker: serve() (scan done)
//!   IDLE ──────────────────────> REQUESTED ──────────────────────────> DONE
//!    ^  ^                                                               │
//!    │  └─────────────── control: take() (copied the entries) ──────────┘
//!    └── control: request() again from DONE (a late answer is discarded)
//! ```
//!
//! Ownership follows the state: the filter is written by the control plane
//! only in IDLE/DONE and read by the worker only in REQUESTED; the entries
//! and counts are written by the worker only in REQUESTED and read by the
//! control plane only in DONE. Each transition is a Release store read with
//! Acquire, which orders the buffer accesses on both sides.
//!
//! The worker scans at most `SCAN_BUDGET` table slots per `poll` (its slow
//! path, after expiry), so a dump of a million-entry table costs every poll
//! a bounded few microseconds and never stalls forwarding. The dump is not
//! a snapshot: entries created or removed while it runs may or may not be
//! in it (like `/proc/net/ip_vs_conn`). Nothing here allocates after
//! `FlowDump::new`, locks or panics on the worker's side.

use crate::conntrack::{Addr, Flow, FlowState, FlowTable, Forwarding};
use crate::lb::persist::{PersistTable, RecordView};
use core::net::IpAddr;
use crate::sync::{Arc, AtomicU32, AtomicU64, AtomicU8, Ordering, UnsafeCell};

/// Entries one worker returns at most per dump.
pub const DUMP_CAPACITY: usize = 4096;
/// Table slots scanned per `poll` at most.
pub const SCAN_BUDGET: u32 = 16 * 1024;

const IDLE: u8 = 0;
const REQUESTED: u8 = 1;
const DONE: u8 = 2;

/// An address to match, of either family: `port` 0 matches any port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrMatch {
    pub ip: IpAddr,
    pub port: u16,
}

impl AddrMatch {
    fn matches<A: Addr>(&self, ip: A, port: u16) -> bool {
        self.ip == ip.ip().to_canonical() && (self.port == 0 || self.port == port)
    }
}

/// Which table a dump reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum What {
    #[default]
    Connections,
    Persistence,
}

/// What to dump: entries of one virtual address and/or one real server
/// (records of one persistence group and/or one server), at most `limit`
/// of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpFilter {
    pub what: What,
    pub vip: Option<AddrMatch>,
    pub server: Option<AddrMatch>,
    /// Persistence records of this group only.
    pub group: Option<u16>,
    pub limit: u32,
}

impl Default for DumpFilter {
    fn default() -> Self {
        Self { what: What::Connections, vip: None, server: None, group: None, limit: DUMP_CAPACITY as u32 }
    }
}

impl DumpFilter {
    fn matches<A: Addr>(&self, f: &Flow<A>) -> bool {
        self.vip.is_none_or(|m| m.matches(f.vip, f.vport)) && self.server.is_none_or(|m| m.matches(f.server_ip, f.server_port))
    }

    /// A record's server has no port: a server filter matches its address.
    fn matches_record(&self, r: &RecordView) -> bool {
        self.group.is_none_or(|g| g == r.group) && self.server.is_none_or(|m| m.ip == r.server_ip)
    }
}

/// One answer's item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dumped {
    Connection(DumpEntry),
    Persistence(RecordView),
}

/// One connection entry as the console shows it (seed 001's layout):
/// client side client/server addresses (client, VIP), server side
/// client/server addresses (local address, server), protocol, state, idle
/// time and timeout. Addresses of either family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpEntry {
    pub proto: u8,
    pub state: FlowState,
    pub client_ip: IpAddr,
    pub client_port: u16,
    pub vip: IpAddr,
    pub vport: u16,
    /// The server side's client address: the client's own for NAT, the
    /// full-NAT local address otherwise.
    pub local_ip: IpAddr,
    pub local_port: u16,
    pub server_ip: IpAddr,
    pub server_port: u16,
    /// Snapshot indices of its virtual and real server.
    pub vs: u16,
    pub server: u16,
    /// Ticks since the last packet (approximate: the timeout less the time
    /// left), and the state's idle timeout, in `conntrack::TICK_MS` ticks.
    pub idle_ticks: u32,
    pub timeout_ticks: u32,
    /// How it is forwarded (a hairpinned NAT client's entry is `FullNat`).
    pub mode: Forwarding,
}

impl DumpEntry {
    const EMPTY: DumpEntry = DumpEntry {
        proto: 0,
        state: FlowState::Close,
        client_ip: IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED),
        client_port: 0,
        vip: IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED),
        vport: 0,
        local_ip: IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED),
        local_port: 0,
        server_ip: IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED),
        server_port: 0,
        vs: 0,
        server: 0,
        idle_ticks: 0,
        timeout_ticks: 0,
        mode: Forwarding::Nat,
    };

    fn of<A: Addr>(f: &Flow<A>, table: &FlowTable<A>, now: u32) -> Self {
        let timeout = table.timeouts().for_state(f.state);
        let left = f.expire.saturating_sub(now);
        DumpEntry {
            proto: f.proto,
            state: f.state,
            client_ip: f.client_ip.ip().to_canonical(),
            client_port: f.client_port,
            vip: f.vip.ip().to_canonical(),
            vport: f.vport,
            local_ip: f.local_ip.ip().to_canonical(),
            local_port: f.local_port,
            server_ip: f.server_ip.ip().to_canonical(),
            server_port: f.server_port,
            vs: f.vs,
            server: f.server,
            idle_ticks: timeout.saturating_sub(left),
            timeout_ticks: timeout,
            mode: f.mode,
        }
    }
}

/// The request/response cell of one worker, shared by exactly one
/// `DumpClient` (control plane) and one `DumpServer` (the worker), made
/// together by `channel`; see the module docs for who touches what when.
struct FlowDump {
    /// IDLE / REQUESTED / DONE. Control: IDLE|DONE -> REQUESTED, DONE ->
    /// IDLE; worker: REQUESTED -> DONE.
    state: AtomicU8,
    /// The request. Control: rw in IDLE/DONE (before REQUESTED); worker:
    /// ro in REQUESTED.
    filter: UnsafeCell<DumpFilter>,
    /// Results. Worker: rw in REQUESTED; control: ro in DONE.
    len: AtomicU32,
    /// Entries that matched, including those beyond the limit.
    matched: AtomicU64,
    entries: Box<[UnsafeCell<Dumped>]>,
}

// SAFETY: `entries` is only accessed by the side that owns it in the
// current state (module docs), and each side has one handle (`channel`);
// every other field is atomic.
unsafe impl Sync for FlowDump {}
// SAFETY: as above; Dumped is plain data.
unsafe impl Send for FlowDump {}

/// The two ends of one worker's dump cell, with room for `DUMP_CAPACITY`
/// entries: the control plane keeps the client, the worker gets the
/// server. Neither end can be cloned, so the cell has one server.
pub fn channel() -> (DumpClient, DumpServer) {
    channel_with_capacity(DUMP_CAPACITY)
}

/// `channel` with room for `capacity` entries (small ones for model
/// checking).
pub fn channel_with_capacity(capacity: usize) -> (DumpClient, DumpServer) {
    let cell = Arc::new(FlowDump::new(capacity));
    let server = DumpServer { cell: Arc::clone(&cell), cursor: 0, active: false, filter: DumpFilter::default(), len: 0, matched: 0 };
    (DumpClient { cell }, server)
}

impl FlowDump {
    fn new(capacity: usize) -> Self {
        FlowDump {
            state: AtomicU8::new(IDLE),
            filter: UnsafeCell::new(DumpFilter::default()),
            len: AtomicU32::new(0),
            matched: AtomicU64::new(0),
            entries: (0..capacity).map(|_| UnsafeCell::new(Dumped::Connection(DumpEntry::EMPTY))).collect(),
        }
    }
}

/// The control plane's end of a worker's dump cell.
pub struct DumpClient {
    cell: Arc<FlowDump>,
}

impl DumpClient {

    /// Control plane: asks the worker for a dump. False while the worker
    /// still owns a previous request (it has not answered yet).
    pub fn request(&self, filter: &DumpFilter) -> bool {
        let c = &self.cell;
        if c.state.load(Ordering::Acquire) == REQUESTED {
            return false;
        }
        let filter = DumpFilter { limit: filter.limit.min(DUMP_CAPACITY as u32), ..*filter };
        // SAFETY: outside REQUESTED the worker does not read the filter
        // (it copies it once it sees REQUESTED, after the Release below).
        c.filter.with_mut(|f| unsafe { *f = filter });
        c.state.store(REQUESTED, Ordering::Release);
        true
    }

    /// Control plane: once the worker answered, appends its entries to
    /// `out`, frees the cell and returns how many entries matched in all
    /// (which may exceed the limit). None while the worker is still at it.
    pub fn take(&self, out: &mut Vec<Dumped>) -> Option<u64> {
        let c = &self.cell;
        if c.state.load(Ordering::Acquire) != DONE {
            return None;
        }
        let len = (c.len.load(Ordering::Relaxed) as usize).min(c.entries.len());
        for cell in c.entries.iter().take(len) {
            // SAFETY: in DONE the worker no longer touches the entries
            // (Acquire above pairs with its Release).
            out.push(cell.with(|e| unsafe { *e }));
        }
        let matched = c.matched.load(Ordering::Relaxed);
        c.state.store(IDLE, Ordering::Release);
        Some(matched)
    }

    /// True while a request waits for the worker.
    pub fn pending(&self) -> bool {
        self.cell.state.load(Ordering::Acquire) == REQUESTED
    }
}

/// The worker's end of its dump cell, and where its scan of the table
/// stands.
pub struct DumpServer {
    cell: Arc<FlowDump>,
    /// Next table slot to look at while a dump runs.
    cursor: u32,
    active: bool,
    filter: DumpFilter,
    len: u32,
    matched: u64,
}

impl DumpServer {
    /// Worker slow path, once per poll: picks up a request, scans up to
    /// `SCAN_BUDGET` slots of `table` (or `persist`) into the buffer, and
    /// answers once the whole table has been seen. `now` is in flow-table
    /// ticks.
    #[inline]
    pub fn serve<A: Addr>(&mut self, table: &FlowTable<A>, persist: &PersistTable<A>, now: u32) {
        self.serve_both(table, persist, None, now);
    }

    /// `serve` over a worker's two tables, the IPv4 one then the IPv6 one
    /// (translated connections' IPv4 sides shown as IPv4).
    #[inline]
    pub fn serve_both<A: Addr>(&mut self, table: &FlowTable<A>, persist: &PersistTable<A>, v6: Option<(&FlowTable<u128>, &PersistTable<u128>)>, now: u32) {
        if !self.active && !self.begin() {
            return;
        }
        let cap4 = self.capacity(table, persist);
        let cap = cap4.saturating_add(v6.map_or(0, |(t, p)| self.capacity(t, p)));
        let end = self.cursor.saturating_add(SCAN_BUDGET).min(cap);
        let (from, to) = (self.cursor, end);
        self.scan(table, persist, from.min(cap4), to.min(cap4), now);
        if let Some((t, p)) = v6 {
            self.scan(t, p, from.max(cap4) - cap4, to.max(cap4) - cap4, now);
        }
        self.cursor = end;
        if self.cursor >= cap {
            self.cell.len.store(self.len, Ordering::Relaxed);
            self.cell.matched.store(self.matched, Ordering::Relaxed);
            self.cell.state.store(DONE, Ordering::Release);
            self.active = false;
        }
    }

    fn capacity<A: Addr>(&self, table: &FlowTable<A>, persist: &PersistTable<A>) -> u32 {
        match self.filter.what {
            What::Connections => table.capacity(),
            What::Persistence => u32::try_from(persist.capacity()).unwrap_or(u32::MAX),
        }
    }

    /// Slots `from..to` of one table.
    fn scan<A: Addr>(&mut self, table: &FlowTable<A>, persist: &PersistTable<A>, from: u32, to: u32, now: u32) {
        for id in from..to {
            match self.filter.what {
                What::Connections => match table.get(id) {
                    Some(f) if self.filter.matches(f) => self.push(|| Dumped::Connection(DumpEntry::of(f, table, now))),
                    _ => {}
                },
                What::Persistence => match persist.view(id as usize, now) {
                    Some(r) if self.filter.matches_record(&r) => self.push(|| Dumped::Persistence(r)),
                    _ => {}
                },
            }
        }
    }

    /// Picks up a request if there is one.
    fn begin(&mut self) -> bool {
        if self.cell.state.load(Ordering::Acquire) != REQUESTED {
            return false;
        }
        self.active = true;
        self.cursor = 0;
        self.len = 0;
        self.matched = 0;
        // SAFETY: in REQUESTED (Acquire above pairs with the control
        // plane's Release) the filter is the worker's to read, and the
        // control plane does not write it until DONE.
        self.filter = self.cell.filter.with(|f| unsafe { *f });
        true
    }

    /// Counts a match and keeps it while there is room under the limit.
    #[inline]
    fn push(&mut self, item: impl FnOnce() -> Dumped) {
        self.matched += 1;
        let limit = (self.filter.limit as usize).min(self.cell.entries.len());
        if (self.len as usize) < limit {
            if let Some(cell) = self.cell.entries.get(self.len as usize) {
                // SAFETY: in REQUESTED the entries are the worker's alone;
                // the control plane reads them only after the Release
                // store of DONE in `serve`.
                cell.with_mut(|e| unsafe { *e = item() });
                self.len += 1;
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::conntrack::{FlowInit, Timeouts};

    #[allow(clippy::panic, reason = "test code")]
    fn conn(d: &Dumped) -> &DumpEntry {
        match d {
            Dumped::Connection(e) => e,
            Dumped::Persistence(_) => panic!("a record in a connection dump"),
        }
    }

    #[test]
    fn the_control_plane_reads_only_what_the_worker_finished() {
        let mut table = FlowTable::<u32>::new(8, Timeouts::default());
        for i in 0..3u16 {
            let init = FlowInit { proto: 6, client_ip: 1, client_port: 1000 + i, vip: 2, vport: 80, server_ip: 3, server_port: 8080, local_ip: 1, local_port: 1000 + i, ..Default::default() };
            assert!(table.insert(&init, 0).is_ok());
        }
        let table = std::sync::Arc::new(table);
        loom::model(move || {
            let (client, mut server) = channel_with_capacity(2);
            let table = std::sync::Arc::clone(&table);
            assert!(client.request(&DumpFilter { limit: 2, ..DumpFilter::default() }));
            // The worker answers in one pass (the table is below the scan
            // budget) while the control plane polls for the answer.
            let worker = loom::thread::spawn(move || server.serve(&table, &PersistTable::default(), 0));
            let mut out = Vec::new();
            let mut answered = None;
            for _ in 0..3 {
                if let Some(m) = client.take(&mut out) {
                    answered = Some(m);
                    break;
                }
                loom::thread::yield_now();
            }
            worker.join().unwrap();
            if answered.is_none() {
                answered = client.take(&mut out);
            }
            assert_eq!(answered, Some(3), "three matched");
            assert_eq!(out.len(), 2, "two returned");
            assert!(out.iter().map(conn).all(|e| e.vip == 2u32.ip() && e.server_ip == 3u32.ip()));
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn v4(ip: u32) -> IpAddr {
        ip.ip()
    }
    use crate::conntrack::{FlowInit, Timeouts};
    use std::sync::Arc;

    #[allow(clippy::panic, reason = "test code")]
    fn conn(d: &Dumped) -> &DumpEntry {
        match d {
            Dumped::Connection(e) => e,
            Dumped::Persistence(_) => panic!("a record in a connection dump"),
        }
    }

    fn init(i: u32, vip: u32, server: u32) -> FlowInit {
        FlowInit {
            proto: 6,
            client_ip: 0xc000_020a,
            client_port: 10_000 + i as u16,
            vip,
            vport: 80,
            server_ip: server,
            server_port: 8080,
            local_ip: 0xc000_020a,
            local_port: 10_000 + i as u16,
            ..Default::default()
        }
    }

    fn run(server: &mut DumpServer, table: &FlowTable, now: u32) -> usize {
        let mut polls = 0;
        while server.cell.state.load(Ordering::Acquire) == REQUESTED {
            server.serve(table, &PersistTable::default(), now);
            polls += 1;
            assert!(polls < 10_000, "no answer");
        }
        polls
    }

    #[test]
    #[cfg_attr(miri, ignore = "spinning threads / a 100k-entry scan: far too slow under Miri; loom checks the protocol")]
    fn dump_filters_limits_and_counts() {
        let mut table = FlowTable::new(100_000, Timeouts::default());
        for i in 0..300 {
            let server = 0xc633_640b + i % 3;
            table.insert(&init(i, 0xc000_0264 + i % 2, server), 5).unwrap();
        }
        let (cell, mut server) = channel();
        let mut out = Vec::new();
        assert_eq!(cell.take(&mut out), None, "nothing asked yet");

        assert!(cell.request(&DumpFilter::default()));
        assert!(!cell.request(&DumpFilter::default()), "the worker owns the cell until it answers");
        let polls = run(&mut server, &table, 55);
        assert!(polls >= (table.capacity() / SCAN_BUDGET) as usize, "bounded work per poll: {polls} polls");
        assert_eq!(cell.take(&mut out), Some(300));
        assert_eq!(out.len(), 300);
        let e = out.iter().map(conn).find(|e| e.client_port == 10_007).unwrap();
        assert_eq!((e.vip, e.vport, e.server_ip, e.server_port, e.local_ip), (v4(0xc000_0265), 80, v4(0xc633_640c), 8080, v4(0xc000_020a)));
        assert_eq!(e.state, FlowState::SynSent);
        assert_eq!(e.timeout_ticks, Timeouts::default().tcp_syn);
        assert_eq!(e.idle_ticks, 50, "inserted at tick 5, dumped at 55");

        out.clear();
        let f = DumpFilter { vip: Some(AddrMatch { ip: v4(0xc000_0264), port: 0 }), server: Some(AddrMatch { ip: v4(0xc633_640b), port: 8080 }), limit: 10, ..DumpFilter::default() };
        assert!(cell.request(&f));
        run(&mut server, &table, 6);
        // vip even i, server i % 3 == 0: i % 6 == 0, 50 of them.
        assert_eq!(cell.take(&mut out), Some(50));
        assert_eq!(out.len(), 10);
        assert!(out.iter().map(conn).all(|e| e.vip == v4(0xc000_0264) && e.server_ip == v4(0xc633_640b)));

        out.clear();
        let none = DumpFilter { vip: Some(AddrMatch { ip: v4(0xc000_0264), port: 443 }), ..DumpFilter::default() };
        assert!(cell.request(&none));
        run(&mut server, &table, 6);
        assert_eq!(cell.take(&mut out), Some(0));
        assert!(out.is_empty());
    }

    #[test]
    fn persistence_records_dump_by_group_and_server() {
        let table = FlowTable::<u32>::new(64, Timeouts::default());
        let mut persist = PersistTable::<u32>::new(4096);
        for i in 0..40u32 {
            let group = (i % 2) as u16;
            assert!(persist.insert(crate::lb::persist::key(group, 0xc000_0200 + i, 0), 0xc633_640b + i % 4, 0, 10, 100));
        }
        // One that expired and one that no connection holds any more.
        let old = crate::lb::persist::key(0, 0xc000_02ff, 0);
        persist.insert(old, 0xc633_640b, 0, 0, 5);
        persist.release(old, 0xc633_640b, 0, 5);
        let (cell, mut server) = channel();
        let f = DumpFilter { what: What::Persistence, group: Some(1), server: Some(AddrMatch { ip: v4(0xc633_640c), port: 0 }), ..DumpFilter::default() };
        assert!(cell.request(&f));
        while server.cell.state.load(Ordering::Acquire) == REQUESTED {
            server.serve(&table, &persist, 20);
        }
        let mut out = Vec::new();
        // Group 1 is odd i, server +1 is i % 4 == 1: 10 of them.
        assert_eq!(cell.take(&mut out), Some(10));
        for d in &out {
            let Dumped::Persistence(r) = d else { panic!("a connection in a persistence dump") };
            assert_eq!((r.group, r.server_ip, r.client_port, r.refs), (1, v4(0xc633_640c), 0, 1));
            assert_eq!(r.left_ticks, 90, "made at 10 for 100 ticks, seen at 20");
            let IpAddr::V4(c) = r.client_ip else { panic!("v4") };
            assert_eq!(u32::from(c) % 4, 1);
        }
        assert!(cell.request(&DumpFilter { what: What::Persistence, ..DumpFilter::default() }));
        while server.cell.state.load(Ordering::Acquire) == REQUESTED {
            server.serve(&table, &persist, 20);
        }
        out.clear();
        assert_eq!(cell.take(&mut out), Some(40), "the expired record is not listed");
    }

    #[test]
    fn a_late_answer_can_be_replaced_by_a_new_request() {
        let mut table = FlowTable::new(1024, Timeouts::default());
        table.insert(&init(1, 1, 2), 0).unwrap();
        let (cell, mut server) = channel();
        assert!(cell.request(&DumpFilter::default()));
        run(&mut server, &table, 0);
        // The control plane gave up on that one; a new request from DONE.
        assert!(cell.request(&DumpFilter { limit: 0, ..DumpFilter::default() }));
        run(&mut server, &table, 0);
        let mut out = Vec::new();
        assert_eq!(cell.take(&mut out), Some(1));
        assert!(out.is_empty(), "limit 0");
    }

    #[test]
    #[cfg_attr(miri, ignore = "spinning threads / a 100k-entry scan: far too slow under Miri; loom checks the protocol")]
    fn concurrent_worker_and_control() {
        let mut table = FlowTable::new(4096, Timeouts::default());
        for i in 0..1000 {
            table.insert(&init(i, 7, 9), 0).unwrap();
        }
        let (cell, mut server) = channel();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let worker = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    server.serve(&table, &PersistTable::default(), 0);
                    std::hint::spin_loop();
                }
            })
        };
        for round in 0..200 {
            assert!(cell.request(&DumpFilter { limit: 1 + round, ..DumpFilter::default() }));
            let mut out = Vec::new();
            let matched = loop {
                if let Some(m) = cell.take(&mut out) {
                    break m;
                }
                std::hint::spin_loop();
            };
            assert_eq!(matched, 1000);
            assert_eq!(out.len(), (1 + round) as usize);
            assert!(out.iter().map(conn).all(|e| e.vip == v4(7) && e.server_ip == v4(9) && e.proto == 6));
        }
        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap();
    }
}
