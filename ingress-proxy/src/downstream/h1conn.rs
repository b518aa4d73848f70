//! The inline HTTP/1.1 server loop: read a request head, route and forward it
//! ([`crate::handler::handle`]), write the response, repeat, all in the connection's task.
//!
//! With the upstream side inline as well ([`crate::upstream::h1conn`]), a proxied GET costs
//! one parse, one upstream write and read, and one downstream write, with no other task, channel
//! or wake-up involved. The loop stops at the first request it does not serve
//! ([`Parsed::Handoff`]) and returns the bytes it read, so hyper's server takes the connection
//! from exactly there.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::Response;
use http_body::Body;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::date::with_date;
use super::h1codec::{
    BodyFraming, HeadLimits, InlineRequest, Parsed, encode_chunk_size, encode_last_chunk,
    encode_response_head, parse_request_head, plan_response, response_closes,
};
use crate::body::ProxyBody;
use crate::clock::coarse_now;
use crate::handler::{ConnCtx, handle};
use crate::server::Shared;
use crate::upstream::h1codec::head_may_end;

/// Read-buffer growth step: a typical request head arrives in one `read`.
const READ_CHUNK: usize = 8 * 1024;
/// Body frames up to this size are copied behind the head, so a small response is one write.
const COALESCE: usize = 16 * 1024;

/// How the inline loop ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The connection is finished: closed by the client, an I/O error, the header timeout, a
    /// `Connection: close`, or a drain.
    Closed,
    /// A request the inline path does not serve starts at these bytes: hyper's server takes
    /// the connection from here.
    Handoff(Bytes),
}

/// What the connection's supervisor (drain, idle timeout) and the loop tell each other.
#[derive(Debug, Default)]
pub(crate) struct Control {
    /// The loop is waiting for a request and holds no part of one: dropping it loses nothing.
    idle: AtomicBool,
    /// Close after the current response.
    closing: AtomicBool,
}

impl Control {
    /// Asks the loop to close after the current response. Returns whether it is idle, in which
    /// case the caller may simply drop it.
    pub(crate) fn close_soon(&self) -> bool {
        self.closing.store(true, Ordering::Relaxed);
        self.idle.load(Ordering::Relaxed)
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }
}

/// Serves requests on `io` until the connection ends or a request needs hyper.
pub(crate) async fn serve<IO>(
    io: &mut IO,
    shared: &Arc<Shared>,
    ctx: &Arc<ConnCtx>,
    control: &Control,
) -> Outcome
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let limits = HeadLimits {
        max_headers: shared.limits.max_headers,
        max_bytes: shared.limits.max_header_bytes,
    };
    let header_timeout = shared.limits.header_read_timeout;
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    // One timer for the connection's life, pushed later per request (a cheap update in tokio's
    // wheel when the new deadline is later).
    let deadline = tokio::time::sleep(header_timeout);
    tokio::pin!(deadline);
    loop {
        // The whole head must arrive within the header timeout, counted from when the loop
        // starts waiting for it (as in hyper: this also bounds a keep-alive wait).
        deadline.as_mut().reset(coarse_now() + header_timeout);
        let mut scanned: Option<usize> = None;
        let InlineRequest {
            request,
            close,
            head,
            trailers,
        } = loop {
            // After an incomplete parse, parse again only once a blank line may have arrived,
            // so a head trickling in costs linear time.
            let worth_parsing = match scanned {
                None => !buf.is_empty(),
                Some(from) => head_may_end(&buf, from) || buf.len() > limits.max_bytes,
            };
            if worth_parsing {
                match parse_request_head(&mut buf, limits) {
                    Parsed::Request(r) => break r,
                    Parsed::Handoff => return Outcome::Handoff(buf.freeze()),
                    Parsed::Incomplete => scanned = Some(buf.len()),
                }
            }
            control.idle.store(buf.is_empty(), Ordering::Relaxed);
            if control.closing() && buf.is_empty() {
                return Outcome::Closed;
            }
            buf.reserve(READ_CHUNK);
            let read = tokio::select! {
                biased;
                r = io.read_buf(&mut buf) => r,
                () = deadline.as_mut() => return Outcome::Closed,
            };
            control.idle.store(false, Ordering::Relaxed);
            match read {
                Ok(0) | Err(_) => return Outcome::Closed,
                Ok(_) => {}
            }
        };
        let response = handle(
            shared.clone(),
            ctx.clone(),
            request.map(|()| ProxyBody::empty()),
        )
        .await;
        let close = close || control.closing() || response_closes(response.headers());
        if !write_response(io, &mut out, response, head, trailers, close).await {
            return Outcome::Closed;
        }
        if close {
            let _ = io.shutdown().await;
            return Outcome::Closed;
        }
    }
}

/// Writes one response; `false` when the connection cannot carry another (an I/O error, or a
/// body that failed or broke its declared length mid-way: the client sees the connection
/// close before the message completes, as with hyper).
async fn write_response<IO>(
    io: &mut IO,
    out: &mut Vec<u8>,
    response: Response<ProxyBody>,
    head_request: bool,
    trailers_ok: bool,
    close: bool,
) -> bool
where
    IO: AsyncWrite + Unpin,
{
    crate::batching::end_of_turn().await;
    let (parts, body) = response.into_parts();
    let plan = plan_response(
        parts.status,
        head_request,
        &parts.headers,
        &body.size_hint(),
    );
    out.clear();
    with_date(|date| encode_response_head(parts.status, &parts.headers, &plan, close, date, out));
    drop(parts);
    let chunked = match plan.framing {
        BodyFraming::None => return send(io, out).await,
        BodyFraming::Length(_) => false,
        BodyFraming::Chunked => true,
    };
    let mut remaining = match plan.framing {
        BodyFraming::Length(n) => n,
        _ => u64::MAX,
    };
    let mut body = std::pin::pin!(body);
    loop {
        // Take what the body has ready; flush what is buffered before waiting for more.
        let frame = match poll_fn(|cx| body.as_mut().poll_frame(cx)).now_or_never() {
            Some(frame) => frame,
            None => {
                if !send(io, out).await {
                    return false;
                }
                poll_fn(|cx| body.as_mut().poll_frame(cx)).await
            }
        };
        let frame = match frame {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body failed; closing the connection");
                let _ = send(io, out).await;
                return false;
            }
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let (true, Ok(t)) = (chunked, frame.into_trailers()) {
                    encode_last_chunk(trailers_ok.then_some(&t), out);
                    return send(io, out).await;
                }
                continue;
            }
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            encode_chunk_size(data.len(), out);
        } else if data.len() as u64 > remaining {
            tracing::debug!("response body longer than its Content-Length; closing");
            return false;
        } else {
            remaining -= data.len() as u64;
        }
        if data.len() <= COALESCE {
            out.extend_from_slice(&data);
        } else if !(send(io, out).await && io.write_all(&data).await.is_ok()) {
            return false;
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
    }
    if chunked {
        encode_last_chunk(None, out);
    } else if remaining != 0 {
        tracing::debug!("response body shorter than its Content-Length; closing");
        let _ = send(io, out).await;
        return false;
    }
    send(io, out).await
}

/// Writes and flushes `out` (TLS: into records and onto the socket), then clears it.
async fn send<IO: AsyncWrite + Unpin>(io: &mut IO, out: &mut Vec<u8>) -> bool {
    let ok = (out.is_empty() || io.write_all(out).await.is_ok()) && io.flush().await.is_ok();
    out.clear();
    ok
}
