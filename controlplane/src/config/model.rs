//! The configuration's types: what each key means, its default and its
//! spelling. Every check beyond the syntax is in `validate`.
//!
//! Numbers and the values `validate` may refuse are `toml::Spanned`, so a
//! refusal names their line and column; a default, or a value set at run
//! time, has an empty span at the top of the file (`unplaced`). `Spanned`
//! compares by value alone. Each number's range is in `bounds`.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::net::{Ipv4Addr, SocketAddr};
use toml::Spanned;

pub use super::cidr::{IpCidr, Ipv4Cidr, Ipv6Cidr};
pub use super::link::{dev_name, Bond, BondMode, AnyRoute, Interface, PciDriver, Route, Route6, RssSide, Snat};
pub use super::persistence::{Persistence, PersistenceKind, SameSite};
pub(crate) use super::link::is_pci_address;

fn ipv4_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Ipv4Addr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .into_iter()
        .map(|s| s.parse().map_err(|_| de::Error::custom(format!("invalid IPv4 address {s:?}"))))
        .collect()
}

fn spanned_socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Spanned<SocketAddr>, D::Error> {
    let s = Spanned::<String>::deserialize(d)?;
    let span = s.span();
    let v = s.get_ref().parse().map_err(|_| {
        de::Error::custom(format!("invalid address {:?}: expected IPv4:PORT such as 192.0.2.100:80 or [IPv6]:PORT such as [2001:db8::100]:80", s.get_ref()))
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
    pub routes: Vec<Spanned<AnyRoute>>,
    #[serde(default, rename = "health_check")]
    pub health_checks: Vec<HealthCheck>,
    #[serde(default, rename = "pool")]
    pub pools: Vec<Pool>,
    #[serde(default, rename = "virtual_server")]
    pub virtual_servers: Vec<VirtualServer>,
    #[serde(default)]
    pub timeouts: TimeoutSecs,
    #[serde(default)]
    pub logging: Logging,
    #[serde(default)]
    pub management: Management,
    #[serde(default)]
    pub console: ConsoleConfig,
    /// `[[vrrp]]` instances (`ha`).
    #[serde(default)]
    pub vrrp: Vec<super::ha::Vrrp>,
    /// `[sync]`: connection-state sync with the HA peer (`ha`).
    #[serde(default)]
    pub sync: Option<super::ha::SyncConfig>,
    /// `[[snat]]`: the servers' own connections out (`link`).
    #[serde(default)]
    pub snat: Vec<super::link::Snat>,
    /// `[defence]`: floods (`defence`).
    #[serde(default)]
    pub defence: super::defence::Defence,
    /// `[l7]`: the L7 engine (`l7`).
    #[serde(default)]
    pub l7: super::l7::L7,
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
    pub listen: Option<Spanned<std::net::SocketAddr>>,
}

fn opt_socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Spanned<std::net::SocketAddr>>, D::Error> {
    let s = Spanned::<String>::deserialize(d)?;
    let v = s.get_ref().parse().map_err(|_| de::Error::custom(format!("invalid address {:?}: expected IP:PORT, e.g. \"127.0.0.1:9100\"", s.get_ref())))?;
    Ok(Some(Spanned::new(s.span(), v)))
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
    /// The one directory `config save` writes to (an absolute path);
    /// default: the directory of the configuration file the appliance
    /// runs from (`config::save`).
    pub save_dir: Option<Spanned<String>>,
    /// The group the socket belongs to (mode 0660): its members may use
    /// the console (the appliance image's operator account). Default:
    /// the appliance's own.
    pub group: Option<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self { socket: DEFAULT_CONSOLE_SOCKET.to_string(), device: None, save_dir: None, group: None }
    }
}

/// Where `furiwake run` listens and `furiwake console` connects by default.
pub const DEFAULT_CONSOLE_SOCKET: &str = "/run/furiwake/console.sock";

/// The `[timeouts]` section: idle timeouts of connection entries, in
/// seconds, per TCP state (RFC 9293 §3.3.2) and for UDP and ICMP. Defaults
/// follow IPVS (`ipvsadm --set`). Each 1 s to a week
/// (`bounds::MAX_IDLE_TIMEOUT_S`). The workers hold them in table ticks
/// (`ticks`, `furiwake_dataplane::conntrack::Timeouts`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutSecs {
    /// SYN_SENT and SYN_RECV: half-open connections, short-lived (a
    /// client's SYN retries at 1, 3 and 7 s fall within the default).
    pub tcp_syn: Spanned<u32>,
    pub tcp_established: Spanned<u32>,
    /// FIN_WAIT and CLOSE_WAIT.
    pub tcp_fin: Spanned<u32>,
    pub tcp_time_wait: Spanned<u32>,
    /// CLOSE: after a reset the receiver accepted (RFC 5961 §3.2).
    pub tcp_close: Spanned<u32>,
    pub udp: Spanned<u32>,
    pub icmp: Spanned<u32>,
    /// A UDP flow its server has not answered yet (Linux conntrack's
    /// unreplied `udp_timeout`): what a spoofed flood leaves, so short and
    /// evictable (`[defence] embryonic_per_worker`).
    pub udp_unreplied: Spanned<u32>,
}

impl Default for TimeoutSecs {
    fn default() -> Self {
        let s = unplaced;
        Self { tcp_syn: s(10), tcp_established: s(900), tcp_fin: s(120), tcp_time_wait: s(120), tcp_close: s(10), udp: s(300), icmp: s(60), udp_unreplied: s(30) }
    }
}

impl TimeoutSecs {
    /// The same timeouts in the connection table's ticks.
    pub fn ticks(&self) -> furiwake_dataplane::conntrack::Timeouts {
        let s = |v: &Spanned<u32>| *v.get_ref();
        let t = furiwake_dataplane::conntrack::Timeouts::from_secs(
            s(&self.tcp_syn),
            s(&self.tcp_established),
            s(&self.tcp_fin),
            s(&self.tcp_time_wait),
            s(&self.tcp_close),
            s(&self.udp),
            s(&self.icmp),
        );
        let per_s = furiwake_dataplane::conntrack::Timeouts::TICKS_PER_SEC;
        furiwake_dataplane::conntrack::Timeouts { udp_unreplied: s(&self.udp_unreplied).saturating_mul(per_s), ..t }
    }
}

pub use super::cidr::unplaced;

/// Compared by value (spans of `toml::Spanned` fields do not count).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// EAL arguments. Furiwake adds `-l` (unless `--lcores` maps lcores to
    /// CPUs here), `--main-lcore`, `--vdev`/`-a` for the interfaces, and
    /// `--file-prefix furiwake` unless one is given.
    #[serde(default)]
    pub eal_args: Vec<String>,
    #[serde(default = "defaults::control_lcore")]
    pub control_lcore: Spanned<u32>,
    pub worker_lcores: Spanned<Vec<Spanned<u32>>>,
    /// Connection-table entries per worker, preallocated.
    #[serde(default = "defaults::flows_per_worker")]
    pub flows_per_worker: Spanned<u32>,
    /// IPv6 connection-table entries per worker (160 B a slot),
    /// preallocated when the first IPv6 virtual server comes; default a
    /// quarter of `flows_per_worker`, at least 1024.
    pub flows_per_worker_v6: Option<Spanned<u32>>,
    /// Mbufs in the packet pool.
    #[serde(default = "defaults::mbufs")]
    pub mbufs: Spanned<u32>,
    #[serde(default = "defaults::rx_desc")]
    pub rx_descriptors: Spanned<u16>,
    #[serde(default = "defaults::tx_desc")]
    pub tx_descriptors: Spanned<u16>,
    /// Sleep this long when a worker loop found no packet 64 times in a row.
    /// 0 polls without pause (appliance default); small VMs and CI want 20+.
    #[serde(default = "defaults::idle_sleep_us")]
    pub idle_sleep_us: Spanned<u32>,
    /// The control lcore's sleep in a turn that found nothing to do. Its
    /// timers (VRRP adverts, probes) have 10 ms resolution, so a sleep
    /// well below that costs nothing; 0 spins (a dedicated core).
    #[serde(default = "defaults::control_idle_sleep_us")]
    pub control_idle_sleep_us: Spanned<u32>,
    /// Persistence records per worker, preallocated when a virtual server
    /// has persistence (24 bytes each).
    #[serde(default = "defaults::persistence_records")]
    pub persistence_records: Spanned<u32>,
    /// The kernel driver PCI data NICs are bound to at start (`run
    /// --bind-nics`, the service) and taken back from at stop.
    #[serde(default)]
    pub pci_driver: super::link::PciDriver,
}

impl Platform {
    /// The worker lcores, in order.
    pub fn worker_lcore_ids(&self) -> Vec<u32> {
        self.worker_lcores.get_ref().iter().map(|l| *l.get_ref()).collect()
    }
}

/// Defaults, placed nowhere in the file.
mod defaults {
    use super::{unplaced, Spanned};

    pub fn control_lcore() -> Spanned<u32> {
        unplaced(0)
    }
    pub fn flows_per_worker() -> Spanned<u32> {
        unplaced(1 << 20)
    }
    pub fn mbufs() -> Spanned<u32> {
        unplaced(16383)
    }
    pub fn rx_desc() -> Spanned<u16> {
        unplaced(1024)
    }
    pub fn tx_desc() -> Spanned<u16> {
        unplaced(1024)
    }
    pub fn control_idle_sleep_us() -> Spanned<u32> {
        unplaced(200)
    }
    pub fn idle_sleep_us() -> Spanned<u32> {
        unplaced(0)
    }
    pub fn weight() -> Spanned<u32> {
        unplaced(1)
    }
    pub fn max_connections() -> Spanned<u32> {
        unplaced(0)
    }
    pub fn priority() -> Spanned<u16> {
        unplaced(0)
    }
    pub fn interval_ms() -> Spanned<u32> {
        unplaced(1000)
    }
    pub fn timeout_ms() -> Spanned<u32> {
        unplaced(500)
    }
    pub fn fall() -> Spanned<u32> {
        unplaced(3)
    }
    pub fn rise() -> Spanned<u32> {
        unplaced(2)
    }
    pub fn persistence_records() -> Spanned<u32> {
        unplaced(1 << 16)
    }
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
    /// Between the starts of two probes of one server.
    #[serde(default = "defaults::interval_ms")]
    pub interval_ms: Spanned<u32>,
    /// A probe not answered by then fails.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: Spanned<u32>,
    /// Consecutive failures that take a server down.
    #[serde(default = "defaults::fall")]
    pub fall: Spanned<u32>,
    /// Consecutive successes that bring it up.
    #[serde(default = "defaults::rise")]
    pub rise: Spanned<u32>,
    /// Check this port instead of the server's service port.
    pub port: Option<Spanned<u16>>,
    pub request: Option<String>,
    pub expect_status: Option<Spanned<u16>>,
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
    pub address: Spanned<SocketAddr>,
    /// 0 to `MAX_WEIGHT`; 0: never chosen.
    #[serde(default = "defaults::weight")]
    pub weight: Spanned<u32>,
    /// 0: unlimited.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: Spanned<u32>,
    /// Priority group (BIG-IP style: higher first). New connections go to
    /// the highest group with a server that can take them; a group spills
    /// to the next when all its servers are down or full (seed 002
    /// "優先順位", seed 003 "Priority").
    #[serde(default = "defaults::priority")]
    pub priority: Spanned<u16>,
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
        unplaced(Algorithm::RoundRobin)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    /// HTTP/1.1 (and h2c) served by the L7 engine through the exception
    /// path: the box terminates the client's TCP and opens its own to the
    /// chosen server (`l7`).
    Http,
    /// HTTPS: TLS terminated by the L7 engine (`tls`), then as `http`.
    Https,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Forwarding {
    Nat,
    FullNat,
    DsrL2,
    DsrDscp,
    DsrTunnel,
    /// Firewall load balancing (seed 002): transparent, any destination
    /// arriving on `interface`, to a pool member's MAC.
    Gateway,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualServer {
    pub name: Spanned<String>,
    #[serde(deserialize_with = "spanned_socket_addr")]
    pub address: Spanned<SocketAddr>,
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
    /// `dsr-dscp`: the DSCP (1..=63) that names this VIP to its servers.
    pub dscp: Option<Spanned<u8>>,
    /// `dsr-tunnel`: the encapsulation (`ipip`, `gre`, `gue`).
    pub tunnel: Option<Spanned<TunnelKind>>,
    /// `dsr-tunnel`: outer source addresses, one per flow from this prefix
    /// (default: the self IP towards the server).
    pub tunnel_source: Option<Spanned<Ipv4Cidr>>,
    /// `tunnel = "gue"`: the servers' GUE UDP port (default 6080).
    pub tunnel_port: Option<Spanned<u16>>,
    /// `gateway`: the interface whose arriving traffic it takes.
    pub interface: Option<Spanned<String>>,
    /// `gateway`: the gateway service on the other side of the same
    /// firewalls (their legs there, in the same order): a firewall is used
    /// while both its legs are up, so a flow's two directions meet one.
    pub pair: Option<Spanned<String>>,
    /// TCP `nat` and `full-nat`: when the box answers SYNs itself with SYN
    /// cookies (README, "Defence"). Default `auto`.
    #[serde(default)]
    pub syn_proxy: Option<Spanned<SynProxyMode>>,
    /// TCP `full-nat`: a PROXY protocol header before each connection's
    /// client stream (`"v2"`), so the servers learn the client's address
    /// (README, "The client's address at L4").
    #[serde(default)]
    pub proxy_protocol: Option<Spanned<ProxyProtocol>>,
    /// `http`: content switching, `[[virtual_server.rule]]` (`l7`).
    #[serde(default)]
    pub rule: Vec<super::l7::Rule>,
    /// `http`: how the servers learn the client's address (`l7`).
    #[serde(default)]
    pub client_address: Vec<Spanned<super::l7::ClientAddress>>,
    #[serde(default)]
    pub x_forwarded_for: Option<Spanned<super::l7::XffMode>>,
    /// `http`: clients whose `X-Forwarded-For` is kept (`append`).
    #[serde(default)]
    pub trusted_proxies: Vec<Ipv4Cidr>,
    /// `http`: header actions on requests and on responses (`l7`).
    #[serde(default)]
    pub http_request: Vec<super::l7::HeaderAction>,
    #[serde(default)]
    pub http_response: Vec<super::l7::HeaderAction>,
    /// `http`: the bounds on each phase of a request (`l7`).
    #[serde(default)]
    pub limits: Option<Spanned<super::l7::Limits>>,
    /// `http`: the page answered with 503 when no server can take a
    /// request (read at each load).
    #[serde(default)]
    pub sorry_page: Option<Spanned<String>>,
    /// `https`: the certificates (`config::tls`).
    #[serde(default)]
    pub tls: Option<Spanned<super::tls::Tls>>,
    /// `http`, `https`: TLS to the servers, verified (`config::tls`).
    #[serde(default)]
    pub server_tls: Option<Spanned<super::tls::ServerTls>>,
}

/// `proxy_protocol` of a TCP full-NAT virtual server: HAProxy's PROXY
/// protocol, version 2 (binary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ProxyProtocol {
    #[serde(rename = "v2")]
    V2,
}

/// `syn_proxy`: `auto` (while the worker's half-open entries pass
/// `[defence] syn_proxy_threshold`), `on` (always) or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SynProxyMode {
    #[default]
    Auto,
    On,
    Off,
}

/// An interface's MTU when it names none (Ethernet's).
pub const DEFAULT_MTU: u16 = 1500;
/// The GUE port when `tunnel_port` names none (IANA's for GUE).
pub const DEFAULT_GUE_PORT: u16 = 6080;

/// `dsr-tunnel`'s encapsulations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TunnelKind {
    Ipip,
    Gre,
    Gue,
}

impl VirtualServer {
    fn default_protocol() -> Protocol {
        Protocol::Tcp
    }
    fn default_forwarding() -> Spanned<Forwarding> {
        unplaced(Forwarding::Nat)
    }
}
