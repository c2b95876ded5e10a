//! The command lines `atelier video` gives `ffmpeg` and `ffprobe`, and what it reads from
//! ffprobe's answer. Pure: nothing here runs a program (that, the pipes and the stages are
//! [`crate::video`]'s), so every argument is unit-tested.

use std::ffi::OsString;
use std::path::Path;

use crate::segment::{Packet, Part, SegmentPlan};

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
    /// A segment's first frame in the whole video: its frames get their times in the whole
    /// video's timeline, and the audio is left to the join. `None` for a whole video.
    pub first_frame: Option<u64>,
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

/// `ffprobe` asked for the time and keyframe flag of every packet of the first video stream,
/// and the container's start: what segments are planned from. Reads the file, decodes nothing.
pub fn packets_args(input: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = args([
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "packet=pts_time,flags:format=start_time",
        "-print_format",
        "json",
    ])
    .collect();
    out.push(path_arg(input));
    out
}

/// Reads [`packets_args`]' answer: the packets with a time, and the container's start time.
pub fn parse_packets(stdout: &[u8]) -> Result<(Vec<Packet>, f64), String> {
    let json: serde_json::Value =
        serde_json::from_slice(stdout).map_err(|e| format!("unreadable output: {e}"))?;
    let packets = json["packets"]
        .as_array()
        .map(|packets| {
            packets
                .iter()
                .filter_map(|p| {
                    let time = p["pts_time"].as_str()?.parse::<f64>().ok()?;
                    let key = p["flags"].as_str().is_some_and(|f| f.starts_with('K'));
                    Some(Packet { time, key })
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if packets.is_empty() {
        return Err("no timed video packets".into());
    }
    let start = json["format"]["start_time"]
        .as_str()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(0.0);
    Ok((packets, start))
}

/// `ffprobe` on a segment's part: the streams with packets counted, and the container.
pub fn part_probe_args(part: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = args([
        "-v",
        "error",
        "-count_packets",
        "-print_format",
        "json",
        "-show_streams",
        "-show_format",
    ])
    .collect();
    out.push(path_arg(part));
    out
}

/// Reads [`part_probe_args`]' answer for the part at `path`: what the join needs, and the
/// video stream as [`parse_probe`] reads it (for the rotation).
pub fn parse_part(path: &Path, stdout: &[u8]) -> Result<(Part, VideoInfo), String> {
    let info = parse_probe(stdout)?;
    let json: serde_json::Value =
        serde_json::from_slice(stdout).map_err(|e| format!("unreadable output: {e}"))?;
    let video = json["streams"]
        .as_array()
        .and_then(|streams| streams.iter().find(|s| s["codec_type"] == "video"))
        .ok_or("no video stream")?;
    let rational = |text: &serde_json::Value| -> Option<(i64, i64)> {
        let (num, den) = text.as_str()?.split_once('/')?;
        let (num, den) = (num.parse().ok()?, den.parse().ok()?);
        (num > 0 && den > 0).then_some((num, den))
    };
    let integer = |v: &serde_json::Value| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    let seconds_us = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .map(|s| (s * 1e6).round() as i64)
    };
    let part = Part {
        path: path.to_path_buf(),
        frames: integer(&video["nb_read_packets"]).ok_or("no packet count")? as u64,
        start_pts: integer(&video["start_pts"]).ok_or("no start time")?,
        time_base: rational(&video["time_base"]).ok_or("no time base")?,
        start_us: seconds_us(&json["format"]["start_time"]).ok_or("no start time")?,
        frame_rate: rational(&serde_json::Value::from(info.frame_rate.clone()))
            .ok_or("no frame rate")?,
        size: (info.width, info.height),
    };
    Ok((part, info))
}

/// The join: the parts through the concat demuxer's `list`, the video stream copied, the audio
/// streams of `audio_from` (if given) copied, the display rotation set when not 0.
pub fn join_args(
    list: &Path,
    audio_from: Option<&Path>,
    rotation: i64,
    output: &Path,
) -> Vec<OsString> {
    let mut out: Vec<OsString> = args([
        "-v", "error", "-nostdin", "-y", "-f", "concat", "-safe", "0", "-i",
    ])
    .collect();
    out.push(path_arg(list));
    if let Some(audio) = audio_from {
        out.push("-i".into());
        out.push(path_arg(audio));
    }
    out.extend(args(["-map", "0:v:0"]));
    if audio_from.is_some() {
        out.extend(args(["-map", "1:a?"]));
    }
    out.extend(args(["-c", "copy"]));
    if rotation != 0 {
        out.push("-metadata:s:v:0".into());
        out.push(format!("rotate={}", rotation.rem_euclid(360)).into());
    }
    out.push(path_arg(output));
    out
}

/// `ffmpeg -version`, to find out whether a program is installed.
pub fn version_args() -> Vec<OsString> {
    args(["-version"]).collect()
}

/// The decoder: the stored frames of the first video stream (rotation stays metadata), every
/// frame as stored (no dropping or duplicating), scaled with Lanczos when `size` differs from
/// the stored size, as raw RGB on stdout.
/// With `range`, only the frames from the one after the seek point: ffmpeg seeks to the
/// keyframe before it and drops the frames it decodes before it.
pub fn decoder_args(
    input: &Path,
    info: &VideoInfo,
    (width, height): (u32, u32),
    range: Option<&SegmentPlan>,
) -> Vec<OsString> {
    let mut out: Vec<OsString> = args(["-v", "error", "-nostdin", "-noautorotate"]).collect();
    if let Some(seek) = range.and_then(|r| r.seek) {
        out.push("-ss".into());
        out.push(format!("{seek:.6}").into());
    }
    out.push("-i".into());
    out.push(path_arg(input));
    out.extend(args(["-map", "0:v:0", "-vsync", "passthrough"]));
    if let Some(range) = range {
        out.push("-frames:v".into());
        out.push(range.decoded_frames().to_string().into());
    }
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
    out.extend(args(["-i", "-"]));
    if settings.first_frame.is_none() {
        out.push("-i".into());
        out.push(path_arg(input));
        out.extend(args(["-map", "0:v:0", "-map", "1:a?", "-c:a", "copy"]));
    } else {
        out.extend(args(["-map", "0:v:0"]));
    }
    out.push("-c:v".into());
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
    let mut filters = Vec::new();
    if wants_yuv420(settings.codec) {
        out.extend(args(["-pix_fmt", "yuv420p"]));
        if width % 2 == 1 || height % 2 == 1 {
            filters.push("pad=ceil(iw/2)*2:ceil(ih/2)*2".to_string());
        }
    }
    // Raw frames on stdin are numbered from 0 in a time base of one frame.
    if let Some(first) = settings.first_frame.filter(|&n| n > 0) {
        filters.push(format!("setpts=PTS+{first}"));
    }
    if !filters.is_empty() {
        out.push("-vf".into());
        out.push(filters.join(",").into());
    }
    out.push(path_arg(output));
    out
}

/// A remux of `encoded` into `output` with every stream copied and the video stream's display
/// rotation set to `rotation` degrees: ffmpeg writes a rotation tag into the container only when
/// stream-copying.
/// `keep_times` (`-copyts`) keeps a segment's times in the whole video's timeline (ffmpeg would
/// otherwise move its start to 0).
pub fn rotate_args(
    encoded: &Path,
    output: &Path,
    rotation: i64,
    keep_times: bool,
) -> Vec<OsString> {
    let mut out: Vec<OsString> = args(["-v", "error", "-nostdin", "-y"]).collect();
    if keep_times {
        out.push("-copyts".into());
    }
    out.push("-i".into());
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
        let same = decoder_args(Path::new("clip.mp4"), &clip, (96, 64), None);
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
        let scaled = decoder_args(Path::new("clip.mp4"), &clip, (48, 32), None);
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
        let settings = EncoderSettings {
            codec,
            crf,
            preset,
            first_frame: None,
        };
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
        let args = rotate_args(Path::new(".enc.mp4"), Path::new(".rot.mp4"), -90, false);
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

    #[test]
    fn a_segment_decodes_from_its_seek_point_and_encodes_on_the_whole_timeline() {
        let plan = SegmentPlan {
            shard: crate::Shard::new(1, 3).unwrap(),
            first_frame: 24,
            frames: 12,
            warm_frames: 10,
            seek: Some(0.4504),
        };
        let decoder = display_args(&decoder_args(
            Path::new("film.mp4"),
            &info(96, 64, "30000/1001"),
            (96, 64),
            Some(&plan),
        ));
        assert_eq!(
            decoder[..12],
            [
                "-v",
                "error",
                "-nostdin",
                "-noautorotate",
                "-ss",
                "0.450400",
                "-i",
                "film.mp4",
                "-map",
                "0:v:0",
                "-vsync",
                "passthrough"
            ]
        );
        assert_eq!(decoder[12..14], ["-frames:v", "22"]);
        let settings = EncoderSettings {
            codec: "libx264",
            crf: 18,
            preset: None,
            first_frame: Some(24),
        };
        let encoder = display_args(&encoder_args(
            Path::new("film.mp4"),
            Path::new(".part.mkv"),
            (97, 64),
            "30000/1001",
            &settings,
        ));
        // no audio (the join copies it), frames numbered from 24
        assert!(!encoder.iter().any(|a| a == "film.mp4" || a == "1:a?"));
        let filters = encoder.iter().position(|a| a == "-vf").unwrap();
        assert_eq!(
            encoder[filters + 1],
            "pad=ceil(iw/2)*2:ceil(ih/2)*2,setpts=PTS+24"
        );
        assert_eq!(
            display_args(&rotate_args(
                Path::new("a.mkv"),
                Path::new("b.mkv"),
                90,
                true
            ))[4],
            "-copyts"
        );
    }

    #[test]
    fn packets_and_parts_parse_and_the_join_copies_every_stream() {
        let packets = br#"{"packets": [{"pts_time": "0.000000", "flags": "K_"},
            {"pts_time": "0.066733", "flags": "__"}, {"pts_time": "0.033367", "flags": "__"},
            {"flags": "__"}], "format": {"start_time": "0.021333"}}"#;
        let (packets, start) = parse_packets(packets).unwrap();
        assert_eq!(packets.len(), 3);
        assert!(packets[0].key && !packets[1].key);
        assert_eq!(start, 0.021333);
        assert!(parse_packets(br#"{"packets": []}"#).is_err());

        let part = br#"{"streams": [{"codec_type": "video", "width": 96, "height": 64,
            "r_frame_rate": "30000/1001", "time_base": "1/1000", "start_pts": 801,
            "nb_read_packets": "12"}], "format": {"start_time": "0.801000"}}"#;
        let (part, _) = parse_part(Path::new("/parts/part-1.mkv"), part).unwrap();
        assert_eq!(
            (part.frames, part.start_pts, part.time_base, part.start_us),
            (12, 801, (1, 1000), 801_000)
        );
        assert_eq!((part.frame_rate, part.size), ((30000, 1001), (96, 64)));

        let join = display_args(&join_args(
            Path::new(".list.ffconcat"),
            Some(Path::new("film.mp4")),
            -90,
            Path::new(".out.mp4"),
        ));
        assert_eq!(
            join,
            [
                "-v",
                "error",
                "-nostdin",
                "-y",
                "-f",
                "concat",
                "-safe",
                "0",
                "-i",
                ".list.ffconcat",
                "-i",
                "film.mp4",
                "-map",
                "0:v:0",
                "-map",
                "1:a?",
                "-c",
                "copy",
                "-metadata:s:v:0",
                "rotate=270",
                ".out.mp4"
            ]
        );
    }
}
