//! Bodies that may pause for a while at most (`Patient`): a request's
//! body from a client that stopped sending (`client_timeout_s`: the
//! client gets 408), an answer's from a server that stopped answering
//! (`server_timeout_s`: the answer is cut); and how a request to a server
//! failed (`SendError`).

use hyper::body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

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
