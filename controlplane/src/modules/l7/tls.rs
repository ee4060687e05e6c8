//! TLS in the engine (README, "HTTPS"): the client's side terminated with
//! the virtual server's `tls` (a rustls `ServerConfig` made when the
//! configuration was loaded: `config::tls`), and the servers' side
//! re-encrypted when it names `server_tls`. The configurations come with
//! each view, so a `config reload` swaps certificates for the next
//! handshake while the connections already made go on with theirs.
//!
//! Where a hardware offload would plug in: rustls hands the record
//! encryption to its `CryptoProvider` (here ring's AES-GCM, which uses
//! AES-NI/VAES and carry-less multiplication), and the handshake's
//! signatures to the certificate's `SigningKey`. A DPDK cryptodev or QAT
//! engine would be a `CryptoProvider` whose AEAD and signing submit to
//! the device's queues from the engine's threads; no code here changes.

use super::Counters;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use std::net::{IpAddr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// A request's body on its way to a server.
pub type UpBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// TLS to a virtual server's servers: the configuration (roots, versions)
/// and the name their certificates must be valid for (none: each
/// server's address).
#[derive(Debug, Clone)]
pub struct ToServers {
    pub config: Arc<ClientConfig>,
    pub name: Option<ServerName<'static>>,
}

impl ToServers {
    /// The name server `to`'s certificate is checked against.
    fn name_for(&self, to: SocketAddrV4) -> ServerName<'static> {
        self.name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(IpAddr::V4(*to.ip()).into()))
    }

    /// `stream` to server `to`, encrypted (the handshake verified).
    pub async fn connect(
        &self,
        to: SocketAddrV4,
        stream: TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        tokio_rustls::TlsConnector::from(Arc::clone(&self.config))
            .connect(self.name_for(to), stream)
            .await
    }
}

/// A keep-alive pool to servers, plain or TLS.
#[derive(Clone)]
pub enum Upstream {
    Plain(Client<HttpConnector, UpBody>),
    Tls(Client<HttpsConnector<HttpConnector>, UpBody>),
}

impl Upstream {
    /// The pool over connector `c` (its source and timeouts set), TLS
    /// when `tls` says.
    pub fn new(
        c: HttpConnector,
        tls: Option<&ToServers>,
        idle: Duration,
        max_idle: usize,
    ) -> Upstream {
        let mut b = Client::builder(hyper_util::rt::TokioExecutor::new());
        b.pool_idle_timeout(idle)
            .pool_max_idle_per_host(max_idle)
            .pool_timer(hyper_util::rt::TokioTimer::new());
        match tls {
            None => Upstream::Plain(b.build(c)),
            Some(t) => {
                let mut c = c;
                // The https URI is the connector's to read.
                c.enforce_http(false);
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config((*t.config).clone())
                    .https_only();
                let https = match &t.name {
                    Some(n) => https.with_server_name_resolver(
                        hyper_rustls::FixedServerNameResolver::new(n.clone()),
                    ),
                    None => https,
                };
                Upstream::Tls(b.build(https.enable_http1().wrap_connector(c)))
            }
        }
    }

    pub async fn request(&self, req: Request<UpBody>) -> Result<Response<Incoming>, super::patience::SendError> {
        match self {
            Upstream::Plain(c) => c.request(req).await.map_err(|e| super::patience::SendError::of(&e)),
            Upstream::Tls(c) => c.request(req).await.map_err(|e| super::patience::SendError::of(&e)),
        }
    }
}

/// The client's side of a connection: its handshake with `config` by
/// `until`, counted (`tls_handshakes`, `tls_resumed`, `tls_failed`). The
/// ClientHello is read first, holding nothing; only then a turn of
/// `turns` (the handshakes under way at once) is waited for, within the
/// same deadline, and held for the rest of the handshake: a client that
/// sends a byte and stops takes no turn.
pub async fn accept(config: Arc<ServerConfig>, stream: TcpStream, until: tokio::time::Instant, c: &Counters, turns: &Arc<tokio::sync::Semaphore>) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let failed = || {
        c.tls_failed.fetch_add(1, Ordering::Relaxed);
        None
    };
    let lazy = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
    let start = match tokio::time::timeout_at(until, lazy).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            log::debug!("l7: TLS ClientHello: {e}");
            return failed();
        }
        Err(_) => return failed(),
    };
    let Ok(Ok(_turn)) = tokio::time::timeout_at(until, Arc::clone(turns).acquire_owned()).await else { return failed() };
    match tokio::time::timeout_at(until, start.into_stream(config)).await {
        Ok(Ok(s)) => {
            c.tls_handshakes.fetch_add(1, Ordering::Relaxed);
            if s.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                c.tls_resumed.fetch_add(1, Ordering::Relaxed);
            }
            if s.get_ref().1.alpn_protocol() == Some(b"h2") {
                c.tls_h2.fetch_add(1, Ordering::Relaxed);
            }
            Some(s)
        }
        Ok(Err(e)) => {
            log::debug!("l7: TLS handshake: {e}");
            failed()
        }
        Err(_) => failed(),
    }
}
