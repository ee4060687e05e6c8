//! Link redundancy and VLANs end to end: the real `furiwake` binary with a
//! bonded port (DPDK's bonding PMD over af_packet members) and real peers.

use furiwake_e2e::*;
use std::time::{Duration, Instant};

/// The lab's inside interface, and an outside bond of `mode` over lb-out
/// and a second veth lb-out2 on the same switch.
fn bonded_interfaces(mode: &str) -> String {
    format!(
        "[[interface]]\nname = \"outside\"\ndevice = \"net_bonding0\"\naddress = \"192.0.2.2/24\"\nbond = {{ mode = \"{mode}\", members = [\"net_af_packet0,iface=lb-out\", \"net_af_packet2,iface=lb-out2\"] }}\n\n\
         [[interface]]\nname = \"inside\"\ndevice = \"net_af_packet1,iface=lb-in\"\naddress = \"198.51.100.1/24\"\n"
    )
}

fn web(lab: &Lab) -> String {
    let servers: Vec<String> = (1..=LAB_BACKENDS).map(|n| format!("  {{ address = \"{}:80\" }},", server_ip(n))).collect();
    let _ = lab;
    format!(
        "[[health_check]]\nname = \"http\"\nkind = \"http\"\ninterval_ms = 500\nrequest = \"GET /health HTTP/1.0\\r\\n\\r\\n\"\nexpect_status = 200\n\n[[pool]]\nname = \"web\"\nalgorithm = \"round-robin\"\nhealth_check = \"http\"\nservers = [\n{}\n]\n\n[[virtual_server]]\nname = \"www\"\naddress = \"{VIP}:80\"\npool = \"web\"\n",
        servers.join("\n")
    )
}

/// When `needle` appears in `fw`'s output for the `n+1`-th time, within
/// `limit`.
fn wait_nth(fw: &Proc, needle: &str, n: usize, limit: Duration) -> Option<Instant> {
    wait_for(limit, || (fw.output().matches(needle).count() > n).then(Instant::now))
}

/// Active-backup over two members on one switch: a rate-limited 50 MiB
/// download started on the first member goes on when that member's link
/// goes down (the switch's port of it is shut), byte-identical; the bond
/// moves to the second member within a few hundred milliseconds and
/// announces its addresses from there; back again when the second member
/// goes down after the first returned.
#[test]
fn an_active_backup_bond_keeps_a_download_going_when_its_member_fails() {
    let Some(mut lab) = Lab::open('b', "bond-ab", &["nginx"]) else { return };
    let p = lab.topo.prefix.clone();
    sh(&format!(
        "ip link add {p}b2a type veth peer name {p}b2b && ip link set {p}b2a netns {p}-lb && ip -n {p}-lb link set {p}b2a name lb-out2 && \
         ip link set {p}b2b netns {p}-sw && ip -n {p}-sw link set {p}b2b name l1o2 && ip -n {p}-sw link set l1o2 master br-out && \
         ip -n {p}-lb link set lb-out2 up && ip -n {p}-sw link set l1o2 up"
    ));
    for n in 1..=LAB_BACKENDS {
        lab.start_nginx(n, 50);
    }
    let config = format!("{}\n{}\n{}", platform_section(&lab.prefix), bonded_interfaces("active-backup"), web(&lab));
    lab.start_config(&config);
    report_until(lab.fw(), Duration::from_secs(10), |r| r.matches("state up").count() >= 3).unwrap_or_else(|r| panic!("servers not up:\n{r}"));
    let r = lab.report();
    assert!(r.contains("bond active-backup: active net_af_packet0,iface=lb-out;"), "starts on the first member:\n{r}");
    let t = tally(&lab.curl_ids(VIP, 30));
    assert_eq!(t.values().copied().collect::<Vec<_>>(), vec![10, 10, 10], "{t:?}");

    let dl = lab.dir.path("download");
    let mut curl = Proc::spawn(
        "curl",
        Some(&lab.topo.ns("client")),
        &["curl", "-s", "-S", "--limit-rate", "10M", "-m", "60", "-o", dl.to_str().unwrap(), "-w", "%{http_code} %{size_download}\n", &format!("http://{VIP}/big")],
        &lab.dir.path("curl.log"),
        false,
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(curl.is_running(), "the download ended early: {}", curl.output());
    let moved = "bond active member now";
    let before = lab.fw_output().matches(moved).count();
    let t0 = Instant::now();
    lab.topo.exec("sw", "ip link set l1o down");
    let at = wait_nth(lab.fw.as_ref().unwrap(), moved, before, Duration::from_secs(5)).unwrap_or_else(|| panic!("the bond did not move:\n{}", lab.fw_output()));
    let took = at.duration_since(t0);
    println!("active-backup: the bond moved to lb-out2 {} ms after its active member's link went down", took.as_millis());
    assert!(curl.wait(Duration::from_secs(60)).is_some_and(|s| s.success()), "the download failed: {}", curl.output());
    assert!(curl.output().starts_with("200 52428800"), "{}", curl.output());
    let want: Vec<String> = (1..=LAB_BACKENDS).map(|n| sha256_file(&lab.backend_dir(n).join("www/big"))).collect();
    assert!(want.contains(&sha256_file(&dl)), "the download is not byte-identical to a server's /big");
    let r = lab.report();
    assert!(r.contains("bond active-backup: active net_af_packet2,iface=lb-out2; members net_af_packet0,iface=lb-out down, net_af_packet2,iface=lb-out2 up"), "{r}");
    assert!(lab.fw_output().contains("port outside: bond active member now net_af_packet2,iface=lb-out2 (was net_af_packet0,iface=lb-out)"), "{}", lab.fw_output());

    // The first member returns; the second fails: back to the first.
    lab.topo.exec("sw", "ip link set l1o up");
    report_until(lab.fw(), Duration::from_secs(5), |r| r.contains("net_af_packet0,iface=lb-out up")).unwrap_or_else(|r| panic!("lb-out not back up:\n{r}"));
    let before = lab.fw_output().matches(moved).count();
    let t0 = Instant::now();
    lab.topo.exec("sw", "ip link set l1o2 down");
    let at = wait_nth(lab.fw.as_ref().unwrap(), moved, before, Duration::from_secs(5)).unwrap_or_else(|| panic!("the bond did not move back:\n{}", lab.fw_output()));
    let back = at.duration_since(t0);
    let t = tally(&lab.curl_ids(VIP, 6));
    assert_eq!(t.values().sum::<usize>(), 6, "requests after moving back: {t:?}");
    let fw = stop_furiwake_cleanly(lab.fw());
    println!("active-backup: 50 MiB byte-identical across the failover ({} ms); back to lb-out in {} ms, 6/6 requests answered\n{}", took.as_millis(), back.as_millis(), fw.lines().filter(|l| l.contains("bond")).collect::<Vec<_>>().join("\n"));
}

/// The LACPDUs of a capture (IEEE 802.1AX: slow protocols, subtype 1):
/// (actor system, actor state, partner system, partner state) each.
fn lacpdus(pcap: &std::path::Path) -> Vec<([u8; 6], u8, [u8; 6], u8)> {
    let frames = pcap_frames(pcap);
    let mac = |f: &[u8], at: usize| -> [u8; 6] { f[at..at + 6].try_into().unwrap() };
    frames.into_iter().filter(|f| f.len() >= 54 && f[12..14] == [0x88, 0x09] && f[14] == 1 && f[16] == 1 && f[36] == 2).map(|f| (mac(&f, 20), f[32], mac(&f, 40), f[52])).collect()
}

/// In the last report of `r`: every member of `members` up, in sync and
/// collecting (or distributing) as its bond sees itself and its partner.
fn lacp_agreed(r: &str, members: &[&str]) -> bool {
    let Some(line) = r.lines().rev().find(|l| l.contains("bond 802.3ad")) else { return false };
    members.iter().all(|m| {
        let Some(at) = line.find(&format!("{m} up lacp ")) else { return false };
        let state = line[at + m.len() + 9..].split([',', ' ']).next().unwrap_or_default();
        let ok = |s: &str| s == "collecting" || s == "distributing";
        state.split_once('/').is_some_and(|(a, b)| ok(a) && ok(b))
    })
}

/// 802.3ad between two appliances: the box's outside bond and a second
/// furiwake process's bond, each over two af_packet members wired to the
/// other's (veth pairs). LACP comes to agreement on both members (every
/// LACPDU at the end names the other side as partner, in sync, collecting
/// and distributing), and each box's ICMP health check of the other over
/// the bond passes.
#[test]
fn an_802_3ad_bond_agrees_with_a_dpdk_partner_and_carries_traffic() {
    let Some(mut lab) = Lab::open('a', "bond-lacp", &["nginx", "tcpdump"]) else { return };
    let p = lab.topo.prefix.clone();
    sh(&format!("ip netns add {p}-part && ip netns exec {p}-part sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && ip -n {p}-part link set lo up"));
    for i in 1..=2 {
        sh(&format!(
            "ip link add {p}x{i} type veth peer name {p}y{i} && ip link set {p}x{i} netns {p}-lb && ip -n {p}-lb link set {p}x{i} name x{i} && \
             ip link set {p}y{i} netns {p}-part && ip -n {p}-part link set {p}y{i} name y{i} && ip -n {p}-lb link set x{i} up && ip -n {p}-part link set y{i} up && \
             ip netns exec {p}-lb sysctl -qw net.ipv6.conf.x{i}.disable_ipv6=1 && ip netns exec {p}-part sysctl -qw net.ipv6.conf.y{i}.disable_ipv6=1"
        ));
    }
    let icmp_pool = |name: &str, peer: &str, vip: &str| {
        format!("\n[[health_check]]\nname = \"ping\"\nkind = \"icmp\"\ninterval_ms = 200\n\n[[pool]]\nname = \"{name}\"\nhealth_check = \"ping\"\nservers = [ {{ address = \"{peer}:80\" }} ]\n\n[[virtual_server]]\nname = \"{name}\"\naddress = \"{vip}:80\"\npool = \"{name}\"\n")
    };
    let box_cfg = format!(
        "{}\n[[interface]]\nname = \"outside\"\ndevice = \"net_bonding0\"\naddress = \"192.0.2.2/24\"\nbond = {{ mode = \"802.3ad\", members = [\"net_af_packet0,iface=x1\", \"net_af_packet2,iface=x2\"] }}\n\n\
         [[interface]]\nname = \"inside\"\ndevice = \"net_af_packet1,iface=lb-in\"\naddress = \"198.51.100.1/24\"\n{}",
        platform_section(&lab.prefix),
        icmp_pool("peer", "192.0.2.3", "192.0.2.104")
    );
    let part_prefix = format!("{}-p", lab.prefix);
    let part_cfg = format!(
        "{}\n[[interface]]\nname = \"uplink\"\ndevice = \"net_bonding1\"\naddress = \"192.0.2.3/24\"\nbond = {{ mode = \"802.3ad\", members = [\"net_af_packet0,iface=y1\", \"net_af_packet1,iface=y2\"] }}\n{}",
        platform_section(&part_prefix),
        icmp_pool("box", "192.0.2.2", "192.0.2.105")
    );
    // Each end of each wire: af_packet's own transmissions bypass the
    // kernel's taps, so each capture shows what the other side sent.
    let (pcap_x, pcap_y) = (lab.dir.path("x1.pcap"), lab.dir.path("y1.pcap"));
    let (pcap_x2, pcap_y2) = (lab.dir.path("x2.pcap"), lab.dir.path("y2.pcap"));
    let mut caps = [(lab.topo.ns("lb"), "x1", &pcap_x), (format!("{p}-part"), "y1", &pcap_y), (lab.topo.ns("lb"), "x2", &pcap_x2), (format!("{p}-part"), "y2", &pcap_y2)].map(|(ns, dev, file)| {
        let mut c = Proc::spawn("tcpdump", Some(&ns), &["tcpdump", "-n", "-U", "-i", dev, "-w", file.to_str().unwrap(), "ether proto 0x8809"], &lab.dir.path(&format!("cap-{dev}.log")), false);
        c.expect_output("listening on", Duration::from_secs(5));
        c
    });
    // The wires come up once both appliances run: a PDU that reaches an
    // af_packet socket before it is bound to its interface would be read
    // as arriving on the wrong member.
    sh(&format!("ip -n {p}-part link set y1 down && ip -n {p}-part link set y2 down"));
    let part_file = lab.dir.write("part.toml", &part_cfg);
    let part = start_furiwake(Some(&format!("{p}-part")), &part_file, &lab.dir.path("partner.log"), &part_prefix);
    lab.procs.insert("partner".into(), part);
    lab.start_config(&box_cfg);
    sh(&format!("ip -n {p}-part link set y1 up && ip -n {p}-part link set y2 up"));
    let wires_up = Instant::now();
    // Both members of both bonds aggregated by the bonding PMD's own LACP
    // state machines (each end in sync and collecting at least, as it and
    // its partner see it: 802.1AX's mux has the aggregation formed; a PDU
    // saying "distributing" goes out at the next change and every second),
    // and each box's check of the other passing. 30 s: each box sends its
    // LACPDUs every second whatever its partner asks (runs at the 802.1AX
    // slow rate, every 30 s, needed up to 60 s when a change's PDU went
    // unread: the partner learnt of it only at the next periodic one).
    let box_members = ["net_af_packet0,iface=x1", "net_af_packet2,iface=x2"];
    let part_members = ["net_af_packet0,iface=y1", "net_af_packet1,iface=y2"];
    report_until(lab.fw(), Duration::from_secs(30), |r| r.contains("server 192.0.2.3:80: state up") && lacp_agreed(r, &box_members)).unwrap_or_else(|r| panic!("the box's bond did not agree, or its check of its partner did not pass:\n{r}\n{}", lab.proc_output("partner")));
    let part = lab.procs.get("partner").unwrap();
    report_until(part, Duration::from_secs(30), |r| r.contains("server 192.0.2.2:80: state up") && lacp_agreed(r, &part_members)).unwrap_or_else(|r| panic!("the partner did not agree or its check of the box did not pass:\n{r}"));
    let agreed = wires_up.elapsed();
    for c in caps.iter_mut() {
        c.signal(libc::SIGINT);
        c.wait(Duration::from_secs(5));
    }
    // Per wire end (each capture holds what one side sent on it): LACPDUs
    // from one system, naming the other as its partner (the state bytes
    // of the last one may predate the agreement by up to a second).
    let mut systems = std::collections::BTreeSet::new();
    let mut named = Vec::new();
    let mut total = 0;
    for (pcap, wire) in [(&pcap_x, "x1"), (&pcap_y, "y1"), (&pcap_x2, "x2"), (&pcap_y2, "y2")] {
        let pdus = lacpdus(pcap);
        total += pdus.len();
        let sender = pdus.first().unwrap_or_else(|| panic!("no LACPDU arrived at {wire}")).0;
        assert!(pdus.iter().all(|d| d.0 == sender), "{wire}: one sender: {pdus:x?}");
        systems.insert(sender);
        named.push((sender, pdus.last().map(|d| d.2)));
    }
    assert_eq!(systems.len(), 2, "two systems: {systems:x?}");
    for (sender, partner) in named {
        assert!(partner.is_some_and(|p| p != sender && systems.contains(&p)), "{sender:x?} names {partner:x?} as its partner");
    }
    let r = lab.report();
    let line = r.lines().find(|l| l.contains("bond 802.3ad")).unwrap_or_default().to_string();
    assert!(lacp_agreed(&line, &box_members), "both members aggregated: {line}");

    // Cut the first wire: each side takes its member out at once and the
    // checks (every 200 ms, three misses to fail) go on over the second.
    let marks = (lab.fw_output().len(), lab.proc_output("partner").len());
    let t0 = Instant::now();
    sh(&format!("ip -n {p}-part link set y1 down"));
    let left = wait_for(Duration::from_secs(5), || lab.fw_output().contains("bond member net_af_packet0,iface=x1 left the aggregation").then(Instant::now));
    let left = left.unwrap_or_else(|| panic!("x1 did not leave:
{}", lab.fw_output())).duration_since(t0);
    std::thread::sleep(Duration::from_secs(3));
    assert!(lab.proc_output("partner").contains("bond member net_af_packet0,iface=y1 left the aggregation"), "{}", lab.proc_output("partner"));
    for (who, out, from) in [("box", lab.fw_output(), marks.0), ("partner", lab.proc_output("partner"), marks.1)] {
        let after = out.get(from..).unwrap_or_default();
        assert!(!after.contains(": state down") && !after.contains(") down:"), "{who}: its check failed while a wire was cut:\n{after}");
    }
    sh(&format!("ip -n {p}-part link set y1 up"));
    // As long as the first agreement may take.
    report_until(lab.fw(), Duration::from_secs(30), |r| lacp_agreed(r, &box_members)).unwrap_or_else(|r| {
        let theirs = report(lab.procs.get("partner").unwrap());
        panic!("x1 did not rejoin:\n{r}\n== the partner ==\n{theirs}")
    });
    println!("802.3ad: the first wire cut: x1 out of the aggregation after {} ms, the checks went on over x2; rejoined when it came back", left.as_millis());
    println!("802.3ad: both bonds aggregated on both members {} ms after the wires came up; {total} LACPDUs on the wires from both systems, in sync naming each other; ICMP checks pass both ways\n{line}", agreed.as_millis());
}

/// Two VLAN interfaces on one port carry the client and the server sides
/// of a NAT virtual server (seeds 002, 004: the upper and lower sides on
/// VLANs of one switch). The box's one veth is a trunk into a relay
/// namespace whose userspace 802.1Q port (`tests/scripts/vlan_relay.py`:
/// this kernel has no VLAN devices) puts VLAN 10 on the client segment and
/// VLAN 20 on the servers'. Health probes, ARP, forwarded traffic all
/// carry their VLAN's tag on the trunk; a frame of another VLAN is dropped
/// as `unknown-vlan`.
#[test]
fn two_vlans_on_one_port_carry_both_sides_of_a_nat_virtual_server() {
    let Some(mut lab) = Lab::open('v', "vlan", &["nginx", "tcpdump"]) else { return };
    let p = lab.topo.prefix.clone();
    sh(&format!(
        "ip netns add {p}-vr && ip netns exec {p}-vr sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 && ip -n {p}-vr link set lo up && \
         ip link add {p}t1 type veth peer name {p}t2 && ip link set {p}t1 netns {p}-lb && ip -n {p}-lb link set {p}t1 name lb-tr && ip link set {p}t2 netns {p}-vr && ip -n {p}-vr link set {p}t2 name tr && \
         ip link add {p}a1 type veth peer name {p}a2 && ip link set {p}a1 netns {p}-vr && ip -n {p}-vr link set {p}a1 name a10 && ip link set {p}a2 netns {p}-sw && ip -n {p}-sw link set {p}a2 name v10 && \
         ip link add {p}b1 type veth peer name {p}b2 && ip link set {p}b1 netns {p}-vr && ip -n {p}-vr link set {p}b1 name a20 && ip link set {p}b2 netns {p}-sw && ip -n {p}-sw link set {p}b2 name v20 && \
         ip netns exec {p}-lb sysctl -qw net.ipv6.conf.lb-tr.disable_ipv6=1 && ip -n {p}-lb link set lb-tr up && \
         ip -n {p}-sw link set v10 master br-out && ip -n {p}-sw link set v20 master br-in && ip -n {p}-sw link set v10 up && ip -n {p}-sw link set v20 up && \
         for i in tr a10 a20; do ip -n {p}-vr link set $i up && ip netns exec {p}-vr ethtool -K $i tx off gro off gso off tso off >/dev/null 2>&1; done; \
         ip -n {p}-sw link set l1o down && ip -n {p}-sw link set l1i down"
    ));
    let relay = test_script("vlan_relay.py");
    let mut r = Proc::spawn("relay", Some(&format!("{p}-vr")), &["/usr/bin/python3", relay.to_str().unwrap(), "--trunk", "tr", "--access", "10=a10", "--access", "20=a20"], &lab.dir.path("relay.log"), false);
    r.expect_output("listening", Duration::from_secs(10));
    lab.procs.insert("relay".into(), r);
    for n in 1..=LAB_BACKENDS {
        lab.start_nginx(n, 5);
    }
    let pcap = lab.dir.path("trunk.pcap");
    let mut cap = Proc::spawn("tcpdump", Some(&format!("{p}-vr")), &["tcpdump", "-n", "-U", "-i", "tr", "-w", pcap.to_str().unwrap()], &lab.dir.path("cap.log"), false);
    cap.expect_output("listening on", Duration::from_secs(5));
    let config = format!(
        "{}\n[[interface]]\nname = \"outside\"\ndevice = \"net_af_packet0,iface=lb-tr\"\nvlan = 10\naddress = \"192.0.2.2/24\"\n\n[[interface]]\nname = \"inside\"\ndevice = \"net_af_packet0,iface=lb-tr\"\nvlan = 20\naddress = \"198.51.100.1/24\"\n\n{}",
        platform_section(&lab.prefix),
        web(&lab)
    );
    lab.start_config(&config);
    report_until(lab.fw(), Duration::from_secs(15), |r| r.matches("state up").count() >= 3).unwrap_or_else(|r| panic!("servers not up through VLAN 20:\n{r}\n{}", lab.proc_output("relay")));
    let t = tally(&lab.curl_ids(VIP, 30));
    assert_eq!(t.values().copied().collect::<Vec<_>>(), vec![10, 10, 10], "{t:?}");
    let out = lab.dir.path("big");
    lab.topo.exec("client", &format!("curl -s -S -m 60 -o {} http://{VIP}/big", out.display()));
    let want: Vec<String> = (1..=LAB_BACKENDS).map(|n| sha256_file(&lab.backend_dir(n).join("www/big"))).collect();
    assert!(want.contains(&sha256_file(&out)), "the download through both VLANs is not byte-identical");
    // A frame of VLAN 30, which the port has no interface for.
    sh(&format!(
        "ip netns exec {p}-vr /usr/bin/python3 -c \"from scapy.all import Ether, Dot1Q, IP, TCP, sendp; sendp([Ether(dst='ff:ff:ff:ff:ff:ff')/Dot1Q(vlan=30)/IP(src='192.0.2.10', dst='{VIP}')/TCP(dport=80, flags='S')]*5, iface='tr', verbose=False)\""
    ));
    std::thread::sleep(Duration::from_millis(500));
    cap.signal(libc::SIGINT);
    cap.wait(Duration::from_secs(5));
    let fw = stop_furiwake_cleanly(lab.fw());
    let block = last_counters_block(&fw).unwrap_or_default();
    assert_eq!(worker_drops(&block, 0).iter().find(|(r, _)| r == "unknown-vlan").map(|d| d.1), Some(5), "VLAN 30 dropped by name:\n{block}");
    let mac = port_mac(&fw, "outside").expect("the box's MAC");
    let lines = sh(&format!("tcpdump -nn -e -r {} 2>/dev/null", pcap.display()));
    let from_box: Vec<&str> = lines.lines().filter(|l| l.contains(&format!("{mac} >"))).collect();
    let has = |vlan: &str, what: &str| from_box.iter().filter(|l| l.contains(&format!("vlan {vlan},")) && l.contains(what)).count();
    let (arp10, arp20) = (has("10", "ARP"), has("20", "ARP"));
    let (to_client, to_servers, probes) = (has("10", &format!("{VIP}.80 > {CLIENT}.")), has("20", &format!("{CLIENT}.")), has("20", &format!("{SELF_INSIDE}.")));
    let untagged = from_box.iter().filter(|l| !l.contains("vlan ")).count();
    println!("vlans: 10/10/10 and 5 MiB byte-identical; from the box on the trunk: ARP {arp10} on VLAN 10, {arp20} on VLAN 20; {to_client} to the client on VLAN 10, {to_servers} to servers and {probes} probe packets on VLAN 20; {untagged} untagged; VLAN 30 dropped 5/5 as unknown-vlan");
    assert!(arp10 > 0 && arp20 > 0, "ARP tagged on each VLAN");
    assert!(to_client > 1000 && to_servers > 30 && probes > 0, "traffic on its VLAN");
    assert_eq!(untagged, 0, "nothing left the box untagged");
    assert_eq!(has("20", &format!("{VIP}.80 >")) + has("10", &format!("> {}.", server_ip(1))), 0, "nothing on the wrong VLAN");
}

/// Server-originated traffic (seeds 002, 004) behind a NAT box: a server
/// reaches a host on the outside segment through the box, TCP and UDP,
/// seen there from the `[[snat]]` address and a port of its range; from
/// outside nothing reaches a server's own address (dropped and counted)
/// while the VIP serves.
#[test]
fn servers_reach_out_through_source_nat_and_only_the_vip_is_open() {
    let Some(mut lab) = Lab::open('s', "snat", &["nginx", "socat", "tcpdump"]) else { return };
    for n in 1..=LAB_BACKENDS {
        lab.start_nginx(n, 1);
    }
    let client = lab.topo.ns("client");
    let mut tcp = Proc::spawn("who-tcp", Some(&client), &["socat", "-d", "-d", "TCP-LISTEN:7000,reuseaddr,fork", "SYSTEM:echo $SOCAT_PEERADDR $SOCAT_PEERPORT"], &lab.dir.path("who-tcp.log"), false);
    tcp.expect_output("listening", Duration::from_secs(5));
    let mut udp = Proc::spawn("who-udp", Some(&client), &["socat", "-d", "-d", "UDP-RECVFROM:7001,reuseaddr,fork", "SYSTEM:echo $SOCAT_PEERADDR $SOCAT_PEERPORT"], &lab.dir.path("who-udp.log"), false);
    udp.expect_output("receiving on", Duration::from_secs(5));
    lab.procs.insert("who-tcp".into(), tcp);
    lab.procs.insert("who-udp".into(), udp);
    let config = format!("{}\n{LAB_INTERFACES}\n{}\n[[snat]]\nname = \"servers\"\nsources = \"198.51.100.0/24\"\naddress = \"192.0.2.3\"\nports = \"20000-20999\"\n", platform_section(&lab.prefix), web(&lab).replace("[[virtual_server]]", "[console]\nsocket = \"CONSOLE\"\n\n[[virtual_server]]").replace("CONSOLE", lab.dir.path("console.sock").to_str().unwrap()));
    lab.start_config(&config);
    report_until(lab.fw(), Duration::from_secs(10), |r| r.matches("state up").count() >= 3).unwrap_or_else(|r| panic!("servers not up:\n{r}"));
    let seen_as = |proto: &str| {
        let cmd = match proto {
            "tcp" => "socat -t 3 - TCP:192.0.2.10:7000 </dev/null".to_string(),
            _ => "echo q | socat -t 3 - UDP:192.0.2.10:7001".to_string(),
        };
        lab.topo.try_exec("srv1", &cmd).1.trim().to_string()
    };
    let (t, u) = (seen_as("tcp"), seen_as("udp"));
    println!("snat: srv1 seen on the outside as {t} (TCP) and {u} (UDP)");
    for (what, seen) in [("TCP", &t), ("UDP", &u)] {
        let (a, p) = seen.split_once(' ').unwrap_or_else(|| panic!("{what}: srv1 did not get through: {seen:?}\n{}", lab.fw_output()));
        assert_eq!(a, "192.0.2.3", "{what}: the rule's address");
        let p: u16 = p.parse().unwrap();
        assert!((20000..=20999).contains(&p), "{what}: a port of the rule's range: {p}");
    }
    let conns = try_sh(&format!("{} console --socket {} -c 'show connections'", furiwake_bin().display(), lab.dir.path("console.sock").display())).1;
    // From outside: a server's own address is not reachable; the VIP is.
    let before = counter(&lab.report(), "worker 0:", "dropped").unwrap_or(0);
    let (ok, _) = lab.topo.try_exec("client", "curl -s -m 2 http://198.51.100.11/id");
    assert!(!ok, "a server's own address answered from outside");
    assert_eq!(lab.topo.exec("client", &format!("curl -s -m 5 http://{VIP}/id")).trim().len(), 4, "the VIP serves");
    // Review S3: a server's address as source, sent from outside (an open
    // relay, and a way to drain the rule's ports): 8 UDP datagrams and a
    // SYN to the client's own address. Dropped and counted, nothing leaves
    // from the rule's address.
    let pcap = lab.dir.path("relay.pcap");
    let mut cap = Proc::spawn("tcpdump-relay", Some(&lab.topo.ns("sw")), &["tcpdump", "-n", "-i", "br-out", "--immediate-mode", "-w", pcap.to_str().unwrap(), "src host 192.0.2.3"], &lab.dir.path("tcpdump-relay.log"), false);
    std::thread::sleep(Duration::from_secs(1));
    let neigh = lab.topo.exec("client", "ping -c 1 -W 2 192.0.2.2 >/dev/null; ip neigh show 192.0.2.2");
    let mac = neigh.split_whitespace().skip_while(|w| *w != "lladdr").nth(1).unwrap_or_else(|| panic!("the box's MAC: {neigh}")).to_string();
    let udp = format!("Ether(src=get_if_hwaddr('eth0'), dst='{mac}')/IP(src='198.51.100.11', dst='192.0.2.10')/UDP(sport=4000 + i, dport=7001)/b'relay'");
    let syn = format!("Ether(src=get_if_hwaddr('eth0'), dst='{mac}')/IP(src='198.51.100.12', dst='192.0.2.10')/TCP(sport=4100, dport=7000, flags='S')");
    let spoof = format!("from scapy.all import *; conf.verb = 0; sendp([{udp} for i in range(8)], iface='eth0', inter=0.1); sendp({syn}, iface='eth0'); print('sent 9')");
    let (ok, out) = lab.topo.try_exec("client", &format!("/usr/bin/python3 -c {}", shell_quote(&spoof)));
    assert!(ok && out.contains("sent 9"), "{out}");
    std::thread::sleep(Duration::from_secs(1));
    cap.signal(libc::SIGINT);
    cap.wait(Duration::from_secs(5));
    assert_eq!(pcap_frames(&pcap).len(), 0, "a spoofed server source left source-NATed");
    let fw = stop_furiwake_cleanly(lab.fw());
    let block = last_counters_block(&fw).unwrap_or_default();
    let wrong_link = worker_drops(&block, 0).iter().find(|(r, _)| r == "snat-wrong-link").map_or(0, |d| d.1);
    assert_eq!(wrong_link, 9, "the spoofed sources dropped by name:\n{block}");
    let nvs = worker_drops(&block, 0).iter().find(|(r, _)| r == "no-virtual-server").map_or(0, |d| d.1);
    assert!(nvs >= 1, "the knock counted as no-virtual-server:\n{block}");
    assert!(block.contains("snat: connections 2"), "{block}");
    assert!(conns.contains("forwarding: snat"), "show connections:\n{conns}");
    println!("snat: from outside to 198.51.100.11 refused ({nvs} no-virtual-server drops, {before} drops before), the VIP served; {}", block.lines().find(|l| l.contains("snat:")).unwrap_or(""));
}

/// A TCP packet's (source, source port, destination, destination port).
type Tuple = (String, u16, String, u16);
/// What a round of captures saw: firewall, leg, packet.
type Seen = Vec<(u32, String, Tuple)>;

/// The TCP packets of a capture.
fn tcp_tuples(pcap: &std::path::Path) -> Vec<Tuple> {
    let out = sh(&format!("tcpdump -nn -r {} tcp 2>/dev/null", pcap.display()));
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (_, _, src, _, dst) = (w.next()?, w.next()?, w.next()?, w.next()?, w.next()?.trim_end_matches(':'));
            let split = |a: &str| -> Option<(String, u16)> {
                let (ip, port) = a.rsplit_once('.')?;
                Some((ip.to_string(), port.parse().ok()?))
            };
            let ((s, sp), (d, dp)) = (split(src)?, split(dst)?);
            Some((s, sp, d, dp))
        })
        .collect()
}

/// Firewall load balancing (seed 002's sandwich) with one box on both
/// sides: two forwarding namespaces as firewalls between the box's
/// firewall segment (203.0.113.0/24, their outer legs) and the servers'
/// segment (their inner legs). A gateway service on the client side sends
/// what the clients send to the servers through a firewall chosen by a
/// symmetric hash of the two addresses; one on the servers' side sends the
/// answers through the same firewall; the firewalls hand the answers back
/// to the box's `route` leg, which routes them to the clients. 20 flows
/// (10 client addresses x 2 servers) spread over both firewalls, each
/// flow's packets in both directions through one (captured on its legs);
/// with one firewall's legs down its checks fail and 20 new flows all
/// cross the other.
#[test]
fn gateway_services_balance_flows_over_firewalls_and_keep_each_on_one() {
    let Some(mut lab) = Lab::open('f', "fwlb", &["nginx", "tcpdump"]) else { return };
    let p = lab.topo.prefix.clone();
    sh(&format!(
        "ip -n {p}-sw link add br-fw type bridge && ip -n {p}-sw link set br-fw up && \
         ip link add {p}f1 type veth peer name {p}f2 && ip link set {p}f1 netns {p}-lb && ip -n {p}-lb link set {p}f1 name lb-fw && ip link set {p}f2 netns {p}-sw && \
         ip -n {p}-sw link set {p}f2 master br-fw && ip -n {p}-sw link set {p}f2 up && ip netns exec {p}-lb sysctl -qw net.ipv6.conf.lb-fw.disable_ipv6=1 && ip -n {p}-lb link set lb-fw up"
    ));
    for i in 1..=2 {
        sh(&format!(
            "ip netns add {p}-fw{i} && ip netns exec {p}-fw{i} sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.disable_ipv6=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 && ip -n {p}-fw{i} link set lo up && \
             ip link add {p}x{i} type veth peer name {p}X{i} && ip link set {p}x{i} netns {p}-fw{i} && ip -n {p}-fw{i} link set {p}x{i} name x && ip link set {p}X{i} netns {p}-sw && ip -n {p}-sw link set {p}X{i} master br-fw && ip -n {p}-sw link set {p}X{i} up && \
             ip link add {p}y{i} type veth peer name {p}Y{i} && ip link set {p}y{i} netns {p}-fw{i} && ip -n {p}-fw{i} link set {p}y{i} name y && ip link set {p}Y{i} netns {p}-sw && ip -n {p}-sw link set {p}Y{i} master br-in && ip -n {p}-sw link set {p}Y{i} up && \
             ip -n {p}-fw{i} addr add 203.0.113.1{i}/24 dev x && ip -n {p}-fw{i} addr add 198.51.100.2{i}/24 dev y && ip -n {p}-fw{i} link set x up && ip -n {p}-fw{i} link set y up && \
             ip -n {p}-fw{i} route add 192.0.2.0/24 via 203.0.113.1 && \
             ip netns exec {p}-fw{i} ethtool -K x tx off >/dev/null && ip netns exec {p}-fw{i} ethtool -K y tx off >/dev/null"
        ));
    }
    // Ten client addresses.
    lab.topo.exec("client", &(20..30).map(|a| format!("ip addr add 192.0.2.{a}/24 dev eth0")).collect::<Vec<_>>().join(" && "));
    for n in 1..=2 {
        lab.start_nginx(n, 1);
    }
    let config = format!(
        "{}\n{LAB_INTERFACES}\n[[interface]]\nname = \"firewalls\"\ndevice = \"net_af_packet2,iface=lb-fw\"\naddress = \"203.0.113.1/24\"\nroute = true\n\n\
         [[health_check]]\nname = \"ping\"\nkind = \"icmp\"\ninterval_ms = 200\n\n\
         [[pool]]\nname = \"fw-outer\"\nhealth_check = \"ping\"\nservers = [ {{ address = \"203.0.113.11:0\" }}, {{ address = \"203.0.113.12:0\" }} ]\n\n\
         [[pool]]\nname = \"fw-inner\"\nhealth_check = \"ping\"\nservers = [ {{ address = \"198.51.100.21:0\" }}, {{ address = \"198.51.100.22:0\" }} ]\n\n\
         [[virtual_server]]\nname = \"to-servers\"\naddress = \"0.0.0.0:0\"\nforwarding = \"gateway\"\ninterface = \"outside\"\npool = \"fw-outer\"\npair = \"to-clients\"\n\n\
         [[virtual_server]]\nname = \"to-clients\"\naddress = \"0.0.0.0:0\"\nforwarding = \"gateway\"\ninterface = \"inside\"\npool = \"fw-inner\"\npair = \"to-servers\"\n",
        platform_section(&lab.prefix)
    );
    lab.start_config(&config);
    report_until(lab.fw(), Duration::from_secs(15), |r| r.matches("state up").count() >= 4).unwrap_or_else(|r| panic!("firewall legs not up:\n{r}"));
    // Captures on every leg of both firewalls.
    let legs: Vec<(u32, &str)> = vec![(1, "x"), (1, "y"), (2, "x"), (2, "y")];
    let round = |lab: &mut Lab, tag: &str| -> Seen {
        let mut caps: Vec<(u32, &str, std::path::PathBuf, Proc)> = legs
            .iter()
            .map(|(i, leg)| {
                let file = lab.dir.path(&format!("{tag}-fw{i}-{leg}.pcap"));
                let mut c = Proc::spawn("tcpdump", Some(&format!("{p}-fw{i}")), &["tcpdump", "-n", "-U", "--immediate-mode", "-i", leg, "-w", file.to_str().unwrap(), "tcp port 80"], &lab.dir.path(&format!("{tag}-cap-{i}{leg}.log")), false);
                c.expect_output("listening on", Duration::from_secs(5));
                (*i, *leg, file, c)
            })
            .collect();
        for a in 20..30 {
            for n in 1..=2 {
                let got = lab.topo.exec("client", &format!("curl -s -m 5 --interface 192.0.2.{a} http://{}/id", server_ip(n)));
                assert_eq!(got.trim(), format!("srv{n}"), "{tag}: 192.0.2.{a} to srv{n} through the firewalls");
            }
        }
        // Every flow's last packets written (libpcap hands packets over in
        // blocks unless in immediate mode; both are set).
        std::thread::sleep(Duration::from_millis(1000));
        let mut seen = Vec::new();
        for (i, leg, file, c) in caps.iter_mut() {
            c.signal(libc::SIGINT);
            c.wait(Duration::from_secs(5));
            seen.extend(tcp_tuples(file).into_iter().map(|t| (*i, leg.to_string(), t)));
        }
        seen
    };
    // Per flow (client address, server): the firewalls that saw it, and in
    // which directions (client->server on the outer leg, server->client on
    // the inner leg).
    let by_flow = |seen: &Seen| {
        let mut flows: std::collections::BTreeMap<(String, String), std::collections::BTreeSet<(u32, &'static str)>> = Default::default();
        for (fw, leg, (s, sp, d, dp)) in seen {
            let (client, server, dir) = if *dp == 80 { (s.clone(), d.clone(), "in") } else if *sp == 80 { (d.clone(), s.clone(), "out") } else { continue };
            let _ = leg;
            flows.entry((client, server)).or_default().insert((*fw, dir));
        }
        flows
    };
    let first = round(&mut lab, "both");
    let flows = by_flow(&first);
    assert_eq!(flows.len(), 20, "20 flows captured: {:?}", flows.keys().collect::<Vec<_>>());
    let mut per_fw = [0usize; 3];
    for ((c, s), seen) in &flows {
        let fws: std::collections::BTreeSet<u32> = seen.iter().map(|(f, _)| *f).collect();
        assert_eq!(fws.len(), 1, "{c} -> {s}: crossed more than one firewall: {seen:?}");
        let fw = *fws.iter().next().unwrap();
        assert!(seen.contains(&(fw, "in")) && seen.contains(&(fw, "out")), "{c} -> {s}: both directions through firewall {fw}: {seen:?}");
        per_fw[fw as usize] += 1;
    }
    assert!(per_fw[1] > 0 && per_fw[2] > 0, "spread over both firewalls: {per_fw:?}");
    // Firewall 1 stops: its legs go down, its checks fail on both sides.
    lab.topo.exec("sw", &format!("ip link set {p}X1 down && ip link set {p}Y1 down"));
    report_until(lab.fw(), Duration::from_secs(10), |r| r.contains("server 203.0.113.11:0: state down") && r.contains("server 198.51.100.21:0: state down")).unwrap_or_else(|r| panic!("firewall 1 not down:\n{r}"));
    let second = round(&mut lab, "one");
    let flows2 = by_flow(&second);
    assert_eq!(flows2.len(), 20);
    assert!(flows2.values().all(|seen| seen.iter().all(|(f, _)| *f == 2) && seen.len() == 2), "every new flow through firewall 2, both ways: {flows2:?}");
    let fw = stop_furiwake_cleanly(lab.fw());
    let block = last_counters_block(&fw).unwrap_or_default();
    let routed = block.lines().find_map(|l| l.trim().strip_prefix("routed: ")).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    assert!(routed > 40, "the answers came back through the route leg: {routed}\n{block}");
    println!(
        "gateway: 20 flows over firewalls 1/2 = {}/{}, every flow both ways through one; firewall 1 down: 20 new flows through firewall 2\n{}",
        per_fw[1],
        per_fw[2],
        block.lines().filter(|l| l.starts_with("virtual-server to-") || l.contains("routed")).collect::<Vec<_>>().join("\n")
    );
}
