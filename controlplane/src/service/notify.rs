//! systemd's service notifications (sd_notify(3), the protocol of
//! `Type=notify` and `WatchdogSec=`): `READY=1` once every port is up and
//! the first snapshot is published, `WATCHDOG=1` from the control loop,
//! `STATUS=` lines, `STOPPING=1` at shutdown. Each is one datagram to
//! `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace);
//! without it (not started by systemd) nothing is sent.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

pub struct Notifier {
    /// The socket and systemd's address, when started by systemd.
    to: Option<(UnixDatagram, SocketAddr)>,
    /// How often the watchdog is fed: half of `WATCHDOG_USEC`, when
    /// systemd watches this process.
    feed_every: Option<Duration>,
    last_fed: Option<Instant>,
}

impl Notifier {
    /// From the environment systemd gives a `Type=notify` service.
    pub fn from_env() -> Notifier {
        let to = std::env::var_os("NOTIFY_SOCKET").and_then(|p| {
            let addr = address(p.to_str()?)?;
            Some((UnixDatagram::unbound().ok()?, addr))
        });
        let pid_ok = std::env::var("WATCHDOG_PID").map_or(true, |p| p.trim() == std::process::id().to_string());
        let feed_every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && pid_ok && to.is_some())
            .map(|u| Duration::from_micros(u) / 2);
        Notifier { to, feed_every, last_fed: None }
    }

    /// Sends one notification (`KEY=VALUE` lines).
    pub fn send(&self, state: &str) {
        if let Some((sock, addr)) = &self.to {
            if let Err(e) = sock.send_to_addr(state.as_bytes(), addr) {
                log::warn!("sd_notify: {e}");
            }
        }
    }

    /// Ready: `READY=1` with a status line.
    pub fn ready(&mut self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}\nMAINPID={}", std::process::id()));
        self.last_fed = Some(Instant::now());
    }

    /// A turn of the control loop: feeds the watchdog every half of its
    /// interval. Only the control loop calls it, so a loop that hangs
    /// stops feeding and systemd restarts the service.
    pub fn turn(&mut self, now: Instant) {
        let Some(every) = self.feed_every else { return };
        if self.last_fed.is_none_or(|t| now.duration_since(t) >= every) {
            self.send("WATCHDOG=1");
            self.last_fed = Some(now);
        }
    }

    /// Stopping: `STOPPING=1`.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }
}

/// `$NOTIFY_SOCKET`: an absolute path, or `@name` for the abstract
/// namespace.
fn address(s: &str) -> Option<SocketAddr> {
    if let Some(name) = s.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        return SocketAddr::from_abstract_name(name.as_bytes()).ok();
    }
    if !s.starts_with('/') {
        return None;
    }
    SocketAddr::from_pathname(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_the_socket_and_the_watchdog_is_fed_at_half_its_interval() {
        let dir = std::env::temp_dir().join(format!("furiwake-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let systemd = UnixDatagram::bind(&path).unwrap();
        systemd.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut n = Notifier { to: Some((UnixDatagram::unbound().unwrap(), address(path.to_str().unwrap()).unwrap())), feed_every: Some(Duration::from_secs(5)), last_fed: None };
        let recv = || {
            let mut b = [0u8; 256];
            let k = systemd.recv(&mut b).unwrap();
            String::from_utf8_lossy(&b[..k]).into_owned()
        };
        n.ready("serving");
        assert!(recv().starts_with("READY=1\nSTATUS=serving\nMAINPID="));
        let t0 = n.last_fed.unwrap();
        n.turn(t0 + Duration::from_secs(1));
        n.turn(t0 + Duration::from_secs(5));
        assert_eq!(recv(), "WATCHDOG=1", "fed once the half interval passed, not before");
        n.stopping();
        assert_eq!(recv(), "STOPPING=1\nSTATUS=stopping");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn addresses_are_paths_or_abstract_names() {
        assert!(address("/run/systemd/notify").is_some());
        assert!(address("@abstract").is_some());
        assert!(address("relative").is_none());
        assert!(address("").is_none());
    }
}
