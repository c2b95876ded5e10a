//! `atelier stylize` end to end: the real binary on real decoded images and real network runs.

mod infer_support;

use std::io::Write;
use std::process::Stdio;

use image::{ImageBuffer, Luma, Rgb, RgbImage, Rgba};
use infer_support::*;

fn gradient(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
    })
}

#[test]
fn odd_sizes_grayscale_rgba_and_16_bit_keep_their_size() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    gradient(37, 23).save(inputs.join("odd.png")).unwrap();
    ImageBuffer::from_fn(40, 30, |x, y| Luma([(x * 6 + y) as u8]))
        .save(inputs.join("gray.png"))
        .unwrap();
    ImageBuffer::from_fn(33, 17, |x, _| Rgba([200u8, x as u8 * 7, 30, 128]))
        .save(inputs.join("alpha.png"))
        .unwrap();
    ImageBuffer::from_fn(48, 20, |x, y| {
        Rgb([x as u16 * 1300, y as u16 * 3000, 40000u16])
    })
    .save(inputs.join("deep.png"))
    .unwrap();
    gradient(50, 18).save(inputs.join("photo.jpg")).unwrap();

    let out = dir.path().join("out");
    let output = run(&[
        "stylize",
        "-m",
        model.to_str().unwrap(),
        inputs.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_ok(&output);
    let records: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.len(), 5);
    for record in &records {
        for key in ["input", "output", "size", "seconds", "device", "precision"] {
            assert!(record.get(key).is_some(), "{key} missing from {record}");
        }
        assert_eq!(record["device"], "cpu");
        assert_eq!(record["precision"], "f32");
    }
    for (name, width, height) in [
        ("odd.png", 37, 23),
        ("gray.png", 40, 30),
        ("alpha.png", 33, 17),
        ("deep.png", 48, 20),
        ("photo.jpg", 50, 18),
    ] {
        let image = open(&out.join(name));
        assert_eq!((image.width(), image.height()), (width, height), "{name}");
        assert_eq!(image.color(), image::ColorType::Rgb8, "{name}");
    }
}

/// A baseline JPEG with an EXIF APP1 segment carrying only the Orientation tag.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = vec![b'I', b'I', 42, 0, 8, 0, 0, 0];
    tiff.extend(1u16.to_le_bytes()); // one IFD entry
    tiff.extend(0x0112u16.to_le_bytes()); // Orientation
    tiff.extend(3u16.to_le_bytes()); // SHORT
    tiff.extend(1u32.to_le_bytes());
    tiff.extend(orientation.to_le_bytes());
    tiff.extend([0, 0]);
    tiff.extend(0u32.to_le_bytes()); // no next IFD
    let mut segment = b"Exif\0\0".to_vec();
    segment.extend(tiff);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend([0xFF, 0xE1]);
    out.extend(((segment.len() + 2) as u16).to_be_bytes());
    out.extend(segment);
    out.extend(&jpeg[2..]);
    out
}

#[test]
fn exif_rotated_jpeg_comes_out_upright() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    // Stored 64x32: left half red, right half blue. Orientation 6 displays it turned 90°
    // clockwise, so upright it is 32x64 with red on top.
    let stored = RgbImage::from_fn(64, 32, |x, _| {
        if x < 32 {
            Rgb([220, 20, 20])
        } else {
            Rgb([20, 20, 220])
        }
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode_image(&stored)
        .unwrap();
    let input = dir.path().join("turned.jpg");
    std::fs::write(&input, with_exif_orientation(&jpeg, 6)).unwrap();

    // Strength 0 returns the decoded original, so the orientation is visible in the colours.
    let output = run(&[
        "stylize",
        "-m",
        model.to_str().unwrap(),
        input.to_str().unwrap(),
        "--strength",
        "0",
        "--format",
        "png",
    ]);
    assert_ok(&output);
    let upright = open(&dir.path().join("turned_random.png")).to_rgb8();
    assert_eq!(upright.dimensions(), (32, 64));
    let top = upright.get_pixel(16, 8);
    let bottom = upright.get_pixel(16, 56);
    assert!(top[0] > 150 && top[2] < 100, "top is {top:?}");
    assert!(bottom[2] > 150 && bottom[0] < 100, "bottom is {bottom:?}");
}

#[test]
fn folders_are_mirrored_and_outputs_go_beside_inputs_never_over_them() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let model = model.to_str().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(photos.join("trip/day2")).unwrap();
    gradient(40, 30).save(photos.join("a.png")).unwrap();
    gradient(30, 40).save(photos.join("trip/b.jpg")).unwrap();
    gradient(24, 24)
        .save(photos.join("trip/day2/c.webp"))
        .unwrap();
    std::fs::write(photos.join("trip/notes.txt"), "not an image").unwrap();

    let out = dir.path().join("styled");
    assert_ok(&run(&[
        "stylize",
        "-m",
        model,
        photos.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]));
    assert_eq!(
        files_under(&out),
        vec!["a.png", "trip/b.jpg", "trip/day2/c.webp"]
    );

    // Beside the input, named after the style, with the input's format.
    assert_ok(&run(&[
        "stylize",
        "-m",
        model,
        photos.join("trip/b.jpg").to_str().unwrap(),
    ]));
    assert!(photos.join("trip/b_random.jpg").is_file());

    // Mirroring a folder onto itself would overwrite every input: refused before any work.
    let before = files_under(&photos);
    let refused = run(&[
        "stylize",
        "-m",
        model,
        photos.to_str().unwrap(),
        "-o",
        photos.to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("would overwrite an input"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(files_under(&photos), before);
    let a = photos.join("a.png");
    let refused = run(&[
        "stylize",
        "-m",
        model,
        a.to_str().unwrap(),
        "-o",
        a.to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(2));
}

#[test]
fn stdin_to_stdout_with_resizing() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let png = std::fs::read(repo_photo("chelsea.png")).unwrap();
    let mut child = atelier()
        .args([
            "stylize",
            "-m",
            model.to_str().unwrap(),
            "-",
            "--max-size",
            "200",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&png).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_ok(&output);
    let image = image::load_from_memory(&output.stdout).unwrap();
    // chelsea.png is 451x300: the longer side becomes 200, the aspect ratio stays.
    assert_eq!((image.width(), image.height()), (200, 133));

    let output = run(&[
        "stylize",
        "-m",
        model.to_str().unwrap(),
        repo_photo("rocket.jpg").to_str().unwrap(),
        "-o",
        "-",
        "--scale",
        "0.25",
        "--format",
        "jpg",
    ]);
    assert_ok(&output);
    assert_eq!(
        image::guess_format(&output.stdout).unwrap(),
        image::ImageFormat::Jpeg
    );
    assert_eq!(
        image::load_from_memory(&output.stdout).unwrap().width(),
        160
    );
}

#[test]
fn tiled_and_untiled_outputs_agree() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_multistyle(dir.path());
    let photo = repo_photo("astronaut.png");
    let stylize = |tile: &str, name: &str| {
        let out = dir.path().join(name);
        let output = run(&[
            "stylize",
            "-m",
            model.to_str().unwrap(),
            photo.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--tile",
            tile,
        ]);
        assert_ok(&output);
        open(&out).to_rgb8()
    };
    let whole = stylize("off", "whole.png");
    // 512x512 in tiles of at most 288: a 3x3 grid with overlaps.
    let tiled = stylize("288", "tiled.png");
    let difference = mean_abs_difference(&whole, &tiled);
    assert!(
        difference < 2.0,
        "tiled and untiled differ by {difference} on average"
    );
    // The comparison means something only if the output is not flat.
    let mean = whole.as_raw().iter().map(|&v| v as f64).sum::<f64>() / whole.as_raw().len() as f64;
    let spread = whole
        .as_raw()
        .iter()
        .map(|&v| (v as f64 - mean).abs())
        .sum::<f64>()
        / whole.as_raw().len() as f64;
    assert!(
        spread > 10.0,
        "the random network's output is too flat ({spread}) to compare"
    );
}

#[test]
fn style_mixes_strength_and_colour_options() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_multistyle(dir.path());
    let model = model.to_str().unwrap();
    let photo = dir.path().join("cat.png");
    std::fs::copy(repo_photo("chelsea.png"), &photo).unwrap();
    let photo = photo.to_str().unwrap();

    assert_ok(&run(&["stylize", "-m", model, photo]));
    assert_ok(&run(&["stylize", "-m", model, photo, "--style", "fire"]));
    assert_ok(&run(&["stylize", "-m", model, photo, "--style", "0:1,1:3"]));
    let ink = open(&dir.path().join("cat_ink.png")).to_rgb8();
    let fire = open(&dir.path().join("cat_fire.png")).to_rgb8();
    let mix = open(&dir.path().join("cat_0-1.png")).to_rgb8();
    assert!(mean_abs_difference(&ink, &fire) > 5.0);
    assert!(mean_abs_difference(&mix, &ink) > 1.0 && mean_abs_difference(&mix, &fire) > 1.0);

    let original = open(&dir.path().join("cat.png")).to_rgb8();
    let out = dir.path().join("none.png");
    assert_ok(&run(&[
        "stylize",
        "-m",
        model,
        photo,
        "-o",
        out.to_str().unwrap(),
        "--strength",
        "0",
    ]));
    assert!(mean_abs_difference(&open(&out).to_rgb8(), &original) < 0.01);

    // Colour preserved: the stylized image's chroma (R-G and B-G) is the original's.
    let out = dir.path().join("colour.png");
    assert_ok(&run(&[
        "stylize",
        "-m",
        model,
        photo,
        "-o",
        out.to_str().unwrap(),
        "--preserve-color",
    ]));
    let kept = open(&out).to_rgb8();
    let chroma_error = |image: &RgbImage| {
        let mut total = 0.0;
        let mut n = 0.0;
        for (a, b) in image.pixels().zip(original.pixels()) {
            // Clamping at 0 and 255 distorts chroma; compare where nothing clipped.
            if a.0.iter().all(|&v| v > 0 && v < 255) {
                total += ((a[0] as f64 - a[1] as f64) - (b[0] as f64 - b[1] as f64)).abs();
                total += ((a[2] as f64 - a[1] as f64) - (b[2] as f64 - b[1] as f64)).abs();
                n += 2.0;
            }
        }
        total / n
    };
    assert!(
        chroma_error(&kept) < 1.5,
        "chroma moved by {}",
        chroma_error(&kept)
    );
    assert!(chroma_error(&ink) > 10.0);

    let bad = run(&["stylize", "-m", model, photo, "--style", "7"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("style 7 does not exist"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn jpeg_quality_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_multistyle(dir.path());
    let size = |quality: &str| {
        let out = dir.path().join(format!("q{quality}.jpg"));
        assert_ok(&run(&[
            "stylize",
            "-m",
            model.to_str().unwrap(),
            repo_photo("rocket.jpg").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--quality",
            quality,
        ]));
        std::fs::metadata(&out).unwrap().len()
    };
    assert!(size("40") < size("95"));
}

#[test]
fn a_corrupt_image_is_reported_and_the_others_finish() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    gradient(40, 30).save(inputs.join("good.png")).unwrap();
    gradient(30, 20).save(inputs.join("fine.jpg")).unwrap();
    std::fs::write(
        inputs.join("broken.png"),
        b"\x89PNG\r\n\x1a\nthis is not really a png",
    )
    .unwrap();
    let out = dir.path().join("out");
    let output = run(&[
        "stylize",
        "-m",
        model.to_str().unwrap(),
        inputs.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("broken.png"), "{message}");
    assert!(message.contains("1 of 3 inputs failed"), "{message}");
    // The good ones are written, and nothing half-written or temporary is left behind.
    assert_eq!(files_under(&out), vec!["fine.jpg", "good.png"]);
}

#[test]
fn a_file_that_is_not_a_model_stops_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let photo = repo_photo("chelsea.png");
    let out = dir.path().join("out.png");
    let output = run(&[
        "stylize",
        "-m",
        photo.to_str().unwrap(),
        photo.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).starts_with("atelier: error: cannot load the model"),
        "{}",
        stderr(&output)
    );
    assert!(!out.exists());

    // A model file whose tensors do not fit the network its header describes.
    let mut header = std::collections::HashMap::new();
    header.insert("format".to_string(), "atelier-model".to_string());
    header.insert("format_version".to_string(), "1".to_string());
    header.insert(
        "spec".to_string(),
        serde_json::to_string(&models::NetSpec::johnson()).unwrap(),
    );
    header.insert("styles".to_string(), "[\"x\"]".to_string());
    let wrong = dir.path().join("wrong.safetensors");
    let tensors = vec![(
        "conv1.conv2d.weight".to_string(),
        tch::Tensor::zeros([8, 3, 3, 3], tch::kind::FLOAT_CPU),
    )];
    models::file::save_safetensors(&wrong, &tensors, &header).unwrap();
    let output = run(&[
        "stylize",
        "-m",
        wrong.to_str().unwrap(),
        photo.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("conv1.conv2d.weight"),
        "{}",
        stderr(&output)
    );
    assert!(!out.exists());
}

#[test]
fn bf16_warns_on_a_cpu_that_would_emulate_it_and_still_stylizes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bf16.png");
    let output = run(&[
        "stylize",
        repo_photo("chelsea.png").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--device",
        "cpu",
        "--precision",
        "bf16",
        "--max-size",
        "64",
    ]);
    assert_ok(&output);
    assert_eq!(open(&out).width(), 64);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let emulated = cpuinfo.lines().any(|l| l.starts_with("flags"))
        && !cpuinfo.contains(" avx512_bf16")
        && !cpuinfo.contains(" amx_bf16");
    let warned = stderr(&output).contains("no native bf16");
    assert_eq!(warned, emulated, "{}", stderr(&output));
}

/// `--json` lines as (status, input) pairs, sorted.
fn json_statuses(output: &std::process::Output) -> Vec<(String, String)> {
    let mut records: Vec<(String, String)> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = |key: &str| record[key].as_str().unwrap_or_default().to_string();
            (text("status"), text("input"))
        })
        .collect();
    records.sort();
    records
}

/// Eleven small images in two folders (some of one size, so batches form) and a corrupt one.
fn shard_folder(dir: &std::path::Path) -> std::path::PathBuf {
    let photos = dir.join("photos");
    std::fs::create_dir_all(photos.join("reel2")).unwrap();
    for i in 0..8u32 {
        gradient(40 + (i % 3) * 8, 30)
            .save(photos.join(format!("f{i}.png")))
            .unwrap();
    }
    for i in 0..3u32 {
        gradient(33, 21 + i)
            .save(photos.join(format!("reel2/g{i}.jpg")))
            .unwrap();
    }
    std::fs::write(
        photos.join("reel2/broken.png"),
        b"\x89PNG\r\n\x1a\nnot a png",
    )
    .unwrap();
    photos
}

#[test]
fn shards_in_separate_processes_cover_a_folder_once_and_equal_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let photos = shard_folder(dir.path());
    // One network call per image: which images share a batched call depends on timing, and a
    // batched call can round a pixel differently, in one process as in several.
    let stylize = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "stylize",
            "-m",
            model.to_str().unwrap(),
            photos.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--batch",
            "1",
            "--json",
        ];
        args.extend(extra);
        run(&args)
    };
    let single = dir.path().join("single");
    let output = stylize(&single, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let all = json_statuses(&output);
    assert_eq!(all.len(), 12);
    assert_eq!(all.iter().filter(|(s, _)| s == "failed").count(), 1);

    let sharded = dir.path().join("sharded");
    let mut union = Vec::new();
    let mut sizes = Vec::new();
    for index in 0..3 {
        let shard = format!("{index}/3");
        let output = stylize(&sharded, &["--shard", &shard]);
        let records = json_statuses(&output);
        let has_broken = records
            .iter()
            .any(|(_, input)| input.ends_with("broken.png"));
        assert_eq!(output.status.code(), Some(if has_broken { 1 } else { 0 }));
        sizes.push(records.len());
        union.extend(records);
    }
    union.sort();
    assert_eq!(union, all, "every input in exactly one shard");
    assert!(sizes.iter().filter(|&&n| n > 0).count() >= 2, "{sizes:?}");
    assert_eq!(files_under(&sharded), files_under(&single));
    for name in files_under(&single) {
        assert!(
            std::fs::read(single.join(&name)).unwrap()
                == std::fs::read(sharded.join(&name)).unwrap(),
            "{name} differs"
        );
    }

    // A rerun with --skip-existing redoes nothing and says so (the corrupt input still fails).
    let before = std::fs::read(single.join("f0.png")).unwrap();
    let output = stylize(&single, &["--skip-existing"]);
    let rerun = json_statuses(&output);
    assert_eq!(rerun.len(), 12);
    let mut expected: Vec<(String, String)> = all
        .iter()
        .map(|(status, input)| {
            let status = if status == "done" { "skipped" } else { status };
            (status.to_string(), input.clone())
        })
        .collect();
    expected.sort();
    assert_eq!(rerun, expected);
    assert_eq!(std::fs::read(single.join("f0.png")).unwrap(), before);

    // `auto` takes task 2 of 3 from Slurm's or a Kubernetes Indexed Job's variables.
    let slurm = [
        ("SLURM_ARRAY_TASK_ID", "3"),
        ("SLURM_ARRAY_TASK_MIN", "1"),
        ("SLURM_ARRAY_TASK_MAX", "3"),
    ];
    let kubernetes = [("JOB_COMPLETION_INDEX", "2"), ("ATELIER_SHARD_COUNT", "3")];
    let mut picked = Vec::new();
    for (name, env) in [("slurm", &slurm[..]), ("kubernetes", &kubernetes[..])] {
        let out = dir.path().join(name);
        let output = atelier()
            .args([
                "stylize",
                "-m",
                model.to_str().unwrap(),
                photos.to_str().unwrap(),
            ])
            .args(["-o", out.to_str().unwrap(), "--shard", "auto", "--json"])
            .envs(env.iter().copied())
            .output()
            .unwrap();
        picked.push(
            json_statuses(&output)
                .into_iter()
                .map(|(_, i)| i)
                .collect::<Vec<_>>(),
        );
    }
    let shard2 = json_statuses(&stylize(&dir.path().join("fixed"), &["--shard", "2/3"]));
    let shard2: Vec<String> = shard2.into_iter().map(|(_, input)| input).collect();
    assert_eq!(picked, [shard2.clone(), shard2]);
    let output = atelier()
        .args([
            "stylize",
            "-m",
            model.to_str().unwrap(),
            photos.to_str().unwrap(),
        ])
        .args(["-o", "unused", "--shard", "auto"])
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("AWS_BATCH_JOB_ARRAY_INDEX")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("no job array"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_killed_shard_rerun_with_skip_existing_finishes_only_what_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    for i in 0..40u32 {
        gradient(96, 96 + i % 2)
            .save(photos.join(format!("f{i:02}.png")))
            .unwrap();
    }
    let out = dir.path().join("out");
    let args = [
        "stylize",
        "-m",
        model.to_str().unwrap(),
        photos.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--threads",
        "1",
        "--batch",
        "1",
    ];
    let mut child = atelier().args(args).stderr(Stdio::null()).spawn().unwrap();
    let visible = |dir: &std::path::Path| -> Vec<String> {
        if !dir.is_dir() {
            return Vec::new();
        }
        files_under(dir)
            .into_iter()
            .filter(|n| !n.starts_with('.'))
            .collect()
    };
    while visible(&out).is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let written = visible(&out);
    assert!(written.len() < 40, "the run finished before it was killed");
    // What is there is whole: outputs appear only by rename.
    for name in &written {
        assert_eq!(open(&out.join(name)).width(), 96, "{name}");
    }

    let output = atelier()
        .args(args)
        .args(["--skip-existing", "--json"])
        .output()
        .unwrap();
    assert_ok(&output);
    let records = json_statuses(&output);
    let skipped: Vec<String> = records
        .iter()
        .filter(|(status, _)| status == "skipped")
        .map(|(_, input)| input.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(skipped, written, "exactly the complete outputs are skipped");
    let done = records
        .iter()
        .filter(|(status, _)| status == "done")
        .count();
    assert_eq!(done + skipped.len(), 40);
    assert_eq!(visible(&out).len(), 40);
}

#[test]
fn two_cpu_workers_over_one_queue_write_what_one_worker_does() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let photos = shard_folder(dir.path());
    // One network thread per worker in both runs, one image per network call.
    let stylize = |out: &std::path::Path, device: &str, threads: &str| {
        run(&[
            "stylize",
            "-m",
            model.to_str().unwrap(),
            photos.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--device",
            device,
            "--threads",
            threads,
            "--batch",
            "1",
            "--json",
        ])
    };
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let single = stylize(&one, "cpu", "1");
    let workers = stylize(&two, "cpu:2", "2");
    assert_eq!(
        workers.status.code(),
        Some(1),
        "the corrupt input: {}",
        stderr(&workers)
    );
    assert_eq!(json_statuses(&workers), json_statuses(&single));
    assert_eq!(files_under(&two), files_under(&one));
    for name in files_under(&one) {
        assert!(
            std::fs::read(one.join(&name)).unwrap() == std::fs::read(two.join(&name)).unwrap(),
            "{name} differs"
        );
    }
    let refused = run(&["sheet", "x.png", "-o", "y.png", "--device", "cpu:2"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("several workers"),
        "{}",
        stderr(&refused)
    );
}
