//! Pending HTTP-01 challenge answers, shared by the ACME issuer (which publishes them) and every
//! proxy replica (which answers `/.well-known/acme-challenge/<token>`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

/// Token -> key authorisation. Cheap to clone (all clones share one map). Reads are lock-free
/// loads of an immutable map; the rare writes copy it.
#[derive(Clone, Default)]
pub struct Http01Registry {
    map: Arc<ArcSwap<HashMap<Arc<str>, Arc<str>>>>,
    write: Arc<Mutex<()>>,
}

impl std::fmt::Debug for Http01Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http01Registry")
            .field("pending", &self.map.load().len())
            .finish()
    }
}

impl Http01Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `key_authorization` for `token` until withdrawn.
    pub fn publish(&self, token: &str, key_authorization: &str) {
        self.edit(|m| {
            m.insert(Arc::from(token), Arc::from(key_authorization));
        });
    }

    /// Stops serving `token`; returns whether it was published.
    pub fn withdraw(&self, token: &str) -> bool {
        let mut removed = false;
        self.edit(|m| removed = m.remove(token).is_some());
        removed
    }

    /// The key authorisation for `token`, if published.
    pub fn get(&self, token: &str) -> Option<Arc<str>> {
        self.map.load().get(token).cloned()
    }

    /// Number of published tokens.
    pub fn len(&self) -> usize {
        self.map.load().len()
    }

    /// Whether no token is published.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn edit(&self, f: impl FnOnce(&mut HashMap<Arc<str>, Arc<str>>)) {
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = HashMap::clone(&self.map.load());
        f(&mut next);
        self.map.store(Arc::new(next));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_get_withdraw_across_clones() {
        let a = Http01Registry::new();
        let b = a.clone();
        a.publish("tok", "tok.thumb");
        assert_eq!(b.get("tok").as_deref(), Some("tok.thumb"));
        assert!(b.get("other").is_none());
        assert!(b.withdraw("tok"));
        assert!(!a.withdraw("tok"));
        assert!(a.get("tok").is_none());
        assert!(a.is_empty());
    }
}
