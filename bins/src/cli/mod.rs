//! The `fairway` command-line tool: one module per subcommand group.
//!
//! Exit codes are shared by every subcommand: 0 success, 1 "checked and found a problem / no
//! match", 2 bad usage or unreadable input.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod acme;
pub mod route;

/// `fairway`: inspect and edit Fairway's stores and configuration.
#[derive(Debug, Parser)]
#[command(name = "fairway", version, about, propagate_version = true)]
pub struct Cli {
    /// The subcommand group.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommand groups of `fairway`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect and edit a Traefik-compatible `acme.json` certificate store.
    #[command(subcommand)]
    Acme(acme::AcmeCommand),
    /// Ask the router which route takes a request, and why.
    #[command(subcommand)]
    Route(route::RouteCommand),
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Acme(cmd) => acme::run(cmd),
        Command::Route(cmd) => route::run(cmd),
    }
}
