//! Detection of HTTP/1.1 requests that carry both `Content-Length` and `Transfer-Encoding`.
//!
//! hyper handles such a request safely (RFC 9112 §6.3: it drops `Content-Length`, reads the body
//! as chunked and closes the connection afterwards), but it does not tell the service, and it
//! removes the `Content-Length` header. Fairway refuses these requests with 400 instead, the
//! way HAProxy and nginx do. [`FramingScanner`] follows the request framing of the byte
//! stream read from the client (heads, `Content-Length` bodies, chunked bodies) and reports a
//! head with both headers; the request handler then answers 400 and closes.
//!
//! It is a pure state machine over byte slices (no I/O). Anything it does not understand —
//! the h2 preface, a head httparse rejects, an upgrade or `CONNECT` — makes it step aside for
//! the rest of the connection; hyper's own parser still applies.

/// Longest request head the scanner buffers when a head spans several reads.
const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex size; `digits` seen so far.
    Size { size: u64, digits: u8 },
    /// After `;` (extensions) up to the line end.
    Ext { size: u64 },
    /// Chunk data still to skip.
    Data(u64),
    /// The CRLF after chunk data.
    DataEnd,
    /// Trailer section; `empty` = nothing but `\r` on the current line so far.
    Trailer { empty: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body(u64),
    Chunked(Chunk),
    /// No longer following this connection.
    Aside,
}

/// Follows HTTP/1.1 request framing and flags `Content-Length` + `Transfer-Encoding`.
#[derive(Debug)]
pub(crate) struct FramingScanner {
    state: State,
    /// Bytes of a head that spans reads.
    partial: Vec<u8>,
    flagged: bool,
}

impl Default for FramingScanner {
    fn default() -> Self {
        Self::new()
    }
}

/// What one parsed head means for the framing that follows it.
enum HeadVerdict {
    Next(State),
    Smuggling,
    Aside,
}

fn head_end(buf: &[u8]) -> Option<usize> {
    // httparse and hyper accept bare LF line endings, so look for an empty line either way.
    let mut i = 0;
    while let Some(pos) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + pos;
        let next = nl + 1;
        if buf.get(next) == Some(&b'\n') {
            return Some(next + 1);
        }
        if buf.get(next) == Some(&b'\r') && buf.get(next + 1) == Some(&b'\n') {
            return Some(next + 2);
        }
        i = next;
    }
    None
}

fn judge_head(head: &[u8]) -> HeadVerdict {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return HeadVerdict::Aside,
    }
    if req.method == Some("CONNECT") {
        return HeadVerdict::Aside;
    }
    let mut te = false;
    let mut cl: Option<u64> = None;
    let mut upgrade = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te = true;
        } else if h.name.eq_ignore_ascii_case("content-length") {
            cl = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .or(Some(u64::MAX));
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    if te && cl.is_some() {
        return HeadVerdict::Smuggling;
    }
    if upgrade {
        return HeadVerdict::Aside;
    }
    match (te, cl) {
        (true, _) => HeadVerdict::Next(State::Chunked(Chunk::Size { size: 0, digits: 0 })),
        // hyper rejects what does not parse; stop following rather than guess.
        (false, Some(u64::MAX)) => HeadVerdict::Aside,
        (false, Some(0)) | (false, None) => HeadVerdict::Next(State::Head),
        (false, Some(n)) => HeadVerdict::Next(State::Body(n)),
    }
}

impl FramingScanner {
    /// A scanner at the start of a connection.
    pub(crate) fn new() -> Self {
        Self {
            state: State::Head,
            partial: Vec::new(),
            flagged: false,
        }
    }

    /// Whether a request with both `Content-Length` and `Transfer-Encoding` was seen.
    pub(crate) fn flagged(&self) -> bool {
        self.flagged
    }

    /// Whether the scanner still follows the connection.
    pub(crate) fn active(&self) -> bool {
        self.state != State::Aside
    }

    /// Feeds bytes read from the client, in order.
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Aside => return,
                State::Head => {
                    let consumed = if self.partial.is_empty() {
                        match head_end(data) {
                            Some(end) => {
                                self.finish_head(&data[..end]);
                                end
                            }
                            None => {
                                self.buffer(data);
                                data.len()
                            }
                        }
                    } else {
                        let old = self.partial.len();
                        self.buffer(data);
                        if self.state == State::Aside {
                            return;
                        }
                        match head_end(&self.partial) {
                            Some(end) => {
                                let head = std::mem::take(&mut self.partial);
                                self.finish_head(&head[..end]);
                                end - old
                            }
                            None => data.len(),
                        }
                    };
                    data = &data[consumed..];
                }
                State::Body(n) => {
                    let take = (data.len() as u64).min(n);
                    self.state = if take == n {
                        State::Head
                    } else {
                        State::Body(n - take)
                    };
                    data = &data[take as usize..];
                }
                State::Chunked(Chunk::Data(n)) => {
                    let take = (data.len() as u64).min(n);
                    self.state = State::Chunked(if take == n {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(n - take)
                    });
                    data = &data[take as usize..];
                }
                State::Chunked(c) => {
                    self.state = step_chunk(c, data[0]);
                    data = &data[1..];
                }
            }
        }
    }

    fn buffer(&mut self, data: &[u8]) {
        if self.partial.len() + data.len() > MAX_HEAD {
            // hyper answers 431 long before this.
            self.state = State::Aside;
            self.partial = Vec::new();
        } else {
            self.partial.extend_from_slice(data);
        }
    }

    fn finish_head(&mut self, head: &[u8]) {
        match judge_head(head) {
            HeadVerdict::Next(s) => self.state = s,
            HeadVerdict::Smuggling => {
                self.flagged = true;
                self.state = State::Aside;
            }
            HeadVerdict::Aside => self.state = State::Aside,
        }
    }
}

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

fn step_chunk(c: Chunk, b: u8) -> State {
    let chunked = State::Chunked;
    match c {
        Chunk::Size { size, digits } => match (b, hex(b)) {
            (_, Some(d)) if digits < 16 => chunked(Chunk::Size {
                size: size * 16 + d,
                digits: digits + 1,
            }),
            (b';', _) | (b' ', _) | (b'\t', _) if digits > 0 => chunked(Chunk::Ext { size }),
            (b'\r', _) if digits > 0 => chunked(Chunk::Ext { size }),
            (b'\n', _) if digits > 0 => end_of_size_line(size),
            _ => State::Aside,
        },
        Chunk::Ext { size } => {
            if b == b'\n' {
                end_of_size_line(size)
            } else {
                chunked(Chunk::Ext { size })
            }
        }
        Chunk::DataEnd => match b {
            b'\r' => chunked(Chunk::DataEnd),
            b'\n' => chunked(Chunk::Size { size: 0, digits: 0 }),
            _ => State::Aside,
        },
        Chunk::Trailer { empty } => match b {
            b'\n' if empty => State::Head,
            b'\n' => chunked(Chunk::Trailer { empty: true }),
            b'\r' => chunked(Chunk::Trailer { empty }),
            _ => chunked(Chunk::Trailer { empty: false }),
        },
        Chunk::Data(_) => unreachable!("data is skipped in bulk"),
    }
}

fn end_of_size_line(size: u64) -> State {
    if size == 0 {
        State::Chunked(Chunk::Trailer { empty: true })
    } else {
        State::Chunked(Chunk::Data(size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scan(parts: &[&[u8]]) -> FramingScanner {
        let mut s = FramingScanner::new();
        for p in parts {
            s.feed(p);
        }
        s
    }

    #[test]
    fn flags_cl_te_in_any_order_and_position() {
        let s = scan(&[b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"]);
        assert!(s.flagged());
        let s =
            scan(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"]);
        assert!(s.flagged());
        // Second request on a keep-alive connection, after a CL body and a chunked body.
        let s = scan(&[
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ]);
        assert!(s.flagged());
    }

    #[test]
    fn clean_streams_are_not_flagged() {
        let s = scan(&[
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ]);
        assert!(!s.flagged());
        assert!(s.active());
        // A body that looks like a bad head is skipped, not parsed.
        let body = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut s = FramingScanner::new();
        s.feed(format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
        s.feed(body);
        assert!(!s.flagged());
        assert!(s.active());
    }

    #[test]
    fn steps_aside_for_h2_and_upgrades() {
        let s = scan(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]);
        assert!(!s.active());
        let s = scan(&[b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"]);
        assert!(!s.active());
    }

    proptest! {
        /// Splitting the stream anywhere gives the same verdict as feeding it whole.
        #[test]
        fn split_points_do_not_matter(cut1 in 0usize..200, cut2 in 0usize..200, smuggle: bool) {
            let stream: Vec<u8> = [
                &b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"[..],
                b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
                if smuggle {
                    b"POST /c HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                } else {
                    b"POST /c HTTP/1.1\r\nContent-Length: 3\r\nX-Transfer-Encoding: chunked\r\n\r\n"
                },
            ].concat();
            let (a, b) = (cut1.min(stream.len()), cut2.min(stream.len()));
            let (lo, hi) = (a.min(b), a.max(b));
            let s = scan(&[&stream[..lo], &stream[lo..hi], &stream[hi..]]);
            prop_assert_eq!(s.flagged(), smuggle);
        }
    }
}
