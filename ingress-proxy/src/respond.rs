//! Responses the proxy generates itself: small bodies, no internals.

use http::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use http::{Response, StatusCode};

use crate::body::ProxyBody;

/// A short text response: `404 page not found`, `502 bad gateway`, …
pub(crate) fn status(code: StatusCode) -> Response<ProxyBody> {
    let text: &'static str = match code {
        StatusCode::NOT_FOUND => "404 page not found\n",
        StatusCode::BAD_GATEWAY => "502 bad gateway\n",
        StatusCode::GATEWAY_TIMEOUT => "504 gateway timeout\n",
        StatusCode::BAD_REQUEST => "400 bad request\n",
        StatusCode::SERVICE_UNAVAILABLE => "503 service unavailable\n",
        StatusCode::MISDIRECTED_REQUEST => "421 misdirected request\n",
        _ => "",
    };
    let mut resp = Response::new(ProxyBody::full(bytes::Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A redirect with an empty body.
pub(crate) fn redirect(code: StatusCode, location: HeaderValue) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = code;
    resp.headers_mut().insert(LOCATION, location);
    resp
}
