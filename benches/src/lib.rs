//! Shared helpers for Fairway's benchmark scripts.
