//! The unreplied lists of a `FlowTable`: half-open TCP entries and UDP
//! entries nobody answered, oldest first, linked through `Track`'s
//! `emb_prev`/`emb_next` (an entry is in one list at most: its state says
//! which). What `FlowTable::oldest_unreplied` evicts from.

use super::super::key::{Addr, FlowId};
use super::super::state::FlowState;
use super::{FlowTable, NIL};

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
    pub(super) fn emb_contains(&self, id: FlowId, k: usize) -> bool {
        self.unreplied.get(k).is_some_and(|l| l.head == id) || self.tracks.get(id as usize).is_some_and(|t| t.emb_prev != NIL)
    }

    /// Appends `id` to unreplied list `k` (unless it is in it).
    pub(super) fn emb_link(&mut self, id: FlowId, k: usize) {
        if self.emb_contains(id, k) {
            return;
        }
        let Some(tail) = self.unreplied.get(k).map(|l| l.tail) else { return };
        if let Some(t) = self.tracks.get_mut(id as usize) {
            t.emb_prev = tail;
            t.emb_next = NIL;
        }
        let head_if_empty = self.tracks.get_mut(tail as usize).map(|t| t.emb_next = id).is_none();
        if let Some(l) = self.unreplied.get_mut(k) {
            if head_if_empty {
                l.head = id;
            }
            l.tail = id;
            l.len += 1;
        }
    }

    /// Takes `id` out of unreplied list `k` (if it is in it).
    pub(super) fn emb_unlink(&mut self, id: FlowId, k: usize) {
        if !self.emb_contains(id, k) {
            return;
        }
        let Some(t) = self.tracks.get_mut(id as usize) else { return };
        let (prev, next) = (t.emb_prev, t.emb_next);
        t.emb_prev = NIL;
        t.emb_next = NIL;
        let no_prev = self.tracks.get_mut(prev as usize).map(|p| p.emb_next = next).is_none();
        let no_next = self.tracks.get_mut(next as usize).map(|n| n.emb_prev = prev).is_none();
        if let Some(l) = self.unreplied.get_mut(k) {
            if no_prev {
                l.head = next;
            }
            if no_next {
                l.tail = prev;
            }
            l.len -= 1;
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
