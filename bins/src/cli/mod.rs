//! The `fairway` command-line tool: one module per subcommand group.
//!
//! Exit codes are shared by every subcommand: 0 success, 1 "checked and found a problem / no
//! match", 2 bad usage or unreadable input.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::error::ErrorKind;
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

/// Parses `args` (program name first) and runs the command: the whole of `fairway`'s `main`.
///
/// `--help` and `--version` print to stdout and exit 0. Bad usage exits 2 with one line on
/// stderr ([`usage_error_line`]) rather than clap's several (error, usage, hint), like every
/// other `fairway` error.
pub fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match Cli::try_parse_from(args) {
        Ok(cli) => run(cli),
        Err(e) if !e.use_stderr() => {
            // --help / --version: not an error.
            let _ = e.print();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fairway: {}", usage_error_line(&e));
            ExitCode::from(2)
        }
    }
}

/// clap's multi-line usage error as one line: the message (its continuation lines joined with
/// commas), clap's tips, and the usage of the subcommand, e.g. `the following required arguments
/// were not provided: --cert <C.pem>, --key <K.pem> (usage: fairway acme import --file <FILE>
/// ...; try '--help')`.
pub fn usage_error_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let paragraphs: Vec<Vec<&str>> = text
        .split("\n\n")
        .map(|p| p.lines().map(str::trim).filter(|l| !l.is_empty()).collect())
        .filter(|p: &Vec<&str>| !p.is_empty())
        .collect();
    let usage = paragraphs
        .iter()
        .flatten()
        .find_map(|l| l.strip_prefix("Usage:"))
        .map(str::trim);
    let mut message = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // clap printed the whole help here; its first paragraph is the command's description.
        "a subcommand or argument is missing".to_owned()
    } else {
        let first = paragraphs.first().map(Vec::as_slice).unwrap_or_default();
        let head = first.first().copied().unwrap_or("invalid usage");
        let head = head.strip_prefix("error:").map_or(head, str::trim);
        let rest: Vec<&str> = first.iter().skip(1).copied().collect();
        if rest.is_empty() {
            head.to_owned()
        } else {
            format!("{head} {}", rest.join(", "))
        }
    };
    for tip in paragraphs
        .iter()
        .flatten()
        .filter(|l| l.starts_with("tip:"))
    {
        message.push_str("; ");
        message.push_str(tip);
    }
    match usage {
        Some(u) => format!("{message} (usage: {u}; try '--help')"),
        None => format!("{message} (try '--help')"),
    }
}
