//! The training loop around the trainer's step: the photo stream, logging steps (losses read
//! back, TensorBoard scalars, the caller's events), sample images, checkpoints on their cadence
//! and a clean stop on a signal, and the model written at the end.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tch::Tensor;

use crate::error::{Error, Result};
use crate::events::EventWriter;
use crate::samples::write_samples;
use crate::state::{LossValues, Trainer};
use crate::validation::{ValLosses, Validation};

/// What the loop reports to its caller (progress bar, JSON log).
#[derive(Debug)]
pub enum Event<'a> {
    /// Training starts (or resumes) at `step` of `n_steps`.
    Started { step: u64, n_steps: u64 },
    /// A step finished (no losses read: cheap, every step).
    Stepped { step: u64 },
    /// A logging step: losses read back.
    Logged(&'a StepReport),
    /// A checkpoint was written.
    Checkpointed { step: u64, path: &'a Path },
    /// Sample images were written.
    Sampled { step: u64, paths: &'a [PathBuf] },
    /// Something worth a line (skipped photos).
    Warning(String),
}

/// The numbers of one logging step.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// Steps done (1-based step number of the step just finished).
    pub step: u64,
    pub n_steps: u64,
    pub epoch: u64,
    pub lr: f64,
    pub images_per_sec: f64,
    pub losses: LossValues,
    pub style_taps: Vec<String>,
    pub loss_scale: f64,
    /// The yardstick's losses on the validation photos, on validation steps.
    pub validation: Option<ValLosses>,
}

impl StepReport {
    /// One JSON object (the `--log-json` line).
    pub fn to_json(&self) -> serde_json::Value {
        let style: serde_json::Map<String, serde_json::Value> = self
            .style_taps
            .iter()
            .zip(&self.losses.style_layers)
            .map(|(tap, v)| (tap.clone(), serde_json::json!(v)))
            .collect();
        let mut line = serde_json::json!({
            "step": self.step,
            "n_steps": self.n_steps,
            "epoch": self.epoch,
            "lr": self.lr,
            "images_per_sec": self.images_per_sec,
            "content": self.losses.content,
            "style": self.losses.style,
            "style_layers": style,
            "tv": self.losses.tv,
            "total": self.losses.total,
        });
        if let (Some(val), Some(object)) = (&self.validation, line.as_object_mut()) {
            object.insert(
                "val".into(),
                serde_json::json!({
                    "content": val.content,
                    "style": val.style,
                    "tv": val.tv,
                    "total": val.total,
                    "photos": val.n_photos,
                }),
            );
        }
        line
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// All steps done, model written.
    Finished,
    /// Stopped by a signal after saving a checkpoint at `step`.
    Interrupted {
        signal: usize,
        step: u64,
        checkpoint: PathBuf,
    },
}

/// Runs the loop to `config.n_steps`: checkpoints, samples, validation, TensorBoard, and a
/// clean stop when `stop` holds a signal number (checked between steps). Writes the model at
/// the end.
pub fn run(
    trainer: &mut Trainer,
    stream: &mut datasets::PhotoStream,
    sample: Option<&Tensor>,
    validation: Option<&Validation>,
    stop: &AtomicUsize,
    observe: &mut dyn FnMut(Event),
) -> Result<Outcome> {
    let config = trainer.config.clone();
    let style_taps = config.style_taps.clone();
    let mut events = match &config.log_dir {
        Some(dir) => Some(EventWriter::create(dir)?),
        None => None,
    };
    observe(Event::Started {
        step: trainer.step,
        n_steps: config.n_steps,
    });
    let cadence = Cadence {
        n_steps: config.n_steps,
        log_every: config.log_every,
        checkpoint_every: config.checkpoint_every,
        sample_every: sample.map(|_| config.sample_every),
        val_every: validation.map(|_| config.val_every),
    };
    let mut since_log = (Instant::now(), 0u64);
    while trainer.step < config.n_steps {
        let batch = stream.next_batch()?;
        for skipped in &batch.skipped {
            observe(Event::Warning(skipped.to_string()));
        }
        let epoch = batch.epoch;
        let images = if trainer.device().is_cuda() {
            // Pinned memory lets the copy overlap with the previous step's kernels.
            batch.images.pin_memory(trainer.device())
        } else {
            batch.images
        };
        let lr = config.lr_at(trainer.step);
        let losses = trainer.step(&images)?;
        let step = trainer.step;
        since_log.1 += 1;
        observe(Event::Stepped { step });

        let signal = stop.load(Ordering::SeqCst);
        let due = cadence.after(step, signal != 0);
        if due.losses {
            let values = losses.read()?;
            if let Some(term) = values.non_finite_term(&style_taps) {
                return Err(Error::NonFinite { term, step });
            }
            let elapsed = since_log.0.elapsed().as_secs_f64();
            let validated = match validation.filter(|_| due.validate) {
                Some(validation) => Some(validation.run(trainer)?),
                None => None,
            };
            let report = StepReport {
                step,
                n_steps: config.n_steps,
                epoch,
                lr,
                images_per_sec: (since_log.1 * config.batch_size as u64) as f64 / elapsed.max(1e-9),
                losses: values,
                style_taps: style_taps.clone(),
                loss_scale: trainer.loss_scale(),
                validation: validated.as_ref().map(|v| v.losses.clone()),
            };
            if let Some(writer) = &mut events {
                writer.scalars(step, &scalar_tags(&report))?;
                for (style, grid) in validated.iter().flat_map(|v| &v.grids) {
                    write_grid(writer, step, style, grid)?;
                }
            }
            // Validation time is not training time.
            since_log = (Instant::now(), 0);
            observe(Event::Logged(&report));
        }
        if due.sample {
            if let Some(image) = sample {
                let paths = write_samples(trainer, image, step, events.as_mut())?;
                observe(Event::Sampled {
                    step,
                    paths: &paths,
                });
            }
        }
        if due.checkpoint {
            if !trainer.weights_are_finite()? {
                return Err(Error::NonFinite {
                    term: "weights".into(),
                    step,
                });
            }
            trainer
                .checkpoint(stream.state())
                .save(&config.checkpoint_path)?;
            observe(Event::Checkpointed {
                step,
                path: &config.checkpoint_path,
            });
        }
        if due.stop {
            return Ok(Outcome::Interrupted {
                signal,
                step,
                checkpoint: config.checkpoint_path.clone(),
            });
        }
    }
    trainer.save_model(&config.output, stream.n_files())?;
    Ok(Outcome::Finished)
}

/// When a run logs, samples and checkpoints.
#[derive(Debug, Clone, Copy)]
struct Cadence {
    n_steps: u64,
    log_every: u64,
    checkpoint_every: u64,
    /// `None` without a sample image.
    sample_every: Option<u64>,
    /// `None` without validation photos.
    val_every: Option<u64>,
}

/// What the end of one step calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Due {
    /// Read the losses back (and check them): logging, and before a sample or checkpoint.
    losses: bool,
    sample: bool,
    /// Measure the validation photos (on a logging step).
    validate: bool,
    checkpoint: bool,
    /// Return as interrupted after the checkpoint (a signal before the last step).
    stop: bool,
}

impl Cadence {
    /// After step `step` (1-based) and with a stop signal received or not. The last step
    /// samples and checkpoints; a signal checkpoints and stops, unless the run is done anyway.
    fn after(&self, step: u64, signalled: bool) -> Due {
        let last = step == self.n_steps;
        let checkpoint = step.is_multiple_of(self.checkpoint_every) || last;
        let sample = self
            .sample_every
            .is_some_and(|every| step.is_multiple_of(every) || last);
        let validate = self
            .val_every
            .is_some_and(|every| step.is_multiple_of(every) || last);
        Due {
            losses: step.is_multiple_of(self.log_every)
                || checkpoint
                || sample
                || validate
                || signalled,
            sample,
            validate,
            checkpoint: checkpoint || signalled,
            stop: signalled && !last,
        }
    }
}

fn scalar_tags(report: &StepReport) -> Vec<(String, f64)> {
    let losses = &report.losses;
    let mut tags = vec![
        ("loss/content".to_string(), losses.content),
        ("loss/style".to_string(), losses.style),
        ("loss/tv".to_string(), losses.tv),
        ("loss/total".to_string(), losses.total),
    ];
    for (tap, value) in report.style_taps.iter().zip(&losses.style_layers) {
        tags.push((format!("loss/style/{tap}"), *value));
    }
    if let Some(val) = &report.validation {
        tags.push(("val/content".to_string(), val.content));
        tags.push(("val/style".to_string(), val.style));
        tags.push(("val/tv".to_string(), val.tv));
        tags.push(("val/total".to_string(), val.total));
    }
    tags.push(("train/lr".to_string(), report.lr));
    tags.push(("train/images_per_sec".to_string(), report.images_per_sec));
    tags
}

/// A validation grid (`[3, H, W]`, 8-bit values) as the PNG image summary `val/<style>`.
fn write_grid(writer: &mut EventWriter, step: u64, style: &str, grid: &Tensor) -> Result<()> {
    let rgb = models::pixels::tensor_to_image(grid)?;
    let png = crate::samples::encode_png(&rgb).map_err(|reason| Error::Image {
        path: PathBuf::from(format!("val/{style}")),
        reason,
    })?;
    writer.png_image(
        step,
        &format!("val/{style}"),
        (rgb.width(), rgb.height()),
        &png,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CADENCE: Cadence = Cadence {
        n_steps: 50,
        log_every: 10,
        checkpoint_every: 25,
        sample_every: Some(20),
        val_every: Some(15),
    };

    /// The steps of 1..=n_steps at which `what` holds.
    fn steps(cadence: Cadence, what: impl Fn(Due) -> bool) -> Vec<u64> {
        (1..=cadence.n_steps)
            .filter(|&step| what(cadence.after(step, false)))
            .collect()
    }

    #[test]
    fn logs_samples_and_checkpoints_on_their_cadence_and_at_the_end() {
        assert_eq!(
            steps(CADENCE, |due| due.losses),
            [10, 15, 20, 25, 30, 40, 45, 50]
        );
        assert_eq!(steps(CADENCE, |due| due.sample), [20, 40, 50]);
        assert_eq!(steps(CADENCE, |due| due.checkpoint), [25, 50]);
        assert_eq!(steps(CADENCE, |due| due.validate), [15, 30, 45, 50]);
        assert!(steps(CADENCE, |due| due.validate && !due.losses).is_empty());
        assert_eq!(steps(CADENCE, |due| due.stop), [] as [u64; 0]);
        let unsampled = Cadence {
            sample_every: None,
            val_every: None,
            ..CADENCE
        };
        assert_eq!(steps(unsampled, |due| due.sample), [] as [u64; 0]);
        assert_eq!(steps(unsampled, |due| due.validate), [] as [u64; 0]);
        assert_eq!(steps(unsampled, |due| due.losses), [10, 20, 25, 30, 40, 50]);
    }

    #[test]
    fn a_signal_checkpoints_and_stops_unless_the_run_is_done() {
        let due = CADENCE.after(7, true);
        assert_eq!(
            due,
            Due {
                losses: true,
                sample: false,
                validate: false,
                checkpoint: true,
                stop: true
            }
        );
        // at the last step the run finishes (and writes its model) instead
        let last = CADENCE.after(50, true);
        assert!(last.checkpoint && last.sample && !last.stop);
    }
}
