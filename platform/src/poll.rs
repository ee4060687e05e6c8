//! A worker lcore's poll loop, the one `furiwake run` runs and the bench
//! harness measures (DPDK l3fwd's rhythm: rx burst, process, flush; back
//! off only when idle and configured to).

use crate::io::MbufIo;
use furiwake_dataplane::state::counters::Counter;
use furiwake_dataplane::Worker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What a worker's loop publishes. The worker writes; the control plane
/// (`show workers`) and the bench read.
#[derive(Debug, Default)]
pub struct LoopStats {
    /// TSC cycles in polls that received packets.
    pub busy_tsc: Counter,
    /// TSC cycles of the whole loop, sleeps included.
    pub total_tsc: Counter,
    /// Packets received (from the RX queues and the hand-off rings).
    pub packets: Counter,
}

/// TSC to flow-table ticks (`conntrack::TICK_MS`).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub start_tsc: u64,
    pub tsc_per_tick: u64,
}

impl Clock {
    /// Ticks from now on.
    pub fn start() -> Self {
        let ticks_per_sec = 1000 / furiwake_dataplane::conntrack::TICK_MS as u64;
        Clock { start_tsc: crate::rdtsc(), tsc_per_tick: (crate::tsc_hz() / ticks_per_sec).max(1) }
    }
}

/// Polls until `stop`: `worker.poll` on `io` with the tick of `clock`,
/// the busy and total cycles and packets into `loops`; after 64 empty
/// polls in a row, sleeps `idle_sleep` between polls (zero: never).
pub fn worker_loop(mut worker: Worker, mut io: MbufIo, stop: &AtomicBool, idle_sleep: Duration, clock: Clock, loops: &LoopStats) -> i32 {
    let mut idle: u32 = 0;
    let mut last = crate::rdtsc();
    while !stop.load(Ordering::Relaxed) {
        let t0 = crate::rdtsc();
        let now = (t0.wrapping_sub(clock.start_tsc) / clock.tsc_per_tick) as u32;
        let received = worker.poll(&mut io, now);
        // Busy ratio for `show workers`: time in polls that found packets
        // over all loop time (sleeps included). Two TSC reads a loop.
        let t1 = crate::rdtsc();
        if received > 0 {
            loops.busy_tsc.add(t1.wrapping_sub(t0));
            loops.packets.add(received as u64);
        }
        loops.total_tsc.add(t1.wrapping_sub(last));
        last = t1;
        if received == 0 {
            idle = idle.saturating_add(1);
            if !idle_sleep.is_zero() && idle >= 64 {
                std::thread::sleep(idle_sleep);
            }
        } else {
            idle = 0;
        }
    }
    0
}
