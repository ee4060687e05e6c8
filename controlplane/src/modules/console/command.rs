//! The console's language: parsing a line into a `Command`, the help texts,
//! and tab completion. Pure functions, shared by the appliance (which
//! parses and executes) and `furiwake console` (which completes).
//!
//! Words may be abbreviated to any unique prefix (`sh vir` is `show
//! virtual-servers`), as on the routers and load balancers operators know.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// An address argument of either family: `IP` or `IP:PORT`, an IPv6
/// address with a port in brackets (`[2001:db8::1]:80`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrArg {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl fmt::Display for AddrArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}", SocketAddr::new(self.ip, p)),
            None => write!(f, "{}", self.ip),
        }
    }
}

impl std::str::FromStr for AddrArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an address: expected IP or IP:PORT, such as 198.51.100.11:80 or [2001:db8::11]:80");
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(AddrArg { ip, port: None });
        }
        let a: SocketAddr = s.parse().map_err(|_| bad())?;
        Ok(AddrArg { ip: a.ip(), port: Some(a.port()) })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerAction {
    /// Takes new connections again (when its health checks pass).
    Enable,
    /// Forced offline: no new connections of any kind; existing ones run on.
    Disable,
    /// No new connections from the scheduler; existing ones finish.
    Drain,
    Weight(u32),
}

/// The largest weight the console accepts: the configuration's, so a
/// weight set here is one `config save` writes and `check-config` accepts.
pub use crate::config::MAX_WEIGHT;
/// `show connections` lists this many entries unless told otherwise.
pub const DEFAULT_LIMIT: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Show {
    VirtualServers { name: Option<String> },
    Pools,
    Servers { pool: Option<String> },
    Connections { vip: Option<AddrArg>, server: Option<AddrArg>, limit: u32 },
    /// Persistence records (the workers' and the L7 engine's).
    Persistence { vs: Option<String>, server: Option<AddrArg>, limit: u32 },
    Stats,
    Arp,
    /// IPv6 Neighbor Discovery: the links' addresses and the neighbours.
    Ndp,
    Routes,
    Health,
    Workers,
    Config,
    Vrrp,
    Sync,
    L7,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `help` or `help WORDS...`.
    Help(Vec<String>),
    Show(Show),
    Server { pool: String, addr: AddrArg, action: ServerAction },
    /// `pool POOL add-server IP:PORT [weight N]`.
    AddServer { pool: String, addr: std::net::SocketAddrV4, weight: u32 },
    /// `pool POOL remove-server ADDR`.
    RemoveServer { pool: String, addr: AddrArg },
    /// `virtual-server add NAME IP:PORT POOL [tcp|udp] [nat|full-nat|dsr-l2|dsr-dscp CODE|dsr-tunnel ipip|gre|gue]`.
    AddVirtualServer { name: String, addr: std::net::SocketAddrV4, pool: String, udp: bool, mode: crate::modules::lb::VsMode },
    /// `virtual-server remove NAME`.
    RemoveVirtualServer { name: String },
    /// `config reload`.
    Reload,
    /// `config save [PATH]`.
    Save { path: Option<String> },
    /// `log level LEVEL`.
    LogLevel(String),
    /// `vrrp NAME priority N`.
    VrrpPriority { name: String, priority: u8 },
    /// `vrrp NAME release`.
    VrrpRelease { name: String },
    /// Object names for completion (`furiwake console` asks at start).
    Names,
    /// The greeting `furiwake console` prints: version, configuration,
    /// and a warning when the box runs on its last good configuration.
    Banner,
    /// Ends the session (the client's; the appliance just says bye).
    Quit,
}

/// One command of the help.
pub struct Spec {
    pub words: &'static str,
    pub args: &'static str,
    pub summary: &'static str,
}

/// Every command, in the order `help` lists them.
pub const SPECS: &[Spec] = &[
    Spec { words: "show virtual-servers", args: "[NAME]", summary: "virtual servers: address, protocol, forwarding, pool, servers up, connections" },
    Spec { words: "show pools", args: "", summary: "pools: algorithm, health checks, sorry pool, servers up/total" },
    Spec {
        words: "show servers",
        args: "[POOL]",
        summary: "real servers: state (up, down, disabled, draining), weight, priority, active/total connections, RTT, last check",
    },
    Spec {
        words: "show connections",
        args: "[vip ADDR] [server ADDR] [limit N]",
        summary: "connection entries (seed 001 layout: client side and server side addresses, state, idle/timeout); ADDR is IP or IP:PORT; limit defaults to 100",
    },
    Spec {
        words: "show persistence",
        args: "[virtual-server NAME] [server IP] [limit N]",
        summary: "persistence records: group, client (or the first characters of a cookie or session ID), server, open connections, time left",
    },
    Spec { words: "show stats", args: "", summary: "per port, virtual server and server: pps, bps, new connections/s, concurrent; drops by reason" },
    Spec { words: "show arp", args: "", summary: "neighbours learned by ARP, and the next hops kept resolved for the workers" },
    Spec { words: "show ndp", args: "", summary: "IPv6: each interface's addresses and the neighbours learned by Neighbor Discovery" },
    Spec { words: "show routes", args: "", summary: "connected subnets and static routes" },
    Spec { words: "show health", args: "", summary: "every health check of every server: result, runs, last reason, RTT" },
    Spec { words: "show workers", args: "", summary: "per worker lcore: packets, busy ratio, hand-offs, connections, drops" },
    Spec { words: "show config", args: "", summary: "the running configuration, with the changes made at run time" },
    Spec {
        words: "show sync",
        args: "",
        summary: "connection-state sync: peer, datagrams and records sent/received, drops by reason, lag, the last bulk dump",
    },
    Spec { words: "show l7", args: "", summary: "the L7 engine: its virtual servers and source addresses, connections, requests, responses by status class" },
    Spec {
        words: "show vrrp",
        args: "",
        summary: "VRRP instances: state, priority and effective priority (with the tracking that lowered it), master, last transition and why, adverts",
    },
    Spec { words: "server", args: "POOL ADDR enable", summary: "take new connections again (when the health checks pass)" },
    Spec {
        words: "server",
        args: "POOL ADDR disable",
        summary: "forced offline: no new connections at all (not even persistent clients); existing connections run on",
    },
    Spec { words: "server", args: "POOL ADDR drain", summary: "no new connections from the scheduler; existing connections finish (maintenance)" },
    Spec { words: "server", args: "POOL ADDR weight N", summary: "new connections follow weight N (0..10000); existing connections untouched" },
    Spec { words: "pool", args: "POOL add-server IP:PORT [weight N]", summary: "a new member of POOL, for new connections (health checks first, when the pool has them)" },
    Spec {
        words: "pool",
        args: "POOL remove-server ADDR",
        summary: "no new connections to it; its open connections finish, then it goes (`show servers` lists it as removed until then)",
    },
    Spec {
        words: "virtual-server",
        args: "add NAME IP:PORT POOL [tcp|udp] [nat|full-nat|dsr-l2|dsr-dscp CODE|dsr-tunnel ipip|gre|gue]",
        summary: "a new virtual server (default tcp, nat), checked as a file is; ARP answered for its address at once (gateway services: in the file)",
    },
    Spec { words: "virtual-server", args: "remove NAME", summary: "no new connections; its open connections finish, then it goes" },
    Spec {
        words: "config",
        args: "reload",
        summary: "read the configuration file again and apply it without dropping connections; a bad file is refused with its line and reason, and nothing changes",
    },
    Spec { words: "config", args: "save [PATH]", summary: "write the running configuration (with the changes made here) to the configuration file, or PATH" },
    Spec { words: "log", args: "level error|warn|info|debug|trace", summary: "what goes to the log from now on" },
    Spec { words: "vrrp", args: "NAME priority N", summary: "the instance's priority (1..255) from its next advert; a peer with preemption follows it" },
    Spec {
        words: "vrrp",
        args: "NAME release",
        summary: "orderly handover: a master sends a priority-0 advert, gives its addresses up and does not preempt until it is master again",
    },
    Spec { words: "help", args: "[COMMAND]", summary: "this list, or one command's" },
    Spec { words: "quit", args: "", summary: "leave the console (also exit, Ctrl-D)" },
];

const TOP: &[&str] = &["show", "server", "pool", "virtual-server", "config", "log", "vrrp", "help", "quit", "exit"];
const POOL_ACTIONS: &[&str] = &["add-server", "remove-server"];
const VS_ACTIONS: &[&str] = &["add", "remove"];
const CONFIG_ACTIONS: &[&str] = &["reload", "save"];
const LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];
const SHOW: &[&str] = &["virtual-servers", "pools", "servers", "connections", "persistence", "stats", "arp", "ndp", "routes", "health", "workers", "config", "vrrp", "sync", "l7"];
const ACTIONS: &[&str] = &["enable", "disable", "drain", "weight"];
const CONN_OPTIONS: &[&str] = &["vip", "server", "limit"];
const PERSIST_OPTIONS: &[&str] = &["virtual-server", "server", "limit"];

/// `word` itself or the one word of `choices` it is a prefix of.
fn resolve<'a>(word: &str, choices: &[&'a str], what: &str) -> Result<&'a str, String> {
    if let Some(c) = choices.iter().find(|c| **c == word) {
        return Ok(c);
    }
    let hits: Vec<&&str> = choices.iter().filter(|c| c.starts_with(word)).collect();
    match hits.as_slice() {
        [one] => Ok(one),
        [] => Err(format!("unknown {what} {word:?}; expected one of: {}", choices.join(", "))),
        many => Err(format!("ambiguous {what} {word:?}: {}", many.iter().map(|s| **s).collect::<Vec<_>>().join(", "))),
    }
}

/// Parses one console line. Empty lines and `#` comments are `Ok(None)`.
pub fn parse(line: &str) -> Result<Option<Command>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some(first) = words.first() else { return Ok(None) };
    if first.starts_with('#') {
        return Ok(None);
    }
    if *first == "_names" {
        return Ok(Some(Command::Names));
    }
    if *first == "_banner" {
        return Ok(Some(Command::Banner));
    }
    let top = resolve(first, TOP, "command").map_err(|e| format!("{e} (type `help`)"))?;
    let rest = &words[1..];
    let cmd = match top {
        "help" => Command::Help(rest.iter().map(|s| s.to_string()).collect()),
        "quit" | "exit" => Command::Quit,
        "show" => Command::Show(parse_show(rest)?),
        "server" => parse_server(rest)?,
        "pool" => parse_pool(rest)?,
        "virtual-server" => parse_virtual_server(rest)?,
        "config" => {
            let u = usage("config");
            let Some(w) = rest.first() else { return Err(format!("config what?\n{u}")) };
            match (resolve(w, CONFIG_ACTIONS, "config command")?, &rest[1..]) {
                ("reload", []) => Command::Reload,
                ("save", []) => Command::Save { path: None },
                ("save", [p]) => Command::Save { path: Some(p.to_string()) },
                _ => return Err(format!("too many arguments\n{u}")),
            }
        }
        "vrrp" => match rest {
            [name, w, n] if resolve(w, &["priority"], "vrrp command").is_ok() => {
                let priority = n.parse::<u8>().ok().filter(|p| *p >= 1).ok_or_else(|| format!("priority {n:?}: allowed 1..=255"))?;
                Command::VrrpPriority { name: name.to_string(), priority }
            }
            [name, w] if resolve(w, &["release"], "vrrp command").is_ok() => Command::VrrpRelease { name: name.to_string() },
            _ => return Err(usage("vrrp")),
        },
        "log" => match rest {
            [w, level] if resolve(w, &["level"], "log command").is_ok() => Command::LogLevel(resolve(level, LEVELS, "log level")?.to_string()),
            _ => return Err(usage("log")),
        },
        _ => return Err(format!("unknown command {first:?} (type `help`)")),
    };
    Ok(Some(cmd))
}

fn usage(words: &str) -> String {
    SPECS.iter().filter(|s| s.words == words).map(|s| format!("usage: {} {}", s.words, s.args).trim_end().to_string()).collect::<Vec<_>>().join("\n")
}

fn parse_show(rest: &[&str]) -> Result<Show, String> {
    let Some(what) = rest.first() else { return Err(format!("show what? one of: {}", SHOW.join(", "))) };
    let what = resolve(what, SHOW, "show command")?;
    let args = &rest[1..];
    let one_optional = |args: &[&str]| -> Result<Option<String>, String> {
        match args {
            [] => Ok(None),
            [x] => Ok(Some(x.to_string())),
            _ => Err(format!("too many arguments\n{}", usage(&format!("show {what}")))),
        }
    };
    let none = |args: &[&str], s: Show| -> Result<Show, String> {
        if args.is_empty() {
            Ok(s)
        } else {
            Err(format!("`show {what}` takes no arguments, got {:?}", args.join(" ")))
        }
    };
    match what {
        "virtual-servers" => Ok(Show::VirtualServers { name: one_optional(args)? }),
        "pools" => none(args, Show::Pools),
        "servers" => Ok(Show::Servers { pool: one_optional(args)? }),
        "connections" => parse_connections(args),
        "persistence" => parse_persistence(args),
        "stats" => none(args, Show::Stats),
        "arp" => none(args, Show::Arp),
        "ndp" => none(args, Show::Ndp),
        "routes" => none(args, Show::Routes),
        "health" => none(args, Show::Health),
        "workers" => none(args, Show::Workers),
        "vrrp" => none(args, Show::Vrrp),
        "sync" => none(args, Show::Sync),
        "l7" => none(args, Show::L7),
        _ => none(args, Show::Config),
    }
}

fn parse_connections(args: &[&str]) -> Result<Show, String> {
    let (mut vip, mut server, mut limit) = (None, None, DEFAULT_LIMIT);
    for (opt, value) in options(args, CONN_OPTIONS, "show connections")? {
        match opt {
            "vip" => vip = Some(value.parse()?),
            "server" => server = Some(value.parse()?),
            _ => limit = parse_limit(value)?,
        }
    }
    Ok(Show::Connections { vip, server, limit })
}

fn parse_persistence(args: &[&str]) -> Result<Show, String> {
    let (mut vs, mut server, mut limit) = (None, None, DEFAULT_LIMIT);
    for (opt, value) in options(args, PERSIST_OPTIONS, "show persistence")? {
        match opt {
            "virtual-server" => vs = Some(value.to_string()),
            "server" => server = Some(value.parse()?),
            _ => limit = parse_limit(value)?,
        }
    }
    Ok(Show::Persistence { vs, server, limit })
}

/// `OPTION VALUE` pairs of `show WHAT`, each option one of `known`.
fn options<'a>(args: &[&'a str], known: &[&'static str], what: &str) -> Result<Vec<(&'static str, &'a str)>, String> {
    args.chunks(2)
        .map(|pair| {
            let opt = resolve(pair[0], known, "option").map_err(|e| format!("{e}\n{}", usage(what)))?;
            let value = pair.get(1).ok_or_else(|| format!("{opt} needs a value\n{}", usage(what)))?;
            Ok((opt, *value))
        })
        .collect()
}

fn parse_limit(value: &str) -> Result<u32, String> {
    let max = furiwake_dataplane::ctl::dump::DUMP_CAPACITY as u32;
    value.parse::<u32>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| format!("limit {value:?}: expected a number from 1 to {max}"))
}

fn parse_server(rest: &[&str]) -> Result<Command, String> {
    let u = usage("server");
    let (Some(pool), Some(addr)) = (rest.first(), rest.get(1)) else { return Err(format!("server: which pool and server?\n{u}")) };
    let addr: AddrArg = addr.parse()?;
    let Some(action) = rest.get(2) else { return Err(format!("server {pool} {addr}: what to do? one of: {}\n{u}", ACTIONS.join(", "))) };
    let action = resolve(action, ACTIONS, "server action")?;
    let extra = |n: usize| -> Result<(), String> {
        if rest.len() > n {
            Err(format!("too many arguments: {:?}\n{u}", rest[n..].join(" ")))
        } else {
            Ok(())
        }
    };
    let action = match action {
        "enable" => ServerAction::Enable,
        "disable" => ServerAction::Disable,
        "drain" => ServerAction::Drain,
        _ => {
            let Some(n) = rest.get(3) else { return Err(format!("weight needs a value from 0 to {MAX_WEIGHT}")) };
            let w = n.parse::<u32>().ok().filter(|w| *w <= MAX_WEIGHT).ok_or_else(|| format!("weight {n:?}: expected a number from 0 to {MAX_WEIGHT}"))?;
            extra(4)?;
            return Ok(Command::Server { pool: pool.to_string(), addr, action: ServerAction::Weight(w) });
        }
    };
    extra(3)?;
    Ok(Command::Server { pool: pool.to_string(), addr, action })
}

fn parse_pool(rest: &[&str]) -> Result<Command, String> {
    let u = usage("pool");
    let (Some(pool), Some(action)) = (rest.first(), rest.get(1)) else { return Err(format!("pool: which pool, and what to do?\n{u}")) };
    let action = resolve(action, POOL_ACTIONS, "pool command")?;
    let Some(addr) = rest.get(2) else { return Err(format!("pool {pool} {action}: which server?\n{u}")) };
    match (action, &rest[3..]) {
        ("remove-server", []) => Ok(Command::RemoveServer { pool: pool.to_string(), addr: addr.parse()? }),
        ("add-server", opts) => {
            let addr: std::net::SocketAddrV4 =
                addr.parse().map_err(|_| format!("{addr:?} is not IP:PORT, such as 198.51.100.14:80 (a new server needs its port)"))?;
            let weight = match opts {
                [] => 1,
                [w, n] if resolve(w, &["weight"], "option").is_ok() => {
                    n.parse::<u32>().ok().filter(|w| *w <= MAX_WEIGHT).ok_or_else(|| format!("weight {n:?}: expected a number from 0 to {MAX_WEIGHT}"))?
                }
                _ => return Err(format!("unexpected {:?}\n{u}", opts.join(" "))),
            };
            Ok(Command::AddServer { pool: pool.to_string(), addr, weight })
        }
        _ => Err(format!("too many arguments: {:?}\n{u}", rest[3..].join(" "))),
    }
}

fn parse_virtual_server(rest: &[&str]) -> Result<Command, String> {
    let u = usage("virtual-server");
    let Some(action) = rest.first() else { return Err(format!("virtual-server: add or remove?\n{u}")) };
    match (resolve(action, VS_ACTIONS, "virtual-server command")?, &rest[1..]) {
        ("remove", [name]) => Ok(Command::RemoveVirtualServer { name: name.to_string() }),
        ("add", [name, addr, pool, opts @ ..]) => {
            let addr: std::net::SocketAddrV4 = addr.parse().map_err(|_| format!("{addr:?} is not IP:PORT, such as 192.0.2.101:80"))?;
            use crate::config::{Forwarding, TunnelKind};
            let (mut udp, mut forwarding, mut dscp, mut tunnel) = (false, Forwarding::Nat, None, None);
            let mut opts = opts.iter();
            while let Some(o) = opts.next() {
                match resolve(o, &["tcp", "udp", "nat", "full-nat", "dsr-l2", "dsr-dscp", "dsr-tunnel"], "option")? {
                    "udp" => udp = true,
                    "tcp" => udp = false,
                    "full-nat" => forwarding = Forwarding::FullNat,
                    "dsr-l2" => forwarding = Forwarding::DsrL2,
                    "dsr-dscp" => {
                        forwarding = Forwarding::DsrDscp;
                        let n = opts.next().ok_or("dsr-dscp: which code? (dsr-dscp 1..63)")?;
                        dscp = Some(n.parse::<u8>().ok().filter(|d| (1..=63).contains(d)).ok_or_else(|| format!("dscp {n:?}: expected a number from 1 to 63"))?);
                    }
                    "dsr-tunnel" => {
                        forwarding = Forwarding::DsrTunnel;
                        let k = opts.next().ok_or("dsr-tunnel: which encapsulation? (dsr-tunnel ipip|gre|gue)")?;
                        tunnel = Some(match resolve(k, &["ipip", "gre", "gue"], "tunnel")? {
                            "ipip" => TunnelKind::Ipip,
                            "gre" => TunnelKind::Gre,
                            _ => TunnelKind::Gue,
                        });
                    }
                    _ => forwarding = Forwarding::Nat,
                }
            }
            Ok(Command::AddVirtualServer { name: name.to_string(), addr, pool: pool.to_string(), udp, mode: crate::modules::lb::VsMode { forwarding, dscp, tunnel } })
        }
        _ => Err(u),
    }
}

/// `help` and `help WORDS`.
pub fn help(words: &[String]) -> Result<String, String> {
    let mut out = String::new();
    if words.is_empty() {
        out.push_str("commands (words may be abbreviated; Tab completes):\n");
        let heads: Vec<String> = SPECS.iter().map(|s| format!("{} {}", s.words, s.args).trim_end().to_string()).collect();
        let width = heads.iter().map(String::len).max().unwrap_or(0);
        for (s, head) in SPECS.iter().zip(&heads) {
            out.push_str(&format!("  {head:<width$}  {}\n", s.summary));
        }
        out.push_str("`help COMMAND` for one command, e.g. `help show connections`");
        return Ok(out);
    }
    let top = resolve(&words[0], TOP, "command")?;
    let key = match (top, words.get(1)) {
        ("show", Some(w)) => format!("show {}", resolve(w, SHOW, "show command")?),
        ("exit", _) => "quit".to_string(),
        (t, _) => t.to_string(),
    };
    let hits: Vec<&Spec> = SPECS.iter().filter(|s| s.words == key || (key == "show" && s.words.starts_with("show "))).collect();
    for s in &hits {
        out.push_str(&format!("{} {}\n    {}\n", s.words, s.args, s.summary));
    }
    if key == "server" {
        out.push_str(
            "\nPOOL is a pool name, ADDR the server's IP:PORT as configured (or its IP when unique in the pool).\n\
             States: an operator's disable/drain survives health changes: a disabled server that passes its checks\n\
             stays disabled until `enable`. Changes apply to new connections at once (a new snapshot for the workers)\n\
             and are logged.",
        );
    }
    Ok(out.trim_end().to_string())
}

/// The socket protocol: the appliance answers each command line with its
/// text, then one end line. Text lines that begin with `.` get another `.`
/// in front (SMTP's dot-stuffing, RFC 5321 §4.5.2), so an end line is
/// never confused with text.
pub const END_OK: &str = ".ok";
pub const END_ERROR: &str = ".error";

/// Frames one answer for the socket.
pub fn encode(answer: &Result<String, String>) -> String {
    let (text, end) = match answer {
        Ok(t) => (t, END_OK),
        Err(t) => (t, END_ERROR),
    };
    let mut s = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        if line.starts_with('.') {
            s.push('.');
        }
        s.push_str(line);
        s.push('\n');
    }
    s.push_str(end);
    s.push('\n');
    s
}

/// One line of an answer as the client reads it.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed<'a> {
    Text(&'a str),
    End { ok: bool },
}

pub fn decode(line: &str) -> Framed<'_> {
    match line {
        END_OK => Framed::End { ok: true },
        END_ERROR => Framed::End { ok: false },
        l => Framed::Text(l.strip_prefix('.').filter(|_| l.starts_with("..")).unwrap_or(l)),
    }
}

mod complete;
pub use complete::{complete, Names};

#[cfg(test)]
mod tests;
