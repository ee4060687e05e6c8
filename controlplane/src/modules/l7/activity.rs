//! What a client connection is doing, and the deadlines read from it
//! (`conn::serve` enforces them):
//!
//! - **No request under way**: the next request's head must be in within
//!   `header_timeout_s` of the end of the last answer (or of the
//!   handshake): the keep-alive idle limit and the slowloris deadline in
//!   one, counted from when the connection became idle, not from its
//!   last byte (a slowloris keeps sending) and not from hyper's start of
//!   reading a head (which for HTTP/1.1 is when the previous request's
//!   body is in, so an answer longer than the deadline would end its
//!   connection). The end of an answer is when hyper drops its body and
//!   the client accepted its last bytes (`wrote`).
//! - **A request under way**: a write to the client that waits for
//!   `client_timeout_s` (the client reads nothing: a zero window) ends the
//!   connection. A request body that pauses as long is refused by
//!   `Patient` (408); an answer body that pauses for `server_timeout_s`
//!   is cut by it.
//!
//! `Watched` wraps the client's stream (above TLS: a write waits once
//! rustls' buffer is full) and notes when bytes move; `InFlight` is held
//! by each request's answer body until hyper is done with it.

use hyper::body::{Body, Frame, SizeHint};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A connection's activity, in milliseconds since `epoch`.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    /// Requests whose answer hyper has not finished with.
    in_flight: AtomicU32,
    /// When the last request in flight ended (or the connection began).
    idle_since: AtomicU64,
    /// When the client last accepted bytes.
    wrote: AtomicU64,
    /// 1 + when a write to the client began to wait (0: none waits).
    blocked: AtomicU64,
}

/// What `Activity::check` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Nothing is due before this.
    Until(Instant),
    /// No request began within the head deadline.
    Idle,
    /// The client has read nothing for `client_timeout_s`.
    Stuck,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity { epoch: Instant::now(), in_flight: AtomicU32::new(0), idle_since: AtomicU64::new(0), wrote: AtomicU64::new(0), blocked: AtomicU64::new(0) })
    }

    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// A request began: its answer body holds the guard.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    /// Which deadline is next at `now`, for a head deadline `head` and a
    /// client timeout `client`.
    pub fn check(&self, now: Instant, head: Duration, client: Duration) -> Check {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let from = self.idle_since.load(Ordering::Acquire).max(self.wrote.load(Ordering::Relaxed));
            let due = self.at(from) + head;
            return if now >= due { Check::Idle } else { Check::Until(due) };
        }
        match self.blocked.load(Ordering::Relaxed) {
            0 => Check::Until(now + client),
            b => {
                let due = self.at(b - 1) + client;
                if now >= due { Check::Stuck } else { Check::Until(due) }
            }
        }
    }

    fn wrote_now(&self) {
        self.wrote.store(self.ms(Instant::now()), Ordering::Relaxed);
        self.blocked.store(0, Ordering::Relaxed);
    }

    fn waits(&self) {
        if self.blocked.load(Ordering::Relaxed) == 0 {
            self.blocked.store(self.ms(Instant::now()) + 1, Ordering::Relaxed);
        }
    }
}

/// Held while a request's answer is under way.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since.store(a.ms(Instant::now()), Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
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
            Poll::Ready(Ok(())) => self.act.blocked.store(0, Ordering::Relaxed),
            Poll::Ready(Err(_)) => {}
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Why `Patient` ended a body.
#[derive(Debug)]
pub struct Paused(pub Duration);

impl std::fmt::Display for Paused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the body paused for {} s", self.0.as_secs())
    }
}

impl std::error::Error for Paused {}

/// Why a request to a server failed: its text, and whether the client's
/// body paused past `client_timeout_s` (then the client gets 408, not 502).
#[derive(Debug)]
pub struct SendError {
    pub paused: bool,
    pub text: String,
}

impl SendError {
    pub fn of(e: &(dyn std::error::Error + 'static)) -> Self {
        let paused = std::iter::successors(Some(e), |e| e.source()).any(|e| e.is::<Paused>());
        SendError { paused, text: e.to_string() }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A body whose frames may pause for `limit` at most: past it the body
/// ends with `Paused` (a request's body from a client that stopped
/// sending, an answer's from a server that stopped answering). The pause
/// is counted from the first poll that found nothing, so time its reader
/// spent not asking (a server slow to read a request's body) is not the
/// writer's.
pub struct Patient<B> {
    inner: B,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    waiting: bool,
}

impl<B> Patient<B> {
    pub fn new(inner: B, limit: Duration) -> Self {
        Patient { inner, limit, timer: Box::pin(tokio::time::sleep(limit)), waiting: false }
    }
}

impl<B> Body for Patient<B>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(f) => {
                this.waiting = false;
                Poll::Ready(f.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    let at = Instant::now() + this.limit;
                    this.timer.as_mut().reset(at);
                }
                this.paused(cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Patient<B> {
    fn paused<T, E: From<Box<dyn std::error::Error + Send + Sync>>>(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, E>>> {
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let e: Box<dyn std::error::Error + Send + Sync> = Box::new(Paused(self.limit));
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// An answer's body holding its request's `InFlight` until hyper drops it.
pub struct Held<B> {
    inner: B,
    _held: InFlight,
}

impl<B> Held<B> {
    pub fn new(inner: B, held: InFlight) -> Self {
        Held { inner, _held: held }
    }
}

impl<B: Body + Unpin> Body for Held<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

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
        assert_eq!(a.check(t1 + head, head, client), Check::Idle);
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

    /// A body fed by a channel.
    struct Fed(tokio::sync::mpsc::Receiver<bytes::Bytes>);

    impl Body for Fed {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<bytes::Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_pauses_past_its_limit_ends_with_an_error() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut p = Patient::new(Fed(rx), Duration::from_secs(3));
        let sender = tokio::spawn(async move {
            tx.send(bytes::Bytes::from_static(b"a")).await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
            tx.send(bytes::Bytes::from_static(b"b")).await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(tx);
        });
        assert_eq!(p.frame().await.unwrap().unwrap().into_data().unwrap(), "a");
        assert_eq!(p.frame().await.unwrap().unwrap().into_data().unwrap(), "b", "a pause under the limit");
        let e = p.frame().await.unwrap().unwrap_err();
        assert!(e.is::<Paused>(), "{e}");
        sender.abort();
    }
}
