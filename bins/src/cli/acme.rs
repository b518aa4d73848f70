//! `fairway acme ...` (placeholder until the acme-store issue lands).

use std::process::ExitCode;

use clap::Subcommand;

/// `fairway acme` subcommands.
#[derive(Debug, Subcommand)]
pub enum AcmeCommand {
    /// List certificates.
    List,
}

/// Runs a `fairway acme` subcommand.
pub fn run(_cmd: AcmeCommand) -> ExitCode {
    ExitCode::from(2)
}
