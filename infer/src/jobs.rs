//! Turning command-line inputs (files, folders, `-`) into a list of input → output jobs,
//! checked before any work: no output may overwrite an input, no two jobs may share an output.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::image_io::OutputFormat;

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Stdin,
}

/// Where a stylized image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    File(PathBuf),
    Stdout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub source: Source,
    pub target: Target,
    pub format: OutputFormat,
    /// The input's path under the folder it was found in (its file name when given directly):
    /// what `--shard` hashes, the same wherever the folder is mounted.
    pub relative: PathBuf,
}

impl Source {
    pub fn display(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Stdin => "-".into(),
        }
    }
}

impl Target {
    pub fn display(&self) -> String {
        match self {
            Target::File(path) => path.display().to_string(),
            Target::Stdout => "-".into(),
        }
    }
}

/// How outputs are named.
#[derive(Debug, Clone, Default)]
pub struct Naming {
    /// `-o`: a file (one input), a folder (mirrors folders, keeps names) or `-` (stdout).
    pub output: Option<PathBuf>,
    /// Forces the output format (and extension); otherwise taken from the output name or
    /// the input's extension.
    pub format: Option<OutputFormat>,
    /// Appended to outputs written beside their inputs: `<stem>_<label>.<ext>`.
    pub label: String,
}

/// Expands inputs (files, folders searched recursively for images, `-`) into jobs.
pub fn plan(inputs: &[PathBuf], naming: &Naming) -> Result<Vec<Job>> {
    if inputs.is_empty() {
        return Err(Error::Invalid("no input given".into()));
    }
    let output = naming.output.as_deref();
    if inputs
        .iter()
        .filter(|p| p.as_path() == Path::new("-"))
        .count()
        > 1
    {
        return Err(Error::Invalid("`-` (stdin) can be given only once".into()));
    }
    let to_stdout = output == Some(Path::new("-"));
    let single_file = inputs.len() == 1 && !inputs[0].is_dir();
    if to_stdout && !single_file {
        return Err(Error::Invalid(
            "`-o -` (stdout) takes exactly one input image".into(),
        ));
    }
    // `-o` names a file only for one input file, when it has an image extension and is not a
    // folder already; otherwise it is a folder.
    let output_file = match output {
        Some(path)
            if single_file
                && !to_stdout
                && !path.is_dir()
                && OutputFormat::from_path(path).is_ok() =>
        {
            Some(path.to_path_buf())
        }
        _ => None,
    };
    if let (Some(path), true) = (output, single_file) {
        if output_file.is_none() && !to_stdout && !path.is_dir() && path.extension().is_some() {
            OutputFormat::from_path(path)?;
        }
    }
    if let Some(path) = output.filter(|p| !to_stdout && !single_file && !p.is_dir()) {
        if OutputFormat::from_path(path).is_ok() {
            return Err(Error::Invalid(format!(
                "-o {} names an image file, but the inputs are several images; give a folder",
                path.display()
            )));
        }
    }
    let out_dir = match output {
        Some(path) if !to_stdout && output_file.is_none() => Some(path.to_path_buf()),
        _ => None,
    };

    let mut jobs = Vec::new();
    for input in inputs {
        if input == Path::new("-") {
            let target = match &output_file {
                Some(path) => Target::File(path.clone()),
                None if out_dir.is_none() => Target::Stdout,
                None => {
                    return Err(Error::Invalid(
                        "stdin input needs `-o FILE` or `-o -`, not a folder".into(),
                    ))
                }
            };
            let format = naming.format.map(Ok).unwrap_or_else(|| match &target {
                Target::File(path) => OutputFormat::from_path(path),
                Target::Stdout => Ok(OutputFormat::Png),
            })?;
            jobs.push(Job {
                source: Source::Stdin,
                target,
                format,
                relative: PathBuf::from("-"),
            });
        } else if input.is_dir() {
            for file in images_under(input)? {
                let relative = file.strip_prefix(input).unwrap_or(&file).to_path_buf();
                let target = match &out_dir {
                    Some(dir) => with_format_extension(dir.join(&relative), naming.format),
                    None => beside(&file, naming),
                };
                jobs.push(job_for(file, target, relative, naming)?);
            }
        } else if input.is_file() {
            let target = if to_stdout {
                Target::Stdout
            } else if let Some(path) = &output_file {
                Target::File(path.clone())
            } else if let Some(dir) = &out_dir {
                let name = input.file_name().map(PathBuf::from).unwrap_or_default();
                Target::File(with_format_extension(dir.join(name), naming.format))
            } else {
                Target::File(beside(input, naming))
            };
            let relative = input.file_name().map(PathBuf::from).unwrap_or_default();
            let job = match target {
                Target::Stdout => Job {
                    source: Source::File(input.clone()),
                    target,
                    format: naming.format.unwrap_or(OutputFormat::Png),
                    relative,
                },
                Target::File(path) => job_for(input.clone(), path, relative, naming)?,
            };
            jobs.push(job);
        } else {
            return Err(Error::Invalid(format!(
                "{}: no such file or folder",
                input.display()
            )));
        }
    }
    check_outputs(&jobs)?;
    Ok(jobs)
}

fn job_for(input: PathBuf, target: PathBuf, relative: PathBuf, naming: &Naming) -> Result<Job> {
    let format = match naming.format {
        Some(format) => format,
        None => OutputFormat::from_path(&target)?,
    };
    Ok(Job {
        source: Source::File(input),
        target: Target::File(target),
        format,
        relative,
    })
}

/// Splits `jobs` into those still to do and those whose output file exists already (outputs
/// are written atomically, so an existing one is complete): what `--skip-existing` runs and
/// reports.
pub fn split_existing(jobs: Vec<Job>) -> (Vec<Job>, Vec<Job>) {
    jobs.into_iter()
        .partition(|job| !matches!(&job.target, Target::File(path) if path.is_file()))
}

/// `<dir>/<stem>_<label>.<ext>`, the extension from `--format` or the input's.
fn beside(input: &Path, naming: &Naming) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = match naming.format {
        Some(format) => format.extension().to_string(),
        // Inputs in formats we cannot write (or without extension) come out as PNG.
        None => input
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .filter(|e| OutputFormat::from_extension(e).is_some())
            .unwrap_or_else(|| "png".into()),
    };
    input.with_file_name(format!("{stem}_{}.{ext}", naming.label))
}

fn with_format_extension(path: PathBuf, format: Option<OutputFormat>) -> PathBuf {
    match format {
        Some(format) => path.with_extension(format.extension()),
        None => path,
    }
}

/// Image files under `dir`, recursively, sorted, skipping hidden files (our temporaries).
fn images_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| Error::Read {
            path: e.path().unwrap_or(dir).to_path_buf(),
            source: e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("filesystem loop")),
        })?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if entry.file_type().is_file()
            && !hidden
            && models::pixels::has_image_extension(entry.path())
        {
            files.push(entry.into_path());
        }
    }
    Ok(files)
}

/// No output may be an input, and no two jobs may write the same file.
fn check_outputs(jobs: &[Job]) -> Result<()> {
    let key = |path: &Path| std::fs::canonicalize(path).unwrap_or_else(|_| absolute(path));
    let inputs: HashSet<PathBuf> = jobs
        .iter()
        .filter_map(|job| match &job.source {
            Source::File(path) => Some(key(path)),
            Source::Stdin => None,
        })
        .collect();
    let mut outputs = HashSet::new();
    for job in jobs {
        let Target::File(path) = &job.target else {
            continue;
        };
        let resolved = match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) if !parent.as_os_str().is_empty() && parent.exists() => {
                key(parent).join(name)
            }
            _ => key(path),
        };
        if inputs.contains(&resolved) {
            return Err(Error::Invalid(format!(
                "{} would overwrite an input; choose another -o",
                path.display()
            )));
        }
        if !outputs.insert(resolved) {
            return Err(Error::Invalid(format!(
                "two inputs would both be written to {}",
                path.display()
            )));
        }
    }
    Ok(())
}

fn absolute(path: &Path) -> PathBuf {
    std::env::current_dir()
        .map(|dir| dir.join(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming(output: Option<&Path>) -> Naming {
        Naming {
            output: output.map(Path::to_path_buf),
            format: None,
            label: "mosaic".into(),
        }
    }

    #[test]
    fn names_outputs_beside_inputs_in_folders_and_refuses_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let photos = dir.path().join("photos");
        std::fs::create_dir_all(photos.join("sub")).unwrap();
        for name in ["a.png", "sub/b.jpg", "notes.txt", ".hidden.png"] {
            std::fs::write(photos.join(name), b"x").unwrap();
        }
        let jobs = plan(&[photos.join("a.png")], &naming(None)).unwrap();
        assert_eq!(jobs[0].target, Target::File(photos.join("a_mosaic.png")));

        let out = dir.path().join("out");
        let jobs = plan(std::slice::from_ref(&photos), &naming(Some(&out))).unwrap();
        let targets: Vec<_> = jobs.iter().map(|j| j.target.clone()).collect();
        assert_eq!(
            targets,
            vec![
                Target::File(out.join("a.png")),
                Target::File(out.join("sub/b.jpg"))
            ]
        );
        assert_eq!(jobs[1].format, OutputFormat::Jpeg);

        assert!(plan(std::slice::from_ref(&photos), &naming(Some(&photos))).is_err());
        let jobs = plan(&[photos.join("a.png")], &naming(Some(&out.join("x.webp")))).unwrap();
        assert_eq!(jobs[0].format, OutputFormat::Webp);
        assert!(plan(&[photos.join("a.png")], &naming(Some(&out.join("x.gif")))).is_err());
        assert!(plan(&[photos.join("missing.png")], &naming(None)).is_err());
        let two = [photos.join("a.png"), photos.join("sub/b.jpg")];
        assert!(plan(&two, &naming(Some(&out.join("x.png")))).is_err());
        std::fs::write(photos.join("scan.gif"), b"x").unwrap();
        let jobs = plan(&[photos.join("scan.gif")], &naming(None)).unwrap();
        assert_eq!(jobs[0].target, Target::File(photos.join("scan_mosaic.png")));
    }
}
