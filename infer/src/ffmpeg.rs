//! The command lines `atelier video` gives `ffmpeg` and `ffprobe`, and what it reads from
//! ffprobe's answer. Pure: nothing here runs a program (that, the pipes and the stages are
//! [`crate::video`]'s), so every argument is unit-tested.

use std::ffi::OsString;
use std::path::Path;

/// What `ffprobe` says about a video's first video stream.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// Stored (coded) size, before rotation.
    pub width: u32,
    pub height: u32,
    /// Exact frame rate as ffprobe's rational, e.g. `30000/1001`.
    pub frame_rate: String,
    /// Frame count when the container states it.
    pub frames: Option<u64>,
    pub duration: Option<f64>,
    /// Display rotation in degrees (ffprobe's convention), 0 when none.
    pub rotation: i64,
    pub has_audio: bool,
}

impl VideoInfo {
    pub fn frame_rate_value(&self) -> Option<f64> {
        let (num, den) = self.frame_rate.split_once('/')?;
        let (num, den): (f64, f64) = (num.parse().ok()?, den.parse().ok()?);
        (den > 0.0 && num > 0.0).then_some(num / den)
    }

    /// The frame count, stated or estimated from duration and rate (for progress).
    pub fn estimated_frames(&self) -> Option<u64> {
        self.frames
            .or_else(|| Some((self.duration? * self.frame_rate_value()?).round() as u64))
    }
}

/// How the video stream is encoded.
#[derive(Debug, Clone, Copy)]
pub struct EncoderSettings<'a> {
    /// `ffmpeg -c:v`.
    pub codec: &'a str,
    /// Constant rate factor, for the encoders that take one.
    pub crf: u8,
    /// `-preset`; `None`: `veryfast` for x264/x265, else the encoder's own default.
    pub preset: Option<&'a str>,
}

fn args<const N: usize>(fixed: [&str; N]) -> impl Iterator<Item = OsString> + '_ {
    fixed.into_iter().map(OsString::from)
}

fn path_arg(path: &Path) -> OsString {
    path.as_os_str().to_os_string()
}

/// `ffprobe` asked for every stream and the container, as JSON.
pub fn probe_args(input: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = args([
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_streams",
        "-show_format",
    ])
    .collect();
    out.push(path_arg(input));
    out
}

/// Reads `ffprobe -print_format json -show_streams -show_format` output: the first video stream
/// that is not cover art, the rate (`r_frame_rate`, else `avg_frame_rate`), the stated frame
/// count, the duration (the stream's, else the container's), the rotation (display matrix side
/// data, else the old `rotate` tag) and whether any audio stream exists.
pub fn parse_probe(stdout: &[u8]) -> Result<VideoInfo, String> {
    let json: serde_json::Value =
        serde_json::from_slice(stdout).map_err(|e| format!("unreadable output: {e}"))?;
    let streams = json["streams"].as_array().cloned().unwrap_or_default();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video" && s["disposition"]["attached_pic"] != 1)
        .ok_or("no video stream")?;
    let has_audio = streams.iter().any(|s| s["codec_type"] == "audio");
    let number = |v: &serde_json::Value| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    let float = |v: &serde_json::Value| {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    let side = |key: &str| {
        number(&video[key])
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(format!("the video stream has no usable {key}"))
    };
    let (width, height) = (side("width")?, side("height")?);
    let usable = |rate: &serde_json::Value| {
        rate.as_str()
            .filter(|r| r.split_once('/').is_some_and(|(n, d)| n != "0" && d != "0"))
            .map(str::to_string)
    };
    let frame_rate = usable(&video["r_frame_rate"])
        .or_else(|| usable(&video["avg_frame_rate"]))
        .ok_or("the video stream states no frame rate")?;
    let rotation = video["side_data_list"]
        .as_array()
        .and_then(|list| list.iter().find_map(|sd| float(&sd["rotation"])))
        .or_else(|| float(&video["tags"]["rotate"]))
        .unwrap_or(0.0)
        .round() as i64;
    Ok(VideoInfo {
        width,
        height,
        frame_rate,
        frames: number(&video["nb_frames"]).filter(|&n| n > 0),
        duration: float(&video["duration"]).or_else(|| float(&json["format"]["duration"])),
        rotation,
        has_audio,
    })
}

/// `ffmpeg -version`, to find out whether a program is installed.
pub fn version_args() -> Vec<OsString> {
    args(["-version"]).collect()
}

/// The decoder: the stored frames of the first video stream (rotation stays metadata), every
/// frame as stored (no dropping or duplicating), scaled with Lanczos when `size` differs from
/// the stored size, as raw RGB on stdout.
pub fn decoder_args(input: &Path, info: &VideoInfo, (width, height): (u32, u32)) -> Vec<OsString> {
    let mut out: Vec<OsString> = args(["-v", "error", "-nostdin", "-noautorotate", "-i"]).collect();
    out.push(path_arg(input));
    out.extend(args(["-map", "0:v:0", "-vsync", "passthrough"]));
    if (width, height) != (info.width, info.height) {
        out.push("-vf".into());
        out.push(format!("scale={width}:{height}:flags=lanczos").into());
    }
    out.extend(args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]));
    out
}

/// The encoder: raw RGB frames of `size` on stdin at the exact input `frame_rate`, the audio
/// streams of `input` copied unchanged (if it has any), the video encoded with `settings` into
/// `output` (whose extension picks the container). 4:2:0 for the encoders players expect it
/// of, padded to an even size when it needs one.
pub fn encoder_args(
    input: &Path,
    output: &Path,
    (width, height): (u32, u32),
    frame_rate: &str,
    settings: &EncoderSettings,
) -> Vec<OsString> {
    let mut out: Vec<OsString> = args([
        "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
    ])
    .collect();
    out.push(format!("{width}x{height}").into());
    out.push("-framerate".into());
    out.push(frame_rate.into());
    out.extend(args(["-i", "-", "-i"]));
    out.push(path_arg(input));
    out.extend(args([
        "-map", "0:v:0", "-map", "1:a?", "-c:a", "copy", "-c:v",
    ]));
    out.push(settings.codec.into());
    if takes_crf(settings.codec) {
        out.push("-crf".into());
        out.push(settings.crf.to_string().into());
        if settings.codec.starts_with("libvpx") {
            // libvpx's CRF is a cap under a target bit rate unless the rate is 0
            out.extend(args(["-b:v", "0"]));
        }
    }
    // x264/x265 default to `medium`, which costs about twice `veryfast`'s CPU per frame (720p:
    // 29 against 14 ms) for a slightly smaller file at the same CRF; it runs beside the network.
    let preset = settings
        .preset
        .or_else(|| matches!(settings.codec, "libx264" | "libx265").then_some("veryfast"));
    if let Some(preset) = preset {
        out.push("-preset".into());
        out.push(preset.into());
    }
    if wants_yuv420(settings.codec) {
        out.extend(args(["-pix_fmt", "yuv420p"]));
        if width % 2 == 1 || height % 2 == 1 {
            out.extend(args(["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]));
        }
    }
    out.push(path_arg(output));
    out
}

/// A remux of `encoded` into `output` with every stream copied and the video stream's display
/// rotation set to `rotation` degrees: ffmpeg writes a rotation tag into the container only when
/// stream-copying.
pub fn rotate_args(encoded: &Path, output: &Path, rotation: i64) -> Vec<OsString> {
    let mut out: Vec<OsString> = args(["-v", "error", "-nostdin", "-y", "-i"]).collect();
    out.push(path_arg(encoded));
    out.extend(args(["-map", "0", "-c", "copy", "-metadata:s:v:0"]));
    out.push(format!("rotate={}", rotation.rem_euclid(360)).into());
    out.push(path_arg(output));
    out
}

/// Encoders that take `-crf`.
fn takes_crf(codec: &str) -> bool {
    matches!(
        codec,
        "libx264" | "libx265" | "libvpx-vp9" | "libvpx" | "libaom-av1" | "libsvtav1"
    )
}

/// Encoders that get 4:2:0 chroma (for players' sake), which needs an even size.
fn wants_yuv420(codec: &str) -> bool {
    takes_crf(codec) || matches!(codec, "mpeg4" | "h264_nvenc" | "hevc_nvenc" | "libopenh264")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn display_args(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    /// `ffprobe -v error -print_format json -show_streams -show_format clip.mp4` (ffmpeg 5.1) of
    /// tests/video.rs's clip: 1.5 s of `testsrc2=size=96x64:rate=30000/1001` in x264 with a
    /// 440 Hz `sine` in AAC, remuxed with `-metadata:s:v:0 rotate=90`.
    const ROTATED_MP4: &str = include_str!("../testdata/ffprobe-rotated-h264-aac.json");
    /// The same of 0.4 s of `testsrc2=rate=25` in VP9 (`-c:v libvpx-vp9 -b:v 0 -crf 40`), in
    /// WebM: no audio, no frame count, the duration on the container only.
    const VP9_WEBM: &str = include_str!("../testdata/ffprobe-vp9-webm.json");

    fn info(width: u32, height: u32, frame_rate: &str) -> VideoInfo {
        VideoInfo {
            width,
            height,
            frame_rate: frame_rate.to_string(),
            frames: None,
            duration: None,
            rotation: 0,
            has_audio: false,
        }
    }

    #[test]
    fn parses_ffprobe_json_with_rotation_and_audio() {
        let json = serde_json::json!({
            "streams": [
                {"codec_type": "video", "width": 96, "height": 64, "r_frame_rate": "30000/1001",
                 "avg_frame_rate": "30000/1001", "nb_frames": "30", "duration": "1.001000",
                 "side_data_list": [{"side_data_type": "Display Matrix", "rotation": -90}]},
                {"codec_type": "audio"}
            ],
            "format": {"duration": "1.02"}
        });
        let parse_probe = |json: &serde_json::Value| parse_probe(json.to_string().as_bytes());
        let info = parse_probe(&json).unwrap();
        assert_eq!((info.width, info.height, info.rotation), (96, 64, -90));
        assert_eq!(info.frame_rate, "30000/1001");
        assert_eq!(info.frames, Some(30));
        assert!(info.has_audio);
        assert!(parse_probe(&serde_json::json!({"streams": [{"codec_type": "audio"}]})).is_err());
    }

    #[test]
    fn ffprobe_output_of_real_clips_parses() {
        let rotated = parse_probe(ROTATED_MP4.as_bytes()).unwrap();
        assert_eq!(
            rotated,
            VideoInfo {
                width: 96,
                height: 64,
                frame_rate: "30000/1001".into(),
                frames: Some(45),
                duration: Some(1.5015),
                rotation: 90,
                has_audio: true,
            }
        );
        assert_eq!(rotated.estimated_frames(), Some(45));
        let webm = parse_probe(VP9_WEBM.as_bytes()).unwrap();
        assert_eq!(
            webm,
            VideoInfo {
                width: 96,
                height: 64,
                frame_rate: "25/1".into(),
                frames: None,
                duration: Some(0.4),
                rotation: 0,
                has_audio: false,
            }
        );
        assert_eq!(webm.estimated_frames(), Some(10));
    }

    #[test]
    fn ffprobe_output_without_a_usable_video_stream_is_refused() {
        let audio_only = br#"{"streams": [{"codec_type": "audio"}], "format": {}}"#;
        assert_eq!(parse_probe(audio_only).unwrap_err(), "no video stream");
        // cover art is not the video
        let cover = br#"{"streams": [{"codec_type": "video", "width": 8, "height": 8,
            "r_frame_rate": "90000/1", "disposition": {"attached_pic": 1}}]}"#;
        assert_eq!(parse_probe(cover).unwrap_err(), "no video stream");
        let no_rate = br#"{"streams": [{"codec_type": "video", "width": 8, "height": 8,
            "r_frame_rate": "0/0", "avg_frame_rate": "0/0"}]}"#;
        assert!(parse_probe(no_rate).unwrap_err().contains("no frame rate"));
        // the old `rotate` tag and a rate ffprobe only averaged
        let tagged = br#"{"streams": [{"codec_type": "video", "width": "8", "height": "6",
            "r_frame_rate": "0/0", "avg_frame_rate": "24000/1001", "tags": {"rotate": "270"}}]}"#;
        let tagged = parse_probe(tagged).unwrap();
        assert_eq!(
            (tagged.rotation, tagged.frame_rate.as_str()),
            (270, "24000/1001")
        );
        assert!(parse_probe(b"ffprobe: error")
            .unwrap_err()
            .contains("unreadable"));
    }

    #[test]
    fn probe_refuses_sides_beyond_u32() {
        // 2^32 + 64 once wrapped to a 64-pixel-wide frame
        let json = br#"{"streams": [{"codec_type": "video", "width": 4294967360, "height": 48,
            "r_frame_rate": "10/1"}]}"#;
        assert_eq!(
            parse_probe(json).unwrap_err(),
            "the video stream has no usable width"
        );
    }

    #[test]
    fn probe_and_version_args() {
        assert_eq!(
            display_args(&probe_args(Path::new("in dir/clip.mp4"))),
            [
                "-v",
                "error",
                "-print_format",
                "json",
                "-show_streams",
                "-show_format",
                "in dir/clip.mp4"
            ]
        );
        assert_eq!(display_args(&version_args()), ["-version"]);
    }

    #[test]
    fn decoder_scales_only_when_the_size_changes() {
        let clip = info(96, 64, "30000/1001");
        let same = decoder_args(Path::new("clip.mp4"), &clip, (96, 64));
        assert_eq!(
            display_args(&same),
            [
                "-v",
                "error",
                "-nostdin",
                "-noautorotate",
                "-i",
                "clip.mp4",
                "-map",
                "0:v:0",
                "-vsync",
                "passthrough",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "-"
            ]
        );
        let scaled = decoder_args(Path::new("clip.mp4"), &clip, (48, 32));
        assert_eq!(
            display_args(&scaled)[10..],
            [
                "-vf",
                "scale=48:32:flags=lanczos",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "-"
            ]
        );
    }

    /// Everything up to and including `-c:v CODEC`, the same for every encoder.
    fn encoder_head(size: &str, rate: &str, input: &str, codec: &str) -> Vec<String> {
        [
            "-v",
            "error",
            "-nostdin",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            size,
            "-framerate",
            rate,
            "-i",
            "-",
            "-i",
            input,
            "-map",
            "0:v:0",
            "-map",
            "1:a?",
            "-c:a",
            "copy",
            "-c:v",
            codec,
        ]
        .map(String::from)
        .to_vec()
    }

    fn encode(codec: &str, crf: u8, preset: Option<&str>, size: (u32, u32)) -> Vec<String> {
        let settings = EncoderSettings { codec, crf, preset };
        let args = encoder_args(
            Path::new("clip.mp4"),
            Path::new(".out.tmp.mp4"),
            size,
            "30000/1001",
            &settings,
        );
        display_args(&args)
    }

    #[test]
    fn x264_gets_crf_veryfast_and_yuv420_by_default() {
        let mut expected = encoder_head("96x64", "30000/1001", "clip.mp4", "libx264");
        expected.extend(
            [
                "-crf",
                "18",
                "-preset",
                "veryfast",
                "-pix_fmt",
                "yuv420p",
                ".out.tmp.mp4",
            ]
            .map(String::from),
        );
        assert_eq!(encode("libx264", 18, None, (96, 64)), expected);
    }

    #[test]
    fn a_chosen_preset_and_an_odd_size_reach_x265() {
        let mut expected = encoder_head("97x64", "30000/1001", "clip.mp4", "libx265");
        expected.extend(
            [
                "-crf",
                "23",
                "-preset",
                "slow",
                "-pix_fmt",
                "yuv420p",
                "-vf",
                "pad=ceil(iw/2)*2:ceil(ih/2)*2",
                ".out.tmp.mp4",
            ]
            .map(String::from),
        );
        assert_eq!(encode("libx265", 23, Some("slow"), (97, 64)), expected);
    }

    #[test]
    fn vp9_gets_a_zero_bit_rate_and_no_default_preset() {
        let mut expected = encoder_head("96x64", "30000/1001", "clip.mp4", "libvpx-vp9");
        expected.extend(
            [
                "-crf",
                "31",
                "-b:v",
                "0",
                "-pix_fmt",
                "yuv420p",
                ".out.tmp.mp4",
            ]
            .map(String::from),
        );
        assert_eq!(encode("libvpx-vp9", 31, None, (96, 64)), expected);
    }

    #[test]
    fn other_encoders_get_neither_crf_nor_chroma_subsampling() {
        let mut expected = encoder_head("97x65", "30000/1001", "clip.mp4", "ffv1");
        expected.push(".out.tmp.mp4".into());
        assert_eq!(encode("ffv1", 18, None, (97, 65)), expected);
        // mpeg4 takes no CRF but gets 4:2:0, padded
        let mut expected = encoder_head("97x65", "30000/1001", "clip.mp4", "mpeg4");
        expected.extend(
            [
                "-pix_fmt",
                "yuv420p",
                "-vf",
                "pad=ceil(iw/2)*2:ceil(ih/2)*2",
                ".out.tmp.mp4",
            ]
            .map(String::from),
        );
        assert_eq!(encode("mpeg4", 18, None, (97, 65)), expected);
    }

    #[test]
    fn rotation_is_written_in_0_to_359_degrees() {
        let args = rotate_args(Path::new(".enc.mp4"), Path::new(".rot.mp4"), -90);
        assert_eq!(
            display_args(&args),
            [
                "-v",
                "error",
                "-nostdin",
                "-y",
                "-i",
                ".enc.mp4",
                "-map",
                "0",
                "-c",
                "copy",
                "-metadata:s:v:0",
                "rotate=270",
                ".rot.mp4"
            ]
        );
    }
}
