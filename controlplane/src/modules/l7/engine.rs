//! The L7 engine's tasks, on its tokio runtime (whose threads live in the
//! appliance's network namespace): one listener per `http` virtual server,
//! HTTP/1.1 and h2c from clients (hyper's auto server), each request sent
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
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::TcpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

type Body = BoxBody<Bytes, hyper::Error>;
type Upstream = Client<HttpConnector, Incoming>;

/// How long a client may take to send a request's header (slowloris).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle keep-alive connections to servers are closed after this.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// What every task shares.
pub struct Shared {
    view: RwLock<Arc<View>>,
    sched: Mutex<Scheduler>,
    clients: Mutex<HashMap<(u16, Ipv4Addr), Upstream>>,
    pub counters: Arc<Counters>,
}

impl Shared {
    pub fn new(counters: Arc<Counters>) -> Self {
        Shared { view: RwLock::new(Arc::new(View::default())), sched: Mutex::new(Scheduler::default()), clients: Mutex::new(HashMap::new()), counters }
    }

    fn view(&self) -> Arc<View> {
        self.view.read().map_or_else(|p| Arc::clone(&p.into_inner()), |v| Arc::clone(&v))
    }

    fn set_view(&self, v: Arc<View>) {
        if let Ok(mut s) = self.sched.lock() {
            s.resize(v.snap.services.len());
        }
        match self.view.write() {
            Ok(mut w) => *w = v,
            Err(p) => *p.into_inner() = v,
        }
    }

    /// The keep-alive pool of virtual server `slot` from `source`.
    fn client(&self, slot: u16, source: Ipv4Addr) -> Upstream {
        let mut clients = match self.clients.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        clients
            .entry((slot, source))
            .or_insert_with(|| {
                let mut c = HttpConnector::new();
                c.set_local_address(Some(IpAddr::V4(source)));
                c.set_nodelay(true);
                c.set_connect_timeout(Some(CONNECT_TIMEOUT));
                Client::builder(TokioExecutor::new()).pool_idle_timeout(POOL_IDLE).pool_timer(TokioTimer::new()).build(c)
            })
            .clone()
    }
}

/// The engine's main task: follows the published views, keeping one
/// listener per virtual server.
pub async fn run(shared: Arc<Shared>, mut views: watch::Receiver<Arc<View>>) {
    let mut listeners: HashMap<(SocketAddrV4, u16), JoinHandle<()>> = HashMap::new();
    loop {
        let view = Arc::clone(&views.borrow_and_update());
        shared.set_view(Arc::clone(&view));
        let want: Vec<(SocketAddrV4, u16)> = view.services.iter().map(|s| (s.addr, s.slot)).collect();
        listeners.retain(|k, h| {
            let keep = want.contains(k);
            if !keep {
                h.abort();
            }
            keep
        });
        for k in want {
            if let std::collections::hash_map::Entry::Vacant(slot) = listeners.entry(k) {
                match listen(k.0) {
                    Ok(l) => {
                        log::info!("l7: listening on {}", k.0);
                        slot.insert(tokio::spawn(accept(Arc::clone(&shared), l, k.1)));
                    }
                    Err(e) => log::warn!("l7: listening on {}: {e}", k.0),
                }
            }
        }
        if views.changed().await.is_err() {
            break;
        }
    }
    for h in listeners.values() {
        h.abort();
    }
}

fn listen(addr: SocketAddrV4) -> std::io::Result<tokio::net::TcpListener> {
    let s = TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    s.bind(SocketAddr::V4(addr))?;
    s.listen(4096)
}

/// Accepts connections of virtual server `slot`.
async fn accept(shared: Arc<Shared>, l: tokio::net::TcpListener, slot: u16) {
    loop {
        let (stream, peer) = match l.accept().await {
            Ok(c) => c,
            Err(e) => {
                log::debug!("l7: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        shared.counters.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|req| proxy(Arc::clone(&shared), slot, peer, req));
            let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            b.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
            if let Err(e) = b.serve_connection_with_upgrades(TokioIo::new(stream), svc).await {
                log::debug!("l7: {peer}: {e}");
            }
        });
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
const HOP_BY_HOP: [&str; 7] = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

fn strip_hop_by_hop(h: &mut hyper::HeaderMap) {
    // And whatever `Connection` names.
    let named: Vec<String> = h.get_all(header::CONNECTION).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase())).collect();
    for n in named.iter().map(String::as_str).chain(HOP_BY_HOP) {
        h.remove(n);
    }
}

/// One request of virtual server `slot` from `peer`.
async fn proxy(shared: Arc<Shared>, slot: u16, peer: SocketAddr, mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let c = &shared.counters;
    c.requests.fetch_add(1, Ordering::Relaxed);
    let view = shared.view();
    let (Some(svc), Some(vs)) = (view.service(slot), view.snap.services.get(slot as usize)) else {
        return Ok(c.count(answer(StatusCode::SERVICE_UNAVAILABLE, "no such virtual server")));
    };
    let (src, sport) = match peer {
        SocketAddr::V4(a) => (u32::from(*a.ip()), a.port()),
        SocketAddr::V6(_) => (0, 0),
    };
    let flow = Flow4 { src, dst: u32::from(*svc.addr.ip()), sport, dport: svc.addr.port(), proto: 6 };
    let pick = match shared.sched.lock() {
        Ok(mut s) => s.pick_for(slot as usize, vs, &view.snap.servers, &flow, None),
        Err(p) => p.into_inner().pick_for(slot as usize, vs, &view.snap.servers, &flow, None),
    };
    let Some(server) = pick.and_then(|g| view.snap.servers.get(g as usize)) else {
        return Ok(c.count(answer(StatusCode::SERVICE_UNAVAILABLE, "no server is available")));
    };
    let Some(source) = svc.sources.get(src as usize % svc.sources.len().max(1)).copied() else {
        return Ok(c.count(answer(StatusCode::SERVICE_UNAVAILABLE, "no source address")));
    };
    let to = SocketAddrV4::new(Ipv4Addr::from(server.ip), server.port);
    // The client's Host stays (an h2 request names it in its URI only).
    if !req.headers().contains_key(header::HOST) {
        if let Some(v) = req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
            req.headers_mut().insert(header::HOST, v);
        }
    }
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("http://{to}{pq}").parse::<Uri>() else {
        return Ok(c.count(answer(StatusCode::BAD_REQUEST, "bad request target")));
    };
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    strip_hop_by_hop(req.headers_mut());
    match shared.client(slot, source).request(req).await {
        Ok(mut resp) => {
            strip_hop_by_hop(resp.headers_mut());
            Ok(c.count(resp.map(|b| b.boxed())))
        }
        Err(e) => {
            log::debug!("l7: {} to {to}: {e}", svc.name);
            Ok(c.count(answer(StatusCode::BAD_GATEWAY, "the server could not be reached")))
        }
    }
}
