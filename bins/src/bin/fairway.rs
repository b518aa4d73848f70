//! The `fairway` command-line tool; all logic lives in `bins::cli`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    bins::cli::run(bins::cli::Cli::parse())
}
