//! The listeners (one per virtual server, following the published views)
//! and each client connection, from accept to close, every phase bounded
//! (review of issue 21: no phase may hold a connection slot without a
//! deadline):
//!
//! 1. The first bytes and the TLS handshake share one deadline, the
//!    virtual server's `header_timeout_s`, counted from accept; the
//!    ClientHello is read holding nothing, then at most
//!    `engine::MAX_HANDSHAKES` handshakes do their work at once (the rest
//!    wait for a turn within the deadline).
//! 2. The protocol is chosen before hyper sees the connection, within the
//!    same deadline: by ALPN inside TLS, by the h2 preface (RFC 9113 §3.4,
//!    prior knowledge) otherwise; hyper's own detection waits for 24 bytes
//!    with no timer.
//! 3. Then `activity` keeps the deadlines: no request under way for
//!    `header_timeout_s` since the last answer ended (idle, or a head that
//!    does not complete: slowloris) shuts the connection down, gracefully
//!    first (an h2 GOAWAY; an idle HTTP/1.1 connection closes at once)
//!    and by force `GRACE` after that or after the client last took
//!    bytes, `client_timeout_s` after it at the latest; a client that
//!    takes nothing of its answers (`activity`) loses its connection.
//!    hyper's own
//!    header-read timer is off: it runs from the end of a request's body,
//!    not of its answer. h2 pings keep a dead peer from holding a
//!    connection.

use super::activity::{Activity, Check, Held, Watched};
use super::engine::{proxy, Own, Shared};
use super::view::View;
use std::collections::HashMap;
use std::net::SocketAddrV4;
use tokio::net::TcpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use http_body_util::BodyExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long a connection past its head deadline has to close after a
/// graceful shutdown began, or after its client last took bytes (a head
/// half in holds an HTTP/1.1 connection that hyper would otherwise keep;
/// an h2 answer's tail may still be going out).
const GRACE: Duration = Duration::from_secs(1);

/// The h2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    H1,
    H2,
}

/// The engine's main task: follows the published views, keeping one
/// listener per virtual server.
pub async fn run(shared: Arc<Shared>, mut views: watch::Receiver<Arc<View>>) {
    let mut listeners: HashMap<(SocketAddrV4, u16), JoinHandle<()>> = HashMap::new();
    loop {
        let view = Arc::clone(&views.borrow_and_update());
        shared.set_view(Arc::clone(&view));
        let want: Vec<(SocketAddrV4, u16)> = view.services.iter().filter(|s| !s.retired).map(|s| (s.addr, s.slot)).collect();
        listeners.retain(|k, h| {
            let keep = want.contains(k);
            if !keep {
                h.abort();
            }
            keep
        });
        for k in want {
            if let std::collections::hash_map::Entry::Vacant(slot) = listeners.entry(k) {
                slot.insert(tokio::spawn(listener(Arc::clone(&shared), k.0, k.1)));
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

/// Listens on `addr` for virtual server `slot`, the bind tried again for
/// a while (a listener of the same address just aborted may not have
/// closed yet), then accepts.
async fn listener(shared: Arc<Shared>, addr: SocketAddrV4, slot: u16) {
    // Until it binds (the task ends only when the view drops it): every
    // 100 ms for 10 s, then every 5 s, said every 20th time.
    for attempt in 0u32.. {
        match listen(addr) {
            Ok(l) => {
                log::info!("l7: listening on {addr}");
                return accept(shared, l, slot).await;
            }
            Err(e) if attempt % 20 == 0 => log::warn!("l7: listening on {addr}: {e} (trying again)"),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(if attempt < 100 { 100 } else { 5000 })).await;
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
        let Ok(permit) = Arc::clone(&shared.slots).try_acquire_owned() else {
            shared.counters.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let shared = Arc::clone(&shared);
        shared.counters.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _permit = permit;
            serve_one(shared, slot, peer, stream).await;
        });
    }
}

/// Serves one accepted connection of virtual server `slot`.
async fn serve_one(shared: Arc<Shared>, slot: u16, peer: SocketAddr, stream: TcpStream) {
    let (limits, tls, passthrough) = shared.view().service(slot).map(|s| (s.limits.clone(), s.tls.clone(), s.passthrough)).unwrap_or_default();
    let deadline = Duration::from_secs(u64::from(*limits.header_timeout_s.get_ref()));
    if passthrough {
        return super::passthrough::run(shared, slot, peer, stream, deadline).await;
    }
    let until = Instant::now() + deadline;
    match tls {
        None => {
            let Some(proto) = sniff(&stream, until).await else { return };
            serve(shared, slot, peer, (false, proto), &limits, stream).await;
        }
        Some(config) => {
            let Some(s) = super::tls::accept(config, stream, until, &shared.counters, &shared.handshakes).await else { return };
            let proto = if s.get_ref().1.alpn_protocol() == Some(b"h2") { Proto::H2 } else { Proto::H1 };
            serve(shared, slot, peer, (true, proto), &limits, s).await;
        }
    }
}

/// A plain connection's protocol: h2 when its first bytes are the h2
/// preface, HTTP/1.1 as soon as they cannot be; None when they neither
/// are nor are not by `until` (or the client closed).
async fn sniff(stream: &TcpStream, until: Instant) -> Option<Proto> {
    let mut buf = [0u8; PREFACE.len()];
    super::peek::until(stream, until, &mut buf, |got| match got {
        g if PREFACE.get(..g.len()) != Some(g) => Some(Proto::H1),
        g if g.len() == PREFACE.len() => Some(Proto::H2),
        // A prefix of the preface: wait for more.
        _ => None,
    })
    .await
}

/// Serves `proto` on a client's connection (`https`: inside TLS).
async fn serve<S>(shared: Arc<Shared>, slot: u16, peer: SocketAddr, (https, proto): (bool, Proto), limits: &crate::config::Limits, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let secs = |s: &toml::Spanned<u32>| Duration::from_secs(u64::from(*s.get_ref()));
    let (deadline, client) = (secs(&limits.header_timeout_s), secs(&limits.client_timeout_s));
    let own = Arc::new(Own::default());
    let act = Activity::new();
    let counters = Arc::clone(&shared.counters);
    let engine = Arc::clone(&shared);
    let svc = {
        let act = Arc::clone(&act);
        hyper::service::service_fn(move |req| {
            let held = act.begin();
            let answer = proxy(Arc::clone(&shared), slot, peer, https, Arc::clone(&own), req);
            async move { answer.await.map(|r| r.map(|b| Held::new(b, held).boxed())) }
        })
    };
    let io = TokioIo::new(Watched::new(stream, Arc::clone(&act)));
    // Drives `conn` under `act`'s deadlines (module docs).
    macro_rules! watched {
        ($conn:expr) => {{
            let mut conn = std::pin::pin!($conn);
            let mut closing: Option<Instant> = None;
            loop {
                let now = Instant::now();
                let at = match (act.check(now, deadline, client), closing) {
                    (Check::Stuck, _) => {
                        counters.stalled.fetch_add(1, Ordering::Relaxed);
                        break Ok(());
                    }
                    // Shut down at `since`: closed GRACE after it, or
                    // after the client last took bytes, `client` after it
                    // at the latest.
                    (_, Some(since)) if now >= act.hard_close(since, GRACE, client) => break Ok(()),
                    (_, Some(since)) => act.hard_close(since, GRACE, client),
                    (Check::Idle, None) => {
                        counters.idle_closed.fetch_add(1, Ordering::Relaxed);
                        conn.as_mut().graceful_shutdown();
                        closing = Some(now);
                        now + GRACE
                    }
                    (Check::Until(at), None) => at,
                };
                tokio::select! {
                    r = conn.as_mut() => break r,
                    () = tokio::time::sleep_until(at) => {}
                    // The last answer ended: the head deadline starts now.
                    () = act.idle.notified() => {}
                }
            }
        }};
    }
    let result = match proto {
        Proto::H1 => {
            let header_bytes = *limits.max_header_bytes.get_ref() as usize;
            let conn = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(None)
                .max_headers(*limits.max_headers.get_ref() as usize)
                // The read buffer: a head that does not fit gets 431.
                .max_buf_size(header_bytes.max(8192))
                .serve_connection(io, svc)
                .with_upgrades();
            watched!(conn)
        }
        Proto::H2 => {
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .max_header_list_size(*limits.max_header_bytes.get_ref())
                .max_concurrent_streams(100)
                .keep_alive_interval(Some(deadline))
                .keep_alive_timeout(deadline)
                .serve_connection(io, svc);
            watched!(conn)
        }
    };
    if let Err(e) = result {
        log::debug!("l7: {peer}: {e}");
        refused_by_hyper(&engine, slot, peer, &e);
    }
}

/// The answer hyper's HTTP/1.1 server sends itself for error `e`, as its
/// `on_error` maps parse errors (hyper 1.x `proto/h1/role.rs`); the
/// public `hyper::Error` says only which parse error by its text.
fn hyper_status(e: &hyper::Error) -> Option<hyper::StatusCode> {
    use hyper::StatusCode as S;
    if !e.is_parse() {
        return None;
    }
    let text = e.to_string();
    let says = |p: &str| text.starts_with(p);
    if says("URI too long") {
        Some(S::URI_TOO_LONG)
    } else if says("message head is too large") {
        Some(S::REQUEST_HEADER_FIELDS_TOO_LARGE)
    } else if says("invalid HTTP version parsed (found HTTP2 preface)") {
        None
    } else if ["invalid HTTP method", "invalid HTTP version", "invalid URI", "invalid HTTP header", "invalid content-length", "invalid transfer-encoding", "unexpected transfer-encoding"].iter().any(|p| says(p)) {
        Some(S::BAD_REQUEST)
    } else {
        None
    }
}

/// A request hyper refused before the engine saw it, with an answer of
/// its own (`400`, `431` for a head over the limit): counted and logged
/// like the engine's answers.
fn refused_by_hyper(shared: &Shared, slot: u16, peer: SocketAddr, e: &hyper::Error) {
    let Some(status) = hyper_status(e) else { return };
    let mut answer = hyper::Response::new(());
    *answer.status_mut() = status;
    let _ = shared.counters.count(answer);
    let vs = shared.view().service(slot).map_or_else(String::new, |s| s.name.clone());
    let line = super::stats::Line { client: peer, method: "-", target: "-", version: hyper::Version::HTTP_11, status: status.as_u16(), bytes: Some(0), referer: None, agent: None, vs: &vs, server: None, took: Duration::ZERO };
    shared.stats.answered(&line);
}
