//! The proxy's upstream HTTP/1.1 body decoder (`h1codec::BodyDecoder`, via the `fuzzing`
//! feature's `__fuzz` hooks), mostly its chunked framing.
//!
//! Input: one selector byte (bits 0-1: framing; bits 2-7: a seed for read sizes), then the
//! bytes the upstream sent. Properties:
//! - segmentation independence: decoding the whole stream from one buffer and decoding it as
//!   it trickles in over many small reads give the same body bytes, the same trailers, the
//!   same outcome (ended, error, or needs more then EOF) and leave the same bytes unread;
//! - chunked round trip (framing 3): the payload chunk-encoded with input-chosen chunk sizes
//!   decodes back to exactly the payload, leaving nothing unread.
#![no_main]

use bytes::BytesMut;
use http::HeaderMap;
use ingress_proxy::__fuzz::{BodyDecoder, Decoded, Framing};
use libfuzzer_sys::fuzz_target;

/// Everything a decoder produced from a stream.
#[derive(PartialEq, Eq)]
struct Outcome {
    body: Vec<u8>,
    trailers: Option<HeaderMap>,
    /// `Ok(true)`: ended; `Ok(false)`: needed more, and the EOF that followed was accepted;
    /// `Err`: a decode error or an EOF refused.
    end: Result<bool, String>,
    unread: Vec<u8>,
}

/// Lengths and short prefixes: a failing input can be megabytes long.
impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(64)]).into_owned();
        f.debug_struct("Outcome")
            .field(
                "body",
                &format_args!("{} bytes {:?}", self.body.len(), short(&self.body)),
            )
            .field("trailers", &self.trailers.as_ref().map(HeaderMap::len))
            .field("end", &self.end)
            .field(
                "unread",
                &format_args!("{} bytes {:?}", self.unread.len(), short(&self.unread)),
            )
            .finish()
    }
}

/// Feeds `stream` to a fresh decoder in reads of the sizes `sizes` yields.
fn run(framing: Framing, stream: &[u8], mut sizes: impl FnMut() -> usize) -> Outcome {
    let mut dec = BodyDecoder::new(framing);
    let mut buf = BytesMut::new();
    let mut rest = stream;
    let mut body = Vec::new();
    let mut trailers = None;
    let end = loop {
        match dec.decode(&mut buf) {
            Ok(Decoded::Data(b)) => {
                assert!(!b.is_empty(), "empty data frame");
                body.extend_from_slice(&b);
            }
            Ok(Decoded::Trailers(t)) => {
                trailers = Some(t);
                assert!(dec.is_done());
                break Ok(true);
            }
            Ok(Decoded::End) => break Ok(true),
            Ok(Decoded::NeedMore) => {
                if rest.is_empty() {
                    break dec.eof().map(|()| false);
                }
                let n = sizes().clamp(1, rest.len());
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
            }
            Err(e) => break Err(e),
        }
    };
    let mut unread = buf.to_vec();
    unread.extend_from_slice(rest);
    Outcome {
        body,
        trailers,
        end,
        unread,
    }
}

/// A cheap deterministic sequence of small read sizes from a seed.
fn read_sizes(seed: u8) -> impl FnMut() -> usize {
    let mut x = u32::from(seed) | 0x100;
    move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x % 7) as usize + 1
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, stream)) = data.split_first() else {
        return;
    };
    let framing = match sel & 3 {
        0 | 3 => Framing::Chunked,
        1 => Framing::Length(u64::from(stream.first().copied().unwrap_or(0))),
        _ => Framing::Eof,
    };
    if sel & 3 == 3 {
        chunked_round_trip(sel >> 2, stream);
        return;
    }
    let whole = run(framing, stream, || usize::MAX);
    let trickled = run(framing, stream, read_sizes(sel >> 2));
    assert_eq!(whole, trickled, "one read vs many reads disagree");
});

fn chunked_round_trip(seed: u8, payload: &[u8]) {
    let mut sizes = read_sizes(seed);
    let mut wire = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        let n = (sizes() * 3).min(rest.len());
        wire.extend_from_slice(format!("{n:X}").as_bytes());
        if n % 2 == 0 {
            wire.extend_from_slice(b" ;ext=1");
        }
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(&rest[..n]);
        wire.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    let out = run(Framing::Chunked, &wire, read_sizes(seed.wrapping_add(1)));
    assert_eq!(
        out,
        Outcome {
            body: payload.to_vec(),
            trailers: None,
            end: Ok(true),
            unread: Vec::new()
        }
    );
}
