//! Any picture as a style (`--style-image`, `atelier style-vector`) end to end: the real binary
//! with the embedded arbitrary-style networks on the bundled photos and style pictures.

mod infer_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use image::RgbImage;
use infer_support::*;

fn style(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/styles")
        .join(name)
        .display()
        .to_string()
}

/// A `width`×`height` crop of a bundled photo, saved as `dir/photo.png`: real content, small
/// enough to keep each run to a second or two.
fn photo(dir: &Path, name: &str, width: u32, height: u32) -> PathBuf {
    let full = open(&repo_photo(name));
    let (x, y) = ((full.width() - width) / 2, (full.height() - height) / 2);
    let path = dir.join("photo.png");
    full.crop_imm(x, y, width, height)
        .to_rgb8()
        .save(&path)
        .unwrap();
    path
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `atelier stylize PHOTO -o OUT ARGS` and the picture it wrote.
fn stylize(photo: &Path, out: &Path, args: &[&str]) -> RgbImage {
    let mut all = vec!["stylize", arg(photo), "-o", arg(out), "-q"];
    all.extend_from_slice(args);
    assert_ok(&run(&all));
    open(out).to_rgb8()
}

/// Fails with exit code 2 and one line of error, mentioning `expected`.
fn assert_refused(output: &Output, expected: &str) {
    let message = stderr(output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert_eq!(message.trim_end().lines().count(), 1, "{message}");
    assert!(message.contains(expected), "{message}");
}

#[test]
fn a_style_picture_stylizes_a_photo_at_its_own_size() {
    let dir = tempfile::tempdir().unwrap();
    let input = photo(dir.path(), "chelsea.png", 180, 124);
    // Beside the input, named after the painting.
    assert_ok(&run(&[
        "stylize",
        arg(&input),
        "--style-image",
        &style("swirls.png"),
        "-q",
    ]));
    let swirls = open(&dir.path().join("photo_swirls.png")).to_rgb8();
    let brick = stylize(
        &input,
        &dir.path().join("brick.png"),
        &["--style-image", &style("brick.png")],
    );
    let original = open(&input).to_rgb8();
    assert_eq!(swirls.dimensions(), (180, 124));
    assert_eq!(brick.dimensions(), (180, 124));
    let from_photo = mean_abs_difference(&swirls, &original);
    let between = mean_abs_difference(&swirls, &brick);
    assert!(
        from_photo > 20.0,
        "the output is close to the photo: {from_photo}"
    );
    assert!(between > 20.0, "two paintings give one picture: {between}");

    // stdin to stdout gives the same picture.
    let mut child = atelier()
        .args([
            "stylize",
            "-",
            "-o",
            "-",
            "--style-image",
            &style("swirls.png"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let bytes = std::fs::read(&input).unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_ok(&output);
    let piped = image::load_from_memory(&output.stdout).unwrap().to_rgb8();
    assert_eq!(piped, swirls);
}

#[test]
fn a_saved_style_vector_gives_the_picture_s_output_and_mixes_differ() {
    let dir = tempfile::tempdir().unwrap();
    let input = photo(dir.path(), "astronaut.png", 128, 160);
    let vector = dir.path().join("swirls.style");
    assert_ok(&run(&[
        "style-vector",
        &style("swirls.png"),
        "-o",
        arg(&vector),
    ]));
    // An existing vector is kept without --force.
    assert_refused(
        &run(&["style-vector", &style("brick.png"), "-o", arg(&vector)]),
        "exists",
    );

    let from_picture = stylize(
        &input,
        &dir.path().join("picture.png"),
        &["--style-image", &style("swirls.png")],
    );
    let from_vector = stylize(
        &input,
        &dir.path().join("vector.png"),
        &["--style-image", arg(&vector)],
    );
    assert_eq!(from_vector, from_picture);

    let brick = stylize(
        &input,
        &dir.path().join("brick.png"),
        &["--style-image", &style("brick.png")],
    );
    let mix_list = format!("{}:0.5,{}:0.5", arg(&vector), style("brick.png"));
    let mixed = stylize(
        &input,
        &dir.path().join("mix.png"),
        &["--style-image", &mix_list],
    );
    for (name, alone) in [("swirls", &from_picture), ("brick", &brick)] {
        let difference = mean_abs_difference(&mixed, alone);
        assert!(difference > 5.0, "the mix is {name} alone: {difference}");
    }
    // Weights are normalised: 1:1 is 0.5:0.5.
    let unnormalised = format!("{}:1,{}:1", style("swirls.png"), style("brick.png"));
    let same_mix = stylize(
        &input,
        &dir.path().join("mix2.png"),
        &["--style-image", &unnormalised],
    );
    assert!(mean_abs_difference(&same_mix, &mixed) < 0.01);
}

#[test]
fn strength_moves_the_style_vector_towards_the_photo_s_own() {
    let dir = tempfile::tempdir().unwrap();
    let input = photo(dir.path(), "chelsea.png", 160, 120);
    let original = open(&input).to_rgb8();
    let swirls = style("swirls.png");
    let at = |strength: &str, preserve: bool| {
        let out = dir.path().join(format!("s{strength}{preserve}.png"));
        let mut args = vec!["--style-image", swirls.as_str(), "--strength", strength];
        if preserve {
            args.push("--preserve-color");
        }
        stylize(&input, &out, &args)
    };
    let full = at("1", false);
    let none = at("0", false);
    let half = at("0.5", false);
    let (d_full, d_none, d_half) = (
        mean_abs_difference(&full, &original),
        mean_abs_difference(&none, &original),
        mean_abs_difference(&half, &original),
    );
    // The photo's own vector: the network's near-reconstruction of the photo, not a blend.
    assert!(
        d_none < 20.0 && d_none < d_full / 2.0,
        "{d_none} vs {d_full}"
    );
    assert!(
        d_none < d_half && d_half < d_full,
        "{d_none} {d_half} {d_full}"
    );
    // Not a pixel blend of the two ends.
    let blend = RgbImage::from_fn(160, 120, |x, y| {
        let (a, b) = (full.get_pixel(x, y).0, none.get_pixel(x, y).0);
        image::Rgb(std::array::from_fn(|c| {
            ((a[c] as f32 + b[c] as f32) / 2.0).round() as u8
        }))
    });
    assert!(mean_abs_difference(&half, &blend) > 3.0);

    // --preserve-color keeps the photo's chroma: R−G and B−G follow the photo.
    let kept = at("1", true);
    let chroma_error = |image: &RgbImage| {
        let total: f64 = image
            .pixels()
            .zip(original.pixels())
            .map(|(p, q)| {
                let chroma = |p: &image::Rgb<u8>| {
                    let [r, g, b] = p.0.map(f64::from);
                    (r - g, b - g)
                };
                let ((a, b), (c, d)) = (chroma(p), chroma(q));
                (a - c).abs() + (b - d).abs()
            })
            .sum();
        total / (image.width() * image.height()) as f64
    };
    assert!(
        chroma_error(&kept) < chroma_error(&full) / 3.0,
        "{} vs {}",
        chroma_error(&kept),
        chroma_error(&full)
    );
}

#[test]
fn tiles_match_the_untiled_output_with_the_whole_photo_s_vector() {
    let dir = tempfile::tempdir().unwrap();
    let input = photo(dir.path(), "rocket.jpg", 400, 260);
    for strength in ["1", "0.5"] {
        let args = |tile: &str| {
            vec![
                "--style-image".to_string(),
                style("hubble_deep_field.jpg"),
                "--strength".into(),
                strength.into(),
                "--tile".into(),
                tile.into(),
            ]
        };
        let run_with = |tile: &str| {
            let out = dir.path().join(format!("{strength}-{tile}.png"));
            let args = args(tile);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            stylize(&input, &out, &args)
        };
        let (whole, tiled) = (run_with("off"), run_with("256"));
        let difference = mean_abs_difference(&whole, &tiled);
        // The tiling tolerance of `infer::tiling` (whole-image statistics at full size).
        assert!(difference < 0.5, "strength {strength}: {difference}");
    }
}

#[test]
fn same_size_photos_in_one_batch_each_get_their_own_vector_below_strength_1() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("in");
    std::fs::create_dir(&folder).unwrap();
    for name in ["astronaut.png", "camera.png"] {
        let crop = photo(dir.path(), name, 96, 96);
        std::fs::rename(crop, folder.join(name)).unwrap();
    }
    let out = dir.path().join("out");
    let swirls = style("swirls.png");
    let common = ["--style-image", swirls.as_str(), "--strength", "0.4"];
    let mut args = vec![
        "stylize",
        arg(&folder),
        "-o",
        arg(&out),
        "-q",
        "--batch",
        "2",
    ];
    args.extend_from_slice(&common);
    assert_ok(&run(&args));
    for name in ["astronaut.png", "camera.png"] {
        let alone = stylize(
            &folder.join(name),
            &dir.path().join(format!("alone-{name}")),
            &common,
        );
        let batched = open(&out.join(name)).to_rgb8();
        assert!(mean_abs_difference(&batched, &alone) < 0.01, "{name}");
    }
}

#[test]
fn sheet_and_styles_show_style_pictures() {
    let dir = tempfile::tempdir().unwrap();
    let input = photo(dir.path(), "chelsea.png", 120, 80);
    let sheet = dir.path().join("sheet.png");
    let pictures = format!("{},{}", style("swirls.png"), style("brick.png"));
    let output = run(&[
        "sheet",
        arg(&input),
        "--style-image",
        &pictures,
        "-o",
        arg(&sheet),
    ]);
    assert_ok(&output);
    assert!(
        stderr(&output).contains("2 styles of arbitrary"),
        "{}",
        stderr(&output)
    );
    // Three cells (the original and two styles) in a row of two and a row of one.
    let (width, height) = open(&sheet).to_rgb8().dimensions();
    assert!(width > 2 * 120 && width < 3 * 120, "{width}");
    assert!(height > 2 * 80, "{height}");
    let weighted = format!("{}:0.5,{}", style("swirls.png"), style("brick.png"));
    let bad = dir.path().join("bad.png");
    assert_refused(
        &run(&[
            "sheet",
            arg(&input),
            "--style-image",
            &weighted,
            "-o",
            arg(&bad),
        ]),
        "drop the weight",
    );
    assert!(!bad.exists());

    let styles = run(&["styles"]);
    assert_ok(&styles);
    assert!(String::from_utf8_lossy(&styles.stdout).contains("--style-image"));
}

/// Half a second of ffmpeg's `testsrc2` pattern at 64x48 and 10 fps: 5 frames.
fn make_clip(dir: &Path) -> PathBuf {
    let clip = dir.join("clip.mp4");
    let ffmpeg = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=64x48:rate=10:duration=0.5")
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(&clip)
        .output()
        .expect("ffmpeg is installed (scripts/setup.sh)");
    assert!(
        ffmpeg.status.success(),
        "{}",
        String::from_utf8_lossy(&ffmpeg.stderr)
    );
    clip
}

#[test]
fn video_takes_a_style_picture() {
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(dir.path());
    let out = dir.path().join("styled.mp4");
    let output = run(&[
        "video",
        arg(&clip),
        "-o",
        arg(&out),
        "--style-image",
        &style("swirls.png"),
        "--strength",
        "0.8",
        "--json",
    ]);
    assert_ok(&output);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["frames"], 5);
    assert_eq!(report["size"], serde_json::json!([64, 48]));
    assert!(std::fs::metadata(&out).unwrap().len() > 0);
}

#[test]
fn bad_style_inputs_fail_on_one_line_before_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = photo(dir.path(), "chelsea.png", 64, 48);
    let out = dir.path().join("out.png");
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "a painting, in words").unwrap();
    let short = dir.path().join("short.style");
    let vector = models::style_vector::StyleVector::new(
        &tch::Tensor::ones([64], (tch::Kind::Float, tch::Device::Cpu)),
        "elsewhere",
    )
    .unwrap();
    vector.save(&short).unwrap();
    let missing = dir.path().join("missing.jpg");
    let model = random_johnson(dir.path());
    let cases: [(Vec<&str>, &str); 5] = [
        (
            vec!["--style-image", arg(&notes)],
            "neither an image nor an atelier style vector",
        ),
        (
            vec!["--style-image", arg(&short)],
            "it has 64 values, the network takes 100",
        ),
        (vec!["--style-image", arg(&missing)], "cannot read"),
        (
            vec!["--style-image", arg(&input), "-m", arg(&model)],
            "cannot be combined with -m",
        ),
        (
            vec!["--style-image", arg(&input), "--style", "3"],
            "--style",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["stylize", arg(&input), "-o", arg(&out)];
        all.extend(args);
        assert_refused(&run(&all), expected);
        assert!(!out.exists(), "{expected}: an output was written");
    }
    // The same checks guard video (before ffmpeg starts) and style-vector.
    let video_out = dir.path().join("out.mp4");
    let clip = make_clip(dir.path());
    assert_refused(
        &run(&[
            "video",
            arg(&clip),
            "-o",
            arg(&video_out),
            "--style-image",
            arg(&notes),
        ]),
        "neither an image",
    );
    assert!(!video_out.exists());
    let vector_out = dir.path().join("notes.style");
    assert_refused(
        &run(&["style-vector", arg(&notes), "-o", arg(&vector_out)]),
        "neither an image",
    );
    assert!(!vector_out.exists());
}
