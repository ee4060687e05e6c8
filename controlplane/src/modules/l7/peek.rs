//! A client's first bytes, peeked at (left in the socket for whoever
//! reads the connection next) until they say what the connection is: the
//! h2 preface (`conn`), a ClientHello's session ID (`passthrough`).

use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Peeks at a client's first bytes (at most `buf`'s length) until
/// `judge` decides on them, or `until` (None then, or when the client
/// closed). Peek returns at once while the same bytes sit there: a client
/// that stops mid-way is looked at again every 20 ms.
pub(super) async fn until<T>(stream: &TcpStream, until: Instant, buf: &mut [u8], judge: impl Fn(&[u8]) -> Option<T>) -> Option<T> {
    let mut seen = 0;
    loop {
        // (timeout_at returns what a ready peek gives even past `until`.)
        if Instant::now() >= until {
            return None;
        }
        let n = match tokio::time::timeout_at(until, stream.peek(buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return None,
        };
        if let Some(t) = judge(buf.get(..n)?) {
            return Some(t);
        }
        if n == seen {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen = n;
    }
}
