//! `furiwake-bench`: the packets/s and connections/s harness.
//!
//! One process, DPDK `--no-huge`: the generator on the main lcore crafts
//! frames into the RX ring of a `net_ring` port and drains its TX ring; the
//! production `Worker` polls that port on lcore 1 through the production
//! `MbufIo`. Figures are the worker's: packets it processed per second of
//! the phase, and TSC cycles per packet spent in its non-idle polls.
//! `bare` (rx burst -> tx burst, no processing) is measured in the same run.
//!
//! ```text
//! furiwake-bench [--flows 1000,100000,1000000,10000000] [--seconds 2] [--out bench/results] [--smoke]
//! ```
//! Prints a table and writes harness.json, harness.md and mpps.dat (for the
//! plot) under --out. Exits non-zero if any output packet was wrong or a
//! scenario forwarded nothing; never on speed.

mod gen;
mod gen6;
mod harness;
mod multi;

use furiwake_dataplane::state::snapshot::Forwarding;
use furiwake_platform::{Eal, Mempool};
use harness::{Loop, Phase, Run, Traffic};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

struct Row {
    name: String,
    forwarding: &'static str,
    direction: &'static str,
    flows: u64,
    distribution: &'static str,
    phase: Phase,
}

struct Mem {
    /// "ipv4" or "ipv6": which table.
    family: &'static str,
    flows: u64,
    capacity: u64,
    rss_delta: u64,
}

struct Opts {
    flows: Vec<u32>,
    seconds: f64,
    out: PathBuf,
    smoke: bool,
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().collect();
    let val = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let smoke = args.iter().any(|a| a == "--smoke");
    let flows = val("--flows")
        .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| if smoke { vec![1000] } else { vec![1_000, 100_000, 1_000_000, 10_000_000] });
    Opts {
        flows,
        seconds: val("--seconds").and_then(|v| v.parse().ok()).unwrap_or(if smoke { 0.2 } else { 2.0 }),
        out: PathBuf::from(val("--out").unwrap_or_else(|| "bench/results".into())),
        smoke,
    }
}

fn main() {
    let o = opts();
    let prefix = format!("fw-bench-{}", std::process::id());
    // The appliance keeps its tables on hugepages; the harness runs
    // --no-huge, so its tables stand on transparent huge pages instead.
    furiwake_dataplane::region::transparent_huge(true);
    let eal_args = ["--no-huge", "-m", "1024", "--no-pci", "--lcores", "0@0,1@1,2@1", "--file-prefix", &prefix, "--no-telemetry", "--log-level", "lib.eal:error"];
    let code = match Eal::init(&eal_args) {
        Ok(eal) => {
            let code = run(&o);
            eal.cleanup();
            code
        }
        Err(e) => {
            eprintln!("furiwake-bench: cannot initialise DPDK: {e}");
            2
        }
    };
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    std::process::exit(code);
}

fn run(o: &Opts) -> i32 {
    let pool = match Mempool::new("bench-mbufs", 16383, 256, 2048 + 128, -1) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("furiwake-bench: mempool: {e}");
            return 2;
        }
    };
    let tsc_hz = furiwake_platform::tsc_hz();
    let dur = Duration::from_secs_f64(o.seconds);
    let measure = u64::MAX;
    let mut rows: Vec<Row> = Vec::new();
    let mut mem: Vec<Mem> = Vec::new();
    let mut id = 0u32;
    let mut next_id = || {
        id += 1;
        id
    };
    let row = |name: &str, fwd: &'static str, dir: &'static str, flows: u64, dist: &'static str, phase: Phase| Row {
        name: name.into(),
        forwarding: fwd,
        direction: dir,
        flows,
        distribution: dist,
        phase,
    };

    // bare: the limit of this harness on this machine; bare, touching:
    // the floor of a forwarder that reads its frames (l2fwd's MAC swap).
    for (kind, name) in [(Loop::Bare, "bare"), (Loop::Touch, "bare, touching each frame")] {
        match Run::start(next_id(), &pool, Forwarding::Nat, 1024, kind) {
            Ok(mut r) => {
                let _ = r.phase(&pool, Traffic::Established { flows: 1, zipf: false }, measure, dur / 4, u64::MAX);
                let ph = r.phase(&pool, Traffic::Established { flows: 1, zipf: false }, measure, dur, u64::MAX);
                rows.push(row(name, "-", "-", 0, "-", ph));
                r.finish();
            }
            Err(e) => {
                eprintln!("furiwake-bench: {e}");
                return 2;
            }
        }
    }

    let new_conns: u32 = if o.smoke { 2_000 } else { 2_000_000 };
    for &f in &o.flows {
        let rss0 = harness::rss_bytes();
        // Headroom for the new connections of the new-connections and mixed
        // phases.
        let capacity = f + new_conns + f / 16 + if o.smoke { 1_000 } else { 4_000_000 };
        let mut r = match Run::start(next_id(), &pool, Forwarding::Nat, capacity, Loop::Worker) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("furiwake-bench: {e}");
                return 2;
            }
        };
        r.learned = vec![0; f as usize];
        eprintln!("nat: opening {f} connections");
        let open = r.phase(&pool, Traffic::Open { first: 0 }, f as u64, Duration::from_secs(600), 1);
        let _ = r.phase(&pool, Traffic::Handshake, 2 * f as u64, Duration::from_secs(600), 1);
        mem.push(Mem { family: "ipv4", flows: r.flows(), capacity: capacity as u64, rss_delta: harness::rss_bytes().saturating_sub(rss0) });
        rows.push(row("open (prefill)", "nat", "original", f as u64, "sequential", open));
        let every = if o.smoke { 1 } else { 64 };
        // Warm-up, not reported: caches, branch predictors, the TX ring.
        let _ = r.phase(&pool, Traffic::Established { flows: f, zipf: false }, measure, dur / 4, u64::MAX);
        for (zipf, dist) in [(false, "uniform"), (true, "zipf")] {
            let ph = r.phase(&pool, Traffic::Established { flows: f, zipf }, measure, dur, every);
            rows.push(row("established", "nat", "original", f as u64, dist, ph));
        }
        let ph = r.phase(&pool, Traffic::Replies { flows: f }, measure, dur, every);
        rows.push(row("established", "nat", "reply", f as u64, "uniform", ph));
        let ph = r.phase(&pool, Traffic::New { first: f }, new_conns as u64, Duration::from_secs(600), every);
        rows.push(row("new-connections", "nat", "original", f as u64, "sequential", ph));
        let ph = r.phase(&pool, Traffic::Reset { first: f }, new_conns as u64, Duration::from_secs(600), every);
        rows.push(row("teardown (rst)", "nat", "original", f as u64, "sequential", ph));
        let ph = r.phase(&pool, Traffic::Mixed { flows: f, first_new: f + new_conns }, measure, dur, every);
        rows.push(row("mixed 89/10/1", "nat", "both", f as u64, "uniform", ph));
        r.finish();
    }

    // full-NAT at the largest size up to 1M (local ports: 32 addresses).
    let f = o.flows.iter().copied().filter(|f| *f <= 1_000_000).max().unwrap_or(1000);
    // Its table, and the MAT ones below, are sized to the flows (94% full:
    // a chain holds about one link per bucket); NAT in a table as full, for
    // the comparison of the modes.
    for (forwarding, name, dist) in [(Forwarding::Nat, "nat", "uniform, tight table"), (Forwarding::FullNat, "full-nat", "uniform")] {
        let Ok(mut r) = Run::start(next_id(), &pool, forwarding, f + f / 16 + 1024, Loop::Worker) else { continue };
        r.learned = vec![0; f as usize];
        eprintln!("{name}, table sized to the flows: opening {f} connections");
        let open = r.phase(&pool, Traffic::Open { first: 0 }, f as u64, Duration::from_secs(600), 1);
        let _ = r.phase(&pool, Traffic::Handshake, 2 * f as u64, Duration::from_secs(600), 1);
        if forwarding == Forwarding::FullNat {
            rows.push(row("open (prefill)", name, "original", f as u64, "sequential", open));
        }
        let every = if o.smoke { 1 } else { 64 };
        let ph = r.phase(&pool, Traffic::Established { flows: f, zipf: false }, measure, dur, every);
        rows.push(row("established", name, "original", f as u64, dist, ph));
        let ph = r.phase(&pool, Traffic::Replies { flows: f }, measure, dur, every);
        rows.push(row("established", name, "reply", f as u64, dist, ph));
        r.finish();
    }

    // NAT over IPv6 (issue 24) at that size, as the IPv4 NAT rows above
    // (the same table headroom): established both ways, new connections,
    // teardown; and the memory per IPv6 connection.
    {
        let capacity = f + new_conns + f / 16 + if o.smoke { 1_000 } else { 4_000_000 };
        let rss0 = harness::rss_bytes();
        if let Ok(mut r) = Run::start_v6(next_id(), &pool, capacity) {
            r.learned = vec![0; f as usize];
            eprintln!("nat over IPv6: opening {f} connections");
            let open = r.phase(&pool, Traffic::Open { first: 0 }, f as u64, Duration::from_secs(600), 1);
            let _ = r.phase(&pool, Traffic::Handshake, 2 * f as u64, Duration::from_secs(600), 1);
            mem.push(Mem { family: "ipv6", flows: r.flows(), capacity: capacity as u64, rss_delta: harness::rss_bytes().saturating_sub(rss0) });
            rows.push(row("open (prefill)", "nat ipv6", "original", f as u64, "sequential", open));
            let every = if o.smoke { 1 } else { 64 };
            let _ = r.phase(&pool, Traffic::Established { flows: f, zipf: false }, measure, dur / 4, u64::MAX);
            let ph = r.phase(&pool, Traffic::Established { flows: f, zipf: false }, measure, dur, every);
            rows.push(row("established", "nat ipv6", "original", f as u64, "uniform", ph));
            let ph = r.phase(&pool, Traffic::Replies { flows: f }, measure, dur, every);
            rows.push(row("established", "nat ipv6", "reply", f as u64, "uniform", ph));
            let ph = r.phase(&pool, Traffic::New { first: f }, new_conns as u64, Duration::from_secs(600), every);
            rows.push(row("new-connections", "nat ipv6", "original", f as u64, "sequential", ph));
            let ph = r.phase(&pool, Traffic::Reset { first: f }, new_conns as u64, Duration::from_secs(600), every);
            rows.push(row("teardown (rst)", "nat ipv6", "original", f as u64, "sequential", ph));
            r.finish();
        }
    }

    // MAT (dsr-l2) and dsr-tunnel (IPIP) at the same size: the client's
    // direction only.
    for (forwarding, name) in [(Forwarding::DsrL2, "dsr-l2"), (Forwarding::DsrTunnel, "dsr-tunnel")] {
        let Ok(mut r) = Run::start(next_id(), &pool, forwarding, f + f / 16 + 1024, Loop::Worker) else { continue };
        r.learned = vec![0; f as usize];
        eprintln!("{name}: opening {f} connections");
        let open = r.phase(&pool, Traffic::Open { first: 0 }, f as u64, Duration::from_secs(600), 1);
        rows.push(row("open (prefill)", name, "original", f as u64, "sequential", open));
        let every = if o.smoke { 1 } else { 64 };
        let ph = r.phase(&pool, Traffic::Established { flows: f, zipf: false }, measure, dur, every);
        rows.push(row("established", name, "original", f as u64, "uniform", ph));
        r.finish();
    }

    two_workers(o, &pool, &mut rows, &mut next_id);
    report(o, &rows, &mem, tsc_hz)
}

/// Two workers sharing CPU 1 (`multi`): NAT and full-NAT, established
/// traffic both ways, RSS-steered and not: the share handed over.
fn two_workers(o: &Opts, pool: &Mempool, rows: &mut Vec<Row>, next_id: &mut dyn FnMut() -> u32) {
    let f: u32 = if o.smoke { 1_000 } else { 1_000_000 };
    let dur = Duration::from_secs_f64(o.seconds);
    for (full_nat, fwd) in [(false, "nat"), (true, "full-nat")] {
        for (steered, dist) in [(true, "rss-steered"), (false, "unsteered")] {
            let mut m = match multi::Multi::start(next_id(), pool, full_nat, f + f / 16 + 1024, steered) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("furiwake-bench: two workers: {e}");
                    continue;
                }
            };
            m.clients(f as usize);
            eprintln!("2 workers {fwd} {dist}: opening {f} connections");
            let _ = m.phase(pool, multi::Traffic::Open { first: 0 }, f as u64, Duration::from_secs(600), 1);
            let _ = m.phase(pool, multi::Traffic::Handshake, 2 * f as u64, Duration::from_secs(600), 64);
            let _ = m.phase(pool, multi::Traffic::Established { flows: f }, u64::MAX, dur / 4, u64::MAX);
            let ph = m.phase(pool, multi::Traffic::Established { flows: f }, u64::MAX, dur, if o.smoke { 1 } else { 64 });
            rows.push(Row { name: "2 workers established".into(), forwarding: fwd, direction: "both", flows: f as u64, distribution: dist, phase: ph });
            m.finish();
        }
    }
}

fn report(o: &Opts, rows: &[Row], mem: &[Mem], tsc_hz: u64) -> i32 {
    let bare = rows.iter().find(|r| r.name == "bare").map_or(1.0, |r| r.phase.mpps());
    let mut table = String::new();
    let _ = writeln!(table, "| scenario | forwarding | direction | flows | distribution | Mpps | ns/packet | cycles/packet | x bare | handed over | errors | worker drops |");
    let _ = writeln!(table, "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|");
    let mut failed = false;
    let mut json = String::from("{\n");
    let _ = writeln!(json, "  \"date\": \"{}\",", date());
    let _ = writeln!(json, "  \"dpdk\": \"{}\",", furiwake_platform::version());
    let _ = writeln!(json, "  \"tsc_hz\": {tsc_hz},");
    let _ = writeln!(json, "  \"entry_bytes\": {},", std::mem::size_of::<furiwake_dataplane::conntrack::Flow>());
    json.push_str("  \"scenarios\": [\n");
    for (i, r) in rows.iter().enumerate() {
        let p = &r.phase;
        let ratio = p.mpps() / bare;
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} | {:.2} | {:.1} | {:.0} | {:.2} | {:.1}% | {} | {} |",
            r.name,
            r.forwarding,
            r.direction,
            r.flows,
            r.distribution,
            p.mpps(),
            p.ns_per_packet(tsc_hz),
            p.cycles_per_packet(),
            ratio,
            100.0 * p.handed as f64 / p.packets.max(1) as f64,
            p.errors,
            p.drops.iter().map(|(n, c)| format!("{n} {c}")).collect::<Vec<_>>().join(", ")
        );
        let _ = writeln!(
            json,
            "    {{\"name\": \"{}\", \"forwarding\": \"{}\", \"direction\": \"{}\", \"flows\": {}, \"distribution\": \"{}\", \"packets\": {}, \"forwarded\": {}, \"seconds\": {:.3}, \"mpps\": {:.3}, \"ns_per_packet\": {:.1}, \"cycles_per_packet\": {:.1}, \"ratio_to_bare\": {:.3}, \"handed_over\": {}, \"errors\": {}}}{}",
            r.name,
            r.forwarding,
            r.direction,
            r.flows,
            r.distribution,
            p.packets,
            p.forwarded,
            p.seconds,
            p.mpps(),
            p.ns_per_packet(tsc_hz),
            p.cycles_per_packet(),
            ratio,
            p.handed,
            p.errors,
            if i + 1 < rows.len() { "," } else { "" }
        );
        if p.errors > 0 {
            eprintln!("furiwake-bench: {} {} {}: {} wrong packets (first: {:?})", r.name, r.forwarding, r.flows, p.errors, p.first_error);
            failed = true;
        }
        let expects_output = !r.name.starts_with("bare");
        if p.packets == 0 || (expects_output && p.forwarded == 0) {
            eprintln!("furiwake-bench: {} {} {}: nothing processed/forwarded", r.name, r.forwarding, r.flows);
            failed = true;
        }
    }
    json.push_str("  ],\n  \"memory\": [\n");
    // The table is preallocated: its memory is per slot of capacity, and
    // a full table holds one connection per slot.
    let _ = writeln!(
        table,
        "\n| table | live flows | table capacity | RSS growth | bytes per slot | 10M connections would take |\n|---|---:|---:|---:|---:|---:|"
    );
    for (i, m) in mem.iter().enumerate() {
        let per_slot = m.rss_delta as f64 / m.capacity.max(1) as f64;
        let _ = writeln!(
            table,
            "| {} | {} | {} | {:.1} MiB | {:.1} | {:.0} MiB |",
            m.family,
            m.flows,
            m.capacity,
            m.rss_delta as f64 / 1048576.0,
            per_slot,
            per_slot * 1e7 / 1048576.0
        );
        let _ = writeln!(
            json,
            "    {{\"family\": \"{}\", \"flows\": {}, \"capacity\": {}, \"rss_delta_bytes\": {}, \"bytes_per_slot\": {:.1}}}{}",
            m.family,
            m.flows,
            m.capacity,
            m.rss_delta,
            per_slot,
            if i + 1 < mem.len() { "," } else { "" }
        );
    }
    json.push_str("  ]\n}\n");
    println!("{table}");

    // mpps.dat: flows bare established-uniform established-zipf new-connections
    let mut dat = String::from("# flows bare established_uniform established_zipf new_connections\n");
    for m in mem.iter().filter(|m| m.family == "ipv4") {
        let get = |name: &str, dist: &str| {
            rows.iter().find(|r| r.name == name && r.forwarding == "nat" && r.flows == m.flows && (dist.is_empty() || r.distribution == dist)).map_or(0.0, |r| r.phase.mpps())
        };
        let _ = writeln!(dat, "{} {:.3} {:.3} {:.3} {:.3}", m.flows, bare, get("established", "uniform"), get("established", "zipf"), get("new-connections", ""));
    }
    if !o.smoke || o.out != std::path::Path::new("bench/results") {
        if let Err(e) = std::fs::create_dir_all(&o.out)
            .and_then(|_| std::fs::write(o.out.join("harness.json"), &json))
            .and_then(|_| std::fs::write(o.out.join("harness.md"), &table))
            .and_then(|_| std::fs::write(o.out.join("mpps.dat"), &dat))
        {
            eprintln!("furiwake-bench: writing {}: {e}", o.out.display());
            return 2;
        }
    }
    if failed {
        1
    } else {
        0
    }
}

fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
