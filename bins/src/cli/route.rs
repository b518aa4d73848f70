//! `fairway route ...` (placeholder until the ingress-router issue lands).

use std::process::ExitCode;

use clap::Subcommand;

/// `fairway route` subcommands.
#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Explain which route takes a request.
    Explain,
}

/// Runs a `fairway route` subcommand.
pub fn run(_cmd: RouteCommand) -> ExitCode {
    ExitCode::from(2)
}
