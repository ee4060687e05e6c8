//! IPv6 end to end (issue 24): the real `furiwake` binary in the lab of
//! `scripts/netns.sh` with IPv6 in the client and server namespaces
//! (`netns.sh ipv6`), peers the kernel's own IPv6 (ping, Neighbor
//! Discovery) and scapy (`tests/scripts/ipv6_frames.py`).
//!
//! Lab: PREFIX-client 2001:db8:1::10 -- br-out -- lb-out [furiwake] lb-in
//! -- br-in -- PREFIX-srvN 2001:db8:2::(10+N). The box's IPv6 self
//! addresses are 2001:db8:1::2 (outside) and 2001:db8:2::1 (inside).

use furiwake_e2e::*;
use std::time::Duration;

const SELF6_OUT: &str = "2001:db8:1::2";
const SELF6_IN: &str = "2001:db8:2::1";

/// The lab's interfaces with an IPv6 address each, `[defence.punt]`'s
/// defaults, the console on `socket`.
fn config(lab: &Lab, socket: &std::path::Path) -> String {
    format!(
        r#"{}
[[interface]]
name = "outside"
device = "net_af_packet0,iface=lb-out"
addresses = ["192.0.2.2/24", "{SELF6_OUT}/64"]

[[interface]]
name = "inside"
device = "net_af_packet1,iface=lb-in"
addresses = ["198.51.100.1/24", "{SELF6_IN}/64"]

[[route]]
prefix = "::/0"
via = "2001:db8:1::1"

[console]
socket = "{}"
"#,
        platform_section(&lab.prefix),
        socket.display()
    )
}

/// The box's link-local address on a port of MAC `mac` (RFC 4291
/// appendix A: the modified EUI-64).
fn link_local(mac: &str) -> String {
    let b: Vec<u16> = mac.split(':').map(|h| u16::from_str_radix(h, 16).expect("hex")).collect();
    // Written as std writes it (no leading zeros: the MAC is random).
    std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, (b[0] ^ 2) << 8 | b[1], b[2] << 8 | 0xff, 0xfe00 | b[3], b[4] << 8 | b[5]).to_string()
}

fn ipv6_frames(lab: &Lab, args: &str) -> u64 {
    let script = test_script("ipv6_frames.py");
    let out = lab.topo.exec("client", &format!("/usr/bin/python3 {} {args}", script.display()));
    out.lines().find_map(|l| l.strip_prefix("sent ")).and_then(|n| n.trim().parse().ok()).unwrap_or_else(|| panic!("ipv6_frames.py {args}: {out}"))
}

/// The client resolves the box's IPv6 addresses by Neighbor Discovery
/// (global and link-local) and pings them; the box announces itself at
/// start (an unsolicited advert to all-nodes), defends its address
/// against duplicate address detection, learns the client, and drops
/// malformed IPv6 under a name each.
#[test]
fn the_box_answers_neighbor_discovery_and_ping_on_its_ipv6_addresses() {
    let Some(mut lab) = Lab::open('6', "ipv6-nd", &["ping", "tcpdump"]) else { return };
    lab.topo.ipv6(LAB_BACKENDS);
    let pcap = lab.dir.path("client.pcap");
    let mut cap = Proc::spawn("tcpdump", Some(&lab.topo.ns("client")), &["tcpdump", "-n", "-i", "eth0", "--immediate-mode", "-w", pcap.to_str().unwrap(), "ip6"], &lab.dir.path("tcpdump.log"), false);
    cap.expect_output("listening on", Duration::from_secs(10));
    let socket = lab.dir.path("console.sock");
    let cfg = config(&lab, &socket);
    lab.start_config(&cfg);
    let mac = port_mac(&lab.fw_output(), "outside").expect("the outside port's MAC");
    let ll = link_local(&mac);

    let (ok, out) = lab.topo.try_exec("client", &format!("ping -6 -n -c 3 -i 0.2 -W 2 {SELF6_OUT}"));
    assert!(ok && out.contains("3 received"), "ping {SELF6_OUT}: {out}\n{}", lab.fw_output());
    let neigh = lab.topo.exec("client", &format!("ip -6 neigh show {SELF6_OUT} dev eth0"));
    assert!(neigh.contains(&format!("lladdr {mac}")), "the client resolved the box by ND: {neigh}");
    assert!(neigh.contains("router"), "the box says it forwards (the R flag): {neigh}");
    let (ok, out) = lab.topo.try_exec("client", &format!("ping -6 -n -c 2 -i 0.2 -W 2 {ll}%eth0"));
    assert!(ok && out.contains("2 received"), "ping {ll}: {out}");

    // Duplicate address detection of the box's address by another node:
    // it defends it, to all-nodes.
    assert_eq!(ipv6_frames(&lab, &format!("dad --self {SELF6_OUT}")), 1);
    // Malformed IPv6, three of each kind.
    assert_eq!(ipv6_frames(&lab, &format!("malformed --self {SELF6_OUT} --mac {mac} --count 3")), 18);
    let block = lab
        .report_until(Duration::from_secs(10), |b| {
            let d = worker_drops(b, 0);
            d.iter().any(|(r, n)| r == "ipv6-bad-address" && *n >= 3)
        })
        .unwrap_or_else(|b| panic!("the malformed frames were not all counted:\n{b}"));
    let drops = worker_drops(&block, 0);
    let dropped = |name: &str| drops.iter().find(|(r, _)| r == name).map_or(0, |(_, n)| *n);
    for name in ["fragment", "ipv6-routing-header", "ipv6-bad-chain", "udp-zero-checksum", "nd-invalid", "ipv6-bad-address"] {
        assert_eq!(dropped(name), 3, "{name}:\n{block}");
    }
    assert!(counter(&block, "nd:", "echo-replies").is_some_and(|n| n >= 5), "{block}");

    let (ok, ndp) = console_at(&socket, "show ndp");
    assert!(ok, "{ndp}");
    assert!(ndp.contains(SELF6_OUT) && ndp.contains(&ll) && ndp.contains(SELF6_IN), "each link's addresses: {ndp}");
    assert!(ndp.contains("2001:db8:1::10"), "the client, learned from its solicitation: {ndp}");

    // Another link's address is not answered on this one (RFC 4861
    // §7.2.3: a target of the link the solicitation came in on).
    let (ok, out) = lab.topo.try_exec("client", &format!("ip -6 route add {SELF6_IN}/128 dev eth0 && ping -6 -n -c 1 -W 2 {SELF6_IN}"));
    assert!(!ok, "the inside address answered on the outside link: {out}");

    // The capture: the box's adverts as the client saw them.
    std::thread::sleep(Duration::from_millis(300));
    cap.signal(libc::SIGTERM);
    assert!(cap.wait(Duration::from_secs(5)).is_some());
    let seen = sh(&format!("tcpdump -n -v -r {} 'icmp6 and ip6[40] == 136' 2>/dev/null", pcap.display()));
    let to_all = seen.lines().filter(|l| l.contains("> ff02::1:")).count();
    let adverts = seen.matches(&format!("tgt is {SELF6_OUT}")).count();
    assert!(adverts >= 2, "the box advertised its address: {seen}");
    assert!(to_all >= 2, "an unsolicited advert at start and the DAD defence, to all-nodes: {seen}");
    // MLDv2 (RFC 3810): the box reports its solicited-node group, so a
    // switch that snoops MLD forwards the solicitations for it.
    let mld = sh(&format!("tcpdump -n -v -r {} 'ip6 dst ff02::16' 2>/dev/null", pcap.display()));
    assert!(mld.contains("multicast listener report v2") && mld.contains("ff02::1:ff00:2"), "the box's MLDv2 report: {mld}");
    stop_furiwake_cleanly(lab.fw());
}

/// An NS flood from made-up sources, each a new neighbour (RFC 4861
/// §7.2.3): the cache stops at its bound (4096, the longest unheard
/// evicted) and the box still answers a real client's solicitation and
/// ping afterwards, and learns it; the flood went through the `nd` punt
/// class and no other.
#[test]
fn a_neighbor_solicitation_flood_fills_a_bounded_cache_and_nothing_else() {
    let Some(mut lab) = Lab::open('7', "ipv6-nsflood", &["ping"]) else { return };
    lab.topo.ipv6(LAB_BACKENDS);
    let socket = lab.dir.path("console.sock");
    let cfg = config(&lab, &socket);
    lab.start_config(&cfg);
    // Paced to the `nd` class's default (2000 a second, 500 at once): the
    // box takes them all, so more than the cache's bound arrive.
    assert_eq!(ipv6_frames(&lab, &format!("ns-flood --self {SELF6_OUT} --count 12000")), 12000);
    let block = lab
        .report_until(Duration::from_secs(10), |b| counter(b, "nd:", "evicted").is_some_and(|n| n > 0))
        .unwrap_or_else(|b| panic!("the cache never filled:\n{b}"));
    assert_eq!(counter(&block, "nd:", "neighbors"), Some(4096), "bounded:\n{block}");
    let passed = counter(&block, "  punt (passed/limited):", "nd").unwrap_or(0);
    assert!(passed > 4096, "the flood reached the ND module: {passed}\n{block}");
    assert_eq!(counter(&block, "  punt (passed/limited):", "other"), None, "nothing of it in another class:\n{block}");
    // A real client, its old entry flushed, still resolves and reaches
    // the box: it is answered though it cannot be learned.
    lab.topo.exec("client", "ip -6 neigh flush dev eth0");
    let (ok, out) = lab.topo.try_exec("client", &format!("ping -6 -n -c 2 -i 0.2 -W 2 {SELF6_OUT}"));
    assert!(ok && out.contains("2 received"), "after the flood: {out}\n{}", lab.fw_output());
    let (ok, ndp) = console_at(&socket, "show ndp");
    assert!(ok && ndp.contains("2001:db8:1::10 "), "the client learned anew: {ndp}");
    stop_furiwake_cleanly(lab.fw());
}

const VIP6: &str = "2001:db8:1::100";
const BIG_MB: u32 = 50;

/// nginx in server namespace N listening on IPv6 too, `/big` a `BIG_MB`
/// MiB file of its own.
fn start_nginx6(lab: &mut Lab, n: u32) {
    lab.start_nginx6(n, BIG_MB, &[80]);
}

/// The lab's three IPv6 servers on `port`, as a pool's `servers` list.
fn servers6(port: u16) -> Vec<String> {
    (1..=LAB_BACKENDS).map(|n| format!("{{ address = \"[2001:db8:2::{}]:{port}\" }}", 10 + n)).collect()
}

/// `n` requests for `/id` at `url` (a new connection each) from the
/// client, over IPv6: the answers.
fn curl6_ids(lab: &Lab, url: &str, n: usize) -> Vec<String> {
    let cmd = format!("for i in $(seq {n}); do curl -6 -s -S -m 5 {url}/id || echo \"FAIL request $i exit $?\"; done");
    let (ok, out) = lab.topo.try_exec("client", &cmd);
    let answers: Vec<String> = out.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    assert!(ok && answers.len() == n && !answers.iter().any(|a| a.starts_with("FAIL")), "{n} requests to {url}/id: {out}\nfuriwake:\n{}", lab.fw_output());
    answers
}

/// The sources of the requests backend N logged (the first field of
/// nginx's combined format).
fn logged_sources(lab: &Lab, n: u32) -> Vec<String> {
    lab.nginx_access_log(n).iter().filter_map(|l| l.split_whitespace().next().map(str::to_string)).collect()
}

/// An IPv6 VIP over three IPv6 nginx servers, with `nat` (port 80) and
/// `full-nat` (port 81): the box resolves its servers by Neighbor
/// Discovery, the client reaches the VIP by it (`curl -6`), round robin
/// spreads 30 requests 10/10/10 in each mode, a 50 MiB download through
/// each is byte-identical, and the servers see the client's address with
/// `nat` and the box's inside IPv6 address with `full-nat`.
#[test]
fn ipv6_nat_and_full_nat_through_an_ipv6_vip() {
    let Some(mut lab) = Lab::open('8', "ipv6-nat", &["nginx"]) else { return };
    lab.topo.ipv6(LAB_BACKENDS);
    for n in 1..=LAB_BACKENDS {
        start_nginx6(&mut lab, n);
    }
    let hashes: Vec<String> = (1..=LAB_BACKENDS).map(|n| sha256_file(&lab.backend_dir(n).join("www/big"))).collect();
    let socket = lab.dir.path("console.sock");
    let servers = servers6(80);
    let cfg = format!(
        "{}\n[[pool]]\nname = \"web6\"\nservers = [ {} ]\n\n[[virtual_server]]\nname = \"www6\"\naddress = \"[{VIP6}]:80\"\npool = \"web6\"\n\n[[virtual_server]]\nname = \"www6-full\"\naddress = \"[{VIP6}]:81\"\nforwarding = \"full-nat\"\npool = \"web6\"\n",
        config(&lab, &socket),
        servers.join(", ")
    );
    lab.start_config(&cfg);
    for (port, mode, seen) in [(80u16, "nat", "2001:db8:1::10"), (81, "full-nat", SELF6_IN)] {
        let url = format!("http://[{VIP6}]:{port}");
        let answers = curl6_ids(&lab, &url, 30);
        let t = tally(&answers);
        assert_eq!(t.values().copied().collect::<Vec<_>>(), vec![10, 10, 10], "{mode}: round robin over the three: {t:?}");
        // A 50 MiB download, byte for byte one server's file.
        let file = lab.dir.path("big.download");
        let (ok, out) = lab.topo.try_exec("client", &format!("curl -6 -s -S -m 120 -o {} -w '%{{http_code}} %{{size_download}}' {url}/big", file.display()));
        assert!(ok && out.trim() == format!("200 {}", u64::from(BIG_MB) << 20), "{mode}: download: {out}\nfuriwake:\n{}", lab.fw_output());
        let got = sha256_file(&file);
        assert!(hashes.contains(&got), "{mode}: the download is one server's file: {got} not in {hashes:?}");
        let _ = std::fs::remove_file(&file);
        // Who the servers saw.
        let sources: Vec<String> = (1..=LAB_BACKENDS).flat_map(|n| logged_sources(&lab, n)).collect();
        assert!(sources.len() >= 31, "{mode}: {sources:?}");
        assert!(sources.iter().all(|s| s == seen), "{mode}: every request from {seen}: {sources:?}");
        for n in 1..=LAB_BACKENDS {
            std::fs::write(lab.backend_dir(n).join("logs/access.log"), "").expect("empty the access log");
        }
    }
    let block = lab.report();
    assert_eq!(must(&block, "virtual-server www6:", "conns-new"), 31, "{block}");
    assert_eq!(must(&block, "virtual-server www6-full:", "conns-new"), 31, "{block}");
    let (ok, servers_out) = console_at(&socket, "show servers");
    assert!(ok && servers_out.contains("[2001:db8:2::11]:80"), "the servers by their IPv6 addresses: {servers_out}");
    stop_furiwake_cleanly(lab.fw());
}

/// MAT over IPv6 (`dsr-l2`): the servers moved to the client's segment
/// (2001:db8:1::2N), each with the IPv6 VIP on its loopback (Linux answers
/// Neighbor Discovery only for addresses of the asking interface, so the
/// box alone owns the VIP on the link); the box, one-armed, resolves them
/// by ND and sends them the client's packets with only the MACs changed;
/// they answer the client directly. 30 `curl -6` requests 10/10/10, a 50
/// MiB download byte-identical, and no answer from the VIP crosses the
/// box (its service's out-packets stay 0).
#[test]
fn ipv6_dsr_l2_through_an_ipv6_vip() {
    let Some(mut lab) = Lab::open('9', "ipv6-dsr", &["nginx"]) else { return };
    lab.topo.ipv6(LAB_BACKENDS);
    for n in 1..=LAB_BACKENDS {
        lab.topo.exec("sw", &format!("ip link set s{n} nomaster && ip link set s{n} master br-out"));
        lab.topo.exec(
            &format!("srv{n}"),
            &format!("ip -6 route del default; ip -6 addr flush dev eth0 scope global && ip -6 addr add 2001:db8:1::{}/64 dev eth0 nodad && ip -6 addr add {VIP6}/128 dev lo", 20 + n),
        );
        start_nginx6(&mut lab, n);
    }
    let hashes: Vec<String> = (1..=LAB_BACKENDS).map(|n| sha256_file(&lab.backend_dir(n).join("www/big"))).collect();
    let servers: Vec<String> = (1..=LAB_BACKENDS).map(|n| format!("{{ address = \"[2001:db8:1::{}]:80\" }}", 20 + n)).collect();
    let cfg = format!(
        "{}\n[[interface]]\nname = \"outside\"\ndevice = \"net_af_packet0,iface=lb-out\"\naddresses = [\"192.0.2.2/24\", \"{SELF6_OUT}/64\"]\n\n[[pool]]\nname = \"web6\"\nservers = [ {} ]\n\n[[virtual_server]]\nname = \"www6\"\naddress = \"[{VIP6}]:80\"\nforwarding = \"dsr-l2\"\npool = \"web6\"\n",
        platform_section(&lab.prefix),
        servers.join(", ")
    );
    lab.start_config(&cfg);
    let url = format!("http://[{VIP6}]");
    let t = tally(&curl6_ids(&lab, &url, 30));
    assert_eq!(t.values().copied().collect::<Vec<_>>(), vec![10, 10, 10], "round robin over the three: {t:?}");
    let file = lab.dir.path("big.download");
    let (ok, out) = lab.topo.try_exec("client", &format!("curl -6 -s -S -m 120 -o {} -w '%{{http_code}} %{{size_download}}' {url}/big", file.display()));
    assert!(ok && out.trim() == format!("200 {}", u64::from(BIG_MB) << 20), "download: {out}\nfuriwake:\n{}", lab.fw_output());
    assert!(hashes.contains(&sha256_file(&file)), "the download is one server's file");
    let _ = std::fs::remove_file(&file);
    // The servers saw the client itself; their answers went around the box.
    let sources: Vec<String> = (1..=LAB_BACKENDS).flat_map(|n| logged_sources(&lab, n)).collect();
    assert!(sources.len() >= 31 && sources.iter().all(|s| s == "2001:db8:1::10"), "{sources:?}");
    let block = lab.report();
    assert_eq!(must(&block, "virtual-server www6:", "conns-new"), 31, "{block}");
    assert_eq!(must(&block, "virtual-server www6:", "out-pkts"), 0, "no answer crossed the box:\n{block}");
    stop_furiwake_cleanly(lab.fw());
}

/// An http health check over IPv6 (the probes' own stack speaks IPv6 to
/// the servers, their answers come back in the `probe` punt class): the
/// three IPv6 servers come up; one whose nginx stops goes down and takes
/// no new connection; started again, it comes back and takes its share.
#[test]
fn an_http_health_check_over_ipv6_takes_a_stopped_server_out_and_back() {
    let Some(mut lab) = Lab::open('0', "ipv6-health", &["nginx"]) else { return };
    lab.topo.ipv6(LAB_BACKENDS);
    for n in 1..=LAB_BACKENDS {
        start_nginx6(&mut lab, n);
    }
    let socket = lab.dir.path("console.sock");
    let servers = servers6(80);
    let cfg = format!(
        "{}\n[[health_check]]\nname = \"web-ok\"\nkind = \"http\"\ninterval_ms = 200\ntimeout_ms = 500\nfall = 2\nrise = 2\nrequest = \"GET /health HTTP/1.0\\r\\n\\r\\n\"\nexpect_body = \"OK\"\n\n[[pool]]\nname = \"web6\"\nhealth_check = \"web-ok\"\nservers = [ {} ]\n\n[[virtual_server]]\nname = \"www6\"\naddress = \"[{VIP6}]:80\"\npool = \"web6\"\n",
        config(&lab, &socket),
        servers.join(", ")
    );
    lab.start_config(&cfg);
    let line = |n: u32, state: &str| format!("health: server [2001:db8:2::{}]:80 (pool web6) {state}", 10 + n);
    for n in 1..=LAB_BACKENDS {
        lab.fw().expect_output(&line(n, "up"), Duration::from_secs(20));
    }
    let url = format!("http://[{VIP6}]");
    assert_eq!(tally(&curl6_ids(&lab, &url, 30)).values().copied().collect::<Vec<_>>(), vec![10, 10, 10]);
    lab.stop("nginx-srv2");
    lab.fw().expect_output(&line(2, "down"), Duration::from_secs(10));
    let t = tally(&curl6_ids(&lab, &url, 30));
    assert_eq!(t.get("srv2"), None, "a down server takes no new connection: {t:?}");
    assert_eq!(t.values().copied().collect::<Vec<_>>(), vec![15, 15], "{t:?}");
    start_nginx6(&mut lab, 2);
    let back = wait_for(Duration::from_secs(10), || (lab.fw_output().matches(&line(2, "up")).count() >= 2).then_some(()));
    assert!(back.is_some(), "srv2 never came back up:\n{}", lab.fw_output());
    // Through the VIP again (the up state reaches the workers with the
    // next snapshot), then in the rotation with the others.
    let serving = wait_for(Duration::from_secs(10), || curl6_ids(&lab, &url, 3).iter().any(|a| a == "srv2").then_some(()));
    assert!(serving.is_some(), "srv2 up but not answering through the VIP:\n{}", lab.fw_output());
    let t = tally(&curl6_ids(&lab, &url, 30));
    assert_eq!(t.keys().map(String::as_str).collect::<Vec<_>>(), vec!["srv1", "srv2", "srv3"], "back in the rotation: {t:?}");
    let block = lab.report();
    assert!(counter(&block, "  punt (passed/limited):", "probe").is_some_and(|n| n > 0), "the answers came through the probe class:\n{block}");
    stop_furiwake_cleanly(lab.fw());
}

/// A router between the lab's two segments, over IPv6 (2001:db8:1::1 and
/// 2001:db8:2::254, forwarding): the servers' way back to the client
/// around the box.
fn add_router6(lab: &Lab) {
    let p = lab.topo.prefix.clone();
    sh(&format!(
        "ip netns add {p}-rtr && ip netns exec {p}-rtr sysctl -qw net.ipv6.conf.all.forwarding=1 net.ipv6.conf.default.accept_dad=0 && ip -n {p}-rtr link set lo up && \
         ip link add {p}ra type veth peer name {p}rb && ip link set {p}ra netns {p}-rtr && ip link set {p}rb netns {p}-sw && \
         ip link add {p}rc type veth peer name {p}rd && ip link set {p}rc netns {p}-rtr && ip link set {p}rd netns {p}-sw && \
         ip -n {p}-sw link set {p}rb master br-out && ip -n {p}-sw link set {p}rd master br-in && ip -n {p}-sw link set {p}rb up && ip -n {p}-sw link set {p}rd up && \
         ip -n {p}-rtr link set {p}ra up && ip -n {p}-rtr link set {p}rc up && \
         ip -n {p}-rtr -6 addr add 2001:db8:1::1/64 dev {p}ra nodad && ip -n {p}-rtr -6 addr add 2001:db8:2::254/64 dev {p}rc nodad && \
         ip netns exec {p}-rtr ethtool -K {p}ra tx off >/dev/null && ip netns exec {p}-rtr ethtool -K {p}rc tx off >/dev/null"
    ));
}

fn capture6(lab: &Lab, ns: &str, filter: &str, file: &std::path::Path, log: &str) -> Proc {
    let mut p = Proc::spawn("tcpdump", Some(ns), &["tcpdump", "-n", "-U", "-i", "eth0", "-w", file.to_str().unwrap(), filter], &lab.dir.path(log), false);
    p.expect_output("listening on", Duration::from_secs(5));
    p
}

/// `dsr-tunnel` over IPv6 (RFC 2473): three IPv6 virtual servers on one
/// VIP, `ipip` (IPv6 in IPv6) on port 80, `gre` on 81, `gue` on 82, over
/// three nginx on the inside segment, each server decapsulating with
/// `tests/scripts/decap.py` and answering the client from the VIP on its
/// loopback through a router around the box. 30 requests 10/10/10 over
/// ip6ip6 and a 50 MiB download byte-identical; GRE and GUE carry requests
/// too; the client's SYN arrives inside the tunnel byte for byte (hop
/// limit included) from the box's inside address; a 2 MB upload whose
/// 1500-byte packets the tunnel cannot take meets Packet Too Big from the
/// VIP with the tunnel's MTU (1460) and arrives whole; no answer crosses
/// the box.
#[test]
fn ipv6_dsr_tunnel_through_an_ipv6_vip() {
    let Some(mut lab) = Lab::open('7', "ipv6-tun", &["nginx", "tcpdump", "socat"]) else { return };
    lab.topo.ipv6(LAB_BACKENDS);
    add_router6(&lab);
    let decap = test_script("decap.py");
    for n in 1..=LAB_BACKENDS {
        lab.topo.exec(
            &format!("srv{n}"),
            &format!("ip -6 route replace default via 2001:db8:2::254 && ip -6 addr add {VIP6}/128 dev lo && ip tuntap add dev tun0 mode tun && ip link set tun0 up"),
        );
        lab.serve(&format!("decap-srv{n}"), n, &["/usr/bin/python3", decap.to_str().unwrap(), "--tun", "tun0", "--local", &format!("2001:db8:2::{}", 10 + n)]);
        lab.start_nginx6(n, BIG_MB, &[80, 81, 82]);
        lab.serve(&format!("sink-srv{n}"), n, &["socat", "-d", "-d", "TCP6-LISTEN:9000,reuseaddr,fork", "SYSTEM:wc -c"]);
    }
    let hashes: Vec<String> = (1..=LAB_BACKENDS).map(|n| sha256_file(&lab.backend_dir(n).join("www/big"))).collect();
    let socket = lab.dir.path("console.sock");
    let pool = |name: &str, port: u16| format!("\n[[pool]]\nname = \"{name}\"\nservers = [ {} ]\n", (1..=LAB_BACKENDS).map(|n| format!("{{ address = \"[2001:db8:2::{}]:{port}\" }}", 10 + n)).collect::<Vec<_>>().join(", "));
    let vs = |name: &str, port: u16, kind: &str| format!("\n[[virtual_server]]\nname = \"{name}\"\naddress = \"[{VIP6}]:{port}\"\nforwarding = \"dsr-tunnel\"\ntunnel = \"{kind}\"\npool = \"{name}\"\n");
    let cfg = format!(
        "{}{}{}{}{}{}{}{}{}",
        config(&lab, &socket),
        pool("ip6ip6", 80),
        pool("gre6", 81),
        pool("gue6", 82),
        pool("sink6", 9000),
        vs("ip6ip6", 80, "ipip"),
        vs("gre6", 81, "gre"),
        vs("gue6", 82, "gue"),
        vs("sink6", 9000, "ipip")
    );
    lab.start_config(&cfg);
    let (c_pcap, s_pcap, i_pcap) = (lab.dir.path("client.pcap"), lab.dir.path("srv2.pcap"), lab.dir.path("ptb.pcap"));
    let mut caps = [
        capture6(&lab, &lab.topo.ns("client"), "ip6 and tcp port 45680", &c_pcap, "cap-client.log"),
        capture6(&lab, &lab.srv_ns(2), "ip6 proto 41", &s_pcap, "cap-srv2.log"),
        capture6(&lab, &lab.topo.ns("client"), "icmp6 and ip6[40] == 2", &i_pcap, "cap-ptb.log"),
    ];
    let url = format!("http://[{VIP6}]");
    let t = tally(&curl6_ids(&lab, &url, 30));
    assert_eq!(t.values().copied().collect::<Vec<_>>(), vec![10, 10, 10], "ip6ip6: round robin over the three: {t:?}");
    for port in [81u16, 82] {
        let t = tally(&curl6_ids(&lab, &format!("{url}:{port}"), 6));
        assert_eq!(t.values().copied().collect::<Vec<_>>(), vec![2, 2, 2], "port {port}: {t:?}");
    }
    let file = lab.dir.path("big.download");
    let (ok, out) = lab.topo.try_exec("client", &format!("curl -6 -s -S -m 120 -o {} -w '%{{http_code}} %{{size_download}}' {url}/big", file.display()));
    assert!(ok && out.trim() == format!("200 {}", u64::from(BIG_MB) << 20), "download: {out}\nfuriwake:\n{}", lab.fw_output());
    assert!(hashes.contains(&sha256_file(&file)), "the download is one server's file");
    let _ = std::fs::remove_file(&file);
    let id = lab.topo.exec("client", &format!("curl -6 -s -m 5 --local-port 45680 {url}/id"));
    assert_eq!(id.trim(), "srv2", "round robin's next is srv2");
    // The upload: 2 MB in 1500-byte packets, 1540 inside the tunnel.
    let got = lab.topo.exec("client", &format!("head -c 2000000 /dev/urandom | socat -t 20 -T 30 - 'TCP6:[{VIP6}]:9000'"));
    assert_eq!(got.trim(), "2000000", "the upload arrived whole after the path MTU came down");
    // tcpdump hands over a ring block when it fills or times out: wait for
    // the quiet captures to show their frames before stopping them.
    wait_for(Duration::from_secs(10), || (!pcap_frames(&c_pcap).is_empty() && !pcap_frames(&s_pcap).is_empty() && !pcap_frames(&i_pcap).is_empty()).then_some(()));
    std::thread::sleep(Duration::from_millis(300));
    for c in caps.iter_mut() {
        c.signal(libc::SIGINT);
        c.wait(Duration::from_secs(5));
    }
    let sent = pcap_frames(&c_pcap);
    let syn = sent.first().unwrap_or_else(|| panic!("the client's SYN was not captured"));
    let inside: Vec<Vec<u8>> = pcap_frames(&s_pcap);
    assert!(inside.len() > 10, "srv2 got {} ip6ip6 packets", inside.len());
    for f in &inside {
        assert_eq!(&f[22..38], &"2001:db8:2::1".parse::<std::net::Ipv6Addr>().unwrap().octets(), "outer source: the box's inside address");
        assert_eq!(&f[38..54], &"2001:db8:2::12".parse::<std::net::Ipv6Addr>().unwrap().octets(), "outer destination: srv2");
        assert_eq!(&f[54 + 24..54 + 40], &VIP6.parse::<std::net::Ipv6Addr>().unwrap().octets(), "inner destination: the VIP");
    }
    assert!(inside.iter().any(|f| f[54..] == syn[14..]), "the client's SYN inside the tunnel, byte for byte");
    let ptb = pcap_frames(&i_pcap);
    assert!(!ptb.is_empty(), "no Packet Too Big reached the client");
    for f in &ptb {
        assert_eq!(&f[22..38], &VIP6.parse::<std::net::Ipv6Addr>().unwrap().octets(), "from the VIP");
        assert_eq!(u32::from_be_bytes([f[58], f[59], f[60], f[61]]), 1460, "the tunnel's MTU: 1500 less IPv6's 40");
    }
    let block = lab.report();
    for name in ["ip6ip6", "gre6", "gue6"] {
        assert_eq!(must(&block, &format!("virtual-server {name}:"), "out-pkts"), 0, "{name}: no answer crossed the box:\n{block}");
    }
    assert_eq!(must(&block, "virtual-server ip6ip6:", "conns-new"), 32, "{block}");
    let sources: Vec<String> = (1..=LAB_BACKENDS).flat_map(|n| logged_sources(&lab, n)).collect();
    assert!(sources.iter().all(|s| s == "2001:db8:1::10"), "the servers saw the client: {sources:?}");
    let fw = stop_furiwake_cleanly(lab.fw());
    let last = last_counters_block(&fw).unwrap_or_default();
    let frag = last.lines().find_map(|l| l.trim().strip_prefix("tunnel: frag-needed ")).and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0);
    assert!(frag >= 1, "Packet Too Big counted:\n{last}");
    println!("ipv6 dsr-tunnel: ip6ip6 10/10/10, gre and gue 2/2/2, 50 MiB byte-identical, {} tunnel packets at srv2, SYN byte-identical inside, {} Packet Too Big (1460), upload 2 MB whole", inside.len(), ptb.len());
}

/// `dsr-dscp` over IPv6 through a router around the box: each server
/// restores the VIP from the traffic class's DSCP with one nft rule
/// (README), 30 `curl -6` requests 10/10/10 and a 50 MiB download
/// byte-identical; the server receives the SYN addressed to itself with
/// DSCP 46 and the client's source; no answer crosses the box.
#[test]
fn ipv6_dsr_dscp_through_an_ipv6_vip() {
    let Some(mut lab) = Lab::open('6', "ipv6-dscp", &["nginx", "tcpdump", "nft"]) else { return };
    lab.topo.ipv6(LAB_BACKENDS);
    add_router6(&lab);
    for n in 1..=LAB_BACKENDS {
        lab.topo.exec(
            &format!("srv{n}"),
            &format!(
                "ip -6 route replace default via 2001:db8:2::254 && ip -6 addr add {VIP6}/128 dev lo && \
                 nft add table ip6 dsr && nft add chain ip6 dsr pre '{{ type filter hook prerouting priority raw; }}' && \
                 nft add rule ip6 dsr pre ip6 dscp 46 ip6 daddr set {VIP6}"
            ),
        );
        start_nginx6(&mut lab, n);
    }
    let hashes: Vec<String> = (1..=LAB_BACKENDS).map(|n| sha256_file(&lab.backend_dir(n).join("www/big"))).collect();
    let socket = lab.dir.path("console.sock");
    let servers = servers6(80);
    let cfg = format!(
        "{}\n[[pool]]\nname = \"web6\"\nservers = [ {} ]\n\n[[virtual_server]]\nname = \"www6\"\naddress = \"[{VIP6}]:80\"\nforwarding = \"dsr-dscp\"\ndscp = 46\npool = \"web6\"\n",
        config(&lab, &socket),
        servers.join(", ")
    );
    lab.start_config(&cfg);
    let s_pcap = lab.dir.path("srv2.pcap");
    let mut cap = capture6(&lab, &lab.srv_ns(2), "ip6 and tcp port 45681", &s_pcap, "cap-srv2.log");
    let url = format!("http://[{VIP6}]");
    let t = tally(&curl6_ids(&lab, &url, 30));
    assert_eq!(t.values().copied().collect::<Vec<_>>(), vec![10, 10, 10], "round robin over the three: {t:?}");
    let file = lab.dir.path("big.download");
    let (ok, out) = lab.topo.try_exec("client", &format!("curl -6 -s -S -m 120 -o {} -w '%{{http_code}} %{{size_download}}' {url}/big", file.display()));
    assert!(ok && out.trim() == format!("200 {}", u64::from(BIG_MB) << 20), "download: {out}\nfuriwake:\n{}", lab.fw_output());
    assert!(hashes.contains(&sha256_file(&file)), "the download is one server's file");
    let _ = std::fs::remove_file(&file);
    let id = lab.topo.exec("client", &format!("curl -6 -s -m 5 --local-port 45681 {url}/id"));
    assert_eq!(id.trim(), "srv2", "round robin's next is srv2");
    wait_for(Duration::from_secs(10), || (!pcap_frames(&s_pcap).is_empty()).then_some(()));
    std::thread::sleep(Duration::from_millis(300));
    cap.signal(libc::SIGINT);
    cap.wait(Duration::from_secs(5));
    let got = pcap_frames(&s_pcap);
    let syn = got.first().unwrap_or_else(|| panic!("srv2 captured no SYN"));
    let tc = (syn[14] & 0x0f) << 4 | syn[15] >> 4;
    assert_eq!(tc >> 2, 46, "DSCP 46 in the traffic class to the server");
    assert_eq!(&syn[22..38], &"2001:db8:1::10".parse::<std::net::Ipv6Addr>().unwrap().octets(), "the client's source");
    assert_eq!(&syn[38..54], &"2001:db8:2::12".parse::<std::net::Ipv6Addr>().unwrap().octets(), "addressed to srv2");
    let sources: Vec<String> = (1..=LAB_BACKENDS).flat_map(|n| logged_sources(&lab, n)).collect();
    assert!(sources.iter().all(|s| s == "2001:db8:1::10"), "the servers saw the client: {sources:?}");
    let block = lab.report();
    assert_eq!(must(&block, "virtual-server www6:", "out-pkts"), 0, "no answer crossed the box:\n{block}");
    assert_eq!(must(&block, "virtual-server www6:", "conns-new"), 32, "{block}");
    stop_furiwake_cleanly(lab.fw());
}

/// `source-ip` persistence over IPv6 by prefix (`prefix6 = 64`): the
/// client's two addresses in one /64 (a host's temporary addresses) keep
/// to one server for 20 requests, where round robin alone would spread
/// them; `show persistence` lists the record under the /64.
#[test]
fn ipv6_source_ip_persistence_by_prefix() {
    let Some(mut lab) = Lab::open('5', "ipv6-persist", &["nginx"]) else { return };
    lab.topo.ipv6(LAB_BACKENDS);
    lab.topo.exec("client", "ip -6 addr add 2001:db8:1::11/64 dev eth0 nodad");
    for n in 1..=LAB_BACKENDS {
        start_nginx6(&mut lab, n);
    }
    let socket = lab.dir.path("console.sock");
    let servers = servers6(80);
    let cfg = format!(
        "{}\n[[pool]]\nname = \"web6\"\nservers = [ {} ]\n\n[[virtual_server]]\nname = \"www6\"\naddress = \"[{VIP6}]:80\"\npool = \"web6\"\npersistence = {{ kind = \"source-ip\", prefix6 = 64, timeout_s = 300 }}\n",
        config(&lab, &socket),
        servers.join(", ")
    );
    lab.start_config(&cfg);
    let mut answers = Vec::new();
    for src in ["2001:db8:1::10", "2001:db8:1::11"] {
        let cmd = format!("for i in $(seq 10); do curl -6 -s -S -m 5 --interface {src} http://[{VIP6}]/id || echo FAIL; done");
        answers.extend(lab.topo.exec("client", &cmd).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()));
    }
    let t = tally(&answers);
    assert_eq!(answers.len(), 20, "{answers:?}");
    assert_eq!(t.len(), 1, "one /64, one server for 20 requests from two addresses: {t:?}");
    let (ok, out) = console_at(&socket, "show persistence");
    assert!(ok && out.contains("2001:db8:1::"), "the record under the client's /64: {out}");
    let block = lab.report();
    assert_eq!(must(&block, "virtual-server www6:", "conns-new"), 20, "{block}");
    println!("ipv6 persistence: 20 requests from two addresses of one /64 to {t:?}\n{out}");
    stop_furiwake_cleanly(lab.fw());
}

/// An ICMPv6 echo check (RFC 4443 §4.1): the three IPv6 servers come up on
/// their echo replies; one that stops answering echo (an nft rule drops
/// the requests) goes down while its nginx still serves, and comes back
/// when the rule goes.
#[test]
fn an_icmpv6_echo_check_takes_a_silent_server_out_and_back() {
    let Some(mut lab) = Lab::open('4', "ipv6-echo", &["nginx", "nft"]) else { return };
    lab.topo.ipv6(LAB_BACKENDS);
    for n in 1..=LAB_BACKENDS {
        start_nginx6(&mut lab, n);
    }
    let socket = lab.dir.path("console.sock");
    let servers = servers6(80);
    let cfg = format!(
        "{}\n[[health_check]]\nname = \"ping\"\nkind = \"icmp\"\ninterval_ms = 200\ntimeout_ms = 500\nfall = 2\nrise = 2\n\n[[pool]]\nname = \"web6\"\nhealth_check = \"ping\"\nservers = [ {} ]\n\n[[virtual_server]]\nname = \"www6\"\naddress = \"[{VIP6}]:80\"\npool = \"web6\"\n",
        config(&lab, &socket),
        servers.join(", ")
    );
    lab.start_config(&cfg);
    let line = |n: u32, state: &str| format!("health: server [2001:db8:2::{}]:80 (pool web6) {state}", 10 + n);
    for n in 1..=LAB_BACKENDS {
        lab.fw().expect_output(&line(n, "up"), Duration::from_secs(20));
    }
    lab.topo.exec("srv2", "nft add table ip6 quiet && nft add chain ip6 quiet in '{ type filter hook input priority 0; }' && nft add rule ip6 quiet in icmpv6 type echo-request drop");
    lab.fw().expect_output(&line(2, "down"), Duration::from_secs(10));
    let url = format!("http://[{VIP6}]");
    let t = tally(&curl6_ids(&lab, &url, 20));
    assert_eq!(t.get("srv2"), None, "a down server takes no new connection: {t:?}");
    lab.topo.exec("srv2", "nft delete table ip6 quiet");
    let back = wait_for(Duration::from_secs(10), || (lab.fw_output().matches(&line(2, "up")).count() >= 2).then_some(()));
    assert!(back.is_some(), "srv2 never came back up:\n{}", lab.fw_output());
    let (ok, out) = console_at(&socket, "show servers");
    assert!(ok && out.matches(" up ").count() >= 3, "the three up again: {out}");
    stop_furiwake_cleanly(lab.fw());
}
