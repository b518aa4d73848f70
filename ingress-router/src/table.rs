//! The compiled, immutable route table.
//!
//! Layout (see the crate docs for the precedence model it implements):
//!
//! * **File (Traefik-rule) routes**, ranked by priority. Every rule whose disjunctive normal form
//!   is made only of `Host`/`Path`/`PathPrefix` conjunctions (at most one of each per
//!   conjunction, at most 16 conjunctions) is put into indexes: per host bucket (exact-host map,
//!   one-label wildcard-suffix map, host-less bucket) an exact-path map and a map of path
//!   prefixes probed at each distinct prefix length (character-wise, as Traefik). Each index
//!   answers "the best-ranked rule of mine that matches", so the best of the buckets is the
//!   best indexed rule. The remaining rules (regexps, headers, methods, queries, client IPs,
//!   negations) sit in a rank-ordered list that is scanned only while its ranks can still beat
//!   the indexed candidate. First match by rank is thus preserved exactly.
//! * **Ingress paths**: exact-host map, wildcard-suffix map and host-less virtual host; per
//!   virtual host a segment-wise trie whose nodes carry the best Prefix path ending there and
//!   the best Exact path equal to the node's path (so the exact-path map is folded into the
//!   trie: a path is `Exact`-equal iff the walk consumes every segment). The best rank along the
//!   walk is the longest path (ties as the spec says). The tries are flattened host by host
//!   into one array of 32-byte nodes so a match touches few cache lines (see [`crate::trie`]).
//! * **Ingress default backend**: the oldest.

use crate::RouterError;
use crate::eval::{HostPat, Normalized};
use crate::explain::{Explanation, explain};
use crate::hash::FxMap;
use crate::hosts::{HostTable, pack8};
use crate::prepare::Prepared;
use crate::request::{MAX_HOST, RequestView, normalize_host, split_first_label};
use crate::route::{FileRoute, IngressRoute, Matched, Warning};
use crate::rule::{Matcher, Rule};
use crate::scoped::ScopedMap;
use crate::trie::IngressIndex;

/// "No rank": worse than every real rank.
use crate::trie::NONE;
/// Largest DNF expansion of one rule that still goes into the indexes.
const MAX_CONJUNCTIONS: usize = 16;

/// Collects routes and builds a [`Table`].
#[derive(Debug, Clone)]
pub struct TableBuilder<B> {
    file: Vec<FileRoute<B>>,
    ingress: Vec<IngressRoute<B>>,
}

impl<B> Default for TableBuilder<B> {
    fn default() -> Self {
        TableBuilder {
            file: Vec::new(),
            ingress: Vec::new(),
        }
    }
}

impl<B> TableBuilder<B> {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file-provider (Traefik rule) route.
    pub fn file_route(&mut self, route: FileRoute<B>) -> &mut Self {
        self.file.push(route);
        self
    }

    /// Parses and adds a file-provider route (`priority` `None`/`Some(0)` = rule length).
    pub fn rule(
        &mut self,
        name: impl Into<String>,
        rule: &str,
        priority: Option<i64>,
        backend: B,
    ) -> Result<&mut Self, RouterError> {
        self.file
            .push(FileRoute::new(name, rule, priority, backend)?);
        Ok(self)
    }

    /// Adds an Ingress-derived route.
    pub fn ingress_route(&mut self, route: IngressRoute<B>) -> &mut Self {
        self.ingress.push(route);
        self
    }

    /// Adds many Ingress-derived routes.
    pub fn ingress_routes(
        &mut self,
        routes: impl IntoIterator<Item = IngressRoute<B>>,
    ) -> &mut Self {
        self.ingress.extend(routes);
        self
    }

    /// Compiles the table. Fails on duplicate router names or uncompilable rules; Ingress
    /// collisions and skipped paths are [`Table::warnings`].
    pub fn build(self) -> Result<Table<B>, RouterError> {
        Table::new(self.file, self.ingress)
    }
}

/// Marks the exact-path probe in [`Probes`].
const EXACT: u32 = u32::MAX;
/// Probes kept inline in a bucket.
const INLINE_PROBES: usize = 4;

/// A bucket's lookups: `(prefix length or EXACT, best rank reachable through it)`, sorted by
/// that rank. Probing stops as soon as no remaining probe can beat the best rank found, so with
/// Traefik's default priorities (longer rule, higher priority) the first hit usually ends it.
#[derive(Debug, Clone)]
enum Probes {
    Inline(u8, [(u32, u32); INLINE_PROBES]),
    Heap(Box<[(u32, u32)]>),
}

impl Default for Probes {
    fn default() -> Self {
        Probes::Inline(0, [(0, 0); INLINE_PROBES])
    }
}

impl Probes {
    fn new(mut probes: Vec<(u32, u32)>) -> Probes {
        probes.sort_by_key(|&(len, rank)| (rank, len));
        if probes.len() <= INLINE_PROBES {
            let mut inline = [(0, 0); INLINE_PROBES];
            inline[..probes.len()].copy_from_slice(&probes);
            Probes::Inline(probes.len() as u8, inline)
        } else {
            Probes::Heap(probes.into_boxed_slice())
        }
    }

    #[inline]
    fn as_slice(&self) -> &[(u32, u32)] {
        match self {
            Probes::Inline(n, p) => &p[..*n as usize],
            Probes::Heap(p) => p,
        }
    }
}

/// Buckets with at most this many distinct path conditions (counting "no path condition" as
/// the empty prefix) keep them in one contiguous, rank-ordered run of [`PathCond`]s (one or two
/// cache lines, scanned in order); bigger buckets use the probe list and the shared path maps.
const SMALL_BUCKET: usize = 8;
/// `PathCond::len` flag: an exact-path (`Path`) condition, else a character-wise prefix.
const EXACT_FLAG: u32 = 1 << 31;

/// One path condition of a small bucket: 16 bytes, the path inline when at most 8 bytes.
#[derive(Debug, Clone, Copy)]
struct PathCond {
    /// [`pack8`] of the path, or its offset in [`FileIndex::arena`] when longer.
    word: u64,
    rank: u32,
    /// Path length, with [`EXACT_FLAG`].
    len: u32,
}

/// A bucket handle (the host tables' value) is `first << 4 | count` for a small bucket (its
/// conditions are `small[first..first + count]`, rules without a path condition included as
/// the empty prefix), so the host probe leads straight to the conditions; or `id << 4 | BIG`
/// for a big one (`buckets[id]`).
const BIG: u32 = 0xf;
/// Handles keep 28 bits for `first`/`id` (and must never be `u32::MAX`, the host table's
/// "free" mark).
const MAX_HANDLE: usize = (1 << 28) - 1;

#[derive(Debug, Clone, Default)]
struct FileBucket {
    /// Best rank of rules with no path condition.
    all: u32,
    /// Big buckets: (probe, best rank reachable through it).
    probes: Probes,
}

#[derive(Debug, Clone, Default)]
struct FileIndex {
    /// Bucket handle per exact host.
    exact_hosts: HostTable,
    /// Bucket per wildcard suffix (`*.a.com` -> `a.com`).
    wildcard_hosts: HostTable,
    /// Bucket handle of the rules without a host condition (also `Host(`*`)`).
    any_host: Option<u32>,
    buckets: Vec<FileBucket>,
    /// Path conditions of the small buckets, each bucket's run in rank order.
    small: Vec<PathCond>,
    /// Bytes of small-bucket paths longer than 8 bytes.
    arena: Vec<u8>,
    /// Big buckets: (bucket, path) -> best rank.
    exact_paths: ScopedMap<u32>,
    prefixes: ScopedMap<u32>,
    /// Ranks of the rules that need full evaluation, ascending.
    linear: Vec<u32>,
}

/// One conjunction of an indexable rule.
#[derive(Debug, Clone, Default)]
struct Conj<'r> {
    host: Option<HostPat>,
    /// (exact, path) borrowed from the rule.
    path: Option<(bool, &'r str)>,
}

/// DNF of a rule made only of `Host`, `Path`, `PathPrefix`, `&&`, `||`; `None` otherwise.
fn dnf(rule: &Rule) -> Option<Vec<Conj<'_>>> {
    match rule {
        Rule::Match(Matcher::Host(h)) => Some(vec![Conj {
            host: Some(HostPat::parse(h)?),
            path: None,
        }]),
        Rule::Match(Matcher::Path(p)) => Some(vec![Conj {
            host: None,
            path: Some((true, p.as_str())),
        }]),
        Rule::Match(Matcher::PathPrefix(p)) => Some(vec![Conj {
            host: None,
            path: Some((false, p.as_str())),
        }]),
        Rule::Match(_) | Rule::Not(_) => None,
        Rule::Or(a, b) => {
            let mut l = dnf(a)?;
            l.extend(dnf(b)?);
            (l.len() <= MAX_CONJUNCTIONS).then_some(l)
        }
        Rule::And(a, b) => {
            let (l, r) = (dnf(a)?, dnf(b)?);
            if l.len() * r.len() > MAX_CONJUNCTIONS {
                return None;
            }
            if l.len() == 1 && r.len() == 1 {
                // The common `Host(..) && PathPrefix(..)`: merge without cloning.
                let (x, y) = (l.into_iter().next()?, r.into_iter().next()?);
                if (x.host.is_some() && y.host.is_some()) || (x.path.is_some() && y.path.is_some())
                {
                    return None;
                }
                return Some(vec![Conj {
                    host: x.host.or(y.host),
                    path: x.path.or(y.path),
                }]);
            }
            let mut out = Vec::with_capacity(l.len() * r.len());
            for x in &l {
                for y in &r {
                    if (x.host.is_some() && y.host.is_some())
                        || (x.path.is_some() && y.path.is_some())
                    {
                        return None;
                    }
                    out.push(Conj {
                        host: x.host.clone().or_else(|| y.host.clone()),
                        path: x.path.or(y.path),
                    });
                }
            }
            Some(out)
        }
    }
}

impl FileIndex {
    fn build<B>(prepared: &Prepared<B>) -> Result<FileIndex, RouterError> {
        let mut ix = FileIndex::default();
        let mut exact_hosts: FxMap<String, u32> = FxMap::default();
        let mut wildcard_hosts: FxMap<String, u32> = FxMap::default();
        // Per bucket: its distinct (exact, path) conditions with their best rank, in the order
        // first seen (ranks ascend, so the first rank seen is the best).
        let mut conds: Vec<Vec<(bool, &str, u32)>> = Vec::new();
        let mut seen: FxMap<(u32, bool, &str), ()> = FxMap::default();
        for (rank, f) in prepared.file.iter().enumerate() {
            let rank = rank as u32;
            let Some(conjs) = dnf(&f.rule) else {
                ix.linear.push(rank);
                continue;
            };
            for c in conjs {
                let next = ix.buckets.len() as u32;
                let id = *match c.host {
                    None | Some(HostPat::Any) => ix.any_host.get_or_insert(next),
                    Some(HostPat::Exact(h)) => exact_hosts.entry(h).or_insert(next),
                    Some(HostPat::Wildcard(s)) => wildcard_hosts.entry(s).or_insert(next),
                };
                if id == next {
                    ix.buckets.push(FileBucket {
                        all: NONE,
                        ..FileBucket::default()
                    });
                    conds.push(Vec::new());
                }
                match c.path {
                    None => {
                        let b = &mut ix.buckets[id as usize];
                        b.all = b.all.min(rank);
                    }
                    Some((exact, p)) => {
                        if seen.insert((id, exact, p), ()).is_none() {
                            conds[id as usize].push((exact, p, rank));
                        }
                    }
                }
            }
        }
        drop(seen);
        if ix.buckets.len() >= MAX_HANDLE {
            return Err(RouterError::Router {
                router: String::new(),
                message: format!("too many host buckets (at most {MAX_HANDLE})"),
            });
        }
        let mut handles = Vec::with_capacity(conds.len());
        for (id, mut list) in conds.into_iter().enumerate() {
            let bucket = &mut ix.buckets[id];
            let all = bucket.all;
            let small = list.len() + usize::from(all != NONE);
            if small <= SMALL_BUCKET && ix.small.len() + small < MAX_HANDLE {
                handles.push(((ix.small.len() as u32) << 4) | small as u32);
                if all != NONE {
                    // "No path condition" is the empty prefix; keep the run in rank order.
                    let at = list.partition_point(|&(_, _, r)| r < all);
                    list.insert(at, (false, "", all));
                }
                // `list` is in rank order.
                for (exact, p, rank) in list {
                    let len = p.len().min((EXACT_FLAG - 1) as usize);
                    let word = if len <= 8 {
                        pack8(p.as_bytes())
                    } else {
                        let at = ix.arena.len() as u64;
                        ix.arena.extend_from_slice(&p.as_bytes()[..len]);
                        at
                    };
                    ix.small.push(PathCond {
                        word,
                        rank,
                        len: len as u32 | if exact { EXACT_FLAG } else { 0 },
                    });
                }
                continue;
            }
            handles.push(((id as u32) << 4) | BIG);
            let id = id as u32;
            // Probe -> best rank.
            let mut probes: Vec<(u32, u32)> = Vec::new();
            for (exact, p, rank) in list {
                let probe = if exact {
                    *ix.exact_paths.get_or_insert_with(id, p, || rank) = rank;
                    EXACT
                } else {
                    *ix.prefixes.get_or_insert_with(id, p, || rank) = rank;
                    u32::try_from(p.len()).unwrap_or(EXACT - 1).min(EXACT - 1)
                };
                match probes.iter_mut().find(|(q, _)| *q == probe) {
                    Some((_, r)) => *r = (*r).min(rank),
                    None => probes.push((probe, rank)),
                }
            }
            bucket.probes = Probes::new(probes);
        }
        let handle = |id: u32| handles[id as usize];
        ix.exact_hosts =
            HostTable::new(exact_hosts.iter().map(|(h, &id)| (h.as_str(), handle(id))));
        ix.wildcard_hosts = HostTable::new(
            wildcard_hosts
                .iter()
                .map(|(h, &id)| (h.as_str(), handle(id))),
        );
        ix.any_host = ix.any_host.map(handle);
        Ok(ix)
    }

    /// Whether a small-bucket condition holds for `path`.
    #[inline]
    fn cond_matches(&self, c: &PathCond, path: &[u8]) -> bool {
        let len = (c.len & !EXACT_FLAG) as usize;
        let s = if c.len & EXACT_FLAG != 0 {
            if path.len() != len {
                return false;
            }
            path
        } else {
            match path.get(..len) {
                Some(s) => s,
                None => return false,
            }
        };
        if len <= 8 {
            pack8(s) == c.word
        } else {
            let at = c.word as usize;
            self.arena.get(at..at + len) == Some(s)
        }
    }

    /// The best rank among `best` and the rules of the bucket `handle` that match `path`.
    #[inline]
    fn bucket_best(&self, handle: u32, path: &str, best: u32) -> u32 {
        let count = handle & 0xf;
        if count != BIG {
            let first = (handle >> 4) as usize;
            for c in &self.small[first..first + count as usize] {
                if c.rank >= best {
                    break;
                }
                if self.cond_matches(c, path.as_bytes()) {
                    // Rank order: the first that holds is the bucket's best.
                    return c.rank;
                }
            }
            return best;
        }
        let id = handle >> 4;
        let b = &self.buckets[id as usize];
        let mut best = best.min(b.all);
        for &(probe, reachable) in b.probes.as_slice() {
            if reachable >= best {
                break;
            }
            let hit = if probe == EXACT {
                self.exact_paths.get(id, path)
            } else {
                let len = probe as usize;
                if len <= path.len() && path.is_char_boundary(len) {
                    self.prefixes.get(id, &path[..len])
                } else {
                    None
                }
            };
            if let Some(&r) = hit {
                best = best.min(r);
            }
        }
        best
    }

    /// Rank of the winning file route.
    #[inline]
    fn lookup<B>(&self, prepared: &Prepared<B>, req: &Normalized<'_>) -> u32 {
        let mut best = NONE;
        if let Some(id) = self.any_host {
            best = self.bucket_best(id, req.path, best);
        }
        if let Some(h) = req.host {
            if let Some(id) = self.exact_hosts.get(h) {
                best = self.bucket_best(id, req.path, best);
            }
            if !self.wildcard_hosts.is_empty()
                && let Some((_, rest)) = split_first_label(h)
                && let Some(id) = self.wildcard_hosts.get(rest)
            {
                best = self.bucket_best(id, req.path, best);
            }
        }
        for &rank in &self.linear {
            if rank >= best {
                break;
            }
            if prepared.file[rank as usize].compiled.eval(req) {
                return rank;
            }
        }
        best
    }
}

/// An immutable compiled route table. Build it off the hot path, share it via
/// [`SharedTable`](crate::SharedTable), and call [`Table::route`] per request.
#[derive(Debug, Clone)]
pub struct Table<B> {
    prepared: Prepared<B>,
    file: FileIndex,
    ingress: IngressIndex,
}

impl<B> Default for Table<B> {
    fn default() -> Self {
        Table::new(Vec::new(), Vec::new()).expect("an empty table always builds")
    }
}

impl<B> Table<B> {
    /// A builder.
    pub fn builder() -> TableBuilder<B> {
        TableBuilder::new()
    }

    /// Compiles a table from file routes and Ingress routes.
    pub fn new(
        file_routes: Vec<FileRoute<B>>,
        ingress_routes: Vec<IngressRoute<B>>,
    ) -> Result<Self, RouterError> {
        let prepared = Prepared::new(file_routes, ingress_routes)?;
        let file = FileIndex::build(&prepared)?;
        let ingress = IngressIndex::build(&prepared);
        Ok(Table {
            prepared,
            file,
            ingress,
        })
    }

    /// The route that takes `request`, if any. Allocates nothing.
    pub fn route(&self, request: &RequestView<'_>) -> Option<Matched<'_, B>> {
        let mut buf = [0u8; MAX_HOST];
        let host = normalize_host(request.host(), &mut buf);
        let req = Normalized {
            host,
            path: request.routing_path(),
            view: request,
        };
        let p = &self.prepared;
        let entry = if !p.file.is_empty()
            && let rank = self.file.lookup(p, &req)
            && rank != NONE
        {
            p.file[rank as usize].entry
        } else {
            match self.ingress.lookup(req.host, req.path) {
                NONE => *p.defaults.first()?,
                entry => entry,
            }
        };
        let e = &p.entries[entry as usize];
        Some(Matched {
            backend: &p.backends[entry as usize],
            route: &e.info,
        })
    }

    /// Why `request` goes where it goes: the match, the reason, and the candidates that lost.
    /// Allocates (it is for humans and the admin API, not the hot path).
    pub fn explain(&self, request: &RequestView<'_>) -> Explanation<'_, B> {
        explain(&self.prepared, request)
    }

    /// Non-fatal problems found while building (Ingress collisions, skipped paths).
    pub fn warnings(&self) -> &[Warning] {
        &self.prepared.warnings
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.prepared.entries.len()
    }

    /// Whether the table has no routes.
    pub fn is_empty(&self) -> bool {
        self.prepared.entries.is_empty()
    }

    /// Number of file routes that need full evaluation (not served from the indexes).
    pub fn unindexed_rules(&self) -> usize {
        self.file.linear.len()
    }

    /// Number of trie nodes (all virtual hosts), for capacity reporting.
    pub fn trie_nodes(&self) -> usize {
        self.ingress.nodes()
    }
}
