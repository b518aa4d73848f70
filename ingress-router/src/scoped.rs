//! A string-keyed map partitioned by a numeric scope, looked up with a borrowed `&str`.
//!
//! One such map holds every edge of every per-host path trie (scope = parent node) and every
//! exact path of every host (scope = host id), so a table with 100k routes has a handful of large
//! hash tables instead of 100k small ones: faster to build and to look up, and lookups borrow the
//! request's segments without allocating.

use crate::hash::{FxMap, hash_str};

const NONE: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Slot<V> {
    scope: u32,
    key: Box<str>,
    value: V,
    /// Next slot with the same (scope, hash): collisions are chained, never merged.
    next: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct ScopedMap<V> {
    index: FxMap<(u32, u64), u32>,
    slots: Vec<Slot<V>>,
}

impl<V> Default for ScopedMap<V> {
    fn default() -> Self {
        ScopedMap {
            index: FxMap::default(),
            slots: Vec::new(),
        }
    }
}

impl<V> ScopedMap<V> {
    #[inline]
    pub(crate) fn get(&self, scope: u32, key: &str) -> Option<&V> {
        let mut i = *self.index.get(&(scope, hash_str(key)))?;
        loop {
            let slot = &self.slots[i as usize];
            if slot.scope == scope && &*slot.key == key {
                return Some(&slot.value);
            }
            if slot.next == NONE {
                return None;
            }
            i = slot.next;
        }
    }

    /// The value for (scope, key), inserting `make()` first if absent.
    pub(crate) fn get_or_insert_with(
        &mut self,
        scope: u32,
        key: &str,
        make: impl FnOnce() -> V,
    ) -> &mut V {
        let h = hash_str(key);
        let new_index = u32::try_from(self.slots.len()).expect("fewer than 2^32 keys");
        match self.index.get(&(scope, h)).copied() {
            None => {
                self.index.insert((scope, h), new_index);
            }
            Some(mut i) => loop {
                let slot = &self.slots[i as usize];
                if slot.scope == scope && &*slot.key == key {
                    return &mut self.slots[i as usize].value;
                }
                if slot.next == NONE {
                    self.slots[i as usize].next = new_index;
                    break;
                }
                i = slot.next;
            },
        }
        self.slots.push(Slot {
            scope,
            key: key.into(),
            value: make(),
            next: NONE,
        });
        &mut self.slots.last_mut().expect("just pushed").value
    }

    pub(crate) fn reserve(&mut self, n: usize) {
        self.index.reserve(n);
        self.slots.reserve(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_separate() {
        let mut m = ScopedMap::default();
        *m.get_or_insert_with(1, "a", || 0) = 10;
        *m.get_or_insert_with(2, "a", || 0) = 20;
        *m.get_or_insert_with(1, "a", || 0) += 1;
        assert_eq!(m.get(1, "a"), Some(&11));
        assert_eq!(m.get(2, "a"), Some(&20));
        assert_eq!(m.get(3, "a"), None);
        assert_eq!(m.get(1, "b"), None);
    }
}
