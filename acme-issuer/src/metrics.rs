//! Prometheus text exposition of an [`IssuerStatus`], and a tiny admin listener serving it.
//!
//! Metrics: `fairway_acme_certificates_managed`, `fairway_acme_certificate_expiry_seconds`
//! (per resolver and main domain; negative once expired, absent while never issued),
//! `fairway_acme_certificate_failures` (consecutive), `fairway_acme_orders_total{outcome}`,
//! `fairway_acme_is_leader` and `fairway_acme_leader_epoch`.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::issuer::{IssuerStatus, outcome};

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Render `status` at `now` in the Prometheus text format (version 0.0.4).
pub fn render(status: &IssuerStatus, now: SystemTime) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP fairway_acme_certificates_managed Wanted certificates managed by this issuer.\n\
         # TYPE fairway_acme_certificates_managed gauge\n\
         fairway_acme_certificates_managed {}",
        status.certificates.len()
    );
    out.push_str(
        "# HELP fairway_acme_certificate_expiry_seconds Seconds until notAfter of the stored certificate.\n\
         # TYPE fairway_acme_certificate_expiry_seconds gauge\n",
    );
    for c in &status.certificates {
        if let Some(not_after) = c.not_after {
            let secs = match not_after.duration_since(now) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            };
            let _ = writeln!(
                out,
                "fairway_acme_certificate_expiry_seconds{{resolver=\"{}\",domain=\"{}\"}} {secs:.0}",
                escape(&c.resolver),
                escape(&c.main)
            );
        }
    }
    out.push_str(
        "# HELP fairway_acme_certificate_failures Consecutive failed orders per certificate.\n\
         # TYPE fairway_acme_certificate_failures gauge\n",
    );
    for c in &status.certificates {
        let _ = writeln!(
            out,
            "fairway_acme_certificate_failures{{resolver=\"{}\",domain=\"{}\"}} {}",
            escape(&c.resolver),
            escape(&c.main),
            c.failures
        );
    }
    out.push_str(
        "# HELP fairway_acme_orders_total ACME orders by outcome.\n\
         # TYPE fairway_acme_orders_total counter\n",
    );
    for o in [
        outcome::ISSUED,
        outcome::RESUMED,
        outcome::FAILED,
        outcome::INTERRUPTED,
    ] {
        let _ = writeln!(
            out,
            "fairway_acme_orders_total{{outcome=\"{o}\"}} {}",
            status.orders.get(o).copied().unwrap_or(0)
        );
    }
    let _ = writeln!(
        out,
        "# HELP fairway_acme_is_leader Whether this replica currently issues.\n\
         # TYPE fairway_acme_is_leader gauge\n\
         fairway_acme_is_leader {}\n\
         # HELP fairway_acme_leader_epoch Fencing epoch of the last won term.\n\
         # TYPE fairway_acme_leader_epoch gauge\n\
         fairway_acme_leader_epoch {}",
        u8::from(status.leadership.is_leader),
        status.leadership.epoch
    );
    out
}

/// Serve `GET /metrics` (Prometheus) and `GET /healthz` on `listener` until dropped.
pub async fn serve(listener: TcpListener, status: watch::Receiver<IssuerStatus>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let status = status.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let (code, body) = match req.uri().path() {
                    "/metrics" => (StatusCode::OK, render(&status.borrow(), SystemTime::now())),
                    "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
                    _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
                };
                let rsp = Response::builder()
                    .status(code)
                    .header(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )
                    .body(Full::new(Bytes::from(body)))
                    .unwrap_or_default();
                async move { Ok::<_, Infallible>(rsp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elector::Leadership;
    use crate::issuer::CertStatus;
    use std::time::Duration;

    #[test]
    fn renders_every_family() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut status = IssuerStatus {
            leadership: Leadership {
                is_leader: true,
                epoch: 4,
            },
            certificates: vec![
                CertStatus {
                    resolver: "le".into(),
                    main: "a.test".into(),
                    not_after: Some(now + Duration::from_secs(3600)),
                    failures: 0,
                },
                CertStatus {
                    resolver: "le".into(),
                    main: "b\"x".into(),
                    not_after: None,
                    failures: 2,
                },
            ],
            ..IssuerStatus::default()
        };
        status.orders.insert(outcome::ISSUED, 3);
        let text = render(&status, now);
        assert!(text.contains("fairway_acme_certificates_managed 2\n"));
        assert!(text.contains(
            "fairway_acme_certificate_expiry_seconds{resolver=\"le\",domain=\"a.test\"} 3600\n"
        ));
        assert!(!text.contains("expiry_seconds{resolver=\"le\",domain=\"b"));
        assert!(
            text.contains(
                "fairway_acme_certificate_failures{resolver=\"le\",domain=\"b\\\"x\"} 2\n"
            )
        );
        assert!(text.contains("fairway_acme_orders_total{outcome=\"issued\"} 3\n"));
        assert!(text.contains("fairway_acme_orders_total{outcome=\"failed\"} 0\n"));
        assert!(text.contains("fairway_acme_is_leader 1\n"));
        assert!(text.contains("fairway_acme_leader_epoch 4\n"));
    }
}
