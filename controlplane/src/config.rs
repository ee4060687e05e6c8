//! The TOML configuration (design.md, "Configuration contract").
//!
//! Parsing refuses unknown keys and malformed values; validation refuses
//! dangling references, duplicates and impossible combinations. Every error
//! names the file, line and column and says why, in the form
//! `FILE:LINE:COL: reason`, so an operator can jump to it.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;
use toml::Spanned;

/// A configuration error with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the error has no place (unreadable file).
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// An IPv4 address with a prefix length, `192.0.2.2/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    pub fn netmask(&self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix_len as u32)
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.netmask())
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.netmask() == u32::from(self.network())
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = s.split_once('/').ok_or_else(|| format!("invalid prefix {s:?}: expected ADDRESS/LENGTH such as 192.0.2.2/24"))?;
        let addr = a.parse().map_err(|_| format!("invalid prefix {s:?}: {a:?} is not an IPv4 address"))?;
        let prefix_len = l.parse::<u8>().ok().filter(|l| *l <= 32).ok_or_else(|| format!("invalid prefix {s:?}: length must be 0 to 32"))?;
        Ok(Self { addr, prefix_len })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

fn ipv4<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv4Addr, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(|_| de::Error::custom(format!("invalid IPv4 address {s:?}")))
}

fn ipv4_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Ipv4Addr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .into_iter()
        .map(|s| s.parse().map_err(|_| de::Error::custom(format!("invalid IPv4 address {s:?}"))))
        .collect()
}

fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddrV4, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(|_| de::Error::custom(format!("invalid address {s:?}: expected IPv4:PORT such as 192.0.2.100:80")))
}

fn spanned_socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Spanned<SocketAddrV4>, D::Error> {
    let s = Spanned::<String>::deserialize(d)?;
    let span = s.span();
    let v = s.get_ref().parse().map_err(|_| {
        de::Error::custom(format!("invalid address {:?}: expected IPv4:PORT such as 192.0.2.100:80", s.get_ref()))
    })?;
    Ok(Spanned::new(span, v))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub platform: Platform,
    #[serde(default, rename = "interface")]
    pub interfaces: Vec<Interface>,
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    #[serde(default, rename = "health_check")]
    pub health_checks: Vec<HealthCheck>,
    #[serde(default, rename = "pool")]
    pub pools: Vec<Pool>,
    #[serde(default, rename = "virtual_server")]
    pub virtual_servers: Vec<VirtualServer>,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub logging: Logging,
    #[serde(default)]
    pub management: Management,
    #[serde(default)]
    pub console: ConsoleConfig,
}

/// What goes to the log (stderr; `RUST_LOG` overrides it). State changes
/// (servers up and down, configuration) are at `info`; nothing is logged
/// per packet.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    #[serde(default)]
    pub level: LogLevel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

/// The management plane: kernel sockets, never the DPDK ports.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Management {
    /// Prometheus text metrics at `http://LISTEN/metrics`; none when unset.
    #[serde(default, deserialize_with = "opt_socket_addr")]
    pub listen: Option<std::net::SocketAddr>,
}

fn opt_socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<std::net::SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(|_| de::Error::custom(format!("invalid address {s:?}: expected IP:PORT, e.g. \"127.0.0.1:9100\"")))
}

/// `[console]`: where operators reach the CLI (README, "Console").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// The local UNIX socket `furiwake console` connects to; its directory
    /// is created. Empty: no socket.
    pub socket: String,
    /// A console on a character device as well: `"stdio"` (stdin/stdout),
    /// a serial device path such as `"/dev/ttyS0"`, or `"none"`. Default:
    /// stdin/stdout when stdin is a terminal.
    pub device: Option<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self { socket: DEFAULT_CONSOLE_SOCKET.to_string(), device: None }
    }
}

/// Where `furiwake run` listens and `furiwake console` connects by default.
pub const DEFAULT_CONSOLE_SOCKET: &str = "/run/furiwake/console.sock";

/// Idle timeouts of connection entries, in seconds, per TCP state (RFC 9293
/// §3.3.2) and for UDP and ICMP. Defaults follow IPVS (`ipvsadm --set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// SYN_SENT and SYN_RECV.
    pub tcp_syn: u32,
    pub tcp_established: u32,
    /// FIN_WAIT and CLOSE_WAIT.
    pub tcp_fin: u32,
    pub tcp_time_wait: u32,
    /// After a RST the entry is removed at once; CLOSE covers the rest.
    pub tcp_close: u32,
    pub udp: u32,
    pub icmp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { tcp_syn: 60, tcp_established: 900, tcp_fin: 120, tcp_time_wait: 120, tcp_close: 10, udp: 300, icmp: 60 }
    }
}

/// Compared by value (spans of `toml::Spanned` fields do not count).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// EAL arguments. Furiwake adds `-l` (unless `--lcores` maps lcores to
    /// CPUs here), `--main-lcore`, `--vdev`/`-a` for the interfaces, and
    /// `--file-prefix furiwake` unless one is given.
    #[serde(default)]
    pub eal_args: Vec<String>,
    #[serde(default)]
    pub control_lcore: u32,
    pub worker_lcores: Spanned<Vec<u32>>,
    /// Connection-table entries per worker, preallocated.
    #[serde(default = "defaults::flows_per_worker")]
    pub flows_per_worker: u32,
    /// Mbufs in the packet pool.
    #[serde(default = "defaults::mbufs")]
    pub mbufs: u32,
    #[serde(default = "defaults::rx_desc")]
    pub rx_descriptors: u16,
    #[serde(default = "defaults::tx_desc")]
    pub tx_descriptors: u16,
    /// Sleep this long when a worker loop found no packet 64 times in a row.
    /// 0 polls without pause (appliance default); small VMs and CI want 20+.
    #[serde(default)]
    pub idle_sleep_us: u32,
    /// Persistence records per worker, preallocated when a virtual server
    /// has persistence (24 bytes each).
    #[serde(default = "defaults::persistence_records")]
    pub persistence_records: u32,
}

mod defaults {
    pub fn flows_per_worker() -> u32 {
        1 << 20
    }
    pub fn mbufs() -> u32 {
        16383
    }
    pub fn rx_desc() -> u16 {
        1024
    }
    pub fn tx_desc() -> u16 {
        1024
    }
    pub fn weight() -> u32 {
        1
    }
    pub fn interval_ms() -> u32 {
        1000
    }
    pub fn timeout_ms() -> u32 {
        500
    }
    pub fn fall() -> u32 {
        3
    }
    pub fn rise() -> u32 {
        2
    }
    pub fn persistence_records() -> u32 {
        1 << 16
    }
    pub fn persistence_timeout_s() -> u32 {
        300
    }
    pub fn netmask() -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::BROADCAST
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    pub name: Spanned<String>,
    /// A vdev spec (`net_af_packet0,iface=lb-out`) or a PCI address.
    pub device: Spanned<String>,
    /// The appliance's own ("self") address on this link.
    pub address: Ipv4Cidr,
}

impl Interface {
    /// True when `device` names a PCI device rather than a vdev.
    pub fn is_pci(&self) -> bool {
        is_pci_address(self.device.get_ref())
    }

    /// The ethdev name DPDK gives the device: the vdev name before the first
    /// comma, or the PCI address.
    pub fn dev_name(&self) -> &str {
        let d = self.device.get_ref();
        d.split(',').next().unwrap_or(d)
    }
}

fn is_pci_address(s: &str) -> bool {
    // [DDDD:]BB:DD.F
    let s = s.split(',').next().unwrap_or(s);
    let parts: Vec<&str> = s.split(':').collect();
    let hex = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit());
    match parts.as_slice() {
        [dom, bus, devfn] => hex(dom, 4) && hex(bus, 2) && devfn_ok(devfn, &hex),
        [bus, devfn] => hex(bus, 2) && devfn_ok(devfn, &hex),
        _ => false,
    }
}

fn devfn_ok(s: &str, hex: &dyn Fn(&str, usize) -> bool) -> bool {
    matches!(s.split_once('.'), Some((d, f)) if hex(d, 2) && f.len() == 1 && f.chars().all(|c| c.is_digit(8)))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub prefix: Ipv4Cidr,
    #[serde(deserialize_with = "ipv4")]
    pub via: Ipv4Addr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    Icmp,
    Tcp,
    Http,
    SendExpect,
    Udp,
    Script,
}

/// Compared by value (spans of `toml::Spanned` fields do not count).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub name: Spanned<String>,
    pub kind: CheckKind,
    #[serde(default = "defaults::interval_ms")]
    pub interval_ms: u32,
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u32,
    #[serde(default = "defaults::fall")]
    pub fall: u32,
    #[serde(default = "defaults::rise")]
    pub rise: u32,
    /// Check this port instead of the server's service port.
    pub port: Option<u16>,
    pub request: Option<String>,
    pub expect_status: Option<u16>,
    pub expect_body: Option<String>,
    pub send: Option<String>,
    pub expect: Option<String>,
    pub command: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDown {
    /// Existing connections continue (IPVS's default).
    #[default]
    Keep,
    /// Existing connections are cut: their entries removed, their packets
    /// dropped (`server-down`).
    Reset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    RoundRobin,
    WeightedRoundRobin,
    LeastConnections,
    WeightedLeastConnections,
    SourceHash,
    Maglev,
    /// Lowest probe RTT (seed 002 "応答時間").
    Fastest,
    /// Lowest recent bytes per second.
    LeastBandwidth,
    /// Connections + response time (seed 002 "複合型").
    Composite,
}

/// What `source-hash` hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashOn {
    /// The client's address: one client, one server.
    #[default]
    SourceIp,
    /// Source and destination addresses, order-independent: both
    /// directions of a conversation hash alike (seed 002's firewall load
    /// balancing, "SrcIPアドレス、DstIPアドレスの組").
    SourceDestinationIp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    #[serde(deserialize_with = "spanned_socket_addr")]
    pub address: Spanned<SocketAddrV4>,
    #[serde(default = "defaults::weight")]
    pub weight: u32,
    /// 0: unlimited.
    #[serde(default)]
    pub max_connections: u32,
    /// Priority group (BIG-IP style: higher first). New connections go to
    /// the highest group with a server that can take them; a group spills
    /// to the next when all its servers are down or full (seed 002
    /// "優先順位", seed 003 "Priority").
    #[serde(default)]
    pub priority: u16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub name: Spanned<String>,
    #[serde(default = "Pool::default_algorithm")]
    pub algorithm: Spanned<Algorithm>,
    /// With `algorithm = "source-hash"` only: what is hashed.
    pub hash: Option<Spanned<HashOn>>,
    pub health_check: Option<Spanned<String>>,
    /// Several checks, all of which must pass.
    #[serde(default)]
    pub health_checks: Vec<Spanned<String>>,
    /// Used when no server of this pool can take a new connection: the
    /// "sorry page" servers of seed 002 ("ごめんなさいページ").
    pub sorry_pool: Option<Spanned<String>>,
    /// What happens to a down server's existing connections.
    #[serde(default)]
    pub on_down: OnDown,
    /// Overload is not death (seed 004): with `on_down = "reset"`, a server
    /// whose probes time out while it still has connections only stops
    /// getting new ones; its connections are not cut.
    #[serde(default)]
    pub slow_down: bool,
    #[serde(default)]
    pub servers: Vec<Server>,
}

impl Pool {
    /// Names of every check of this pool.
    pub fn check_names(&self) -> impl Iterator<Item = &Spanned<String>> {
        self.health_check.iter().chain(self.health_checks.iter())
    }
}

impl Pool {
    fn default_algorithm() -> Spanned<Algorithm> {
        Spanned::new(0..0, Algorithm::RoundRobin)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Forwarding {
    Nat,
    FullNat,
    DsrL2,
    DsrDscp,
    DsrTunnel,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualServer {
    pub name: Spanned<String>,
    #[serde(deserialize_with = "socket_addr")]
    pub address: SocketAddrV4,
    #[serde(default = "VirtualServer::default_protocol")]
    pub protocol: Protocol,
    #[serde(default = "VirtualServer::default_forwarding")]
    pub forwarding: Spanned<Forwarding>,
    pub pool: Spanned<String>,
    /// full-nat source addresses; default: the self IP facing the servers.
    #[serde(default, deserialize_with = "ipv4_list")]
    pub local_addresses: Vec<Ipv4Addr>,
    /// One client, one server (seed 004's shopping cart).
    pub persistence: Option<Spanned<Persistence>>,
    /// Virtual servers naming the same group share persistence records, so
    /// VIP:80 and VIP:443 send a client to one server (seed 002
    /// "VIP:PORT 同士でセッション情報の共有").
    pub persistence_group: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PersistenceKind {
    /// The client's address under `netmask` (a /24 keeps the clients of a
    /// proxy farm together, seed 004).
    SourceIp,
    /// The client's address and port.
    SourceIpPort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persistence {
    pub kind: PersistenceKind,
    /// How long a record lives after its last connection ended.
    #[serde(default = "defaults::persistence_timeout_s")]
    pub timeout_s: u32,
    /// `source-ip` only: the part of the client address that counts.
    #[serde(default = "defaults::netmask", deserialize_with = "ipv4")]
    pub netmask: Ipv4Addr,
    /// Keep a record whose server goes down (the client returns to it once
    /// it is back); default: such records are dropped.
    #[serde(default)]
    pub keep_on_down: bool,
}

/// The longest persistence timeout (a week).
pub const MAX_PERSISTENCE_TIMEOUT_S: u32 = 7 * 86400;

impl VirtualServer {
    fn default_protocol() -> Protocol {
        Protocol::Tcp
    }
    fn default_forwarding() -> Spanned<Forwarding> {
        Spanned::new(0..0, Forwarding::Nat)
    }
}

/// Maps byte offsets to line and column.
struct Source<'a> {
    file: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        let (line, column) = match span {
            Some(r) => {
                let start = r.start.min(self.text.len());
                let before = &self.text[..start];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                (line, column)
            }
            None => (1, 1),
        };
        ConfigError { file: self.file.to_string(), line, column, message: message.into() }
    }
}

impl Config {
    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError { file: file.clone(), line: 0, column: 0, message: format!("cannot read: {e}") })?;
        Self::parse(&file, &text)
    }

    /// Parses and validates `text`; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let src = Source { file, text };
        let cfg: Config = toml::from_str(text).map_err(|e| src.error(e.span(), e.message().trim().to_string()))?;
        cfg.validate(&src)?;
        Ok(cfg)
    }

    fn validate(&self, src: &Source<'_>) -> Result<(), ConfigError> {
        let p = &self.platform;
        let workers = p.worker_lcores.get_ref();
        if workers.is_empty() {
            return Err(src.error(Some(p.worker_lcores.span()), "worker_lcores: at least one worker lcore is needed"));
        }
        let mut seen = HashSet::new();
        for w in workers {
            if *w == p.control_lcore {
                return Err(src.error(Some(p.worker_lcores.span()), format!("worker_lcores: lcore {w} is the control lcore")));
            }
            if !seen.insert(*w) {
                return Err(src.error(Some(p.worker_lcores.span()), format!("worker_lcores: lcore {w} is listed twice")));
            }
        }
        for a in &p.eal_args {
            if matches!(a.as_str(), "-l" | "-c" | "--main-lcore" | "--vdev" | "-a" | "--allow") || a.starts_with("--vdev=")
            {
                return Err(src.error(None, format!("platform.eal_args: {a:?} is derived from control_lcore, worker_lcores and [[interface]]; remove it (use --lcores to map lcores to CPUs)")));
            }
        }

        unique(src, self.interfaces.iter().map(|i| &i.name), "interface")?;
        let mut devs = HashSet::new();
        for i in &self.interfaces {
            if i.device.get_ref().trim().is_empty() {
                return Err(src.error(Some(i.device.span()), "device: empty"));
            }
            if !devs.insert(i.dev_name().to_string()) {
                return Err(src.error(Some(i.device.span()), format!("device {:?} is used by two interfaces", i.dev_name())));
            }
        }
        unique(src, self.health_checks.iter().map(|h| &h.name), "health_check")?;
        for h in &self.health_checks {
            let missing = match h.kind {
                CheckKind::Script if h.command.is_none() => Some("command"),
                CheckKind::SendExpect if h.expect.is_none() => Some("expect"),
                _ => None,
            };
            if let Some(key) = missing {
                return Err(src.error(Some(h.name.span()), format!("health_check {:?}: kind {:?} needs `{key}`", h.name.get_ref(), h.kind)));
            }
            if h.interval_ms == 0 || h.timeout_ms == 0 {
                return Err(src.error(Some(h.name.span()), format!("health_check {:?}: interval_ms and timeout_ms must be positive", h.name.get_ref())));
            }
        }
        unique(src, self.pools.iter().map(|p| &p.name), "pool")?;
        unique(src, self.virtual_servers.iter().map(|v| &v.name), "virtual_server")?;

        for pool in &self.pools {
            for hc in pool.check_names() {
                if !self.health_checks.iter().any(|h| h.name.get_ref() == hc.get_ref()) {
                    return Err(src.error(Some(hc.span()), format!("pool {:?}: no health_check named {:?}", pool.name.get_ref(), hc.get_ref())));
                }
            }
            if let Some(sorry) = &pool.sorry_pool {
                if sorry.get_ref() == pool.name.get_ref() || !self.pools.iter().any(|p| p.name.get_ref() == sorry.get_ref()) {
                    return Err(src.error(Some(sorry.span()), format!("pool {:?}: sorry_pool {:?} must name another pool", pool.name.get_ref(), sorry.get_ref())));
                }
            }
            if let Some(h) = &pool.hash {
                if *pool.algorithm.get_ref() != Algorithm::SourceHash {
                    return Err(src.error(Some(h.span()), format!("pool {:?}: `hash` needs algorithm = \"source-hash\"", pool.name.get_ref())));
                }
            }
            let mut addrs = HashSet::new();
            for s in &pool.servers {
                if !addrs.insert(*s.address.get_ref()) {
                    return Err(src.error(Some(s.address.span()), format!("pool {:?}: server {} listed twice", pool.name.get_ref(), s.address.get_ref())));
                }
            }
        }
        let mut vips = HashSet::new();
        if self.virtual_servers.len() > furiwake_dataplane::state::snapshot::MAX_SERVICES {
            return Err(src.error(None, format!("at most {} virtual servers", furiwake_dataplane::state::snapshot::MAX_SERVICES)));
        }
        let members: usize = self
            .virtual_servers
            .iter()
            .filter_map(|vs| self.pools.iter().find(|p| p.name.get_ref() == vs.pool.get_ref()))
            .map(|p| p.servers.len())
            .sum();
        if members > furiwake_dataplane::state::snapshot::MAX_SERVERS {
            return Err(src.error(None, format!("at most {} real servers over all virtual servers", furiwake_dataplane::state::snapshot::MAX_SERVERS)));
        }
        for vs in &self.virtual_servers {
            if !matches!(vs.forwarding.get_ref(), Forwarding::Nat | Forwarding::FullNat) {
                return Err(src.error(
                    Some(vs.forwarding.span()),
                    format!("virtual_server {:?}: forwarding {:?} is not supported by this build (nat, full-nat)", vs.name.get_ref(), vs.forwarding.get_ref()),
                ));
            }
            if *vs.forwarding.get_ref() == Forwarding::Nat && !vs.local_addresses.is_empty() {
                return Err(src.error(Some(vs.name.span()), format!("virtual_server {:?}: local_addresses needs forwarding = \"full-nat\"", vs.name.get_ref())));
            }
            if !self.pools.iter().any(|p| p.name.get_ref() == vs.pool.get_ref()) {
                return Err(src.error(Some(vs.pool.span()), format!("virtual_server {:?}: no pool named {:?}", vs.name.get_ref(), vs.pool.get_ref())));
            }
            if !vips.insert((vs.address, vs.protocol)) {
                return Err(src.error(Some(vs.name.span()), format!("virtual_server {:?}: {} {:?} is already served", vs.name.get_ref(), vs.address, vs.protocol)));
            }
        }
        self.validate_persistence(src)
    }

    fn validate_persistence(&self, src: &Source<'_>) -> Result<(), ConfigError> {
        let mut groups: HashMap<&str, (&VirtualServer, Persistence)> = HashMap::new();
        for vs in &self.virtual_servers {
            let name = vs.name.get_ref();
            let Some(p) = &vs.persistence else {
                if let Some(g) = &vs.persistence_group {
                    return Err(src.error(Some(g.span()), format!("virtual_server {name:?}: persistence_group needs persistence")));
                }
                continue;
            };
            let span = Some(p.span());
            let p = *p.get_ref();
            let mask = u32::from(p.netmask);
            if mask.leading_ones() + mask.trailing_zeros() != 32 {
                return Err(src.error(span, format!("virtual_server {name:?}: persistence netmask {} is not contiguous", p.netmask)));
            }
            if p.kind == PersistenceKind::SourceIpPort && mask != u32::MAX {
                return Err(src.error(span, format!("virtual_server {name:?}: persistence netmask applies to kind \"source-ip\" only")));
            }
            if p.timeout_s == 0 || p.timeout_s > MAX_PERSISTENCE_TIMEOUT_S {
                return Err(src.error(span, format!("virtual_server {name:?}: persistence timeout_s must be 1..={MAX_PERSISTENCE_TIMEOUT_S}")));
            }
            if let Some(g) = &vs.persistence_group {
                match groups.get(g.get_ref().as_str()) {
                    Some((first, fp)) if fp.kind != p.kind || fp.netmask != p.netmask => {
                        return Err(src.error(
                            Some(g.span()),
                            format!(
                                "virtual_server {name:?}: persistence group {:?} has kind {:?} netmask {} (virtual_server {:?}); its members must agree",
                                g.get_ref(),
                                fp.kind,
                                fp.netmask,
                                first.name.get_ref()
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        groups.insert(g.get_ref().as_str(), (vs, p));
                    }
                }
            }
        }
        // With NAT the server's replies must reach the worker that owns the
        // connection: servers shared between NAT virtual servers need the
        // same ownership key (the client address under one netmask, or
        // address and port).
        let mut owners: HashMap<(SocketAddrV4, Protocol), (&VirtualServer, Option<Ipv4Addr>)> = HashMap::new();
        for vs in self.virtual_servers.iter().filter(|v| *v.forwarding.get_ref() == Forwarding::Nat) {
            let owner = vs.persistence.as_ref().map(|p| *p.get_ref()).filter(|p| p.kind == PersistenceKind::SourceIp).map(|p| p.netmask);
            let pool = self.pools.iter().find(|p| p.name.get_ref() == vs.pool.get_ref());
            let sorry = pool.and_then(|p| p.sorry_pool.as_ref()).and_then(|n| self.pools.iter().find(|p| p.name.get_ref() == n.get_ref()));
            for s in pool.into_iter().chain(sorry).flat_map(|p| p.servers.iter()) {
                match owners.get(&(*s.address.get_ref(), vs.protocol)) {
                    Some((other, o)) if *o != owner => {
                        return Err(src.error(
                            Some(vs.name.span()),
                            format!(
                                "virtual_server {:?}: server {} is also a NAT server of virtual_server {:?} with other persistence; with nat both must use the same (or no) source-ip persistence netmask, or use full-nat",
                                vs.name.get_ref(),
                                s.address.get_ref(),
                                other.name.get_ref()
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        owners.insert((*s.address.get_ref(), vs.protocol), (vs, owner));
                    }
                }
            }
        }
        Ok(())
    }
}

fn unique<'a>(src: &Source<'_>, names: impl Iterator<Item = &'a Spanned<String>>, what: &str) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for n in names {
        if n.get_ref().is_empty() {
            return Err(src.error(Some(n.span()), format!("{what}: empty name")));
        }
        if !seen.insert(n.get_ref().as_str()) {
            return Err(src.error(Some(n.span()), format!("{what} {:?} is defined twice", n.get_ref())));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[platform]
eal_args = ["--no-huge", "-m", "512", "--no-pci"]
control_lcore = 0
worker_lcores = [1]

[[interface]]
name = "outside"
device = "net_af_packet0,iface=lb-out"
address = "192.0.2.2/24"

[[interface]]
name = "inside"
device = "0000:03:00.0"
address = "198.51.100.1/24"

[[route]]
prefix = "0.0.0.0/0"
via = "192.0.2.1"

[[health_check]]
name = "web-ok"
kind = "http"
request = "GET /health HTTP/1.0\r\n\r\n"
expect_status = 200

[[pool]]
name = "web"
algorithm = "weighted-round-robin"
health_check = "web-ok"
servers = [ { address = "198.51.100.11:8080", weight = 3 }, { address = "198.51.100.12:8080" } ]

[[virtual_server]]
name = "www"
address = "192.0.2.100:80"
pool = "web"
"#;

    fn err(text: &str) -> ConfigError {
        Config::parse("t.toml", text).unwrap_err()
    }

    #[test]
    fn good_config_parses_with_defaults() {
        let c = Config::parse("t.toml", GOOD).unwrap();
        assert_eq!(c.interfaces.len(), 2);
        assert_eq!(c.interfaces[0].dev_name(), "net_af_packet0");
        assert!(!c.interfaces[0].is_pci());
        assert!(c.interfaces[1].is_pci());
        assert_eq!(c.interfaces[0].address, "192.0.2.2/24".parse().unwrap());
        assert_eq!(c.pools[0].servers[1].weight, 1);
        assert_eq!(*c.pools[0].algorithm.get_ref(), Algorithm::WeightedRoundRobin);
        assert_eq!(c.virtual_servers[0].protocol, Protocol::Tcp);
        assert_eq!(*c.virtual_servers[0].forwarding.get_ref(), Forwarding::Nat);
        assert_eq!(c.timeouts.tcp_established, 900);
        assert_eq!(c.platform.flows_per_worker, 1 << 20);
        assert_eq!(c.health_checks[0].fall, 3);
    }

    #[test]
    fn typo_key_names_line_and_key() {
        let bad = GOOD.replace("address = \"192.0.2.2/24\"", "adress = \"192.0.2.2/24\"");
        let e = err(&bad);
        assert_eq!(e.line, 10, "{e}");
        assert!(e.message.contains("unknown field `adress`"), "{e}");
        assert!(e.to_string().starts_with("t.toml:10:"), "{e}");
    }

    #[test]
    fn bad_address_names_line() {
        let bad = GOOD.replace("192.0.2.100:80", "192.0.2.300:80");
        let e = err(&bad);
        assert_eq!(e.line, 35, "{e}");
        assert!(e.message.contains("192.0.2.300:80"), "{e}");
        let bad = GOOD.replace("198.51.100.1/24", "198.51.100.1/33");
        assert_eq!(err(&bad).line, 15);
    }

    #[test]
    fn dangling_references_refused() {
        let e = err(&GOOD.replace("pool = \"web\"", "pool = \"wbe\""));
        assert_eq!(e.line, 36, "{e}");
        assert!(e.message.contains("no pool named \"wbe\""), "{e}");
        let e = err(&GOOD.replace("health_check = \"web-ok\"", "health_check = \"nope\""));
        assert_eq!(e.line, 30, "{e}");
    }

    #[test]
    fn duplicates_and_lcores_refused() {
        let e = err(&GOOD.replace("name = \"inside\"", "name = \"outside\""));
        assert!(e.message.contains("defined twice"), "{e}");
        assert_eq!(e.line, 13);
        let e = err(&GOOD.replace("worker_lcores = [1]", "worker_lcores = [0]"));
        assert!(e.message.contains("control lcore"), "{e}");
        assert_eq!(e.line, 5);
        let e = err(&GOOD.replace("worker_lcores = [1]", "worker_lcores = []"));
        assert!(e.message.contains("at least one"), "{e}");
        let e = err(&GOOD.replace("\"--no-pci\"]", "\"--no-pci\", \"-l\", \"0-3\"]"));
        assert!(e.message.contains("\"-l\""), "{e}");
        let e = err(&GOOD.replace("pool = \"web\"\n", "pool = \"web\"\nforwarding = \"dsr-l2\"\n"));
        assert!(e.message.contains("not supported"), "{e}");
        assert_eq!(e.line, 37);
        let e = err(&format!("{GOOD}\n[timeouts]\ntcp_fin = 2\ntcp_est = 3\n"));
        assert!(e.message.contains("unknown field `tcp_est`"), "{e}");
        let e = err(&GOOD.replace("kind = \"http\"", "kind = \"htp\""));
        assert!(e.message.contains("unknown variant `htp`"), "{e}");
        assert_eq!(e.line, 23);
    }

    #[test]
    fn persistence_parses_and_bad_persistence_is_refused_with_its_line() {
        let two = format!(
            "{GOOD}\n[[virtual_server]]\nname = \"tls\"\naddress = \"192.0.2.100:8443\"\npool = \"web\"\npersistence = {{ kind = \"source-ip\", netmask = \"255.255.255.0\", timeout_s = 60 }}\npersistence_group = \"shop\"\n"
        );
        let with = |p: &str| two.replace("pool = \"web\"\n\n", &format!("pool = \"web\"\n{p}\n"));
        let c = Config::parse("t.toml", &with("persistence = { kind = \"source-ip\", netmask = \"255.255.255.0\", timeout_s = 60 }\npersistence_group = \"shop\"")).unwrap();
        let p = *c.virtual_servers[0].persistence.as_ref().unwrap().get_ref();
        assert_eq!((p.kind, p.netmask, p.timeout_s, p.keep_on_down), (PersistenceKind::SourceIp, Ipv4Addr::new(255, 255, 255, 0), 60, false));
        assert_eq!(c.platform.persistence_records, 65536);
        // Defaults: /32, 300 s.
        let c = Config::parse("t.toml", &GOOD.replace("pool = \"web\"\n", "pool = \"web\"\npersistence = { kind = \"source-ip-port\" }\n")).unwrap();
        let p = *c.virtual_servers[0].persistence.as_ref().unwrap().get_ref();
        assert_eq!((p.netmask, p.timeout_s), (Ipv4Addr::BROADCAST, 300));

        let e = err(&with("persistence = { kind = \"source-ip\", netmask = \"255.0.255.0\" }"));
        assert!(e.message.contains("not contiguous"), "{e}");
        assert_eq!(e.line, 37);
        let e = err(&with("persistence = { kind = \"source-ip\", timeout_s = 0 }"));
        assert!(e.message.contains("timeout_s"), "{e}");
        let e = err(&with("persistence = { kind = \"source-ip-port\", netmask = \"255.255.0.0\" }"));
        assert!(e.message.contains("source-ip\\\" only") || e.message.contains("only"), "{e}");
        let e = err(&with("persistence = { kind = \"cookie\" }"));
        assert!(e.message.contains("unknown variant `cookie`"), "{e}");
        let e = err(&with("persistence_group = \"shop\""));
        assert!(e.message.contains("persistence_group needs persistence"), "{e}");
        assert_eq!(e.line, 37);
        // Group members must agree.
        let e = err(&with("persistence = { kind = \"source-ip\" }\npersistence_group = \"shop\""));
        assert!(e.message.contains("members must agree"), "{e}");
        // A NAT server shared with and without source-ip persistence: the
        // replies could not find their worker.
        let e = err(&with(""));
        assert!(e.message.contains("same (or no) source-ip persistence"), "{e}");
        assert!(e.message.contains("\"tls\""), "{e}");
        // full-NAT replies come back to a local port: no conflict.
        Config::parse("t.toml", &with("forwarding = \"full-nat\"")).unwrap();
    }

    #[test]
    fn new_algorithms_parse() {
        for (name, want) in [("fastest", Algorithm::Fastest), ("least-bandwidth", Algorithm::LeastBandwidth), ("composite", Algorithm::Composite)] {
            let c = Config::parse("t.toml", &GOOD.replace("\"weighted-round-robin\"", &format!("\"{name}\""))).unwrap();
            assert_eq!(*c.pools[0].algorithm.get_ref(), want);
            assert!(c.pools[0].hash.is_none());
        }
        let e = err(&GOOD.replace("\"weighted-round-robin\"", "\"fastets\""));
        assert!(e.message.contains("unknown variant `fastets`"), "{e}");
        assert_eq!(e.line, 29, "{e}");
    }

    #[test]
    fn hash_key_names_and_only_with_source_hash() {
        let sh = GOOD.replace("algorithm = \"weighted-round-robin\"", "algorithm = \"source-hash\"");
        let c = Config::parse("t.toml", &sh).unwrap();
        assert_eq!(c.pools[0].hash, None, "default: source-ip (build.rs)");
        for (name, want) in [("source-ip", HashOn::SourceIp), ("source-destination-ip", HashOn::SourceDestinationIp)] {
            let c = Config::parse("t.toml", &sh.replace("algorithm = \"source-hash\"", &format!("algorithm = \"source-hash\"\nhash = \"{name}\""))).unwrap();
            assert_eq!(c.pools[0].hash.as_ref().map(|h| *h.get_ref()), Some(want));
        }
        let e = err(&sh.replace("algorithm = \"source-hash\"", "algorithm = \"source-hash\"\nhash = \"destination-ip\""));
        assert!(e.message.contains("unknown variant `destination-ip`"), "{e}");
        assert_eq!(e.line, 30, "{e}");
        // Only with source-hash: the error points at the `hash` line.
        let e = err(&GOOD.replace("algorithm = \"weighted-round-robin\"", "algorithm = \"maglev\"\nhash = \"source-ip\""));
        assert!(e.message.contains("`hash` needs algorithm = \"source-hash\""), "{e}");
        assert_eq!((e.line, e.column), (30, 8), "{e}");
        let e = err(&GOOD.replace("algorithm = \"weighted-round-robin\"", "hash = \"source-destination-ip\""));
        assert!(e.message.contains("pool \"web\""), "default round-robin refuses it too: {e}");
        assert_eq!(e.line, 29, "{e}");
    }

    #[test]
    fn cidr_parses_and_contains() {
        let c: Ipv4Cidr = "192.0.2.2/24".parse().unwrap();
        assert_eq!(c.network(), Ipv4Addr::new(192, 0, 2, 0));
        assert!(c.contains(Ipv4Addr::new(192, 0, 2, 200)));
        assert!(!c.contains(Ipv4Addr::new(192, 0, 3, 1)));
        let any: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains(Ipv4Addr::new(203, 0, 113, 9)));
        assert!("1.2.3.4".parse::<Ipv4Cidr>().is_err());
    }
}
