//! Validation isolation: the photos held out of the training folder are never in a training
//! batch. Each photo of the folder is one flat colour, so every crop tells which file it came
//! from; the stream runs several epochs and no crop may be a held-out photo's.

use std::path::{Path, PathBuf};

use models::vgg::{Vgg, VggKind};
use tch::{Device, Kind};
use trainer::{Launch, Overrides};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The colour of photo `i`, distinct per channel so the nearest colour is unambiguous.
fn colour(i: usize) -> [u8; 3] {
    [(20 * i) as u8, (250 - 20 * i) as u8, ((97 * i) % 256) as u8]
}

#[test]
fn held_out_photos_never_reach_a_training_batch() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    let n_photos = 12;
    for i in 0..n_photos {
        let image = image::RgbImage::from_pixel(48, 40, image::Rgb(colour(i)));
        image
            .save(photos.join(format!("photo-{i:02}.png")))
            .unwrap();
    }
    tch::manual_seed(0);
    let vgg_path = dir.path().join("vgg16.safetensors");
    let vgg = Vgg::random(VggKind::Vgg16, Device::Cpu);
    models::file::save_safetensors(&vgg_path, &vgg.named_tensors(), &Default::default()).unwrap();

    let overrides = Overrides {
        style_images: vec![repo().join("assets/styles/swirls.png")],
        data_dir: Some(photos.clone()),
        output: Some(dir.path().join("model.safetensors")),
        loss_net: Some(VggKind::Vgg16),
        loss_weights: Some(vgg_path),
        image_size: Some(32),
        batch_size: Some(3),
        arch: Some("johnson-half".into()),
        ..Overrides::default()
    };
    let mut prepared = trainer::prepare(Launch {
        overrides,
        resume: None,
        force: false,
        device: Device::Cpu,
        threads: Some(1),
        base: None,
    })
    .unwrap();
    // One in ten of 12 photos: one, from the middle of the sorted list.
    assert_eq!(prepared.config.val_holdout, 1);
    assert_eq!(
        prepared.validation_photos,
        [photos.join(format!("photo-{:02}.png", n_photos / 2))]
    );
    assert_eq!(prepared.n_photos, n_photos - 1);
    let held = n_photos / 2;

    let mut seen = vec![0usize; n_photos];
    // Six epochs of 11 photos in batches of 3 (each epoch drops its last two).
    for _ in 0..18 {
        let batch = prepared.stream.next_batch().unwrap();
        let means = batch.images.mean_dim([2, 3].as_slice(), false, Kind::Float);
        for row in 0..means.size()[0] {
            let mean: Vec<f64> = (0..3).map(|c| means.double_value(&[row, c])).collect();
            let nearest = (0..n_photos)
                .min_by(|&a, &b| {
                    let distance = |i: usize| {
                        colour(i)
                            .iter()
                            .zip(&mean)
                            .map(|(&c, m)| (c as f64 - m).powi(2))
                            .sum::<f64>()
                    };
                    distance(a).total_cmp(&distance(b))
                })
                .unwrap();
            seen[nearest] += 1;
        }
    }
    assert_eq!(seen[held], 0, "the held-out photo was trained on: {seen:?}");
    assert_eq!(seen.iter().sum::<usize>(), 54);
    assert_eq!(
        seen.iter().filter(|&&n| n > 0).count(),
        n_photos - 1,
        "{seen:?}"
    );
}
