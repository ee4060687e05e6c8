//! The whole pipeline under libFuzzer: an input is a sequence of records
//! `[ctl, len_hi, len_lo, frame...]` (ctl: the port, handed off or not, a
//! time step: `Fuzzer::step_bytes`), run through a worker over the fixed
//! snapshot of `furiwake_dataplane::pipeline::fuzz`, which checks every
//! forwarded frame's checksums and the table's invariants after each.
//!
//! The worker lives across inputs (a fresh one costs a millisecond), as a
//! worker lives across packets, and is rebuilt every 10,000 inputs: a
//! finding may need the inputs before it to replay.
#![no_main]

use furiwake_dataplane::pipeline::fuzz::Fuzzer;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

thread_local! {
    static WORKER: RefCell<(Option<Fuzzer>, u32)> = const { RefCell::new((None, 0)) };
}

fuzz_target!(|data: &[u8]| {
    WORKER.with_borrow_mut(|(worker, runs)| {
        *runs += 1;
        if *runs % 10_000 == 1 {
            *worker = Fuzzer::new();
        }
        let Some(f) = worker.as_mut() else { return };
        let mut rest = data;
        while let [ctl, hi, lo, tail @ ..] = rest {
            let len = (usize::from(*hi) << 8 | usize::from(*lo)).min(tail.len());
            let (frame, next) = tail.split_at(len);
            let mut record = Vec::with_capacity(1 + frame.len());
            record.push(*ctl);
            record.extend_from_slice(frame);
            if let Err(e) = f.step_bytes(&record) {
                panic!("broken invariant: {e}");
            }
            rest = next;
        }
    });
});
