//! Validation and precedence: turns route specifications into routes sorted by the order in which
//! they win. Both the compiled table and the reference matcher are built from this, so they agree
//! on *what* wins by construction of the order, and the tests check that they agree on *whether*
//! each route matches.
//!
//! The precedence model (documented in the crate docs):
//! 1. **File (Traefik-rule) routes** first: highest `priority` wins; ties go to the
//!    lexicographically smaller router name (Traefik leaves ties undefined).
//! 2. **Ingress rule paths**, following the Kubernetes spec: the request's virtual host is chosen
//!    first (precise host, else one-label wildcard, else host-less rules) and a host that has
//!    rules never falls through to less specific ones; within it the longest path as written
//!    wins, `Exact` before `Prefix` at equal length, then the oldest Ingress, then
//!    `namespace/name`, then rule and path index.
//! 3. **Ingress `defaultBackend`s**: the oldest (then `namespace/name`) catches the rest.

use crate::hash::{FxMap, FxSet};
use std::cmp::{Ordering, Reverse};

use crate::error::RouterError;
use crate::eval::{Compiled, HostPat};
use crate::route::{
    FileRoute, IngressMatch, IngressOrigin, IngressRoute, PathType, RouteInfo, RouteSource, Warning,
};
use crate::rule::Rule;

/// A route's description (its backend is in [`Prepared::backends`] at the same index).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) info: RouteInfo,
}

/// A file route in rank order.
#[derive(Debug, Clone)]
pub(crate) struct PreparedFile {
    pub(crate) entry: u32,
    pub(crate) rule: Rule,
    pub(crate) compiled: Compiled,
    pub(crate) priority: i64,
}

/// An Ingress rule path in precedence order.
#[derive(Debug, Clone)]
pub(crate) struct PreparedPath {
    pub(crate) entry: u32,
    pub(crate) host: HostPat,
    pub(crate) exact: bool,
    /// The path as written (`/` for an empty ImplementationSpecific path).
    pub(crate) written: String,
    /// For prefixes: the length of the written path minus one trailing `/` (0 = everything).
    pub(crate) prefix_len: usize,
}

impl PreparedPath {
    /// The written path minus one trailing `/` (empty = everything).
    pub(crate) fn prefix(&self) -> &str {
        &self.written[..self.prefix_len]
    }

    /// The spec's path test (reference form, used by the reference matcher and `explain`).
    pub(crate) fn path_matches(&self, path: &str) -> bool {
        if self.exact {
            return path == self.written;
        }
        let p = self.prefix();
        p.is_empty()
            || path == p
            || (path.len() > p.len() && path.starts_with(p) && path.as_bytes()[p.len()] == b'/')
    }
}

/// Everything a table is made of, in precedence order.
#[derive(Debug, Clone)]
pub(crate) struct Prepared<B> {
    pub(crate) entries: Vec<Entry>,
    /// Backends by entry, apart from the descriptions: the hot path reads only these, so they
    /// stay dense (at 100k routes a `u32`/`Arc` backend array is a few hundred KiB, the
    /// descriptions many MiB).
    pub(crate) backends: Vec<B>,
    pub(crate) file: Vec<PreparedFile>,
    pub(crate) paths: Vec<PreparedPath>,
    pub(crate) defaults: Vec<u32>,
    pub(crate) warnings: Vec<Warning>,
}

type AgeKey<'a> = (bool, Option<k8s_openapi::jiff::Timestamp>, &'a str, &'a str);

fn age(o: &IngressOrigin) -> AgeKey<'_> {
    (o.created.is_none(), o.created, &o.namespace, &o.name)
}

fn describe_path(host: &HostPat, path_type: PathType, written: &str) -> String {
    let kind = match path_type {
        PathType::ImplementationSpecific => "ImplementationSpecific (as Prefix)",
        PathType::Exact => "Exact",
        PathType::Prefix => "Prefix",
    };
    format!("host {host}, path `{written}` {kind}")
}

impl<B> Prepared<B> {
    pub(crate) fn new(
        file_routes: Vec<FileRoute<B>>,
        ingress_routes: Vec<IngressRoute<B>>,
    ) -> Result<Prepared<B>, RouterError> {
        if file_routes.len() + ingress_routes.len() >= u32::MAX as usize {
            return Err(RouterError::Router {
                router: String::new(),
                message: "too many routes (at most 2^32 - 1)".into(),
            });
        }
        let mut entries = Vec::with_capacity(file_routes.len() + ingress_routes.len());
        let mut backends = Vec::with_capacity(file_routes.len() + ingress_routes.len());
        let mut warnings = Vec::new();

        // 1. File routes, ranked by (priority desc, name, insertion order).
        let mut file = Vec::with_capacity(file_routes.len());
        for route in file_routes {
            let compiled = Compiled::new(&route.rule).map_err(|e| RouterError::Router {
                router: route.name.clone(),
                message: e.to_string(),
            })?;
            let entry = entries.len() as u32;
            entries.push(Entry {
                info: RouteInfo {
                    source: RouteSource::File { router: route.name },
                    rule: route.rule_text,
                    priority: Some(route.priority),
                },
            });
            backends.push(route.backend);
            file.push(PreparedFile {
                entry,
                rule: route.rule,
                compiled,
                priority: route.priority,
            });
        }
        let name = |f: &PreparedFile| match &entries[f.entry as usize].info.source {
            RouteSource::File { router } => router.as_str(),
            _ => "",
        };
        let mut names: FxSet<&str> = FxSet::default();
        names.reserve(file.len());
        if let Some(dup) = file.iter().map(name).find(|n| !names.insert(n)) {
            return Err(RouterError::Router {
                router: dup.to_owned(),
                message: "duplicate router name".into(),
            });
        }
        drop(names);
        // Sort contiguous (cheap key, index) pairs; the full key (which chases the name
        // string) is compared only when the cheap one ties.
        let mut sortable: Vec<((Reverse<i64>, u128), usize)> = file
            .iter()
            .enumerate()
            .map(|(i, f)| ((Reverse(f.priority), prefix_key(name(f))), i))
            .collect();
        sortable.sort_unstable_by(|(ka, a), (kb, b)| {
            ka.cmp(kb).then_with(|| {
                let (fa, fb) = (&file[*a], &file[*b]);
                (Reverse(fa.priority), name(fa))
                    .cmp(&(Reverse(fb.priority), name(fb)))
                    .then(a.cmp(b))
            })
        });
        let order: Vec<usize> = sortable.into_iter().map(|(_, i)| i).collect();
        let file = permute(file, &order);

        // 2. Ingress paths and default backends.
        let mut paths = Vec::new();
        let mut path_keys: Vec<PathKey> = Vec::new();
        let mut defaults: Vec<(u32, IngressOrigin)> = Vec::new();
        for route in ingress_routes {
            let IngressRoute {
                origin,
                matcher,
                backend,
            } = route;
            let entry = entries.len() as u32;
            match matcher {
                IngressMatch::DefaultBackend => {
                    entries.push(Entry {
                        info: RouteInfo {
                            source: RouteSource::IngressDefaultBackend {
                                namespace: origin.namespace.clone(),
                                name: origin.name.clone(),
                            },
                            rule: "defaultBackend".into(),
                            priority: None,
                        },
                    });
                    backends.push(backend);
                    defaults.push((entry, origin));
                }
                IngressMatch::Path {
                    rule_index,
                    path_index,
                    host,
                    path_type,
                    path,
                } => {
                    let source = RouteSource::Ingress {
                        namespace: origin.namespace.clone(),
                        name: origin.name.clone(),
                        rule_index,
                        path_index,
                    };
                    let raw_host = host.unwrap_or_default();
                    let Some(host) = HostPat::parse(&raw_host).filter(|h| {
                        // A lone `*` is not a valid Ingress host (only `*.suffix`).
                        !matches!(h, HostPat::Any) || raw_host.trim().is_empty()
                    }) else {
                        warnings.push(Warning {
                            subject: source.to_string(),
                            message: format!("invalid host `{raw_host}` (a wildcard must be a whole first label, `*.example.com`); path skipped"),
                        });
                        continue;
                    };
                    let written =
                        if path.is_empty() && path_type == PathType::ImplementationSpecific {
                            "/".to_owned()
                        } else {
                            path
                        };
                    if !written.starts_with('/') {
                        warnings.push(Warning {
                            subject: source.to_string(),
                            message: format!(
                                "path `{written}` does not start with `/`; path skipped"
                            ),
                        });
                        continue;
                    }
                    let exact = path_type.is_exact();
                    let prefix_len = written.strip_suffix('/').unwrap_or(&written).len();
                    entries.push(Entry {
                        info: RouteInfo {
                            source,
                            rule: describe_path(&host, path_type, &written),
                            priority: None,
                        },
                    });
                    backends.push(backend);
                    path_keys.push(PathKey {
                        len: written.len(),
                        exact,
                        origin,
                        rule_index,
                        path_index,
                        path_type,
                    });
                    paths.push(PreparedPath {
                        entry,
                        host,
                        exact,
                        written,
                        prefix_len,
                    });
                }
            }
        }
        // As above: contiguous cheap keys first (length, kind, age, 16-byte prefixes of
        // namespace and name), the full comparison only on ties. Keeps 100k-route builds fast.
        let mut sortable: Vec<(FastPathKey, usize)> = path_keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.fast(), i))
            .collect();
        sortable.sort_unstable_by(|(ka, a), (kb, b)| {
            ka.cmp(kb)
                .then_with(|| path_keys[*a].cmp(&path_keys[*b]))
                .then(a.cmp(b))
        });
        let order: Vec<usize> = sortable.into_iter().map(|(_, i)| i).collect();
        // Collisions: the same (host, pathType, path) more than once; the first in order wins.
        let mut seen: FxMap<(&HostPat, bool, &str), usize> = FxMap::default();
        seen.reserve(paths.len());
        for &i in &order {
            let p = &paths[i];
            let exact = path_keys[i].path_type.is_exact();
            if let Some(&winner) = seen.get(&(&p.host, exact, p.written.as_str())) {
                let w = &path_keys[winner];
                let l = &path_keys[i];
                let why =
                    if w.origin.namespace == l.origin.namespace && w.origin.name == l.origin.name {
                        "listed earlier in the same Ingress".to_owned()
                    } else if w.origin.created != l.origin.created {
                        "older creationTimestamp".to_owned()
                    } else {
                        "same age; namespace/name sorts first".to_owned()
                    };
                warnings.push(Warning {
                    subject: entries[p.entry as usize].info.source.to_string(),
                    message: format!(
                        "{} collides with {} and loses ({why})",
                        entries[p.entry as usize].info.rule,
                        entries[paths[winner].entry as usize].info.source
                    ),
                });
            } else {
                seen.insert((&p.host, exact, p.written.as_str()), i);
            }
        }
        drop(seen);
        let paths = permute(paths, &order);

        defaults.sort_by(|a, b| age(&a.1).cmp(&age(&b.1)).then(a.0.cmp(&b.0)));
        if let Some((winner, _)) = defaults.first() {
            for (loser, _) in defaults.iter().skip(1) {
                warnings.push(Warning {
                    subject: entries[*loser as usize].info.source.to_string(),
                    message: format!(
                        "collides with {} (only one defaultBackend serves; the oldest wins)",
                        entries[*winner as usize].info.source
                    ),
                });
            }
        }
        let defaults = defaults.into_iter().map(|(e, _)| e).collect();
        Ok(Prepared {
            entries,
            backends,
            file,
            paths,
            defaults,
            warnings,
        })
    }
}

/// An Ingress path's precedence key (the rank order, before the insertion index).
#[derive(Debug)]
struct PathKey {
    len: usize,
    exact: bool,
    origin: IngressOrigin,
    rule_index: usize,
    path_index: usize,
    path_type: PathType,
}

/// The cheap part of a [`PathKey`]: fixed-size, compared without chasing strings.
type FastPathKey = (Reverse<usize>, bool, AgeKeyFast);

/// (no timestamp, timestamp, namespace prefix, namespace length capped at 17, name prefix if
/// the namespace fits in its prefix else 0).
type AgeKeyFast = (
    bool,
    Option<k8s_openapi::jiff::Timestamp>,
    u128,
    usize,
    u128,
);

impl PathKey {
    /// The full order: longest written path, `Exact` first, oldest, then indexes.
    fn cmp(&self, other: &PathKey) -> Ordering {
        (
            Reverse(self.len),
            !self.exact,
            age(&self.origin),
            self.rule_index,
            self.path_index,
        )
            .cmp(&(
                Reverse(other.len),
                !other.exact,
                age(&other.origin),
                other.rule_index,
                other.path_index,
            ))
    }

    /// Whenever two fast keys differ, they order like [`PathKey::cmp`]; equal fast keys need
    /// the full comparison.
    fn fast(&self) -> FastPathKey {
        (Reverse(self.len), !self.exact, age_fast(&self.origin))
    }
}

/// A fixed-size prefix of [`age`]: ordered consistently with it whenever the two differ. The
/// name only counts when the namespace is short enough to be decided by its prefix and length
/// (a zero-padded prefix tie between strings of at most 16 bytes is decided by length).
fn age_fast(o: &IngressOrigin) -> AgeKeyFast {
    let ns_short = o.namespace.len() <= 16;
    (
        o.created.is_none(),
        o.created,
        prefix_key(&o.namespace),
        o.namespace.len().min(17),
        if ns_short { prefix_key(&o.name) } else { 0 },
    )
}

/// The first 16 bytes of `s`, big-endian, zero-padded: ordering these agrees with ordering the
/// strings whenever they differ (equal prefixes need the full comparison).
fn prefix_key(s: &str) -> u128 {
    let mut b = [0u8; 16];
    let n = s.len().min(16);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    u128::from_be_bytes(b)
}

fn permute<T>(items: Vec<T>, order: &[usize]) -> Vec<T> {
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    order
        .iter()
        .map(|&i| slots[i].take().expect("permutation"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Strings that share 16-byte prefixes, straddle the 16-byte limit and contain NULs.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ab]{0,3}",
            "[ab\u{0}]{14,18}",
            "aaaaaaaaaaaaaaa[ab\u{0}]{0,3}",
            proptest::sample::select(&["", "a", "b", "aaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaab"][..])
                .prop_map(str::to_owned),
        ]
    }

    /// Namespaces that tie on their 16-byte prefix (so only the full comparison decides).
    const NAMESPACES: [&str; 5] = [
        "aaaaaaaaaaaaaaaa",
        "aaaaaaaaaaaaaaaab",
        "aaaaaaaaaaaaaaaac",
        "aaaaaaaaaaaaaaaa\u{0}",
        "aaaaaaaaaaaaaaaabb",
    ];

    fn key() -> impl Strategy<Value = PathKey> {
        (
            0usize..2,
            any::<bool>(),
            proptest::option::of(0i64..2),
            prop_oneof![
                text(),
                proptest::sample::select(&NAMESPACES[..]).prop_map(str::to_owned)
            ],
            text(),
            0usize..2,
            0usize..2,
        )
            .prop_map(
                |(len, exact, created, namespace, name, rule_index, path_index)| PathKey {
                    len,
                    exact,
                    origin: IngressOrigin {
                        namespace,
                        name,
                        created: created
                            .map(|s| k8s_openapi::jiff::Timestamp::from_second(s).unwrap()),
                    },
                    rule_index,
                    path_index,
                    path_type: PathType::Prefix,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The fast key never contradicts the full precedence order.
        #[test]
        fn fast_key_agrees_with_full_order(a in key(), b in key()) {
            let (fa, fb) = (a.fast(), b.fast());
            if fa != fb {
                prop_assert_eq!(fa.cmp(&fb), a.cmp(&b));
            }
            let (pa, pb) = (prefix_key(&a.origin.name), prefix_key(&b.origin.name));
            if pa != pb {
                prop_assert_eq!(pa.cmp(&pb), a.origin.name.cmp(&b.origin.name));
            }
        }
    }
}
