//! The borrowed request view the router matches against, and request normalisation.

use std::net::IpAddr;
use std::sync::LazyLock;

use http::HeaderMap;

/// An empty header map for views built without headers (`HeaderMap::new` does not allocate).
static NO_HEADERS: LazyLock<HeaderMap> = LazyLock::new(HeaderMap::new);

/// A borrowed view of one HTTP request: everything a route can look at.
///
/// Building a view copies a few references and allocates nothing, so the proxy can build one per
/// request. The host is kept raw (as in `Host` or the `:authority`); the router normalises it
/// (ASCII lowercase, `:port`, IPv6 brackets and one trailing dot stripped) when matching.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    host: &'a str,
    path: &'a str,
    query: &'a str,
    method: &'a str,
    headers: &'a HeaderMap,
    client_ip: Option<IpAddr>,
}

impl<'a> RequestView<'a> {
    /// A `GET` request for `host` and `path_and_query` (`/p?q`; a `#fragment` is dropped), without
    /// headers or client address.
    pub fn new(host: &'a str, path_and_query: &'a str) -> Self {
        let without_fragment = match path_and_query.find('#') {
            Some(i) => &path_and_query[..i],
            None => path_and_query,
        };
        let (path, query) = match without_fragment.find('?') {
            Some(i) => (&without_fragment[..i], &without_fragment[i + 1..]),
            None => (without_fragment, ""),
        };
        RequestView {
            host,
            path,
            query,
            method: "GET",
            headers: &NO_HEADERS,
            client_ip: None,
        }
    }

    /// A view of an `http::Request`: host from the URI authority (HTTP/2, absolute form) or else
    /// the `Host` header; `client_ip` is the socket peer (Traefik's `ClientIP` ignores
    /// `X-Forwarded-For`).
    pub fn from_request<T>(request: &'a http::Request<T>, client_ip: Option<IpAddr>) -> Self {
        let uri = request.uri();
        let host = match uri.authority() {
            Some(authority) => authority.as_str(),
            None => request
                .headers()
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        };
        RequestView {
            host,
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            method: request.method().as_str(),
            headers: request.headers(),
            client_ip,
        }
    }

    /// Sets the method (compared case-insensitively by `Method(...)`).
    pub fn with_method(mut self, method: &'a str) -> Self {
        self.method = method;
        self
    }

    /// Sets the request headers.
    pub fn with_headers(mut self, headers: &'a HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    /// Sets the query string (without the leading `?`).
    pub fn with_query(mut self, query: &'a str) -> Self {
        self.query = query;
        self
    }

    /// Sets the client (socket peer) address.
    pub fn with_client_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }

    /// The raw host as given.
    pub fn host(&self) -> &'a str {
        self.host
    }

    /// The URL path (without query); may be empty, which routes like `/`.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The raw query string, without `?`.
    pub fn query(&self) -> &'a str {
        self.query
    }

    /// The method.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The request headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The client address, if known.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }

    /// The path used for matching: an empty path is `/`.
    pub(crate) fn routing_path(&self) -> &'a str {
        if self.path.is_empty() { "/" } else { self.path }
    }
}

/// Longest host we normalise (DNS names are at most 253 bytes); longer hosts match no host rule.
pub(crate) const MAX_HOST: usize = 256;

/// Normalises a raw host into `buf` without allocating: strips IPv6 brackets or a `:port`, one
/// trailing dot, and lowercases ASCII. `None` for an empty or over-long host, which then matches
/// only rules without a host condition.
pub(crate) fn normalize_host<'b>(raw: &'b str, buf: &'b mut [u8; MAX_HOST]) -> Option<&'b str> {
    // Fast path, the common case: only lowercase letters, digits, `.` and `-` (no port,
    // brackets, userinfo, whitespace or uppercase), checked without branching per byte.
    let plain = raw.bytes().fold(true, |ok, b| {
        ok & (b.is_ascii_lowercase() | b.is_ascii_digit() | (b == b'.') | (b == b'-'))
    });
    if plain {
        let host = raw.strip_suffix('.').unwrap_or(raw);
        return (!host.is_empty() && host.len() <= MAX_HOST).then_some(host);
    }
    normalize_host_general(raw, buf)
}

/// [`normalize_host`] for any host (the fast path must agree with this; a proptest checks).
fn normalize_host_general<'b>(raw: &'b str, buf: &'b mut [u8; MAX_HOST]) -> Option<&'b str> {
    // One backward scan finds the port colon, an `userinfo@` and uppercase letters.
    let raw = raw.trim_ascii();
    let bytes = raw.as_bytes();
    let mut start = 0;
    let mut end = bytes.len();
    let mut colons = 0;
    let mut digits_only = true;
    let mut upper = false;
    for (i, &b) in bytes.iter().enumerate().rev() {
        match b {
            b'@' => {
                start = i + 1;
                break;
            }
            b':' => {
                colons += 1;
                if colons == 1 && digits_only {
                    end = i;
                }
            }
            b'0'..=b'9' => {}
            b'A'..=b'Z' => {
                upper = true;
                if colons == 0 {
                    digits_only = false;
                }
            }
            _ => {
                if colons == 0 {
                    digits_only = false;
                }
            }
        }
    }
    let host = if bytes.get(start) == Some(&b'[') {
        // `[v6]` or `[v6]:port`.
        let inner = &raw[start + 1..];
        match inner.find(']') {
            Some(close) => &inner[..close],
            None => inner,
        }
    } else if colons > 1 {
        // A bare IPv6 address: no port to strip.
        &raw[start..]
    } else {
        &raw[start..end.max(start)]
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > MAX_HOST {
        return None;
    }
    if !upper {
        // The common case: already lowercase, no copy.
        return Some(host);
    }
    let out = &mut buf[..host.len()];
    out.copy_from_slice(host.as_bytes());
    out.make_ascii_lowercase();
    // Lowercasing ASCII bytes keeps UTF-8 valid.
    std::str::from_utf8(out).ok()
}

/// Normalises a host written in configuration (owned; build time only).
pub(crate) fn normalize_config_host(host: &str) -> String {
    let mut buf = [0u8; MAX_HOST];
    match normalize_host(host, &mut buf) {
        Some(h) => h.to_owned(),
        None => host.trim().to_ascii_lowercase(),
    }
}

/// Splits a normalised host into its first label and the rest (`a.b.c` -> (`a`, `b.c`)); `None`
/// unless both parts are non-empty. A one-label wildcard `*.b.c` matches iff the rest is `b.c`.
#[inline]
pub(crate) fn split_first_label(host: &str) -> Option<(&str, &str)> {
    let dot = host.find('.')?;
    let (label, rest) = (&host[..dot], &host[dot + 1..]);
    if label.is_empty() || rest.is_empty() {
        None
    } else {
        Some((label, rest))
    }
}

/// Compares a percent/`+`-encoded query component with a decoded expectation, without allocating.
pub(crate) fn query_component_eq(raw: &str, want: &str) -> bool {
    let raw = raw.as_bytes();
    let mut want = want.bytes();
    let mut i = 0;
    while i < raw.len() {
        let b = match raw[i] {
            b'+' => {
                i += 1;
                b' '
            }
            b'%' => match (hex(raw.get(i + 1)), hex(raw.get(i + 2))) {
                (Some(h), Some(l)) => {
                    i += 3;
                    (h << 4) | l
                }
                _ => {
                    i += 1;
                    b'%'
                }
            },
            other => {
                i += 1;
                other
            }
        };
        if want.next() != Some(b) {
            return false;
        }
    }
    want.next().is_none()
}

fn hex(b: Option<&u8>) -> Option<u8> {
    match b? {
        b @ b'0'..=b'9' => Some(b - b'0'),
        b @ b'a'..=b'f' => Some(b - b'a' + 10),
        b @ b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Option<String> {
        let mut buf = [0u8; MAX_HOST];
        normalize_host(s, &mut buf).map(str::to_owned)
    }

    #[test]
    fn host_normalisation() {
        assert_eq!(norm("Foo.Bar.COM:8080").as_deref(), Some("foo.bar.com"));
        assert_eq!(norm("foo.bar.com.").as_deref(), Some("foo.bar.com"));
        assert_eq!(norm("[2001:DB8::1]:443").as_deref(), Some("2001:db8::1"));
        assert_eq!(norm("2001:db8::1").as_deref(), Some("2001:db8::1"));
        assert_eq!(
            norm("user:pw@Example.com:80").as_deref(),
            Some("example.com")
        );
        assert_eq!(norm("").as_deref(), None);
        assert_eq!(norm("  a.com ").as_deref(), Some("a.com"));
        assert_eq!(norm("a.com:").as_deref(), Some("a.com"));
        assert_eq!(norm("a.com:x1").as_deref(), Some("a.com:x1"));
        assert_eq!(norm("[::1]").as_deref(), Some("::1"));
        assert_eq!(norm("u@[::1]:9").as_deref(), Some("::1"));
        assert_eq!(norm("ÄB.com").as_deref(), Some("Äb.com"));
        assert_eq!(norm(":80").as_deref(), None);
        assert_eq!(norm(&"a".repeat(300)), None);
    }

    #[test]
    fn query_decoding() {
        assert!(query_component_eq("a%20b", "a b"));
        assert!(query_component_eq("a+b", "a b"));
        assert!(query_component_eq("100%", "100%"));
        assert!(query_component_eq("%zz", "%zz"));
        assert!(!query_component_eq("ab", "abc"));
        assert!(!query_component_eq("abc", "ab"));
    }

    #[test]
    fn view_splits_query_and_fragment() {
        let v = RequestView::new("h", "/p?x=1#frag");
        assert_eq!((v.path(), v.query()), ("/p", "x=1"));
        assert_eq!(RequestView::new("h", "").routing_path(), "/");
    }

    proptest::proptest! {
        /// The fast path answers like the general normalisation.
        #[test]
        fn fast_path_agrees_with_general(raw in "[a-cA-C0-9.:@\\[\\] -]{0,12}") {
            let (mut b1, mut b2) = ([0u8; MAX_HOST], [0u8; MAX_HOST]);
            proptest::prop_assert_eq!(
                normalize_host(&raw, &mut b1),
                normalize_host_general(&raw, &mut b2)
            );
        }

        /// Over-long plain hosts are rejected by both paths.
        #[test]
        fn long_hosts_agree(n in 250usize..260) {
            let raw = format!("{}.", "a".repeat(n));
            let (mut b1, mut b2) = ([0u8; MAX_HOST], [0u8; MAX_HOST]);
            proptest::prop_assert_eq!(
                normalize_host(&raw, &mut b1),
                normalize_host_general(&raw, &mut b2)
            );
        }
    }
}
