//! What the engine says about its answers: per virtual server, the
//! answers by status class and a histogram of the time to the answer's
//! head (Prometheus buckets), and the access log, a line per answer in
//! the combined log format (NCSA's, as nginx and HAProxy write it) with
//! the virtual server, the server and the time appended, off unless
//! `[l7] access_log` names a file, at most `access_log_rate` lines a
//! second (the rest counted). Lines go through a bounded channel to a
//! thread of their own that writes them: a request never waits on the
//! disk.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The histogram's upper bounds, seconds.
pub const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Lines waiting for the writer at most.
const QUEUE: usize = 4096;

/// One virtual server's answers.
#[derive(Debug, Default, Clone)]
pub struct VsStats {
    /// By status class, 1xx .. 5xx.
    pub classes: [u64; 5],
    /// Answers at or under each bound (not cumulative: `metrics` sums).
    pub buckets: [u64; BUCKETS.len() + 1],
    pub sum: Duration,
    pub count: u64,
}

impl VsStats {
    fn observe(&mut self, status: u16, took: Duration) {
        let class = usize::from((status / 100).clamp(1, 5) - 1);
        if let Some(c) = self.classes.get_mut(class) {
            *c += 1;
        }
        let s = took.as_secs_f64();
        let at = BUCKETS.iter().position(|b| s <= *b).unwrap_or(BUCKETS.len());
        if let Some(b) = self.buckets.get_mut(at) {
            *b += 1;
        }
        self.sum += took;
        self.count += 1;
    }
}

/// What an access log line says.
pub struct Line<'a> {
    pub client: std::net::SocketAddr,
    pub method: &'a str,
    pub target: &'a str,
    pub version: hyper::Version,
    pub status: u16,
    /// The answer's length when it says it.
    pub bytes: Option<u64>,
    pub referer: Option<&'a str>,
    pub agent: Option<&'a str>,
    pub vs: &'a str,
    pub server: Option<std::net::SocketAddrV4>,
    pub took: Duration,
}

/// The access log's sending side, its rate and what it dropped.
struct Log {
    tx: SyncSender<String>,
    rate: u64,
    /// (second, lines in it).
    window: Mutex<(u64, u64)>,
    start: Instant,
}

#[derive(Default)]
pub struct Stats {
    by_vs: Mutex<BTreeMap<String, VsStats>>,
    log: Option<Log>,
    /// Lines over the rate or the queue.
    pub log_dropped: AtomicU64,
}

impl Stats {
    /// With an access log at `path` (its writer thread started) when
    /// given.
    pub fn new(access_log: Option<(&str, u32)>) -> Result<Stats, String> {
        let log = match access_log {
            None => None,
            Some((path, rate)) => {
                let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| format!("l7: access_log {path}: {e}"))?;
                let (tx, rx) = sync_channel::<String>(QUEUE);
                std::thread::Builder::new()
                    .name("fw-l7-log".into())
                    .spawn(move || {
                        for line in rx {
                            let _ = file.write_all(line.as_bytes());
                        }
                    })
                    .map_err(|e| format!("l7: the access log's thread: {e}"))?;
                Some(Log { tx, rate: u64::from(rate), window: Mutex::new((0, 0)), start: Instant::now() })
            }
        };
        Ok(Stats { by_vs: Mutex::default(), log, log_dropped: AtomicU64::new(0) })
    }

    /// Counts an answer of virtual server `vs`, and logs it.
    pub fn answered(&self, l: &Line<'_>) {
        self.by_vs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(l.vs.to_string()).or_default().observe(l.status, l.took);
        let Some(log) = &self.log else { return };
        let now = log.start.elapsed().as_secs();
        let take = {
            let mut w = log.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if w.0 != now {
                *w = (now, 0);
            }
            w.1 += 1;
            w.1 <= log.rate
        };
        if !take || matches!(log.tx.try_send(format(l)), Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) {
            self.log_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every virtual server's, by name.
    /// Forgets virtual servers a reload removed.
    pub fn retain(&self, live: &[&str]) {
        self.by_vs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|k, _| live.contains(&k.as_str()));
    }

    pub fn snapshot(&self) -> BTreeMap<String, VsStats> {
        self.by_vs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// The bucket bound under which a share `q` of `st`'s answers came, as
/// `show l7` says it ("10 ms", "over 10 s", "-" with none).
pub fn quantile(st: &VsStats, q: f64) -> String {
    if st.count == 0 {
        return "-".into();
    }
    let want = (st.count as f64 * q).ceil() as u64;
    let mut seen = 0;
    for (i, n) in st.buckets.iter().enumerate() {
        seen += n;
        if seen >= want {
            return match BUCKETS.get(i) {
                Some(b) if *b < 1.0 => format!("{} ms", b * 1000.0),
                Some(b) => format!("{b} s"),
                None => "over 10 s".into(),
            };
        }
    }
    "over 10 s".into()
}

/// What the client sent, made safe for a line: printable ASCII only, no
/// quote or backslash (a client must not forge a line of its own, nor
/// one that a viewer shows as another: U+2028, U+202E).
fn clean(s: &str) -> String {
    s.chars().take(1024).map(|c| if !c.is_ascii_graphic() && c != ' ' || c == '"' || c == '\\' { '?' } else { c }).collect()
}

/// A combined log format line, with `vs=`, `server=` and `ms=` after it.
fn format(l: &Line<'_>) -> String {
    let now = httpdate(std::time::SystemTime::now());
    let version = match l.version {
        hyper::Version::HTTP_2 => "HTTP/2.0",
        hyper::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let bytes = l.bytes.map_or("-".to_string(), |b| b.to_string());
    let opt = |v: Option<&str>| v.map_or("-".to_string(), clean);
    let server = l.server.map_or("-".to_string(), |s| s.to_string());
    format!(
        "{} - - [{now}] \"{} {} {version}\" {} {bytes} \"{}\" \"{}\" vs={} server={server} ms={}\n",
        l.client.ip(),
        clean(l.method),
        clean(l.target),
        l.status,
        opt(l.referer),
        opt(l.agent),
        clean(l.vs),
        l.took.as_millis()
    )
}

/// `06/Dec/2026:03:58:13 +0000`, the log format's time, in UTC.
fn httpdate(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let mon = MONTHS.get((m - 1) as usize).copied().unwrap_or("Jan");
    format!("{d:02}/{mon}/{y}:{:02}:{:02}:{:02} +0000", rest / 3600, rest / 60 % 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(status: u16, agent: &str) -> Line<'static> {
        Line {
            client: "192.0.2.10:40000".parse().unwrap(),
            method: "GET",
            target: "/id?x=1",
            version: hyper::Version::HTTP_11,
            status,
            bytes: Some(5),
            referer: None,
            agent: Some(Box::leak(agent.to_string().into_boxed_str())),
            vs: "web",
            server: Some("198.51.100.11:80".parse().unwrap()),
            took: Duration::from_millis(3),
        }
    }

    #[test]
    fn a_line_is_combined_format_and_a_client_cannot_forge_one() {
        let l = format(&line(200, "curl/7.88\"\n1.2.3.4 - - [x] \"GET /admin"));
        assert!(l.starts_with("192.0.2.10 - - ["), "{l}");
        assert!(l.contains("] \"GET /id?x=1 HTTP/1.1\" 200 5 \"-\" \"curl/7.88??1.2.3.4 - - [x] ?GET /admin\" vs=web server=198.51.100.11:80 ms=3\n"), "{l}");
        assert_eq!(l.matches('\n').count(), 1);
        assert_eq!(httpdate(std::time::UNIX_EPOCH + Duration::from_secs(1_796_526_793)), "06/Dec/2026:03:13:13 +0000");
    }

    #[test]
    fn answers_are_counted_by_class_and_time() {
        let s = Stats::new(None).unwrap();
        for (status, ms) in [(200, 3), (204, 30), (503, 3000), (404, 1)] {
            s.answered(&Line { took: Duration::from_millis(ms), ..line(status, "x") });
        }
        let v = s.snapshot().remove("web").unwrap();
        assert_eq!(v.classes, [0, 2, 0, 1, 1]);
        assert_eq!(v.count, 4);
        assert_eq!((v.buckets[0], v.buckets[2], v.buckets[5], v.buckets[11]), (1, 1, 1, 1), "{:?}", v.buckets);
    }

    #[test]
    fn the_log_takes_its_rate_and_counts_the_rest() {
        let path = std::env::temp_dir().join(format!("furiwake-access-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let s = Stats::new(Some((path.to_str().unwrap(), 5))).unwrap();
        for _ in 0..8 {
            s.answered(&line(200, "x"));
        }
        let dropped = s.log_dropped.load(Ordering::Relaxed);
        assert!(dropped >= 3, "{dropped}");
        drop(s);
        std::thread::sleep(Duration::from_millis(200));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(text.lines().count() as u64, 8 - dropped, "{text}");
        let _ = std::fs::remove_file(&path);
    }
}
