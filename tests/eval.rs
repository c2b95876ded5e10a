//! `atelier eval` against an independent PyTorch computation of the same yardstick, on bundled
//! pictures and the VGG-19 of `make vgg`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::imageops::FilterType;
use image::DynamicImage;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn asset(path: &str) -> PathBuf {
    repo().join("assets").join(path)
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

fn vgg19_weights() -> PathBuf {
    let path = repo().join("weights/vgg19.safetensors");
    assert!(
        path.exists(),
        "{} is missing: run `make vgg`",
        path.display()
    );
    path
}

fn open(path: &Path) -> DynamicImage {
    models::pixels::decode(&std::fs::read(path).unwrap()).unwrap()
}

/// Writes `image` resized to `width`x`height` as a PNG and returns it as decoded back.
fn save(image: &DynamicImage, width: u32, height: u32, path: &Path) -> DynamicImage {
    let resized = image
        .resize_exact(width, height, FilterType::Triangle)
        .to_rgb8();
    resized.save(path).unwrap();
    open(path)
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 2e-3 * want.abs() + 1e-6,
        "{what}: atelier {got} vs pytorch {want}"
    );
}

#[test]
fn eval_matches_an_independent_pytorch_computation() {
    let dir = tempfile::tempdir().unwrap();
    let (photos, stylized) = (dir.path().join("photos"), dir.path().join("stylized"));
    std::fs::create_dir_all(&photos).unwrap();
    std::fs::create_dir_all(&stylized).unwrap();
    // Two photos at 96 on the longer side and "stylizations" of the same sizes (other pictures,
    // so every term is far from 0); the style picture at 96 too, so nothing is resized.
    let pairs = [
        (
            "chelsea.png",
            "photos/chelsea.png",
            "styles/brick.png",
            96,
            64,
        ),
        (
            "astronaut.png",
            "photos/astronaut.png",
            "photos/rocket.jpg",
            96,
            96,
        ),
    ];
    let mut tensors = Vec::new();
    for (i, (name, photo, other, width, height)) in pairs.iter().enumerate() {
        let photo = save(&open(&asset(photo)), *width, *height, &photos.join(name));
        let styled_name = format!("{}_look.png", name.trim_end_matches(".png"));
        let styled = save(
            &open(&asset(other)),
            *width,
            *height,
            &stylized.join(styled_name),
        );
        tensors.push((
            format!("photo.{i}"),
            models::pixels::image_to_tensor(&photo),
        ));
        tensors.push((
            format!("stylized.{i}"),
            models::pixels::image_to_tensor(&styled),
        ));
    }
    let style_path = dir.path().join("swirls.png");
    let swirls = open(&asset("styles/swirls.png"));
    let scale = 96.0 / swirls.width().max(swirls.height()) as f64;
    let style = save(
        &swirls,
        (swirls.width() as f64 * scale).round() as u32,
        (swirls.height() as f64 * scale).round() as u32,
        &style_path,
    );
    assert_eq!(style.width().max(style.height()), 96);
    tensors.push(("style".into(), models::pixels::image_to_tensor(&style)));
    let fixture = dir.path().join("images.safetensors");
    models::file::save_safetensors(&fixture, &tensors, &Default::default()).unwrap();

    let weights = vgg19_weights();
    let output = atelier(&[
        "eval",
        photos.to_str().unwrap(),
        "--style",
        style_path.to_str().unwrap(),
        "--stylized",
        stylized.to_str().unwrap(),
        "--loss-weights",
        weights.to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let got: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    let out = dir.path().join("reference.json");
    let reference = Command::new(repo().join(".venv/bin/python"))
        .arg(repo().join("tests/reference/eval_reference.py"))
        .args([&weights, &fixture, &out])
        .output()
        .unwrap();
    assert!(reference.status.success(), "{}", stderr(&reference));
    let want: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();

    let images = got["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    // Folders are read sorted: astronaut, then chelsea.
    for (image, want) in images.iter().zip([&want[1], &want[0]]) {
        let name = image["image"].as_str().unwrap().to_string();
        close(
            image["content"].as_f64().unwrap(),
            want["content"].as_f64().unwrap(),
            &format!("{name} content"),
        );
        close(
            image["tv"].as_f64().unwrap(),
            want["tv"].as_f64().unwrap(),
            &format!("{name} tv"),
        );
        let layers = image["style_layers"].as_object().unwrap();
        let mut style_sum = 0.0;
        for (tap, want) in ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
            .iter()
            .zip(want["style_layers"].as_array().unwrap())
        {
            let want = want.as_f64().unwrap();
            close(
                layers[*tap].as_f64().unwrap(),
                want,
                &format!("{name} {tap}"),
            );
            style_sum += want;
        }
        close(
            image["style"].as_f64().unwrap(),
            style_sum,
            &format!("{name} style"),
        );
        let total = image["total"].as_f64().unwrap();
        let parts = image["content"].as_f64().unwrap()
            + image["style"].as_f64().unwrap()
            + image["tv"].as_f64().unwrap();
        close(total, parts, &format!("{name} total"));
    }
    let mean = got["mean"]["total"].as_f64().unwrap();
    let average =
        (images[0]["total"].as_f64().unwrap() + images[1]["total"].as_f64().unwrap()) / 2.0;
    close(mean, average, "mean total");
}

#[test]
fn eval_of_the_photo_itself_has_no_content_loss_and_a_network_source_runs() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    save(
        &open(&asset("photos/chelsea.png")),
        72,
        48,
        &photos.join("chelsea.png"),
    );
    let weights = vgg19_weights();
    let style = asset("styles/swirls.png");
    let run = |source: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "eval",
            photos.to_str().unwrap(),
            "--style",
            style.to_str().unwrap(),
            "--loss-weights",
            weights.to_str().unwrap(),
            "--device",
            "cpu",
            "--json",
        ];
        args.extend(source);
        let output = atelier(&args);
        assert!(output.status.success(), "{}", stderr(&output));
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()["mean"].clone()
    };
    let itself = run(&["--stylized", photos.to_str().unwrap()]);
    assert_eq!(itself["content"].as_f64().unwrap(), 0.0);
    assert!(itself["style"].as_f64().unwrap() > 0.0);
    let builtin = run(&["--builtin", "3"]);
    assert!(builtin["content"].as_f64().unwrap() > 0.0);
    assert!(builtin["total"].as_f64().unwrap().is_finite());
    // The arbitrary-style network takes the style picture itself: its style loss against that
    // picture is lower than the photo's own and than a built-in style's.
    let arbitrary = run(&["--arbitrary"]);
    let style_loss = |v: &serde_json::Value| v["style"].as_f64().unwrap();
    assert!(
        style_loss(&arbitrary) < style_loss(&itself),
        "{arbitrary} vs {itself}"
    );
    assert!(
        style_loss(&arbitrary) < style_loss(&builtin),
        "{arbitrary} vs {builtin}"
    );

    // Bad inputs: one line, exit 2.
    for (source, needle) in [
        (vec!["--stylized", "/nonexistent-folder"], "not a folder"),
        (vec!["--builtin", "99"], "style 99"),
    ] {
        let mut args = vec![
            "eval",
            photos.to_str().unwrap(),
            "--style",
            style.to_str().unwrap(),
        ];
        args.extend(source);
        let output = atelier(&args);
        assert_eq!(output.status.code(), Some(2));
        assert_eq!(
            stderr(&output).trim_end().lines().count(),
            1,
            "{}",
            stderr(&output)
        );
        assert!(stderr(&output).contains(needle), "{}", stderr(&output));
    }
}
