//! `tls-session-id` persistence for a `tcp` virtual server (issue 21;
//! HAProxy's `stick on req.ssl_sess_id`, BIG-IP's SSL persistence): TLS
//! passes through untouched, to the server the client's session was made
//! with. The engine terminates the client's TCP (not its TLS), reads the
//! session ID of its ClientHello (RFC 5246 §7.4.1.2), and sends it to the
//! server that ID is known for when that server can take it, else to the
//! one the pool's scheduler picks; the ServerHello's session ID is
//! learned for that server when it is a new session's (not the one the
//! client offered: that is a resumption, or TLS 1.3's echo); then bytes go
//! both ways as they come, each direction ended by its end or by
//! `server_timeout_s` of silence. The records are the learned table's, so they
//! expire after `timeout_s` unused and reach the HA peer by state sync.
//!
//! TLS 1.3 makes this weak (README, "tls-session-id"): its session ID is a
//! random value a client sends for middlebox compatibility (RFC 8446
//! §4.1.2, D.4) and the server echoes, new on every connection, and
//! resumption goes by PSK tickets the box cannot read; only TLS 1.2
//! clients that resume by session ID come back to their server.

use super::engine::Shared;
use super::persist::Want;
use furiwake_dataplane::lb::Flow4;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// How long a server may take to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// What is read of the server's first bytes, at most, looking for its
/// ServerHello's session ID.
const SERVER_HELLO_MAX: usize = 16 * 1024;

/// The session ID of a TLS handshake record that starts with a
/// ClientHello (`kind` 1) or a ServerHello (2), in hex; None when `b` is
/// no such record or the ID is empty. `Err(())` when `b` is too short to
/// tell yet.
pub fn session_id(b: &[u8], kind: u8) -> Result<Option<String>, ()> {
    // record: type 22, version (2), length (2); handshake: type, length
    // (3), version (2), random (32), session ID length, session ID.
    const AT: usize = 5 + 4 + 2 + 32;
    match (b.first(), b.get(5)) {
        (Some(22), Some(k)) if *k == kind => {}
        (Some(22), None) | (None, _) => return Err(()),
        _ => return Ok(None),
    }
    let Some(&len) = b.get(AT) else { return Err(()) };
    let len = usize::from(len);
    if len == 0 || len > 32 {
        return Ok(None);
    }
    let Some(id) = b.get(AT + 1..AT + 1 + len) else { return Err(()) };
    Ok(Some(id.iter().map(|x| format!("{x:02x}")).collect()))
}

/// Peeks at the client's first bytes until its ClientHello's session ID
/// can be read, or `until`.
async fn client_session(stream: &TcpStream, until: Instant) -> Option<Option<String>> {
    let mut buf = [0u8; 128];
    let full = buf.len();
    // A full buffer that still says nothing: no ID to read.
    super::peek::until(stream, until, &mut buf, |got| session_id(got, 1).ok().or((got.len() == full).then_some(None))).await
}

/// Serves one connection of `tcp` virtual server `slot`: the ClientHello
/// within `deadline` (`header_timeout_s`), the server's first answer and
/// every later silence in either direction within `idle`
/// (`server_timeout_s`).
pub async fn run(shared: Arc<Shared>, slot: u16, peer: SocketAddr, client: TcpStream, deadline: Duration) {
    let view = shared.view();
    let Some(svc) = view.service(slot) else { return };
    let idle = Duration::from_secs(u64::from(*svc.limits.server_timeout_s.get_ref()));
    let Some(sid) = client_session(&client, Instant::now() + deadline).await else { return };
    let Some(vs) = view.snap.services.get(slot as usize) else { return };
    let (src, sport) = match peer {
        SocketAddr::V4(a) => (u32::from(*a.ip()), a.port()),
        SocketAddr::V6(_) => (0, 0),
    };
    let want = sid.clone().map(Want::Learned);
    let spec = svc.persist.as_ref();
    let kept = spec.zip(want.as_ref()).and_then(|(p, w)| p.resolve(w, vs, &view.snap.servers, &shared.table));
    let flow = Flow4 { src, dst: u32::from(*svc.addr.ip()), sport, dport: svc.addr.port(), proto: 6 };
    let Some(server) = kept.or_else(|| shared.pick(slot as usize, vs, &view.snap.servers, &flow)).and_then(|g| view.snap.servers.get(g as usize)) else { return };
    let to = SocketAddrV4::new(Ipv4Addr::from(server.ip), server.port);
    let Some(source) = svc.sources.get(src as usize % svc.sources.len().max(1)).copied() else { return };
    let Ok(upstream) = connect(source, to).await else {
        log::debug!("l7: {}: {to} could not be reached", svc.name);
        return;
    };
    let learn = spec.map(|p| Learn { group: p.group.clone(), timeout: p.timeout(), offered: sid });
    relay(client, upstream, to, learn, idle, &shared).await;
}

/// What to learn from the ServerHello.
struct Learn {
    group: String,
    timeout: Duration,
    /// The ClientHello's session ID: a ServerHello that repeats it either
    /// resumed it (its record is refreshed when it is used) or is TLS 1.3
    /// echoing a random value (RFC 8446 §4.1.3): nothing to learn either
    /// way, and a client cannot fill the table with IDs of its choosing.
    offered: Option<String>,
}

/// A connection from `source` to `to`, with TCP keep-alive.
async fn connect(source: Ipv4Addr, to: SocketAddrV4) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    super::engine::bind_no_port(&s);
    s.set_keepalive(true)?;
    s.bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))?;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, s.connect(SocketAddr::V4(to))).await.map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Copies `r` to `w` until the end or `idle` without a byte, then ends
/// `w`'s direction.
async fn pump<R, W>(mut r: R, mut w: W, idle: Duration)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match tokio::time::timeout(idle, r.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => break,
        };
        let Some(data) = buf.get(..n) else { break };
        if !matches!(tokio::time::timeout(idle, w.write_all(data)).await, Ok(Ok(()))) {
            break;
        }
    }
    let _ = w.shutdown().await;
}

/// Bytes both ways, each direction ended by its end or `idle` of
/// silence; the ServerHello's session ID learned for `to` on the way.
async fn relay(client: TcpStream, server: TcpStream, to: SocketAddrV4, learn: Option<Learn>, idle: Duration, shared: &Shared) {
    let _ = socket2_keepalive(&client);
    let (cr, cw) = client.into_split();
    let (mut sr, sw) = server.into_split();
    let up = pump(cr, sw, idle);
    let down = async move {
        let mut cw = cw;
        // The server's first bytes, until its ServerHello's ID can be read.
        let mut first = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        while first.len() < SERVER_HELLO_MAX {
            let n = match tokio::time::timeout(idle, sr.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => break,
            };
            first.extend_from_slice(chunk.get(..n).unwrap_or_default());
            match session_id(&first, 2) {
                Err(()) => continue,
                Ok(id) => {
                    if let (Some(id), Some(l)) = (id, learn.as_ref()) {
                        if l.offered.as_deref() != Some(id.as_str()) {
                            shared.table.learn(&l.group, &id, to, l.timeout);
                        }
                    }
                    break;
                }
            }
        }
        if matches!(tokio::time::timeout(idle, cw.write_all(&first)).await, Ok(Ok(()))) {
            pump(sr, cw, idle).await;
        } else {
            let _ = cw.shutdown().await;
        }
    };
    tokio::join!(up, down);
}

/// TCP keep-alive on the client's socket too (a client that vanished
/// without a reset is found).
fn socket2_keepalive(s: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt(2) on a socket we own, with an int option.
    let r = unsafe { libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_KEEPALIVE, (&raw const on).cast(), std::mem::size_of::<libc::c_int>() as u32) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(kind: u8, sid: &[u8]) -> Vec<u8> {
        let mut b = vec![22, 3, 1, 0, 0, kind, 0, 0, 0, 3, 3];
        b.extend([7u8; 32]);
        b.push(sid.len() as u8);
        b.extend_from_slice(sid);
        b.extend([0u8; 8]);
        b
    }

    #[test]
    fn session_ids_are_read_from_hellos_only() {
        assert_eq!(session_id(&hello(1, &[0xab; 32]), 1), Ok(Some("ab".repeat(32))));
        assert_eq!(session_id(&hello(2, &[1, 2]), 2), Ok(Some("0102".into())));
        assert_eq!(session_id(&hello(1, &[]), 1), Ok(None), "no ID");
        assert_eq!(session_id(&hello(2, &[1]), 1), Ok(None), "not a ClientHello");
        assert_eq!(session_id(b"GET / HTTP/1.1\r\n", 1), Ok(None), "not TLS");
        assert_eq!(session_id(&hello(1, &[9; 32])[..50], 1), Err(()), "not all there yet");
        assert_eq!(session_id(&[22, 3, 1], 1), Err(()));
        let mut long = hello(1, &[]);
        long[43] = 33;
        assert_eq!(session_id(&long, 1), Ok(None), "over 32 bytes is no ID");
    }
}
