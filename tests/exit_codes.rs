//! The exit-code rule end to end: 2 for bad arguments and inputs found before the work starts,
//! 1 for a failure during the work, each with one line on stderr.

mod infer_support;

use infer_support::*;

#[test]
fn bad_arguments_exit_2_and_a_failure_mid_video_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_johnson(dir.path());
    let model = model.to_str().unwrap();
    let clip = dir.path().join("clip.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=10:duration=0.5",
        "-pix_fmt",
        "yuv420p",
        clip.to_str().unwrap(),
    ]);
    let clip = clip.to_str().unwrap();
    let out = dir.path().join("out.mp4");
    let out_str = out.to_str().unwrap();

    // Found while parsing or checking: the device, the thread count, a photo that is missing,
    // frames resized below what the network takes.
    let cases: [(&[&str], &str); 4] = [
        (
            &["video", clip, "-o", out_str, "-m", model, "--device", "tpu"],
            "unknown device `tpu` (use auto, cpu, cuda or cuda:N)",
        ),
        (
            &["stylize", clip, "-m", model, "--threads", "0"],
            "must be at least 1",
        ),
        (
            &[
                "stylize",
                "/nonexistent/photo.png",
                "-m",
                model,
                "--device",
                "cpu",
            ],
            "/nonexistent/photo.png",
        ),
        (
            &["video", clip, "-o", out_str, "-m", model, "--max-size", "8"],
            "too small for the network",
        ),
    ];
    for (args, mentioned) in cases {
        let output = run(args);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {message}");
        assert!(message.contains(mentioned), "{args:?}: {message}");
    }

    // The encoder refuses its preset once the frames flow: a failure of the work, not of the
    // arguments.
    let output = run(&[
        "video", clip, "-o", out_str, "-m", model, "--device", "cpu", "--preset", "warp9",
    ]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    assert!(message.starts_with("atelier: error: "), "{message}");
    assert!(!out.exists());
}
