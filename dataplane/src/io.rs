//! The packet-I/O abstraction between the worker pipeline and the NIC.
//!
//! `furiwake-platform` implements it over `rte_mbuf` and DPDK queues; tests
//! implement it over plain buffers. The pipeline is generic over it and
//! monomorphised: no dynamic dispatch per packet.

/// Packets moved per burst, as in DPDK's l3fwd (`MAX_PKT_BURST`).
pub const BURST_SIZE: usize = 32;

/// One packet owned by the pipeline. Dropping it returns its buffer.
pub trait Packet {
    /// The frame, from the Ethernet header on.
    fn data(&self) -> &[u8];
    fn data_mut(&mut self) -> &mut [u8];
    /// Index of the port it arrived on.
    fn port(&self) -> u16;
    /// Resizes the frame to `len` bytes within its buffer, at the tail:
    /// the first `min(len, old len)` bytes stay, bytes grown are
    /// unspecified. False, the frame unchanged, if it cannot (no room, or
    /// a frame `data` does not show whole).
    fn set_len(&mut self, len: usize) -> bool;
    /// Grows the frame by `n` bytes at the head (into the buffer's
    /// headroom): the old bytes start at `n`, the new ones are
    /// unspecified. False, the frame unchanged, if it cannot.
    fn prepend(&mut self, n: usize) -> bool;
    /// Removes `n` bytes at the head. False, the frame unchanged, if it
    /// cannot.
    fn adj(&mut self, n: usize) -> bool;
}

/// What a worker's loop needs from the outside world.
pub trait PacketIo {
    type Pkt: Packet;

    /// How many RX queues this worker polls.
    fn rx_queues(&self) -> usize;

    /// Receives up to a burst from the worker's `rxq`-th RX queue into an
    /// empty `burst`.
    fn rx_burst(&mut self, rxq: usize, burst: &mut Burst<Self::Pkt>);

    /// Queues `pkt` for transmission on `port`; sent at the latest by
    /// `flush`.
    fn tx(&mut self, port: u16, pkt: Self::Pkt);

    /// Hands `pkt` to the control lcore. Gives it back when the ring is full.
    fn punt(&mut self, pkt: Self::Pkt) -> Result<(), Self::Pkt>;

    /// Hands `pkt`, of a protected class (`PuntClass::is_protected`), to
    /// the control lcore through the ring it drains first. Without one:
    /// `punt`.
    fn punt_protected(&mut self, pkt: Self::Pkt) -> Result<(), Self::Pkt> {
        self.punt(pkt)
    }

    /// Frames waiting in the protected ring (`limits::PUNT_HA_SHARE`
    /// caps what HA may fill). Without one: 0.
    fn protected_len(&self) -> usize {
        0
    }

    /// Hands `pkt` to worker `owner`, which owns its connection. Gives it
    /// back when the ring is full (or there is no such worker).
    fn handoff(&mut self, owner: u16, pkt: Self::Pkt) -> Result<(), Self::Pkt> {
        let _ = owner;
        Err(pkt)
    }

    /// Receives into an empty `burst` the packets other workers handed to
    /// this one: one burst from the next ring that has any (round robin).
    fn rx_handoff(&mut self, burst: &mut Burst<Self::Pkt>) {
        let _ = burst;
    }

    /// How many hand-off rings feed this worker: a pass takes a burst from
    /// each (`rx_handoff` as many times), as it takes one from each RX
    /// queue, so neither side starves the other.
    fn handoff_rings(&self) -> usize {
        0
    }

    /// Sends every queued packet (and any the control lcore asked this
    /// worker to send). Packets the NIC refused are freed and reported.
    fn flush(&mut self) -> TxReport;
}

/// What a `flush` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxReport {
    pub packets: u64,
    pub bytes: u64,
    pub dropped: u64,
}

/// A fixed array of packets, filled and emptied without allocation.
///
/// Invariant: `slots[..len]` are `Some`, `slots[len..]` are `None`.
/// `Option<P>` of a non-null pointer type `P` has the layout of a raw
/// pointer, so an I/O layer can let a driver fill `slots` directly.
pub struct Burst<P> {
    slots: [Option<P>; BURST_SIZE],
    len: usize,
}

impl<P> Default for Burst<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> Burst<P> {
    pub const fn new() -> Self {
        Self { slots: [const { None }; BURST_SIZE], len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == BURST_SIZE
    }

    /// Appends `p`, or gives it back when the burst is full.
    pub fn push(&mut self, p: P) -> Result<(), P> {
        match self.slots.get_mut(self.len) {
            Some(slot) => {
                *slot = Some(p);
                self.len += 1;
                Ok(())
            }
            None => Err(p),
        }
    }

    /// Takes every packet out, in order.
    pub fn drain(&mut self) -> impl Iterator<Item = P> + '_ {
        let n = core::mem::take(&mut self.len);
        self.slots.iter_mut().take(n).filter_map(Option::take)
    }

    /// Borrows the packets.
    pub fn iter(&self) -> impl Iterator<Item = &P> {
        self.slots.iter().take(self.len).flatten()
    }

    /// The slot array, for an I/O layer handing it to a driver.
    pub fn slots_mut(&mut self) -> &mut [Option<P>; BURST_SIZE] {
        &mut self.slots
    }

    /// Declares that a driver filled the first `n` slots.
    ///
    /// # Safety
    /// `slots[..n]` must all be `Some` and the burst must have been empty.
    pub unsafe fn set_len(&mut self, n: usize) {
        debug_assert!(self.len == 0 && n <= BURST_SIZE);
        self.len = n.min(BURST_SIZE);
    }

    /// Forgets the first `n` packets, whose ownership a driver took, and
    /// moves the rest to the front.
    pub fn forget_front(&mut self, n: usize) {
        let n = n.min(self.len);
        for slot in self.slots.iter_mut().take(n) {
            core::mem::forget(slot.take());
        }
        if let Some(live) = self.slots.get_mut(..self.len) {
            live.rotate_left(n);
        }
        self.len -= n;
    }
}

impl<P> Drop for Burst<P> {
    fn drop(&mut self) {
        self.drain().for_each(drop);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_drain_keeps_order() {
        let mut b = Burst::new();
        for i in 0..BURST_SIZE {
            b.push(i).unwrap();
        }
        assert!(b.is_full());
        assert_eq!(b.push(99), Err(99));
        let got: Vec<_> = b.drain().collect();
        assert_eq!(got, (0..BURST_SIZE).collect::<Vec<_>>());
        assert!(b.is_empty());
    }

    #[test]
    fn forget_front_shifts_rest() {
        use std::rc::Rc;
        let token = Rc::new(());
        let mut b = Burst::new();
        for _ in 0..5 {
            b.push(Rc::clone(&token)).unwrap();
        }
        b.forget_front(2);
        assert_eq!(b.len(), 3);
        assert_eq!(b.iter().count(), 3);
        drop(b);
        // Two clones were forgotten (a driver owns them), three dropped.
        assert_eq!(Rc::strong_count(&token), 3);
        // The driver releases its two (no leak for Miri to report).
        for _ in 0..2 {
            // SAFETY: each forgotten clone owned one strong count of
            // `token`'s allocation, which is still alive.
            unsafe { Rc::decrement_strong_count(Rc::as_ptr(&token)) };
        }
        assert_eq!(Rc::strong_count(&token), 1);
    }
}
