//! What the L7 engine serves, as the control plane last published it: the
//! `Local` services of the snapshot (their VIP, their sources), their rules
//! compiled, and the snapshot itself, whose schedules the engine picks
//! servers with (`lb::Scheduler`, the same code and the same states as
//! L4). A rule's pool is a `Local` service of no address in the snapshot
//! (`lb::build::rule_pool_name`).

use crate::config::{ClientAddress, Config, HeaderAction, HeaderVerb, Ipv4Cidr, Limits, Match, XffMode};
use crate::modules::lb::build::rule_pool_name;
use furiwake_dataplane::state::snapshot::{Forwarding, Snapshot};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use hyper::Request;
use regex::Regex;
use std::net::{Ipv4Addr, SocketAddrV4};

/// How a named value must look.
#[derive(Debug, Clone)]
pub enum Cond {
    Present,
    Equals(String),
    Contains(String),
    Regex(Regex),
}

impl Cond {
    fn of(m: &Match) -> Cond {
        match (&m.equals, &m.contains, m.regex.as_deref().and_then(|r| Regex::new(r).ok())) {
            (Some(e), _, _) => Cond::Equals(e.clone()),
            (_, Some(c), _) => Cond::Contains(c.clone()),
            (_, _, Some(r)) => Cond::Regex(r),
            _ => Cond::Present,
        }
    }

    fn holds(&self, v: Option<&str>) -> bool {
        match (self, v) {
            (_, None) => false,
            (Cond::Present, Some(_)) => true,
            (Cond::Equals(e), Some(v)) => v == e,
            (Cond::Contains(c), Some(v)) => v.contains(c.as_str()),
            (Cond::Regex(r), Some(v)) => r.is_match(v),
        }
    }
}

/// A `[[virtual_server.rule]]`, compiled; every condition must hold.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    /// Lower case; a leading `*.` is kept as a suffix match.
    host: Option<String>,
    path_prefix: Option<String>,
    path_regex: Option<Regex>,
    /// Lower case, without the dot.
    extension: Option<String>,
    method: Option<String>,
    query: Option<(String, Cond)>,
    header: Option<(HeaderName, Cond)>,
    /// The snapshot service that schedules its `pool` (none: a script
    /// rule that names one of its `pools`).
    pub slot: Option<u16>,
    pub script: Option<Script>,
    /// Its place in the list, for the hit counters.
    pub index: usize,
}

/// A rule's script (`script`), compiled with the configuration.
#[derive(Debug, Clone)]
pub struct Script {
    pub ast: std::sync::Arc<rhai::AST>,
    /// The pools it may name, each with the snapshot service that
    /// schedules it.
    pub pools: Vec<(String, u16)>,
    /// How much of the body it reads.
    pub body_bytes: usize,
}

/// The request's host, lower case, without its port.
pub fn host_of<B>(req: &Request<B>) -> Option<String> {
    let h = req.headers().get(HOST).and_then(|v| v.to_str().ok()).or_else(|| req.uri().authority().map(|a| a.as_str()))?;
    let h = h.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(h, |(n, _)| n);
    // A fully qualified name's root dot (`a.example.`) is the same host.
    let h = h.strip_suffix('.').unwrap_or(h);
    Some(h.to_ascii_lowercase())
}

/// The value of query parameter `name` (as sent: not percent-decoded).
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

/// The path as rules read it, as the servers behind read it:
/// `;parameters` as sent cut from each segment (Tomcat and Jetty do;
/// `;jsessionid=`), then every `%XX` decoded once (nginx matches its
/// locations so), runs of `/` merged and dot segments removed (RFC 3986
/// §5.2.4). So `/x/../admin`, `//admin`, `/%61dmin`, `/x/..%2Fadmin` or
/// `/admin;x/` cannot pass a rule on `/admin` by. A backslash is a
/// character (no Linux server splits on it), and `%252e` is `%2e` (one
/// decoding, as nginx). The request goes to the server as it came.
pub fn normalized_path(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains(['%', '.', ';']) && !path.contains("//") {
        return std::borrow::Cow::Borrowed(path);
    }
    // `;parameters` as sent (an encoded `%3B` is a character, as Tomcat
    // reads it), then every `%XX`.
    let cut: Vec<&str> = path.split('/').map(|s| s.split(';').next().unwrap_or("")).collect();
    let cut = cut.join("/");
    let bytes = cut.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = (b == b'%').then(|| bytes.get(i + 1..i + 3)).flatten().and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(v) => {
                decoded.push(v);
                i += 3;
            }
            None => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8_lossy(&decoded);
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/').filter(|s| !s.is_empty()) {
        match seg {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let trailing = matches!(decoded.rsplit('/').next(), Some("" | "." | ".."));
    let mut joined = format!("/{}", out.join("/"));
    if trailing && joined.len() > 1 {
        joined.push('/');
    }
    std::borrow::Cow::Owned(joined)
}

impl Rule {
    /// Does it hold for `req` (whose host is `host`)?
    pub fn matches<B>(&self, req: &Request<B>, host: Option<&str>) -> bool {
        let path = normalized_path(req.uri().path());
        let path = path.as_ref();
        let host_ok = self.host.as_deref().is_none_or(|want| match (want.strip_prefix("*."), host) {
            (_, None) => false,
            (Some(suffix), Some(h)) => h.len() > suffix.len() && h.ends_with(suffix) && h.as_bytes().get(h.len() - suffix.len() - 1) == Some(&b'.'),
            (None, Some(h)) => h == want,
        });
        let ext_ok = self.extension.as_deref().is_none_or(|e| {
            let last = path.rsplit('/').next().unwrap_or("");
            last.rsplit_once('.').is_some_and(|(_, x)| x.eq_ignore_ascii_case(e))
        });
        host_ok
            && ext_ok
            && self.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
            && self.path_regex.as_ref().is_none_or(|r| r.is_match(path))
            && self.method.as_deref().is_none_or(|m| req.method().as_str().eq_ignore_ascii_case(m))
            && self.query.as_ref().is_none_or(|(n, c)| c.holds(query_param(req.uri().query(), n)))
            && self.header.as_ref().is_none_or(|(n, c)| req.headers().get_all(n).iter().any(|v| c.holds(v.to_str().ok())))
    }
}

/// A header action, compiled.
#[derive(Debug, Clone)]
pub struct Action {
    verb: HeaderVerb,
    name: HeaderName,
    value: Option<HeaderValue>,
    /// `replace-header`: the regex and the replacement.
    replace: Option<(Regex, String)>,
}

impl Action {
    fn of(a: &HeaderAction) -> Option<Action> {
        let name = HeaderName::from_bytes(a.name.get_ref().as_bytes()).ok()?;
        let value = a.value.as_ref().and_then(|v| HeaderValue::from_str(v.get_ref()).ok());
        let replace = match (&a.pattern, &a.value) {
            (Some(m), Some(v)) => Some((Regex::new(m.get_ref()).ok()?, v.get_ref().clone())),
            _ => None,
        };
        Some(Action { verb: *a.action.get_ref(), name, value, replace })
    }

    /// Applies it to `h`.
    pub fn apply(&self, h: &mut HeaderMap) {
        match (self.verb, &self.value) {
            (HeaderVerb::AddHeader, Some(v)) => {
                h.append(&self.name, v.clone());
            }
            (HeaderVerb::SetHeader, Some(v)) => {
                h.insert(&self.name, v.clone());
            }
            (HeaderVerb::DelHeader, _) => {
                h.remove(&self.name);
            }
            (HeaderVerb::ReplaceHeader, _) => {
                let Some((re, with)) = &self.replace else { return };
                let new: Vec<HeaderValue> = h
                    .get_all(&self.name)
                    .iter()
                    .map(|v| v.to_str().ok().and_then(|s| HeaderValue::from_str(&re.replace_all(s, with.as_str())).ok()).unwrap_or_else(|| v.clone()))
                    .collect();
                h.remove(&self.name);
                for v in new {
                    h.append(&self.name, v);
                }
            }
            _ => {}
        }
    }
}

/// How the servers learn the client's address.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub xff: bool,
    pub forwarded: bool,
    /// The PROXY protocol version (1, 2) each server connection starts
    /// with; 0 for none.
    pub proxy: u8,
    pub mode: XffMode,
    pub trusted: Vec<Ipv4Cidr>,
}

impl ClientInfo {
    /// Is what `client` sent to be kept?
    fn trusts(&self, client: Ipv4Addr) -> bool {
        self.mode == XffMode::Append && self.trusted.iter().any(|c| c.contains(client))
    }

    /// Writes `X-Forwarded-For` and `Forwarded` for `client` into `h`
    /// (`host`: the request's, for `Forwarded`; `https`: it came inside
    /// TLS).
    pub fn apply(&self, h: &mut HeaderMap, client: Ipv4Addr, host: Option<&str>, https: bool) {
        let keep = self.trusts(client);
        let joined = |h: &HeaderMap, n: &str| -> Option<String> {
            let v: Vec<&str> = h.get_all(n).iter().filter_map(|v| v.to_str().ok()).collect();
            (!v.is_empty()).then(|| v.join(", "))
        };
        if self.xff {
            let v = match joined(h, "x-forwarded-for").filter(|_| keep) {
                Some(before) => format!("{before}, {client}"),
                None => client.to_string(),
            };
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert("x-forwarded-for", v);
            }
            // Its companion, always the box's (a client's own would claim
            // HTTPS over HTTP).
            h.insert("x-forwarded-proto", HeaderValue::from_static(if https { "https" } else { "http" }));
        }
        if self.forwarded {
            // RFC 7239 §4: a quoted host (it may carry a port).
            let proto = if https { "https" } else { "http" };
            let ours = match host.filter(|x| x.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')) {
                Some(x) => format!("for={client};proto={proto};host=\"{x}\""),
                None => format!("for={client};proto={proto}"),
            };
            let v = match joined(h, "forwarded").filter(|_| keep) {
                Some(before) => format!("{before}, {ours}"),
                None => ours,
            };
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert("forwarded", v);
            }
        }
    }
}

/// One `protocol = "http"` virtual server.
#[derive(Debug, Clone)]
pub struct Service {
    /// Removed from the configuration: no listener, its connections drain.
    pub retired: bool,
    /// Its snapshot slot (`Snapshot::services`): its own pool's schedule.
    pub slot: u16,
    pub name: String,
    /// Where it listens (the VIP, on `fwhost0`).
    pub addr: SocketAddrV4,
    /// Where its connections to servers come from.
    pub sources: Vec<Ipv4Addr>,
    pub rules: Vec<Rule>,
    pub client: ClientInfo,
    pub on_request: Vec<Action>,
    pub on_response: Vec<Action>,
    pub limits: Limits,
    /// The body of its 503 when no server can take a request.
    pub sorry: Option<bytes::Bytes>,
    /// Its persistence (cookies, session IDs, a header).
    pub persist: Option<super::persist::Spec>,
    /// `https`: the certificates, as loaded with the configuration.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// `server_tls`: TLS to the servers.
    pub to_servers: Option<super::tls::ToServers>,
    /// `tcp` with `tls-session-id`: TLS passed through (`passthrough`).
    pub passthrough: bool,
}

#[derive(Debug, Clone, Default)]
pub struct View {
    pub services: Vec<Service>,
    pub snap: Snapshot,
}

/// Rule `index`, compiled; `slot_of` a pool's snapshot service. None when
/// its pool is not in the snapshot or its script was not compiled.
fn rule_of(r: &crate::config::Rule, index: usize, slot_of: &dyn Fn(&str) -> Option<u16>) -> Option<Rule> {
    let slot = match &r.pool {
        Some(p) => Some(slot_of(p.get_ref())?),
        None => None,
    };
    let script = match (&r.script, &r.compiled.0) {
        (None, _) => None,
        (Some(_), None) => return None,
        (Some(_), Some(ast)) => Some(Script {
            ast: std::sync::Arc::clone(ast),
            pools: r.pools.iter().flat_map(|p| p.get_ref()).filter_map(|n| Some((n.get_ref().clone(), slot_of(n.get_ref())?))).collect(),
            body_bytes: r.body_bytes.as_ref().map_or(0, |b| *b.get_ref() as usize),
        }),
    };
    Some(Rule {
        host: r.host.as_ref().map(|h| h.get_ref().to_ascii_lowercase()),
        path_prefix: r.path_prefix.as_ref().map(|p| p.get_ref().clone()),
        path_regex: r.path_regex.as_ref().and_then(|p| Regex::new(p.get_ref()).ok()),
        extension: r.extension.as_ref().map(|e| e.get_ref().trim_start_matches('.').to_ascii_lowercase()),
        method: r.method.as_ref().map(|m| m.get_ref().clone()),
        query: r.query.as_ref().map(|q| (q.get_ref().name.clone(), Cond::of(q.get_ref()))),
        header: r.header.as_ref().and_then(|h| HeaderName::from_bytes(h.get_ref().name.as_bytes()).ok().map(|n| (n, Cond::of(h.get_ref())))),
        slot,
        script,
        index,
    })
}

impl View {
    /// The view of `snap`, with the rules `cfg` gives its virtual servers.
    pub fn of(cfg: &Config, snap: &Snapshot) -> View {
        let slot_of = |name: &str| snap.services.iter().position(|v| !v.retired && v.forwarding == Forwarding::Local && v.name == name).map(|i| i as u16);
        let services = snap
            .services
            .iter()
            .enumerate()
            // Retired ones too: their kept-alive connections drain (no
            // listener takes new ones).
            .filter(|(_, v)| v.forwarding == Forwarding::Local && v.ip != 0)
            .map(|(i, v)| {
                let conf = cfg.virtual_servers.iter().find(|c| c.name.get_ref() == &v.name);
                let client = conf.map_or_else(ClientInfo::default, |c| ClientInfo {
                    xff: c.client_address.iter().any(|a| *a.get_ref() == ClientAddress::XForwardedFor),
                    forwarded: c.client_address.iter().any(|a| *a.get_ref() == ClientAddress::Forwarded),
                    proxy: c.client_address.iter().find_map(|a| match a.get_ref() {
                        ClientAddress::ProxyV1 => Some(1),
                        ClientAddress::ProxyV2 => Some(2),
                        _ => None,
                    }).unwrap_or(0),
                    mode: c.x_forwarded_for.as_ref().map(|m| *m.get_ref()).unwrap_or_default(),
                    trusted: c.trusted_proxies.clone(),
                });
                let on_request = conf.map_or_else(Vec::new, |c| c.http_request.iter().filter_map(Action::of).collect());
                let on_response = conf.map_or_else(Vec::new, |c| c.http_response.iter().filter_map(Action::of).collect());
                let rules = conf.map_or_else(Vec::new, |c| c.rule.iter().enumerate().filter_map(|(index, r)| rule_of(r, index, &|p| slot_of(&rule_pool_name(&v.name, p)))).collect());
                let tls = conf.and_then(|c| c.tls.as_ref()).and_then(|t| t.get_ref().loaded.0.clone());
                let to_servers = conf.and_then(|c| c.server_tls.as_ref()).and_then(|t| {
                    let t = t.get_ref();
                    let name = t.server_name.as_ref().and_then(|n| rustls::pki_types::ServerName::try_from(n.get_ref().clone()).ok());
                    t.loaded.0.clone().map(|config| super::tls::ToServers { config, name })
                });
                Service {
                    passthrough: conf.is_some_and(|c| c.protocol == crate::config::Protocol::Tcp),
                    tls,
                    to_servers,
                    retired: v.retired,
                    slot: i as u16,
                    name: v.name.clone(),
                    addr: SocketAddrV4::new(Ipv4Addr::from(v.ip), v.port),
                    sources: v.local_addrs.iter().map(|a| Ipv4Addr::from(*a)).collect(),
                    rules,
                    client,
                    on_request,
                    on_response,
                    limits: conf.and_then(|c| c.limits.as_ref()).map(|l| l.get_ref().clone()).unwrap_or_default(),
                    persist: conf.and_then(|c| c.persistence.as_ref().and_then(|p| super::persist::Spec::of(cfg, &v.name, c.persistence_group.as_ref().map(|g| g.get_ref().as_str()), p.get_ref()))),
                    sorry: conf.and_then(|c| c.sorry_page.as_ref()).and_then(|p| match std::fs::read(p.get_ref()) {
                        Ok(b) => Some(bytes::Bytes::from(b)),
                        Err(e) => {
                            log::warn!("l7: {}: sorry_page {}: {e}", v.name, p.get_ref());
                            None
                        }
                    }),
                }
            })
            .collect();
        View { services, snap: snap.clone() }
    }

    pub fn service(&self, slot: u16) -> Option<&Service> {
        self.services.iter().find(|s| s.slot == slot)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_are_read_as_the_servers_read_them() {
        use super::normalized_path as n;
        for (raw, want) in [
            ("/admin/x", "/admin/x"),
            ("/x/../admin/secret", "/admin/secret"),
            ("//admin", "/admin"),
            ("/%61dmin/%7Eme", "/admin/~me"),
            ("/./admin/.", "/admin/"),
            ("/a/b/..", "/a/"),
            ("/..", "/"),
            ("/../../etc", "/etc"),
            ("/admin%2Fx", "/admin/x"),
            ("/x/..%2Fadmin/secret", "/admin/secret"),
            ("/x/%2e%2E/admin", "/admin"),
            ("/public/..;/admin/", "/admin/"),
            ("/admin;x/page.jsp;jsessionid=A1", "/admin/page.jsp"),
            ("/up/x.jpg%3B.php", "/up/x.jpg;.php"),
            ("/a\\..\\admin", "/a\\..\\admin"),
            ("/100%", "/100%"),
            ("/%zz", "/%zz"),
            ("/%ff", "/\u{fffd}"),
            ("/", "/"),
        ] {
            assert_eq!(n(raw), want, "{raw}");
        }
    }

    use super::*;

    fn req(uri: &str, host: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri(uri).header("host", host);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn holds(r: &Rule, q: &Request<()>) -> bool {
        r.matches(q, host_of(q).as_deref())
    }

    #[test]
    fn hosts_match_without_case_or_port_and_wildcards_match_below() {
        let r = Rule { host: Some("a.example".into()), ..Rule::default() };
        assert!(holds(&r, &req("/", "A.Example:8080", &[])));
        assert!(!holds(&r, &req("/", "b.example", &[])));
        let w = Rule { host: Some("*.example".into()), ..Rule::default() };
        assert!(holds(&w, &req("/", "www.a.example", &[])));
        assert!(!holds(&w, &req("/", "example", &[])), "not the bare name");
        assert!(!holds(&w, &req("/", "badexample", &[])), "a label boundary");
    }

    #[test]
    fn paths_extensions_methods_queries_and_headers() {
        let r = Rule { path_prefix: Some("/api/".into()), extension: Some("json".into()), ..Rule::default() };
        assert!(holds(&r, &req("/api/v1/list.JSON?x=1", "h", &[])));
        assert!(!holds(&r, &req("/api/v1/list.json.gz", "h", &[])));
        assert!(!holds(&r, &req("/static/list.json", "h", &[])));
        let q = Rule { query: Some(("shard".into(), Cond::Equals("2".into()))), method: Some("get".into()), ..Rule::default() };
        assert!(holds(&q, &req("/x?a=b&shard=2", "h", &[])));
        assert!(!holds(&q, &req("/x?shard=22", "h", &[])));
        assert!(!holds(&q, &req("/x", "h", &[])));
        let h = Rule { header: Some((HeaderName::from_static("user-agent"), Cond::Contains("Mobile".into()))), ..Rule::default() };
        assert!(holds(&h, &req("/", "h", &[("User-Agent", "Mozilla/5.0 (iPhone) Mobile/15E148")])));
        assert!(!holds(&h, &req("/", "h", &[("User-Agent", "curl/7.88")])));
        assert!(!holds(&h, &req("/", "h", &[])));
        let re = Rule { path_regex: Some(Regex::new(r"^/u/[0-9]+$").unwrap()), ..Rule::default() };
        assert!(holds(&re, &req("/u/42", "h", &[])));
        assert!(!holds(&re, &req("/u/42/x", "h", &[])));
    }
}
