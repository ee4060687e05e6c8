//! Direct server return end to end: the real `furiwake` binary, real nginx
//! servers that hold the VIP, curl from a client; captures on the client,
//! a server and the box.
//!
//! Lab: `scripts/netns.sh` rewired one-arm: the servers move to the
//! client's segment (br-out) as 192.0.2.(10+N), each with the VIP on its
//! loopback and `arp_ignore=1`, `arp_announce=2` (README, "Direct server
//! return"). The box has one interface, lb-out 192.0.2.2.

use furiwake_e2e::*;
use std::time::Duration;

/// Server N's address on the client segment.
fn dsr_ip(n: u32) -> String {
    format!("192.0.2.{}", 10 + n)
}

/// The lab with the servers moved to br-out, nginx started (`big_mb` MiB
/// /big); furiwake not started. `dsr`: the VIP on their loopback (ARP
/// kept quiet about it); otherwise their default route is the box.
fn one_arm_lab(tag: char, name: &str, big_mb: u32, dsr: bool) -> Option<Lab> {
    let mut lab = Lab::open(tag, &format!("dsr-{name}"), &["nginx", "tcpdump"])?;
    for n in 1..=LAB_BACKENDS {
        lab.topo.exec("sw", &format!("ip link set s{n} nomaster && ip link set s{n} master br-out"));
        let side = if dsr {
            format!("ip addr add {VIP}/32 dev lo && sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2")
        } else {
            format!("ip route add default via {SELF_OUTSIDE}")
        };
        lab.topo.exec(&format!("srv{n}"), &format!("ip addr flush dev eth0 && ip addr add {}/24 dev eth0 && {side}", dsr_ip(n)));
        let p = start_nginx_backend(&lab.srv_ns(n), &format!("srv{n}"), &dsr_ip(n), &lab.backend_dir(n), big_mb);
        lab.procs.insert(format!("nginx-srv{n}"), p);
    }
    Some(lab)
}

fn one_arm_config(lab: &Lab, forwarding: &str) -> String {
    let servers: Vec<String> = (1..=LAB_BACKENDS).map(|n| format!("  {{ address = \"{}:80\" }},", dsr_ip(n))).collect();
    format!(
        "{}\n[[interface]]\nname = \"outside\"\ndevice = \"net_af_packet0,iface=lb-out\"\naddress = \"192.0.2.2/24\"\n\n[console]\nsocket = \"{}\"\n\n[[health_check]]\nname = \"http\"\nkind = \"http\"\ninterval_ms = 500\nrequest = \"GET /health HTTP/1.0\\r\\n\\r\\n\"\nexpect_status = 200\n\n[[pool]]\nname = \"web\"\nalgorithm = \"round-robin\"\nhealth_check = \"http\"\nservers = [\n{}\n]\n\n[[virtual_server]]\nname = \"www\"\naddress = \"{VIP}:80\"\nforwarding = \"{forwarding}\"\npool = \"web\"\n",
        platform_section(&lab.prefix),
        lab.dir.path("console.sock").display(),
        servers.join("\n")
    )
}

/// tcpdump in namespace `ns` on `iface` with `filter` into `file`, once it
/// listens.
fn capture(lab: &Lab, ns: &str, iface: &str, filter: &str, file: &std::path::Path, log: &str) -> Proc {
    let mut p = Proc::spawn("tcpdump", Some(ns), &["tcpdump", "-n", "-U", "-i", iface, "-w", file.to_str().unwrap(), filter], &lab.dir.path(log), false);
    p.expect_output("listening on", Duration::from_secs(5));
    p
}

/// 30 requests spread round robin 10/10/10, then a 50 MiB download
/// byte-identical to one server's /big.
fn spread_and_download(lab: &Lab, what: &str) {
    let t = tally(&lab.curl_ids(VIP, 30));
    println!("{what}: 30 requests: {t:?}");
    assert_eq!(t.values().copied().collect::<Vec<_>>(), vec![10, 10, 10], "{what}: round robin over three servers: {t:?}");
    let out = lab.dir.path("big");
    lab.topo.exec("client", &format!("curl -s -S -m 60 -o {} http://{VIP}/big", out.display()));
    let want: Vec<String> = (1..=LAB_BACKENDS).map(|n| sha256_file(&lab.backend_dir(n).join("www/big"))).collect();
    assert!(want.contains(&sha256_file(&out)), "{what}: the 50 MiB download is not byte-identical to a server's /big");
}

/// Waits for server `ip:port`'s report line to say `state`.
fn server_state(lab: &mut Lab, addr: &str, state: &str) {
    let needle = format!("server {addr}: state {state}");
    report_until(lab.fw(), Duration::from_secs(15), |r| r.contains(&needle)).unwrap_or_else(|r| panic!("{addr} not {state}:\n{r}"));
}

/// A console command's answer.
fn console(lab: &Lab, cmd: &str) -> String {
    try_sh(&format!("{} console --socket {} -c {}", furiwake_bin().display(), lab.dir.path("console.sock").display(), shell_quote(cmd))).1
}

/// MAT (`dsr-l2`): 30 requests spread round robin 10/10/10, a 50 MiB
/// download byte-identical; the server receives the client's SYN with only
/// the Ethernet addresses changed (to its MAC, from the box's port: IP and
/// TCP bytes identical, TTL included), and no reply crosses the box.
#[test]
fn dsr_l2_spreads_connections_and_changes_only_the_mac() {
    let Some(mut lab) = one_arm_lab('d', "l2", 50, true) else { return };
    let config = one_arm_config(&lab, "dsr-l2");
    lab.start_config(&config);
    report_until(lab.fw(), Duration::from_secs(10), |r| r.matches("state up").count() >= 3).unwrap_or_else(|r| panic!("servers not up:\n{r}"));

    // Captures: what the client sends, what srv2 receives, what crosses the box.
    let (c_pcap, s_pcap, b_pcap) = (lab.dir.path("client.pcap"), lab.dir.path("srv2.pcap"), lab.dir.path("box.pcap"));
    let syn_filter = "tcp port 45678 and tcp[tcpflags] & tcp-syn != 0";
    let mut caps = [
        capture(&lab, &lab.topo.ns("client"), "eth0", syn_filter, &c_pcap, "cap-client.log"),
        capture(&lab, &lab.srv_ns(2), "eth0", syn_filter, &s_pcap, "cap-srv2.log"),
        capture(&lab, &lab.topo.ns("lb"), "lb-out", &format!("src host {VIP} and tcp src port 80 and not dst host {SELF_OUTSIDE}"), &b_pcap, "cap-box.log"),
    ];
    spread_and_download(&lab, "dsr-l2");
    // One request from a fixed port, to find its SYN on both sides: the
    // 32nd connection, which round robin sends to srv2.
    let id = lab.topo.exec("client", &format!("curl -s -m 5 --local-port 45678 http://{VIP}/id"));
    assert_eq!(id.trim(), "srv2");
    // Probes go to the VIP at the server's MAC, as clients do: srv3
    // without the VIP on its loopback is down although its own address
    // still answers, and up again once it has it back.
    let srv3 = format!("{}:80", dsr_ip(3));
    lab.topo.exec("srv3", &format!("ip addr del {VIP}/32 dev lo"));
    server_state(&mut lab, &srv3, "down");
    assert_eq!(lab.topo.exec("client", &format!("curl -s -m 2 http://{}/id", dsr_ip(3))).trim(), "srv3", "srv3's own address still answers");
    lab.topo.exec("srv3", &format!("ip addr add {VIP}/32 dev lo"));
    server_state(&mut lab, &srv3, "up");
    // tcpdump writes each packet as it handles it (-U): wait for the SYN.
    wait_for(Duration::from_secs(10), || (!pcap_frames(&c_pcap).is_empty() && !pcap_frames(&s_pcap).is_empty()).then_some(()));
    std::thread::sleep(Duration::from_millis(300));
    for p in caps.iter_mut() {
        p.signal(libc::SIGINT);
        p.wait(Duration::from_secs(5));
    }

    let sent = pcap_frames(&c_pcap);
    let got = pcap_frames(&s_pcap);
    assert!(!sent.is_empty() && !got.is_empty(), "the SYN was not captured on both sides: {} / {}", sent.len(), got.len());
    let (sent, got) = (&sent[0], &got[0]);
    let box_mac = port_mac(&lab.fw_output(), "outside").expect("the box's MAC");
    let srv_mac = lab.topo.exec("srv2", "cat /sys/class/net/eth0/address").trim().to_string();
    let mac = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":");
    assert_eq!(mac(&sent[0..6]), box_mac, "the client sent the SYN to the box (the VIP's ARP)");
    assert_eq!(mac(&got[0..6]), srv_mac, "srv2 got it at its own MAC");
    assert_eq!(mac(&got[6..12]), box_mac, "from the box's port");
    assert_eq!(&got[12..], &sent[12..], "IP header (TTL included) and TCP segment untouched");
    let conns = console(&lab, "show connections limit 5");
    assert!(conns.contains("forwarding: dsr-l2"), "{conns}");
    let crossed = pcap_frames(&b_pcap).len();
    assert_eq!(crossed, 0, "{crossed} reply packets from the VIP crossed the box");
    let fw = stop_furiwake_cleanly(lab.fw());
    let block = last_counters_block(&fw).unwrap_or_default();
    println!("dsr-l2: SYN identical from IP on, only the Ethernet addresses changed; srv3 down without the VIP and up again with it; 0 reply packets on the box's port; 50 MiB byte-identical\n{}", block.lines().filter(|l| l.starts_with("virtual-server") || l.starts_with("worker")).collect::<Vec<_>>().join("\n"));
    assert_eq!(must(&block, "virtual-server www:", "out-pkts"), 0, "the box forwarded no reply");
}

/// A router namespace between the lab's two segments (192.0.2.1 on br-out,
/// 198.51.100.254 on br-in): the L3 DSR servers' default route, so their
/// answers reach the client without the box.
fn add_router(lab: &Lab) {
    let p = lab.topo.prefix.clone();
    sh(&format!(
        "ip netns add {p}-rtr && ip netns exec {p}-rtr sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.disable_ipv6=1 && ip -n {p}-rtr link set lo up && \
         ip link add {p}ra type veth peer name {p}rb && ip link set {p}ra netns {p}-rtr && ip link set {p}rb netns {p}-sw && \
         ip link add {p}rc type veth peer name {p}rd && ip link set {p}rc netns {p}-rtr && ip link set {p}rd netns {p}-sw && \
         ip -n {p}-sw link set {p}rb master br-out && ip -n {p}-sw link set {p}rd master br-in && ip -n {p}-sw link set {p}rb up && ip -n {p}-sw link set {p}rd up && \
         ip -n {p}-rtr addr add 192.0.2.1/24 dev {p}ra && ip -n {p}-rtr addr add 198.51.100.254/24 dev {p}rc && ip -n {p}-rtr link set {p}ra up && ip -n {p}-rtr link set {p}rc up && \
         ip netns exec {p}-rtr ethtool -K {p}ra tx off >/dev/null && ip netns exec {p}-rtr ethtool -K {p}rc tx off >/dev/null"
    ));
}

/// L3 DSR (`dsr-dscp`) across a router: the lab's servers stay on their
/// own segment, with a router namespace (192.0.2.1 / 198.51.100.254) as
/// their default route; each restores the VIP from the DSCP with one nft
/// rule (README). 30 requests 10/10/10, a 50 MiB download byte-identical;
/// the server receives the SYN addressed to itself with DSCP 46 and the
/// client's source; no reply crosses the box.
#[test]
fn dsr_dscp_marks_the_vip_and_replies_bypass_the_box() {
    let Some(mut lab) = Lab::open('q', "dsr-dscp", &["nginx", "tcpdump", "nft"]) else { return };
    add_router(&lab);
    for n in 1..=LAB_BACKENDS {
        lab.topo.exec(
            &format!("srv{n}"),
            &format!(
                "ip route replace default via 198.51.100.254 && ip addr add {VIP}/32 dev lo && \
                 sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 && \
                 nft add table ip dsr && nft add chain ip dsr pre '{{ type filter hook prerouting priority raw; }}' && \
                 nft add rule ip dsr pre ip dscp 46 ip daddr set {VIP}"
            ),
        );
        lab.start_nginx(n, 50);
    }
    let servers: Vec<String> = (1..=LAB_BACKENDS).map(|n| format!("  {{ address = \"{}:80\" }},", server_ip(n))).collect();
    let config = format!(
        "{}\n{LAB_INTERFACES}\n[[health_check]]\nname = \"http\"\nkind = \"http\"\ninterval_ms = 500\nrequest = \"GET /health HTTP/1.0\\r\\n\\r\\n\"\nexpect_status = 200\n\n[[pool]]\nname = \"web\"\nalgorithm = \"round-robin\"\nhealth_check = \"http\"\nservers = [\n{}\n]\n\n[[virtual_server]]\nname = \"www\"\naddress = \"{VIP}:80\"\nforwarding = \"dsr-dscp\"\ndscp = 46\npool = \"web\"\n",
        platform_section(&lab.prefix),
        servers.join("\n")
    );
    lab.start_config(&config);
    report_until(lab.fw(), Duration::from_secs(10), |r| r.matches("state up").count() >= 3).unwrap_or_else(|r| panic!("servers not up:\n{r}"));
    let (s_pcap, b_pcap) = (lab.dir.path("srv2.pcap"), lab.dir.path("box.pcap"));
    let mut caps = [
        capture(&lab, &lab.srv_ns(2), "eth0", "tcp port 45679 and tcp[tcpflags] & tcp-syn != 0", &s_pcap, "cap-srv2.log"),
        capture(&lab, &lab.topo.ns("lb"), "lb-in", &format!("src host {VIP} or src host 198.51.100.11 or src host 198.51.100.12 or src host 198.51.100.13"), &b_pcap, "cap-box.log"),
    ];
    spread_and_download(&lab, "dsr-dscp");
    let id = lab.topo.exec("client", &format!("curl -s -m 5 --local-port 45679 http://{VIP}/id"));
    assert_eq!(id.trim(), "srv2");
    // Probes carry the code to the VIP, as clients' packets do: srv3
    // without its nft rule is down although its own address answers.
    lab.topo.exec("srv3", "nft delete table ip dsr");
    server_state(&mut lab, &format!("{}:80", server_ip(3)), "down");
    wait_for(Duration::from_secs(10), || (!pcap_frames(&s_pcap).is_empty()).then_some(()));
    std::thread::sleep(Duration::from_millis(300));
    for c in caps.iter_mut() {
        c.signal(libc::SIGINT);
        c.wait(Duration::from_secs(5));
    }
    let got = pcap_frames(&s_pcap);
    let syn = got.first().unwrap_or_else(|| panic!("srv2 captured no SYN"));
    assert_eq!(syn[15] >> 2, 46, "DSCP 46 on the wire to the server (TOS {:#04x})", syn[15]);
    assert_eq!(&syn[26..30], &[192, 0, 2, 10], "the client's source");
    assert_eq!(&syn[30..34], &[198, 51, 100, 12], "addressed to srv2");
    assert_eq!(u16::from_be_bytes([syn[36], syn[37]]), 80, "the VIP's port");
    // Replies leave the servers towards the router, not the box: nothing
    // addressed to the client crossed the box's inside port (the servers'
    // answers to its health probes go to its self IP, not counted).
    let replies = pcap_frames(&b_pcap).iter().filter(|f| f.len() > 34 && f[30..34] == [192, 0, 2, 10]).count();
    assert_eq!(replies, 0, "{replies} replies to the client crossed the box");
    let fw = stop_furiwake_cleanly(lab.fw());
    let block = last_counters_block(&fw).unwrap_or_default();
    assert_eq!(must(&block, "virtual-server www:", "out-pkts"), 0, "the box forwarded no reply");
    println!("dsr-dscp: SYN to srv2 with DSCP 46 and the client's source; srv3 down without its rule; 0 replies to the client on the box's inside port; 50 MiB byte-identical");
}


/// One-arm NAT with the client on the servers' segment (hairpin, seeds
/// 002 and 004): the box source-NATs it to its self IP so the servers
/// answer through it; round robin 10/10/10 and a 50 MiB download
/// byte-identical; the servers see the box's address as the client's.
/// `configs/one-arm-nat.toml` is this topology.
#[test]
fn one_arm_nat_serves_a_client_on_the_servers_segment() {
    let Some(mut lab) = one_arm_lab('h', "hairpin", 50, false) else { return };
    let config = one_arm_config(&lab, "nat");
    lab.start_config(&config);
    report_until(lab.fw(), Duration::from_secs(10), |r| r.matches("state up").count() >= 3).unwrap_or_else(|r| panic!("servers not up:\n{r}"));
    spread_and_download(&lab, "one-arm nat");
    let conns = console(&lab, "show connections limit 5");
    assert!(conns.contains("forwarding: full-nat (hairpin"), "{conns}");
    let log = lab.nginx_access_log(1);
    assert!(!log.is_empty() && log.iter().all(|l| l.starts_with(&format!("{SELF_OUTSIDE} "))), "srv1 saw the box's address as the client's: {log:?}");
    let fw = stop_furiwake_cleanly(lab.fw());
    let block = last_counters_block(&fw).unwrap_or_default();
    assert!(must(&block, "virtual-server www:", "out-pkts") > 1000, "the answers came back through the box:\n{block}");
    println!("one-arm nat: hairpinned client 10/10/10, 50 MiB byte-identical, servers saw {SELF_OUTSIDE}");
}

/// A tunnel packet's outer source address and (GUE) source port.
type OuterKey = (Vec<u8>, u16);

/// The tunnel's inner packet of a frame captured on a server, with its
/// outer key: `None` for another frame.
fn decapsulated(f: &[u8], proto: u8, overhead: usize) -> Option<(OuterKey, &[u8])> {
    if f.len() < 14 + overhead + 20 || f[12..14] != [8, 0] || f[23] != proto {
        return None;
    }
    let sport = if proto == 17 { u16::from_be_bytes([f[34], f[35]]) } else { 0 };
    Some(((f[26..30].to_vec(), sport), &f[14 + overhead..]))
}

/// `dsr-tunnel` of `kind` across the router: each server runs the test's
/// userspace decapsulator (`tests/scripts/decap.py`: raw sockets in, a TUN
/// device out; this kernel has no IPIP/GRE devices) and holds the VIP on
/// lo. 30 requests 10/10/10 and a 50 MiB download byte-identical; on srv2
/// the client's SYN arrives inside the tunnel byte for byte as the client
/// sent it, every flow has one outer header and the flows have several;
/// no reply crosses the box. Then a 2 MB upload through a second virtual
/// server: its 1500-byte packets do not fit the 1500-byte link once
/// encapsulated, the client gets ICMP fragmentation needed from the VIP
/// with the tunnel's MTU, lowers its path MTU, and every byte arrives.
fn dsr_tunnel(kind: &str, proto: u8, overhead: usize) {
    let Some(mut lab) = Lab::open('u', &format!("dsr-{kind}"), &["nginx", "tcpdump", "socat"]) else { return };
    add_router(&lab);
    let decap = test_script("decap.py");
    for n in 1..=LAB_BACKENDS {
        lab.topo.exec(
            &format!("srv{n}"),
            &format!(
                "ip route replace default via 198.51.100.254 && ip addr add {VIP}/32 dev lo && \
                 sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 && \
                 ip tuntap add dev tun0 mode tun && ip link set tun0 up && sysctl -qw net.ipv4.conf.tun0.rp_filter=0"
            ),
        );
        lab.serve(&format!("decap-srv{n}"), n, &["/usr/bin/python3", decap.to_str().unwrap(), "--tun", "tun0", "--local", &server_ip(n)]);
        lab.start_nginx(n, 50);
        lab.serve(&format!("sink-srv{n}"), n, &["socat", "-d", "-d", "TCP-LISTEN:9000,reuseaddr,fork", "SYSTEM:wc -c"]);
    }
    let servers = |port: u16| (1..=LAB_BACKENDS).map(|n| format!("  {{ address = \"{}:{port}\" }},", server_ip(n))).collect::<Vec<_>>().join("\n");
    let config = format!(
        "{}\n{LAB_INTERFACES}\n[[health_check]]\nname = \"http\"\nkind = \"http\"\ninterval_ms = 500\nrequest = \"GET /health HTTP/1.0\\r\\n\\r\\n\"\nexpect_status = 200\n\n\
         [[pool]]\nname = \"web\"\nalgorithm = \"round-robin\"\nhealth_check = \"http\"\nservers = [\n{}\n]\n\n[[pool]]\nname = \"sink\"\nservers = [\n{}\n]\n\n\
         [[virtual_server]]\nname = \"www\"\naddress = \"{VIP}:80\"\nforwarding = \"dsr-tunnel\"\ntunnel = \"{kind}\"\ntunnel_source = \"203.0.113.0/24\"\npool = \"web\"\n\n\
         [[virtual_server]]\nname = \"sink\"\naddress = \"{VIP}:9000\"\nforwarding = \"dsr-tunnel\"\ntunnel = \"{kind}\"\npool = \"sink\"\n",
        platform_section(&lab.prefix),
        servers(80),
        servers(9000)
    );
    lab.start_config(&config);
    report_until(lab.fw(), Duration::from_secs(10), |r| r.matches("state up").count() >= 6).unwrap_or_else(|r| panic!("servers not up:\n{r}"));
    let (c_pcap, s_pcap, b_pcap, i_pcap) = (lab.dir.path("client.pcap"), lab.dir.path("srv2.pcap"), lab.dir.path("box.pcap"), lab.dir.path("icmp.pcap"));
    let tunnel_filter = match proto {
        4 => "ip proto 4".to_string(),
        47 => "ip proto 47".to_string(),
        _ => "udp dst port 6080".to_string(),
    };
    let mut caps = [
        capture(&lab, &lab.topo.ns("client"), "eth0", "tcp port 45680 and tcp[tcpflags] & tcp-syn != 0", &c_pcap, "cap-client.log"),
        capture(&lab, &lab.srv_ns(2), "eth0", &tunnel_filter, &s_pcap, "cap-srv2.log"),
        capture(&lab, &lab.topo.ns("lb"), "lb-in", &format!("src host {VIP} or src host 198.51.100.11 or src host 198.51.100.12 or src host 198.51.100.13"), &b_pcap, "cap-box.log"),
        capture(&lab, &lab.topo.ns("client"), "eth0", "icmp", &i_pcap, "cap-icmp.log"),
    ];
    spread_and_download(&lab, &format!("dsr-tunnel {kind}"));
    let id = lab.topo.exec("client", &format!("curl -s -m 5 --local-port 45680 http://{VIP}/id"));
    assert_eq!(id.trim(), "srv2");
    // The upload: 2 MB up, the server's byte count back.
    let got = lab.topo.exec("client", &format!("head -c 2000000 /dev/urandom | socat -t 20 -T 30 - TCP:{VIP}:9000"));
    assert_eq!(got.trim(), "2000000", "dsr-tunnel {kind}: the upload arrived whole after the path MTU came down");
    let route = lab.topo.exec("client", &format!("ip route get {VIP}"));
    // Probes go through the tunnel to the VIP, as clients do: srv3 without
    // its decapsulator is down although nginx answers on its own address.
    lab.stop("decap-srv3");
    server_state(&mut lab, &format!("{}:80", server_ip(3)), "down");
    wait_for(Duration::from_secs(10), || (!pcap_frames(&c_pcap).is_empty() && pcap_frames(&s_pcap).len() > 100).then_some(()));
    std::thread::sleep(Duration::from_millis(300));
    for c in caps.iter_mut() {
        c.signal(libc::SIGINT);
        c.wait(Duration::from_secs(5));
    }

    // srv2: every tunnel packet to its own address; one outer header per
    // flow, several over the flows.
    let mut per_flow: std::collections::BTreeMap<u16, std::collections::BTreeSet<OuterKey>> = Default::default();
    let (mut syn, mut probes) = (None, 0);
    let captured = pcap_frames(&s_pcap);
    for f in &captured {
        let Some((outer, inner)) = decapsulated(f, proto, overhead) else { continue };
        assert_eq!(&f[30..34], &[198, 51, 100, 12], "outer destination: srv2's own address");
        assert_eq!(&inner[16..20], &[192, 0, 2, 100], "inner destination: the VIP");
        // The box's own health probes, through the tunnel to the VIP too.
        if inner[12..16] == [198, 51, 100, 1] {
            assert_eq!(&outer.0, &[198, 51, 100, 1], "a probe's outer source is the self IP");
            probes += 1;
            continue;
        }
        assert_eq!(&outer.0[..3], &[203, 0, 113], "outer source from tunnel_source");
        let sport = u16::from_be_bytes([inner[20], inner[21]]);
        per_flow.entry(sport).or_default().insert(outer);
        if sport == 45680 && syn.is_none() {
            syn = Some(inner.to_vec());
        }
    }
    assert!(per_flow.len() >= 11, "dsr-tunnel {kind}: srv2 saw {} flows", per_flow.len());
    assert!(probes > 0, "dsr-tunnel {kind}: no health probe came through the tunnel");
    assert!(per_flow.values().all(|o| o.len() == 1), "dsr-tunnel {kind}: a flow's outer header changed: {per_flow:?}");
    let distinct: std::collections::BTreeSet<_> = per_flow.values().flatten().collect();
    assert!(distinct.len() >= per_flow.len() / 2, "dsr-tunnel {kind}: {} outer headers for {} flows", distinct.len(), per_flow.len());
    let sent = pcap_frames(&c_pcap);
    let sent = sent.first().unwrap_or_else(|| panic!("the client's SYN was not captured"));
    let syn = syn.unwrap_or_else(|| panic!("srv2 got no tunnelled SYN from port 45680"));
    assert_eq!(&syn[..], &sent[14..14 + syn.len()], "the client's SYN inside the tunnel, byte for byte (TTL included)");
    // The ICMP error the upload met.
    let mtu = 1500 - overhead;
    let icmp: Vec<Vec<u8>> = pcap_frames(&i_pcap).into_iter().filter(|f| f.len() >= 42 && f[23] == 1 && f[34] == 3 && f[35] == 4).collect();
    assert!(!icmp.is_empty(), "dsr-tunnel {kind}: no ICMP fragmentation needed reached the client");
    for f in &icmp {
        assert_eq!(&f[26..30], &[192, 0, 2, 100], "from the VIP");
        assert_eq!(u16::from_be_bytes([f[40], f[41]]) as usize, mtu, "the tunnel's MTU");
        assert_eq!(&f[58..62], &[192, 0, 2, 100], "quoting the too-big packet to the VIP");
    }
    let replies = pcap_frames(&b_pcap).iter().filter(|f| f.len() > 34 && f[30..34] == [192, 0, 2, 10]).count();
    assert_eq!(replies, 0, "{replies} replies to the client crossed the box");
    if let Some(p) = lab.procs.get("decap-srv2") {
        p.signal(libc::SIGTERM);
    }
    let fw = stop_furiwake_cleanly(lab.fw());
    let block = last_counters_block(&fw).unwrap_or_default();
    assert_eq!(must(&block, "virtual-server www:", "out-pkts"), 0, "the box forwarded no reply");
    let frag = block.lines().find_map(|l| l.trim().strip_prefix("tunnel: frag-needed ")).and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0);
    assert!(frag >= 1, "frag-needed counted:\n{block}");
    wait_for(Duration::from_secs(5), || lab.proc_output("decap-srv2").contains("decap:").then_some(()));
    let counts = lab.proc_output("decap-srv2");
    println!(
        "dsr-tunnel {kind}: 10/10/10, 50 MiB byte-identical; srv2: {} flows, {} outer headers, {probes} probe packets tunnelled, SYN byte-identical inside; srv3 down without its decapsulator; {} ICMP frag-needed (mtu {mtu}), {frag} counted; upload 2 MB whole; client route: {}; {}",
        per_flow.len(),
        distinct.len(),
        icmp.len(),
        route.trim().replace('\n', " "),
        counts.lines().find(|l| l.starts_with("decap:")).unwrap_or("")
    );
}

#[test]
fn dsr_tunnel_ipip_encapsulates_to_the_servers() {
    dsr_tunnel("ipip", 4, 20);
}

#[test]
fn dsr_tunnel_gre_encapsulates_to_the_servers() {
    dsr_tunnel("gre", 47, 24);
}

#[test]
fn dsr_tunnel_gue_encapsulates_to_the_servers() {
    dsr_tunnel("gue", 17, 28);
}

/// The lab of the ICMP tests for one DSR `mode` (`dsr-l2`, `dsr-dscp`,
/// `dsr-tunnel-KIND`): one server, srv1, with no health check (dsr-l2 on
/// the client's segment, the others behind the router, decapsulating with
/// `decap.py` for a tunnel), furiwake started and the server up; the
/// tunnel kind.
fn icmp_lab(tag: char, mode: &str) -> Option<(Lab, Option<&str>)> {
    let tools = ["nginx", "tcpdump", "nft"];
    let (lab, server) = if mode == "dsr-l2" { (one_arm_lab(tag, "icmp-l2", 0, true), dsr_ip(1)) } else { (Lab::open(tag, &format!("icmp-{mode}"), &tools), server_ip(1)) };
    let mut lab = lab?;
    let (interfaces, extra, tunnel) = match mode {
        "dsr-l2" => ("[[interface]]\nname = \"outside\"\ndevice = \"net_af_packet0,iface=lb-out\"\naddress = \"192.0.2.2/24\"\n".to_string(), String::new(), None),
        "dsr-dscp" => (LAB_INTERFACES.to_string(), "dscp = 46\n".to_string(), None),
        kind => {
            let kind = kind.trim_start_matches("dsr-tunnel-");
            (LAB_INTERFACES.to_string(), format!("tunnel = \"{kind}\"\ntunnel_source = \"203.0.113.0/24\"\n"), Some(kind))
        }
    };
    if mode != "dsr-l2" {
        add_router(&lab);
        let restore = if mode == "dsr-dscp" {
            format!("nft add table ip dsr && nft add chain ip dsr pre '{{ type filter hook prerouting priority raw; }}' && nft add rule ip dsr pre ip dscp 46 ip daddr set {VIP}")
        } else {
            "sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 && ip tuntap add dev tun0 mode tun && ip link set tun0 up && sysctl -qw net.ipv4.conf.tun0.rp_filter=0".to_string()
        };
        lab.topo.exec("srv1", &format!("ip route replace default via 198.51.100.254 && ip addr add {VIP}/32 dev lo && sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 && {restore}"));
        if tunnel.is_some() {
            let decap = test_script("decap.py");
            lab.serve("decap-srv1", 1, &["/usr/bin/python3", decap.to_str().unwrap(), "--tun", "tun0", "--local", &server_ip(1)]);
        }
        lab.start_nginx(1, 0);
    }
    let forwarding = if tunnel.is_some() { "dsr-tunnel" } else { mode };
    let config = format!(
        "{}\n{interfaces}\n[[pool]]\nname = \"web\"\nservers = [ {{ address = \"{server}:80\" }} ]\n\n[[virtual_server]]\nname = \"www\"\naddress = \"{VIP}:80\"\nforwarding = \"{forwarding}\"\npool = \"web\"\n{extra}",
        platform_section(&lab.prefix),
    );
    lab.start_config(&config);
    report_until(lab.fw(), Duration::from_secs(10), |r| r.contains("state up")).unwrap_or_else(|r| panic!("server not up:\n{r}"));
    Some((lab, tunnel))
}

/// One direct-server-return mode with one server (srv1), no health check;
/// then a client-side router's fragmentation needed about the server's
/// reply (it quotes VIP:80 -> client, as the server sent it) sent to the
/// VIP, i.e. to the box: captured at srv1, it arrives the way the mode
/// delivers data with the quote untouched, and srv1's TCP takes it.
fn dsr_frag_needed(tag: char, mode: &str) {
    let Some((mut lab, tunnel)) = icmp_lab(tag, mode) else { return };
    let (proto, overhead, filter) = match tunnel {
        Some("ipip") => (4, 20, "ip proto 4"),
        Some("gre") => (47, 24, "ip proto 47"),
        Some(_) => (17, 28, "udp dst port 6080"),
        None => (1, 0, "icmp"),
    };
    let pcap = lab.dir.path("srv1.pcap");
    let mut cap = capture(&lab, &lab.srv_ns(1), "eth0", filter, &pcap, "cap-srv1.log");
    let (seq, cport, sent) = send_frag_needed(&lab);
    // The error as srv1's eth0 got it: its IPv4 packet (inside the
    // tunnel for dsr-tunnel), and the frame.
    let find = || {
        pcap_frames(&pcap).into_iter().find_map(|f| {
            let ip = if tunnel.is_some() { decapsulated(&f, proto, overhead)?.1.to_vec() } else { f.get(14..)?.to_vec() };
            (ip.len() >= 28 && ip[9] == 1 && ip[20] == 3).then_some((f, ip))
        })
    };
    let got = wait_for(Duration::from_secs(5), find);
    cap.signal(libc::SIGINT);
    cap.wait(Duration::from_secs(5));
    let (frame, ip) = got.unwrap_or_else(|| panic!("{mode}: no fragmentation needed reached srv1\n{}", lab.report()));
    let srv_mac = lab.topo.exec("srv1", "cat /sys/class/net/eth0/address").trim().to_string();
    let mac = frame[0..6].iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":");
    assert_eq!(mac, srv_mac, "{mode}: at srv1's MAC");
    // The quote (after the ICMP header): as the server sent its segment.
    let q = 28;
    assert_eq!(&ip[q + 12..q + 20], &[192, 0, 2, 100, 192, 0, 2, 10], "{mode}: quoted VIP -> client");
    assert_eq!((u16::from_be_bytes([ip[q + 20], ip[q + 21]]), u16::from_be_bytes([ip[q + 22], ip[q + 23]])), (80, cport));
    assert_eq!(u32::from_be_bytes([ip[q + 24], ip[q + 25], ip[q + 26], ip[q + 27]]), seq);
    assert_eq!(&ip[20..], &sent[20..], "{mode}: the ICMP message untouched");
    match mode {
        "dsr-dscp" => {
            assert_eq!((ip[1], ip[8]), (46 << 2, sent[8] - 1), "DSCP 46, routed");
            assert_eq!(&ip[16..20], &[198, 51, 100, 11], "to srv1's own address");
            assert_eq!(&ip[12..16], &sent[12..16], "from the router");
        }
        _ => assert_eq!(ip, sent, "{mode}: the error's IPv4 packet as the client side sent it"),
    }
    let route = route_mtu(&lab, "srv1", 1000);
    stop_furiwake_cleanly(lab.fw());
    println!("{mode}: fragmentation needed about a reply reached srv1 (quote VIP:80 -> client:{cport}, seq {seq}); srv1's route: {route}");
}

/// `dsr-l2`: the error reaches the server by MAC alone, its IPv4 packet
/// byte for byte as sent.
#[test]
fn dsr_l2_relays_fragmentation_needed_about_replies() {
    dsr_frag_needed('x', "dsr-l2");
}

/// `dsr-dscp`: to the server's address with DSCP 46 (its nft rule
/// restores the VIP), TTL down, the ICMP message untouched.
#[test]
fn dsr_dscp_relays_fragmentation_needed_about_replies() {
    dsr_frag_needed('y', "dsr-dscp");
}

/// `dsr-tunnel` (IPIP): inside the connection's tunnel, byte for byte.
#[test]
fn dsr_tunnel_relays_fragmentation_needed_about_replies() {
    dsr_frag_needed('z', "dsr-tunnel-ipip");
}

/// RFC 2003 §4 with `dsr-tunnel` (IPIP): the router between the box and
/// srv1 (198.51.100.254, with 203.0.113.0/24, `tunnel_source`, routed to
/// the box) reports fragmentation needed (MTU 1000) about a tunnel packet
/// of a held connection, quoting the outer header the box sent and the
/// client's segment inside. The client gets fragmentation needed from the
/// VIP quoting its own segment, with 1000 less the 20 bytes of IPIP, and
/// its TCP takes it: its route to the VIP carries MTU 980.
#[test]
fn dsr_tunnel_relays_fragmentation_needed_from_inside_the_tunnel_to_the_client() {
    let Some((mut lab, _)) = icmp_lab('w', "dsr-tunnel-ipip") else { return };
    lab.topo.exec("rtr", &format!("ip route add 203.0.113.0/24 via {SELF_INSIDE}"));
    let (s_pcap, c_pcap) = (lab.dir.path("srv1.pcap"), lab.dir.path("client.pcap"));
    let mut caps = [capture(&lab, &lab.srv_ns(1), "eth0", "ip proto 4", &s_pcap, "cap-srv1.log"), capture(&lab, &lab.topo.ns("client"), "eth0", "icmp", &c_pcap, "cap-client.log")];
    let hold = test_script("tcp_hold.py");
    let argv = ["python3", hold.to_str().unwrap(), "--to", &format!("{VIP}:80"), "--timeout", "10"];
    let mut conn = Proc::spawn("hold", Some(&lab.topo.ns("client")), &argv, &lab.dir.path("hold.log"), true);
    conn.expect_output("connected ", Duration::from_secs(10));
    let cport: u16 = conn.output().split(':').next_back().and_then(|p| p.trim().parse().ok()).expect("local port");
    // The tunnel packet of the client's request (its segment with data).
    let request = || {
        pcap_frames(&s_pcap).into_iter().find(|f| {
            decapsulated(f, 4, 20).is_some_and(|(_, inner)| inner.len() > 40 && u16::from_be_bytes([inner[20], inner[21]]) == cport && usize::from(u16::from_be_bytes([inner[2], inner[3]])) > 20 + usize::from(inner[32] >> 4) * 4)
        })
    };
    let tunnelled = wait_for(Duration::from_secs(5), request).unwrap_or_else(|| panic!("srv1 got no tunnelled request from port {cport}"));
    let script = test_script("tunnel_frag_needed.py");
    let hex: String = tunnelled[14..].iter().map(|b| format!("{b:02x}")).collect();
    let (ok, out) = lab.topo.try_exec("rtr", &format!("/usr/bin/python3 {} --packet {hex} --overhead 20 --router 198.51.100.254 --mtu 1000", script.display()));
    assert!(ok && out.contains("sent "), "tunnel_frag_needed.py: {out}");
    let relayed = || pcap_frames(&c_pcap).into_iter().find(|f| f.len() >= 14 + 28 + 28 && f[23] == 1 && f[34] == 3);
    let got = wait_for(Duration::from_secs(5), relayed);
    for c in caps.iter_mut() {
        c.signal(libc::SIGINT);
        c.wait(Duration::from_secs(5));
    }
    let f = got.unwrap_or_else(|| panic!("no fragmentation needed reached the client\n{}", lab.report()));
    assert_eq!((&f[26..30], &f[30..34]), (&[192, 0, 2, 100][..], &[192, 0, 2, 10][..]), "from the VIP to the client");
    assert_eq!((f[35], u16::from_be_bytes([f[40], f[41]])), (4, 980), "fragmentation needed, 1000 less the IPIP header");
    let inner = &tunnelled[14 + 20..];
    assert_eq!(&f[42..42 + 20], &inner[..20], "quoting the client's IPv4 header as it sent it");
    assert_eq!(&f[62..66], &inner[20..24], "and its ports");
    let route = lab.topo.exec("client", &format!("ip route get {VIP}"));
    assert!(route.contains("mtu 980"), "the client's TCP did not take it: {route}");
    conn.send_line("close");
    let fw = stop_furiwake_cleanly(lab.fw());
    let block = last_counters_block(&fw).unwrap_or_default();
    let frag = block.lines().find_map(|l| l.trim().strip_prefix("tunnel: frag-needed ")).and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0);
    assert_eq!(frag, 1, "the relayed error counted:\n{block}");
    println!("dsr-tunnel ipip: the router's fragmentation needed (1000) about the tunnel reached the client from the VIP with 980; client's route: {}", route.trim().replace('\n', " "));
}
