//! Library half of the Fairway binaries: the shared TOML configuration and the subcommands of
//! the `fairway` CLI, kept here so the binaries in `src/bin/` stay thin and testable.
//!
//! Binaries only parse configuration and wire the library crates together; nothing here holds
//! data-plane logic.

pub mod cli;
pub mod config;
pub mod dashboard;
pub mod proxy_acme;
