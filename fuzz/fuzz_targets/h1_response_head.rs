//! The proxy's upstream HTTP/1.1 response-head parser (`h1codec::parse_response_head`, via the
//! `fuzzing` feature's `__fuzz` hooks). The first byte picks the request method and a split
//! point; the rest is what the upstream sent. Properties: no panic; a complete head reports a
//! length within the buffer; re-parsing exactly those bytes gives the same head; any shorter
//! prefix is "incomplete" (so a head split across reads parses the same); and the framing
//! invariants the connection pool relies on hold.
#![no_main]

use http::header::CONTENT_LENGTH;
use http::{Method, StatusCode};
use ingress_proxy::__fuzz::{Framing, MAX_HEAD, ResponseHead, parse_response_head};
use libfuzzer_sys::fuzz_target;

fn summary(h: &ResponseHead) -> impl PartialEq + std::fmt::Debug + use<> {
    (
        h.status,
        h.version,
        h.headers.clone(),
        h.framing,
        h.keep_alive,
        h.len,
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, buf)) = data.split_first() else {
        return;
    };
    let method = if sel & 1 == 1 {
        Method::HEAD
    } else {
        Method::GET
    };
    let head = match parse_response_head(buf, &method) {
        Ok(Some(head)) => head,
        Ok(None) => {
            assert!(buf.len() <= MAX_HEAD, "an over-long head is not refused");
            return;
        }
        Err(_) => return,
    };
    assert!(
        head.len > 0 && head.len <= buf.len(),
        "head length {} of {}",
        head.len,
        buf.len()
    );

    let exact = parse_response_head(&buf[..head.len], &method)
        .expect("the head's own bytes parse")
        .expect("the head's own bytes are complete");
    assert_eq!(summary(&exact), summary(&head));

    for cut in [usize::from(sel >> 1) % head.len, head.len - 1] {
        match parse_response_head(&buf[..cut], &method) {
            Ok(None) => {}
            Ok(Some(h)) => panic!("prefix of {cut} bytes is already a head of {}", h.len),
            Err(e) => panic!("prefix of {cut} bytes is an error ({e}) but the whole parses"),
        }
    }

    if head.keep_alive {
        assert_ne!(
            head.framing,
            Framing::Eof,
            "until-close body on a reusable connection"
        );
        assert_ne!(head.status, StatusCode::SWITCHING_PROTOCOLS);
    }
    if method == Method::HEAD || head.status.is_informational() {
        assert_eq!(head.framing, Framing::Empty);
    }
    match head.framing {
        Framing::Length(n) => {
            assert!(n > 0);
            let cl = head
                .headers
                .get(CONTENT_LENGTH)
                .expect("a length comes from Content-Length");
            assert!(
                cl.to_str()
                    .is_ok_and(|v| v.split(',').all(|p| p.trim().parse() == Ok(n)))
            );
        }
        Framing::Chunked => {
            assert!(
                !head.headers.contains_key(CONTENT_LENGTH),
                "chunked with Content-Length kept"
            );
        }
        Framing::Empty | Framing::Eof => {}
    }
});
