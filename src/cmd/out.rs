//! Standard output. `atelier ... | head` closes the pipe early; `println!` would then panic
//! (Rust ignores SIGPIPE, so the write fails with `BrokenPipe`). Every line goes through
//! [`line`] instead, whose [`Closed`] error `main` turns into a quiet exit 141, the code a shell
//! shows for a program that SIGPIPE stopped.

use std::fmt::Display;
use std::io::{self, Write};

/// The exit code for a closed standard output: 128 + SIGPIPE.
pub const CLOSED_EXIT: u8 = 128 + 13;
/// The signal number a closed pipe stands for, for commands that stop like after a signal.
pub const SIGPIPE: usize = 13;

/// Standard output was closed by its reader.
#[derive(Debug)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output closed")
    }
}

impl std::error::Error for Closed {}

/// Writes `text` and a newline to standard output, and flushes it.
pub fn line(text: impl Display) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .map_err(|e| {
            if e.kind() == io::ErrorKind::BrokenPipe {
                anyhow::Error::new(Closed)
            } else {
                anyhow::Error::new(e).context("cannot write to standard output")
            }
        })
}

/// Whether an error is, or was caused by, a closed standard output.
pub fn is_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<Closed>())
}
