//! Immutable snapshots of a store, and the publisher every store uses to hand them out.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::document::AcmeDocument;
use crate::entry::{CertEntry, Problem};
use crate::index::SniIndex;

/// Everything a reader needs at one moment: the document, its decoded certificates, the problems
/// found, and the SNI index. Never mutated after construction; stores publish new ones.
pub struct Snapshot {
    generation: u64,
    document: Arc<AcmeDocument>,
    entries: Vec<Arc<CertEntry>>,
    problems: Vec<Problem>,
    index: SniIndex<CertEntry>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("generation", &self.generation)
            .field("entries", &self.entries.len())
            .field("problems", &self.problems)
            .field("index", &self.index)
            .finish()
    }
}

impl Snapshot {
    /// An empty snapshot (generation 0).
    pub fn empty() -> Self {
        Snapshot::build(Arc::new(AcmeDocument::default()), 0, None)
    }

    /// Decodes every certificate of `document` and indexes the good ones. Entries whose stored
    /// text is unchanged since `previous` reuse its decoding work.
    pub fn build(
        document: Arc<AcmeDocument>,
        generation: u64,
        previous: Option<&Snapshot>,
    ) -> Self {
        let reuse: HashMap<(&str, &str), &Arc<CertEntry>> = previous
            .map(|p| {
                p.entries
                    .iter()
                    .filter_map(|e| {
                        let stored = p
                            .document
                            .resolvers
                            .get(e.resolver())?
                            .certificates
                            .get(e.index())?;
                        Some(((stored.certificate.as_deref()?, stored.key.as_deref()?), e))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut entries = Vec::new();
        let mut problems = Vec::new();
        for (name, data) in &document.resolvers {
            let resolver: Arc<str> = Arc::from(name.as_str());
            for (i, stored) in data.certificates.iter().enumerate() {
                let old = stored
                    .certificate
                    .as_deref()
                    .zip(stored.key.as_deref())
                    .and_then(|k| reuse.get(&k));
                let decoded = match old {
                    Some(old) if old.same_label(name, i, stored) => Ok(Arc::clone(old)),
                    Some(old) => Ok(Arc::new(old.relabel(Arc::clone(&resolver), i, stored))),
                    None => CertEntry::decode(Arc::clone(&resolver), i, stored).map(Arc::new),
                };
                match decoded {
                    Ok(e) => entries.push(e),
                    Err(kind) => problems.push(Problem {
                        resolver: name.clone(),
                        domain: stored.domain.main.clone(),
                        index: i,
                        kind,
                    }),
                }
            }
        }
        let mut builder = SniIndex::builder();
        for e in &entries {
            for n in e.names() {
                builder.insert(n, e.not_before(), e.not_after(), e);
            }
        }
        Snapshot {
            generation,
            document,
            entries,
            problems,
            index: builder.build(),
        }
    }

    /// Increases with every snapshot a store publishes.
    pub fn generation(&self) -> u64 {
        self.generation
    }
    /// The document this snapshot was built from.
    pub fn document(&self) -> &Arc<AcmeDocument> {
        &self.document
    }
    /// The servable certificates, in resolver-name then file order.
    pub fn entries(&self) -> &[Arc<CertEntry>] {
        &self.entries
    }
    /// The entries skipped for serving, with resolver, domain and reason.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
    /// The SNI index.
    pub fn index(&self) -> &SniIndex<CertEntry> {
        &self.index
    }
    /// The certificate to serve for `server_name` at `now` (see [`SniIndex::lookup`]).
    pub fn lookup(&self, server_name: &str, now: SystemTime) -> Option<&Arc<CertEntry>> {
        self.index.lookup(server_name, now)
    }
    /// All candidates for the best-matching name, latest `notAfter` first.
    pub fn candidates(&self, server_name: &str) -> &[Arc<CertEntry>] {
        self.index.candidates(server_name)
    }
}

/// Holds the current snapshot for lock-free reads and tells subscribers about new ones.
pub(crate) struct Publisher {
    current: ArcSwap<Snapshot>,
    tx: watch::Sender<Arc<Snapshot>>,
    generation: AtomicU64,
}

impl Publisher {
    pub(crate) fn new(document: AcmeDocument) -> Self {
        let first = Arc::new(Snapshot::build(Arc::new(document), 1, None));
        let (tx, _) = watch::channel(Arc::clone(&first));
        Publisher {
            current: ArcSwap::new(first),
            tx,
            generation: AtomicU64::new(1),
        }
    }

    pub(crate) fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    /// Builds and publishes a snapshot of `document`. Callers serialise calls (a store-level
    /// mutex), so generations are published in order.
    pub(crate) fn publish(&self, document: AcmeDocument) -> Arc<Snapshot> {
        let previous = self.current.load_full();
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let snap = Arc::new(Snapshot::build(
            Arc::new(document),
            generation,
            Some(&previous),
        ));
        self.current.store(Arc::clone(&snap));
        self.tx.send_replace(Arc::clone(&snap));
        snap
    }
}
