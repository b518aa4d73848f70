//! `kubernetes.io/tls` Secrets ⇄ `acme.json` entries (pure).

use std::collections::BTreeMap;

use acme_store::{AcmeDocument, Domain, StoredCert, decode_base64};
use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::ObjectMeta;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The Secret type holding a certificate.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
/// Which certificate resolver a Secret belongs to (ours).
pub const RESOLVER_ANNOTATION: &str = "fairway.dev/acme-resolver";
/// The fencing epoch of the leader that wrote the Secret (`leaseTransitions + 1`).
pub const EPOCH_ANNOTATION: &str = "fairway.dev/epoch";
/// cert-manager: comma-separated DNS names.
pub const CM_ALT_NAMES: &str = "cert-manager.io/alt-names";
/// cert-manager: the common name.
pub const CM_COMMON_NAME: &str = "cert-manager.io/common-name";
/// cert-manager: the issuer's name (we write the resolver).
pub const CM_ISSUER_NAME: &str = "cert-manager.io/issuer-name";
/// cert-manager: the issuer's kind.
pub const CM_ISSUER_KIND: &str = "cert-manager.io/issuer-kind";
/// The label marking Secrets written by the store.
pub const MANAGED_LABEL: &str = "fairway.dev/managed";

/// Where a document entry lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// The Secret's name.
    pub name: String,
    /// The resourceVersion it was read at (writes are conditional on it).
    pub resource_version: Option<String>,
}

/// Names in `tls.crt`'s leaf: DNS SANs, else the common name; lowercased.
fn leaf_names(pem: &[u8]) -> Vec<String> {
    let Some(Ok(der)) = CertificateDer::pem_slice_iter(pem).next() else {
        return Vec::new();
    };
    let der: CertificateDer<'static> = der;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for gn in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(n) = gn {
                names.push(n.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|c| c.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    names
}

/// The entry a TLS Secret stands for: its resolver (annotation, else cert-manager issuer name,
/// else `default_resolver`) and certificate. Names come from `cert-manager.io/alt-names` /
/// `common-name`, else from the certificate. `None` for Secrets without `tls.crt`/`tls.key`.
pub fn entry_of(secret: &Secret, default_resolver: &str) -> Option<(String, StoredCert)> {
    let data = secret.data.as_ref()?;
    let crt = data.get("tls.crt")?;
    let key = data.get("tls.key")?;
    let ann = secret.annotations();
    let resolver = ann
        .get(RESOLVER_ANNOTATION)
        .or_else(|| ann.get(CM_ISSUER_NAME))
        .cloned()
        .unwrap_or_else(|| default_resolver.to_string());
    let mut names: Vec<String> = ann
        .get(CM_ALT_NAMES)
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if let Some(cn) = ann.get(CM_COMMON_NAME)
        && !names.contains(cn)
    {
        names.insert(0, cn.clone());
    }
    if names.is_empty() {
        names = leaf_names(&crt.0);
    }
    let main = names.first().cloned().unwrap_or_else(|| secret.name_any());
    let b64 = base64::engine::general_purpose::STANDARD;
    let cert = StoredCert {
        domain: Domain {
            main,
            sans: names.into_iter().skip(1).collect(),
            extra: Vec::new(),
        },
        certificate: Some(b64.encode(&crt.0)),
        key: Some(b64.encode(&key.0)),
        store: acme_store::DEFAULT_STORE.to_string(),
        extra: Vec::new(),
    };
    Some((resolver, cert))
}

/// A Secret name for a certificate: `<prefix><main>` with `*` → `wildcard` and other invalid
/// characters → `-`, cut to 253 characters.
pub fn secret_name(prefix: &str, main: &str) -> String {
    let main = main.to_ascii_lowercase().replace('*', "wildcard");
    let body: String = main
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("{prefix}{}", body.trim_matches(|c| c == '-' || c == '.'));
    name.truncate(253);
    name
}

/// The Secret for `cert` of `resolver` (PEM decoded from acme.json's base64), with
/// cert-manager-compatible annotations. `epoch` is the writer's fencing epoch, if any.
pub fn secret_for(
    name: &str,
    namespace: &str,
    resolver: &str,
    cert: &StoredCert,
    epoch: Option<u64>,
) -> Result<Secret, String> {
    let decode = |what: &str, v: &Option<String>| -> Result<Vec<u8>, String> {
        let v = v
            .as_deref()
            .ok_or_else(|| format!("{}: no {what}", cert.domain.main))?;
        decode_base64(v).map_err(|e| format!("{}: {what} is not base64: {e}", cert.domain.main))
    };
    let crt = decode("certificate", &cert.certificate)?;
    let key = decode("key", &cert.key)?;
    let mut ann = BTreeMap::from([
        (RESOLVER_ANNOTATION.to_string(), resolver.to_string()),
        (
            CM_ALT_NAMES.to_string(),
            std::iter::once(&cert.domain.main)
                .chain(&cert.domain.sans)
                .cloned()
                .collect::<Vec<_>>()
                .join(","),
        ),
        (CM_COMMON_NAME.to_string(), cert.domain.main.clone()),
        (CM_ISSUER_NAME.to_string(), resolver.to_string()),
        (CM_ISSUER_KIND.to_string(), "FairwayResolver".to_string()),
    ]);
    if let Some(epoch) = epoch {
        ann.insert(EPOCH_ANNOTATION.to_string(), epoch.to_string());
    }
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            annotations: Some(ann),
            labels: Some(BTreeMap::from([(
                MANAGED_LABEL.to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        type_: Some(TLS_SECRET_TYPE.to_string()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_string(), ByteString(crt)),
            ("tls.key".to_string(), ByteString(key)),
        ])),
        ..Default::default()
    })
}

/// Builds the document of a set of Secrets (sorted by name for a stable order), and where each
/// entry came from: `(resolver, index) → Secret`.
pub fn document_of<'a>(
    secrets: impl IntoIterator<Item = &'a Secret>,
    default_resolver: &str,
    accounts: Option<&AcmeDocument>,
) -> (AcmeDocument, BTreeMap<(String, usize), SecretRef>) {
    let mut sorted: Vec<&Secret> = secrets.into_iter().collect();
    sorted.sort_by_key(|s| s.name_any());
    let mut doc = accounts.cloned().unwrap_or_default();
    for data in doc.resolvers.values_mut() {
        data.certificates.clear();
    }
    let mut origin = BTreeMap::new();
    for s in sorted {
        let Some((resolver, cert)) = entry_of(s, default_resolver) else {
            continue;
        };
        let data = doc.resolvers.entry(resolver.clone()).or_default();
        data.certificates_null = false;
        origin.insert(
            (resolver, data.certificates.len()),
            SecretRef {
                name: s.name_any(),
                resource_version: s.resource_version(),
            },
        );
        data.certificates.push(cert);
    }
    (doc, origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_pair(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn secret_round_trips_through_the_document() {
        let (crt, key) = pem_pair(&["a.example.com", "*.a.example.com"]);
        let cert = StoredCert::from_pem("a.example.com", &["*.a.example.com".into()], &crt, &key);
        let name = secret_name("fairway-tls-", &cert.domain.main);
        assert_eq!(name, "fairway-tls-a.example.com");
        let secret = secret_for(&name, "ns", "le", &cert, Some(7)).unwrap();
        assert_eq!(
            secret.annotations()[CM_ALT_NAMES],
            "a.example.com,*.a.example.com"
        );
        assert_eq!(secret.annotations()[EPOCH_ANNOTATION], "7");
        let (resolver, back) = entry_of(&secret, "kubernetes").unwrap();
        assert_eq!(resolver, "le");
        assert_eq!(back, cert);
        let (doc, origin) = document_of([&secret], "kubernetes", None);
        assert_eq!(doc.resolvers["le"].certificates, vec![cert]);
        assert_eq!(origin[&("le".to_string(), 0)].name, name);
    }

    #[test]
    fn unannotated_secrets_take_names_from_the_certificate() {
        let (crt, key) = pem_pair(&["b.example.com"]);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some("plain".into()),
                ..Default::default()
            },
            type_: Some(TLS_SECRET_TYPE.into()),
            data: Some(BTreeMap::from([
                ("tls.crt".to_string(), ByteString(crt.into_bytes())),
                ("tls.key".to_string(), ByteString(key.into_bytes())),
            ])),
            ..Default::default()
        };
        let (resolver, cert) = entry_of(&secret, "kubernetes").unwrap();
        assert_eq!(
            (resolver.as_str(), cert.domain.main.as_str()),
            ("kubernetes", "b.example.com")
        );
        assert_eq!(secret_name("x-", "*.Example.com"), "x-wildcard.example.com");
    }
}
