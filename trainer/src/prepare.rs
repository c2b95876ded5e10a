//! Everything before the first step of a run: the configuration from the recipe (or the
//! checkpoint) and the options given, then every check that can fail on a bad input, then the
//! style images, the loss network, the photo stream and the trainer. All of it takes seconds,
//! so a mistake costs seconds, not a night.

use std::path::Path;

use models::Precision;
use tch::{Device, Tensor};

use crate::checkpoint::Checkpoint;
use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::recipe::{Overrides, DEFAULT_VGG19_WEIGHTS};
use crate::train::{load_loss_net, load_style_image, Trainer};

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
}

/// A run ready for [`crate::run`].
pub struct Prepared {
    pub config: TrainConfig,
    pub precision: Precision,
    pub trainer: Trainer,
    pub stream: datasets::PhotoStream,
    /// The decoded sample image, if the run has one.
    pub sample: Option<Tensor>,
    pub n_photos: usize,
    /// Parts of the photo folder that could not be walked, one line each, for the caller to
    /// show.
    pub photo_warnings: Vec<String>,
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
    } = launch;
    let data_dir = match (&resume, &overrides.data_dir) {
        (Some(checkpoint), _) => checkpoint.config.data_dir.clone(),
        (None, Some(dir)) => dir.clone(),
        (None, None) => return Err(Error::Flags("--data is required".into())),
    };
    let photos = datasets::find_photos(&data_dir)?;
    let n_photos = photos.files.len();
    let config = match &resume {
        Some(checkpoint) => overrides.resumed(&checkpoint.config, n_photos)?,
        None => overrides.fresh(n_photos)?,
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
    let stream = match &resume {
        Some(checkpoint) => {
            datasets::PhotoStream::resume(stream_config, photos.files, checkpoint.data_state)?
        }
        None => datasets::PhotoStream::new(stream_config, photos.files)?,
    };
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let trainer = match &resume {
        Some(checkpoint) => Trainer::from_checkpoint(
            config.clone(),
            checkpoint,
            &style_images,
            vgg,
            device,
            precision,
        )?,
        None => Trainer::new(config.clone(), &style_images, vgg, device, precision)?,
    };
    Ok(Prepared {
        config,
        precision,
        trainer,
        stream,
        sample,
        n_photos,
        photo_warnings: photos.warnings,
    })
}
