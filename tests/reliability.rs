//! Hostile files and hostile conditions, end to end through the real binary: pickles that would
//! run code, pictures and model headers that declare more than they hold, full and read-only
//! disks (tmpfs mounted by the test; skipped with a message where mounting is not allowed),
//! ffmpeg killed mid-video, training killed at random moments, stylize and video interrupted,
//! and a standard output closed by its reader.

mod infer_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use infer_support::*;
use tch::Device;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Asserts one `atelier: error: ...` line on stderr and returns it.
fn one_error_line(output: &Output) -> String {
    let message = stderr(output);
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    assert!(message.starts_with("atelier: error: "), "{message}");
    message
}

/// `atelier stylize INPUT -o OUT -m MODEL --device cpu EXTRA...`.
fn stylize_on_cpu(input: &Path, out: &Path, model: &Path, extra: &[&str]) -> Output {
    let paths = [input, out, model].map(path_str);
    let args = [
        "stylize", paths[0], "-o", paths[1], "-m", paths[2], "--device", "cpu",
    ];
    run(&[&args[..], extra].concat())
}

/// Hidden temporaries (`.name.tmp-PID...`) left anywhere under `dir`.
fn temporaries(dir: &Path) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .filter(|f| f.contains(".tmp-"))
        .collect()
}

/// A tmpfs mounted on a new folder, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` (after saying why) where this process may not mount: not root, or no permission.
    fn mount(dir: PathBuf, options: &str) -> Option<Self> {
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&dir)
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Self(dir)),
            Ok(out) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs ({})",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount ({e})");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// splitmix64, for the random moments of the kill test (its seed is printed).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// A picture `copies` times in a new folder `dir`.
fn photo_folder(dir: &Path, photo: &str, copies: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..copies {
        std::fs::copy(repo_photo(photo), dir.join(format!("photo{i:02}.png"))).unwrap();
    }
    dir.to_path_buf()
}

/// Width and height of a bundled photo.
fn photo_size(photo: &str) -> (u32, u32) {
    image::open(repo_photo(photo))
        .unwrap()
        .to_rgb8()
        .dimensions()
}

/// Every output under `dir` decodes fully to `expected` pixels.
fn assert_complete_images(dir: &Path, expected: (u32, u32)) {
    for name in files_under(dir) {
        let image = image::open(dir.join(&name))
            .unwrap_or_else(|e| panic!("{name} does not decode: {e}"))
            .to_rgb8();
        assert_eq!(image.dimensions(), expected, "{name}");
    }
}

#[test]
fn pickles_that_would_run_code_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    // Each file runs its command under torch.load(weights_only=False) (proven when
    // scripts/make_fuzz_seeds.py made them): os.system in a zip file, builtins.eval in a legacy
    // one (protocol 2 names it `__builtin__`).
    let cases = [
        ("os_system.pth", "refused global `posix.system`"),
        (
            "builtins_eval_legacy.pth",
            "refused global `__builtin__.eval`",
        ),
    ];
    for (name, refused) in cases {
        let armed = repo().join("tests/fixtures/foreign_code").join(name);
        let output = dir.path().join("converted.safetensors");
        let result = atelier()
            .current_dir(dir.path())
            .args(["convert", path_str(&armed), "-o", path_str(&output)])
            .output()
            .unwrap();
        let message = one_error_line(&result);
        assert_eq!(result.status.code(), Some(2), "{name}: {message}");
        assert!(message.contains(refused), "{name}: {message}");
        assert!(message.contains(name), "{name}: {message}");
        assert!(!output.exists());
        assert_eq!(files_under(dir.path()), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn pictures_declaring_too_many_pixels_are_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    // 66 bytes of PNG declaring 50000x50000 RGB pixels (7.5 GB decoded)
    let bomb = dir.path().join("bomb.png");
    std::fs::copy(
        repo().join("tests/fixtures/fuzz/png_50000x50000.png"),
        &bomb,
    )
    .unwrap();
    let out = dir.path().join("out.png");

    // One of the inputs of a run: reported, counted, the run fails with 1.
    let result = stylize_on_cpu(&bomb, &out, &model, &[]);
    let message = stderr(&result);
    assert_eq!(result.status.code(), Some(1), "{message}");
    assert!(
        message.contains("declares 50000x50000 pixels (2500.0 megapixels), over the limit"),
        "{message}"
    );
    assert!(!out.exists());

    // A real photo over a --max-pixels given; the limit in megapixels.
    let photo = repo_photo("chelsea.png");
    let result = stylize_on_cpu(&photo, &out, &model, &["--max-pixels", "0.1M"]);
    let message = stderr(&result);
    assert_eq!(result.status.code(), Some(1), "{message}");
    assert!(
        message.contains("over the limit of 0.1 megapixels"),
        "{message}"
    );

    // optimize reads its pictures before any work: a bad input, 2.
    let style = repo().join("assets/styles/brick.png");
    let result = run(&[
        "optimize",
        path_str(&bomb),
        "--style",
        path_str(&style),
        "-o",
        path_str(&out),
    ]);
    let message = one_error_line(&result);
    assert_eq!(result.status.code(), Some(2), "{message}");
    assert!(message.contains("bomb.png"), "{message}");
    assert!(message.contains("50000x50000"), "{message}");
}

/// `bytes` of a safetensors file with its first tensor's shape and byte range replaced by a
/// 40 GB one, the later tensors moved along: a consistent header that lies about the file.
fn lying_header(bytes: &[u8]) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let huge: u64 = 100_000 * 100_000 * 4;
    let mut names: Vec<String> = header
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    names.sort_by_key(|name| header[name]["data_offsets"][0].as_u64().unwrap());
    let first = names[0].clone();
    let old_end = header[&first]["data_offsets"][1].as_u64().unwrap();
    for name in &names {
        let entry = header.get_mut(name).unwrap();
        if *name == first {
            entry["shape"] = serde_json::json!([100_000, 100_000]);
            entry["data_offsets"] = serde_json::json!([0, huge]);
        } else {
            let offsets = &mut entry["data_offsets"];
            let moved = |v: &serde_json::Value| v.as_u64().unwrap() - old_end + huge;
            *offsets = serde_json::json!([moved(&offsets[0]), moved(&offsets[1])]);
        }
    }
    let json = serde_json::to_vec(&header).unwrap();
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend(json);
    out.extend(&bytes[8 + n..]);
    out
}

#[test]
fn model_and_checkpoint_headers_declaring_more_than_the_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let lying = dir.path().join("lying.safetensors");
    std::fs::write(&lying, lying_header(&std::fs::read(&model).unwrap())).unwrap();
    let photo = repo_photo("chelsea.png");
    let out = dir.path().join("out.png");
    let result = stylize_on_cpu(&photo, &out, &lying, &[]);
    let message = one_error_line(&result);
    assert_eq!(result.status.code(), Some(2), "{message}");
    assert!(message.contains("lying.safetensors"), "{message}");
    assert!(
        message.contains("declares tensor data that does not end where the file's"),
        "{message}"
    );
    let result = run(&["inspect", path_str(&lying)]);
    assert_eq!(result.status.code(), Some(2), "{}", stderr(&result));

    // A checkpoint, as the trainer reads it on --resume.
    let vgg = random_vgg16(dir.path());
    let trained = dir.path().join("trained.safetensors");
    let checkpoint = dir.path().join("trained.checkpoint.safetensors");
    let mut args = small_training(&vgg, &trained);
    args.extend(["--steps", "1", "--checkpoint-every", "1"].map(String::from));
    assert_ok(&atelier().args(&args).output().unwrap());
    let lying = dir.path().join("lying.checkpoint.safetensors");
    std::fs::write(&lying, lying_header(&std::fs::read(&checkpoint).unwrap())).unwrap();
    let error = trainer::Checkpoint::load(&lying).unwrap_err().to_string();
    assert!(error.contains("lying.checkpoint.safetensors"), "{error}");
    assert!(error.contains("does not end where the file's"), "{error}");
    let result = run(&["train", "--resume", path_str(&lying)]);
    let message = one_error_line(&result);
    assert_eq!(result.status.code(), Some(2), "{message}");
}

/// The flags of a tiny CPU training run on the bundled photos.
fn small_training(vgg: &Path, output: &Path) -> Vec<String> {
    let style = repo().join("assets/styles/swirls.png");
    let photos = repo().join("assets/photos");
    small_run(
        path_str(vgg),
        path_str(output),
        path_str(&style),
        path_str(&photos),
    )
    .into_iter()
    .map(str::to_string)
    .collect()
}

#[test]
fn a_folder_run_into_a_full_disk_reports_each_file_and_leaves_no_partial_output() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let photos = photo_folder(&dir.path().join("photos"), "chelsea.png", 6);
    // One output's size, written where there is room.
    let sample = dir.path().join("sample.png");
    assert_ok(&stylize_on_cpu(
        &photos.join("photo00.png"),
        &sample,
        &model,
        &[],
    ));
    let one = std::fs::metadata(&sample).unwrap().len();
    let size = format!("size={}k", (one * 5 / 2).div_ceil(4096) * 4);
    let Some(disk) = Tmpfs::mount(dir.path().join("small"), &size) else {
        return;
    };
    let result = stylize_on_cpu(&photos, &disk.0, &model, &["--threads", "2"]);
    let message = stderr(&result);
    assert_eq!(result.status.code(), Some(1), "{message}");
    let written = files_under(&disk.0);
    let failed: Vec<&str> = message
        .lines()
        .filter(|l| l.contains("No space left on device"))
        .collect();
    assert!(
        !written.is_empty() && written.len() < 6,
        "{written:?}\n{message}"
    );
    assert_eq!(written.len() + failed.len(), 6, "{written:?}\n{message}");
    assert!(
        message.contains(&format!("{} of 6 inputs failed", failed.len())),
        "{message}"
    );
    assert_eq!(temporaries(&disk.0), Vec::<String>::new());
    let (width, height) = image::open(&sample).unwrap().to_rgb8().dimensions();
    assert_complete_images(&disk.0, (width, height));
}

#[test]
fn training_that_cannot_write_its_checkpoint_stops_and_keeps_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let vgg = random_vgg16(dir.path());
    // A checkpoint is about three copies of the model's weights (weights and Adam's two
    // moments): room for one and half of the next.
    let one = std::fs::metadata(random_johnson(dir.path())).unwrap().len() * 3;
    let size = format!("size={}k", (one * 3 / 2).div_ceil(4096) * 4);
    let Some(disk) = Tmpfs::mount(dir.path().join("checkpoints"), &size) else {
        return;
    };
    let output = dir.path().join("model.safetensors");
    let mut args = small_training(&vgg, &output);
    args.extend(
        [
            "--steps",
            "8",
            "--checkpoint-every",
            "2",
            "--checkpoint-dir",
        ]
        .map(String::from),
    );
    args.push(path_str(&disk.0).to_string());
    let result = atelier().args(&args).output().unwrap();
    let message = one_error_line(&result);
    assert_eq!(result.status.code(), Some(1), "{message}");
    assert!(message.contains("No space left on device"), "{message}");
    assert!(
        message.contains("model.checkpoint.safetensors"),
        "{message}"
    );
    let checkpoint = disk.0.join("model.checkpoint.safetensors");
    assert_eq!(trainer::Checkpoint::load(&checkpoint).unwrap().step, 2);
    assert_eq!(temporaries(&disk.0), Vec::<String>::new());
    assert!(!output.exists());
}

#[test]
fn read_only_output_folders_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let Some(disk) = Tmpfs::mount(dir.path().join("read-only"), "ro,size=1m") else {
        return;
    };
    let photo = repo_photo("chelsea.png");
    let out = disk.0.join("out.png");
    let result = stylize_on_cpu(&photo, &out, &model, &[]);
    let message = stderr(&result);
    assert!(matches!(result.status.code(), Some(1 | 2)), "{message}");
    assert!(message.contains("Read-only file system"), "{message}");
    assert!(message.contains(path_str(&disk.0)), "{message}");

    let converted = disk.0.join("model.safetensors");
    let result = run(&["convert", path_str(&model), "-o", path_str(&converted)]);
    let message = one_error_line(&result);
    assert_eq!(result.status.code(), Some(2), "{message}");
    assert!(message.contains("Read-only file system"), "{message}");
}

/// The pids of `pid`'s `ffmpeg` children.
fn ffmpeg_children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return found;
    };
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
        {
            let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
            if comm.trim() == "ffmpeg" {
                found.push(child);
            }
        }
    }
    found
}

/// `atelier video` of a 40 s clip (made in `dir`) into `out`, once both its ffmpeg are running.
fn video_under_way(dir: &Path, model: &Path, out: &Path, extra: &[&str]) -> Child {
    let clip = dir.join("clip.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=96x64:rate=25:duration=40",
        "-pix_fmt",
        "yuv420p",
        path_str(&clip),
    ]);
    let child = atelier()
        .args(["video", path_str(&clip), "-o", path_str(out)])
        .args(["-m", path_str(model), "--device", "cpu", "--threads", "1"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_for("ffmpeg to start", Duration::from_secs(60), || {
        ffmpeg_children(pid).len() == 2
    });
    child
}

#[test]
fn ffmpeg_killed_mid_video_is_named_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let out = dir.path().join("out.mp4");
    let child = video_under_way(dir.path(), &model, &out, &["--quiet"]);
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(100));
    let victim = *ffmpeg_children(pid)
        .first()
        .expect("the video ended before its ffmpeg could be killed (a longer clip is needed)");
    assert!(Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap()
        .success());
    let output = child.wait_with_output().unwrap();
    let message = one_error_line(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(message.contains("ffmpeg"), "{message}");
    assert!(!out.exists());
    assert_eq!(temporaries(dir.path()), Vec::<String>::new());
}

/// Ctrl-C in a terminal: SIGINT reaches atelier and its two ffmpeg children at once.
#[test]
fn interrupted_video_removes_its_partial_file_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let out = dir.path().join("out.mp4");
    let child = video_under_way(dir.path(), &model, &out, &[]);
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(500));
    let group: Vec<String> = [pid]
        .into_iter()
        .chain(ffmpeg_children(pid))
        .map(|p| p.to_string())
        .collect();
    assert!(Command::new("kill")
        .arg("-INT")
        .args(&group)
        .status()
        .unwrap()
        .success());
    let output = child.wait_with_output().unwrap();
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(130), "{message}");
    assert!(message.contains("interrupted: "), "{message}");
    assert!(!out.exists());
    assert_eq!(temporaries(dir.path()), Vec::<String>::new());
}

#[test]
fn training_killed_at_random_moments_resumes_from_its_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let vgg = random_vgg16(dir.path());
    let output = dir.path().join("model.safetensors");
    let checkpoint = dir.path().join("model.checkpoint.safetensors");
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill moments from seed {seed}");
    let mut last_step = 0;
    for round in 0..3 {
        let mut args = if round == 0 {
            let mut args = small_training(&vgg, &output);
            args.extend(["--checkpoint-every", "1"].map(String::from));
            args
        } else {
            let resume = [
                "--resume",
                path_str(&checkpoint),
                "--quiet",
                "--threads",
                "2",
            ];
            ["train"]
                .iter()
                .chain(&resume)
                .map(|s| s.to_string())
                .collect()
        };
        args.extend(["--steps", "100000"].map(String::from));
        let before = std::fs::metadata(&checkpoint)
            .and_then(|m| m.modified())
            .ok();
        let mut child = atelier().args(&args).spawn().unwrap();
        // A moment after this run's first checkpoint: anywhere in the following steps and
        // checkpoint writes.
        wait_for("a checkpoint", Duration::from_secs(120), || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("round {round}: training ended early ({status})");
            }
            std::fs::metadata(&checkpoint)
                .and_then(|m| m.modified())
                .ok()
                != before
        });
        let delay = splitmix(&mut seed) % 1500;
        std::thread::sleep(Duration::from_millis(delay));
        signal(&child, "KILL");
        child.wait().unwrap();
        let step = trainer::Checkpoint::load(&checkpoint)
            .unwrap_or_else(|e| panic!("round {round}, killed {delay} ms in: {e}"))
            .step;
        eprintln!("round {round}: killed {delay} ms after a checkpoint; it holds step {step}");
        assert!(
            step > last_step,
            "round {round}: step {step} after {last_step}"
        );
        last_step = step;
    }
    let result = atelier()
        .args([
            "train",
            "--resume",
            path_str(&checkpoint),
            "--quiet",
            "--threads",
            "2",
        ])
        .args(["--steps", &(last_step + 1).to_string()])
        .output()
        .unwrap();
    assert_ok(&result);
    models::Model::load(&output, Device::Cpu).unwrap();
}

#[test]
fn interrupted_stylize_finishes_the_images_in_flight_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let photos = photo_folder(&dir.path().join("photos"), "astronaut.png", 40);
    let out = dir.path().join("out");
    let child = atelier()
        .args([
            "stylize",
            path_str(&photos),
            "-o",
            path_str(&out),
            "-m",
            path_str(&model),
        ])
        .args(["--device", "cpu", "--threads", "2"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("a first output", Duration::from_secs(120), || {
        out.is_dir() && files_under(&out).iter().any(|f| !f.contains(".tmp-"))
    });
    signal(&child, "INT");
    let output = child.wait_with_output().unwrap();
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(130), "{message}");
    let written = files_under(&out);
    assert!(written.len() < 40, "{message}");
    assert!(
        message.contains(&format!(
            "interrupted: {} of 40 inputs written",
            written.len()
        )),
        "{message}"
    );
    assert_eq!(temporaries(&out), Vec::<String>::new());
    assert_complete_images(&out, photo_size("astronaut.png"));
}

/// `atelier ... | head`: the reader goes away (JSON records, a picture on `-o -`). The command
/// stops as after a signal, quietly, with the code a shell gives a program SIGPIPE stopped.
#[test]
fn a_closed_standard_output_stops_the_command_quietly_with_141() {
    let spawn_closed = |command: &mut Command| {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // before the command writes anything
        child.wait_with_output().unwrap()
    };
    let listed = spawn_closed(atelier().arg("styles"));
    assert_eq!(listed.status.code(), Some(141), "{}", stderr(&listed));
    assert_eq!(stderr(&listed), "");

    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let photos = photo_folder(&dir.path().join("photos"), "astronaut.png", 40);
    let out = dir.path().join("out");
    let stylized = spawn_closed(
        atelier()
            .args(["stylize", path_str(&photos), "-o", path_str(&out)])
            .args(["-m", path_str(&model), "--device", "cpu", "--json"]),
    );
    assert_eq!(stylized.status.code(), Some(141), "{}", stderr(&stylized));
    assert_eq!(stderr(&stylized), "");
    assert!(files_under(&out).len() < 40);
    assert_eq!(temporaries(&out), Vec::<String>::new());
    assert_complete_images(&out, photo_size("astronaut.png"));

    let piped = spawn_closed(atelier().args([
        "stylize",
        path_str(&repo_photo("astronaut.png")),
        "-o",
        "-",
        "-m",
        path_str(&model),
        "--device",
        "cpu",
    ]));
    assert_eq!(piped.status.code(), Some(141), "{}", stderr(&piped));
    assert_eq!(stderr(&piped), "");

    // Any other failure to write a record is an error of the work: one line, exit 1.
    let full = atelier()
        .args(["stylize", path_str(&photos), "-o"])
        .arg(dir.path().join("full"))
        .args(["-m", path_str(&model), "--device", "cpu", "--json"])
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    let message = one_error_line(&full);
    assert_eq!(full.status.code(), Some(1), "{message}");
    assert!(
        message.contains("cannot write to standard output"),
        "{message}"
    );
}
