//! `atelier video` end to end: a clip made with ffmpeg's lavfi sources, through the real binary,
//! checked with ffprobe.

mod infer_support;

use std::path::Path;
use std::process::Command;

use infer_support::*;

/// Stream facts, with frames counted by decoding.
fn probe(path: &Path) -> serde_json::Value {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
        ])
        .arg(path)
        .output()
        .expect("ffprobe is installed");
    assert!(
        output.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn stream<'a>(probe: &'a serde_json::Value, kind: &str) -> Option<&'a serde_json::Value> {
    probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == kind)
}

fn rotation(video: &serde_json::Value) -> i64 {
    video["side_data_list"]
        .as_array()
        .and_then(|list| list.iter().find_map(|sd| sd["rotation"].as_i64()))
        .unwrap_or(0)
}

/// 1.5 s of `testsrc2` at 30000/1001 fps with a 440 Hz `sine` track, stored sideways (rotation
/// metadata, as phones write it).
fn make_clip(dir: &Path) -> std::path::PathBuf {
    let plain = dir.join("plain.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=96x64:rate=30000/1001:duration=1.5",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=1.5",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        plain.to_str().unwrap(),
    ]);
    let clip = dir.join("clip.mp4");
    ffmpeg(&[
        "-i",
        plain.to_str().unwrap(),
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        clip.to_str().unwrap(),
    ]);
    clip
}

#[test]
fn video_round_trip_keeps_frames_rate_size_rotation_and_sound() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let clip = make_clip(dir.path());
    let out = dir.path().join("styled.mp4");
    let output = run(&[
        "video",
        clip.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-m",
        model.to_str().unwrap(),
        "--smooth",
        "0.5",
        "--json",
    ]);
    assert_ok(&output);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    let (before, after) = (probe(&clip), probe(&out));
    let (video_in, video_out) = (
        stream(&before, "video").unwrap(),
        stream(&after, "video").unwrap(),
    );
    assert_eq!(video_out["nb_read_frames"], video_in["nb_read_frames"]);
    assert_eq!(
        report["frames"].to_string(),
        video_in["nb_read_frames"].as_str().unwrap()
    );
    assert_eq!(video_out["r_frame_rate"], "30000/1001");
    assert_eq!(
        (&video_out["width"], &video_out["height"]),
        (&video_in["width"], &video_in["height"])
    );
    assert_eq!(rotation(video_out), rotation(video_in));
    assert_ne!(rotation(video_in), 0);
    let audio_in = stream(&before, "audio").unwrap();
    let audio_out = stream(&after, "audio").expect("the audio stream is kept");
    assert_eq!(audio_out["codec_name"], audio_in["codec_name"]);
    assert_eq!(audio_out["nb_read_frames"], audio_in["nb_read_frames"]);
    let duration = |p: &serde_json::Value| {
        p["format"]["duration"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert!((duration(&after) - duration(&before)).abs() < 0.05);
    // Nothing temporary is left beside the output.
    assert!(files_under(dir.path())
        .iter()
        .all(|name| !name.starts_with('.')));
}

#[test]
fn odd_sizes_are_padded_to_even_for_the_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let clip = make_clip(dir.path());
    let out = dir.path().join("small.mkv");
    // 96x64 capped at 75 is 75x50: libx264's 4:2:0 needs even sides, so 76x50.
    assert_ok(&run(&[
        "video",
        clip.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-m",
        model.to_str().unwrap(),
        "--max-size",
        "75",
        "--crf",
        "30",
    ]));
    let after = probe(&out);
    let video = stream(&after, "video").unwrap();
    assert_eq!(
        (video["width"].as_i64(), video["height"].as_i64()),
        (Some(76), Some(50))
    );
    assert_eq!(
        video["nb_read_frames"],
        stream(&probe(&clip), "video").unwrap()["nb_read_frames"]
    );
    assert!(stream(&after, "audio").is_some());
}

/// The x264 settings string the encoder writes into the stream (`x264 - core ... options: ...`).
fn x264_options(video: &Path) -> String {
    let bytes = std::fs::read(video).unwrap();
    let start = bytes
        .windows(9)
        .position(|w| w == b"options: ")
        .expect("an x264 settings string");
    let end = bytes[start..].iter().position(|&b| b == 0).unwrap() + start;
    String::from_utf8_lossy(&bytes[start..end]).into_owned()
}

#[test]
fn the_encoder_preset_is_veryfast_unless_chosen_and_a_bad_one_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let clip = make_clip(dir.path());
    let encode = |name: &str, preset: Option<&str>| {
        let out = dir.path().join(name);
        let mut args = vec![
            "video",
            clip.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-m",
            model.to_str().unwrap(),
            "--max-size",
            "48",
        ];
        if let Some(preset) = preset {
            args.extend(["--preset", preset]);
        }
        (run(&args), out)
    };
    // x264's presets differ in subpixel refinement: veryfast 2, ultrafast 0 (no CABAC either).
    let (output, default) = encode("default.mp4", None);
    assert_ok(&output);
    assert!(x264_options(&default).contains(" subme=2 "));
    let (output, fastest) = encode("ultrafast.mp4", Some("ultrafast"));
    assert_ok(&output);
    let options = x264_options(&fastest);
    assert!(options.contains(" subme=0 ") && options.contains("cabac=0"));

    let (output, bad) = encode("bad.mp4", Some("warp9"));
    assert!(!output.status.success());
    let message = stderr(&output);
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    assert!(message.contains("warp9"), "{message}");
    assert!(!bad.exists());
    assert!(files_under(dir.path())
        .iter()
        .all(|name| !name.starts_with('.')));
}

/// Three 64x48 frames of ffmpeg's moving test pattern, `frames/frame_000N.png`.
fn make_frames(dir: &Path) -> std::path::PathBuf {
    let frames = dir.join("frames");
    std::fs::create_dir(&frames).unwrap();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=10:duration=0.3",
        frames.join("frame_%04d.png").to_str().unwrap(),
    ]);
    frames
}

#[test]
fn a_folder_of_frames_gives_a_folder_of_stylized_frames() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let frames = make_frames(dir.path());
    let out = dir.path().join("styled");
    assert_ok(&run(&[
        "video",
        frames.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-m",
        model.to_str().unwrap(),
    ]));
    assert_eq!(files_under(&out), files_under(&frames));
    assert_eq!(files_under(&out).len(), 3);
}

#[test]
fn a_missing_ffmpeg_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let clip = dir.path().join("clip.mp4");
    std::fs::write(&clip, b"not looked at").unwrap();
    let output = atelier()
        .args([
            "video",
            clip.to_str().unwrap(),
            "-o",
            "out.mp4",
            "-m",
            model.to_str().unwrap(),
        ])
        .env("PATH", dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("apt-get install ffmpeg"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn smoothing_a_folder_of_frames_blends_each_with_the_previous_output_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let frames = make_frames(dir.path());
    let plain = dir.path().join("plain");
    let smooth = dir.path().join("smooth");
    for (out, extra) in [(&plain, None), (&smooth, Some("1"))] {
        let mut args = vec![
            "video",
            frames.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        if let Some(weight) = extra {
            args.extend(["--smooth", weight]);
        }
        assert_ok(&run(&args));
    }
    let read = |folder: &Path, name: &str| image::open(folder.join(name)).unwrap().to_rgb8();
    // The first frame has nothing before it (batched and single runs may round differently).
    let first = (
        read(&plain, "frame_0001.png"),
        read(&smooth, "frame_0001.png"),
    );
    let first_difference = first
        .0
        .as_raw()
        .iter()
        .zip(first.1.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max();
    assert!(
        first_difference <= Some(2),
        "first frame differs by {first_difference:?}"
    );
    // Each later one is half its own stylized frame, half the previous smoothed output.
    for (previous, current) in [
        ("frame_0001.png", "frame_0002.png"),
        ("frame_0002.png", "frame_0003.png"),
    ] {
        let (own, before, smoothed) = (
            read(&plain, current),
            read(&smooth, previous),
            read(&smooth, current),
        );
        let mut changed = 0;
        for ((o, b), s) in own
            .as_raw()
            .iter()
            .zip(before.as_raw())
            .zip(smoothed.as_raw())
        {
            let expected = (*o as f64 + *b as f64) / 2.0;
            assert!(
                (*s as f64 - expected).abs() <= 2.5,
                "{current}: {s} vs {expected}"
            );
            changed += usize::from(o.abs_diff(*s) > 2);
        }
        assert!(
            changed > 100,
            "{current}: smoothing changed only {changed} values"
        );
    }
}

#[test]
fn ffprobe_runs_once_per_video() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let clip = dir.path().join("short.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=32x32:rate=10:duration=0.3",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        clip.to_str().unwrap(),
    ]);
    // an `ffprobe` first on PATH that counts its runs, then runs the real one
    let real = Command::new("sh")
        .args(["-c", "command -v ffprobe"])
        .output()
        .unwrap();
    let real = String::from_utf8(real.stdout).unwrap().trim().to_string();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let runs = dir.path().join("ffprobe-runs");
    let counting = bin.join("ffprobe");
    std::fs::write(
        &counting,
        format!(
            "#!/bin/sh\necho run >> '{}'\nexec '{real}' \"$@\"\n",
            runs.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&counting, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());

    let out = dir.path().join("styled.mp4");
    let output = atelier()
        .args(["video", clip.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .args(["-m", model.to_str().unwrap()])
        .env("PATH", path)
        .output()
        .unwrap();
    assert_ok(&output);
    // `-version` (the check that it is installed) and one probe
    let runs = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(
        runs.lines().count(),
        2,
        "ffprobe ran {} times",
        runs.lines().count()
    );
    assert_eq!(
        stream(&probe(&out), "video").unwrap()["nb_read_frames"],
        "3"
    );
}

/// One-process `atelier video`, then three `--segment`s joined: the same video.
fn one_run_and_joined_segments(
    dir: &Path,
    clip: &Path,
    model: &Path,
    extension: &str,
    extra: &[&str],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let video = |out: &Path, more: &[&str]| {
        let mut args = vec![
            "video",
            clip.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-m",
            model.to_str().unwrap(),
            "--json",
        ];
        args.extend(extra);
        args.extend(more);
        let output = run(&args);
        assert_ok(&output);
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let one = dir.join(format!("one.{extension}"));
    video(&one, &[]);
    let mut parts = Vec::new();
    let mut firsts = Vec::new();
    for index in [2, 0, 1] {
        let part = dir.join(format!("part-{index}.{extension}"));
        let report = video(&part, &["--segment", &format!("{index}/3")]);
        firsts.push(report["first_frame"].as_u64().unwrap());
        parts.push(part);
    }
    firsts.sort();
    assert_eq!(
        firsts,
        [0, 24, 36],
        "cut at the keyframes nearest to thirds"
    );
    let joined = dir.join(format!("joined.{extension}"));
    let mut args = vec!["video-join"];
    args.extend(parts.iter().map(|p| p.to_str().unwrap()));
    args.extend([
        "-o",
        joined.to_str().unwrap(),
        "--audio-from",
        clip.to_str().unwrap(),
    ]);
    assert_ok(&run(&args));
    (one, joined)
}

#[test]
fn segments_joined_are_the_one_process_video_frame_for_frame() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let clip = keyframed_clip(dir.path(), "30000/1001");

    // Lossless and unsmoothed: the same frames, times, duration, pixels and sound.
    let lossless = dir.path().join("ffv1");
    std::fs::create_dir(&lossless).unwrap();
    // one network thread everywhere: CPU kernels may round differently on another count
    let ffv1 = ["--codec", "ffv1", "--threads", "1"];
    let (one, joined) = one_run_and_joined_segments(&lossless, &clip, &model, "mkv", &ffv1);
    assert_eq!(frame_times(&joined).len(), 60);
    assert_eq!(frame_times(&joined), frame_times(&one));
    assert_eq!(
        entries(&joined, "v:0", "format=duration"),
        entries(&one, "v:0", "format=duration")
    );
    assert!(
        decoded_frames(&joined) == decoded_frames(&one),
        "pixels differ"
    );
    let audio = |path: &Path| entries(path, "a:0", "packet=pts_time,size");
    assert!(audio(&joined).len() > 80, "the sound is copied");
    assert_eq!(audio(&joined), audio(&one));

    // Two workers (as `cuda:all` runs one per GPU) split the video the same way, in one process.
    let workers = lossless.join("workers.mkv");
    assert_ok(&run(&[
        "video",
        clip.to_str().unwrap(),
        "-o",
        workers.to_str().unwrap(),
        "-m",
        model.to_str().unwrap(),
        "--codec",
        "ffv1",
        "--device",
        "cpu:2",
        "--threads",
        "2",
    ]));
    assert_eq!(frame_times(&workers), frame_times(&one));
    assert!(
        decoded_frames(&workers) == decoded_frames(&one),
        "pixels differ"
    );
    assert_eq!(audio(&workers), audio(&one));

    // MP4 parts round their start to a millisecond in an edit list; the join puts every frame
    // back on the one-process run's exact time. Smoothing warms up on earlier frames.
    let smooth = dir.path().join("x264");
    std::fs::create_dir(&smooth).unwrap();
    let (one, joined) =
        one_run_and_joined_segments(&smooth, &clip, &model, "mp4", &["--smooth", "1"]);
    assert_eq!(frame_times(&joined), frame_times(&one));
    assert_eq!(frame_times(&joined)[24], "0.800800");
    let duration = |path: &Path| entries(path, "v:0", "stream=duration:format=duration");
    assert_eq!(duration(&joined), duration(&one));
    assert_eq!(audio(&joined), audio(&one));

    // A requeued segment task whose part is complete does nothing.
    let part = lossless.join("part-1.mkv");
    let before = std::fs::read(&part).unwrap();
    let rerun = run(&[
        "video",
        clip.to_str().unwrap(),
        "--segment",
        "1/3",
        "-o",
        part.to_str().unwrap(),
        "--skip-existing",
        "--json",
    ]);
    assert_ok(&rerun);
    let record: serde_json::Value = serde_json::from_slice(&rerun.stdout).unwrap();
    assert_eq!(record["status"], "skipped");
    assert!(std::fs::read(&part).unwrap() == before);

    // A part missing is found before anything is written.
    let out = dir.path().join("gap.mkv");
    let gap = run(&[
        "video-join",
        lossless.join("part-0.mkv").to_str().unwrap(),
        lossless.join("part-2.mkv").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(gap.status.code(), Some(2));
    assert!(
        stderr(&gap).contains("frames 24 to 35 are missing"),
        "{}",
        stderr(&gap)
    );
    assert!(!out.exists());
}

#[test]
fn a_smoothed_segment_warms_up_on_the_frames_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let clip = keyframed_clip(dir.path(), "30000/1001");
    let video = |out: &Path, extra: &[&str]| {
        let mut args = vec!["video", clip.to_str().unwrap(), "-o", out.to_str().unwrap()];
        args.extend([
            "-m",
            model.to_str().unwrap(),
            "--codec",
            "ffv1",
            "--smooth",
            "1",
        ]);
        args.extend(extra);
        assert_ok(&run(&args));
        decoded_frames(out)
    };
    let whole = video(&dir.path().join("whole.mkv"), &[]);
    let middle = video(&dir.path().join("part-1.mkv"), &["--segment", "1/3"]);
    let frame_bytes = 96 * 64 * 3;
    assert_eq!(middle.len(), 12 * frame_bytes);
    // frames 24 to 35 of the whole run, within a level (the blend rounds where it did)
    let difference = middle
        .iter()
        .zip(&whole[24 * frame_bytes..36 * frame_bytes])
        .map(|(a, b)| a.abs_diff(*b))
        .max();
    assert!(difference <= Some(1), "the seam differs by {difference:?}");
}
