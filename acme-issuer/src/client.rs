//! The HTTP client under instant-acme: bounded calls and `Retry-After` capture.
//!
//! instant-acme 0.8.5 neither bounds a request in time nor exposes the `Retry-After` header of a
//! failed call, and both matter: a wedged CA (Debian's Pebble 2.4.0 deadlocks under concurrent
//! orders) must fail an order quickly instead of hanging the issuer, and a rate-limited order must
//! back off for as long as the CA asked. [`AcmeHttp`] wraps hyper-rustls, bounds every request and
//! records the `Retry-After` of error responses into a task-local slot that the order flow reads
//! when it turns a failure into an [`Error`].

use std::cell::Cell;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Request;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::Error;

tokio::task_local! {
    static RETRY_AFTER: Cell<Option<SystemTime>>;
}

/// Run `fut` with a fresh `Retry-After` slot; returns the future's output and the last
/// `Retry-After` any failed ACME response inside it carried.
pub(crate) async fn capture_retry_after<F: Future>(fut: F) -> (F::Output, Option<SystemTime>) {
    RETRY_AFTER
        .scope(Cell::new(None), async move {
            let out = fut.await;
            (out, RETRY_AFTER.with(Cell::get))
        })
        .await
}

type Inner = HyperClient<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    BodyWrapper<Bytes>,
>;

/// instant-acme HTTP client with a per-request time bound and `Retry-After` capture.
#[derive(Clone)]
pub struct AcmeHttp {
    inner: Inner,
    timeout: Duration,
}

impl std::fmt::Debug for AcmeHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeHttp")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl AcmeHttp {
    /// A client trusting the platform's roots (public CAs such as Let's Encrypt).
    ///
    /// Uses the process-wide rustls `CryptoProvider`, which the binary installs at start.
    pub fn with_platform_roots(timeout: Duration) -> Result<Self, Error> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .map_err(|e| Error::Config {
                field: "acme roots".into(),
                reason: format!("platform certificate verifier: {e}"),
            })?;
        Ok(Self::build(builder, timeout))
    }

    /// A client trusting only the certificates of a PEM bundle (a test CA such as Pebble's).
    pub fn with_ca_bundle(pem: &[u8], origin: &Path, timeout: Duration) -> Result<Self, Error> {
        let config_err = |reason: String| Error::Config {
            field: format!("ca bundle {}", origin.display()),
            reason,
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| config_err(format!("bad PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| config_err(format!("unusable root: {e}")))?;
        }
        if roots.is_empty() {
            return Err(config_err("no certificate in bundle".into()));
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| config_err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config);
        Ok(Self::build(builder, timeout))
    }

    fn build(
        builder: hyper_rustls::HttpsConnectorBuilder<hyper_rustls::builderstates::WantsSchemes>,
        timeout: Duration,
    ) -> Self {
        let connector = builder.https_only().enable_http1().enable_http2().build();
        Self {
            inner: HyperClient::builder(TokioExecutor::new()).build(connector),
            timeout,
        }
    }

    /// Box this client for `Account::builder_with_http`.
    pub(crate) fn boxed(&self) -> Box<dyn HttpClient> {
        Box::new(self.clone())
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let uri = req.uri().clone();
        let timeout = self.timeout;
        let fut = self.inner.request(req);
        Box::pin(async move {
            let rsp = match tokio::time::timeout(timeout, fut).await {
                Err(_) => {
                    return Err(instant_acme::Error::Other(
                        format!(
                            "ACME server stopped answering: no response from {uri} within {}s",
                            timeout.as_secs_f32()
                        )
                        .into(),
                    ));
                }
                Ok(Err(e)) => return Err(instant_acme::Error::Other(Box::new(e))),
                Ok(Ok(rsp)) => rsp,
            };
            if (rsp.status().is_client_error() || rsp.status().is_server_error())
                && let Some(at) = rsp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()))
            {
                let _ = RETRY_AFTER.try_with(|slot| slot.set(Some(at)));
            }
            Ok(BytesResponse::from(rsp))
        })
    }
}

/// Parse a `Retry-After` value: delay-seconds or an IMF-fixdate HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<SystemTime> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(now + Duration::from_secs(secs));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let parsed = time::PrimitiveDateTime::parse(value, &format).ok()?;
    Some(parsed.assume_utc().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// delay-seconds parse exactly; HTTP-dates written in IMF-fixdate parse back to the instant.
        #[test]
        fn retry_after_round_trips(secs in 0u64..10_000_000, at in 0i64..4_000_000_000) {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
            prop_assert_eq!(parse_retry_after(&secs.to_string(), now), Some(now + Duration::from_secs(secs)));
            let t = time::OffsetDateTime::from_unix_timestamp(at).unwrap();
            let format = time::macros::format_description!(
                "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
            );
            let text = t.format(&format).unwrap();
            prop_assert_eq!(parse_retry_after(&text, now), Some(SystemTime::UNIX_EPOCH + Duration::from_secs(at as u64)));
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(now + Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
