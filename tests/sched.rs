//! Scheduling end to end: the real `furiwake` binary in the lab of
//! `scripts/netns.sh`, real nginx (and a python server with a slow health
//! endpoint) in the server namespaces, curl in the client namespace.
//!
//! Lab: PREFIX-client 192.0.2.10 -- br-out -- lb-out [furiwake] lb-in --
//! br-in -- PREFIX-srvN 198.51.100.(10+N). The VIP is 192.0.2.100.
//!
//! Which server took a connection is read twice: from the answer of `/id`
//! (`srvN`) and from the SIGUSR1 report's per-server `conns-new`,
//! `conns-active` (established) and `conns-inactive` (handshake, closing,
//! TIME_WAIT: 120 s after a close by default, so a finished request keeps
//! an entry; least-connections weighs it 1 to an established one's 256,
//! as IPVS does, and `max_connections` counts both). The load-aware schedulers read loads
//! the control plane publishes every loop turn, so the tests that depend on
//! a load wait until the report shows it before the next connection.
//!
//! The tests of one binary run one at a time (a lock), since each furiwake
//! owns lcore 1 of a small machine.

use furiwake_e2e::*;
use std::time::Duration;

/// The shared lab, scratch dir `sched-NAME-PREFIX`.
fn lab(tag: char, name: &str) -> Option<Lab> {
    Lab::open(tag, &format!("sched-{name}"), &["nginx"])
}

/// A `[[pool]]` named `web` with `algorithm` and `extra` lines; servers
/// are `(N, keys)`: srvN on port 80 with further inline keys (`weight = 3`).
fn pool(algorithm: &str, extra: &str, servers: &[(u32, &str)]) -> String {
    let mut s = format!("[[pool]]\nname = \"web\"\nalgorithm = \"{algorithm}\"\n{extra}\nservers = [\n");
    for (n, keys) in servers {
        let keys = if keys.is_empty() { String::new() } else { format!(", {keys}") };
        s.push_str(&format!("  {{ address = \"{}:80\"{keys} }},\n", server_ip(*n)));
    }
    s.push_str("]\n");
    s
}

/// `www` on VIP:80 (TCP, NAT) over pool `web`.
const WWW: &str = "[[virtual_server]]\nname = \"www\"\naddress = \"192.0.2.100:80\"\npool = \"web\"\n";

/// An http check of `/health` every 200 ms (`timeout_ms` to answer).
fn http_check(timeout_ms: u32) -> String {
    format!(
        "[[health_check]]\nname = \"web-ok\"\nkind = \"http\"\ninterval_ms = 200\ntimeout_ms = {timeout_ms}\nfall = 3\nrise = 2\nrequest = \"GET /health HTTP/1.0\\r\\n\\r\\n\"\nexpect_body = \"OK\"\n"
    )
}

fn wait_up(lab: &mut Lab, n: u32) {
    lab.fw().expect_output(&format!("health: server {}:80 (pool web) up", server_ip(n)), Duration::from_secs(20));
}

/// `KEY N` of server N's line in a counters block.
fn srv(block: &str, n: u32, key: &str) -> u64 {
    must(block, &server_line(n, 80), key)
}

/// Waits until the report shows `total` connection entries (active and
/// inactive) on `www`; returns that report.
fn wait_active(lab: &Lab, total: u64, what: &str) -> String {
    let entries = |b: &str| Some(counter(b, "virtual-server www:", "conns-active")? + counter(b, "virtual-server www:", "conns-inactive")?);
    lab.report_until(Duration::from_secs(10), |b| entries(b) == Some(total))
        .unwrap_or_else(|b| panic!("{what}: connection entries never reached {total}:\n{b}"))
}

/// Server N's connection entries, active and inactive.
fn srv_entries(block: &str, n: u32) -> u64 {
    srv(block, n, "conns-active") + srv(block, n, "conns-inactive")
}

/// A TCP connection to the VIP held open by `tcp_hold.py` (a partial HTTP
/// request, so the server waits), kept as `key`.
fn hold(lab: &mut Lab, key: &str) {
    let script = test_script("tcp_hold.py");
    let argv = ["python3", script.to_str().unwrap(), "--to", &format!("{VIP}:80"), "--timeout", "10"];
    let mut p = Proc::spawn(key, Some(&lab.topo.ns("client")), &argv, &lab.dir.path(&format!("{key}.log")), true);
    p.expect_output("connected ", Duration::from_secs(10));
    lab.procs.insert(key.to_string(), p);
}

/// A download of `/big` through the VIP at `rate` (curl `--limit-rate`),
/// left running as `key`.
fn slow_download(lab: &mut Lab, key: &str, rate: &str) {
    let url = format!("http://{VIP}/big");
    let argv = ["curl", "-s", "-S", "-m", "300", "--limit-rate", rate, "-o", "/dev/null", &url];
    let p = Proc::spawn(key, Some(&lab.topo.ns("client")), &argv, &lab.dir.path(&format!("{key}.log")), false);
    lab.procs.insert(key.to_string(), p);
}

fn count(answers: &[String], n: u32) -> usize {
    answers.iter().filter(|a| **a == format!("srv{n}")).count()
}

// ---------------------------------------------------------------------------

/// weighted-round-robin 3:1 over 400 new connections: 3:1 within 5%, by
/// the backends' answers and by the per-server counters alike.
#[test]
fn weighted_round_robin_3_to_1_over_400_connections() {
    let Some(mut lab) = lab('W', "wrr400") else { return };
    lab.start_nginx(1, 0);
    lab.start_nginx(2, 0);
    lab.start(&format!("{}\n{WWW}", pool("weighted-round-robin", "", &[(1, "weight = 3"), (2, "weight = 1")])));

    let answers = lab.curl_ids(VIP, 400);
    let (a, b) = (count(&answers, 1), count(&answers, 2));
    eprintln!("weighted 3:1 over 400: srv1 {a}, srv2 {b}");
    assert_eq!(a + b, 400, "answers from elsewhere: {:?}", tally(&answers));
    assert!(a.abs_diff(300) <= 15 && b.abs_diff(100) <= 5, "not 3:1 within 5%: srv1 {a}, srv2 {b}");
    let block = lab.report();
    assert_eq!(must(&block, "virtual-server www:", "conns-new"), 400, "{block}");
    assert_eq!((srv(&block, 1, "conns-new"), srv(&block, 2, "conns-new")), (a as u64, b as u64), "counters disagree with the answers:\n{block}");
    stop_furiwake_cleanly(lab.fw());
}

/// least-connections: three rate-limited downloads held open on srv1 (the
/// only server up when they start); once srv2 and srv3 are up, the next six
/// connections go to them, three each, none to srv1.
#[test]
fn least_connections_avoids_the_server_holding_downloads() {
    let Some(mut lab) = lab('L', "least") else { return };
    lab.start_nginx(1, 2);
    let check = "[[health_check]]\nname = \"tcp80\"\nkind = \"tcp\"\ninterval_ms = 200\ntimeout_ms = 150\nfall = 2\nrise = 1\n";
    lab.start(&format!("{check}\n{}\n{WWW}", pool("least-connections", "health_check = \"tcp80\"", &[(1, ""), (2, ""), (3, "")])));
    wait_up(&mut lab, 1);
    for i in 0..3 {
        slow_download(&mut lab, &format!("download{i}"), "20k");
        wait_active(&lab, i + 1, "downloads");
    }
    let block = lab.report();
    assert_eq!(srv(&block, 1, "conns-active"), 3, "the downloads are not all on srv1:\n{block}");

    lab.start_nginx(2, 0);
    lab.start_nginx(3, 0);
    wait_up(&mut lab, 2);
    wait_up(&mut lab, 3);
    let mut answers = Vec::new();
    for i in 0..6 {
        answers.extend(lab.curl_ids(VIP, 1));
        // The finished request's entry keeps counting (TIME_WAIT): wait
        // until the control plane has it, then the next.
        wait_active(&lab, 3 + i + 1, "requests");
    }
    eprintln!("least-connections with 3 downloads on srv1: {:?}", tally(&answers));
    assert_eq!((count(&answers, 1), count(&answers, 2), count(&answers, 3)), (0, 3, 3), "{answers:?}");
    let block = lab.report();
    assert_eq!((srv(&block, 1, "conns-new"), srv(&block, 1, "conns-active")), (3, 3), "{block}");
    assert!(lab.procs.get_mut("download0").is_some_and(|p| p.is_running()), "the download ended early: {}", lab.proc_output("download0"));
    stop_furiwake_cleanly(lab.fw());
}

/// Priority groups spill exactly at `max_connections`: srv1 and srv2
/// (priority 10, two connections each) take four held connections, srv3
/// (priority 0) none; the fifth goes to srv3. One held connection reset,
/// the top group takes the next again.
#[test]
fn priority_group_spills_exactly_when_the_top_group_is_full() {
    let Some(mut lab) = lab('P', "spill") else { return };
    for n in 1..=3 {
        lab.start_nginx(n, 0);
    }
    let top = "priority = 10, max_connections = 2";
    // A reset connection's entry stays CLOSE for `tcp_close`: 1 s here.
    lab.start(&format!("{}\n{WWW}\n[timeouts]\ntcp_close = 1\n", pool("round-robin", "", &[(1, top), (2, top), (3, "")])));

    // One at a time, each counted before the next (max_connections is
    // enforced from the loads published every control-loop turn).
    for i in 0..4 {
        hold(&mut lab, &format!("hold{i}"));
        wait_active(&lab, i + 1, "held connections");
    }
    let block = lab.report();
    let spread = |b: &str| (srv_entries(b, 1), srv_entries(b, 2), srv_entries(b, 3));
    assert_eq!(spread(&block), (2, 2, 0), "the top group is not exactly full, or one spilled early:\n{block}");

    let fifth = lab.curl_ids(VIP, 1);
    assert_eq!(fifth, ["srv3"], "the top group is full: the fifth goes to the lower group");
    let block = wait_active(&lab, 5, "fifth");
    assert_eq!(spread(&block), (2, 2, 1), "{block}");

    // A RST closes its entry, which goes after `tcp_close`: room in the top
    // group again.
    let p = lab.procs.get_mut("hold0").expect("hold0");
    p.send_line("rst");
    p.expect_output("reset", Duration::from_secs(5));
    let block = wait_active(&lab, 4, "after the reset");
    let freed = if srv_entries(&block, 1) == 1 { 1 } else { 2 };
    assert_eq!(srv_entries(&block, 3 - freed), 2, "{block}");
    let next = lab.curl_ids(VIP, 1);
    assert_eq!(next, [format!("srv{freed}")], "room in the top group, yet it spilled:\n{block}");
    stop_furiwake_cleanly(lab.fw());
}

/// srv1 and srv2 nginx, srv3 a python server whose /health answers after
/// 250 ms (its /id at once: it could serve), under `algorithm` with an http
/// check; waits until all three are up and returns the probe RTTs (µs) from
/// the report, checked to be as set up.
fn two_fast_one_slow(lab: &mut Lab, algorithm: &str) -> Vec<u64> {
    lab.start_nginx(1, 0);
    lab.start_nginx(2, 0);
    let script = test_script("slow_http.py");
    lab.serve("slow-srv3", 3, &["python3", script.to_str().unwrap(), "--port", "80", "--name", "srv3", "--delay", "0.25"]);
    let (ok, out) = lab.topo.try_exec("srv3", &format!("curl -s -m 2 http://{}/id", server_ip(3)));
    assert!(ok && out.trim() == "srv3", "{out}");
    lab.start(&format!("{}\n{}\n{WWW}", http_check(1000), pool(algorithm, "health_check = \"web-ok\"", &[(1, ""), (2, ""), (3, "")])));
    for n in 1..=3 {
        wait_up(lab, n);
    }
    let block = lab.report();
    let rtt: Vec<u64> = (1..=3).map(|n| srv(&block, n, "rtt-us")).collect();
    eprintln!("{algorithm}: probe RTTs (us): {rtt:?}");
    assert!(rtt[2] >= 200_000 && rtt[0] < rtt[2] / 4 && rtt[1] < rtt[2] / 4, "RTTs not as set up: {rtt:?}\n{block}");
    rtt
}

/// fastest: srv3's /health answers after 250 ms, srv1's and srv2's at once;
/// none of 40 new connections goes to srv3.
#[test]
fn fastest_avoids_the_server_with_a_slow_health_endpoint() {
    let Some(mut lab) = lab('F', "fastest") else { return };
    two_fast_one_slow(&mut lab, "fastest");
    let seen_before = lab.proc_output("slow-srv3").matches("GET /id").count();
    let answers = lab.curl_ids(VIP, 40);
    eprintln!("fastest: {:?}", tally(&answers));
    assert_eq!(count(&answers, 3), 0, "the slow server got connections: {:?}", tally(&answers));
    assert_eq!(count(&answers, 1) + count(&answers, 2), 40, "{answers:?}");
    assert_eq!(lab.proc_output("slow-srv3").matches("GET /id").count(), seen_before, "srv3 saw a client request");
    stop_furiwake_cleanly(lab.fw());
}

/// composite (connections + response time, seed 002): with the same
/// servers, 40 new connections (each still counted after it closes) are
/// shared by the two fast servers as their connections grow; the slow one,
/// a hundred times slower or more, would only be worth it past a hundred
/// or so connections on each.
#[test]
fn composite_shares_by_connections_and_avoids_the_slow_server() {
    let Some(mut lab) = lab('C', "composite") else { return };
    let rtt = two_fast_one_slow(&mut lab, "composite");
    let answers = lab.curl_ids(VIP, 40);
    let block = lab.report();
    let active: Vec<u64> = (1..=3).map(|n| srv(&block, n, "conns-active")).collect();
    eprintln!("composite: {:?}; active {active:?}; rtt {rtt:?}", tally(&answers));
    assert_eq!(count(&answers, 3), 0, "the slow server got connections: {:?}", tally(&answers));
    // Both fast servers share, in inverse proportion to their RTTs (which
    // are close, but jitter: allow up to 4:1).
    for n in 1..=2 {
        assert!(count(&answers, n) >= 8, "srv{n} got few: {:?} (rtt {rtt:?})", tally(&answers));
    }
    stop_furiwake_cleanly(lab.fw());
}

/// least-bandwidth: while one server sends a rate-limited download
/// (200 kB/s), 30 new connections go to the two idle ones, both used.
#[test]
fn least_bandwidth_avoids_the_server_busy_with_a_download() {
    let Some(mut lab) = lab('B', "bandwidth") else { return };
    for n in 1..=3 {
        lab.start_nginx(n, 8);
    }
    lab.start(&format!("{}\n{WWW}", pool("least-bandwidth", "", &[(1, ""), (2, ""), (3, "")])));
    slow_download(&mut lab, "download", "200k");
    // The download's server, once its rate shows (EWMA over ~1 s).
    let block = lab
        .report_until(Duration::from_secs(10), |b| (1..=3).any(|n| counter(b, &server_line(n, 80), "bytes-per-s").is_some_and(|r| r >= 100_000)))
        .unwrap_or_else(|b| panic!("no server shows the download's rate:\n{b}"));
    let busy = (1..=3).find(|n| srv(&block, *n, "bytes-per-s") >= 100_000).unwrap();
    assert_eq!(srv(&block, busy, "conns-active"), 1, "{block}");
    eprintln!("the download is on srv{busy}");

    let answers = lab.curl_ids(VIP, 30);
    let block = lab.report();
    eprintln!("least-bandwidth: {:?}; rates: {:?}", tally(&answers), (1..=3).map(|n| srv(&block, n, "bytes-per-s")).collect::<Vec<_>>());
    assert_eq!(count(&answers, busy), 0, "the busy server got new connections: {:?}\n{block}", tally(&answers));
    for n in (1..=3).filter(|n| *n != busy) {
        // Rates are sampled every 100 ms, so idle servers take turns in
        // small runs rather than strictly alternating.
        assert!(count(&answers, n) >= 5, "idle srv{n} got few: {:?}", tally(&answers));
        assert!(srv(&block, n, "bytes-per-s") < srv(&block, busy, "bytes-per-s"), "{block}");
    }
    assert!(lab.procs.get_mut("download").is_some_and(|p| p.is_running()), "the download ended early: {}", lab.proc_output("download"));
    stop_furiwake_cleanly(lab.fw());
}
