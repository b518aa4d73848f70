//! One body type for both directions, so nothing is boxed per request.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::upstream::h1conn::InlineBody;
use crate::upstream::h1pool::ResponseGuard;

/// The error of a [`ProxyBody`]: hyper's, or an upstream body that broke its framing.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project_lite::pin_project! {
    #[project = InnerProj]
    enum Inner {
        Stream { #[pin] body: Incoming, guard: Option<ResponseGuard> },
        Inline { #[pin] body: InlineBody },
        Full { data: Option<Bytes> },
    }
}

pin_project_lite::pin_project! {
    /// A body streamed from a peer (never collected), or a small one the proxy generated.
    ///
    /// A response body streamed from an endpoint keeps the endpoint's in-flight count until it
    /// ends, so least-requests balancing sees long downloads.
    pub struct ProxyBody {
        #[pin]
        inner: Inner,
    }
}

impl std::fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Stream { .. } => f.write_str("ProxyBody::Stream"),
            Inner::Inline { .. } => f.write_str("ProxyBody::Inline"),
            Inner::Full { data } => write!(
                f,
                "ProxyBody::Full({} bytes)",
                data.as_ref().map_or(0, Bytes::len)
            ),
        }
    }
}

impl ProxyBody {
    /// An empty body.
    pub fn empty() -> Self {
        Self {
            inner: Inner::Full { data: None },
        }
    }

    /// A complete body held in memory.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        Self {
            inner: Inner::Full {
                data: if data.is_empty() { None } else { Some(data) },
            },
        }
    }

    /// A streamed body.
    pub fn stream(body: Incoming) -> Self {
        Self {
            inner: Inner::Stream { body, guard: None },
        }
    }

    /// A response body read inline from an upstream connection.
    pub(crate) fn inline(body: InlineBody) -> Self {
        Self {
            inner: Inner::Inline { body },
        }
    }

    pub(crate) fn stream_counted(body: Incoming, guard: ResponseGuard) -> Self {
        Self {
            inner: Inner::Stream {
                body,
                guard: Some(guard),
            },
        }
    }
}

impl From<Incoming> for ProxyBody {
    fn from(body: Incoming) -> Self {
        Self::stream(body)
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().inner.project() {
            InnerProj::Stream { mut body, guard } => {
                let poll = body.as_mut().poll_frame(cx);
                match &poll {
                    // The end, or the last frame of a sized body (the server may not poll
                    // again): the upstream connection can be reused.
                    Poll::Ready(None) => {
                        if let Some(mut g) = guard.take() {
                            g.body_done();
                        }
                    }
                    Poll::Ready(Some(Ok(_))) if body.is_end_stream() => {
                        if let Some(mut g) = guard.take() {
                            g.body_done();
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        guard.take();
                    }
                    _ => {}
                }
                poll.map(|o| o.map(|r| r.map_err(Into::into)))
            }
            InnerProj::Inline { body } => body.poll_frame(cx),
            InnerProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Stream { body, .. } => body.is_end_stream(),
            Inner::Inline { body } => body.is_end_stream(),
            Inner::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Stream { body, .. } => body.size_hint(),
            Inner::Inline { body } => body.size_hint(),
            Inner::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
