//! Persistence records: "the shopping cart problem" (seed 004). A virtual
//! server with persistence sends every new connection of one client (its
//! address under a netmask, or address and port) to the server the
//! client's first connection went to, for as long as the record lives.
//!
//! ## Who holds the records
//!
//! Each worker holds the records of the clients it owns, in a fixed-size
//! table it alone reads and writes (no lock, no allocation after the first
//! snapshot that asks for one). For that to be enough, every new
//! connection of a client must reach the worker that holds its record:
//! when a virtual server has `source-ip` persistence, the owner of its
//! connections is a hash of the client address under the persistence
//! netmask alone (`pipeline::owner`), not of address and port; NAT replies
//! from its servers are owned by the same key (the snapshot keeps which
//! servers that applies to). `source-ip-port` records are keyed by what
//! the flow owner already hashes, so nothing changes for them. A
//! persistence group shares records between virtual servers: all its
//! members have the same kind and netmask (check-config enforces it), so a
//! client's connections to VIP:80 and VIP:443 meet on one worker and one
//! record.
//!
//! The other design — one table every worker reads, merged by the control
//! plane from records the workers report — spreads a client's connections
//! over every worker, but a record is only visible elsewhere after a
//! control-loop turn: two connections opened together can go to two
//! servers. Sharding is exact, and its price is seed 004's mega-proxy
//! problem seen from inside the box: every client behind one proxy address
//! (or one /24 under a netmask) lands on one worker, so a few large sources
//! skew the workers' load as they skew the servers'. The netmask widens the
//! skew; the README says so.
//!
//! ## Lifetime
//!
//! A record lives while connections it placed are open (`refs`), and
//! `timeout` after the last of them ends or its last new connection,
//! whichever is later (IPVS's persistence templates behave the same). It
//! remembers the server's address and its down count (`epoch`) when it was
//! made: by default a record whose server has gone down since is dropped
//! at its next use, so a recovered server gets new clients (seed 002's
//! note on application servers); `keep_on_down` keeps it, and the client
//! returns to its server once it is back.
//!
//! The table is 8-way set associative: a full set evicts its record that
//! expires first, preferring records with no open connection. Expiry is
//! read on use (no timer walk): an expired record is a free way.

use crate::conntrack::Addr;
use crate::region::Region;

/// What a persistence record is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistKind {
    /// The client's address under the prefix (`prefix`).
    SourceIp,
    /// The client's address and port.
    SourceIpPort,
}

/// Persistence of a virtual server (`persist` has the design).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persistence {
    pub kind: PersistKind,
    /// `SourceIp`: how many leading bits of the client address count (the
    /// operator's netmask as a prefix length: /24 keeps the clients of a
    /// proxy farm together, seed 004).
    pub prefix: u8,
    /// In flow-table ticks.
    pub timeout: u32,
    /// Virtual servers of one group share records.
    pub group: u16,
    /// A record survives its server going down (default: dropped).
    pub keep_on_down: bool,
}

impl Persistence {
    /// The record key of a client.
    #[inline]
    pub fn key<A: Addr>(&self, client_ip: A, client_port: u16) -> PersistKey<A> {
        match self.kind {
            PersistKind::SourceIp => PersistKey::new(self.group, client_ip.masked(self.prefix), 0),
            PersistKind::SourceIpPort => PersistKey::new(self.group, client_ip, client_port),
        }
    }

    /// The prefix the flow owner hashes the client address under, when it
    /// hashes the address alone.
    #[inline]
    pub fn owner_prefix(&self) -> Option<u8> {
        (self.kind == PersistKind::SourceIp).then_some(self.prefix)
    }
}

/// What a record is found by: persistence group, client address (under the
/// prefix for `source-ip`) and port (0 for `source-ip`), packed into one
/// word for IPv4 (`Addr::persist_word`). The default is no key (a free way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PersistKey<A: Addr = u32>(A::PersistWord);

impl<A: Addr> PersistKey<A> {
    /// Groups are snapshot indexes, below `limits::MAX_SERVICES` (2^8).
    #[inline]
    pub fn new(group: u16, ip: A, port: u16) -> Self {
        PersistKey(A::persist_word(group, ip, port))
    }

    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.0 == A::PersistWord::default()
    }

    /// The value the table's keyed hash mixes: for IPv4 the whole key,
    /// one-to-one.
    #[inline(always)]
    fn fold(&self) -> u64 {
        A::persist_fold(self.0)
    }
}

/// One record, 24 bytes for IPv4.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record<A: Addr = u32> {
    key: PersistKey<A>,
    /// The server's address (records are shared by a persistence group's
    /// virtual servers, whose pools list the same nodes).
    pub server_ip: A,
    /// The node's down count when the record was made.
    pub epoch: u32,
    /// In flow-table ticks.
    expires: u32,
    /// Open connections placed by this record.
    refs: u32,
}

const _: () = assert!(core::mem::size_of::<Record<u32>>() == 24);

/// A live record as `show persistence` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView {
    /// The persistence group's snapshot index.
    pub group: u16,
    /// The client's address (under the prefix for `source-ip`) and port
    /// (0 for `source-ip`).
    pub client_ip: core::net::IpAddr,
    pub client_port: u16,
    pub server_ip: core::net::IpAddr,
    /// Open connections it placed: it lives while there are any.
    pub refs: u32,
    /// Ticks until it expires once no connection holds it.
    pub left_ticks: u32,
}

const WAYS: usize = 8;

/// The key of an IPv4 client: persistence group, address (masked) and
/// port (0 for `source-ip`).
#[inline]
pub fn key(group: u16, ip: u32, port: u16) -> PersistKey<u32> {
    PersistKey::new(group, ip, port)
}

/// `a` is later than `b` on the wrapping tick clock.
#[inline]
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

pub struct PersistTable<A: Addr = u32> {
    records: Region<Record<A>>,
    /// Sets - 1 (sets are a power of two); unused when `records` is empty.
    mask: u32,
    /// The hash key (`crate::hash`).
    hash_key: u64,
}

impl<A: Addr> Default for PersistTable<A> {
    fn default() -> Self {
        Self { records: Region::empty(), mask: 0, hash_key: 0 }
    }
}

impl<A: Addr> core::fmt::Debug for PersistTable<A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PersistTable").field("capacity", &self.records.len()).finish()
    }
}

impl<A: Addr> PersistTable<A> {
    /// At least `capacity` records (rounded up to whole sets, a power of
    /// two of them). Slow path: allocates.
    pub fn new(capacity: u32) -> Self {
        Self::keyed(capacity, 0)
    }

    /// `new`, hashing with `hash_key` (`crate::hash`).
    pub fn keyed(capacity: u32, hash_key: u64) -> Self {
        if capacity == 0 {
            return Self::default();
        }
        let sets = (capacity as usize).div_ceil(WAYS).next_power_of_two();
        Self { records: Region::filled(sets * WAYS, Record::default()), mask: (sets - 1) as u32, hash_key }
    }

    pub fn capacity(&self) -> usize {
        self.records.len()
    }

    #[inline]
    fn set(&mut self, key: PersistKey<A>) -> Option<&mut [Record<A>]> {
        if self.records.is_empty() {
            return None;
        }
        let z = crate::hash::keyed64(key.fold(), self.hash_key);
        let first = ((z as u32) & self.mask) as usize * WAYS;
        self.records.get_mut(first..first + WAYS)
    }

    #[inline]
    fn live(r: &Record<A>, now: u32) -> bool {
        !r.key.is_empty() && (r.refs > 0 || after(r.expires, now))
    }

    /// The live record of `key`.
    #[inline]
    pub fn get(&mut self, key: PersistKey<A>, now: u32) -> Option<Record<A>> {
        self.set(key)?.iter().find(|r| r.key == key && Self::live(r, now)).copied()
    }

    /// A new connection placed by the record of `key`: one more reference,
    /// and at least `timeout` ticks more to live.
    #[inline]
    pub fn attach(&mut self, key: PersistKey<A>, now: u32, timeout: u32) {
        if let Some(r) = self.set(key).and_then(|s| s.iter_mut().find(|r| r.key == key)) {
            r.refs = r.refs.saturating_add(1);
            let until = now.wrapping_add(timeout);
            if after(until, r.expires) {
                r.expires = until;
            }
        }
    }

    /// Records (or replaces) `key` -> `server_ip` with one reference.
    /// Returns false when it evicted a live record to make room.
    #[inline]
    pub fn insert(&mut self, key: PersistKey<A>, server_ip: A, epoch: u32, now: u32, timeout: u32) -> bool {
        let Some(set) = self.set(key) else { return true };
        let rec = Record { key, server_ip, epoch, expires: now.wrapping_add(timeout), refs: 1 };
        // The same key, else a free or expired way, else the record with
        // no open connection that expires first, else the one that expires
        // first.
        let way = set
            .iter()
            .position(|r| r.key == key)
            .or_else(|| set.iter().position(|r| !Self::live(r, now)))
            .map(|i| (i, true))
            .or_else(|| {
                let soonest = |idle: bool| {
                    set.iter()
                        .enumerate()
                        .filter(|(_, r)| !idle || r.refs == 0)
                        .min_by_key(|(_, r)| r.expires.wrapping_sub(now))
                        .map(|(i, _)| (i, false))
                };
                soonest(true).or_else(|| soonest(false))
            });
        match way.and_then(|(i, free)| set.get_mut(i).map(|r| (r, free))) {
            Some((r, free)) => {
                *r = rec;
                free
            }
            None => true,
        }
    }

    /// State sync: the HA peer made the record `key` -> `server_ip`, with
    /// `ttl` ticks left. The same record here lives at least that long;
    /// otherwise it is recorded (replacing another server's) with no
    /// reference: the connections it placed arrive as entries of their
    /// own, and each `attach`es. Returns false when it evicted a live
    /// record to make room.
    pub fn install(&mut self, key: PersistKey<A>, server_ip: A, epoch: u32, now: u32, ttl: u32) -> bool {
        let Some(set) = self.set(key) else { return true };
        if let Some(r) = set.iter_mut().find(|r| r.key == key && r.server_ip == server_ip) {
            let until = now.wrapping_add(ttl);
            if r.refs == 0 && !after(r.expires, now) || after(until, r.expires) {
                r.expires = until;
            }
            return true;
        }
        let kept = self.insert(key, server_ip, epoch, now, ttl);
        if let Some(r) = self.set(key).and_then(|s| s.iter_mut().find(|r| r.key == key)) {
            r.refs = 0;
        }
        kept
    }

    /// A connection placed by the record of `key` on `server_ip` ended:
    /// one reference less, and `timeout` ticks to live from now at least.
    /// A record replaced meanwhile (another server) is left alone.
    pub fn release(&mut self, key: PersistKey<A>, server_ip: A, now: u32, timeout: u32) {
        if let Some(r) = self.set(key).and_then(|s| s.iter_mut().find(|r| r.key == key && r.server_ip == server_ip)) {
            r.refs = r.refs.saturating_sub(1);
            let until = now.wrapping_add(timeout);
            if after(until, r.expires) {
                r.expires = until;
            }
        }
    }

    /// Drops the record of `key` (its server went down).
    #[inline]
    pub fn remove(&mut self, key: PersistKey<A>) {
        if let Some(r) = self.set(key).and_then(|s| s.iter_mut().find(|r| r.key == key)) {
            *r = Record::default();
        }
    }

    /// The record in slot `slot` if it is live, as `show persistence`
    /// shows it (slots run from 0 to `capacity`).
    pub fn view(&self, slot: usize, now: u32) -> Option<RecordView> {
        let r = self.records.get(slot).filter(|r| Self::live(r, now))?;
        let (group, client, port) = A::persist_parts(r.key.0);
        let left = if after(r.expires, now) { r.expires.wrapping_sub(now) } else { 0 };
        Some(RecordView { group, client_ip: client.ip(), client_port: port, server_ip: r.server_ip.ip(), refs: r.refs, left_ticks: left })
    }

    /// Live records (slow: walks the table; for reports and tests).
    pub fn len(&self, now: u32) -> usize {
        self.records.iter().filter(|r| Self::live(r, now)).count()
    }

    pub fn is_empty(&self, now: u32) -> bool {
        self.len(now) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_two_groups_never_meet_and_read_back() {
        // Group 1 with port 1 against group 0 with port 32769: the group's
        // bits once overlapped the port's top bit.
        assert_ne!(key(1, 7, 1), key(0, 7, 0x8001));
        let mut t = PersistTable::<u32>::new(64);
        assert!(t.insert(key(3, 0xc000_020a, 40_000), 11, 0, 0, 10));
        let v = (0..t.capacity()).find_map(|i| t.view(i, 2)).unwrap();
        assert_eq!((v.group, v.client_ip, v.client_port, v.refs, v.left_ticks), (3, 0xc000_020au32.ip(), 40_000, 1, 8));
        let mut t6 = PersistTable::<u128>::new(64);
        assert!(t6.insert(PersistKey::new(5, 0x2001_0db8 << 96 | 9, 443), 1 << 100, 0, 0, 10));
        let v = (0..t6.capacity()).find_map(|i| t6.view(i, 0)).unwrap();
        assert_eq!((v.group, v.client_ip, v.client_port), (5, (0x2001_0db8u128 << 96 | 9).ip(), 443));
    }

    #[test]
    fn records_live_while_referenced_then_for_their_timeout() {
        let mut t = PersistTable::<u32>::new(64);
        let k = key(1, 0xc000_020a, 0);
        assert_eq!(t.get(k, 0), None);
        assert!(t.insert(k, 11, 0, 0, 10));
        assert_eq!(t.get(k, 5).map(|r| r.server_ip), Some(11));
        // Referenced: alive past its timeout.
        assert!(t.get(k, 50).is_some());
        t.release(k, 11, 50, 10);
        assert!(t.get(k, 59).is_some());
        assert_eq!(t.get(k, 60), None, "expired 10 ticks after its last connection");
        // A new connection refreshes it.
        assert!(t.insert(k, 12, 0, 100, 10));
        t.attach(k, 105, 10);
        t.release(k, 12, 106, 10);
        assert!(t.get(k, 200).is_some(), "one reference left");
        t.release(k, 12, 200, 10);
        assert!(t.get(k, 209).is_some());
        assert!(t.get(k, 211).is_none());
    }

    #[test]
    fn release_of_a_replaced_record_is_ignored_and_remove_drops() {
        let mut t = PersistTable::<u32>::new(8);
        let k = key(0, 7, 0);
        t.insert(k, 1, 0, 0, 10);
        t.insert(k, 2, 0, 0, 10);
        t.release(k, 1, 1, 10);
        assert_eq!(t.get(k, 1000).map(|r| r.server_ip), Some(2), "still referenced by server 2's connection");
        t.remove(k);
        assert_eq!(t.get(k, 0), None);
    }

    #[test]
    fn full_sets_evict_idle_records_first_and_the_clock_wraps() {
        let mut t = PersistTable::<u32>::new(4); // one set
        assert_eq!(t.capacity(), 8);
        let now = u32::MAX - 5;
        for i in 0..8 {
            assert!(t.insert(key(0, i, 0), i, 0, now, 100 + i));
        }
        // Record 2 has no open connection: it goes first.
        t.release(key(0, 2, 0), 2, now, 0);
        assert!(!t.insert(key(0, 9, 0), 9, 0, now, 100), "a live record was evicted");
        assert!(t.get(key(0, 2, 0), now).is_none());
        assert!(t.get(key(0, 9, 0), now.wrapping_add(50)).is_some(), "alive across the wrap");
        assert_eq!(t.len(now), 8);
        // All referenced: the one expiring first goes.
        assert!(!t.insert(key(0, 10, 0), 10, 0, now, 1000));
        assert!(t.get(key(0, 0, 0), now).is_none());
    }

    #[test]
    fn installed_records_have_no_reference_until_attached() {
        let mut t = PersistTable::<u32>::new(64);
        let k = key(0, 7, 0);
        assert!(t.install(k, 11, 0, 100, 20));
        assert_eq!(t.get(k, 119).map(|r| r.server_ip), Some(11));
        assert_eq!(t.get(k, 120), None, "no reference: gone after its time left");
        assert!(t.install(k, 11, 0, 200, 20));
        t.attach(k, 200, 20);
        assert!(t.get(k, 500).is_some(), "referenced by an installed entry");
        // A shorter time left never shortens a record; another server
        // replaces it.
        assert!(t.install(k, 11, 0, 500, 1));
        t.release(k, 11, 500, 20);
        assert!(t.get(k, 519).is_some());
        assert!(t.install(k, 12, 0, 519, 5));
        assert_eq!(t.get(k, 523).map(|r| r.server_ip), Some(12));
        assert_eq!(t.get(k, 524), None);
    }

    #[test]
    fn keys_separate_groups_ports_and_addresses() {
        let keys = [key(0, 1, 0), key(1, 1, 0), key(0, 1, 1), key(0, 2, 0), key(0x7fff, u32::MAX, u16::MAX)];
        for (i, a) in keys.iter().enumerate() {
            assert!(!a.is_empty());
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let mut empty = PersistTable::<u32>::new(0);
        assert!(empty.insert(keys[0], 1, 0, 0, 1));
        assert_eq!(empty.get(keys[0], 0), None);
    }

    #[test]
    fn many_clients_fill_the_table_without_losing_recent_ones() {
        let mut t = PersistTable::<u32>::new(8192);
        for c in 0..3000u32 {
            t.insert(key(0, 0xc633_0000 + c, 0), c, 0, 0, 1000);
        }
        let found = (0..3000u32).filter(|c| t.get(key(0, 0xc633_0000 + c, 0), 1).map(|r| r.server_ip) == Some(*c)).count();
        // Random placement: ~4 of 3000 overflow an 8-way set at 37% load.
        assert!(found > 2980, "{found} of 3000 records kept in 8192 slots");
    }
}
