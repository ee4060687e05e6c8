//! The worker pipeline: rx burst -> parse -> classify -> act -> buffered tx.
//!
//! One `Worker` runs per worker lcore and owns its counters. The loop around
//! `poll` (stop flag, idle back-off, slow jobs every N loops) belongs to the
//! caller, which knows the clock and the lcore.

use crate::counters::{DropReason, WorkerCounters};
use crate::io::{Burst, Packet, PacketIo};
use crate::wire::{EtherType, EthernetFrame};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct WorkerConfig {
    pub id: u16,
}

pub struct Worker {
    pub config: WorkerConfig,
    counters: Arc<WorkerCounters>,
}

/// What the pipeline decided for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send out of `port`.
    Forward(u16),
    /// Hand to the control lcore (ARP, ICMP to self, probe replies).
    Punt,
    Drop(DropReason),
}

impl Worker {
    pub fn new(config: WorkerConfig) -> Self {
        Self { config, counters: Arc::new(WorkerCounters::default()) }
    }

    /// The counters, for the control plane to read.
    pub fn counters(&self) -> Arc<WorkerCounters> {
        Arc::clone(&self.counters)
    }

    /// Decides the fate of one frame (and rewrites it in place when
    /// forwarding).
    pub fn classify(&mut self, frame: &mut [u8]) -> Verdict {
        let Ok(eth) = EthernetFrame::new_checked(&*frame) else {
            return Verdict::Drop(DropReason::RuntFrame);
        };
        match eth.ethertype() {
            EtherType::Arp => Verdict::Punt,
            EtherType::Ipv4 => Verdict::Drop(DropReason::NoVirtualServer),
            _ => Verdict::Drop(DropReason::UnhandledEthertype),
        }
    }

    /// One pass over every RX queue this worker polls. Returns the number of
    /// packets received, so the caller can back off when idle.
    pub fn poll<I: PacketIo>(&mut self, io: &mut I) -> usize {
        let mut burst = Burst::new();
        let mut received = 0;
        for rxq in 0..io.rx_queues() {
            io.rx_burst(rxq, &mut burst);
            received += burst.len();
            for mut pkt in burst.drain() {
                let len = pkt.data().len() as u64;
                self.counters.rx_packets.inc();
                self.counters.rx_bytes.add(len);
                match self.classify(pkt.data_mut()) {
                    Verdict::Forward(port) => io.tx(port, pkt),
                    Verdict::Punt => match io.punt(pkt) {
                        Ok(()) => self.counters.punted.inc(),
                        Err(_dropped) => self.counters.count_drop(DropReason::PuntRingFull),
                    },
                    Verdict::Drop(reason) => self.counters.count_drop(reason),
                }
            }
        }
        let tx = io.flush();
        self.counters.tx_packets.add(tx.packets);
        self.counters.tx_bytes.add(tx.bytes);
        self.counters.count_drops(DropReason::TxQueueFull, tx.dropped);
        received
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::TxReport;

    struct Buf(Vec<u8>, u16);
    impl Packet for Buf {
        fn data(&self) -> &[u8] {
            &self.0
        }
        fn data_mut(&mut self) -> &mut [u8] {
            &mut self.0
        }
        fn port(&self) -> u16 {
            self.1
        }
    }

    #[derive(Default)]
    struct VecIo {
        rx: Vec<Buf>,
        punted: Vec<Buf>,
        punt_capacity: usize,
    }

    impl PacketIo for VecIo {
        type Pkt = Buf;
        fn rx_queues(&self) -> usize {
            1
        }
        fn rx_burst(&mut self, _rxq: usize, burst: &mut Burst<Buf>) {
            while !burst.is_full() {
                let Some(p) = self.rx.pop() else { break };
                let _ = burst.push(p);
            }
        }
        fn tx(&mut self, _port: u16, _pkt: Buf) {}
        fn punt(&mut self, pkt: Buf) -> Result<(), Buf> {
            if self.punted.len() == self.punt_capacity {
                return Err(pkt);
            }
            self.punted.push(pkt);
            Ok(())
        }
        fn flush(&mut self) -> TxReport {
            TxReport::default()
        }
    }

    fn frame(ethertype: u16, len: usize) -> Buf {
        let mut b = vec![0u8; len];
        if len >= 14 {
            b[12..14].copy_from_slice(&ethertype.to_be_bytes());
        }
        Buf(b, 0)
    }

    #[test]
    fn arp_is_punted_and_the_rest_dropped_by_name() {
        let mut io = VecIo { punt_capacity: 1, ..Default::default() };
        io.rx = vec![
            frame(0x0806, 60), // punted
            frame(0x0806, 60), // ring full
            frame(0x86dd, 60),
            frame(0x0800, 60),
            frame(0x0800, 10),
        ];
        let mut w = Worker::new(WorkerConfig::default());
        assert_eq!(w.poll(&mut io), 5);
        let c = w.counters();
        assert_eq!(c.rx_packets.get(), 5);
        assert_eq!(c.rx_bytes.get(), 4 * 60 + 10);
        assert_eq!(c.punted.get(), 1);
        assert_eq!(io.punted.len(), 1);
        assert_eq!(c.drops(DropReason::PuntRingFull), 1);
        assert_eq!(c.drops(DropReason::UnhandledEthertype), 1);
        assert_eq!(c.drops(DropReason::NoVirtualServer), 1);
        assert_eq!(c.drops(DropReason::RuntFrame), 1);
    }
}
