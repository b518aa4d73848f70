//! A string-keyed map partitioned by a numeric scope, looked up with a borrowed `&str`.
//!
//! One such map holds every edge of every per-host path trie (scope = parent node), so a table
//! with 100k routes has one large hash table instead of 100k small ones: faster to build, and a
//! lookup is one probe keyed by `(scope, hash(key))` whose slot holds the key and value inline
//! (one key comparison to confirm). Lookups borrow the request's segments: no allocation.
//! Distinct keys whose 64-bit hashes collide within a scope are kept in a spill list.

use std::collections::hash_map::Entry;
use std::marker::PhantomData;

use crate::hash::{FxMap, hash_str};

/// How keys are hashed (a type parameter so tests can force collisions).
pub(crate) trait KeyHash {
    fn hash(key: &str) -> u64;
}

/// The production key hash.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FxKey;

impl KeyHash for FxKey {
    #[inline]
    fn hash(key: &str) -> u64 {
        hash_str(key)
    }
}

/// Longest key stored inline in its slot (longer keys live on the heap).
const INLINE: usize = 30;

/// A key stored inline when short, so confirming a probe usually touches only the slot's own
/// cache line instead of chasing a pointer (hostnames and path segments are mostly short).
#[derive(Debug, Clone)]
enum Key {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Key {
    fn new(s: &str) -> Key {
        if s.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Key::Inline {
                len: s.len() as u8,
                bytes,
            }
        } else {
            Key::Heap(s.as_bytes().into())
        }
    }

    #[inline]
    fn is(&self, other: &str) -> bool {
        match self {
            Key::Inline { len, bytes } => &bytes[..*len as usize] == other.as_bytes(),
            Key::Heap(b) => **b == *other.as_bytes(),
        }
    }
}

#[derive(Debug, Clone)]
struct Slot<V> {
    key: Key,
    value: V,
    /// Another key with the same (scope, hash) lives in `spill`.
    collided: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct ScopedMap<V, H = FxKey> {
    map: FxMap<(u32, u64), Slot<V>>,
    spill: Vec<(u32, Box<str>, V)>,
    hash: PhantomData<H>,
}

impl<V, H> Default for ScopedMap<V, H> {
    fn default() -> Self {
        ScopedMap {
            map: FxMap::default(),
            spill: Vec::new(),
            hash: PhantomData,
        }
    }
}

impl<V, H: KeyHash> ScopedMap<V, H> {
    #[inline]
    pub(crate) fn get(&self, scope: u32, key: &str) -> Option<&V> {
        let slot = self.map.get(&(scope, H::hash(key)))?;
        if slot.key.is(key) {
            return Some(&slot.value);
        }
        if !slot.collided {
            return None;
        }
        self.spill
            .iter()
            .find(|(s, k, _)| *s == scope && &**k == key)
            .map(|(_, _, v)| v)
    }

    /// The value for (scope, key), inserting `make()` first if absent.
    pub(crate) fn get_or_insert_with(
        &mut self,
        scope: u32,
        key: &str,
        make: impl FnOnce() -> V,
    ) -> &mut V {
        match self.map.entry((scope, H::hash(key))) {
            Entry::Vacant(v) => {
                &mut v
                    .insert(Slot {
                        key: Key::new(key),
                        value: make(),
                        collided: false,
                    })
                    .value
            }
            Entry::Occupied(o) => {
                let slot = o.into_mut();
                if slot.key.is(key) {
                    return &mut slot.value;
                }
                slot.collided = true;
                let at = match self
                    .spill
                    .iter()
                    .position(|(s, k, _)| *s == scope && &**k == key)
                {
                    Some(at) => at,
                    None => {
                        self.spill.push((scope, key.into(), make()));
                        self.spill.len() - 1
                    }
                };
                &mut self.spill[at].2
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_separate() {
        let mut m: ScopedMap<i32> = ScopedMap::default();
        *m.get_or_insert_with(1, "a", || 0) = 10;
        *m.get_or_insert_with(2, "a", || 0) = 20;
        *m.get_or_insert_with(1, "a", || 0) += 1;
        assert_eq!(m.get(1, "a"), Some(&11));
        assert_eq!(m.get(2, "a"), Some(&20));
        assert_eq!(m.get(3, "a"), None);
        assert_eq!(m.get(1, "b"), None);
        let long = "x".repeat(INLINE + 5);
        *m.get_or_insert_with(1, &long, || 0) = 5;
        assert_eq!(m.get(1, &long), Some(&5));
        assert_eq!(m.get(1, &long[..INLINE]), None);
    }

    struct Colliding;
    impl KeyHash for Colliding {
        fn hash(_: &str) -> u64 {
            7
        }
    }

    #[test]
    fn colliding_keys_stay_distinct() {
        let mut m: ScopedMap<u32, Colliding> = ScopedMap::default();
        for (i, k) in ["a", "b", "c", "a/b"].iter().enumerate() {
            *m.get_or_insert_with(1, k, || 0) = i as u32 + 1;
        }
        *m.get_or_insert_with(2, "b", || 0) = 20;
        *m.get_or_insert_with(1, "c", || 0) += 10;
        assert_eq!(m.get(1, "a"), Some(&1));
        assert_eq!(m.get(1, "b"), Some(&2));
        assert_eq!(m.get(1, "c"), Some(&13));
        assert_eq!(m.get(1, "a/b"), Some(&4));
        assert_eq!(m.get(2, "b"), Some(&20));
        assert_eq!(m.get(2, "a"), None);
        assert_eq!(m.get(1, "d"), None);
    }
}
