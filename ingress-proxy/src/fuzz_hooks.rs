//! Thin public wrappers over the crate-private upstream HTTP/1.1 codec, compiled only with the
//! non-default `fuzzing` feature so the `fuzz/` targets can drive it. Not a supported API: the
//! codec stays `pub(crate)` for everyone else, and these mirrors exist because a `pub(crate)`
//! item cannot be re-exported publicly.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode, Version};

use crate::upstream::h1codec;

/// The longest response head the codec accepts.
pub const MAX_HEAD: usize = h1codec::MAX_HEAD;

/// How a response body is delimited (mirror of the codec's `Framing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the upstream closes the connection.
    Eof,
}

impl From<h1codec::Framing> for Framing {
    fn from(f: h1codec::Framing) -> Self {
        match f {
            h1codec::Framing::Empty => Framing::Empty,
            h1codec::Framing::Length(n) => Framing::Length(n),
            h1codec::Framing::Chunked => Framing::Chunked,
            h1codec::Framing::Eof => Framing::Eof,
        }
    }
}

impl From<Framing> for h1codec::Framing {
    fn from(f: Framing) -> Self {
        match f {
            Framing::Empty => h1codec::Framing::Empty,
            Framing::Length(n) => h1codec::Framing::Length(n),
            Framing::Chunked => h1codec::Framing::Chunked,
            Framing::Eof => h1codec::Framing::Eof,
        }
    }
}

/// A parsed response head and how many bytes of the buffer it took.
#[derive(Debug)]
pub struct ResponseHead {
    /// Status code.
    pub status: StatusCode,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The header fields as kept by the codec.
    pub headers: HeaderMap,
    /// Body framing.
    pub framing: Framing,
    /// Whether the connection may be reused after the body.
    pub keep_alive: bool,
    /// Length of the head in bytes.
    pub len: usize,
}

/// `h1codec::parse_response_head`: `Ok(None)` means incomplete; errors are their `Display`.
pub fn parse_response_head(buf: &[u8], method: &Method) -> Result<Option<ResponseHead>, String> {
    match h1codec::parse_response_head(&mut bytes::BytesMut::from(buf), method) {
        Ok(Some((h, len))) => Ok(Some(ResponseHead {
            status: h.status,
            version: h.version,
            headers: h.headers,
            framing: h.framing.into(),
            keep_alive: h.keep_alive,
            len,
        })),
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// What [`BodyDecoder::decode`] produced (mirror of the codec's `Decoded`).
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// Trailer fields; the body has ended.
    Trailers(HeaderMap),
    /// Read more.
    NeedMore,
    /// The body has ended.
    End,
}

/// `h1codec::BodyDecoder`: follows one body's framing over a read buffer.
#[derive(Debug)]
pub struct BodyDecoder(h1codec::BodyDecoder);

impl BodyDecoder {
    /// A decoder for `framing`.
    pub fn new(framing: Framing) -> Self {
        BodyDecoder(h1codec::BodyDecoder::new(framing.into()))
    }

    /// Takes the next piece of the body from the front of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, String> {
        Ok(match self.0.decode(buf).map_err(|e| e.to_string())? {
            h1codec::Decoded::Data(b) => Decoded::Data(b),
            h1codec::Decoded::Trailers(t) => Decoded::Trailers(t),
            h1codec::Decoded::NeedMore => Decoded::NeedMore,
            h1codec::Decoded::End => Decoded::End,
        })
    }

    /// The upstream closed the connection.
    pub fn eof(&mut self) -> Result<(), String> {
        self.0.eof().map_err(|e| e.to_string())
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.0.is_done()
    }
}
