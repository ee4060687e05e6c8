//! Runs the whole-pipeline fuzzer (`pipeline::fuzz`) for N inputs drawn
//! from a seed and prints how many ran: `scripts/fuzz.sh [N] [SEED]`.
#![allow(clippy::print_stdout, reason = "a command-line tool")]

use furiwake_dataplane::pipeline::fuzz::Fuzzer;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0x5eed_f00d);
    let Some(mut f) = Fuzzer::new() else {
        eprintln!("fuzz: no worker");
        return ExitCode::FAILURE;
    };
    let t0 = Instant::now();
    // In chunks, so a finding names where it came.
    let chunk = 1_000_000u64;
    let mut done = 0;
    while done < n {
        let k = chunk.min(n - done);
        if let Err(e) = f.run(seed.wrapping_add(done), k) {
            eprintln!("fuzz: after {} inputs (seed {seed}, chunk from {done}): {e}", f.steps);
            return ExitCode::FAILURE;
        }
        done += k;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!("fuzz: {} pipeline inputs ran ({} forwarded and checked) in {secs:.1} s ({:.0} per second), no panic, no broken invariant", f.steps, f.forwarded, f.steps as f64 / secs);
    let c = f.counters();
    println!(
        "fuzz: reached: {} SYN cookies, {} proxied connections ({} parked), {} half-open evicted, {} resets in window, {} out of window dropped, {} answers limited",
        c.syn_cookies.get(),
        c.syn_proxied.get(),
        c.syn_parked.get(),
        c.embryonic_evicted.get(),
        c.rst_in_window.get(),
        c.drops(furiwake_dataplane::DropReason::TcpRstOutOfWindow),
        c.answers_limited.get()
    );
    ExitCode::SUCCESS
}
