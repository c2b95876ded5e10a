//! A video in segments: `atelier video --segment I/N` stylizes one time range of a video, cut at
//! keyframes, and `atelier video-join` joins the parts without re-encoding. Pure: the plan of a
//! segment from the video's packet times, and the join's list from what ffprobe says of each
//! part (running the programs is [`crate::video`]'s).
//!
//! A part carries its frames' timestamps in the whole video's timeline (its first frame is
//! frame K, at K / rate), so the join can order the parts, check that none is missing, and place
//! every frame where a one-process run puts it.

use std::path::{Path, PathBuf};

use crate::shard::Shard;

/// One video packet (one frame): presentation time in seconds and whether it is a keyframe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Packet {
    pub time: f64,
    pub key: bool,
}

/// The frames a segment stylizes and how its decoder reaches them.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentPlan {
    pub shard: Shard,
    /// Index of the segment's first frame in the whole video (in presentation order).
    pub first_frame: u64,
    /// Frames the segment writes.
    pub frames: u64,
    /// Frames decoded and stylized before `first_frame` to warm the smoother up, then dropped.
    pub warm_frames: u64,
    /// Where the decoder seeks (`-ss`, seconds from the start of the file): between the frame
    /// before the first decoded one and that one, so ffmpeg's exact seek starts on it. `None`
    /// from the first frame.
    pub seek: Option<f64>,
}

impl SegmentPlan {
    /// Frames the decoder delivers: the warm-up frames, then the segment's.
    pub fn decoded_frames(&self) -> u64 {
        self.warm_frames + self.frames
    }
}

/// Frames before a segment that bring `--smooth`'s running blend within a quarter of a level
/// of a one-process run's: each frame keeps `smooth / 2` of the previous output, so a
/// difference of 255 shrinks by that factor per frame.
pub fn warm_frames(smooth: f64) -> u64 {
    let kept = smooth / 2.0;
    if kept <= 0.0 {
        return 0;
    }
    ((0.25f64 / 255.0).ln() / kept.ln()).ceil().max(1.0) as u64
}

/// Frame indices where the `count` segments start, plus the frame count at the end: each
/// boundary is the keyframe nearest to an even split, distinct and increasing.
pub fn boundaries(keyframes: &[u64], total: u64, count: usize) -> Result<Vec<u64>, String> {
    let inner: Vec<u64> = keyframes
        .iter()
        .copied()
        .filter(|&k| k > 0 && k < total)
        .collect();
    if count == 0 || inner.len() + 1 < count {
        return Err(format!(
            "the video has {} keyframes, too few for {count} segments (cut only at \
             keyframes; re-encode with a shorter keyframe interval, e.g. ffmpeg -g 48)",
            inner.len() + 1
        ));
    }
    let mut cuts = vec![0];
    let mut next = 0; // first keyframe of `inner` still free
    for i in 1..count {
        let target = total as f64 * i as f64 / count as f64;
        // leave one keyframe for each boundary still to place
        let last = inner.len() - (count - i);
        let best = (next..=last)
            .min_by(|&a, &b| {
                let distance = |k: usize| (inner[k] as f64 - target).abs();
                distance(a).total_cmp(&distance(b))
            })
            .unwrap_or(next);
        cuts.push(inner[best]);
        next = best + 1;
    }
    cuts.push(total);
    Ok(cuts)
}

/// Segment `shard` of a video whose video packets are `packets` (any order) in a file whose
/// timeline starts at `start_time`, with `warm` frames of smoother warm-up.
pub fn plan(
    packets: &[Packet],
    start_time: f64,
    shard: Shard,
    warm: u64,
) -> Result<SegmentPlan, String> {
    let mut frames: Vec<Packet> = packets.to_vec();
    frames.sort_by(|a, b| a.time.total_cmp(&b.time));
    if frames.is_empty() {
        return Err("no video frames".into());
    }
    let keyframes: Vec<u64> = (0u64..)
        .zip(&frames)
        .filter(|(_, p)| p.key)
        .map(|(i, _)| i)
        .collect();
    let cuts = boundaries(&keyframes, frames.len() as u64, shard.count)?;
    let (first, end) = (cuts[shard.index], cuts[shard.index + 1]);
    let decoded_from = first.saturating_sub(warm);
    let seek = (decoded_from > 0).then(|| {
        let (before, at) = (
            frames[decoded_from as usize - 1].time,
            frames[decoded_from as usize].time,
        );
        (before + at) / 2.0 - start_time
    });
    Ok(SegmentPlan {
        shard,
        first_frame: first,
        frames: end - first,
        warm_frames: first - decoded_from,
        seek,
    })
}

/// What the join needs to know of one part (from ffprobe).
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub path: PathBuf,
    /// Video packets (frames) in the part.
    pub frames: u64,
    /// The video stream's first timestamp, in its time base.
    pub start_pts: i64,
    /// The video stream's time base, `num/den` seconds.
    pub time_base: (i64, i64),
    /// The container's start, in microseconds (what ffmpeg's concat demuxer shifts from).
    pub start_us: i64,
    /// Exact frame rate, `num/den`.
    pub frame_rate: (i64, i64),
    pub size: (u32, u32),
}

impl Part {
    /// Index of the part's first frame in the whole video: its start time in frames.
    fn first_frame(&self) -> i64 {
        let (tb_num, tb_den) = self.time_base;
        let (rate_num, rate_den) = self.frame_rate;
        div_round(
            self.start_pts as i128 * tb_num as i128 * rate_num as i128,
            tb_den as i128 * rate_den as i128,
        ) as i64
    }

    /// Timestamp (in the stream's time base) of frame `frame` in a one-process run.
    fn exact_pts(&self, frame: i64) -> i64 {
        let (tb_num, tb_den) = self.time_base;
        let (rate_num, rate_den) = self.frame_rate;
        div_round(
            frame as i128 * rate_den as i128 * tb_den as i128,
            rate_num as i128 * tb_num as i128,
        ) as i64
    }
}

/// `a / b` rounded to nearest, halves away from zero (as ffmpeg's `av_rescale_q`), `b > 0`.
fn div_round(a: i128, b: i128) -> i128 {
    if a >= 0 {
        (2 * a + b) / (2 * b)
    } else {
        -((-2 * a + b) / (2 * b))
    }
}

/// The concat demuxer's list for `parts` (any order), or why they do not make one video. Each
/// part's `duration` is chosen so that the demuxer shifts the next part's timestamps onto the
/// frames' exact times: containers that round a part's start (MP4 edit lists are in
/// milliseconds) get it corrected, and those that store exact times get no shift at all.
pub fn concat_list(parts: &[Part]) -> Result<String, String> {
    let mut parts: Vec<&Part> = parts.iter().collect();
    parts.sort_by_key(|part| part.first_frame());
    let first = parts.first().ok_or("no parts to join")?;
    let mut expected = 0i64;
    let mut starts = Vec::new();
    for part in &parts {
        let name = part.path.display();
        if (part.frame_rate, part.size) != (first.frame_rate, first.size) {
            return Err(format!(
                "{name} has another frame rate or size than {}",
                first.path.display()
            ));
        }
        let at = part.first_frame();
        if at != expected {
            return Err(if at > expected {
                format!(
                    "frames {expected} to {} are missing: a part is missing or incomplete \
                     before {name}",
                    at - 1
                )
            } else {
                format!("{name} overlaps the part before it (it starts at frame {at})")
            });
        }
        expected = at + part.frames as i64;
        // where the demuxer must start this part so that its first frame lands exactly
        let shift = part.exact_pts(at) - part.start_pts;
        let (tb_num, tb_den) = part.time_base;
        let shift_us = div_round(shift as i128 * tb_num as i128 * 1_000_000, tb_den as i128);
        starts.push(part.start_us as i128 + shift_us);
    }
    if starts[0] != 0 {
        return Err(format!(
            "{} does not start at the video's first frame",
            first.path.display()
        ));
    }
    let mut list = String::from("ffconcat version 1.0\n");
    for (i, part) in parts.iter().enumerate() {
        list.push_str(&format!("file {}\n", quote(&part.path)));
        if let Some(next) = starts.get(i + 1) {
            let duration = next - starts[i];
            list.push_str(&format!(
                "duration {}.{:06}\n",
                duration / 1_000_000,
                duration % 1_000_000
            ));
        }
    }
    Ok(list)
}

/// A path in the concat list's quoting: single quotes, a quote itself as `'\''`.
fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` frames at `rate` fps (in decode order for B-frames: pairs swapped), a keyframe
    /// every `gop`.
    fn packets(count: usize, rate: f64, gop: usize) -> Vec<Packet> {
        let mut out: Vec<Packet> = (0..count)
            .map(|i| Packet {
                time: i as f64 / rate,
                key: i % gop == 0,
            })
            .collect();
        for pair in out.chunks_mut(2).skip(1) {
            pair.swap(0, pair.len() - 1);
        }
        out
    }

    fn shard(index: usize, count: usize) -> Shard {
        Shard::new(index, count).unwrap()
    }

    #[test]
    fn segments_are_cut_at_keyframes_disjoint_and_cover_every_frame() {
        let video = packets(60, 30000.0 / 1001.0, 12);
        let plans: Vec<SegmentPlan> = (0..3)
            .map(|i| plan(&video, 0.0, shard(i, 3), 0).unwrap())
            .collect();
        let ranges: Vec<(u64, u64)> = plans.iter().map(|p| (p.first_frame, p.frames)).collect();
        assert_eq!(ranges, [(0, 24), (24, 12), (36, 24)]);
        assert_eq!(plans[0].seek, None);
        // halfway between frames 23 and 24
        let seek = plans[1].seek.unwrap();
        assert!((seek - 23.5 * 1001.0 / 30000.0).abs() < 1e-9, "{seek}");
        // a file whose timeline starts at 1.5 s seeks from there
        let late: Vec<Packet> = video
            .iter()
            .map(|p| Packet {
                time: p.time + 1.5,
                ..*p
            })
            .collect();
        let shifted = plan(&late, 1.5, shard(1, 3), 0).unwrap();
        assert!((shifted.seek.unwrap() - seek).abs() < 1e-9);
    }

    #[test]
    fn boundaries_stay_distinct_when_keyframes_bunch_up() {
        assert_eq!(
            boundaries(&[0, 100, 101, 102], 400, 4).unwrap(),
            [0, 100, 101, 102, 400]
        );
        assert_eq!(boundaries(&[0, 10, 20, 30], 40, 1).unwrap(), [0, 40]);
        let error = boundaries(&[0, 50], 100, 3).unwrap_err();
        assert!(error.contains("2 keyframes, too few for 3"), "{error}");
    }

    #[test]
    fn smoothing_warms_up_on_frames_before_the_segment() {
        assert_eq!(warm_frames(0.0), 0);
        assert_eq!(warm_frames(1.0), 10); // 255 / 2^10 < 0.25
        assert_eq!(warm_frames(0.3), 4);
        let video = packets(60, 25.0, 12);
        let warmed = plan(&video, 0.0, shard(1, 3), 10).unwrap();
        assert_eq!((warmed.first_frame, warmed.warm_frames), (24, 10));
        assert_eq!(warmed.decoded_frames(), 22);
        assert!((warmed.seek.unwrap() - 13.5 / 25.0).abs() < 1e-9);
        // the first segment has nothing before it
        assert_eq!(plan(&video, 0.0, shard(0, 3), 10).unwrap().warm_frames, 0);
    }

    /// Parts of 30000/1001 fps video starting at frames 0, 15, 30: as MKV stores them
    /// (milliseconds, rounded) and as MP4 does (1/30000, but the start rounded to ms).
    fn part(name: &str, first: i64, frames: u64, mp4: bool) -> Part {
        let exact_us = div_round(first as i128 * 1001 * 1_000_000, 30000) as i64;
        let (time_base, start_pts, start_us) = if mp4 {
            let ms = div_round(exact_us as i128, 1000) as i64;
            ((1, 30000), ms * 30, ms * 1000)
        } else {
            let ms = div_round(first as i128 * 1001, 30) as i64;
            ((1, 1000), ms, ms * 1000)
        };
        Part {
            path: PathBuf::from(name),
            frames,
            start_pts,
            time_base,
            start_us,
            frame_rate: (30000, 1001),
            size: (96, 64),
        }
    }

    #[test]
    fn the_join_list_orders_parts_and_lands_every_part_on_its_exact_time() {
        let mkv = [
            part("b.mkv", 15, 15, false),
            part("a.mkv", 0, 15, false),
            part("c.mkv", 30, 9, false),
        ];
        // MKV parts already hold the one-process run's times: no shift (500.5 ms rounds to 501)
        assert_eq!(
            concat_list(&mkv).unwrap(),
            "ffconcat version 1.0\nfile 'a.mkv'\nduration 0.501000\nfile 'b.mkv'\nduration \
             0.500000\nfile 'c.mkv'\n"
        );
        // MP4 parts start at 500 ms: the demuxer moves the second by 0.5 ms to 0.5005 s
        let mp4 = [
            part("a.mp4", 0, 15, true),
            part("b's.mp4", 15, 15, true),
            part("c.mp4", 30, 9, true),
        ];
        assert_eq!(
            concat_list(&mp4).unwrap(),
            "ffconcat version 1.0\nfile 'a.mp4'\nduration 0.500500\nfile 'b'\\''s.mp4'\n\
             duration 0.500500\nfile 'c.mp4'\n"
        );
    }

    #[test]
    fn a_missing_overlapping_or_mismatched_part_is_refused() {
        let gap = [part("a.mkv", 0, 15, false), part("c.mkv", 30, 9, false)];
        let error = concat_list(&gap).unwrap_err();
        assert!(error.contains("frames 15 to 29 are missing"), "{error}");
        let overlap = [part("a.mkv", 0, 20, false), part("b.mkv", 15, 15, false)];
        assert!(concat_list(&overlap).unwrap_err().contains("overlaps"));
        let late = [part("b.mkv", 15, 15, false)];
        assert!(concat_list(&late).unwrap_err().contains("frames 0 to 14"));
        let mut other = part("b.mkv", 15, 15, false);
        other.size = (48, 32);
        let error = concat_list(&[part("a.mkv", 0, 15, false), other]).unwrap_err();
        assert!(error.contains("another frame rate or size"), "{error}");
        assert!(concat_list(&[]).is_err());
    }
}
