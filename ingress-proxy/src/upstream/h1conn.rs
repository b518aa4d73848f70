//! Upstream HTTP/1.1 connections driven inline by the downstream request task.
//!
//! The request task writes the request head itself, reads the response head itself and,
//! through [`InlineBody`], reads the response body while hyper's server side polls it: no
//! connection task, no channel, no wake-up of another task per request. The framing logic is
//! [`super::h1codec`]; this module only moves bytes and decides about reuse.
//!
//! Used for requests without a body that do not ask for an upgrade (the common GET/HEAD
//! case). Requests with a body (which need the body written while the response may already be
//! arriving) and upgrades go through hyper's client connection in [`super::h1pool`].

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Response;
use http::uri::Authority;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::endpoint::InflightGuard;
use super::h1codec::{
    BodyDecoder, CodecError, Decoded, Framing, MAX_HEAD, OutgoingRequest, ResponseHead,
    head_may_end, parse_response_head,
};
use super::h1pool::SendError;
use crate::body::{BoxError, ProxyBody};

/// Read-buffer growth step; large enough that a typical response arrives in one `read`.
const READ_CHUNK: usize = 8 * 1024;

/// One upstream HTTP/1.1 connection with its buffers (kept across requests, so a warm
/// connection allocates nothing for them).
#[derive(Debug)]
pub(crate) struct InlineConn {
    io: TcpStream,
    read: BytesMut,
    write: Vec<u8>,
    /// The response-head deadline, one timer for the connection's life: moving it later for
    /// the next request is a field update in tokio's timer wheel, where a fresh
    /// `tokio::time::timeout` per request would insert and remove an entry each time.
    deadline: Pin<Box<Sleep>>,
}

/// Why a request on an [`InlineConn`] failed, and whether the upstream sent anything at all.
#[derive(Debug)]
pub(crate) struct ConnError {
    pub(crate) error: std::io::Error,
    /// Nothing of a response arrived: on a reused connection this is the stale keep-alive
    /// race (the upstream closed it while it was idle).
    pub(crate) nothing_received: bool,
}

fn codec(e: CodecError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

impl InlineConn {
    /// Dials `authority` with `TCP_NODELAY` within `timeout`.
    pub(crate) async fn connect(
        authority: &Authority,
        timeout: Duration,
    ) -> Result<Self, SendError> {
        let tcp = super::h1pool::dial(authority, timeout).await?;
        Ok(Self {
            io: tcp,
            read: BytesMut::with_capacity(READ_CHUNK),
            write: Vec::with_capacity(1024),
            deadline: Box::pin(tokio::time::sleep(Duration::ZERO)),
        })
    }

    /// Whether an idle connection can still be used: nothing arrived while it was idle (an
    /// EOF, a reset or stray bytes all make it unusable). Uses the reactor's readiness, so the
    /// common case costs no system call.
    pub(crate) fn looks_alive(&mut self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Writes a request without a body and reads up to its final response head (interim 1xx
    /// responses other than 101 are skipped), all before `deadline`. A missed deadline is a
    /// [`std::io::ErrorKind::TimedOut`] error, never "nothing received": the request may
    /// have reached the upstream.
    pub(crate) async fn request(
        &mut self,
        req: &OutgoingRequest<'_>,
        deadline: Instant,
    ) -> Result<ResponseHead, ConnError> {
        self.deadline.as_mut().reset(deadline);
        let Self {
            io,
            read,
            write,
            deadline: timer,
        } = self;
        tokio::select! {
            biased;
            r = exchange(io, read, write, req) => r,
            () = timer.as_mut() => Err(ConnError {
                error: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no response head from the upstream within the response timeout",
                ),
                nothing_received: false,
            }),
        }
    }
}

/// One request/response-head exchange on `io` (see [`InlineConn::request`]).
async fn exchange(
    io: &mut TcpStream,
    read: &mut BytesMut,
    write: &mut Vec<u8>,
    req: &OutgoingRequest<'_>,
) -> Result<ResponseHead, ConnError> {
    write.clear();
    super::h1codec::encode_request_head(req, write);
    crate::batching::end_of_turn().await;
    if let Err(error) = io.write_all(write).await {
        return Err(ConnError {
            error,
            nothing_received: true,
        });
    }
    let mut received = false;
    // After an incomplete parse: how far `read` is known to hold no end of head.
    let mut scanned: Option<usize> = None;
    loop {
        let worth_parsing = match scanned {
            None => true,
            Some(from) => head_may_end(read, from) || read.len() > MAX_HEAD,
        };
        received |= !read.is_empty();
        if !read.is_empty() && worth_parsing {
            match parse_response_head(read, req.method) {
                Ok(Some((head, _))) => {
                    scanned = None;
                    if head.status.is_informational()
                        && head.status != http::StatusCode::SWITCHING_PROTOCOLS
                    {
                        continue;
                    }
                    return Ok(head);
                }
                Ok(None) => scanned = Some(read.len()),
                Err(e) => {
                    return Err(ConnError {
                        error: codec(e),
                        nothing_received: false,
                    });
                }
            }
        }
        read.reserve(READ_CHUNK);
        match io.read_buf(read).await {
            Ok(0) => {
                return Err(ConnError {
                    error: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "upstream closed the connection before a complete response head",
                    ),
                    nothing_received: !received,
                });
            }
            Ok(_) => {}
            Err(error) => {
                return Err(ConnError {
                    error,
                    nothing_received: !received,
                });
            }
        }
    }
}

/// Turns a response head read on `conn` into the response the proxy returns. A body that is
/// already complete in the read buffer (the usual small response) is taken out at once and
/// the connection goes straight back to the endpoint's pool; otherwise the body streams from
/// the connection as an [`InlineBody`].
pub(crate) fn into_response(
    head: ResponseHead,
    mut conn: InlineConn,
    inflight: InflightGuard,
    idle: Duration,
) -> Response<ProxyBody> {
    let keep_alive = head.keep_alive;
    let mut decoder = BodyDecoder::new(head.framing);
    let complete = match head.framing {
        Framing::Empty => Some(ProxyBody::empty()),
        Framing::Length(n) if (conn.read.len() as u64) >= n => match decoder.decode(&mut conn.read)
        {
            Ok(Decoded::Data(data)) => Some(ProxyBody::full(data)),
            _ => Some(ProxyBody::empty()),
        },
        _ => None,
    };
    let body = match complete {
        Some(body) => {
            give_back(conn, keep_alive, &inflight, idle);
            body
        }
        None => ProxyBody::inline(InlineBody {
            conn: Some(conn),
            decoder,
            keep_alive,
            inflight: Some(inflight),
            idle,
        }),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = head.status;
    *resp.version_mut() = head.version;
    *resp.headers_mut() = head.headers;
    resp
}

/// Returns a connection whose response ended exactly at the end of the read buffer.
fn give_back(conn: InlineConn, keep_alive: bool, inflight: &InflightGuard, idle: Duration) {
    if keep_alive && conn.read.is_empty() {
        inflight.endpoint().h1_pool().put_inline(conn, idle);
    }
}

/// A response body read from an upstream connection by whoever polls it. When it ends the
/// connection goes back to the endpoint's pool; dropped earlier, the connection is closed.
/// Until then the endpoint counts the request in flight (least-requests sees long downloads).
#[derive(Debug)]
pub(crate) struct InlineBody {
    conn: Option<InlineConn>,
    decoder: BodyDecoder,
    keep_alive: bool,
    inflight: Option<InflightGuard>,
    idle: Duration,
}

impl InlineBody {
    fn finish(&mut self) {
        if let (Some(conn), Some(inflight)) = (self.conn.take(), self.inflight.take()) {
            give_back(conn, self.keep_alive, &inflight, self.idle);
        }
    }

    fn fail(&mut self) {
        self.conn = None;
        self.inflight = None;
    }
}

impl Body for InlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.decoder.decode(&mut conn.read) {
                Ok(Decoded::Data(data)) => {
                    if this.decoder.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::Trailers(trailers)) => {
                    this.finish();
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Ok(Decoded::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::NeedMore) => {}
                Err(e) => {
                    this.fail();
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
            }
            conn.read.reserve(READ_CHUNK);
            let filled = match poll_read_into(&mut conn.io, cx, &mut conn.read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => {
                    this.fail();
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
            };
            if filled == 0 {
                // Closed by the upstream: the end of an until-close body, or a truncation.
                let result = this.decoder.eof();
                this.fail();
                return match result {
                    Ok(()) => Poll::Ready(None),
                    Err(e) => Poll::Ready(Some(Err(Box::new(e)))),
                };
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// Reads what is available into `buf` (one `read`; its future is stateless besides the
/// borrows, so building it per poll is fine).
fn poll_read_into(
    io: &mut TcpStream,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<std::io::Result<usize>> {
    use std::future::Future;
    std::pin::pin!(io.read_buf(buf)).poll(cx)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::{HeaderMap, Method};
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::upstream::Endpoint;

    /// An upstream that answers the n-th request on a connection with `answer(n)` and closes
    /// the connection after it when `close` is set. Counts accepted connections.
    async fn upstream(
        answer: fn(usize) -> Vec<u8>,
        close: bool,
    ) -> (Arc<Endpoint>, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut have = Vec::new();
                    let mut n = 0;
                    let mut buf = [0u8; 4096];
                    loop {
                        let Ok(read) = s.read(&mut buf).await else {
                            return;
                        };
                        if read == 0 {
                            return;
                        }
                        have.extend_from_slice(&buf[..read]);
                        while let Some(i) = have.windows(4).position(|w| w == b"\r\n\r\n") {
                            have.drain(..i + 4);
                            if s.write_all(&answer(n)).await.is_err() {
                                return;
                            }
                            n += 1;
                            if close {
                                return;
                            }
                        }
                    }
                });
            }
        });
        let ep = Arc::new(Endpoint::new(&format!("http://{addr}")).unwrap());
        (ep, accepted)
    }

    async fn get(ep: &Arc<Endpoint>, method: Method) -> Result<Response<ProxyBody>, SendError> {
        get_by(ep, method, Instant::now() + Duration::from_secs(5)).await
    }

    async fn get_by(
        ep: &Arc<Endpoint>,
        method: Method,
        deadline: Instant,
    ) -> Result<Response<ProxyBody>, SendError> {
        let mut headers = HeaderMap::new();
        headers.insert("host", http::HeaderValue::from_static("a.test"));
        let req = OutgoingRequest {
            method: &method,
            target: "/",
            headers: &headers,
            forwarding: None,
        };
        let (head, conn) = ep
            .h1_pool()
            .send_inline(ep.authority(), Duration::from_secs(5), deadline, &req)
            .await?;
        Ok(into_response(
            head,
            conn,
            ep.start_request(),
            Duration::from_secs(30),
        ))
    }

    async fn body(resp: Response<ProxyBody>) -> Result<(Vec<u8>, Option<HeaderMap>), BoxError> {
        let collected = resp.into_body().collect().await?;
        let trailers = collected.trailers().cloned();
        Ok((collected.to_bytes().to_vec(), trailers))
    }

    fn mixed(n: usize) -> Vec<u8> {
        match n % 3 {
            0 => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
            1 => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-t: 1\r\n\r\n".to_vec(),
            _ => {
                let mut r = b"HTTP/1.1 200 OK\r\ncontent-length: 20000\r\n\r\n".to_vec();
                r.extend(std::iter::repeat_n(b'z', 20000));
                r
            }
        }
    }

    #[tokio::test]
    async fn each_request_gets_its_own_deadline_on_a_reused_connection() {
        // Answers the first two requests at once, never the third.
        fn answer(n: usize) -> Vec<u8> {
            if n < 2 {
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
            } else {
                Vec::new()
            }
        }
        let (ep, accepted) = upstream(answer, false).await;
        let short = || Instant::now() + Duration::from_millis(50);
        let resp = get_by(&ep, Method::GET, short()).await.unwrap();
        assert_eq!(body(resp).await.unwrap().0, b"ok");
        // The first request's deadline passes while the connection idles in the pool ...
        tokio::time::sleep(Duration::from_millis(120)).await;
        // ... and does not cut the next request on it short.
        let resp = get_by(&ep, Method::GET, short()).await.unwrap();
        assert_eq!(body(resp).await.unwrap().0, b"ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        // A response that never comes ends at the deadline, as a timeout, not earlier.
        let start = Instant::now();
        let err = get_by(&ep, Method::GET, start + Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::Timeout), "{err}");
        assert!(start.elapsed() >= Duration::from_millis(190));
        // The timed-out connection is not pooled.
        assert_eq!(ep.h1_pool().idle_count(), 0);
    }

    #[tokio::test]
    async fn one_connection_carries_sized_chunked_and_large_bodies() {
        let (ep, accepted) = upstream(mixed, false).await;
        for round in 0..6 {
            let resp = get(&ep, Method::GET).await.unwrap();
            assert_eq!(resp.status(), 200);
            let (data, trailers) = body(resp).await.unwrap();
            match round % 3 {
                0 => assert_eq!(data, b"ok"),
                1 => {
                    assert_eq!(data, b"hello world");
                    assert_eq!(trailers.unwrap()["x-t"], "1");
                }
                _ => assert_eq!(data.len(), 20000),
            }
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(ep.h1_pool().idle_count(), 1);
        assert_eq!(ep.inflight(), 0);
    }

    #[tokio::test]
    async fn a_connection_closed_while_idle_is_replaced() {
        let (ep, accepted) = upstream(mixed, true).await;
        for _ in 0..3 {
            let resp = get(&ep, Method::GET).await.unwrap();
            assert_eq!(body(resp).await.unwrap().0, b"ok");
            // Give the FIN time to arrive, then also race it: both must work.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn until_close_and_connection_close_bodies_are_not_reused() {
        fn eof(_: usize) -> Vec<u8> {
            b"HTTP/1.1 200 OK\r\n\r\nall of it".to_vec()
        }
        let (ep, accepted) = upstream(eof, true).await;
        let (data, _) = body(get(&ep, Method::GET).await.unwrap()).await.unwrap();
        assert_eq!(data, b"all of it");
        assert_eq!(ep.h1_pool().idle_count(), 0);
        fn close(_: usize) -> Vec<u8> {
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\nx".to_vec()
        }
        let (ep, _) = upstream(close, false).await;
        let (data, _) = body(get(&ep, Method::GET).await.unwrap()).await.unwrap();
        assert_eq!(data, b"x");
        assert_eq!(ep.h1_pool().idle_count(), 0);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn head_and_no_content_have_no_body() {
        fn head(_: usize) -> Vec<u8> {
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n".to_vec()
        }
        let (ep, accepted) = upstream(head, false).await;
        for _ in 0..3 {
            let resp = get(&ep, Method::HEAD).await.unwrap();
            assert_eq!(resp.headers()["content-length"], "5");
            assert!(body(resp).await.unwrap().0.is_empty());
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn truncated_and_malformed_responses_are_errors() {
        fn short(_: usize) -> Vec<u8> {
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc".to_vec()
        }
        let (ep, _) = upstream(short, true).await;
        let resp = get(&ep, Method::GET).await.unwrap();
        assert!(body(resp).await.is_err(), "a short body is an error");
        assert_eq!(ep.h1_pool().idle_count(), 0);
        assert_eq!(ep.inflight(), 0);

        fn bad(_: usize) -> Vec<u8> {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n".to_vec()
        }
        let (ep, _) = upstream(bad, false).await;
        let resp = get(&ep, Method::GET).await.unwrap();
        assert!(body(resp).await.is_err(), "a bad chunk is an error");

        fn garbage(_: usize) -> Vec<u8> {
            b"SSH-2.0-OpenSSH\r\n\r\n".to_vec()
        }
        let (ep, _) = upstream(garbage, false).await;
        assert!(matches!(get(&ep, Method::GET).await, Err(SendError::Io(_))));

        fn nothing(_: usize) -> Vec<u8> {
            Vec::new()
        }
        let (ep, _) = upstream(nothing, true).await;
        let err = get(&ep, Method::GET).await.unwrap_err();
        assert!(!err.is_connect(), "the request was sent: {err}");
    }
}
