//! Tests of the HTTP/1.1 client codec: fixed cases from RFC 9112 §6.3, and properties
//! against a reference encoder (every message the encoder writes, split anywhere, decodes
//! back to the same head, body and trailers, and leaves the next message untouched).

use super::*;
use proptest::prelude::*;

fn head(raw: &str) -> ResponseHead {
    head_for(raw, &Method::GET)
}

/// [`parse_response_head`] over a copy of `raw`; checks that a complete head, and only that,
/// is split off the buffer.
fn parse(raw: &[u8], method: &Method) -> Result<Option<(ResponseHead, usize)>, CodecError> {
    let mut buf = BytesMut::from(raw);
    let r = parse_response_head(&mut buf, method);
    let taken = raw.len() - buf.len();
    match &r {
        Ok(Some((_, len))) => assert_eq!(taken, *len),
        _ => assert_eq!(taken, 0),
    }
    assert_eq!(&raw[taken..], &buf[..]);
    r
}

fn head_for(raw: &str, method: &Method) -> ResponseHead {
    let (h, len) = parse(raw.as_bytes(), method)
        .expect("valid")
        .expect("complete");
    assert_eq!(len, raw.len());
    h
}

#[test]
fn request_head_is_origin_form_with_every_header() {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("a.test"));
    headers.append("x-forwarded-for", HeaderValue::from_static("192.0.2.1"));
    headers.append("accept", HeaderValue::from_static("a"));
    headers.append("accept", HeaderValue::from_static("b"));
    let mut out = Vec::new();
    let req = OutgoingRequest {
        method: &Method::GET,
        target: "/p?q=1",
        headers: &headers,
        forwarding: None,
    };
    encode_request_head(&req, &mut out);
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.starts_with("GET /p?q=1 HTTP/1.1\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n"));
    let mut slots = [httparse::EMPTY_HEADER; 16];
    let mut req = httparse::Request::new(&mut slots);
    assert_eq!(
        req.parse(&out).unwrap(),
        httparse::Status::Complete(out.len())
    );
    assert_eq!(req.path, Some("/p?q=1"));
    let accepts: Vec<&[u8]> = req
        .headers
        .iter()
        .filter(|h| h.name == "accept")
        .map(|h| h.value)
        .collect();
    assert_eq!(accepts, [b"a", b"b"]);
}

#[test]
fn framing_follows_rfc_9112_section_6_3() {
    let h = head("HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n");
    assert_eq!((h.framing, h.keep_alive), (Framing::Length(13), true));
    let h = head("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!((h.framing, h.keep_alive), (Framing::Empty, true));
    // HEAD, 204 and 304 have no body whatever the headers say.
    let h = head_for(
        "HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n",
        &Method::HEAD,
    );
    assert_eq!((h.framing, h.keep_alive), (Framing::Empty, true));
    assert_eq!(h.headers["content-length"], "99", "kept for the client");
    assert_eq!(
        head("HTTP/1.1 204 No Content\r\n\r\n").framing,
        Framing::Empty
    );
    assert_eq!(
        head("HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n").framing,
        Framing::Empty
    );
    // Chunked; Transfer-Encoding wins over Content-Length and forbids reuse.
    let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n");
    assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, true));
    let h = head("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n");
    assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, false));
    assert!(!h.headers.contains_key("content-length"));
    // A final coding other than chunked: until close.
    let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n");
    assert_eq!((h.framing, h.keep_alive), (Framing::Eof, false));
    // Neither: until close.
    let h = head("HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!((h.framing, h.keep_alive), (Framing::Eof, false));
}

#[test]
fn keep_alive_rules() {
    assert!(!head("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n").keep_alive);
    assert!(
        !head("HTTP/1.1 200 OK\r\nConnection: foo, Close\r\ncontent-length: 1\r\n\r\n").keep_alive
    );
    assert!(!head("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n").keep_alive);
    let h = head("HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 1\r\n\r\n");
    assert!(h.keep_alive);
    assert_eq!(h.version, Version::HTTP_10);
    assert!(!head("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n").keep_alive);
}

#[test]
fn connection_options_are_consumed_other_tokens_kept() {
    let h =
        head("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nx-a: 1\r\ncontent-length: 1\r\n\r\n");
    assert!(h.keep_alive);
    assert_eq!(h.headers.len(), 2, "{:?}", h.headers);
    assert!(!h.headers.contains_key("connection"));
    let h = head("HTTP/1.1 200 OK\r\nconnection: close, ,\r\ncontent-length: 1\r\n\r\n");
    assert!(!h.keep_alive);
    assert!(!h.headers.contains_key("connection"));
    // A value naming a header stays, so hop-by-hop stripping removes that header too.
    let h = head(
        "HTTP/1.1 200 OK\r\nconnection: keep-alive\r\nConnection: x-hop, close\r\nx-hop: 1\r\ncontent-length: 1\r\n\r\n",
    );
    assert!(!h.keep_alive);
    let kept: Vec<_> = h.headers.get_all("connection").iter().collect();
    assert_eq!(kept, ["x-hop, close"]);
    assert_eq!(h.headers["x-hop"], "1");
    let h = head(
        "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n",
    );
    assert_eq!(h.headers["connection"], "Upgrade");
}

#[test]
fn content_length_values() {
    let h = head("HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n");
    assert_eq!(h.framing, Framing::Length(5));
    let h = head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n");
    assert_eq!(h.framing, Framing::Length(5));
    for bad in [
        "HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
    ] {
        assert_eq!(
            parse(bad.as_bytes(), &Method::GET).unwrap_err(),
            CodecError::ContentLength,
            "{bad}"
        );
    }
}

#[test]
fn partial_bad_and_oversized_heads() {
    let full = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n";
    for cut in 0..full.len() {
        assert!(
            parse(&full[..cut], &Method::GET).unwrap().is_none(),
            "cut at {cut}"
        );
    }
    assert!(matches!(
        parse(b"HTTX/1.1 200 OK\r\n\r\n", &Method::GET),
        Err(CodecError::Head(_))
    ));
    let mut many = String::from("HTTP/1.1 200 OK\r\n");
    for i in 0..=MAX_HEADERS {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(
        parse(many.as_bytes(), &Method::GET).unwrap_err(),
        CodecError::HeadTooLarge
    );
    let huge = format!("HTTP/1.1 200 OK\r\nx-big: {}", "a".repeat(MAX_HEAD + 1));
    assert_eq!(
        parse(huge.as_bytes(), &Method::GET).unwrap_err(),
        CodecError::HeadTooLarge
    );
}

/// Decodes a whole body from `buf`; `None` when it needs more bytes.
fn decode_all(
    framing: Framing,
    buf: &mut BytesMut,
) -> Result<(Vec<u8>, Option<HeaderMap>, bool), CodecError> {
    let mut d = BodyDecoder::new(framing);
    let mut body = Vec::new();
    loop {
        match d.decode(buf)? {
            Decoded::Data(b) => body.extend_from_slice(&b),
            Decoded::Trailers(t) => return Ok((body, Some(t), true)),
            Decoded::End => return Ok((body, None, true)),
            Decoded::NeedMore => return Ok((body, None, false)),
        }
    }
}

#[test]
fn chunked_bodies() {
    let mut buf =
        BytesMut::from(&b"5;ext=1\r\nhello\r\n6 ; a=\"b\"\r\n world\r\n0\r\n\r\nNEXT"[..]);
    let (body, trailers, done) = decode_all(Framing::Chunked, &mut buf).unwrap();
    assert_eq!(
        (&body[..], trailers, done),
        (&b"hello world"[..], None, true)
    );
    assert_eq!(&buf[..], b"NEXT");

    let mut buf = BytesMut::from(&b"A\r\n0123456789\r\n0\r\nx-sum: 1\r\nx-b: 2\r\n\r\n"[..]);
    let (body, trailers, done) = decode_all(Framing::Chunked, &mut buf).unwrap();
    assert!(done);
    assert_eq!(&body[..], b"0123456789");
    let t = trailers.unwrap();
    assert_eq!(
        (t["x-sum"].as_bytes(), t["x-b"].as_bytes()),
        (&b"1"[..], &b"2"[..])
    );
    assert!(buf.is_empty());

    for bad in [
        &b"g\r\n"[..],
        b"5\r\nhelloXX",
        b"5 x\r\nhello\r\n",
        b"10000000000000000\r\n",
    ] {
        let mut buf = BytesMut::from(bad);
        assert!(
            matches!(
                decode_all(Framing::Chunked, &mut buf),
                Err(CodecError::Chunk(_))
            ),
            "{bad:?}"
        );
    }
    let mut d = BodyDecoder::new(Framing::Chunked);
    assert!(d.eof().is_err(), "a truncated chunked body is an error");
    let mut d = BodyDecoder::new(Framing::Length(3));
    assert!(d.eof().is_err(), "a truncated sized body is an error");
    let mut d = BodyDecoder::new(Framing::Eof);
    assert!(d.eof().is_ok());
    assert!(d.is_done());
}

/// Found by the `h1_body` fuzz target: a chunk-size line or trailer section over the limit was
/// refused when it arrived over several reads but accepted when it came in one, so the same
/// upstream response failed or not depending on TCP segmentation.
#[test]
fn chunk_limits_do_not_depend_on_read_sizes() {
    let long_line = [
        &b"5;"[..],
        &[b'a'; MAX_CHUNK_LINE][..],
        b"\r\nhello\r\n0\r\n\r\n",
    ]
    .concat();
    let long_trailer = [&b"0\r\nx: "[..], &[b'a'; MAX_TRAILERS][..], b"\r\n\r\n"].concat();
    // The longest line accepted: with its CRLF, one byte over the limit.
    let limit_line = [
        &b"5;"[..],
        &[b'a'; MAX_CHUNK_LINE - 3][..],
        b"\r\nhello\r\n0\r\n\r\n",
    ]
    .concat();
    for (stream, refused) in [(long_line, true), (long_trailer, true), (limit_line, false)] {
        // All at once.
        let mut buf = BytesMut::from(&stream[..]);
        let whole = decode_all(Framing::Chunked, &mut buf);
        assert_eq!(whole.is_err(), refused, "{whole:?}");
        // In 1000-byte reads.
        let mut d = BodyDecoder::new(Framing::Chunked);
        let mut buf = BytesMut::new();
        let mut outcome = Ok(false);
        for piece in stream.chunks(1000) {
            buf.extend_from_slice(piece);
            outcome = loop {
                match d.decode(&mut buf) {
                    Ok(Decoded::NeedMore) => break Ok(false),
                    Ok(Decoded::End | Decoded::Trailers(_)) => break Ok(true),
                    Ok(Decoded::Data(_)) => {}
                    Err(e) => break Err(e),
                }
            };
            if outcome != Ok(false) {
                break;
            }
        }
        assert_eq!(outcome.is_err(), refused, "{outcome:?}");
    }
}

/// The trailer section is searched incrementally (each byte once); its end found across reads.
#[test]
fn trailers_trickling_in_one_byte_per_read() {
    let stream = b"0\r\nx-a: 1\r\nx-b: 2\r\n\r\n";
    let mut d = BodyDecoder::new(Framing::Chunked);
    let mut buf = BytesMut::new();
    let mut trailers = None;
    for (i, &b) in stream.iter().enumerate() {
        buf.extend_from_slice(&[b]);
        match d.decode(&mut buf).unwrap() {
            Decoded::NeedMore => assert!(i + 1 < stream.len()),
            Decoded::Trailers(t) => trailers = Some(t),
            other => panic!("{other:?} at byte {i}"),
        }
    }
    let t = trailers.expect("trailers after the last byte");
    assert!(t["x-a"] == "1" && t["x-b"] == "2", "{t:?}");
    assert!(buf.is_empty() && d.is_done());
}

#[test]
fn sized_body_stops_at_its_length() {
    let mut buf = BytesMut::from(&b"abcdefHTTP/1.1"[..]);
    let mut d = BodyDecoder::new(Framing::Length(6));
    assert_eq!(d.remaining(), Some(6));
    assert_eq!(
        d.decode(&mut buf).unwrap(),
        Decoded::Data(Bytes::from_static(b"abcdef"))
    );
    assert!(d.is_done());
    assert_eq!(d.decode(&mut buf).unwrap(), Decoded::End);
    assert_eq!(&buf[..], b"HTTP/1.1");
}

/// How the reference encoder frames a generated body.
#[derive(Debug, Clone)]
enum Model {
    Length,
    Chunked {
        ext: bool,
        trailers: Vec<(String, String)>,
    },
    Eof,
}

fn token() -> impl Strategy<Value = String> {
    "x-[a-z0-9-]{1,12}"
}

fn value() -> impl Strategy<Value = String> {
    // Field values: visible ASCII and inner spaces, no leading/trailing whitespace.
    "[!-~]([ !-~]{0,20}[!-~])?"
}

fn model() -> impl Strategy<Value = Model> {
    prop_oneof![
        Just(Model::Length),
        (
            any::<bool>(),
            prop::collection::vec((token(), value()), 0..3)
        )
            .prop_map(|(ext, trailers)| Model::Chunked { ext, trailers }),
        Just(Model::Eof),
    ]
}

/// The reference encoder: writes a response the obvious way.
fn encode(status: u16, headers: &[(String, String)], chunks: &[Vec<u8>], model: &Model) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} X\r\n").into_bytes();
    for (n, v) in headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    let len: usize = chunks.iter().map(Vec::len).sum();
    match model {
        Model::Length => out.extend_from_slice(format!("content-length: {len}\r\n").as_bytes()),
        Model::Chunked { .. } => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Model::Eof => {}
    }
    out.extend_from_slice(b"\r\n");
    match model {
        Model::Length | Model::Eof => {
            for c in chunks {
                out.extend_from_slice(c);
            }
        }
        Model::Chunked { ext, trailers } => {
            for c in chunks.iter().filter(|c| !c.is_empty()) {
                let ext = if *ext { ";name=\"v\"" } else { "" };
                out.extend_from_slice(format!("{:x}{ext}\r\n", c.len()).as_bytes());
                out.extend_from_slice(c);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n");
            for (n, v) in trailers {
                out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

const NEXT: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the split, the head, body, trailers and message boundary come back exactly.
    #[test]
    fn decodes_what_the_reference_encodes(
        status in prop_oneof![200u16..204, 205u16..304, 305u16..600],
        headers in prop::collection::vec((token(), value()), 0..6),
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..5),
        model in model(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut wire = encode(status, &headers, &chunks, &model);
        let eof = matches!(model, Model::Eof);
        if !eof {
            wire.extend_from_slice(NEXT);
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.push(wire.len());
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut at = 0;
        for p in points {
            pieces.push(&wire[at..p]);
            at = p;
        }
        let mut pieces = pieces.into_iter();

        let mut buf = BytesMut::new();
        let parsed = loop {
            if let Some((h, _)) = parse_response_head(&mut buf, &Method::GET).unwrap() {
                break h;
            }
            buf.extend_from_slice(pieces.next().expect("head completes"));
        };
        prop_assert_eq!(parsed.status.as_u16(), status);
        for (n, v) in &headers {
            prop_assert!(parsed.headers.get_all(n.as_str()).iter().any(|x| x == v.as_str()));
        }
        prop_assert_eq!(parsed.keep_alive, !eof);

        let mut decoder = BodyDecoder::new(parsed.framing);
        let mut body = Vec::new();
        let mut trailers = None;
        loop {
            match decoder.decode(&mut buf).unwrap() {
                Decoded::Data(b) => {
                    prop_assert!(!b.is_empty());
                    body.extend_from_slice(&b);
                }
                Decoded::Trailers(t) => { trailers = Some(t); break; }
                Decoded::End => break,
                Decoded::NeedMore => match pieces.next() {
                    Some(p) => buf.extend_from_slice(p),
                    None => {
                        prop_assert!(eof, "only an until-close body runs out of input");
                        decoder.eof().unwrap();
                        break;
                    }
                },
            }
        }
        prop_assert!(decoder.is_done());
        prop_assert_eq!(body, chunks.concat());
        if let Model::Chunked { trailers: want, .. } = &model {
            let got = trailers.unwrap_or_default();
            prop_assert_eq!(got.len(), want.len());
            for (n, v) in want {
                prop_assert!(got.get_all(n.as_str()).iter().any(|x| x == v.as_str()));
            }
        }
        // The next message is left exactly where it starts.
        let mut rest = buf.to_vec();
        for p in pieces {
            rest.extend_from_slice(p);
        }
        prop_assert_eq!(&rest[..], if eof { &b""[..] } else { NEXT });
    }

    /// Content-Length parsing agrees with a plain reference: a non-empty list of identical
    /// decimal numbers that fit in a u64.
    #[test]
    fn content_length_matches_reference(v in "[0-9, +-]{0,24}") {
        let reference = {
            let parts: Vec<&str> = v.split(',').map(str::trim).collect();
            let nums: Option<Vec<u64>> = parts
                .iter()
                .map(|p| {
                    if !p.is_empty() && p.len() <= 19 && p.bytes().all(|b| b.is_ascii_digit()) {
                        p.parse::<u64>().ok()
                    } else {
                        None
                    }
                })
                .collect();
            nums.filter(|n| n.windows(2).all(|w| w[0] == w[1])).map(|n| n[0])
        };
        prop_assert_eq!(parse_content_length(v.as_bytes()).ok(), reference);
    }

    /// Arbitrary bytes never panic, whatever the framing.
    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&bytes, &Method::GET);
        for framing in [Framing::Chunked, Framing::Length(100), Framing::Eof] {
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = decode_all(framing, &mut buf);
        }
    }
}

#[test]
fn head_may_end_sees_the_blank_line_across_the_scan_boundary() {
    let head = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
    // Nothing ends before the last line break.
    assert!(!head_may_end(&head[..head.len() - 2], 0));
    // Scanned up to any point before the last byte arrived: the end is still found, even when
    // `from` splits "\n\r\n".
    for from in 0..head.len() {
        assert!(head_may_end(head, from), "from {from}");
    }
    assert!(head_may_end(b"HTTP/1.0 200 OK\n\n", 16));
    assert!(!head_may_end(b"HTTP/1.1 200 OK\r\nx: y\r\n", 0));
}

proptest! {
    /// The shortcut never skips a complete head: for any head (CRLF or bare-LF line ends) and
    /// any scan point before its last byte, the end is seen; a head cut before its final line
    /// break has no end to see.
    #[test]
    fn head_may_end_never_hides_a_complete_head(
        headers in proptest::collection::vec(("[a-z-]{1,12}", "[ -~]{0,20}"), 0..6),
        bare_lf in any::<bool>(),
    ) {
        let eol = if bare_lf { "\n" } else { "\r\n" };
        let mut head = format!("HTTP/1.1 200 OK{eol}");
        for (name, value) in &headers {
            head.push_str(&format!("{name}: {value}{eol}"));
        }
        head.push_str(eol);
        let head = head.as_bytes();
        prop_assert!(matches!(parse(head, &Method::GET), Ok(Some((_, n))) if n == head.len()));
        for from in 0..head.len() {
            prop_assert!(head_may_end(head, from), "from {}", from);
        }
        prop_assert!(!head_may_end(&head[..head.len() - eol.len()], 0));
    }
}
