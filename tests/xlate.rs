//! Translation between the families (issue 24, RFC 7915) end to end: the
//! real `furiwake` binary in the lab of `scripts/netns.sh` with both
//! families in the client and server namespaces (`netns.sh ipv6`).
//!
//! Lab: PREFIX-client 192.0.2.10 + 2001:db8:1::10 -- br-out -- lb-out
//! [furiwake] lb-in -- br-in -- PREFIX-srvN 198.51.100.(10+N) +
//! 2001:db8:2::(10+N). The box's self addresses: 192.0.2.2 and
//! 2001:db8:1::2 outside, 198.51.100.1 and 2001:db8:2::1 inside.

use furiwake_e2e::*;
use std::time::Duration;

const VIP4: &str = "192.0.2.100";
const VIP6: &str = "2001:db8:1::100";
const BIG_MB: u32 = 50;

/// The lab's two interfaces with both families, a route to the far
/// segment behind `rtr` (for the path MTU test), the console on `socket`.
fn interfaces(lab: &Lab, socket: &std::path::Path) -> String {
    format!(
        "{}\n[[interface]]\nname = \"outside\"\ndevice = \"net_af_packet0,iface=lb-out\"\naddresses = [\"192.0.2.2/24\", \"2001:db8:1::2/64\"]\n\n\
         [[interface]]\nname = \"inside\"\ndevice = \"net_af_packet1,iface=lb-in\"\naddresses = [\"198.51.100.1/24\", \"2001:db8:2::1/64\"]\n\n\
         [[route]]\nprefix = \"203.0.113.0/24\"\nvia = \"198.51.100.254\"\n\n[console]\nsocket = \"{}\"\n",
        platform_section(&lab.prefix),
        socket.display()
    )
}

/// `n` requests for `/id` at `url` from the client (`-4` or `-6`), a new
/// connection each: the answers.
fn curl_ids(lab: &Lab, family: &str, url: &str, n: usize) -> Vec<String> {
    let cmd = format!("for i in $(seq {n}); do curl {family} -s -S -m 5 {url}/id || echo \"FAIL request $i exit $?\"; done");
    let (ok, out) = lab.topo.try_exec("client", &cmd);
    let answers: Vec<String> = out.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    assert!(ok && answers.len() == n && !answers.iter().any(|a| a.starts_with("FAIL")), "{n} requests to {url}/id: {out}\nfuriwake:\n{}", lab.fw_output());
    answers
}

/// A 50 MiB download byte-identical to one server's `/big`.
fn download(lab: &Lab, family: &str, url: &str, hashes: &[String]) {
    let file = lab.dir.path("big.download");
    let (ok, out) = lab.topo.try_exec("client", &format!("curl {family} -s -S -m 120 -o {} -w '%{{http_code}} %{{size_download}}' {url}/big", file.display()));
    assert!(ok && out.trim() == format!("200 {}", u64::from(BIG_MB) << 20), "{url}: download: {out}\nfuriwake:\n{}", lab.fw_output());
    let got = sha256_file(&file);
    assert!(hashes.contains(&got), "{url}: the download is one server's file");
    let _ = std::fs::remove_file(&file);
}

fn logged_sources(lab: &Lab) -> Vec<String> {
    let all: Vec<String> = (1..=LAB_BACKENDS).flat_map(|n| lab.nginx_access_log(n)).filter_map(|l| l.split_whitespace().next().map(str::to_string)).collect();
    for n in 1..=LAB_BACKENDS {
        std::fs::write(lab.backend_dir(n).join("logs/access.log"), "").expect("empty the access log");
    }
    all
}

/// An IPv6 VIP over the three servers' IPv4 addresses and an IPv4 VIP over
/// their IPv6 addresses, both `full-nat`: `curl -6` and `curl -4` spread
/// 30 requests 10/10/10 each and download 50 MiB byte-identical; the
/// servers' access logs show the box's local address of their own family
/// (198.51.100.1, 2001:db8:2::1); `show connections` lists a translated
/// entry with both families' addresses.
#[test]
fn an_ipv6_vip_over_ipv4_servers_and_an_ipv4_vip_over_ipv6_servers() {
    let Some(mut lab) = Lab::open('x', "xlate", &["nginx"]) else { return };
    lab.topo.ipv6(LAB_BACKENDS);
    for n in 1..=LAB_BACKENDS {
        lab.start_nginx6(n, BIG_MB, &[80]);
    }
    let hashes: Vec<String> = (1..=LAB_BACKENDS).map(|n| sha256_file(&lab.backend_dir(n).join("www/big"))).collect();
    let socket = lab.dir.path("console.sock");
    let v4: Vec<String> = (1..=LAB_BACKENDS).map(|n| format!("{{ address = \"{}:80\" }}", server_ip(n))).collect();
    let v6: Vec<String> = (1..=LAB_BACKENDS).map(|n| format!("{{ address = \"[2001:db8:2::{}]:80\" }}", 10 + n)).collect();
    let cfg = format!(
        "{}\n[[pool]]\nname = \"web4\"\nservers = [ {} ]\n\n[[pool]]\nname = \"web6\"\nservers = [ {} ]\n\n\
         [[virtual_server]]\nname = \"six-to-four\"\naddress = \"[{VIP6}]:80\"\nforwarding = \"full-nat\"\npool = \"web4\"\n\n\
         [[virtual_server]]\nname = \"four-to-six\"\naddress = \"{VIP4}:80\"\nforwarding = \"full-nat\"\npool = \"web6\"\n",
        interfaces(&lab, &socket),
        v4.join(", "),
        v6.join(", ")
    );
    lab.start_config(&cfg);
    for (family, url, seen, name) in [("-6", format!("http://[{VIP6}]"), "198.51.100.1", "six-to-four"), ("-4", format!("http://{VIP4}"), "2001:db8:2::1", "four-to-six")] {
        let t = tally(&curl_ids(&lab, family, &url, 30));
        assert_eq!(t.values().copied().collect::<Vec<_>>(), vec![10, 10, 10], "{name}: round robin over the three: {t:?}");
        download(&lab, family, &url, &hashes);
        let sources = logged_sources(&lab);
        assert!(sources.len() >= 31 && sources.iter().all(|s| s == seen), "{name}: every request from the box's {seen}: {sources:?}");
        let block = lab.report();
        assert_eq!(must(&block, &format!("virtual-server {name}:"), "conns-new"), 31, "{block}");
    }
    // A connection held open: its entry shows the client's, the VIP's, the
    // local and the server's addresses, of both families.
    let hold = lab.topo.exec("client", &format!("(curl -6 -s -m 20 --limit-rate 100k -o /dev/null http://[{VIP6}]/big &) ; sleep 1; echo started"));
    assert!(hold.contains("started"));
    let (ok, conns) = console_at(&socket, "show connections");
    let translated = conns.split("\n\n").find(|b| {
        b.contains("client side client address: [2001:db8:1::10]:")
            && b.contains(&format!("client side server address: [{VIP6}]:80"))
            && b.contains("server side client address: 198.51.100.1:")
            && (1..=LAB_BACKENDS).any(|n| b.contains(&format!("server side server address: {}:80", server_ip(n))))
    });
    assert!(ok && translated.is_some(), "a translated entry's four addresses, each side in its family: {conns}");
    println!("translation: an IPv6 VIP over IPv4 servers and an IPv4 VIP over IPv6 servers, 10/10/10 and 50 MiB byte-identical each, the servers seeing the box's address of their family\n{}", translated.unwrap_or_default());
    stop_furiwake_cleanly(lab.fw());
}

/// A router between the servers' segment and a far one (203.0.113.0/24),
/// its far link's MTU `mtu`, with one server there (203.0.113.10, its own
/// link at 1500, so it announces an MSS of 1460) that counts what it
/// receives on port 9000.
fn add_far_server(lab: &mut Lab, mtu: u32) {
    let p = lab.topo.prefix.clone();
    sh(&format!(
        "ip netns add {p}-rtr && ip netns exec {p}-rtr sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.disable_ipv6=1 && ip -n {p}-rtr link set lo up && \
         ip netns add {p}-far && ip netns exec {p}-far sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && ip -n {p}-far link set lo up && \
         ip link add {p}ra type veth peer name {p}rb && ip link set {p}ra netns {p}-rtr && ip link set {p}rb netns {p}-sw && \
         ip -n {p}-sw link set {p}rb master br-in && ip -n {p}-sw link set {p}rb up && \
         ip link add {p}rc type veth peer name {p}rd && ip link set {p}rc netns {p}-rtr && ip link set {p}rd netns {p}-far && \
         ip -n {p}-rtr addr add 198.51.100.254/24 dev {p}ra && ip -n {p}-rtr addr add 203.0.113.1/24 dev {p}rc && \
         ip -n {p}-rtr link set {p}ra up && ip -n {p}-rtr link set {p}rc mtu {mtu} up && \
         ip -n {p}-far link set {p}rd name eth0 && ip -n {p}-far addr add 203.0.113.10/24 dev eth0 && ip -n {p}-far link set eth0 up && \
         ip -n {p}-far route add default via 203.0.113.1 && \
         ip netns exec {p}-rtr ethtool -K {p}ra tx off >/dev/null && ip netns exec {p}-rtr ethtool -K {p}rc tx off >/dev/null && ip netns exec {p}-far ethtool -K eth0 tx off >/dev/null"
    ));
    let ns = lab.topo.ns("far");
    let mut sink = Proc::spawn("socat", Some(&ns), &["socat", "-d", "-d", "TCP4-LISTEN:9000,reuseaddr,fork", "SYSTEM:wc -c"], &lab.dir.path("sink-far.log"), false);
    sink.expect_output("listening on", Duration::from_secs(5));
    lab.procs.insert("sink-far".into(), sink);
}

fn capture(lab: &Lab, ns: &str, iface: &str, filter: &str, file: &std::path::Path, log: &str) -> Proc {
    let mut p = Proc::spawn("tcpdump", Some(ns), &["tcpdump", "-n", "-U", "-i", iface, "-w", file.to_str().unwrap(), filter], &lab.dir.path(log), false);
    p.expect_output("listening on", Duration::from_secs(5));
    p
}

/// Path MTU across the translation: an IPv6 client uploads 2 MB through
/// an IPv6 VIP to an IPv4 server behind a router whose far link's MTU is
/// 1400. The client's 1500-byte packets leave the box as 1480-byte IPv4
/// packets with DF; the router answers fragmentation needed (1400) to the
/// box's local address, which the box turns into Packet Too Big (1420)
/// from the VIP to the client, quoting the client's packet; the client's
/// path MTU comes down and every byte arrives. Both errors are captured.
#[test]
fn path_mtu_discovery_works_across_the_translation() {
    let Some(mut lab) = Lab::open('y', "xlate-pmtu", &["tcpdump", "socat"]) else { return };
    lab.topo.ipv6(LAB_BACKENDS);
    add_far_server(&mut lab, 1400);
    let socket = lab.dir.path("console.sock");
    let cfg = format!(
        "{}\n[[pool]]\nname = \"far\"\nservers = [ {{ address = \"203.0.113.10:9000\" }} ]\n\n[[virtual_server]]\nname = \"upload\"\naddress = \"[{VIP6}]:9000\"\nforwarding = \"full-nat\"\npool = \"far\"\n",
        interfaces(&lab, &socket)
    );
    lab.start_config(&cfg);
    let (frag, ptb) = (lab.dir.path("frag.pcap"), lab.dir.path("ptb.pcap"));
    let rtr = lab.topo.ns("rtr");
    let ra = format!("{}ra", lab.topo.prefix);
    let mut caps = [
        capture(&lab, &rtr, &ra, "icmp and icmp[0] == 3 and icmp[1] == 4", &frag, "cap-frag.log"),
        capture(&lab, &lab.topo.ns("client"), "eth0", "icmp6 and ip6[40] == 2", &ptb, "cap-ptb.log"),
    ];
    let got = lab.topo.exec("client", &format!("head -c 2000000 /dev/urandom | socat -t 20 -T 30 - 'TCP6:[{VIP6}]:9000'"));
    assert_eq!(got.trim(), "2000000", "the upload arrived whole after the path MTU came down\nfuriwake:\n{}", lab.fw_output());
    wait_for(Duration::from_secs(10), || (!pcap_frames(&frag).is_empty() && !pcap_frames(&ptb).is_empty()).then_some(()));
    std::thread::sleep(Duration::from_millis(300));
    for c in caps.iter_mut() {
        c.signal(libc::SIGINT);
        c.wait(Duration::from_secs(5));
    }
    let frags = pcap_frames(&frag);
    assert!(!frags.is_empty(), "the router sent no fragmentation needed");
    for f in &frags {
        assert_eq!(&f[30..34], &[198, 51, 100, 1], "to the box's local address");
        assert_eq!(u16::from_be_bytes([f[40], f[41]]), 1400);
        assert_eq!(&f[54..58], &[198, 51, 100, 1], "quoting the box's IPv4 packet");
    }
    let ptbs = pcap_frames(&ptb);
    assert!(!ptbs.is_empty(), "no Packet Too Big reached the client");
    let vip: std::net::Ipv6Addr = VIP6.parse().unwrap();
    let client: std::net::Ipv6Addr = "2001:db8:1::10".parse().unwrap();
    for f in &ptbs {
        assert_eq!(&f[22..38], &vip.octets(), "from the VIP");
        assert_eq!(u32::from_be_bytes([f[58], f[59], f[60], f[61]]), 1420, "the IPv4 MTU plus 20");
        assert_eq!((&f[62 + 8..62 + 24], &f[62 + 24..62 + 40]), (&client.octets()[..], &vip.octets()[..]), "quoting the client's packet to the VIP");
    }
    let route = lab.topo.exec("client", &format!("ip -6 route get {VIP6}"));
    assert!(route.contains("mtu 1420"), "the client's path MTU to the VIP: {route}");
    println!("path MTU across the translation: {} fragmentation needed (1400) at the router, {} Packet Too Big (1420) at the client, 2 MB uploaded whole; client: {}", frags.len(), ptbs.len(), route.trim());
    stop_furiwake_cleanly(lab.fw());
}
