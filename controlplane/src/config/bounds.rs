//! The allowed range of every numeric key (README, "Configuration
//! reference", where each is documented beside its key).
//!
//! The ranges are what an operator of an L4 balancer expects (BIG-IP,
//! HAProxy, keepalived, IPVS) cut to what this code can handle: the flow
//! table's `MAX_CAPACITY`, the 100 ms timer tick, DPDK's lcore and
//! descriptor limits, the schedulers' cost per unit of weight. `validate`
//! refuses a value outside its range with the value's place and the range;
//! `Config::parse` does the same for an integer too large or negative for
//! the key's type (`refusal_at`).

use std::fmt::Display;
use std::ops::Range;

/// The allowed values of one numeric key, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// The key as written in the file.
    pub key: &'static str,
    pub min: u64,
    pub max: u64,
}

impl Bound {
    const fn new(key: &'static str, min: u64, max: u64) -> Self {
        Self { key, min, max }
    }

    pub fn contains(&self, v: u64) -> bool {
        (self.min..=self.max).contains(&v)
    }

    /// `weight 4000000000 is out of range: allowed 0..=10000`; `value` as
    /// the operator wrote it.
    pub fn refusal(&self, value: impl Display) -> String {
        format!("{} {value} is out of range: allowed {}..={}", self.key, self.min, self.max)
    }
}

/// The largest weight of a pool member, in the file and on the console
/// (`server POOL ADDR weight N`, `add-server ... weight N`). Weighted round
/// robin builds a sequence as long as the pool's total weight, so this
/// keeps a rebuild within milliseconds (HAProxy allows 0..=256, IPVS
/// 0..=65535; BIG-IP ratios go to 65535).
pub const MAX_WEIGHT: u32 = 10_000;

/// The highest lcore id: DPDK's `RTE_MAX_LCORE` is 128 in the Debian
/// package and the default meson build.
pub const MAX_LCORE_ID: u32 = 127;

/// The largest connection table per worker: the flow table's
/// `MAX_CAPACITY` (2^30 entries of 64 bytes, 64 GiB).
pub const MAX_FLOWS_PER_WORKER: u32 = furiwake_dataplane::conntrack::MAX_CAPACITY;

/// The longest persistence timeout (a week).
pub const MAX_PERSISTENCE_TIMEOUT_S: u32 = 7 * 86400;

/// The longest idle timeout of a connection entry (a week, as
/// persistence): the 100 ms tick counter must not come near wrapping.
pub const MAX_IDLE_TIMEOUT_S: u32 = 7 * 86400;

// [platform]
pub const CONTROL_LCORE: Bound = Bound::new("control_lcore", 0, MAX_LCORE_ID as u64);
pub const WORKER_LCORE: Bound = Bound::new("worker_lcores", 0, MAX_LCORE_ID as u64);
/// At least a few bursts of connections; at most the flow table's limit.
pub const FLOWS_PER_WORKER: Bound = Bound::new("flows_per_worker", 1024, MAX_FLOWS_PER_WORKER as u64);
pub const FLOWS_PER_WORKER_V6: Bound = Bound::new("flows_per_worker_v6", 1024, MAX_FLOWS_PER_WORKER as u64);
/// 2^10 - 1 to 2^24 - 1 mbufs (DPDK sizes pools best at 2^n - 1); 2^24
/// mbufs of 2.3 KiB are ~38 GiB of hugepages.
pub const MBUFS: Bound = Bound::new("mbufs", 1023, (1 << 24) - 1);
/// Ring sizes DPDK drivers accept (ixgbe and i40e up to 4096, mlx5 up to
/// 32768); each port rounds to its own limits.
pub const RX_DESCRIPTORS: Bound = Bound::new("rx_descriptors", 64, 32768);
pub const TX_DESCRIPTORS: Bound = Bound::new("tx_descriptors", 64, 32768);
/// Up to 10 ms: a worker asleep longer lets its RX ring overflow at a few
/// thousand packets per second.
pub const IDLE_SLEEP_US: Bound = Bound::new("idle_sleep_us", 0, 10_000);
/// Up to 2 ms: VRRP adverts as often as every 10 ms are sent on time.
pub const CONTROL_IDLE_SLEEP_US: Bound = Bound::new("control_idle_sleep_us", 0, 2_000);
/// 24 bytes each, per worker: 2^26 records are 1.5 GiB.
pub const PERSISTENCE_RECORDS: Bound = Bound::new("persistence_records", 1024, 1 << 26);

// [[health_check]]
/// 100 ms (the control loop's resolution for probes is far finer, but
/// faster probing is load, not detection) to an hour.
pub const INTERVAL_MS: Bound = Bound::new("interval_ms", 100, 3_600_000);
/// 10 ms to a minute (scripts included).
pub const TIMEOUT_MS: Bound = Bound::new("timeout_ms", 10, 60_000);
pub const FALL: Bound = Bound::new("fall", 1, 100);
pub const RISE: Bound = Bound::new("rise", 1, 100);
pub const PORT: Bound = Bound::new("port", 1, 65535);
/// An HTTP status code (RFC 9110 §15).
pub const EXPECT_STATUS: Bound = Bound::new("expect_status", 100, 599);

// [[pool]] servers
pub const WEIGHT: Bound = Bound::new("weight", 0, MAX_WEIGHT as u64);
/// 0 is no limit; no server holds more than a worker's table can.
pub const MAX_CONNECTIONS: Bound = Bound::new("max_connections", 0, MAX_FLOWS_PER_WORKER as u64);
/// BIG-IP's priority group range.
pub const PRIORITY: Bound = Bound::new("priority", 0, 65535);

// [[virtual_server]] persistence
pub const PERSISTENCE_TIMEOUT_S: Bound = Bound::new("timeout_s", 1, MAX_PERSISTENCE_TIMEOUT_S as u64);
/// The netmask's prefix length: /8 (one record per 255.0.0.0 block) to
/// /32. A shorter mask would send most clients to one server.
pub const NETMASK_PREFIX: Bound = Bound::new("netmask", 8, 32);

/// A DSCP (RFC 2474 §6): six bits; 0 is the default class, not a mark.
pub const DSCP: Bound = Bound::new("dscp", 1, 63);
pub const TUNNEL_PORT: Bound = Bound::new("tunnel_port", 1, 65535);
/// [[interface]] mtu: RFC 791's 576 (every host takes it) to a jumbo
/// frame's 9216.
pub const MTU: Bound = Bound::new("mtu", 576, 9216);
/// IEEE 802.1Q: 0 and 4095 are reserved.
pub const VLAN: Bound = Bound::new("vlan", 1, 4094);

// [l7]
/// The L7 engine's threads.
pub const L7_THREADS: Bound = Bound::new("threads", 1, 64);
/// An `http` virtual server's `limits`: seconds (a day at most), bytes
/// (hyper's smallest buffer is 8 KiB; 1 MiB of headers is plenty), a body
/// of up to 64 GiB (0: none may have one).
pub const HEADER_TIMEOUT_S: Bound = Bound::new("header_timeout_s", 1, 86_400);
pub const SERVER_TIMEOUT_S: Bound = Bound::new("server_timeout_s", 1, 86_400);
pub const CLIENT_TIMEOUT_S: Bound = Bound::new("client_timeout_s", 1, 86_400);
pub const MAX_HEADER_BYTES: Bound = Bound::new("max_header_bytes", 8192, 1_048_576);
pub const MAX_HEADERS: Bound = Bound::new("max_headers", 1, 10_000);
pub const MAX_BODY_BYTES: Bound = Bound::new("max_body_bytes", 0, 64 * 1024 * 1024 * 1024);
/// A rule's script: Rhai operations per request (each some tens of
/// nanoseconds: the most is about a second of one engine thread), and
/// the bytes of the body it may read (its strings are capped at
/// `script::MAX_STRING`, 1 MiB, which the body fits even with every
/// byte replaced).
pub const SCRIPT_MAX_OPERATIONS: Bound = Bound::new("script_max_operations", 1, 10_000_000);
/// `[l7] access_log_rate`: lines per second.
pub const ACCESS_LOG_RATE: Bound = Bound::new("access_log_rate", 1, 1_000_000);
pub const SCRIPT_BODY_BYTES: Bound = Bound::new("body_bytes", 0, 256 * 1024);
/// An inserted cookie's `Max-Age`: a second to a year.
pub const COOKIE_EXPIRES_S: Bound = Bound::new("expires_s", 1, 31_536_000);

// [defence]
/// Half-open entries per worker: at least one, at most a table's worth.
pub const EMBRYONIC_PER_WORKER: Bound = Bound::new("embryonic_per_worker", 1, MAX_FLOWS_PER_WORKER as u64);
pub const UNREPLIED_PER_SERVICE: Bound = Bound::new("unreplied_per_service", 1, MAX_FLOWS_PER_WORKER as u64);
pub const UNREPLIED_PER_SOURCE: Bound = Bound::new("unreplied_per_source", 1, MAX_FLOWS_PER_WORKER as u64);
pub const SYN_PROXY_THRESHOLD: Bound = Bound::new("syn_proxy_threshold", 1, MAX_FLOWS_PER_WORKER as u64);
/// Generated ICMP errors and refusals per second per worker; 0 sends none.
pub const ICMP_RATE: Bound = Bound::new("icmp_rate", 0, 10_000_000);
pub const ICMP_BURST: Bound = Bound::new("icmp_burst", 1, 1_000_000);
/// [defence.punt], packets per second per worker; 0 drops the class.
pub const PUNT_RATES: [Bound; 7] = [
    Bound::new("arp", 0, 10_000_000),
    Bound::new("vrrp", 0, 10_000_000),
    Bound::new("ha", 0, 10_000_000),
    Bound::new("nd", 0, 10_000_000),
    Bound::new("probe", 0, 10_000_000),
    Bound::new("icmp", 0, 10_000_000),
    Bound::new("other", 0, 10_000_000),
];

// [timeouts], seconds
pub const TCP_SYN: Bound = Bound::new("tcp_syn", 1, MAX_IDLE_TIMEOUT_S as u64);
pub const TCP_ESTABLISHED: Bound = Bound::new("tcp_established", 1, MAX_IDLE_TIMEOUT_S as u64);
pub const TCP_FIN: Bound = Bound::new("tcp_fin", 1, MAX_IDLE_TIMEOUT_S as u64);
pub const TCP_TIME_WAIT: Bound = Bound::new("tcp_time_wait", 1, MAX_IDLE_TIMEOUT_S as u64);
pub const TCP_CLOSE: Bound = Bound::new("tcp_close", 1, MAX_IDLE_TIMEOUT_S as u64);
pub const UDP: Bound = Bound::new("udp", 1, MAX_IDLE_TIMEOUT_S as u64);
pub const ICMP: Bound = Bound::new("icmp", 1, MAX_IDLE_TIMEOUT_S as u64);
pub const UDP_UNREPLIED: Bound = Bound::new("udp_unreplied", 1, MAX_IDLE_TIMEOUT_S as u64);

// [[vrrp]] (RFC 5798 §5.2: VRID 1..=255, priority 1..=255 with 255 the
// owner's, the v3 interval in centiseconds up to 4095; RFC 3768 §5.3.7:
// the v2 interval in seconds up to 255)
pub const VRID: Bound = Bound::new("vrid", 1, 255);
pub const VRRP_PRIORITY: Bound = Bound::new("priority", 1, 255);
pub const ADVERT_INTERVAL_MS_V3: Bound = Bound::new("advert_interval_ms", 10, 40_950);
pub const ADVERT_INTERVAL_MS_V2: Bound = Bound::new("advert_interval_ms", 1000, 255_000);
pub const VRRP_PREEMPT_DELAY_MS: Bound = Bound::new("preempt_delay_ms", 0, 3_600_000);
pub const TRACK_INTERVAL_MS: Bound = Bound::new("track_interval_ms", 100, 60_000);
pub const TRACK_FALL: Bound = Bound::new("track_fall", 1, 100);
pub const TRACK_POOL_MIN_UP: Bound = Bound::new("track_pool_min_up", 1, 65_535);
pub const GARP_COUNT: Bound = Bound::new("garp_count", 1, 100);
pub const GARP_INTERVAL_MS: Bound = Bound::new("garp_interval_ms", 10, 60_000);
// [sync]
pub const SYNC_PORT: Bound = Bound::new("port", 1, 65535);
/// 1 s to an hour.
pub const REFRESH_S: Bound = Bound::new("refresh_s", 1, 3600);
pub const BULK_LIMIT_MS: Bound = Bound::new("bulk_limit_ms", 0, 600_000);

/// Every bound of an integer key, to name the range of a key whose value
/// did not even fit its type.
pub const ALL: &[Bound] = &[
    CONTROL_LCORE,
    WORKER_LCORE,
    FLOWS_PER_WORKER,
    FLOWS_PER_WORKER_V6,
    MBUFS,
    RX_DESCRIPTORS,
    TX_DESCRIPTORS,
    IDLE_SLEEP_US,
    CONTROL_IDLE_SLEEP_US,
    PERSISTENCE_RECORDS,
    INTERVAL_MS,
    TIMEOUT_MS,
    FALL,
    RISE,
    PORT,
    EXPECT_STATUS,
    WEIGHT,
    MAX_CONNECTIONS,
    PRIORITY,
    PERSISTENCE_TIMEOUT_S,
    DSCP,
    TUNNEL_PORT,
    MTU,
    VLAN,
    TCP_SYN,
    TCP_ESTABLISHED,
    TCP_FIN,
    TCP_TIME_WAIT,
    TCP_CLOSE,
    UDP,
    ICMP,
    VRID,
    ADVERT_INTERVAL_MS_V3,
    VRRP_PREEMPT_DELAY_MS,
    TRACK_INTERVAL_MS,
    TRACK_FALL,
    TRACK_POOL_MIN_UP,
    GARP_COUNT,
    GARP_INTERVAL_MS,
    REFRESH_S,
    BULK_LIMIT_MS,
];

/// When `span` of `text` is an integer given to a bounded key (`weight =
/// -1`, `priority = 70000`, `worker_lcores = [1, -2]`), the refusal naming
/// that key's range. The TOML parser refuses such a value because it does
/// not fit the key's type; this says what would.
pub fn refusal_at(text: &str, span: Range<usize>) -> Option<String> {
    let literal = text.get(span.clone())?.trim();
    let digits = literal.trim_start_matches(['+', '-']);
    if digits.is_empty() || !digits.starts_with(|c: char| c.is_ascii_digit()) || !digits.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    // Back from the value to its key: over earlier elements of an array
    // of integers, then `=`, then the bare key.
    let before = text.get(..span.start)?;
    let before = before.trim_end_matches(|c: char| c.is_whitespace() || c.is_ascii_digit() || "[,+-_".contains(c));
    let before = before.strip_suffix('=')?.trim_end_matches([' ', '\t']);
    let start = before.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')).map_or(0, |i| i + 1);
    let key = before.get(start..)?;
    ALL.iter().find(|b| b.key == key).map(|b| b.refusal(literal))
}
