//! The Ingress half of a compiled table: virtual hosts and their flattened segment tries.
//!
//! Layout, chosen for the 100k-route case where the table is far larger than L2 and the cost
//! of a match is the number of distinct cache lines it touches:
//!
//! * the host picks a trie root through a [`HostTable`] (exact hosts, then wildcard suffixes,
//!   then the host-less root): one line per probe, key compared inline;
//! * all trie nodes of all hosts live in one `Vec<Node>` of 32-byte nodes laid out host by host
//!   in breadth-first order, so a virtual host's nodes are contiguous (a typical host with a
//!   handful of paths fits in 2–4 adjacent lines) and the children of a node are a contiguous
//!   run found by a short linear scan. Segments of up to 8 bytes are stored inline in the node
//!   ([`pack8`]), so comparing one is a length and a word compare; longer segments are compared
//!   against a side arena;
//! * a node carries the rank *and* the entry of the best Prefix path ending there and of the
//!   best Exact path equal to it, so the winner is known without another lookup;
//! * a node with more than [`LINEAR_MAX`] children (say a host-less root with thousands of
//!   paths) finds its child through one hash table keyed by (node, segment) instead.
//!
//! The walk is one step per request segment and the best rank seen along it wins (the longest
//! path, ties as the spec says: ranks come from [`Prepared`]); the Exact path counts only at the
//! node the whole path leads to.

use crate::eval::HostPat;
use crate::hash::FxMap;
use crate::hosts::{HostTable, pack8};
use crate::prepare::Prepared;
use crate::request::split_first_label;
use crate::scoped::ScopedMap;

/// "No rank" / "no entry": worse than every real rank.
pub(crate) const NONE: u32 = u32::MAX;
/// Children found by a linear scan; wider nodes use the (node, segment) hash table.
const LINEAR_MAX: usize = 8;
/// Longest segment stored inline in its node.
const INLINE_SEG: usize = 8;

/// One trie node: exactly half a cache line.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
struct Node {
    /// The segment leading here: [`pack8`] if at most [`INLINE_SEG`] bytes, else
    /// `arena offset << 32 | length`.
    seg: u64,
    /// Segment length, saturated at `u16::MAX`.
    seg_len: u16,
    /// Number of children, saturated; more than [`LINEAR_MAX`] means "look in `wide`".
    children: u16,
    /// Index of the first child (children are contiguous).
    first_child: u32,
    /// Rank and entry of the best Prefix path ending here ([`NONE`] if none).
    prefix: u32,
    prefix_entry: u32,
    /// Rank and entry of the best Exact path equal to this node's path.
    exact: u32,
    exact_entry: u32,
}

/// Virtual hosts and their tries (see the module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct IngressIndex {
    /// Trie root per precise host.
    exact_hosts: HostTable,
    /// Trie root per wildcard suffix (`*.a.com` -> `a.com`).
    wildcard_hosts: HostTable,
    /// Trie root of the host-less rules.
    any_host: Option<u32>,
    nodes: Vec<Node>,
    /// Bytes of segments longer than [`INLINE_SEG`].
    arena: Vec<u8>,
    /// (parent node, segment) -> child, for nodes with more than [`LINEAR_MAX`] children.
    wide: ScopedMap<u32>,
}

/// A node of the build-time trie.
struct RawNode<'p> {
    seg: &'p str,
    prefix: (u32, u32),
    exact: (u32, u32),
}

impl RawNode<'_> {
    fn new(seg: &str) -> RawNode<'_> {
        RawNode {
            seg,
            prefix: (NONE, NONE),
            exact: (NONE, NONE),
        }
    }
}

impl IngressIndex {
    pub(crate) fn build<B>(prepared: &Prepared<B>) -> IngressIndex {
        // 1. A build-time trie: nodes in creation order, edges in one map.
        let mut raw: Vec<RawNode<'_>> = Vec::with_capacity(prepared.paths.len() + 1);
        let mut edges: FxMap<(u32, &str), u32> = FxMap::default();
        edges.reserve(prepared.paths.len());
        let mut exact_roots: FxMap<&str, u32> = FxMap::default();
        let mut wildcard_roots: FxMap<&str, u32> = FxMap::default();
        let mut any_root = None;
        // Roots in creation order.
        let mut roots: Vec<u32> = Vec::new();
        for (rank, p) in prepared.paths.iter().enumerate() {
            let rank = rank as u32;
            let next = raw.len() as u32;
            let root = *match &p.host {
                HostPat::Any => any_root.get_or_insert(next),
                HostPat::Exact(h) => exact_roots.entry(h.as_str()).or_insert(next),
                HostPat::Wildcard(s) => wildcard_roots.entry(s.as_str()).or_insert(next),
            };
            if root == next {
                raw.push(RawNode::new(""));
                roots.push(root);
            }
            let path = if p.exact {
                p.written.as_str()
            } else {
                p.prefix()
            };
            let mut node = root;
            if let Some(rest) = path.strip_prefix('/') {
                for seg in rest.split('/') {
                    let next = raw.len() as u32;
                    node = *edges.entry((node, seg)).or_insert(next);
                    if node == next {
                        raw.push(RawNode::new(seg));
                    }
                }
            }
            let n = &mut raw[node as usize];
            if p.exact {
                if rank < n.exact.0 {
                    n.exact = (rank, p.entry);
                }
            } else if rank < n.prefix.0 {
                n.prefix = (rank, p.entry);
            }
        }
        // Every (parent, child) edge, children in creation order.
        let mut pairs: Vec<(u32, u32)> = edges
            .iter()
            .map(|(&(parent, _), &child)| (parent, child))
            .collect();
        drop(edges);
        pairs.sort_unstable();
        // Children of raw node `i` are `pairs[start[i]..start[i + 1]]`.
        let mut start = vec![0u32; raw.len() + 1];
        for &(parent, _) in &pairs {
            start[parent as usize + 1] += 1;
        }
        for i in 0..raw.len() {
            start[i + 1] += start[i];
        }

        // 2. Flatten host by host, breadth first.
        let mut ix = IngressIndex {
            nodes: Vec::with_capacity(raw.len()),
            ..IngressIndex::default()
        };
        let mut new_index = vec![NONE; raw.len()];
        // Raw id of each flattened node (the BFS queue is `nodes` itself).
        let mut raw_of: Vec<u32> = Vec::with_capacity(raw.len());
        for &root in &roots {
            new_index[root as usize] = ix.nodes.len() as u32;
            ix.push(&raw[root as usize]);
            raw_of.push(root);
            let mut q = ix.nodes.len() - 1;
            while q < ix.nodes.len() {
                let old = raw_of[q] as usize;
                let kids = &pairs[start[old] as usize..start[old + 1] as usize];
                let first = ix.nodes.len() as u32;
                ix.nodes[q].first_child = first;
                ix.nodes[q].children = kids.len().min(u16::MAX as usize) as u16;
                for &(_, child) in kids {
                    new_index[child as usize] = ix.nodes.len() as u32;
                    ix.push(&raw[child as usize]);
                    raw_of.push(child);
                }
                if kids.len() > LINEAR_MAX {
                    for (k, &(_, child)) in kids.iter().enumerate() {
                        *ix.wide
                            .get_or_insert_with(q as u32, raw[child as usize].seg, || 0) =
                            first + k as u32;
                    }
                }
                q += 1;
            }
        }
        ix.exact_hosts = HostTable::new(
            exact_roots
                .iter()
                .map(|(&h, &r)| (h, new_index[r as usize])),
        );
        ix.wildcard_hosts = HostTable::new(
            wildcard_roots
                .iter()
                .map(|(&s, &r)| (s, new_index[r as usize])),
        );
        ix.any_host = any_root.map(|r| new_index[r as usize]);
        ix
    }

    fn push(&mut self, raw: &RawNode<'_>) {
        let len = raw.seg.len();
        let seg = if len <= INLINE_SEG {
            pack8(raw.seg.as_bytes())
        } else {
            let at = self.arena.len() as u64;
            self.arena.extend_from_slice(raw.seg.as_bytes());
            (at << 32) | len as u64
        };
        self.nodes.push(Node {
            seg,
            seg_len: len.min(u16::MAX as usize) as u16,
            children: 0,
            first_child: 0,
            prefix: raw.prefix.0,
            prefix_entry: raw.prefix.1,
            exact: raw.exact.0,
            exact_entry: raw.exact.1,
        });
    }

    /// The trie root of the virtual host serving `host` (virtual host first).
    #[inline]
    fn select_vhost(&self, host: Option<&str>) -> Option<u32> {
        if let Some(h) = host {
            if let Some(n) = self.exact_hosts.get(h) {
                return Some(n);
            }
            if !self.wildcard_hosts.is_empty()
                && let Some((_, rest)) = split_first_label(h)
                && let Some(n) = self.wildcard_hosts.get(rest)
            {
                return Some(n);
            }
        }
        self.any_host
    }

    /// The child of node `at` reached by `seg`.
    #[inline]
    fn child(&self, at: u32, node: &Node, seg: &str) -> Option<u32> {
        let n = node.children as usize;
        if n == 0 {
            return None;
        }
        if n > LINEAR_MAX {
            return self.wide.get(at, seg).copied();
        }
        let first = node.first_child as usize;
        let kids = &self.nodes[first..first + n];
        let len = seg.len();
        let found = if len <= INLINE_SEG {
            let (w, l) = (pack8(seg.as_bytes()), len as u16);
            kids.iter().position(|k| k.seg_len == l && k.seg == w)
        } else {
            let l = len.min(u16::MAX as usize) as u16;
            kids.iter().position(|k| {
                let (at, klen) = ((k.seg >> 32) as usize, k.seg as u32 as usize);
                k.seg_len == l
                    && klen == len
                    && self.arena.get(at..at + klen) == Some(seg.as_bytes())
            })
        };
        found.map(|i| (first + i) as u32)
    }

    /// Entry of the winning Ingress path (or [`NONE`]): the best rank along the trie walk, plus
    /// the Exact path of the node the whole path leads to.
    #[inline]
    pub(crate) fn lookup(&self, host: Option<&str>, path: &str) -> u32 {
        let Some(mut at) = self.select_vhost(host) else {
            return NONE;
        };
        let mut node = &self.nodes[at as usize];
        let (mut best, mut entry) = (node.prefix, node.prefix_entry);
        if let Some(mut rest) = path.strip_prefix('/') {
            loop {
                let (seg, more) = match rest.as_bytes().iter().position(|&b| b == b'/') {
                    Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                    None => (rest, None),
                };
                match self.child(at, node, seg) {
                    Some(c) => {
                        at = c;
                        node = &self.nodes[c as usize];
                        if node.prefix < best {
                            (best, entry) = (node.prefix, node.prefix_entry);
                        }
                    }
                    None => return entry,
                }
                match more {
                    Some(r) => rest = r,
                    None => break,
                }
            }
            if node.exact < best {
                entry = node.exact_entry;
            }
        }
        entry
    }

    /// Number of trie nodes (all virtual hosts).
    pub(crate) fn nodes(&self) -> usize {
        self.nodes.len()
    }
}
