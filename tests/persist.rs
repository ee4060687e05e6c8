//! Persistence end to end: the real `furiwake` binary with two workers (so
//! the record's owner worker matters), real nginx backends, curl from
//! several client addresses.
//!
//! Lab: PREFIX-client 192.0.2.10 (and .11-.16 added here) -- br-out --
//! lb-out [furiwake] lb-in -- br-in -- PREFIX-srvN 198.51.100.(10+N).

use furiwake_e2e::*;
use std::collections::BTreeSet;

/// Client addresses: .10 is the lab's, the others are added.
const CLIENTS: [&str; 7] = ["192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.13", "192.0.2.14", "192.0.2.15", "192.0.2.16"];

fn web_pool() -> String {
    let mut s = String::from("[[pool]]\nname = \"web\"\nalgorithm = \"round-robin\"\nservers = [\n");
    for n in 1..=LAB_BACKENDS {
        s.push_str(&format!("  {{ address = \"{}:80\" }},\n", server_ip(n)));
    }
    s + "]\n"
}

/// Opens the lab with nginx backends and extra client addresses, and starts
/// furiwake with two workers (lcores 1 and 2 sharing CPU 1, two queue pairs
/// per port, so packets reach workers that do not own them) and `services`.
fn lab(tag: char, name: &str, services: &str) -> Option<Lab> {
    lab_with(tag, name, services, 0)
}

/// `lab`, with a `big_mb` MiB /big on every backend.
fn lab_with(tag: char, name: &str, services: &str, big_mb: u32) -> Option<Lab> {
    let mut lab = Lab::open(tag, &format!("persist-{name}"), &["nginx"])?;
    for n in 1..=LAB_BACKENDS {
        lab.start_nginx(n, big_mb);
    }
    for c in &CLIENTS[1..] {
        lab.topo.exec("client", &format!("ip addr add {c}/24 dev eth0"));
    }
    let (platform, interfaces) = two_worker_sections(&lab.prefix);
    let console = format!("[console]\nsocket = \"{}\"\n", lab.dir.path("console.sock").display());
    lab.start_config(&format!("{platform}\n{interfaces}\n{console}\n{}\n{services}", web_pool()));
    Some(lab)
}

/// `curl http://URL_HOST/id` from client address `from`: which backend
/// answered.
fn id(lab: &Lab, from: &str, host: &str) -> String {
    let (ok, out) = lab.topo.try_exec("client", &format!("curl -s -S -m 10 --interface {from} http://{host}/id"));
    assert!(ok, "{from} -> http://{host}/id failed: {out}\nfuriwake:\n{}", lab.fw_output());
    out.trim().to_string()
}

/// Sums `key` over the per-worker `  persistence:` lines of a report.
fn persistence_sum(block: &str, key: &str) -> u64 {
    block.lines().filter(|l| l.starts_with("  persistence:")).filter_map(|l| counter(l, "  persistence:", key)).sum()
}

/// `source-ip` persistence keeps one client on one server over 50
/// connections, while a client of a service without persistence is spread
/// over the servers; under a /24 netmask every client of the /24 shares one
/// server.
#[test]
fn source_ip_persistence_keeps_a_client_while_another_is_spread() {
    let services = r#"
[[virtual_server]]
name = "shop"
address = "192.0.2.100:80"
pool = "web"
persistence = { kind = "source-ip", timeout_s = 60 }

[[virtual_server]]
name = "plain"
address = "192.0.2.101:80"
forwarding = "full-nat"
pool = "web"

[[virtual_server]]
name = "office"
address = "192.0.2.102:80"
forwarding = "full-nat"
pool = "web"
persistence = { kind = "source-ip", netmask = "255.255.255.0", timeout_s = 60 }
"#;
    let Some(mut lab) = lab('p', "sourceip", services) else { return };

    let a: Vec<String> = (0..50).map(|_| id(&lab, CLIENTS[0], VIP)).collect();
    assert_eq!(tally(&a).len(), 1, "client {} moved between servers over 50 connections: {:?}", CLIENTS[0], tally(&a));

    let b: Vec<String> = (0..30).map(|_| id(&lab, CLIENTS[1], "192.0.2.101")).collect();
    let spread = tally(&b);
    assert_eq!(spread.len(), 3, "without persistence client {} reaches every server: {spread:?}", CLIENTS[1]);

    // Five more clients on the persistent VIP: each sticks to one server,
    // and the records are spread (each worker's round robin moves on with
    // every record it makes).
    let mut homes = BTreeSet::from([a[0].clone()]);
    for c in &CLIENTS[2..] {
        let answers: Vec<String> = (0..10).map(|_| id(&lab, c, VIP)).collect();
        assert_eq!(tally(&answers).len(), 1, "client {c} moved: {:?}", tally(&answers));
        homes.insert(answers[0].clone());
    }
    assert!(homes.len() >= 2, "six clients, one server: {homes:?}");

    // Under a /24 netmask all seven clients are one.
    let office: Vec<String> = CLIENTS.iter().flat_map(|c| (0..4).map(move |_| *c)).map(|c| id(&lab, c, "192.0.2.102")).collect();
    assert_eq!(tally(&office).len(), 1, "one /24, one server: {:?}", tally(&office));

    let block = lab.report();
    assert_eq!(must(&block, "virtual-server shop:", "conns-new"), 50 + 50);
    assert_eq!(must(&block, "virtual-server office:", "conns-new"), 28);
    // Records: 6 clients of `shop`, one /24 of `office`.
    assert_eq!(persistence_sum(&block, "records-made"), 6 + 1, "{block}");
    assert_eq!(persistence_sum(&block, "persisted"), (100 - 6) + (28 - 1), "{block}");
    assert_eq!(persistence_sum(&block, "evicted"), 0, "{block}");
    let handed = must(&block, "worker 0:", "handed-off") + must(&block, "worker 1:", "handed-off");
    assert!(handed > 0, "packets crossed workers (the owner is the record's worker):\n{block}");
    show_persistence_lists_the_records(&lab, &a[0]);
    stop_furiwake_cleanly(lab.fw());
}

/// `show persistence` over the records of the test above: six clients of
/// `shop`, one /24 of `office`; the first client's record names the server
/// it kept going to (`home`, as /id names it: srvN).
fn show_persistence_lists_the_records(lab: &Lab, home: &str) {
    let socket = lab.dir.path("console.sock");
    let show = |cmd: &str| {
        let (ok, out) = console_at(&socket, cmd);
        assert!(ok, "{cmd}: {out}");
        out
    };
    let all = show("show persistence");
    assert!(all.starts_with("7 persistence record(s)"), "{all}");
    let shop = show("show persistence virtual-server shop");
    assert!(shop.starts_with("6 persistence record(s)"), "{shop}");
    let n: u32 = home.trim_start_matches("srv").parse().unwrap_or_else(|_| panic!("/id answered {home:?}"));
    let row = shop.lines().find(|l| l.split_whitespace().nth(1) == Some(CLIENTS[0])).unwrap_or_else(|| panic!("no record of {}: {shop}", CLIENTS[0]));
    assert_eq!(row.split_whitespace().next(), Some("vs:shop"), "{row}");
    assert_eq!(row.split_whitespace().nth(2), Some(server_ip(n).as_str()), "{} went to {home}: {row}", CLIENTS[0]);
    let office = show("show pe virtual-server office");
    assert!(office.starts_with("1 persistence record(s)") && office.contains("192.0.2.0/24"), "the /24 is one record: {office}");
    let on_home = show(&format!("show persistence server {}", server_ip(n)));
    let listed = on_home.lines().skip(2).count();
    assert!(on_home.lines().skip(2).all(|l| l.contains(&server_ip(n))) && listed >= 1, "{on_home}");
    let (ok, err) = console_at(&socket, "show persistence virtual-server plain");
    assert!(!ok && err.contains("has no persistence"), "{err}");
    let (ok, err) = console_at(&socket, "show persistence virtual-server nosuch");
    assert!(!ok && err.contains("no virtual server"), "{err}");
}

/// A persistence group shared by VIP:80 and VIP:8443 sends each client's
/// connections to both to one server.
#[test]
fn a_persistence_group_keeps_vip_80_and_8443_clients_together() {
    let services = r#"
[[virtual_server]]
name = "http"
address = "192.0.2.100:80"
pool = "web"
persistence = { kind = "source-ip", timeout_s = 60 }
persistence_group = "shop"

[[virtual_server]]
name = "https"
address = "192.0.2.100:8443"
pool = "web"
persistence = { kind = "source-ip", timeout_s = 60 }
persistence_group = "shop"
"#;
    let Some(mut lab) = lab('g', "group", services) else { return };
    let mut homes = BTreeSet::new();
    for c in &CLIENTS {
        let answers: Vec<String> =
            (0..20).map(|i| id(&lab, c, &if i % 2 == 0 { VIP.to_string() } else { format!("{VIP}:8443") })).collect();
        assert_eq!(tally(&answers).len(), 1, "client {c} split between servers over VIP:80 and VIP:8443: {answers:?}");
        homes.insert(answers[0].clone());
    }
    assert!(homes.len() >= 2, "seven clients, one server: {homes:?}");
    let block = lab.report();
    assert_eq!(must(&block, "virtual-server http:", "conns-new"), 70);
    assert_eq!(must(&block, "virtual-server https:", "conns-new"), 70);
    assert_eq!(persistence_sum(&block, "records-made"), 7, "one record per client, shared by both services:\n{block}");
    stop_furiwake_cleanly(lab.fw());
}

/// With two workers, a reload that would change which worker owns a
/// persistent virtual server's connections (its netmask) is refused while
/// it has connections, and applied once they have ended.
#[test]
fn a_netmask_change_waits_for_the_connections_it_would_move() {
    let services = r#"
[[virtual_server]]
name = "shop"
address = "192.0.2.100:80"
pool = "web"
persistence = { kind = "source-ip", timeout_s = 60 }

[timeouts]
tcp_fin = 1
tcp_time_wait = 1
tcp_close = 1
"#;
    let Some(mut lab) = lab('n', "netmask", services) else { return };
    let hold = test_script("tcp_hold.py");
    let argv = ["python3", hold.to_str().unwrap(), "--to", "192.0.2.100:80", "--timeout", "20"];
    let mut conn = Proc::spawn("hold", Some(&lab.topo.ns("client")), &argv, &lab.dir.path("hold.log"), true);
    conn.expect_output("connected ", std::time::Duration::from_secs(10));
    let file = lab.dir.path("lb.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let wider = text.replace("kind = \"source-ip\", timeout_s = 60", "kind = \"source-ip\", netmask = \"255.255.255.0\", timeout_s = 60");
    assert_ne!(wider, text);
    std::fs::write(&file, &wider).unwrap();
    let reload = || {
        let out = std::process::Command::new(furiwake_bin()).args(["console", "--config", file.to_str().unwrap(), "-c", "config reload"]).output().unwrap();
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (code, msg) = reload();
    assert_eq!(code, Some(1), "{msg}");
    assert!(msg.contains("cannot change while it has connections"), "{msg}");
    assert_eq!(id(&lab, CLIENTS[0], VIP).len(), 4, "still serving");
    conn.send_line("close");
    let applied = wait_for(std::time::Duration::from_secs(15), || {
        let (code, msg) = reload();
        Some(msg).filter(|_| code == Some(0))
    });
    assert!(applied.is_some_and(|m| m.contains("config reloaded")), "the reload never applied after the connection ended: {:?}", reload());
    let answers: Vec<String> = CLIENTS.iter().map(|c| id(&lab, c, VIP)).collect();
    assert_eq!(tally(&answers).len(), 1, "one /24, one server after the reload: {answers:?}");
    stop_furiwake_cleanly(lab.fw());
}

/// With two workers, a virtual server removed during a download: the
/// download completes byte-identical (its packets keep their owner worker),
/// and new connections to the removed VIP are not served.
#[test]
fn a_removed_virtual_servers_open_connection_completes() {
    let services = r#"
[[virtual_server]]
name = "shop"
address = "192.0.2.100:80"
pool = "web"

[[virtual_server]]
name = "extra"
address = "192.0.2.101:80"
pool = "web"

[timeouts]
tcp_fin = 1
tcp_time_wait = 1
tcp_close = 1
"#;
    let Some(lab) = lab_with('x', "vsremove", services, 8) else { return };
    let file = lab.dir.path("big.download");
    let argv = ["curl", "-s", "-S", "-m", "60", "--limit-rate", "1M", "-o", file.to_str().unwrap(), "-w", "%{http_code} %{remote_ip}\n", "http://192.0.2.101/big"];
    let mut curl = Proc::spawn("curl", Some(&lab.topo.ns("client")), &argv, &lab.dir.path("curl.log"), false);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert!(curl.is_running(), "the download should still run: {}", curl.output());
    let sock = lab.dir.path("console.sock");
    let out = std::process::Command::new(furiwake_bin()).args(["console", "--socket", sock.to_str().unwrap(), "-c", "virtual-server remove extra"]).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 active connection(s) finish first"), "{}", String::from_utf8_lossy(&out.stdout));
    let (ok, _) = lab.topo.try_exec("client", "curl -s -m 2 http://192.0.2.101/id");
    assert!(!ok, "the removed VIP took a new connection");
    assert!(curl.wait(std::time::Duration::from_secs(60)).is_some_and(|s| s.success()), "the download failed: {}\nfuriwake:\n{}", curl.output(), lab.fw_output());
    let hash = sha256_file(&file);
    assert!((1..=LAB_BACKENDS).any(|n| sha256_file(&lab.backend_dir(n).join("www/big")) == hash), "the download is no backend's /big");
    assert_eq!(id(&lab, CLIENTS[0], VIP).len(), 4, "shop never noticed");
}
