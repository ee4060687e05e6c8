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
            procs.push(start_nginx_backend(&ns, &format!("srv{n}"), &server_ip(n), &dir.path(&format!("srv{n}")), 0));
        }
        let boxes = [Box { ns: "lb", host: 3, prefix: format!("fwa-{}", topo.prefix) }, Box { ns: "lb2", host: 4, prefix: format!("fwb-{}", topo.prefix) }];
        Some(Pair { fw: [None, None], procs, boxes, dir, topo, _serial: serial })
    }

    /// Box `b`'s whole configuration with `vrrp` appended.
    fn config(&self, b: usize, vrrp: &str) -> String {
        let bx = &self.boxes[b];
        format!(
            "{}\n[[interface]]\nname = \"outside\"\ndevice = \"net_af_packet0,iface=lb-out\"\naddress = \"192.0.2.{h}/24\"\n\n[[interface]]\nname = \"inside\"\ndevice = \"net_af_packet1,iface=lb-in\"\naddress = \"198.51.100.{h}/24\"\n\n[console]\nsocket = \"{}\"\n\n{}\n[[virtual_server]]\nname = \"web\"\naddress = \"{VIP}:80\"\npool = \"web\"\n\n{vrrp}",
            platform_section(&bx.prefix),
            self.dir.path(&format!("console-{b}.sock")).display(),
            pool(),
            h = bx.host,
        )
    }

    fn start(&mut self, b: usize, vrrp: &str) {
        let cfg = self.dir.write(&format!("fw{b}.toml"), &self.config(b, vrrp));
        let log = self.dir.path(&format!("fw{b}-{}.log", rand_suffix()));
        let bx = &self.boxes[b];
        self.fw[b] = Some(start_furiwake(Some(&self.topo.ns(bx.ns)), &cfg, &log, &bx.prefix));
    }

    fn out(&self, b: usize) -> String {
        self.fw[b].as_ref().map(Proc::output).unwrap_or_default()
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
        let sock = self.dir.path(&format!("console-{b}.sock"));
        try_sh(&format!("{} console --socket {} -c 'show vrrp'", furiwake_bin().display(), sock.display())).1
    }

    /// curl the VIP's /id from the client: the server's name, or None.
    fn id(&self) -> Option<String> {
        let (ok, out) = self.topo.try_exec("client", &format!("curl -s -m 2 http://{VIP}/id"));
        (ok && out.trim().starts_with("srv")).then(|| out.trim().to_string())
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
#[test]
fn the_higher_priority_serves_and_failover_moves_the_vip() {
    let Some(mut p) = Pair::open('v', "failover", &[]) else { return };
    p.start(0, &nat_vrrp(200, ""));
    p.start(1, &nat_vrrp(100, ""));
    assert!(p.wait_out(0, "vrrp outside: BACKUP -> MASTER", Duration::from_secs(5)).is_some(), "A did not become master:\n{}", p.both());
    assert!(p.wait_out(0, "vrrp inside: BACKUP -> MASTER", Duration::from_secs(5)).is_some(), "A's inside did not follow:\n{}", p.both());
    std::thread::sleep(Duration::from_millis(500));
    assert!(!p.out(1).contains("-> MASTER"), "B became master beside A:\n{}", p.both());
    let id = wait_for(Duration::from_secs(10), || p.id());
    assert!(id.is_some(), "the VIP did not answer through A:\n{}", p.both());
    let show = p.show_vrrp(1);
    assert!(show.contains("BACKUP") && show.contains("192.0.2.3"), "B's show vrrp names A as master:\n{show}");

    // kill -9: B takes over after the master-down interval.
    p.kill(0, libc::SIGKILL);
    let took = p.wait_out(1, "vrrp outside: BACKUP -> MASTER", Duration::from_secs(5));
    let Some(took) = took else { panic!("B did not take over:\n{}", p.both()) };
    // RFC 5798 §6.1: 3 x 100 ms + (256 - 100) / 256 x 100 ms.
    let bound = Duration::from_millis(300 + 61);
    println!("takeover after kill -9: {} ms (master-down interval {} ms)", took.as_millis(), bound.as_millis());
    assert!(took < bound + Duration::from_millis(150), "takeover took {took:?}:\n{}", p.both());
    assert!(p.wait_out(1, "vrrp inside: BACKUP -> MASTER", Duration::from_secs(2)).is_some(), "B's inside did not follow:\n{}", p.both());
    let t0 = Instant::now();
    let id = wait_for(Duration::from_secs(10), || p.id());
    assert!(id.is_some(), "the VIP did not answer through B:\n{}", p.both());
    println!("first request answered through B {} ms after its takeover was seen", t0.elapsed().as_millis());

    // A returns with preemption: it becomes master again, B backs off.
    p.start(0, &nat_vrrp(200, ""));
    assert!(p.wait_out(0, "vrrp outside: BACKUP -> MASTER", Duration::from_secs(5)).is_some(), "A did not preempt:\n{}", p.both());
    assert!(p.wait_out(1, "vrrp outside: MASTER -> BACKUP", Duration::from_secs(5)).is_some(), "B did not back off:\n{}", p.both());
    assert!(wait_for(Duration::from_secs(10), || p.id()).is_some(), "the VIP did not answer through A again:\n{}", p.both());

    // SIGTERM: the priority-0 advert; B waits only its skew (61 ms).
    let t0 = Instant::now();
    p.fw[0].as_ref().unwrap().signal(libc::SIGTERM);
    let n = p.out(1).matches("vrrp outside: BACKUP -> MASTER").count();
    let took = wait_for(Duration::from_secs(5), || (p.out(1).matches("vrrp outside: BACKUP -> MASTER").count() > n).then(|| t0.elapsed()));
    let Some(took) = took else { panic!("B did not take over on SIGTERM:\n{}", p.both()) };
    println!("handover on SIGTERM: {} ms", took.as_millis());
    assert!(p.out(1).contains("(priority-0 advert)"), "B took over because of the priority-0 advert:\n{}", p.both());
    assert!(took < Duration::from_millis(100 + 150), "handover took {took:?}");
    p.kill(0, libc::SIGTERM);
    assert!(wait_for(Duration::from_secs(10), || p.id()).is_some(), "the VIP did not answer through B:\n{}", p.both());
}
