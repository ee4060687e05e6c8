//! Per-worker counters. Every drop has a name (`DropReason`), after grout's
//! per-edge drop counters; the console and the stats print them by name.
//!
//! Ownership: each `WorkerCounters` has exactly one writer, its worker
//! (dataplane: rw), and any number of readers on the control lcore
//! (ctlplane: ro). A single writer needs no atomic read-modify-write: a
//! relaxed load and store is enough and costs a plain `add` on x86.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A monotonically increasing counter with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker may call this.
    #[inline(always)]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline(always)]
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// Why a worker dropped a packet. Each reason indexes its own counter.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $($(#[$doc])* $variant,)*
        }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();

            /// The stable name operators and tests see.
            pub fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }
        }
    };
}

drop_reasons! {
    /// Shorter than an Ethernet header.
    RuntFrame => "runt-frame",
    /// An EtherType the appliance does not handle (IPv6, LLDP, ...).
    UnhandledEthertype => "unhandled-ethertype",
    /// IPv4 addressed to no virtual server and no self IP.
    NoVirtualServer => "no-virtual-server",
    /// The ring to the control lcore was full.
    PuntRingFull => "punt-ring-full",
    /// The NIC's TX queue took fewer packets than offered.
    TxQueueFull => "tx-queue-full",
}

/// One worker's counters, on their own cache lines.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct WorkerCounters {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
    /// Packets handed to the control lcore (ARP, ICMP to self, probes).
    pub punted: Counter,
    drops: [Counter; DropReason::COUNT],
}

impl WorkerCounters {
    #[inline(always)]
    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason as usize].inc();
    }

    #[inline(always)]
    pub fn count_drops(&self, reason: DropReason, n: u64) {
        self.drops[reason as usize].add(n);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].get()
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().map(Counter::get).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indexed() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn drops_count_per_reason() {
        let c = WorkerCounters::default();
        c.count_drop(DropReason::RuntFrame);
        c.count_drops(DropReason::TxQueueFull, 3);
        assert_eq!(c.drops(DropReason::RuntFrame), 1);
        assert_eq!(c.drops(DropReason::TxQueueFull), 3);
        assert_eq!(c.drops(DropReason::NoVirtualServer), 0);
        assert_eq!(c.total_drops(), 4);
    }
}
