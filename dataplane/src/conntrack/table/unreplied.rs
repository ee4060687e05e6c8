//! The unreplied lists of a `FlowTable`: half-open TCP entries and UDP
//! entries nobody answered, oldest first, linked through the entries'
//! `emb_prev`/`emb_next` (an entry is in one list at most: its state says
//! which). What `FlowTable::oldest_unreplied` evicts from.

use super::super::entry::Flow;
use super::super::key::{Addr, FlowId};
use super::super::state::FlowState;
use super::super::entry::NIL;
use super::FlowTable;

/// One unreplied list: its ends and length.
#[derive(Debug, Clone, Copy)]
pub(super) struct EmbList {
    pub(super) head: u32,
    pub(super) tail: u32,
    pub(super) len: u32,
}

impl EmbList {
    pub(super) const EMPTY: EmbList = EmbList { head: NIL, tail: NIL, len: 0 };
}

/// Buckets of the per-source count (`FlowTable::unreplied_of_source`): a
/// keyed hash of the client's address picks one, so a sender cannot
/// choose whose count it shares.
pub const SOURCE_BUCKETS: usize = 4096;

/// Entries a cap's search looks at, from the oldest, for one of the
/// group's own (`FlowTable::oldest_unreplied_where`): the cap is soft
/// where the group's entries are not among the oldest.
pub const CAP_WALK: u32 = 64;

/// The unreplied entries per service (snapshot slot) and per source
/// bucket: what `[defence] unreplied_per_service` and
/// `unreplied_per_source` cap.
#[derive(Debug)]
pub(super) struct Counts {
    service: Box<[u32]>,
    source: Box<[u32]>,
    key: u64,
}

impl Counts {
    pub(super) fn new(key: u64) -> Self {
        Self {
            service: vec![0; crate::limits::MAX_SERVICES].into_boxed_slice(),
            source: vec![0; SOURCE_BUCKETS].into_boxed_slice(),
            // Not the table's own key: the bucket of a source says nothing
            // about the bucket of a tuple.
            key: crate::hash::keyed64(key, 0x756e_7265_706c_6965),
        }
    }

    #[inline]
    pub(super) fn bucket<A: Addr>(&self, ip: A) -> usize {
        // An IPv6 sender chooses its low 64 bits alone: its /64 is the
        // source (RFC 4291 §2.5.4's interface identifiers).
        // (A translated IPv4 client, mapped into IPv6, is its /32: its
        // /64 would be every IPv4 client's, `ip.source_prefix()`.)
        (crate::hash::keyed64(ip.masked(ip.source_prefix()).fold(), self.key) as usize) & (SOURCE_BUCKETS - 1)
    }

    fn add<A: Addr>(&mut self, vs: u16, ip: A, up: bool) {
        let b = self.bucket(ip);
        for c in [self.service.get_mut(vs as usize), self.source.get_mut(b)].into_iter().flatten() {
            *c = if up { c.saturating_add(1) } else { c.saturating_sub(1) };
        }
    }
}

/// Which unreplied list a state belongs to (`FlowState::is_unreplied`).
#[inline]
pub(super) fn list_of(s: FlowState) -> Option<usize> {
    match s {
        FlowState::SynSent | FlowState::SynRecv => Some(0),
        FlowState::UdpUnreplied => Some(1),
        _ => None,
    }
}

impl<A: Addr> FlowTable<A> {
    /// Unreplied entries of service slot `vs`.
    pub fn unreplied_of_service(&self, vs: u16) -> u32 {
        self.counts.service.get(vs as usize).copied().unwrap_or(0)
    }

    /// Unreplied entries whose client shares `ip`'s source bucket.
    pub fn unreplied_of_source(&self, ip: A) -> u32 {
        self.counts.source.get(self.counts.bucket(ip)).copied().unwrap_or(0)
    }

    /// The oldest entry of either unreplied list, the one for `proto`'s
    /// kind first, that `pick` accepts, among the `CAP_WALK` oldest of
    /// each: what a cap evicts.
    pub fn oldest_unreplied_where(&self, proto: u8, pick: impl Fn(&Flow<A>) -> bool) -> Option<FlowId> {
        let first = usize::from(proto != super::super::key::IPPROTO_TCP);
        [first, 1 - first].into_iter().find_map(|k| {
            let mut id = self.unreplied.get(k)?.head;
            for _ in 0..CAP_WALK {
                let f = self.entries.get(id as usize)?;
                if pick(f) {
                    return Some(id);
                }
                id = f.emb_next;
            }
            None
        })
    }

    pub(super) fn emb_contains(&self, id: FlowId, k: usize) -> bool {
        self.unreplied.get(k).is_some_and(|l| l.head == id) || self.entries.get(id as usize).is_some_and(|t| t.emb_prev != NIL)
    }

    /// Appends `id` to unreplied list `k` (unless it is in it).
    pub(super) fn emb_link(&mut self, id: FlowId, k: usize) {
        if self.emb_contains(id, k) {
            return;
        }
        let Some(tail) = self.unreplied.get(k).map(|l| l.tail) else { return };
        if let Some(t) = self.entries.get_mut(id as usize) {
            t.emb_prev = tail;
            t.emb_next = NIL;
        }
        let head_if_empty = self.entries.get_mut(tail as usize).map(|t| t.emb_next = id).is_none();
        if let Some(l) = self.unreplied.get_mut(k) {
            if head_if_empty {
                l.head = id;
            }
            l.tail = id;
            l.len += 1;
        }
        if let Some(f) = self.entries.get(id as usize) {
            let (vs, ip) = (f.vs, f.client_ip);
            self.counts.add(vs, ip, true);
        }
    }

    /// Takes `id` out of unreplied list `k` (if it is in it).
    pub(super) fn emb_unlink(&mut self, id: FlowId, k: usize) {
        if !self.emb_contains(id, k) {
            return;
        }
        let Some(t) = self.entries.get_mut(id as usize) else { return };
        let (prev, next) = (t.emb_prev, t.emb_next);
        t.emb_prev = NIL;
        t.emb_next = NIL;
        let no_prev = self.entries.get_mut(prev as usize).map(|p| p.emb_next = next).is_none();
        let no_next = self.entries.get_mut(next as usize).map(|n| n.emb_prev = prev).is_none();
        if let Some(l) = self.unreplied.get_mut(k) {
            if no_prev {
                l.head = next;
            }
            if no_next {
                l.tail = prev;
            }
            l.len -= 1;
        }
        if let Some(f) = self.entries.get(id as usize) {
            let (vs, ip) = (f.vs, f.client_ip);
            self.counts.add(vs, ip, false);
        }
    }

    /// Keeps the unreplied lists in step with a state change.
    #[inline]
    pub(super) fn emb_follow(&mut self, id: FlowId, old: FlowState, new: FlowState) {
        let (a, b) = (list_of(old), list_of(new));
        if a != b {
            if let Some(k) = a {
                self.emb_unlink(id, k);
            }
            if let Some(k) = b {
                self.emb_link(id, k);
            }
        }
    }
}
