//! Video through the `ffmpeg` and `ffprobe` programs: one ffmpeg decodes to raw RGB on a pipe,
//! the network stylizes, another ffmpeg encodes from a raw RGB pipe and copies the audio from
//! the input unchanged. Decoding, the network and encoding run as three overlapping stages.
//! Frame count, frame rate (as the exact rational), size and rotation are kept.
//!
//! This module runs the programs: spawning, pipes, the stages' threads and turning failures
//! into errors. Their command lines and the reading of ffprobe's answer are [`crate::ffmpeg`]'s.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

use tch::Tensor;

use crate::error::{Error, Result};
use crate::ffmpeg::{self, EncoderSettings};
use crate::image_io::Resize;
use crate::segment::{self, Part, SegmentPlan};
use crate::shard::Shard;
use crate::stylizer::Stylizer;

pub use crate::ffmpeg::VideoInfo;
pub use crate::smoother::Smoother;

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
    /// Only this segment of the video (see [`crate::segment`]); `None`: all of it.
    pub segment: Option<SegmentPlan>,
    /// Set to non-zero (by a signal handler) to stop: no further frame enters the network, the
    /// partial file is removed and the run ends with [`Error::Interrupted`].
    pub interrupt: Option<Arc<AtomicUsize>>,
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
            segment: None,
            interrupt: None,
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
    /// `I/N` and the first frame of a segment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_frame: Option<u64>,
}

impl VideoOptions {
    /// Whether the run was told to stop.
    fn interrupted(&self) -> bool {
        self.interrupt
            .as_ref()
            .is_some_and(|signal| signal.load(Ordering::SeqCst) != 0)
    }

    fn encoder(&self) -> EncoderSettings<'_> {
        EncoderSettings {
            codec: &self.codec,
            crf: self.crf,
            preset: self.preset.as_deref(),
            first_frame: self.segment.as_ref().map(|s| s.first_frame),
        }
    }
}

/// Spawns `program` with `args`; a missing program gets install instructions.
fn start(program: &'static str, args: &[OsString], stdio: [Stdio; 3]) -> Result<Child> {
    let [stdin, stdout, stderr] = stdio;
    Command::new(program)
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::FfmpegMissing(program),
            _ => Error::Invalid(format!("cannot run {program}: {e}")),
        })
}

/// Runs `program` to its end with no input, capturing its output.
fn run_to_end(program: &'static str, args: &[OsString]) -> Result<std::process::Output> {
    let child = start(
        program,
        args,
        [Stdio::null(), Stdio::piped(), Stdio::piped()],
    )?;
    child
        .wait_with_output()
        .map_err(|e| Error::Invalid(format!("cannot run {program}: {e}")))
}

/// Fails with install instructions when `ffmpeg` or `ffprobe` is missing.
pub fn check_ffmpeg() -> Result<()> {
    for program in ["ffmpeg", "ffprobe"] {
        start(
            program,
            &ffmpeg::version_args(),
            [Stdio::null(), Stdio::null(), Stdio::null()],
        )?
        .wait()
        .map_err(|e| Error::Invalid(format!("{program}: {e}")))?;
    }
    Ok(())
}

/// Runs `ffprobe` with `args` on `path` and returns what it printed.
fn ffprobe(path: &Path, args: &[OsString]) -> Result<Vec<u8>> {
    let output = run_to_end("ffprobe", args)?;
    if !output.status.success() {
        return Err(ffprobe_error(
            path,
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    Ok(output.stdout)
}

fn ffprobe_error(path: &Path, reason: String) -> Error {
    Error::Ffmpeg {
        program: "ffprobe",
        path: path.to_path_buf(),
        reason,
    }
}

/// Asks `ffprobe` about `path` (one run).
pub fn probe(path: &Path) -> Result<VideoInfo> {
    let stdout = ffprobe(path, &ffmpeg::probe_args(path))?;
    ffmpeg::parse_probe(&stdout).map_err(|reason| ffprobe_error(path, reason))
}

/// `input`'s video packets and the container's start time (one ffprobe run that reads the
/// file and decodes nothing).
fn packets(input: &Path) -> Result<(Vec<segment::Packet>, f64)> {
    let stdout = ffprobe(input, &ffmpeg::packets_args(input))?;
    ffmpeg::parse_packets(&stdout).map_err(|reason| ffprobe_error(input, reason))
}

/// Plans segment `shard` of `input` from its packets' times and keyframes (one ffprobe run
/// that reads the file and decodes nothing), with the warm-up `smooth` needs.
pub fn plan_segment(input: &Path, shard: Shard, smooth: f64) -> Result<SegmentPlan> {
    let (packets, start) = packets(input)?;
    segment::plan(&packets, start, shard, segment::warm_frames(smooth))
        .map_err(|reason| Error::Invalid(format!("{}: {reason}", input.display())))
}

/// What a join wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JoinReport {
    pub output: String,
    pub parts: usize,
    pub frames: u64,
    pub seconds: f64,
}

/// How parts join: the concat demuxer's list and what it makes.
#[derive(Debug, Clone)]
pub struct JoinPlan {
    list: String,
    rotation: i64,
    pub parts: usize,
    pub frames: u64,
}

/// Asks ffprobe about the parts `atelier video --segment` wrote (in any order) and plans their
/// join; parts that leave a gap, overlap or do not match are refused here, before any work.
pub fn plan_join(parts: &[PathBuf]) -> Result<JoinPlan> {
    let mut probed: Vec<Part> = Vec::new();
    let mut rotation = 0;
    for path in parts {
        // The concat list names files absolutely, wherever ffmpeg runs.
        let absolute = std::fs::canonicalize(path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        let stdout = ffprobe(path, &ffmpeg::part_probe_args(&absolute))?;
        let (part, info) =
            ffmpeg::parse_part(&absolute, &stdout).map_err(|reason| ffprobe_error(path, reason))?;
        if probed.is_empty() {
            rotation = info.rotation; // every part has the film's
        }
        probed.push(part);
    }
    Ok(JoinPlan {
        list: segment::concat_list(&probed).map_err(Error::Invalid)?,
        rotation,
        parts: probed.len(),
        frames: probed.iter().map(|p| p.frames).sum(),
    })
}

/// Joins the parts of `plan` into `output` without re-encoding, with the audio of
/// `audio_from` (the original video) copied; written under a temporary name and renamed.
pub fn join(plan: &JoinPlan, output: &Path, audio_from: Option<&Path>) -> Result<JoinReport> {
    let started = std::time::Instant::now();
    let (list, rotation) = (&plan.list, plan.rotation);
    let list_path = temporary_video(output, "parts").with_extension("ffconcat");
    let joined = temporary_video(output, "join");
    let result = std::fs::write(&list_path, list)
        .map_err(|source| Error::Write {
            path: list_path.clone(),
            source,
        })
        .and_then(|()| {
            run_to_end(
                "ffmpeg",
                &ffmpeg::join_args(&list_path, audio_from, rotation, &joined),
            )
        })
        .and_then(|out| {
            if !out.status.success() {
                return Err(Error::Ffmpeg {
                    program: "ffmpeg",
                    path: output.to_path_buf(),
                    reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
            std::fs::rename(&joined, output).map_err(|source| Error::Write {
                path: output.to_path_buf(),
                source,
            })
        });
    let _ = std::fs::remove_file(&list_path);
    let _ = std::fs::remove_file(&joined);
    result?;
    Ok(JoinReport {
        output: output.display().to_string(),
        parts: plan.parts,
        frames: plan.frames,
        seconds: started.elapsed().as_secs_f64(),
    })
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

/// Collects a program's stderr on a thread of its own, so a full pipe never stalls it.
fn drain(stderr: Option<ChildStderr>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let _ = stderr.read_to_string(&mut text);
        }
        text.trim().to_string()
    })
}

/// Stylizes `input` into `output`, asking ffprobe about it first. `on_frame` is called once
/// per encoded frame.
pub fn stylize_video(
    stylizer: &Stylizer,
    input: &Path,
    output: &Path,
    options: &VideoOptions,
    on_frame: &(dyn Fn(u64) + Sync),
) -> Result<VideoReport> {
    let info = probe(input)?;
    stylize_probed_video(stylizer, input, &info, output, options, on_frame)
}

/// Stylizes `input`, which [`probe`] described as `info`, into `output`. `on_frame` is called
/// once per encoded frame.
pub fn stylize_probed_video(
    stylizer: &Stylizer,
    input: &Path,
    info: &VideoInfo,
    output: &Path,
    options: &VideoOptions,
    on_frame: &(dyn Fn(u64) + Sync),
) -> Result<VideoReport> {
    let started = std::time::Instant::now();
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
        info,
        (width, height),
        options,
        on_frame,
    )
    .and_then(|frames| interrupted_or(options, frames))
    .and_then(|frames| match &options.segment {
        Some(plan) if frames != plan.frames => Err(Error::Invalid(format!(
            "{}: segment {} gave {frames} frames, not the {} planned from frame {}",
            input.display(),
            plan.shard,
            plan.frames,
            plan.first_frame
        ))),
        _ => Ok(frames),
    })
    .and_then(|frames| {
        finish_output(&temporary, output, info.rotation, options.segment.is_some())?;
        Ok(frames)
    });
    let _ = std::fs::remove_file(&temporary);
    // A terminal's Ctrl-C reaches the ffmpeg children too: their errors are the interruption's.
    let frames = result.map_err(|e| {
        if options.interrupted() {
            Error::Interrupted
        } else {
            e
        }
    })?;
    Ok(VideoReport {
        input: input.display().to_string(),
        output: output.display().to_string(),
        frames,
        size: [width, height],
        frame_rate: info.frame_rate.clone(),
        seconds: started.elapsed().as_secs_f64(),
        segment: options.segment.as_ref().map(|s| s.shard.to_string()),
        first_frame: options.segment.as_ref().map(|s| s.first_frame),
    })
}

/// Stylizes `input` (which [`probe`] described as `info`) into `output` on several workers,
/// one per stylizer (one per GPU): each stylizes one segment of the video (as
/// `--segment I/N`, at most one per keyframe) into a hidden part beside `output`, and the parts
/// are joined without re-encoding, with the audio. Without smoothing the frames are those of
/// one worker's run. `on_frame` hears the frames written by all workers together.
pub fn stylize_video_on_workers(
    stylizers: &mut [Stylizer],
    input: &Path,
    info: &VideoInfo,
    output: &Path,
    options: &VideoOptions,
    on_frame: &(dyn Fn(u64) + Sync),
) -> Result<VideoReport> {
    let started = std::time::Instant::now();
    let (packets, start) = packets(input)?;
    let keyframes = packets.iter().filter(|p| p.key).count().max(1);
    let count = stylizers.len().min(keyframes);
    let warm = segment::warm_frames(options.smooth);
    let plans = (0..count)
        .map(|index| {
            let shard = Shard::new(index, count)?;
            segment::plan(&packets, start, shard, warm)
                .map_err(|reason| Error::Invalid(format!("{}: {reason}", input.display())))
        })
        .collect::<Result<Vec<_>>>()?;
    let parts: Vec<PathBuf> = (0..count)
        .map(|i| temporary_video(output, &format!("part{i}")))
        .collect();
    // A CPU worker's network gets its share of the cores (the thread count is per thread).
    let threads = (tch::get_num_threads() as usize / count).max(1) as i32;
    let total = std::sync::atomic::AtomicU64::new(0);
    let results: Vec<Result<VideoReport>> = std::thread::scope(|scope| {
        let workers: Vec<_> = stylizers
            .iter_mut()
            .zip(plans)
            .zip(&parts)
            .map(|((stylizer, plan), part)| {
                let total = &total;
                scope.spawn(move || {
                    let stylizer = &*stylizer;
                    if stylizer.device() == tch::Device::Cpu {
                        tch::set_num_threads(threads);
                    }
                    let options = VideoOptions {
                        segment: Some(plan),
                        ..options.clone()
                    };
                    let last = std::sync::atomic::AtomicU64::new(0);
                    let progress = |written: u64| {
                        let new = written - last.swap(written, Ordering::Relaxed);
                        on_frame(total.fetch_add(new, Ordering::Relaxed) + new);
                    };
                    stylize_probed_video(stylizer, input, info, part, &options, &progress)
                })
            })
            .collect();
        crate::pipeline::join_workers(workers)
    });
    let result = interrupted_or(options, results)
        .and_then(|results| results.into_iter().collect::<Result<Vec<_>>>())
        .and_then(|_| join(&plan_join(&parts)?, output, Some(input)));
    for part in &parts {
        let _ = std::fs::remove_file(part);
    }
    let joined = result?;
    let (width, height) = options.resize.target(info.width, info.height);
    Ok(VideoReport {
        input: input.display().to_string(),
        output: output.display().to_string(),
        frames: joined.frames,
        size: [width, height],
        frame_rate: info.frame_rate.clone(),
        seconds: started.elapsed().as_secs_f64(),
        segment: None,
        first_frame: None,
    })
}

/// `value`, or [`Error::Interrupted`] once the run was told to stop.
fn interrupted_or<T>(options: &VideoOptions, value: T) -> Result<T> {
    if options.interrupted() {
        return Err(Error::Interrupted);
    }
    Ok(value)
}

/// Moves the encoded file into place, adding the input's rotation: ffmpeg writes a rotation
/// tag into the container only when stream-copying, so a rotated input costs one quick remux.
fn finish_output(encoded: &Path, output: &Path, rotation: i64, keep_times: bool) -> Result<()> {
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
    let result = match run_to_end(
        "ffmpeg",
        &ffmpeg::rotate_args(encoded, &remuxed, rotation, keep_times),
    ) {
        Ok(out) if out.status.success() => rename(&remuxed),
        Ok(out) => Err(Error::Ffmpeg {
            program: "ffmpeg",
            path: output.to_path_buf(),
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&remuxed);
    result
}

/// How each stage ended: the network's result, and the decoding and encoding threads' (`Err`
/// when one panicked; the encoder's holds the frames written).
type StageResults = (
    Result<()>,
    std::thread::Result<std::result::Result<(), String>>,
    std::thread::Result<std::result::Result<u64, String>>,
);

/// Decoder → network → encoder, each stage on a thread of its own; returns the frames written.
fn run_stages(
    stylizer: &Stylizer,
    input: &Path,
    encoded: &Path,
    info: &VideoInfo,
    size: (u32, u32),
    options: &VideoOptions,
    on_frame: &(dyn Fn(u64) + Sync),
) -> Result<u64> {
    let mut decoder = start(
        "ffmpeg",
        &ffmpeg::decoder_args(input, info, size, options.segment.as_ref()),
        [Stdio::null(), Stdio::piped(), Stdio::piped()],
    )?;
    let encoder_args =
        ffmpeg::encoder_args(input, encoded, size, &info.frame_rate, &options.encoder());
    let stdio = [Stdio::piped(), Stdio::null(), Stdio::piped()];
    let mut encoder = match start("ffmpeg", &encoder_args, stdio) {
        Ok(child) => child,
        Err(e) => {
            let _ = decoder.kill();
            let _ = decoder.wait();
            return Err(e);
        }
    };
    let decode_log = drain(decoder.stderr.take());
    let encode_log = drain(encoder.stderr.take());
    let results = move_frames(
        stylizer,
        options,
        size,
        decoder.stdout.take(),
        encoder.stdin.take(),
        on_frame,
    );
    let decoder_ok = decoder.wait().is_ok_and(|status| status.success());
    let encoder_ok = encoder.wait().is_ok_and(|status| status.success());
    let logs = (
        decode_log.join().unwrap_or_default(),
        encode_log.join().unwrap_or_default(),
    );
    stage_outcome(input, encoded, results, (decoder_ok, encoder_ok), logs)
}

/// The three stages over the pipes, until the decoder's output ends or a stage stops.
fn move_frames(
    stylizer: &Stylizer,
    options: &VideoOptions,
    (width, height): (u32, u32),
    mut decoder_out: Option<impl Read + Send>,
    mut encoder_in: Option<impl Write + Send>,
    on_frame: &(dyn Fn(u64) + Sync),
) -> StageResults {
    let frame_bytes = width as usize * height as usize * 3;
    // Raw frames both ways: the pixel conversions run on the network's thread, between network
    // calls, so the decoding and encoding threads only move bytes and never pre-empt the
    // network's OpenMP team with work of their own.
    let (frames_tx, frames_rx) = sync_channel::<Vec<u8>>(8);
    let (styled_tx, styled_rx) = sync_channel::<Vec<u8>>(8);
    std::thread::scope(|scope| {
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
        (network, decoding.join(), encoding.join())
    })
}

/// The first failure among the stages and the two programs, as one error naming the file; or
/// the frames written.
fn stage_outcome(
    input: &Path,
    encoded: &Path,
    (network, decoded, written): StageResults,
    (decoder_ok, encoder_ok): (bool, bool),
    (decode_log, encode_log): (String, String),
) -> Result<u64> {
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
    if !decoder_ok {
        return Err(ffmpeg_error(format!("decoding failed: {decode_log}")));
    }
    if !encoder_ok {
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

/// Batches whatever frames are ready, stylizes them, and smooths each with the previous
/// output frame, in order.
fn network_stage(
    stylizer: &Stylizer,
    options: &VideoOptions,
    (width, height): (usize, usize),
    frames: Receiver<Vec<u8>>,
    styled: SyncSender<Vec<u8>>,
) -> Result<()> {
    let mut smoother = Smoother::new(options.smooth);
    // A segment's warm-up frames only feed the smoother.
    let mut warm = options.segment.as_ref().map_or(0, |s| s.warm_frames);
    while let Ok(first) = frames.recv() {
        if options.interrupted() {
            return Ok(()); // the decoder stops on its closed pipe, the encoder on its end
        }
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
            let smoothed = smoother.apply(out.get(i));
            if warm > 0 {
                warm -= 1;
                continue;
            }
            let frame = models::pixels::tensor_to_rgb_frame(&smoothed)?;
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
    fn frames_are_read_whole_or_not_at_all() {
        let mut frame = [0u8; 4];
        let mut pipe: &[u8] = &[1, 2, 3, 4, 5, 6];
        assert!(read_frame(&mut pipe, &mut frame).unwrap());
        assert_eq!(frame, [1, 2, 3, 4]);
        let error = read_frame(&mut pipe, &mut frame).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
        let mut empty: &[u8] = &[];
        assert!(!read_frame(&mut empty, &mut frame).unwrap());
    }

    #[test]
    fn temporary_names_are_hidden_siblings_keeping_the_extension() {
        let pid = std::process::id();
        assert_eq!(
            temporary_video(Path::new("out/styled.webm"), "encode"),
            PathBuf::from(format!("out/.styled.tmp-{pid}-encode.webm"))
        );
        assert_eq!(
            temporary_video(Path::new("styled"), "rotate"),
            PathBuf::from(format!(".styled.tmp-{pid}-rotate.mp4"))
        );
    }
}
