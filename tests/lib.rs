//! Harness for Furiwake's end-to-end tests: network namespaces built by
//! `scripts/netns.sh`, the real `furiwake` binary, and real peers, each
//! behind a guard that cleans up by PID when dropped.
//!
//! A test that cannot start its real components (not root, no DPDK, a tool
//! missing) says so and returns, except under `CI=true`, where it fails.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// True under CI, where a missing component is a failure, not a skip.
pub fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Checks a precondition; false (after a loud message) means "skip this
/// test", which CI turns into a failure.
pub fn require(ok: bool, what: &str) -> bool {
    if !ok {
        if ci() {
            panic!("CI=true and {what} is missing");
        }
        eprintln!("SKIPPED (not CI): {what} is missing");
    }
    ok
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn have(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Root plus every tool named.
pub fn require_env(tools: &[&str]) -> bool {
    if !require(is_root(), "root (network namespaces)") {
        return false;
    }
    tools.iter().all(|t| require(have(t), t))
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The `furiwake` binary of the same profile as this test
/// (`target/<profile>/furiwake`), or `$FURIWAKE_BIN`.
pub fn furiwake_bin() -> PathBuf {
    if let Ok(p) = std::env::var("FURIWAKE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps");
    let bin = profile_dir.join("furiwake");
    assert!(bin.exists(), "{} not built: run `cargo build --bins` first (scripts/test.sh does)", bin.display());
    bin
}

/// A name unique to this process and call, short enough for netns.sh (<= 6).
pub fn unique_prefix(tag: char) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{tag}{:03x}{:02}", std::process::id() & 0xfff, n % 100)
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("bash").args(["-c", cmd]).output().expect("bash");
    assert!(
        out.status.success(),
        "`{cmd}` failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command, returning (success, stdout+stderr).
pub fn try_sh(cmd: &str) -> (bool, String) {
    let out = Command::new("bash").args(["-c", cmd]).output().expect("bash");
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

/// Polls `f` until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The topology of `scripts/netns.sh`, deleted on drop.
pub struct Topology {
    pub prefix: String,
}

impl Topology {
    pub fn up(tag: char, backends: u32, lbs: u32) -> Topology {
        let prefix = unique_prefix(tag);
        let script = workspace().join("scripts/netns.sh");
        sh(&format!("{} up {prefix} {backends} {lbs}", script.display()));
        Topology { prefix }
    }

    pub fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// IPv6 in the client (2001:db8:1::10/64) and the `backends` server
    /// namespaces (2001:db8:2::(10+N)/64): `scripts/netns.sh ipv6`.
    pub fn ipv6(&self, backends: u32) {
        let script = workspace().join("scripts/netns.sh");
        sh(&format!("{} ipv6 {} {backends}", script.display(), self.prefix));
    }

    /// Runs `cmd` inside namespace `name` (e.g. "client").
    pub fn exec(&self, name: &str, cmd: &str) -> String {
        sh(&format!("ip netns exec {} bash -c {}", self.ns(name), shell_quote(cmd)))
    }

    pub fn try_exec(&self, name: &str, cmd: &str) -> (bool, String) {
        try_sh(&format!("ip netns exec {} bash -c {}", self.ns(name), shell_quote(cmd)))
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let script = workspace().join("scripts/netns.sh");
        let _ = Command::new(script).args(["down", &self.prefix]).status();
    }
}

pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A process whose output goes to a file, killed (by PID) on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    stdin: Option<ChildStdin>,
    /// A DPDK runtime directory to remove after exit.
    runtime_dir: Option<PathBuf>,
}

impl Proc {
    /// Starts `argv`, in namespace `ns` when given, logging to `log`.
    pub fn spawn(name: &str, ns: Option<&str>, argv: &[&str], log: &Path, with_stdin: bool) -> Proc {
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).args(argv);
                c
            }
            None => {
                let mut c = Command::new(argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        let out = File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        cmd.stdout(out).stderr(err).stdin(if with_stdin { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdin = child.stdin.take();
        Proc { name: name.to_string(), child, log: log.to_path_buf(), stdin, runtime_dir: None }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the output contains `needle`; panics with the output if
    /// it does not within `timeout` or the process exits first.
    pub fn expect_output(&mut self, needle: &str, timeout: Duration) -> String {
        let found = wait_for(timeout, || {
            let out = self.output();
            if out.contains(needle) {
                return Some(out);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited ({status}) before printing {needle:?}:\n{}", self.name, self.output());
            }
            None
        });
        found.unwrap_or_else(|| panic!("{} did not print {needle:?} within {timeout:?}:\n{}", self.name, self.output()))
    }

    /// Occurrences of `needle` in the output so far.
    pub fn count(&self, needle: &str) -> usize {
        self.output().matches(needle).count()
    }

    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("spawned with stdin");
        writeln!(stdin, "{line}").expect("write to stdin");
        stdin.flush().expect("flush stdin");
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's PID.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for exit, up to `timeout`; kills it after that.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let st = wait_for(timeout, || self.child.try_wait().ok().flatten());
        if st.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        st
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The exit status if the process has exited (without waiting).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn set_runtime_dir(&mut self, prefix: &str) {
        self.runtime_dir = Some(PathBuf::from(format!("/var/run/dpdk/{prefix}")));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGTERM);
            if self.wait(Duration::from_secs(5)).is_none() {
                eprintln!("{} (pid {}) did not stop on SIGTERM; killed", self.name, self.pid());
            }
        }
        if let Some(d) = &self.runtime_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A scratch directory under the target dir, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("furiwake-e2e-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch dir");
        Scratch(d)
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }

    pub fn write(&self, f: &str, text: &str) -> PathBuf {
        let p = self.path(f);
        std::fs::write(&p, text).expect("write scratch file");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `furiwake console --socket SOCKET -c CMD`: whether it succeeded, and
/// what it printed (stdout, then stderr).
pub fn console_at(socket: &Path, cmd: &str) -> (bool, String) {
    let out = Command::new(furiwake_bin()).args(["console", "--socket", socket.to_str().expect("utf-8 path"), "-c", cmd]).output().expect("run furiwake console");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Starts `furiwake run --config CONFIG` (in namespace `ns` when given) and
/// waits for "furiwake: ready".
pub fn start_furiwake(ns: Option<&str>, config: &Path, log: &Path, file_prefix: &str) -> Proc {
    let bin = furiwake_bin();
    let argv = [bin.to_str().expect("utf-8 path"), "run", "--config", config.to_str().expect("utf-8 path")];
    let mut p = Proc::spawn("furiwake", ns, &argv, log, false);
    p.set_runtime_dir(file_prefix);
    p.expect_output("furiwake: ready", Duration::from_secs(30));
    p
}

/// The `[platform]` section tests use: no hugepages, one worker on lcore 1,
/// a private file prefix, idle back-off for a 2-core CI machine.
pub fn platform_section(file_prefix: &str) -> String {
    format!(
        r#"[platform]
eal_args = ["--no-huge", "-m", "256", "--no-pci", "--file-prefix", "{file_prefix}", "--no-telemetry"]
control_lcore = 0
worker_lcores = [1]
mbufs = 4095
idle_sleep_us = 20
"#
    )
}

/// Extracts `mac XX:..` printed for port `name` at start.
pub fn port_mac(output: &str, name: &str) -> Option<String> {
    let line = output.lines().find(|l| l.starts_with(&format!("port {name}: ")))?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == "mac")?;
    words.next().map(str::to_string)
}

/// The last value printed as `KEY N` on a line starting with `prefix`.
pub fn counter(output: &str, prefix: &str, key: &str) -> Option<u64> {
    let line = output.lines().rev().find(|l| l.starts_with(prefix))?;
    let at = line.find(&format!("{key} "))? + key.len() + 1;
    line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// The line that opens every counters block furiwake prints.
pub const COUNTERS_HEADER: &str = "== furiwake counters ==";

/// Complete counters blocks in `output` (each ends with a line starting
/// `mbufs:`).
pub fn counters_blocks(output: &str) -> usize {
    output.lines().filter(|l| l.starts_with("mbufs:")).count()
}

/// The text of the last complete counters block in `output`: from the last
/// `== furiwake counters ==` line before the last `mbufs:` line, through
/// that `mbufs:` line.
pub fn last_counters_block(output: &str) -> Option<String> {
    let lines: Vec<&str> = output.lines().collect();
    let end = lines.iter().rposition(|l| l.starts_with("mbufs:"))?;
    let start = lines[..end].iter().rposition(|l| *l == COUNTERS_HEADER)?;
    Some(lines[start..=end].join("\n") + "\n")
}

/// Sends SIGUSR1 to furiwake and waits (up to 10 s) for a NEW complete
/// counters block; returns that block only, so that `counter` reads values
/// taken after the call. Panics with the output if none comes.
pub fn report(fw: &Proc) -> String {
    let before = counters_blocks(&fw.output());
    fw.signal(libc::SIGUSR1);
    let out = wait_for(Duration::from_secs(10), || Some(fw.output()).filter(|o| counters_blocks(o) > before))
        .unwrap_or_else(|| panic!("{}: no new counters block within 10 s of SIGUSR1:\n{}", fw.name, fw.output()));
    last_counters_block(&out).expect("a complete counters block")
}

/// Takes reports until `ok` holds for one (returned as Ok) or `timeout`
/// passes (Err with the last report).
pub fn report_until(fw: &Proc, timeout: Duration, mut ok: impl FnMut(&str) -> bool) -> Result<String, String> {
    let end = Instant::now() + timeout;
    loop {
        let block = report(fw);
        if ok(&block) {
            return Ok(block);
        }
        if Instant::now() >= end {
            return Err(block);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `N` of the last `mbufs: F free, N in use` line in `output`.
pub fn mbufs_in_use(output: &str) -> Option<u64> {
    let line = output.lines().rev().find(|l| l.starts_with("mbufs:"))?;
    let before = line.split(" in use").next()?;
    before.rsplit(' ').next()?.parse().ok()
}

/// The `  drop REASON: N` lines under `worker W:` in a counters block.
pub fn worker_drops(block: &str, worker: u32) -> Vec<(String, u64)> {
    let head = format!("worker {worker}:");
    let mut lines = block.lines().skip_while(|l| !l.starts_with(&head));
    lines.next();
    lines
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.strip_prefix("  drop "))
        .filter_map(|l| {
            let (reason, n) = l.split_once(": ")?;
            Some((reason.to_string(), n.trim().parse().ok()?))
        })
        .collect()
}

/// SIGTERM, then checks a clean stop: exit status 0 within 20 s and the
/// final counters block showing every mbuf back in its pool
/// (`mbufs: N free, 0 in use`), but for what `net_af_xdp` ports keep in
/// their UMEM's rings and never hand back one by one (2048 a fill ring,
/// up to 2048 in flight on its TX ring). Returns the whole output.
pub fn stop_furiwake_cleanly(fw: &mut Proc) -> String {
    let before = counters_blocks(&fw.output());
    fw.signal(libc::SIGTERM);
    let status = fw.wait(Duration::from_secs(20));
    let out = fw.output();
    assert!(status.is_some(), "furiwake did not stop within 20 s of SIGTERM:\n{out}");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "exit status after SIGTERM:\n{out}");
    assert!(counters_blocks(&out) > before, "no final counters block at exit:\n{out}");
    let last = last_counters_block(&out).expect("final counters block");
    let af_xdp = out.lines().filter(|l| l.starts_with("port ") && l.contains("(driver net_af_xdp,")).count() as u64;
    let in_use = mbufs_in_use(&last).unwrap_or(u64::MAX);
    assert!(in_use <= af_xdp * 4096, "mbufs still in use at exit (a leak; {af_xdp} net_af_xdp ports):\n{last}");
    out
}

/// A helper script of the e2e tests (`tests/scripts/NAME`).
pub fn test_script(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(name);
    assert!(p.exists(), "{} missing", p.display());
    p
}

/// Runs `tests/scripts/frag_needed.py` in the client namespace: a held
/// connection to VIP:80, then ICMP fragmentation needed (MTU 1000) from a
/// client-side router (192.0.2.1) to the VIP about the server's next
/// segment to the client. The quoted sequence number, the client's port
/// and the error's IPv4 packet as sent.
pub fn send_frag_needed(lab: &Lab) -> (u32, u16, Vec<u8>) {
    send_icmp_error(lab, "")
}

/// `send_frag_needed` with more of `frag_needed.py`'s options (`--code`,
/// `--seq-offset`, `--corrupt`).
pub fn send_icmp_error(lab: &Lab, options: &str) -> (u32, u16, Vec<u8>) {
    let script = test_script("frag_needed.py");
    let (ok, out) = lab.topo.try_exec("client", &format!("/usr/bin/python3 {} --vip {VIP} --port 80 --iface eth0 --router 192.0.2.1 --mtu 1000 --hold 2 {options}", script.display()));
    let field = |name: &str| out.lines().find_map(|l| l.split_once(name).map(|(_, v)| v.split_whitespace().next().unwrap_or("").to_string()));
    let (Some(seq), Some(cport), Some(hex)) = (field("quoted seq "), field(" cport "), field("sent ")) else { panic!("frag_needed.py: {ok} {out}") };
    let sent = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect();
    (seq.parse().expect("seq"), cport.parse().expect("cport"), sent)
}

/// Whether a server namespace's route to the client carries the path MTU
/// `mtu` (the kernel learnt it from an error its TCP accepted: Linux's
/// tcp_v4_err takes it only for a quote naming one of its sockets with a
/// sequence number in SND.UNA..SND.NXT).
pub fn route_mtu(lab: &Lab, srv: &str, mtu: u16) -> String {
    let route = lab.topo.exec(srv, &format!("ip route get {CLIENT}"));
    assert!(route.contains(&format!("mtu {mtu}")), "{srv}: the server's TCP did not take the error: {route}");
    route.trim().replace('\n', " ")
}

/// sha256 of a file, as hex.
pub fn sha256_file(path: &Path) -> String {
    let out = sh(&format!("sha256sum {}", shell_quote(path.to_str().expect("utf-8 path"))));
    out.split_whitespace().next().expect("sha256sum output").to_string()
}

/// Writes an nginx backend with `scripts/backend.sh nginx-conf NAME DIR
/// BIG_MB` and runs it in namespace `ns`; waits (up to 10 s) until it
/// answers `/health` from inside its own namespace on `ip`, then empties
/// its access log (DIR/logs/access.log), so that the log holds only the
/// requests that come after.
pub fn start_nginx_backend(ns: &str, name: &str, ip: &str, dir: &Path, big_mb: u32) -> Proc {
    let conf = write_nginx_conf(name, dir, big_mb);
    run_nginx(ns, name, ip, dir, &conf, "nginx.out")
}

/// `scripts/backend.sh nginx-conf NAME DIR BIG_MB`: DIR/nginx.conf (and
/// DIR/www, DIR/logs); returns the config's path.
pub fn write_nginx_conf(name: &str, dir: &Path, big_mb: u32) -> PathBuf {
    let script = workspace().join("scripts/backend.sh");
    let d = dir.to_str().expect("utf-8 path");
    sh(&format!("{} nginx-conf {name} {} {big_mb}", script.display(), shell_quote(d)));
    dir.join("nginx.conf")
}

/// Runs nginx with prefix DIR and config `conf` in namespace `ns`, logging
/// to DIR/`log`; waits (up to 10 s) until it answers `/health` on `ip` from
/// inside its own namespace, then empties DIR/logs/access.log.
pub fn run_nginx(ns: &str, name: &str, ip: &str, dir: &Path, conf: &Path, log: &str) -> Proc {
    let d = dir.to_str().expect("utf-8 path");
    let argv = ["nginx", "-p", d, "-c", conf.to_str().expect("utf-8 path")];
    let mut p = Proc::spawn(&format!("nginx-{name}"), Some(ns), &argv, &dir.join(log), false);
    let probe = format!("ip netns exec {ns} curl -s -m 2 http://{ip}/health");
    let ok = wait_for(Duration::from_secs(10), || {
        if !p.is_running() {
            return Some(false);
        }
        try_sh(&probe).1.trim().eq("OK").then_some(true)
    });
    assert_eq!(ok, Some(true), "nginx {name} in {ns} did not answer /health on {ip}:\n{}", p.output());
    // The probe's own log line first (nginx writes it after answering), then empty.
    let access = dir.join("logs/access.log");
    wait_for(Duration::from_secs(2), || std::fs::metadata(&access).ok().filter(|m| m.len() > 0));
    std::fs::write(&access, "").expect("empty the access log");
    p
}

/// A counter that must be in the block.
pub fn must(block: &str, prefix: &str, key: &str) -> u64 {
    counter(block, prefix, key).unwrap_or_else(|| panic!("no `{key} N` on a line starting {prefix:?} in:\n{block}"))
}

/// How many times each answer was given.
pub fn tally(answers: &[String]) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for a in answers {
        *t.entry(a.clone()).or_insert(0) += 1;
    }
    t
}

// ---------------------------------------------------------------------------
// The lab of the L4 and health tests: `scripts/netns.sh` with three server
// namespaces and one lb namespace.
//
// PREFIX-client 192.0.2.10 -- br-out -- lb-out [furiwake] lb-in -- br-in --
// PREFIX-srvN 198.51.100.(10+N). The VIP is 192.0.2.100; the box's self IPs
// are 192.0.2.2 (outside) and 198.51.100.1 (inside).

pub const VIP: &str = "192.0.2.100";
pub const CLIENT: &str = "192.0.2.10";
pub const SELF_OUTSIDE: &str = "192.0.2.2";
pub const SELF_INSIDE: &str = "198.51.100.1";
/// Server namespaces of the lab: srv1..srvN.
pub const LAB_BACKENDS: u32 = 3;

/// The box's two interfaces in the lab, as config.
pub const LAB_INTERFACES: &str = r#"[[interface]]
name = "outside"
device = "net_af_packet0,iface=lb-out"
address = "192.0.2.2/24"

[[interface]]
name = "inside"
device = "net_af_packet1,iface=lb-in"
address = "198.51.100.1/24"
"#;

/// `[platform]` and the lab's interfaces for two workers on a two-CPU
/// machine: lcores 1 and 2 share CPU 1 through `--lcores`, two af_packet
/// queue pairs per port (the kernel spreads packets over them, so workers
/// receive packets of connections they do not own).
pub fn two_worker_sections(file_prefix: &str) -> (String, String) {
    let platform = format!(
        r#"[platform]
eal_args = ["--no-huge", "-m", "256", "--no-pci", "--file-prefix", "{file_prefix}", "--no-telemetry", "--lcores", "0@0,1@1,2@1"]
control_lcore = 0
worker_lcores = [1, 2]
mbufs = 8191
idle_sleep_us = 20
"#
    );
    let interfaces = LAB_INTERFACES.replace("iface=lb-out", "iface=lb-out,qpairs=2").replace("iface=lb-in", "iface=lb-in,qpairs=2");
    (platform, interfaces)
}

/// The address of server N (srvN) in the lab.
pub fn server_ip(n: u32) -> String {
    format!("198.51.100.{}", 10 + n)
}

/// The start of server N's line (port `port`) under its virtual server in
/// a counters block: `  server 198.51.100.1N:PORT:`.
pub fn server_line(n: u32, port: u16) -> String {
    format!("  server {}:{port}:", server_ip(n))
}

/// Serialises the labs of one test binary (each test binary is its own
/// process, so this lock is per binary): each furiwake owns lcore 1 of a
/// small machine.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// One lab with its processes. Fields drop in order: furiwake first, then
/// the backends and clients, the scratch dir, the namespaces, the lock.
pub struct Lab {
    pub fw: Option<Proc>,
    /// Backends and other helpers, by name.
    pub procs: BTreeMap<String, Proc>,
    pub dir: Scratch,
    pub topo: Topology,
    /// DPDK file prefix of this lab's furiwake.
    pub prefix: String,
    _serial: MutexGuard<'static, ()>,
}

impl Lab {
    /// Checks root and the tools (the lab's own and `tools`), takes the
    /// lock, builds the namespaces (three server namespaces) and a scratch
    /// dir `SCRATCH-PREFIX`; None (after SKIPPED) when something is missing
    /// outside CI. (Each test file's extension trait has the `Lab::new` of
    /// its tests.)
    pub fn open(tag: char, scratch: &str, tools: &[&str]) -> Option<Lab> {
        let mut all = vec!["ip", "ethtool", "python3", "curl", "sha256sum"];
        all.extend_from_slice(tools);
        if !require_env(&all) {
            return None;
        }
        let serial = serial();
        let topo = Topology::up(tag, LAB_BACKENDS, 1);
        let dir = Scratch::new(&format!("{scratch}-{}", topo.prefix));
        let prefix = format!("fw-{}", topo.prefix);
        Some(Lab { fw: None, procs: BTreeMap::new(), dir, topo, prefix, _serial: serial })
    }

    /// DIR/srvN: backend N's nginx prefix.
    pub fn backend_dir(&self, n: u32) -> PathBuf {
        self.dir.path(&format!("srv{n}"))
    }

    /// The namespace of server N.
    pub fn srv_ns(&self, n: u32) -> String {
        self.topo.ns(&format!("srv{n}"))
    }

    /// nginx of `scripts/backend.sh` on port 80 in server namespace N
    /// (`/id` answers `srvN`, `/health` `OK`, `/big` a `big_mb` MiB random
    /// file, different per backend), kept as `nginx-srvN`.
    pub fn start_nginx(&mut self, n: u32, big_mb: u32) {
        let p = start_nginx_backend(&self.srv_ns(n), &format!("srv{n}"), &server_ip(n), &self.backend_dir(n), big_mb);
        self.procs.insert(format!("nginx-srv{n}"), p);
    }

    /// `start_nginx` listening on IPv6 too (`listen [::]:P` for each of
    /// `ports6`), for the IPv6 lab (`Topology::ipv6`).
    pub fn start_nginx6(&mut self, n: u32, big_mb: u32, ports6: &[u16]) {
        let dir = self.backend_dir(n);
        let conf = write_nginx_conf(&format!("srv{n}"), &dir, big_mb);
        let text = std::fs::read_to_string(&conf).expect("nginx.conf");
        let listen: String = ports6.iter().map(|p| format!("    listen [::]:{p};\n")).collect();
        std::fs::write(&conf, text.replacen("    listen 80;\n", &format!("    listen 80;\n{listen}"), 1)).expect("nginx.conf");
        let p = run_nginx(&self.srv_ns(n), &format!("srv{n}"), &server_ip(n), &dir, &conf, "nginx.out");
        self.procs.insert(format!("nginx-srv{n}"), p);
    }

    /// Runs `argv` in server namespace N, logging to DIR/`key`.log, waits
    /// for "listening", keeps it as `key`.
    pub fn serve(&mut self, key: &str, n: u32, argv: &[&str]) {
        let log = self.dir.path(&format!("{key}.log"));
        let mut p = Proc::spawn(key, Some(&self.srv_ns(n)), argv, &log, false);
        p.expect_output("listening", Duration::from_secs(10));
        self.procs.insert(key.to_string(), p);
    }

    /// Stops the process kept as `key` (SIGTERM, by PID) and waits for it.
    pub fn stop(&mut self, key: &str) {
        let mut p = self.procs.remove(key).unwrap_or_else(|| panic!("no process {key}"));
        p.signal(libc::SIGTERM);
        assert!(p.wait(Duration::from_secs(5)).is_some(), "{key} did not stop on SIGTERM");
    }

    /// The log of the process started as `key` by `serve`.
    pub fn proc_output(&self, key: &str) -> String {
        std::fs::read_to_string(self.dir.path(&format!("{key}.log"))).unwrap_or_default()
    }

    /// Writes the config (platform, both interfaces, then `services`) and
    /// starts furiwake in the lb namespace.
    pub fn start(&mut self, services: &str) {
        let config = format!("{}\n{LAB_INTERFACES}\n{services}", platform_section(&self.prefix));
        self.start_config(&config);
    }

    /// Starts furiwake with a whole config of the test's own.
    pub fn start_config(&mut self, config: &str) {
        let cfg = self.dir.write("lb.toml", config);
        let fw = start_furiwake(Some(&self.topo.ns("lb")), &cfg, &self.dir.path("furiwake.log"), &self.prefix);
        self.fw = Some(fw);
    }

    pub fn fw(&mut self) -> &mut Proc {
        self.fw.as_mut().expect("furiwake started")
    }

    pub fn fw_output(&self) -> String {
        self.fw.as_ref().map(Proc::output).unwrap_or_default()
    }

    pub fn report(&self) -> String {
        report(self.fw.as_ref().expect("furiwake started"))
    }

    pub fn report_until(&self, timeout: Duration, ok: impl FnMut(&str) -> bool) -> Result<String, String> {
        report_until(self.fw.as_ref().expect("furiwake started"), timeout, ok)
    }

    /// `n` requests for `http://VIP/id` from the client, each a curl of
    /// its own (a new connection each), run by one shell in the client
    /// namespace (400 take a few seconds, not 400 `ip netns exec`s): the
    /// answers in order. Panics with furiwake's output if one fails.
    pub fn curl_ids(&self, vip: &str, n: usize) -> Vec<String> {
        let cmd = format!("for i in $(seq {n}); do curl -s -S -m 5 http://{vip}/id || echo \"FAIL request $i exit $?\"; done");
        let (ok, out) = self.topo.try_exec("client", &cmd);
        let answers: Vec<String> = out.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
        assert!(ok && answers.len() == n && !answers.iter().any(|a| a.starts_with("FAIL")), "{n} requests to http://{vip}/id: {out}\nfuriwake:\n{}", self.fw_output());
        answers
    }

    /// The lines of backend N's nginx access log.
    pub fn nginx_access_log(&self, n: u32) -> Vec<String> {
        let text = std::fs::read_to_string(self.backend_dir(n).join("logs/access.log")).unwrap_or_default();
        text.lines().map(str::to_string).collect()
    }
}

impl Drop for Lab {
    /// The big files go even when a failing test keeps its scratch dir for
    /// inspection (logs and configs stay).
    fn drop(&mut self) {
        for n in 1..=LAB_BACKENDS {
            let _ = std::fs::remove_file(self.backend_dir(n).join("www/big"));
        }
        let _ = std::fs::remove_file(self.dir.path("big.download"));
    }
}

/// The frames of a capture file, as bytes (read back with `tcpdump -xx`).
pub fn pcap_frames(pcap: &Path) -> Vec<Vec<u8>> {
    let out = sh(&format!("tcpdump -nn -xx -r {} 2>/dev/null", pcap.display()));
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for line in out.lines() {
        if !line.starts_with('\t') && !line.starts_with(' ') {
            frames.push(Vec::new());
            continue;
        }
        let Some((_, hex)) = line.split_once(':') else { continue };
        if let Some(f) = frames.last_mut() {
            for w in hex.split_whitespace() {
                for i in (0..w.len()).step_by(2) {
                    if let Ok(b) = u8::from_str_radix(&w[i..i + 2], 16) {
                        f.push(b);
                    }
                }
            }
        }
    }
    frames.into_iter().filter(|f| !f.is_empty()).collect()
}
