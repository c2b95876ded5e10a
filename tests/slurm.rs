//! The Slurm examples (`examples/slurm/`) submitted to a real cluster: a 3-task array over a
//! folder, and a film in 3 segments joined after the array (`--dependency=afterok`). Runs
//! where `sinfo` reaches a cluster that can run jobs on this machine's files (a one-node
//! Slurm on localhost: see the README's "Many machines"); elsewhere it says so and passes, as
//! there is nothing to submit to.

mod infer_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use infer_support::*;

/// A cluster that runs a job here within a minute (a partition can be up with its only node
/// down, and then `sbatch --wait` would wait forever).
fn slurm_answers() -> bool {
    let node_up = Command::new("sinfo")
        .args(["-h", "-o", "%t"])
        .output()
        .is_ok_and(|out| {
            let states = String::from_utf8_lossy(&out.stdout);
            out.status.success() && ["idle", "mix", "alloc"].iter().any(|s| states.contains(s))
        });
    node_up
        && Command::new("timeout")
            .args([
                "60",
                "sbatch",
                "--wait",
                "--quiet",
                "--output=/dev/null",
                "--wrap",
                "true",
            ])
            .status()
            .is_ok_and(|status| status.success())
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/slurm")
        .join(name)
}

/// PATH with this build's `atelier` first, as the jobs find it.
fn path_with_atelier() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_atelier")).parent().unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn the_slurm_examples_run_as_written_and_equal_one_process_runs() {
    if !slurm_answers() {
        eprintln!("no Slurm cluster here runs a job: nothing to submit the examples to");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let model = random_johnson(dir);
    let photos = dir.join("photos");
    std::fs::create_dir_all(photos.join("sub")).unwrap();
    for i in 0..9u32 {
        let image = image::RgbImage::from_fn(40 + i, 30, |x, y| {
            image::Rgb([(x * 5) as u8, (y * 7) as u8, i as u8 * 20])
        });
        let name = if i % 3 == 0 {
            format!("sub/{i}.png")
        } else {
            format!("{i}.png")
        };
        image.save(photos.join(name)).unwrap();
    }
    let model_args = format!("-m {} --batch 1 --threads 1", model.display());
    // The examples ask for a GPU and 4 cores per task; a test cluster may have neither.
    let resources = ["--gres=none", "--cpus-per-task=1"];

    let styled = dir.join("styled");
    // `timeout`: a cluster that stops running jobs fails the test instead of hanging it.
    let output = Command::new("timeout")
        .args(["300", "sbatch", "--wait", "--array=0-2", "--chdir"])
        .arg(dir)
        .args(resources)
        .arg(example("stylize-folder.sbatch"))
        .args([&photos, &styled])
        .env("PATH", path_with_atelier())
        .env("ATELIER_ARGS", &model_args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let single = dir.join("single");
    let mut args = vec![
        "stylize",
        photos.to_str().unwrap(),
        "-o",
        single.to_str().unwrap(),
    ];
    args.extend(model_args.split(' '));
    assert_ok(&run(&args));
    let written: Vec<String> = files_under(&styled)
        .into_iter()
        .filter(|n| !n.starts_with("logs/"))
        .collect();
    assert_eq!(written, files_under(&single));
    for name in &written {
        assert!(
            std::fs::read(styled.join(name)).unwrap() == std::fs::read(single.join(name)).unwrap(),
            "{name}"
        );
    }
    let logs = files_under(&styled.join("logs"));
    assert_eq!(logs, ["task-0.jsonl", "task-1.jsonl", "task-2.jsonl"]);

    let film = keyframed_clip(dir, "24000/1001");
    let joined = dir.join("film-styled.mkv");
    let submitted = Command::new(example("film.sh"))
        .args([&film, &joined])
        .arg("3")
        .args(model_args.split(' '))
        .args(["--codec", "ffv1"])
        .current_dir(dir)
        .env("PATH", path_with_atelier())
        .env("SBATCH_ARGS", resources.join(" "))
        .output()
        .unwrap();
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let started = Instant::now();
    while !joined.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the join job did not finish"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let one = dir.join("one.mkv");
    let mut args = vec![
        "video",
        film.to_str().unwrap(),
        "-o",
        one.to_str().unwrap(),
        "--codec",
        "ffv1",
    ];
    args.extend(model_args.split(' '));
    assert_ok(&run(&args));
    assert_eq!(frame_times(&joined), frame_times(&one));
    assert!(
        decoded_frames(&joined) == decoded_frames(&one),
        "the joined film differs"
    );
}
