//! An open-addressing table from normalised host names to a `u32`, laid out so that a lookup
//! usually touches one cache line.
//!
//! Why not `HashMap<String, _>` or [`ScopedMap`](crate::scoped::ScopedMap): at 100k routes
//! (20k hosts) the host map no longer fits in L2, so every lookup pays for each cache line it
//! touches. A SwissTable probe touches the control bytes and then the slot, and a heap key a
//! third line. Here a slot is 32 bytes (two per line) and holds, inline, a 16-bit hash tag, the
//! key's length, the value and the key itself packed into three words ([`pack`]), so the probe,
//! the tag check and the full key comparison all read the same line. Hostnames of up to 24
//! bytes (`app-12345.example.com`) are inline; longer ones are compared against a side arena.
//!
//! Keys are operator configuration, so the table is built once and never mutated; the load
//! factor stays at or below one half, which keeps linear-probing runs short whatever the
//! request's host.

use crate::hash::hash_str;

/// Longest key stored inline in its slot.
pub(crate) const INLINE_KEY: usize = 24;
/// Marks a free slot (the value of an occupied slot is never this).
const EMPTY: u32 = u32::MAX;
/// Odd 64-bit multiplier (from FxHash) for [`hash_packed`].
const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

#[inline]
fn load_u32(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u64::from(u32::from_le_bytes(w))
}

#[inline]
fn load_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Packs at most 8 bytes into one word with fixed-size (possibly overlapping) loads, so no
/// `memcmp`/`memcpy` call is needed: for two keys of the **same length**, the words are equal
/// iff the keys are. (Lengths 4..=8 read bytes `0..4` and `n-4..n`, which cover the key; lengths
/// 1..=3 read bytes `0`, `n/2` and `n-1`, which are all of them.)
#[inline]
pub(crate) fn pack8(b: &[u8]) -> u64 {
    let n = b.len();
    debug_assert!(n <= 8);
    if n >= 4 {
        load_u32(b, 0) | (load_u32(b, n - 4) << 32)
    } else if n > 0 {
        u64::from(b[0]) | (u64::from(b[n / 2]) << 8) | (u64::from(b[n - 1]) << 16)
    } else {
        0
    }
}

/// Packs at most [`INLINE_KEY`] bytes into three words; same-length keys are equal iff their
/// packs are (the loads cover every byte, see [`pack8`]).
#[inline]
pub(crate) fn pack(b: &[u8]) -> [u64; 3] {
    let n = b.len();
    debug_assert!(n <= INLINE_KEY);
    if n >= 16 {
        [load_u64(b, 0), load_u64(b, 8), load_u64(b, n - 8)]
    } else if n >= 8 {
        [load_u64(b, 0), load_u64(b, n - 8), 0]
    } else {
        [pack8(b), 0, 0]
    }
}

/// Hash of a packed key: three multiply-rotate rounds over words already in registers.
#[inline]
fn hash_packed(n: usize, w: &[u64; 3]) -> u64 {
    let mut h = (w[0] ^ n as u64).wrapping_mul(K);
    h = (h.rotate_left(26) ^ w[1]).wrapping_mul(K);
    h = (h.rotate_left(26) ^ w[2]).wrapping_mul(K);
    h
}

/// The probe key of one lookup: hash, tag+length word and packed key, computed once.
#[derive(Clone, Copy)]
struct Probe {
    hash: u64,
    meta: u32,
    words: [u64; 3],
}

impl Probe {
    #[inline]
    fn new(key: &str) -> Probe {
        let n = key.len();
        let (hash, words) = if n <= INLINE_KEY {
            let words = pack(key.as_bytes());
            (hash_packed(n, &words), words)
        } else {
            // Long keys: `words` unused (compared against the arena).
            (hash_str(key), [0; 3])
        };
        // The multiply's high bits are the well-mixed ones: the top 20 pick the slot, bits
        // 24..40 are the tag. The low 16 bits of `meta` are the length (saturated; long keys
        // also compare their full length).
        let tag = ((hash >> 24) as u32) << 16;
        Probe {
            hash,
            meta: tag | n.min(0xffff) as u32,
            words,
        }
    }

    #[inline]
    fn start(&self, mask: usize) -> usize {
        self.hash.rotate_left(20) as usize & mask
    }
}

/// One slot: exactly half a cache line.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
struct Slot {
    /// Hash tag (high 16 bits) and saturated key length (low 16 bits).
    meta: u32,
    /// The value, or [`EMPTY`].
    value: u32,
    /// The packed key, or for a long key `[arena offset, full length, 0]`.
    key: [u64; 3],
}

const FREE: Slot = Slot {
    meta: 0,
    value: EMPTY,
    key: [0; 3],
};

/// An immutable host → `u32` map (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct HostTable {
    slots: Box<[Slot]>,
    mask: usize,
    /// Bytes of the keys longer than [`INLINE_KEY`].
    arena: Box<[u8]>,
    len: usize,
}

impl Default for HostTable {
    fn default() -> Self {
        HostTable::new(std::iter::empty::<(&str, u32)>())
    }
}

impl HostTable {
    /// Builds the table. Keys must be distinct; values must not be `u32::MAX`.
    pub(crate) fn new<'k>(entries: impl IntoIterator<Item = (&'k str, u32)>) -> HostTable {
        let entries: Vec<(&str, u32)> = entries.into_iter().collect();
        // Load factor <= 1/2 (and at least one free slot, so probing always stops).
        let cap = (entries.len() * 2).max(2).next_power_of_two();
        let mut slots = vec![FREE; cap].into_boxed_slice();
        let mask = cap - 1;
        let mut arena = Vec::new();
        for &(key, value) in &entries {
            assert_ne!(value, EMPTY, "HostTable values must not be u32::MAX");
            let bytes = key.as_bytes();
            let probe = Probe::new(key);
            let stored = if bytes.len() <= INLINE_KEY {
                probe.words
            } else {
                let at = arena.len() as u64;
                arena.extend_from_slice(bytes);
                [at, bytes.len() as u64, 0]
            };
            let mut i = probe.start(mask);
            while slots[i].value != EMPTY {
                debug_assert!(
                    !(slots[i].meta == probe.meta
                        && key_eq(&slots[i], bytes, &probe.words, &arena)),
                    "duplicate host key {key:?}"
                );
                i = (i + 1) & mask;
            }
            slots[i] = Slot {
                meta: probe.meta,
                value,
                key: stored,
            };
        }
        HostTable {
            slots,
            mask,
            arena: arena.into_boxed_slice(),
            len: entries.len(),
        }
    }

    /// The value stored for `key`.
    #[inline]
    pub(crate) fn get(&self, key: &str) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let bytes = key.as_bytes();
        let probe = Probe::new(key);
        let mut i = probe.start(self.mask);
        loop {
            let slot = &self.slots[i];
            if slot.value == EMPTY {
                return None;
            }
            if slot.meta == probe.meta && key_eq(slot, bytes, &probe.words, &self.arena) {
                return Some(slot.value);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Number of keys.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the table has no keys.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Whether `slot` (whose `meta` already matched, so the lengths agree up to saturation) holds
/// `key`.
#[inline]
fn key_eq(slot: &Slot, key: &[u8], words: &[u64; 3], arena: &[u8]) -> bool {
    if key.len() <= INLINE_KEY {
        slot.key == *words
    } else {
        let (at, len) = (slot.key[0] as usize, slot.key[1] as usize);
        len == key.len() && arena.get(at..at + len) == Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn pack_distinguishes_same_length_keys() {
        let keys = [
            "",
            "a",
            "b",
            "ab",
            "ba",
            "abc",
            "acb",
            "abcd",
            "abce",
            "abcdefgh",
            "abcdefgi",
            "xbcdefgh",
            "abcdefghi",
            "abcdefghj",
            "abcdefghijklmnop",
            "abcdefghijklmnoq",
            "abcdefghijklmnopqrstuvwx",
            "abcdefghijklmnopqrstuvwy",
            "bbcdefghijklmnopqrstuvwx",
        ];
        for a in keys {
            for b in keys {
                if a.len() == b.len() {
                    assert_eq!(pack(a.as_bytes()) == pack(b.as_bytes()), a == b, "{a} {b}");
                }
            }
        }
    }

    #[test]
    fn empty_and_long_keys() {
        let long = "x".repeat(300);
        let t = HostTable::new([("a.com", 1), (long.as_str(), 2)]);
        assert_eq!(t.get("a.com"), Some(1));
        assert_eq!(t.get(&long), Some(2));
        assert_eq!(t.get(&long[..299]), None);
        assert_eq!(t.get(""), None);
        assert_eq!(HostTable::default().get("a.com"), None);
        assert!(HostTable::default().is_empty());
        assert_eq!(t.len(), 2);
    }

    /// Keys from a tiny alphabet and every length around the inline/packing boundaries, so
    /// near-identical keys are common.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ab.]{0,10}",
            "[ab.]{14,18}",
            "[ab.]{22,27}",
            "[ab]{1,3}\\.example\\.com",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The compiled table answers exactly like a `HashMap` for stored and absent keys.
        #[test]
        fn agrees_with_hashmap(
            keys in proptest::collection::vec(key(), 0..64),
            probes in proptest::collection::vec(key(), 0..64),
        ) {
            let mut reference = HashMap::new();
            for (i, k) in keys.iter().enumerate() {
                reference.entry(k.clone()).or_insert(i as u32);
            }
            let table = HostTable::new(reference.iter().map(|(k, &v)| (k.as_str(), v)));
            prop_assert_eq!(table.len(), reference.len());
            for k in keys.iter().chain(&probes) {
                prop_assert_eq!(table.get(k), reference.get(k).copied(), "key {:?}", k);
            }
        }

        /// Same-length keys pack equal iff they are equal.
        #[test]
        fn pack_is_injective_per_length(a in "[ab]{0,24}", b in "[ab]{0,24}") {
            if a.len() == b.len() {
                prop_assert_eq!(pack(a.as_bytes()) == pack(b.as_bytes()), a == b);
            }
        }
    }
}
