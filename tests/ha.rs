//! High availability end to end: two real `furiwake` processes (or one
//! and Debian's keepalived) on the same segments, VRRP between them.
//!
//! Lab (`scripts/netns.sh up PREFIX 3 2`):
//!   PREFIX-client 192.0.2.10 -- br-out -- lb-out [A: 192.0.2.3] lb-in -- br-in -- srvN
//!                                  \---- lb-out [B: 192.0.2.4] lb-in ----/
//! The VIP 192.0.2.100 and the servers' gateway 198.51.100.1 float.

use furiwake_e2e::*;
use std::time::{Duration, Instant};

const VIP: &str = "192.0.2.100";

/// One box of the pair: its namespace, its self IPs' last octet.
struct Box {
    ns: &'static str,
    host: u8,
    prefix: String,
}

struct Pair {
    /// The `[[virtual_server]]` (and anything else) both boxes serve.
    services: String,
    fw: [Option<Proc>; 2],
    procs: Vec<Proc>,
    boxes: [Box; 2],
    dir: Scratch,
    topo: Topology,
    _serial: std::sync::MutexGuard<'static, ()>,
}

fn pool() -> String {
    let mut s = String::from(
        "[[health_check]]\nname = \"http\"\nkind = \"http\"\ninterval_ms = 500\nrequest = \"GET /health HTTP/1.0\\r\\n\\r\\n\"\nexpect_status = 200\n\n[[pool]]\nname = \"web\"\nalgorithm = \"round-robin\"\nhealth_check = \"http\"\nservers = [\n",
    );
    for n in 1..=3 {
        s.push_str(&format!("  {{ address = \"{}:80\" }},\n", server_ip(n)));
    }
    s + "]\n"
}

impl Pair {
    /// The lab with nginx on three servers; no appliance started yet.
    fn open(tag: char, name: &str, tools: &[&str]) -> Option<Pair> {
        Self::open_with(tag, name, tools, 0)
    }

    /// `open`, with a `big_mb` MiB /big on every server.
    fn open_with(tag: char, name: &str, tools: &[&str], big_mb: u32) -> Option<Pair> {
        let mut all = vec!["ip", "ethtool", "curl", "nginx"];
        all.extend_from_slice(tools);
        if !require_env(&all) {
            return None;
        }
        let serial = serial();
        let topo = Topology::up(tag, 3, 2);
        let dir = Scratch::new(&format!("ha-{name}-{}", topo.prefix));
        let mut procs = Vec::new();
        for n in 1..=3 {
            let ns = topo.ns(&format!("srv{n}"));
            procs.push(start_nginx_backend(&ns, &format!("srv{n}"), &server_ip(n), &dir.path(&format!("srv{n}")), big_mb));
        }
        let boxes = [Box { ns: "lb", host: 3, prefix: format!("fwa-{}", topo.prefix) }, Box { ns: "lb2", host: 4, prefix: format!("fwb-{}", topo.prefix) }];
        let services = format!("[[virtual_server]]\nname = \"web\"\naddress = \"{VIP}:80\"\npool = \"web\"\n");
        Some(Pair { services, fw: [None, None], procs, boxes, dir, topo, _serial: serial })
    }

    /// Box `b`'s whole configuration with `vrrp` appended.
    fn config(&self, b: usize, vrrp: &str) -> String {
        let bx = &self.boxes[b];
        format!(
            "{}\n[[interface]]\nname = \"outside\"\ndevice = \"net_af_packet0,iface=lb-out\"\naddress = \"192.0.2.{h}/24\"\n\n[[interface]]\nname = \"inside\"\ndevice = \"net_af_packet1,iface=lb-in\"\naddress = \"198.51.100.{h}/24\"\n\n[console]\nsocket = \"{}\"\n\n{}\n{}\n{vrrp}",
            platform_section(&bx.prefix),
            self.dir.path(&format!("console-{b}.sock")).display(),
            pool(),
            self.services,
            h = bx.host,
        )
    }

    fn start(&mut self, b: usize, vrrp: &str) {
        let cfg = self.dir.write(&format!("fw{b}.toml"), &self.config(b, vrrp));
        let log = self.dir.path(&format!("fw{b}-{}.log", rand_suffix()));
        let bx = &self.boxes[b];
        self.fw[b] = Some(start_furiwake(Some(&self.topo.ns(bx.ns)), &cfg, &log, &bx.prefix));
    }

    /// A (priority 200) master, then B (100), once it has A's bulk dump:
    /// a synced pair in its steady state; `vrrp(priority, box)` is each
    /// box's `[[vrrp]]` and `[sync]`.
    fn start_synced(&mut self, vrrp: &dyn Fn(u8, usize) -> String) {
        self.start(0, &vrrp(200, 0));
        assert!(self.wait_out(0, "vrrp outside: BACKUP -> MASTER", Duration::from_secs(5)).is_some(), "{}", self.both());
        self.start(1, &vrrp(100, 1));
        assert!(self.wait_out(1, "sync: bulk dump from 198.51.100.3 complete", Duration::from_secs(10)).is_some(), "{}", self.both());
    }

    fn out(&self, b: usize) -> String {
        self.fw[b].as_ref().map(Proc::output).unwrap_or_default()
    }

    /// Lines box `b` printed on its console containing `needle` (each
    /// event is also in the log, prefixed `[time LEVEL ]`: not counted).
    fn events(&self, b: usize, needle: &str) -> usize {
        self.out(b).lines().filter(|l| !l.starts_with('[') && l.contains(needle)).count()
    }

    fn both(&self) -> String {
        format!("--- A ---\n{}\n--- B ---\n{}", self.out(0), self.out(1))
    }

    /// Waits until box `b` printed `needle`; the time it took.
    fn wait_out(&self, b: usize, needle: &str, timeout: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if self.out(b).contains(needle) {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// `show vrrp` on box `b`'s console.
    fn show_vrrp(&self, b: usize) -> String {
        self.console(b, "show vrrp")
    }

    fn console(&self, b: usize, cmd: &str) -> String {
        let sock = self.dir.path(&format!("console-{b}.sock"));
        try_sh(&format!("{} console --socket {} -c {}", furiwake_bin().display(), sock.display(), shell_quote(cmd))).1
    }

    /// curl the VIP's /id from the client: the server's name, or None.
    fn id(&self) -> Option<String> {
        let (ok, out) = self.topo.try_exec("client", &format!("curl -s -m 2 http://{VIP}/id"));
        (ok && out.trim().starts_with("srv")).then(|| out.trim().to_string())
    }

    /// Sends `sig` to box `b` and returns when: the takeover is timed
    /// from here (the process may take a while to exit).
    fn signal(&self, b: usize, sig: i32) -> Instant {
        let t0 = Instant::now();
        if let Some(p) = self.fw[b].as_ref() {
            p.signal(sig);
        }
        t0
    }

    /// Waits until box `b` has printed `needle` more than `before` times;
    /// the time since `t0`.
    fn wait_more(&self, b: usize, needle: &str, before: usize, t0: Instant, timeout: Duration) -> Option<Duration> {
        while t0.elapsed() < timeout {
            if self.out(b).matches(needle).count() > before {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }

    fn kill(&mut self, b: usize, sig: i32) {
        if let Some(p) = self.fw[b].as_mut() {
            p.signal(sig);
            p.wait(Duration::from_secs(10));
        }
    }
}

fn rand_suffix() -> u128 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    u128::from(N.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

impl Drop for Pair {
    fn drop(&mut self) {
        for f in self.fw.iter_mut() {
            f.take();
        }
        self.procs.clear();
    }
}

/// The `[[vrrp]]` instances of a two-arm NAT pair: the VIP outside and the
/// servers' gateway inside, one sync group.
fn nat_vrrp(priority: u8, extra: &str) -> String {
    format!(
        r#"[[vrrp]]
name = "outside"
interface = "outside"
vrid = 51
priority = {priority}
advert_interval_ms = 100
addresses = ["{VIP}"]
group = "pair"
{extra}
[[vrrp]]
name = "inside"
interface = "inside"
vrid = 52
priority = {priority}
advert_interval_ms = 100
addresses = ["198.51.100.1"]
group = "pair"
{extra}
"#
    )
}

/// The higher priority is master and serves the VIP; `kill -9` moves
/// both instances to the backup within 3 intervals and the skew, and the
/// VIP answers through it; the old master returns and preempts; SIGTERM
/// hands over with a priority-0 advert within about one interval.
///
/// The inside instance sends its adverts to the peer's self IP
/// (`unicast_peers`), the outside one to 224.0.0.18: either way reaching
/// the peer is what keeps it backup.
#[test]
fn the_higher_priority_serves_and_failover_moves_the_vip() {
    let Some(mut p) = Pair::open('v', "failover", &[]) else { return };
    let unicast = |prio: u8, peer: u8| nat_vrrp(prio, "").replace("vrid = 52\n", &format!("vrid = 52\nunicast_peers = [\"198.51.100.{peer}\"]\n"));
    p.start(0, &unicast(200, 4));
    p.start(1, &unicast(100, 3));
    assert!(p.wait_out(0, "vrrp outside: BACKUP -> MASTER", Duration::from_secs(5)).is_some(), "A did not become master:\n{}", p.both());
    assert!(p.wait_out(0, "vrrp inside: BACKUP -> MASTER", Duration::from_secs(5)).is_some(), "A's inside did not follow:\n{}", p.both());
    std::thread::sleep(Duration::from_millis(500));
    assert!(!p.out(1).contains("-> MASTER"), "B became master beside A:\n{}", p.both());
    let id = wait_for(Duration::from_secs(10), || p.id());
    assert!(id.is_some(), "the VIP did not answer through A:\n{}", p.both());
    let show = p.show_vrrp(1);
    assert!(show.contains("BACKUP") && show.contains("192.0.2.3") && show.contains("198.51.100.3"), "B's show vrrp names A as master of both:\n{show}");

    // The operator hands over (`vrrp NAME release`): B takes both
    // instances (its group follows), and A does not preempt back until its
    // priority is set.
    let masters = p.out(0).matches("vrrp outside: BACKUP -> MASTER").count();
    let answer = p.console(0, "vrrp outside release");
    assert!(answer.contains("released"), "{answer}");
    assert!(p.wait_out(1, "vrrp inside: BACKUP -> MASTER", Duration::from_secs(5)).is_some(), "B did not take over on release:\n{}", p.both());
    assert!(p.out(0).contains("vrrp outside: MASTER -> BACKUP (released by the operator)"), "{}", p.out(0));
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(p.out(0).matches("vrrp outside: BACKUP -> MASTER").count(), masters, "A preempted after a release:\n{}", p.out(0));
    assert!(p.show_vrrp(0).contains("released (no preemption)"), "{}", p.show_vrrp(0));
    assert!(wait_for(Duration::from_secs(10), || p.id()).is_some(), "the VIP did not answer through B:\n{}", p.both());
    let answer = p.console(0, "vrrp outside priority 250");
    assert!(answer.contains("priority 250 (was 200)"), "{answer}");
    assert!(p.wait_more(0, "vrrp outside: BACKUP -> MASTER", masters, Instant::now(), Duration::from_secs(5)).is_some(), "A did not preempt with 250:\n{}", p.both());
    assert!(p.wait_out(1, "vrrp outside: MASTER -> BACKUP", Duration::from_secs(5)).is_some(), "{}", p.both());
    assert!(p.show_vrrp(1).contains("192.0.2.3"), "{}", p.show_vrrp(1));

    // kill -9: B takes over after the master-down interval.
    let n = p.out(1).matches("vrrp outside: BACKUP -> MASTER").count();
    let t0 = p.signal(0, libc::SIGKILL);
    let took = p.wait_more(1, "vrrp outside: BACKUP -> MASTER", n, t0, Duration::from_secs(5));
    p.kill(0, libc::SIGKILL);
    let Some(took) = took else { panic!("B did not take over:\n{}", p.both()) };
    // RFC 5798 §6.1: 3 x 100 ms + (256 - 100) / 256 x 100 ms.
    let bound = Duration::from_millis(300 + 61);
    println!("takeover after kill -9: {} ms (master-down interval {} ms)", took.as_millis(), bound.as_millis());
    // The harness sees the line through a pipe, and on a busy 2-CPU VM
    // either process may wait for a CPU: the house slack of the health
    // tests, 3x the bound plus 1 s (a wrong timer, the 1 s default
    // advert's 3.6 s, still fails), with the measured time printed.
    assert!(took < bound * 3 + Duration::from_secs(1), "takeover took {took:?}:\n{}", p.both());
    assert!(p.wait_out(1, "vrrp inside: BACKUP -> MASTER", Duration::from_secs(2)).is_some(), "B's inside did not follow:\n{}", p.both());
    let t0 = Instant::now();
    let id = wait_for(Duration::from_secs(10), || p.id());
    assert!(id.is_some(), "the VIP did not answer through B:\n{}", p.both());
    println!("first request answered through B {} ms after its takeover was seen", t0.elapsed().as_millis());

    // A returns with preemption: it becomes master again, B backs off.
    p.start(0, &unicast(200, 4));
    assert!(p.wait_out(0, "vrrp outside: BACKUP -> MASTER", Duration::from_secs(5)).is_some(), "A did not preempt:\n{}", p.both());
    assert!(p.wait_out(1, "vrrp outside: MASTER -> BACKUP", Duration::from_secs(5)).is_some(), "B did not back off:\n{}", p.both());
    assert!(wait_for(Duration::from_secs(10), || p.id()).is_some(), "the VIP did not answer through A again:\n{}", p.both());

    // SIGTERM: the priority-0 advert; B waits only its skew (61 ms).
    let n = p.out(1).matches("vrrp outside: BACKUP -> MASTER").count();
    let t0 = p.signal(0, libc::SIGTERM);
    let took = p.wait_more(1, "vrrp outside: BACKUP -> MASTER", n, t0, Duration::from_secs(5));
    let Some(took) = took else { panic!("B did not take over on SIGTERM:\n{}", p.both()) };
    println!("handover on SIGTERM: {} ms", took.as_millis());
    assert!(p.out(1).contains("(priority-0 advert)"), "B took over because of the priority-0 advert:\n{}", p.both());
    // The reason above shows the priority-0 path (skew time, 61 ms); the
    // time, with the house slack, only that it did not wait for minutes.
    assert!(took < Duration::from_millis(3 * 61 + 1000), "handover took {took:?}");
    p.kill(0, libc::SIGTERM);
    assert!(wait_for(Duration::from_secs(10), || p.id()).is_some(), "the VIP did not answer through B:\n{}", p.both());
}

/// keepalived's configuration for the peer on lb2's lb-out (kernel-owned,
/// 192.0.2.4/24): one instance on VRID 51 with the VIP.
fn keepalived_conf(version: u8, priority: u8) -> String {
    let auth = if version == 2 { "    authentication {\n        auth_type PASS\n        auth_pass secret\n    }\n" } else { "" };
    format!(
        "global_defs {{\n    router_id peer\n    vrrp_version {version}\n    script_user root\n    enable_script_security\n}}\nvrrp_instance VI_1 {{\n    state BACKUP\n    interface lb-out\n    virtual_router_id 51\n    priority {priority}\n    advert_int 1\n{auth}    virtual_ipaddress {{\n        {VIP}/24\n    }}\n}}\n"
    )
}

/// The furiwake side of the keepalived tests: the VIP's instance only; the
/// inside self IP is the servers' gateway (it does not float here).
fn keepalived_peer_vrrp(version: u8, priority: u8) -> String {
    let auth = if version == 2 { "auth_password = \"secret\"\n" } else { "" };
    format!("[[vrrp]]\nname = \"outside\"\ninterface = \"outside\"\nvrid = 51\nversion = {version}\npriority = {priority}\nadvert_interval_ms = 1000\naddresses = [\"{VIP}\"]\n{auth}")
}

impl Pair {
    /// Box A with its inside self IP on the servers' gateway.
    fn start_a_as_gateway(&mut self, vrrp: &str) {
        let cfg = self.config(0, vrrp).replace("198.51.100.3/24", "198.51.100.1/24");
        let path = self.dir.write("fw0.toml", &cfg);
        let log = self.dir.path(&format!("fw0-{}.log", rand_suffix()));
        let bx = &self.boxes[0];
        self.fw[0] = Some(start_furiwake(Some(&self.topo.ns(bx.ns)), &path, &log, &bx.prefix));
    }

    fn start_keepalived(&mut self, version: u8, priority: u8) -> usize {
        let ns = self.topo.ns("lb2");
        let conf = self.dir.write("keepalived.conf", &keepalived_conf(version, priority));
        let n = rand_suffix();
        let (pid, vpid) = (self.dir.path(&format!("ka-{n}.pid")), self.dir.path(&format!("ka-vrrp-{n}.pid")));
        let argv = ["keepalived", "-n", "-l", "-D", "-P", "-f", conf.to_str().unwrap(), "-p", pid.to_str().unwrap(), "-r", vpid.to_str().unwrap()];
        let p = Proc::spawn("keepalived", Some(&ns), &argv, &self.dir.path(&format!("keepalived-{n}.log")), false);
        self.procs.push(p);
        self.procs.len() - 1
    }

    fn ka_out(&self, k: usize) -> String {
        self.procs[k].output()
    }

    /// The MAC the client's ARP finds for the VIP (after flushing its cache).
    fn vip_mac(&self) -> Option<String> {
        self.topo.exec("client", &format!("ip neigh flush dev eth0; ping -c 1 -W 1 {VIP} >/dev/null || true"));
        let out = self.topo.exec("client", &format!("ip neigh show {VIP}"));
        out.split_whitespace().skip_while(|w| *w != "lladdr").nth(1).map(str::to_string)
    }
}

/// Checks `pcap` with tshark: VRRP adverts of version `version` from both
/// `sources`, none malformed, every VRRP and IPv4 checksum good.
fn tshark_clean(pcap: &std::path::Path, version: u8, sources: &[&str]) {
    let out = sh(&format!(
        "tshark -n -r {} -o ip.check_checksum:TRUE -Y vrrp -T fields -e ip.src -e vrrp.version -e vrrp.prio -e vrrp.checksum.status -e ip.checksum.status -e _ws.malformed -e _ws.expert.severity",
        pcap.display()
    ));
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
    assert!(!rows.is_empty(), "no VRRP in the capture");
    for s in sources {
        assert!(rows.iter().any(|r| r[0] == *s), "no advert from {s} in the capture:\n{out}");
    }
    for r in &rows {
        assert_eq!(r.get(1).copied(), Some(version.to_string().as_str()), "version: {r:?}");
        assert_eq!(r.get(3).copied(), Some("1"), "VRRP checksum not good (1): {r:?}\n{out}");
        assert_eq!(r.get(4).copied(), Some("1"), "IPv4 checksum not good (1): {r:?}\n{out}");
        assert!(r.get(5).is_none_or(|m| m.is_empty()), "malformed: {r:?}");
    }
    println!("tshark: {} VRRPv{version} adverts from {sources:?}, all checksums good, none malformed", rows.len());
}

/// keepalived (Debian) and furiwake on one VRID, VRRP v3 then v2 (with
/// keepalived's PASS authentication): the priorities decide the master in
/// both orders, stopping either side moves the VIP to the other, and
/// tshark decodes both sides' adverts cleanly.
#[test]
fn keepalived_interoperates_in_v3_and_v2() {
    let Some(mut p) = Pair::open('k', "keepalived", &["keepalived", "tshark", "tcpdump", "ping"]) else { return };
    let ns2 = p.topo.ns("lb2");
    sh(&format!("ip -n {ns2} addr add 192.0.2.4/24 dev lb-out && ip netns exec {ns2} ethtool -K lb-out tx off >/dev/null"));
    let vmac = "00:00:5e:00:01:33";
    let ka_mac = p.topo.exec("lb2", "cat /sys/class/net/lb-out/address").trim().to_string();
    for version in [3u8, 2] {
        let pcap = p.dir.path(&format!("vrrp-v{version}.pcap"));
        let mut dump = Proc::spawn("tcpdump", Some(&p.topo.ns("sw")), &["tcpdump", "-n", "-U", "-i", "br-out", "-w", pcap.to_str().unwrap(), "ip proto 112"], &p.dir.path("tcpdump.log"), false);
        std::thread::sleep(Duration::from_millis(500));

        // furiwake 200 over keepalived 100.
        p.start_a_as_gateway(&keepalived_peer_vrrp(version, 200));
        let k = p.start_keepalived(version, 100);
        assert!(p.wait_out(0, "vrrp outside: BACKUP -> MASTER", Duration::from_secs(10)).is_some(), "v{version}: furiwake did not become master:\n{}", p.out(0));
        assert!(wait_for(Duration::from_secs(10), || p.ka_out(k).contains("Entering BACKUP STATE").then_some(())).is_some(), "v{version}: keepalived not backup:\n{}", p.ka_out(k));
        std::thread::sleep(Duration::from_secs(3));
        assert!(!p.ka_out(k).contains("Entering MASTER STATE"), "v{version}: keepalived became master beside furiwake:\n{}\n{}", p.ka_out(k), p.out(0));
        assert_eq!(p.vip_mac().as_deref(), Some(vmac), "v{version}: the VIP answers with furiwake's virtual MAC");
        assert!(wait_for(Duration::from_secs(10), || p.id()).is_some(), "v{version}: the VIP did not serve through furiwake:\n{}", p.out(0));
        // Killing furiwake moves the VIP to keepalived.
        p.kill(0, libc::SIGKILL);
        assert!(wait_for(Duration::from_secs(10), || p.ka_out(k).contains("Entering MASTER STATE").then_some(())).is_some(), "v{version}: keepalived did not take over:\n{}", p.ka_out(k));
        assert!(wait_for(Duration::from_secs(5), || (p.vip_mac().as_deref() == Some(ka_mac.as_str())).then_some(())).is_some(), "v{version}: the VIP did not move to keepalived");
        p.procs[k].signal(libc::SIGTERM);
        p.procs[k].wait(Duration::from_secs(10));

        // keepalived 250 over furiwake 100; then stopping keepalived moves the VIP back.
        let k = p.start_keepalived(version, 250);
        assert!(wait_for(Duration::from_secs(10), || p.ka_out(k).contains("Entering MASTER STATE").then_some(())).is_some(), "v{version}: keepalived alone not master:\n{}", p.ka_out(k));
        p.start_a_as_gateway(&keepalived_peer_vrrp(version, 100));
        std::thread::sleep(Duration::from_secs(4));
        assert!(!p.out(0).contains("-> MASTER"), "v{version}: furiwake became master beside a higher keepalived:\n{}", p.out(0));
        assert!(p.show_vrrp(0).contains("BACKUP"), "v{version}: {}", p.show_vrrp(0));
        assert_eq!(p.vip_mac().as_deref(), Some(ka_mac.as_str()), "v{version}: keepalived holds the VIP");
        p.procs[k].signal(libc::SIGKILL);
        p.procs[k].wait(Duration::from_secs(5));
        // A dead box answers nothing: its address goes with it.
        sh(&format!("ip -n {ns2} addr del {VIP}/24 dev lb-out 2>/dev/null || true"));
        assert!(p.wait_out(0, "vrrp outside: BACKUP -> MASTER", Duration::from_secs(10)).is_some(), "v{version}: furiwake did not take over from keepalived:\n{}", p.out(0));
        assert!(wait_for(Duration::from_secs(5), || (p.vip_mac().as_deref() == Some(vmac)).then_some(())).is_some(), "v{version}: the VIP did not move to furiwake");
        assert!(wait_for(Duration::from_secs(10), || p.id()).is_some(), "v{version}: the VIP did not serve through furiwake:\n{}", p.out(0));
        p.kill(0, libc::SIGTERM);

        dump.signal(libc::SIGTERM);
        dump.wait(Duration::from_secs(5));
        tshark_clean(&pcap, version, &["192.0.2.3", "192.0.2.4"]);
    }
}

/// Cable-safe (seed 004): a standby that cannot reach its tracked address
/// stays out of MASTER when the master dies, and takes over once it can;
/// a master whose uplink goes down gives mastership up.
#[test]
fn tracking_keeps_a_blind_standby_out_and_makes_a_cut_master_give_up() {
    let Some(mut p) = Pair::open('c', "cable", &[]) else { return };
    // 192.0.2.1: the upstream router B watches (an address of the client's).
    p.topo.exec("client", "ip addr add 192.0.2.1/24 dev eth0");
    p.start(0, &nat_vrrp(200, "track_interfaces = [\"outside\", \"inside\"]\ntrack_interval_ms = 200\n"));
    p.start(1, &nat_vrrp(100, "track_addresses = [\"192.0.2.1\"]\ntrack_interval_ms = 200\ntrack_fall = 3\n"));
    assert!(p.wait_out(0, "vrrp outside: BACKUP -> MASTER", Duration::from_secs(5)).is_some(), "{}", p.both());
    assert!(wait_for(Duration::from_secs(10), || p.id()).is_some(), "no answer through A:\n{}", p.both());

    // B loses sight of its router: FAULT.
    let faults = p.out(1).matches("BACKUP -> FAULT (address 192.0.2.1 unreachable)").count();
    p.topo.exec("client", "ip addr del 192.0.2.1/24 dev eth0");
    let faulted = wait_for(Duration::from_secs(5), || (p.out(1).matches("BACKUP -> FAULT (address 192.0.2.1 unreachable)").count() >= faults + 2).then_some(()));
    assert!(faulted.is_some(), "B's instances did not go to FAULT:\n{}", p.both());
    p.kill(0, libc::SIGKILL);
    std::thread::sleep(Duration::from_secs(2));
    assert!(!p.out(1).contains("-> MASTER"), "a blind B became master:\n{}", p.both());
    let show = p.show_vrrp(1);
    assert!(show.contains("FAULT") && show.contains("192.0.2.1 unreachable"), "show vrrp says why:\n{show}");
    assert!(p.id().is_none(), "nobody should serve the VIP");

    // Its router back: B recovers and, with no master, takes over.
    p.topo.exec("client", "ip addr add 192.0.2.1/24 dev eth0");
    assert!(p.wait_out(1, "vrrp outside: BACKUP -> MASTER", Duration::from_secs(5)).is_some(), "B did not take over once it could see:\n{}", p.both());
    assert!(wait_for(Duration::from_secs(10), || p.id()).is_some(), "no answer through B:\n{}", p.both());

    // A returns and preempts; then its uplink is cut: it gives up.
    p.start(0, &nat_vrrp(200, "track_interfaces = [\"outside\", \"inside\"]\ntrack_interval_ms = 200\n"));
    assert!(p.wait_out(0, "vrrp outside: BACKUP -> MASTER", Duration::from_secs(5)).is_some(), "{}", p.both());
    assert!(p.wait_out(1, "vrrp outside: MASTER -> BACKUP", Duration::from_secs(5)).is_some(), "{}", p.both());
    let cut = Instant::now();
    p.topo.exec("sw", "ip link set l1o down");
    let gave_up = p.wait_out(0, "vrrp outside: MASTER -> FAULT (interface outside down)", Duration::from_secs(5));
    assert!(gave_up.is_some(), "A did not give up with its uplink down:\n{}", p.both());
    let n = p.out(1).matches("vrrp outside: BACKUP -> MASTER").count();
    assert!(wait_for(Duration::from_secs(5), || (p.out(1).matches("vrrp outside: BACKUP -> MASTER").count() > n).then_some(())).is_some(), "B did not take over:\n{}", p.both());
    println!("uplink cut -> B master in {} ms (link state is read once a second)", cut.elapsed().as_millis());
    assert!(p.out(0).contains("vrrp inside: MASTER -> FAULT"), "A's inside instance follows its group:\n{}", p.out(0));
    assert!(wait_for(Duration::from_secs(10), || p.id()).is_some(), "no answer through B:\n{}", p.both());
}


/// The shared secret of the pair's `[sync]` in the tests.
const SYNC_KEY: &str = "878f6c59c6d4696709cf7255e2c372ab6ef587c83f508e3874f0a8b402509df6";

/// Box `b`'s `[sync]`: to the other box's inside address.
fn sync_section(b: usize) -> String {
    let peer = if b == 0 { 4 } else { 3 };
    format!("\n[sync]\ninterface = \"inside\"\npeer = \"198.51.100.{peer}\"\nkey = \"{SYNC_KEY}\"\nrefresh_s = 2\nbulk_limit_ms = 5000\n")
}

/// A word after `key ` in `text` as a number (`installed 21`).
fn number_after(text: &str, key: &str) -> Option<u64> {
    text.split(key).nth(1)?.split(|c: char| !c.is_ascii_digit()).find(|w| !w.is_empty())?.parse().ok()
}

/// `kill -9` of the master in the middle of a rate-limited 50 MiB download
/// and with 20 idle keep-alive connections open: the standby, which has
/// every connection from the sync, takes over; the download finishes
/// byte-identical and every keep-alive connection answers again.
fn failover_keeps_connections(tag: char, full_nat: bool) {
    let name = if full_nat { "sync-fnat" } else { "sync-nat" };
    let Some(mut p) = Pair::open_with(tag, name, &["python3", "sha256sum"], 50) else { return };
    let (extra_inside, services) = if full_nat {
        (", \"198.51.100.50\"", format!("[[virtual_server]]\nname = \"web\"\naddress = \"{VIP}:80\"\npool = \"web\"\nforwarding = \"full-nat\"\nlocal_addresses = [\"198.51.100.50\"]\n"))
    } else {
        ("", p.services.clone())
    };
    p.services = services;
    let vrrp = |prio: u8, b: usize| nat_vrrp(prio, "").replace("[\"198.51.100.1\"]", &format!("[\"198.51.100.1\"{extra_inside}]")) + &sync_section(b);
    p.start(0, &vrrp(200, 0));
    assert!(p.wait_out(0, "vrrp outside: BACKUP -> MASTER", Duration::from_secs(5)).is_some(), "{}", p.both());
    p.start(1, &vrrp(100, 1));
    assert!(p.wait_out(1, "sync: bulk dump from 198.51.100.3 complete", Duration::from_secs(10)).is_some(), "B got no bulk dump:\n{}", p.both());

    let ka_log = p.dir.path("keepalive.log");
    let script = test_script("keepalive.py");
    let mut ka = Proc::spawn("keepalive", Some(&p.topo.ns("client")), &["/usr/bin/python3", script.to_str().unwrap(), "--to", &format!("{VIP}:80"), "--count", "20"], &ka_log, true);
    ka.expect_output("open 20", Duration::from_secs(20));
    let dl = p.dir.path("download");
    let curl_log = p.dir.path("curl.log");
    let mut curl = Proc::spawn(
        "curl",
        Some(&p.topo.ns("client")),
        &["curl", "-s", "-S", "--limit-rate", "8M", "-m", "30", "-o", dl.to_str().unwrap(), "-w", "%{http_code} %{size_download}\n", &format!("http://{VIP}/big")],
        &curl_log,
        false,
    );
    // The download is under way and the standby has every entry.
    let synced = wait_for(Duration::from_secs(10), || {
        let show = p.console(1, "show sync");
        (number_after(&show, "records reported, ").is_some() && number_after(&show.replace("lost to a full ring, ", ""), "0 lost to a full ring").is_none() && number_after(&show, "ring, ").unwrap_or(0) >= 21).then_some(show)
    });
    let show = synced.unwrap_or_else(|| panic!("B did not install the 21 connections:\n{}\n{}", p.console(1, "show sync"), p.both()));
    println!("standby before the failover:\n{show}");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(curl.is_running(), "the download ended before the failover: {}", curl.output());

    let n = p.out(1).matches("vrrp outside: BACKUP -> MASTER").count();
    let t0 = p.signal(0, libc::SIGKILL);
    let took = p.wait_more(1, "vrrp outside: BACKUP -> MASTER", n, t0, Duration::from_secs(5));
    p.kill(0, libc::SIGKILL);
    let Some(took) = took else { panic!("B did not take over:\n{}", p.both()) };
    println!("{name}: takeover after kill -9 of the master: {} ms (bound 3 x 100 ms + skew 61 ms)", took.as_millis());
    // The house slack (3x the bound plus 1 s): see the failover test.
    assert!(took < Duration::from_millis(3 * 361 + 1000), "takeover took {took:?}");

    assert!(curl.wait(Duration::from_secs(60)).is_some_and(|s| s.success()), "the download failed: {}\n{}", curl.output(), p.both());
    let got = sha256_file(&dl);
    let want: Vec<String> = (1..=3).map(|n| sha256_file(&p.dir.path(&format!("srv{n}/www/big")))).collect();
    assert!(want.contains(&got), "the download is not byte-identical to any server's /big ({}):\n{}", curl.output(), p.both());
    assert!(curl.output().starts_with("200 52428800"), "{}", curl.output());
    ka.send_line("again");
    let answer = ka.expect_output("again ", Duration::from_secs(30));
    assert!(answer.contains("again 20/20"), "keep-alive connections lost:\n{answer}\n{}", p.both());
    let show = p.console(1, "show sync");
    println!("{name}: the download finished byte-identical and 20/20 keep-alive connections answered through the new master\n{show}");
}

#[test]
fn nat_failover_keeps_a_download_and_keepalive_connections() {
    failover_keeps_connections('n', false);
}

#[test]
fn full_nat_failover_keeps_a_download_and_keepalive_connections() {
    failover_keeps_connections('f', true);
}


/// Twenty keep-alive connections to the VIP from the client, kept open.
fn keepalives(p: &Pair, log: &str) -> Proc {
    let script = test_script("keepalive.py");
    let mut ka = Proc::spawn("keepalive", Some(&p.topo.ns("client")), &["/usr/bin/python3", script.to_str().unwrap(), "--to", &format!("{VIP}:80"), "--count", "20"], &p.dir.path(log), true);
    ka.expect_output("open 20", Duration::from_secs(20));
    ka
}

/// Asks on every keep-alive connection again (round `round`, from 1).
fn again(ka: &mut Proc, round: usize, p: &Pair) {
    ka.send_line("again");
    let found = wait_for(Duration::from_secs(30), || (ka.output().matches("again ").count() >= round).then(|| ka.output()));
    let out = found.unwrap_or_else(|| panic!("no answer to round {round}:\n{}\n{}", ka.output(), p.both()));
    let line = out.lines().filter(|l| l.starts_with("again ")).nth(round - 1).unwrap_or_default();
    assert_eq!(line, "again 20/20", "round {round}:\n{out}\n{}", p.both());
}

/// Issue 20: the workers' ownership key is drawn at every boot, not
/// derived from the sync key; the pair agrees on the older of its two over
/// the sync channel. B, started second, takes A's (and says so); B
/// restarted takes it again; both restarted, the pair has another one,
/// though the sync key is the same.
#[test]
fn the_pair_agrees_on_an_ownership_key_drawn_at_boot() {
    let Some(mut p) = Pair::open('O', "ownkey", &[]) else { return };
    let vrrp = |prio: u8, b: usize| nat_vrrp(prio, "") + &sync_section(b);
    let key_of = |p: &Pair, b: usize| {
        let show = p.console(b, "show sync");
        let line = show.lines().find(|l| l.starts_with("ownership key: ")).unwrap_or_else(|| panic!("no ownership key line:\n{show}")).to_string();
        line["ownership key: ".len()..].split(',').next().unwrap_or_default().to_string()
    };
    let agreed = |p: &Pair| wait_for(Duration::from_secs(10), || (key_of(p, 0) == key_of(p, 1) && p.console(1, "show sync").contains("pair check: ok")).then(|| key_of(p, 0)));
    p.start_synced(&vrrp);
    assert!(p.wait_out(1, "sync: took the pair's ownership key", Duration::from_secs(10)).is_some(), "{}", p.both());
    let first = agreed(&p).unwrap_or_else(|| panic!("no agreement:\n{}", p.both()));
    assert!(p.console(0, "show sync").contains(&format!("ownership key: {first}, drawn here at boot")), "A keeps its own");
    assert!(p.console(1, "show sync").contains(&format!("ownership key: {first}, the peer's, taken")), "B took A's");
    assert_eq!(p.events(0, "sync: took the pair's ownership key"), 0, "A never yields to the younger");

    // B restarted: it takes A's key again.
    p.kill(1, libc::SIGKILL);
    p.start(1, &vrrp(100, 1));
    assert!(p.wait_out(1, "sync: took the pair's ownership key", Duration::from_secs(10)).is_some(), "{}", p.both());
    assert_eq!(agreed(&p).as_deref(), Some(first.as_str()), "{}", p.both());

    // Both restarted: another boot, another key, the same sync key.
    p.kill(0, libc::SIGKILL);
    p.kill(1, libc::SIGKILL);
    p.start_synced(&vrrp);
    let second = agreed(&p).unwrap_or_else(|| panic!("no agreement:\n{}", p.both()));
    println!("ownership key {first} on the first boot, {second} on the next");
    assert_ne!(second, first, "a key drawn at boot, not derived from the sync key");
}

/// The old master returns with preemption: it asks the backup for a bulk
/// dump and takes the VIPs back only once it has it, so the connections
/// the backup accepted meanwhile survive its return; then SIGTERM hands
/// over with a priority-0 advert and nothing resets.
#[test]
fn a_returning_master_preempts_only_after_the_bulk_dump_and_sigterm_resets_nothing() {
    let Some(mut p) = Pair::open_with('r', "return", &["python3"], 0) else { return };
    let vrrp = |prio: u8, b: usize| nat_vrrp(prio, "") + &sync_section(b);
    p.start_synced(&vrrp);
    // B's own health checks have found the servers up.
    assert!(wait_for(Duration::from_secs(10), || (p.events(1, "(pool web) up") >= 3).then_some(())).is_some(), "{}", p.both());
    p.kill(0, libc::SIGKILL);
    assert!(p.wait_out(1, "vrrp outside: BACKUP -> MASTER", Duration::from_secs(5)).is_some(), "{}", p.both());
    // Opened on B while A is away.
    let mut ka = keepalives(&p, "keepalive.log");

    p.start(0, &vrrp(200, 0));
    assert!(p.wait_out(0, "vrrp outside: BACKUP -> MASTER", Duration::from_secs(10)).is_some(), "A did not preempt:\n{}", p.both());
    let a = p.out(0);
    let dump = a.find("sync: bulk dump from 198.51.100.4 complete").unwrap_or_else(|| panic!("A took over without a bulk dump:\n{a}"));
    let took_over = a.find("vrrp outside: BACKUP -> MASTER").unwrap_or(0);
    assert!(dump < took_over, "A preempted before its bulk dump arrived:\n{a}");
    let line = a[dump..].lines().next().unwrap_or_default();
    assert!(number_after(line, "complete: ").unwrap_or(0) >= 20, "the dump carried the 20 connections: {line}");
    println!("returning master: {line}, then preempted");
    assert!(p.wait_out(1, "vrrp outside: MASTER -> BACKUP", Duration::from_secs(5)).is_some(), "{}", p.both());
    again(&mut ka, 1, &p);

    // SIGTERM on A: B takes over on the priority-0 advert; the same
    // connections answer again.
    let n = p.out(1).matches("vrrp outside: BACKUP -> MASTER").count();
    let t0 = p.signal(0, libc::SIGTERM);
    let took = p.wait_more(1, "vrrp outside: BACKUP -> MASTER", n, t0, Duration::from_secs(5));
    let took = took.unwrap_or_else(|| panic!("B did not take over:\n{}", p.both()));
    assert!(p.out(1).contains("(priority-0 advert)"), "{}", p.both());
    println!("SIGTERM handover: {} ms", took.as_millis());
    again(&mut ka, 2, &p);
    ka.send_line("quit");
    assert!(ka.wait(Duration::from_secs(10)).is_some_and(|s| s.success()), "{}", ka.output());
}

/// A forged sync datagram (scapy, the peer's address, a wrong HMAC) is
/// dropped and counted and installs nothing; the same datagram signed
/// with the pair's key but echoing no nonce of the receiver is refused as
/// unfresh; signed and echoing the nonce B sent (sniffed), it is installed
/// (the checks are what stop it); one from another address is dropped as
/// not the peer's.
#[test]
fn a_forged_sync_datagram_is_dropped_and_counted() {
    let Some(mut p) = Pair::open('g', "forge", &["python3"]) else { return };
    if !require(try_sh("/usr/bin/python3 -c 'import scapy'").0, "python3-scapy") {
        return;
    }
    p.services.push_str("\n[management]\nlisten = \"127.0.0.1:9100\"\n");
    p.start(1, &(nat_vrrp(100, "") + &sync_section(1)));
    assert!(p.wait_out(1, "vrrp outside: BACKUP -> MASTER", Duration::from_secs(5)).is_some(), "{}", p.both());
    let mac = port_mac(&p.out(1), "inside").expect("B's inside MAC");
    let metrics = || p.topo.exec("lb2", "curl -s -m 5 http://127.0.0.1:9100/metrics");
    let forge = |sign: &str, src: &str, seq: u32| {
        let script = test_script("sync_forge.py");
        let out = p.topo.exec(
            "srv1",
            &format!("/usr/bin/python3 {} --iface eth0 --dst-mac {mac} --src {src} --dst 198.51.100.4 --key {SYNC_KEY} --{sign} --seq {seq}", script.display()),
        );
        assert!(out.contains("sent"), "{out}");
    };
    let client_entry = || p.console(1, "show connections vip 192.0.2.100").contains("192.0.2.77");
    forge("bad", "198.51.100.3", 1);
    let show = wait_for(Duration::from_secs(5), || {
        let s = p.console(1, "show sync");
        s.contains("bad-hmac 1").then_some(s)
    });
    let show = show.unwrap_or_else(|| panic!("the forged datagram was not counted:\n{}", p.console(1, "show sync")));
    assert!(show.contains("0 installed") && show.contains("received: 0 datagrams"), "{show}");
    assert!(!client_entry(), "a forged record was installed");
    assert!(p.console(1, "show connections").lines().count() <= 2, "{}", p.console(1, "show connections"));
    println!("forged datagram:\n{show}");
    let m = metrics();
    for line in ["furiwake_sync_dropped_total{reason=\"bad-hmac\"} 1", "furiwake_sync_datagrams_received_total 0", "furiwake_vrrp_state{instance=\"outside\",state=\"MASTER\"} 1", "furiwake_vrrp_state{instance=\"inside\",state=\"BACKUP\"} 0", "furiwake_vrrp_became_master_total{instance=\"inside\"} 1"] {
        assert!(m.lines().any(|l| l == line), "metrics lack {line:?}:\n{m}");
    }

    // Signed, but from another address than the peer's: not sync traffic
    // at all on B's workers (the HA punt class is the peer's, on the sync
    // link, TTL 255), so it is dropped there as class `other`.
    forge("good", "198.51.100.11", 1);
    let other_dropped = || {
        let block = report(p.fw[1].as_ref().expect("B runs"));
        block.lines().any(|l| l.starts_with("  punt (passed/limited):") && l.contains(" other 0/")).then_some(())
    };
    assert!(wait_for(Duration::from_secs(5), other_dropped).is_some(), "{}", p.out(1));
    assert!(!client_entry());
    assert!(!p.console(1, "show sync").contains("not-the-peer"), "it never reached the sync module");

    // Signed with the key, from the peer's address, but echoing no nonce
    // of B's (a capture from before B started, say): refused.
    forge("good", "198.51.100.3", 2);
    assert!(wait_for(Duration::from_secs(5), || p.console(1, "show sync").contains("unfresh 1").then_some(())).is_some(), "{}", p.console(1, "show sync"));
    assert!(!client_entry(), "an unfresh record was installed");
    // Signed, from the peer's address, echoing B's nonce: installed.
    forge("good --fresh", "198.51.100.3", 3);
    assert!(wait_for(Duration::from_secs(5), || client_entry().then_some(())).is_some(), "the signed record was not installed:\n{}", p.console(1, "show sync"));
    assert!(p.console(1, "show sync").contains("1 installed"), "{}", p.console(1, "show sync"));
    assert!(metrics().lines().any(|l| l == "furiwake_sync_worker_records_total{what=\"installed\"} 1"), "{}", metrics());
}

/// The review's S5 attack end to end: a sync datagram with records,
/// captured on the sync link (tcpdump at B), replayed at B after both
/// boxes restarted. B installs nothing from it (refused as unfresh: it
/// echoes a nonce of B's earlier boot); A, back, becomes B's current peer,
/// and the same capture replayed then is refused too (A is current and
/// talking) while A's own datagrams are taken: a new connection on A is
/// installed on B.
#[test]
fn a_captured_sync_datagram_replayed_after_a_restart_installs_nothing() {
    let Some(mut p) = Pair::open('y', "replay", &["python3", "tcpdump"]) else { return };
    if !require(try_sh("/usr/bin/python3 -c 'import scapy'").0, "python3-scapy") {
        return;
    }
    let vrrp = |prio: u8, b: usize| nat_vrrp(prio, "") + &sync_section(b);
    p.start_synced(&vrrp);
    assert!(wait_for(Duration::from_secs(10), || (p.events(0, "(pool web) up") >= 3).then_some(())).is_some(), "{}", p.both());

    // Capture A's datagrams that carry records (a Hello is 130 bytes on
    // the wire; one record makes 174).
    let pcap = p.dir.path("sync.pcap");
    let filter = "udp port 8848 and src host 198.51.100.3 and greater 170";
    let cap = Proc::spawn("tcpdump-sync", Some(&p.topo.ns("lb2")), &["tcpdump", "-n", "-i", "lb-in", "--immediate-mode", "-U", "-w", pcap.to_str().unwrap(), filter], &p.dir.path("tcpdump-sync.log"), false);
    std::thread::sleep(Duration::from_secs(1));
    assert!(p.id().is_some(), "the VIP does not answer:\n{}", p.both());
    let captured = || try_sh(&format!("tcpdump -r {} 2>/dev/null | wc -l", pcap.display())).1.trim().parse::<u64>().unwrap_or(0);
    assert!(wait_for(Duration::from_secs(10), || (captured() >= 1 && installed(&p, 1) >= 1).then_some(())).is_some(), "nothing captured or synced:\n{}", p.console(1, "show sync"));
    cap.signal(libc::SIGINT);
    drop(cap);
    let n = captured();
    println!("captured {n} sync datagrams with records");

    // Both restart; B comes back alone.
    p.kill(0, libc::SIGKILL);
    p.kill(1, libc::SIGKILL);
    p.start(1, &vrrp(100, 1));
    assert!(p.wait_out(1, "vrrp outside: BACKUP -> MASTER", Duration::from_secs(10)).is_some(), "{}", p.both());
    replay(&p, &pcap, n);
    let show = wait_for(Duration::from_secs(5), || {
        let s = p.console(1, "show sync");
        s.contains(&format!("unfresh {n}")).then_some(s)
    });
    let show = show.unwrap_or_else(|| panic!("the replay was not refused as unfresh:\n{}", p.console(1, "show sync")));
    println!("replayed at the restarted B:\n{show}");
    assert!(show.contains("received: 0 datagrams, 0 records, 0 queued to workers"), "a replayed record was taken:\n{show}");
    assert!(show.contains("peer seen: never") && show.contains("peer never fresh"), "a replay counted as the peer:\n{show}");
    assert_eq!(installed(&p, 1), 0, "{show}");
    assert!(!p.console(1, "show connections").contains("192.0.2.10"), "{}", p.console(1, "show connections"));

    // A comes back: it becomes B's current peer at once (the replayed
    // sender id does not hold it off), takes B's bulk dump and preempts.
    p.start(0, &vrrp(200, 0));
    assert!(p.wait_out(1, "sync: peer 198.51.100.3 is current", Duration::from_secs(10)).is_some(), "{}", p.both());
    assert!(p.wait_out(0, "vrrp outside: BACKUP -> MASTER", Duration::from_secs(15)).is_some(), "A did not preempt:\n{}", p.both());
    let current = p.events(1, "is current (sender");
    // The capture again, A current and talking: refused, A stays current.
    let not_current = || number_after(&p.console(1, "show sync"), "not-current ").unwrap_or(0);
    let refused = not_current();
    replay(&p, &pcap, n);
    assert!(wait_for(Duration::from_secs(5), || (not_current() >= refused + n).then_some(())).is_some(), "{}", p.console(1, "show sync"));
    let before = installed(&p, 1);
    assert!(wait_for(Duration::from_secs(10), || p.id()).is_some(), "the VIP does not answer through A:\n{}", p.both());
    let show = wait_for(Duration::from_secs(10), || {
        let s = p.console(1, "show sync");
        (number_after(&s, "lost to a full ring, ").unwrap_or(0) > before).then_some(s)
    });
    let show = show.unwrap_or_else(|| panic!("A's new connection did not reach B:\n{}", p.console(1, "show sync")));
    println!("after the second replay:\n{show}");
    assert_eq!(p.events(1, "is current (sender"), current, "the replay displaced A:\n{}", p.out(1));
    assert!(show.contains("pair check: ok"), "{show}");
}

/// The pair check (review C5): A serves one more virtual server than B,
/// so their fingerprints differ; B refuses A's records (nothing
/// installed), says why once, and in `show sync`. `config reload` on B
/// with the same virtual servers as A mends it: A's next refresh is
/// installed.
#[test]
fn a_peer_with_other_services_has_its_records_refused_until_they_match() {
    let Some(mut p) = Pair::open('m', "mismatch", &[]) else { return };
    let extra = "\n[[virtual_server]]\nname = \"web-alt\"\naddress = \"192.0.2.100:8080\"\npool = \"web\"\n";
    let vrrp = |prio: u8, b: usize| nat_vrrp(prio, "") + &sync_section(b);
    p.start(0, &(vrrp(200, 0) + extra));
    assert!(p.wait_out(0, "vrrp outside: BACKUP -> MASTER", Duration::from_secs(5)).is_some(), "{}", p.both());
    p.start(1, &vrrp(100, 1));
    let said = "sync: peer 198.51.100.3 does not match this box: services (VIP, port, protocol, forwarding) differ; its records are refused";
    assert!(p.wait_out(1, said, Duration::from_secs(10)).is_some(), "{}", p.both());
    assert!(wait_for(Duration::from_secs(10), || (p.events(0, "(pool web) up") >= 3).then_some(())).is_some(), "{}", p.both());
    assert!(wait_for(Duration::from_secs(10), || p.id()).is_some(), "the VIP does not answer:\n{}", p.both());
    let show = wait_for(Duration::from_secs(10), || {
        let s = p.console(1, "show sync");
        (number_after(&s, "pair-mismatch ").unwrap_or(0) >= 1).then_some(s)
    });
    let show = show.unwrap_or_else(|| panic!("no record was refused:\n{}", p.console(1, "show sync")));
    println!("mismatch:\n{show}");
    assert!(show.contains("pair check: MISMATCH: services (VIP, port, protocol, forwarding) differ; its records are refused"), "{show}");
    assert_eq!(installed(&p, 1), 0, "{show}");
    assert_eq!(p.events(1, "does not match this box"), 1, "said once:\n{}", p.out(1));

    // B gets the same services: A's refresh (every 2 s) is installed.
    p.dir.write("fw1.toml", &(p.config(1, &vrrp(100, 1)) + extra));
    let reload = p.console(1, "config reload");
    assert!(reload.contains("config reloaded"), "{reload}");
    let show = wait_for(Duration::from_secs(10), || {
        let s = p.console(1, "show sync");
        (s.contains("pair check: ok") && installed(&p, 1) >= 1).then_some(s)
    });
    let show = show.unwrap_or_else(|| panic!("not mended:\n{}", p.console(1, "show sync")));
    println!("after the reload:\n{show}");
}

/// A flood of junk sync datagrams at B (the peer's address, the right
/// magic, version and key id, a wrong tag: each costs a tag check) makes
/// no VRRP transition: B checks at most 64 tags a control-loop turn and
/// queues at most 256, and its loop goes on sending and hearing adverts.
/// (Before the protected punt ring, the adverts were lost with the junk
/// in the worker's one punt ring: B flapped before any tag was checked.)
#[test]
fn a_junk_sync_flood_makes_no_vrrp_transition() {
    let Some(mut p) = Pair::open('j', "junk", &["python3"]) else { return };
    if !require(try_sh("/usr/bin/python3 -c 'import scapy'").0, "python3-scapy") {
        return;
    }
    let vrrp = |prio: u8, b: usize| nat_vrrp(prio, "") + &sync_section(b);
    p.start_synced(&vrrp);
    std::thread::sleep(Duration::from_secs(1));
    let transitions = |b: usize| p.events(b, "vrrp outside: ") + p.events(b, "vrrp inside: ");
    let before = (transitions(0), transitions(1));
    let mac = port_mac(&p.out(1), "inside").expect("B's inside MAC");
    let out = p.topo.exec(
        "srv1",
        &format!("/usr/bin/python3 {} --iface eth0 --dst-mac {mac} --src 198.51.100.3 --dst 198.51.100.4 --key {SYNC_KEY} --seconds 5", test_script("sync_flood.py").display()),
    );
    let sent = number_after(&out, "sent ").unwrap_or(0);
    std::thread::sleep(Duration::from_secs(1));
    let show = p.console(1, "show sync");
    println!("flood of {sent} junk datagrams:\n{show}\n{}", p.show_vrrp(1));
    assert!(number_after(&show, "bad-hmac ").unwrap_or(0) >= 1000, "the flood did not reach the tag check:\n{show}");
    assert_eq!((transitions(0), transitions(1)), before, "a VRRP transition during the flood:\n{}", p.both());
    // The peer is still heard.
    assert!(wait_for(Duration::from_secs(3), || p.console(1, "show sync").contains("peer seen: ").then(|| number_after(&p.console(1, "show sync"), "peer seen: ").filter(|ms| *ms < 1500)).flatten()).is_some(), "{}", p.console(1, "show sync"));
}

/// Re-keying by `config reload` (README, "Re-keying the sync"): A gets
/// the new key with the old as `previous_key` and goes on sending with the
/// old one, which B still has; B gets the same and both send with the new
/// one; then the old key is dropped on both. Nothing is refused on the way,
/// and a connection made at the end is synced.
#[test]
fn the_sync_is_re_keyed_by_reload_without_a_gap() {
    let Some(mut p) = Pair::open('k', "rekey", &[]) else { return };
    let new_key = "8c1f6e0a3d57b9e24f0a6c83d1e95b72a4c0f83e6d2b19a75c3e8f04b6d2a193".to_string();
    let vrrp = |prio: u8, b: usize| nat_vrrp(prio, "") + &sync_section(b);
    p.start_synced(&vrrp);
    let key_id = |show: &str| show.lines().find(|l| l.starts_with("keys: sending with ")).and_then(|l| l.split_whitespace().nth(3)).unwrap_or_default().to_string();
    let old_id = key_id(&p.console(0, "show sync"));
    // Refusals so far (a box's first bulk request, sent before it knew
    // the peer's nonce, is unfresh): none may be added by the re-keying.
    let refused = |b: usize| {
        let show = p.console(b, "show sync");
        ["bad-hmac", "unknown-key", "unfresh", "not-current", "stale"].map(|r| number_after(&show, &format!("{r} ")).unwrap_or(0))
    };
    let refused_before = [refused(0), refused(1)];
    let rekey = |b: usize, previous: bool| {
        let prev = if previous { format!("previous_key = \"{SYNC_KEY}\"\n") } else { String::new() };
        let text = p.config(b, &vrrp(if b == 0 { 200 } else { 100 }, b)).replace(&format!("key = \"{SYNC_KEY}\"\n"), &format!("key = \"{new_key}\"\n{prev}"));
        p.dir.write(&format!("fw{b}.toml"), &text);
        let out = p.console(b, "config reload");
        assert!(out.contains("config reloaded"), "{out}");
    };
    let received = |b: usize| number_after(&p.console(b, "show sync"), "received: ").unwrap_or(0);
    // Both still hear each other after each step (Hellos every second).
    let heard = |step: &str| {
        for b in 0..2 {
            let n = received(b);
            let more = wait_for(Duration::from_secs(5), || (received(b) >= n + 2).then_some(()));
            assert!(more.is_some(), "{step}: box {b} hears nothing:\n{}", p.console(b, "show sync"));
        }
    };
    rekey(0, true);
    assert!(p.wait_out(0, "sync: keys changed", Duration::from_secs(5)).is_some(), "{}", p.out(0));
    heard("A re-keyed");
    let a = p.console(0, "show sync");
    assert_eq!(key_id(&a), old_id, "A must send with the old key while B lacks the new:\n{a}");
    rekey(1, true);
    heard("B re-keyed");
    let both_new = wait_for(Duration::from_secs(5), || {
        let (a, b) = (key_id(&p.console(0, "show sync")), key_id(&p.console(1, "show sync")));
        (a == b && a != old_id).then_some(a)
    });
    assert!(both_new.is_some(), "the pair did not move to the new key:\n{}\n{}", p.console(0, "show sync"), p.console(1, "show sync"));
    rekey(0, false);
    rekey(1, false);
    heard("old key dropped");
    let before = installed(&p, 1);
    assert!(wait_for(Duration::from_secs(10), || p.id()).is_some(), "the VIP does not answer:\n{}", p.both());
    assert!(wait_for(Duration::from_secs(10), || (installed(&p, 1) > before).then_some(())).is_some(), "{}", p.console(1, "show sync"));
    for (b, before) in refused_before.iter().enumerate() {
        let show = p.console(b, "show sync");
        println!("box {b} after the re-keying:\n{show}");
        assert_eq!(&refused(b), before, "box {b} refused datagrams (bad-hmac, unknown-key, unfresh, not-current, stale):\n{show}");
    }
}

/// Records box `b`'s workers installed from the sync (`show sync`).
fn installed(p: &Pair, b: usize) -> u64 {
    number_after(&p.console(b, "show sync"), "lost to a full ring, ").unwrap_or(0)
}

/// The frames of `pcap` sent from srv1 (its own source MAC) to the inside
/// segment, where B is.
fn replay(p: &Pair, pcap: &std::path::Path, n: u64) {
    let srv1_mac = p.topo.exec("srv1", "cat /sys/class/net/eth0/address").trim().to_string();
    let out = p.topo.exec("srv1", &format!("/usr/bin/python3 {} --iface eth0 --pcap {} --src-mac {srv1_mac}", test_script("replay.py").display(), pcap.display()));
    assert!(out.contains(&format!("replayed {n}")), "{out}");
}

/// Connection entries over the workers, from `show workers` (CONNECTIONS).
fn entries(p: &Pair, b: usize) -> Option<u64> {
    let out = p.console(b, "show workers");
    let head = out.lines().next()?;
    let col = head.split_whitespace().position(|w| w == "CONNECTIONS")?;
    out.lines().skip(1).filter_map(|l| l.split_whitespace().nth(col)?.parse::<u64>().ok()).reduce(|a, b| a + b)
}

/// Under wrk with a new connection per request through the master, the
/// standby's entry count follows the master's: the sync lag is measured
/// (the datagrams' age on arrival, and how long after the last request
/// the two tables agree) and printed, and the counts are equal within it.
#[test]
fn under_wrk_the_standby_follows_the_master_within_the_sync_lag() {
    let Some(mut p) = Pair::open('w', "lag", &["wrk"]) else { return };
    let vrrp = |prio: u8, b: usize| nat_vrrp(prio, "") + &sync_section(b);
    p.start_synced(&vrrp);
    assert!(wait_for(Duration::from_secs(10), || p.id()).is_some(), "{}", p.both());

    let argv = ["wrk", "-t1", "-c8", "-d4s", "-H", "Connection: close", &format!("http://{VIP}/id")];
    let mut wrk = Proc::spawn("wrk", Some(&p.topo.ns("client")), &argv, &p.dir.path("wrk.log"), false);
    let mut samples = Vec::new();
    while wrk.is_running() {
        if let (Some(a), Some(b)) = (entries(&p, 0), entries(&p, 1)) {
            samples.push((a, b));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let done = Instant::now();
    let out = wrk.output();
    assert!(!out.contains("Socket errors") && !out.contains("Non-2xx"), "wrk saw errors:\n{out}");
    let requests: u64 = out.lines().find(|l| l.contains("requests in")).and_then(|l| l.split_whitespace().next()?.parse().ok()).unwrap_or(0);
    assert!(requests > 100, "wrk made {requests} requests:\n{out}");
    // After the last request, the standby agrees with the master exactly:
    // at once for the connections that were established; a handshake wrk
    // cut off at its end (reset in SYN_SENT or SYN_RECV) is the master's
    // only, never assured and not synced, until its `tcp_close` (10 s)
    // runs out.
    let agreed = wait_for(Duration::from_secs(15), || match (entries(&p, 0), entries(&p, 1)) {
        (Some(a), Some(b)) if a == b && a > 0 => Some((a, done.elapsed())),
        _ => None,
    });
    let (n, after) = agreed.unwrap_or_else(|| panic!("the standby never matched the master: {:?} vs {:?}\n{}", entries(&p, 0), entries(&p, 1), p.console(1, "show sync")));
    let show = p.console(1, "show sync");
    let lag_line = show.lines().find(|l| l.starts_with("peer seen")).unwrap_or_default().to_string();
    let worst = samples.iter().map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
    println!(
        "wrk: {requests} requests in 4 s ({} connections/s); during the run the standby trailed the master by at most {worst} entries of {}; {n} entries each {} ms after the last request; standby's {lag_line}",
        requests / 4,
        samples.iter().map(|s| s.0).max().unwrap_or(0),
        after.as_millis()
    );
    // Fewer entries than requests: the client reuses ports whose TIME_WAIT
    // entry a new SYN reopens (RFC 9293 §3.6.1).
    assert!(n >= 100, "{n} entries for {requests} requests");
    assert!(!show.contains("lost to a full ring") || show.contains("0 lost to a full ring"), "{show}");
}

/// Active-active: each box is master of one VIP (full-NAT, each VIP with
/// its own floating local address) and syncs its connections to the
/// other, both ways at once. `kill -9` of either moves its VIP to the
/// other and its keep-alive connections answer again there.
#[test]
fn active_active_sync_runs_both_ways() {
    let Some(mut p) = Pair::open('a', "active", &["python3"]) else { return };
    p.services = format!(
        "[[virtual_server]]\nname = \"one\"\naddress = \"{VIP}:80\"\npool = \"web\"\nforwarding = \"full-nat\"\nlocal_addresses = [\"198.51.100.50\"]\n\n[[virtual_server]]\nname = \"two\"\naddress = \"192.0.2.101:80\"\npool = \"web\"\nforwarding = \"full-nat\"\nlocal_addresses = [\"198.51.100.51\"]\n"
    );
    let vrrp = |b: usize| {
        let (one, two) = if b == 0 { (200, 100) } else { (100, 200) };
        format!(
            "[[vrrp]]\nname = \"one\"\ninterface = \"outside\"\nvrid = 51\npriority = {one}\nadvert_interval_ms = 100\naddresses = [\"{VIP}\", \"198.51.100.50\"]\n\n[[vrrp]]\nname = \"two\"\ninterface = \"outside\"\nvrid = 61\npriority = {two}\nadvert_interval_ms = 100\naddresses = [\"192.0.2.101\", \"198.51.100.51\"]\n{}",
            sync_section(b)
        )
    };
    p.start(0, &vrrp(0));
    p.start(1, &vrrp(1));
    assert!(p.wait_out(0, "vrrp one: BACKUP -> MASTER", Duration::from_secs(5)).is_some(), "{}", p.both());
    assert!(p.wait_out(1, "vrrp two: BACKUP -> MASTER", Duration::from_secs(5)).is_some(), "{}", p.both());
    for b in 0..2 {
        assert!(wait_for(Duration::from_secs(10), || (p.events(b, "(pool web) up") >= 3).then_some(())).is_some(), "{}", p.both());
    }
    let script = test_script("keepalive.py");
    let open = |vip: &str, log: &str| {
        let mut ka = Proc::spawn("keepalive", Some(&p.topo.ns("client")), &["/usr/bin/python3", script.to_str().unwrap(), "--to", &format!("{vip}:80"), "--count", "20"], &p.dir.path(log), true);
        ka.expect_output("open 20", Duration::from_secs(20));
        ka
    };
    let mut one = open(VIP, "ka-one.log");
    let mut two = open("192.0.2.101", "ka-two.log");
    // Each box has the other's 20 connections.
    for b in 0..2 {
        let ok = wait_for(Duration::from_secs(10), || (number_after(&p.console(b, "show sync"), "ring, ").unwrap_or(0) >= 20).then_some(()));
        assert!(ok.is_some(), "box {b} did not install the peer's connections:\n{}", p.console(b, "show sync"));
    }
    let show_a = p.console(0, "show sync");
    println!("active-active, A:\n{show_a}");

    // A dies: B takes VIP one; its connections answer through B.
    p.kill(0, libc::SIGKILL);
    assert!(p.wait_out(1, "vrrp one: BACKUP -> MASTER", Duration::from_secs(5)).is_some(), "{}", p.both());
    again(&mut one, 1, &p);
    again(&mut two, 1, &p);
    // A returns (bulk dump, then preempts VIP one); then B dies: A takes
    // VIP two, whose connections B had synced to it.
    p.start(0, &vrrp(0));
    assert!(p.wait_out(0, "vrrp one: BACKUP -> MASTER", Duration::from_secs(10)).is_some(), "{}", p.both());
    assert!(p.out(0).find("sync: bulk dump from 198.51.100.4 complete") < p.out(0).find("vrrp one: BACKUP -> MASTER"), "{}", p.out(0));
    assert!(wait_for(Duration::from_secs(10), || (p.events(0, "(pool web) up") >= 3).then_some(())).is_some(), "{}", p.both());
    p.kill(1, libc::SIGKILL);
    assert!(p.wait_out(0, "vrrp two: BACKUP -> MASTER", Duration::from_secs(5)).is_some(), "{}", p.both());
    again(&mut one, 2, &p);
    again(&mut two, 2, &p);
    println!("active-active: both VIPs' 20 keep-alive connections answered after each box's death in turn");
}

/// Review S2: anyone on the Internet can send IP protocol 112 to a box's
/// self IP. A flood of it (TTL 64, spoofed sources, priority-255 adverts)
/// at both boxes of a pair in steady state must change nothing: it is
/// refused on the workers before it can take a token of the VRRP class
/// (`vrrp-refused`), and the peer's real adverts keep coming through their
/// protected ring. No transition on either box.
#[test]
fn a_protocol_112_flood_at_the_self_ips_moves_no_vrrp_state() {
    let Some(mut p) = Pair::open('x', "vrrpflood", &[]) else { return };
    p.start(0, &nat_vrrp(200, ""));
    p.start(1, &nat_vrrp(100, ""));
    assert!(p.wait_out(0, "vrrp outside: BACKUP -> MASTER", Duration::from_secs(5)).is_some(), "A did not become master:\n{}", p.both());
    std::thread::sleep(Duration::from_secs(1));
    let masters = [p.out(0).matches("-> MASTER").count(), p.out(1).matches("-> MASTER").count()];
    let backups = p.out(0).matches("-> BACKUP").count();
    // A flood the box absorbs (2000 pps at each self IP): the box alone
    // decides whether the master's adverts arrive, so no state may move.
    vrrp_floods(&p, Some(2000), 6);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(p.out(1).matches("-> MASTER").count(), masters[1], "the backup became master under the flood:\n{}", p.both());
    assert_eq!(p.out(0).matches("-> MASTER").count(), masters[0], "{}", p.both());
    assert_eq!(p.out(0).matches("-> BACKUP").count(), backups, "the master stepped down under the flood:\n{}", p.both());
    let before: Vec<u64> = (0..2).map(|b| vrrp_refused_checked(&p, b, 1000)).collect();
    // As fast as the generator goes: on two shared cores the kernel may
    // drop real adverts in the af_packet ring before the box sees them, so
    // only what the box controls is asserted: every flood packet it sees
    // is refused on the worker, none is punted as VRRP, no real advert is
    // policed, and the pair settles back (A master by priority).
    vrrp_floods(&p, None, 4);
    for (b, was) in before.iter().enumerate() {
        let now = vrrp_refused_checked(&p, b, was + 1000);
        eprintln!("box {b}: {} more refused at full rate", now - was);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !(p.show_vrrp(0).contains("MASTER") && p.show_vrrp(1).contains("BACKUP")) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(p.show_vrrp(0).contains("MASTER") && p.show_vrrp(1).contains("BACKUP"), "{}\n{}", p.show_vrrp(0), p.show_vrrp(1));
}

/// Protocol-112 floods from the client namespace at both self IPs of the
/// outside VRID, at `pps` each (unthrottled if `None`), for `secs`.
fn vrrp_floods(p: &Pair, pps: Option<u32>, secs: u32) {
    let flood = env!("CARGO_BIN_EXE_flood");
    let client = p.topo.ns("client");
    let (rate, secs) = (pps.map(|r| r.to_string()), secs.to_string());
    let mut floods: Vec<Proc> = ["192.0.2.4", "192.0.2.3"]
        .iter()
        .map(|dst| {
            let mut argv = vec![flood, "--dst", dst, "--dport", "0", "--src", "203.0.113.0", "--proto", "vrrp", "--secs", &secs];
            if let Some(r) = rate.as_deref() {
                argv.extend(["--pps", r]);
            }
            Proc::spawn(&format!("flood-{dst}"), Some(&client), &argv, &p.dir.path(&format!("flood-{dst}-{secs}.log")), false)
        })
        .collect();
    for f in floods.iter_mut() {
        let status = f.wait(Duration::from_secs(60)).expect("the flood ends in its time");
        assert_eq!(status.code(), Some(0), "{}", f.output());
        eprintln!("{}", f.output().trim());
    }
}

/// Box `b`'s `vrrp-refused` count, asserted to be at least `least`, with
/// no real advert policed at the punt path.
fn vrrp_refused_checked(p: &Pair, b: usize, least: u64) -> u64 {
    let block = report(p.fw[b].as_ref().expect("running"));
    let refused = worker_drops(&block, 0).iter().find(|(r, _)| r == "vrrp-refused").map_or(0, |d| d.1);
    let line = block.lines().find(|l| l.contains("punt (passed/limited)")).unwrap_or("").to_string();
    let vrrp = line.split(" vrrp ").nth(1).and_then(|f| f.split([';', ' ']).next()).unwrap_or("0/0").to_string();
    eprintln!("box {b}: {refused} refused as vrrp-refused; vrrp passed/limited {vrrp}");
    assert!(refused >= least, "box {b}: the flood was not refused on the worker ({refused} < {least}):\n{block}");
    assert!(vrrp.ends_with("/0"), "box {b}: real adverts were policed:\n{block}");
    refused
}

/// An `http` virtual server on the VRRP VIP with `session-id`
/// persistence: a client that logged in through A keeps its server through
/// B once A is gone, without a cookie (the ID in the URL): the L7 engine's
/// learned record reached B over the sync channel (issue 21).
#[test]
fn after_a_failover_a_cookieless_session_id_client_stays_on_its_server() {
    let Some(mut p) = Pair::open('L', "l7-session", &[]) else { return };
    p.services = format!("[[virtual_server]]\nname = \"web\"\naddress = \"{VIP}:80\"\nprotocol = \"http\"\npool = \"web\"\npersistence = {{ kind = \"session-id\", cookie = \"JSESSIONID\" }}\n");
    let vrrp = |prio: u8, b: usize| nat_vrrp(prio, "") + &sync_section(b);
    p.start_synced(&vrrp);
    let login = wait_for(Duration::from_secs(10), || {
        let (ok, out) = p.topo.try_exec("client", &format!("curl -s -D - -m 3 http://{VIP}/login"));
        (ok && out.contains("JSESSIONID=")).then_some(out)
    });
    let login = login.unwrap_or_else(|| panic!("no login through A:\n{}", p.both()));
    let id = login.lines().find_map(|l| l.split("JSESSIONID=").nth(1)).and_then(|r| r.split(';').next()).unwrap_or_default().trim().to_string();
    let server = login.lines().last().unwrap_or_default().trim().to_string();
    assert!(server.starts_with("srv") && !id.is_empty(), "{login}");
    let who = |p: &Pair| p.topo.try_exec("client", &format!("curl -s -m 3 'http://{VIP}/who;jsessionid={id}'")).1.trim().to_string();
    for _ in 0..5 {
        assert_eq!(who(&p), server, "through A");
    }
    // B has A's record before A goes.
    let synced = wait_for(Duration::from_secs(10), || p.console(1, "show l7").contains("persistence records 1;").then_some(()));
    assert!(synced.is_some(), "B never got the record:\n{}\n{}", p.console(1, "show l7"), p.console(1, "show sync"));
    // B's own health checks have found the servers up: a record naming a
    // server B still counts as down is rescheduled, rightly.
    assert!(wait_for(Duration::from_secs(10), || (p.events(1, "(pool web) up") >= 3).then_some(())).is_some(), "{}", p.both());
    let masters = p.out(1).matches("vrrp outside: BACKUP -> MASTER").count();
    p.kill(0, libc::SIGTERM);
    assert!(p.wait_more(1, "vrrp outside: BACKUP -> MASTER", masters, Instant::now(), Duration::from_secs(5)).is_some(), "B did not take over:\n{}", p.both());
    let through_b: Vec<String> = (0..10).map(|_| wait_for(Duration::from_secs(5), || Some(who(&p)).filter(|w| w.starts_with("srv"))).unwrap_or_default()).collect();
    assert!(through_b.iter().all(|w| *w == server), "through B the session stays on {server}: {through_b:?}\n{}", p.console(1, "show l7"));
}
