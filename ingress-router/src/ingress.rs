//! Kubernetes `networking.k8s.io/v1` Ingress: reading manifests and turning them into routes.
//!
//! [`parse_manifests`] reads multi-document YAML or JSON (`kind: Ingress`, and `kind: List` /
//! `IngressList` of them; other kinds are skipped so whole application bundles can be given).
//! [`routes`] turns Ingresses into [`IngressRoute`]s whose backend is a [`ServiceBackend`]; paths
//! that cannot be served (no `pathType`, `resource` backends, no port) are skipped with a
//! [`Warning`]. Ingress-class filtering is the controller's business, not the router's.

use std::fmt;

pub use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::networking::v1::IngressBackend;
use serde::{Deserialize, Serialize};

use crate::error::RouterError;
use crate::route::{IngressMatch, IngressOrigin, IngressRoute, PathType, Warning};

/// The namespace of objects that do not name one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A Service port as an Ingress backend names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum ServicePort {
    /// `port.number`.
    Number(i32),
    /// `port.name` (resolved through the Service's port list).
    Name(String),
}

impl fmt::Display for ServicePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServicePort::Number(n) => write!(f, "{n}"),
            ServicePort::Name(n) => f.write_str(n),
        }
    }
}

/// The backend of an Ingress route: a Service port in the Ingress's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ServiceBackend {
    /// Namespace (the Ingress's).
    pub namespace: String,
    /// Service name.
    pub service: String,
    /// Service port.
    pub port: ServicePort,
}

impl fmt::Display for ServiceBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.service, self.port)
    }
}

fn manifest_error(origin: &str, doc: usize, message: impl fmt::Display) -> RouterError {
    RouterError::Manifest {
        origin: format!("{origin} (document {})", doc + 1),
        message: message.to_string(),
    }
}

fn collect(
    value: serde_json::Value,
    origin: &str,
    doc: usize,
    out: &mut Vec<Ingress>,
) -> Result<(), RouterError> {
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_owned();
    match kind.as_str() {
        "Ingress" => {
            let api = value
                .get("apiVersion")
                .and_then(|k| k.as_str())
                .unwrap_or_default();
            if api != "networking.k8s.io/v1" {
                return Err(manifest_error(
                    origin,
                    doc,
                    format!(
                        "Ingress apiVersion `{api}` is not supported (use networking.k8s.io/v1)"
                    ),
                ));
            }
            let ingress: Ingress =
                serde_json::from_value(value).map_err(|e| manifest_error(origin, doc, e))?;
            out.push(ingress);
        }
        "List" | "IngressList" => {
            let items = match value.get("items") {
                Some(serde_json::Value::Array(items)) => items.clone(),
                Some(serde_json::Value::Null) | None => Vec::new(),
                Some(_) => return Err(manifest_error(origin, doc, "`items` must be a list")),
            };
            for item in items {
                collect(item, origin, doc, out)?;
            }
        }
        "" => return Err(manifest_error(origin, doc, "document has no `kind`")),
        _ => {}
    }
    Ok(())
}

/// Reads every Ingress in a multi-document YAML or JSON text. `origin` (e.g. the file name)
/// is used in error messages.
pub fn parse_manifests(text: &str, origin: &str) -> Result<Vec<Ingress>, RouterError> {
    let mut out = Vec::new();
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| manifest_error(origin, 0, e))?;
        let docs = match value {
            serde_json::Value::Array(items) => items,
            other => vec![other],
        };
        for (i, d) in docs.into_iter().enumerate() {
            collect(d, origin, i, &mut out)?;
        }
        return Ok(out);
    }
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value =
            serde_json::Value::deserialize(doc).map_err(|e| manifest_error(origin, i, e))?;
        if value.is_null() {
            continue;
        }
        collect(value, origin, i, &mut out)?;
    }
    Ok(out)
}

fn backend(b: &IngressBackend, namespace: &str) -> Result<ServiceBackend, String> {
    if b.resource.is_some() {
        return Err("`resource` backends are not supported".into());
    }
    let svc = b.service.as_ref().ok_or("backend has no `service`")?;
    let port = svc.port.as_ref().ok_or("service backend has no `port`")?;
    let port = match (&port.number, &port.name) {
        (Some(n), None) => ServicePort::Number(*n),
        (None, Some(name)) if !name.is_empty() => ServicePort::Name(name.clone()),
        _ => return Err("service port needs exactly one of `name` and `number`".into()),
    };
    Ok(ServiceBackend {
        namespace: namespace.to_owned(),
        service: svc.name.clone(),
        port,
    })
}

/// The routes of one Ingress (rule paths and the default backend) and what had to be skipped.
pub fn routes(ingress: &Ingress) -> (Vec<IngressRoute<ServiceBackend>>, Vec<Warning>) {
    let meta = &ingress.metadata;
    let origin = IngressOrigin {
        namespace: meta
            .namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
        name: meta.name.clone().unwrap_or_default(),
        created: meta.creation_timestamp.as_ref().map(|t| t.0),
    };
    let subject = format!("Ingress {}/{}", origin.namespace, origin.name);
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let Some(spec) = &ingress.spec else {
        warnings.push(Warning {
            subject,
            message: "has no spec".into(),
        });
        return (out, warnings);
    };
    for (ri, rule) in spec.rules.iter().flatten().enumerate() {
        let Some(http) = &rule.http else {
            warnings.push(Warning {
                subject: format!("{subject} rules[{ri}]"),
                message: "has no `http` paths; skipped".into(),
            });
            continue;
        };
        for (pi, path) in http.paths.iter().enumerate() {
            let at = format!("{subject} rules[{ri}].http.paths[{pi}]");
            let Some(path_type) = PathType::from_k8s(&path.path_type) else {
                warnings.push(Warning {
                    subject: at,
                    message: format!("unknown pathType `{}`; skipped", path.path_type),
                });
                continue;
            };
            match backend(&path.backend, &origin.namespace) {
                Ok(b) => out.push(IngressRoute {
                    origin: origin.clone(),
                    matcher: IngressMatch::Path {
                        rule_index: ri,
                        path_index: pi,
                        host: rule.host.clone(),
                        path_type,
                        path: path.path.clone().unwrap_or_default(),
                    },
                    backend: b,
                }),
                Err(e) => warnings.push(Warning {
                    subject: at,
                    message: format!("{e}; skipped"),
                }),
            }
        }
    }
    if let Some(d) = &spec.default_backend {
        match backend(d, &origin.namespace) {
            Ok(b) => out.push(IngressRoute {
                origin: origin.clone(),
                matcher: IngressMatch::DefaultBackend,
                backend: b,
            }),
            Err(e) => warnings.push(Warning {
                subject: format!("{subject} defaultBackend"),
                message: format!("{e}; skipped"),
            }),
        }
    }
    (out, warnings)
}

/// The routes of many Ingresses, and all warnings.
pub fn routes_from_all<'a>(
    ingresses: impl IntoIterator<Item = &'a Ingress>,
) -> (Vec<IngressRoute<ServiceBackend>>, Vec<Warning>) {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for ing in ingresses {
        let (r, w) = routes(ing);
        out.extend(r);
        warnings.extend(w);
    }
    (out, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: a, namespace: ns, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  rules:
  - host: a.example.com
    http:
      paths:
      - {path: /x, pathType: Prefix, backend: {service: {name: s, port: {name: http}}}}
      - {path: /y, pathType: Exact, backend: {resource: {kind: Bucket, name: b}}}
---
apiVersion: v1
kind: List
items:
- apiVersion: networking.k8s.io/v1
  kind: Ingress
  metadata: {name: b}
  spec: {defaultBackend: {service: {name: d, port: {number: 80}}}}
- apiVersion: v1
  kind: Service
  metadata: {name: ignored}
"#;

    #[test]
    fn reads_multi_doc_and_lists() {
        let ings = parse_manifests(TWO, "t.yaml").unwrap();
        assert_eq!(ings.len(), 2);
        let (routes, warnings) = routes_from_all(&ings);
        assert_eq!(routes.len(), 2);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].subject.contains("paths[1]"));
        assert_eq!(routes[0].backend.port, ServicePort::Name("http".into()));
        assert_eq!(routes[1].backend.namespace, "default");
        assert!(routes[0].origin.created.is_some());
    }

    #[test]
    fn reads_json_and_rejects_old_api() {
        let json = r#"{"apiVersion":"networking.k8s.io/v1","kind":"Ingress","metadata":{"name":"j"},"spec":{"defaultBackend":{"service":{"name":"d","port":{"number":1}}}}}"#;
        assert_eq!(parse_manifests(json, "j.json").unwrap().len(), 1);
        let old = "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: o}\n";
        let e = parse_manifests(old, "o.yaml").unwrap_err();
        assert!(e.to_string().starts_with("o.yaml (document 1)"), "{e}");
        assert!(parse_manifests("kind: [", "bad.yaml").is_err());
    }
}
