//! Fuzzing every loader of untrusted files, on stable Rust: real files (a torch.save state dict
//! and checkpoint in both formats, ONNX networks, model files, a training checkpoint, a style
//! vector, pictures in every decoded format, ffprobe's output) are mutated by a seeded
//! generator and fed to the loaders. Each input runs on a worker thread under `catch_unwind`
//! and a time limit, and this binary's allocator refuses any single allocation over
//! [`ALLOCATION_BOUND`] (libtorch allocates outside it, so the loaders check sizes before they
//! build tensors). Any panic, hang or oversized allocation fails the run; a crashing input is
//! written to `target/fuzz-findings/` for a regression test.
//!
//! `make test` runs 1,000 inputs per loader; `make fuzz` 100,000 (`FUZZ_INPUTS`), from
//! `FUZZ_SEED` (default 1). Input `i` of a loader depends only on the seed, the loader and `i`,
//! so `FUZZ_FROM=i FUZZ_INPUTS=1` replays one (`FUZZ_SAVE=1` also writes it to
//! `target/fuzz-findings/`, for an input the allocator aborted on). `FUZZ_TIMEOUT_MS` sets the limit (default 2000).

mod infer_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use image::{DynamicImage, ImageFormat};
use infer::OutputFormat;
use infer_support::ffmpeg;
use models::file::{Int8Weight, Quantized};
use models::{Model, ModelMeta, NetSpec};
use tch::{Device, Kind, Tensor};

/// The largest single allocation a loader may make on any input: 1 GiB.
const ALLOCATION_BOUND: usize = 1 << 30;
/// Pixels the image loaders accept (their header check refuses more before decoding).
const MAX_PIXELS: u64 = 16_000_000;

static OVERSIZED: AtomicUsize = AtomicUsize::new(0);
/// The input being loaded, as `loader << 32 | index`, for the message of a refused allocation.
static CURRENT: AtomicU64 = AtomicU64::new(u64::MAX);

/// The system allocator, refusing (with a message naming the input) any allocation over the
/// bound: the process then aborts as on an out-of-memory, failing the run.
struct BoundedAllocator;

impl BoundedAllocator {
    fn refuse(&self, size: usize) -> *mut u8 {
        OVERSIZED.store(size, Ordering::SeqCst);
        let current = CURRENT.load(Ordering::SeqCst);
        let (loader, index) = (current >> 32, current & 0xffff_ffff);
        let name = LOADERS.get(loader as usize).map_or("?", |l| l.name);
        let _ = writeln!(
            std::io::stderr(),
            "fuzz finding: loader `{name}` input {index} allocates {size} bytes (over the bound \
             of {ALLOCATION_BOUND}); replay with FUZZ_FROM={index} FUZZ_INPUTS=1"
        );
        std::ptr::null_mut()
    }
}

// SAFETY: every call is passed to the system allocator unchanged, or refused with a null
// pointer, which GlobalAlloc allows.
unsafe impl GlobalAlloc for BoundedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_BOUND {
            return self.refuse(layout.size());
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_BOUND {
            return self.refuse(layout.size());
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOCATION_BOUND {
            return self.refuse(new_size);
        }
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: BoundedAllocator = BoundedAllocator;

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, and every seed gives a full-period stream.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; the bias of a modulo is irrelevant here).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Length fields that break readers: sign bits, all ones, sizes beyond memory.
const HUGE_VALUES: [u64; 9] = [
    0xffff_ffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff_ffff_ffff,
    0x7fff_ffff_ffff_ffff,
    1 << 40,
    1 << 62,
    0x1_0000_0001,
    0xffff_fffe,
];

/// A position to change: anywhere, or (as often) in the first 4 KiB or the last 1 KiB, where
/// headers, directories and length fields live in every format here.
fn position(rng: &mut SplitMix64, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    match rng.below(3) {
        0 => rng.below(len),
        1 => rng.below(len.min(4096)),
        _ => len - 1 - rng.below(len.min(1024)),
    }
}

/// One mutant of the seeds: one to four of bit flips, byte sets, truncations, splices of two
/// seeds, huge little- or big-endian length fields written or inserted, and block copies.
fn mutate(rng: &mut SplitMix64, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        let at = position(rng, len);
        match rng.below(7) {
            0 if len > 0 => data[at] ^= 1 << rng.below(8),
            1 if len > 0 => {
                data[at] = [0x00, 0xff, 0x7f, 0x80, rng.next() as u8][rng.below(5)];
            }
            2 => data.truncate(at),
            3 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = position(rng, other.len());
                data.truncate(at);
                data.extend_from_slice(&other[from.min(other.len())..]);
            }
            4 | 5 => {
                let value = HUGE_VALUES[rng.below(HUGE_VALUES.len())];
                let width = if rng.below(2) == 0 { 4 } else { 8 };
                let bytes = if rng.below(2) == 0 {
                    value.to_le_bytes()[..width].to_vec()
                } else {
                    value.to_be_bytes()[8 - width..].to_vec()
                };
                if rng.below(2) == 0 {
                    data.splice(at..at, bytes);
                } else {
                    let end = (at + width).min(len);
                    data.splice(at..end, bytes);
                }
            }
            _ if len > 0 => {
                let start = rng.below(len);
                let block = data[start..(start + 1 + rng.below(64)).min(len)].to_vec();
                data.splice(at..at, block);
            }
            _ => data.push(rng.next() as u8),
        }
    }
    data
}

/// A loader under test: its name, how its seeds are made, and what it runs on an input
/// (`true` when the input was accepted).
struct Loader {
    name: &'static str,
    seeds: fn(&Path) -> Vec<Vec<u8>>,
    load: fn(&[u8]) -> bool,
}

const LOADERS: [Loader; 13] = [
    Loader {
        name: "pth-zip",
        seeds: |_| fixtures(&["state_dict.pth", "checkpoint.pth"]),
        load: load_torch_save,
    },
    Loader {
        name: "pth-legacy",
        seeds: |_| fixtures(&["state_dict_legacy.pth", "checkpoint_legacy.pth"]),
        load: load_torch_save,
    },
    Loader {
        name: "onnx",
        seeds: |_| vec![read(&repo().join("tests/fixtures/multistyle26.onnx"))],
        load: |bytes| load_convert(bytes, "fuzz.onnx"),
    },
    Loader {
        name: "onnx-qdq",
        seeds: |_| {
            vec![read(
                &repo().join("tests/fixtures/arbitrary_transform.onnx"),
            )]
        },
        load: |bytes| load_convert(bytes, "fuzz.onnx"),
    },
    Loader {
        name: "model",
        seeds: model_seeds,
        load: |bytes| Model::from_bytes(bytes, Path::new("fuzz.safetensors"), Device::Cpu).is_ok(),
    },
    Loader {
        name: "checkpoint",
        seeds: checkpoint_seeds,
        load: |bytes| trainer::Checkpoint::from_bytes(bytes, Path::new("fuzz.ckpt")).is_ok(),
    },
    Loader {
        name: "style-vector",
        seeds: style_vector_seeds,
        load: |bytes| {
            models::style_vector::StyleVector::from_bytes(bytes, Path::new("fuzz.style"), 100)
                .is_ok()
        },
    },
    Loader {
        name: "png",
        seeds: |_| picture_seeds(OutputFormat::Png),
        load: load_png,
    },
    Loader {
        name: "jpeg",
        seeds: |_| picture_seeds(OutputFormat::Jpeg),
        load: load_picture,
    },
    Loader {
        name: "webp",
        seeds: |_| picture_seeds(OutputFormat::Webp),
        load: load_picture,
    },
    Loader {
        name: "bmp",
        seeds: |_| picture_seeds(OutputFormat::Bmp),
        load: load_picture,
    },
    Loader {
        name: "tiff",
        seeds: |_| picture_seeds(OutputFormat::Tiff),
        load: load_picture,
    },
    Loader {
        name: "ffprobe",
        seeds: ffprobe_seeds,
        load: |bytes| match infer::ffmpeg::parse_probe(bytes) {
            Ok(info) => {
                let _ = (info.estimated_frames(), info.frame_rate_value());
                true
            }
            Err(_) => false,
        },
    },
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixtures(names: &[&str]) -> Vec<Vec<u8>> {
    names
        .iter()
        .map(|name| read(&repo().join("tests/fixtures/fuzz").join(name)))
        .collect()
}

/// The unpickler and both containers; an accepted state dict also goes through the importer
/// (which refuses these small ones by their names, after reading every tensor).
fn load_torch_save(bytes: &[u8]) -> bool {
    let path = Path::new("fuzz.pth");
    let parsed = models::convert::pth::parse_torch_save(bytes, path).is_ok();
    if parsed {
        let _ = models::convert::import_bytes(bytes, path);
    }
    parsed
}

fn load_convert(bytes: &[u8], name: &str) -> bool {
    models::convert::import_bytes(bytes, Path::new(name)).is_ok()
}

fn load_picture(bytes: &[u8]) -> bool {
    match models::pixels::decode_within(bytes, MAX_PIXELS) {
        Ok(image) => {
            let tensor = models::pixels::image_to_tensor(&image);
            tensor.size()[0] == 3
        }
        Err(_) => false,
    }
}

/// PNG chunks carry a CRC-32 the decoder checks, so nearly every mutant would stop there:
/// half of the inputs get their chunks' CRCs made right again, to reach the decoder proper.
fn load_png(bytes: &[u8]) -> bool {
    let digest = bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b));
    if digest % 2 == 0 {
        return load_picture(bytes);
    }
    let mut fixed = bytes.to_vec();
    let mut at = 8;
    while at + 12 <= fixed.len() {
        let len = u32::from_be_bytes(fixed[at..at + 4].try_into().unwrap()) as usize;
        let Some(end) = (at + 8)
            .checked_add(len)
            .filter(|&end| end + 4 <= fixed.len())
        else {
            break;
        };
        let crc = crc32(&fixed[at + 4..end]);
        fixed[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        at = end + 4;
    }
    load_picture(&fixed)
}

/// CRC-32 (ISO-HDLC), as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A tiny real network (every layer, two channels wide) saved by `Model::save`, and the same
/// with its convolution weights stored as int8 with per-channel scales.
fn model_seeds(dir: &Path) -> Vec<Vec<u8>> {
    tch::manual_seed(0);
    let spec = NetSpec {
        down_channels: [2, 2, 2],
        res_blocks: 1,
        up_channels: [2, 2],
        ..NetSpec::johnson()
    };
    let meta = ModelMeta {
        spec,
        styles: vec!["fuzz".into()],
        training: None,
    };
    let model = Model::new(meta, Device::Cpu).unwrap();
    let plain = dir.join("plain.safetensors");
    model.save(&plain).unwrap();

    let mut quantized = Quantized::new();
    let mut variables = model.vars.variables();
    for (name, var) in variables
        .iter_mut()
        .filter(|(n, _)| n.ends_with("conv2d.weight"))
    {
        let channels = var.size()[0];
        let scales = Tensor::full([channels], 0.01, (Kind::Float, Device::Cpu));
        let values = Tensor::randint_low(-127, 128, var.size(), (Kind::Int8, Device::Cpu));
        let weight = Int8Weight { values, scales };
        tch::no_grad(|| var.copy_(&weight.dequantize()));
        quantized.insert(name.clone(), weight);
    }
    let int8 = dir.join("int8.safetensors");
    model.save_quantized(&int8, &quantized).unwrap();
    vec![read(&plain), read(&int8)]
}

/// A checkpoint of the smallest preset, as `Checkpoint::save` writes it mid-run.
fn checkpoint_seeds(dir: &Path) -> Vec<Vec<u8>> {
    let files = trainer::RunFiles {
        style_images: vec![repo().join("assets/styles/brick.png")],
        data_dir: repo().join("assets/photos"),
        output: dir.join("model.safetensors"),
    };
    let mut config = trainer::recipe(models::VggKind::Vgg16, files, 4);
    config.arch = "johnson-half".into();
    let meta = ModelMeta {
        spec: NetSpec::johnson_half(),
        styles: vec!["brick".into()],
        training: None,
    };
    let model = Model::new(meta, Device::Cpu).unwrap();
    let variables = model.vars.variables();
    let weights: Vec<(String, Tensor)> = NetSpec::johnson_half()
        .variables()
        .into_iter()
        .map(|(name, _)| {
            let tensor = variables[&name].detach().copy();
            (name, tensor)
        })
        .collect();
    let moments = |scale: f64| -> Vec<Tensor> {
        weights
            .iter()
            .map(|(_, w)| w.abs() * scale)
            .collect::<Vec<_>>()
    };
    let checkpoint = trainer::Checkpoint {
        config,
        step: 20,
        adam_updates: 20,
        data_state: datasets::StreamState {
            epoch: 1,
            position: 2,
        },
        loss_scale: 1.0,
        adam_m: moments(0.1),
        adam_v: moments(0.01),
        weights,
    };
    let path = dir.join("model.checkpoint.safetensors");
    checkpoint.save(&path).unwrap();
    vec![read(&path)]
}

/// The style vector of a bundled painting, computed by the built-in predictor and saved.
fn style_vector_seeds(dir: &Path) -> Vec<Vec<u8>> {
    let picture = repo().join("assets/styles/brick.png");
    let pictures = infer::style_source::parse_pictures(picture.to_str().unwrap()).unwrap();
    let path = dir.join("brick.style");
    infer::style_source::save_style_vector(&pictures, &path, Device::Cpu).unwrap();
    vec![read(&path)]
}

/// A crop of a bundled photo in `format`: RGB, plus grayscale, RGBA and 16-bit where the
/// format keeps them, and for JPEG also the bundled camera photo as it is.
fn picture_seeds(format: OutputFormat) -> Vec<Vec<u8>> {
    let photo = models::pixels::decode(&read(&repo().join("assets/photos/chelsea.png"))).unwrap();
    let crop = photo.crop_imm(100, 60, 40, 32);
    let mut seeds = vec![infer::image_io::encode(&crop.to_rgb8(), format, 90).unwrap()];
    let mut write = |image: DynamicImage, image_format: ImageFormat| {
        let mut bytes = Vec::new();
        image
            .write_to(&mut std::io::Cursor::new(&mut bytes), image_format)
            .unwrap();
        seeds.push(bytes);
    };
    match format {
        OutputFormat::Png => {
            write(DynamicImage::ImageLuma8(crop.to_luma8()), ImageFormat::Png);
            write(DynamicImage::ImageRgba8(crop.to_rgba8()), ImageFormat::Png);
            write(DynamicImage::ImageRgb16(crop.to_rgb16()), ImageFormat::Png);
        }
        OutputFormat::Tiff => {
            write(DynamicImage::ImageRgba8(crop.to_rgba8()), ImageFormat::Tiff);
            write(DynamicImage::ImageRgb16(crop.to_rgb16()), ImageFormat::Tiff);
        }
        OutputFormat::Bmp => write(DynamicImage::ImageRgba8(crop.to_rgba8()), ImageFormat::Bmp),
        OutputFormat::Webp => write(DynamicImage::ImageRgba8(crop.to_rgba8()), ImageFormat::WebP),
        OutputFormat::Jpeg => {
            write(DynamicImage::ImageLuma8(crop.to_luma8()), ImageFormat::Jpeg);
            seeds.push(read(&repo().join("assets/photos/rocket.jpg")));
        }
    }
    seeds
}

/// ffprobe's real output on two clips: video only, and video with audio and a rotation.
fn ffprobe_seeds(dir: &Path) -> Vec<Vec<u8>> {
    let plain = dir.join("plain.mp4");
    let rotated = dir.join("rotated.mp4");
    let source = [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=10:duration=0.3",
    ];
    ffmpeg(
        &[
            &source[..],
            &["-pix_fmt", "yuv420p", plain.to_str().unwrap()],
        ]
        .concat(),
    );
    ffmpeg(
        &[
            &source[..],
            &[
                "-f",
                "lavfi",
                "-i",
                "sine=duration=0.3",
                "-pix_fmt",
                "yuv420p",
            ],
            &[
                "-metadata:s:v:0",
                "rotate=90",
                "-shortest",
                rotated.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    [plain, rotated]
        .iter()
        .map(|clip| {
            let probed = std::process::Command::new("ffprobe")
                .args(infer::ffmpeg::probe_args(clip))
                .output()
                .unwrap();
            assert!(probed.status.success());
            probed.stdout
        })
        .collect()
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text} is not a number")),
        Err(_) => default,
    }
}

/// What went wrong on one input.
enum Finding {
    Panic(String),
    Hang,
}

/// Runs the configured number of mutants of `loader`'s seeds through it, fails on any finding
/// (each written to `target/fuzz-findings/`), and prints the figures.
fn fuzz(loader_index: usize) {
    tch::set_num_threads(1);
    let loader = &LOADERS[loader_index];
    let inputs = env_number("FUZZ_INPUTS", 1000);
    let first = env_number("FUZZ_FROM", 0);
    let seed = env_number("FUZZ_SEED", 1);
    let limit = Duration::from_millis(env_number("FUZZ_TIMEOUT_MS", 2000));
    let save = env_number("FUZZ_SAVE", 0) != 0;
    let dir = tempfile::tempdir().unwrap();
    let seeds = (loader.seeds)(dir.path());
    for (i, s) in seeds.iter().enumerate() {
        assert!((loader.load)(s), "{}: seed {i} does not load", loader.name);
    }

    let (input_tx, input_rx) = mpsc::channel::<(u64, Vec<u8>)>();
    let (result_tx, result_rx) = mpsc::channel::<Result<bool, String>>();
    let load = loader.load;
    std::thread::Builder::new()
        .name(format!("fuzz-{}", loader.name))
        .spawn(move || {
            tch::set_num_threads(1);
            for (index, bytes) in input_rx {
                CURRENT.store(((loader_index as u64) << 32) | index, Ordering::SeqCst);
                let result =
                    std::panic::catch_unwind(AssertUnwindSafe(|| load(&bytes))).map_err(|panic| {
                        panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "a panic".to_string())
                    });
                if result_tx.send(result).is_err() {
                    break;
                }
            }
        })
        .unwrap();

    let findings_dir = repo().join("target/fuzz-findings");
    let mut findings = Vec::new();
    let mut accepted = 0u64;
    let start = Instant::now();
    for index in first..first + inputs {
        let mut rng = SplitMix64(seed ^ ((loader_index as u64) << 56) ^ index.wrapping_mul(0x9e37));
        let input = mutate(&mut rng, &seeds);
        if save {
            std::fs::create_dir_all(&findings_dir).unwrap();
            let file = findings_dir.join(format!("{}-seed{seed}-{index}.bin", loader.name));
            std::fs::write(file, &input).unwrap();
        }
        input_tx.send((index, input.clone())).unwrap();
        let finding = match result_rx.recv_timeout(limit) {
            Ok(Ok(true)) => {
                accepted += 1;
                None
            }
            Ok(Ok(false)) => None,
            Ok(Err(message)) => Some(Finding::Panic(message)),
            Err(_) => Some(Finding::Hang),
        };
        let Some(finding) = finding else { continue };
        std::fs::create_dir_all(&findings_dir).unwrap();
        let file = findings_dir.join(format!("{}-seed{seed}-{index}.bin", loader.name));
        std::fs::write(&file, &input).unwrap();
        let what = match finding {
            Finding::Panic(message) => format!("panicked: {message}"),
            Finding::Hang => format!("took over {limit:?}"),
        };
        findings.push(format!(
            "input {index} {what} (saved as {})",
            file.display()
        ));
        if findings.len() >= 5 || what.starts_with("took") {
            break; // a hung worker cannot take more inputs
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "fuzz {}: {inputs} inputs from seed {seed} in {seconds:.1} s ({:.0} inputs/s), {accepted} \
         accepted, {} refused, {} findings",
        loader.name,
        inputs as f64 / seconds,
        inputs - accepted,
        findings.len()
    );
    assert_eq!(OVERSIZED.load(Ordering::SeqCst), 0);
    assert!(
        findings.is_empty(),
        "fuzz {}:\n{}",
        loader.name,
        findings.join("\n")
    );
}

macro_rules! fuzz_tests {
    ($($test:ident = $index:expr),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                fuzz($index);
            }
        )*
    };
}

fuzz_tests! {
    fuzz_pth_zip = 0,
    fuzz_pth_legacy = 1,
    fuzz_onnx = 2,
    fuzz_onnx_qdq = 3,
    fuzz_model = 4,
    fuzz_checkpoint = 5,
    fuzz_style_vector = 6,
    fuzz_png = 7,
    fuzz_jpeg = 8,
    fuzz_webp = 9,
    fuzz_bmp = 10,
    fuzz_tiff = 11,
    fuzz_ffprobe = 12,
}
