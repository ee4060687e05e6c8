//! The L7 engine's tasks, on its tokio runtime (whose threads live in the
//! appliance's network namespace): one listener per `http` virtual server,
//! HTTP/1.1 and h2c from clients (hyper's auto server; HTTPS: TLS first,
//! h2 by ALPN: `tls`), each request sent
//! to a server its pool's scheduler picks, over a keep-alive connection
//! pool per (virtual server, source address) (hyper-util's client, bound
//! to the source), the answer streamed back. No server: 503; a server that
//! cannot be reached or answers nothing: 502.

use super::view::View;
use super::Counters;
use bytes::Bytes;
use furiwake_dataplane::lb::{Flow4, Scheduler};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::TcpSocket;

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;
use super::patience::{Patient, SendError};
use super::tls::{ToServers, UpBody, Upstream};
type Sender = hyper::client::conn::http1::SendRequest<UpBody>;

/// How long a server may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle keep-alive connections to servers are closed after this.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// And kept at most, per server.
const MAX_IDLE_PER_SERVER: usize = 256;

/// Client connections the engine holds at once: half the process's file
/// descriptors (raised to the hard limit at start: `raise_nofile`), within
/// 256..=100,000; past it a new connection is closed at once
/// (`connections-refused`), so sockets never starve the control plane's.
fn connection_cap() -> usize {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit(2) into a valid struct.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0;
    let n = if ok { r.rlim_cur / 2 } else { 512 };
    usize::try_from(n).unwrap_or(100_000).clamp(256, 100_000)
}

/// Raises the soft file-descriptor limit to the hard one (a proxy holds
/// two sockets per request in flight).
pub fn raise_nofile() {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit(2) on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Keep-alive pools to servers by (virtual server, source, TLS
/// configuration's address), with the configuration they were made with.
type Pools = HashMap<(u16, Ipv4Addr, usize), (Option<Arc<rustls::ClientConfig>>, Upstream)>;

/// TLS handshakes under way at once, over every virtual server.
pub const MAX_HANDSHAKES: usize = 1024;

/// What every task shares.
pub struct Shared {
    /// Client connections open at once at most (`connection_cap`).
    pub(super) slots: Arc<tokio::sync::Semaphore>,
    view: RwLock<Arc<View>>,
    sched: Mutex<Scheduler>,
    /// By virtual server, source and TLS configuration (its address: a
    /// reload's new one starts a new pool; the value holds the `Arc`, so
    /// the address cannot be another configuration's while the key
    /// lives). Pools of configurations no view names go at `set_view`.
    clients: Mutex<Pools>,
    /// TLS handshakes under way (`MAX_HANDSHAKES`).
    pub(super) handshakes: Arc<tokio::sync::Semaphore>,
    pub counters: Arc<Counters>,
    /// Learned persistence records (`persist`).
    pub table: Arc<super::persist::Table>,
    /// Runs the rules' scripts.
    scripts: Arc<super::script::Runner>,
    /// Answers by virtual server, and the access log.
    pub stats: Arc<super::stats::Stats>,
}

impl Shared {
    pub fn new(counters: Arc<Counters>, table: Arc<super::persist::Table>, scripts: Arc<super::script::Runner>, stats: Arc<super::stats::Stats>) -> Self {
        Shared { slots: Arc::new(tokio::sync::Semaphore::new(connection_cap())), view: RwLock::new(Arc::new(View::default())), sched: Mutex::new(Scheduler::default()), clients: Mutex::new(HashMap::new()), handshakes: Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES)), counters, table, scripts, stats }
    }

    pub(super) fn view(&self) -> Arc<View> {
        self.view.read().map_or_else(|p| Arc::clone(&p.into_inner()), |v| Arc::clone(&v))
    }

    pub(super) fn set_view(&self, v: Arc<View>) {
        if let Ok(mut s) = self.sched.lock() {
            s.resize(v.snap.services.len());
        }
        // Keep-alive pools of a TLS configuration a reload replaced go
        // (their idle connections close with them).
        let live: Vec<(u16, usize)> = v.services.iter().map(|s| (s.slot, s.to_servers.as_ref().map_or(0, |t| Arc::as_ptr(&t.config) as usize))).collect();
        self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|(slot, _, tls), _| live.contains(&(*slot, *tls)));
        // Counts of virtual servers a reload removed go.
        let names: Vec<&str> = v.services.iter().map(|s| s.name.as_str()).collect();
        self.stats.retain(&names);
        self.counters.retain(&names);
        match self.view.write() {
            Ok(mut w) => *w = v,
            Err(p) => *p.into_inner() = v,
        }
    }

    /// The server the scheduler of snapshot service `pool` picks for
    /// `flow`.
    pub(super) fn pick(&self, pool: usize, vs: &furiwake_dataplane::state::snapshot::VirtualService, servers: &[furiwake_dataplane::lb::RealServer], flow: &Flow4) -> Option<u16> {
        self.sched.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pick_for(pool, vs, servers, flow, None)
    }

    /// The keep-alive pool of virtual server `slot` from `source` (TLS
    /// when `tls` says).
    fn client(&self, slot: u16, source: Ipv4Addr, tls: Option<&ToServers>) -> Upstream {
        let mut clients = match self.clients.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        let key = (slot, source, tls.map_or(0, |t| Arc::as_ptr(&t.config) as usize));
        clients
            .entry(key)
            .or_insert_with(|| {
                let mut c = HttpConnector::new();
                c.set_local_address(Some(IpAddr::V4(source)));
                c.set_nodelay(true);
                c.set_connect_timeout(Some(CONNECT_TIMEOUT));
                (tls.map(|t| Arc::clone(&t.config)), Upstream::new(c, tls, POOL_IDLE, MAX_IDLE_PER_SERVER))
            })
            .1
            .clone()
    }
}

/// A response of the engine's own: `status` with a one-line body.
fn answer(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))).map_err(|n| match n {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Headers that belong to one connection (RFC 9110 §7.6.1), not passed on.
const HOP_BY_HOP: [&str; 8] = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "http2-settings"];

fn strip_hop_by_hop(h: &mut hyper::HeaderMap) {
    // And whatever `Connection` names.
    let named: Vec<String> = h.get_all(header::CONNECTION).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase())).collect();
    for n in named.iter().map(String::as_str).chain(HOP_BY_HOP) {
        h.remove(n);
    }
}

/// A client connection's own connections to servers (the PROXY protocol
/// names one client per server connection), idle ones by server and TLS
/// configuration: after a reload changed `server_tls`, a connection made
/// with the old one is not reused (the entry holds its configuration, so
/// the pointer in the key cannot be a new one's).
#[derive(Default)]
pub(super) struct Own {
    idle: Mutex<HashMap<(SocketAddrV4, usize), Kept>>,
}

/// An idle connection of the client's own, and the TLS configuration it
/// was made with.
type Kept = (Sender, Option<Arc<rustls::ClientConfig>>);

fn tls_key(tls: Option<&ToServers>) -> usize {
    tls.map_or(0, |t| Arc::as_ptr(&t.config) as usize)
}

impl Own {
    fn take(&self, to: SocketAddrV4, tls: Option<&ToServers>) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        idle.remove(&(to, tls_key(tls))).map(|(s, _)| s).filter(|s| !s.is_closed())
    }

    fn put(&self, to: SocketAddrV4, tls: Option<&ToServers>, s: Sender) {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // A reload's leftovers go: one idle connection per server.
        idle.retain(|(a, _), _| *a != to);
        idle.insert((to, tls_key(tls)), (s, tls.map(|t| Arc::clone(&t.config))));
    }
}

/// `IP_BIND_ADDRESS_NO_PORT`: the source port is chosen at connect, per
/// destination, rather than at bind for every destination at once (a
/// source's 11,848 ephemeral ports then serve each server).
pub(super) fn bind_no_port(s: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt(2) on a socket we own, with an int option.
    unsafe { libc::setsockopt(s.as_raw_fd(), libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, (&raw const on).cast(), std::mem::size_of::<libc::c_int>() as u32) };
}

/// A connection from `source` to `to` that starts with the PROXY
/// protocol header of version `v` for `client` reaching `dest` (then
/// TLS, when `tls` says).
async fn connect_proxied(source: Ipv4Addr, to: SocketAddrV4, v: u8, client: SocketAddrV4, dest: SocketAddrV4, tls: Option<&ToServers>) -> std::io::Result<Sender> {
    use tokio::io::AsyncWriteExt;
    let s = TcpSocket::new_v4()?;
    bind_no_port(&s);
    s.bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))?;
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, s.connect(SocketAddr::V4(to))).await.map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    stream.set_nodelay(true)?;
    stream.write_all(&super::proxyproto::header(v, client, dest)).await?;
    match tls {
        None => handshake(to, stream).await,
        Some(t) => handshake(to, t.connect(to, stream).await?).await,
    }
}

/// HTTP/1.1 over `io` to server `to`, its connection driven by a task.
async fn handshake<S>(to: SocketAddrV4, io: S) -> std::io::Result<Sender>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(std::io::Error::other)?;
    // With upgrades: a WebSocket's 101 hands the connection over.
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            log::debug!("l7: to {to}: {e}");
        }
    });
    Ok(sender)
}

/// Where a connection of the client's own goes, and how it begins.
struct OwnTo<'a> {
    source: Ipv4Addr,
    to: SocketAddrV4,
    /// The PROXY protocol's version, client and destination.
    v: u8,
    client: SocketAddrV4,
    dest: SocketAddrV4,
    tls: Option<&'a ToServers>,
}

/// `req` over a connection of the client's own (`Own`).
async fn send_own(own: &Own, o: OwnTo<'_>, req: Request<UpBody>) -> Result<Response<Incoming>, SendError> {
    let to = o.to;
    let mut sender = match own.take(to, o.tls) {
        Some(s) => s,
        None => connect_proxied(o.source, to, o.v, o.client, o.dest, o.tls).await.map_err(|e| SendError::of(&e))?,
    };
    sender.ready().await.map_err(|e| SendError::of(&e))?;
    let resp = sender.send_request(req).await.map_err(|e| SendError::of(&e))?;
    own.put(to, o.tls, sender);
    Ok(resp)
}

/// The 503 of a virtual server: its sorry page, or a line.
fn sorry(svc: &super::view::Service) -> Response<Body> {
    match &svc.sorry {
        Some(page) => {
            let mut r = Response::new(Full::new(page.clone()).map_err(|n| match n {}).boxed());
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
        None => answer(StatusCode::SERVICE_UNAVAILABLE, "no server is available"),
    }
}

/// One request of virtual server `slot` from `peer` (`https`: it came
/// inside TLS), counted by its answer's class and time and logged
/// (`stats`).
pub(super) async fn proxy(shared: Arc<Shared>, slot: u16, peer: SocketAddr, https: bool, own: Arc<Own>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let t0 = std::time::Instant::now();
    let h = |n: header::HeaderName| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (method, target, version, referer, agent) = (req.method().to_string(), req.uri().path_and_query().map_or_else(|| req.uri().to_string(), |p| p.to_string()), req.version(), h(header::REFERER), h(header::USER_AGENT));
    // The server that answered, as ip << 16 | port (0: none).
    let server = std::sync::atomic::AtomicU64::new(0);
    let Ok(resp) = proxy_inner(&shared, slot, (peer, https), own, req, &server).await;
    let vs = shared.view().service(slot).map_or_else(String::new, |s| s.name.clone());
    let s = server.load(Ordering::Relaxed);
    let bytes = resp.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    shared.stats.answered(&super::stats::Line {
        client: peer,
        method: &method,
        target: &target,
        version,
        status: resp.status().as_u16(),
        bytes,
        referer: referer.as_deref(),
        agent: agent.as_deref(),
        vs: &vs,
        server: (s != 0).then(|| SocketAddrV4::new(Ipv4Addr::from((s >> 16) as u32), s as u16)),
        took: t0.elapsed(),
    });
    Ok(resp)
}

async fn proxy_inner(shared: &Arc<Shared>, slot: u16, (peer, https): (SocketAddr, bool), own: Arc<Own>, req: Request<Incoming>, server_seen: &std::sync::atomic::AtomicU64) -> Result<Response<Body>, Infallible> {
    let c = &shared.counters;
    c.requests.fetch_add(1, Ordering::Relaxed);
    let view = shared.view();
    let Some(svc) = view.service(slot) else {
        return Ok(c.count(answer(StatusCode::SERVICE_UNAVAILABLE, "no such virtual server")));
    };
    // A body over the limit: refused before a server sees it when its
    // length is announced, cut where it passes the limit otherwise.
    let max_body = *svc.limits.max_body_bytes.get_ref();
    let announced = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max_body) {
        return Ok(c.count(answer(StatusCode::PAYLOAD_TOO_LARGE, "the request's body is over the limit")));
    }
    let mut req = req;
    if let Err(why) = one_host(&mut req) {
        return Ok(c.count(answer(StatusCode::BAD_REQUEST, why)));
    }
    // A body that pauses past client_timeout_s ends (408 below).
    let patience = Duration::from_secs(u64::from(*svc.limits.client_timeout_s.get_ref()));
    let req = req.map(|b| http_body_util::Limited::new(Patient::new(b, patience), usize::try_from(max_body).unwrap_or(usize::MAX)).boxed());
    // Content switching: the first rule that holds picks the pool.
    let host = super::view::host_of(&req);
    let (pool, req) = match super::switch::choose(&shared.scripts, svc, c, req, host.as_deref(), Some(peer.ip())).await {
        Ok((p, req)) => (p.unwrap_or(slot), req),
        Err(e) => return Ok(c.count(unread(&svc.name, e))),
    };
    let Some(vs) = view.snap.services.get(pool as usize) else {
        return Ok(c.count(answer(StatusCode::SERVICE_UNAVAILABLE, "no such pool")));
    };
    let (src, sport) = match peer {
        SocketAddr::V4(a) => (u32::from(*a.ip()), a.port()),
        SocketAddr::V6(_) => (0, 0),
    };
    let flow = Flow4 { src, dst: u32::from(*svc.addr.ip()), sport, dport: svc.addr.port(), proto: 6 };
    // Persistence first: the server the request names, if it can take it.
    let want = svc.persist.as_ref().and_then(|p| p.wanted(&req));
    let kept = svc.persist.as_ref().zip(want.as_ref()).and_then(|(p, w)| p.resolve(w, vs, &view.snap.servers, &shared.table));
    let pick = kept.or_else(|| {
        let mut s = shared.sched.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        s.pick_for(pool as usize, vs, &view.snap.servers, &flow, None)
    });
    let Some(server) = pick.and_then(|g| view.snap.servers.get(g as usize)) else {
        return Ok(c.count(sorry(svc)));
    };
    // The chosen pool's own sources (a rule's pool may sit on another link).
    let sources = &vs.local_addrs;
    let Some(source) = sources.get(src as usize % sources.len().max(1)).map(|a| Ipv4Addr::from(*a)) else {
        return Ok(c.count(answer(StatusCode::SERVICE_UNAVAILABLE, "no source address")));
    };
    let to = SocketAddrV4::new(Ipv4Addr::from(server.ip), server.port);
    server_seen.store(u64::from(server.ip) << 16 | u64::from(server.port), Ordering::Relaxed);
    let (req, upgrade) = match upstream_request(req, svc, to, (peer, https), host.as_deref()) {
        Ok(r) => r,
        Err(r) => return Ok(c.count(r)),
    };
    let send = async {
        match (svc.client.proxy, peer) {
            (0, _) | (_, SocketAddr::V6(_)) => shared.client(slot, source, svc.to_servers.as_ref()).request(req).await,
            (v, SocketAddr::V4(client)) => send_own(&own, OwnTo { source, to, v, client, dest: svc.addr, tls: svc.to_servers.as_ref() }, req).await,
        }
    };
    let Ok(sent) = tokio::time::timeout(Duration::from_secs(u64::from(*svc.limits.server_timeout_s.get_ref())), send).await else {
        return Ok(c.count(answer(StatusCode::GATEWAY_TIMEOUT, "the server did not answer in time")));
    };
    match sent {
        Ok(mut resp) => {
            if let Some(p) = &svc.persist {
                p.answered(want.as_ref(), kept.is_some(), to, &mut resp, &shared.table);
            }
            Ok(c.count(downstream_response(resp, svc, upgrade, &shared.slots)))
        }
        Err(e) if e.paused => Ok(c.count(answer(StatusCode::REQUEST_TIMEOUT, "the request's body did not come in time"))),
        Err(e) => {
            log::debug!("l7: {} to {to}: {e}", svc.name);
            Ok(c.count(answer(StatusCode::BAD_GATEWAY, "the server could not be reached")))
        }
    }
}

/// The request's one host, as rules and the server both read it (RFC
/// 9112 §3.2): more than one `Host`, or an HTTP/1.1 request with none, is
/// refused; a target with an authority (absolute form, h2's
/// `:authority`) names the host, and `Host` is made to say the same
/// (RFC 9112 §3.2.2; RFC 9113 §8.3.1).
fn one_host<B>(req: &mut Request<B>) -> Result<(), &'static str> {
    if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
        return Err("more than one Host header");
    }
    // The path's control characters, encoded or not: no server reads
    // them as its rules would.
    if control_in(req.uri().path()) {
        return Err("a control character in the path");
    }
    if let Some(a) = req.uri().authority() {
        // The target names the host; `Host` is ignored, then set to it.
        if !host_and_port(a.as_str()) {
            return Err("a bad authority");
        }
        let v = HeaderValue::from_str(a.as_str()).map_err(|_| "a bad authority")?;
        req.headers_mut().insert(header::HOST, v);
        return Ok(());
    }
    match req.headers().get(header::HOST).map(|h| h.to_str().ok().filter(|v| host_and_port(v))) {
        Some(Some(_)) => Ok(()),
        Some(None) => Err("a bad Host header"),
        None if req.version() == Version::HTTP_11 => Err("no Host header"),
        None => Ok(()),
    }
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): an IP
/// literal in brackets, or a name of unreserved, percent-encoded and
/// sub-delimiter characters (no `@`); a port of digits below 65536. An
/// empty host is one (RFC 9112 §3.2).
fn host_and_port(v: &str) -> bool {
    let (host, port) = match v.strip_prefix('[') {
        Some(rest) => {
            let Some((ip, after)) = rest.split_once(']') else { return false };
            // A zone (`%25eth0`, RFC 6874) is not the address's.
            let ip = ip.split_once("%25").map_or(ip, |(a, _)| a);
            if ip.parse::<std::net::Ipv6Addr>().is_err() {
                return false;
            }
            match after.strip_prefix(':') {
                Some(p) => ("", p),
                None if after.is_empty() => ("", ""),
                None => return false,
            }
        }
        None => v.rsplit_once(':').unwrap_or((v, "")),
    };
    let port_ok = port.is_empty() || (port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok());
    port_ok && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b))
}

/// Control characters (C0, DEL) in a path as sent or percent-encoded.
fn control_in(path: &str) -> bool {
    let b = path.as_bytes();
    b.iter().any(|c| *c < 0x20 || *c == 0x7f)
        || b.windows(3).any(|w| w[0] == b'%' && std::str::from_utf8(&w[1..]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()).is_some_and(|c| c < 0x20 || c == 0x7f))
}

/// Does `Connection` name `token`?
fn connection_has(h: &hyper::HeaderMap, token: &str) -> bool {
    h.get_all(header::CONNECTION).iter().filter_map(|v| v.to_str().ok()).any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// A client's upgrade (RFC 9110 §7.8: WebSocket, RFC 6455): what it asked
/// for, and its side of the tunnel once the server agrees.
struct Upgrade {
    protocol: HeaderValue,
    client: hyper::upgrade::OnUpgrade,
    /// The tunnel's connection slot.
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The answer to a request whose body a rule's script could not read.
fn unread(vs: &str, e: super::switch::Unread) -> Response<Body> {
    use super::switch::Unread;
    match e {
        Unread::TooLarge => answer(StatusCode::PAYLOAD_TOO_LARGE, "the request's body is over the limit"),
        Unread::Timeout => answer(StatusCode::REQUEST_TIMEOUT, "the request's body did not come in time"),
        Unread::Failed(e) => {
            log::debug!("l7: {vs}: reading a body: {e}");
            answer(StatusCode::BAD_REQUEST, "the request's body could not be read")
        }
    }
}

/// The request as it goes to server `to` (its body already cut at
/// `max_body_bytes`): the Host kept, an absolute URI, HTTP/1.1, the
/// connection's own headers dropped (an upgrade's put back), the client's
/// address and the header actions applied. Or the answer that refuses it.
fn upstream_request(mut req: Request<UpBody>, svc: &super::view::Service, to: SocketAddrV4, (peer, https): (SocketAddr, bool), host: Option<&str>) -> Result<(Request<UpBody>, Option<Upgrade>), Response<Body>> {
    // WebSocket only (RFC 6455 §4.1: a GET with a key): an `h2c` upgrade
    // answered by a server would tunnel past the rules, the header
    // actions and the limits.
    let websocket = req.method() == hyper::Method::GET && req.headers().contains_key("sec-websocket-key");
    let protocol = req.headers().get(header::UPGRADE).filter(|v| websocket && v.as_bytes().eq_ignore_ascii_case(b"websocket")).cloned().filter(|_| connection_has(req.headers(), "upgrade"));
    let upgrade = protocol.map(|protocol| Upgrade { protocol, client: hyper::upgrade::on(&mut req), slot: None });
    // The client's Host stays (an h2 request names it in its URI only).
    if !req.headers().contains_key(header::HOST) {
        if let Some(v) = req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
            req.headers_mut().insert(header::HOST, v);
        }
    }
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let scheme = if svc.to_servers.is_some() { "https" } else { "http" };
    let uri = format!("{scheme}://{to}{pq}").parse::<Uri>().map_err(|_| answer(StatusCode::BAD_REQUEST, "bad request target"))?;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    strip_hop_by_hop(req.headers_mut());
    if let Some(u) = &upgrade {
        req.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        req.headers_mut().insert(header::UPGRADE, u.protocol.clone());
    }
    if let SocketAddr::V4(a) = peer {
        svc.client.apply(req.headers_mut(), *a.ip(), host, https);
    }
    for a in &svc.on_request {
        a.apply(req.headers_mut());
    }
    Ok((req, upgrade))
}

/// The server's answer as it goes to the client; a `101 Switching
/// Protocols` to an upgrade joins the two connections into a tunnel.
fn downstream_response(mut resp: Response<Incoming>, svc: &super::view::Service, mut upgrade: Option<Upgrade>, slots: &Arc<tokio::sync::Semaphore>) -> Response<Body> {
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    let agreed = resp.headers().get(header::UPGRADE).cloned();
    strip_hop_by_hop(resp.headers_mut());
    // A tunnel outlives its client connection's slot: it takes one of its
    // own once the server agreed, or the client gets 503.
    if let (true, Some(_), Some(_)) = (switching, &upgrade, &agreed) {
        match Arc::clone(slots).try_acquire_owned() {
            Ok(p) => {
                if let Some(u) = upgrade.as_mut() {
                    u.slot = Some(p);
                }
            }
            Err(_) => return answer(StatusCode::SERVICE_UNAVAILABLE, "too many connections"),
        }
    }
    if let (true, Some(u), Some(protocol)) = (switching, upgrade, agreed) {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        resp.headers_mut().insert(header::UPGRADE, protocol);
        let server = hyper::upgrade::on(&mut resp);
        // Idle for the longer of the client's and the server's limits
        // (HAProxy's `timeout tunnel`), holding its own slot.
        let idle = Duration::from_secs(u64::from(*svc.limits.client_timeout_s.get_ref().max(svc.limits.server_timeout_s.get_ref())));
        tokio::spawn(async move {
            let _slot = u.slot;
            match tokio::try_join!(u.client, server) {
                Ok((c, s)) => {
                    if super::activity::tunnel(TokioIo::new(c), TokioIo::new(s), idle).await {
                        log::debug!("l7: a tunnel idle for {} s closed", idle.as_secs());
                    }
                }
                Err(e) => log::debug!("l7: upgrade: {e}"),
            }
        });
    }
    for a in &svc.on_response {
        a.apply(resp.headers_mut());
    }
    // An answer whose body pauses past server_timeout_s is cut there.
    let patience = Duration::from_secs(u64::from(*svc.limits.server_timeout_s.get_ref()));
    resp.map(|b| Patient::new(b, patience).boxed())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts_are_a_host_and_a_port_and_paths_have_no_control_character() {
        use super::{control_in, host_and_port as ok};
        for good in ["a.example", "a.example:80", "A_b.example:", "[::1]:80", "[fe80::1%25eth0]", "192.0.2.1:8080", ""] {
            assert!(ok(good), "{good}");
        }
        for bad in ["admin.example:x", "admin.example:99999", "a[b]", "u@a.example", "[::1", "[zz]:80", "[::1]x", "a b", "a/b"] {
            assert!(!ok(bad), "{bad}");
        }
        for (path, bad) in [("/a/b", false), ("/%C3%A9t%C3%A9", false), ("/a%00.png", true), ("/a;%0A", true), ("/%7f", true), ("/%7F", true), ("/100%", false), ("/%1", false)] {
            assert_eq!(control_in(path), bad, "{path}");
        }
    }
}
