//! `atelier train` end to end, on the bundled photos, with random VGG-16 weights in the
//! torchvision layout (real weights cannot be downloaded in tests; the losses and their
//! gradients behave the same way).

mod infer_support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use infer_support::{random_vgg16, small_run};
use models::vgg::{Vgg, VggKind};
use tch::Device;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn atelier(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_atelier"))
        .args(args)
        .output()
        .expect("run atelier")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn asset(path: &str) -> String {
    repo().join("assets").join(path).display().to_string()
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Replaces the value of `flag` in `args`, or appends the pair.
fn set<'a>(args: &mut Vec<&'a str>, flag: &'a str, value: &'a str) {
    match args.iter().position(|a| *a == flag) {
        Some(at) => args[at + 1] = value,
        None => args.extend([flag, value]),
    }
}

/// Removes `flag` and its value from `args`.
fn unset(args: &mut Vec<&str>, flag: &str) {
    if let Some(at) = args.iter().position(|a| *a == flag) {
        args.drain(at..at + 2);
    }
}

fn read_json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The scalars (`[step, value]`) and images (`[step, width, height]`) of a TensorBoard folder,
/// by tag, as TensorBoard's own reader sees them.
fn read_tensorboard(logs: &Path) -> serde_json::Value {
    let script = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "images": 0})
acc.Reload()
tags = acc.Tags()
out = {"scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
       "images": {t: [[e.step, e.width, e.height] for e in acc.Images(t)] for t in tags["images"]}}
print(json.dumps(out))
"#;
    let read = Command::new(repo().join(".venv/bin/python"))
        .args(["-c", script, path_str(logs)])
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", stderr(&read));
    serde_json::from_slice(&read.stdout).unwrap()
}

#[test]
fn bad_inputs_fail_early_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let vgg = random_vgg16(dir.path());
    let vgg = path_str(&vgg);
    let output = dir.path().join("model.safetensors");
    let (style, photos) = (asset("styles/swirls.png"), asset("photos"));
    let not_an_image = dir.path().join("notes.png");
    std::fs::write(&not_an_image, b"not a picture").unwrap();
    let existing = dir.path().join("existing.safetensors");
    std::fs::write(&existing, b"keep me").unwrap();

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--style", "/nonexistent/style.jpg"], "style.jpg"),
        (vec!["--style", path_str(&not_an_image)], "notes.png"),
        (vec!["--data", "/nonexistent/photos"], "/nonexistent/photos"),
        (
            vec!["--loss-weights", "/nonexistent/vgg.safetensors"],
            "vgg.safetensors",
        ),
        (
            vec!["-o", "/nonexistent/folder/model.safetensors"],
            "/nonexistent/folder",
        ),
        (vec!["-o", path_str(&existing)], "--force"),
    ];
    for (overrides, mentioned) in cases {
        let mut args = small_run(vgg, path_str(&output), &style, &photos);
        for pair in overrides.chunks(2) {
            set(&mut args, pair[0], pair[1]);
        }
        let started = Instant::now();
        let result = atelier(&args);
        let message = stderr(&result);
        assert_eq!(result.status.code(), Some(2), "{overrides:?}: {message}");
        assert_eq!(
            message.trim_end().lines().count(),
            1,
            "{overrides:?}: {message}"
        );
        assert!(message.starts_with("atelier: error: "), "{message}");
        assert!(message.contains(mentioned), "{overrides:?}: {message}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{overrides:?} took long"
        );
    }
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");
    assert!(!output.exists());
}

#[test]
fn thirty_steps_halve_the_style_loss() {
    // 128×128 crops, batch 4 (each step sees all four bundled photos), the full network. The
    // unnormalised losses show the first steps' progress; the balanced ones are bounded near
    // their starting value while the output's Gram matrices are far from the style's.
    let dir = tempfile::tempdir().unwrap();
    let vgg = random_vgg16(dir.path());
    let output = dir.path().join("swirls.safetensors");
    let log = dir.path().join("log.jsonl");
    let (style, photos) = (asset("styles/swirls.png"), asset("photos"));
    let mut args = small_run(path_str(&vgg), path_str(&output), &style, &photos);
    for (flag, value) in [
        ("--image-size", "128"),
        ("--batch-size", "4"),
        ("--arch", "johnson"),
        ("--style-size", "128"),
        ("--steps", "30"),
        ("--loss-convention", "pytorch-examples"),
        ("--log-every", "1"),
        ("--log-json", path_str(&log)),
    ] {
        set(&mut args, flag, value);
    }
    let result = atelier(&args);
    assert!(result.status.success(), "{}", stderr(&result));
    let lines = read_json_lines(&log);
    assert_eq!(lines.len(), 30);
    let style_at = |i: usize| lines[i]["style"].as_f64().unwrap();
    eprintln!(
        "style loss: step 1 {:.4e}, step 30 {:.4e}",
        style_at(0),
        style_at(29)
    );
    assert!(
        style_at(29) <= 0.5 * style_at(0),
        "{} -> {}",
        style_at(0),
        style_at(29)
    );

    let meta = models::file::read_meta(&output).unwrap();
    assert_eq!(meta.styles, ["swirls"]);
    let training = meta.training.unwrap();
    assert_eq!(
        (training.steps, training.batch_size, training.image_size),
        (30, 4, 128)
    );
    assert_eq!(training.loss_network, "vgg16");
}

/// Stops a long run with SIGTERM once its first checkpoint exists, resumes it with the printed
/// command to fewer steps, and compares the final weights with an uninterrupted run to as many.
#[test]
fn interrupted_run_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let vgg = random_vgg16(dir.path());
    let (style, photos) = (asset("styles/swirls.png"), asset("photos"));
    let n_steps = "12";

    let straight = dir.path().join("straight.safetensors");
    let mut args = small_run(path_str(&vgg), path_str(&straight), &style, &photos);
    args.extend(["--steps", n_steps, "--checkpoint-every", "2"]);
    let result = atelier(&args);
    assert!(result.status.success(), "{}", stderr(&result));

    let stopped = dir.path().join("stopped.safetensors");
    let checkpoint = dir.path().join("stopped.checkpoint.safetensors");
    let mut args = small_run(path_str(&vgg), path_str(&stopped), &style, &photos);
    args.extend(["--steps", "100000", "--checkpoint-every", "2"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_atelier"))
        .args(&args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !checkpoint.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(checkpoint.exists(), "no checkpoint appeared");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut message = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut message).unwrap();
    let status = child.wait().unwrap();
    let resume_line = message
        .lines()
        .find(|l| l.starts_with("resume with: "))
        .unwrap_or_else(|| panic!("no resume command in: {message}"));
    let step = trainer::Checkpoint::load(&checkpoint).unwrap().step;
    assert_eq!(status.code(), Some(143), "{message}");
    assert!(step < 12, "stopped at step {step}");
    assert!(!stopped.exists());

    let command = resume_line.trim_start_matches("resume with: atelier ");
    let resume_args: Vec<&str> = command
        .split(' ')
        .chain(["--steps", n_steps, "--quiet", "--threads", "2"])
        .collect();
    let result = atelier(&resume_args);
    assert!(result.status.success(), "{}", stderr(&result));

    let a = models::file::read_safetensors(&straight).unwrap();
    let b = models::file::read_safetensors(&stopped).unwrap();
    assert_eq!(a.len(), b.len());
    let mut max_diff = 0.0f64;
    for ((name_a, ta), (name_b, tb)) in a.iter().zip(&b) {
        assert_eq!(name_a, name_b);
        max_diff = max_diff.max((ta - tb).abs().max().double_value(&[]));
    }
    eprintln!(
        "stopped at step {step}, resumed to {n_steps}: max abs weight difference {max_diff:e}"
    );
    assert!(max_diff <= 1e-6, "{max_diff}");
}

#[test]
fn non_finite_loss_stops_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let vgg = random_vgg16(dir.path());
    let (style, photos) = (asset("styles/swirls.png"), asset("photos"));
    let output = dir.path().join("model.safetensors");
    let checkpoint = dir.path().join("model.checkpoint.safetensors");
    // A learning rate this large makes every weight ~1e30 after one step, and the next
    // step's losses overflow.
    let mut args = small_run(path_str(&vgg), path_str(&output), &style, &photos);
    args.extend(["--steps", "5", "--checkpoint-every", "1", "--lr", "1e30"]);
    let result = atelier(&args);
    let message = stderr(&result);
    assert_eq!(result.status.code(), Some(1), "{message}");
    assert!(message.contains("loss became non-finite"), "{message}");
    assert!(!output.exists());
    let saved = trainer::Checkpoint::load(&checkpoint).unwrap();
    assert!(saved.step >= 1 && saved.step < 5, "{}", saved.step);
    for (name, tensor) in &saved.weights {
        assert!(
            bool::try_from(tensor.isfinite().all()).unwrap(),
            "{name} is not finite"
        );
    }
}

/// Two styles: one conditional-instance-norm network whose file lists them in order, with
/// TensorBoard scalars and sample images read back by TensorBoard's own reader.
#[test]
fn multi_style_run_logs_to_tensorboard() {
    let dir = tempfile::tempdir().unwrap();
    let vgg = random_vgg16(dir.path());
    let photos = asset("photos");
    let (swirls, brick) = (asset("styles/swirls.png"), asset("styles/brick.png"));
    let output = dir.path().join("two.safetensors");
    let logs = dir.path().join("logs");
    let json = dir.path().join("log.jsonl");
    let mut args = small_run(path_str(&vgg), path_str(&output), &swirls, &photos);
    args.extend([
        "--style",
        &brick,
        "--steps",
        "4",
        "--log-every",
        "2",
        "--checkpoint-every",
        "2",
        "--tv-weight",
        "1",
        "--sample",
        &swirls,
        "--log-dir",
        path_str(&logs),
        "--log-json",
        path_str(&json),
        "--style-size",
        "64",
    ]);
    let result = atelier(&args);
    assert!(result.status.success(), "{}", stderr(&result));
    let meta = models::file::read_meta(&output).unwrap();
    assert_eq!(meta.styles, ["swirls", "brick"]);
    assert_eq!(meta.spec.n_styles, 2);
    for step in [2, 4] {
        for style in ["swirls", "brick"] {
            assert!(logs
                .join(format!("two.sample-{step:07}.{style}.png"))
                .exists());
        }
    }

    let board = read_tensorboard(&logs);
    let scalars = board["scalars"].as_object().unwrap();
    for tag in [
        "loss/content",
        "loss/style",
        "loss/tv",
        "loss/total",
        "train/lr",
        "train/images_per_sec",
        "loss/style/relu1_2",
        "loss/style/relu2_2",
        "loss/style/relu3_3",
        "loss/style/relu4_3",
    ] {
        let points = scalars[tag]
            .as_array()
            .unwrap_or_else(|| panic!("no {tag}"));
        let steps: Vec<u64> = points.iter().map(|p| p[0].as_u64().unwrap()).collect();
        assert_eq!(steps, [2, 4], "{tag}");
    }
    // The values are the JSON log's, as f32.
    for (line, point) in read_json_lines(&json)
        .iter()
        .zip(scalars["loss/total"].as_array().unwrap())
    {
        let (ours, theirs) = (line["total"].as_f64().unwrap(), point[1].as_f64().unwrap());
        assert!(
            (ours - theirs).abs() <= 1e-6 * ours.abs(),
            "{ours} vs {theirs}"
        );
    }
    assert!((scalars["train/lr"][0][1].as_f64().unwrap() - 1e-3).abs() < 1e-9);
    let (width, height) = image::image_dimensions(&swirls).unwrap();
    for style in ["swirls", "brick"] {
        let images = board["images"][format!("sample/{style}")]
            .as_array()
            .unwrap();
        let got: Vec<(u64, u64, u64)> = images
            .iter()
            .map(|i| {
                (
                    i[0].as_u64().unwrap(),
                    i[1].as_u64().unwrap(),
                    i[2].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (2, width as u64, height as u64),
                (4, width as u64, height as u64)
            ]
        );
    }
}

/// Two identical runs, each in its own folder with the same relative paths, write
/// byte-identical model files and checkpoints (the safetensors header in a fixed key order).
#[test]
fn identical_runs_write_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let vgg = random_vgg16(dir.path());
    let (style, photos) = (asset("styles/swirls.png"), asset("photos"));
    let mut files = Vec::new();
    for run in ["a", "b"] {
        let folder = dir.path().join(run);
        std::fs::create_dir(&folder).unwrap();
        let mut args = small_run(path_str(&vgg), "model.safetensors", &style, &photos);
        args.extend(["--steps", "2", "--checkpoint-every", "1"]);
        let result = Command::new(env!("CARGO_BIN_EXE_atelier"))
            .args(&args)
            .current_dir(&folder)
            .output()
            .unwrap();
        assert!(result.status.success(), "{}", stderr(&result));
        files.push(
            ["model.safetensors", "model.checkpoint.safetensors"]
                .map(|name| std::fs::read(folder.join(name)).unwrap()),
        );
    }
    assert!(files[0][0] == files[1][0], "the model files differ");
    assert!(files[0][1] == files[1][1], "the checkpoints differ");
    // And the file is still one that safetensors and atelier read.
    let meta = models::file::read_meta(&dir.path().join("a/model.safetensors")).unwrap();
    assert_eq!(meta.styles, ["swirls"]);
}

/// A finished run resumed with a new output, more steps and a new logging cadence: the new
/// model and checkpoint go to the new name, the old checkpoint stays; a flag that changes the
/// math is refused before any work, naming the flag.
#[test]
fn a_resumed_run_may_take_a_new_output_but_not_new_math() {
    let dir = tempfile::tempdir().unwrap();
    let vgg = random_vgg16(dir.path());
    let (style, photos) = (asset("styles/swirls.png"), asset("photos"));
    let first = dir.path().join("first.safetensors");
    let checkpoint = dir.path().join("first.checkpoint.safetensors");
    let mut args = small_run(path_str(&vgg), path_str(&first), &style, &photos);
    args.extend(["--steps", "2"]);
    let result = atelier(&args);
    assert!(result.status.success(), "{}", stderr(&result));

    let refused = atelier(&["train", "--resume", path_str(&checkpoint), "--lr", "0.5"]);
    let message = stderr(&refused);
    assert_eq!(refused.status.code(), Some(2), "{message}");
    assert!(
        message.starts_with("atelier: error: --lr ") && message.contains("differs"),
        "{message}"
    );

    let longer = dir.path().join("longer.safetensors");
    let log = dir.path().join("longer.jsonl");
    let result = atelier(&[
        "train",
        "--resume",
        path_str(&checkpoint),
        "-o",
        path_str(&longer),
        "--steps",
        "4",
        "--log-every",
        "1",
        "--log-json",
        path_str(&log),
        "--quiet",
        "--threads",
        "2",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let steps: Vec<u64> = read_json_lines(&log)
        .iter()
        .map(|line| line["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [3, 4]);
    assert_eq!(
        models::file::read_meta(&longer)
            .unwrap()
            .training
            .unwrap()
            .steps,
        4
    );
    let branched = trainer::Checkpoint::load(&dir.path().join("longer.checkpoint.safetensors"));
    assert_eq!(branched.unwrap().step, 4);
    assert_eq!(trainer::Checkpoint::load(&checkpoint).unwrap().step, 2);
    assert_eq!(
        models::file::read_meta(&first)
            .unwrap()
            .training
            .unwrap()
            .steps,
        2
    );
}

/// Validation on a folder of its own: on every `--val-every` step (and the last), the
/// yardstick's losses on the validation photos go to the JSON log and TensorBoard, with a grid
/// of their stylizations; the loss network (and so the yardstick) is a random VGG-19 here.
#[test]
fn validation_losses_go_to_the_log_and_tensorboard() {
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(0);
    let vgg = dir.path().join("vgg19.safetensors");
    let random = Vgg::random(VggKind::Vgg19, Device::Cpu);
    models::file::save_safetensors(&vgg, &random.named_tensors(), &Default::default()).unwrap();
    let val = dir.path().join("val");
    std::fs::create_dir(&val).unwrap();
    for name in ["chelsea.png", "rocket.jpg"] {
        std::fs::copy(asset(&format!("photos/{name}")), val.join(name)).unwrap();
    }
    let (style, photos) = (asset("styles/swirls.png"), asset("photos"));
    let output = dir.path().join("model.safetensors");
    let (logs, json) = (dir.path().join("logs"), dir.path().join("log.jsonl"));
    let mut args = small_run(path_str(&vgg), path_str(&output), &style, &photos);
    set(&mut args, "--loss-net", "vgg19");
    args.extend([
        "--steps",
        "3",
        "--log-every",
        "1",
        "--val-data",
        path_str(&val),
        "--val-every",
        "2",
        "--log-json",
        path_str(&json),
        "--log-dir",
        path_str(&logs),
    ]);
    let result = atelier(&args);
    assert!(result.status.success(), "{}", stderr(&result));
    let lines = read_json_lines(&json);
    let validated: Vec<u64> = lines
        .iter()
        .filter(|line| line.get("val").is_some())
        .map(|line| line["step"].as_u64().unwrap())
        .collect();
    assert_eq!(validated, [2, 3]);
    for line in lines.iter().filter(|line| line.get("val").is_some()) {
        let val = &line["val"];
        assert_eq!(val["photos"], 2);
        for term in ["content", "style", "tv", "total"] {
            let value = val[term].as_f64().unwrap();
            assert!(value.is_finite() && value > 0.0, "{term}: {line}");
        }
    }
    let board = read_tensorboard(&logs);
    for tag in ["val/content", "val/style", "val/total"] {
        let steps: Vec<u64> = board["scalars"][tag]
            .as_array()
            .unwrap_or_else(|| panic!("no {tag}"))
            .iter()
            .map(|p| p[0].as_u64().unwrap())
            .collect();
        assert_eq!(steps, [2, 3], "{tag}");
    }
    // One row of the two 64x64 validation photos, stylized.
    let grid = board["images"]["val/swirls"].as_array().unwrap();
    assert_eq!(grid[0], serde_json::json!([2, 128, 64]));

    // One photo of --data as --val-data: validated on, and the other three trained on.
    let one = dir.path().join("one.safetensors");
    let one_json = dir.path().join("one.jsonl");
    let chelsea = asset("photos/chelsea.png");
    let mut args = small_run(path_str(&vgg), path_str(&one), &style, &photos);
    set(&mut args, "--loss-net", "vgg19");
    args.extend(["--steps", "1", "--val-data", &chelsea]);
    args.extend(["--log-json", path_str(&one_json)]);
    let result = atelier(&args);
    assert!(result.status.success(), "{}", stderr(&result));
    assert_eq!(read_json_lines(&one_json)[0]["val"]["photos"], 1);
    let summary = models::file::read_meta(&one).unwrap().training.unwrap();
    assert_eq!(summary.dataset_size, 3);
}

/// `--extend builtin`: one model of 27 styles whose first 26 are the built-in network's to the
/// bit (every weight, and the stylizations), and whose new style's loss falls while only its
/// γ/β rows train.
#[test]
fn extending_the_builtin_network_keeps_its_styles_and_learns_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let vgg = random_vgg16(dir.path());
    let (style, photos) = (asset("styles/swirls.png"), asset("photos"));
    let output = dir.path().join("27.safetensors");
    let log = dir.path().join("log.jsonl");
    let mut args = small_run(path_str(&vgg), path_str(&output), &style, &photos);
    unset(&mut args, "--arch");
    set(&mut args, "--batch-size", "4");
    args.extend([
        "--extend",
        "builtin",
        "--steps",
        "12",
        "--log-every",
        "1",
        "--log-json",
        path_str(&log),
    ]);
    let result = atelier(&args);
    assert!(result.status.success(), "{}", stderr(&result));

    let builtin = infer::builtin::load(Device::Cpu).unwrap();
    let extended = models::Model::load(&output, Device::Cpu).unwrap();
    let mut names = builtin.meta.styles.clone();
    names.push("swirls".into());
    assert_eq!(extended.meta.styles, names);
    assert_eq!(extended.meta.spec.n_styles, 27);
    let old = builtin.vars.variables();
    for (name, tensor) in extended.vars.variables() {
        let before = &old[&name];
        let kept = if before.size() == tensor.size() {
            tensor.shallow_clone()
        } else {
            tensor.narrow(0, 0, 26)
        };
        assert!(kept.equal(before), "{name} changed");
    }
    let photo = trainer::load_style_image(Path::new(&asset("photos/chelsea.png")), Some(64))
        .unwrap()
        .unsqueeze(0);
    tch::no_grad(|| {
        for style in 0..26 {
            let run = |model: &models::Model| {
                let params = model.net.single_style_params(style).unwrap();
                model.net.forward(&photo, &params).unwrap()
            };
            assert!(
                run(&extended).equal(&run(&builtin)),
                "style {style} differs"
            );
        }
    });

    let style_at: Vec<f64> = read_json_lines(&log)
        .iter()
        .map(|line| line["style"].as_f64().unwrap())
        .collect();
    eprintln!("new style's loss: {style_at:.4?}");
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    assert!(
        mean(&style_at[9..]) < 0.8 * mean(&style_at[..3]),
        "{style_at:?}"
    );
}
