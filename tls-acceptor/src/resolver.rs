//! [`CertResolver`]: rustls certificate selection over the latest store snapshot.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::SignatureScheme;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::index::{NameIndex, choose};
use crate::serving::{CertInput, ServingCert, normalize_name};

/// The immutable state a handshake reads: the name index and the snapshot generation it was
/// built from.
#[derive(Debug, Default)]
struct Published {
    index: NameIndex,
    generation: u64,
}

/// A broken store entry: skipped by the store or unusable by rustls.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub(crate) resolver: String,
    pub(crate) domain: String,
    pub(crate) reason: String,
}

/// What one rebuild did; returned by [`crate::TlsContext::apply_snapshot`] for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebuildReport {
    /// The snapshot generation now served.
    pub generation: u64,
    /// Certificates parsed anew.
    pub built: usize,
    /// Certificates reused unchanged from the previous index.
    pub reused: usize,
    /// Broken entries (from the store or rejected here), as `resolver/domain: reason`.
    pub problems: Vec<String>,
    /// Names still served from the last good certificate because their new entry is broken.
    pub kept_last_good: Vec<String>,
}

/// Chooses the certificate for each ClientHello.
///
/// Order: exact name, one-label wildcard, then the default certificate, unless `sni_strict`
/// is set, in which case unknown names (and ClientHellos without SNI) are refused. Among
/// several certificates for a name, the first one valid now whose key can sign with one of
/// the client's signature schemes wins; ECDSA is preferred over RSA when both fit.
///
/// The handshake path loads an `Arc` from an [`ArcSwap`] and does hash lookups; it takes no
/// lock, allocates nothing and logs nothing above debug. Rebuilds ([`apply_snapshot`])
/// parse only new or changed certificates and swap the whole index atomically: handshakes
/// that already picked a certificate keep it.
///
/// [`apply_snapshot`]: crate::TlsContext::apply_snapshot
pub struct CertResolver {
    published: ArcSwap<Published>,
    default: Option<Arc<ServingCert>>,
    sni_strict: bool,
    /// Serialises rebuilds (writers only; readers never touch it).
    rebuild: Mutex<()>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.published.load();
        f.debug_struct("CertResolver")
            .field("generation", &p.generation)
            .field("names", &p.index.name_count())
            .field("default", &self.default)
            .field("sni_strict", &self.sni_strict)
            .finish()
    }
}

impl CertResolver {
    pub(crate) fn new(default: Option<Arc<ServingCert>>, sni_strict: bool) -> Self {
        Self {
            published: ArcSwap::from_pointee(Published::default()),
            default,
            sni_strict,
            rebuild: Mutex::new(()),
        }
    }

    /// Generation of the snapshot currently served (0 before the first one).
    pub fn generation(&self) -> u64 {
        self.published.load().generation
    }

    /// Number of distinct names (exact and wildcard) currently served.
    pub fn name_count(&self) -> usize {
        self.published.load().index.name_count()
    }

    /// Whether unknown names are refused.
    pub fn sni_strict(&self) -> bool {
        self.sni_strict
    }

    /// The default certificate, if one is served.
    pub fn default_cert(&self) -> Option<&Arc<ServingCert>> {
        self.default.as_ref()
    }

    /// The certificate a client offering `server_name` (or none) and `schemes` would get now;
    /// the same decision the handshake makes. For diagnostics and tests.
    pub fn lookup(
        &self,
        server_name: Option<&str>,
        schemes: &[SignatureScheme],
        now: SystemTime,
    ) -> Option<Arc<ServingCert>> {
        let published = self.published.load();
        self.pick(&published.index, server_name, schemes, now)
            .cloned()
    }

    fn pick<'a>(
        &'a self,
        index: &'a NameIndex,
        server_name: Option<&str>,
        schemes: &[SignatureScheme],
        now: SystemTime,
    ) -> Option<&'a Arc<ServingCert>> {
        if let Some(name) = server_name {
            let name = name.strip_suffix('.').unwrap_or(name);
            let found = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                // rustls lowercases SNI; this branch only serves direct `lookup` callers.
                index.candidates(&name.to_ascii_lowercase())
            } else {
                index.candidates(name)
            };
            if let Some(candidates) = found {
                let chosen = choose(candidates, schemes, now);
                if chosen.is_none() {
                    tracing::debug!(
                        server_name = name,
                        "no certificate matches the client's signature schemes"
                    );
                }
                return chosen;
            }
        }
        if self.sni_strict {
            tracing::debug!(server_name, "sni_strict: refusing unknown server name");
            return None;
        }
        self.default.as_ref()
    }

    /// Rebuilds the index from certificate inputs and the problems reported with them.
    /// Unchanged certificates are reused; names whose new entry is broken keep their last good
    /// certificate (logged at warn with the reason).
    pub(crate) fn apply_inputs(
        &self,
        inputs: Vec<CertInput<'_>>,
        mut problems: Vec<Problem>,
        generation: u64,
    ) -> RebuildReport {
        let _guard = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        let previous = self.published.load_full();
        let reuse: HashMap<[u8; 32], &Arc<ServingCert>> = previous
            .index
            .all
            .iter()
            .map(|c| (c.fingerprint, c))
            .collect();

        let mut report = RebuildReport {
            generation,
            ..RebuildReport::default()
        };
        let mut fresh: Vec<Arc<ServingCert>> = Vec::with_capacity(inputs.len());
        let mut broken_names: HashSet<String> = HashSet::new();
        for input in &inputs {
            if let Some(old) = reuse.get(&input.fingerprint()) {
                report.reused += 1;
                fresh.push(Arc::clone(old));
                continue;
            }
            match input.build() {
                Ok(cert) => {
                    report.built += 1;
                    fresh.push(Arc::new(cert));
                }
                Err(e) => {
                    broken_names.extend(input.names.iter().map(|n| normalize_name(n)));
                    problems.push(Problem {
                        resolver: input.origin.resolver.clone(),
                        domain: input.origin.main.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        let broken_domains: HashSet<String> =
            problems.iter().map(|p| normalize_name(&p.domain)).collect();
        broken_names.extend(broken_domains.iter().cloned());

        let new_index = NameIndex::build(fresh.clone());
        // Last good: every previous certificate of a broken entry keeps serving those of its
        // names that no fresh certificate covers.
        let mut carried = Vec::new();
        for old in &previous.index.all {
            let is_broken = broken_domains.contains(&normalize_name(&old.origin.main))
                || old.names.iter().any(|n| broken_names.contains(&**n));
            if !is_broken || fresh.iter().any(|f| Arc::ptr_eq(f, old)) {
                continue;
            }
            let uncovered: Vec<Box<str>> = old
                .names
                .iter()
                .filter(|n| !new_index.has_name(n))
                .cloned()
                .collect();
            if uncovered.is_empty() {
                continue;
            }
            for name in &uncovered {
                tracing::warn!(
                    name = &**name,
                    serial = %old.serial_hex,
                    "store entry for this name is broken; keeping the last good certificate"
                );
                report.kept_last_good.push(name.to_string());
            }
            carried.push((Arc::clone(old), uncovered));
        }
        for p in &problems {
            tracing::warn!(resolver = %p.resolver, domain = %p.domain, reason = %p.reason, "skipping broken certificate entry");
            report
                .problems
                .push(format!("{}/{}: {}", p.resolver, p.domain, p.reason));
        }
        let index = if carried.is_empty() {
            new_index
        } else {
            NameIndex::build_with_carried(fresh, carried)
        };
        self.published
            .store(Arc::new(Published { index, generation }));
        tracing::debug!(
            generation,
            built = report.built,
            reused = report.reused,
            "certificate index rebuilt"
        );
        report
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let published = self.published.load();
        self.pick(
            &published.index,
            client_hello.server_name(),
            client_hello.signature_schemes(),
            SystemTime::now(),
        )
        .map(|c| Arc::clone(&c.certified))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{TestCert, cert};
    use rcgen::{PKCS_ECDSA_P256_SHA256, PKCS_ED25519, PKCS_RSA_SHA256};
    use rustls_pki_types::PrivateKeyDer;

    const ECDSA: &[SignatureScheme] = &[SignatureScheme::ECDSA_NISTP256_SHA256];
    const RSA: &[SignatureScheme] = &[SignatureScheme::RSA_PSS_SHA256];
    const BOTH: &[SignatureScheme] = &[
        SignatureScheme::RSA_PSS_SHA256,
        SignatureScheme::ECDSA_NISTP256_SHA256,
    ];

    fn apply(r: &CertResolver, certs: &[&TestCert], generation: u64) -> RebuildReport {
        r.apply_inputs(
            certs.iter().map(|c| c.input()).collect(),
            Vec::new(),
            generation,
        )
    }

    fn serial(r: &CertResolver, name: Option<&str>, schemes: &[SignatureScheme]) -> Option<String> {
        r.lookup(name, schemes, SystemTime::now())
            .map(|c| c.serial_hex().to_owned())
    }

    fn rsa_alg() -> &'static rcgen::SignatureAlgorithm {
        &PKCS_RSA_SHA256
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let default = cert(&["default.invalid"], &PKCS_ECDSA_P256_SHA256, 0xd, 30);
        let def = Arc::new(default.input().build().expect("default"));
        let r = CertResolver::new(Some(def), false);
        let exact = cert(&["www.example.com"], &PKCS_ECDSA_P256_SHA256, 1, 30);
        let wild = cert(&["*.example.com"], &PKCS_ECDSA_P256_SHA256, 2, 30);
        let report = apply(&r, &[&exact, &wild], 7);
        assert_eq!((report.built, report.reused, r.generation()), (2, 0, 7));
        assert_eq!(
            serial(&r, Some("www.example.com"), ECDSA).as_deref(),
            Some("1")
        );
        assert_eq!(
            serial(&r, Some("WWW.Example.com."), ECDSA).as_deref(),
            Some("1")
        );
        assert_eq!(
            serial(&r, Some("api.example.com"), ECDSA).as_deref(),
            Some("2")
        );
        // One label only.
        assert_eq!(
            serial(&r, Some("a.b.example.com"), ECDSA).as_deref(),
            Some("d")
        );
        assert_eq!(serial(&r, Some("example.com"), ECDSA).as_deref(), Some("d"));
        assert_eq!(serial(&r, None, ECDSA).as_deref(), Some("d"));
    }

    #[test]
    fn sni_strict_refuses_unknown_and_missing_names() {
        let r = CertResolver::new(None, true);
        let exact = cert(&["www.example.com"], &PKCS_ECDSA_P256_SHA256, 1, 30);
        apply(&r, &[&exact], 1);
        assert_eq!(
            serial(&r, Some("www.example.com"), ECDSA).as_deref(),
            Some("1")
        );
        assert_eq!(serial(&r, Some("other.example.com"), ECDSA), None);
        assert_eq!(serial(&r, None, ECDSA), None);
    }

    #[test]
    fn key_family_follows_client_schemes_and_validity() {
        let r = CertResolver::new(None, true);
        let ec = cert(&["a.test"], &PKCS_ECDSA_P256_SHA256, 0xec, 30);
        let rsa = cert(&["a.test"], rsa_alg(), 0x5a, 30);
        let ed = cert(&["a.test"], &PKCS_ED25519, 0xed, 30);
        apply(&r, &[&rsa, &ec, &ed], 1);
        assert_eq!(serial(&r, Some("a.test"), BOTH).as_deref(), Some("ec"));
        assert_eq!(serial(&r, Some("a.test"), RSA).as_deref(), Some("5a"));
        assert_eq!(
            serial(&r, Some("a.test"), &[SignatureScheme::ED25519]).as_deref(),
            Some("ed")
        );
        // A P-384-only client cannot use the P-256 key: no certificate.
        assert_eq!(
            serial(
                &r,
                Some("a.test"),
                &[SignatureScheme::ECDSA_NISTP384_SHA384]
            ),
            None
        );

        // Expired ECDSA loses to a valid RSA; the latest notAfter wins within a family.
        let old_ec = cert(&["b.test"], &PKCS_ECDSA_P256_SHA256, 0xe1, -1);
        let rsa_b = cert(&["b.test"], rsa_alg(), 0x51, 30);
        let ec_short = cert(&["c.test"], &PKCS_ECDSA_P256_SHA256, 0xc1, 10);
        let ec_long = cert(&["c.test"], &PKCS_ECDSA_P256_SHA256, 0xc2, 60);
        apply(&r, &[&old_ec, &rsa_b, &ec_short, &ec_long], 2);
        assert_eq!(serial(&r, Some("b.test"), BOTH).as_deref(), Some("51"));
        assert_eq!(serial(&r, Some("b.test"), ECDSA).as_deref(), Some("e1"));
        assert_eq!(serial(&r, Some("c.test"), ECDSA).as_deref(), Some("c2"));
    }

    #[test]
    fn unchanged_certificates_are_reused() {
        let r = CertResolver::new(None, true);
        let a = cert(&["a.test"], &PKCS_ECDSA_P256_SHA256, 1, 30);
        let b = cert(&["b.test"], &PKCS_ECDSA_P256_SHA256, 2, 30);
        apply(&r, &[&a, &b], 1);
        let before = r
            .lookup(Some("a.test"), ECDSA, SystemTime::now())
            .expect("a");
        let b2 = cert(&["b.test"], &PKCS_ECDSA_P256_SHA256, 3, 30);
        let report = apply(&r, &[&a, &b2], 2);
        assert_eq!((report.built, report.reused), (1, 1));
        let after = r
            .lookup(Some("a.test"), ECDSA, SystemTime::now())
            .expect("a");
        assert!(Arc::ptr_eq(&before, &after));
        assert_eq!(serial(&r, Some("b.test"), ECDSA).as_deref(), Some("3"));
    }

    #[test]
    fn broken_entry_keeps_last_good_and_error_has_no_key() {
        let r = CertResolver::new(None, true);
        let good = cert(&["a.test", "www.a.test"], &PKCS_ECDSA_P256_SHA256, 1, 30);
        let other = cert(&["b.test"], &PKCS_ECDSA_P256_SHA256, 2, 30);
        apply(&r, &[&good, &other], 1);

        // New certificate for a.test whose key does not match the leaf.
        let mut broken = cert(&["a.test", "www.a.test"], &PKCS_ECDSA_P256_SHA256, 3, 30);
        let wrong_key = cert(&["x.test"], &PKCS_ECDSA_P256_SHA256, 9, 30).key;
        let key_bytes = wrong_key.secret_der().to_vec();
        broken.key = wrong_key;
        let report = apply(&r, &[&broken, &other], 2);
        assert_eq!(report.problems.len(), 1, "{report:?}");
        assert!(report.problems[0].contains("a.test"), "{report:?}");
        let mut kept = report.kept_last_good.clone();
        kept.sort();
        assert_eq!(kept, ["a.test", "www.a.test"]);
        assert_eq!(serial(&r, Some("a.test"), ECDSA).as_deref(), Some("1"));
        assert_eq!(serial(&r, Some("www.a.test"), ECDSA).as_deref(), Some("1"));
        // No key material in the report (hex or raw).
        let hex: String = key_bytes[key_bytes.len() - 16..]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let text = format!("{report:?}");
        assert!(!text.contains(&hex));

        // A store-reported problem also keeps the last good one, across several snapshots.
        let problem = Problem {
            resolver: "le".into(),
            domain: "a.test".into(),
            reason: "certificate is not base64".into(),
        };
        r.apply_inputs(vec![other.input()], vec![problem.clone()], 3);
        r.apply_inputs(vec![other.input()], vec![problem], 4);
        assert_eq!(serial(&r, Some("www.a.test"), ECDSA).as_deref(), Some("1"));

        // Once the entry is fixed the new certificate is served; once removed it is gone.
        let fixed = cert(&["a.test", "www.a.test"], &PKCS_ECDSA_P256_SHA256, 4, 30);
        apply(&r, &[&fixed, &other], 5);
        assert_eq!(serial(&r, Some("www.a.test"), ECDSA).as_deref(), Some("4"));
        apply(&r, &[&other], 6);
        assert_eq!(serial(&r, Some("a.test"), ECDSA), None);
    }

    #[test]
    fn unusable_key_is_reported_without_bytes() {
        let r = CertResolver::new(None, true);
        let mut c = cert(&["a.test"], &PKCS_ECDSA_P256_SHA256, 1, 30);
        c.key = PrivateKeyDer::Pkcs8(vec![0x30, 0x03, 0x02, 0x01, 0x42].into());
        let report = apply(&r, &[&c], 1);
        assert_eq!(report.problems.len(), 1);
        assert!(!report.problems[0].contains("0x42") && !report.problems[0].contains("48, 3"));
    }
}
