//! The compiled name index the resolver reads on every handshake.
//!
//! Built off the hot path from a store snapshot; immutable once built. A handshake does at
//! most two hash lookups (exact name, then the one-label wildcard of its parent) and a scan
//! of the few candidates for that name.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::SignatureScheme;

use crate::serving::ServingCert;

/// Candidates for one name, ordered by preference: key family (ECDSA first), then latest
/// `notAfter` first.
pub(crate) type Candidates = Box<[Arc<ServingCert>]>;

/// Exact and wildcard maps over serving certificates.
#[derive(Debug, Default)]
pub(crate) struct NameIndex {
    /// `www.example.com` → candidates.
    exact: HashMap<Box<str>, Candidates>,
    /// `example.com` → candidates for `*.example.com`.
    wildcard: HashMap<Box<str>, Candidates>,
    /// Every certificate in the index once (for cache reuse and last-good carry-over).
    pub(crate) all: Vec<Arc<ServingCert>>,
}

impl NameIndex {
    /// Builds the index from certificates; each certificate is listed under all its names.
    pub(crate) fn build(all: Vec<Arc<ServingCert>>) -> Self {
        Self::build_with_carried(all, Vec::new())
    }

    /// Like [`build`](Self::build), plus last-good certificates listed only under the given
    /// names (those no fresh certificate covers).
    pub(crate) fn build_with_carried(
        mut all: Vec<Arc<ServingCert>>,
        carried: Vec<(Arc<ServingCert>, Vec<Box<str>>)>,
    ) -> Self {
        let mut exact: HashMap<Box<str>, Vec<Arc<ServingCert>>> = HashMap::new();
        let mut wildcard: HashMap<Box<str>, Vec<Arc<ServingCert>>> = HashMap::new();
        let listed = all
            .iter()
            .map(|c| (c, c.names.to_vec()))
            .chain(carried.iter().map(|(c, n)| (c, n.clone())))
            .collect::<Vec<_>>();
        for (cert, names) in listed {
            for name in names {
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.into()).or_default(),
                    None => exact.entry(name).or_default(),
                }
                .push(cert.clone());
            }
        }
        let finish = |m: HashMap<Box<str>, Vec<Arc<ServingCert>>>| {
            m.into_iter()
                .map(|(k, mut v)| {
                    v.sort_by(|a, b| {
                        a.family
                            .cmp(&b.family)
                            .then_with(|| b.not_after.cmp(&a.not_after))
                    });
                    v.dedup_by(|a, b| Arc::ptr_eq(a, b));
                    (k, v.into_boxed_slice())
                })
                .collect()
        };
        all.extend(carried.into_iter().map(|(c, _)| c));
        Self {
            exact: finish(exact),
            wildcard: finish(wildcard),
            all,
        }
    }

    /// Whether a name (exact or wildcard form) has candidates of its own.
    pub(crate) fn has_name(&self, name: &str) -> bool {
        match name.strip_prefix("*.") {
            Some(parent) => self.wildcard.contains_key(parent),
            None => self.exact.contains_key(name),
        }
    }

    /// Candidates for a server name: exact, then one-label wildcard. `name` must be lowercase
    /// without a trailing dot (rustls hands SNI over lowercased).
    pub(crate) fn candidates(&self, name: &str) -> Option<&[Arc<ServingCert>]> {
        if let Some(c) = self.exact.get(name) {
            return Some(c);
        }
        let (_, parent) = name.split_once('.')?;
        if parent.is_empty() {
            return None;
        }
        self.wildcard.get(parent).map(|c| &**c)
    }

    /// Number of distinct names (exact + wildcard).
    pub(crate) fn name_count(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }
}

/// Picks the certificate for a client: the first (preferred) candidate that is valid now and
/// whose key can sign with a scheme the client offered; failing that, the first compatible
/// one even if expired (an expired certificate beats a name mismatch for diagnosis).
pub(crate) fn choose<'a>(
    candidates: &'a [Arc<ServingCert>],
    offered: &[SignatureScheme],
    now: SystemTime,
) -> Option<&'a Arc<ServingCert>> {
    candidates
        .iter()
        .find(|c| c.valid_at(now) && c.compatible(offered))
        .or_else(|| candidates.iter().find(|c| c.compatible(offered)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::cert;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::sync::OnceLock;

    fn base() -> &'static ServingCert {
        static BASE: OnceLock<ServingCert> = OnceLock::new();
        BASE.get_or_init(|| {
            cert(&["base.test"], &rcgen::PKCS_ECDSA_P256_SHA256, 1, 30)
                .input()
                .build()
                .expect("build")
        })
    }

    fn fake(id: usize, names: &[String]) -> Arc<ServingCert> {
        let b = base();
        Arc::new(ServingCert {
            certified: b.certified.clone(),
            schemes: b.schemes.clone(),
            family: b.family,
            names: names.iter().map(|n| n.as_str().into()).collect(),
            not_before: b.not_before,
            not_after: b.not_after,
            serial_hex: id.to_string().into(),
            origin: b.origin.clone(),
            fingerprint: [id as u8; 32],
        })
    }

    /// The obvious definition: exact names first, else one-label wildcards.
    fn reference(certs: &[(usize, Vec<String>)], q: &str) -> BTreeSet<usize> {
        let exact: BTreeSet<usize> = certs
            .iter()
            .filter(|(_, n)| n.iter().any(|n| n == q))
            .map(|(i, _)| *i)
            .collect();
        if !exact.is_empty() {
            return exact;
        }
        certs
            .iter()
            .filter(|(_, names)| {
                names.iter().any(|n| {
                    n.strip_prefix("*.").is_some_and(|parent| {
                        q.strip_suffix(parent)
                            .and_then(|l| l.strip_suffix('.'))
                            .is_some_and(|label| !label.is_empty() && !label.contains('.'))
                    })
                })
            })
            .map(|(i, _)| *i)
            .collect()
    }

    fn name() -> impl Strategy<Value = String> {
        (
            prop::option::weighted(0.3, Just("*")),
            prop::collection::vec(prop::sample::select(vec!["a", "b", "www", "x"]), 1..4),
        )
            .prop_map(|(star, labels)| {
                let mut s = labels.join(".");
                if let Some(star) = star {
                    s = format!("{star}.{s}");
                }
                s
            })
    }

    /// A certificate of a given family (real keys, so the probed schemes are real), with
    /// chosen validity and name `c.test`.
    fn with_family(
        id: usize,
        family: usize,
        not_after_days: i64,
        valid_now: bool,
    ) -> Arc<ServingCert> {
        static KEYS: OnceLock<Vec<ServingCert>> = OnceLock::new();
        let keys = KEYS.get_or_init(|| {
            [
                &rcgen::PKCS_ECDSA_P256_SHA256,
                &rcgen::PKCS_ECDSA_P384_SHA384,
                &rcgen::PKCS_ED25519,
                &rcgen::PKCS_RSA_SHA256,
            ]
            .into_iter()
            .map(|alg| {
                cert(&["c.test"], alg, 1, 30)
                    .input()
                    .build()
                    .expect("build")
            })
            .collect()
        });
        let b = &keys[family];
        let now = std::time::SystemTime::now();
        let day = std::time::Duration::from_secs(86400);
        let not_after = if not_after_days >= 0 {
            now + day * not_after_days as u32
        } else {
            now - day * (-not_after_days) as u32
        };
        Arc::new(ServingCert {
            certified: b.certified.clone(),
            schemes: b.schemes.clone(),
            family: b.family,
            names: vec!["c.test".into()].into_boxed_slice(),
            not_before: if valid_now { now - day } else { now + day },
            not_after,
            serial_hex: id.to_string().into(),
            origin: b.origin.clone(),
            fingerprint: [id as u8; 32],
        })
    }

    const OFFERABLE: &[SignatureScheme] = &[
        SignatureScheme::ECDSA_NISTP256_SHA256,
        SignatureScheme::ECDSA_NISTP384_SHA384,
        SignatureScheme::ED25519,
        SignatureScheme::RSA_PSS_SHA256,
        SignatureScheme::RSA_PKCS1_SHA256,
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn choice_matches_reference(
            certs in prop::collection::vec((0usize..4, -5i64..60, any::<bool>()), 1..6),
            offered in prop::sample::subsequence(OFFERABLE.to_vec(), 0..=OFFERABLE.len()),
        ) {
            let built: Vec<_> = certs
                .iter()
                .enumerate()
                .map(|(i, &(f, days, nb))| with_family(i, f, days, nb))
                .collect();
            let index = NameIndex::build(built.clone());
            let now = std::time::SystemTime::now();
            let got = index
                .candidates("c.test")
                .and_then(|c| choose(c, &offered, now))
                .map(|c| c.serial_hex.to_string());
            // Reference: preference = (family, latest notAfter); valid-now first, then any.
            let mut sorted = built.clone();
            sorted.sort_by(|a, b| a.family.cmp(&b.family).then(b.not_after.cmp(&a.not_after)));
            let fits = |c: &&Arc<ServingCert>| c.schemes.iter().any(|s| offered.contains(s));
            let want = sorted
                .iter()
                .filter(fits)
                .find(|c| c.not_before <= now && now <= c.not_after)
                .or_else(|| sorted.iter().find(fits))
                .map(|c| c.serial_hex.to_string());
            // Ties (same family and notAfter) may resolve either way; compare the keys instead.
            let key = |s: &Option<String>| s.as_ref().map(|id| {
                let c = &built[id.parse::<usize>().expect("id")];
                (c.family, c.not_after, c.valid_at(now))
            });
            prop_assert_eq!(key(&got), key(&want));
        }

        #[test]
        fn lookup_matches_reference(
            certs in prop::collection::vec(prop::collection::vec(name(), 1..4), 0..6),
            queries in prop::collection::vec(name(), 1..10),
        ) {
            let certs: Vec<(usize, Vec<String>)> = certs.into_iter().enumerate().collect();
            let index = NameIndex::build(certs.iter().map(|(i, n)| fake(*i, n)).collect());
            for q in queries.iter().filter(|q| !q.starts_with('*')) {
                let got: BTreeSet<usize> = index
                    .candidates(q)
                    .unwrap_or(&[])
                    .iter()
                    .map(|c| c.serial_hex.parse().expect("id"))
                    .collect();
                prop_assert_eq!(got, reference(&certs, q), "query {}", q);
            }
        }
    }
}
