//! Platform tests on real DPDK virtual devices (`net_ring`, `net_null`),
//! `--no-huge`. One EAL per test binary; each test uses its own ports and
//! pools so they can run in parallel.
//!
//! Without DPDK (or rights to start it) the tests say so loudly and pass,
//! except under `CI=true`, where they fail.

// An integration test: its helpers fail the test by panicking.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, reason = "test code")]

use furiwake_dataplane::{Burst, BURST_SIZE};
use furiwake_platform::{lcore, spsc, Eal, Error, Mbuf, Mempool, Port, PortConfig, Ring};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

fn eal() -> Option<&'static Eal> {
    // A fixed prefix: one runtime directory, reused by every run (cargo runs
    // test binaries one after another).
    let prefix = "fw-platform-test";
    let args = [
        "--no-huge", "-m", "256", "--no-pci", "-l", "0-1", "--file-prefix", prefix, "--no-telemetry",
        "--log-level", "lib.eal:error", "--vdev", "net_null0", "--vdev", "net_null1",
    ];
    match Eal::init(&args) {
        Ok(eal) => Some(eal),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => panic!("EAL init failed under CI: {e}"),
        Err(e) => {
            eprintln!("SKIPPED (not CI): cannot initialise DPDK EAL here: {e}");
            None
        }
    }
}

fn pool(name: &str, n: u32) -> Mempool {
    Mempool::new(name, n, 0, dpdk_sys_buf_size(), -1).unwrap()
}

fn dpdk_sys_buf_size() -> u16 {
    2176 // RTE_MBUF_DEFAULT_BUF_SIZE
}

/// Two ring ports wired back to back.
fn wire(name: &str, pool: &Mempool) -> (Port, Port) {
    let ab: Arc<Ring<Mbuf>> = Ring::new(&format!("{name}-ab"), 1024).unwrap();
    let ba: Arc<Ring<Mbuf>> = Ring::new(&format!("{name}-ba"), 1024).unwrap();
    let mut a = Port::from_rings(&format!("{name}a"), &[Arc::clone(&ba)], &[Arc::clone(&ab)]).unwrap();
    let mut b = Port::from_rings(&format!("{name}b"), &[ab], &[ba]).unwrap();
    for p in [&mut a, &mut b] {
        p.configure(&PortConfig::default(), pool).unwrap();
        p.start().unwrap();
    }
    (a, b)
}

fn frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(seq) as u8).collect();
    f[12] = 0x88; // local experimental EtherType 0x88b5
    f[13] = 0xb5;
    f
}

#[test]
fn eal_reports_lcores_and_ports() {
    let Some(eal) = eal() else { return };
    assert_eq!(eal.main_lcore(), 0);
    assert_eq!(eal.worker_lcores(), vec![1]);
    assert!(eal.port_count() >= 2, "both net_null vdevs probed");
    assert!(furiwake_platform::version().starts_with("DPDK 22.11"), "{}", furiwake_platform::version());
    assert!(furiwake_platform::tsc_hz() > 0);
}

#[test]
fn mempool_counts_free_and_used() {
    let Some(_) = eal() else { return };
    let p = pool("t-count", 511);
    assert_eq!(p.available(), 511);
    let a = p.alloc().unwrap();
    let mut b = Burst::new();
    p.alloc_burst(&mut b, BURST_SIZE).unwrap();
    assert_eq!(p.in_use(), 1 + BURST_SIZE as u32);
    drop(a);
    drop(b);
    assert_eq!(p.available(), 511);
}

#[test]
fn frame_crosses_ring_wire_byte_identical() {
    let Some(_) = eal() else { return };
    let p = pool("t-wire", 1023);
    let (mut a, mut b) = wire("tw", &p);
    let (mut atx, mut brx) = (a.take_tx_queue(0).unwrap(), b.take_rx_queue(0).unwrap());
    assert!(a.take_tx_queue(0).is_err(), "one endpoint per queue");
    assert!(b.take_rx_queue(1).is_err(), "no such queue");
    let sent = frame(7, 1514);
    let mut m = p.alloc().unwrap();
    assert!(m.set_data(&sent));
    let mut out = Burst::new();
    out.push(m).unwrap();
    assert_eq!(atx.tx_burst(&mut out), 1);
    assert!(out.is_empty());

    let mut got = Burst::new();
    assert_eq!(brx.rx_burst(&mut got), 1);
    let m = got.drain().next().unwrap();
    assert_eq!(m.data(), &sent[..]);
    assert_eq!(m.port(), b.id());
    assert_eq!(a.stats().unwrap().opackets, 1);
    assert_eq!(b.stats().unwrap().ipackets, 1);
}

#[test]
fn ten_thousand_bursts_leak_no_mbuf() {
    let Some(_) = eal() else { return };
    let p = pool("t-leak", 4095);
    let (mut a, mut b) = wire("tl", &p);
    let (mut atx, mut brx) = (a.take_tx_queue(0).unwrap(), b.take_rx_queue(0).unwrap());
    let start = p.available();
    let mut sent_total = 0u64;
    let mut recv_total = 0u64;
    for i in 0..10_000u32 {
        let mut burst = Burst::new();
        p.alloc_burst(&mut burst, BURST_SIZE).unwrap();
        let mut filled = Burst::new();
        for mut m in burst.drain() {
            assert!(m.set_data(&frame(i, 64 + (i as usize % 64))));
            filled.push(m).unwrap();
        }
        sent_total += atx.tx_burst(&mut filled) as u64;
        drop(filled); // anything the ring refused
        let mut rx = Burst::new();
        recv_total += brx.rx_burst(&mut rx) as u64;
    }
    assert_eq!(sent_total, 10_000 * BURST_SIZE as u64);
    assert_eq!(recv_total, sent_total);
    assert_eq!(p.available(), start, "every mbuf back in the pool");
}

#[test]
fn null_port_stats_count_what_was_sent() {
    let Some(_) = eal() else { return };
    let p = pool("t-null", 1023);
    let mut port = Port::by_name("net_null0").unwrap();
    assert_eq!(port.info().unwrap().driver, "net_null");
    port.configure(&PortConfig { rx_queues: 1, tx_queues: 1, ..Default::default() }, &p).unwrap();
    port.start().unwrap();
    assert!(port.link().unwrap().up);
    let (mut rxq, mut txq) = (port.take_rx_queue(0).unwrap(), port.take_tx_queue(0).unwrap());
    let start = p.available();
    for _ in 0..100 {
        let mut b = Burst::new();
        p.alloc_burst(&mut b, 10).unwrap();
        assert_eq!(txq.tx_burst(&mut b), 10);
    }
    // The null PMD also receives: generated 64-byte frames, from our pool.
    let mut rx = Burst::new();
    let n = rxq.rx_burst(&mut rx);
    assert!(n > 0 && rx.iter().all(|m| m.data_len() == 64));
    drop(rx);
    let s = port.stats().unwrap();
    assert_eq!(s.opackets, 1000);
    assert_eq!(s.ipackets, n as u64);
    assert!(port.xstats().unwrap().iter().any(|(name, v)| name == "tx_good_packets" && *v == 1000));
    port.close().unwrap();
    assert_eq!(p.available(), start);
}

#[test]
fn closure_runs_on_worker_lcore() {
    let Some(_) = eal() else { return };
    let seen = Arc::new(AtomicU32::new(u32::MAX));
    let s = Arc::clone(&seen);
    let h = lcore::launch(1, move || {
        s.store(lcore::current().unwrap_or(999), Ordering::SeqCst);
        7
    })
    .unwrap();
    assert_eq!(h.join(), 7);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

#[test]
fn spsc_ring_moves_and_frees_items() {
    let Some(_) = eal() else { return };
    let token = Arc::new(());
    let (mut tx, mut rx) = spsc::<Box<Arc<()>>>("t-spsc", 4).unwrap();
    for _ in 0..4 {
        tx.enqueue(Box::new(Arc::clone(&token))).unwrap();
    }
    assert!(tx.enqueue(Box::new(Arc::clone(&token))).is_err(), "full ring gives the item back");
    assert_eq!(rx.len(), 4);
    assert!(rx.dequeue().is_some());
    drop(tx);
    drop(rx); // three left inside: freed by the ring
    assert_eq!(Arc::strong_count(&token), 1);
}

#[test]
fn errors_are_typed() {
    let Some(_) = eal() else { return };
    assert!(matches!(Port::by_name("net_nosuch0"), Err(Error::NoDevice { .. }) | Err(Error::InvalidArgument { .. })));
    let p = pool("t-err", 255);
    let mut port = Port::by_name("net_null1").unwrap();
    let e = port.configure(&PortConfig { rx_queues: 4096, tx_queues: 4096, ..Default::default() }, &p).unwrap_err();
    assert!(e.to_string().contains("queues"), "{e}");
}
