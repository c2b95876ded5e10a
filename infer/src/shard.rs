//! Splitting one run over the tasks of a job array (Slurm `--array`, Kubernetes Indexed Jobs,
//! AWS Batch array jobs): `--shard I/N` picks task I of N, `--shard auto[/N]` reads the index
//! (and count) from the scheduler's environment.
//!
//! A file's shard depends only on its relative path, through a hash written here (FNV-1a, 64
//! bits) so it never changes between Rust versions or machines: every file is in exactly one
//! shard, and adding files does not move the others.

use std::path::{Component, Path};
use std::str::FromStr;

use crate::error::{Error, Result};

/// The count of tasks for schedulers that do not export it (Kubernetes, AWS Batch), when
/// `--shard auto` does not give it as `auto/N`.
pub const COUNT_VARIABLE: &str = "ATELIER_SHARD_COUNT";

/// Task `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// `--shard` as given: a fixed `I/N`, or `auto` with an optional count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSpec {
    Fixed(Shard),
    Auto { count: Option<usize> },
}

impl Shard {
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 {
            return Err(Error::Invalid("a shard count must be at least 1".into()));
        }
        if index >= count {
            return Err(Error::Invalid(format!(
                "shard index {index} is not below the count {count} (indices run from 0)"
            )));
        }
        Ok(Self { index, count })
    }

    /// Whether the file at `relative` (its path under the folder it was found in) is this
    /// shard's.
    pub fn contains(&self, relative: &Path) -> bool {
        shard_of(relative, self.count) == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

fn parse_count(text: &str, what: &str) -> Result<usize> {
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| Error::Invalid(format!("{what} `{text}` is not a count of at least 1")))
}

impl FromStr for ShardSpec {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            Error::Invalid(format!(
                "`{text}` is not a shard: use I/N (task I of N, from 0), auto or auto/N"
            ))
        };
        if text == "auto" {
            return Ok(ShardSpec::Auto { count: None });
        }
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let count = count.parse::<usize>().map_err(|_| bad())?;
        if index == "auto" {
            return Ok(ShardSpec::Auto {
                count: Some(Shard::new(0, count)?.count),
            });
        }
        let index = index.parse::<usize>().map_err(|_| bad())?;
        Ok(ShardSpec::Fixed(Shard::new(index, count)?))
    }
}

impl ShardSpec {
    /// The shard this task runs, from the process environment for `auto`.
    pub fn resolve(&self) -> Result<Shard> {
        self.resolve_with(&|name| std::env::var(name).ok())
    }

    /// The shard, reading scheduler variables through `env`: Slurm
    /// (`SLURM_ARRAY_TASK_ID` with `SLURM_ARRAY_TASK_MIN`/`_MAX`/`_STEP` or `_COUNT`),
    /// Kubernetes Indexed Jobs (`JOB_COMPLETION_INDEX`) or AWS Batch
    /// (`AWS_BATCH_JOB_ARRAY_INDEX`), the last two with the count from `auto/N` or
    /// `ATELIER_SHARD_COUNT`.
    pub fn resolve_with(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard> {
        let given = match *self {
            ShardSpec::Fixed(shard) => return Ok(shard),
            ShardSpec::Auto { count } => count,
        };
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let slurm = var("SLURM_ARRAY_TASK_ID");
        let indexed: Vec<(&str, String)> = ["JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX"]
            .into_iter()
            .filter_map(|name| var(name).map(|value| (name, value)))
            .collect();
        let shard = match (slurm, indexed.as_slice()) {
            (Some(id), []) => slurm_shard(&id, &var)?,
            (None, [(name, index)]) => {
                let index = index
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| Error::Invalid(format!("{name}={index} is not a task index")))?;
                let count = match (given, var(COUNT_VARIABLE)) {
                    (Some(count), _) => count,
                    (None, Some(count)) => parse_count(&count, COUNT_VARIABLE)?,
                    (None, None) => {
                        return Err(Error::Invalid(format!(
                            "{name} gives the task index but not the count: use \
                             --shard auto/N or set {COUNT_VARIABLE}"
                        )))
                    }
                };
                Shard::new(index, count).map_err(|e| Error::Invalid(format!("{name}: {e}")))?
            }
            (None, []) => {
                return Err(Error::Invalid(
                    "--shard auto found no job array: none of SLURM_ARRAY_TASK_ID, \
                     JOB_COMPLETION_INDEX or AWS_BATCH_JOB_ARRAY_INDEX is set; use --shard I/N"
                        .into(),
                ))
            }
            _ => {
                return Err(Error::Invalid(
                    "--shard auto found the indices of several job arrays (Slurm, Kubernetes, \
                     AWS Batch); use --shard I/N"
                        .into(),
                ))
            }
        };
        match given {
            Some(count) if count != shard.count => Err(Error::Invalid(format!(
                "--shard auto/{count} does not match the job array's {} tasks",
                shard.count
            ))),
            _ => Ok(shard),
        }
    }
}

/// Slurm: the index is the task id's place in `--array=MIN-MAX[:STEP]`; lists with gaps
/// (`--array=1,4,9`) cannot give dense indices and are refused.
fn slurm_shard(id: &str, var: &dyn Fn(&str) -> Option<String>) -> Result<Shard> {
    let number = |name: &str, text: &str| {
        text.trim()
            .parse::<usize>()
            .map_err(|_| Error::Invalid(format!("{name}={text} is not a number")))
    };
    let id = number("SLURM_ARRAY_TASK_ID", id)?;
    let read = |name: &str| var(name).map(|text| number(name, &text)).transpose();
    let min = read("SLURM_ARRAY_TASK_MIN")?;
    let max = read("SLURM_ARRAY_TASK_MAX")?;
    let step = read("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
    let stated = read("SLURM_ARRAY_TASK_COUNT")?;
    let min = min.unwrap_or(0);
    let spanned = match max {
        Some(max) if max >= min => Some((max - min) / step + 1),
        Some(max) => {
            return Err(Error::Invalid(format!(
                "SLURM_ARRAY_TASK_MAX={max} is below SLURM_ARRAY_TASK_MIN={min}"
            )))
        }
        None => None,
    };
    let count = match (spanned, stated) {
        (Some(spanned), Some(stated)) if spanned != stated => {
            return Err(Error::Invalid(format!(
                "the Slurm array is not a range ({stated} tasks between {min} and {}): \
                 use --array=A-B or --shard I/N",
                max.unwrap_or(min)
            )))
        }
        (Some(count), _) | (None, Some(count)) => count,
        (None, None) => {
            return Err(Error::Invalid(
                "SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_MAX nor \
                 SLURM_ARRAY_TASK_COUNT; use --shard I/N"
                    .into(),
            ))
        }
    };
    if id < min || (id - min) % step != 0 {
        return Err(Error::Invalid(format!(
            "SLURM_ARRAY_TASK_ID={id} is not in the array from {min} in steps of {step}"
        )));
    }
    Shard::new((id - min) / step, count)
        .map_err(|e| Error::Invalid(format!("SLURM_ARRAY_TASK_ID={id}: {e}")))
}

/// FNV-1a, 64 bits: small, fixed forever, and good enough to spread paths evenly.
pub fn fnv1a64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.into_iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// The shard of the file at `relative` among `count`: FNV-1a of its path's components joined
/// by `/` (whatever the platform's separator), modulo `count`.
pub fn shard_of(relative: &Path, count: usize) -> usize {
    let mut bytes = Vec::new();
    for component in relative.components() {
        if let Component::Normal(name) = component {
            if !bytes.is_empty() {
                bytes.push(b'/');
            }
            bytes.extend_from_slice(name.as_encoded_bytes());
        }
    }
    (fnv1a64(bytes) % count.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::PathBuf;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn auto(count: Option<usize>, pairs: &[(&str, &str)]) -> Result<Shard> {
        ShardSpec::Auto { count }.resolve_with(&env(pairs))
    }

    #[test]
    fn fnv1a64_matches_the_published_test_vectors() {
        assert_eq!(fnv1a64(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(*b"foobar"), 0x8594_4171_f739_67e8);
        // pinned: a file never changes shard between builds
        assert_eq!(shard_of(Path::new("sub/frame_0001.png"), 1000), 58);
        assert_eq!(
            shard_of(Path::new("sub/frame_0001.png"), 7),
            shard_of(Path::new("./sub//frame_0001.png"), 7)
        );
    }

    #[test]
    fn every_file_is_in_exactly_one_shard_and_shards_are_even() {
        let files: Vec<PathBuf> = (0..3000)
            .map(|i| PathBuf::from(format!("reel{}/frame_{i:06}.png", i % 7)))
            .collect();
        for count in [1, 2, 3, 8] {
            let shards: Vec<Shard> = (0..count).map(|i| Shard::new(i, count).unwrap()).collect();
            let mut sizes = vec![0usize; count];
            for file in &files {
                let owners: Vec<usize> = shards
                    .iter()
                    .filter(|s| s.contains(file))
                    .map(|s| s.index)
                    .collect();
                assert_eq!(owners.len(), 1, "{} in {owners:?}", file.display());
                sizes[owners[0]] += 1;
            }
            let mean = files.len() / count;
            assert!(
                sizes.iter().all(|&n| n.abs_diff(mean) < mean / 10 + 10),
                "{count}: {sizes:?}"
            );
        }
    }

    #[test]
    fn adding_files_moves_no_other_file() {
        let before: Vec<PathBuf> = (0..500)
            .map(|i| PathBuf::from(format!("a/{i}.jpg")))
            .collect();
        let placed: Vec<usize> = before.iter().map(|f| shard_of(f, 5)).collect();
        let mut after = before.clone();
        after.extend((0..200).map(|i| PathBuf::from(format!("new/{i}.jpg"))));
        after.sort();
        for (file, shard) in before.iter().zip(&placed) {
            assert!(after.contains(file));
            assert_eq!(shard_of(file, 5), *shard);
        }
    }

    #[test]
    fn shard_arguments_parse_and_bad_ones_say_how() {
        assert_eq!(
            "2/5".parse::<ShardSpec>().unwrap(),
            ShardSpec::Fixed(Shard { index: 2, count: 5 })
        );
        assert_eq!(
            "auto".parse::<ShardSpec>().unwrap(),
            ShardSpec::Auto { count: None }
        );
        assert_eq!(
            "auto/8".parse::<ShardSpec>().unwrap(),
            ShardSpec::Auto { count: Some(8) }
        );
        for bad in ["5/5", "1/0", "x/2", "3", "-1/2", "auto/0", "auto/x", ""] {
            assert!(bad.parse::<ShardSpec>().is_err(), "{bad}");
        }
        let error = "5/5".parse::<ShardSpec>().unwrap_err().to_string();
        assert!(error.contains("from 0"), "{error}");
    }

    #[test]
    fn slurm_ranges_steps_and_counts() {
        let range = [
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert_eq!(auto(None, &range).unwrap(), Shard { index: 2, count: 4 });
        assert_eq!(auto(Some(4), &range).unwrap(), Shard { index: 2, count: 4 });
        assert!(auto(Some(3), &range)
            .unwrap_err()
            .to_string()
            .contains("does not match"));
        let stepped = [
            ("SLURM_ARRAY_TASK_ID", "6"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "8"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ];
        assert_eq!(auto(None, &stepped).unwrap(), Shard { index: 3, count: 5 });
        let count_only = [
            ("SLURM_ARRAY_TASK_ID", "0"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        assert_eq!(
            auto(None, &count_only).unwrap(),
            Shard { index: 0, count: 3 }
        );
        // --array=1,4,9: three tasks over a span of nine
        let gaps = [
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "9"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        assert!(auto(None, &gaps)
            .unwrap_err()
            .to_string()
            .contains("not a range"));
        assert!(auto(None, &[("SLURM_ARRAY_TASK_ID", "2")]).is_err());
        assert!(auto(
            None,
            &[
                ("SLURM_ARRAY_TASK_ID", "x"),
                ("SLURM_ARRAY_TASK_COUNT", "2")
            ]
        )
        .is_err());
    }

    #[test]
    fn kubernetes_and_aws_batch_take_the_count_from_the_flag_or_the_variable() {
        let k8s = [("JOB_COMPLETION_INDEX", "4")];
        assert_eq!(auto(Some(6), &k8s).unwrap(), Shard { index: 4, count: 6 });
        let with_count = [("JOB_COMPLETION_INDEX", "4"), (COUNT_VARIABLE, "6")];
        assert_eq!(
            auto(None, &with_count).unwrap(),
            Shard { index: 4, count: 6 }
        );
        assert!(auto(Some(5), &with_count).is_ok(), "the flag wins");
        let error = auto(None, &k8s).unwrap_err().to_string();
        assert!(error.contains(COUNT_VARIABLE), "{error}");
        assert!(auto(Some(4), &k8s).is_err(), "index 4 of 4");
        let batch = [("AWS_BATCH_JOB_ARRAY_INDEX", "0"), (COUNT_VARIABLE, "2")];
        assert_eq!(auto(None, &batch).unwrap(), Shard { index: 0, count: 2 });
    }

    #[test]
    fn no_array_or_two_arrays_are_errors() {
        let error = auto(Some(2), &[]).unwrap_err().to_string();
        assert!(error.contains("no job array"), "{error}");
        let both = [
            ("JOB_COMPLETION_INDEX", "1"),
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
        ];
        assert!(auto(Some(2), &both)
            .unwrap_err()
            .to_string()
            .contains("several"));
        assert_eq!(
            ShardSpec::Fixed(Shard { index: 1, count: 3 })
                .resolve_with(&env(&both))
                .unwrap(),
            Shard { index: 1, count: 3 }
        );
    }
}
