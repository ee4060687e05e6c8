//! Content switching (`[[virtual_server.rule]]`): the first rule that
//! holds picks the pool. A rule's conditions read the request's head; its
//! script (`script`) may also read the first `body_bytes` of the body,
//! which is then kept and sent to the server ahead of the rest
//! (`Prefixed`: nothing lost, nothing sent twice).

use super::script::{Head, Outcome, Runner};
use super::tls::UpBody;
use super::view::{Rule, Script, Service};
use super::{Counters, Ran};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::HeaderMap;
use hyper::Request;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the body a script reads could not be.
#[derive(Debug)]
pub enum Unread {
    /// Past `max_body_bytes`.
    TooLarge,
    /// Not within `header_timeout_s`.
    Timeout,
    /// The client's stream failed.
    Failed(String),
}

/// The snapshot service of the first rule of `svc` that holds for `req`
/// (whose host is `host`, from `client`), None when none does; and the
/// request, its body whole.
pub async fn choose(runner: &Runner, svc: &Service, c: &Counters, req: Request<UpBody>, host: Option<&str>, client: Option<IpAddr>) -> Result<(Option<u16>, Request<UpBody>), Unread> {
    let (parts, body) = req.into_parts();
    let req = Request::from_parts(parts, ());
    let mut body = Buffered::new(body);
    let mut head: Option<Arc<Head>> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(*svc.limits.header_timeout_s.get_ref()));
    let mut chosen = None;
    for r in svc.rules.iter().filter(|r| r.matches(&req, host)) {
        let Some(s) = &r.script else {
            c.hit(&svc.name, r.index);
            chosen = r.slot;
            break;
        };
        if s.body_bytes > 0 {
            tokio::time::timeout_at(deadline, body.fill(s.body_bytes)).await.map_err(|_| Unread::Timeout)?.map_err(unread)?;
        }
        let head = head.get_or_insert_with(|| Arc::new(Head::of(&req, host, client)));
        let (pick, ran, why) = verdict(r, s, runner.run(&s.ast, head, body.prefix(s.body_bytes)));
        c.ran(&svc.name, r.index, ran);
        if let Some(why) = why {
            log::debug!("l7: {}: rule {}: script: {why}", svc.name, r.index + 1);
        }
        if pick.is_some() {
            c.hit(&svc.name, r.index);
            chosen = pick;
            break;
        }
    }
    let (parts, ()) = req.into_parts();
    Ok((chosen, Request::from_parts(parts, body.into_body())))
}

/// A body's failure as `Unread`.
fn unread(e: BoxError) -> Unread {
    if e.is::<http_body_util::LengthLimitError>() {
        Unread::TooLarge
    } else {
        Unread::Failed(e.to_string())
    }
}

/// Where rule `r`'s script sends the request when it came to `o` (None:
/// the rule does not hold), how the run counts, and what went wrong.
fn verdict(r: &Rule, s: &Script, o: Outcome) -> (Option<u16>, Ran, Option<String>) {
    match o {
        Outcome::Named(n) => match s.pools.iter().find(|(p, _)| *p == n) {
            Some((_, slot)) => (Some(*slot), Ran::Fine, None),
            None => (None, Ran::Error, Some(format!("{n:?} is none of its pools"))),
        },
        Outcome::Bool(b) if r.slot.is_some() => (r.slot.filter(|_| b), Ran::Fine, None),
        Outcome::Bool(_) => (None, Ran::Error, Some("true or false needs the rule's `pool`".into())),
        Outcome::Unit => (None, Ran::Fine, None),
        Outcome::Other(t) => (None, Ran::Error, Some(format!("returned a {t}: a pool's name, (), true or false"))),
        Outcome::Error(e) => (None, Ran::Error, Some(e)),
        Outcome::Limit(e) => (None, Ran::Limit, Some(e)),
    }
}

/// A request's body with its first bytes read: those, then the rest.
struct Buffered {
    buf: BytesMut,
    /// What is left to read (None: the end was reached).
    rest: Option<UpBody>,
    /// Trailers read with the prefix (then the end was reached).
    trailers: Option<HeaderMap>,
}

impl Buffered {
    fn new(body: UpBody) -> Buffered {
        Buffered { buf: BytesMut::new(), rest: Some(body), trailers: None }
    }

    /// Reads until `want` bytes are kept or the body ends (a frame that
    /// passes `want` is kept whole).
    async fn fill(&mut self, want: usize) -> Result<(), BoxError> {
        while self.buf.len() < want {
            let Some(rest) = self.rest.as_mut() else { break };
            match rest.frame().await {
                None => self.rest = None,
                Some(Err(e)) => return Err(e),
                Some(Ok(f)) => match f.into_data() {
                    Ok(d) => self.buf.extend_from_slice(&d),
                    Err(f) => {
                        self.trailers = f.into_trailers().ok();
                        self.rest = None;
                    }
                },
            }
        }
        Ok(())
    }

    /// The first `n` bytes kept (fewer when the body is shorter).
    fn prefix(&self, n: usize) -> Bytes {
        Bytes::copy_from_slice(self.buf.get(..n.min(self.buf.len())).unwrap_or_default())
    }

    /// The whole body again: as it was when nothing was read.
    fn into_body(self) -> UpBody {
        match self.rest {
            Some(rest) if self.buf.is_empty() && self.trailers.is_none() => rest,
            rest => Prefixed { head: Some(self.buf.freeze()), rest, trailers: self.trailers }.boxed(),
        }
    }
}

/// A body whose first bytes were read: `head`, then the frames of `rest`,
/// then `trailers` (read with the head).
struct Prefixed {
    head: Option<Bytes>,
    rest: Option<UpBody>,
    trailers: Option<HeaderMap>,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(h) = self.head.take().filter(|h| !h.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(h))));
        }
        if let Some(rest) = self.rest.as_mut() {
            match Pin::new(rest).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(f)) => return Poll::Ready(Some(f)),
                Poll::Ready(None) => self.rest = None,
            }
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.head.as_ref().is_none_or(Bytes::is_empty) && self.rest.as_ref().is_none_or(|r| r.is_end_stream()) && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let n = self.head.as_ref().map_or(0, |h| h.len() as u64);
        let Some(rest) = &self.rest else { return SizeHint::with_exact(n) };
        let r = rest.size_hint();
        let mut s = SizeHint::new();
        s.set_lower(r.lower() + n);
        if let Some(u) = r.upper() {
            s.set_upper(u + n);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, Limited};
    use std::collections::VecDeque;

    /// Frames, one a poll.
    struct Frames(VecDeque<Frame<Bytes>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    /// A body of `chunks`, then trailers if `trailers`.
    fn body(chunks: &[&[u8]], trailers: bool) -> UpBody {
        let mut frames: VecDeque<Frame<Bytes>> = chunks.iter().map(|c| Frame::data(Bytes::copy_from_slice(c))).collect();
        if trailers {
            let mut t = HeaderMap::new();
            t.insert("x-sum", hyper::header::HeaderValue::from_static("1"));
            frames.push_back(Frame::trailers(t));
        }
        Frames(frames).boxed()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().build().unwrap()
    }

    /// What a server receives of `b`: its bytes and whether trailers came.
    async fn all(b: UpBody) -> (Vec<u8>, bool) {
        let c = b.collect().await.unwrap();
        let t = c.trailers().is_some();
        (c.to_bytes().to_vec(), t)
    }

    #[test]
    fn the_prefix_and_the_rest_make_the_body_again() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let chunks: Vec<&[u8]> = data.chunks(1000).collect();
        rt().block_on(async {
            for (want, trailers) in [(0, false), (1, false), (999, false), (1000, true), (4096, true), (199_999, false), (200_000, true), (1 << 20, true)] {
                let mut b = Buffered::new(body(&chunks, trailers));
                b.fill(want).await.unwrap();
                let p = b.prefix(want);
                assert_eq!(&p[..], &data[..want.min(data.len())], "the script reads the first {want}");
                let (got, t) = all(b.into_body()).await;
                assert!(got == data, "{want}: {} bytes forwarded, byte-identical", got.len());
                assert_eq!(t, trailers, "{want}: the trailers follow");
            }
        });
    }

    #[test]
    fn sizes_are_kept_and_the_limit_still_applies() {
        rt().block_on(async {
            let full = |n: usize| Full::new(Bytes::from(vec![b'a'; n])).map_err(|e| match e {}).boxed();
            let mut b = Buffered::new(full(10_000));
            b.fill(100).await.unwrap();
            let out = b.into_body();
            assert_eq!(out.size_hint().exact(), Some(10_000), "a length the server is told stays true");
            let limited = |n: usize, max: usize| Limited::new(full(n), max).boxed();
            let mut b = Buffered::new(limited(10_000, 5_000));
            assert!(matches!(b.fill(8_000).await.map_err(unread), Err(Unread::TooLarge)), "max_body_bytes while reading the prefix");
            let mut b = Buffered::new(limited(10_000, 20_000));
            b.fill(10).await.unwrap();
            assert_eq!(all(b.into_body()).await.0.len(), 10_000);
        });
    }
}
