//! The operator console end to end: the real `furiwake` in the lab of
//! `scripts/netns.sh`, driven through `furiwake console -c` on its UNIX
//! socket (and once interactively through tmux), with real nginx backends
//! and curl clients.
//!
//! Lab: PREFIX-client 192.0.2.10 -- br-out -- lb-out [furiwake] lb-in --
//! br-in -- PREFIX-srvN 198.51.100.(10+N); VIP 192.0.2.100.

use furiwake_e2e::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const BACKENDS: u32 = LAB_BACKENDS;

fn addr(n: u32) -> String {
    format!("{}:80", server_ip(n))
}

/// What `furiwake console -c` did.
struct Answer {
    ok: bool,
    code: Option<i32>,
    out: String,
    err: String,
}

trait ConsoleLab: Sized {
    fn new(tag: char, name: &str, tools: &[&str]) -> Option<Self>;
    fn socket(&self) -> PathBuf;
    /// Starts furiwake with `services` and the console socket in the
    /// scratch dir.
    fn start_with_console(&mut self, services: &str);
    fn console(&self, cmd: &str) -> Answer;
    /// `console`, which must succeed; its output.
    fn show(&self, cmd: &str) -> String;
    fn try_get_id(&self) -> Result<String, String>;
    fn get_ids(&self, n: usize) -> Vec<String>;
    /// A rate-limited download of /big from the client, in the background.
    fn download(&self, rate: &str) -> (Proc, PathBuf);
    /// The client port of the client's established connection to VIP:80.
    fn download_client_port(&self) -> Option<u16>;
    /// Which backend's kernel holds an established connection from
    /// CLIENT:port.
    fn backend_of(&self, port: u16) -> Option<u32>;
}

impl ConsoleLab for Lab {
    fn new(tag: char, name: &str, tools: &[&str]) -> Option<Lab> {
        Lab::open(tag, &format!("console-{name}"), tools)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path("run/console.sock")
    }

    fn start_with_console(&mut self, services: &str) {
        let services = format!("[console]\nsocket = \"{}\"\n\n{services}", self.socket().display());
        self.start(&services);
        assert!(self.socket().exists(), "no console socket at {} after `ready`:\n{}", self.socket().display(), self.fw_output());
    }

    fn console(&self, cmd: &str) -> Answer {
        let out = Command::new(furiwake_bin())
            .args(["console", "--socket", self.socket().to_str().unwrap(), "-c", cmd])
            .output()
            .expect("run furiwake console");
        Answer {
            ok: out.status.success(),
            code: out.status.code(),
            out: String::from_utf8_lossy(&out.stdout).into_owned(),
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn show(&self, cmd: &str) -> String {
        let a = self.console(cmd);
        assert!(a.ok, "`{cmd}` failed ({:?}): {}{}\nfuriwake:\n{}", a.code, a.out, a.err, self.fw_output());
        a.out
    }

    fn try_get_id(&self) -> Result<String, String> {
        let (ok, out) = self.topo.try_exec("client", &format!("curl -s -S -m 5 http://{VIP}/id"));
        if ok {
            Ok(out.trim().to_string())
        } else {
            Err(out)
        }
    }

    fn get_ids(&self, n: usize) -> Vec<String> {
        (0..n).map(|i| self.try_get_id().unwrap_or_else(|e| panic!("request {i} failed: {e}\nfuriwake:\n{}", self.fw_output()))).collect()
    }

    fn download(&self, rate: &str) -> (Proc, PathBuf) {
        let file = self.dir.path("big.download");
        let (f, url) = (file.to_str().unwrap().to_string(), format!("http://{VIP}/big"));
        let argv = ["curl", "-s", "-S", "-m", "90", "--limit-rate", rate, "-o", &f, "-w", "%{http_code} %{size_download}\n", &url];
        (Proc::spawn("curl", Some(&self.topo.ns("client")), &argv, &self.dir.path("curl.log"), false), file)
    }

    fn download_client_port(&self) -> Option<u16> {
        let out = self.topo.try_exec("client", "ss -Htn state established").1;
        out.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if !f.contains(&format!("{VIP}:80").as_str()) {
                return None;
            }
            f.iter().find_map(|x| x.strip_prefix(&format!("{CLIENT}:"))).and_then(|p| p.parse().ok())
        })
    }

    fn backend_of(&self, port: u16) -> Option<u32> {
        (1..=BACKENDS).find(|&n| {
            let out = self.topo.try_exec(&format!("srv{n}"), "ss -Htn state established").1;
            out.lines().any(|l| l.split_whitespace().any(|x| x == format!("{CLIENT}:{port}")))
        })
    }
}

/// A pool `web` of the given servers (N, weight) and the virtual server
/// `www` on VIP:80 over it; `extra` goes into the pool.
fn www(algorithm: &str, servers: &[(u32, u32)], extra: &str) -> String {
    let list: Vec<String> = servers.iter().map(|(n, w)| format!("  {{ address = \"{}\", weight = {w} }},", addr(*n))).collect();
    format!(
        "[[pool]]\nname = \"web\"\nalgorithm = \"{algorithm}\"\n{extra}servers = [\n{}\n]\n\n[[virtual_server]]\nname = \"www\"\naddress = \"{VIP}:80\"\nprotocol = \"tcp\"\nforwarding = \"nat\"\npool = \"web\"\n",
        list.join("\n")
    )
}

/// The rows of `show servers` output for server `a`.
fn server_row(out: &str, a: &str) -> Vec<String> {
    out.lines().find(|l| l.split_whitespace().nth(1) == Some(a)).map(|l| l.split_whitespace().map(str::to_string).collect()).unwrap_or_default()
}

/// Column `col` (by header name) of `show servers` for server `a`.
fn server_col(out: &str, a: &str, col: &str) -> Option<String> {
    let head: Vec<&str> = out.lines().next()?.split_whitespace().collect();
    let i = head.iter().position(|h| *h == col)?;
    server_row(out, a).get(i).cloned()
}

/// The connection blocks of `show connections` as key -> value maps.
fn connection_entries(out: &str) -> Vec<BTreeMap<String, String>> {
    out.split("\n\n")
        .skip(1)
        .map(|block| block.lines().filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_string(), v.to_string())).collect())
        .collect()
}

/// Waits for a download's curl and checks it got all of backend N's /big.
fn expect_download(lab: &Lab, curl: &mut Proc, file: &std::path::Path, n: u32, bytes: u64) {
    let status = curl.wait(Duration::from_secs(90));
    assert!(status.is_some_and(|s| s.success()), "download failed: {}\nfuriwake:\n{}", curl.output(), lab.fw_output());
    assert_eq!(curl.output().trim(), format!("200 {bytes}"), "curl's status and size");
    assert_eq!(sha256_file(file), sha256_file(&lab.backend_dir(n).join("www/big")), "the download is not byte-identical to srv{n}'s /big");
}

// ---------------------------------------------------------------------------

/// Every show command on a lab with three healthy backends; `show
/// connections` lists a running download with its four addresses as the
/// client's and the backend's kernels see them; an operator's disable
/// survives passing health checks.
#[test]
fn show_commands_describe_the_running_lab() {
    let Some(mut lab) = Lab::new('s', "show", &["nginx", "ss"]) else { return };
    for n in 1..=BACKENDS {
        lab.start_nginx(n, 20);
    }
    let check = "[[health_check]]\nname = \"web-ok\"\nkind = \"http\"\ninterval_ms = 300\ntimeout_ms = 250\nrequest = \"GET /health HTTP/1.0\\r\\n\\r\\n\"\nexpect_body = \"OK\"\n\n";
    lab.start_with_console(&format!("{check}{}", www("round-robin", &[(1, 1), (2, 1), (3, 1)], "health_check = \"web-ok\"\n")));
    for n in 1..=BACKENDS {
        lab.fw().expect_output(&format!("health: server {} (pool web) up", addr(n)), Duration::from_secs(20));
    }

    let vs = lab.show("show virtual-servers");
    let row = vs.lines().find(|l| l.starts_with("www ")).unwrap_or_else(|| panic!("no www row:\n{vs}"));
    for want in [&format!("{VIP}:80"), "tcp", "nat", "web", "3/3"] {
        assert!(row.split_whitespace().any(|w| w == want), "{want} missing in {row:?}");
    }
    let pools = lab.show("show pools");
    let row = pools.lines().find(|l| l.starts_with("web ")).unwrap_or_else(|| panic!("no web row:\n{pools}"));
    for want in ["round-robin", "web-ok", "3/3", "www"] {
        assert!(row.split_whitespace().any(|w| w == want), "{want} missing in {row:?}");
    }
    let servers = lab.show("show servers");
    for n in 1..=BACKENDS {
        assert_eq!(server_col(&servers, &addr(n), "STATE").as_deref(), Some("up"), "{servers}");
        assert_eq!(server_col(&servers, &addr(n), "HEALTH").as_deref(), Some("up"), "{servers}");
        assert_eq!(server_col(&servers, &addr(n), "WEIGHT").as_deref(), Some("1"), "{servers}");
        assert_eq!(server_col(&servers, &addr(n), "LAST-CHECK").as_deref(), Some("ok"), "{servers}");
        assert!(server_col(&servers, &addr(n), "RTT").is_some_and(|r| r.ends_with("ms")), "{servers}");
    }
    let health = lab.show("show health");
    for n in 1..=BACKENDS {
        let line = health.lines().find(|l| l.starts_with(&addr(n))).unwrap_or_else(|| panic!("srv{n} missing:\n{health}"));
        for want in ["web", "www", "up", "web-ok", "http", "passing", "ok"] {
            assert!(line.split_whitespace().any(|w| w == want), "{want} missing in {line:?}");
        }
    }
    let routes = lab.show("show routes");
    assert!(routes.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["192.0.2.0/24", "connected", "outside", "self", SELF_OUTSIDE]), "{routes}");
    assert!(routes.lines().any(|l| l.starts_with("198.51.100.0/24 ") && l.contains("inside")), "{routes}");
    // The workers' next hops are the three servers, resolved by ARP.
    let arp = wait_for(Duration::from_secs(5), || {
        let a = lab.show("show arp");
        (1..=BACKENDS).all(|n| a.lines().any(|l| l.starts_with(&format!("{} ", server_ip(n))) && l.contains("inside") && !l.contains("unresolved"))).then_some(a)
    });
    assert!(arp.is_some(), "next hops not all resolved:\n{}", lab.show("show arp"));
    let config = lab.show("show config");
    for want in ["[platform]", "name = \"web\"", "name = \"www\"", "kind = \"http\"", "[console]", &format!("address = \"{}\"", addr(2))] {
        assert!(config.contains(want), "{want} missing in:\n{config}");
    }

    // A rate-limited download (20 MiB at 2 MiB/s) shows in the table.
    let (mut curl, file) = lab.download("2M");
    let port = wait_for(Duration::from_secs(10), || lab.download_client_port()).unwrap_or_else(|| panic!("no download connection: {}", curl.output()));
    let n = wait_for(Duration::from_secs(5), || lab.backend_of(port)).expect("a backend with the download's connection");
    let conns = lab.show("show connections");
    let entries = connection_entries(&conns);
    let client = format!("{CLIENT}:{port}");
    let e = entries.iter().find(|e| e.get("client side client address") == Some(&client)).unwrap_or_else(|| panic!("{client} missing:\n{conns}"));
    assert_eq!(e["client side server address"], format!("{VIP}:80"), "{conns}");
    assert_eq!(e["server side client address"], client, "NAT keeps the client's address: {conns}");
    assert_eq!(e["server side server address"], addr(n), "the backend whose kernel has it: {conns}");
    assert_eq!(e["virtual address"], format!("{VIP}:80"));
    assert_eq!(e["node address"], addr(n));
    assert_eq!(e["protocol"], "tcp");
    assert_eq!(e["state"], "ESTABLISHED");
    assert!(e["idle"].ends_with("timeout: 900 s"), "{conns}");
    assert!(e["virtual server"].starts_with("www (pool web)"), "{conns}");
    // Filters.
    let only = lab.show(&format!("show connections vip {VIP}:80 server {} limit 1", addr(n)));
    assert!(only.starts_with("1 connection(s)"), "{only}");
    let none = lab.show(&format!("show connections server {}", server_ip(n % 3 + 1)));
    assert!(none.starts_with("0 connection(s)"), "{none}");

    // Rates need two samples a second apart: the download's bytes show.
    std::thread::sleep(Duration::from_millis(1200));
    let st = lab.show("show stats");
    let www_row = st.lines().find(|l| l.starts_with("www ")).unwrap_or_else(|| panic!("no www row:\n{st}"));
    let bps = www_row.split_whitespace().nth(2).unwrap_or("0");
    assert!(bps.ends_with('M') || bps.ends_with('k'), "a 2 MiB/s download is megabits per second, got {bps:?}:\n{st}");
    for want in ["outside", "inside", &format!("www {}", addr(n)), "DROP-REASON"] {
        assert!(st.contains(want) || (want == "DROP-REASON" && st.contains("drops: none")), "{want} missing:\n{st}");
    }
    let workers = lab.show("show workers");
    let w0 = workers.lines().find(|l| l.starts_with("0 ")).unwrap_or_else(|| panic!("no worker 0:\n{workers}"));
    let cols: Vec<&str> = w0.split_whitespace().collect();
    assert_eq!(cols[1], "1", "lcore 1: {w0}");
    assert!(cols[2].parse::<u64>().unwrap() > 1000, "rx packets: {w0}");
    assert!(cols[5].ends_with('%'), "busy ratio: {w0}");
    expect_download(&lab, &mut curl, &file, n, 20 * 1048576);

    // An operator's disable survives passing checks (many probe rounds).
    let victim = addr(1);
    let said = lab.show(&format!("server web {victim} disable"));
    assert!(said.contains("disabled (was enabled)"), "{said}");
    lab.fw().expect_output(&format!("admin: server {victim} (pool web) disabled"), Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(1500));
    let servers = lab.show("show servers web");
    assert_eq!(server_col(&servers, &victim, "STATE").as_deref(), Some("disabled"), "{servers}");
    assert_eq!(server_col(&servers, &victim, "HEALTH").as_deref(), Some("up"), "{servers}");
    let ids = lab.get_ids(8);
    assert!(!ids.contains(&"srv1".to_string()), "a disabled server got new connections: {ids:?}");
    assert!(lab.show(&format!("server web {victim} enable")).contains("enabled (was disabled)"));
    let ids = lab.get_ids(6);
    assert_eq!(ids.iter().filter(|i| *i == "srv1").count(), 2, "enabled again, it takes its turn: {ids:?}");
    assert!(lab.show("show config").contains(&format!("#   server {victim} (pool web) disabled")));
    stop_furiwake_cleanly(lab.fw());
}

/// Draining the server of a 50 MiB download: the download completes
/// byte-identical, new connections avoid the server meanwhile.
#[test]
fn drain_keeps_the_download_and_steers_new_connections() {
    let Some(mut lab) = Lab::new('n', "drain", &["nginx", "ss"]) else { return };
    for n in 1..=BACKENDS {
        lab.start_nginx(n, 50);
    }
    lab.start_with_console(&format!("{}\n{QUICK_CLOSE}", www("round-robin", &[(1, 1), (2, 1), (3, 1)], "")));
    let (mut curl, file) = lab.download("8M");
    let port = wait_for(Duration::from_secs(10), || lab.download_client_port()).unwrap_or_else(|| panic!("no download connection: {}", curl.output()));
    let entries = connection_entries(&lab.show("show connections"));
    let node = entries
        .iter()
        .find(|e| e.get("client side client address") == Some(&format!("{CLIENT}:{port}")))
        .map(|e| e["node address"].clone())
        .expect("the download's entry");
    let n = (1..=BACKENDS).find(|n| addr(*n) == node).expect("a lab backend");
    assert_eq!(lab.backend_of(port), Some(n), "the table and the backend's kernel agree");

    let said = lab.show(&format!("server web {node} drain"));
    assert!(said.contains("draining (was enabled); 1 active connection(s) continue"), "{said}");
    lab.fw().expect_output(&format!("admin: server {node} (pool web) draining"), Duration::from_secs(2));
    let servers = lab.show("show servers");
    assert_eq!(server_col(&servers, &node, "STATE").as_deref(), Some("draining"), "{servers}");
    assert_eq!(server_col(&servers, &node, "ACTIVE").as_deref(), Some("1"), "{servers}");
    let started = Instant::now();
    let mut ids = Vec::new();
    while curl.is_running() && ids.len() < 30 {
        ids.push(lab.try_get_id().unwrap_or_else(|e| panic!("request failed while draining: {e}")));
    }
    assert!(ids.len() >= 6, "only {} requests while the download ran", ids.len());
    assert!(!ids.contains(&format!("srv{n}")), "new connections reached the draining srv{n}: {ids:?}");
    eprintln!("{} requests in {:?}, none to srv{n}", ids.len(), started.elapsed());
    expect_download(&lab, &mut curl, &file, n, 50 * 1048576);
    assert!(lab.show("show config").contains(&format!("#   server {node} (pool web) draining")));
    // Removed after the download: once the closed connection's entry has
    // expired (1 s timeouts here), no entry refers to it.
    let said = lab.show(&format!("pool web remove-server {node}"));
    assert!(said.contains(&format!("server {node} (pool web) removed")), "{said}");
    let gone = wait_for(Duration::from_secs(10), || {
        Some(()).filter(|_| connection_entries(&lab.show(&format!("show connections server {node}"))).is_empty() && server_row(&lab.show("show servers"), &node).is_empty())
    });
    assert!(gone.is_some(), "entries still refer to {node}:\n{}", lab.show("show connections"));
    assert!(!lab.report().contains(&format!("server {node}:")));
    stop_furiwake_cleanly(lab.fw());
}

/// weights 1:1, then one set to 3 at run time: the next 40 connections go
/// 30:10, while a download started before continues to the end.
#[test]
fn weight_change_applies_to_new_connections() {
    let Some(mut lab) = Lab::new('g', "weight", &["nginx", "ss"]) else { return };
    for n in 1..=2 {
        lab.start_nginx(n, 20);
    }
    lab.start_with_console(&www("weighted-round-robin", &[(1, 1), (2, 1)], ""));
    let ids = lab.get_ids(10);
    assert_eq!(tally(&ids), [("srv1".to_string(), 5), ("srv2".to_string(), 5)].into_iter().collect(), "{ids:?}");
    let (mut curl, file) = lab.download("4M");
    let port = wait_for(Duration::from_secs(10), || lab.download_client_port()).unwrap_or_else(|| panic!("no download connection: {}", curl.output()));
    let n = wait_for(Duration::from_secs(5), || lab.backend_of(port)).expect("a backend with the download");

    let said = lab.show(&format!("server web {} weight 3", server_ip(1)));
    assert!(said.contains(&format!("server {} (pool web) weight 3 (was 1)", addr(1))), "{said}");
    lab.fw().expect_output(&format!("admin: server {} (pool web) weight 3 (was 1)", addr(1)), Duration::from_secs(2));
    let ids = lab.get_ids(40);
    assert!(curl.is_running(), "the download should outlast the 40 requests");
    assert_eq!(tally(&ids), [("srv1".to_string(), 30), ("srv2".to_string(), 10)].into_iter().collect(), "{ids:?}");
    let servers = lab.show("show servers");
    assert_eq!(server_col(&servers, &addr(1), "WEIGHT").as_deref(), Some("3"), "{servers}");
    assert!(lab.show("show config").contains(&format!("{{ address = \"{}\", weight = 3,", addr(1))));
    expect_download(&lab, &mut curl, &file, n, 20 * 1048576);
    // Same weight again: nothing to do, said so.
    assert!(lab.show(&format!("server web {} weight 3", addr(1))).contains("already 3"));
    stop_furiwake_cleanly(lab.fw());
}

/// Unknown commands and objects: non-zero exit, a clear message, nothing
/// changed. No appliance at the socket: a clear message too.
#[test]
fn bad_commands_and_objects_fail_clearly() {
    let Some(mut lab) = Lab::new('b', "bad", &[]) else { return };
    lab.start_with_console(&www("round-robin", &[(1, 1), (2, 1), (3, 1)], ""));
    let cases = [
        ("frobnicate", "unknown command \"frobnicate\""),
        ("show colours", "unknown show command \"colours\""),
        ("server web 198.51.100.99:80 drain", "pool web has no server 198.51.100.99:80"),
        ("server nopool 198.51.100.11:80 drain", "no pool named \"nopool\" (pools: web)"),
        ("server web 198.51.100.11:80 explode", "unknown server action \"explode\""),
        ("server web 198.51.100.11:80 weight many", "weight \"many\": expected a number"),
        ("show virtual-servers nosuch", "no virtual server named \"nosuch\""),
        ("show servers nopool", "no pool named \"nopool\""),
        ("show connections limit 0", "limit \"0\""),
    ];
    for (cmd, want) in cases {
        let a = lab.console(cmd);
        assert_eq!(a.code, Some(1), "`{cmd}` should fail with status 1: out {:?} err {:?}", a.out, a.err);
        assert!(a.err.contains(want), "`{cmd}`: expected {want:?} in {:?}", a.err);
        assert!(a.err.starts_with("error: "), "{:?}", a.err);
    }
    let servers = lab.show("show servers");
    for n in 1..=BACKENDS {
        assert_eq!(server_col(&servers, &addr(n), "STATE").as_deref(), Some("up"), "{servers}");
    }
    assert!(!lab.show("show config").contains("changed at run time"));
    assert_eq!(lab.fw_output().matches("admin: ").count(), 0, "{}", lab.fw_output());
    let help = lab.show("help server");
    assert!(help.contains("drain") && help.contains("forced offline"), "{help}");
    let nowhere = Command::new(furiwake_bin()).args(["console", "--socket", "/nonexistent/x.sock", "-c", "show pools"]).output().unwrap();
    assert_eq!(nowhere.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("cannot connect to the console at /nonexistent/x.sock"));
    let out = stop_furiwake_cleanly(lab.fw());
    assert!(!lab.socket().exists(), "socket left behind at exit:\n{out}");
}

/// A tmux server of our own (`-L NAME`), killed by its socket on drop.
struct Tmux(String);

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-L").arg(&self.0).args(args).output().expect("tmux");
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn keys(&self, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", "fw"];
        a.extend_from_slice(keys);
        self.run(&a);
    }
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "fw", "-S", "-200"])
    }
    /// Waits (5 s) until the screen satisfies `f`.
    fn expect(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        wait_for(Duration::from_secs(5), || Some(self.screen()).filter(|s| f(s))).unwrap_or_else(|| panic!("{what}; screen:\n{}", self.screen()))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.0, "kill-server"]).output();
    }
}

/// An interactive session: help, tab completion of commands and object
/// names, an error for a bad command.
#[test]
fn interactive_session_through_tmux() {
    let Some(mut lab) = Lab::new('i', "tmux", &["tmux"]) else { return };
    lab.start_with_console(&www("round-robin", &[(1, 1), (2, 1), (3, 1)], ""));
    let tmux = Tmux(format!("fw-{}", lab.topo.prefix));
    let cmd = format!("{} console --socket {}", furiwake_bin().display(), lab.socket().display());
    let home = format!("HOME={}", lab.dir.0.display());
    tmux.run(&["new-session", "-d", "-s", "fw", "-x", "160", "-y", "50", "-e", &home, "-e", "TERM=xterm", &cmd]);
    tmux.expect("no prompt", |s| s.contains("furiwake>"));

    tmux.keys(&["help", "Enter"]);
    tmux.expect("help lists the commands", |s| s.contains("show connections [vip ADDR] [server ADDR] [limit N]") && s.contains("POOL ADDR drain"));

    tmux.keys(&["C-l"]);
    tmux.keys(&["show vi", "Tab"]);
    tmux.expect("command completion", |s| s.lines().any(|l| l.trim_end() == "furiwake> show virtual-servers"));
    tmux.keys(&["Enter"]);
    tmux.expect("show virtual-servers output", |s| s.lines().any(|l| l.starts_with("www ") && l.contains(&format!("{VIP}:80"))));

    tmux.keys(&["C-l"]);
    tmux.keys(&["server w", "Tab"]);
    tmux.expect("pool name completion", |s| s.lines().any(|l| l.trim_end() == "furiwake> server web"));
    tmux.keys(&["198.51.100.1", "Tab", "Tab"]);
    tmux.expect("server address candidates", |s| (1..=BACKENDS).all(|n| s.contains(&addr(n))));
    tmux.keys(&["3", "Tab"]);
    tmux.expect("unique address completes", |s| s.lines().any(|l| l.trim_end() == format!("furiwake> server web {}", addr(3))));
    tmux.keys(&["dr", "Tab", "Enter"]);
    tmux.expect("drain done", |s| s.contains(&format!("server {} (pool web) draining (was enabled)", addr(3))));

    tmux.keys(&["frobnicate", "Enter"]);
    tmux.expect("error for a bad command", |s| s.contains("error: unknown command \"frobnicate\""));
    // History: Up brings the last command back.
    tmux.keys(&["Up"]);
    tmux.expect("history", |s| s.lines().filter(|l| l.trim_end() == "furiwake> frobnicate").count() >= 2);
    tmux.keys(&["C-u", "quit", "Enter"]);
    wait_for(Duration::from_secs(5), || {
        let out = Command::new("tmux").args(["-L", &tmux.0, "has-session", "-t", "fw"]).output().ok()?;
        (!out.status.success()).then_some(())
    })
    .unwrap_or_else(|| panic!("quit did not end the session:\n{}", tmux.screen()));
    assert!(lab.show("show servers").contains("draining"));
    stop_furiwake_cleanly(lab.fw());
}

/// `[console] device = "stdio"`: commands on stdin, answers on stdout
/// among the appliance's own lines, errors as `error: ...`.
#[test]
fn stdio_console_answers_line_commands() {
    let Some(mut lab) = Lab::new('t', "stdio", &[]) else { return };
    let services = format!("[console]\nsocket = \"\"\ndevice = \"stdio\"\n\n{}", www("round-robin", &[(1, 2), (2, 1)], ""));
    let config = format!("{}\n{LAB_INTERFACES}\n{services}", platform_section(&lab.prefix));
    let cfg = lab.dir.write("lb.toml", &config);
    let bin = furiwake_bin();
    let argv = ["ip", "netns", "exec", &lab.topo.ns("lb"), bin.to_str().unwrap(), "run", "--config", cfg.to_str().unwrap()];
    let mut fw = Proc::spawn("furiwake", None, &argv, &lab.dir.path("furiwake.log"), true);
    fw.set_runtime_dir(&lab.prefix);
    fw.expect_output("furiwake: ready", Duration::from_secs(30));
    fw.send_line("show servers");
    let out = fw.expect_output(&format!("web   {}", addr(2)), Duration::from_secs(5));
    assert!(out.lines().any(|l| l.starts_with(&format!("web   {}  up ", addr(1)))), "{out}");
    fw.send_line("server web 198.51.100.12 drain");
    fw.expect_output(&format!("admin: server {} (pool web) draining", addr(2)), Duration::from_secs(5));
    fw.send_line("frobnicate");
    fw.expect_output("error: unknown command \"frobnicate\"", Duration::from_secs(5));
    lab.fw = Some(fw);
    stop_furiwake_cleanly(lab.fw());
}

// ---------------------------------------------------------------------------
// Configuration changes at run time: servers and virtual servers added and
// removed, `config reload` and `config save`, under load.

/// wrk from the client against VIP:80 with a new connection per request,
/// in the background.
fn wrk(lab: &Lab, seconds: u32) -> Proc {
    let argv = ["wrk", "-t1", "-c8", &format!("-d{seconds}s"), "-H", "Connection: close", &format!("http://{VIP}/id")];
    Proc::spawn("wrk", Some(&lab.topo.ns("client")), &argv, &lab.dir.path("wrk.log"), false)
}

/// Waits for wrk and checks it saw no failed request; the requests made.
fn wrk_done_without_errors(lab: &Lab, p: &mut Proc) -> u64 {
    assert!(p.wait(Duration::from_secs(60)).is_some_and(|s| s.success()), "wrk failed: {}", p.output());
    let out = p.output();
    assert!(!out.contains("Socket errors"), "wrk saw socket errors:\n{out}\nfuriwake:\n{}", lab.fw_output());
    assert!(!out.contains("Non-2xx"), "wrk saw failed responses:\n{out}");
    let requests = out.lines().find_map(|l| l.trim().split_once(" requests in ").and_then(|(n, _)| n.parse::<u64>().ok()));
    let requests = requests.unwrap_or_else(|| panic!("no request count in wrk's output:\n{out}"));
    assert!(requests > 100, "wrk made only {requests} requests:\n{out}");
    eprintln!("wrk: {requests} requests, no errors");
    requests
}

/// Requests backend N answered (its access log, without health probes).
fn served(lab: &Lab, n: u32) -> usize {
    lab.nginx_access_log(n).iter().filter(|l| l.contains("GET /id")).count()
}

/// Short closing timeouts, so that entries of finished connections go
/// within a second or two.
const QUICK_CLOSE: &str = "[timeouts]\ntcp_fin = 1\ntcp_time_wait = 1\ntcp_close = 1\n";

/// Under wrk (a new connection per request): a server added to the pool
/// takes new connections, one drained then removed stops taking them, and
/// wrk sees no failed request. Once its connections are gone, nothing
/// refers to the removed server.
#[test]
fn servers_added_and_removed_under_load_without_a_failed_request() {
    let Some(mut lab) = Lab::new('a', "addremove", &["nginx", "wrk"]) else { return };
    for n in 1..=BACKENDS {
        lab.start_nginx(n, 0);
    }
    lab.start_with_console(&format!("{}\n{QUICK_CLOSE}", www("round-robin", &[(1, 1), (2, 1)], "")));
    let mut load = wrk(&lab, 8);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(served(&lab, 3), 0, "srv3 is not in the pool yet");

    let said = lab.show(&format!("pool web add-server {} weight 1", addr(3)));
    assert!(said.contains(&format!("server {} (pool web) added", addr(3))), "{said}");
    lab.fw().expect_output(&format!("admin: server {} (pool web) added", addr(3)), Duration::from_secs(2));
    std::thread::sleep(Duration::from_secs(2));
    let srv3 = served(&lab, 3);
    assert!(srv3 > 0, "the added server got no connection");

    lab.show(&format!("server web {} drain", addr(1)));
    std::thread::sleep(Duration::from_millis(500));
    let said = lab.show(&format!("pool web remove-server {}", addr(1)));
    assert!(said.contains(&format!("server {} (pool web) removed", addr(1))), "{said}");
    std::thread::sleep(Duration::from_millis(300));
    let srv1_at_removal = served(&lab, 1);
    let requests = wrk_done_without_errors(&lab, &mut load);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(served(&lab, 1), srv1_at_removal, "the removed server got new connections");
    assert!(served(&lab, 3) > srv3, "the added server kept getting connections");
    eprintln!("srv1 {} srv2 {} srv3 {} of {requests}", served(&lab, 1), served(&lab, 2), served(&lab, 3));

    // Its entries expire (1 s timeouts), then nothing refers to srv1.
    let gone = wait_for(Duration::from_secs(10), || {
        let conns = lab.show(&format!("show connections server {}", addr(1)));
        let servers = lab.show("show servers");
        Some(()).filter(|_| connection_entries(&conns).is_empty() && server_row(&servers, &addr(1)).is_empty())
    });
    assert!(gone.is_some(), "srv1 still referred to:\n{}\n{}", lab.show(&format!("show connections server {}", addr(1))), lab.show("show servers"));
    let block = lab.report();
    assert!(!block.contains(&format!("server {}:", addr(1))), "the report still lists srv1:\n{block}");
    assert!(lab.show("show config").contains(&addr(3)) && !lab.show("show config").contains(&format!("\"{}\"", addr(1))));
    stop_furiwake_cleanly(lab.fw());
}

/// A virtual server added at run time answers (ARP included) and, removed,
/// stops: new connections are refused by the network (nothing answers ARP
/// for a removed VIP any more after the neighbour entry ages — here the
/// client's SYN reaches the box and finds no virtual server).
#[test]
fn virtual_servers_added_and_removed_at_run_time() {
    let Some(mut lab) = Lab::new('v', "vsaddremove", &["nginx"]) else { return };
    for n in 1..=BACKENDS {
        lab.start_nginx(n, 0);
    }
    lab.start_with_console(&format!("{}\n{QUICK_CLOSE}", www("round-robin", &[(1, 1), (2, 1), (3, 1)], "")));
    let (ok, _) = lab.topo.try_exec("client", "curl -s -m 2 http://192.0.2.101/id");
    assert!(!ok, "nothing serves 192.0.2.101 yet");
    let said = lab.show("virtual-server add api 192.0.2.101:80 web tcp full-nat");
    assert!(said.contains("virtual-server api added: 192.0.2.101:80 tcp full-nat pool web"), "{said}");
    let ids: Vec<String> = (0..6)
        .map(|_| {
            let (ok, out) = lab.topo.try_exec("client", "curl -s -S -m 5 http://192.0.2.101/id");
            assert!(ok, "{out}\n{}", lab.fw_output());
            out.trim().to_string()
        })
        .collect();
    assert_eq!(tally(&ids).len(), 3, "the new virtual server spreads over the pool: {ids:?}");
    assert!(lab.show("show virtual-servers").contains("api"));
    let said = lab.show("virtual-server remove api");
    assert!(said.contains("virtual-server api removed"), "{said}");
    let (ok, _) = lab.topo.try_exec("client", "curl -s -m 2 http://192.0.2.101/id");
    assert!(!ok, "a removed virtual server still answers");
    assert!(!lab.show("show virtual-servers").contains("api"));
    // www never noticed.
    assert_eq!(lab.get_ids(3).len(), 3);
    let bad = lab.console("virtual-server remove api");
    assert_eq!(bad.code, Some(1), "{} {}", bad.out, bad.err);
    assert!(bad.err.contains("no virtual server named \"api\"") || bad.out.contains("no virtual server named \"api\""), "{} {}", bad.out, bad.err);
    stop_furiwake_cleanly(lab.fw());
}

/// `config reload` with a broken file: refused with the file's line and
/// reason, nothing changed, traffic unaffected; with a good file: applied
/// (a server added) without a failed request. `config save` writes what
/// runs, and check-config accepts it.
#[test]
fn config_reload_refuses_a_broken_file_and_applies_a_good_one() {
    let Some(mut lab) = Lab::new('r', "reload", &["nginx", "wrk"]) else { return };
    for n in 1..=BACKENDS {
        lab.start_nginx(n, 0);
    }
    let services = format!("{}\n{QUICK_CLOSE}", www("round-robin", &[(1, 1), (2, 1)], ""));
    lab.start_with_console(&services);
    let file = lab.dir.path("lb.toml");
    let good = std::fs::read_to_string(&file).unwrap();
    let mut load = wrk(&lab, 6);
    std::thread::sleep(Duration::from_secs(1));

    // Broken: a weight that is not a number.
    let broken = good.replacen(&format!("{{ address = \"{}\", weight = 1 }}", addr(2)), &format!("{{ address = \"{}\", weight = \"heavy\" }}", addr(2)), 1);
    assert_ne!(broken, good);
    let line = broken.lines().position(|l| l.contains("heavy")).unwrap() + 1;
    std::fs::write(&file, &broken).unwrap();
    let a = lab.console("config reload");
    assert_eq!(a.code, Some(1), "a broken file must be refused: {}{}", a.out, a.err);
    let msg = format!("{}{}", a.out, a.err);
    assert!(msg.contains(&format!("lb.toml:{line}:")), "the message names the line ({line}): {msg}");
    assert!(msg.contains("nothing changed"), "{msg}");
    assert_eq!(server_col(&lab.show("show servers"), &addr(2), "WEIGHT").as_deref(), Some("1"));

    // Good: srv3 added.
    let added = good.replacen(
        &format!("{{ address = \"{}\", weight = 1 }},", addr(2)),
        &format!("{{ address = \"{}\", weight = 1 }},\n  {{ address = \"{}\", weight = 1 }},", addr(2), addr(3)),
        1,
    );
    assert_ne!(added, good);
    std::fs::write(&file, &added).unwrap();
    let said = lab.show("config reload");
    assert!(said.contains("config reloaded from") && said.contains("1 virtual servers (was 1), 3 servers (was 2)"), "{said}");
    lab.fw().expect_output("admin: config reloaded from", Duration::from_secs(2));
    wrk_done_without_errors(&lab, &mut load);
    assert!(served(&lab, 3) > 0, "the server the reload added got no connection");

    // A platform change needs a restart: refused, nothing changed.
    std::fs::write(&file, added.replace("idle_sleep_us = 20", "idle_sleep_us = 30")).unwrap();
    let a = lab.console("config reload");
    assert_eq!(a.code, Some(1), "{}{}", a.out, a.err);
    assert!(format!("{}{}", a.out, a.err).contains("[platform] changed"), "{}{}", a.out, a.err);

    // Save: what runs, valid.
    let saved = lab.dir.path("saved.toml");
    lab.show(&format!("pool web add-server {}:8080", server_ip(3)));
    let said = lab.show(&format!("config save {}", saved.display()));
    assert!(said.contains("config saved to"), "{said}");
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(text.contains(&format!("{}:8080", server_ip(3))) && text.contains(&addr(3)), "{text}");
    let check = Command::new(furiwake_bin()).args(["check-config", saved.to_str().unwrap()]).output().unwrap();
    assert!(check.status.success(), "the saved file does not pass check-config: {}", String::from_utf8_lossy(&check.stderr));
    stop_furiwake_cleanly(lab.fw());
}

/// Secrets (review finding S6): `show config` prints the `[sync]` key
/// only as a fingerprint, and neither it nor the appliance's output holds
/// the key; `config save` writes the real key to a file of mode 0600
/// (atomically: no temporary file left) that check-config accepts and
/// `config reload` reads back; a target outside the configuration's
/// directory, through `..` or a symbolic link is refused and nothing is
/// written there.
#[test]
fn show_config_hides_the_sync_key_and_config_save_writes_it_0600() {
    use std::os::unix::fs::PermissionsExt;
    const KEY: &str = "5f0d7c2a91e84b36d2a7c1e9053fb8646e1d92ac37b05f48e9c2d71a06b3f58e";
    let Some(mut lab) = Lab::new('K', "secrets", &["nginx"]) else { return };
    for n in 1..=BACKENDS {
        lab.start_nginx(n, 0);
    }
    // No peer answers: the sync datagrams go nowhere, the key is all that
    // matters here.
    let sync = format!("[sync]\ninterface = \"inside\"\npeer = \"198.51.100.4\"\nkey = \"{KEY}\"\n");
    lab.start_with_console(&format!("{}\n{sync}", www("round-robin", &[(1, 1), (2, 1)], "")));
    let file = lab.dir.path("lb.toml");
    assert!(std::fs::read_to_string(&file).unwrap().contains(KEY));

    let shown = lab.show("show config");
    assert!(!shown.contains(KEY) && !shown.contains(&KEY[..16]), "show config shows the key:\n{shown}");
    assert!(shown.contains("key = \"<redacted sha256:"), "{shown}");
    eprintln!("show config: {}", shown.lines().find(|l| l.starts_with("key = ")).unwrap_or_default());

    // A run-time change, then save to the configuration file itself.
    lab.show(&format!("server web {} weight 3", addr(2)));
    let said = lab.show("config save");
    assert!(said.contains("config saved to"), "{said}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(&format!("key = \"{KEY}\"")), "the saved file lacks the key:\n{text}");
    assert!(text.contains(&format!("{{ address = \"{}\", weight = 3", addr(2))), "{text}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the saved file's mode is {mode:o}");
    let leftovers: Vec<String> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".lb.toml.") || n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let check = Command::new(furiwake_bin()).args(["check-config", file.to_str().unwrap()]).output().unwrap();
    assert!(check.status.success(), "the saved file does not pass check-config: {}", String::from_utf8_lossy(&check.stderr));
    let said = lab.show("config reload");
    assert!(said.contains("config reloaded from"), "{said}");

    // Refused targets: nothing written.
    let outside = std::env::temp_dir().join(format!("furiwake-secrets-{}.toml", std::process::id()));
    let victim = lab.dir.path("victim");
    std::fs::write(&victim, "untouched").unwrap();
    std::os::unix::fs::symlink(&victim, lab.dir.path("link.toml")).unwrap();
    let dotdot = format!("{}/../x.toml", file.parent().unwrap().display());
    for (target, why) in [(outside.to_str().unwrap(), "not directly in the save directory"), (dotdot.as_str(), "`..` is not allowed"), ("link.toml", "is a symbolic link"), ("victim", "only a NAME.toml")] {
        let a = lab.console(&format!("config save {target}"));
        assert_eq!(a.code, Some(1), "config save {target}: {}{}", a.out, a.err);
        assert!(format!("{}{}", a.out, a.err).contains(why), "config save {target}: {}{}", a.out, a.err);
    }
    assert!(!outside.exists());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");

    stop_furiwake_cleanly(lab.fw());
    assert!(!lab.fw_output().contains(KEY), "the appliance's output holds the key");
}
