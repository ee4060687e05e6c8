//! Persistence beyond L4 (seeds 001-004): what keeps an HTTP client on its
//! server, read from each request and learned from each answer.
//!
//! - `cookie-insert`: the box sets `NAME=TOKEN` (the server's token, a
//!   keyed hash of its address) when a request came without a valid one;
//!   `cookie-rewrite`: the server sets `NAME=` empty and the box fills in
//!   the token; both read the token back, so no table is needed and any
//!   box of a pair understands the other's cookies (keyed with the pair's
//!   sync key).
//! - `cookie-hash`: a hash of an application cookie's value picks the
//!   server by rendezvous hashing over the available members (the same on
//!   every box; a member going down moves only its own clients).
//! - `cookie-passive` (the server's own cookie value), `session-id` (a
//!   session cookie, `;name=ID` in the path or a query parameter) and
//!   `header` (a terminal ID): a table of value -> server, learned from the
//!   server's `Set-Cookie` (or from the first request that carried the
//!   value), with an idle timeout (`timeout_s`).

use crate::config::{Config, Persistence, PersistenceKind, SameSite};
use furiwake_dataplane::lb::{self, RealServer};
use furiwake_dataplane::state::snapshot::VirtualService;
use hmac::{Hmac, KeyInit, Mac};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, COOKIE, SET_COOKIE};
use sha2::Sha256;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One learned record as the HA peer gets it: (namespace, value, server,
/// its timeout in seconds).
pub type Learned = (String, String, SocketAddrV4, u32);

/// A virtual server's persistence, compiled.
#[derive(Debug, Clone)]
pub struct Spec {
    kind: PersistenceKind,
    cookie: String,
    expires_s: Option<u32>,
    path: String,
    secure: bool,
    http_only: bool,
    same_site: Option<SameSite>,
    html_only: bool,
    query: Option<String>,
    header: Option<HeaderName>,
    timeout: Duration,
    keep_on_down: bool,
    /// The learned table's namespace: the group, or the virtual server.
    pub group: String,
    /// The tokens' key.
    key: Vec<u8>,
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// A server's token (`cookie-insert`, `cookie-rewrite`).
    Token(String),
    /// A value the table may name a server for.
    Learned(String),
    /// A value to hash over the members (`cookie-hash`).
    Hash(String),
}

impl Spec {
    pub fn of(cfg: &Config, vs: &str, group: Option<&str>, p: &Persistence) -> Option<Spec> {
        if !p.kind.is_l7() {
            return None;
        }
        let default_cookie = if p.kind == PersistenceKind::SessionId { "JSESSIONID" } else { "FWSRV" };
        let key = cfg.sync.as_ref().map_or_else(|| b"furiwake cookie".to_vec(), |s| s.key_bytes());
        Some(Spec {
            kind: p.kind,
            cookie: p.cookie.as_ref().map_or(default_cookie.to_string(), |c| c.get_ref().clone()),
            expires_s: p.expires_s.as_ref().map(|e| *e.get_ref()),
            path: p.path.as_ref().map_or("/".to_string(), |x| x.get_ref().clone()),
            secure: p.secure,
            http_only: p.http_only,
            same_site: p.same_site.as_ref().map(|x| *x.get_ref()),
            html_only: p.html_only,
            query: p.query.as_ref().map(|q| q.get_ref().clone()),
            header: p.header.as_ref().and_then(|h| HeaderName::from_bytes(h.get_ref().as_bytes()).ok()),
            timeout: Duration::from_secs(u64::from(*p.timeout_s.get_ref())),
            keep_on_down: p.keep_on_down,
            group: group.map_or_else(|| format!("vs:{vs}"), |g| format!("group:{g}")),
            key,
        })
    }

    /// How long a learned record lives unused.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The token of the server at `addr`: 16 hex digits of an HMAC of its
    /// address under the key (the pair's sync key when there is one).
    pub fn token(&self, addr: SocketAddrV4) -> String {
        let Ok(mut m) = Hmac::<Sha256>::new_from_slice(&self.key) else { return String::new() };
        m.update(b"furiwake server token\0");
        m.update(&addr.ip().octets());
        m.update(&addr.port().to_be_bytes());
        m.finalize().into_bytes().iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// What the request asks for, if anything.
    pub fn wanted<B>(&self, req: &hyper::Request<B>) -> Option<Want> {
        match self.kind {
            PersistenceKind::CookieInsert | PersistenceKind::CookieRewrite => cookie(req.headers(), &self.cookie).map(Want::Token),
            PersistenceKind::CookiePassive => cookie(req.headers(), &self.cookie).map(Want::Learned),
            PersistenceKind::CookieHash => cookie(req.headers(), &self.cookie).map(Want::Hash),
            PersistenceKind::SessionId => self.session_id(req).map(Want::Learned),
            PersistenceKind::Header => {
                let h = self.header.as_ref()?;
                req.headers().get(h).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()).map(|v| Want::Learned(v.to_string()))
            }
            // (tls-session-id is read from the ClientHello: `passthrough`.)
            PersistenceKind::SourceIp | PersistenceKind::SourceIpPort | PersistenceKind::TlsSessionId => None,
        }
    }

    /// A session ID: the cookie, `;name=ID` in the path (the cookie's name
    /// in lower case: `;jsessionid=`), or the query parameter.
    fn session_id<B>(&self, req: &hyper::Request<B>) -> Option<String> {
        if let Some(c) = cookie(req.headers(), &self.cookie) {
            return Some(c);
        }
        let param = format!(";{}=", self.cookie.to_ascii_lowercase());
        let path = req.uri().path();
        if let Some(at) = path.to_ascii_lowercase().find(&param) {
            let id: String = path[at + param.len()..].chars().take_while(|c| !matches!(c, ';' | '/' | '?')).collect();
            if !id.is_empty() {
                return Some(id);
            }
        }
        let q = self.query.as_deref()?;
        req.uri().query()?.split('&').find_map(|kv| kv.split_once('=').filter(|(k, v)| *k == q && !v.is_empty()).map(|(_, v)| v.to_string()))
    }

    /// The member of `vs` that `want` names and that can take the request
    /// (a record's server that is down counts only with `keep_on_down`,
    /// and then not now).
    pub fn resolve(&self, want: &Want, vs: &VirtualService, servers: &[RealServer], table: &Table) -> Option<u16> {
        let addr_of = |g: u16| servers.get(g as usize).map(|s| SocketAddrV4::new(Ipv4Addr::from(s.ip), s.port));
        let g = match want {
            Want::Token(t) => vs.members.iter().copied().find(|g| addr_of(*g).is_some_and(|a| self.token(a) == *t)),
            Want::Learned(v) => {
                let a = table.get(&self.group, v, self.timeout)?;
                vs.members.iter().copied().find(|g| addr_of(*g) == Some(a))
            }
            Want::Hash(v) => {
                // Rendezvous: the available member with the highest hash of
                // (value, address).
                return vs.members.iter().copied().filter(|g| lb::available(servers, *g, None)).max_by_key(|g| {
                    let a = addr_of(*g).map_or(0, |a| u64::from(u32::from(*a.ip())) << 16 | u64::from(a.port()));
                    furiwake_dataplane::hash::keyed64(a ^ fnv(v.as_bytes()), 0x6675_7269_7761_6b65)
                });
            }
        }?;
        lb::available(servers, g, None).then_some(g)
    }

    /// After the server at `to` answered: the cookie to insert or fill in,
    /// the values to learn. `want`: what the request asked for; `resolved`:
    /// whether it was honoured.
    pub fn answered<B>(&self, req_want: Option<&Want>, resolved: bool, to: SocketAddrV4, resp: &mut hyper::Response<B>, table: &Table) {
        match self.kind {
            PersistenceKind::CookieInsert => {
                let html = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("text/html"));
                if !resolved && (html || !self.html_only) {
                    if let Ok(v) = HeaderValue::from_str(&self.set_cookie(&self.token(to))) {
                        resp.headers_mut().append(SET_COOKIE, v);
                    }
                }
            }
            PersistenceKind::CookieRewrite => self.rewrite(resp.headers_mut(), &self.token(to)),
            PersistenceKind::CookiePassive | PersistenceKind::SessionId => {
                for v in set_cookies(resp.headers(), &self.cookie) {
                    table.learn(&self.group, &v, to, self.timeout);
                }
                if self.kind == PersistenceKind::SessionId {
                    self.learn(req_want, resolved, to, table);
                }
            }
            PersistenceKind::Header => self.learn(req_want, resolved, to, table),
            PersistenceKind::CookieHash | PersistenceKind::SourceIp | PersistenceKind::SourceIpPort | PersistenceKind::TlsSessionId => {}
        }
    }

    /// A value the request carried and no record honoured: the server that
    /// answered it is its server from now on; unless its record names a
    /// server that is only down and `keep_on_down` keeps it for its return.
    fn learn(&self, req_want: Option<&Want>, resolved: bool, to: SocketAddrV4, table: &Table) {
        let Some(Want::Learned(v)) = req_want else { return };
        if resolved || (self.keep_on_down && table.peek(&self.group, v, self.timeout).is_some()) {
            return;
        }
        table.learn(&self.group, v, to, self.timeout);
    }

    /// `NAME=VALUE; Path=..; Max-Age=..; Secure; HttpOnly; SameSite=..`.
    fn set_cookie(&self, value: &str) -> String {
        let mut c = format!("{}={value}; Path={}", self.cookie, self.path);
        if let Some(e) = self.expires_s {
            c.push_str(&format!("; Max-Age={e}"));
        }
        if self.secure {
            c.push_str("; Secure");
        }
        if self.http_only {
            c.push_str("; HttpOnly");
        }
        if let Some(s) = self.same_site {
            c.push_str(match s {
                SameSite::Strict => "; SameSite=Strict",
                SameSite::Lax => "; SameSite=Lax",
                SameSite::None => "; SameSite=None",
            });
        }
        c
    }

    /// The server's `Set-Cookie: NAME=` (empty) gets the token.
    fn rewrite(&self, h: &mut HeaderMap, token: &str) {
        let prefix = format!("{}=", self.cookie);
        let all: Vec<HeaderValue> = h
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| match v.to_str().ok().and_then(|s| s.strip_prefix(&prefix)) {
                Some(rest) if rest.is_empty() || rest.starts_with(';') => HeaderValue::from_str(&format!("{prefix}{token}{rest}")).unwrap_or_else(|_| v.clone()),
                _ => v.clone(),
            })
            .collect();
        h.remove(SET_COOKIE);
        for v in all {
            h.append(SET_COOKIE, v);
        }
    }
}

/// FNV-1a: spreads a cookie's value before the keyed mix.
fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| (h ^ u64::from(*x)).wrapping_mul(0x100_0000_01b3))
}

/// Cookie `name` of a request (RFC 6265 §5.4: `a=1; b=2`, any number of
/// `Cookie` headers).
pub fn cookie(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name && !v.is_empty()).then(|| v.trim_matches('"').to_string())
    })
}

/// The values a response's `Set-Cookie` headers give cookie `name`.
fn set_cookies(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let (k, rest) = v.split_once('=')?;
            let value = rest.split(';').next().unwrap_or("").trim();
            (k.trim() == name && !value.is_empty()).then(|| value.to_string())
        })
        .collect()
}



/// Learned records: (namespace, value) -> server, each until it has been
/// idle for its timeout; and the ones learned here since the control
/// plane last took them for the HA peer (`journal`).
///
/// The values are the clients' (a session ID, a header): the map holds a
/// hash of (namespace, value) under a per-boot random key (std's SipHash:
/// no client can aim values at one bucket), at most `MAX_RECORDS`; a
/// full table forgets a record the hash map yields first (an arbitrary
/// one, not one a client chose), after a bounded sweep of expired ones.
/// Values longer than `MAX_VALUE` are not learned (`too_long`).
/// One learned record: its server, last use and timeout, and for `show
/// persistence` its group and the first `SHOWN` characters of its value
/// (a session ID is a credential: the console shows no whole one).
#[derive(Debug)]
struct Rec {
    to: SocketAddrV4,
    used: Instant,
    timeout: Duration,
    group: Box<str>,
    shown: Box<str>,
}

/// Characters of a value `show persistence` shows at most (and never
/// more than half of it).
const SHOWN: usize = 12;

/// A record as `show persistence` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub group: String,
    /// The value's first characters (at most half), "…" and its length.
    pub value: String,
    pub to: SocketAddrV4,
    pub idle: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Default)]
pub struct Table {
    map: Mutex<HashMap<u64, Rec>>,
    hasher: std::collections::hash_map::RandomState,
    journal: Mutex<Vec<Learned>>,
    /// The last `MAX_REPLAY` learned here, for a peer that starts (the
    /// map keeps hashes only).
    recent: Mutex<std::collections::VecDeque<Learned>>,
    /// Values refused for their length, records forgotten for room.
    pub too_long: std::sync::atomic::AtomicU64,
    pub evicted: std::sync::atomic::AtomicU64,
}

/// Learned records at most (per engine).
const MAX_RECORDS: usize = 1 << 18;
/// The longest value learned (the sync datagram carries at most 255).
pub const MAX_VALUE: usize = 255;
/// Learned records waiting for the control plane at most (past it the
/// peer gets them with its next full copy).
const MAX_JOURNAL: usize = 1 << 16;
/// Learned records kept for a starting peer.
const MAX_REPLAY: usize = 1 << 16;
/// Expired records looked at per insert into a full table.
const SWEEP: usize = 64;

impl Table {
    fn key(&self, group: &str, value: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one((group, value))
    }

    /// The record's server, without refreshing it.
    fn peek(&self, group: &str, value: &str, timeout: Duration) -> Option<SocketAddrV4> {
        let m = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        m.get(&self.key(group, value)).filter(|r| r.used.elapsed() < timeout).map(|r| r.to)
    }

    fn get(&self, group: &str, value: &str, timeout: Duration) -> Option<SocketAddrV4> {
        let key = self.key(group, value);
        let mut m = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        match m.get_mut(&key) {
            Some(r) if now.duration_since(r.used) < timeout => {
                r.used = now;
                Some(r.to)
            }
            Some(_) => {
                m.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Learns a record here (for the HA peer too).
    pub fn learn(&self, group: &str, value: &str, to: SocketAddrV4, timeout: Duration) {
        if value.len() > MAX_VALUE || group.len() > MAX_VALUE {
            self.too_long.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        self.put(group, value, to, timeout);
        let rec: Learned = (group.to_string(), value.to_string(), to, u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX));
        let mut r = self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if r.len() >= MAX_REPLAY {
            r.pop_front();
        }
        r.push_back(rec.clone());
        drop(r);
        let mut j = self.journal.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if j.len() < MAX_JOURNAL {
            j.push(rec);
        }
    }

    /// The records learned here lately, for a peer that starts.
    pub fn replay(&self) -> Vec<Learned> {
        self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect()
    }

    /// What was learned here since the last call.
    pub fn take_journal(&self) -> Vec<Learned> {
        std::mem::take(&mut *self.journal.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    pub fn put(&self, group: &str, value: &str, to: SocketAddrV4, timeout: Duration) {
        let key = self.key(group, value);
        let mut m = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if m.len() >= MAX_RECORDS && !m.contains_key(&key) {
            let expired: Vec<u64> = m.iter().take(SWEEP).filter(|(_, r)| r.used.elapsed() >= r.timeout).map(|(k, _)| *k).collect();
            for k in &expired {
                m.remove(k);
            }
            if m.len() >= MAX_RECORDS {
                if let Some(k) = m.keys().next().copied() {
                    m.remove(&k);
                    self.evicted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        // At most half of it, and never more than SHOWN characters.
        let n = value.chars().count();
        let mut shown: String = value.chars().filter(|c| c.is_ascii_graphic()).take(SHOWN.min(n / 2)).collect();
        shown.push_str(&format!("…({n})"));
        m.insert(key, Rec { to, used: Instant::now(), timeout, group: group.into(), shown: shown.into() });
    }

    /// Live records, and up to `n` of them as (server, idle) for `show l7`.
    pub fn summary(&self, n: usize) -> (usize, Vec<(SocketAddrV4, Duration)>) {
        let m = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (m.len(), m.values().take(n).map(|r| (r.to, r.used.elapsed())).collect())
    }

    /// `show persistence`: how many live records are of `group` (all when
    /// None) on a server at `server` (any when None), and up to `limit` of
    /// them, most recently used first.
    pub fn records(&self, group: Option<&str>, server: Option<std::net::IpAddr>, limit: usize) -> (usize, Vec<Shown>) {
        // Under the lock (every request's lookup waits on it): one pass,
        // the `limit` most recent picked without sorting the rest.
        let (n, mut shown) = {
            let m = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut hits: Vec<&Rec> = m
                .values()
                .filter(|r| r.used.elapsed() < r.timeout && group.is_none_or(|g| *r.group == *g) && server.is_none_or(|s| std::net::IpAddr::V4(*r.to.ip()) == s))
                .collect();
            let n = hits.len();
            if limit < n {
                hits.select_nth_unstable_by_key(limit, |r| std::cmp::Reverse(r.used));
                hits.truncate(limit);
            }
            (n, hits.into_iter().map(|r| Shown { group: r.group.to_string(), value: r.shown.to_string(), to: r.to, idle: r.used.elapsed(), timeout: r.timeout }).collect::<Vec<_>>())
        };
        shown.sort_by_key(|r| r.idle);
        (n, shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::unplaced;

    fn spec(kind: PersistenceKind, cookie: &str) -> Spec {
        let mut p: Persistence = toml::from_str(&format!("kind = \"{}\"", crate::config::kebab(&kind))).unwrap();
        p.cookie = Some(unplaced(cookie.to_string()));
        p.query = (kind == PersistenceKind::SessionId).then(|| unplaced("sid".to_string()));
        Spec::of(&toml_config(), "web", None, &p).unwrap()
    }

    fn toml_config() -> Config {
        Config::parse("t.toml", "[platform]\neal_args = []\ncontrol_lcore = 0\nworker_lcores = [1]\n").unwrap()
    }

    fn req(uri: &str, cookie: Option<&str>) -> hyper::Request<()> {
        let mut b = hyper::Request::builder().uri(uri);
        if let Some(c) = cookie {
            b = b.header("cookie", c);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn tokens_are_stable_distinct_and_show_no_address() {
        let s = spec(PersistenceKind::CookieInsert, "FWSRV");
        let a: SocketAddrV4 = "198.51.100.11:80".parse().unwrap();
        let b: SocketAddrV4 = "198.51.100.12:80".parse().unwrap();
        assert_eq!(s.token(a), s.token(a));
        assert_ne!(s.token(a), s.token(b));
        assert_eq!(s.token(a).len(), 16);
        assert!(!s.token(a).contains("198"));
    }

    #[test]
    fn cookies_session_ids_and_set_cookies_are_read_as_rfc_6265_lays_them_out() {
        let s = spec(PersistenceKind::CookieInsert, "FWSRV");
        assert_eq!(s.wanted(&req("/", Some("a=1; FWSRV=abc; b=2"))), Some(Want::Token("abc".into())));
        assert_eq!(s.wanted(&req("/", Some("FWSRVX=abc"))), None);
        assert_eq!(s.wanted(&req("/", Some("FWSRV="))), None, "an empty value asks for nothing");
        let id = spec(PersistenceKind::SessionId, "JSESSIONID");
        assert_eq!(id.wanted(&req("/app;jsessionid=XYZ/page?x=1", None)), Some(Want::Learned("XYZ".into())));
        assert_eq!(id.wanted(&req("/app?a=b&sid=Q1", None)), Some(Want::Learned("Q1".into())));
        assert_eq!(id.wanted(&req("/app", Some("JSESSIONID=C7"))), Some(Want::Learned("C7".into())));
        let mut h = HeaderMap::new();
        h.append(SET_COOKIE, HeaderValue::from_static("JSESSIONID=abc; Path=/"));
        h.append(SET_COOKIE, HeaderValue::from_static("other=1"));
        assert_eq!(set_cookies(&h, "JSESSIONID"), vec!["abc".to_string()]);
    }

    #[test]
    fn an_empty_server_cookie_is_filled_in_and_others_are_left() {
        let s = spec(PersistenceKind::CookieRewrite, "SRVID");
        let mut h = HeaderMap::new();
        h.append(SET_COOKIE, HeaderValue::from_static("SRVID=; Path=/"));
        h.append(SET_COOKIE, HeaderValue::from_static("SRVID=kept"));
        h.append(SET_COOKIE, HeaderValue::from_static("app=1"));
        s.rewrite(&mut h, "t0ken");
        let v: Vec<&str> = h.get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(v, vec!["SRVID=t0ken; Path=/", "SRVID=kept", "app=1"]);
    }

    #[test]
    fn learned_records_are_kept_by_namespace_and_time_out() {
        let t = Table::default();
        let a: SocketAddrV4 = "198.51.100.11:80".parse().unwrap();
        t.learn("vs:web", "k", a, Duration::from_secs(5));
        assert_eq!(t.get("vs:web", "k", Duration::from_secs(5)), Some(a));
        assert_eq!(t.get("vs:other", "k", Duration::from_secs(5)), None, "by namespace");
        assert_eq!(t.get("vs:web", "k", Duration::ZERO), None, "idle past its timeout");
        assert_eq!(t.summary(5).0, 0, "and forgotten");
        assert_eq!(t.take_journal().len(), 1, "for the HA peer");
        t.learn("vs:web", &"x".repeat(MAX_VALUE + 1), a, Duration::from_secs(5));
        assert_eq!((t.summary(5).0, t.too_long.load(std::sync::atomic::Ordering::Relaxed)), (0, 1), "a value too long is not learned");
    }

    #[test]
    fn show_persistence_lists_a_groups_records_with_their_values_cut() {
        let t = Table::default();
        let (a, b): (SocketAddrV4, SocketAddrV4) = ("198.51.100.11:80".parse().unwrap(), "198.51.100.12:80".parse().unwrap());
        t.learn("vs:web", "0123456789abcdefXYZ", a, Duration::from_secs(60));
        t.learn("vs:web", "short", b, Duration::from_secs(60));
        t.learn("group:shop", "c7", a, Duration::from_secs(60));
        let (n, all) = t.records(None, None, 10);
        assert_eq!((n, all.len()), (3, 3));
        let (n, web) = t.records(Some("vs:web"), Some((*a.ip()).into()), 10);
        assert_eq!(n, 1);
        assert_eq!((web[0].value.as_str(), web[0].to, web[0].timeout), ("012345678…(19)", a, Duration::from_secs(60)));
        let (_, short) = t.records(Some("vs:web"), Some((*b.ip()).into()), 10);
        assert_eq!(short[0].value, "sh…(5)", "never a whole value");
        let (n, one) = t.records(Some("vs:web"), None, 1);
        assert_eq!((n, one.len()), (2, 1), "counted past the limit");
    }
}
