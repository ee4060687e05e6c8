//! L4 forwarding end to end: the real `furiwake` binary on two
//! `net_af_packet` ports in the lab of `scripts/netns.sh`, real nginx and
//! UDP backends in the server namespaces, real clients (curl, ping, python)
//! in the client namespace.
//!
//! Lab: PREFIX-client 192.0.2.10 -- br-out -- lb-out [furiwake] lb-in --
//! br-in -- PREFIX-srvN 198.51.100.(10+N). The VIP is 192.0.2.100; the box's
//! self IPs are 192.0.2.2 (outside) and 198.51.100.1 (inside).
//!
//! The tests of one binary run one at a time (a lock), since each furiwake
//! owns lcore 1 of a small machine.

use furiwake_e2e::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const BACKENDS: u32 = LAB_BACKENDS;
const BIG_MB: u32 = 50;
const BIG_BYTES: u64 = BIG_MB as u64 * 1048576;

/// The L4 tests' helpers on the shared lab (`furiwake_e2e::Lab`).
trait L4Lab: Sized {
    /// The shared lab, scratch dir `l4-NAME-PREFIX`.
    fn new(tag: char, name: &str, tools: &[&str]) -> Option<Self>;
    /// nginx on port 80 in every server namespace; `/id` answers `srvN`,
    /// `/big` is a `big_mb` MiB random file (different per backend).
    fn nginx(&mut self, big_mb: u32);
    /// A UDP responder on `port` in every server namespace, answering `srvN`.
    fn udp_responders(&mut self, port: u16);
    /// `curl http://VIP/id` from the client: the name of the backend that
    /// answered. Panics with furiwake's output when it fails.
    fn get_id(&self, i: usize) -> String;
    /// The lines of backend N's nginx access log, without the box's own
    /// health probes (not client traffic).
    fn access_log(&self, n: u32) -> Vec<String>;
    /// Waits (up to 5 s) until the backends' access logs hold `total` lines
    /// together: nginx writes a line just after the response, which the
    /// client may have a moment before.
    fn access_logs_settle(&self, total: usize);
    /// sha256 of each backend's /big, by backend name.
    fn big_hashes(&self) -> BTreeMap<String, String>;
}

impl L4Lab for Lab {
    fn new(tag: char, name: &str, tools: &[&str]) -> Option<Lab> {
        Lab::open(tag, &format!("l4-{name}"), tools)
    }

    fn nginx(&mut self, big_mb: u32) {
        for n in 1..=BACKENDS {
            self.start_nginx(n, big_mb);
        }
    }

    fn udp_responders(&mut self, port: u16) {
        let script = test_script("udp_responder.py");
        for n in 1..=BACKENDS {
            let argv = ["python3", script.to_str().unwrap(), "--port", &port.to_string(), "--reply", &format!("srv{n}")];
            self.serve(&format!("udp-srv{n}"), n, &argv);
        }
    }

    fn get_id(&self, i: usize) -> String {
        let (ok, out) = self.topo.try_exec("client", &format!("curl -s -S -m 10 http://{VIP}/id"));
        assert!(ok, "request {i} to http://{VIP}/id failed: {out}\nfuriwake:\n{}", self.fw_output());
        out.trim().to_string()
    }

    fn access_log(&self, n: u32) -> Vec<String> {
        self.nginx_access_log(n).into_iter().filter(|l| !l.contains("\"GET /health ")).collect()
    }

    fn access_logs_settle(&self, total: usize) {
        wait_for(Duration::from_secs(5), || Some(()).filter(|_| (1..=BACKENDS).map(|n| self.access_log(n).len()).sum::<usize>() >= total));
    }

    fn big_hashes(&self) -> BTreeMap<String, String> {
        (1..=BACKENDS).map(|n| (format!("srv{n}"), sha256_file(&self.backend_dir(n).join("www/big")))).collect()
    }
}

/// A `[[pool]]` of the three backends on `port`, in order srv1, srv2, srv3;
/// `weights` (when given) one per server.
fn pool(name: &str, port: u16, algorithm: &str, weights: Option<[u32; 3]>) -> String {
    let mut s = format!("[[pool]]\nname = \"{name}\"\nalgorithm = \"{algorithm}\"\nservers = [\n");
    for n in 1..=BACKENDS {
        match weights {
            Some(w) => s.push_str(&format!("  {{ address = \"{}:{port}\", weight = {} }},\n", server_ip(n), w[n as usize - 1])),
            None => s.push_str(&format!("  {{ address = \"{}:{port}\" }},\n", server_ip(n))),
        }
    }
    s.push_str("]\n");
    s
}

fn virtual_server(name: &str, port: u16, protocol: &str, forwarding: &str, pool: &str) -> String {
    format!("[[virtual_server]]\nname = \"{name}\"\naddress = \"{VIP}:{port}\"\nprotocol = \"{protocol}\"\nforwarding = \"{forwarding}\"\npool = \"{pool}\"\n")
}

/// The usual service: `www` on VIP:80, TCP, over pool `web` (round robin).
fn www(forwarding: &str) -> String {
    format!("{}\n{}", pool("web", 80, "round-robin", None), virtual_server("www", 80, "tcp", forwarding, "web"))
}

fn expected(counts: &[(&str, usize)]) -> BTreeMap<String, usize> {
    counts.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Sequential `curl /id` from the client, `n` times.
fn get_ids(lab: &Lab, n: usize) -> Vec<String> {
    (0..n).map(|i| lab.get_id(i)).collect()
}

// ---------------------------------------------------------------------------

#[test]
fn nat_round_robin_spreads_30_requests_10_10_10() {
    let Some(mut lab) = Lab::new('r', "rr", &["nginx"]) else { return };
    lab.nginx(0);
    // The example config the demo runs, as shipped (only its DPDK file
    // prefix made unique): two-arm NAT on net_af_xdp, round robin over
    // srv1..3.
    let example = std::fs::read_to_string(workspace().join("configs/two-arm-nat.toml")).expect("configs/two-arm-nat.toml");
    assert!(example.contains("\"furiwake-demo\""));
    lab.start_config(&example.replace("\"furiwake-demo\"", &format!("\"{}\"", lab.prefix)));
    // Its pool has an http health check: servers take new connections once
    // they pass it (rise 2).
    for n in 1..=BACKENDS {
        lab.fw().expect_output(&format!("health: server {}:80 (pool web) up", server_ip(n)), Duration::from_secs(20));
    }

    let answers = get_ids(&lab, 30);
    assert_eq!(tally(&answers), expected(&[("srv1", 10), ("srv2", 10), ("srv3", 10)]), "answers: {answers:?}");
    // In config order: each answer is followed by the next server (srv3 by srv1).
    for w in answers.windows(2) {
        let next = match w[0].as_str() {
            "srv1" => "srv2",
            "srv2" => "srv3",
            _ => "srv1",
        };
        assert_eq!(w[1], next, "round robin out of config order: {answers:?}");
    }

    // NAT keeps the client's address: every backend logged 10 requests from it.
    lab.access_logs_settle(30);
    for n in 1..=BACKENDS {
        let log = lab.access_log(n);
        assert_eq!(log.len(), 10, "srv{n} access log: {log:?}");
        assert!(log.iter().all(|l| l.starts_with(&format!("{CLIENT} "))), "srv{n} saw a source other than the client: {log:?}");
    }

    let block = lab.report();
    assert_eq!(must(&block, "virtual-server www:", "conns-new"), 30, "{block}");
    for n in 1..=BACKENDS {
        let line = server_line(n, 80);
        assert_eq!(must(&block, &line, "conns-new"), 10, "{block}");
        // At least SYN, request, ACK per connection one way; SYN-ACK,
        // response, FIN the other.
        assert!(must(&block, &line, "in-pkts") >= 30, "{block}");
        assert!(must(&block, &line, "out-pkts") >= 30, "{block}");
    }
    let (in_pkts, out_pkts) = (must(&block, "virtual-server www:", "in-pkts"), must(&block, "virtual-server www:", "out-pkts"));
    assert!(in_pkts >= 90 && out_pkts >= 90, "{block}");
    // IPv4 + TCP headers alone are 40 bytes a packet.
    assert!(must(&block, "virtual-server www:", "in-bytes") >= 40 * in_pkts, "{block}");
    assert!(must(&block, "virtual-server www:", "out-bytes") >= 40 * out_pkts, "{block}");
    assert!(must(&block, "worker 0:", "tx") >= 90 + 90, "{block}");

    stop_furiwake_cleanly(lab.fw());
}

#[test]
fn weighted_round_robin_3_1_1_gives_18_6_6() {
    let Some(mut lab) = Lab::new('w', "wrr", &["nginx"]) else { return };
    lab.nginx(0);
    let services = format!("{}\n{}", pool("web", 80, "weighted-round-robin", Some([3, 1, 1])), virtual_server("www", 80, "tcp", "nat", "web"));
    lab.start(&services);

    let answers = get_ids(&lab, 30);
    assert_eq!(tally(&answers), expected(&[("srv1", 18), ("srv2", 6), ("srv3", 6)]), "answers: {answers:?}");
    let block = lab.report();
    assert_eq!(must(&block, "virtual-server www:", "conns-new"), 30, "{block}");
    for (n, want) in [(1, 18), (2, 6), (3, 6)] {
        assert_eq!(must(&block, &server_line(n, 80), "conns-new"), want, "{block}");
    }
    stop_furiwake_cleanly(lab.fw());
}

#[test]
fn nat_50mb_download_is_byte_identical() {
    let Some(mut lab) = Lab::new('d', "big", &["nginx"]) else { return };
    lab.nginx(BIG_MB);
    let hashes = lab.big_hashes();
    lab.start(&www("nat"));

    let file = lab.dir.path("big.download");
    let (ok, out) = lab.topo.try_exec("client", &format!("curl -s -S -m 120 -o {} -w '%{{http_code}} %{{size_download}}' http://{VIP}/big", file.display()));
    assert!(ok, "download failed: {out}\nfuriwake:\n{}", lab.fw_output());
    assert_eq!(out.trim(), format!("200 {BIG_BYTES}"), "status and size");
    assert_eq!(std::fs::metadata(&file).map(|m| m.len()).ok(), Some(BIG_BYTES));

    // The backend that logged the request served exactly these bytes.
    lab.access_logs_settle(1);
    let served_by: Vec<u32> = (1..=BACKENDS).filter(|&n| lab.access_log(n).iter().any(|l| l.contains("GET /big "))).collect();
    assert_eq!(served_by.len(), 1, "exactly one backend served /big: {served_by:?}");
    let got = sha256_file(&file);
    let matching: Vec<&String> = hashes.iter().filter(|(_, h)| **h == got).map(|(name, _)| name).collect();
    assert_eq!(matching, vec![&format!("srv{}", served_by[0])], "downloaded sha256 {got}; backends: {hashes:?}");
    let _ = std::fs::remove_file(&file);

    let block = lab.report();
    assert_eq!(must(&block, "virtual-server www:", "conns-new"), 1, "{block}");
    // The server's bytes toward the client include the whole file.
    let line = server_line(served_by[0], 80);
    let (inb, outb) = (must(&block, &line, "in-bytes"), must(&block, &line, "out-bytes"));
    assert!(inb.max(outb) >= BIG_BYTES, "{block}");

    stop_furiwake_cleanly(lab.fw());
}

#[test]
fn udp_virtual_server_answers_through_the_vip() {
    let Some(mut lab) = Lab::new('u', "udp", &[]) else { return };
    lab.udp_responders(5353);
    let services = format!("{}\n{}", pool("dns", 5353, "round-robin", None), virtual_server("dns", 5353, "udp", "nat", "dns"));
    lab.start(&services);

    let ask = test_script("udp_ask.py");
    let mut answers = Vec::new();
    // A new client port each time: a new flow, hence the next server.
    for sport in [40001u16, 40002, 40003] {
        // Connected socket: only a datagram from VIP:5353 is accepted.
        let (ok, out) = lab.topo.try_exec("client", &format!("python3 {} --to {VIP}:5353 --sport {sport} --tries 5 --wait 1", ask.display()));
        assert!(ok, "no UDP answer through {VIP}:5353 from port {sport}: {out}\nfuriwake:\n{}", lab.fw_output());
        answers.push((sport, out.trim().to_string()));
    }
    let mut names: Vec<&str> = answers.iter().map(|(_, a)| a.as_str()).collect();
    names.sort();
    assert_eq!(names, ["srv1", "srv2", "srv3"], "answers: {answers:?}");

    // Each backend saw the client itself (NAT rewrites the destination
    // only), from the port whose answer it gave.
    for (sport, name) in &answers {
        let log = std::fs::read_to_string(lab.dir.path(&format!("udp-{name}.log"))).unwrap_or_default();
        let froms: Vec<&str> = log.lines().filter(|l| l.starts_with("from ")).collect();
        assert!(!froms.is_empty(), "{name} logged no datagram:\n{log}");
        let want = format!("from {CLIENT}:{sport} ");
        assert!(froms.iter().all(|l| l.starts_with(&want)), "{name} expected only datagrams {want:?}:\n{log}");
    }

    let block = lab.report();
    assert_eq!(must(&block, "virtual-server dns:", "conns-new"), 3, "{block}");
    for n in 1..=BACKENDS {
        assert_eq!(must(&block, &server_line(n, 5353), "conns-new"), 1, "{block}");
    }
    stop_furiwake_cleanly(lab.fw());
}

#[test]
fn full_nat_backends_without_route_back_see_local_address() {
    let Some(mut lab) = Lab::new('f', "fnat", &["nginx"]) else { return };
    lab.nginx(0);
    for n in 1..=BACKENDS {
        let ns = lab.topo.ns(&format!("srv{n}"));
        sh(&format!("ip -n {ns} route del default"));
        assert_eq!(sh(&format!("ip -n {ns} route show default")).trim(), "", "srv{n} still has a default route");
    }
    lab.start(&www("full-nat"));

    let answers = get_ids(&lab, 6);
    assert_eq!(tally(&answers), expected(&[("srv1", 2), ("srv2", 2), ("srv3", 2)]), "answers: {answers:?}");

    lab.access_logs_settle(6);
    for n in 1..=BACKENDS {
        let log = lab.access_log(n);
        let ids = log.iter().filter(|l| l.contains("\"GET /id ")).count();
        assert_eq!(ids, 2, "srv{n} access log: {log:?}");
        for l in &log {
            assert_eq!(l.split_whitespace().next(), Some(SELF_INSIDE), "srv{n} saw a source other than the local address: {l}");
            assert!(!l.starts_with(&format!("{CLIENT} ")), "srv{n} saw the client's address: {l}");
        }
    }
    let block = lab.report();
    assert_eq!(must(&block, "virtual-server www:", "conns-new"), 6, "{block}");
    stop_furiwake_cleanly(lab.fw());
}

#[test]
fn connection_entries_live_during_transfer_and_expire_after_timeouts() {
    let Some(mut lab) = Lab::new('t', "timeouts", &["nginx"]) else { return };
    lab.nginx(BIG_MB);
    let hashes = lab.big_hashes();
    let services = format!("{}\n[timeouts]\ntcp_established = 300\ntcp_fin = 2\ntcp_time_wait = 2\ntcp_close = 2\ntcp_syn = 5\n", www("nat"));
    lab.start(&services);

    let file = lab.dir.path("big.download");
    let (f, url) = (file.to_str().unwrap().to_string(), format!("http://{VIP}/big"));
    let argv = ["curl", "-s", "-S", "-m", "120", "--limit-rate", "5M", "-o", &f, "-w", "%{http_code} %{size_download}\n", &url];
    let client_ns = lab.topo.ns("client");
    let mut curl = Proc::spawn("curl", Some(&client_ns), &argv, &lab.dir.path("curl.log"), false);

    // While the transfer runs: its entry is in the table.
    let during = lab.report_until(Duration::from_secs(20), |b| {
        counter(b, "virtual-server www:", "conns-active").unwrap_or(0) >= 1 && counter(b, "worker 0:", "flows").unwrap_or(0) >= 1
    });
    let still_running = curl.is_running();
    let during = during.unwrap_or_else(|b| panic!("no active connection while downloading:\n{b}\ncurl: {}", curl.output()));
    assert!(still_running, "the download ended before an entry was seen; curl: {}\n{during}", curl.output());
    let per_server: u64 = (1..=BACKENDS).map(|n| must(&during, &server_line(n, 80), "conns-active")).sum();
    assert!(per_server >= 1, "no server has the active connection:\n{during}");

    let status = curl.wait(Duration::from_secs(130)).expect("curl ends (it has -m 120)");
    assert_eq!(status.code(), Some(0), "curl: {}\nfuriwake:\n{}", curl.output(), lab.fw_output());
    assert_eq!(curl.output().trim(), format!("200 {BIG_BYTES}"));
    let got = sha256_file(&file);
    assert!(hashes.values().any(|h| *h == got), "downloaded sha256 {got} is no backend's file: {hashes:?}");
    let _ = std::fs::remove_file(&file);

    // After FIN and TIME_WAIT (2 s each here), the entry expires: it stops
    // being active at the FINs, then inactive.
    let ended = Instant::now();
    let gone = |b: &str, line: &str| counter(b, line, "conns-active") == Some(0) && counter(b, line, "conns-inactive") == Some(0);
    let after = lab.report_until(Duration::from_secs(10), |b| gone(b, "virtual-server www:") && (1..=BACKENDS).all(|n| gone(b, &server_line(n, 80))));
    let after = after.unwrap_or_else(|b| panic!("entries still active 10 s after the transfer ended:\n{b}"));
    eprintln!("entries gone {:?} after the transfer ended", ended.elapsed());
    assert_eq!(must(&after, "virtual-server www:", "conns-new"), 1, "{after}");
    stop_furiwake_cleanly(lab.fw());
}

#[test]
fn rst_closes_its_entry() {
    let Some(mut lab) = Lab::new('x', "rst", &["nginx"]) else { return };
    lab.nginx(0);
    // Every other TCP timeout long: only the RST (CLOSE, 2 s) can remove
    // the entry in time.
    let services = format!("{}\n[timeouts]\ntcp_established = 300\ntcp_fin = 120\ntcp_time_wait = 120\ntcp_close = 2\ntcp_syn = 60\n", www("nat"));
    lab.start(&services);

    let hold = test_script("tcp_hold.py");
    let client_ns = lab.topo.ns("client");
    let argv = ["python3", hold.to_str().unwrap(), "--to", &format!("{VIP}:80"), "--timeout", "10"];
    let mut conn = Proc::spawn("tcp_hold", Some(&client_ns), &argv, &lab.dir.path("tcp_hold.log"), true);
    let connected = wait_for(Duration::from_secs(15), || {
        let out = conn.output();
        if out.contains("connected ") {
            return Some(true);
        }
        conn.exited().map(|_| false)
    });
    assert_eq!(connected, Some(true), "no TCP connection to {VIP}:80: {}\nfuriwake:\n{}", conn.output(), lab.fw_output());

    let open = lab
        .report_until(Duration::from_secs(10), |b| counter(b, "virtual-server www:", "conns-active") == Some(1))
        .unwrap_or_else(|b| panic!("conns-active never 1 with one open connection:\n{b}"));
    let per_server: u64 = (1..=BACKENDS).map(|n| must(&open, &server_line(n, 80), "conns-active")).sum();
    assert_eq!(per_server, 1, "{open}");

    conn.send_line("rst");
    conn.expect_output("reset", Duration::from_secs(5));
    let sent = Instant::now();
    // At once no longer active: CLOSE is inactive.
    let closed = lab.report_until(Duration::from_secs(1), |b| counter(b, "virtual-server www:", "conns-active") == Some(0));
    let closed = closed.unwrap_or_else(|b| panic!("still active 1 s after the RST:\n{b}"));
    assert_eq!(must(&closed, "virtual-server www:", "conns-inactive"), 1, "the closed entry waits for tcp_close:\n{closed}");
    let gone = lab.report_until(Duration::from_secs(5), |b| counter(b, "virtual-server www:", "conns-inactive") == Some(0));
    let gone = gone.unwrap_or_else(|b| panic!("entry still there 5 s after the RST (tcp_close 2 s, the rest 60 s and more):\n{b}"));
    eprintln!("entry gone {:?} after the RST", sent.elapsed());
    assert!((1..=BACKENDS).all(|n| counter(&gone, &server_line(n, 80), "conns-active") == Some(0)), "{gone}");
    stop_furiwake_cleanly(lab.fw());
}

#[test]
fn ten_thousand_malformed_frames_are_counted_and_harmless() {
    let Some(mut lab) = Lab::new('m', "malformed", &["nginx"]) else { return };
    lab.nginx(0);
    // A TCP and a UDP virtual server on the VIP: the malformed TCP and UDP
    // frames aim at real services.
    let services = format!(
        "{}\n{}\n{}\n{}",
        pool("web", 80, "round-robin", None),
        virtual_server("www", 80, "tcp", "nat", "web"),
        pool("dns", 5353, "round-robin", None),
        virtual_server("dns", 5353, "udp", "nat", "dns")
    );
    lab.start(&services);
    let mac = port_mac(&lab.fw_output(), "outside").expect("outside MAC");

    let script = test_script("malformed.py");
    let send = |args: &str| {
        lab.topo.exec("client", &format!("python3 {} --iface eth0 --dst-mac {mac} --vip {VIP} --tcp-port 80 --udp-port 5353 {args}", script.display()))
    };

    // 10,000 frames of the 13 kinds an af_packet port can receive: the
    // kernel under net_af_packet reassembles IPv4 fragments before the PMD
    // (PACKET_FANOUT_FLAG_DEFRAG) and holds lone ones, so fragments are
    // sent apart below and not counted.
    let before = lab.report();
    let out = send("--count 10000 --skip fragment-mf --skip fragment-offset");
    assert!(out.lines().any(|l| l == "total: 10000"), "malformed.py:\n{out}");
    std::thread::sleep(Duration::from_secs(2));
    let after = lab.report();
    assert!(lab.fw.as_mut().is_some_and(Proc::is_running), "furiwake died:\n{}", lab.fw_output());

    let delta = |prefix: &str, key: &str| must(&after, prefix, key).saturating_sub(must(&before, prefix, key));
    // The kernel under net_af_packet may drop some of the burst before the
    // box sees it (its ring overflows while the worker is not scheduled),
    // so the box is held to what it received: every frame, but the few of
    // ARP and health probes meanwhile, dropped.
    let rx = delta("worker 0:", "rx");
    assert!(rx >= 1000, "only {rx} of the 10,000 frames reached the worker\nbefore:\n{before}\nafter:\n{after}");
    let dropped = delta("worker 0:", "dropped");
    assert!(dropped <= rx && dropped + 100 >= rx, "dropped {dropped} of {rx} frames received\nbefore:\n{before}\nafter:\n{after}");
    // Nothing was forwarded to the servers (ARP and the like aside).
    assert!(delta("port inside:", "tx") < 100, "frames went out on the inside\nbefore:\n{before}\nafter:\n{after}");

    // Every drop is under a named reason; they add up to the total.
    let was: BTreeMap<String, u64> = worker_drops(&before, 0).into_iter().collect();
    let grew: BTreeMap<String, u64> =
        worker_drops(&after, 0).into_iter().map(|(r, n)| (r.clone(), n - was.get(&r).copied().unwrap_or(0))).filter(|(_, n)| *n > 0).collect();
    assert_eq!(grew.values().sum::<u64>(), dropped, "drop reasons {grew:?} vs dropped {dropped}\n{after}");
    assert!(grew.len() >= 2, "malformed frames of 13 kinds under {} reason(s): {grew:?}", grew.len());
    eprintln!("drops by reason: {grew:?}");

    // Fragments to the VIP: whatever reaches the box, nothing goes out.
    let before = after;
    let out = send("--count 1000 --only fragment-mf --only fragment-offset");
    assert!(out.lines().any(|l| l == "total: 1000"), "malformed.py:\n{out}");
    std::thread::sleep(Duration::from_secs(1));
    let after = lab.report();
    assert!(lab.fw.as_mut().is_some_and(Proc::is_running), "furiwake died:\n{}", lab.fw_output());
    let delta = |prefix: &str, key: &str| must(&after, prefix, key).saturating_sub(must(&before, prefix, key));
    assert!(delta("port inside:", "tx") < 100, "fragments went out on the inside\nbefore:\n{before}\nafter:\n{after}");

    // Still serving.
    let id = lab.get_id(0);
    assert!(["srv1", "srv2", "srv3"].contains(&id.as_str()), "answer {id:?}");
    stop_furiwake_cleanly(lab.fw());
}

#[test]
fn ping_vip_and_self_ip_answered() {
    let Some(mut lab) = Lab::new('p', "ping", &["ping"]) else { return };
    lab.start(&www("nat"));
    for ip in [VIP, SELF_OUTSIDE] {
        let (ok, out) = lab.topo.try_exec("client", &format!("ping -c 3 -W 2 {ip}"));
        assert!(ok, "ping {ip} failed:\n{out}\nfuriwake:\n{}", lab.fw_output());
        assert!(out.contains(" 3 received"), "ping {ip}:\n{out}");
        assert!(out.contains(&format!("bytes from {ip}:")), "replies from {ip}:\n{out}");
    }
    stop_furiwake_cleanly(lab.fw());
}

// ---------------------------------------------------------------------------
// The harness itself, on what the foundation already does (ARP, counting):
// these pass before L4 forwarding exists, so a failure above is the box's,
// not the lab's.

#[test]
fn report_helper_returns_fresh_blocks_and_stop_is_clean() {
    let Some(mut lab) = Lab::new('c', "report", &[]) else { return };
    lab.start(&www("nat"));
    let first = lab.report();
    assert_eq!(first.matches(COUNTERS_HEADER).count(), 1, "one block:\n{first}");
    assert!(first.starts_with(COUNTERS_HEADER), "{first}");
    assert!(first.lines().last().is_some_and(|l| l.starts_with("mbufs:")), "{first}");
    assert!(mbufs_in_use(&first).is_some(), "{first}");
    let rx0 = must(&first, "worker 0:", "rx");

    // 20 datagrams to a VIP port no virtual server has: received, dropped.
    lab.topo.exec(
        "client",
        &format!("python3 -c \"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); [s.sendto(b'x', ('{VIP}', 9)) for _ in range(20)]\""),
    );
    let later = lab
        .report_until(Duration::from_secs(10), |b| counter(b, "worker 0:", "rx").unwrap_or(0) >= rx0 + 20)
        .unwrap_or_else(|b| panic!("20 datagrams not counted (rx was {rx0}):\n{b}"));
    assert_eq!(later.matches(COUNTERS_HEADER).count(), 1, "{later}");
    let drops = worker_drops(&later, 0);
    assert_eq!(drops.iter().map(|(_, n)| n).sum::<u64>(), must(&later, "worker 0:", "dropped"), "{later}");
    assert!(must(&later, "worker 0:", "dropped") >= 20, "{later}");

    let out = stop_furiwake_cleanly(lab.fw());
    assert!(out.contains("furiwake: stopped"), "{out}");
}

// ---------------------------------------------------------------------------
// The lab's parts without the appliance.

#[test]
fn lab_harness_parts_work_without_the_appliance() {
    let Some(mut lab) = Lab::new('h', "harness", &["nginx"]) else { return };
    lab.nginx(1);
    lab.udp_responders(5353);

    // nginx answers over the inside bridge (srv2 -> srv1, srv1 -> srv3).
    assert_eq!(lab.topo.exec("srv2", &format!("curl -s -S -m 5 http://{}/id", server_ip(1))).trim(), "srv1");
    assert_eq!(lab.topo.exec("srv1", &format!("curl -s -S -m 5 http://{}/id", server_ip(3))).trim(), "srv3");
    let got = lab.dir.path("big.download");
    lab.topo.exec("srv3", &format!("curl -s -S -m 20 -o {} http://{}/big", got.display(), server_ip(2)));
    assert_eq!(sha256_file(&got), lab.big_hashes()["srv2"]);
    lab.access_logs_settle(3);
    assert_eq!(lab.access_log(2).len(), 1, "the readiness probe is not in the log: {:?}", lab.access_log(2));
    assert!(lab.access_log(2)[0].starts_with(&format!("{} ", server_ip(3))));

    // The UDP responder answers from its port (the client's socket is connected).
    let ask = test_script("udp_ask.py");
    let out = lab.topo.exec("srv2", &format!("python3 {} --to {}:5353 --sport 40001", ask.display(), server_ip(1)));
    assert_eq!(out.trim(), "srv1");
    let log = std::fs::read_to_string(lab.dir.path("udp-srv1.log")).unwrap();
    assert!(log.contains(&format!("from {}:40001 5", server_ip(2))), "{log}");

    // tcp_hold connects and resets.
    let hold = test_script("tcp_hold.py");
    let ns = lab.topo.ns("srv2");
    let argv = ["python3", hold.to_str().unwrap(), "--to", &format!("{}:80", server_ip(1))];
    let mut conn = Proc::spawn("tcp_hold", Some(&ns), &argv, &lab.dir.path("tcp_hold.log"), true);
    conn.expect_output("connected 198.51.100.12:", Duration::from_secs(10));
    conn.send_line("rst");
    conn.expect_output("reset", Duration::from_secs(5));
    assert_eq!(conn.wait(Duration::from_secs(5)).and_then(|s| s.code()), Some(0));

    // malformed.py: exactly 10000 frames reach lb-out (nothing owns it here).
    let lb_mac = lab.topo.exec("lb", "cat /sys/class/net/lb-out/address").trim().to_string();
    let client_mac = lab.topo.exec("client", "cat /sys/class/net/eth0/address").trim().to_string();
    let count = test_script("count_frames.py");
    let lb_ns = lab.topo.ns("lb");
    // Only the frames malformed.py sends (to lb-out's MAC, IPv4 or its
    // garbage EtherType): the client's kernel sends ARP and IPv6 of its own.
    let argv = ["python3", count.to_str().unwrap(), "--iface", "lb-out", "--src-mac", &client_mac, "--dst-mac", &lb_mac, "--ethertype", "0x0800", "--ethertype", "0x88b5", "--idle", "2", "--timeout", "60"];
    let mut counter_proc = Proc::spawn("count_frames", Some(&lb_ns), &argv, &lab.dir.path("count.log"), false);
    counter_proc.expect_output("ready", Duration::from_secs(10));
    let malformed = test_script("malformed.py");
    let out = lab.topo.exec("client", &format!("python3 {} --iface eth0 --dst-mac {lb_mac} --count 10000", malformed.display()));
    assert!(out.lines().any(|l| l == "total: 10000"), "{out}");
    let per_category: Vec<u64> = out.lines().filter(|l| !l.starts_with("total: ")).filter_map(|l| l.rsplit(' ').next()?.parse().ok()).collect();
    assert_eq!(per_category.len(), 15, "{out}");
    assert!(per_category.iter().all(|&n| n == 666 || n == 667), "{out}");
    assert!(counter_proc.wait(Duration::from_secs(70)).is_some_and(|s| s.success()), "{}", counter_proc.output());
    let counted = counter_proc.output();
    assert!(counted.contains("frames: 10000\n"), "{counted}");
    assert!(counted.contains("kernel-drops: 0\n"), "{counted}");
}

/// Two workers on a two-CPU machine (lcores 1 and 2 share CPU 1 through
/// `--lcores`), two af_packet queue pairs per port: the kernel spreads
/// packets over the queues by its own hash, so workers receive packets of
/// connections they do not own and must hand them over. NAT and full-NAT
/// both keep working.
#[test]
fn two_workers_hand_off_packets_they_do_not_own() {
    let Some(mut lab) = Lab::new('w', "workers", &["nginx"]) else { return };
    lab.nginx(0);
    let (platform, interfaces) = two_worker_sections(&lab.prefix);
    let services = format!(
        "{}\n{}\n[[virtual_server]]\nname = \"app\"\naddress = \"192.0.2.101:80\"\nforwarding = \"full-nat\"\npool = \"web\"\n",
        pool("web", 80, "round-robin", None),
        virtual_server("www", 80, "tcp", "nat", "web")
    );
    lab.start_config(&format!("{platform}\n{interfaces}\n{services}"));
    let out = lab.fw_output();
    assert!(out.contains("rxq 2 txq 2"), "both queue pairs in use:\n{out}");

    for vip in [VIP, "192.0.2.101"] {
        let mut answers = Vec::new();
        for i in 0..20 {
            let (ok, body) = lab.topo.try_exec("client", &format!("curl -s -S -m 10 http://{vip}/id"));
            assert!(ok, "request {i} to {vip} failed: {body}\nfuriwake:\n{}", lab.fw_output());
            answers.push(body.trim().to_string());
        }
        let t = tally(&answers);
        assert_eq!(t.values().sum::<usize>(), 20, "{vip}: {answers:?}");
        assert!(t.keys().all(|k| ["srv1", "srv2", "srv3"].contains(&k.as_str())), "{vip}: {answers:?}");
    }
    let block = lab.report();
    let handed = must(&block, "worker 0:", "handed-off") + must(&block, "worker 1:", "handed-off");
    assert!(handed > 0, "no packet was handed between workers:\n{block}");
    let (f0, f1) = (must(&block, "worker 0:", "flows"), must(&block, "worker 1:", "flows"));
    assert_eq!(f0 + f1, 40, "every connection has one entry, on its owner:\n{block}");
    assert!(f0 > 0 && f1 > 0, "both workers own connections:\n{block}");
    assert_eq!(must(&block, "virtual-server www:", "conns-new"), 20, "{block}");
    assert_eq!(must(&block, "virtual-server app:", "conns-new"), 20, "{block}");
    stop_furiwake_cleanly(lab.fw());
}

/// source-hash keeps one client on one server; least-connections sends a
/// new connection to the server with the fewest open ones.
#[test]
fn source_hash_and_least_connections_choose_by_client_and_by_load() {
    let Some(mut lab) = Lab::new('s', "sched", &["nginx"]) else { return };
    lab.nginx(0);
    let services = format!(
        "{}\n{}\n[[virtual_server]]\nname = \"lc\"\naddress = \"192.0.2.101:80\"\npool = \"least\"\n\n[timeouts]\ntcp_time_wait = 1\ntcp_fin = 1\n",
        pool("sticky", 80, "source-hash", None),
        virtual_server("www", 80, "tcp", "nat", "sticky"),
    ) + &pool("least", 80, "least-connections", None);
    lab.start(&services);

    // One client address: every connection to the same server.
    let answers = get_ids(&lab, 10);
    assert_eq!(tally(&answers).len(), 1, "source-hash spread one client over servers: {answers:?}");

    // Two held connections to the least-connections VIP land on two
    // different servers; the next connection goes to the third.
    let hold = test_script("tcp_hold.py");
    let client_ns = lab.topo.ns("client");
    let mut holds = Vec::new();
    for i in 0..2 {
        let argv = ["python3", hold.to_str().unwrap(), "--to", "192.0.2.101:80", "--timeout", "10"];
        let mut p = Proc::spawn(&format!("hold{i}"), Some(&client_ns), &argv, &lab.dir.path(&format!("hold{i}.log")), true);
        p.expect_output("connected ", Duration::from_secs(10));
        holds.push(p);
    }
    let block = lab
        .report_until(Duration::from_secs(10), |b| counter(b, "virtual-server lc:", "conns-active") == Some(2))
        .unwrap_or_else(|b| panic!("two open connections not counted:\n{b}"));
    let loaded: Vec<u32> = (1..=LAB_BACKENDS)
        .filter(|n| {
            let line = block.lines().skip_while(|l| !l.starts_with("virtual-server lc:")).find(|l| l.starts_with(&server_line(*n, 80))).unwrap_or("");
            counter(line, "  server", "conns-active") == Some(1)
        })
        .collect();
    assert_eq!(loaded.len(), 2, "the two held connections share a server:\n{block}");
    let free = (1..=LAB_BACKENDS).find(|n| !loaded.contains(n)).unwrap();
    let (ok, out) = lab.topo.try_exec("client", "curl -s -S -m 10 http://192.0.2.101/id");
    assert!(ok, "{out}");
    assert_eq!(out.trim(), format!("srv{free}"), "least-connections chose a loaded server:\n{block}");
    for mut p in holds {
        p.send_line("close");
    }
    stop_furiwake_cleanly(lab.fw());
}

/// `max_connections`: a full server takes no new connections; with every
/// server full, a new connection is refused at once (RST).
#[test]
fn max_connections_fills_servers_then_refuses() {
    let Some(mut lab) = Lab::new('c', "maxconn", &["nginx"]) else { return };
    lab.nginx(0);
    let services = www("nat").replace(":80\" }", ":80\", max_connections = 1 }");
    assert_eq!(services.matches("max_connections = 1").count(), 3, "{services}");
    lab.start(&services);
    let hold = test_script("tcp_hold.py");
    let client_ns = lab.topo.ns("client");
    let mut holds = Vec::new();
    for i in 0..3 {
        let argv = ["python3", hold.to_str().unwrap(), "--to", &format!("{VIP}:80"), "--timeout", "10"];
        let mut p = Proc::spawn(&format!("hold{i}"), Some(&client_ns), &argv, &lab.dir.path(&format!("hold{i}.log")), true);
        p.expect_output("connected ", Duration::from_secs(10));
        holds.push(p);
        // Let the control plane publish the new load before the next one.
        lab.report_until(Duration::from_secs(5), |b| counter(b, "virtual-server www:", "conns-active") == Some(i + 1))
            .unwrap_or_else(|b| panic!("connection {i} not counted:\n{b}"));
    }
    let block = lab.report();
    for n in 1..=LAB_BACKENDS {
        assert_eq!(must(&block, &server_line(n, 80), "conns-active"), 1, "one connection per server:\n{block}");
    }
    let t = Instant::now();
    let (ok, out) = lab.topo.try_exec("client", &format!("curl -s -S -m 5 http://{VIP}/id; echo exit=$?"));
    eprintln!("refused after {:?}", t.elapsed());
    assert!(!ok || out.contains("exit=7"), "a fourth connection was not refused: {out}");
    let after = lab.report();
    assert!(must(&after, "worker 0:", "rejected") >= 1, "{after}");
    for mut p in holds {
        p.send_line("close");
    }
    stop_furiwake_cleanly(lab.fw());
}

/// Priority groups and the sorry pool (seeds 002, 003): connections go to
/// the highest group; when its servers are down they spill to the next
/// group, and with the whole pool down to the sorry pool.
#[test]
fn priority_groups_spill_then_the_sorry_pool_serves() {
    let Some(mut lab) = Lab::new('p', "priority", &["nginx"]) else { return };
    lab.nginx(0);
    let services = format!(
        r#"[[health_check]]
name = "tcp80"
kind = "tcp"
interval_ms = 200
timeout_ms = 150
fall = 2
rise = 1

[[pool]]
name = "web"
health_check = "tcp80"
sorry_pool = "sorry"
servers = [ {{ address = "{}:80", priority = 10 }}, {{ address = "{}:80", priority = 5 }} ]

[[pool]]
name = "sorry"
health_check = "tcp80"
servers = [ {{ address = "{}:80" }} ]

{}"#,
        server_ip(1),
        server_ip(2),
        server_ip(3),
        virtual_server("www", 80, "tcp", "nat", "web")
    );
    lab.start(&services);
    for n in 1..=LAB_BACKENDS {
        lab.fw().expect_output(&format!("health: server {}:80 (pool {}) up", server_ip(n), if n == 3 { "sorry" } else { "web" }), Duration::from_secs(10));
    }
    let answers = get_ids(&lab, 6);
    assert_eq!(tally(&answers), expected(&[("srv1", 6)]), "highest priority group only: {answers:?}");

    lab.stop("nginx-srv1");
    lab.fw().expect_output(&format!("health: server {}:80 (pool web) down", server_ip(1)), Duration::from_secs(10));
    let answers = get_ids(&lab, 4);
    assert_eq!(tally(&answers), expected(&[("srv2", 4)]), "spilled to the next group: {answers:?}");

    lab.stop("nginx-srv2");
    lab.fw().expect_output(&format!("health: server {}:80 (pool web) down", server_ip(2)), Duration::from_secs(10));
    let answers = get_ids(&lab, 4);
    assert_eq!(tally(&answers), expected(&[("srv3", 4)]), "the sorry pool serves: {answers:?}");
    stop_furiwake_cleanly(lab.fw());
}

/// `proxy_protocol = "v2"` on a full-NAT virtual server (issue 21): the
/// box puts a PROXY v2 header before each client stream and shifts the
/// client's sequence numbers by its length for the rest of the
/// connection; nginx's `proxy_protocol` listener (9082) reads the
/// client's address from it, and a 20 MiB download through it is byte
/// for byte the server's file.
#[test]
fn full_nat_with_a_proxy_v2_header_names_the_client_and_a_download_is_byte_identical() {
    let Some(mut lab) = Lab::new('y', "proxy-v2", &["nginx"]) else { return };
    lab.nginx(20);
    let hashes = lab.big_hashes();
    let servers: Vec<String> = (1..=BACKENDS).map(|n| format!("{{ address = \"{}:9082\" }}", server_ip(n))).collect();
    lab.start(&format!(
        "[[pool]]\nname = \"pp\"\nservers = [ {} ]\n\n[[virtual_server]]\nname = \"pp\"\naddress = \"{VIP}:2082\"\nprotocol = \"tcp\"\nforwarding = \"full-nat\"\nproxy_protocol = \"v2\"\npool = \"pp\"\n",
        servers.join(", ")
    ));
    let ids: Vec<String> = (0..3).map(|_| lab.topo.exec("client", &format!("curl -s -S -m 10 http://{VIP}:2082/id")).trim().to_string()).collect();
    assert_eq!(tally(&ids).len(), 3, "round robin over the three: {ids:?}\n{}", lab.fw_output());
    let client_log = |n: u32| std::fs::read_to_string(lab.backend_dir(n).join("logs/client.log")).unwrap_or_default();
    let lines: Vec<String> = (1..=BACKENDS).flat_map(|n| client_log(n).lines().map(str::to_string).collect::<Vec<_>>()).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for l in &lines {
        assert!(l.starts_with(&format!("9082 {SELF_INSIDE} ")) && l.contains(&format!("pp=\"{CLIENT}\"")), "the server saw the box, and the client in the header: {l}");
    }
    let file = lab.dir.path("big.download");
    let (ok, out) = lab.topo.try_exec("client", &format!("curl -s -S -m 120 -o {} -w '%{{http_code}} %{{size_download}}' http://{VIP}:2082/big", file.display()));
    assert!(ok, "download failed: {out}\nfuriwake:\n{}", lab.fw_output());
    assert_eq!(out.trim(), format!("200 {}", 20 * 1048576), "status and size");
    let got = sha256_file(&file);
    assert!(hashes.values().any(|h| *h == got), "downloaded sha256 {got}; backends: {hashes:?}");
    let _ = std::fs::remove_file(&file);
    let r = lab.report();
    assert!(!r.contains("proxy-header-no-room"), "{r}");
}

/// The lab's ports on `net_af_xdp` (AF_XDP sockets on the same veths,
/// one queue each) instead of `net_af_packet`: NAT serves round robin and
/// a 50 MiB download arrives byte-identical (the demo's and the
/// end-to-end benchmark's other driver, `scripts/demo.sh --af-xdp`).
#[test]
fn af_xdp_ports_serve_nat_like_af_packet() {
    let Some(mut lab) = Lab::new('x', "af-xdp", &["nginx"]) else { return };
    lab.nginx(BIG_MB);
    let hashes = lab.big_hashes();
    let interfaces = LAB_INTERFACES.replace("net_af_packet0,iface=lb-out", "net_af_xdp0,iface=lb-out,start_queue=0,queue_count=1").replace("net_af_packet1,iface=lb-in", "net_af_xdp1,iface=lb-in,start_queue=0,queue_count=1");
    assert!(interfaces.matches("net_af_xdp").count() == 2, "{interfaces}");
    // The PMD keeps 2048 mbufs of the pool per RX queue (its UMEM's fill
    // ring): more than the lab's usual 4095 for two ports.
    let platform = platform_section(&lab.prefix).replace("mbufs = 4095", "mbufs = 8191");
    assert!(platform.contains("mbufs = 8191"), "{platform}");
    lab.start_config(&format!("{platform}\n{interfaces}\n{}", www("nat")));
    let out = lab.fw_output();
    assert!(out.contains("driver net_af_xdp") && !out.contains("driver net_af_packet"), "both ports on AF_XDP:\n{out}");

    let ids: Vec<String> = (0..30).map(|i| lab.get_id(i)).collect();
    let t = tally(&ids);
    assert_eq!(t.values().copied().collect::<Vec<_>>(), vec![10, 10, 10], "round robin over the three servers: {t:?}");

    let file = lab.dir.path("big.download");
    let (ok, dl) = lab.topo.try_exec("client", &format!("curl -s -S -m 120 -o {} -w '%{{http_code}} %{{size_download}}' http://{VIP}/big", file.display()));
    assert!(ok && dl.trim() == format!("200 {BIG_BYTES}"), "download: {dl}\nfuriwake:\n{}", lab.fw_output());
    let got = sha256_file(&file);
    assert!(hashes.values().any(|h| *h == got), "downloaded sha256 {got}; backends: {hashes:?}");
    let _ = std::fs::remove_file(&file);
    let block = lab.report();
    assert_eq!(must(&block, "virtual-server www:", "conns-new"), 31, "{block}");
    // A clean stop: the pool's count at exit may include what the PMD
    // keeps in its UMEM's rings (`stop_furiwake_cleanly`).
    stop_furiwake_cleanly(lab.fw());
}
