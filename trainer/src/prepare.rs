//! Everything before the first step of a run: the configuration from the recipe (or the
//! checkpoint) and the options given, then every check that can fail on a bad input, then the
//! style images, the loss network, the photo stream and the trainer. All of it takes seconds,
//! so a mistake costs seconds, not a night.

use std::path::{Path, PathBuf};

use models::Precision;
use tch::{Device, Tensor};

use crate::checkpoint::Checkpoint;
use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::recipe::{Overrides, DEFAULT_VGG19_WEIGHTS};
use crate::train::{load_loss_net, load_style_image, Trainer};
use crate::validation::{self, Validation, MAX_HOLDOUT, MIN_PHOTOS_FOR_HOLDOUT};

/// What a run starts from.
pub struct Launch {
    /// The options given; on resume they must agree with the checkpoint (see
    /// [`Overrides::resumed`]).
    pub overrides: Overrides,
    /// The checkpoint to continue from, already read.
    pub resume: Option<Checkpoint>,
    /// Replace an existing output model.
    pub force: bool,
    pub device: Device,
    /// CPU threads asked for; the photo stream decodes with as many (at most 8).
    pub threads: Option<usize>,
    /// The model `--extend` names, loaded (a fresh extending run needs it; a resumed one
    /// does not).
    pub base: Option<models::Model>,
}

/// A run ready for [`crate::run`].
pub struct Prepared {
    pub config: TrainConfig,
    pub precision: Precision,
    pub trainer: Trainer,
    pub stream: datasets::PhotoStream,
    /// The decoded sample image, if the run has one.
    pub sample: Option<Tensor>,
    /// Photos trained on (those of the folder less any held out for validation).
    pub n_photos: usize,
    /// Parts of the photo folder that could not be walked, one line each, for the caller to
    /// show.
    pub photo_warnings: Vec<String>,
    /// The validation photos and their yardstick; `None` without any (see `validation_note`).
    pub validation: Option<Validation>,
    /// The validation photos used, in order.
    pub validation_photos: Vec<PathBuf>,
    /// Why the run has no validation, for the caller to show.
    pub validation_note: Option<String>,
}

/// Decoding threads of the photo stream: as many as the threads asked for the network, else the
/// stream's default (the cores, at most 8); between 1 and 8 either way.
pub fn stream_threads(threads: Option<usize>) -> usize {
    threads
        .unwrap_or_else(|| datasets::StreamConfig::default().n_threads)
        .clamp(1, 8)
}

/// Builds the run: configuration, checks (output, checkpoint folder, log folder, weights),
/// style and sample images, loss network, photo stream and trainer.
pub fn prepare(launch: Launch) -> Result<Prepared> {
    let Launch {
        overrides,
        resume,
        force,
        device,
        threads,
        base,
    } = launch;
    let data_dir = match (&resume, &overrides.data_dir) {
        (Some(checkpoint), _) => checkpoint.config.data_dir.clone(),
        (None, Some(dir)) => dir.clone(),
        (None, None) => return Err(Error::Flags("--data is required".into())),
    };
    let photos = datasets::find_photos(&data_dir)?;
    let n_found = photos.files.len();
    let mut config = match &resume {
        Some(checkpoint) => overrides.resumed(&checkpoint.config, n_found)?,
        None => overrides.fresh(n_found)?,
    };
    let base = match (&resume, &config.extend) {
        (None, Some(path)) => {
            let base = base.ok_or_else(|| {
                Error::Flags(format!(
                    "--extend {}: the model is not loaded",
                    path.display()
                ))
            })?;
            extend_config(&mut config, &base)?;
            Some(base)
        }
        _ => None,
    };
    config.validate()?;
    let precision: Precision = config.precision.parse()?;
    precision.check_device(device)?;

    models::file::check_new_output(&config.output, force)?;
    if let Some(dir) = config.checkpoint_path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Write {
                path: dir.to_path_buf(),
                source,
            })?;
        }
    }
    models::file::check_writable(&config.checkpoint_path)?;
    let input = |what: &'static str| {
        move |source| Error::Input {
            what,
            source: Box::new(source),
        }
    };
    let style_images = config
        .style_images
        .iter()
        .map(|path| load_style_image(path, config.style_size).map_err(input("style image")))
        .collect::<Result<Vec<_>>>()?;
    let sample = match &config.sample_image {
        Some(path) => Some(load_style_image(path, None).map_err(input("sample image"))?),
        None => None,
    };
    if config.loss_weights == Path::new(DEFAULT_VGG19_WEIGHTS) && !config.loss_weights.exists() {
        return Err(Error::MissingVggWeights {
            path: config.loss_weights.clone(),
        });
    }
    let vgg = load_loss_net(&config, device).map_err(input("loss network"))?;
    let (train_files, validation_photos, mut validation_note) =
        validation_split(&config, photos.files)?;
    let validation = if validation_photos.is_empty() {
        None
    } else {
        let loss_net = config.loss_net.parse()?;
        match validation::yardstick_weights(loss_net, &config.loss_weights) {
            Some(weights) => {
                let vgg19 = models::vgg::Vgg::load(&weights, models::vgg::VggKind::Vgg19, device)
                    .map_err(|e| input("validation loss network")(e.into()))?;
                let photos = validation_photos
                    .iter()
                    .map(|path| {
                        validation::load_photo(path, config.image_size)
                            .map_err(input("validation photo"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Some(Validation::new(photos, vgg19, &style_images, device)?)
            }
            None => {
                validation_note = Some(format!(
                    "no validation: it measures with the VGG-19 of `make vgg` ({} is missing)",
                    DEFAULT_VGG19_WEIGHTS
                ));
                None
            }
        }
    };
    if let Some(dir) = &config.log_dir {
        std::fs::create_dir_all(dir).map_err(|source| Error::Write {
            path: dir.clone(),
            source,
        })?;
    }

    let stream_config = datasets::StreamConfig {
        image_size: config.image_size,
        batch_size: config.batch_size,
        seed: config.seed,
        n_threads: stream_threads(threads),
        ..Default::default()
    };
    let n_photos = train_files.len();
    let stream = match &resume {
        Some(checkpoint) => {
            datasets::PhotoStream::resume(stream_config, train_files, checkpoint.data_state)?
        }
        None => datasets::PhotoStream::new(stream_config, train_files)?,
    };
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let trainer = match (&resume, &base) {
        (Some(checkpoint), _) => Trainer::from_checkpoint(
            config.clone(),
            checkpoint,
            &style_images,
            vgg,
            device,
            precision,
        )?,
        (None, Some(base)) => {
            Trainer::extending(config.clone(), base, &style_images, vgg, device, precision)?
        }
        (None, None) => Trainer::new(config.clone(), &style_images, vgg, device, precision)?,
    };
    Ok(Prepared {
        config,
        precision,
        trainer,
        stream,
        sample,
        n_photos,
        photo_warnings: photos.warnings,
        validation,
        validation_photos,
        validation_note,
    })
}

/// An extending run takes the base model's architecture (a preset, with its styles) and names
/// its new styles unlike the base's.
fn extend_config(config: &mut TrainConfig, base: &models::Model) -> Result<()> {
    let spec = &base.meta.spec;
    let described = |what: &str| {
        Error::Flags(format!(
            "--extend {}: {what}",
            config.extend.as_deref().unwrap_or(Path::new("")).display()
        ))
    };
    if spec.style_vector_dim().is_some() {
        return Err(described(
            "its norms come from a style vector; extend a network with per-style norms",
        ));
    }
    let preset = models::spec::Preset::ALL
        .into_iter()
        .find(|preset| preset.spec().with_styles(spec.n_styles) == *spec)
        .ok_or_else(|| {
            described("its architecture is none of the presets `atelier train` trains")
        })?;
    config.arch = preset.name().to_string();
    config.extend_base_styles = base.meta.styles.clone();
    config.style_names =
        crate::config::style_names_after(&config.extend_base_styles, &config.style_images);
    Ok(())
}

/// The training folder's photos split into (trained on, validation photos, why there is no
/// validation): the validation photos are those held out of the folder, or at most 8 of the
/// `--val-data` folder, evenly spaced (or the `--val-data` photo); a training photo that is
/// also a validation photo is left out of training.
fn validation_split(
    config: &TrainConfig,
    files: Vec<PathBuf>,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>, Option<String>)> {
    let Some(dir) = &config.val_data else {
        let n_photos = files.len();
        let (train, held) = validation::split(files, config.val_holdout);
        let note = held.is_empty().then(|| {
            if n_photos < MIN_PHOTOS_FOR_HOLDOUT {
                format!(
                    "no validation: {n_photos} photos are too few to hold some out ({MIN_PHOTOS_FOR_HOLDOUT} needed); give --val-data PATH (a photo or a folder)"
                )
            } else {
                "no validation: the checkpoint's run holds no photos out".to_string()
            }
        });
        return Ok((train, held, note));
    };
    // One photo is as good a validation set as a folder of them.
    let found = if dir.is_file() {
        vec![dir.clone()]
    } else {
        datasets::find_photos(dir)?.files
    };
    let n_val = found.len().min(MAX_HOLDOUT);
    let (_, val) = validation::split(found, n_val);
    let same_file = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    let train = files
        .into_iter()
        .filter(|file| !val.iter().any(|v| same_file(file, v)))
        .collect();
    let note = val
        .is_empty()
        .then(|| format!("no validation: {} holds no photos", dir.display()));
    Ok((train, val, note))
}
