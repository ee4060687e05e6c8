//! `[l7]`: the L7 engine, the appliance's own HTTP reverse proxy that
//! serves `protocol = "http"` virtual servers through the exception path
//! (README, "L7 virtual servers"). Every key has a default; the section
//! needs a restart to change (the engine's threads are made at start).

use super::bounds::{self, Bound};
use serde::Deserialize;
use toml::Spanned;

/// A default value, with no place in the file.
use super::cidr::unplaced;

/// `[l7]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct L7 {
    /// The engine's threads (its tokio runtime's workers).
    pub threads: Spanned<u32>,
    /// The CPUs they may run on (Linux CPU numbers). Default: every CPU
    /// the process may use but the worker lcores' (EAL's `-l`/`--lcores`
    /// map lcore N to CPU N unless told otherwise).
    pub cpus: Option<Spanned<Vec<u32>>>,
    /// A rule's script may run this many of Rhai's operations per request
    /// (`config::script`).
    pub script_max_operations: Spanned<u32>,
    /// The access log's file (none: no access log), one line per answer
    /// in the combined log format (`modules::l7::stats`).
    pub access_log: Option<Spanned<String>>,
    /// Lines it takes per second at most; the rest are counted
    /// (`access-log-dropped`), not written.
    pub access_log_rate: Spanned<u32>,
}

/// `[[virtual_server.rule]]` of an `http` virtual server: the first rule
/// whose every condition holds picks the pool for a request (BIG-IP's
/// LTM policies, HAProxy's `use_backend ... if`); none: the virtual
/// server's own pool. A rule with a `script` holds when its conditions do
/// and then the script names one of its `pools` (or, with `pool`, says
/// `true`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The request's host (`Host`, or an h2 request's authority), without
    /// its port, compared without case; `*.example` also matches every
    /// name under `example`.
    pub host: Option<Spanned<String>>,
    /// The path starts with it.
    pub path_prefix: Option<Spanned<String>>,
    /// The path matches it (Rust's `regex` syntax, unanchored).
    pub path_regex: Option<Spanned<String>>,
    /// The path's last segment ends in `.EXTENSION` (without case).
    pub extension: Option<Spanned<String>>,
    /// The method (`GET`, `POST`, ...).
    pub method: Option<Spanned<String>>,
    /// A query parameter.
    pub query: Option<Spanned<Match>>,
    /// A request header (`User-Agent`).
    pub header: Option<Spanned<Match>>,
    /// Where a rule that holds sends the request (required without
    /// `script`).
    pub pool: Option<Spanned<String>>,
    /// A Rhai script (`config::script`; iRules' place): it returns one of
    /// `pools`, `()` (the rule does not hold), or `true`/`false` with `pool`.
    pub script: Option<Spanned<String>>,
    /// The pools the script may name.
    pub pools: Option<Spanned<Vec<Spanned<String>>>>,
    /// How much of the request's body the script may read (`body()`).
    pub body_bytes: Option<Spanned<u32>>,
    /// `script`, compiled when the configuration is loaded.
    #[serde(skip)]
    pub compiled: super::script::Compiled,
}

/// A named value of the request, and how it must look: `equals`,
/// `contains` or `regex` (at most one; none: present).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    pub name: String,
    pub equals: Option<String>,
    pub contains: Option<String>,
    pub regex: Option<String>,
}

/// A TOML basic string of `s` (`render::q`, passed in: this module is
/// below `render`).
pub(super) type Quote<'a> = &'a dyn Fn(&str) -> String;

impl Match {
    fn render(&self, q: Quote<'_>) -> String {
        let mut s = format!("{{ name = {}", q(&self.name));
        for (k, v) in [("equals", &self.equals), ("contains", &self.contains), ("regex", &self.regex)] {
            if let Some(v) = v {
                s.push_str(&format!(", {k} = {}", q(v)));
            }
        }
        s.push_str(" }");
        s
    }
}

impl Rule {
    /// The rule as a TOML table, for `render`.
    pub(super) fn render(&self, q: Quote<'_>) -> String {
        let mut s = String::from("\n[[virtual_server.rule]]\n");
        for (k, v) in [("host", &self.host), ("path_prefix", &self.path_prefix), ("path_regex", &self.path_regex), ("extension", &self.extension), ("method", &self.method)] {
            if let Some(v) = v {
                s.push_str(&format!("{k} = {}\n", q(v.get_ref())));
            }
        }
        for (k, v) in [("query", &self.query), ("header", &self.header)] {
            if let Some(v) = v {
                s.push_str(&format!("{k} = {}\n", v.get_ref().render(q)));
            }
        }
        if let Some(p) = &self.pool {
            s.push_str(&format!("pool = {}\n", q(p.get_ref())));
        }
        if let Some(p) = &self.pools {
            let names: Vec<String> = p.get_ref().iter().map(|n| q(n.get_ref())).collect();
            s.push_str(&format!("pools = [{}]\n", names.join(", ")));
        }
        if let Some(b) = &self.body_bytes {
            s.push_str(&format!("body_bytes = {}\n", b.get_ref()));
        }
        if let Some(t) = &self.script {
            s.push_str(&format!("script = {}\n", super::script::render(t.get_ref(), q)));
        }
        s
    }

    /// Where to point at the rule as a whole: its pool, its script, or a
    /// condition.
    pub fn at(&self) -> std::ops::Range<usize> {
        let named = [&self.pool, &self.script, &self.host, &self.path_prefix, &self.path_regex, &self.extension, &self.method].into_iter().flatten().map(Spanned::span);
        named.chain([&self.query, &self.header].into_iter().flatten().map(Spanned::span)).next().unwrap_or(0..0)
    }

    pub(super) fn conditions(&self) -> usize {
        [&self.host, &self.path_prefix, &self.path_regex, &self.extension, &self.method].iter().filter(|c| c.is_some()).count() + usize::from(self.query.is_some()) + usize::from(self.header.is_some())
    }
}

/// `client_address`: how the servers learn who the client was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAddress {
    /// `X-Forwarded-For: CLIENT` (`x_forwarded_for`: appended to what a
    /// trusted client sent, or replacing it).
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=CLIENT;proto=http;host=HOST`, appended.
    Forwarded,
    /// The PROXY protocol (HAProxy's, version 1 text or version 2 binary)
    /// at the start of each connection to a server: such a connection
    /// then carries one client's requests only.
    ProxyV1,
    ProxyV2,
}

/// `x_forwarded_for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum XffMode {
    /// The client's address after what the client sent, when the client
    /// is one of `trusted_proxies` (none by default: a client can plant
    /// any address in front); otherwise alone.
    #[default]
    Append,
    /// The client's address alone, whatever the client sent.
    Replace,
}

/// `[[virtual_server.http_request]]` / `[[virtual_server.http_response]]`:
/// what is done to a header on the way to the server, or back (HAProxy's
/// `http-request`/`http-response` actions of the same names).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderAction {
    pub action: Spanned<HeaderVerb>,
    pub name: Spanned<String>,
    /// `add-header`, `set-header`: the value; `replace-header`: the
    /// replacement (`$1`.. name `match`'s groups).
    pub value: Option<Spanned<String>>,
    /// `replace-header`: a regex over the value.
    #[serde(rename = "match")]
    pub pattern: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeaderVerb {
    AddHeader,
    SetHeader,
    DelHeader,
    ReplaceHeader,
}

impl HeaderVerb {
    /// As the configuration spells it.
    pub fn name(self) -> &'static str {
        match self {
            HeaderVerb::AddHeader => "add-header",
            HeaderVerb::SetHeader => "set-header",
            HeaderVerb::DelHeader => "del-header",
            HeaderVerb::ReplaceHeader => "replace-header",
        }
    }
}

impl HeaderAction {
    pub(super) fn render(&self, table: &str, q: Quote<'_>) -> String {
        let mut s = format!("\n[[virtual_server.{table}]]\naction = {}\nname = {}\n", q(self.action.get_ref().name()), q(self.name.get_ref()));
        if let Some(v) = &self.value {
            s.push_str(&format!("value = {}\n", q(v.get_ref())));
        }
        if let Some(m) = &self.pattern {
            s.push_str(&format!("match = {}\n", q(m.get_ref())));
        }
        s
    }
}

/// `limits` of an `http` virtual server: every phase of a request is
/// bounded (HAProxy's `timeout http-request`, `timeout client`, `timeout
/// server`, `tune.bufsize`; nginx's `client_max_body_size`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// A request's header must arrive within this (a slowloris client is
    /// cut at it), counted from the end of the previous answer on a
    /// kept-alive connection: so it is also how long one may stay idle
    /// (HAProxy's `timeout http-request` and `timeout http-keep-alive`).
    pub header_timeout_s: Spanned<u32>,
    /// A server must begin its answer within this: else 504. Also how
    /// long an answer's body may pause (the rest is cut).
    pub server_timeout_s: Spanned<u32>,
    /// While a request is under way, the client must move bytes at least
    /// this often: a request's body that pauses longer gets 408 (before
    /// the server answered) or is cut, an answer the client does not
    /// read (a zero window) ends its connection (HAProxy's `timeout
    /// client`, nginx's `client_body_timeout` and `send_timeout`).
    pub client_timeout_s: Spanned<u32>,
    /// A request's start line and headers: bytes (else 431).
    pub max_header_bytes: Spanned<u32>,
    /// And how many headers (else 431).
    pub max_headers: Spanned<u32>,
    /// A request's body, bytes (else 413).
    pub max_body_bytes: Spanned<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout_s: unplaced(10),
            server_timeout_s: unplaced(60),
            client_timeout_s: unplaced(30),
            max_header_bytes: unplaced(16384),
            max_headers: unplaced(100),
            max_body_bytes: unplaced(10 * 1024 * 1024),
        }
    }
}

impl Limits {
    pub(super) fn render(&self) -> String {
        format!(
            "limits = {{ header_timeout_s = {}, server_timeout_s = {}, client_timeout_s = {}, max_header_bytes = {}, max_headers = {}, max_body_bytes = {} }}",
            self.header_timeout_s.get_ref(),
            self.server_timeout_s.get_ref(),
            self.client_timeout_s.get_ref(),
            self.max_header_bytes.get_ref(),
            self.max_headers.get_ref(),
            self.max_body_bytes.get_ref()
        )
    }

    pub(super) fn bounded(&self) -> [(&'static Bound, &Spanned<u32>); 5] {
        [
            (&bounds::HEADER_TIMEOUT_S, &self.header_timeout_s),
            (&bounds::SERVER_TIMEOUT_S, &self.server_timeout_s),
            (&bounds::CLIENT_TIMEOUT_S, &self.client_timeout_s),
            (&bounds::MAX_HEADER_BYTES, &self.max_header_bytes),
            (&bounds::MAX_HEADERS, &self.max_headers),
        ]
    }
}

impl Default for L7 {
    fn default() -> Self {
        Self { threads: unplaced(1), cpus: None, script_max_operations: unplaced(100_000), access_log: None, access_log_rate: unplaced(1000) }
    }
}

impl L7 {
    /// Each number with its range, for `validate`.
    pub(super) fn bounded(&self) -> Vec<(&'static Bound, &Spanned<u32>)> {
        vec![(&bounds::L7_THREADS, &self.threads), (&bounds::SCRIPT_MAX_OPERATIONS, &self.script_max_operations), (&bounds::ACCESS_LOG_RATE, &self.access_log_rate)]
    }

    /// The section as TOML, for `render`.
    pub(super) fn render(&self) -> String {
        let mut s = format!("\n[l7]\nthreads = {}\nscript_max_operations = {}\n", self.threads.get_ref(), self.script_max_operations.get_ref());
        if let Some(c) = &self.cpus {
            let list: Vec<String> = c.get_ref().iter().map(u32::to_string).collect();
            s.push_str(&format!("cpus = [{}]\n", list.join(", ")));
        }
        if let Some(a) = &self.access_log {
            // A path: no quote or control character can be in one the
            // check accepted.
            s.push_str(&format!("access_log = \"{}\"\naccess_log_rate = {}\n", a.get_ref(), self.access_log_rate.get_ref()));
        }
        s
    }
}

