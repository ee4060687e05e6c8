//! The dataplane's `PacketIo` over DPDK queues and rings.

use crate::mbuf::Mbuf;
use crate::port::{RxQueue, TxQueue};
use crate::ring::{Consumer, Producer};
use furiwake_dataplane::io::TxReport;
use furiwake_dataplane::{Burst, PacketIo};

/// A worker's I/O: the RX queues it polls, its own TX queue on every port,
/// the ring punting to the control lcore, and the ring on which the control
/// lcore hands it frames to send when a port has no TX queue to spare for
/// control.
pub struct MbufIo {
    rx: Vec<RxQueue>,
    /// Indexed by port id: (tx queue, pending burst).
    tx: Vec<Option<(TxQueue, Burst<Mbuf>)>>,
    punt: Producer<Mbuf>,
    /// The ring of the protected punt classes (ARP, VRRP, HA), drained
    /// first by the control lcore (`with_protected_punt`); without it they
    /// share `punt`.
    punt_protected: Option<Producer<Mbuf>>,
    inject: Option<Consumer<Mbuf>>,
    /// Indexed by worker id: rings to the other workers (None for self).
    handoff_tx: Vec<Option<Producer<Mbuf>>>,
    /// Rings from the other workers.
    handoff_rx: Vec<Consumer<Mbuf>>,
    next_handoff_rx: usize,
    report: TxReport,
    /// Ports whose TX queue is burst even when empty (`with_poke`).
    poke: Vec<u16>,
}

impl MbufIo {
    /// `rx`: the queues this worker polls; `tx`: its own TX queue on each
    /// port (one per port).
    pub fn new(rx: Vec<RxQueue>, tx: Vec<TxQueue>, punt: Producer<Mbuf>, inject: Option<Consumer<Mbuf>>) -> Self {
        let slots = tx.iter().map(|q| q.port() as usize + 1).max().unwrap_or(0);
        let mut txv: Vec<Option<(TxQueue, Burst<Mbuf>)>> = (0..slots).map(|_| None).collect();
        for queue in tx {
            if let Some(slot) = txv.get_mut(queue.port() as usize) {
                *slot = Some((queue, Burst::new()));
            }
        }
        Self {
            rx,
            tx: txv,
            punt,
            punt_protected: None,
            inject,
            handoff_tx: Vec::new(),
            handoff_rx: Vec::new(),
            next_handoff_rx: 0,
            report: TxReport::default(),
            poke: Vec::new(),
        }
    }

    /// Gives the protected punt classes (`PuntClass::is_protected`) a
    /// ring of their own, so a flood of the others cannot fill theirs.
    pub fn with_protected_punt(mut self, ring: Producer<Mbuf>) -> Self {
        self.punt_protected = Some(ring);
        self
    }

    /// Makes every `flush` burst the TX queues of `ports` even when they
    /// have nothing to send: an 802.3ad bond's LACP runs inside its TX
    /// burst (`TxQueue::poke`). One worker per bond pokes it.
    pub fn with_poke(mut self, ports: Vec<u16>) -> Self {
        self.poke = ports;
        self
    }

    /// Connects this worker to the others: `tx[w]` reaches worker `w`
    /// (None for itself), `rx` are the rings the others send to it.
    pub fn with_handoff(mut self, tx: Vec<Option<Producer<Mbuf>>>, rx: Vec<Consumer<Mbuf>>) -> Self {
        self.handoff_tx = tx;
        self.handoff_rx = rx;
        self
    }

    fn send(queue: &mut TxQueue, burst: &mut Burst<Mbuf>, report: &mut TxReport) {
        let bytes: u64 = burst.iter().map(|m| m.pkt_len() as u64).sum();
        let offered = burst.len();
        let sent = queue.tx_burst(burst);
        let unsent_bytes: u64 = burst.iter().map(|m| m.pkt_len() as u64).sum();
        report.packets += sent as u64;
        report.bytes += bytes - unsent_bytes;
        report.dropped += (offered - sent) as u64;
        burst.drain().for_each(drop);
    }
}

impl PacketIo for MbufIo {
    type Pkt = Mbuf;

    #[inline]
    fn rx_queues(&self) -> usize {
        self.rx.len()
    }

    #[inline]
    fn rx_burst(&mut self, rxq: usize, burst: &mut Burst<Mbuf>) {
        if let Some(q) = self.rx.get_mut(rxq) {
            q.rx_burst(burst);
        }
    }

    #[inline]
    fn tx(&mut self, port: u16, pkt: Mbuf) {
        let Some(Some((queue, burst))) = self.tx.get_mut(port as usize) else {
            self.report.dropped += 1;
            return;
        };
        if let Err(pkt) = burst.push(pkt) {
            Self::send(queue, burst, &mut self.report);
            let _ = burst.push(pkt);
        }
    }

    #[inline]
    fn punt(&mut self, mut pkt: Mbuf) -> Result<(), Mbuf> {
        // Its arrival, for the health probes' RTTs: the control lcore may
        // be busy for a while (a console command over 10,000 servers).
        pkt.stamp_punt(crate::rdtsc());
        self.punt.enqueue(pkt)
    }

    #[inline]
    fn protected_len(&self) -> usize {
        self.punt_protected.as_ref().map_or(0, |r| r.len())
    }

    #[inline]
    fn punt_protected(&mut self, mut pkt: Mbuf) -> Result<(), Mbuf> {
        pkt.stamp_punt(crate::rdtsc());
        match self.punt_protected.as_mut() {
            Some(ring) => ring.enqueue(pkt),
            None => self.punt.enqueue(pkt),
        }
    }

    #[inline]
    fn handoff(&mut self, owner: u16, pkt: Mbuf) -> Result<(), Mbuf> {
        match self.handoff_tx.get_mut(owner as usize) {
            Some(Some(ring)) => ring.enqueue(pkt),
            _ => Err(pkt),
        }
    }

    #[inline]
    fn handoff_rings(&self) -> usize {
        self.handoff_rx.len()
    }

    #[inline]
    fn rx_handoff(&mut self, burst: &mut Burst<Mbuf>) {
        let n = self.handoff_rx.len();
        for i in 0..n {
            let idx = (self.next_handoff_rx + i) % n;
            if let Some(ring) = self.handoff_rx.get_mut(idx) {
                if ring.dequeue_burst(burst) > 0 {
                    self.next_handoff_rx = (idx + 1) % n;
                    return;
                }
            }
        }
    }

    fn flush(&mut self) -> TxReport {
        if let Some(inject) = self.inject.as_mut() {
            let mut b = Burst::new();
            if inject.dequeue_burst(&mut b) > 0 {
                for m in b.drain() {
                    let port = m.port();
                    self.tx(port, m);
                }
            }
        }
        for (queue, burst) in self.tx.iter_mut().flatten() {
            if !burst.is_empty() {
                Self::send(queue, burst, &mut self.report);
            } else if self.poke.contains(&queue.port()) {
                queue.poke();
            }
        }
        std::mem::take(&mut self.report)
    }
}
