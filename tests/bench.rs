//! `atelier bench` runs each kind of work it times once, at toy sizes, and reports it as JSON
//! lines (correctness of the harness only: no timing is asserted).

use std::path::Path;
use std::process::Command;

fn bench(args: &[&str]) -> Vec<serde_json::Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_atelier"))
        .arg("bench")
        .args(args)
        .args(["--warmup", "1", "--runs", "2", "--threads", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "atelier bench {args:?}: {stderr}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn check_summary(lines: &[serde_json::Value], task: &str) -> serde_json::Value {
    assert_eq!(lines.len(), 4, "warm-up, two runs, summary: {lines:?}");
    assert_eq!(lines[0]["warmup"], true);
    assert_eq!(lines[1]["warmup"], false);
    let summary = lines[3].clone();
    assert_eq!(summary["summary"], true);
    assert_eq!(summary["task"], task);
    assert!(summary["median_seconds_per_item"].as_f64().unwrap() > 0.0);
    assert_eq!(summary["seconds_per_item"].as_array().unwrap().len(), 2);
    if Path::new("/proc/self/status").exists() {
        assert!(summary["peak_rss_mib"].as_f64().unwrap() > 10.0);
    }
    summary
}

#[test]
fn bench_times_the_network_a_file_and_a_training_step() {
    let lines = bench(&[
        "infer",
        "--net",
        "johnson-half",
        "--size",
        "36x20",
        "--batch",
        "2",
    ]);
    let summary = check_summary(&lines, "infer");
    assert_eq!(lines[1]["items"], 2.0);
    assert!(summary["error_vs_f32"].is_null());

    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/photos/chelsea.png");
    let out = tempfile::tempdir().unwrap();
    let lines = bench(&[
        "file",
        "--input",
        photo.to_str().unwrap(),
        "--out-dir",
        out.path().to_str().unwrap(),
    ]);
    check_summary(&lines, "file");
    let written: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
    assert_eq!(written.len(), 1, "one JPEG, rewritten by every run");
    let image = image::open(written[0].as_ref().unwrap().path()).unwrap();
    assert_eq!((image.width(), image.height()), (451, 300));

    let lines = bench(&[
        "train",
        "--net",
        "johnson-half",
        "--image-size",
        "32",
        "--batch",
        "2",
        "--loss-net",
        "vgg16",
    ]);
    check_summary(&lines, "train");
}

#[test]
fn bench_rejects_bad_sizes() {
    let output = Command::new(env!("CARGO_BIN_EXE_atelier"))
        .args(["bench", "infer", "--size", "12x400"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--size"), "{stderr}");
}

#[test]
fn bench_times_the_arbitrary_model_and_its_predictor() {
    let style = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/styles/swirls.png");
    let style = style.to_str().unwrap();
    let lines = bench(&[
        "infer",
        "--net",
        "arbitrary",
        "--style-image",
        style,
        "--size",
        "36x20",
    ]);
    let summary = check_summary(&lines, "infer");
    assert_eq!(summary["net"], "arbitrary");

    let out = tempfile::tempdir().unwrap();
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/photos/chelsea.png");
    let lines = bench(&[
        "file",
        "--net",
        "arbitrary",
        "--input",
        photo.to_str().unwrap(),
        "--out-dir",
        out.path().to_str().unwrap(),
    ]);
    check_summary(&lines, "file");

    // The predictor on a real picture: the same vector on every run.
    let lines = bench(&["predict", "--input", style]);
    let summary = check_summary(&lines, "predict");
    assert_eq!(summary["net"], "arbitrary");
    let norms: Vec<f64> = summary["extra"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["vector_norm"].as_f64().unwrap())
        .collect();
    assert!(
        norms[0] > 1.0 && norms.iter().all(|n| n == &norms[0]),
        "{norms:?}"
    );
}
