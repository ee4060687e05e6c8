//! The checks of `[l7]` and of `protocol = "http"` virtual servers (their
//! rules, header actions, limits, sorry page), and what the rest of the
//! configuration asks of them.

use super::bounds;
use super::l7::{ClientAddress, HeaderAction, HeaderVerb, Rule};
use super::model::{Config, Persistence, PersistenceKind, Protocol, VirtualServer};
use super::{ConfigError, Source};

impl Config {
    /// Does any virtual server need the appliance's own stack (the host
    /// link, its network namespace, the L7 engine)?
    pub fn has_l7(&self) -> bool {
        self.virtual_servers.iter().any(VirtualServer::engine_served)
    }
}

impl VirtualServer {
    /// Served by the L7 engine through the exception path: `http`,
    /// `https`, and `tcp` with `tls-session-id` persistence (its TLS
    /// passed through, `modules::l7::passthrough`).
    pub fn engine_served(&self) -> bool {
        self.protocol.is_l7() || self.persistence.as_ref().is_some_and(|p| p.get_ref().kind == PersistenceKind::TlsSessionId)
    }
}

impl Protocol {
    /// Served by the L7 engine rather than forwarded.
    pub fn is_l7(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Https)
    }

    /// The transport under it: two virtual servers on one address and
    /// port of one transport cannot both be served.
    pub fn transport(self) -> Protocol {
        match self {
            Protocol::Http | Protocol::Https => Protocol::Tcp,
            p => p,
        }
    }
}

impl Config {
    /// An `http` virtual server: the engine connects to its servers from
    /// `local_addresses` (default: the self IP facing them), addresses the
    /// box answers ARP for that no forwarded virtual server or `[[snat]]`
    /// rule uses; `forwarding` and L4 persistence do not apply.
    pub(super) fn validate_l7(&self, src: &Source<'_>, vs: &VirtualServer) -> Result<(), ConfigError> {
        let name = vs.name.get_ref();
        if !vs.forwarding.span().is_empty() {
            return Err(src.error(Some(vs.forwarding.span()), format!("virtual_server {name:?}: protocol = \"http\" is proxied by the L7 engine, which opens its own connections to the servers from local_addresses (default: the self IP facing them); forwarding does not apply")));
        }
        if let Some(p) = &vs.persistence {
            self.validate_l7_persistence(src, name, p)?;
        }
        for a in &vs.local_addresses {
            if !self.interfaces.iter().any(|i| i.address.contains(*a)) {
                return Err(src.error(Some(vs.name.span()), format!("virtual_server {name:?}: local address {a} is on no interface's subnet: the box answers ARP for it there")));
            }
            let vip = self.virtual_servers.iter().any(|o| o.address.get_ref().ip() == std::net::IpAddr::V4(*a));
            let forwarded = self.virtual_servers.iter().any(|o| !o.engine_served() && o.local_addresses.contains(a));
            let snat = self.snat.iter().any(|r| r.address.get_ref() == a);
            if vip || forwarded || snat {
                return Err(src.error(Some(vs.name.span()), format!("virtual_server {name:?}: local address {a} is a VIP, a full-NAT local address or a [[snat]] address: the L7 engine's ports there would meet theirs")));
            }
        }
        if let Some(l) = &vs.limits {
            for (b, v) in l.get_ref().bounded() {
                super::validate::within(src, b, v)?;
            }
            let body = &l.get_ref().max_body_bytes;
            if !bounds::MAX_BODY_BYTES.contains(*body.get_ref()) {
                return Err(src.error(Some(body.span()), bounds::MAX_BODY_BYTES.refusal(body.get_ref())));
            }
        }
        match (vs.protocol, &vs.tls) {
            (Protocol::Https, None) => return Err(src.error(Some(vs.name.span()), format!("virtual_server {name:?}: protocol = \"https\" needs tls = {{ certificates = [ {{ cert = \"...\", key = \"...\" }} ] }}"))),
            (Protocol::Http, Some(t)) => return Err(src.error(Some(t.span()), format!("virtual_server {name:?}: tls needs protocol = \"https\""))),
            _ => {}
        }
        if vs.protocol == Protocol::Tcp {
            // TLS passed through: nothing of HTTP applies.
            let http = [vs.rule.first().map(|r| r.at()), vs.http_request.first().or(vs.http_response.first()).map(|a| a.name.span()), vs.client_address.first().map(toml::Spanned::span), vs.sorry_page.as_ref().map(toml::Spanned::span), vs.server_tls.as_ref().map(toml::Spanned::span)];
            if let Some(at) = http.into_iter().flatten().next() {
                return Err(src.error(Some(at), format!("virtual_server {name:?}: a tcp virtual server with tls-session-id passes TLS through: rules, header actions, client_address, sorry_page and server_tls need protocol = \"http\" or \"https\"")));
            }
        }
        if let Some(p) = &vs.sorry_page {
            if let Err(e) = std::fs::metadata(p.get_ref()) {
                return Err(src.error(Some(p.span()), format!("virtual_server {name:?}: sorry_page {:?}: {e}", p.get_ref())));
            }
        }
        let proxies: Vec<_> = vs.client_address.iter().filter(|c| matches!(c.get_ref(), ClientAddress::ProxyV1 | ClientAddress::ProxyV2)).collect();
        if let Some(second) = proxies.get(1) {
            return Err(src.error(Some(second.span()), format!("virtual_server {name:?}: one PROXY protocol version (proxy-v1 or proxy-v2)")));
        }
        for r in &vs.rule {
            self.validate_rule(src, name, r)?;
        }
        for a in vs.http_request.iter().chain(&vs.http_response) {
            self.validate_header_action(src, name, a)?;
        }
        if let Some(c) = self.l7.cpus.as_ref().filter(|c| c.get_ref().is_empty()) {
            return Err(src.error(Some(c.span()), "[l7] cpus: name at least one CPU (or leave it out)"));
        }
        if let Some(a) = &self.l7.access_log {
            let p = std::path::Path::new(a.get_ref());
            let plain = a.get_ref().chars().all(|c| !c.is_control() && c != '"' && c != '\\');
            if !p.is_absolute() || !plain || p.parent().is_none_or(|d| !d.is_dir()) {
                return Err(src.error(Some(a.span()), format!("[l7] access_log {:?}: an absolute path in a directory that exists, without quotes, backslashes or control characters", a.get_ref())));
            }
        }
        Ok(())
    }
}

impl Config {
    /// A rule: a condition or a script, pools that exist, regexes that
    /// compile, a match that says one thing.
    fn validate_rule(&self, src: &Source<'_>, vs: &str, r: &Rule) -> Result<(), ConfigError> {
        let at = r.at();
        if r.conditions() == 0 && r.script.is_none() {
            return Err(src.error(Some(at), format!("virtual_server {vs:?}: a rule needs a condition (host, path_prefix, path_regex, extension, method, query or header) or a script")));
        }
        self.validate_rule_script(src, vs, r)?;
        let named = r.pool.iter().chain(r.pools.iter().flat_map(|p| p.get_ref()));
        if let Some(p) = named.into_iter().find(|p| !self.pools.iter().any(|x| x.name.get_ref() == p.get_ref())) {
            return Err(src.error(Some(p.span()), format!("virtual_server {vs:?}: a rule names no pool {:?}", p.get_ref())));
        }
        if let Some(p) = &r.path_regex {
            if let Err(e) = regex::Regex::new(p.get_ref()) {
                return Err(src.error(Some(p.span()), format!("virtual_server {vs:?}: path_regex: {e}")));
            }
        }
        for m in [&r.query, &r.header].into_iter().flatten() {
            let v = m.get_ref();
            let says = usize::from(v.equals.is_some()) + usize::from(v.contains.is_some()) + usize::from(v.regex.is_some());
            if says > 1 {
                return Err(src.error(Some(m.span()), format!("virtual_server {vs:?}: {:?}: one of equals, contains or regex", v.name)));
            }
            if let Some(e) = v.regex.as_ref().and_then(|x| regex::Regex::new(x).err()) {
                return Err(src.error(Some(m.span()), format!("virtual_server {vs:?}: {:?}: regex: {e}", v.name)));
            }
        }
        if let Some(h) = &r.header {
            if hyper::header::HeaderName::from_bytes(h.get_ref().name.as_bytes()).is_err() {
                return Err(src.error(Some(h.span()), format!("virtual_server {vs:?}: {:?} is no header name", h.get_ref().name)));
            }
        }
        Ok(())
    }

    /// A rule's pool, script, `pools` and `body_bytes` together: a pool
    /// without a script; a script with the pools it may name, or `pool`
    /// (then it says true or false); `pools` and `body_bytes` only with a
    /// script.
    fn validate_rule_script(&self, src: &Source<'_>, vs: &str, r: &Rule) -> Result<(), ConfigError> {
        let pools = r.pools.as_ref().filter(|p| !p.get_ref().is_empty());
        match (&r.script, pools, &r.pool) {
            (None, None, None) => return Err(src.error(Some(r.at()), format!("virtual_server {vs:?}: a rule needs `pool`, where the requests it holds for go"))),
            (None, Some(p), _) => return Err(src.error(Some(p.span()), format!("virtual_server {vs:?}: `pools` are the pools a rule's script may name: they need `script`"))),
            (Some(s), None, None) => return Err(src.error(Some(s.span()), format!("virtual_server {vs:?}: a script needs `pools` (the pools it may name) or `pool` (where it sends a request when it returns true)"))),
            _ => {}
        }
        if let Some(b) = &r.body_bytes {
            if r.script.is_none() {
                return Err(src.error(Some(b.span()), format!("virtual_server {vs:?}: body_bytes is what a rule's script may read of the body: it needs `script`")));
            }
            super::validate::within(src, &bounds::SCRIPT_BODY_BYTES, b)?;
        }
        Ok(())
    }
}

impl Config {
    /// Compiles every rule's script (`config::script`), refused at its
    /// line and column in the file.
    pub(super) fn compile_scripts(&mut self, src: &Source<'_>) -> Result<(), ConfigError> {
        for vs in &mut self.virtual_servers {
            let name = vs.name.get_ref().clone();
            for (i, r) in vs.rule.iter_mut().enumerate() {
                let Some(text) = &r.script else { continue };
                match super::script::compile(text.get_ref()) {
                    Ok(ast) => r.compiled = super::script::Compiled(Some(std::sync::Arc::new(ast))),
                    Err((why, line, column)) => {
                        let at = super::script::locate(src.text, text.span(), line, column);
                        return Err(src.error(Some(at..at), format!("virtual_server {name:?}: rule {}: script: {why} (the script's line {line}, column {column})", i + 1)));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Config {
    /// A header action: a header name, a value where the verb needs one
    /// and none where it does not, a regex that compiles.
    pub(super) fn validate_header_action(&self, src: &Source<'_>, vs: &str, a: &HeaderAction) -> Result<(), ConfigError> {
        let verb = *a.action.get_ref();
        if hyper::header::HeaderName::from_bytes(a.name.get_ref().as_bytes()).is_err() {
            return Err(src.error(Some(a.name.span()), format!("virtual_server {vs:?}: {:?} is no header name", a.name.get_ref())));
        }
        let needs_value = verb != HeaderVerb::DelHeader;
        match (&a.value, needs_value) {
            (None, true) => return Err(src.error(Some(a.action.span()), format!("virtual_server {vs:?}: {} needs `value`", verb.name()))),
            (Some(v), false) => return Err(src.error(Some(v.span()), format!("virtual_server {vs:?}: del-header takes no `value`"))),
            (Some(v), true) if hyper::header::HeaderValue::from_str(v.get_ref()).is_err() => {
                return Err(src.error(Some(v.span()), format!("virtual_server {vs:?}: {:?} is no header value", v.get_ref())));
            }
            _ => {}
        }
        match (&a.pattern, verb) {
            (None, HeaderVerb::ReplaceHeader) => Err(src.error(Some(a.action.span()), format!("virtual_server {vs:?}: replace-header needs `match`, a regex over the value"))),
            (Some(m), HeaderVerb::ReplaceHeader) => match regex::Regex::new(m.get_ref()) {
                Ok(_) => Ok(()),
                Err(e) => Err(src.error(Some(m.span()), format!("virtual_server {vs:?}: match: {e}"))),
            },
            (Some(m), _) => Err(src.error(Some(m.span()), format!("virtual_server {vs:?}: `match` belongs to replace-header"))),
            (None, _) => Ok(()),
        }
    }
}

impl Config {
    /// An `http` virtual server's persistence: an L7 kind, with the keys
    /// of its kind only.
    fn validate_l7_persistence(&self, src: &Source<'_>, vs: &str, p: &toml::Spanned<Persistence>) -> Result<(), ConfigError> {
        let at = Some(p.span());
        let q = p.get_ref();
        let k = q.kind;
        if !k.is_l7() {
            return Err(src.error(at, format!("virtual_server {vs:?}: {:?} persistence is the workers' (L4); for protocol = \"http\" use cookie-insert, cookie-passive, cookie-rewrite, cookie-hash, session-id or header (or the pool's algorithm source-hash)", super::render::kebab(&k))));
        }
        let cookie_kind = matches!(k, PersistenceKind::CookieInsert | PersistenceKind::CookiePassive | PersistenceKind::CookieRewrite | PersistenceKind::CookieHash | PersistenceKind::SessionId);
        let insert = k == PersistenceKind::CookieInsert;
        let misplaced = [
            ("cookie", q.cookie.is_some() && !cookie_kind),
            ("expires_s", q.expires_s.is_some() && !insert),
            ("path", q.path.is_some() && !insert),
            ("secure", q.secure && !insert),
            ("http_only", q.http_only && !insert),
            ("same_site", q.same_site.is_some() && !insert),
            ("html_only", q.html_only && !insert),
            ("query", q.query.is_some() && k != PersistenceKind::SessionId),
            ("header", q.header.is_some() && k != PersistenceKind::Header),
        ];
        if let Some((key, _)) = misplaced.iter().find(|(_, bad)| *bad) {
            return Err(src.error(at, format!("virtual_server {vs:?}: persistence {key} does not apply to kind {:?}", super::render::kebab(&k))));
        }
        if k == PersistenceKind::CookieHash && q.cookie.is_none() {
            return Err(src.error(at, format!("virtual_server {vs:?}: cookie-hash needs `cookie`, the application cookie whose value is hashed (JSESSIONID, PHPSESSID, ...)")));
        }
        if let Some(c) = &q.cookie {
            let ok = !c.get_ref().is_empty() && c.get_ref().bytes().all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
            if !ok {
                return Err(src.error(Some(c.span()), format!("virtual_server {vs:?}: {:?} is no cookie name (RFC 6265 §4.1.1: a token)", c.get_ref())));
            }
        }
        match (&q.header, k) {
            (None, PersistenceKind::Header) => return Err(src.error(at, format!("virtual_server {vs:?}: persistence kind \"header\" needs `header`, the header whose value keeps a client on its server"))),
            (Some(h), _) if hyper::header::HeaderName::from_bytes(h.get_ref().as_bytes()).is_err() => {
                return Err(src.error(Some(h.span()), format!("virtual_server {vs:?}: {:?} is no header name", h.get_ref())));
            }
            _ => {}
        }
        if let Some(e) = &q.expires_s {
            super::validate::within(src, &bounds::COOKIE_EXPIRES_S, e)?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads every virtual server's `tls` and `server_tls` files into
    /// rustls configurations (`Loaded`).
    pub(super) fn read_tls_files(&mut self, src: &Source<'_>) -> Result<(), ConfigError> {
        for vs in &mut self.virtual_servers {
            let name = vs.name.get_ref().clone();
            let whole = vs.name.span();
            let refuse = |(at, why): (Option<std::ops::Range<usize>>, String)| src.error(Some(at.unwrap_or_else(|| whole.clone())), format!("virtual_server {name:?}: {why}"));
            if let Some(t) = vs.tls.as_mut() {
                let sc = t.get_ref().load(&name).map_err(refuse)?;
                t.get_mut().loaded = super::tls::Loaded(Some(std::sync::Arc::new(sc)));
            }
            if let Some(t) = vs.server_tls.as_mut() {
                let cc = t.get_ref().load().map_err(refuse)?;
                t.get_mut().loaded = super::tls::Loaded(Some(std::sync::Arc::new(cc)));
            }
        }
        Ok(())
    }
}
