//! What the models crate's integration tests share: where the workspace is, and running a
//! reference script of `tests/reference/` with the project venv's python.

#![allow(dead_code)] // each test binary uses its own part

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `path`, which set-up should have made; `how` says which step makes it.
pub fn required(path: PathBuf, how: &str) -> PathBuf {
    assert!(path.exists(), "{} is missing: {how}", path.display());
    path
}

/// Runs `tests/reference/<script>` with `args` under the venv's python; panics if it fails.
pub fn run_reference<S: AsRef<OsStr>>(script: &str, args: &[S]) {
    let python = required(
        workspace().join(".venv/bin/python"),
        "run `make setup-test` (scripts/setup.sh test) first",
    );
    let status = std::process::Command::new(python)
        .arg(workspace().join("tests/reference").join(script))
        .args(args)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "tests/reference/{script} failed: {status}"
    );
}
