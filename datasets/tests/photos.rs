//! The datasets crate on real files: discovery in messy folder trees, decoding of every colour
//! type and orientation through the stream, skipping of broken files, and reproducibility.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use common::*;
use datasets::{find_photos, Error, PhotoStream, StreamState};
use image::GenericImageView;

// ---- discovery ----

#[test]
fn finds_photos_in_nested_folders_case_insensitively_and_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    save_gray(8, 8, &root.join("b/deeper/still/one.PNG"));
    save_rgb(&gradient(8, 8, 0), &root.join("a.JPG"));
    save_rgb(&gradient(8, 8, 0), &root.join("b/two.jpeg"));
    save_rgb(&gradient(8, 8, 0), &root.join("c.TiF"));
    save_rgb(&gradient(8, 8, 0), &root.join("d.bmp"));
    save_rgb(&gradient(8, 8, 0), &root.join("e.webp"));
    fs::write(root.join("notes.txt"), "not a photo").unwrap();
    fs::write(root.join("b/backup.jpg.bak"), "not a photo").unwrap();
    fs::write(root.join("._a.JPG"), "macOS resource fork").unwrap();
    save_rgb(&gradient(8, 8, 0), &root.join(".thumbnails/t.png"));

    let found = find_photos(root).unwrap();
    let names: Vec<PathBuf> = found
        .files
        .iter()
        .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
        .collect();
    let expected: Vec<PathBuf> = [
        "a.JPG",
        "b/deeper/still/one.PNG",
        "b/two.jpeg",
        "c.TiF",
        "d.bmp",
        "e.webp",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(names, expected);
    assert!(found.warnings.is_empty(), "{:?}", found.warnings);
}

#[test]
fn symlink_loops_and_dangling_links_are_warnings_not_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    save_rgb(&gradient(8, 8, 0), &root.join("inner/photo.png"));
    symlink(root, root.join("inner/loop")).unwrap(); // back to an ancestor
    symlink(root.join("missing.jpg"), root.join("dangling.jpg")).unwrap();

    let found = find_photos(root).unwrap();
    assert_eq!(found.files, vec![root.join("inner/photo.png")]);
    assert!(
        found.warnings.iter().any(|w| w.contains("loop")),
        "{:?}",
        found.warnings
    );
    assert!(
        found.warnings.iter().any(|w| w.contains("dangling.jpg")),
        "{:?}",
        found.warnings
    );
}

#[test]
fn missing_empty_or_photo_less_folders_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    assert!(matches!(
        find_photos(&root.join("nope")),
        Err(Error::MissingFolder { .. })
    ));
    assert!(matches!(find_photos(root), Err(Error::NoPhotos { .. })));
    fs::create_dir(root.join("empty")).unwrap();
    fs::write(root.join("readme.md"), "hello").unwrap();
    let error = find_photos(root).unwrap_err();
    assert!(matches!(error, Error::NoPhotos { .. }));
    assert!(error.to_string().contains("jpg, jpeg, png"), "{error}");
    assert!(matches!(
        find_photos(&root.join("readme.md")),
        Err(Error::NotAFolder { .. })
    ));
}

// ---- decoding ----

#[test]
fn exif_orientation_six_turns_a_40x20_jpeg_into_20x40() {
    // Left half red, right half blue; orientation 6 means "rotate 90 degrees clockwise to view".
    let image = image::RgbImage::from_fn(40, 20, |x, _| {
        if x < 20 {
            image::Rgb([255, 0, 0])
        } else {
            image::Rgb([0, 0, 255])
        }
    });
    let plain = jpeg_bytes(&image);
    assert_eq!(
        models::pixels::decode(&plain).unwrap().dimensions(),
        (40, 20)
    );
    let rotated = models::pixels::decode(&with_exif_orientation(&plain, 6)).unwrap();
    assert_eq!(rotated.dimensions(), (20, 40));
    let rgb = rotated.to_rgb8();
    let top = rgb.get_pixel(10, 5);
    let bottom = rgb.get_pixel(10, 34);
    assert!(
        top[0] > 200 && top[2] < 60,
        "top should be red, got {top:?}"
    );
    assert!(
        bottom[2] > 200 && bottom[0] < 60,
        "bottom should be blue, got {bottom:?}"
    );
}

#[test]
fn cmyk_jpeg_decodes_to_the_right_rgb() {
    // tests/data/cmyk.jpg: 32x32, written by Pillow 13 (libjpeg, Adobe APP14 marker, inverted
    // CMYK as Photoshop writes it) from quadrants of pure CMYK: white (0,0,0,0), cyan
    // (255,0,0,0), red = magenta + yellow (0,255,255,0), black (0,0,0,255). Pillow reads it
    // back as exactly white, cyan, red, black.
    let bytes = fs::read(fixture("cmyk.jpg")).unwrap();
    let image = models::pixels::decode(&bytes).unwrap();
    assert_eq!(image.dimensions(), (32, 32));
    let rgb = image.to_rgb8();
    let expected = [
        ((8, 8), [255, 255, 255]),
        ((24, 8), [0, 255, 255]),
        ((8, 24), [255, 0, 0]),
        ((24, 24), [0, 0, 0]),
    ];
    for ((x, y), want) in expected {
        let got = rgb.get_pixel(x, y).0;
        let error: i32 = got
            .iter()
            .zip(want)
            .map(|(&g, w)| (g as i32 - w).abs())
            .max()
            .unwrap();
        assert!(
            error <= 8,
            "pixel ({x}, {y}): got {got:?}, expected {want:?}"
        );
    }
}

#[test]
fn every_colour_type_and_orientation_comes_out_as_full_rgb_batches() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    save_gray(70, 50, &root.join("gray.png"));
    save_rgba(50, 70, &root.join("alpha.png"));
    save_rgb16(64, 64, &root.join("deep16.png"));
    fs::copy(fixture("cmyk.jpg"), root.join("cmyk.jpg")).unwrap();
    let tall = jpeg_bytes(&gradient(80, 40, 30));
    fs::write(root.join("rotated.jpg"), with_exif_orientation(&tall, 6)).unwrap();
    copy_asset("rocket.jpg", &root.join("rocket.jpg"));

    let files = find_photos(root).unwrap().files;
    assert_eq!(files.len(), 6);
    let mut stream = PhotoStream::new(config(32, 6, 1), files).unwrap();
    let batch = stream.next_batch().unwrap();
    assert_eq!(batch.images.size(), [6, 3, 32, 32]);
    assert_eq!(batch.images.kind(), tch::Kind::Float);
    assert_eq!(batch.images.device(), tch::Device::Cpu);
    assert!(batch.skipped.is_empty(), "{:?}", batch.skipped);
    assert!(batch.images.min().double_value(&[]) >= 0.0);
    assert!(batch.images.max().double_value(&[]) <= 255.0);
}

/// The one batch of a stream over a single file, at its own size when `size` is its shorter side.
fn only_batch(path: &std::path::Path, size: i64) -> tch::Tensor {
    let mut stream = PhotoStream::new(config(size, 1, 0), vec![path.to_path_buf()]).unwrap();
    stream.next_batch().unwrap().images.get(0)
}

#[test]
fn alpha_is_dropped_and_cmyk_is_converted_in_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    // Blue is 90 everywhere whatever the alpha: dropped, not premultiplied.
    save_rgba(64, 64, &dir.path().join("alpha.png"));
    let blue = only_batch(&dir.path().join("alpha.png"), 32).get(2);
    assert!((blue.min().double_value(&[]) - 90.0).abs() < 0.5);
    assert!((blue.max().double_value(&[]) - 90.0).abs() < 0.5);
    // 32x32 at size 32: neither resized nor cropped, so the quadrants stay put.
    let cmyk = only_batch(&fixture("cmyk.jpg"), 32);
    let pixel =
        |x: i64, y: i64| -> Vec<f32> { Vec::try_from(cmyk.select(2, x).select(1, y)).unwrap() };
    let expected = [
        ((8, 8), [255.0, 255.0, 255.0]),
        ((24, 8), [0.0, 255.0, 255.0]),
        ((8, 24), [255.0, 0.0, 0.0]),
        ((24, 24), [0.0, 0.0, 0.0]),
    ];
    for ((x, y), want) in expected {
        let got = pixel(x, y);
        assert!(
            got.iter().zip(want).all(|(g, w)| (g - w).abs() <= 8.0),
            "({x}, {y}): {got:?} vs {want:?}"
        );
    }
}

#[test]
fn grey_stays_grey_and_sixteen_bits_keep_their_scale() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    save_gray(64, 64, &root.join("gray.png"));
    let files = find_photos(root).unwrap().files;
    let batch = PhotoStream::new(config(32, 1, 0), files)
        .unwrap()
        .next_batch()
        .unwrap();
    let image = batch.images.get(0);
    assert!(image.get(0).equal(&image.get(1)) && image.get(1).equal(&image.get(2)));

    let dir = tempfile::tempdir().unwrap();
    // Blue 40000/65535 of full scale everywhere: 155.6 on the 0-255 scale, not rounded to 8 bits.
    save_rgb16(64, 64, &dir.path().join("deep.png"));
    let files = find_photos(dir.path()).unwrap().files;
    let batch = PhotoStream::new(config(32, 1, 0), files)
        .unwrap()
        .next_batch()
        .unwrap();
    let blue = batch
        .images
        .get(0)
        .get(2)
        .mean(tch::Kind::Float)
        .double_value(&[]);
    assert!(
        (blue - 40000.0 / 65535.0 * 255.0).abs() < 0.05,
        "blue {blue}"
    );
}

// ---- skipping ----

/// Four good photos (two sample photos, two generated), and four bad files: a truncated
/// JPEG, text named .jpg, an image too small for the crop, and an empty .png.
fn folder_with_bad_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    copy_asset("chelsea.png", &root.join("cats/chelsea.png"));
    copy_asset("camera.png", &root.join("camera.PNG"));
    save_rgb(&gradient(90, 60, 10), &root.join("gen/a.png"));
    save_rgb(&gradient(60, 90, 200), &root.join("gen/b.jpg"));
    let rocket = fs::read(assets_photo("rocket.jpg")).unwrap();
    fs::write(root.join("truncated.jpg"), &rocket[..rocket.len() / 2]).unwrap();
    fs::write(root.join("text.jpg"), "this is not a jpeg\n").unwrap();
    save_rgb(&gradient(40, 12, 0), &root.join("tiny.png"));
    fs::write(root.join("empty.png"), b"").unwrap();
    dir
}

#[test]
fn bad_files_are_skipped_once_each_with_a_reason_and_batches_stay_full() {
    let dir = folder_with_bad_files();
    let files = find_photos(dir.path()).unwrap().files;
    assert_eq!(files.len(), 8);
    let mut stream = PhotoStream::new(config(32, 2, 3), files).unwrap();
    let mut warnings = Vec::new();
    // 4 usable photos, batch 2: 2 batches per epoch; 3 epochs, then the 4th starts.
    for _ in 0..6 {
        let batch = stream.next_batch().unwrap();
        assert_eq!(batch.images.size(), [2, 3, 32, 32]);
        warnings.extend(batch.skipped.iter().map(|s| s.to_string()));
    }
    assert_eq!(stream.next_batch().unwrap().epoch, 3);
    assert_eq!(stream.skipped(), 4);
    warnings.sort();
    assert_eq!(warnings.len(), 4, "{warnings:#?}");
    for (warning, name) in
        warnings
            .iter()
            .zip(["empty.png", "text.jpg", "tiny.png", "truncated.jpg"])
    {
        assert!(
            warning.starts_with("skipping ") && warning.contains(name),
            "{warning}"
        );
    }
    assert!(
        warnings[2].contains("40x12 is too small"),
        "{}",
        warnings[2]
    );
    assert!(warnings[3].contains("truncated"), "{}", warnings[3]);
}

#[test]
fn a_folder_of_only_broken_files_is_an_error_not_an_endless_loop() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let rocket = fs::read(assets_photo("rocket.jpg")).unwrap();
    fs::write(root.join("cut.jpg"), &rocket[..4000]).unwrap();
    fs::write(root.join("text.JPG"), "plain text").unwrap();
    let files = find_photos(root).unwrap().files;
    let mut stream = PhotoStream::new(config(32, 1, 0), files).unwrap();
    let error = stream.next_batch().unwrap_err();
    assert!(
        matches!(error, Error::NoUsablePhotos { total: 2, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("cut.jpg"), "{error}");
    // The stream stays stopped.
    assert!(stream.next_batch().is_err());
}

#[test]
fn fewer_usable_photos_than_a_batch_is_an_error() {
    let dir = folder_with_bad_files();
    let files = find_photos(dir.path()).unwrap().files;
    let mut stream = PhotoStream::new(config(32, 5, 0), files.clone()).unwrap();
    let error = stream.next_batch().unwrap_err();
    assert!(
        matches!(
            error,
            Error::TooFewUsablePhotos {
                usable: 4,
                total: 8,
                batch_size: 5
            }
        ),
        "{error}"
    );
    assert!(matches!(
        PhotoStream::new(config(32, 9, 0), files),
        Err(Error::TooFewPhotos {
            found: 8,
            batch_size: 9
        })
    ));
}

#[test]
fn bad_settings_and_states_are_refused() {
    let files = vec![assets_photo("astronaut.png")];
    let mut bad = config(32, 1, 0);
    bad.n_threads = 0;
    assert!(matches!(
        PhotoStream::new(bad, files.clone()),
        Err(Error::InvalidConfig(_))
    ));
    let mut bad = config(32, 1, 0);
    bad.image_size = 0;
    assert!(matches!(
        PhotoStream::new(bad, files.clone()),
        Err(Error::InvalidConfig(_))
    ));
    let state = StreamState {
        epoch: 0,
        position: 2,
    };
    assert!(matches!(
        PhotoStream::resume(config(32, 1, 0), files, state),
        Err(Error::InvalidState { .. })
    ));
}

// ---- order, crops, reproducibility ----

fn solid_folder() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    for (i, color) in SOLID_COLORS.iter().enumerate() {
        let (w, h) = if i % 2 == 0 { (48, 32) } else { (32, 40) };
        save_solid(*color, w, h, &dir.path().join(format!("solid{i}.png")));
    }
    let files = find_photos(dir.path()).unwrap().files;
    (dir, files)
}

#[test]
fn every_epoch_visits_every_photo_once_in_a_new_order() {
    let (_dir, files) = solid_folder();
    let mut stream = PhotoStream::new(config(32, 2, 42), files.clone()).unwrap();
    let mut epochs: Vec<Vec<usize>> = Vec::new();
    for epoch in 0..3u64 {
        let mut seen = Vec::new();
        for _ in 0..4 {
            let batch = stream.next_batch().unwrap();
            assert_eq!(batch.epoch, epoch);
            seen.extend(solid_indices(&batch));
        }
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            (0..8).collect::<Vec<_>>(),
            "epoch {epoch}: {seen:?}"
        );
        epochs.push(seen);
    }
    assert_ne!(epochs[0], epochs[1]);
    assert_ne!(epochs[1], epochs[2]);
    // Another seed, another order.
    let mut other = PhotoStream::new(config(32, 2, 43), files).unwrap();
    let other_first: Vec<usize> = (0..4)
        .flat_map(|_| solid_indices(&other.next_batch().unwrap()))
        .collect();
    assert_ne!(other_first, epochs[0]);
}

#[test]
fn the_same_seed_gives_the_same_batches_whatever_the_threads() {
    let dir = folder_with_bad_files();
    let files = find_photos(dir.path()).unwrap().files;
    let mut one_thread = config(40, 3, 7);
    one_thread.n_threads = 1;
    one_thread.prefetch = 1;
    let mut many_threads = config(40, 3, 7);
    many_threads.n_threads = 4;
    many_threads.prefetch = 5;
    let a = take_batches(&mut PhotoStream::new(one_thread, files.clone()).unwrap(), 4);
    let b = take_batches(
        &mut PhotoStream::new(many_threads, files.clone()).unwrap(),
        4,
    );
    assert_same_batches(&a, &b);
    // Crops move between epochs: some photo's crop differs, so batches are not mere reorderings.
    let c = take_batches(&mut PhotoStream::new(config(40, 3, 8), files).unwrap(), 4);
    assert!(a.iter().zip(&c).any(|(x, y)| !x.images.equal(&y.images)));
}

#[test]
fn cached_photos_are_read_once_and_give_the_batches_of_an_uncached_stream() {
    // Wide gradients: crops move between epochs, so a cache that froze a crop would show.
    let dir = tempfile::tempdir().unwrap();
    for i in 0..4 {
        save_rgb(
            &gradient(90, 40, i * 50),
            &dir.path().join(format!("g{i}.png")),
        );
    }
    let files = find_photos(dir.path()).unwrap().files;
    let mut uncached = config(32, 2, 9);
    uncached.cache_bytes = 0;
    let expected = take_batches(&mut PhotoStream::new(uncached, files.clone()).unwrap(), 8);

    let mut stream = PhotoStream::new(config(32, 2, 9), files.clone()).unwrap();
    let mut batches = take_batches(&mut stream, 2); // epoch 0: every photo decoded once
    for file in &files {
        fs::remove_file(file).unwrap();
    }
    batches.extend(take_batches(&mut stream, 6));
    assert!(batches.iter().all(|batch| batch.skipped.is_empty()));
    assert_same_batches(&batches, &expected);

    // A cache too small for one photo reads every photo every epoch: removed files are skipped.
    for i in 0..4 {
        save_rgb(
            &gradient(90, 40, i * 50),
            &dir.path().join(format!("g{i}.png")),
        );
    }
    let mut tiny = config(32, 2, 9);
    tiny.cache_bytes = 72 * 32 * 3 - 1; // one resized photo is 72x32 RGB
    tiny.prefetch = 1;
    let mut stream = PhotoStream::new(tiny, files.clone()).unwrap();
    take_batches(&mut stream, 2);
    for file in &files {
        fs::remove_file(file).unwrap();
    }
    let mut error = None;
    for _ in 0..8 {
        if let Err(e) = stream.next_batch() {
            error = Some(e);
            break;
        }
    }
    // The prefetching thread may have decoded a photo of the next epoch before the removal.
    assert!(
        matches!(
            error,
            Some(Error::NoUsablePhotos { .. } | Error::TooFewUsablePhotos { usable: 1, .. })
        ),
        "{error:?}"
    );
}

#[test]
fn random_crops_differ_between_epochs_for_the_same_photo() {
    let dir = tempfile::tempdir().unwrap();
    save_rgb(&gradient(120, 40, 0), &dir.path().join("wide.png"));
    let files = find_photos(dir.path()).unwrap().files;
    let batches = take_batches(&mut PhotoStream::new(config(32, 1, 5), files).unwrap(), 6);
    let distinct = batches
        .iter()
        .enumerate()
        .filter(|(i, b)| batches[..*i].iter().all(|a| !a.images.equal(&b.images)))
        .count();
    assert!(distinct >= 3, "only {distinct} distinct crops in 6 epochs");
}

#[test]
fn resuming_from_any_state_continues_exactly() {
    let dir = folder_with_bad_files();
    save_gray(50, 70, &dir.path().join("gen/c.png"));
    let files = find_photos(dir.path()).unwrap().files;
    let config = config(32, 2, 11);
    // 5 usable photos, batch 2: 2 batches per epoch and one photo dropped each epoch.
    let mut stream = PhotoStream::new(config, files.clone()).unwrap();
    let mut states = vec![stream.state()];
    let mut uninterrupted = Vec::new();
    for _ in 0..7 {
        uninterrupted.push(stream.next_batch().unwrap());
        states.push(stream.state());
    }
    drop(stream);
    let json = serde_json::to_string(&states[3]).unwrap();
    assert_eq!(
        serde_json::from_str::<StreamState>(&json).unwrap(),
        states[3]
    );
    for k in [1, 2, 3, 4] {
        let mut resumed = PhotoStream::resume(config, files.clone(), states[k]).unwrap();
        assert_eq!(resumed.state(), states[k]);
        let rest = take_batches(&mut resumed, 7 - k);
        assert_same_batches(&rest, &uninterrupted[k..]);
    }
}

#[test]
fn dropping_a_stream_with_a_full_queue_returns_promptly() {
    let (_dir, files) = solid_folder();
    let mut stream = PhotoStream::new(config(32, 1, 0), files).unwrap();
    stream.next_batch().unwrap();
    drop(stream); // the producer is blocked on the full queue: drop must end it, not hang
}
