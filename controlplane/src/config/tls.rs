//! `tls` of a `protocol = "https"` virtual server (the certificates the L7
//! engine terminates TLS with, chosen by SNI) and `server_tls` of an
//! `http` or `https` one (re-encryption to its servers, verified against
//! a CA). The files are read, checked and made into rustls configurations
//! when the configuration is loaded: a bad certificate, a key that does
//! not match it or a key others can read is refused at its line, and
//! `config reload` reads them again, so a reload swaps certificates while
//! the connections made with the old ones go on (README, "HTTPS").
//!
//! Modern defaults only: TLS 1.3 and 1.2 (`min_version = "1.3"` drops
//! 1.2), rustls's cipher suites (AEAD only, forward secrecy only), no
//! renegotiation, no compression. Resumption: TLS 1.3 and 1.2 tickets
//! under keys that rotate every six hours (rustls's `TicketRotator`), and a
//! session-ID cache for TLS 1.2 clients without tickets; one ticketer and
//! one cache per virtual server (by name, kept across reloads so a reload
//! does not invalidate them), so a session made with one virtual server
//! never resumes on another (a connection for a.example steered to
//! another virtual server's VIP: the "virtual host confusion" class).

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use serde::Deserialize;
use std::path::Path;
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock};
use toml::Spanned;

/// A private key file's size at most (a 16384-bit RSA key's PEM is ~13 kB).
const MAX_KEY_BYTES: u64 = 64 * 1024;
/// TLS 1.2 sessions kept for resumption by session ID, per virtual server.
const SESSION_CACHE: usize = 4 * 1024;
/// An OCSP response's size at most.
const MAX_OCSP_BYTES: u64 = 64 * 1024;

/// `tls = { certificates = [...], min_version = "1.2" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// The first is the default (a client without SNI, or a name no
    /// certificate is valid for).
    pub certificates: Vec<Spanned<CertificateFiles>>,
    #[serde(default)]
    pub min_version: Option<Spanned<TlsVersion>>,
    /// Made when the configuration is loaded (`Config::read_tls_files`).
    #[serde(skip)]
    pub loaded: Loaded<ServerConfig>,
}

/// One certificate: its chain (leaf first) and its private key, PEM, and
/// an OCSP response (DER, as `openssl ocsp -respout` writes it) stapled
/// to every handshake that asks (RFC 6066 §8).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFiles {
    pub cert: String,
    /// Absolute, owned by root, mode 0600 or stricter (as `[sync] key_file`).
    pub key: String,
    pub ocsp: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    V12,
    #[serde(rename = "1.3")]
    V13,
}

/// `server_tls = { ca = "servers-ca.pem", server_name = "app.internal" }`:
/// the engine's connections to the servers are TLS, each server's
/// certificate verified against `ca` for `server_name` (default: the
/// server's address, which its certificate must then name).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    pub ca: Spanned<String>,
    pub server_name: Option<Spanned<String>>,
    #[serde(skip)]
    pub loaded: Loaded<ClientConfig>,
}

/// A rustls configuration made from the files at load.
#[derive(Clone)]
pub struct Loaded<T>(pub Option<Arc<T>>);

impl<T> Default for Loaded<T> {
    fn default() -> Self {
        Loaded(None)
    }
}

impl<T> std::fmt::Debug for Loaded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "loaded"
        } else {
            "not loaded"
        })
    }
}

impl Tls {
    pub(super) fn render(&self, q: super::l7::Quote<'_>) -> String {
        let certs: Vec<String> = self
            .certificates
            .iter()
            .map(|c| {
                let c = c.get_ref();
                let ocsp = c
                    .ocsp
                    .as_ref()
                    .map(|o| format!(", ocsp = {}", q(o)))
                    .unwrap_or_default();
                format!("{{ cert = {}, key = {}{ocsp} }}", q(&c.cert), q(&c.key))
            })
            .collect();
        let min = match self.min_version.as_ref().map(|m| *m.get_ref()) {
            Some(TlsVersion::V13) => ", min_version = \"1.3\"",
            Some(TlsVersion::V12) => ", min_version = \"1.2\"",
            None => "",
        };
        format!("tls = {{ certificates = [{}]{min} }}", certs.join(", "))
    }
}

impl ServerTls {
    pub(super) fn render(&self, q: super::l7::Quote<'_>) -> String {
        let name = self
            .server_name
            .as_ref()
            .map(|n| format!(", server_name = {}", q(n.get_ref())))
            .unwrap_or_default();
        format!("server_tls = {{ ca = {}{name} }}", q(self.ca.get_ref()))
    }
}

/// The crypto the engine uses: rustls's `ring` provider (AES-GCM with
/// AES-NI/VAES, ChaCha20-Poly1305, X25519, P-256/384). rustls 0.23.48
/// marks it deprecated because ring has no post-quantum key exchange
/// (X25519MLKEM768); aws-lc-rs has it at the price of a C/assembly build
/// of AWS-LC in every CI run (docs/architecture.md, "TLS backend").
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

/// A virtual server's ticketer and session cache.
type Resumption = (Option<Arc<dyn rustls::server::ProducesTickets>>, Arc<dyn StoresServerSessions>);

/// Virtual server `vs`'s ticketer (keys rotate every six hours) and
/// session cache, made the first time it is loaded and kept by name for
/// the process, so a reload keeps its sessions resumable.
fn resumption(vs: &str) -> Resumption {
    static BY_VS: OnceLock<Mutex<HashMap<String, Resumption>>> = OnceLock::new();
    let mut m = BY_VS.get_or_init(Mutex::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    m.entry(vs.to_string()).or_insert_with(|| (rustls::crypto::ring::Ticketer::new().ok(), rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE))).clone()
}

/// Chooses the certificate by the client's SNI: the first valid for the
/// name (its subjectAltName, wildcards included, as a client checks it),
/// else the first.
#[derive(Debug)]
struct BySni(Vec<Arc<CertifiedKey>>);

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let first = self.0.first().cloned();
        let Some(name) = hello
            .server_name()
            .and_then(|n| ServerName::try_from(n).ok())
        else {
            return first;
        };
        let valid = |c: &&Arc<CertifiedKey>| {
            let Some(leaf) = c.cert.first() else {
                return false;
            };
            webpki::EndEntityCert::try_from(leaf)
                .is_ok_and(|e| e.verify_is_valid_for_subject_name(&name).is_ok())
        };
        self.0.iter().find(valid).cloned().or(first)
    }
}

/// A certificate chain from a PEM file.
fn chain(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate in it (PEM, BEGIN CERTIFICATE)".into());
    }
    Ok(certs)
}

/// One certificate, its key checked against it.
fn certified(c: &CertificateFiles) -> Result<CertifiedKey, String> {
    let certs = chain(&c.cert).map_err(|e| format!("cert {:?}: {e}", c.cert))?;
    let pem = super::secret::read_secret(
        Path::new(&c.key),
        MAX_KEY_BYTES,
        "a key file holds one private key",
    )
    .map_err(|e| format!("key {:?}: {e}", c.key))?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| format!("key {:?}: {e}", c.key))?;
    let mut ck = CertifiedKey::from_der(certs, key, &provider())
        .map_err(|e| format!("cert {:?} and key {:?}: {e}", c.cert, c.key))?;
    if let Some(o) = &c.ocsp {
        let mut bytes = Vec::new();
        std::fs::File::open(o).and_then(|f| f.take(MAX_OCSP_BYTES + 1).read_to_end(&mut bytes)).map_err(|e| format!("ocsp {o:?}: {e}"))?;
        if bytes.len() as u64 > MAX_OCSP_BYTES {
            return Err(format!("ocsp {o:?}: more than {MAX_OCSP_BYTES} bytes: an OCSP response is a few kB"));
        }
        ck.ocsp = Some(bytes);
    }
    Ok(ck)
}

static ONLY_13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
static FROM_12: [&SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];

fn versions(min: Option<TlsVersion>) -> &'static [&'static SupportedProtocolVersion] {
    match min {
        Some(TlsVersion::V13) => &ONLY_13,
        _ => &FROM_12,
    }
}

impl Tls {
    /// The rustls configuration of these files for virtual server `vs`:
    /// (where, why) if not.
    pub(super) fn load(&self, vs: &str) -> Result<ServerConfig, (Option<std::ops::Range<usize>>, String)> {
        let mut keys = Vec::new();
        for c in &self.certificates {
            keys.push(Arc::new(
                certified(c.get_ref()).map_err(|e| (Some(c.span()), e))?,
            ));
        }
        if keys.is_empty() {
            return Err((None, "tls: name at least one certificate".into()));
        }
        let mut sc = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions(self.min_version.as_ref().map(|m| *m.get_ref())))
            .map_err(|e| (None, e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(BySni(keys)));
        // h2 first (RFC 7540 §3.3), HTTP/1.1 for the rest.
        sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let (ticketer, cache) = resumption(vs);
        if let Some(t) = ticketer {
            sc.ticketer = t;
        }
        sc.session_storage = cache;
        Ok(sc)
    }
}

impl ServerTls {
    pub(super) fn load(&self) -> Result<ClientConfig, (Option<std::ops::Range<usize>>, String)> {
        let at = Some(self.ca.span());
        let mut roots = RootCertStore::empty();
        for c in chain(self.ca.get_ref()).map_err(|e| {
            (
                at.clone(),
                format!("server_tls: ca {:?}: {e}", self.ca.get_ref()),
            )
        })? {
            roots.add(c).map_err(|e| {
                (
                    at.clone(),
                    format!("server_tls: ca {:?}: {e}", self.ca.get_ref()),
                )
            })?;
        }
        if let Some(n) = &self.server_name {
            ServerName::try_from(n.get_ref().as_str()).map_err(|_| {
                (
                    Some(n.span()),
                    format!(
                        "server_tls: server_name {:?} is no DNS name or address",
                        n.get_ref()
                    ),
                )
            })?;
        }
        let cc = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions(None))
            .map_err(|e| (None, e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(cc)
    }
}
