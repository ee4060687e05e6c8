//! `persistence` of a virtual server: what keeps a client on its server,
//! by its address (the workers, L4) or by what its HTTP requests carry
//! (the L7 engine, `protocol = "http"`).

use super::cidr::spanned_ipv4;
use serde::Deserialize;
use std::net::Ipv4Addr;
use toml::Spanned;

fn timeout_s() -> Spanned<u32> {
    Spanned::new(0..0, 300)
}

fn netmask() -> Spanned<Ipv4Addr> {
    Spanned::new(0..0, Ipv4Addr::BROADCAST)
}

fn prefix6() -> Spanned<u8> {
    Spanned::new(0..0, 128)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PersistenceKind {
    /// The client's address under `netmask` (a /24 keeps the clients of a
    /// proxy farm together, seed 004).
    SourceIp,
    /// The client's address and port.
    SourceIpPort,
    /// `http`: the box inserts a cookie naming the server (seed 004).
    CookieInsert,
    /// `http`: the server sets the cookie itself; the box learns its
    /// values.
    CookiePassive,
    /// `http`: the server sets the cookie with an empty value; the box
    /// fills in the server.
    CookieRewrite,
    /// `http`: a hash of an application cookie's value picks the server.
    CookieHash,
    /// `http`: a session ID (a cookie, `;jsessionid=` in the path, or a
    /// query parameter) learned from the server's answer.
    SessionId,
    /// `http`: a header's value (a terminal ID, seed 001).
    Header,
    /// `tcp`: the TLS session ID of a connection passed through
    /// (`modules::l7::passthrough`; weak with TLS 1.3).
    TlsSessionId,
}

impl PersistenceKind {
    /// Kept by the L7 engine (`http`, or `tcp` with `tls-session-id`).
    pub fn is_l7(self) -> bool {
        !matches!(self, PersistenceKind::SourceIp | PersistenceKind::SourceIpPort)
    }
}

/// `same_site` of an inserted cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persistence {
    pub kind: PersistenceKind,
    /// How long a record lives after its last connection ended.
    #[serde(default = "timeout_s")]
    pub timeout_s: Spanned<u32>,
    /// `source-ip` only: the part of the client address that counts.
    #[serde(default = "netmask", deserialize_with = "spanned_ipv4")]
    pub netmask: Spanned<Ipv4Addr>,
    /// `source-ip` of an IPv6 virtual server: how many leading bits of the
    /// client's IPv6 address count (`1..=128`, default 128; 64 keeps a host
    /// whose temporary addresses change within its /64, RFC 8981).
    #[serde(default = "prefix6")]
    pub prefix6: Spanned<u8>,
    /// Keep a record whose server goes down (the client returns to it once
    /// it is back); default: such records are dropped.
    #[serde(default)]
    pub keep_on_down: bool,
    /// `cookie-*`, `session-id`: the cookie's name (default `FWSRV` for
    /// the box's own, `JSESSIONID` for a session ID).
    pub cookie: Option<Spanned<String>>,
    /// `cookie-insert`: the cookie's `Max-Age`, seconds (none: it lives as
    /// long as the browser session).
    pub expires_s: Option<Spanned<u32>>,
    /// `cookie-insert`: its `Path` (default `/`), `Secure`, `HttpOnly`,
    /// `SameSite`.
    pub path: Option<Spanned<String>>,
    #[serde(default)]
    pub secure: bool,
    #[serde(default)]
    pub http_only: bool,
    pub same_site: Option<Spanned<SameSite>>,
    /// `cookie-insert`: only into `text/html` answers (a cache in front
    /// must not keep one client's cookie on a shared image, seed 004).
    #[serde(default)]
    pub html_only: bool,
    /// `session-id`: the query parameter that may carry it too (the path
    /// parameter `;NAME=` of the cookie's name, lower case, always does).
    pub query: Option<Spanned<String>>,
    /// `header`: the header whose value keeps a client on its server.
    pub header: Option<Spanned<String>>,
}

