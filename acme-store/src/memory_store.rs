//! A store kept in memory: for tests, and for processes that get certificates from elsewhere.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::document::AcmeDocument;
use crate::error::Error;
use crate::snapshot::{Publisher, Snapshot};
use crate::store::{CertStore, UpdateFn};

/// An in-memory [`CertStore`]. Updates are serialised by a mutex; reads are lock-free.
pub struct MemoryStore {
    publisher: Publisher,
    write: Mutex<()>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(AcmeDocument::default())
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("snapshot", &self.publisher.load())
            .finish()
    }
}

impl MemoryStore {
    /// A store holding `document`.
    pub fn new(document: AcmeDocument) -> Self {
        MemoryStore {
            publisher: Publisher::new(document),
            write: Mutex::new(()),
        }
    }
}

impl CertStore for MemoryStore {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.publisher.load()
    }

    fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.publisher.subscribe()
    }

    fn update(&self, f: &mut UpdateFn<'_>) -> Result<Arc<Snapshot>, Error> {
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.publisher.load();
        let mut doc = AcmeDocument::clone(current.document());
        f(&mut doc)?;
        if doc == **current.document() {
            return Ok(current);
        }
        Ok(self.publisher.publish(doc))
    }
}
