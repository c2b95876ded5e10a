//! Video through the `ffmpeg` and `ffprobe` programs: one ffmpeg decodes to raw RGB on a pipe,
//! the network stylizes, another ffmpeg encodes from a raw RGB pipe and copies the audio from
//! the input unchanged. Decoding, the network and encoding run as three overlapping stages.
//! Frame count, frame rate (as the exact rational), size and rotation are kept.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc::{sync_channel, TryRecvError};
use std::thread::JoinHandle;

use tch::Tensor;

use crate::error::{Error, Result};
use crate::image_io::Resize;
use crate::stylizer::Stylizer;

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

#[derive(Debug, Clone)]
pub struct VideoOptions {
    pub resize: Resize,
    /// Encoder for the video stream (`ffmpeg -c:v`).
    pub codec: String,
    /// Constant rate factor, for the encoders that take one.
    pub crf: u8,
    /// 0 = off; at 1 each output frame is half its own stylization, half the previous output.
    pub smooth: f64,
    /// Most frames run through the network at once.
    pub max_batch: usize,
    /// Encoder preset (`-preset`); `None`: `veryfast` for x264/x265, else the encoder's own.
    pub preset: Option<String>,
}

impl Default for VideoOptions {
    fn default() -> Self {
        Self {
            resize: Resize::default(),
            codec: "libx264".into(),
            crf: 18,
            smooth: 0.0,
            max_batch: 4,
            preset: None,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VideoReport {
    pub input: String,
    pub output: String,
    pub frames: u64,
    pub size: [u32; 2],
    pub frame_rate: String,
    pub seconds: f64,
}

fn start(mut command: Command, program: &'static str) -> Result<Child> {
    command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::FfmpegMissing(program),
        _ => Error::Invalid(format!("cannot run {program}: {e}")),
    })
}

/// Fails with install instructions when `ffmpeg` or `ffprobe` is missing.
pub fn check_ffmpeg() -> Result<()> {
    for program in ["ffmpeg", "ffprobe"] {
        let mut command = Command::new(program);
        command
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        start(command, program)?
            .wait()
            .map_err(|e| Error::Invalid(format!("{program}: {e}")))?;
    }
    Ok(())
}

/// Asks `ffprobe` about `path`.
pub fn probe(path: &Path) -> Result<VideoInfo> {
    let ffprobe_error = |reason: String| Error::Ffmpeg {
        program: "ffprobe",
        path: path.to_path_buf(),
        reason,
    };
    let mut command = Command::new("ffprobe");
    command
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
        ])
        .arg(path)
        .stdin(Stdio::null());
    let output = match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::FfmpegMissing("ffprobe"))
        }
        Err(e) => return Err(ffprobe_error(e.to_string())),
    };
    if !output.status.success() {
        return Err(ffprobe_error(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| ffprobe_error(format!("unreadable output: {e}")))?;
    parse_probe(&json).map_err(ffprobe_error)
}

fn parse_probe(json: &serde_json::Value) -> std::result::Result<VideoInfo, String> {
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
    let width = number(&video["width"]).ok_or("the video stream has no width")? as u32;
    let height = number(&video["height"]).ok_or("the video stream has no height")? as u32;
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

/// `dir/.stem.tmp-PID-TAG.ext`: hidden, beside the output, keeping the extension ffmpeg picks
/// the container by.
fn temporary_video(output: &Path, tag: &str) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = output
        .extension()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mp4".into());
    output.with_file_name(format!(".{stem}.tmp-{}-{tag}.{ext}", std::process::id()))
}

fn drain(stderr: Option<ChildStderr>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let _ = stderr.read_to_string(&mut text);
        }
        text.trim().to_string()
    })
}

/// Stylizes `input` into `output`. `on_frame` is called once per encoded frame.
pub fn stylize_video(
    stylizer: &Stylizer,
    input: &Path,
    output: &Path,
    options: &VideoOptions,
    on_frame: &(dyn Fn(u64) + Sync),
) -> Result<VideoReport> {
    let started = std::time::Instant::now();
    let info = probe(input)?;
    let (width, height) = options.resize.target(info.width, info.height);
    let min = models::transformer::MIN_INPUT_SIDE as u32;
    if width < min || height < min {
        return Err(Error::Invalid(format!(
            "{}: frames of {width}x{height} are too small for the network (at least {min}x{min})",
            input.display()
        )));
    }
    if !(0.0..=1.0).contains(&options.smooth) {
        return Err(Error::Invalid(format!(
            "smooth {} is not in 0..1",
            options.smooth
        )));
    }
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| Error::Write {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let temporary = temporary_video(output, "encode");
    let result = run_stages(
        stylizer,
        input,
        &temporary,
        &info,
        (width, height),
        options,
        on_frame,
    )
    .and_then(|frames| {
        finish_output(&temporary, output, info.rotation)?;
        Ok(frames)
    });
    let _ = std::fs::remove_file(&temporary);
    let frames = result?;
    Ok(VideoReport {
        input: input.display().to_string(),
        output: output.display().to_string(),
        frames,
        size: [width, height],
        frame_rate: info.frame_rate,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Moves the encoded file into place, adding the input's rotation: ffmpeg writes a rotation
/// tag into the container only when stream-copying, so a rotated input costs one quick remux.
fn finish_output(encoded: &Path, output: &Path, rotation: i64) -> Result<()> {
    let rename = |from: &Path| {
        std::fs::rename(from, output).map_err(|source| Error::Write {
            path: output.to_path_buf(),
            source,
        })
    };
    if rotation == 0 {
        return rename(encoded);
    }
    let remuxed = temporary_video(output, "rotate");
    let mut command = Command::new("ffmpeg");
    command
        .args(["-v", "error", "-nostdin", "-y", "-i"])
        .arg(encoded)
        .args(["-map", "0", "-c", "copy", "-metadata:s:v:0"])
        .arg(format!("rotate={}", rotation.rem_euclid(360)))
        .arg(&remuxed)
        .stdin(Stdio::null());
    let result = match command.output() {
        Ok(out) if out.status.success() => rename(&remuxed),
        Ok(out) => Err(Error::Ffmpeg {
            program: "ffmpeg",
            path: output.to_path_buf(),
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
        Err(e) => Err(Error::Invalid(format!("cannot run ffmpeg: {e}"))),
    };
    let _ = std::fs::remove_file(&remuxed);
    result
}

fn run_stages(
    stylizer: &Stylizer,
    input: &Path,
    encoded: &Path,
    info: &VideoInfo,
    (width, height): (u32, u32),
    options: &VideoOptions,
    on_frame: &(dyn Fn(u64) + Sync),
) -> Result<u64> {
    // Stage 1: decode the stored frames (rotation stays metadata) to raw RGB.
    let mut decode_args: Vec<String> = ["-v", "error", "-nostdin", "-noautorotate", "-i"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    decode_args.push(input.display().to_string());
    decode_args.extend(["-map", "0:v:0", "-vsync", "passthrough"].map(String::from));
    if (width, height) != (info.width, info.height) {
        decode_args.extend([
            "-vf".into(),
            format!("scale={width}:{height}:flags=lanczos"),
        ]);
    }
    decode_args.extend(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"].map(String::from));
    let mut decode = Command::new("ffmpeg");
    decode.args(&decode_args);
    decode
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut decoder = start(decode, "ffmpeg")?;

    // Stage 3: encode raw RGB at the exact input rate, audio copied from the input.
    let even = wants_yuv420(&options.codec);
    let mut encode_args: Vec<String> = vec![
        "-v".into(),
        "error".into(),
        "-nostdin".into(),
        "-y".into(),
        "-f".into(),
        "rawvideo".into(),
        "-pix_fmt".into(),
        "rgb24".into(),
        "-s".into(),
        format!("{width}x{height}"),
        "-framerate".into(),
        info.frame_rate.clone(),
        "-i".into(),
        "-".into(),
        "-i".into(),
        input.display().to_string(),
        "-map".into(),
        "0:v:0".into(),
        "-map".into(),
        "1:a?".into(),
        "-c:a".into(),
        "copy".into(),
        "-c:v".into(),
        options.codec.clone(),
    ];
    if takes_crf(&options.codec) {
        encode_args.extend(["-crf".into(), options.crf.to_string()]);
        if options.codec.starts_with("libvpx") {
            encode_args.extend(["-b:v".into(), "0".into()]);
        }
    }
    // x264/x265 default to `medium`, which costs about twice `veryfast`'s CPU per frame (720p:
    // 29 against 14 ms) for a slightly smaller file at the same CRF; it runs beside the network.
    let preset = options.preset.clone().or_else(|| {
        matches!(options.codec.as_str(), "libx264" | "libx265").then(|| "veryfast".to_string())
    });
    if let Some(preset) = preset {
        encode_args.extend(["-preset".into(), preset]);
    }
    if even {
        encode_args.extend(["-pix_fmt".into(), "yuv420p".into()]);
        if width % 2 == 1 || height % 2 == 1 {
            encode_args.extend(["-vf".into(), "pad=ceil(iw/2)*2:ceil(ih/2)*2".into()]);
        }
    }
    encode_args.push(encoded.display().to_string());
    let mut encode = Command::new("ffmpeg");
    encode.args(&encode_args);
    encode
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut encoder = match start(encode, "ffmpeg") {
        Ok(child) => child,
        Err(e) => {
            let _ = decoder.kill();
            let _ = decoder.wait();
            return Err(e);
        }
    };

    let decode_log = drain(decoder.stderr.take());
    let encode_log = drain(encoder.stderr.take());
    let frame_bytes = width as usize * height as usize * 3;
    // Raw frames both ways: the pixel conversions run on the network's thread, between network
    // calls, so the decoding and encoding threads only move bytes and never pre-empt the
    // network's OpenMP team with work of their own.
    let (frames_tx, frames_rx) = sync_channel::<Vec<u8>>(8);
    let (styled_tx, styled_rx) = sync_channel::<Vec<u8>>(8);
    let mut decoder_out = decoder.stdout.take();
    let mut encoder_in = encoder.stdin.take();

    let (network, decoded, written) = std::thread::scope(|scope| {
        let decoding = scope.spawn(move || -> std::result::Result<(), String> {
            let Some(pipe) = decoder_out.as_mut() else {
                return Ok(());
            };
            loop {
                let mut frame = vec![0u8; frame_bytes];
                match read_frame(pipe, &mut frame) {
                    Ok(true) => {}
                    Ok(false) => return Ok(()),
                    Err(e) => return Err(e.to_string()),
                }
                if frames_tx.send(frame).is_err() {
                    return Ok(()); // the network stage stopped; its error is reported
                }
            }
        });
        let encoding = scope.spawn(move || -> std::result::Result<u64, String> {
            let Some(pipe) = encoder_in.as_mut() else {
                return Ok(0);
            };
            let mut written = 0u64;
            for frame in styled_rx {
                pipe.write_all(&frame).map_err(|e| e.to_string())?;
                written += 1;
                on_frame(written);
            }
            // Dropping stdin (end of scope) tells ffmpeg to finish the file.
            Ok(written)
        });
        let size = (width as usize, height as usize);
        let network = network_stage(stylizer, options, size, frames_rx, styled_tx);
        let decoded = decoding.join();
        let written = encoding.join();
        (network, decoded, written)
    });
    let decoder_status = decoder.wait();
    let encoder_status = encoder.wait();
    let (decode_log, encode_log) = (
        decode_log.join().unwrap_or_default(),
        encode_log.join().unwrap_or_default(),
    );
    let ffmpeg_error = |reason: String| Error::Ffmpeg {
        program: "ffmpeg",
        path: input.to_path_buf(),
        reason,
    };
    network?;
    let written = match written {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => return Err(ffmpeg_error(format!("encoding stopped: {e}: {encode_log}"))),
        Err(_) => return Err(Error::Invalid("the encoding thread panicked".into())),
    };
    match decoded {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(ffmpeg_error(format!("decoding stopped: {e}: {decode_log}"))),
        Err(_) => return Err(Error::Invalid("the decoding thread panicked".into())),
    }
    if !decoder_status.map(|s| s.success()).unwrap_or(false) {
        return Err(ffmpeg_error(format!("decoding failed: {decode_log}")));
    }
    if !encoder_status.map(|s| s.success()).unwrap_or(false) {
        return Err(Error::Ffmpeg {
            program: "ffmpeg",
            path: encoded.to_path_buf(),
            reason: format!("encoding failed: {encode_log}"),
        });
    }
    if written == 0 {
        return Err(ffmpeg_error("no frames decoded".into()));
    }
    Ok(written)
}

/// Fills `frame`; `false` at a clean end of stream.
fn read_frame(pipe: &mut impl Read, frame: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < frame.len() {
        match pipe.read(&mut frame[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the stream ended inside a frame",
                ))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// `--smooth`: blends each stylized frame with the previous output frame, against flicker.
/// At `smooth` = 1 half of each frame is the previous one.
pub struct Smoother {
    previous_weight: f64,
    previous: Option<Tensor>,
}

impl Smoother {
    pub fn new(smooth: f64) -> Self {
        Self {
            previous_weight: smooth / 2.0,
            previous: None,
        }
    }

    /// Takes the next stylized frame `[3, H, W]` in order and returns it smoothed. A frame of
    /// another size than the previous one starts afresh.
    pub fn apply(&mut self, frame: Tensor) -> Tensor {
        let weight = self.previous_weight;
        if weight <= 0.0 {
            return frame;
        }
        let smoothed = match &self.previous {
            Some(previous) if previous.size() == frame.size() => {
                &frame * (1.0 - weight) + previous * weight
            }
            _ => frame,
        };
        self.previous = Some(smoothed.shallow_clone());
        smoothed
    }
}

/// Batches whatever frames are ready, stylizes them, and smooths each with the previous
/// output frame, in order.
fn network_stage(
    stylizer: &Stylizer,
    options: &VideoOptions,
    (width, height): (usize, usize),
    frames: std::sync::mpsc::Receiver<Vec<u8>>,
    styled: std::sync::mpsc::SyncSender<Vec<u8>>,
) -> Result<()> {
    let mut smoother = Smoother::new(options.smooth);
    while let Ok(first) = frames.recv() {
        let mut batch = vec![first];
        while batch.len() < options.max_batch.max(1) {
            match frames.try_recv() {
                Ok(frame) => batch.push(frame),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let images = batch
            .iter()
            .map(|frame| models::pixels::rgb_frame_to_tensor(frame, width, height))
            .collect::<models::Result<Vec<Tensor>>>()?;
        // One frame (the CPU default) needs no copy into a batch.
        let input = match images.as_slice() {
            [image] => image.unsqueeze(0),
            _ => Tensor::stack(&images, 0),
        };
        let out = stylizer.stylize(&input)?;
        for i in 0..batch.len() as i64 {
            let frame = models::pixels::tensor_to_rgb_frame(&smoother.apply(out.get(i)))?;
            if styled.send(frame).is_err() {
                return Ok(()); // the encoder stopped; its error is reported
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let info = parse_probe(&json).unwrap();
        assert_eq!((info.width, info.height, info.rotation), (96, 64, -90));
        assert_eq!(info.frame_rate, "30000/1001");
        assert_eq!(info.frames, Some(30));
        assert!(info.has_audio);
        assert!(parse_probe(&serde_json::json!({"streams": [{"codec_type": "audio"}]})).is_err());
    }
}
