//! The SNI index: server name -> certificates, built once per snapshot and read lock-free.
//!
//! Two hash maps (exact names, and wildcard parents keyed without their `*.`) make a lookup one
//! or two hash probes whatever the number of certificates. Names are normalised into a stack
//! buffer, so a lookup does not allocate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

/// Longest name accepted (a DNS name is at most 253 characters, plus a trailing dot).
const MAX_NAME: usize = 254;

struct Slot<T> {
    /// Best first: latest `notAfter` first.
    items: Box<[Arc<T>]>,
    /// `(notBefore, notAfter)` of each item, same order.
    validity: Box<[(SystemTime, SystemTime)]>,
}

impl<T> Slot<T> {
    fn valid_at(&self, now: SystemTime) -> Option<&Arc<T>> {
        self.validity
            .iter()
            .position(|(nb, na)| *nb <= now && now <= *na)
            .map(|i| &self.items[i])
    }
}

/// An immutable index from server names to values (certificates), generic so other crates can
/// reuse it for their own certificate types.
pub struct SniIndex<T> {
    exact: HashMap<Box<str>, Slot<T>>,
    wildcard: HashMap<Box<str>, Slot<T>>,
}

impl<T> Default for SniIndex<T> {
    fn default() -> Self {
        SniIndex {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }
}

impl<T> std::fmt::Debug for SniIndex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniIndex")
            .field("exact_names", &self.exact.len())
            .field("wildcard_names", &self.wildcard.len())
            .finish()
    }
}

impl<T> SniIndex<T> {
    /// Starts building an index.
    pub fn builder() -> SniIndexBuilder<T> {
        SniIndexBuilder {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }

    /// The best value for `server_name` at `now`: an exact match valid now, else a one-label
    /// wildcard match valid now, else the exact match with the latest `notAfter`, else the
    /// wildcard one. Case-insensitive; a trailing dot is ignored.
    pub fn lookup(&self, server_name: &str, now: SystemTime) -> Option<&Arc<T>> {
        let mut buf = [0u8; MAX_NAME];
        let name = normalize(server_name, &mut buf)?;
        let exact = self.exact.get(name);
        let wild = parent(name).and_then(|p| self.wildcard.get(p));
        exact
            .and_then(|s| s.valid_at(now))
            .or_else(|| wild.and_then(|s| s.valid_at(now)))
            .or_else(|| exact.and_then(|s| s.items.first()))
            .or_else(|| wild.and_then(|s| s.items.first()))
    }

    /// Every value for the best-matching name (exact if any, else wildcard), latest `notAfter`
    /// first. tls-acceptor uses it to choose among key types.
    pub fn candidates(&self, server_name: &str) -> &[Arc<T>] {
        let mut buf = [0u8; MAX_NAME];
        let Some(name) = normalize(server_name, &mut buf) else {
            return &[];
        };
        if let Some(s) = self.exact.get(name) {
            return &s.items;
        }
        parent(name)
            .and_then(|p| self.wildcard.get(p))
            .map_or(&[], |s| &s.items)
    }

    /// Number of distinct names (exact plus wildcard).
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    /// Whether no name is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Lowercases `name` into `buf` and strips one trailing dot; `None` for names too long to be DNS
/// names or empty.
fn normalize<'b>(name: &str, buf: &'b mut [u8; MAX_NAME]) -> Option<&'b str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let len = name.len();
    if len == 0 || len > MAX_NAME {
        return None;
    }
    let out = &mut buf[..len];
    out.copy_from_slice(name.as_bytes());
    out.make_ascii_lowercase();
    // Only ASCII bytes were changed, so the bytes are still valid UTF-8.
    std::str::from_utf8(out).ok()
}

/// `a.example.com` -> `example.com`; `None` when there is no parent or the first label is empty.
fn parent(name: &str) -> Option<&str> {
    let (first, rest) = name.split_once('.')?;
    (!first.is_empty() && !rest.is_empty()).then_some(rest)
}

/// Collects `(name, validity, value)` triples, then freezes them into a [`SniIndex`].
pub struct SniIndexBuilder<T> {
    exact: HashMap<String, Vec<(SystemTime, SystemTime, Arc<T>)>>,
    wildcard: HashMap<String, Vec<(SystemTime, SystemTime, Arc<T>)>>,
}

impl<T> SniIndexBuilder<T> {
    /// Indexes `value` under `name` (`*.example.com` for a wildcard). Names are normalised like
    /// lookups; a value inserted twice under one name is kept once.
    pub fn insert(
        &mut self,
        name: &str,
        not_before: SystemTime,
        not_after: SystemTime,
        value: &Arc<T>,
    ) {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        let (map, key) = match name.strip_prefix("*.") {
            Some(rest) if !rest.is_empty() => (&mut self.wildcard, rest.to_owned()),
            _ => (&mut self.exact, name),
        };
        if key.is_empty() || key.len() > MAX_NAME {
            return;
        }
        let slot = map.entry(key).or_default();
        if !slot.iter().any(|(_, _, v)| Arc::ptr_eq(v, value)) {
            slot.push((not_before, not_after, Arc::clone(value)));
        }
    }

    /// Freezes the index.
    pub fn build(self) -> SniIndex<T> {
        fn freeze<T>(
            m: HashMap<String, Vec<(SystemTime, SystemTime, Arc<T>)>>,
        ) -> HashMap<Box<str>, Slot<T>> {
            m.into_iter()
                .map(|(k, mut v)| {
                    // Stable: equal notAfter keeps insertion (file) order.
                    v.sort_by_key(|e| std::cmp::Reverse(e.1));
                    let validity = v.iter().map(|(nb, na, _)| (*nb, *na)).collect();
                    let items = v.into_iter().map(|(_, _, x)| x).collect();
                    (k.into_boxed_str(), Slot { items, validity })
                })
                .collect()
        }
        SniIndex {
            exact: freeze(self.exact),
            wildcard: freeze(self.wildcard),
        }
    }
}
