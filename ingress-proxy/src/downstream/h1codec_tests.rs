//! The server codec against references: request heads against a plain reference encoder, and
//! response framing against the proxy's own client codec (`upstream::h1codec`, itself
//! proptested against a reference encoder), which must read back exactly what was written.

use bytes::BytesMut;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body::SizeHint;
use proptest::prelude::*;

use super::h1codec::*;
use crate::upstream::h1codec::{BodyDecoder, Decoded, Framing, parse_response_head};

const LIMITS: HeadLimits = HeadLimits {
    max_headers: 100,
    max_bytes: 32 * 1024,
};

/// A request the inline path must serve, as the reference describes it.
#[derive(Debug, Clone)]
struct Case {
    method: &'static str,
    target: String,
    /// (name as sent, value)
    headers: Vec<(String, String)>,
    close: bool,
    te_trailers: bool,
    zero_length: bool,
}

impl Case {
    /// The reference encoder: the request head as a client writes it.
    fn encode(&self) -> Vec<u8> {
        let mut s = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        for (n, v) in self.all_headers() {
            s.push_str(&format!("{n}: {v}\r\n"));
        }
        s.push_str("\r\n");
        s.into_bytes()
    }

    fn all_headers(&self) -> Vec<(String, String)> {
        let mut all = self.headers.clone();
        if self.close {
            all.push(("Connection".into(), "close".into()));
        }
        if self.te_trailers {
            all.push(("TE".into(), "trailers".into()));
        }
        if self.zero_length {
            all.push(("Content-Length".into(), "0".into()));
        }
        all
    }
}

fn header_name() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9-]{0,15}".prop_filter(
        "framing and connection fields are cases of their own",
        |n| {
            let l = n.to_ascii_lowercase();
            !matches!(
                l.as_str(),
                "content-length" | "transfer-encoding" | "connection" | "upgrade" | "expect" | "te"
            )
        },
    )
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::sample::select(vec!["GET", "HEAD", "DELETE", "OPTIONS", "PURGE"]),
        "/[a-z0-9/._~%-]{0,30}(\\?[a-z0-9=&]{0,20})?",
        prop::collection::vec((header_name(), "[!-~]([ -~]{0,30}[!-~])?"), 0..12),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(method, target, headers, close, te_trailers, zero_length)| Case {
                method,
                target,
                headers,
                close,
                te_trailers,
                zero_length,
            },
        )
}

fn parse(bytes: &[u8]) -> (Parsed, BytesMut) {
    let mut buf = BytesMut::from(bytes);
    let parsed = parse_request_head(&mut buf, LIMITS);
    (parsed, buf)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn serves_what_the_reference_encodes(case in case(), next in "[ -~]{0,20}") {
        let head = case.encode();
        // Every proper prefix is incomplete and leaves the buffer alone.
        for cut in [0, 1, head.len() / 2, head.len() - 1] {
            if cut == 0 {
                continue;
            }
            let (parsed, buf) = parse(&head[..cut]);
            prop_assert!(matches!(parsed, Parsed::Incomplete), "prefix {cut}: {parsed:?}");
            prop_assert_eq!(&buf[..], &head[..cut]);
        }
        let mut bytes = head.clone();
        bytes.extend_from_slice(next.as_bytes());
        let (parsed, rest) = parse(&bytes);
        let Parsed::Request(got) = parsed else {
            return Err(TestCaseError::fail(format!("not served: {parsed:?}")));
        };
        // Exactly the head was taken; what follows (a pipelined request) stays.
        prop_assert_eq!(&rest[..], next.as_bytes());
        prop_assert_eq!(got.request.method().as_str(), case.method);
        prop_assert_eq!(got.request.uri().to_string(), case.target.clone());
        prop_assert_eq!(got.close, case.close);
        prop_assert_eq!(got.trailers, case.te_trailers);
        prop_assert_eq!(got.head, case.method == "HEAD");
        let want: Vec<(String, String)> = case
            .all_headers()
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .collect();
        let have: Vec<(String, String)> = got
            .request
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect();
        // The map groups repeated names; compare as multisets in per-name order.
        let mut want_sorted = want.clone();
        want_sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut have_sorted = have.clone();
        have_sorted.sort_by(|a, b| a.0.cmp(&b.0));
        prop_assert_eq!(have_sorted, want_sorted);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_served_heads_are_consistent(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let (parsed, rest) = parse(&bytes);
        match parsed {
            Parsed::Incomplete | Parsed::Handoff => prop_assert_eq!(&rest[..], &bytes[..]),
            Parsed::Request(got) => {
                prop_assert!(rest.len() < bytes.len());
                prop_assert!(got.request.uri().path().starts_with('/'));
                prop_assert_ne!(got.request.method(), Method::CONNECT);
                for name in ["transfer-encoding", "upgrade", "expect"] {
                    prop_assert!(!got.request.headers().contains_key(name));
                }
                for v in got.request.headers().get_all(CONTENT_LENGTH) {
                    prop_assert_eq!(v.as_bytes(), b"0");
                }
            }
        }
    }
}

#[test]
fn everything_else_is_handed_to_hyper_untouched() {
    let many_headers: String = (0..101).map(|i| format!("x-h{i}: v\r\n")).collect();
    let huge = format!("GET / HTTP/1.1\r\nx-big: {}\r\n\r\n", "a".repeat(33 * 1024));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a body",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
        ),
        (
            "chunked",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "CL and TE",
            b"GET / HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
        ),
        (
            "two zero lengths",
            b"GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ),
        (
            "zero length list",
            b"GET / HTTP/1.1\r\nContent-Length: 0, 0\r\n\r\n".to_vec(),
        ),
        (
            "websocket",
            b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n".to_vec(),
        ),
        (
            "connection upgrade",
            b"GET / HTTP/1.1\r\nConnection: keep-alive, upgrade\r\n\r\n".to_vec(),
        ),
        (
            "expect",
            b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n".to_vec(),
        ),
        ("HTTP/1.0", b"GET / HTTP/1.0\r\n\r\n".to_vec()),
        ("h2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
        (
            "absolute form",
            b"GET http://a.test/ HTTP/1.1\r\n\r\n".to_vec(),
        ),
        ("asterisk", b"OPTIONS * HTTP/1.1\r\n\r\n".to_vec()),
        ("CONNECT", b"CONNECT a.test:443 HTTP/1.1\r\n\r\n".to_vec()),
        (
            "space before colon",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n".to_vec(),
        ),
        ("bad version", b"GET / HTTP/1.2\r\n\r\n".to_vec()),
        ("TLS record", vec![0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00]),
        (
            "too many headers",
            format!("GET / HTTP/1.1\r\n{many_headers}\r\n").into_bytes(),
        ),
        ("too large", huge.into_bytes()),
        (
            "too large and incomplete",
            format!("GET /{} HTTP/1.1\r\n", "a".repeat(33 * 1024)).into_bytes(),
        ),
    ];
    for (what, bytes) in cases {
        let (parsed, rest) = parse(&bytes);
        assert!(matches!(parsed, Parsed::Handoff), "{what}: {parsed:?}");
        assert_eq!(
            &rest[..],
            &bytes[..],
            "{what}: the buffer is replayed to hyper whole"
        );
    }
}

#[test]
fn lower_limits_apply() {
    let limits = HeadLimits {
        max_headers: 2,
        max_bytes: 64,
    };
    let mut three = BytesMut::from(&b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n"[..]);
    assert!(matches!(
        parse_request_head(&mut three, limits),
        Parsed::Handoff
    ));
    let mut two = BytesMut::from(&b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\n\r\n"[..]);
    assert!(matches!(
        parse_request_head(&mut two, limits),
        Parsed::Request(_)
    ));
}

/// A response body as the inline loop writes it for `plan`, in `pieces` data frames.
fn encode_body(
    plan: &ResponsePlan,
    body: &[u8],
    pieces: usize,
    trailers: Option<&HeaderMap>,
) -> Vec<u8> {
    let mut out = Vec::new();
    match plan.framing {
        BodyFraming::None => {}
        BodyFraming::Length(_) => out.extend_from_slice(body),
        BodyFraming::Chunked => {
            let size = body.len().div_ceil(pieces.max(1)).max(1);
            for chunk in body.chunks(size) {
                encode_chunk_size(chunk.len(), &mut out);
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            encode_last_chunk(trailers, &mut out);
        }
    }
    out
}

fn status() -> impl Strategy<Value = StatusCode> {
    prop_oneof![
        Just(StatusCode::OK),
        Just(StatusCode::NO_CONTENT),
        Just(StatusCode::NOT_MODIFIED),
        Just(StatusCode::NOT_FOUND),
        Just(StatusCode::CONTINUE),
        (200u16..600).prop_map(|c| StatusCode::from_u16(c).unwrap()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_client_codec_reads_back_what_the_server_codec_writes(
        status in status(),
        head_request in any::<bool>(),
        fields in prop::collection::vec((header_name(), "[!-~]{1,20}"), 0..8),
        body in prop::collection::vec(any::<u8>(), 0..200),
        exact in any::<bool>(),
        declared in prop::option::of(0u64..300),
        close in any::<bool>(),
        pieces in 1usize..5,
        trailer in prop::option::of("[a-z]{1,10}"),
    ) {
        prop_assume!(status != StatusCode::SWITCHING_PROTOCOLS);
        let mut headers = HeaderMap::new();
        for (n, v) in &fields {
            headers.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        if let Some(d) = declared {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(d));
        }
        let hint = if exact { SizeHint::with_exact(body.len() as u64) } else { SizeHint::new() };
        let plan = plan_response(status, head_request, &headers, &hint);
        let mut wire = Vec::new();
        encode_response_head(status, &headers, &plan, close, b"Sun, 06 Nov 1994 08:49:37 GMT", &mut wire);
        let trailers = trailer.map(|t| {
            let mut m = HeaderMap::new();
            m.insert("x-trailer", HeaderValue::from_str(&t).unwrap());
            m
        });
        wire.extend(encode_body(&plan, &body, pieces, trailers.as_ref()));
        let method = if head_request { Method::HEAD } else { Method::GET };
        let (parsed, len) = parse_response_head(&mut BytesMut::from(&wire[..]), &method)
            .expect("the client codec accepts the head")
            .expect("the head is complete");
        prop_assert_eq!(parsed.status, status);
        prop_assert_eq!(parsed.keep_alive, !close && parsed.framing != Framing::Eof);
        for (n, v) in &headers {
            if n == CONTENT_LENGTH {
                continue;
            }
            prop_assert!(parsed.headers.get_all(n).iter().any(|x| x == v), "{n} lost");
        }
        prop_assert!(parsed.headers.contains_key("date"));
        let mut rest = BytesMut::from(&wire[len..]);
        let mut decoder = BodyDecoder::new(parsed.framing);
        let mut got = Vec::new();
        let mut got_trailers = None;
        loop {
            match decoder.decode(&mut rest).expect("the body decodes") {
                Decoded::Data(d) => got.extend_from_slice(&d),
                Decoded::Trailers(t) => {
                    got_trailers = Some(t);
                    break;
                }
                Decoded::End => break,
                Decoded::NeedMore => {
                    // Only an until-close body may need more: it never does here.
                    prop_assert!(false, "framing {:?} wants more than was written", parsed.framing);
                }
            }
            if decoder.is_done() {
                break;
            }
        }
        prop_assert!(rest.is_empty(), "bytes left after the message: {:?}", rest);
        match plan.framing {
            BodyFraming::None => prop_assert!(got.is_empty()),
            _ => prop_assert_eq!(&got, &body),
        }
        if plan.framing == BodyFraming::Chunked {
            prop_assert_eq!(got_trailers, trailers);
        }
        // A body of known size is announced, and only once.
        if let BodyFraming::Length(n) = plan.framing {
            let cls: Vec<_> = parsed.headers.get_all(CONTENT_LENGTH).iter().collect();
            prop_assert_eq!(cls.len(), 1);
            prop_assert_eq!(cls[0].to_str().unwrap(), n.to_string());
        }
    }
}

#[test]
fn plans() {
    let mut cl = HeaderMap::new();
    cl.insert(CONTENT_LENGTH, HeaderValue::from_static("5"));
    let exact5 = SizeHint::with_exact(5);
    let unknown = SizeHint::new();
    // HEAD keeps the GET's length and sends nothing.
    let p = plan_response(StatusCode::OK, true, &cl, &SizeHint::with_exact(0));
    assert_eq!(
        (p.framing, p.keep_content_length),
        (BodyFraming::None, true)
    );
    // 304 too; 204 and 1xx never carry one.
    let p = plan_response(StatusCode::NOT_MODIFIED, false, &cl, &exact5);
    assert_eq!(
        (p.framing, p.keep_content_length),
        (BodyFraming::None, true)
    );
    let p = plan_response(StatusCode::NO_CONTENT, false, &cl, &exact5);
    assert_eq!(
        (p.framing, p.keep_content_length),
        (BodyFraming::None, false)
    );
    // Declared and known agree: written as is.
    let p = plan_response(StatusCode::OK, false, &cl, &exact5);
    assert_eq!(
        p,
        ResponsePlan {
            framing: BodyFraming::Length(5),
            keep_content_length: true,
            add_content_length: None
        }
    );
    // Known but undeclared, or declared wrongly: the body's size wins.
    let p = plan_response(StatusCode::OK, false, &HeaderMap::new(), &exact5);
    assert_eq!(p.add_content_length, Some(5));
    let p = plan_response(StatusCode::OK, false, &cl, &SizeHint::with_exact(7));
    assert_eq!(
        (p.keep_content_length, p.add_content_length),
        (false, Some(7))
    );
    // Unknown: chunked, and a stale Content-Length is not written.
    let p = plan_response(StatusCode::OK, false, &cl, &unknown);
    assert_eq!(
        (p.framing, p.keep_content_length),
        (BodyFraming::Chunked, false)
    );
}

#[test]
fn head_bytes() {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    headers.insert("connection", HeaderValue::from_static("close"));
    headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
    let plan = plan_response(
        StatusCode::NOT_FOUND,
        false,
        &headers,
        &SizeHint::with_exact(3),
    );
    let mut out = Vec::new();
    encode_response_head(
        StatusCode::NOT_FOUND,
        &headers,
        &plan,
        true,
        b"Sun, 06 Nov 1994 08:49:37 GMT",
        &mut out,
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n\
         connection: close\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n"
    );
    let mut out = Vec::new();
    encode_chunk_size(0x1f3a, &mut out);
    assert_eq!(out, b"1f3a\r\n");
    assert!(response_closes(&headers));
    assert!(!response_closes(&HeaderMap::new()));
}
