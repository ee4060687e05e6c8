//! A `FlowTable`'s sequence marks (`super::super::marks`) and its side
//! table of SYN proxy and PROXY header state.

use super::super::key::{Addr, FlowId};
use super::super::marks::Marks;
use super::super::track::{ProxyTrack, Track};
use super::{FlowTable, PROXIED};

impl<A: Addr> FlowTable<A> {
    /// Live entry `id`'s sequence marks (a copy, unpacked).
    #[inline]
    pub fn track(&self, id: FlowId) -> Option<Track> {
        let f = self.get(id)?;
        Some(self.tracks.get(id as usize)?.load(f.track_bits))
    }

    /// State sync: gives live entry `id` the HA peer's marks
    /// (`Track::adopt`).
    pub fn adopt_marks(&mut self, id: FlowId, end: [u32; 2], ack: [u32; 2], win: [u32; 2], wscale: [u8; 2], known: u8) {
        let Some(mut t) = self.track(id) else { return };
        t.adopt(end, ack, win, wscale, known);
        self.put_track(id, &t);
    }

    /// Runs `f` on live entry `id`'s marks and stores what it leaves.
    #[inline]
    pub fn with_track<R>(&mut self, id: FlowId, f: impl FnOnce(&mut Track) -> R) -> Option<R> {
        let mut t = self.track(id)?;
        let r = f(&mut t);
        self.put_track(id, &t);
        Some(r)
    }

    /// Stores `t` as live entry `id`'s marks.
    #[inline]
    pub(super) fn put_track(&mut self, id: FlowId, t: &Track) {
        let (m, bits) = Marks::store(t);
        if let (Some(f), Some(slot)) = (self.entries.get_mut(id as usize), self.tracks.get_mut(id as usize)) {
            f.track_bits = bits;
            *slot = m;
        }
    }

    /// Live entry `id`'s SYN proxy or PROXY header state: None unless it
    /// has `SYN_PROXY` or `PROXY_HEADER`.
    #[inline]
    pub fn proxy(&self, id: FlowId) -> Option<&ProxyTrack> {
        self.get(id).filter(|f| f.flags.intersects(PROXIED))?;
        self.proxies.get(id as usize)
    }

    /// `proxy`, writable.
    #[inline]
    pub fn proxy_mut(&mut self, id: FlowId) -> Option<&mut ProxyTrack> {
        self.get(id).filter(|f| f.flags.intersects(PROXIED))?;
        self.proxies.get_mut(id as usize)
    }
}
