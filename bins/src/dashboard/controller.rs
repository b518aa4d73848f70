//! `fairway-controller`'s part of the dashboard: the store's certificates with their renewal
//! facts (last outcome, next renewal window), the ACME leadership (which replica leads, not
//! only whether this one does) and order counts.
//!
//! Who leads comes from a [`LeaderView`]: in Kubernetes mode [`watch_lease`] reads the
//! election Lease's `holderIdentity`, so a standby names the leader too; in file mode the
//! lock (`flock`) names no holder, so only the leader itself can say it leads.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use acme_issuer::IssuerStatus;
use acme_issuer::policy::renewal::{RenewalPolicy, Validity};
use acme_store::Snapshot;
use hyper::{Response, StatusCode};
use ingress_proxy::dashboard::{certificate_problems, certificates_json, rfc3339};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{API_VERSION, Body, error, json as json_response, page, problem, text};

/// Who leads ACME issuance, as far as this replica can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderView {
    /// This replica: its Lease identity (the pod name) or, in file mode, `host:pid`.
    pub identity: String,
    /// How the leader is elected: `Lease <namespace>/<name>` or `lock file <path>`.
    pub election: String,
    /// The current leader's identity when the election says it (the Lease's holder, while its
    /// term has not run out); `None` in file mode, where only the leader knows it leads.
    pub leader: Option<String>,
    /// When the leader last renewed its term (the Lease's `renewTime`).
    pub renewed_at: Option<SystemTime>,
    /// Why the election could not be read, if it could not.
    pub error: Option<String>,
}

impl LeaderView {
    /// The view of a file-mode replica: this host and process, electing on `lock_file`.
    pub fn file_lock(lock_file: &std::path::Path) -> LeaderView {
        LeaderView {
            identity: local_identity(),
            election: format!("lock file {}", lock_file.display()),
            ..LeaderView::default()
        }
    }
}

/// `host:pid` of this process (the host name from the kernel, else `$HOSTNAME`).
pub fn local_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}

/// The leader a Lease names at `now`: its `holderIdentity` with its `renewTime`, unless the
/// holder is empty (released) or its term (`renewTime + leaseDurationSeconds`) has run out.
/// `spec` is the Lease's `spec` as JSON.
pub fn lease_leader(spec: &Value, now: SystemTime) -> Option<(String, Option<SystemTime>)> {
    let holder = spec["holderIdentity"].as_str().filter(|h| !h.is_empty())?;
    let renewed = spec["renewTime"]
        .as_str()
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(SystemTime::from);
    if let (Some(renewed), Some(secs)) = (renewed, spec["leaseDurationSeconds"].as_u64())
        && renewed + Duration::from_secs(secs) < now
    {
        return None;
    }
    Some((holder.to_owned(), renewed))
}

/// Reads the election Lease `namespace/name` every `period` and publishes who holds it, for
/// `/api/v1/acme`. `identity` is this replica's. Stops when every receiver is gone.
pub fn watch_lease(
    client: kube::Client,
    namespace: &str,
    name: &str,
    identity: &str,
    period: Duration,
) -> watch::Receiver<LeaderView> {
    use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
    let base = LeaderView {
        identity: identity.to_owned(),
        election: format!("Lease {namespace}/{name}"),
        ..LeaderView::default()
    };
    let (tx, rx) = watch::channel(base.clone());
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease"),
        "leases",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client, namespace, &resource);
    let name = name.to_owned();
    tokio::spawn(async move {
        loop {
            let mut view = base.clone();
            match api.get_opt(&name).await {
                Ok(Some(lease)) => {
                    if let Some((leader, renewed)) =
                        lease_leader(&lease.data["spec"], SystemTime::now())
                    {
                        view.leader = Some(leader);
                        view.renewed_at = renewed;
                    }
                }
                Ok(None) => {}
                Err(e) => view.error = Some(e.to_string()),
            }
            tx.send_replace(view);
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = tx.closed() => break,
            }
        }
    });
    rx
}

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
    doc["renewal_facts"] = json!(true);
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

/// `/api/v1/acme`: leadership (this replica's and who leads), orders by outcome, the last
/// error.
pub fn acme(status: &IssuerStatus, view: &LeaderView) -> Value {
    let is_leader = status.leadership.is_leader;
    // This replica knows it leads before the Lease read says so.
    let leader = if is_leader {
        Some(view.identity.clone())
    } else {
        view.leader.clone().filter(|l| *l != view.identity)
    };
    // The renewal time belongs to the Lease's holder: shown when that is the leader named.
    let renewed_at = view
        .leader
        .as_ref()
        .filter(|l| Some(*l) == leader.as_ref())
        .and(view.renewed_at);
    json!({
        "api_version": API_VERSION,
        "identity": view.identity,
        "election": view.election,
        "leader": leader,
        "leader_renewed_at": renewed_at.map(rfc3339),
        "election_error": view.error,
        "is_leader": is_leader,
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

/// Answers one admin path of the controller; the unversioned `/api/...` paths are the current
/// version's documents ([`ingress_proxy::dashboard::versioned`]).
pub fn answer(
    path: &str,
    status: &IssuerStatus,
    leader: &LeaderView,
    snapshot: Option<&Snapshot>,
    policy: &RenewalPolicy,
    now: SystemTime,
) -> Response<Body> {
    if let Some(r) = page(path) {
        return r;
    }
    match &*ingress_proxy::dashboard::versioned(path) {
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
        "/api/v1/acme" => json_response(StatusCode::OK, &acme(status, leader)),
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
    leader: watch::Receiver<LeaderView>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    policy: RenewalPolicy,
) {
    super::serve(listener, token, move |path| {
        let snapshot = snapshots.borrow().clone();
        let status = status.borrow().clone();
        let leader = leader.borrow().clone();
        answer(
            path,
            &status,
            &leader,
            Some(&snapshot),
            &policy,
            SystemTime::now(),
        )
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

    fn view() -> LeaderView {
        LeaderView {
            identity: "fairway-controller-0".into(),
            election: "Lease fairway/fairway-controller".into(),
            ..LeaderView::default()
        }
    }

    #[test]
    fn the_acme_leader_is_named_by_leader_and_standby() {
        // The leader names itself.
        let a = acme(&status(), &view());
        assert_eq!(a["leader"], "fairway-controller-0");
        assert_eq!(a["identity"], "fairway-controller-0");
        assert_eq!(a["election"], "Lease fairway/fairway-controller");
        // A standby names the Lease holder.
        let mut standby = status();
        standby.leadership.is_leader = false;
        let mut v = view();
        v.identity = "fairway-controller-1".into();
        v.leader = Some("fairway-controller-0".into());
        v.renewed_at = Some(now());
        let a = acme(&standby, &v);
        assert_eq!(a["is_leader"], false);
        assert_eq!(a["leader"], "fairway-controller-0");
        assert_eq!(a["leader_renewed_at"], "2030-01-01T00:00:00Z");
        // File mode standby: the lock names no holder.
        let f = LeaderView::file_lock(std::path::Path::new("/var/lib/fairway/acme.json.leader"));
        assert!(
            f.identity.ends_with(&format!(":{}", std::process::id())),
            "{}",
            f.identity
        );
        let a = acme(&standby, &f);
        assert_eq!(a["leader"], Value::Null);
        assert_eq!(a["election"], "lock file /var/lib/fairway/acme.json.leader");
        // A Lease read failure is reported, not hidden.
        v.error = Some("leases.coordination.k8s.io is forbidden".into());
        assert!(
            acme(&standby, &v)["election_error"]
                .as_str()
                .unwrap()
                .contains("forbidden")
        );
    }

    #[test]
    fn lease_holder_until_its_term_runs_out() {
        let spec = json!({
            "holderIdentity": "fairway-controller-2",
            "leaseDurationSeconds": 15,
            "renewTime": "2030-01-01T00:00:00.250000Z",
        });
        let (who, renewed) = lease_leader(&spec, now() + Duration::from_secs(10)).unwrap();
        assert_eq!(who, "fairway-controller-2");
        assert_eq!(renewed, Some(now() + Duration::from_millis(250)));
        // Not renewed for longer than its term: nobody leads.
        assert_eq!(lease_leader(&spec, now() + Duration::from_secs(16)), None);
        // Released (the holder cleared on shutdown), or never held.
        assert_eq!(lease_leader(&json!({"holderIdentity": ""}), now()), None);
        assert_eq!(lease_leader(&json!({}), now()), None);
        // No renew time: the holder as written.
        let (who, renewed) = lease_leader(&json!({"holderIdentity": "x"}), now()).unwrap();
        assert_eq!((who.as_str(), renewed), ("x", None));
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
        assert_eq!(doc["renewal_facts"], true);
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
        let a = acme(&status(), &view());
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
            "/dashboard/",
            "/dashboard/app.js",
            "/dashboard/app.css",
            "/api/v1",
            "/api/v1/certificates",
            "/api/v1/acme",
            "/api/v1/problems",
            "/api",
            "/api/certificates",
            "/api/acme",
            "/api/problems",
            "/metrics",
            "/healthz",
        ] {
            let r = answer(path, &status(), &view(), Some(&snap), &policy, now());
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            let text = body(r).await;
            assert!(!text.contains("PRIVATE KEY"), "{path}");
            assert!(!text.contains(&key_b64[10..50]), "{path}");
        }
        let r = answer(
            "/api/v1/nope",
            &status(),
            &view(),
            Some(&snap),
            &policy,
            now(),
        );
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        // The certificates are really in there, so the check above is not vacuous.
        let certs = body(answer(
            "/api/v1/certificates",
            &status(),
            &view(),
            Some(&snap),
            &policy,
            now(),
        ))
        .await;
        assert!(certs.contains("b.example.com"), "{certs}");
    }

    #[tokio::test]
    async fn unversioned_paths_are_the_current_version() {
        let (snap, _) = snapshot();
        let policy = RenewalPolicy::default();
        for doc in ["", "/certificates", "/acme", "/problems"] {
            let get = |p: &str| answer(p, &status(), &view(), Some(&snap), &policy, now());
            let v1 = body(get(&format!("/api/v1{doc}"))).await;
            let alias = body(get(&format!("/api{doc}"))).await;
            assert_eq!(alias, v1, "/api{doc}");
            assert!(alias.contains("\"api_version\": 1"), "{alias}");
        }
        let r = answer("/api/vips", &status(), &view(), Some(&snap), &policy, now());
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "the speaker's part");
    }
}
