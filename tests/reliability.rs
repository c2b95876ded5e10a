//! Hostile files and hostile conditions, end to end through the real binary: pickles that would
//! run code, pictures and model headers that declare more than they hold, full and read-only
//! disks (tmpfs mounted by the test; skipped with a message where mounting is not allowed),
//! ffmpeg killed mid-video, training killed at random moments, and stylize interrupted.

mod infer_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use infer_support::*;
use models::vgg::{Vgg, VggKind};
use tch::Device;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Asserts one `atelier: error: ...` line on stderr and returns it.
fn one_error_line(output: &Output) -> String {
    let message = stderr(output);
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    assert!(message.starts_with("atelier: error: "), "{message}");
    message
}

#[test]
fn pickles_that_would_run_code_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    // Each file runs its command under torch.load(weights_only=False) (proven when
    // scripts/make_fuzz_seeds.py made them): os.system in a zip file, builtins.eval in a legacy
    // one (protocol 2 names it `__builtin__`).
    let cases = [
        ("os_system.pth", "refused global `posix.system`"),
        (
            "builtins_eval_legacy.pth",
            "refused global `__builtin__.eval`",
        ),
    ];
    for (name, refused) in cases {
        let armed = repo().join("tests/fixtures/foreign_code").join(name);
        let output = dir.path().join("converted.safetensors");
        let result = atelier()
            .current_dir(dir.path())
            .args(["convert", path_str(&armed), "-o", path_str(&output)])
            .output()
            .unwrap();
        let message = one_error_line(&result);
        assert_eq!(result.status.code(), Some(2), "{name}: {message}");
        assert!(message.contains(refused), "{name}: {message}");
        assert!(message.contains(name), "{name}: {message}");
        assert!(!output.exists());
        assert_eq!(files_under(dir.path()), Vec::<String>::new(), "{name}");
    }
}
