//! `atelier`: the one command-line program. Thin on purpose: parse arguments, run the chosen
//! subcommand, print errors as one line and map them to exit codes (see `cmd::Exit`).

mod cmd;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("atelier: error: {err:#}");
            ExitCode::from(cmd::exit::USAGE)
        }
    }
}
