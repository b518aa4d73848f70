//! `fairway-controller`'s part of the dashboard: the store's certificates with their renewal
//! facts (last outcome, next renewal window), the ACME leadership and order counts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use acme_issuer::IssuerStatus;
use acme_issuer::policy::renewal::{RenewalPolicy, Validity};
use acme_store::Snapshot;
use hyper::{Response, StatusCode};
use ingress_proxy::dashboard::{certificate_problems, certificates_json, rfc3339};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{API_VERSION, Body, error, json as json_response, page, problem, text};

/// The `/api/v1` index of the controller.
pub fn index() -> Value {
    json!({
        "api_version": API_VERSION,
        "component": "controller",
        "sections": ["problems", "acme", "certificates"],
        "read_only": true,
    })
}

/// `/api/v1/certificates`: the store's certificates, each with `last_renewal`
/// (`{"outcome": "ok"|"failing", "consecutive_failures": n}`) and `next_renewal`
/// (`{"earliest", "latest", "due"}`: the jittered window of `policy`; `due` once it has passed)
/// when this controller manages it.
pub fn certificates(
    status: &IssuerStatus,
    snapshot: Option<&Snapshot>,
    policy: &RenewalPolicy,
    now: SystemTime,
) -> Value {
    let mut doc = certificates_json(snapshot, now);
    let validity: HashMap<(&str, &str), Validity> = snapshot
        .map(|s| {
            s.entries()
                .iter()
                .map(|e| {
                    (
                        (e.resolver(), e.main()),
                        Validity {
                            not_before: e.not_before(),
                            not_after: e.not_after(),
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(list) = doc["certificates"].as_array_mut() {
        for c in list {
            let (Some(resolver), Some(domain)) = (c["resolver"].as_str(), c["domain"].as_str())
            else {
                continue;
            };
            let Some(managed) = status
                .certificates
                .iter()
                .find(|s| s.resolver == resolver && s.main == domain)
            else {
                continue;
            };
            let outcome = if managed.failures == 0 {
                "ok"
            } else {
                "failing"
            };
            let mut last = json!({ "outcome": outcome, "consecutive_failures": managed.failures });
            if managed.failures > 0
                && let Some(e) = &status.last_error
            {
                last["error"] = json!(e);
            }
            let next = validity
                .get(&(resolver, domain))
                .map(|v| {
                    let latest = policy.renew_at(*v, None, 0.0);
                    json!({
                        "earliest": rfc3339(policy.renew_at(*v, None, 1.0)),
                        "latest": rfc3339(latest),
                        "due": latest <= now,
                    })
                })
                .unwrap_or(Value::Null);
            c["last_renewal"] = last;
            c["next_renewal"] = next;
        }
    }
    doc
}

/// `/api/v1/acme`: leadership, orders by outcome, the last error.
pub fn acme(status: &IssuerStatus) -> Value {
    json!({
        "api_version": API_VERSION,
        "is_leader": status.leadership.is_leader,
        "epoch": status.leadership.epoch,
        "orders": status.orders,
        "last_error": status.last_error,
        "managed_certificates": status.certificates.len(),
    })
}

/// `/api/v1/problems`: expiring/expired certificates, failing renewals, wanted certificates
/// not issued yet.
pub fn problems(status: &IssuerStatus, snapshot: Option<&Snapshot>, now: SystemTime) -> Value {
    let mut out = certificate_problems(snapshot, now);
    for c in &status.certificates {
        let subject = format!("certificate {} ({})", c.main, c.resolver);
        if c.failures > 0 {
            out.push(problem(
                "error",
                "renewal_failing",
                subject,
                format!(
                    "{} consecutive failed orders; last error: {}",
                    c.failures,
                    status.last_error.as_deref().unwrap_or("unknown")
                ),
            ));
        } else if c.not_after.is_none() {
            out.push(problem(
                "warning",
                "certificate_pending",
                subject,
                "wanted but not issued yet".to_owned(),
            ));
        }
    }
    json!({ "api_version": API_VERSION, "now": rfc3339(now), "problems": out })
}

/// Answers one admin path of the controller.
pub fn answer(
    path: &str,
    status: &IssuerStatus,
    snapshot: Option<&Snapshot>,
    policy: &RenewalPolicy,
    now: SystemTime,
) -> Response<Body> {
    if let Some(r) = page(path) {
        return r;
    }
    match path {
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            acme_issuer::metrics::render(status, now),
        ),
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/api/v1" | "/api/v1/" => json_response(StatusCode::OK, &index()),
        "/api/v1/certificates" => {
            json_response(StatusCode::OK, &certificates(status, snapshot, policy, now))
        }
        "/api/v1/acme" => json_response(StatusCode::OK, &acme(status)),
        "/api/v1/problems" => json_response(StatusCode::OK, &problems(status, snapshot, now)),
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Serves `/metrics`, `/healthz`, the dashboard and the controller's `/api/v1` on `listener`,
/// behind the bearer `token` when set ([`super::gate`]).
pub async fn serve(
    listener: TcpListener,
    token: Option<Arc<str>>,
    status: watch::Receiver<IssuerStatus>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    policy: RenewalPolicy,
) {
    super::serve(listener, token, move |path| {
        let snapshot = snapshots.borrow().clone();
        let status = status.borrow().clone();
        answer(path, &status, Some(&snapshot), &policy, SystemTime::now())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use acme_issuer::{CertStatus, Leadership};
    use acme_store::{AcmeDocument, StoredCert};
    use http_body_util::BodyExt as _;

    use super::*;

    /// 2030-01-01T00:00:00Z.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_893_456_000)
    }

    fn snapshot() -> (Snapshot, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut doc = AcmeDocument::default();
        let le = doc.resolvers.entry("le".into()).or_default();
        for (name, days) in [("a.example.com", 60u64), ("b.example.com", 3)] {
            let mut p = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
            let end = 1_893_456_000 + days * 86_400;
            p.not_after = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(end);
            p.not_before =
                rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(end - 90 * 86_400);
            let c = p.self_signed(&key).unwrap();
            le.certificates.push(StoredCert::from_pem(
                name,
                &[],
                &c.pem(),
                &key.serialize_pem(),
            ));
        }
        (Snapshot::build(Arc::new(doc), 1, None), key.serialize_pem())
    }

    fn status() -> IssuerStatus {
        IssuerStatus {
            leadership: Leadership {
                is_leader: true,
                epoch: 3,
            },
            certificates: vec![
                CertStatus {
                    resolver: "le".into(),
                    main: "a.example.com".into(),
                    not_after: Some(now() + Duration::from_secs(60 * 86_400)),
                    failures: 0,
                },
                CertStatus {
                    resolver: "le".into(),
                    main: "b.example.com".into(),
                    not_after: Some(now() + Duration::from_secs(3 * 86_400)),
                    failures: 2,
                },
                CertStatus {
                    resolver: "le".into(),
                    main: "new.example.com".into(),
                    not_after: None,
                    failures: 0,
                },
            ],
            orders: [("valid", 4u64), ("invalid", 2)].into_iter().collect(),
            last_error: Some("order for b.example.com: rate limited".into()),
        }
    }

    async fn body(r: Response<Body>) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[test]
    fn certificates_carry_renewal_facts() {
        let (snap, _) = snapshot();
        let policy = RenewalPolicy::default();
        let doc = certificates(&status(), Some(&snap), &policy, now());
        let certs = doc["certificates"].as_array().unwrap();
        assert_eq!(certs[0]["domain"], "b.example.com");
        assert_eq!(certs[0]["status"], "expiring");
        assert_eq!(certs[0]["last_renewal"]["outcome"], "failing");
        assert_eq!(certs[0]["last_renewal"]["consecutive_failures"], 2);
        assert!(
            certs[0]["last_renewal"]["error"]
                .as_str()
                .unwrap()
                .contains("rate limited")
        );
        let a = &certs[1];
        assert_eq!(a["last_renewal"]["outcome"], "ok");
        let earliest = a["next_renewal"]["earliest"].as_str().unwrap();
        let latest = a["next_renewal"]["latest"].as_str().unwrap();
        // Renewal falls inside the certificate's lifetime, earliest first.
        assert!(earliest <= latest, "{earliest} {latest}");
        assert!(latest < a["not_after"].as_str().unwrap());
        assert_eq!(a["next_renewal"]["due"], false);
        // 3 days left of 90: past the window, due now.
        assert_eq!(certs[0]["next_renewal"]["due"], true);
        assert!(earliest > a["not_before"].as_str().unwrap());
    }

    #[test]
    fn problems_and_acme_state() {
        let (snap, _) = snapshot();
        let doc = problems(&status(), Some(&snap), now());
        let kinds: Vec<&str> = doc["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "certificate_expiring",
                "renewal_failing",
                "certificate_pending"
            ]
        );
        let a = acme(&status());
        assert_eq!(a["is_leader"], true);
        assert_eq!(a["epoch"], 3);
        assert_eq!(a["orders"]["valid"], 4);
        assert_eq!(
            index()["sections"],
            json!(["problems", "acme", "certificates"])
        );
    }

    #[tokio::test]
    async fn every_path_answers_without_key_material() {
        let (snap, key_pem) = snapshot();
        let key_b64: String = key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let policy = RenewalPolicy::default();
        for path in [
            "/",
            "/dashboard/app.js",
            "/api/v1",
            "/api/v1/certificates",
            "/api/v1/acme",
            "/api/v1/problems",
            "/metrics",
            "/healthz",
        ] {
            let r = answer(path, &status(), Some(&snap), &policy, now());
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            let text = body(r).await;
            assert!(!text.contains("PRIVATE KEY"), "{path}");
            assert!(!text.contains(&key_b64[10..50]), "{path}");
        }
        let r = answer("/api/v1/nope", &status(), Some(&snap), &policy, now());
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
}
