//! The small subcommands end to end through the real binary: `info`, `styles`, `sheet`,
//! `convert` and `inspect`, and the top-level help.

mod infer_support;

use infer_support::*;

fn stdout_json(output: &std::process::Output) -> serde_json::Value {
    assert_ok(output);
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON object")
}

#[test]
fn help_lists_every_subcommand() {
    let output = run(&["--help"]);
    assert_ok(&output);
    let help = String::from_utf8_lossy(&output.stdout);
    for command in [
        "info",
        "stylize",
        "video",
        "video-join",
        "convert",
        "inspect",
        "styles",
        "sheet",
        "style-vector",
        "train",
        "optimize",
        "eval",
        "serve",
        "bench",
    ] {
        assert!(
            help.contains(&format!("  {command} ")),
            "{command} missing:\n{help}"
        );
    }
}

#[test]
fn info_reports_the_libtorch_it_runs_on() {
    let info = stdout_json(&run(&["info", "--json"]));
    let version = info["libtorch_version"].as_str().unwrap();
    assert!(version.starts_with("2.11.0"), "{version}");
    assert!(info["cuda_available"].is_boolean());
    assert!(info["threads"].as_i64().unwrap() >= 1);
}

#[test]
fn styles_lists_the_built_in_network() {
    let styles = stdout_json(&run(&["styles", "--json"]));
    assert_eq!(styles["model"], "multistyle26");
    assert_eq!(styles["styles"].as_array().unwrap().len(), 26);
    assert_eq!(styles["default"], 19);
}

#[test]
fn sheet_draws_every_style_and_keeps_an_existing_output() {
    let dir = tempfile::tempdir().unwrap();
    let sheet = dir.path().join("sheet.png");
    let photo = repo_photo("chelsea.png");
    let args = [
        "sheet",
        photo.to_str().unwrap(),
        "-o",
        sheet.to_str().unwrap(),
        "--cell-size",
        "64",
    ];
    assert_ok(&run(&args));
    // 27 cells (the original and 26 styles) of 64x43 in 6 columns and 5 rows, each with an
    // 8-pixel margin and a 22-pixel label row.
    let image = open(&sheet).to_rgb8();
    assert_eq!(
        image.dimensions(),
        (8 + 6 * (64 + 8), 8 + 5 * (43 + 22 + 8))
    );
    // The first stylized cell differs from the original cell beside it.
    let cell =
        |column: u32| image::imageops::crop_imm(&image, 8 + column * 72, 8, 64, 43).to_image();
    assert!(mean_abs_difference(&cell(0), &cell(1)) > 10.0);

    let before = std::fs::read(&sheet).unwrap();
    let again = run(&args);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert_eq!(std::fs::read(&sheet).unwrap(), before);
}

#[test]
fn convert_and_inspect_the_onnx_network() {
    let dir = tempfile::tempdir().unwrap();
    let onnx =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/multistyle26.onnx");
    let model = dir.path().join("styles.safetensors");
    let convert = [
        "convert",
        onnx.to_str().unwrap(),
        "-o",
        model.to_str().unwrap(),
    ];
    assert_ok(&run(&convert));
    // The shipped built-in model is what convert makes: same header, same tensors. (Not the
    // same bytes: the safetensors crate writes the header's keys in hash order.)
    let shipped =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/multistyle26.safetensors");
    assert_eq!(
        models::file::read_meta(&model).unwrap(),
        models::file::read_meta(&shipped).unwrap()
    );
    let tensors = |path: &std::path::Path| models::file::read_safetensors(path).unwrap();
    let (converted, builtin) = (tensors(&model), tensors(&shipped));
    assert_eq!(converted.len(), builtin.len());
    for ((name, a), (other, b)) in converted.iter().zip(&builtin) {
        assert_eq!(name, other);
        assert!(a.equal(b), "{name} differs from the shipped model");
    }

    let header = stdout_json(&run(&["inspect", model.to_str().unwrap(), "--json"]));
    assert_eq!(header["format"], "atelier-model");
    assert_eq!(header["spec"]["n_styles"], 26);
    assert_eq!(header["spec"]["output"], "sigmoid");
    assert_eq!(
        header["training"]["extra"]["converted_from"],
        "multistyle26.onnx"
    );

    // No silent overwrite, and a file that is not a network is one clear line, exit 2.
    assert_eq!(run(&convert).status.code(), Some(2));
    let not_onnx = dir.path().join("photo.onnx");
    std::fs::copy(repo_photo("rocket.jpg"), &not_onnx).unwrap();
    let output = run(&[
        "convert",
        not_onnx.to_str().unwrap(),
        "-o",
        dir.path().join("x.safetensors").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("not an ONNX model") && message.lines().count() == 1,
        "{message}"
    );
    let output = run(&["inspect", not_onnx.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("not an atelier model file"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn inspect_reads_the_style_predictor_and_says_what_the_arbitrary_network_takes() {
    let assets = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let predictor = assets.join("style_predictor.safetensors");
    let header = stdout_json(&run(&["inspect", predictor.to_str().unwrap(), "--json"]));
    assert_eq!(header["format"], "atelier-style-predictor");
    assert_eq!(header["spec"]["style_dim"], 100);
    assert_eq!(header["spec"]["input_size"], 256);
    assert!(header["source"].as_str().unwrap().contains("Ghiasi"));

    let output = run(&["inspect", predictor.to_str().unwrap()]);
    assert_ok(&output);
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("17 inverted residual blocks") && text.contains("a style vector of 100"),
        "{text}"
    );

    let output = run(&[
        "inspect",
        assets.join("arbitrary.safetensors").to_str().unwrap(),
    ]);
    assert_ok(&output);
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("any picture"), "{text}");
    // Every key is followed by at least one space, whatever its length.
    for line in text.lines() {
        let key = line.split_whitespace().next().unwrap();
        assert!(
            line.starts_with(&format!("{key} ")) || line.starts_with(' '),
            "{line}"
        );
    }
}
