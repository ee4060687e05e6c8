//! What a client connection is doing, and the deadlines read from it
//! (`conn::serve` enforces them):
//!
//! - **No request under way**: the next request's head must be in within
//!   `header_timeout_s` of the end of the last answer (or of the
//!   handshake): the keep-alive idle limit and the slowloris deadline in
//!   one, counted from when the connection became idle, not from its
//!   last byte (a slowloris keeps sending; an h2 client's PINGs and
//!   SETTINGS are bytes too) and not from hyper's start of reading a head
//!   (which for HTTP/1.1 is when the previous request's body is in, so an
//!   answer longer than the deadline would end its connection). The end
//!   of an answer is when hyper drops its body, or later when its last
//!   bytes still had to reach the client (`draining`: writes count until
//!   the next flush completes).
//! - **A request under way**: the client must take what it is sent. A
//!   write to it that waits for `client_timeout_s` (a zero TCP window),
//!   or an answer frame (16 KiB at most) hyper has not passed on for as
//!   long while no other stream moved on, or for `HELD_MAX` times as long
//!   in any case (an h2 stream whose window the client keeps shut), ends
//!   the connection. A request body that pauses as long is refused by
//!   `patience::Patient` (408); an answer body that pauses for
//!   `server_timeout_s` is cut by it.
//!
//! `Watched` wraps the client's stream (above TLS: a write waits once
//! rustls' buffer is full) and notes when bytes move; each request's
//! answer body is `Held`, with an `InFlight` that says whether hyper is
//! waiting to pass a frame on. `tunnel` relays an upgraded connection
//! (WebSocket) until both ends have been silent for its idle limit.

use hyper::body::{Body, Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// A connection's activity, in milliseconds since `epoch`.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    /// Per request in flight: 1 + when its answer's last frame went to
    /// hyper, while hyper has not asked for the next (0: it has).
    streams: Mutex<Vec<Arc<AtomicU64>>>,
    /// When the last request in flight ended (or the connection began).
    idle_since: AtomicU64,
    /// An answer's last bytes may still be on their way: writes count
    /// (`wrote`) until a flush completes.
    draining: AtomicBool,
    /// When the client last accepted bytes of an answer that had ended.
    wrote: AtomicU64,
    /// 1 + when a write to the client began to wait (0: none waits).
    blocked: AtomicU64,
    /// When some answer last moved on: hyper asked for its next frame
    /// after one it held (one h2 stream the client holds back does not end
    /// the connection while others flow, for `HELD_MAX` times the limit).
    progress: AtomicU64,
    /// When the client last accepted any bytes.
    sent: AtomicU64,
    /// Told when the last request in flight ends (the head deadline starts).
    pub idle: Notify,
}

/// What `Activity::check` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Nothing is due before this.
    Until(Instant),
    /// No request began within the head deadline.
    Idle,
    /// The client has taken nothing for `client_timeout_s`.
    Stuck,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            epoch: Instant::now(),
            streams: Mutex::new(Vec::new()),
            idle_since: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            wrote: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            progress: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            idle: Notify::new(),
        })
    }

    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, Vec<Arc<AtomicU64>>> {
        self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A request began: its answer body holds the guard.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        let waiting = Arc::new(AtomicU64::new(0));
        self.streams().push(Arc::clone(&waiting));
        InFlight { act: Arc::clone(self), waiting }
    }

    /// Which deadline is next at `now`, for a head deadline `head` and a
    /// client timeout `client`.
    pub fn check(&self, now: Instant, head: Duration, client: Duration) -> Check {
        let (none, oldest) = {
            let s = self.streams();
            (s.is_empty(), s.iter().map(|w| w.load(Ordering::Relaxed)).filter(|w| *w != 0).min())
        };
        if none {
            let from = self.idle_since.load(Ordering::Acquire).max(self.wrote.load(Ordering::Relaxed));
            let due = self.at(from) + head;
            return if now >= due { Check::Idle } else { Check::Until(due) };
        }
        // The oldest frame hyper holds: stuck `client` after it once no
        // stream has moved on since, and `HELD_MAX` times `client` after
        // it whatever the others do (an h2 client cannot keep streams shut
        // by letting others flow). A write that waits: `client` after it.
        let progress = self.at(self.progress.load(Ordering::Relaxed));
        let held = oldest.map(|w| (self.at(w - 1).max(progress) + client).min(self.at(w - 1) + client * HELD_MAX));
        let blocked = Some(self.blocked.load(Ordering::Relaxed)).filter(|b| *b != 0).map(|b| self.at(b - 1) + client);
        match held.into_iter().chain(blocked).min() {
            None => Check::Until(now + client),
            Some(due) if now >= due => Check::Stuck,
            Some(due) => Check::Until(due),
        }
    }

    /// When a connection shut down gracefully at `since` must be closed:
    /// `grace` after it, or after the client last took bytes (an h2
    /// answer's tail still going out after its GOAWAY), and `cap` after it
    /// at the latest (a client that keeps the server answering its PINGs
    /// and never acknowledges the GOAWAY's own PING).
    pub fn hard_close(&self, since: Instant, grace: Duration, cap: Duration) -> Instant {
        (since.max(self.at(self.sent.load(Ordering::Relaxed))) + grace).min(since + cap.max(grace))
    }

    fn wrote_now(&self) {
        let now = self.ms(Instant::now());
        if self.draining.load(Ordering::Relaxed) {
            self.wrote.store(now, Ordering::Relaxed);
        }
        self.sent.store(now, Ordering::Relaxed);
        self.blocked.store(0, Ordering::Relaxed);
    }

    fn waits(&self) {
        if self.blocked.load(Ordering::Relaxed) == 0 {
            self.blocked.store(self.ms(Instant::now()) + 1, Ordering::Relaxed);
        }
    }

    fn flushed(&self) {
        self.blocked.store(0, Ordering::Relaxed);
        self.draining.store(false, Ordering::Relaxed);
    }
}

/// Held while a request's answer is under way.
#[derive(Debug)]
pub struct InFlight {
    act: Arc<Activity>,
    waiting: Arc<AtomicU64>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.act;
        let mut streams = a.streams();
        streams.retain(|w| !Arc::ptr_eq(w, &self.waiting));
        if streams.is_empty() {
            a.idle_since.store(a.ms(Instant::now()), Ordering::Release);
            a.draining.store(true, Ordering::Relaxed);
            a.idle.notify_one();
        }
    }
}

/// The client's stream, noting when it accepts bytes and when a write
/// waits.
pub struct Watched<S> {
    inner: S,
    act: Arc<Activity>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, act: Arc<Activity>) -> Self {
        Watched { inner, act }
    }

    fn noted(&self, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match &r {
            Poll::Ready(Ok(n)) if *n > 0 => self.act.wrote_now(),
            Poll::Pending => self.act.waits(),
            _ => {}
        }
        r
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.noted(r)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.noted(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        match &r {
            Poll::Pending => self.act.waits(),
            Poll::Ready(Ok(())) => self.act.flushed(),
            Poll::Ready(Err(_)) => {}
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How many times `client_timeout_s` a frame hyper holds may wait while
/// other streams of its connection move on.
const HELD_MAX: u32 = 3;

/// The most of an answer hyper is handed at once: a frame it holds
/// until the client took it all (a TCP window, an h2 stream window) is
/// this at most, so "took nothing for `client_timeout_s`" means less than
/// this in that time (an upstream chunk grows to hundreds of KiB exactly
/// when the client is slow).
const FRAME: usize = 16 * 1024;

/// An answer's body holding its request's `InFlight` until hyper drops
/// it, in frames of `FRAME` bytes at most, and noting when hyper holds a
/// frame it has not passed on (it asks for the next one only once the
/// last is on its way).
pub struct Held<B> {
    inner: B,
    held: InFlight,
    /// What is left of the last chunk.
    rest: bytes::Bytes,
}

impl<B> Held<B> {
    pub fn new(inner: B, held: InFlight) -> Self {
        Held { inner, held, rest: bytes::Bytes::new() }
    }
}

impl<B: Body<Data = bytes::Bytes> + Unpin> Body for Held<B> {
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let act = &this.held.act;
        // Asked again: the last frame is on its way.
        if this.held.waiting.swap(0, Ordering::Relaxed) != 0 {
            act.progress.store(act.ms(Instant::now()), Ordering::Relaxed);
        }
        let r = if this.rest.is_empty() {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(f))) => match f.into_data() {
                    Ok(mut data) => {
                        let n = data.len().min(FRAME);
                        this.rest = data.split_off(n);
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                    Err(f) => Poll::Ready(Some(Ok(f))),
                },
                r => r,
            }
        } else {
            let n = this.rest.len().min(FRAME);
            Poll::Ready(Some(Ok(Frame::data(this.rest.split_to(n)))))
        };
        // A frame handed over (the last one too: hyper drops the body
        // once that is on its way) waits until hyper asks again.
        if let Poll::Ready(Some(Ok(_))) = &r {
            this.held.waiting.store(act.ms(Instant::now()) + 1, Ordering::Relaxed);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        let mut h = SizeHint::new();
        h.set_lower(inner.lower().saturating_add(rest));
        if let Some(u) = inner.upper() {
            h.set_upper(u.saturating_add(rest));
        }
        h
    }
}

/// Either end of a tunnel, noting when bytes arrive.
struct Heard<S> {
    inner: S,
    last: Arc<AtomicU64>,
    epoch: Instant,
}

impl<S: AsyncRead + Unpin> AsyncRead for Heard<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last.store(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Heard<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Relays `a` and `b` (an upgraded connection: WebSocket) until either
/// closes or neither has sent a byte for `idle` (HAProxy's `timeout
/// tunnel`). True when it ended for being idle.
pub async fn tunnel<A, B>(a: A, b: B, idle: Duration) -> bool
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let epoch = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut a = Heard { inner: a, last: Arc::clone(&last), epoch };
    let mut b = Heard { inner: b, last: Arc::clone(&last), epoch };
    let relay = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(relay);
    loop {
        let due = epoch + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
        tokio::select! {
            _ = &mut relay => return false,
            () = tokio::time::sleep_until(due) => {
                if Instant::now() >= epoch + Duration::from_millis(last.load(Ordering::Relaxed)) + idle {
                    return true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_head_deadline_runs_from_the_end_of_the_last_answer() {
        let a = Activity::new();
        let (head, client) = (Duration::from_secs(2), Duration::from_secs(30));
        let t0 = Instant::now();
        assert_eq!(a.check(t0, head, client), Check::Until(t0 + head));
        let held = a.begin();
        // An answer that runs ten times the head deadline.
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(matches!(a.check(Instant::now(), head, client), Check::Until(_)), "a request under way is not idle");
        drop(held);
        let t1 = Instant::now();
        assert_eq!(a.check(t1, head, client), Check::Until(t1 + head));
        // Its last bytes go out a second later; then the client only
        // pings (writes after the flush do not count).
        tokio::time::advance(Duration::from_secs(1)).await;
        a.wrote_now();
        a.flushed();
        let t2 = Instant::now();
        tokio::time::advance(Duration::from_millis(1500)).await;
        a.wrote_now();
        assert_eq!(a.check(Instant::now(), head, client), Check::Until(t2 + head));
        assert_eq!(a.check(t2 + head, head, client), Check::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_waits_past_the_client_timeout_is_stuck() {
        let a = Activity::new();
        let (head, client) = (Duration::from_secs(2), Duration::from_secs(5));
        let _held = a.begin();
        a.waits();
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(matches!(a.check(Instant::now(), head, client), Check::Until(_)));
        a.wrote_now();
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(matches!(a.check(Instant::now(), head, client), Check::Until(_)), "bytes moved: the wait starts again");
        a.waits();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(a.check(Instant::now(), head, client), Check::Stuck);
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_hyper_does_not_pass_on_is_stuck_and_ending_wakes_the_watch() {
        use http_body_util::BodyExt;
        let a = Activity::new();
        let (head, client) = (Duration::from_secs(2), Duration::from_secs(5));
        let body = Frames([bytes::Bytes::from_static(b"a"), bytes::Bytes::from_static(b"b"), bytes::Bytes::from_static(b"c")].into_iter().collect());
        let mut held = Held::new(body, a.begin());
        // hyper takes a frame, then waits for an h2 window that never opens.
        assert!(held.frame().await.is_some());
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(matches!(a.check(Instant::now(), head, client), Check::Until(_)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(a.check(Instant::now(), head, client), Check::Stuck);
        // It asks again: fine; the answer ends: the watch is told.
        assert!(held.frame().await.is_some());
        assert!(matches!(a.check(Instant::now(), head, client), Check::Until(_)));
        drop(held);
        tokio::time::timeout(Duration::from_millis(1), a.idle.notified()).await.expect("told");
    }

    #[tokio::test(start_paused = true)]
    async fn big_chunks_go_out_in_frames_and_one_held_stream_does_not_end_the_others() {
        use http_body_util::BodyExt;
        let a = Activity::new();
        let (head, client) = (Duration::from_secs(2), Duration::from_secs(5));
        let big = bytes::Bytes::from(vec![7u8; 40 * 1024]);
        let mut held = Held::new(Frames([big].into_iter().collect()), a.begin());
        let mut sizes = Vec::new();
        while let Some(f) = held.frame().await {
            sizes.push(f.unwrap().into_data().unwrap().len());
        }
        assert_eq!(sizes, vec![16 * 1024, 16 * 1024, 8 * 1024]);
        drop(held);
        // Two h2 streams: one the client holds back, one that flows.
        let mut stuck = Held::new(Frames([bytes::Bytes::from_static(b"a"), bytes::Bytes::from_static(b"b")].into_iter().collect()), a.begin());
        let flowing: Vec<bytes::Bytes> = (0..40).map(|_| bytes::Bytes::from_static(b"x")).collect();
        let mut flows = Held::new(Frames(flowing.into_iter().collect()), a.begin());
        assert!(stuck.frame().await.is_some());
        for t in 1..=20 {
            tokio::time::advance(Duration::from_secs(1)).await;
            assert!(flows.frame().await.is_some());
            let c = a.check(Instant::now(), head, client);
            if t < 15 {
                assert!(matches!(c, Check::Until(_)), "t={t}: the other stream moves on");
            } else {
                assert_eq!(c, Check::Stuck, "t={t}: three times the limit, whatever the others do");
            }
        }
    }

    /// A body of the frames listed.
    struct Frames(std::collections::VecDeque<bytes::Bytes>);

    impl Body for Frames {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<bytes::Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_tunnel_ends_after_both_ends_are_silent_for_its_limit() {
        let (a, mut a_peer) = tokio::io::duplex(64);
        let (b, mut b_peer) = tokio::io::duplex(64);
        let t = tokio::spawn(tunnel(a, b, Duration::from_secs(10)));
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(8)).await;
            a_peer.write_all(b"ping").await.unwrap();
            let mut got = [0u8; 4];
            b_peer.read_exact(&mut got).await.unwrap();
        }
        assert!(!t.is_finished(), "24 s with a byte every 8: alive");
        assert!(t.await.unwrap(), "then 10 s of silence ends it");
    }
}
