//! A small sans-IO HTTP/1.1 server codec: request heads in, response heads and body framing
//! out, for the inline downstream path ([`super::h1conn`]).
//!
//! It only accepts what it serves completely: an HTTP/1.1 request without a body (no
//! `Transfer-Encoding`, no `Content-Length` other than a single `0`), in origin form, that
//! asks for no upgrade and no `100-continue`, within the head limits. Everything else (bodies,
//! upgrades, HTTP/1.0, the h2 preface, malformed or oversized heads) is [`Parsed::Handoff`]:
//! the connection goes to hyper's server, which answers it with the full protocol (including
//! the 400 or 431 a bad head deserves). No I/O and no clock here, so it is proptested against a
//! reference encoder and fuzzed.

use bytes::{Bytes, BytesMut};
use std::mem::MaybeUninit;

use http::header::{CONNECTION, CONTENT_LENGTH, DATE, HeaderName, HeaderValue, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request, StatusCode, Uri, Version};
use http_body::SizeHint;

/// Header slots parsed on the stack; a request with more headers is handed to hyper (which
/// applies the configured `max_headers` and answers 431 when it is exceeded).
pub(crate) const MAX_SLOTS: usize = 100;

/// `X-Forwarded-For/-Proto/-Host/-Port` and `X-Real-IP`.
const FORWARDING_HEADERS: usize = 5;

/// The limits a request head must respect to be served inline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLimits {
    /// Most header fields.
    pub(crate) max_headers: usize,
    /// Most bytes in the head.
    pub(crate) max_bytes: usize,
}

/// A request head the inline path serves, and how to answer it.
#[derive(Debug)]
pub(crate) struct InlineRequest {
    /// The request (its header values are slices of the read buffer, not copies).
    pub(crate) request: Request<()>,
    /// The client asked to close the connection after this response (`Connection: close`).
    pub(crate) close: bool,
    /// A `HEAD` request: the response has headers only.
    pub(crate) head: bool,
    /// The client accepts trailers (`TE: trailers`), so a chunked response may carry them.
    pub(crate) trailers: bool,
}

/// What [`parse_request_head`] found at the start of the buffer.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // returned and destructured at once; a box would allocate per request
pub(crate) enum Parsed {
    /// A complete head the inline path serves; its bytes were taken out of the buffer.
    Request(InlineRequest),
    /// No complete head yet (and still within the limits): read more.
    Incomplete,
    /// Not for the inline path: hand the connection, buffer untouched, to hyper.
    Handoff,
}

/// Parses one request head from the start of `buf`. On [`Parsed::Request`] the head's bytes
/// have been split off `buf` (the request's header values point into them).
pub(crate) fn parse_request_head(buf: &mut BytesMut, limits: HeadLimits) -> Parsed {
    let slots_wanted = limits.max_headers.min(MAX_SLOTS);
    // Uninitialised slots: initialising 100 of them per request would cost more than parsing.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_SLOTS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots[..slots_wanted]) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() <= limits.max_bytes => {
            return Parsed::Incomplete;
        }
        // Too large, too many headers or malformed: hyper answers with the right status.
        _ => return Parsed::Handoff,
    };
    if len > limits.max_bytes || len > u32::MAX as usize || req.version != Some(1) {
        return Parsed::Handoff;
    }
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return Parsed::Handoff;
    };
    if !path.starts_with('/') {
        // Absolute form, `*` or garbage: rare, hyper's.
        return Parsed::Handoff;
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Handoff;
    };
    if method == Method::CONNECT {
        return Parsed::Handoff;
    }
    // Offsets into the buffer, so the head can be frozen once and sliced without copies.
    // (`len` <= `max_bytes`, which the configuration bounds far below 4 GiB.)
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
    let path_range = (offset(path.as_bytes()), path.len() as u32);
    let mut fields = [(0u32, 0u32, 0u32, 0u32); MAX_SLOTS];
    let count = req.headers.len();
    let mut close = false;
    let mut trailers = false;
    for (slot, h) in fields.iter_mut().zip(req.headers.iter()) {
        let name = h.name.as_bytes();
        let value = h.value;
        if name.eq_ignore_ascii_case(b"content-length") {
            if value != b"0" {
                return Parsed::Handoff;
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
        {
            return Parsed::Handoff;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Parsed::Handoff;
                }
            }
        } else if name.eq_ignore_ascii_case(b"te") {
            trailers |= value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"));
        }
        *slot = (
            offset(name),
            name.len() as u32,
            offset(value),
            value.len() as u32,
        );
    }
    // Two `Content-Length: 0` fields agree, but let hyper judge duplicates like any others.
    if req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
        .count()
        > 1
    {
        return Parsed::Handoff;
    }
    let head: Bytes = buf.split_to(len).freeze();
    let slice = |at: u32, len: u32| head.slice(at as usize..(at + len) as usize);
    let Ok(uri) = Uri::from_maybe_shared(slice(path_range.0, path_range.1)) else {
        return Parsed::Handoff;
    };
    // Room for the forwarding headers the proxy adds, so the map does not grow per request.
    let mut headers = HeaderMap::with_capacity(count + FORWARDING_HEADERS);
    for &(n, nl, v, vl) in &fields[..count] {
        let Ok(name) = HeaderName::from_bytes(&head[n as usize..(n + nl) as usize]) else {
            return Parsed::Handoff;
        };
        let Ok(value) = HeaderValue::from_maybe_shared(slice(v, vl)) else {
            return Parsed::Handoff;
        };
        headers.append(name, value);
    }
    let head_request = method == Method::HEAD;
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Parsed::Request(InlineRequest {
        request,
        close,
        head: head_request,
        trailers,
    })
}

/// How a response body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// Headers only (HEAD, 1xx, 204, 304): the body is not sent.
    None,
    /// Exactly this many bytes, announced by `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`: the length is not known up front.
    Chunked,
}

/// How to write one response's head: the body framing, and whether the response's own
/// `Content-Length` field is written (it is replaced when it disagrees with the body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResponsePlan {
    /// The body framing.
    pub(crate) framing: BodyFraming,
    /// Write the response's own `Content-Length` field(s).
    pub(crate) keep_content_length: bool,
    /// Add a `Content-Length` with this value.
    pub(crate) add_content_length: Option<u64>,
}

/// Decides the framing of a response (RFC 9112 §6.3, the server side of it): no body for HEAD,
/// 1xx, 204 and 304 (their `Content-Length`, describing the GET response, is kept); a body of
/// known size gets `Content-Length`; one of unknown size is chunked.
pub(crate) fn plan_response(
    status: StatusCode,
    head_request: bool,
    headers: &HeaderMap,
    hint: &SizeHint,
) -> ResponsePlan {
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| {
        let s = std::str::from_utf8(v.as_bytes()).ok()?;
        s.parse::<u64>().ok()
    });
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return ResponsePlan {
            framing: BodyFraming::None,
            keep_content_length: status != StatusCode::NO_CONTENT && !status.is_informational(),
            add_content_length: None,
        };
    }
    match hint.exact() {
        Some(n) if declared == Some(n) && headers.get_all(CONTENT_LENGTH).iter().count() == 1 => {
            ResponsePlan {
                framing: BodyFraming::Length(n),
                keep_content_length: true,
                add_content_length: None,
            }
        }
        Some(n) => ResponsePlan {
            framing: BodyFraming::Length(n),
            keep_content_length: false,
            add_content_length: Some(n),
        },
        None => ResponsePlan {
            framing: BodyFraming::Chunked,
            keep_content_length: false,
            add_content_length: None,
        },
    }
}

/// Writes the status line, the headers and the blank line into `out`. Framing and connection
/// management headers come from `plan` and `close`, not from `headers`: the response's own
/// `Transfer-Encoding` and `Connection` fields are not written (hop-by-hop; the proxy removed
/// the upstream's already). `date` is added when the response has none.
pub(crate) fn encode_response_head(
    status: StatusCode,
    headers: &HeaderMap,
    plan: &ResponsePlan,
    close: bool,
    date: &[u8],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if name == TRANSFER_ENCODING
            || name == CONNECTION
            || (name == CONTENT_LENGTH && !plan.keep_content_length)
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(n) = plan.add_content_length {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa_buf(n).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if plan.framing == BodyFraming::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !headers.contains_key(DATE) {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Decimal digits of `n` without allocating.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buf(mut n: u64) -> Digits {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Digits { buf, start: i }
}

/// The size line of a chunk of `len` bytes (`len` in hex, CRLF).
pub(crate) fn encode_chunk_size(len: usize, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut i = buf.len();
    let mut n = len;
    loop {
        i -= 1;
        buf[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk and the trailer section (`trailers` only when the client accepts them).
pub(crate) fn encode_last_chunk(trailers: Option<&HeaderMap>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n");
    if let Some(t) = trailers {
        crate::upstream::h1codec::encode_fields(t, out);
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether a response asks for the connection to close after it (`Connection: close`, as the
/// proxy's own 400 for a smuggling attempt does).
pub(crate) fn response_closes(headers: &HeaderMap) -> bool {
    headers.get_all(CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}
