//! Request and response header rewriting: `X-Forwarded-*`, `X-Real-IP`, hop-by-hop headers.
//!
//! Values that depend only on the connection (client IP, scheme, port) are rendered once per
//! connection into a [`ConnFacts`]; per request the header values are cheap `Bytes` clones.
//! For a client that is not a trusted proxy, and a request the upstream HTTP/1.1 path sends
//! itself, the fields are not put in the request's map at all: [`Forwarding::encode`] writes
//! the per-connection lines, rendered once, straight into the request head.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Per-connection facts, rendered once when the connection is accepted.
#[derive(Debug, Clone)]
pub(crate) struct ConnFacts {
    /// The peer's IP as a header value.
    pub(crate) client_ip: HeaderValue,
    /// Whether the peer is a trusted proxy whose forwarding headers we keep.
    pub(crate) trusted: bool,
    /// `http` or `https`.
    pub(crate) proto: HeaderValue,
    /// The entrypoint's port.
    pub(crate) port: HeaderValue,
    /// `X-Forwarded-For`, `-Proto` and `-Port` and `X-Real-IP` as header lines, for a peer
    /// that is not a trusted proxy (whose own values are never kept); empty for a trusted one.
    wire: Box<[u8]>,
}

impl ConnFacts {
    pub(crate) fn new(peer: SocketAddr, local_port: u16, tls: bool, trusted: &[IpNet]) -> Self {
        let ip = canonical_ip(peer.ip());
        let client_ip = render_ip(ip);
        let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
        let port = HeaderValue::from(local_port);
        let trusted = trusted.iter().any(|net| net.contains(&ip));
        let mut wire = Vec::new();
        // A trusted proxy's requests always take the map path (their values are merged).
        if !trusted {
            for (name, value) in [
                (&X_FORWARDED_FOR, &client_ip),
                (&X_FORWARDED_PROTO, &proto),
                (&X_FORWARDED_PORT, &port),
                (&X_REAL_IP, &client_ip),
            ] {
                push_field(&mut wire, name, value);
            }
        }
        Self {
            trusted,
            client_ip,
            proto,
            port,
            wire: wire.into_boxed_slice(),
        }
    }
}

fn push_field(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The forwarding fields one request still needs, from a peer that is not a trusted proxy.
/// Made by [`Forwarding::prepare`], which has removed whatever the client sent under those
/// names; then either written straight into an HTTP/1.1 head ([`Forwarding::encode`])
/// or, on every other path, set in the request's map ([`Forwarding::apply`]). Either way
/// the upstream sees the same fields as from [`set_forwarded`].
#[derive(Debug)]
pub(crate) struct Forwarding<'a> {
    facts: &'a ConnFacts,
    host: Option<HeaderValue>,
}

impl<'a> Forwarding<'a> {
    /// Prepares `headers` for the upstream. From a trusted proxy the fields are merged into
    /// `headers` now ([`set_forwarded`]) and `None` is returned; otherwise the client's own
    /// forwarding fields are removed (one pass over the names present, usually finding none)
    /// and the fields still to add are returned.
    pub(crate) fn prepare(
        headers: &mut HeaderMap,
        facts: &'a ConnFacts,
        host: Option<HeaderValue>,
    ) -> Option<Self> {
        if facts.trusted {
            set_forwarded(headers, facts, host);
            return None;
        }
        if headers.keys().any(is_forwarding) {
            for name in [
                &X_FORWARDED_FOR,
                &X_FORWARDED_PROTO,
                &X_FORWARDED_HOST,
                &X_FORWARDED_PORT,
                &X_REAL_IP,
            ] {
                headers.remove(name);
            }
        }
        Some(Self { facts, host })
    }

    /// Appends the fields as header lines (before the head's blank line).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.facts.wire);
        if let Some(host) = &self.host {
            push_field(out, &X_FORWARDED_HOST, host);
        }
    }

    /// Sets the fields in `headers`.
    pub(crate) fn apply(self, headers: &mut HeaderMap) {
        set_forwarded(headers, self.facts, self.host);
    }
}

fn is_forwarding(name: &HeaderName) -> bool {
    name == X_FORWARDED_FOR
        || name == X_FORWARDED_PROTO
        || name == X_FORWARDED_HOST
        || name == X_FORWARDED_PORT
        || name == X_REAL_IP
}

/// `::ffff:a.b.c.d` → `a.b.c.d`, so dual-stack listeners log and match IPv4 clients naturally.
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn render_ip(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Whether the request asks for a protocol upgrade (HTTP/1.1 `Connection: upgrade` + `Upgrade`).
pub(crate) fn upgrade_requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let up = headers.get(header::UPGRADE)?;
    let wants = headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| has_token(v, "upgrade"));
    wants.then(|| up.clone())
}

fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        .unwrap_or(false)
}

fn remove_connection_tokens(headers: &mut HeaderMap, value: &HeaderValue) {
    if let Ok(s) = value.to_str() {
        for token in s.split(',') {
            let token = token.trim();
            if token.is_empty()
                || token.eq_ignore_ascii_case("close")
                || token.eq_ignore_ascii_case("keep-alive")
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                // Forwarding headers are set after this, so naming them here strips nothing.
                headers.remove(name);
            }
        }
    }
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): the fixed list plus every header named in
/// `Connection`. `TE: trailers` is kept (gRPC needs it).
///
/// Runs on every request and every response. One pass over the names present (cheap
/// comparisons, no hashing) finds which of these headers are there — usually none, or only
/// `Connection: keep-alive` from an upstream — and only those are looked up and removed.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let present = headers
        .keys()
        .fold(0u16, |seen, name| seen | hop_by_hop_bit(name));
    if present == 0 {
        return;
    }
    if present & CONNECTION_BIT != 0 {
        let mut values = headers.get_all(header::CONNECTION).iter();
        match (values.next(), values.next()) {
            (None, _) => {}
            (Some(_), None) => {
                if let Some(v) = headers.remove(header::CONNECTION) {
                    remove_connection_tokens(headers, &v);
                }
            }
            (Some(_), Some(_)) => {
                let all: Vec<HeaderValue> = headers
                    .get_all(header::CONNECTION)
                    .iter()
                    .cloned()
                    .collect();
                headers.remove(header::CONNECTION);
                for v in &all {
                    remove_connection_tokens(headers, v);
                }
            }
        }
    }
    for (i, name) in FIXED_HOP_BY_HOP.iter().enumerate() {
        if present & (1 << (i + 1)) != 0 {
            headers.remove(name);
        }
    }
    if present & TE_BIT != 0
        && let Some(te) = headers.get(header::TE)
        && !te.as_bytes().eq_ignore_ascii_case(b"trailers")
    {
        headers.remove(header::TE);
    }
}

/// Always removed when present; bit `i + 1` of [`hop_by_hop_bit`] stands for entry `i`.
static FIXED_HOP_BY_HOP: [HeaderName; 7] = [
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];
const CONNECTION_BIT: u16 = 1;
const TE_BIT: u16 = 1 << (FIXED_HOP_BY_HOP.len() + 1);

/// Which hop-by-hop header `name` is, as a bit (0 for an end-to-end header).
fn hop_by_hop_bit(name: &HeaderName) -> u16 {
    if name == header::CONNECTION {
        return CONNECTION_BIT;
    }
    if name == header::TE {
        return TE_BIT;
    }
    FIXED_HOP_BY_HOP
        .iter()
        .position(|h| h == name)
        .map_or(0, |i| 1 << (i + 1))
}

/// Sets `X-Forwarded-For/-Proto/-Host/-Port` and `X-Real-IP`. From a trusted proxy the
/// incoming values are kept (and the peer appended to `X-Forwarded-For`); from anyone else
/// they are replaced.
pub(crate) fn set_forwarded(headers: &mut HeaderMap, conn: &ConnFacts, host: Option<HeaderValue>) {
    if conn.trusted {
        let xff = match headers.get(&X_FORWARDED_FOR) {
            Some(prev) => {
                let mut v = Vec::with_capacity(prev.len() + 2 + conn.client_ip.len());
                v.extend_from_slice(prev.as_bytes());
                v.extend_from_slice(b", ");
                v.extend_from_slice(conn.client_ip.as_bytes());
                HeaderValue::from_bytes(&v).unwrap_or_else(|_| conn.client_ip.clone())
            }
            None => conn.client_ip.clone(),
        };
        headers.insert(X_FORWARDED_FOR.clone(), xff);
        set_if_absent(headers, &X_FORWARDED_PROTO, conn.proto.clone());
        if let Some(h) = host {
            set_if_absent(headers, &X_FORWARDED_HOST, h);
        }
        set_if_absent(headers, &X_FORWARDED_PORT, conn.port.clone());
        set_if_absent(headers, &X_REAL_IP, conn.client_ip.clone());
    } else {
        headers.insert(X_FORWARDED_FOR.clone(), conn.client_ip.clone());
        headers.insert(X_FORWARDED_PROTO.clone(), conn.proto.clone());
        match host {
            Some(h) => {
                headers.insert(X_FORWARDED_HOST.clone(), h);
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
        headers.insert(X_FORWARDED_PORT.clone(), conn.port.clone());
        headers.insert(X_REAL_IP.clone(), conn.client_ip.clone());
    }
}

fn set_if_absent(headers: &mut HeaderMap, name: &HeaderName, value: HeaderValue) {
    if !headers.contains_key(name) {
        headers.insert(name.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(ip: &str, trusted: &[&str]) -> ConnFacts {
        let nets: Vec<IpNet> = trusted.iter().map(|s| s.parse().unwrap()).collect();
        ConnFacts::new(
            SocketAddr::new(ip.parse().unwrap(), 5555),
            8443,
            true,
            &nets,
        )
    }

    #[test]
    fn untrusted_headers_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-real-ip", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("gopher"));
        set_forwarded(
            &mut h,
            &facts("192.0.2.7", &["10.0.0.0/8"]),
            Some(HeaderValue::from_static("a.test")),
        );
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-real-ip"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "a.test");
        assert_eq!(h["x-forwarded-port"], "8443");
    }

    #[test]
    fn trusted_headers_are_extended() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.1"));
        h.insert("x-real-ip", HeaderValue::from_static("198.51.100.1"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        set_forwarded(&mut h, &facts("10.1.2.3", &["10.0.0.0/8"]), None);
        assert_eq!(h["x-forwarded-for"], "198.51.100.1, 10.1.2.3");
        assert_eq!(h["x-real-ip"], "198.51.100.1");
        assert_eq!(h["x-forwarded-proto"], "http");
    }

    #[test]
    fn mapped_ipv4_is_canonical() {
        let f = facts("::ffff:192.0.2.9", &["192.0.2.0/24"]);
        assert_eq!(f.client_ip, "192.0.2.9");
        assert!(f.trusted);
    }

    #[test]
    fn hop_by_hop_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret, close"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("gzip"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-keep"));
        let mut h = HeaderMap::new();
        h.insert("te", HeaderValue::from_static("trailers"));
        remove_hop_by_hop(&mut h);
        assert!(h.contains_key("te"));
    }

    mod forwarding {
        use super::*;
        use proptest::prelude::*;

        const NAMES: &[&str] = &[
            "X-Forwarded-For",
            "x-forwarded-proto",
            "X-Forwarded-Host",
            "x-forwarded-port",
            "X-Real-IP",
            "Host",
            "Accept",
            "X-Other",
        ];

        /// A map's fields plus any written lines, as sorted `(name, value)` pairs.
        fn fields(map: &HeaderMap, lines: &[u8]) -> Vec<(String, String)> {
            let mut out: Vec<(String, String)> = map
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
                .collect();
            for line in std::str::from_utf8(lines).unwrap().split_terminator("\r\n") {
                let (n, v) = line.split_once(": ").unwrap();
                out.push((n.to_owned(), v.to_owned()));
            }
            out.sort();
            out
        }

        proptest! {
            /// Written into the head or set in the map, the upstream sees exactly what
            /// `set_forwarded` alone gives, whatever forwarding fields the client sent.
            #[test]
            fn head_and_map_paths_match_set_forwarded(
                sent in prop::collection::vec(
                    (prop::sample::select(NAMES), "[a-z0-9.:, ]{0,12}"),
                    0..8,
                ),
                host in prop::option::of("[a-z]{1,8}\\.test"),
                trusted in any::<bool>(),
                v6 in any::<bool>(),
            ) {
                let peer = if v6 { "2001:db8::7" } else { "192.0.2.7" };
                let nets: &[&str] = if trusted { &["192.0.2.0/24", "2001:db8::/32"] } else { &[] };
                let facts = facts(peer, nets);
                let mut map = HeaderMap::new();
                for (n, v) in &sent {
                    map.append(
                        HeaderName::from_bytes(n.as_bytes()).unwrap(),
                        HeaderValue::from_str(v).unwrap(),
                    );
                }
                let host = host.map(|h| HeaderValue::from_str(&h).unwrap());

                let mut reference = map.clone();
                set_forwarded(&mut reference, &facts, host.clone());
                let want = fields(&reference, b"");

                let mut written = map.clone();
                let mut lines = Vec::new();
                if let Some(f) = Forwarding::prepare(&mut written, &facts, host.clone()) {
                    f.encode(&mut lines);
                }
                prop_assert_eq!(fields(&written, &lines), want.clone());

                let mut applied = map;
                if let Some(f) = Forwarding::prepare(&mut applied, &facts, host) {
                    f.apply(&mut applied);
                }
                prop_assert_eq!(fields(&applied, b""), want);
            }
        }
    }

    mod hop_by_hop {
        use super::*;
        use proptest::prelude::*;

        /// Names drawn from the hop-by-hop list, names a `Connection` value may list, and
        /// ordinary end-to-end names, in mixed case.
        const NAMES: &[&str] = &[
            "Connection",
            "Keep-Alive",
            "Proxy-Connection",
            "Proxy-Authorization",
            "Proxy-Authenticate",
            "Trailer",
            "Transfer-Encoding",
            "Upgrade",
            "TE",
            "X-Secret",
            "X-Other",
            "Host",
            "Accept",
            "Close",
        ];
        const VALUES: &[&str] = &[
            "1",
            "trailers",
            "Trailers",
            "gzip",
            "close",
            "keep-alive, x-secret",
            "X-Other ,upgrade",
            "x-secret, , close",
            "te",
        ];

        /// The rule written out directly over a list of fields: drop the fixed names, the
        /// names listed in any `Connection` value (but not the `close`/`keep-alive` options),
        /// and `TE` unless its first value is `trailers`.
        fn reference(fields: &[(String, String)]) -> Vec<(String, String)> {
            let lower = |s: &str| s.trim().to_ascii_lowercase();
            let mut gone: Vec<String> = [
                "connection",
                "keep-alive",
                "proxy-connection",
                "proxy-authorization",
                "proxy-authenticate",
                "trailer",
                "transfer-encoding",
                "upgrade",
            ]
            .map(String::from)
            .to_vec();
            for (n, v) in fields {
                if lower(n) == "connection" {
                    gone.extend(
                        v.split(',')
                            .map(lower)
                            .filter(|t| !t.is_empty() && t != "close" && t != "keep-alive"),
                    );
                }
            }
            let te_first = fields.iter().find(|(n, _)| lower(n) == "te");
            if te_first.is_some_and(|(_, v)| !v.eq_ignore_ascii_case("trailers")) {
                gone.push("te".into());
            }
            fields
                .iter()
                .filter(|(n, _)| !gone.contains(&lower(n)))
                .map(|(n, v)| (lower(n), v.clone()))
                .collect()
        }

        fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
            v.sort();
            v
        }

        proptest! {
            #[test]
            fn matches_the_reference(
                fields in prop::collection::vec(
                    (prop::sample::select(NAMES), prop::sample::select(VALUES)),
                    0..8,
                )
            ) {
                let fields: Vec<(String, String)> = fields
                    .into_iter()
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .collect();
                let mut map = HeaderMap::new();
                for (n, v) in &fields {
                    map.append(
                        HeaderName::from_bytes(n.as_bytes()).unwrap(),
                        HeaderValue::from_str(v).unwrap(),
                    );
                }
                remove_hop_by_hop(&mut map);
                let got: Vec<(String, String)> = map
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
                    .collect();
                prop_assert_eq!(sorted(got), sorted(reference(&fields)));
            }
        }
    }

    #[test]
    fn upgrade_detection() {
        let mut h = HeaderMap::new();
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        assert!(upgrade_requested(&h).is_none());
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(upgrade_requested(&h).unwrap(), "websocket");
    }
}
