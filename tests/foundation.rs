//! Foundation end to end: `furiwake run` owns real DPDK ports, on
//! `net_af_packet` over veths in namespaces and on `net_virtio_user`
//! against a `dpdk-testpmd` vhost-user peer.

use furiwake_e2e::*;
use std::time::Duration;

fn two_arm_config(prefix: &str) -> String {
    format!(
        r#"{}
[[interface]]
name = "outside"
device = "net_af_packet0,iface=lb-out"
address = "192.0.2.2/24"

[[interface]]
name = "inside"
device = "net_af_packet1,iface=lb-in"
address = "198.51.100.1/24"

[[pool]]
name = "web"
servers = [ {{ address = "198.51.100.11:80" }} ]

[[virtual_server]]
name = "www"
address = "192.0.2.100:80"
pool = "web"
"#,
        platform_section(prefix)
    )
}

/// Makes the kernel in `ns` resolve `ip` (a UDP datagram forces ARP) and
/// returns the MAC it learned, if any.
fn resolve(topo: &Topology, ns: &str, ip: &str) -> Option<String> {
    wait_for(Duration::from_secs(10), || {
        topo.try_exec(ns, &format!("python3 -c \"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('{ip}', 9))\""));
        let (_, neigh) = topo.try_exec(ns, &format!("ip neigh show {ip}"));
        let mut w = neigh.split_whitespace();
        w.find(|x| *x == "lladdr").and_then(|_| w.next()).map(str::to_string)
    })
}

#[test]
fn run_brings_up_two_af_packet_links_answers_arp_and_exits_0_on_sigterm() {
    if !require_env(&["ip", "ethtool", "python3"]) {
        return;
    }
    let topo = Topology::up('a', 1, 1);
    let dir = Scratch::new("two-links");
    let prefix = format!("fw-{}", topo.prefix);
    let cfg = dir.write("lb.toml", &two_arm_config(&prefix));
    let mut fw = start_furiwake(Some(&topo.ns("lb")), &cfg, &dir.path("furiwake.log"), &prefix);

    let out = fw.output();
    for port in ["outside", "inside"] {
        let line = out.lines().find(|l| l.starts_with(&format!("port {port}: "))).unwrap_or_else(|| panic!("no line for port {port}:\n{out}"));
        assert!(line.contains("driver net_af_packet"), "{line}");
        assert!(line.contains(" link up"), "link of {port} not up: {line}");
    }

    // The client and a backend resolve the self IPs to the DPDK ports' MACs.
    let outside_mac = port_mac(&out, "outside").expect("outside mac");
    let inside_mac = port_mac(&out, "inside").expect("inside mac");
    assert_eq!(resolve(&topo, "client", "192.0.2.2").as_deref(), Some(outside_mac.as_str()), "{}", fw.output());
    assert_eq!(resolve(&topo, "srv1", "198.51.100.1").as_deref(), Some(inside_mac.as_str()), "{}", fw.output());
    // The VIP is answered on the interface whose subnet holds it.
    assert_eq!(resolve(&topo, "client", "192.0.2.100").as_deref(), Some(outside_mac.as_str()), "{}", fw.output());

    // SIGUSR1 prints the counters while running.
    fw.signal(libc::SIGUSR1);
    let out = fw.expect_output("== furiwake counters ==", Duration::from_secs(5));
    let out = wait_for(Duration::from_secs(5), || Some(fw.output()).filter(|o| o.contains("mbufs:"))).unwrap_or(out);
    assert!(counter(&out, "port outside:", "rx").unwrap_or(0) >= 1, "{out}");
    // The client asked for the self IP and the VIP. (srv1 learned the inside
    // self IP from the box's own ARP request for it, so it need not ask.)
    assert!(counter(&out, "control:", "arp-replies").unwrap_or(0) >= 2, "{out}");
    assert!(counter(&out, "control:", "arp-requests").unwrap_or(0) >= 1, "{out}");

    fw.signal(libc::SIGTERM);
    let status = fw.wait(Duration::from_secs(20)).expect("furiwake stops on SIGTERM");
    let out = fw.output();
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(out.contains("furiwake: stopped"), "{out}");
    assert!(out.matches("== furiwake counters ==").count() >= 2, "counters printed again at exit:\n{out}");
}

/// Starts testpmd interactively with a vhost-user port (port 0) and an
/// af_packet port on `iface` in `ns` (port 1), io-forwarding between them.
fn start_testpmd(ns: &str, sock: &str, iface: &str, prefix: &str, log: &std::path::Path) -> Proc {
    let vhost = format!("net_vhost0,iface={sock},queues=1");
    let afp = format!("net_af_packet0,iface={iface}");
    // stdbuf: testpmd's printf output would otherwise be block-buffered
    // into the log and arrive after its next prompt.
    let argv = [
        "stdbuf", "-o0", "dpdk-testpmd", "--no-huge", "-m", "512", "--no-pci", "-l", "0-1", "--file-prefix", prefix, "--no-telemetry",
        "--vdev", &vhost, "--vdev", &afp, "--", "-i", "--total-num-mbufs", "4096", "--forward-mode=io",
    ];
    let mut tp = Proc::spawn("dpdk-testpmd", Some(ns), &argv, log, true);
    tp.set_runtime_dir(prefix);
    tp.expect_output("testpmd> ", Duration::from_secs(30));
    tp
}

/// Runs a testpmd command and waits for the prompt after it.
fn testpmd(tp: &mut Proc, cmd: &str) -> String {
    let before = tp.count("testpmd> ");
    tp.send_line(cmd);
    wait_for(Duration::from_secs(10), || Some(()).filter(|_| tp.count("testpmd> ") > before))
        .unwrap_or_else(|| panic!("testpmd: no prompt after {cmd:?}:\n{}", tp.output()));
    let out = tp.output();
    out[out.rfind(cmd).unwrap_or(0)..].to_string()
}

/// RX-packets / TX-packets of `port` from `show port stats`.
fn testpmd_port_stats(tp: &mut Proc, port: u16) -> (u64, u64) {
    let out = testpmd(tp, &format!("show port stats {port}"));
    let num = |key: &str| {
        let at = out.find(key).unwrap_or_else(|| panic!("no {key} in:\n{out}")) + key.len();
        out[at..].split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).expect("number")
    };
    (num("RX-packets:"), num("TX-packets:"))
}

#[test]
fn virtio_user_port_against_testpmd_vhost_peer() {
    if !require_env(&["ip", "ethtool", "python3", "dpdk-testpmd"]) {
        return;
    }
    let dir = Scratch::new("virtio");
    let tag = unique_prefix('v');
    let ns = format!("{tag}-peer");
    // The kernel end (192.0.2.1) <-> testpmd's af_packet port; testpmd's
    // vhost port <-> Furiwake's virtio_user port (192.0.2.2).
    sh(&format!(
        "ip netns add {ns} && ip -n {ns} link set lo up && \
         ip netns exec {ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 && \
         ip -n {ns} link add tp-dpdk type veth peer name tp-kern && \
         ip -n {ns} link set tp-dpdk up && ip -n {ns} link set tp-kern up && \
         ip -n {ns} addr add 192.0.2.1/24 dev tp-kern && ip netns exec {ns} ethtool -K tp-kern tx off >/dev/null"
    ));
    struct NsGuard(String);
    impl Drop for NsGuard {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _ns_guard = NsGuard(ns.clone());

    let sock = dir.path("vhost.sock");
    let _ = std::fs::remove_file(&sock); // a stale socket would refuse the bind
    let sock = sock.to_str().expect("utf-8").to_string();
    let tp_prefix = format!("fw-{tag}-tp");
    let mut tp = start_testpmd(&ns, &sock, "tp-dpdk", &tp_prefix, &dir.path("testpmd.log"));
    testpmd(&mut tp, "start");

    let fw_prefix = format!("fw-{tag}");
    let cfg = dir.write(
        "virtio.toml",
        &format!(
            "{}\n[[interface]]\nname = \"outside\"\ndevice = \"net_virtio_user0,path={sock}\"\naddress = \"192.0.2.2/24\"\n",
            platform_section(&fw_prefix)
        ),
    );
    let mut fw = start_furiwake(None, &cfg, &dir.path("furiwake.log"), &fw_prefix);
    let out = fw.output();
    assert!(out.contains("driver net_virtio_user"), "{out}");
    let mac = port_mac(&out, "outside").expect("mac");

    // 1. ARP: the kernel asks for 192.0.2.2 through testpmd; Furiwake's
    // reply comes back through the vhost port to testpmd and on to the kernel.
    let topo_like = |cmd: &str| try_sh(&format!("ip netns exec {ns} bash -c {}", shell_quote(cmd)));
    let learned = wait_for(Duration::from_secs(15), || {
        topo_like("python3 -c \"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('192.0.2.2', 9))\"");
        let (_, neigh) = topo_like("ip neigh show 192.0.2.2");
        let mut w = neigh.split_whitespace();
        w.find(|x| *x == "lladdr").and_then(|_| w.next()).map(str::to_string)
    });
    assert_eq!(learned.as_deref(), Some(mac.as_str()), "furiwake:\n{}\ntestpmd:\n{}", fw.output(), tp.output());
    let (vhost_rx, _) = testpmd_port_stats(&mut tp, 0);
    assert!(vhost_rx >= 1, "testpmd's vhost port received Furiwake's ARP reply");

    // 2. txonly: frames testpmd generates reach Furiwake's port counters.
    fw.signal(libc::SIGUSR1);
    fw.expect_output("mbufs:", Duration::from_secs(5));
    let rx_before = counter(&fw.output(), "port outside:", "rx").expect("rx counter");
    testpmd(&mut tp, "stop");
    testpmd(&mut tp, "set fwd txonly");
    testpmd(&mut tp, "start");
    std::thread::sleep(Duration::from_millis(500));
    testpmd(&mut tp, "stop");
    let (_, vhost_tx) = testpmd_port_stats(&mut tp, 0);
    assert!(vhost_tx >= 100, "testpmd sent {vhost_tx} frames to Furiwake");

    let before = fw.count("mbufs:");
    fw.signal(libc::SIGUSR1);
    let out = wait_for(Duration::from_secs(5), || Some(fw.output()).filter(|o| o.matches("mbufs:").count() > before)).expect("second report");
    let rx_after = counter(&out, "port outside:", "rx").expect("rx counter");
    let worker_rx = counter(&out, "worker 0:", "rx").expect("worker rx");
    assert!(rx_after >= rx_before + 100, "port counted {rx_after} (was {rx_before}):\n{out}");
    assert!(worker_rx >= rx_after - 1 && worker_rx <= rx_after, "worker saw what the port received: {worker_rx} vs {rx_after}");
    assert!(counter(&out, "  drop no-virtual-server:", "no-virtual-server:").is_some() || out.contains("drop no-virtual-server: "), "{out}");

    fw.signal(libc::SIGTERM);
    assert_eq!(fw.wait(Duration::from_secs(20)).and_then(|s| s.code()), Some(0), "{}", fw.output());
    tp.send_line("quit");
    tp.wait(Duration::from_secs(10));
}
