//! Health checks end to end: the real `furiwake` binary on two
//! `net_af_packet` ports in the lab of `scripts/netns.sh`, probing real
//! servers (nginx, a TCP banner server, a UDP echo, shell scripts) from its
//! inside self IP, taking servers out of their pools and back, and refusing
//! connections when a pool has no server left.
//!
//! Lab: PREFIX-client 192.0.2.10 -- br-out -- lb-out [furiwake] lb-in --
//! br-in -- PREFIX-srvN 198.51.100.(10+N). VIPs 192.0.2.100 (and .101, .102
//! for a second and third pool); self IPs 192.0.2.2 and 198.51.100.1.
//!
//! What the appliance prints and these tests read:
//! - one line per state change: `health: server ADDR (pool P) up (rtt X ms)`
//!   or `health: server ADDR (pool P) down: REASON`;
//! - in the SIGUSR1 report, `  server ADDR: state up|down; rtt-us N; ...`
//!   under each virtual server, `health: probes N; failures N;
//!   state-changes N` before the `control:` line, and `rejected N` on the
//!   worker line.
//!
//! Timing: the spec's bounds (down after `fall` failed probes, up after
//! `rise` good ones) are checked with generous slack, 3x the bound plus 1 s,
//! and the measured times are printed (`--nocapture` shows them).
//!
//! The tests of one binary run one at a time (a lock), since each furiwake
//! owns lcore 1 of a small machine.

use furiwake_e2e::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const VIP2: &str = "192.0.2.101";
const VIP3: &str = "192.0.2.102";
const BACKENDS: u32 = LAB_BACKENDS;

/// The checks' usual parameters (the tests' brief): fast enough for a test,
/// slow enough for a 2-core VM.
const INTERVAL_MS: u64 = 200;
const TIMEOUT_MS: u64 = 150;
const FALL: u64 = 3;
const RISE: u64 = 2;

/// /big of the download that outlives its server's shutdown.
const BIG_MB: u32 = 20;
const BIG_BYTES: u64 = BIG_MB as u64 * 1048576;

fn addr(n: u32, port: u16) -> String {
    format!("{}:{port}", server_ip(n))
}

fn name(n: u32) -> String {
    format!("srv{n}")
}

/// The spec's time to notice, with the house slack: `count` probe periods
/// plus one (the probe in flight when things changed), times 3, plus 1 s.
fn bound(period_ms: u64, count: u64) -> Duration {
    Duration::from_millis(3 * (period_ms * count + period_ms) + 1000)
}

// ---------------------------------------------------------------------------
// Config pieces.

/// A `[[health_check]]` with the usual interval, timeout, fall and rise;
/// `extra` holds its other keys, one a line.
fn check(name: &str, kind: &str, extra: &str) -> String {
    check_with(name, kind, INTERVAL_MS, TIMEOUT_MS, extra)
}

fn check_with(name: &str, kind: &str, interval_ms: u64, timeout_ms: u64, extra: &str) -> String {
    format!(
        "[[health_check]]\nname = \"{name}\"\nkind = \"{kind}\"\ninterval_ms = {interval_ms}\ntimeout_ms = {timeout_ms}\nfall = {FALL}\nrise = {RISE}\n{extra}\n"
    )
}

/// A round-robin `[[pool]]` of the three backends on `port`; `health` is its
/// `health_check = ...` or `health_checks = [...]` line.
fn pool(name: &str, port: u16, health: &str) -> String {
    let mut s = format!("[[pool]]\nname = \"{name}\"\nalgorithm = \"round-robin\"\n{health}\nservers = [\n");
    for n in 1..=BACKENDS {
        s.push_str(&format!("  {{ address = \"{}\" }},\n", addr(n, port)));
    }
    s.push_str("]\n");
    s
}

fn virtual_server(name: &str, vip: &str, port: u16, protocol: &str, pool: &str) -> String {
    format!("[[virtual_server]]\nname = \"{name}\"\naddress = \"{vip}:{port}\"\nprotocol = \"{protocol}\"\nforwarding = \"nat\"\npool = \"{pool}\"\n")
}

// ---------------------------------------------------------------------------
// What furiwake prints.

/// The start of every state line of server `addr` in pool `pool`.
fn state_prefix(addr: &str, pool: &str) -> String {
    format!("health: server {addr} (pool {pool}) ")
}

/// The state lines printed so far for `addr` in `pool`, without the prefix:
/// `up (rtt X ms)` or `down: REASON`.
fn state_lines(output: &str, addr: &str, pool: &str) -> Vec<String> {
    let p = state_prefix(addr, pool);
    output.lines().filter_map(|l| l.strip_prefix(&p)).map(str::to_string).collect()
}

fn is_up(event: &str) -> bool {
    event.starts_with("up")
}

fn is_down(event: &str) -> bool {
    event.starts_with("down")
}

/// X of `up (rtt X ms)`.
fn up_rtt_ms(event: &str) -> Option<f64> {
    event.strip_prefix("up (rtt ")?.strip_suffix(" ms)")?.parse().ok()
}

/// REASON of `down: REASON`.
fn down_reason(event: &str) -> Option<&str> {
    event.strip_prefix("down: ")
}

/// A reason from the spec's list.
fn valid_reason(r: &str) -> bool {
    matches!(r, "timeout" | "refused" | "body mismatch" | "expect mismatch" | "script timeout" | "unresolved")
        || r.strip_prefix("bad status ").is_some_and(|n| n.len() == 3 && n.bytes().all(|b| b.is_ascii_digit()))
        || r.strip_prefix("script exit ").is_some_and(|n| n.parse::<i32>().is_ok())
        || r.starts_with("script not started: ")
        || r.starts_with("not probed: ")
}

/// Every `health: server ...` line of the output, checked against the spec:
/// well formed (`up (rtt X ms)` with X within `max_rtt_ms`, the largest
/// timeout of the lab's checks, or `down: REASON` with a reason from the
/// list), and per server and pool alternating: a state change prints one
/// line, so no two lines in a row say the same state. Returns the lines by
/// (server, pool).
fn check_state_lines(output: &str, max_rtt_ms: f64) -> BTreeMap<(String, String), Vec<String>> {
    let mut by: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for line in output.lines().filter(|l| l.starts_with("health: server ")) {
        let rest = &line["health: server ".len()..];
        let parsed = rest.split_once(" (pool ").and_then(|(a, r)| r.split_once(") ").map(|(p, e)| (a, p, e)));
        let (a, p, e) = parsed.unwrap_or_else(|| panic!("state line not in the spec's format: {line:?}\n{output}"));
        if is_up(e) {
            let rtt = up_rtt_ms(e).unwrap_or_else(|| panic!("up line without `(rtt X ms)`: {line:?}"));
            assert!((0.0..=max_rtt_ms).contains(&rtt), "rtt {rtt} ms outside 0..={max_rtt_ms} (a probe slower than its timeout fails): {line:?}");
        } else {
            let r = down_reason(e).unwrap_or_else(|| panic!("state line neither `up (rtt X ms)` nor `down: REASON`: {line:?}"));
            assert!(valid_reason(r), "reason {r:?} is not one of the spec's: {line:?}");
        }
        by.entry((a.to_string(), p.to_string())).or_default().push(e.to_string());
    }
    for ((a, p), events) in &by {
        for w in events.windows(2) {
            assert_ne!(is_up(&w[0]), is_up(&w[1]), "{a} (pool {p}): two state lines in a row say the same state: {events:?}");
        }
    }
    by
}

/// The `  server ADDR: ...` line under `virtual-server VS:` in a counters
/// block (state lines printed meanwhile by another thread are skipped).
fn server_entry(block: &str, vs: &str, addr: &str) -> Option<String> {
    let head = format!("virtual-server {vs}:");
    let want = format!("  server {addr}:");
    let mut lines = block.lines().skip_while(|l| !l.starts_with(&head));
    lines.next()?;
    for l in lines {
        if l.starts_with(&want) {
            return Some(l.to_string());
        }
        if !l.starts_with("  ") && !l.starts_with("health: server ") {
            return None;
        }
    }
    None
}

/// `up` or `down` of `state X;` on the server's line under `vs`.
fn server_state(block: &str, vs: &str, addr: &str) -> Option<String> {
    let line = server_entry(block, vs, addr)?;
    let at = line.find("state ")? + "state ".len();
    Some(line[at..].split(|c: char| c == ';' || c.is_whitespace()).next()?.to_string())
}

fn must_state(block: &str, vs: &str, addr: &str) -> String {
    server_state(block, vs, addr).unwrap_or_else(|| panic!("no `state up|down` on server {addr} under virtual-server {vs}:\n{block}"))
}

/// A `KEY N` counter of the server's line under `vs`.
fn server_counter(block: &str, vs: &str, addr: &str, key: &str) -> Option<u64> {
    counter(&server_entry(block, vs, addr)?, "  server ", key)
}

/// (probes, failures, state-changes) of the `health: probes N; failures N;
/// state-changes N` line, which must come before the `control:` line.
fn health_summary(block: &str) -> (u64, u64, u64) {
    let lines: Vec<&str> = block.lines().collect();
    let at = lines.iter().position(|l| l.starts_with("health: probes ")).unwrap_or_else(|| panic!("no `health: probes N; ...` line:\n{block}"));
    let control = lines.iter().position(|l| l.starts_with("control:")).unwrap_or_else(|| panic!("no `control:` line:\n{block}"));
    assert!(at < control, "the health line comes after the control line:\n{block}");
    let line = lines[at];
    let get = |key: &str| counter(line, "health:", key).unwrap_or_else(|| panic!("no `{key} N` on {line:?}"));
    (get("probes"), get("failures"), get("state-changes"))
}

/// The number of state lines printed before the last counters block (and
/// inside it, printed meanwhile): what `state-changes` of that block counts
/// when nothing changes while it is printed.
fn state_lines_through_last_block(output: &str) -> u64 {
    let lines: Vec<&str> = output.lines().collect();
    let end = lines.iter().rposition(|l| l.starts_with("mbufs:")).unwrap_or(lines.len());
    lines[..end].iter().filter(|l| l.starts_with("health: server ")).count() as u64
}

// ---------------------------------------------------------------------------
// The lab.

/// The health tests' helpers on the shared lab (`furiwake_e2e::Lab`).
trait HealthLab: Sized {
    /// The shared lab (with `ss` too), scratch dir `health-LABEL-PREFIX`.
    fn new(tag: char, label: &str, tools: &[&str]) -> Option<Self>;
    /// nginx of `scripts/backend.sh` on port 80 in server namespace N
    /// (`/id` answers `srvN`, `/health` `OK`, the rest from DIR/www), kept
    /// as `nginx-srvN`.
    fn nginx(&mut self, n: u32);
    /// The same nginx, but with a master process (see
    /// `start_nginx_graceful`), so that SIGQUIT stops it gracefully; /big is
    /// a `big_mb` MiB random file, different per backend.
    fn nginx_graceful(&mut self, n: u32, big_mb: u32, log: &str) -> Proc;
    /// Waits until server `addr` in `pool` has printed `nth` state lines
    /// saying `up` (or `down`), polling every 20 ms; returns the nth such
    /// line (without its prefix) and when it was seen. Panics with
    /// furiwake's output after `timeout` or if furiwake exits.
    fn wait_state(&mut self, addr: &str, pool: &str, up: bool, nth: usize, timeout: Duration) -> (String, Instant);
    /// `curl http://VIP/id` from the client (2 s at most): the backend's
    /// name, or the failure.
    fn try_get_id(&self, vip: &str) -> Result<String, String>;
    /// `n` sequential requests to `vip`, each of which must succeed.
    fn get_ids(&self, vip: &str, n: usize) -> Vec<String>;
    /// The lines of backend N's nginx access log.
    fn access_log(&self, n: u32) -> Vec<String>;
    /// The backend with an established connection from the client on port
    /// 80, seen from the servers' own kernels.
    fn serving_client(&self) -> Vec<u32>;
    /// Writes `text` to `path` atomically (a probe never sees half of it).
    fn write_atomically(&self, path: &Path, text: &str);
}

impl HealthLab for Lab {
    fn new(tag: char, label: &str, tools: &[&str]) -> Option<Lab> {
        let mut all = vec!["ss"];
        all.extend_from_slice(tools);
        Lab::open(tag, &format!("health-{label}"), &all)
    }

    fn nginx(&mut self, n: u32) {
        self.start_nginx(n, 0);
    }

    fn nginx_graceful(&mut self, n: u32, big_mb: u32, log: &str) -> Proc {
        start_nginx_graceful(&self.srv_ns(n), &name(n), &server_ip(n), &self.backend_dir(n), big_mb, log)
    }

    fn wait_state(&mut self, addr: &str, pool: &str, up: bool, nth: usize, timeout: Duration) -> (String, Instant) {
        let end = Instant::now() + timeout;
        loop {
            let out = self.fw_output();
            let found: Vec<String> = state_lines(&out, addr, pool).into_iter().filter(|e| is_up(e) == up).collect();
            if found.len() >= nth {
                return (found[nth - 1].clone(), Instant::now());
            }
            if let Some(st) = self.fw().exited() {
                panic!("furiwake exited ({st}) while waiting for {addr} (pool {pool}) to be {}:\n{out}", if up { "up" } else { "down" });
            }
            if Instant::now() >= end {
                panic!("{addr} (pool {pool}): no {}th `{}` line within {timeout:?}:\n{out}", nth, if up { "up" } else { "down" });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn try_get_id(&self, vip: &str) -> Result<String, String> {
        match self.topo.try_exec("client", &format!("curl -s -S -m 2 http://{vip}/id")) {
            (true, out) => Ok(out.trim().to_string()),
            (false, out) => Err(out.trim().to_string()),
        }
    }

    fn get_ids(&self, vip: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| self.try_get_id(vip).unwrap_or_else(|e| panic!("request {i} to http://{vip}/id failed: {e}\nfuriwake:\n{}", self.fw_output()))).collect()
    }

    fn access_log(&self, n: u32) -> Vec<String> {
        self.nginx_access_log(n)
    }

    fn serving_client(&self) -> Vec<u32> {
        (1..=BACKENDS)
            .filter(|&n| {
                let out = self.topo.try_exec(&name(n), "ss -Htn state established").1;
                out.lines().any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.contains(&addr(n, 80).as_str()) && f.iter().any(|x| x.starts_with(&format!("{CLIENT}:")))
                })
            })
            .collect()
    }

    fn write_atomically(&self, path: &Path, text: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, path).expect("rename");
    }
}

/// nginx as `scripts/backend.sh nginx-conf` writes it, but with a master
/// process: with `master_process off` (backend.sh's choice) SIGQUIT makes
/// nginx exit at once and cut its transfers; with a master, SIGQUIT closes
/// the listening socket at once (new connections are refused) and lets the
/// worker finish what is in flight, then both exit. `user root` so that the
/// worker reads the scratch dir whatever its modes. Runs in `ns`, logs to
/// DIR/`log`; waits (up to 10 s) until it answers /health on `ip` from its
/// own namespace, then empties the access log.
fn start_nginx_graceful(ns: &str, name: &str, ip: &str, dir: &Path, big_mb: u32, log: &str) -> Proc {
    let conf = std::fs::read_to_string(write_nginx_conf(name, dir, big_mb)).expect("nginx.conf");
    assert!(conf.contains("master_process off;\n"), "backend.sh's nginx.conf changed:\n{conf}");
    let graceful = dir.join("nginx-graceful.conf");
    std::fs::write(&graceful, conf.replace("master_process off;\n", "master_process on;\nuser root;\n")).expect("write nginx-graceful.conf");
    run_nginx(ns, name, ip, dir, &graceful, log)
}

/// Processes in namespace `ns` whose command line contains `needle`.
fn procs_in_ns_matching(ns: &str, needle: &str) -> Vec<u32> {
    let (_, out) = try_sh(&format!("ip netns pids {ns}"));
    out.split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle)))
        .collect()
}

/// Sets the flag when dropped, unwinding included.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The answers are all from `allowed`, and each of `allowed` answered.
fn assert_answers_from(answers: &[String], allowed: &[&str], what: &str) {
    let t = tally(answers);
    let got: BTreeSet<&str> = t.keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = allowed.iter().copied().collect();
    assert_eq!(got, want, "{what}: answers {t:?}, expected exactly from {allowed:?}");
}

// ---------------------------------------------------------------------------

/// An http check on /health (expect 200 and "OK"). The backend serving a
/// long download is stopped gracefully: it refuses new connections at
/// once, while its download goes on. Within the spec's bound (fall failed
/// probes) new connections avoid it and it is reported down (`refused`);
/// the download completes byte-identical. Restarted, it is back within
/// `rise` good probes.
#[test]
fn http_check_takes_a_stopped_server_out_and_back() {
    let Some(mut lab) = Lab::new('o', "out-and-back", &["nginx"]) else { return };
    for n in 1..=BACKENDS {
        let p = lab.nginx_graceful(n, BIG_MB, "nginx.out");
        lab.procs.insert(format!("nginx-{}", name(n)), p);
    }
    let hashes: BTreeMap<u32, String> = (1..=BACKENDS).map(|n| (n, sha256_file(&lab.backend_dir(n).join("www/big")))).collect();
    let services = format!(
        "{}\n{}\n{}",
        check("web-ok", "http", "request = \"GET /health HTTP/1.0\\r\\n\\r\\n\"\nexpect_status = 200\nexpect_body = \"OK\""),
        pool("web", 80, "health_check = \"web-ok\""),
        virtual_server("www", VIP, 80, "tcp", "web")
    );
    lab.start(&services);

    // Servers start down (checking) and come up after `rise` good probes.
    let ready = Instant::now();
    for n in 1..=BACKENDS {
        let (line, _) = lab.wait_state(&addr(n, 80), "web", true, 1, Duration::from_secs(20));
        assert!(up_rtt_ms(&line).is_some(), "{line:?}");
    }
    eprintln!("all three up {:?} after `furiwake: ready`", ready.elapsed());
    let block = lab
        .report_until(Duration::from_secs(5), |b| (1..=BACKENDS).all(|n| server_state(b, "www", &addr(n, 80)).as_deref() == Some("up")))
        .unwrap_or_else(|b| panic!("not all three `state up` in the report after their up lines:\n{b}"));
    for n in 1..=BACKENDS {
        let rtt = server_counter(&block, "www", &addr(n, 80), "rtt-us").unwrap_or_else(|| panic!("no `rtt-us N` for srv{n}:\n{block}"));
        assert!(rtt <= TIMEOUT_MS * 1000, "srv{n} rtt-us {rtt} beyond the timeout of {TIMEOUT_MS} ms:\n{block}");
    }
    let (probes, failures, changes) = health_summary(&block);
    assert!(probes >= BACKENDS as u64 * RISE, "3 servers up after {RISE} good probes each, but probes {probes}:\n{block}");
    assert!(failures <= probes, "{block}");
    assert_eq!(changes, state_lines_through_last_block(&lab.fw_output()), "state-changes vs state lines printed:\n{}", lab.fw_output());

    // A long download through the VIP (20 MiB at 2 MiB/s: 4 to 8 s here);
    // which backend got it, its own kernel tells (nginx logs a request only
    // when it has ended).
    let file = lab.dir.path("big.download");
    let (f, url) = (file.to_str().unwrap().to_string(), format!("http://{VIP}/big"));
    let argv = ["curl", "-s", "-S", "-m", "60", "--limit-rate", "2M", "-o", &f, "-w", "%{http_code} %{size_download}\n", &url];
    let download = Instant::now();
    let mut curl = Proc::spawn("curl", Some(&lab.topo.ns("client")), &argv, &lab.dir.path("curl.log"), false);
    let serving = wait_for(Duration::from_secs(10), || Some(lab.serving_client()).filter(|s| !s.is_empty()));
    let serving = serving.unwrap_or_else(|| panic!("no backend has the download's connection; curl: {}\nfuriwake:\n{}", curl.output(), lab.fw_output()));
    assert_eq!(serving.len(), 1, "one download, one backend: {serving:?}");
    let victim = serving[0];
    let (v_addr, v_name) = (addr(victim, 80), name(victim));
    eprintln!("the download is served by {v_name}");

    // Graceful stop: SIGQUIT to its nginx master.
    let mut old = lab.procs.remove(&format!("nginx-{v_name}")).expect("victim's nginx");
    let quit = Instant::now();
    old.signal(libc::SIGQUIT);

    // Poll the VIP every 50 ms: a request that reaches the victim now fails
    // (nothing listens). Done when the down line is out and 6 requests in a
    // row went elsewhere.
    let mut history: Vec<(Duration, Result<String, String>)> = Vec::new();
    let mut streak_start: Option<Duration> = None;
    let mut streak = 0;
    let mut down: Option<(String, Duration)> = None;
    let mut curl_running_at_down = false;
    let deadline = quit + Duration::from_secs(20);
    loop {
        let at = quit.elapsed();
        let r = lab.try_get_id(VIP);
        let good = r.as_ref().is_ok_and(|id| *id != v_name && ["srv1", "srv2", "srv3"].contains(&id.as_str()));
        history.push((at, r));
        if good {
            if streak == 0 {
                streak_start = Some(at);
            }
            streak += 1;
        } else {
            streak = 0;
        }
        if down.is_none() {
            if let Some(e) = state_lines(&lab.fw_output(), &v_addr, "web").into_iter().find(|e| is_down(e)) {
                down = Some((e, quit.elapsed()));
                curl_running_at_down = curl.is_running();
            }
        }
        if streak >= 6 && down.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{v_name} not out of the pool 20 s after SIGQUIT; requests (time, answer): {history:?}\nfuriwake:\n{}",
            lab.fw_output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let avoided = streak_start.expect("a streak");
    let (down_line, down_after) = down.expect("the down line");
    let failed = history.iter().filter(|(_, r)| r.is_err()).count();
    eprintln!(
        "{v_name} stopped: new connections avoid it {avoided:?} after SIGQUIT (bound {:?}); down line after {down_after:?}; {failed} of {} requests failed meanwhile",
        bound(INTERVAL_MS, FALL),
        history.len()
    );
    assert_eq!(down_line, "down: refused", "nginx stopped: the probe's SYN gets a RST");
    assert!(avoided < bound(INTERVAL_MS, FALL), "new connections avoid {v_name} only {avoided:?} after it stopped; requests: {history:?}");
    assert!(down_after < bound(INTERVAL_MS, FALL), "down line {down_after:?} after the stop");
    // Requests that began well after the down line never reached the victim.
    let late: Vec<_> = history.iter().filter(|(at, r)| *at > down_after + Duration::from_millis(200) && r.as_ref().map_or(true, |id| *id == v_name)).collect();
    assert!(late.is_empty(), "requests after the down line still reached {v_name}: {late:?}");
    assert!(curl_running_at_down, "the download ended before {v_name} was down: the test proves nothing about connections that continue");
    // A down server gets no new connection.
    let answers = lab.get_ids(VIP, 9);
    assert!(!answers.contains(&v_name), "{v_name} got new connections while down: {answers:?}");

    let block = lab.report();
    for n in 1..=BACKENDS {
        let want = if n == victim { "down" } else { "up" };
        assert_eq!(must_state(&block, "www", &addr(n, 80)), want, "srv{n}:\n{block}");
    }
    let (_, failures, _) = health_summary(&block);
    assert!(failures >= FALL, "down after {FALL} failures, but failures {failures}:\n{block}");

    // The download, begun before, completes from the stopped server.
    let status = curl.wait(Duration::from_secs(70)).expect("curl ends (it has -m 60)");
    eprintln!("the download took {:?}, of which {:?} after SIGQUIT", download.elapsed(), quit.elapsed());
    assert_eq!(status.code(), Some(0), "download: {}\nfuriwake:\n{}", curl.output(), lab.fw_output());
    assert_eq!(curl.output().trim(), format!("200 {BIG_BYTES}"), "status and size");
    assert_eq!(sha256_file(&file), hashes[&victim], "the download is {v_name}'s /big, byte-identical");
    let _ = std::fs::remove_file(&file);
    let st = old.wait(Duration::from_secs(10));
    assert!(st.is_some(), "{v_name}'s nginx still running 10 s after its last transfer ended");
    assert!(lab.access_log(victim).iter().any(|l| l.contains("\"GET /big ") && l.contains(&format!(" 200 {BIG_BYTES} "))), "{:?}", lab.access_log(victim));

    // Restarted: back after `rise` good probes.
    let restart = Instant::now();
    let p = lab.nginx_graceful(victim, BIG_MB, "nginx-restarted.out");
    lab.procs.insert(format!("nginx-{v_name}"), p);
    let mut back: Option<Duration> = None;
    let mut up_line: Option<(String, Duration)> = None;
    let deadline = restart + Duration::from_secs(20);
    while back.is_none() || up_line.is_none() {
        if back.is_none() && lab.try_get_id(VIP).is_ok_and(|id| id == v_name) {
            back = Some(restart.elapsed());
        }
        if up_line.is_none() {
            if let Some(e) = state_lines(&lab.fw_output(), &v_addr, "web").into_iter().filter(|e| is_up(e)).nth(1) {
                up_line = Some((e, restart.elapsed()));
            }
        }
        assert!(Instant::now() < deadline, "{v_name} not back 20 s after its restart\nfuriwake:\n{}", lab.fw_output());
        std::thread::sleep(Duration::from_millis(50));
    }
    let back = back.expect("answered");
    let (up_line, up_after) = up_line.expect("up line");
    eprintln!("{v_name} restarted: answers through the VIP {back:?} after (bound {:?}); up line after {up_after:?}: {up_line:?}", bound(INTERVAL_MS, RISE));
    assert!(back < bound(INTERVAL_MS, RISE), "{v_name} answered only {back:?} after its restart");
    assert!(up_after < bound(INTERVAL_MS, RISE), "up line only {up_after:?} after the restart");
    let answers = lab.get_ids(VIP, 9);
    assert_answers_from(&answers, &["srv1", "srv2", "srv3"], "all three up again");

    let block = lab.report();
    for n in 1..=BACKENDS {
        assert_eq!(must_state(&block, "www", &addr(n, 80)), "up", "srv{n}:\n{block}");
    }
    let (probes, failures, changes) = health_summary(&block);
    assert!(probes > failures, "{block}");
    assert_eq!(changes, state_lines_through_last_block(&lab.fw_output()), "state-changes vs state lines printed:\n{}", lab.fw_output());
    let events = check_state_lines(&lab.fw_output(), TIMEOUT_MS as f64);
    assert_eq!(events[&(v_addr.clone(), "web".to_string())].len(), 3, "up, down, up: {events:?}");
    stop_furiwake_cleanly(lab.fw());
}

/// http checks that get an answer, but the wrong one: a body without the
/// expected text is `body mismatch`, a 404 where 200 is expected is `bad
/// status 404`. A server that never passes never gets traffic; one that
/// starts failing is taken out with that reason.
///
/// The probed pages are files under nginx's root, so that a test can change
/// what a server answers without restarting it.
#[test]
fn http_body_and_status_mismatch_mark_down_with_reason() {
    let Some(mut lab) = Lab::new('b', "mismatch", &["nginx"]) else { return };
    for n in 1..=BACKENDS {
        lab.nginx(n);
    }
    let page = |lab: &Lab, n: u32, f: &str| lab.backend_dir(n).join("www").join(f);
    // Pool `body`: srv1's page never says OK; srv2 and srv3 do (for now).
    lab.write_atomically(&page(&lab, 1, "body.txt"), "NOPE\n");
    lab.write_atomically(&page(&lab, 2, "body.txt"), "OK\n");
    lab.write_atomically(&page(&lab, 3, "body.txt"), "OK\n");
    // Pool `status`: srv3 has no page (404); srv1 and srv2 do (for now).
    lab.write_atomically(&page(&lab, 1, "status.txt"), "here\n");
    lab.write_atomically(&page(&lab, 2, "status.txt"), "here\n");
    let services = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        check("body-ok", "http", "request = \"GET /body.txt HTTP/1.0\\r\\n\\r\\n\"\nexpect_body = \"OK\""),
        check("status-200", "http", "request = \"GET /status.txt HTTP/1.0\\r\\n\\r\\n\"\nexpect_status = 200"),
        pool("body", 80, "health_check = \"body-ok\""),
        pool("status", 80, "health_check = \"status-200\""),
        virtual_server("www", VIP, 80, "tcp", "body"),
        virtual_server("alt", VIP2, 80, "tcp", "status")
    );
    lab.start(&services);

    for (n, p) in [(2, "body"), (3, "body"), (1, "status"), (2, "status")] {
        lab.wait_state(&addr(n, 80), p, true, 1, Duration::from_secs(20));
    }
    // Long enough for srv1 (body) and srv3 (status) to have failed `fall`
    // times over: their state is settled.
    std::thread::sleep(Duration::from_millis(INTERVAL_MS * (FALL + 2)));
    let block = lab.report();
    let states = |vs: &str| (1..=BACKENDS).map(|n| must_state(&block, vs, &addr(n, 80))).collect::<Vec<_>>();
    assert_eq!(states("www"), ["down", "up", "up"], "pool body:\n{block}");
    assert_eq!(states("alt"), ["up", "up", "down"], "pool status:\n{block}");
    let out = lab.fw_output();
    assert!(!state_lines(&out, &addr(1, 80), "body").iter().any(|e| is_up(e)), "srv1 never said OK:\n{out}");
    assert!(!state_lines(&out, &addr(3, 80), "status").iter().any(|e| is_up(e)), "srv3 has no page:\n{out}");

    // Never up: no traffic.
    assert_answers_from(&lab.get_ids(VIP, 12), &["srv2", "srv3"], "pool body with srv1 failing");
    assert_answers_from(&lab.get_ids(VIP2, 12), &["srv1", "srv2"], "pool status with srv3 failing");
    assert_eq!(server_counter(&lab.report(), "www", &addr(1, 80), "conns-new"), Some(0), "srv1 got connections through www");

    // Now srv2 stops saying OK and srv1 loses its status page.
    lab.write_atomically(&page(&lab, 2, "body.txt"), "NOPE\n");
    std::fs::remove_file(page(&lab, 1, "status.txt")).expect("remove status.txt");
    let changed = Instant::now();
    let (body_line, at) = lab.wait_state(&addr(2, 80), "body", false, 1, Duration::from_secs(20));
    let body_after = at - changed;
    let (status_line, at) = lab.wait_state(&addr(1, 80), "status", false, 1, Duration::from_secs(20));
    let status_after = at - changed;
    eprintln!("down lines {body_after:?} (body) and {status_after:?} (status) after the change (bound {:?})", bound(INTERVAL_MS, FALL));
    assert_eq!(body_line, "down: body mismatch");
    assert_eq!(status_line, "down: bad status 404");
    assert!(body_after < bound(INTERVAL_MS, FALL) && status_after < bound(INTERVAL_MS, FALL), "down only after {body_after:?} / {status_after:?}");
    assert_answers_from(&lab.get_ids(VIP, 6), &["srv3"], "pool body with srv1 and srv2 failing");
    assert_answers_from(&lab.get_ids(VIP2, 6), &["srv2"], "pool status with srv1 and srv3 failing");

    // Servers that never came up: a line, if the appliance prints one for
    // them, carries their reason.
    let out = lab.fw_output();
    for (n, p, want) in [(1, "body", "down: body mismatch"), (3, "status", "down: bad status 404")] {
        let lines = state_lines(&out, &addr(n, 80), p);
        eprintln!("srv{n} (pool {p}), never up, printed {lines:?}");
        assert!(lines.iter().all(|e| e == want), "srv{n} (pool {p}): {lines:?}, expected only {want:?}");
    }
    check_state_lines(&out, TIMEOUT_MS as f64);
    stop_furiwake_cleanly(lab.fw());
}

/// A send-expect check against a TCP server that speaks first (an SMTP-like
/// banner, the connection held open as such a server does) on a port the
/// check names, and a udp check against a UDP echo: all up, probed from the
/// box's inside self IP. Then one server stops listening and another says
/// the wrong thing, for each kind: down with `refused` (TCP), `timeout`
/// or `refused` (UDP: the probe stack takes no ICMP error for its
/// datagram, so a closed port times out), and `expect mismatch`.
#[test]
fn send_expect_and_udp_checks_pass_and_fail() {
    let Some(mut lab) = Lab::new('s', "send-expect", &[]) else { return };
    let banner = test_script("tcp_banner.py");
    let echo = test_script("udp_echo.py");
    for n in 1..=BACKENDS {
        let (b, bf) = (format!("220 {} ready", name(n)), lab.dir.path(&format!("banner-{}", name(n))));
        // srv1 and srv3 keep the connection open after their banner, as an
        // SMTP server does (the check must match what has arrived, not wait
        // for the end); srv2 closes it at once, so that when its banner
        // turns wrong, the probe has seen all there is to see: a mismatch,
        // not a timeout.
        let hold = if n == 2 { "0" } else { "10" };
        let argv = ["python3", banner.to_str().unwrap(), "--port", "2525", "--banner", &b, "--banner-file", bf.to_str().unwrap(), "--hold", hold];
        lab.serve(&format!("banner-{}", name(n)), n, &argv);
        let rf = lab.dir.path(&format!("reply-{}", name(n)));
        lab.serve(
            &format!("echo-{}", name(n)),
            n,
            &["python3", echo.to_str().unwrap(), "--port", "5353", "--tag", &name(n), "--reply-file", rf.to_str().unwrap()],
        );
    }
    // Pool `mail` is on port 25, where nothing listens: only a check that
    // probes its own `port` (2525) can pass.
    let services = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        check("banner", "send-expect", "port = 2525\nexpect = \"220\""),
        check("echo", "udp", "send = \"furiwake-probe\"\nexpect = \"furiwake-probe\""),
        pool("mail", 25, "health_check = \"banner\""),
        pool("dns", 5353, "health_check = \"echo\""),
        virtual_server("smtp", VIP, 25, "tcp", "mail"),
        virtual_server("dns", VIP, 5353, "udp", "dns")
    );
    lab.start(&services);
    for n in 1..=BACKENDS {
        lab.wait_state(&addr(n, 25), "mail", true, 1, Duration::from_secs(20));
        lab.wait_state(&addr(n, 5353), "dns", true, 1, Duration::from_secs(20));
    }

    // Probes come from the inside self IP; the udp probe carries `send`.
    for n in 1..=BACKENDS {
        let log = lab.proc_output(&format!("banner-{}", name(n)));
        let froms: Vec<&str> = log.lines().filter(|l| l.starts_with("from ")).collect();
        assert!(froms.len() as u64 >= RISE, "srv{n}'s banner server saw {} connections:\n{log}", froms.len());
        assert!(froms.iter().all(|l| l.starts_with(&format!("from {SELF_INSIDE}:"))), "srv{n}: a probe not from {SELF_INSIDE}:\n{log}");
        let log = lab.proc_output(&format!("echo-{}", name(n)));
        let froms: Vec<&str> = log.lines().filter(|l| l.starts_with("from ")).collect();
        assert!(froms.len() as u64 >= RISE, "srv{n}'s echo saw {} datagrams:\n{log}", froms.len());
        for l in &froms {
            assert!(l.starts_with(&format!("from {SELF_INSIDE}:")) && l.ends_with(" 14 furiwake-probe"), "srv{n}: probe datagram {l:?}\n{log}");
        }
    }

    // The UDP service works through the VIP (three new flows, three servers).
    let ask = test_script("udp_ask.py");
    let ask_from = |lab: &Lab, sport: u16| {
        let cmd = format!("python3 {} --to {VIP}:5353 --sport {sport} --message hello --tries 3 --wait 1", ask.display());
        let (ok, out) = lab.topo.try_exec("client", &cmd);
        assert!(ok, "no UDP answer through {VIP}:5353 from port {sport}: {out}\nfuriwake:\n{}", lab.fw_output());
        out.trim().to_string()
    };
    let mut answers: Vec<String> = [41001, 41002, 41003].into_iter().map(|p| ask_from(&lab, p)).collect();
    answers.sort();
    assert_eq!(answers, ["hello srv1", "hello srv2", "hello srv3"]);

    // srv1: both stop listening; srv2: both answer the wrong thing (the
    // files switch their answer with no moment of silence); srv3: unchanged.
    let changed = Instant::now();
    lab.stop("banner-srv1");
    lab.stop("echo-srv1");
    std::fs::write(lab.dir.path("banner-srv2"), "554 srv2 busy\n").expect("write");
    std::fs::write(lab.dir.path("reply-srv2"), "busy\n").expect("write");

    let (l, at) = lab.wait_state(&addr(1, 25), "mail", false, 1, Duration::from_secs(20));
    eprintln!("srv1 (mail) {l:?} {:?} after its banner server stopped", at - changed);
    assert_eq!(l, "down: refused", "nothing listens on 2525: the SYN gets a RST");
    let (l, at) = lab.wait_state(&addr(1, 5353), "dns", false, 1, Duration::from_secs(20));
    eprintln!("srv1 (dns) {l:?} {:?} after its echo stopped", at - changed);
    assert!(["down: timeout", "down: refused"].contains(&l.as_str()), "srv1's UDP port closed: {l:?}");
    let (l, at) = lab.wait_state(&addr(2, 25), "mail", false, 1, Duration::from_secs(20));
    eprintln!("srv2 (mail) {l:?} {:?} after its banner changed", at - changed);
    assert_eq!(l, "down: expect mismatch", "srv2 says 554");
    let (l, at) = lab.wait_state(&addr(2, 5353), "dns", false, 1, Duration::from_secs(20));
    eprintln!("srv2 (dns) {l:?} {:?} after its reply changed", at - changed);
    assert_eq!(l, "down: expect mismatch", "srv2 answers busy");
    let elapsed = changed.elapsed();
    assert!(elapsed < bound(INTERVAL_MS, FALL) + Duration::from_secs(1), "the four down lines took {elapsed:?}");

    // srv3 stays up in both pools, and takes every new UDP flow.
    let block = lab.report();
    for (vs, port) in [("smtp", 25), ("dns", 5353)] {
        let states: Vec<String> = (1..=BACKENDS).map(|n| must_state(&block, vs, &addr(n, port))).collect();
        assert_eq!(states, ["down", "down", "up"], "{vs}:\n{block}");
    }
    let out = lab.fw_output();
    assert_eq!(state_lines(&out, &addr(3, 25), "mail").len(), 1, "srv3 (mail) changed state:\n{out}");
    assert_eq!(state_lines(&out, &addr(3, 5353), "dns").len(), 1, "srv3 (dns) changed state:\n{out}");
    for sport in [41011, 41012, 41013] {
        assert_eq!(ask_from(&lab, sport), "hello srv3", "a new flow from port {sport}");
    }
    check_state_lines(&lab.fw_output(), TIMEOUT_MS as f64);
    stop_furiwake_cleanly(lab.fw());
}

/// An icmp check on one pool, a tcp check (port 80) on another, both on a
/// third (`health_checks`: all must pass). srv2's link goes down: srv2 goes
/// down in all three pools (`timeout`), and comes back
/// when the link does. Then srv3's nginx stops: srv3 goes down (`refused`)
/// where the tcp check applies, and stays up in the icmp-only pool.
#[test]
fn icmp_and_tcp_checks_detect_an_interface_down() {
    let Some(mut lab) = Lab::new('i', "link-down", &["nginx"]) else { return };
    for n in 1..=BACKENDS {
        lab.nginx(n);
    }
    let services = format!(
        "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        check("ping", "icmp", ""),
        check("tcp80", "tcp", "port = 80"),
        pool("pingable", 80, "health_check = \"ping\""),
        pool("web", 80, "health_check = \"tcp80\""),
        pool("both", 80, "health_checks = [\"ping\", \"tcp80\"]"),
        virtual_server("alt", VIP2, 80, "tcp", "pingable"),
        virtual_server("www", VIP, 80, "tcp", "web"),
        virtual_server("both", VIP3, 80, "tcp", "both")
    );
    lab.start(&services);
    let pools = ["pingable", "web", "both"];
    for n in 1..=BACKENDS {
        for p in pools {
            lab.wait_state(&addr(n, 80), p, true, 1, Duration::from_secs(20));
        }
    }
    for vip in [VIP, VIP2, VIP3] {
        assert_answers_from(&lab.get_ids(vip, 6), &["srv1", "srv2", "srv3"], vip);
    }

    // srv2's link down.
    let srv2 = lab.srv_ns(2);
    let t = Instant::now();
    sh(&format!("ip -n {srv2} link set eth0 down"));
    for p in pools {
        let (l, at) = lab.wait_state(&addr(2, 80), p, false, 1, Duration::from_secs(20));
        let after = at - t;
        eprintln!("srv2 (pool {p}) {l:?} {after:?} after its link went down (bound {:?})", bound(INTERVAL_MS, FALL));
        assert_eq!(l, "down: timeout", "srv2 (pool {p}) behind a dead link");
        assert!(after < bound(INTERVAL_MS, FALL), "srv2 (pool {p}) down only {after:?} after its link");
    }
    for vip in [VIP, VIP2, VIP3] {
        assert_answers_from(&lab.get_ids(vip, 6), &["srv1", "srv3"], &format!("{vip} with srv2 down"));
    }

    // Link up (the kernel dropped srv2's default route with the link: put
    // it back, replies to the client need it).
    let t = Instant::now();
    sh(&format!("ip -n {srv2} link set eth0 up && ip -n {srv2} route replace default via {SELF_INSIDE}"));
    for p in pools {
        let (l, at) = lab.wait_state(&addr(2, 80), p, true, 2, Duration::from_secs(20));
        let after = at - t;
        eprintln!("srv2 (pool {p}) {l:?} {after:?} after its link came up (bound {:?})", bound(INTERVAL_MS, RISE));
        assert!(after < bound(INTERVAL_MS, RISE), "srv2 (pool {p}) up only {after:?} after its link");
    }
    for vip in [VIP, VIP2, VIP3] {
        assert_answers_from(&lab.get_ids(vip, 6), &["srv1", "srv2", "srv3"], &format!("{vip} with srv2 back"));
    }

    // srv3's nginx stops: it still answers pings.
    let t = Instant::now();
    lab.stop("nginx-srv3");
    for p in ["web", "both"] {
        let (l, at) = lab.wait_state(&addr(3, 80), p, false, 1, Duration::from_secs(20));
        eprintln!("srv3 (pool {p}) {l:?} {:?} after its nginx stopped", at - t);
        assert_eq!(l, "down: refused", "srv3 (pool {p}): port 80 closed");
    }
    std::thread::sleep(Duration::from_millis(INTERVAL_MS * (FALL + 2)));
    let block = lab.report();
    assert_eq!(must_state(&block, "alt", &addr(3, 80)), "up", "the icmp check alone still passes:\n{block}");
    assert_eq!(must_state(&block, "www", &addr(3, 80)), "down", "{block}");
    assert_eq!(must_state(&block, "both", &addr(3, 80)), "down", "one of two checks fails:\n{block}");
    let out = lab.fw_output();
    assert_eq!(state_lines(&out, &addr(3, 80), "pingable").len(), 1, "srv3 (pingable) changed state:\n{out}");
    assert_answers_from(&lab.get_ids(VIP3, 6), &["srv1", "srv2"], "pool both with srv3's nginx stopped");
    check_state_lines(&out, TIMEOUT_MS as f64);
    stop_furiwake_cleanly(lab.fw());
}

/// Spoofed probe answers, from an attacker on the servers' link that
/// holds a down server's address (srv3, where nothing listens on port 80):
/// SYN-ACKs from its port 80 to random probe ports of the box's inside
/// self IP, with random sequence and ACK numbers, well over the probe
/// class's rate (set low here, 400 a second, so a flood the af_packet
/// lab carries whole is far above it). What the box decides: srv3 never
/// comes up (a probe's source port and ISN are secret: a blind answer
/// matches none), the flood is policed (its punts are limited), and the
/// other servers' answers keep passing, since the flood takes only its
/// source's bucket (an eighth of the class): srv1 and srv2 never go down.
#[test]
fn spoofed_probe_answers_bring_nothing_up_and_take_nothing_down() {
    let Some(mut lab) = Lab::new('q', "spoofed-answers", &["nginx"]) else { return };
    lab.nginx(1);
    lab.nginx(2);
    let services = format!("{}\n{}\n{}\n[defence.punt]\nprobe = 400\n", check("tcp80", "tcp", "port = 80"), pool("web", 80, "health_check = \"tcp80\""), virtual_server("www", VIP, 80, "tcp", "web"));
    lab.start(&services);
    for n in 1..=2 {
        lab.wait_state(&addr(n, 80), "web", true, 1, Duration::from_secs(20));
    }
    let block = lab.report_until(Duration::from_secs(20), |b| server_state(b, "www", &addr(3, 80)).as_deref() == Some("down") && health_summary(b).1 >= FALL);
    let block = block.unwrap_or_else(|b| panic!("srv3 was never found down:\n{b}"));
    let lines_before: Vec<usize> = (1..=2).map(|n| state_lines(&lab.fw_output(), &addr(n, 80), "web").len()).collect();
    let limited_before = probe_punts(&block).1;

    let flood = env!("CARGO_BIN_EXE_flood");
    let ns = lab.srv_ns(3);
    let log = lab.dir.path("flood.log");
    let argv = [flood, "--dst", SELF_INSIDE, "--dport", "61000", "--dports", "61000-65535", "--sport", "80", "--src", "198.51.100.0", "--host", "13", "--proto", "synack", "--secs", "6", "--pps", "3000"];
    assert_eq!(server_ip(3), "198.51.100.13", "the flood's source is srv3's address");
    let mut f = Proc::spawn("flood", Some(&ns), &argv, &log, false);
    let status = f.wait(Duration::from_secs(60)).expect("the flood ends in its time");
    assert_eq!(status.code(), Some(0), "{}", f.output());
    eprintln!("{}", f.output().trim());
    std::thread::sleep(Duration::from_millis(INTERVAL_MS * (FALL + 1)));

    let block = lab.report();
    let out = lab.fw_output();
    let (passed, limited) = probe_punts(&block);
    eprintln!("probe punts: {passed} passed, {limited} limited ({} before the flood)", limited_before);
    assert!(limited > limited_before + 1000, "the flood never reached the probe class's policer:\n{block}");
    assert!(state_lines(&out, &addr(3, 80), "web").iter().all(|l| !is_up(l)), "a spoofed answer brought srv3 up:\n{out}");
    assert_eq!(must_state(&block, "www", &addr(3, 80)), "down", "{block}");
    for n in 1..=2u32 {
        let lines = state_lines(&out, &addr(n, 80), "web");
        assert_eq!(lines.len(), lines_before[n as usize - 1], "srv{n} changed state under the flood: {lines:?}\n{block}");
        assert_eq!(must_state(&block, "www", &addr(n, 80)), "up", "{block}");
    }
    assert_answers_from(&lab.get_ids(VIP, 6), &["srv1", "srv2"], "after the flood");
    stop_furiwake_cleanly(lab.fw());
}

/// `passed/limited` of the probe punt class in a report block.
fn probe_punts(block: &str) -> (u64, u64) {
    let line = block.lines().rev().find(|l| l.starts_with("  punt (passed/limited):")).unwrap_or("");
    let field = line.split(" probe ").nth(1).unwrap_or("0/0");
    let mut it = field.split(['/', ';']).map(|n| n.trim().parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Script checks. `sleep 30` (timeout 300 ms) never passes: each run is
/// killed at its timeout, so only a few run at a time and none outlives
/// furiwake; failures keep rising; meanwhile the control loop still answers
/// ARP and pings. Another script check (exit status from a file per server)
/// gets the server's address and port in its environment, brings servers
/// up on exit 0, and takes them down with `script exit 3` or, when it
/// hangs, `script timeout`.
#[test]
fn hanging_script_is_killed_at_timeout_and_arp_still_answered() {
    let Some(mut lab) = Lab::new('z', "script", &["ping"]) else { return };
    const SCRIPT_TIMEOUT_MS: u64 = 300;
    let dir = lab.dir.0.to_str().expect("utf-8 path").to_string();
    // A TOML literal string: no escapes, no single quotes inside.
    let scripted = format!(
        "command = 'echo \"$FURIWAKE_SERVER_IP $FURIWAKE_SERVER_PORT\" >> {dir}/env.log; m=$(cat {dir}/mode-$FURIWAKE_SERVER_IP 2>/dev/null); \
         [ \"$m\" = hang ] && sleep 30; [ \"$m\" = fail ] && exit 3; [ \"$FURIWAKE_SERVER_PORT\" = 80 ] || exit 4; exit 0'"
    );
    let services = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        check_with("hang", "script", INTERVAL_MS, SCRIPT_TIMEOUT_MS, "command = \"sleep 30\""),
        check_with("scripted", "script", INTERVAL_MS, SCRIPT_TIMEOUT_MS, &scripted),
        pool("hung", 80, "health_check = \"hang\""),
        pool("scripted", 80, "health_check = \"scripted\""),
        virtual_server("www", VIP, 80, "tcp", "hung"),
        virtual_server("app", VIP2, 80, "tcp", "scripted")
    );
    lab.start(&services);
    let mac = port_mac(&lab.fw_output(), "outside").expect("outside MAC");

    for n in 1..=BACKENDS {
        lab.wait_state(&addr(n, 80), "scripted", true, 1, Duration::from_secs(20));
    }
    // The environment: each server's own address and port.
    let env: BTreeSet<String> = std::fs::read_to_string(lab.dir.path("env.log")).unwrap_or_default().lines().map(str::to_string).collect();
    let want: BTreeSet<String> = (1..=BACKENDS).map(|n| format!("{} 80", server_ip(n))).collect();
    assert_eq!(env, want, "FURIWAKE_SERVER_IP and FURIWAKE_SERVER_PORT as the scripts saw them");

    // srv1's script now hangs, srv2's exits 3.
    let changed = Instant::now();
    std::fs::write(lab.dir.path(&format!("mode-{}", server_ip(1))), "hang\n").expect("write");
    std::fs::write(lab.dir.path(&format!("mode-{}", server_ip(2))), "fail\n").expect("write");
    let period = INTERVAL_MS.max(SCRIPT_TIMEOUT_MS);
    let (l, at) = lab.wait_state(&addr(1, 80), "scripted", false, 1, Duration::from_secs(20));
    eprintln!("srv1 (scripted) {l:?} {:?} after its script began to hang (bound {:?})", at - changed, bound(period, FALL));
    assert_eq!(l, "down: script timeout");
    assert!(at - changed < bound(period, FALL));
    let (l, at) = lab.wait_state(&addr(2, 80), "scripted", false, 1, Duration::from_secs(20));
    eprintln!("srv2 (scripted) {l:?} {:?} after its script began to exit 3", at - changed);
    assert_eq!(l, "down: script exit 3");

    // Four probes hang now (three of pool hung, srv1's of pool scripted).
    // Count the `sleep 30` processes (the shell and its sleep) in the lb
    // namespace every 50 ms for 3 s, while the client checks that ARP and
    // pings are still answered.
    let lb = lab.topo.ns("lb");
    let stop = AtomicBool::new(false);
    let hanging = 4u64;
    let per_probe = 2u64;
    let overlap = SCRIPT_TIMEOUT_MS.div_ceil(INTERVAL_MS) + 1;
    let most = hanging * per_probe * overlap;
    let before = lab.report();
    let (max_seen, samples) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let (mut max, mut samples) = (0usize, 0usize);
            let (end, hard_end) = (Instant::now() + Duration::from_secs(3), Instant::now() + Duration::from_secs(60));
            while (Instant::now() < end || !stop.load(Ordering::Relaxed)) && Instant::now() < hard_end {
                max = max.max(procs_in_ns_matching(&lb, "sleep 30").len());
                samples += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            (max, samples)
        });
        // Ends the sampling even when an assertion below fails (the scope
        // joins the sampler before the panic goes on).
        let _stop_sampling = SetOnDrop(&stop);
        for round in 0..3 {
            lab.topo.exec("client", "ip neigh flush all");
            let t = Instant::now();
            let got = wait_for(Duration::from_secs(5), || {
                lab.topo.try_exec(
                    "client",
                    &format!("python3 -c \"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('{SELF_OUTSIDE}', 9))\""),
                );
                let (_, neigh) = lab.topo.try_exec("client", &format!("ip neigh show {SELF_OUTSIDE}"));
                let mut w = neigh.split_whitespace();
                w.find(|x| *x == "lladdr").and_then(|_| w.next()).map(str::to_string)
            });
            eprintln!("round {round}: the client resolved {SELF_OUTSIDE} in {:?}: {got:?}", t.elapsed());
            assert_eq!(got.as_deref(), Some(mac.as_str()), "ARP for {SELF_OUTSIDE} unanswered while scripts hang\nfuriwake:\n{}", lab.fw_output());
        }
        let (ok, out) = lab.topo.try_exec("client", &format!("ping -c 5 -i 0.2 -W 2 {SELF_OUTSIDE}"));
        eprintln!("{}", out.lines().filter(|l| l.contains("received") || l.starts_with("rtt")).collect::<Vec<_>>().join("\n"));
        assert!(ok && out.contains(" 5 received"), "pings of {SELF_OUTSIDE} unanswered while scripts hang:\n{out}");
        stop.store(true, Ordering::Relaxed);
        sampler.join().expect("sampler")
    });
    eprintln!("at most {max_seen} `sleep 30` processes at a time in {samples} samples (bound {most})");
    assert!(max_seen >= 1, "no hanging script ever seen running: the checks do not run?");
    assert!(max_seen as u64 <= most, "{max_seen} `sleep 30` processes at once: hung scripts are not killed at their timeout");

    let after = lab.report();
    let (p0, f0, _) = health_summary(&before);
    let (p1, f1, _) = health_summary(&after);
    eprintln!("probes {p0} -> {p1}, failures {f0} -> {f1}");
    assert!(f1 >= f0 + hanging, "failures did not rise while 4 probes hang:\nbefore:\n{before}\nafter:\n{after}");
    assert!(p1 - p0 >= f1 - f0, "{after}");
    for n in 1..=BACKENDS {
        assert_eq!(must_state(&after, "www", &addr(n, 80)), "down", "srv{n} passes `sleep 30`?\n{after}");
    }
    let states: Vec<String> = (1..=BACKENDS).map(|n| must_state(&after, "app", &addr(n, 80))).collect();
    assert_eq!(states, ["down", "down", "up"], "{after}");
    let out = lab.fw_output();
    for n in 1..=BACKENDS {
        let lines = state_lines(&out, &addr(n, 80), "hung");
        assert!(lines.iter().all(|e| e == "down: script timeout"), "srv{n} (pool hung): {lines:?}");
    }
    check_state_lines(&out, SCRIPT_TIMEOUT_MS as f64);

    stop_furiwake_cleanly(lab.fw());
    let stopped = Instant::now();
    let gone = wait_for(Duration::from_secs(2), || procs_in_ns_matching(&lb, "sleep 30").is_empty().then_some(()));
    let left = procs_in_ns_matching(&lb, "sleep 30");
    eprintln!("`sleep 30` processes gone {:?} after furiwake stopped ({} left)", stopped.elapsed(), left.len());
    // Whatever is left would live 30 s: end it (by PID) before failing.
    for pid in &left {
        // SAFETY: kill(2) on a PID just listed in this test's own namespace.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    assert!(gone.is_some(), "scripts outlived furiwake: pids {left:?}");
}

/// Every server of a pool down (an http check on port 9, where nothing
/// listens, though nginx and a UDP responder serve the real ports): a SYN
/// to the VIP gets a RST at once, a UDP datagram an ICMP port unreachable,
/// and the worker counts them as `rejected` and `drop no-server`; nothing
/// reaches a server.
#[test]
fn all_servers_down_gets_rst_and_icmp_unreachable() {
    let Some(mut lab) = Lab::new('n', "no-server", &["nginx"]) else { return };
    for n in 1..=BACKENDS {
        lab.nginx(n);
        let r = test_script("udp_responder.py");
        lab.serve(&format!("udp-{}", name(n)), n, &["python3", r.to_str().unwrap(), "--port", "5353", "--reply", &name(n)]);
    }
    let services = format!(
        "{}\n{}\n{}\n{}\n{}",
        check("nothing", "http", "port = 9"),
        pool("web", 80, "health_check = \"nothing\""),
        pool("dns", 5353, "health_check = \"nothing\""),
        virtual_server("www", VIP, 80, "tcp", "web"),
        virtual_server("dns", VIP, 5353, "udp", "dns")
    );
    lab.start(&services);

    // Every server has failed `fall` times at least.
    let block = lab.report_until(Duration::from_secs(20), |b| health_summary(b).1 >= BACKENDS as u64 * FALL);
    let block = block.unwrap_or_else(|b| panic!("the checks did not fail {} times within 20 s:\n{b}", BACKENDS as u64 * FALL));
    for (vs, port) in [("www", 80), ("dns", 5353)] {
        for n in 1..=BACKENDS {
            assert_eq!(must_state(&block, vs, &addr(n, port)), "down", "{block}");
        }
    }
    let before = lab.report();
    let rejected0 = must(&before, "worker 0:", "rejected");
    let no_server0 = worker_drops(&before, 0).into_iter().find(|(r, _)| r == "no-server").map_or(0, |(_, n)| n);

    // What the client gets back, seen on its own interface.
    let sniff = test_script("sniff_from.py");
    let argv = ["python3", sniff.to_str().unwrap(), "--iface", "eth0", "--dst", CLIENT, "--count", "2", "--timeout", "15"];
    let mut sniffer = Proc::spawn("sniff", Some(&lab.topo.ns("client")), &argv, &lab.dir.path("sniff.log"), false);
    sniffer.expect_output("ready", Duration::from_secs(10));

    let t = Instant::now();
    let (_, out) = lab.topo.try_exec("client", &format!("curl -s -S -m 5 -o /dev/null http://{VIP}/id; echo \"exit $?\""));
    let took = t.elapsed();
    eprintln!("curl to a pool with no server up: {:?} in {took:?}", out.trim());
    assert!(out.lines().any(|l| l == "exit 7"), "curl: connection refused (exit 7) expected:\n{out}\nfuriwake:\n{}", lab.fw_output());
    assert!(took < Duration::from_secs(2), "curl refused only after {took:?}: no RST at once");

    let udp = format!(
        "import socket, time\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.connect(('{VIP}', 5353))\n\
         s.settimeout(3)\n\
         t = time.monotonic()\n\
         s.send(b'hello')\n\
         try:\n    print('answer', s.recv(1500))\n\
         except ConnectionRefusedError:\n    print('refused after %.3f s' % (time.monotonic() - t))\n\
         except socket.timeout:\n    print('no answer within 3 s')\n"
    );
    let script = lab.dir.write("udp_refused.py", &udp);
    let out = lab.topo.exec("client", &format!("python3 {}", script.display()));
    eprintln!("UDP to a pool with no server up: {}", out.trim());
    assert!(out.starts_with("refused after "), "a connected UDP socket gets ConnectionRefusedError: {out}");

    assert!(sniffer.wait(Duration::from_secs(20)).is_some_and(|s| s.success()), "the client saw no RST and ICMP error: {}", sniffer.output());
    let seen = sniffer.output();
    eprintln!("the client received:\n{seen}");
    let rst = seen.lines().find(|l| l.starts_with(&format!("tcp {VIP}:80 > {CLIENT}:"))).unwrap_or_else(|| panic!("no TCP from {VIP}:80:\n{seen}"));
    let flags = rst.split_whitespace().find_map(|w| w.strip_prefix("flags=")).unwrap_or("");
    assert!(flags.contains('R'), "the SYN was answered by {rst:?}, not a RST");
    let icmp = seen.lines().find(|l| l.starts_with("icmp ")).unwrap_or_else(|| panic!("no ICMP error:\n{seen}"));
    assert!(
        icmp.contains(" type=3 code=3 ") && icmp.contains(&format!("inner=udp {VIP}:5353 from {CLIENT}:")),
        "not a port unreachable about the datagram: {icmp:?}"
    );

    let after = lab
        .report_until(Duration::from_secs(5), |b| {
            let ns = worker_drops(b, 0).into_iter().find(|(r, _)| r == "no-server").map_or(0, |(_, n)| n);
            counter(b, "worker 0:", "rejected").unwrap_or(0) >= rejected0 + 2 && ns >= no_server0 + 2
        })
        .unwrap_or_else(|b| panic!("rejected / drop no-server did not rise by 2 (were {rejected0} / {no_server0}):\n{b}"));
    let worker = after.lines().find(|l| l.starts_with("worker 0:")).expect("worker line");
    let (fl, rj, dr) = (worker.find("; flows "), worker.find("; rejected "), worker.find("; dropped "));
    assert!(fl.is_some() && fl < rj && rj < dr, "worker line not `...; flows N; rejected N; dropped N`: {worker}");
    eprintln!("{worker}");
    for (vs, port) in [("www", 80), ("dns", 5353)] {
        for n in 1..=BACKENDS {
            assert_eq!(server_counter(&after, vs, &addr(n, port), "conns-new"), Some(0), "a down server got a connection:\n{after}");
        }
    }
    // Nothing of the client's reached a server.
    for n in 1..=BACKENDS {
        assert!(lab.access_log(n).is_empty(), "srv{n}'s nginx served the client: {:?}", lab.access_log(n));
        let log = lab.proc_output(&format!("udp-{}", name(n)));
        assert!(!log.contains(&format!("from {CLIENT}:")), "srv{n}'s UDP responder got the client's datagram:\n{log}");
    }
    check_state_lines(&lab.fw_output(), TIMEOUT_MS as f64);
    stop_furiwake_cleanly(lab.fw());
}

/// The probes' HTTP exchanges in a `tcpdump -tt -n` capture, per server
/// (`IP:PORT`), in order, those over before `cut` (seconds since the epoch):
/// milliseconds of their two legs as the wire saw them, the box's SYN to
/// the server's SYN-ACK and the box's request to the server's FIN (the
/// frame that passes an HTTP/1.0 probe). Only the probes' source ports
/// (61000-65535) count, and an exchange longer than the check's timeout
/// is not one the box passed.
fn wire_exchanges(capture: &str, cut: f64) -> BTreeMap<String, Vec<f64>> {
    #[derive(Default)]
    struct Exchange {
        syn: Option<f64>,
        synack: Option<f64>,
        request: Option<f64>,
        fin: Option<f64>,
    }
    // (server, the probe's source port)
    let mut seen: BTreeMap<(String, String), Exchange> = BTreeMap::new();
    let mut order = Vec::new();
    for line in capture.lines() {
        // 1796597701.054629 IP 198.51.100.1.61659 > 198.51.100.11.80: Flags [S], ..., length 0
        let w: Vec<&str> = line.split_whitespace().collect();
        let (Some(t), Some(&"IP"), Some(src), Some(dst), Some(flags)) = (w.first().and_then(|t| t.parse::<f64>().ok()), w.get(1), w.get(2), w.get(4), w.get(6)) else { continue };
        let (dst, flags) = (dst.trim_end_matches(':'), flags.trim_matches(|c| c == '[' || c == ']' || c == ','));
        let data = line.rsplit_once("length ").and_then(|(_, n)| n.split(|c: char| !c.is_ascii_digit()).next()).and_then(|n| n.parse::<u32>().ok()).unwrap_or(0) > 0;
        let split = |a: &str| a.rsplit_once('.').map(|(ip, port)| (ip.to_string(), port.to_string()));
        let (Some((sip, sport)), Some((dip, dport))) = (split(src), split(dst)) else { continue };
        let (out, back) = (sip == SELF_INSIDE, dip == SELF_INSIDE);
        let key = if out { (format!("{dip}:{dport}"), sport) } else { (format!("{sip}:{sport}"), dport) };
        if !(out || back) || !key.1.parse::<u16>().is_ok_and(|p| p >= 61000) {
            continue;
        }
        if out && flags == "S" && !seen.contains_key(&key) {
            order.push(key.clone());
            seen.insert(key.clone(), Exchange::default());
        }
        let Some(e) = seen.get_mut(&key) else { continue };
        let slot = match (out, flags) {
            (true, "S") => &mut e.syn,
            (true, _) if data => &mut e.request,
            (false, "S.") => &mut e.synack,
            (false, f) if f.contains('F') => &mut e.fin,
            _ => continue,
        };
        slot.get_or_insert(t);
    }
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for key in order {
        let Some(Exchange { syn: Some(syn), synack: Some(synack), request: Some(request), fin: Some(fin) }) = seen.get(&key) else { continue };
        if *fin < cut && fin - syn < 0.5 {
            out.entry(key.0).or_default().push(((synack - syn) + (fin - request)) * 1e3);
        }
    }
    out
}

/// Issue 23 item 5: one pool of 10,000 members checked over http every
/// second: the three nginx servers (port 80) and 9,997 closed ports (50
/// more addresses on srv3's interface, ports 20000 and up, refused by its
/// kernel). What the box controls is asserted, counted in probe
/// intervals rather than wall-clock speed: after `rise` intervals, plus
/// the first interval (over which the first probes are spread) and a
/// margin of three, the three are up and the closed ports down as
/// `refused`; each healthy server's RTT (an HTTP/1.0 exchange: two
/// round trips, the handshake's and the request's, timed apart) is within
/// 1 ms of the truth measured in the same run on the same probes: their
/// exchanges as the wire at the switch's side of the box's link saw them
/// (tcpdump from before the first probe; SYN to SYN-ACK plus request to
/// FIN), averaged as the box averages, plus what the box's own path adds
/// to each leg, measured meanwhile as the ping of the self IP (the worker
/// shares a CPU with the servers and waits its turn). A fourth healthy member (srv1's
/// port 8080) answers 150 ms late. Meanwhile the operator's biggest
/// command (`show health` over the 10,000) holds the control loop up
/// eight times: the answers that wait in the punt rings then are neither
/// late (the worker that received an answer stamped it; the slow
/// server's exchanges take a stall in about one of four) nor timeouts
/// (every probe of the four passes).
/// (On this shared 2-CPU machine nginx answers a probe in about 1 ms, as
/// it must take a CPU from a polling lcore, and a client in a namespace
/// that sleeps while it waits in 0.2 ms; so the truth is the probes' own
/// exchanges, not another client's. The engine's arithmetic is shown
/// exact to the microsecond by the unit test
/// `ten_thousand_servers_at_one_second`.)
#[test]
fn ten_thousand_members_at_one_second() {
    let Some(mut lab) = Lab::new('k', "10k", &["nginx", "tcpdump"]) else { return };
    for n in 1..=BACKENDS {
        lab.nginx(n);
    }
    let extra: Vec<String> = (20..70).map(|i| format!("198.51.100.{i}")).collect();
    let batch = extra.iter().map(|a| format!("addr add {a}/24 dev eth0")).collect::<Vec<_>>().join("\n");
    lab.dir.write("addrs.batch", &batch);
    let ns = lab.srv_ns(3);
    sh(&format!("ip -n {ns} -batch {}", lab.dir.path("addrs.batch").display()));
    // A fourth healthy member answers 150 ms late (a slow application
    // server): its exchanges are long enough that the control loop's
    // stalls below fall inside them.
    let slow = lab.dir.write(
        "slow.py",
        "import socket, threading, time\n\
         s = socket.socket()\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('198.51.100.11', 8080))\n\
         s.listen(128)\n\
         print('listening', flush=True)\n\
         def serve(c):\n\
         \x20   try:\n\
         \x20       c.recv(4096)\n\
         \x20       time.sleep(0.15)\n\
         \x20       c.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Length: 3\\r\\n\\r\\nOK\\n')\n\
         \x20   finally:\n\
         \x20       c.close()\n\
         while True:\n\
         \x20   c, _ = s.accept()\n\
         \x20   threading.Thread(target=serve, args=(c,), daemon=True).start()\n",
    );
    lab.serve("slow", 1, &["python3", slow.to_str().unwrap()]);
    let slow_member = "198.51.100.11:8080".to_string();
    let mut members: Vec<String> = (1..=BACKENDS).map(|n| addr(n, 80)).collect();
    members.push(slow_member.clone());
    // The healthy ones, by name.
    let healthy: Vec<(String, String)> = (1..=BACKENDS).map(|n| (name(n), addr(n, 80))).chain([("slow".to_string(), slow_member.clone())]).collect();
    'fill: for port in 20000u16.. {
        for a in &extra {
            if members.len() == 10_000 {
                break 'fill;
            }
            members.push(format!("{a}:{port}"));
        }
    }
    let rise = 2u64;
    let socket = lab.dir.path("console.sock");
    let mut services = format!("[console]\nsocket = \"{}\"\n\n[[health_check]]\nname = \"web\"\nkind = \"http\"\ninterval_ms = 1000\ntimeout_ms = 500\nfall = 1\nrise = {rise}\nrequest = \"GET /health HTTP/1.0\\r\\n\\r\\n\"\n\n[[pool]]\nname = \"big\"\nhealth_check = \"web\"\nservers = [\n", socket.display());
    for m in &members {
        services.push_str(&format!("  {{ address = \"{m}\" }},\n"));
    }
    services.push_str("]\n");
    services.push_str(&virtual_server("www", VIP, 80, "tcp", "big"));
    // The truth is taken on the wire, from before the first probe: the
    // probes' frames at the switch's side of the box's inside link.
    let wire = lab.dir.path("wire.txt");
    let argv = ["tcpdump", "-l", "-n", "-tt", "-i", "l1i", "tcp and host 198.51.100.1 and (port 80 or port 8080)"];
    let mut tcpdump = Proc::spawn("tcpdump", Some(&lab.topo.ns("sw")), &argv, &wire, false);
    tcpdump.expect_output("listening on", Duration::from_secs(10));
    lab.start(&services);
    lab.fw().expect_output("furiwake: ready", Duration::from_secs(60));
    let ready = Instant::now();

    // Up within rise intervals, plus the first (the spread) and a margin
    // of five for a loaded machine; then every probe of theirs passes.
    let intervals = rise + 1 + 5;
    let mut up_at = Vec::new();
    for (_, m) in &healthy {
        up_at.push(lab.wait_state(m, "big", true, 1, Duration::from_secs(intervals)).1);
    }
    let took = ready.elapsed();
    eprintln!("the four up {took:?} after ready ({intervals} intervals of 1 s allowed)");
    // What the box's own path adds to a round trip in this lab, measured
    // meanwhile: pings of the self IP (af_packet, the worker, the punt
    // ring, the control loop, and back), those a stall held up (over
    // 10 ms) left out.
    // On these 2 CPUs the worker shares one with nginx, tcpdump and the
    // kernel's veth work, and waits its turn for it.
    let ping_log = lab.dir.path("ping.log");
    let mut ping = Proc::spawn("ping", Some(&lab.srv_ns(2)), &["ping", "-n", "-i", "0.02", "198.51.100.1"], &ping_log, false);
    // Probing goes on for 8 s, the control loop held up meanwhile by the
    // operator's biggest command (`show health` of the 10,000: about
    // 100 ms each in this debug build), eight times a second apart: the
    // answers that wait in the punt rings meanwhile are neither late
    // (their RTTs) nor timeouts (every probe of the four passes, below).
    // The slow server's exchanges (150 ms) take a stall in about one of
    // four. (Back-to-back stalls would measure something else: the
    // console's output and its reader take the lab's other CPU from the
    // worker, whose answers then wait to be received at all.)
    for _ in 0..8 {
        let t = Instant::now();
        let (ok, rows) = console_at(&socket, "show health");
        assert!(ok && rows.lines().count() > members.len(), "show health while probing");
        eprintln!("show health held the loop {:?}", t.elapsed());
        std::thread::sleep(Duration::from_secs(1));
    }
    ping.signal(libc::SIGINT);
    assert!(ping.wait(Duration::from_secs(5)).is_some(), "ping did not stop");
    // 64 bytes from 198.51.100.1: icmp_seq=1 ttl=64 time=0.412 ms
    let pings: Vec<f64> = ping.output().lines().filter_map(|l| l.split("time=").nth(1)?.split(' ').next()?.parse().ok()).collect();
    let mut quiet: Vec<f64> = pings.iter().copied().filter(|t| *t < 10.0).collect();
    assert!(quiet.len() >= 100, "{} of {} pings of the self IP answered outside the stalls:\n{}", quiet.len(), pings.len(), ping.output());
    // Their 95th percentile: a ping that caught only a stall's edge (a
    // few of hundreds) does not move it.
    quiet.sort_by(f64::total_cmp);
    let box_path = quiet[quiet.len() * 19 / 20];
    let show = console_at(&socket, "show health").1;
    let shown = Instant::now();
    // What the box has measured up to now is in the report asked for
    // next (SIGUSR1: the next turn); the wire's exchanges are cut here.
    let cut = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let block = lab.report_until(Duration::from_secs(20), |b| b.contains("health: probes ")).expect("a report");
    tcpdump.signal(libc::SIGINT);
    assert!(tcpdump.wait(Duration::from_secs(10)).is_some(), "tcpdump did not stop");
    let exchanges = wire_exchanges(&tcpdump.output(), cut);
    let (probes, _, _) = health_summary(&block);
    let elapsed = ready.elapsed().as_secs_f64();
    let fw_pid = lab.fw.as_ref().map_or(0, Proc::pid);
    let rss = std::fs::read_to_string(format!("/proc/{fw_pid}/status")).unwrap_or_default().lines().find(|l| l.starts_with("VmRSS")).unwrap_or("VmRSS ?").to_string();
    eprintln!("{probes} probes in {elapsed:.1} s since ready; furiwake {rss}");
    // Each member probed about once a second: the engine keeps up.
    assert!(probes as f64 >= 10_000.0 * (elapsed - 3.0), "{probes} probes in {elapsed:.1} s: the engine falls behind 10,000 a second\n{}", block.lines().filter(|l| l.starts_with("health")).collect::<Vec<_>>().join("\n"));
    for ((who, m), at) in healthy.iter().zip(&up_at) {
        assert_eq!(must_state(&block, "www", m), "up", "{who}");
        // OK/FAIL-RUN: every probe since it came up passed, one a second.
        let line = show.lines().find(|l| l.starts_with(&format!("{m} "))).unwrap_or_else(|| panic!("{who} in show health:\n{show}"));
        let runs = line.split_whitespace().find(|w| w.contains('/') && w.split('/').all(|x| x.parse::<u64>().is_ok())).unwrap_or_else(|| panic!("{line}"));
        let (ok, fail) = runs.split_once('/').map(|(a, b)| (a.parse::<u64>().unwrap_or(0), b.parse::<u64>().unwrap_or(1))).unwrap_or((0, 1));
        let since = shown.duration_since(*at).as_secs();
        assert!(fail == 0 && ok + 2 >= rise + since, "{who}: {runs} runs {since} s after it came up: a probe failed or probes stopped\n{line}");
    }
    let down = members[4..].iter().filter(|m| server_state(&block, "www", m).as_deref() == Some("down")).count();
    assert_eq!(down, members.len() - 4, "every closed port is down");
    // The console answers for the whole pool while the probes run.
    let asked = Instant::now();
    let (ok, servers) = console_at(&socket, "show servers big");
    let rows = servers.lines().filter(|l| l.starts_with("big ")).count();
    eprintln!("show servers big: {rows} rows in {:?}", asked.elapsed());
    assert!(ok && rows == members.len(), "show servers big: {rows} rows\n{}", servers.lines().take(5).collect::<Vec<_>>().join("\n"));
    for m in [&members[4], &members[5000], &members[9999]] {
        let line = show.lines().find(|l| l.starts_with(&format!("{m} "))).unwrap_or_else(|| panic!("{m} in show health:\n{show}"));
        assert!(line.contains("fail: refused"), "{line}");
    }
    // A configuration change (one more closed port) while probing: taken,
    // and the servers that stay keep their state (no flap).
    let file = lab.dir.path("lb.toml");
    let text = std::fs::read_to_string(&file).expect("lb.toml");
    std::fs::write(&file, text.replacen("servers = [\n", "servers = [\n  { address = \"198.51.100.20:19999\" },\n", 1)).expect("write lb.toml");
    let asked = Instant::now();
    let (ok, reloaded) = console_at(&socket, "config reload");
    eprintln!("config reload: {} in {:?}", reloaded.trim(), asked.elapsed());
    assert!(ok && reloaded.contains("10001 servers (was 10000)"), "{reloaded}");
    std::thread::sleep(Duration::from_secs(2));
    let out = lab.fw_output();
    for (who, m) in &healthy {
        assert_eq!(state_lines(&out, m, "big").len(), 1, "{who} changed state across the reload:\n{:?}", state_lines(&out, m, "big"));
    }
    for (who, m) in &healthy {
        let rtt = server_counter(&block, "www", m, "rtt-us").unwrap_or_else(|| panic!("{who} has an rtt-us:\n{block}")) as f64 / 1e3;
        let seen = exchanges.get(m).map_or(&[][..], Vec::as_slice);
        assert!(seen.len() >= 8, "{who}: {} of its probes seen on the wire:\n{}", seen.len(), tcpdump.output());
        // The box's average of the same probes, from the first: weight
        // 0.2 for the newest, as `rtt-us`.
        let on_wire = seen.iter().skip(1).fold(seen[0], |avg, x| avg * 0.8 + x * 0.2);
        let (lo, hi) = (seen.iter().copied().fold(f64::MAX, f64::min), seen.iter().copied().fold(0.0, f64::max));
        eprintln!("{who}: probe RTT {rtt:.3} ms; on the wire {on_wire:.3} ms over {} probes (each {lo:.3} to {hi:.3}); the box's path {box_path:.3} ms a round trip", seen.len());
        // The box's two legs hold the wire's plus its own path each way
        // (a frame handed to the link; an answer to the worker that
        // stamps it), at most a round trip of it each, never less: the
        // lower bound allows for the last probe or so, which the report
        // may hold and the cut wire not. A stall counted (an answer timed
        // when the control loop took it rather than when the worker did)
        // would add up to the stall, 70-100 ms, to the slow server's.
        let truth = on_wire + 2.0 * box_path;
        assert!(rtt < truth + 1.0 && rtt > on_wire - 0.3, "{who}: RTT {rtt:.3} ms, on the wire {on_wire:.3} ms, with the box's path {truth:.3} ms");
    }
    stop_furiwake_cleanly(lab.fw());
}
