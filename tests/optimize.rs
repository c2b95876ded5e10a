//! `atelier optimize` and its L-BFGS: the optimizer against `torch.optim.LBFGS`, a short real
//! optimization on a bundled photo with the VGG-19 of `make vgg`, and bad inputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use models::{Vgg, VggKind};
use tch::{Device, Kind, Tensor};
use trainer::lbfgs::{Evaluation, Lbfgs, LbfgsOptions, LineSearch};
use trainer::optimize::{Event, Init, OptimizeConfig, Scale, StyleImage};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn asset(path: &str) -> String {
    repo().join("assets").join(path).display().to_string()
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

/// The VGG-19 of `make vgg` (part of `make test`).
fn vgg19_weights() -> PathBuf {
    let path = repo().join("weights/vgg19.safetensors");
    assert!(
        path.exists(),
        "{} is missing: run `make vgg`",
        path.display()
    );
    path
}

/// The extended Rosenbrock function (independent pairs), as tests/reference/lbfgs_reference.py.
fn rosenbrock(x: &Tensor) -> Result<Evaluation, std::convert::Infallible> {
    let x = x.detach().set_requires_grad(true);
    let n = x.size()[0];
    let odd = x.slice(0, 0, n, 2);
    let even = x.slice(0, 1, n, 2);
    let value =
        ((&even - odd.square()).square() * 100.0 + (-&odd + 1.0).square()).sum(Kind::Double);
    let grad = Tensor::run_backward(&[&value], &[&x], false, false).remove(0);
    Ok((f64::try_from(&value).unwrap(), grad))
}

#[test]
fn lbfgs_follows_torch_iterate_for_iterate() {
    let cases = serde_json::json!([
        // A fixed step, a history shorter than the run (pairs are dropped), several steps.
        {"start": [-1.2, 1.0, 0.5, -0.3, 2.0, 1.5], "lr": 0.1, "max_iter": 4, "history_size": 3,
         "line_search": null, "tolerance_change": 1e-9, "steps": 5},
        // Strong Wolfe: bracketing and zoom, with the state carried between steps.
        {"start": [-1.2, 1.0, 0.5, -0.3, 2.0, 1.5], "lr": 1.0, "max_iter": 5, "history_size": 4,
         "line_search": "strong_wolfe", "tolerance_change": 1e-9, "steps": 4},
        // Far from the minimum, where the line search has to extrapolate.
        {"start": [3.0, -2.0, -2.5, 4.0], "lr": 1.0, "max_iter": 6, "history_size": 10,
         "line_search": "strong_wolfe", "tolerance_change": 1e-9, "steps": 3},
    ]);
    let dir = tempfile::tempdir().unwrap();
    let cases_path = dir.path().join("cases.json");
    let out_path = dir.path().join("out.json");
    std::fs::write(&cases_path, cases.to_string()).unwrap();
    let reference = Command::new(repo().join(".venv/bin/python"))
        .arg(repo().join("tests/reference/lbfgs_reference.py"))
        .args([&cases_path, &out_path])
        .output()
        .unwrap();
    assert!(reference.status.success(), "{}", stderr(&reference));
    let expected: Vec<Vec<serde_json::Value>> =
        serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();

    for (case, steps) in cases.as_array().unwrap().iter().zip(&expected) {
        let start: Vec<f64> = serde_json::from_value(case["start"].clone()).unwrap();
        let x = Tensor::from_slice(&start).to_device(Device::Cpu);
        let mut lbfgs = Lbfgs::new(LbfgsOptions {
            lr: case["lr"].as_f64().unwrap(),
            max_iter: case["max_iter"].as_u64().unwrap(),
            history_size: case["history_size"].as_u64().unwrap() as usize,
            line_search: if case["line_search"].is_null() {
                LineSearch::None
            } else {
                LineSearch::StrongWolfe
            },
            tolerance_change: case["tolerance_change"].as_f64().unwrap(),
            ..Default::default()
        });
        let mut moved = 0.0;
        for (i, step) in steps.iter().enumerate() {
            let report = lbfgs.step(&x, rosenbrock).unwrap();
            let want: Vec<f64> = serde_json::from_value(step["x"].clone()).unwrap();
            let got = Vec::<f64>::try_from(&x).unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-9 * (1.0 + w.abs()),
                    "case {case}, step {i}: {got:?} vs torch {want:?}"
                );
            }
            let loss = step["loss"].as_f64().unwrap();
            assert!(
                (report.initial_loss - loss).abs() <= 1e-9 * (1.0 + loss.abs()),
                "step {i}: loss {} vs {loss}",
                report.initial_loss
            );
            assert_eq!(lbfgs.n_iter(), step["n_iter"].as_u64().unwrap(), "step {i}");
            assert_eq!(
                lbfgs.func_evals(),
                step["func_evals"].as_u64().unwrap(),
                "step {i}"
            );
            moved += got
                .iter()
                .zip(&start)
                .map(|(g, s)| (g - s).abs())
                .sum::<f64>();
        }
        assert!(moved > 0.1, "the iterates moved: {moved}");
    }
}

#[test]
fn a_short_optimization_takes_on_the_style_and_keeps_the_content() {
    tch::set_num_threads(2);
    let vgg = Vgg::load(&vgg19_weights(), VggKind::Vgg19, Device::Cpu).unwrap();
    let read = |path: &str| models::pixels::decode(&std::fs::read(asset(path)).unwrap()).unwrap();
    let content = read("photos/chelsea.png");
    let styles = [StyleImage {
        image: read("styles/swirls.png"),
        weight: 1.0,
    }];
    let mut first = None;
    let mut n_events = 0;
    let outcome = trainer::optimize::run(
        &vgg,
        &content,
        &styles,
        Init::Content,
        &[Scale {
            size: 64,
            iterations: 25,
        }],
        &OptimizeConfig::default(),
        Device::Cpu,
        |event| {
            if let Event::Iteration { losses, .. } = event {
                first.get_or_insert_with(|| losses.clone());
                n_events += 1;
            }
            Ok(())
        },
    )
    .unwrap();
    let first = first.unwrap();
    let last = &outcome.losses;
    assert_eq!(n_events, 25);
    assert_eq!(outcome.iterations, 25);
    // Starting from the photo, the content loss starts at 0 and the style loss is all there is.
    assert!(first.content < 1e-6, "{first:?}");
    assert!(
        last.style() * 10.0 < first.style(),
        "style {} -> {}",
        first.style(),
        last.style()
    );
    assert!(last.content < last.total(), "{last:?}");
    assert!(
        last.content < first.style() / 5.0,
        "content {} vs style {}",
        last.content,
        first.style()
    );
    // 64 on the longer side, chelsea's aspect kept, pixels in range.
    assert_eq!(outcome.image.size(), [3, 43, 64]);
    let (low, high) = (
        f64::try_from(outcome.image.min()).unwrap(),
        f64::try_from(outcome.image.max()).unwrap(),
    );
    assert!((0.0..=255.0).contains(&low) && (0.0..=255.0).contains(&high));
}

#[test]
fn optimize_writes_the_image_and_its_intermediates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.png");
    let weights = vgg19_weights();
    let output = atelier(&[
        "optimize",
        &asset("photos/astronaut.png"),
        "--style",
        &asset("styles/swirls.png"),
        "--style",
        &asset("styles/brick.png"),
        "--style-blend",
        "3,1",
        "-o",
        out.to_str().unwrap(),
        "--sizes",
        "48,64",
        "--iterations",
        "2,2",
        "--save-every",
        "2",
        "--loss-weights",
        weights.to_str().unwrap(),
        "--device",
        "cpu",
        "--threads",
        "2",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["iterations"], 4);
    assert_eq!(record["size"], serde_json::json!([64, 64]));
    assert!(record["loss"]["total"].as_f64().unwrap() > 0.0);
    let image = image::open(&out).unwrap();
    assert_eq!((image.width(), image.height()), (64, 64));
    // Iteration 2 ends the first scale (48 px), 4 the second.
    assert_eq!(
        image::open(dir.path().join("out-0002.png"))
            .unwrap()
            .width(),
        48
    );
    assert_eq!(
        image::open(dir.path().join("out-0004.png"))
            .unwrap()
            .width(),
        64
    );
    // The output is kept unless --force.
    let again = atelier(&[
        "optimize",
        &asset("photos/astronaut.png"),
        "--style",
        &asset("styles/swirls.png"),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("use --force"), "{}", stderr(&again));
}

#[test]
fn bad_inputs_exit_2_with_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let not_an_image = dir.path().join("notes.png");
    std::fs::write(&not_an_image, b"not a picture").unwrap();
    let out = dir.path().join("out.png");
    let (photo, style) = (asset("photos/chelsea.png"), asset("styles/swirls.png"));
    let missing = dir.path().join("missing.png").display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![&photo, "--style", &missing], "missing.png"),
        (
            vec![not_an_image.to_str().unwrap(), "--style", &style],
            "notes.png",
        ),
        (
            vec![&photo, "--style", not_an_image.to_str().unwrap()],
            "notes.png",
        ),
        (
            vec![&photo, "--style", &style, "--sizes", "512,256"],
            "grow",
        ),
        (
            vec![
                &photo,
                "--style",
                &style,
                "--sizes",
                "128,256",
                "--iterations",
                "1,2,3",
            ],
            "iterations",
        ),
        (
            vec![&photo, "--style", &style, "--init", "nope.safetensors"],
            "--init",
        ),
        (
            vec![&photo, "--style", &style, "--style-layers", "relu9_1"],
            "relu9_1",
        ),
    ];
    for (args, needle) in cases {
        let mut full = vec!["optimize"];
        full.extend(&args);
        full.extend(["-o", out.to_str().unwrap(), "--device", "cpu"]);
        let output = atelier(&full);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
}

#[test]
fn a_fast_result_of_the_arbitrary_network_is_a_starting_point() {
    let dir = tempfile::tempdir().unwrap();
    let weights = vgg19_weights();
    let (photo, style) = (asset("photos/chelsea.png"), asset("styles/swirls.png"));
    let run = |init: &str| -> image::RgbImage {
        let out = dir.path().join(format!("{init}.png"));
        let output = atelier(&[
            "optimize",
            &photo,
            "--style",
            &style,
            "--init",
            init,
            "--sizes",
            "64",
            "--iterations",
            "1",
            "--loss-weights",
            weights.to_str().unwrap(),
            "--device",
            "cpu",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        image::open(&out).unwrap().to_rgb8()
    };
    let (from_content, from_arbitrary) = (run("content"), run("arbitrary"));
    assert_eq!(from_content.dimensions(), from_arbitrary.dimensions());
    let difference: f64 = from_content
        .as_raw()
        .iter()
        .zip(from_arbitrary.as_raw())
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .sum::<f64>()
        / from_content.as_raw().len() as f64;
    // One iteration barely moves the start: the two results differ by the stylization.
    assert!(difference > 10.0, "mean difference {difference}");
}
