//! `atelier`: the one command-line program. Thin on purpose: parse arguments, run the chosen
//! subcommand, print errors as one line and map them to exit codes (see `cmd::exit`).

mod cmd;

use clap::{CommandFactory, FromArgMatches};
use std::process::ExitCode;

fn main() -> ExitCode {
    let matches = cmd::Cli::command().get_matches();
    let cli = cmd::Cli::from_arg_matches(&matches)
        .unwrap_or_else(|err| err.format(&mut cmd::Cli::command()).exit());
    match cmd::run(cli, &matches) {
        Ok(code) => code,
        Err(err) if cmd::out::is_closed(&err) => ExitCode::from(cmd::out::CLOSED_EXIT),
        Err(err) => {
            eprintln!("atelier: error: {}", one_line(&err));
            ExitCode::from(cmd::exit::code(&err))
        }
    }
}

/// The error and its causes on one line. Library errors often name their cause in their own
/// message already (`cannot read x: no such file`), so a cause the line already ends with is
/// not repeated.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}
