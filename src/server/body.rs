//! A deadline for a request's body (`HTTP_BODY_TIMEOUT_MS`), counted from
//! when its headers were read. hyper bounds the wait for headers only, and
//! tower-http's body timeout restarts with every frame, so a client that
//! trickles a byte every few seconds could hold its connection (one of
//! `HTTP_MAX_CONNECTIONS`) for as long as it likes. Past the deadline the
//! body fails: the handler reading it answers an error, and hyper closes
//! a connection whose request body was not read to its end.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use tokio::time::Sleep;

/// The body of `req` with the deadline; a request without a body (a GET,
/// an upgrade) is left as it is and costs no timer.
pub fn with_deadline(req: hyper::Request<Incoming>, limit: Duration) -> hyper::Request<Body> {
    use hyper::body::Body as _;
    if req.body().is_end_stream() {
        return req.map(Body::new);
    }
    req.map(|inner| {
        Body::new(Deadline {
            inner,
            expires: Box::pin(tokio::time::sleep(limit)),
            limit,
        })
    })
}

struct Deadline {
    inner: Incoming,
    expires: Pin<Box<Sleep>>,
    limit: Duration,
}

/// The error a body past its deadline fails with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within HTTP_BODY_TIMEOUT_MS ({0:?})")]
pub struct TooSlow(Duration);

impl hyper::body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match this.expires.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(TooSlow(this.limit).into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
