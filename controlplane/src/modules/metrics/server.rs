//! The HTTP side: a kernel socket on the management address driven by mio
//! from the control loop, never blocking it; `GET /metrics` answered with
//! the text the appliance assembles, anything else refused.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(usize::MAX);
/// Clients served at once; more wait in the listen backlog.
const MAX_CLIENTS: usize = 16;
/// A request must arrive within this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_REQUEST: usize = 8192;

struct Client {
    stream: TcpStream,
    request: Vec<u8>,
    response: Vec<u8>,
    sent: usize,
    since: Instant,
}

pub struct MetricsServer {
    poll: Poll,
    events: Events,
    listener: TcpListener,
    clients: Vec<Option<Client>>,
    scrapes: u64,
    /// Connections may wait in the listen backlog: accepting stopped for
    /// want of a free slot (or on an error). The listener is
    /// edge-triggered, so no new event comes for them: accepting is
    /// retried on a later turn, once a slot is free.
    backlog: bool,
    /// The last accept failed (logged once until one succeeds).
    accept_failing: bool,
}

impl MetricsServer {
    pub fn bind(addr: SocketAddr) -> Result<Self, String> {
        let poll = Poll::new().map_err(|e| format!("metrics: {e}"))?;
        let mut listener = TcpListener::bind(addr).map_err(|e| format!("metrics: cannot listen on {addr}: {e}"))?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE).map_err(|e| format!("metrics: {e}"))?;
        Ok(Self {
            poll,
            events: Events::with_capacity(64),
            listener,
            clients: (0..MAX_CLIENTS).map(|_| None).collect(),
            scrapes: 0,
            backlog: false,
            accept_failing: false,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// One non-blocking turn; `body` renders the metrics for a scrape.
    pub fn turn(&mut self, body: &dyn Fn() -> String) {
        if let Err(e) = self.poll.poll(&mut self.events, Some(Duration::ZERO)) {
            log::warn!("metrics: poll: {e}");
        }
        let ready: Vec<Token> = self.events.iter().map(|e| e.token()).collect();
        for token in ready {
            if token == LISTENER {
                self.accept(body);
            } else {
                self.progress(token.0, body);
            }
        }
        // Slow or silent clients are dropped.
        for slot in self.clients.iter_mut() {
            if slot.as_ref().is_some_and(|c| c.since.elapsed() > REQUEST_TIMEOUT) {
                if let Some(mut c) = slot.take() {
                    let _ = self.poll.registry().deregister(&mut c.stream);
                }
            }
        }
        // Connections left in the backlog, now that a slot may be free.
        if self.backlog && self.clients.iter().any(Option::is_none) {
            self.accept(body);
        }
    }

    fn accept(&mut self, body: &dyn Fn() -> String) {
        loop {
            let Some(free) = self.clients.iter().position(Option::is_none) else {
                self.backlog = true;
                return;
            };
            match self.listener.accept() {
                Ok((mut stream, _peer)) => {
                    self.accept_failing = false;
                    if self.poll.registry().register(&mut stream, Token(free), Interest::READABLE | Interest::WRITABLE).is_ok() {
                        self.clients[free] = Some(Client { stream, request: Vec::new(), response: Vec::new(), sent: 0, since: Instant::now() });
                        self.progress(free, body);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.backlog = false;
                    return;
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::ConnectionAborted) => {}
                Err(e) => {
                    // Out of descriptors, say: the connection stays in
                    // the backlog; try again next turn.
                    if !self.accept_failing {
                        log::warn!("metrics: accept: {e}");
                    }
                    self.accept_failing = true;
                    self.backlog = true;
                    return;
                }
            }
        }
    }

    /// Reads the request, answers it, closes.
    fn progress(&mut self, i: usize, body: &dyn Fn() -> String) {
        let Some(Some(c)) = self.clients.get_mut(i) else { return };
        let mut done = false;
        if c.response.is_empty() {
            let mut buf = [0u8; 2048];
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        done = true;
                        break;
                    }
                    Ok(n) => c.request.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        done = true;
                        break;
                    }
                }
                if c.request.len() > MAX_REQUEST {
                    break;
                }
            }
            let complete = c.request.windows(4).any(|w| w == b"\r\n\r\n") || c.request.windows(2).any(|w| w == b"\n\n");
            if complete || c.request.len() > MAX_REQUEST {
                let (status, ok) = route(&c.request).unwrap_or(("400 Bad Request", false));
                let body = if ok {
                    self.scrapes += 1;
                    body()
                } else {
                    format!("{status}\n")
                };
                c.response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes();
                done = false;
            }
        }
        if !c.response.is_empty() {
            loop {
                match c.stream.write(&c.response[c.sent..]) {
                    Ok(0) => {
                        done = true;
                        break;
                    }
                    Ok(n) => {
                        c.sent += n;
                        if c.sent == c.response.len() {
                            done = true;
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        done = true;
                        break;
                    }
                }
            }
        }
        if done {
            if let Some(mut c) = self.clients[i].take() {
                let _ = self.poll.registry().deregister(&mut c.stream);
            }
        }
    }
}

/// What a request asks for.
fn route(request: &[u8]) -> Option<(&'static str, bool)> {
    let line = request.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut parts = line.split(' ');
    let (method, path) = (parts.next()?, parts.next()?);
    Some(match (method, path) {
        ("GET", "/metrics") => ("200 OK", true),
        ("GET", _) => ("404 Not Found", false),
        _ => ("405 Method Not Allowed", false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream as StdStream;

    #[test]
    fn requests_route_to_metrics_or_errors() {
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Some(("200 OK", true)));
        assert_eq!(route(b"GET / HTTP/1.0\r\n\r\n"), Some(("404 Not Found", false)));
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Some(("405 Method Not Allowed", false)));
        assert_eq!(route(b"\xff\xfe"), None);
        assert_eq!(route(b""), None);
    }

    /// Runs the server's turns until `f` says stop (or 5 s).
    fn turns(m: &mut MetricsServer, mut f: impl FnMut(&mut MetricsServer) -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            m.turn(&|| "furiwake_test 1\n".to_string());
            if f(m) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn connections_left_in_the_backlog_are_accepted_once_a_slot_frees() {
        let mut m = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = m.local_addr().unwrap();
        // Silent clients take every slot.
        let mut silent: Vec<StdStream> = (0..MAX_CLIENTS).map(|_| StdStream::connect(addr).unwrap()).collect();
        assert!(turns(&mut m, |m| m.clients.iter().all(Option::is_some)), "the silent clients fill the slots");
        // Two scrapes wait in the backlog; nothing else arrives after them.
        let mut waiting: Vec<StdStream> = (0..2).map(|_| StdStream::connect(addr).unwrap()).collect();
        for w in &mut waiting {
            w.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
            w.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        }
        let until = Instant::now() + Duration::from_millis(200);
        assert!(!turns(&mut m, |m| m.scrapes > 0 || Instant::now() > until) || m.scrapes == 0);
        assert_eq!(m.scrapes, 0, "no slot: they wait");
        // One silent client leaves: both get their answers, one after the
        // other, through the one free slot.
        silent.truncate(MAX_CLIENTS - 1);
        let answered = std::thread::spawn(move || {
            waiting
                .into_iter()
                .map(|mut w| {
                    let mut got = String::new();
                    let _ = w.read_to_string(&mut got);
                    got
                })
                .collect::<Vec<_>>()
        });
        assert!(turns(&mut m, |m| m.scrapes == 2 && m.clients.iter().filter(|c| c.is_some()).count() == MAX_CLIENTS - 1), "scrapes: {}", m.scrapes);
        for got in answered.join().unwrap() {
            assert!(got.starts_with("HTTP/1.1 200 OK\r\n") && got.ends_with("\r\n\r\nfuriwake_test 1\n"), "{got:?}");
        }
        assert!(!m.backlog, "the backlog is empty again");
        drop(silent);
    }
}
