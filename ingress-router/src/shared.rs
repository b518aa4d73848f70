//! The hot-swappable handle readers use to reach the current table.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use crate::table::Table;

/// A [`Table`] that can be replaced while requests are being routed.
///
/// Readers call [`load`](SharedTable::load) once per request (a few atomic operations, no lock,
/// no allocation) and route against the snapshot they got; a reload builds a new table off the
/// hot path and [`store`](SharedTable::store)s it. Requests in flight keep the old snapshot.
#[derive(Debug)]
pub struct SharedTable<B> {
    inner: ArcSwap<Table<B>>,
}

impl<B> SharedTable<B> {
    /// A handle serving `table`.
    pub fn new(table: Table<B>) -> Self {
        SharedTable {
            inner: ArcSwap::from_pointee(table),
        }
    }

    /// The current table (cheap; hold it for the duration of one request).
    pub fn load(&self) -> Guard<Arc<Table<B>>> {
        self.inner.load()
    }

    /// The current table as an owned `Arc` (for long-lived holders).
    pub fn load_full(&self) -> Arc<Table<B>> {
        self.inner.load_full()
    }

    /// Replaces the table; returns the previous one.
    pub fn store(&self, table: Table<B>) -> Arc<Table<B>> {
        self.inner.swap(Arc::new(table))
    }

    /// Replaces the table with an already shared one; returns the previous one.
    pub fn store_arc(&self, table: Arc<Table<B>>) -> Arc<Table<B>> {
        self.inner.swap(table)
    }
}

impl<B> Default for SharedTable<B> {
    fn default() -> Self {
        SharedTable::new(Table::default())
    }
}

impl<B> From<Table<B>> for SharedTable<B> {
    fn from(table: Table<B>) -> Self {
        SharedTable::new(table)
    }
}
