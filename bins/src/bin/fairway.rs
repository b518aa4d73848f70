//! The `fairway` command-line tool; all logic lives in `bins::cli`.

use std::process::ExitCode;

fn main() -> ExitCode {
    bins::cli::main(std::env::args_os())
}
