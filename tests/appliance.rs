//! The appliance image, booted (README, "The appliance image"): QEMU from
//! Debian (TCG: this machine has no usable KVM) boots the disk image
//! `scripts/image.sh` built (scripts/test.sh builds it into
//! `target/image-test` with `tests/appliance/furiwake.toml` and the
//! test-only passwords beside it) with three
//! virtio-net NICs whose TAPs are moved into this test's namespaces: a
//! client, and an nginx server on each of the two other links. Each NIC
//! has two queue pairs and RSS (`mq=on,rss=on`: QEMU computes the
//! Toeplitz hash with the key and indirection table the guest's driver
//! gave it), one per worker.
//!
//! One boot carries the whole story, in order: power-on to the first
//! request served through the VIP (DPDK on virtio, on hugepages, the NICs
//! bound by the service); round robin seen at the servers; the serial
//! consoles (the `admin` login on ttyS0 lands in `furiwake console`:
//! `show servers`, completion, a drain, `show connections`; the
//! appliance's own console on ttyS1); RSS steering every NAT and full-NAT
//! packet to the worker that owns its connection; a scan from the client that finds
//! only the VIP's port; systemd's watchdog restarting a stopped control
//! loop; a configuration broken on disk and a reboot, which starts on the
//! last good one and says why with file:line:column; `config save`
//! keeping the previous file; then an ACPI shutdown, after which the
//! journal on the disk shows the NICs given back.

use furiwake_e2e::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The guest's view: the VIP, the box's self IP on the client's link.
const VIP: &str = "192.0.2.100";
const SELF_IP: &str = "192.0.2.1";
/// The full-NAT VIP in front of the same servers.
const FULL_NAT_VIP: &str = "192.0.2.101";
/// Where the root file system starts in the image (scripts/image.sh).
const ROOT_OFFSET: u64 = 135_168 * 512;

/// A serial port of the guest (a QEMU socket chardev): everything it
/// printed, and a cursor that `expect` moves past what it matched.
struct Serial {
    stream: UnixStream,
    seen: Arc<Mutex<Vec<u8>>>,
    pos: usize,
    name: String,
}

impl Serial {
    fn connect(path: &Path, name: &str) -> Serial {
        let stream = wait_for(Duration::from_secs(30), || UnixStream::connect(path).ok()).unwrap_or_else(|| panic!("serial {name}: no socket at {}", path.display()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (mut r, s) = (stream.try_clone().expect("clone"), Arc::clone(&seen));
        std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            while let Ok(n) = r.read(&mut b) {
                if n == 0 {
                    break;
                }
                s.lock().expect("serial buffer").extend_from_slice(&b[..n]);
            }
        });
        Serial { stream, seen, pos: 0, name: name.to_string() }
    }

    /// What the port printed between byte `from` and the cursor, as plain
    /// text.
    fn since(&self, from: usize) -> String {
        let all = self.seen.lock().expect("serial buffer");
        plain(&String::from_utf8_lossy(all.get(from..self.pos).unwrap_or_default()))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().expect("serial buffer")).into_owned()
    }

    /// Waits for `needle` after the cursor; returns what came before it
    /// (from the cursor) and moves the cursor past it.
    fn expect(&mut self, needle: &str, timeout: Duration) -> String {
        let found = wait_for(timeout, || {
            let all = self.seen.lock().expect("serial buffer").clone();
            let tail = all.get(self.pos..).unwrap_or_default();
            let at = String::from_utf8_lossy(tail).find(needle)?;
            // Positions in the lossy text equal byte positions for ASCII
            // needles found in mostly ASCII output; re-find on the bytes.
            let b = tail.windows(needle.len()).position(|w| w == needle.as_bytes()).unwrap_or(at);
            Some((String::from_utf8_lossy(&tail[..b]).into_owned(), b + needle.len()))
        });
        let Some((before, adv)) = found else {
            let all = self.text();
            let start = all.len().saturating_sub(3000);
            panic!("serial {}: no {needle:?} within {timeout:?}; the last of it:\n{}", self.name, all.get(start..).unwrap_or(&all));
        };
        self.pos += adv;
        before
    }

    fn send(&mut self, s: &str) {
        self.stream.write_all(s.as_bytes()).expect("write to the serial port");
    }

    /// A console command typed at the `furiwake> ` prompt; its answer.
    fn console(&mut self, cmd: &str) -> String {
        self.send(&format!("{cmd}\r"));
        self.expect(cmd, Duration::from_secs(20));
        self.expect("furiwake> ", Duration::from_secs(60))
    }

    /// A root shell command (the prompt is `# `); its output, without
    /// the terminal's escape sequences.
    fn shell(&mut self, cmd: &str, timeout: Duration) -> String {
        self.send(&format!("{cmd}; echo __done__$((6*7))\r"));
        // The command's echo, then its output up to the marker's value.
        self.expect("__done__$((6*7))", Duration::from_secs(20));
        let out = self.expect("__done__42", timeout);
        self.expect("# ", Duration::from_secs(20));
        plain(&out).trim().to_string()
    }

    fn login(&mut self, user: &str, password: &str, then: &str) {
        self.send("\r");
        self.expect("login: ", Duration::from_secs(300));
        self.send(&format!("{user}\r"));
        self.expect("Password: ", Duration::from_secs(30));
        self.send(&format!("{password}\r"));
        self.expect(then, Duration::from_secs(60));
    }
}

/// `s` without ANSI escape sequences (CSI and OSC) and carriage returns.
fn plain(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\x1b' => match it.next() {
                Some('[') => while it.next().is_some_and(|c| !c.is_ascii_alphabetic() && c != '~') {},
                Some(']') => while it.next().is_some_and(|c| c != '\x07') {},
                _ => {}
            },
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// The namespaces of the lab, deleted (their processes first) on drop.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = try_sh(&format!("ip netns pids {ns} | xargs -r kill -9; ip netns del {ns}"));
        }
    }
}

/// What the lab needs, and where the image and its passwords are.
fn image() -> Option<(PathBuf, String, String)> {
    if !require_env(&["qemu-system-x86_64", "qemu-img", "nginx", "curl", "nmap", "debugfs", "journalctl"]) {
        return None;
    }
    let img = std::env::var("FURIWAKE_IMAGE").map(PathBuf::from).unwrap_or_else(|_| workspace().join("target/image-test/furiwake.raw"));
    if !require(img.exists(), &format!("the appliance image {} (scripts/test.sh builds it)", img.display())) {
        return None;
    }
    let pw = |f: &str| std::fs::read_to_string(workspace().join("tests/appliance").join(f)).expect("test password").trim().to_string();
    Some((img, pw("admin.password"), pw("root.password")))
}

/// The guest and its lab.
struct Vm {
    qemu: Proc,
    _ns: Namespaces,
    prefix: String,
    dir: Scratch,
    disk: PathBuf,
    s0: Serial,
    s1: Serial,
    started: Instant,
}

impl Vm {
    fn boot(img: &Path) -> Vm {
        let prefix = unique_prefix('q');
        let dir = Scratch::new("appliance");
        let disk = dir.path("disk.raw");
        sh(&format!("cp --sparse=always {} {}", img.display(), disk.display()));
        let ns = Namespaces(["cl", "wa", "wb"].iter().map(|n| format!("{prefix}-{n}")).collect());
        for n in &ns.0 {
            sh(&format!("ip netns add {n}"));
        }
        let p = |f: &str| dir.path(f).display().to_string();
        let mut argv: Vec<String> = [
            "qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-m", "1536", "-smp", "2", "-nodefaults", "-nographic",
            "-drive", &format!("file={},if=none,id=d0,format=raw", disk.display()), "-device", "virtio-blk-pci,drive=d0,addr=0x3",
            "-chardev", &format!("socket,id=s0,path={},server=on,wait=off", p("s0.sock")), "-serial", "chardev:s0",
            "-chardev", &format!("socket,id=s1,path={},server=on,wait=off", p("s1.sock")), "-serial", "chardev:s1",
            "-monitor", &format!("unix:{},server=on,wait=off", p("monitor.sock")),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for i in 0..3 {
            argv.push("-netdev".into());
            argv.push(format!("tap,id=n{i},ifname={prefix}t{i},script=no,downscript=no,vhost=off,queues=2"));
            argv.push("-device".into());
            // romfile= : no iPXE option ROM (nothing boots from the network).
            argv.push(format!("virtio-net-pci,netdev=n{i},mq=on,rss=on,vectors=6,addr=0x{},mac=52:54:00:12:00:0{},romfile=", 4 + i, i + 1));
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let started = Instant::now();
        let qemu = Proc::spawn("qemu", None, &argv, &dir.path("qemu.log"), false);
        let s0 = Serial::connect(&dir.path("s0.sock"), "ttyS0");
        let s1 = Serial::connect(&dir.path("s1.sock"), "ttyS1");
        // The TAPs QEMU made, into the namespaces: the client's and each
        // server's link.
        for (i, (n, addr, gw)) in [("cl", "192.0.2.10/24", ""), ("wa", "198.51.100.10/24", "198.51.100.1"), ("wb", "203.0.113.10/24", "203.0.113.1")].iter().enumerate() {
            let (ns, tap) = (format!("{prefix}-{n}"), format!("{prefix}t{i}"));
            sh(&format!("ip link set {tap} netns {ns} && ip -n {ns} addr add {addr} dev {tap} && ip -n {ns} link set {tap} up && ip -n {ns} link set lo up"));
            let _ = try_sh(&format!("ip netns exec {ns} ethtool -K {tap} tx off"));
            if !gw.is_empty() {
                sh(&format!("ip -n {ns} route add default via {gw}"));
            }
        }
        Vm { qemu, _ns: ns, prefix, dir, disk, s0, s1, started }
    }

    fn ns(&self, n: &str) -> String {
        format!("{}-{n}", self.prefix)
    }

    fn curl(&self, path: &str) -> Option<String> {
        let (ok, out) = try_sh(&format!("ip netns exec {} curl -s -m 3 http://{VIP}{path}", self.ns("cl")));
        ok.then(|| out.trim().to_string())
    }

    /// `n` requests for /id through the VIP, each on a new connection.
    fn ids(&self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.curl("/id").unwrap_or_else(|| "(failed)".into())).collect()
    }

    fn monitor(&self, cmd: &str) {
        let mut m = UnixStream::connect(self.dir.path("monitor.sock")).expect("QEMU monitor");
        m.write_all(format!("{cmd}\n").as_bytes()).expect("monitor command");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn the_image_boots_serves_and_is_run_from_its_serial_console() {
    let Some((img, admin_pw, root_pw)) = image() else { return };
    let mut vm = Vm::boot(&img);
    let web_dir = |n: &str| vm.dir.path(&format!("nginx-{n}"));
    let _a = start_nginx_backend(&vm.ns("wa"), "web-a", "198.51.100.10", &web_dir("a"), 0);
    let _b = start_nginx_backend(&vm.ns("wb"), "web-b", "203.0.113.10", &web_dir("b"), 0);

    // Power-on to the first request served.
    let first = wait_for(Duration::from_secs(420), || vm.curl("/id")).unwrap_or_else(|| panic!("nothing served through the VIP; ttyS0:\n{}", vm.s0.text()));
    println!("appliance: power-on to the first served request: {:.1} s ({first})", vm.started.elapsed().as_secs_f64());

    serves_round_robin(&vm);
    operator_console(&mut vm, &admin_pw);
    rss_steers_connections_to_their_owner(&mut vm);
    ports_on_hugepages_and_rss(&mut vm, &root_pw);
    nothing_else_answers(&vm);
    watchdog_restarts_a_stopped_control_loop(&mut vm);
    broken_config_at_boot(&mut vm, &admin_pw);
    acpi_shutdown_gives_the_nics_back(&mut vm);
}

/// Both servers take requests, and their own logs show them.
fn serves_round_robin(vm: &Vm) {
    // The first request is served once one server's health check passed;
    // the other's passes at its own probe, up to an interval later.
    let both = wait_for(Duration::from_secs(60), || {
        let t = tally(&vm.ids(4));
        (t.contains_key("web-a") && t.contains_key("web-b")).then_some(())
    });
    assert!(both.is_some(), "both servers up within a minute");
    let ids = vm.ids(20);
    let tally = tally(&ids);
    assert!(tally.get("web-a").copied().unwrap_or(0) >= 3 && tally.get("web-b").copied().unwrap_or(0) >= 3, "round robin over both servers: {tally:?}");
    assert_eq!(tally.get("(failed)"), None, "every request served: {tally:?}");
    for n in ["a", "b"] {
        let log = std::fs::read_to_string(vm.dir.path(&format!("nginx-{n}/logs/access.log"))).unwrap_or_default();
        assert!(log.lines().filter(|l| l.starts_with("192.0.2.10 ")).count() >= 3, "web-{n} saw the client's requests (NAT keeps its address):\n{log}");
    }
}

/// `admin` on ttyS0 lands in the Furiwake console: show, complete, drain.
fn operator_console(vm: &mut Vm, admin_pw: &str) {
    vm.s0.send("\r");
    vm.s0.expect("login: ", Duration::from_secs(300));
    let from = vm.s0.pos;
    vm.s0.login("admin", admin_pw, "furiwake> ");
    let servers = vm.s0.console("show servers");
    assert!(servers.contains("198.51.100.10:80") && servers.contains("203.0.113.10:80") && servers.matches(" up ").count() >= 2, "{servers}");
    let drained = vm.s0.console("server web 198.51.100.10:80 drain");
    assert!(drained.contains("draining"), "{drained}");
    let after = vm.ids(6);
    assert!(after.iter().all(|id| id == "web-b"), "a drained server takes no new connection: {after:?}");
    // Tab completes `show ser` into `show servers`.
    vm.s0.send("show ser\t");
    vm.s0.expect("show servers", Duration::from_secs(20));
    vm.s0.send("\r");
    let shown = vm.s0.expect("furiwake> ", Duration::from_secs(60));
    assert!(shown.contains("draining"), "completed command ran:\n{shown}");
    let conns = vm.s0.console("show connections");
    assert!(conns.contains("203.0.113.10:80") && conns.contains("192.0.2.10:"), "the client's connections to web-b:\n{conns}");
    vm.s0.console("server web 198.51.100.10:80 enable");
    vm.s0.send("quit\r");
    vm.s0.expect("login: ", Duration::from_secs(30));
    println!("appliance: the admin's session on ttyS0:\n{}", vm.s0.since(from));
    // The appliance's own console on ttyS1, no login.
    vm.s1.expect("furiwake> ", Duration::from_secs(60));
    vm.s1.send("show pools\r");
    let pools = vm.s1.expect("round-robin", Duration::from_secs(60));
    assert!(pools.contains("ALGORITHM"), "ttyS1:\n{pools}");
    vm.s1.expect("furiwake> ", Duration::from_secs(60));
}

/// `show workers` on the appliance's console: each worker's (RX-PKTS,
/// HANDED-OFF).
fn worker_counts(vm: &mut Vm) -> Vec<(u64, u64)> {
    let t = vm.s1.console("show workers");
    let rows: Vec<(u64, u64)> = t
        .lines()
        .filter_map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            match (c.first()?.parse::<u64>(), c.get(2)?.parse::<u64>(), c.get(6)?.parse::<u64>()) {
                (Ok(_), Ok(rx), Ok(handed)) => Some((rx, handed)),
                _ => None,
            }
        })
        .collect();
    assert_eq!(rows.len(), 2, "two workers:\n{t}");
    rows
}

/// Every NIC's RSS is programmed with the key of its side and one RETA
/// (the outside port queues by the client, the servers' ports by the
/// destination, `furiwake_dataplane::rss`), so a connection's packets both
/// ways reach the worker that owns it: NAT replies by the client's address
/// and port, full-NAT replies by the local port chosen for that worker.
/// QEMU's own Toeplitz decides the queue; the box's packets are not handed
/// between workers.
fn rss_steers_connections_to_their_owner(vm: &mut Vm) {
    let before = worker_counts(vm);
    let mut served = Vec::new();
    for vip in [VIP, FULL_NAT_VIP] {
        for _ in 0..30 {
            let (ok, out) = try_sh(&format!("ip netns exec {} curl -s -m 3 http://{vip}/id", vm.ns("cl")));
            served.push(if ok { out.trim().to_string() } else { format!("({vip} failed)") });
        }
    }
    let after = worker_counts(vm);
    let t = tally(&served);
    assert!(t.keys().all(|k| k == "web-a" || k == "web-b"), "every request through both VIPs served: {t:?}");
    let rx: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a.0 - b.0).collect();
    let handed: u64 = after.iter().zip(&before).map(|(a, b)| a.1 - b.1).sum();
    println!("appliance: RSS: 60 connections (NAT and full-NAT): packets received per worker {rx:?}, handed between workers {handed}");
    assert!(rx.iter().all(|r| *r > 0), "RSS spreads the connections over both workers: {rx:?}");
    assert!(handed * 100 <= rx.iter().sum::<u64>(), "the workers receive what they own (handed over {handed} of {rx:?})");
    // Full-NAT: both servers saw the box's local address (by default the
    // self IP facing the first server; web-b answers it by its default
    // route, into its own link).
    for n in ["a", "b"] {
        let log = std::fs::read_to_string(vm.dir.path(&format!("nginx-{n}/logs/access.log"))).unwrap_or_default();
        assert!(log.lines().any(|l| l.starts_with("198.51.100.1 ")), "web-{n}: full-NAT requests from 198.51.100.1:\n{log}");
    }
}

/// Root's view: the NICs on uio, the ports' queues and RSS, the tables
/// and mbufs on hugepages.
fn ports_on_hugepages_and_rss(vm: &mut Vm, root_pw: &str) {
    vm.s0.login("root", root_pw, "# ");
    // Long command lines unwrapped.
    vm.s0.shell("stty cols 1000", Duration::from_secs(20));
    let j = vm.s0.shell("journalctl -b -u furiwake -o cat --no-pager | grep -E '^(nics|port|tables|furiwake: )'", Duration::from_secs(60));
    println!("appliance: the service's start:\n{j}");
    assert!(j.contains("nics: 0000:00:04.0: virtio-pci -> uio_pci_generic"), "{j}");
    let outside = j.lines().find(|l| l.starts_with("port outside:")).unwrap_or_else(|| panic!("no port line:\n{j}"));
    assert!(outside.contains("driver net_virtio") && outside.contains("rxq 2") && outside.contains("rss ip,tcp,udp by client"), "two RX queues with RSS by the client: {outside}");
    for web in ["web-a", "web-b"] {
        let line = j.lines().find(|l| l.starts_with(&format!("port {web}:"))).unwrap_or_else(|| panic!("no port line for {web}:\n{j}"));
        assert!(line.contains("rxq 2") && line.contains("rss ip,tcp,udp by server"), "the servers' ports queue by the destination: {line}");
    }
    let tables = j.lines().find(|l| l.starts_with("tables:")).unwrap_or_else(|| panic!("no tables line:\n{j}"));
    assert!(tables.ends_with(", 0 MiB on the heap") && !tables.starts_with("tables: 0 MiB"), "the flow tables on hugepages: {tables}");
    let huge = vm.s0.shell("grep -E 'HugePages_(Total|Free)' /proc/meminfo; cat /proc/cmdline", Duration::from_secs(20));
    let total = huge.lines().find_map(|l| l.strip_prefix("HugePages_Total:")).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
    let free = huge.lines().find_map(|l| l.strip_prefix("HugePages_Free:")).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(u64::MAX);
    assert!(total >= 256 && free < total, "hugepages reserved at boot and used: {huge}");
    assert!(!vm.s0.shell("tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value furiwake)/cmdline", Duration::from_secs(20)).contains("no-huge"));
}

/// From the client, only the VIP's port answers; the self IP pings.
fn nothing_else_answers(vm: &Vm) {
    let cl = vm.ns("cl");
    assert!(try_sh(&format!("ip netns exec {cl} ping -c 1 -W 3 {SELF_IP}")).0, "the self IP answers ping");
    let t = Instant::now();
    // Fast: a probe lost under the rate can only hide a port, never show
    // one; the VIP's own port is then asked for at nmap's own pace.
    let scan = sh(&format!("ip netns exec {cl} nmap -n -Pn -sS -p- --min-rate 6000 --max-retries 1 -oG - {SELF_IP} {VIP}"));
    println!("appliance: TCP scan of every port of {SELF_IP} and {VIP} in {:.0} s", t.elapsed().as_secs_f64());
    let open: Vec<String> = scan
        .lines()
        .filter(|l| l.starts_with("Host:") && l.contains("Ports:"))
        .flat_map(|l| {
            let host = l.split_whitespace().nth(1).unwrap_or("?").to_string();
            let ports = l.split("Ports:").nth(1).unwrap_or("").to_string();
            ports.split(',').filter(|p| p.contains("/open/")).map(|p| format!("{host}:{}", p.trim().split('/').next().unwrap_or("?"))).collect::<Vec<_>>()
        })
        .collect();
    assert!(open.iter().all(|p| *p == format!("{VIP}:80")), "only the virtual server answers: {open:?}\n{scan}");
    // The VIP's own port, once the scan's half-open connections have
    // settled (the guest runs under TCG on a shared VM: its answers may
    // lag the scan; asked again for up to 20 s).
    let mut vip = String::new();
    let open_now = wait_for(Duration::from_secs(20), || {
        vip = sh(&format!("ip netns exec {cl} nmap -n -Pn -sS -p 80 -oG - {VIP}"));
        vip.contains("80/open/tcp").then_some(())
    });
    assert!(open_now.is_some(), "the virtual server's port is open:\n{vip}");
    let udp = sh(&format!("ip netns exec {cl} nmap -n -Pn -sU --top-ports 50 --max-retries 1 -oG - {SELF_IP} {VIP}"));
    assert!(!udp.contains("/open/"), "no UDP service answers:\n{udp}");
}

/// SIGSTOP on the service: its watchdog kills it, systemd restarts it,
/// traffic comes back.
fn watchdog_restarts_a_stopped_control_loop(vm: &mut Vm) {
    let pid = vm.s0.shell("systemctl show -p MainPID --value furiwake", Duration::from_secs(20));
    let t = Instant::now();
    vm.s0.shell(&format!("kill -STOP {pid}"), Duration::from_secs(20));
    let restarted = vm.s0.shell(
        &format!("for i in $(seq 120); do p=$(systemctl show -p MainPID --value furiwake); [ \"$p\" != {pid} ] && [ \"$p\" != 0 ] && systemctl is-active -q furiwake && break; sleep 1; done; systemctl show -p NRestarts,Result furiwake; journalctl -b -u furiwake -o cat --no-pager | grep -c \"Failed with result 'watchdog'\""),
        Duration::from_secs(180),
    );
    println!("appliance: SIGSTOP to active again: {:.1} s", t.elapsed().as_secs_f64());
    assert!(restarted.contains("NRestarts=1"), "{restarted}");
    assert!(restarted.lines().any(|l| l.trim() == "1"), "the watchdog ended it: {restarted}");
    let back = wait_for(Duration::from_secs(120), || vm.curl("/id"));
    assert!(back.is_some(), "traffic resumes after the restart");
}

/// The file on disk broken, the box rebooted: it serves on the last good
/// configuration and says why, with file:line:column.
fn broken_config_at_boot(vm: &mut Vm, admin_pw: &str) {
    let good = vm.s0.shell("cmp /etc/furiwake/furiwake.toml /etc/furiwake/last-good.toml && echo same", Duration::from_secs(20));
    assert!(good.contains("same"), "the running configuration kept as the last good one: {good}");
    // A key [console] does not have, on the file's last line.
    vm.s0.shell("echo 'frobnicate = 1' >> /etc/furiwake/furiwake.toml; sync", Duration::from_secs(20));
    let lines = vm.s0.shell("wc -l < /etc/furiwake/furiwake.toml", Duration::from_secs(20)).parse::<usize>().unwrap_or(0);
    vm.s0.send("systemctl reboot\r");
    let announced = vm.s0.expect("furiwake: WARNING: running on the last good configuration /etc/furiwake/last-good.toml", Duration::from_secs(420));
    let why = vm.s0.expect("\r\n", Duration::from_secs(5));
    let place = format!("/etc/furiwake/furiwake.toml:{lines}:1: unknown field `frobnicate`");
    println!("appliance: on the console at boot: furiwake: WARNING: running on the last good configuration /etc/furiwake/last-good.toml{why}");
    assert!(why.contains(&place), "file:line:column of the error on the console: {why:?} (expected {place}); the boot:\n{announced}");
    let served = wait_for(Duration::from_secs(240), || vm.curl("/id"));
    assert!(served.is_some(), "the last good configuration serves");
    vm.s0.login("admin", admin_pw, "furiwake> ");
    let banner = vm.s0.text();
    let tail = banner.get(banner.len().saturating_sub(2000)..).unwrap_or(&banner);
    assert!(tail.contains("WARNING: running on the last good configuration") && tail.contains(&place), "the console's banner says why:\n{tail}");
    // The operator's way out: save the running configuration (the broken
    // file kept as .prev), reload it.
    let saved = vm.s0.console("config save");
    assert!(saved.contains("config saved to /etc/furiwake/furiwake.toml") && saved.contains("furiwake.toml.prev"), "{saved}");
    let reloaded = vm.s0.console("config reload");
    assert!(reloaded.contains("config reloaded"), "{reloaded}");
    vm.s0.send("quit\r");
    vm.s0.expect("login: ", Duration::from_secs(30));
}

/// ACPI power button: the service stops, the NICs go back to virtio-pci,
/// the guest powers off; the journal on the disk says so.
fn acpi_shutdown_gives_the_nics_back(vm: &mut Vm) {
    vm.monitor("system_powerdown");
    let st = vm.qemu.wait(Duration::from_secs(180));
    assert!(st.is_some_and(|s| s.success()), "the guest powered off: {st:?}\n{}", vm.s0.text().chars().rev().take(2000).collect::<String>().chars().rev().collect::<String>());
    let journal = vm.dir.path("journal");
    let img = format!("{}?offset={ROOT_OFFSET}", vm.disk.display());
    sh(&format!("debugfs -R 'rdump /var/log/journal {}' '{img}' 2>/dev/null", vm.dir.0.display()));
    let log = sh(&format!("journalctl -D {} -u furiwake -o cat --no-pager", journal.display()));
    let last_stop = log.rfind("Stopping furiwake.service").unwrap_or_else(|| panic!("no stop in the journal:\n{log}"));
    let after = &log[last_stop..];
    for nic in ["0000:00:04.0", "0000:00:05.0", "0000:00:06.0"] {
        assert!(after.contains(&format!("nics: {nic}: back on virtio-pci")), "{nic} given back at shutdown:\n{after}");
    }
    assert!(after.contains("furiwake: stopped"), "an orderly stop:\n{after}");
}

/// The same image boots by UEFI (OVMF, GRUB on the EFI system
/// partition's removable-media path) to the serial login; GRUB's editor
/// is root's alone.
#[test]
fn the_image_boots_by_uefi_too() {
    let Some((img, _, _)) = image() else { return };
    let code = Path::new("/usr/share/OVMF/OVMF_CODE.fd");
    if !require(code.exists(), "OVMF (package ovmf)") {
        return;
    }
    let dir = Scratch::new("uefi");
    sh(&format!("qemu-img create -q -f qcow2 -b {} -F raw {}", img.display(), dir.path("disk.qcow2").display()));
    sh(&format!("cp /usr/share/OVMF/OVMF_VARS.fd {}", dir.path("vars.fd").display()));
    let p = |f: &str| dir.path(f).display().to_string();
    let argv = [
        "qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-m", "1536", "-smp", "2", "-nodefaults", "-nographic",
        "-drive", &format!("if=pflash,format=raw,readonly=on,file={}", code.display()), "-drive", &format!("if=pflash,format=raw,file={}", p("vars.fd")),
        "-drive", &format!("file={},if=virtio,format=qcow2", p("disk.qcow2")),
        "-chardev", &format!("socket,id=s0,path={},server=on,wait=off", p("s0.sock")), "-serial", "chardev:s0",
    ];
    let started = Instant::now();
    let _qemu = Proc::spawn("qemu-uefi", None, &argv, &dir.path("qemu.log"), false);
    let mut s0 = Serial::connect(&dir.path("s0.sock"), "ttyS0 (UEFI)");
    // GRUB's menu: editing the entry (where init=/bin/sh would go) asks
    // for root's password, and a wrong one is refused; the entry itself
    // boots without one.
    s0.expect("Use the", Duration::from_secs(300));
    s0.send("e");
    s0.expect("Enter username:", Duration::from_secs(30));
    s0.send("root\r");
    s0.expect("Enter password:", Duration::from_secs(30));
    s0.send("not-the-password\r");
    s0.expect("access denied", Duration::from_secs(60));
    s0.expect("Use the", Duration::from_secs(60));
    let after = s0.text();
    assert!(!after.contains("setparams"), "the entry's editor opened:\n{after}");
    s0.send("\r");
    s0.expect("furiwake login: ", Duration::from_secs(300));
    println!("appliance: UEFI power-on to the login prompt: {:.1} s", started.elapsed().as_secs_f64());
}
