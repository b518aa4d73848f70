//! The admin dashboard's static page, embedded in the binary.
//!
//! Three files (`assets/dashboard/{index.html,app.js,app.css}`) compiled in with
//! `include_str!`: nothing is fetched from a CDN or downloaded at run time, so the page works on
//! an air-gapped admin network. The page holds no data; it reads the versioned JSON API
//! (`/api/v1/...`, see `ADMIN_API.md`; the unversioned `/api/...` paths are the same documents,
//! see [`versioned`]) and shows only the sections the serving binary lists in
//! `/api/v1`, so every Fairway binary can serve the same page for its own part.

use std::borrow::Cow;
use std::time::SystemTime;

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use serde_json::Value;

use crate::body::ProxyBody;

/// One embedded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its text.
    pub body: &'static str,
}

const INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_str!("../assets/dashboard/index.html"),
};
const APP_JS: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("../assets/dashboard/app.js"),
};
const APP_CSS: Asset = Asset {
    content_type: "text/css; charset=utf-8",
    body: include_str!("../assets/dashboard/app.css"),
};

/// The page forbids everything but its own script, style and API calls (defence in depth:
/// the script writes data only as text, never as HTML).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// Paths anyone on an admin listener may read: probes and the static page (the page itself
/// holds no data; it asks for the token and sends it with every API call). Shared by every
/// Fairway binary's admin listener so they gate the same paths.
pub fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/" | "/favicon.ico") || path.starts_with("/dashboard")
}

/// Whether `headers` carry `Authorization: Bearer <token>` (always true without a token).
/// Compared in constant time so the token cannot be guessed byte by byte.
pub fn authorized(token: Option<&str>, headers: &http::HeaderMap) -> bool {
    let Some(token) = token else {
        return true;
    };
    let Some(given) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

/// Compares without an early exit on the first differing byte.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads an admin bearer token file: one word of at least 16 characters. The error says why
/// (with the file's path) but never contains the token.
pub fn read_token_file(path: &std::path::Path) -> Result<Box<str>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = text.trim();
    if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{}: the token must be one word of at least 16 characters",
            path.display()
        ));
    }
    Ok(token.into())
}

/// Why an admin listener on `address` needs a token file, or `None` when it may run without
/// one (loopback, or a token is set): a listener reachable from other hosts must be gated.
pub fn missing_token_reason(address: std::net::SocketAddr, has_token: bool) -> Option<String> {
    (!address.ip().is_loopback() && !has_token).then(|| {
        format!("the admin listener {address} is not on loopback; set a bearer token file")
    })
}

/// The canonical (versioned) form of an admin API path: the unversioned `/api/<doc>` paths
/// named by the dashboard's issue and used by scripts (`/api/routes`, `/api/certificates`, …)
/// answer as the current version, `/api/v1/<doc>`, and `/api` as the `/api/v1` index. Every
/// Fairway binary maps paths through this one function, so the aliases are the same everywhere
/// and follow the newest version when it changes. Other paths are returned unchanged.
pub fn versioned(path: &str) -> Cow<'_, str> {
    const CURRENT: &str = "/api/v1";
    match path {
        "/api" | "/api/" => return Cow::Borrowed(CURRENT),
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/api/") else {
        return Cow::Borrowed(path);
    };
    // Already versioned: `/api/v1`, `/api/v2/...`.
    let first = rest.split('/').next().unwrap_or("");
    let is_version =
        first.len() > 1 && first.starts_with('v') && first[1..].bytes().all(|b| b.is_ascii_digit());
    if is_version {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(format!("{CURRENT}/{rest}"))
    }
}

/// The embedded file served at `path` (`/`, `/dashboard/`, `/dashboard/app.js`,
/// `/dashboard/app.css`), if any.
pub fn asset(path: &str) -> Option<Asset> {
    match path {
        "/" | "/dashboard" | "/dashboard/" | "/dashboard/index.html" => Some(INDEX),
        "/dashboard/app.js" => Some(APP_JS),
        "/dashboard/app.css" => Some(APP_CSS),
        _ => None,
    }
}

/// An HTTP response for the embedded file at `path`, with the security headers.
pub fn response(path: &str) -> Option<Response<ProxyBody>> {
    let asset = asset(path)?;
    let mut r = Response::new(ProxyBody::full(asset.body));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    Some(r)
}

pub(crate) fn serve(path: &str) -> Option<Response<ProxyBody>> {
    response(path)
}

/// Certificates expiring within this many days are problems.
pub const EXPIRY_WARNING_DAYS: i64 = crate::admin_api::EXPIRY_WARNING_DAYS;

/// The `/api/v1/certificates` document for a store snapshot (`None`: no store attached), as
/// of `now`: public facts only, soonest expiry first. Other binaries (the ACME controller) add
/// their renewal facts to it.
pub fn certificates_json(snapshot: Option<&acme_store::Snapshot>, now: SystemTime) -> Value {
    crate::admin_api::certificates_doc(snapshot, now)
}

/// The certificate part of `/api/v1/problems`: expired, expiring and undecodable entries.
pub fn certificate_problems(
    snapshot: Option<&acme_store::Snapshot>,
    now: SystemTime,
) -> Vec<Value> {
    crate::admin_api::certificate_problems(snapshot, now)
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the API's time format.
pub fn rfc3339(t: SystemTime) -> String {
    crate::admin_api::rfc3339(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_embedded_and_self_contained() {
        let index = asset("/").unwrap();
        assert!(index.body.contains("/dashboard/app.js"));
        assert!(index.body.contains("/dashboard/app.css"));
        assert_eq!(asset("/dashboard/"), Some(index));
        for a in [INDEX, APP_JS, APP_CSS] {
            assert!(!a.body.is_empty());
            // No CDN, no remote fonts: everything is same-origin.
            assert!(!a.body.contains("http://"), "{}", a.content_type);
            assert!(!a.body.contains("https://"), "{}", a.content_type);
        }
        assert!(asset("/dashboard/../etc/passwd").is_none());
        assert!(asset("/api/v1").is_none());
    }

    #[test]
    fn unversioned_api_paths_are_the_current_version() {
        assert_eq!(versioned("/api/routes"), "/api/v1/routes");
        assert_eq!(versioned("/api/certificates"), "/api/v1/certificates");
        assert_eq!(versioned("/api/vips"), "/api/v1/vips");
        assert_eq!(versioned("/api/explain"), "/api/v1/explain");
        assert_eq!(versioned("/api"), "/api/v1");
        assert_eq!(versioned("/api/"), "/api/v1");
        // Already versioned, or not the API: unchanged (and not copied).
        for p in [
            "/api/v1",
            "/api/v1/routes",
            "/api/v2/routes",
            "/metrics",
            "/",
            "/apis/x",
        ] {
            assert_eq!(versioned(p), p);
            assert!(matches!(versioned(p), Cow::Borrowed(_)), "{p}");
        }
        // `v` alone or `vips` is a document name, not a version.
        assert_eq!(versioned("/api/v"), "/api/v1/v");
        assert_eq!(versioned("/api/vips/x"), "/api/v1/vips/x");
    }

    #[test]
    fn page_response_has_security_headers() {
        let r = response("/dashboard/app.js").unwrap();
        assert_eq!(r.headers()[CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert!(r.headers().contains_key("content-security-policy"));
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    }
}
