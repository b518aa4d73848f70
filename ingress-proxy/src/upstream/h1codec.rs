//! A small sans-IO HTTP/1.1 client codec: request heads out, response heads and body framing in.
//!
//! Why not hyper's client connection: with `hyper::client::conn::http1`, every upstream
//! connection is a task of its own, fed through a channel, so each proxied request crosses
//! two task hand-offs (request in, response head out) and the body a third. The proxy only
//! needs the plain case inline in the downstream request task: write one head, parse one
//! response head, follow its body framing, and know whether the connection can be reused.
//! This module is that logic over byte slices, no I/O and no clock, so it can be tested
//! exhaustively; [`super::h1conn`] drives it over a socket. Requests with a body and
//! upgrades still go through hyper.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

use crate::forwarded::Forwarding;

/// The most response headers accepted (hyper's default too).
pub(crate) const MAX_HEADERS: usize = 100;
/// The longest response head accepted (about hyper's default read-buffer limit).
pub(crate) const MAX_HEAD: usize = 400 * 1024;
/// The longest chunk-size line (size + extensions) or trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 64 * 1024;

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CodecError {
    /// The response head is malformed (httparse's reason).
    Head(&'static str),
    /// The head is larger than [`MAX_HEAD`] or has more than [`MAX_HEADERS`] headers.
    HeadTooLarge,
    /// A `Content-Length` that is not a number, or several that disagree.
    ContentLength,
    /// A malformed chunk size line, chunk end or trailer section.
    Chunk(&'static str),
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::Head(why) => write!(f, "malformed upstream response head: {why}"),
            CodecError::HeadTooLarge => f.write_str("upstream response head too large"),
            CodecError::ContentLength => f.write_str("invalid upstream Content-Length"),
            CodecError::Chunk(why) => write!(f, "malformed upstream chunked body: {why}"),
        }
    }
}

impl std::error::Error for CodecError {}

/// A request without a body as the inline path sends it. Borrowed, so a retry on another
/// connection sends the same one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutgoingRequest<'a> {
    pub(crate) method: &'a Method,
    /// Origin form (`/path?query`).
    pub(crate) target: &'a str,
    /// Hop-by-hop headers already removed, `Host` set.
    pub(crate) headers: &'a HeaderMap,
    /// Forwarding fields not in `headers`, written after them.
    pub(crate) forwarding: Option<&'a Forwarding<'a>>,
}

/// Writes `METHOD target HTTP/1.1`, the fields and the blank line into `out`. A request
/// without a body gets no framing header unless it carries one (e.g. `Content-Length: 0`).
pub(crate) fn encode_request_head(req: &OutgoingRequest<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    encode_fields(req.headers, out);
    if let Some(f) = req.forwarding {
        f.encode(out);
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes `name: value` lines, one per field (request heads here, trailer sections in the
/// downstream codec).
pub(crate) fn encode_fields(headers: &HeaderMap, out: &mut Vec<u8>) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// How the body after a response head is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the upstream closes the connection.
    Eof,
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    /// The fields as received, except a `Connection` field holding only `close` and
    /// `keep-alive` (consumed into [`ResponseHead::keep_alive`]).
    pub(crate) headers: HeaderMap,
    pub(crate) framing: Framing,
    /// Whether the connection may carry another request after this response's body.
    pub(crate) keep_alive: bool,
}

/// Whether `buf[from..]` (with up to 2 bytes before `from` for context) holds the blank line
/// that ends a head (`\n\n` or `\n\r\n`): after an incomplete parse, only then is parsing again
/// worth it, so a head trickling in byte by byte costs linear time, not quadratic.
pub(crate) fn head_may_end(buf: &[u8], from: usize) -> bool {
    let start = from.saturating_sub(2).min(buf.len());
    let tail = &buf[start..];
    tail.iter().enumerate().any(|(i, &b)| {
        b == b'\n'
            && match tail.get(i + 1) {
                Some(b'\n') => true,
                Some(b'\r') => tail.get(i + 2) == Some(&b'\n'),
                _ => false,
            }
    })
}

/// Parses one response head from the start of `buf`. `Ok(None)`: incomplete, read more.
/// On success the head's bytes have been split off `buf` (the header values point into them,
/// no copies) and its length is returned with it. After an error the connection is unusable
/// and `buf` is left as it was, except for a field httparse accepts but `http` refuses, which
/// is only found once the head is split off. Interim (1xx other than 101) responses are
/// returned too; the caller skips them.
pub(crate) fn parse_response_head(
    buf: &mut BytesMut,
    request_method: &Method,
) -> Result<Option<(ResponseHead, usize)>, CodecError> {
    // Uninitialised slots: initialising 100 of them per response would cost more than parsing.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > MAX_HEAD {
                Err(CodecError::HeadTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(CodecError::HeadTooLarge),
        Err(e) => return Err(CodecError::Head(error_text(e))),
    };
    if len > MAX_HEAD {
        return Err(CodecError::HeadTooLarge);
    }
    let code = resp.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| CodecError::Head("status code"))?;
    let version = if resp.version == Some(1) {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut has_te = false;
    let mut close = version == Version::HTTP_10;
    // Offsets into the buffer (`len` <= MAX_HEAD), so the head is frozen once and sliced.
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
    let mut fields = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
    let mut dropped = 0;
    let mut free = fields.iter_mut();
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(h.value)?;
            if content_length.is_some_and(|c| c != n) {
                return Err(CodecError::ContentLength);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            has_te = true;
            // Only the last coding decides (RFC 9112 §6.3 item 4).
            chunked = last_token(h.value).eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            let mut only_options = true;
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    if version == Version::HTTP_10 {
                        close = false;
                    }
                } else if !token.is_empty() {
                    only_options = false;
                }
            }
            if only_options {
                // `Connection: keep-alive` / `close` (what most upstreams send) is fully
                // consumed here, and the proxy would only strip it again as hop-by-hop; a
                // value naming other headers stays, for that stripping to act on.
                dropped += 1;
                continue;
            }
        }
        if let Some(slot) = free.next() {
            *slot = (
                offset(name),
                name.len() as u32,
                offset(h.value),
                h.value.len() as u32,
            );
        }
    }
    let count = resp.headers.len() - dropped;
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    for &(n, nl, v, vl) in &fields[..count] {
        let name = HeaderName::from_bytes(&head[n as usize..(n + nl) as usize])
            .map_err(|_| CodecError::Head("header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(v as usize..(v + vl) as usize))
            .map_err(|_| CodecError::Head("header value"))?;
        headers.append(name, value);
    }
    let framing = if *request_method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Empty
    } else if has_te {
        // Transfer-Encoding overrides Content-Length; such a message must not be followed
        // by another on the same connection (RFC 9112 §6.3 item 3).
        if content_length.is_some() {
            headers.remove(CONTENT_LENGTH);
            close = true;
        }
        if chunked {
            Framing::Chunked
        } else {
            Framing::Eof
        }
    } else {
        match content_length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::Eof,
        }
    };
    let keep_alive = !close && framing != Framing::Eof && status != StatusCode::SWITCHING_PROTOCOLS;
    Ok(Some((
        ResponseHead {
            status,
            version,
            headers,
            framing,
            keep_alive,
        },
        len,
    )))
}

fn error_text(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "header name",
        httparse::Error::HeaderValue => "header value",
        httparse::Error::NewLine => "new line",
        httparse::Error::Status => "status",
        httparse::Error::Token => "token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "version",
    }
}

fn parse_content_length(v: &[u8]) -> Result<u64, CodecError> {
    // A list of identical values is allowed (RFC 9110 §8.6); anything else is an error.
    let mut out: Option<u64> = None;
    for part in v.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return Err(CodecError::ContentLength);
        }
        let n = part
            .iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
        if out.is_some_and(|o| o != n) {
            return Err(CodecError::ContentLength);
        }
        out = Some(n);
    }
    out.ok_or(CodecError::ContentLength)
}

fn last_token(v: &[u8]) -> &[u8] {
    v.rsplit(|&b| b == b',').next().unwrap_or(v).trim_ascii()
}

/// Where a chunked body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// This many data bytes of the current chunk left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: the trailer section up to an empty line; this many of its bytes
    /// have been searched for the end already (so a section trickling in is scanned once, not
    /// once per read).
    Trailers(usize),
}

/// What [`BodyDecoder::decode`] produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The trailer fields of a chunked body (only when there were any); the body has ended.
    Trailers(HeaderMap),
    /// Nothing can be decoded from the buffer: read more.
    NeedMore,
    /// The body has ended (no more frames).
    End,
}

/// Follows one response body's framing over a read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BodyDecoder {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Length(u64),
    Chunked(ChunkState),
    Eof,
    Done,
}

/// Bodies up to this size are copied out of the read buffer, so the buffer stays unshared
/// and is reused for the next response instead of reallocated.
const COPY_BELOW: usize = 4096;

fn take(buf: &mut BytesMut, n: usize) -> Bytes {
    if n < COPY_BELOW {
        let b = Bytes::copy_from_slice(&buf[..n]);
        buf.advance(n);
        b
    } else {
        buf.split_to(n).freeze()
    }
}

impl BodyDecoder {
    /// A decoder for `framing`.
    pub(crate) fn new(framing: Framing) -> Self {
        let kind = match framing {
            Framing::Empty | Framing::Length(0) => Kind::Done,
            Framing::Length(n) => Kind::Length(n),
            Framing::Chunked => Kind::Chunked(ChunkState::Size),
            Framing::Eof => Kind::Eof,
        };
        Self { kind }
    }

    /// Whether the body has ended.
    pub(crate) fn is_done(&self) -> bool {
        self.kind == Kind::Done
    }

    /// Bytes still expected, when the framing says so.
    pub(crate) fn remaining(&self) -> Option<u64> {
        match self.kind {
            Kind::Length(n) => Some(n),
            Kind::Done => Some(0),
            _ => None,
        }
    }

    /// Takes the next piece of the body from the front of `buf` (consuming framing bytes).
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, CodecError> {
        loop {
            match &mut self.kind {
                Kind::Done => return Ok(Decoded::End),
                Kind::Eof => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = buf.len();
                    return Ok(Decoded::Data(take(buf, n)));
                }
                Kind::Length(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                    *left -= n as u64;
                    if *left == 0 {
                        self.kind = Kind::Done;
                    }
                    return Ok(Decoded::Data(take(buf, n)));
                }
                Kind::Chunked(state) => match *state {
                    ChunkState::Size => {
                        // Look for the CRLF only within the limit, so whether a long line is
                        // refused depends on its bytes, not on how the reads split them.
                        let window = &buf[..buf.len().min(MAX_CHUNK_LINE + 1)];
                        let Some(end) = find_crlf(window) else {
                            return if buf.len() > MAX_CHUNK_LINE {
                                Err(CodecError::Chunk("chunk size line too long"))
                            } else {
                                Ok(Decoded::NeedMore)
                            };
                        };
                        let size = parse_chunk_size(&buf[..end])?;
                        buf.advance(end + 2);
                        *state = if size == 0 {
                            ChunkState::Trailers(0)
                        } else {
                            ChunkState::Data(size)
                        };
                    }
                    ChunkState::Data(left) => {
                        if buf.is_empty() {
                            return Ok(Decoded::NeedMore);
                        }
                        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                        let rest = left - n as u64;
                        *state = if rest == 0 {
                            ChunkState::DataEnd
                        } else {
                            ChunkState::Data(rest)
                        };
                        return Ok(Decoded::Data(take(buf, n)));
                    }
                    ChunkState::DataEnd => {
                        if buf.len() < 2 {
                            return Ok(Decoded::NeedMore);
                        }
                        if &buf[..2] != b"\r\n" {
                            return Err(CodecError::Chunk("no CRLF after chunk data"));
                        }
                        buf.advance(2);
                        *state = ChunkState::Size;
                    }
                    ChunkState::Trailers(searched) => {
                        if buf.starts_with(b"\r\n") {
                            buf.advance(2);
                            self.kind = Kind::Done;
                            return Ok(Decoded::End);
                        }
                        let window = &buf[..buf.len().min(MAX_TRAILERS + 1)];
                        // The end may straddle the previous search's last bytes.
                        let from = searched.saturating_sub(3).min(window.len());
                        let found = find_subslice(&window[from..], b"\r\n\r\n").map(|i| from + i);
                        let Some(end) = found else {
                            *state = ChunkState::Trailers(window.len());
                            return if buf.len() > MAX_TRAILERS {
                                Err(CodecError::Chunk("trailer section too large"))
                            } else {
                                Ok(Decoded::NeedMore)
                            };
                        };
                        let trailers = parse_trailers(&buf[..end + 4])?;
                        buf.advance(end + 4);
                        self.kind = Kind::Done;
                        return Ok(Decoded::Trailers(trailers));
                    }
                },
            }
        }
    }

    /// The upstream closed the connection: fine for an until-close body, an error otherwise.
    pub(crate) fn eof(&mut self) -> Result<(), CodecError> {
        match self.kind {
            Kind::Eof | Kind::Done => {
                self.kind = Kind::Done;
                Ok(())
            }
            Kind::Length(_) => Err(CodecError::Chunk("connection closed before the body ended")),
            Kind::Chunked(_) => Err(CodecError::Chunk("connection closed inside a chunked body")),
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

fn find_subslice(buf: &[u8], needle: &[u8]) -> Option<usize> {
    buf.windows(needle.len()).position(|w| w == needle)
}

/// `1*HEXDIG [ chunk-ext ]`, with optional whitespace before extensions.
fn parse_chunk_size(line: &[u8]) -> Result<u64, CodecError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(CodecError::Chunk("chunk size"));
    }
    if digits > 15 {
        return Err(CodecError::Chunk("chunk size too large"));
    }
    let rest = line[digits..].trim_ascii_start();
    if !(rest.is_empty() || rest[0] == b';') || rest.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Err(CodecError::Chunk("chunk extension"));
    }
    Ok(line[..digits].iter().fold(0u64, |acc, &d| {
        acc * 16 + u64::from((d as char).to_digit(16).unwrap_or(0))
    }))
}

fn parse_trailers(section: &[u8]) -> Result<HeaderMap, CodecError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(section, &mut slots) {
        Ok(httparse::Status::Complete((_, parsed))) => {
            let mut map = HeaderMap::with_capacity(parsed.len());
            for h in parsed {
                let name = HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|_| CodecError::Chunk("trailer name"))?;
                let value = HeaderValue::from_bytes(h.value)
                    .map_err(|_| CodecError::Chunk("trailer value"))?;
                map.append(name, value);
            }
            Ok(map)
        }
        Ok(httparse::Status::Partial) | Err(_) => Err(CodecError::Chunk("trailer section")),
    }
}

#[cfg(test)]
#[path = "h1codec_tests.rs"]
mod tests;
