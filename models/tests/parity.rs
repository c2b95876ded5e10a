//! Parity with PyTorch: `tests/reference/reference.py` (run with the project venv's python)
//! writes random weights, inputs and its outputs; these tests load them into Atelier's networks
//! and losses and require a relative L2 error below 1e-5 in f32 on the CPU.

mod support;

use support::*;

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use models::convert::pth::import_pytorch_examples;
use models::file::read_safetensors;
use models::{loss, Model, ModelMeta, NetSpec, Vgg, VggKind};
use tch::{Device, Tensor};

const TOLERANCE: f64 = 1e-5;

/// The reference's output folder, written once per test process.
fn reference_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        run_reference(
            "reference.py",
            &[
                "parity".as_ref(),
                dir.path().as_os_str(),
                "20240601".as_ref(),
            ],
        );
        dir
    })
    .path()
}

fn tensors(file: &str) -> HashMap<String, Tensor> {
    read_safetensors(&reference_dir().join(file))
        .unwrap()
        .into_iter()
        .collect()
}

fn relative_error(actual: &Tensor, expected: &Tensor) -> f64 {
    assert_eq!(actual.size(), expected.size(), "shapes differ");
    let diff = (actual - expected).norm().double_value(&[]);
    diff / expected.norm().double_value(&[])
}

fn assert_close(what: &str, actual: &Tensor, expected: &Tensor) {
    let error = relative_error(actual, expected);
    println!("{what}: relative L2 error {error:.3e}");
    assert!(
        error < TOLERANCE,
        "{what}: relative L2 error {error:.3e} >= {TOLERANCE:e}"
    );
}

fn model_from(spec: NetSpec, weights_file: &str) -> Model {
    let styles = (0..spec.n_styles).map(|i| format!("style{i}")).collect();
    let meta = ModelMeta {
        spec,
        styles,
        training: None,
    };
    let mut model = Model::new(meta, Device::Cpu).unwrap();
    let path = reference_dir().join(weights_file);
    model
        .set_variables(&path, read_safetensors(&path).unwrap())
        .unwrap();
    model
}

#[test]
fn johnson_matches_pytorch_at_even_and_odd_sizes() {
    let model = model_from(NetSpec::johnson(), "johnson_weights.safetensors");
    let io = tensors("johnson_io.safetensors");
    let style = model.net.style_params(&[1.0]).unwrap();
    let out = model.net.forward(&io["input_64"], &style).unwrap();
    assert_close("johnson 64x64", &out, &io["output_64"]);
    let out = model.net.forward(&io["input_odd"], &style).unwrap();
    assert_eq!(out.size(), vec![2, 3, 67, 45]);
    assert_close("johnson 67x45, batch 2", &out, &io["output_odd"]);
}

#[test]
fn johnson_half_matches_pytorch() {
    let model = model_from(NetSpec::johnson_half(), "johnson_half_weights.safetensors");
    let io = tensors("johnson_half_io.safetensors");
    let out = model
        .net
        .forward(&io["input"], &model.net.style_params(&[1.0]).unwrap())
        .unwrap();
    assert_close("johnson-half", &out, &io["output"]);
}

#[test]
fn conditional_instance_norm_matches_pytorch_for_a_mix_and_one_style() {
    let model = model_from(
        NetSpec::johnson().with_styles(3),
        "cin3_weights.safetensors",
    );
    let io = tensors("cin3_io.safetensors");
    let mix = Vec::<f64>::try_from(&io["mix"].to_kind(tch::Kind::Double)).unwrap();
    assert_eq!(mix, vec![0.2f32 as f64, 0.5f32 as f64, 0.3f32 as f64]);
    let out = model
        .net
        .forward(&io["input"], &model.net.style_params(&mix).unwrap())
        .unwrap();
    assert_close("3-style network, mix 0.2/0.5/0.3", &out, &io["output_mix"]);
    let out = model
        .net
        .forward(&io["input"], &model.net.single_style_params(1).unwrap())
        .unwrap();
    assert_close("3-style network, style 1", &out, &io["output_style1"]);
}

#[test]
fn arbitrary_style_network_matches_pytorch_for_two_vectors_and_the_smallest_size() {
    let spec = NetSpec::arbitrary();
    assert_eq!(spec.style_vector_dim(), Some(100));
    let model = model_from(spec, "arbitrary_weights.safetensors");
    assert!(model.meta.styles.is_empty());
    let io = tensors("arbitrary_io.safetensors");
    for (vector, output) in [("vector_a", "output_a"), ("vector_b", "output_b")] {
        let style = model.net.vector_style_params(&io[vector]).unwrap();
        let out = tch::no_grad(|| model.net.forward(&io["input"], &style)).unwrap();
        assert_eq!(out.size(), vec![2, 3, 37, 50]);
        assert_close(
            &format!("arbitrary 37x50, batch 2, {vector}"),
            &out,
            &io[output],
        );
        // and with autograd on (the plain graph, input scaled before the first conv)
        let out = model.net.forward(&io["input"], &style).unwrap();
        assert_close(
            &format!("arbitrary with autograd, {vector}"),
            &out,
            &io[output],
        );
    }
    // the two vectors give different pictures, so the norms really read them
    assert!(relative_error(&io["output_a"], &io["output_b"]) > 0.1);
    let style = model.net.vector_style_params(&io["vector_a"]).unwrap();
    let out = tch::no_grad(|| model.net.forward(&io["input_small"], &style)).unwrap();
    assert_close("arbitrary 16x23", &out, &io["output_small"]);
}

#[test]
fn pytorch_examples_pth_converts_and_matches() {
    let model = import_pytorch_examples(&reference_dir().join("candy.pth")).unwrap();
    assert_eq!(model.meta.spec, NetSpec::johnson());
    assert_eq!(model.meta.styles, vec!["candy".to_string()]);
    let training = model.meta.training.as_ref().unwrap();
    assert!(training.extra["converted_from"].contains("candy.pth"));
    let io = tensors("candy_io.safetensors");
    let out = model
        .net
        .forward(&io["input"], &model.net.style_params(&[1.0]).unwrap())
        .unwrap();
    assert_close("converted candy.pth", &out, &io["output"]);

    // and it survives the trip through an Atelier model file
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("candy.safetensors");
    model.save(&saved).unwrap();
    let reloaded = Model::load(&saved, Device::Cpu).unwrap();
    assert_eq!(reloaded.meta, model.meta);
    let again = reloaded
        .net
        .forward(&io["input"], &reloaded.net.style_params(&[1.0]).unwrap())
        .unwrap();
    assert_eq!(relative_error(&again, &out), 0.0);
}

fn check_vgg(kind: VggKind, weights_file: &str, io_file: &str) {
    let vgg = Vgg::load(&reference_dir().join(weights_file), kind, Device::Cpu).unwrap();
    let io = tensors(io_file);
    let input = &io["input"];

    let all = kind.taps();
    let features = vgg.features(input, &all).unwrap();
    for (tap, feature) in all.iter().zip(&features) {
        assert_close(&format!("{kind} {tap}"), feature, &io[&tap.to_string()]);
    }
    // any order, stopping early, repeats
    let mut asked = kind.default_style_taps();
    asked.reverse();
    asked.extend(kind.default_content_taps());
    asked.push(asked[0]);
    let features = vgg.features(input, &asked).unwrap();
    assert_eq!(features.len(), asked.len());
    for (tap, feature) in asked.iter().zip(&features) {
        let error = relative_error(feature, &io[&tap.to_string()]);
        assert!(
            error < TOLERANCE,
            "{kind} {tap} asked in another order: {error:.3e}"
        );
    }
}

#[test]
fn vgg16_from_a_pth_state_dict_matches_pytorch() {
    check_vgg(VggKind::Vgg16, "vgg16.pth", "vgg16_io.safetensors");
}

#[test]
fn vgg19_from_safetensors_matches_pytorch() {
    check_vgg(VggKind::Vgg19, "vgg19.safetensors", "vgg19_io.safetensors");
}

#[test]
fn losses_match_pytorch() {
    let t = tensors("losses.safetensors");
    let features = [
        t["feature_0"].shallow_clone(),
        t["feature_1"].shallow_clone(),
    ];
    let targets = [
        t["content_target_0"].shallow_clone(),
        t["content_target_1"].shallow_clone(),
    ];
    let grams = [
        loss::gram(&t["style_feature_0"]),
        loss::gram(&t["style_feature_1"]),
    ];
    assert_close("gram [2,8,10,12]", &loss::gram(&features[0]), &t["gram_0"]);
    assert_close("gram [1,8,11,9]", &grams[0], &t["target_gram_0"]);
    assert_close("gram [1,16,7,5]", &grams[1], &t["target_gram_1"]);
    let content = loss::content_loss(&features, &targets);
    assert_close("content loss", &content.reshape([1]), &t["content_loss"]);
    let style = loss::style_loss(&features, &grams, &[0.3, 0.7]);
    assert_close("style loss", &style.reshape([1]), &t["style_loss"]);
    let tv = loss::tv_loss(&t["tv_input"]);
    assert_close("tv loss", &tv.reshape([1]), &t["tv_loss"]);
}

#[test]
fn pytorch_examples_import_refuses_foreign_tensors_and_reads_old_files() {
    match import_pytorch_examples(&reference_dir().join("extra.pth")) {
        Err(models::Error::UnexpectedTensor { name, .. }) => assert_eq!(name, "res6.in1.weight"),
        other => panic!("expected UnexpectedTensor, got {other:?}"),
    }
    // the pre-1.6 (non-zip) format, read by models::convert::torch_legacy
    let model = import_pytorch_examples(&reference_dir().join("legacy.pth")).unwrap();
    let io = tensors("candy_io.safetensors");
    let out = model
        .net
        .forward(&io["input"], &model.net.style_params(&[1.0]).unwrap())
        .unwrap();
    assert_close("converted legacy-format candy", &out, &io["output"]);
}
