//! Shared by the end-to-end tests: the binary, random-weight models (style networks and the
//! VGG loss network), ffmpeg, and image helpers. Random weights are enough to check sizes, formats, naming and the pipeline.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use models::vgg::{Vgg, VggKind};
use models::{Model, ModelMeta, NetSpec};
use tch::Device;

pub fn atelier() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_atelier"));
    command.stdin(Stdio::null());
    command
}

/// Runs `atelier ARGS` and returns its output.
pub fn run(args: &[&str]) -> Output {
    atelier()
        .args(args)
        .output()
        .expect("the atelier binary runs")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "atelier failed: {}",
        stderr(output)
    );
}

/// A half-width johnson network with random convs whose output sits mid-grey instead of near
/// 0 (so the images it makes are not all clamped black).
pub fn random_johnson(dir: &Path) -> PathBuf {
    let meta = ModelMeta {
        spec: NetSpec::johnson_half(),
        styles: vec!["random".into()],
        training: None,
    };
    let model = Model::new(meta, Device::Cpu).unwrap();
    let mut variables = model.vars.variables();
    tch::no_grad(|| {
        let _ = variables
            .get_mut("deconv3.conv2d.bias")
            .unwrap()
            .fill_(128.0);
        let weight = variables.get_mut("deconv3.conv2d.weight").unwrap();
        let _ = weight.g_mul_scalar_(100.0);
    });
    let path = dir.join("johnson.safetensors");
    model.save(&path).unwrap();
    path
}

/// A two-style network shaped like the multistyle26 one (sigmoid output, every layer normed),
/// with random convs: its output spans the whole [0, 255] range.
pub fn random_multistyle(dir: &Path) -> PathBuf {
    let meta = ModelMeta {
        spec: NetSpec::multistyle26().with_styles(2),
        styles: vec!["ink".into(), "fire".into()],
        training: None,
    };
    let model = Model::new(meta, Device::Cpu).unwrap();
    let mut variables = model.vars.variables();
    tch::no_grad(|| {
        // Give the two styles different γ/β so mixes differ from either style.
        let beta = variables.get_mut("in6.bias").unwrap();
        let _ = beta.get(1).fill_(1.0);
    });
    let path = dir.join("multistyle.safetensors");
    model.save(&path).unwrap();
    path
}

/// Random VGG-16 weights as torchvision names them, the loss network of training tests (real
/// weights cannot be downloaded in tests; the losses and their gradients behave the same way).
pub fn random_vgg16(dir: &Path) -> PathBuf {
    tch::manual_seed(0);
    let vgg = Vgg::random(VggKind::Vgg16, Device::Cpu);
    let path = dir.join("vgg16.safetensors");
    models::file::save_safetensors(&path, &vgg.named_tensors(), &Default::default()).unwrap();
    path
}

/// Runs `ffmpeg -v error -nostdin -y ARGS` (making test clips), which must succeed.
pub fn ffmpeg(args: &[&str]) {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg is installed (scripts/setup.sh)");
    assert!(
        output.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn repo_photo(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/photos")
        .join(name)
}

/// Opens an image file as written (no EXIF handling: outputs carry none).
pub fn open(path: &Path) -> image::DynamicImage {
    image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Mean absolute difference of two same-size RGB images, on the [0, 255] scale.
pub fn mean_abs_difference(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let total: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .sum();
    total / a.as_raw().len() as f64
}

/// Files under `dir` (recursively), relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    files.sort();
    files
}

/// `film.mp4`: 2 s of 96x64 `testsrc2` at `rate` fps in x264 with a keyframe every 12 frames,
/// and a `sine` track in AAC.
pub fn keyframed_clip(dir: &Path, rate: &str) -> PathBuf {
    let clip = dir.join("film.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size=96x64:rate={rate}:duration=2"),
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=2",
        "-c:v",
        "libx264",
        "-g",
        "12",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        clip.to_str().unwrap(),
    ]);
    clip
}

/// ffprobe's `-show_entries` of `stream` (v:0 or a:0) as text, one line per entry.
pub fn entries(path: &Path, stream: &str, entries: &str) -> Vec<String> {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            stream,
            "-show_entries",
            entries,
        ])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// Presentation times of the video packets, in order.
pub fn frame_times(path: &Path) -> Vec<String> {
    let mut times = entries(path, "v:0", "packet=pts_time");
    times.sort_by(|a, b| a.parse::<f64>().unwrap().total_cmp(&b.parse().unwrap()));
    times
}

/// Every decoded frame as RGB bytes, one after another.
pub fn decoded_frames(path: &Path) -> Vec<u8> {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-map", "0:v:0", "-vsync", "passthrough", "-f", "rawvideo"])
        .args(["-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The flags of a small CPU training run (`atelier train`): 64×64 crops, two per batch, the
/// half-width network, VGG-16 weights at `vgg` (e.g. [`random_vgg16`]).
pub fn small_run<'a>(
    vgg: &'a str,
    output: &'a str,
    style: &'a str,
    photos: &'a str,
) -> Vec<&'a str> {
    vec![
        "train",
        "--style",
        style,
        "--data",
        photos,
        "-o",
        output,
        "--loss-net",
        "vgg16",
        "--loss-weights",
        vgg,
        "--image-size",
        "64",
        "--batch-size",
        "2",
        "--arch",
        "johnson-half",
        "--device",
        "cpu",
        "--threads",
        "2",
        "--quiet",
    ]
}
