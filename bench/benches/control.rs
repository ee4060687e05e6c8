//! Criterion benchmarks of the control lcore at appliance scale (issue 23,
//! item 5), through `furiwake`'s public API:
//!
//! - `health/probe/10000`: the probe engine (`modules::health::probes`)
//!   checking 10,000 servers with a `tcp` check every second, answered by
//!   a simulated lab (three servers answer SYN-ACK, the others a reset,
//!   as closed ports do); one element is one probe, started, answered,
//!   judged and reset, so the throughput is the probes per second one
//!   control lcore sustains. Only the engine's calls are timed (frames
//!   in, the turn, frames out), not the lab's.
//! - `lb/health-change/10000`: what a health change in a pool of 10,000
//!   Maglev members costs before it is published: the snapshot with every
//!   server's state applied, the tables as they were
//!   (`modules::lb::publish::with_states`); `lb/table-rebuild/10000` the
//!   changed pool's table built after it, `TABLE_STEPS_PER_TURN` probes a
//!   control-loop turn (the number of turns and the longest share are
//!   printed); `lb/health-change-all-tables/10000` the snapshot with
//!   every table rebuilt at once, as every republish did before.
//!
//! ```sh
//! cargo bench -p furiwake-bench --bench control
//! ```
//! The figures are printed; nothing fails on speed.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, reason = "benchmark set-up")]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use furiwake::config::Config;
use furiwake::modules::health::probes::{Probes, Target};
use furiwake::modules::health::ProbeLink;
use furiwake::modules::lb::build::{build, LinkInfo};
use furiwake::modules::lb::publish::{with_states, HashTables, ServerState, TABLE_STEPS_PER_TURN};
use furiwake_dataplane::state::neighbor::Neighbors;
use furiwake_dataplane::testkit::{ipv4_frame, tcp_header};
use furiwake_dataplane::wire::EthernetAddress;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SERVERS: usize = 10_000;
const SELF: [u8; 4] = [198, 51, 100, 1];
const US: [u8; 6] = [2, 0, 0, 0, 0, 1];
const THEM: [u8; 6] = [2, 0, 0, 0, 0, 0x50];

/// A config of one pool of `SERVERS` members (50 addresses, 200 ports
/// each) with `algorithm` and a `tcp` check at 1 s.
fn config(algorithm: &str) -> Config {
    let mut s = format!(
        "[platform]\nworker_lcores = [1]\n[[interface]]\nname = \"inside\"\ndevice = \"net_null0\"\naddress = \"198.51.100.1/24\"\n\
         [[health_check]]\nname = \"c\"\nkind = \"tcp\"\ninterval_ms = 1000\ntimeout_ms = 500\nrise = 2\n\
         [[pool]]\nname = \"big\"\nalgorithm = \"{algorithm}\"\nhealth_check = \"c\"\nservers = [\n"
    );
    for i in 0..SERVERS {
        s.push_str(&format!("  {{ address = \"198.51.100.{}:{}\" }},\n", 20 + i % 50, 20000 + i / 50));
    }
    s.push_str("]\n[[virtual_server]]\nname = \"www\"\naddress = \"198.51.100.100:80\"\npool = \"big\"\n");
    Config::parse("bench", &s).expect("config")
}

/// The simulated lab's answer to a frame the engine sent: a SYN gets a
/// SYN-ACK from the three listening servers, a reset from the others.
fn answer(frame: &[u8]) -> Option<Vec<u8>> {
    let (ip, tcp) = (frame.get(14..34)?, frame.get(34..)?);
    if ip[9] != 6 || tcp[13] != 0x02 {
        return None;
    }
    let server: [u8; 4] = ip[16..20].try_into().ok()?;
    let (sport, dport) = (u16::from_be_bytes([tcp[0], tcp[1]]), u16::from_be_bytes([tcp[2], tcp[3]]));
    let seq = u32::from_be_bytes(tcp[4..8].try_into().ok()?);
    let listening = server[3] == 20 && dport < 20003;
    let mut t = tcp_header(dport, sport, if listening { 0x12 } else { 0x14 }, 1024);
    t[8..12].copy_from_slice(&seq.wrapping_add(1).to_be_bytes());
    Some(ipv4_frame(EthernetAddress(THEM), EthernetAddress(US), server, SELF, 6, &t, true))
}

fn bench_probes(c: &mut Criterion) {
    let cfg = config("round-robin");
    let check = cfg.health_checks[0].clone();
    let targets: Vec<Target> = cfg.pools[0]
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| Target { server: i, pool: "big".into(), addr: *s.address.get_ref(), link: 0, nexthop: 0, checks: vec![check.clone()], via: None })
        .collect();
    let neighbors = Neighbors::new(1);
    neighbors.set(0, EthernetAddress(THEM));
    let link = ProbeLink { mac: US, address: Ipv4Addr::from(SELF), prefix_len: 24, gateway: None, address6: None, gateway6: None };
    let mut t = Instant::now();
    let mut h = Probes::new(&[link], targets, Arc::new(neighbors), t);
    let mut wire: Vec<Vec<u8>> = Vec::new();
    let mut g = c.benchmark_group("health");
    g.throughput(Throughput::Elements(1));
    g.bench_function("probe/10000", |b| {
        b.iter_custom(|iters| {
            // Turns of 1 ms of the engine's clock; the lab answers within
            // the turn.
            let (start, mut spent) = (h.counters.probes, Duration::ZERO);
            while h.counters.probes - start < iters {
                let clock = Instant::now();
                for f in wire.drain(..) {
                    h.on_frame(0, &f, t);
                }
                black_box(h.poll(t));
                let out = h.take_tx(0, t);
                spent += clock.elapsed();
                wire.extend(out.iter().filter_map(|f| answer(f)));
                t += Duration::from_millis(1);
            }
            spent
        })
    });
    g.finish();
}

fn bench_health_change(c: &mut Criterion) {
    let cfg = config("maglev");
    let links = [LinkInfo { port_id: 0, vlan: 0, route: false, mac: EthernetAddress(US), address: "198.51.100.1/24".parse().unwrap(), address6: None, mtu: 1500, host: false }];
    let base = build(&cfg, &links).expect("build").snapshot;
    let state = |down: usize| move |i: usize, _: &furiwake_dataplane::lb::RealServer| Some(ServerState { enabled: i != down, ..ServerState::default() });
    let mut g = c.benchmark_group("lb");
    g.throughput(Throughput::Elements(1));
    let mut tables = HashTables::default();
    let mut down = 0usize;
    black_box(with_states(&base, state(down), |_| false, &mut tables));
    g.bench_function("health-change/10000", |b| {
        b.iter(|| {
            // One server goes down, the one before comes back: one change.
            down = (down + 1) % SERVERS;
            black_box(with_states(&base, state(down), |_| false, &mut tables))
        })
    });
    g.bench_function("health-change-all-tables/10000", |b| {
        b.iter(|| {
            down = (down + 1) % SERVERS;
            black_box(with_states(&base, state(down), |_| false, &mut HashTables::default()))
        })
    });
    g.bench_function("table-rebuild/10000", |b| {
        b.iter(|| {
            // The changed pool's table, a turn's share at a time, to the end.
            down = (down + 1) % SERVERS;
            black_box(with_states(&base, state(down), |_| false, &mut tables));
            let mut turns = 1;
            while !tables.step(TABLE_STEPS_PER_TURN) {
                turns += 1;
            }
            turns
        })
    });
    down = (down + 1) % SERVERS;
    black_box(with_states(&base, state(down), |_| false, &mut tables));
    let (mut turns, mut longest) = (1, Duration::ZERO);
    loop {
        let t = Instant::now();
        let done = tables.step(TABLE_STEPS_PER_TURN);
        longest = longest.max(t.elapsed());
        if done {
            break;
        }
        turns += 1;
    }
    println!("lb/table-rebuild/10000: {turns} turns of at most {TABLE_STEPS_PER_TURN} probes, the longest share {longest:?}");
    g.finish();
}

fn config_criterion() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3)).sample_size(10).nresamples(10_000)
}

criterion_group! {
    name = control;
    config = config_criterion();
    targets = bench_probes, bench_health_change
}
criterion_main!(control);
