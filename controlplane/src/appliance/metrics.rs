//! Prometheus text metrics over HTTP on the management address
//! (`[management] listen`): a kernel socket driven by mio from the control
//! loop, never blocking it. Each scrape reads the workers' counters (single
//! writer, relaxed loads) the same way the SIGUSR1 report does.
//!
//! Exposition format: <https://prometheus.io/docs/instrumenting/exposition_formats/>.

use super::Appliance;
use furiwake_dataplane::state::counters::{DropReason, ServiceCounters, WorkerCounters};
use furiwake_dataplane::lb::RealServer;
use furiwake_dataplane::state::snapshot::{Snapshot, VirtualService};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
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

pub(super) struct MetricsServer {
    poll: Poll,
    events: Events,
    listener: TcpListener,
    clients: Vec<Option<Client>>,
    pub(super) scrapes: u64,
    /// Connections may wait in the listen backlog: accepting stopped for
    /// want of a free slot (or on an error). The listener is
    /// edge-triggered, so no new event comes for them: accepting is
    /// retried on a later turn, once a slot is free.
    backlog: bool,
    /// The last accept failed (logged once until one succeeds).
    accept_failing: bool,
}

impl MetricsServer {
    pub(super) fn bind(addr: SocketAddr) -> Result<Self, String> {
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

    pub(super) fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// One non-blocking turn; `body` renders the metrics for a scrape.
    fn turn(&mut self, body: &dyn Fn() -> String) {
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

/// A label set: `{k="v",...}`, values escaped.
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))).collect();
    format!("{{{}}}", inner.join(","))
}

/// The `virtual_server` label value: a removed virtual server still
/// counting its connections is `NAME (removed)`, so that a new one of the
/// same name is another series.
fn virtual_server_name(vs: &VirtualService) -> String {
    if vs.retired {
        format!("{} (removed)", vs.name)
    } else {
        vs.name.clone()
    }
}

/// The label sets of the virtual servers `keep` says are in use (live or
/// removed with connections), by snapshot index.
fn service_labels(snap: &Snapshot, keep: &dyn Fn(usize) -> bool) -> Vec<(usize, String)> {
    snap.services.iter().enumerate().filter(|(vi, _)| keep(*vi)).map(|(vi, vs)| (vi, labels(&[("virtual_server", &virtual_server_name(vs))]))).collect()
}

/// The label sets of the servers `keep` says are in use, by snapshot index.
fn server_labels(snap: &Snapshot, keep: &dyn Fn(usize) -> bool) -> Vec<(usize, String)> {
    let label = |rs: &RealServer| -> Option<String> {
        let vs = snap.services.get(rs.vs as usize)?;
        let addr = SocketAddrV4::new(Ipv4Addr::from(rs.ip), rs.port).to_string();
        Some(labels(&[("virtual_server", &virtual_server_name(vs)), ("server", &addr)]))
    };
    snap.servers.iter().enumerate().filter(|(si, _)| keep(*si)).filter_map(|(si, rs)| Some((si, label(rs)?))).collect()
}

impl Appliance {
    /// One non-blocking turn of the metrics server.
    pub(super) fn serve_metrics(&mut self) {
        let Some(mut m) = self.metrics.take() else { return };
        m.turn(&|| self.metrics_text());
        self.metrics = Some(m);
    }

    /// The metrics, in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP furiwake_{name} {help}\n# TYPE furiwake_{name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "furiwake_{name}{labels} {v}");
            }
        };
        let label = labels;

        // Ports.
        let port = |f: &dyn Fn(&furiwake_platform::PortStats) -> u64| {
            self.runtime.links().iter().filter_map(|l| l.stats().ok().map(|st| (label(&[("port", l.name())]), f(&st)))).collect::<Vec<_>>()
        };
        let rx_p = port(&|s| s.ipackets);
        let rx_b = port(&|s| s.ibytes);
        let tx_p = port(&|s| s.opackets);
        let tx_b = port(&|s| s.obytes);
        let missed = port(&|s| s.imissed);
        family("port_rx_packets_total", "counter", "Packets received by the port.", rx_p);
        family("port_rx_bytes_total", "counter", "Bytes received by the port.", rx_b);
        family("port_tx_packets_total", "counter", "Packets sent by the port.", tx_p);
        family("port_tx_bytes_total", "counter", "Bytes sent by the port.", tx_b);
        family("port_rx_missed_total", "counter", "Packets the port dropped for want of RX descriptors.", missed);
        let up: Vec<(String, u64)> =
            self.runtime.links().iter().map(|l| (label(&[("port", l.name())]), u64::from(l.state().is_ok_and(|k| k.up)))).collect();
        family("port_link_up", "gauge", "1 when the port's link is up.", up);

        // Virtual servers and servers.
        let workers = self.runtime.workers();
        if let Some(snap) = workers.published() {
            let sum = |sel: &dyn Fn(&WorkerCounters) -> Option<&ServiceCounters>, f: &dyn Fn(&ServiceCounters) -> u64| workers.sum(|c| sel(c).map_or(0, f));
            type Field = (&'static str, &'static str, &'static str, fn(&ServiceCounters) -> u64);
            const FIELDS: [Field; 6] = [
                ("connections_active", "gauge", "Connection entries (open, closing or waiting for their timeout).", |c| c.conns_active.get()),
                ("connections_total", "counter", "Connections scheduled.", |c| c.conns_new.get()),
                ("in_packets_total", "counter", "Packets client to server.", |c| c.in_pkts.get()),
                ("in_bytes_total", "counter", "IP bytes client to server.", |c| c.in_bytes.get()),
                ("out_packets_total", "counter", "Packets server to client.", |c| c.out_pkts.get()),
                ("out_bytes_total", "counter", "IP bytes server to client.", |c| c.out_bytes.get()),
            ];
            let services = service_labels(snap, &|vi| self.layout.services.get(vi).is_some_and(|s| s.is_live() || s.is_retired()));
            let servers = server_labels(snap, &|si| self.layout.servers.get(si).is_some_and(|s| s.is_live() || s.is_retired()));
            for (name, kind, help, f) in FIELDS {
                let vs: Vec<(String, u64)> = services.iter().map(|(vi, l)| (l.clone(), sum(&|w| w.services.get(*vi), &f))).collect();
                family(&format!("virtual_server_{name}"), kind, help, vs);
            }
            for (name, kind, help, f) in FIELDS {
                let samples: Vec<(String, u64)> = servers.iter().map(|(si, l)| (l.clone(), sum(&|w| w.servers.get(*si), &f))).collect();
                family(&format!("server_{name}"), kind, help, samples);
            }
            let up: Vec<(String, u64)> = servers.iter().map(|(si, l)| (l.clone(), u64::from(self.health.is_up(*si)))).collect();
            family("server_up", "gauge", "1 when the server passes its health checks (or has none).", up);
            let rtt: Vec<(String, u64)> = servers.iter().filter_map(|(si, l)| Some((l.clone(), self.health.rtt_us(*si)? as u64))).collect();
            family("server_rtt_microseconds", "gauge", "Health probe round-trip time (moving average).", rtt);
        }

        // Workers.
        let per_worker = |f: &dyn Fn(&WorkerCounters) -> u64| -> Vec<(String, u64)> {
            workers.counters().enumerate().map(|(i, c)| (label(&[("worker", &i.to_string())]), f(c))).collect()
        };
        family("worker_rx_packets_total", "counter", "Packets the worker received from its queues.", per_worker(&|c| c.rx_packets.get()));
        family("worker_tx_packets_total", "counter", "Packets the worker sent.", per_worker(&|c| c.tx_packets.get()));
        family("worker_handed_off_total", "counter", "Packets handed to the worker owning their connection.", per_worker(&|c| c.handed_off.get()));
        family("worker_punted_total", "counter", "Packets handed to the control plane.", per_worker(&|c| c.punted.get()));
        family("worker_flows", "gauge", "Connection-table entries.", per_worker(&|c| c.flows.get()));
        family("worker_rejected_total", "counter", "New connections refused with a RST or ICMP unreachable.", per_worker(&|c| c.rejected.get()));
        let drops: Vec<(String, u64)> = workers
            .counters()
            .enumerate()
            .flat_map(|(i, c)| DropReason::ALL.iter().map(move |r| (i, r, c.drops(*r))))
            .map(|(i, r, n)| (label(&[("worker", &i.to_string()), ("reason", r.name())]), n))
            .collect();
        family("worker_drops_total", "counter", "Packets dropped, by reason.", drops);
        let h = self.health.counters();
        family("health_probes_total", "counter", "Health probes sent.", vec![(String::new(), h.probes)]);
        family("health_state_changes_total", "counter", "Servers going up or down.", vec![(String::new(), h.state_changes)]);
        if let Some(in_use) = self.runtime.mbufs_in_use() {
            family("mbufs_in_use", "gauge", "Mbufs out of the packet pool.", vec![(String::new(), in_use as u64)]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use furiwake_dataplane::state::snapshot::Forwarding;
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

    #[test]
    fn a_removed_virtual_server_and_a_new_one_of_its_name_are_distinct_series() {
        let vs = |name: &str, retired: bool, members: &[u16]| VirtualService {
            name: name.into(),
            retired,
            members: members.into(),
            ..VirtualService::test(Forwarding::Nat)
        };
        let rs = |vs: u16| RealServer { ip: u32::from(Ipv4Addr::new(10, 0, 0, 1)), port: 80, vs, ..Default::default() };
        let mut snap = Snapshot::default();
        // `app` removed with connections open, then added again (another
        // address); a free slot; `api` with a quote in its name.
        snap.services = vec![vs("app", true, &[]), vs("app", false, &[1]), vs("old", true, &[]), vs("a\"pi", false, &[3])];
        snap.servers = vec![rs(0), rs(1), rs(2), rs(3)];
        let in_use = |i: usize| i != 2;
        assert_eq!(
            service_labels(&snap, &in_use),
            [
                (0, r#"{virtual_server="app (removed)"}"#.to_string()),
                (1, r#"{virtual_server="app"}"#.to_string()),
                (3, r#"{virtual_server="a\"pi"}"#.to_string()),
            ]
        );
        assert_eq!(
            server_labels(&snap, &in_use),
            [
                (0, r#"{virtual_server="app (removed)",server="10.0.0.1:80"}"#.to_string()),
                (1, r#"{virtual_server="app",server="10.0.0.1:80"}"#.to_string()),
                (3, r#"{virtual_server="a\"pi",server="10.0.0.1:80"}"#.to_string()),
            ]
        );
    }
}
