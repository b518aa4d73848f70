//! Which certificates the controller must issue for annotated Ingresses (pure).
//!
//! An Ingress of our class annotated `fairway.dev/acme-resolver: <name>` asks for each of its
//! `spec.tls[]` entries: the entry's `hosts` issued by resolver `<name>` into Secret
//! `secretName` of the Ingress's namespace (cert-manager's ingress-shim model). Two Ingresses
//! naming the same Secret with different hosts or resolvers conflict: the oldest wins, the other
//! is reported.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;

use super::class::OurClasses;

/// The annotation naming the ACME resolver.
pub const ACME_RESOLVER_ANNOTATION: &str = "fairway.dev/acme-resolver";

/// One certificate to keep issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRequest {
    /// Namespace of the Ingress and of the Secret.
    pub namespace: String,
    /// The Secret to write (`tls[].secretName`).
    pub secret_name: String,
    /// The resolver (`[acme.resolvers.<name>]`).
    pub resolver: String,
    /// The names, lowercased, sorted, deduplicated; the first of `tls[].hosts` is the main name.
    pub hosts: Vec<String>,
    /// `namespace/name` of the Ingress that asked.
    pub ingress: String,
}

impl CertRequest {
    /// The `acme.json` domain of this request: main name first, the rest as SANs.
    pub fn domain(&self) -> acme_store::Domain {
        acme_store::Domain {
            main: self.hosts.first().cloned().unwrap_or_default(),
            sans: self.hosts.iter().skip(1).cloned().collect(),
            extra: Vec::new(),
        }
    }
}

/// A request that could not be honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestProblem {
    /// `namespace/name` of the Ingress.
    pub ingress: String,
    /// What is wrong.
    pub message: String,
}

/// The certificate requests of `ingresses` (ours only), one per Secret, and the problems.
pub fn cert_requests<'a>(
    ingresses: impl IntoIterator<Item = &'a Ingress>,
    ours: &OurClasses,
) -> (Vec<CertRequest>, Vec<RequestProblem>) {
    let mut sorted: Vec<&Ingress> = ingresses
        .into_iter()
        .filter(|i| ours.is_ours(i) && i.annotations().contains_key(ACME_RESOLVER_ANNOTATION))
        .collect();
    // Oldest first, then by name: the order that decides conflicts.
    sorted.sort_by_key(|i| {
        (
            i.metadata.creation_timestamp.clone().map(|t| t.0),
            i.namespace(),
            i.name_any(),
        )
    });
    let mut out: BTreeMap<(String, String), CertRequest> = BTreeMap::new();
    let mut problems = Vec::new();
    for ing in sorted {
        let namespace = ing.namespace().unwrap_or_default();
        let id = format!("{namespace}/{}", ing.name_any());
        let resolver = ing.annotations()[ACME_RESOLVER_ANNOTATION].clone();
        let tls = ing.spec.as_ref().and_then(|s| s.tls.as_ref());
        if tls.is_none_or(|t| t.is_empty()) {
            problems.push(RequestProblem {
                ingress: id.clone(),
                message: format!("annotated {ACME_RESOLVER_ANNOTATION} but has no spec.tls"),
            });
            continue;
        }
        for (i, entry) in tls.into_iter().flatten().enumerate() {
            let Some(secret_name) = entry.secret_name.clone().filter(|s| !s.is_empty()) else {
                problems.push(RequestProblem {
                    ingress: id.clone(),
                    message: format!("spec.tls[{i}] has no secretName"),
                });
                continue;
            };
            let mut hosts: Vec<String> = entry
                .hosts
                .iter()
                .flatten()
                .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
                .collect();
            if hosts.is_empty() {
                problems.push(RequestProblem {
                    ingress: id.clone(),
                    message: format!("spec.tls[{i}] has no hosts"),
                });
                continue;
            }
            let main = hosts[0].clone();
            hosts.sort();
            hosts.dedup();
            if let Some(pos) = hosts.iter().position(|h| *h == main) {
                hosts[..=pos].rotate_right(1);
            }
            let request = CertRequest {
                namespace: namespace.clone(),
                secret_name,
                resolver: resolver.clone(),
                hosts,
                ingress: id.clone(),
            };
            let key = (namespace.clone(), request.secret_name.clone());
            match out.get(&key) {
                Some(existing)
                    if existing.hosts != request.hosts || existing.resolver != request.resolver =>
                {
                    problems.push(RequestProblem {
                        ingress: id.clone(),
                        message: format!(
                            "Secret {}/{} is already requested by {} with other hosts or resolver; ignored",
                            key.0, key.1, existing.ingress
                        ),
                    });
                }
                Some(_) => {}
                None => {
                    out.insert(key, request);
                }
            }
        }
    }
    (out.into_values().collect(), problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn ing(name: &str, created: &str, resolver: Option<&str>, tls: serde_json::Value) -> Ingress {
        let mut meta =
            serde_json::json!({"name": name, "namespace": "ns", "creationTimestamp": created});
        if let Some(r) = resolver {
            meta["annotations"] = serde_json::json!({ACME_RESOLVER_ANNOTATION: r});
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta,
            "spec": {"ingressClassName": "fairway", "tls": tls,
                     "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}
        }))
        .unwrap()
    }

    #[test]
    fn annotated_tls_entries_become_requests_and_conflicts_are_reported() {
        let ours = OurClasses {
            names: BTreeSet::from(["fairway".to_string()]),
            default: false,
        };
        let ingresses = [
            ing(
                "b",
                "2024-01-02T00:00:00Z",
                Some("le"),
                serde_json::json!([{"hosts": ["WWW.example.com", "example.com"], "secretName": "site"}]),
            ),
            ing(
                "a",
                "2024-01-01T00:00:00Z",
                Some("le"),
                serde_json::json!([{"hosts": ["shop.example.com"], "secretName": "site"}]),
            ),
            ing(
                "c",
                "2024-01-03T00:00:00Z",
                None,
                serde_json::json!([{"hosts": ["x.example.com"], "secretName": "x"}]),
            ),
            ing(
                "d",
                "2024-01-04T00:00:00Z",
                Some("le"),
                serde_json::json!([{"hosts": ["d.example.com"]}]),
            ),
        ];
        let (requests, problems) = cert_requests(&ingresses, &ours);
        assert_eq!(
            requests,
            vec![CertRequest {
                namespace: "ns".into(),
                secret_name: "site".into(),
                resolver: "le".into(),
                hosts: vec!["shop.example.com".into()],
                ingress: "ns/a".into(),
            }],
            "the oldest Ingress wins the Secret; unannotated ones ask for nothing"
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].message.contains("already requested by ns/a"));
        assert!(problems[1].message.contains("no secretName"));

        let (requests, _) = cert_requests(&ingresses[..1], &ours);
        assert_eq!(
            requests[0].hosts,
            ["www.example.com", "example.com"],
            "main name first, then sorted"
        );
    }
}
