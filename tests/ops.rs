//! Operations end to end: the Prometheus endpoint, DPDK telemetry and
//! packet capture with `dpdk-dumpcap`, against the real binary in the lab
//! of `scripts/netns.sh`.

use furiwake_e2e::*;
use std::collections::BTreeMap;
use std::time::Duration;

const METRICS: &str = "127.0.0.1:9100";

fn services() -> String {
    let mut s = String::from("[[pool]]\nname = \"web\"\nservers = [\n");
    for n in 1..=LAB_BACKENDS {
        s.push_str(&format!("  {{ address = \"{}:80\" }},\n", server_ip(n)));
    }
    s + "]\n\n[[virtual_server]]\nname = \"www\"\naddress = \"192.0.2.100:80\"\npool = \"web\"\n"
}

/// `curl http://VIP/id` from the client, `n` times; every one must answer.
fn requests(lab: &Lab, n: usize) {
    for i in 0..n {
        let (ok, out) = lab.topo.try_exec("client", &format!("curl -s -S -m 10 http://{VIP}/id"));
        assert!(ok && out.trim().starts_with("srv"), "request {i}: {out}\nfuriwake:\n{}", lab.fw_output());
    }
}

/// Samples of one scrape: `name{labels}` -> value.
fn scrape(lab: &Lab, path: &str) -> (bool, String) {
    lab.topo.try_exec("lb", &format!("curl -s -S -m 5 -w '\\n%{{http_code}}' http://{METRICS}{path}"))
}

fn samples(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn metrics(lab: &Lab) -> BTreeMap<String, u64> {
    let (ok, out) = scrape(lab, "/metrics");
    assert!(ok, "scrape failed: {out}");
    let (body, code) = out.rsplit_once('\n').unwrap();
    assert_eq!(code.trim(), "200", "{out}");
    samples(body)
}

fn client_tx_packets(lab: &Lab) -> u64 {
    lab.topo.exec("client", "cat /sys/class/net/eth0/statistics/tx_packets").trim().parse().unwrap()
}

/// The Prometheus endpoint on the management address serves text whose
/// connection and packet counters match what the test sent.
#[test]
fn metrics_endpoint_counts_what_the_test_sent() {
    let Some(mut lab) = Lab::open('m', "ops-metrics", &["nginx"]) else { return };
    for n in 1..=LAB_BACKENDS {
        lab.start_nginx(n, 0);
    }
    lab.start(&format!("[management]\nlisten = \"{METRICS}\"\n\n{}", services()));
    lab.fw().expect_output(&format!("metrics: http://{METRICS}/metrics"), Duration::from_secs(5));
    // Resolve first so both sides count the same frames from here on.
    requests(&lab, 1);
    std::thread::sleep(Duration::from_millis(300));

    // The client's kernel may send a frame of its own (IPv6 neighbour
    // discovery, ARP) at any moment, so its count is read on both sides
    // of each scrape: the frames the port counted between the two scrapes
    // are at least those the client sent strictly between them and at most
    // those it sent from just before the first to just after the second.
    let c0 = client_tx_packets(&lab);
    let before = metrics(&lab);
    let c1 = client_tx_packets(&lab);
    requests(&lab, 20);
    // The last FIN/ACKs are in flight when curl returns: wait for the port
    // to have seen everything the client sent.
    let rx = "furiwake_port_rx_packets_total{port=\"outside\"}";
    let mut sent = (0, 0);
    let after = wait_for(Duration::from_secs(5), || {
        let c2 = client_tx_packets(&lab);
        let m = metrics(&lab);
        let c3 = client_tx_packets(&lab);
        sent = (c2 - c1, c3 - c0);
        Some(m).filter(|m| m[rx] - before[rx] >= sent.0)
    })
    .unwrap_or_else(|| metrics(&lab));
    let (least, most) = sent;
    let delta = |k: &str| after.get(k).copied().unwrap_or_else(|| panic!("no sample {k}")) - before.get(k).copied().unwrap_or(0);

    assert_eq!(delta("furiwake_virtual_server_connections_total{virtual_server=\"www\"}"), 20);
    let per_server: u64 = (1..=LAB_BACKENDS)
        .map(|n| delta(&format!("furiwake_server_connections_total{{virtual_server=\"www\",server=\"{}:80\"}}", server_ip(n))))
        .sum();
    assert_eq!(per_server, 20);
    let active = after["furiwake_virtual_server_connections_active{virtual_server=\"www\"}"];
    assert!(active <= 21, "at most the 21 connections made are entries: {active}");
    // Every frame the client sent reached the outside port (ARP included),
    // and nothing else was counted.
    assert!((least..=most).contains(&delta(rx)), "the port counted {} frames, the client sent {least} to {most}", delta(rx));
    // The TCP packets among them are the virtual server's `in` packets.
    let vs_in = delta("furiwake_virtual_server_in_packets_total{virtual_server=\"www\"}");
    assert!(vs_in <= most && vs_in >= 20 * 5, "in-packets {vs_in} of {least} to {most} frames sent");
    assert_eq!(after["furiwake_server_up{virtual_server=\"www\",server=\"198.51.100.11:80\"}"], 1);
    assert!(after.keys().any(|k| k.starts_with("furiwake_worker_drops_total{worker=\"0\",reason=\"runt-frame\"}")));
    let in_use = after["furiwake_mbufs_in_use"];
    assert!(in_use < 8191, "mbufs in use: {in_use}");

    // Other paths and methods.
    let (_, out) = scrape(&lab, "/other");
    assert!(out.ends_with("404"), "{out}");
    let (_, out) = lab.topo.try_exec("lb", &format!("curl -s -m 5 -X POST -w '\\n%{{http_code}}' http://{METRICS}/metrics"));
    assert!(out.ends_with("405"), "{out}");
    stop_furiwake_cleanly(lab.fw());
}

/// DPDK telemetry is on: `dpdk-telemetry.py` reads the ports' stats from
/// the running appliance.
#[test]
fn dpdk_telemetry_reads_port_stats() {
    let Some(mut lab) = Lab::open('t', "ops-telemetry", &["nginx", "dpdk-telemetry.py"]) else { return };
    for n in 1..=LAB_BACKENDS {
        lab.start_nginx(n, 0);
    }
    let platform = platform_section(&lab.prefix).replace(", \"--no-telemetry\"", "");
    assert!(!platform.contains("no-telemetry"));
    lab.start_config(&format!("{platform}\n{LAB_INTERFACES}\n{}", services()));
    requests(&lab, 5);
    let out = sh(&format!("echo /ethdev/stats,0 | timeout 10 dpdk-telemetry.py -f {}", lab.prefix));
    let ipackets: u64 = out
        .split("\"ipackets\": ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no ipackets in {out:?}"));
    let block = lab.report();
    let port_rx = must(&block, "port outside:", "rx");
    assert!(ipackets >= 5 * 5 && ipackets <= port_rx, "telemetry ipackets {ipackets}, report {port_rx}:\n{out}");
    stop_furiwake_cleanly(lab.fw());
}

/// Hugepages for a DPDK primary whose secondaries must attach: at least
/// `pages` free 2 MiB pages and hugetlbfs mounted.
fn ensure_hugepages(pages: u64) {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let field = |k: &str| -> u64 {
        meminfo.lines().find(|l| l.starts_with(k)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    let (total, free) = (field("HugePages_Total:"), field("HugePages_Free:"));
    if free < pages {
        std::fs::write("/proc/sys/vm/nr_hugepages", (total + pages - free).to_string()).unwrap();
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    if !mounts.lines().any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs")) {
        sh("mkdir -p /dev/hugepages && mount -t hugetlbfs nodev /dev/hugepages");
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let free = meminfo.lines().find(|l| l.starts_with("HugePages_Free:")).and_then(|l| l.split_whitespace().nth(1)).unwrap_or("0");
    assert!(free.parse::<u64>().unwrap_or(0) >= pages, "could not reserve {pages} hugepages (free: {free})");
}

/// `dpdk-dumpcap` attaches to the running appliance (which runs on
/// hugepages for it: DPDK secondaries cannot map a `--no-huge` primary's
/// memory) and writes a pcap holding the test's packets.
#[test]
fn dpdk_dumpcap_captures_the_tests_packets() {
    let Some(mut lab) = Lab::open('d', "ops-dumpcap", &["nginx", "dpdk-dumpcap", "tshark"]) else { return };
    ensure_hugepages(96);
    for n in 1..=LAB_BACKENDS {
        lab.start_nginx(n, 0);
    }
    let platform = platform_section(&lab.prefix).replace("\"--no-huge\", \"-m\", \"256\"", "\"-m\", \"128\"");
    assert!(!platform.contains("no-huge"));
    lab.start_config(&format!("{platform}\n{LAB_INTERFACES}\n{}", services()));
    let want = format!("capture: dpdk-dumpcap --file-prefix {}", lab.prefix);
    lab.fw().expect_output(&want, Duration::from_secs(5));

    let pcap = lab.dir.path("outside.pcapng");
    let argv = ["dpdk-dumpcap", "--file-prefix", &lab.prefix, "-i", "net_af_packet0", "-w", pcap.to_str().unwrap()];
    let mut cap = Proc::spawn("dumpcap", None, &argv, &lab.dir.path("dumpcap.log"), false);
    // Its progress line shows once it captures (its "Capturing on" comes
    // at the end: stderr).
    cap.expect_output("Packets captured:", Duration::from_secs(20));
    // Ten requests from a client port the test chose.
    for i in 0..10 {
        let (ok, out) = lab.topo.try_exec("client", &format!("curl -s -S -m 10 --local-port {} http://{VIP}/id", 45000 + i));
        assert!(ok, "{out}");
    }
    std::thread::sleep(Duration::from_millis(500));
    cap.signal(libc::SIGINT);
    assert!(cap.wait(Duration::from_secs(10)).is_some(), "dumpcap did not stop on SIGINT");
    let lines = sh(&format!("tshark -r {} -Y 'tcp.srcport >= 45000 && tcp.srcport < 45010 && tcp.flags.syn == 1' -T fields -e tcp.srcport", pcap.display()));
    let ports: std::collections::BTreeSet<&str> = lines.lines().collect();
    assert_eq!(ports.len(), 10, "SYNs of the ten requests in the capture: {lines:?}\ndumpcap:\n{}", cap.output());
    stop_furiwake_cleanly(lab.fw());
}
