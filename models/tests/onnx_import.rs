//! The built-in 26-style network: importing the original ONNX file reproduces the shipped model
//! file exactly, and Atelier's forward pass agrees with ONNX Runtime on real photos, for single
//! styles and a style mix, at two photo sizes.

mod support;

use support::*;

use std::collections::HashMap;
use std::path::PathBuf;

use models::convert::onnx::import_magenta_onnx;
use models::file::{read_safetensors, save_safetensors};
use models::{pixels, Model};
use tch::{Device, Kind, Tensor};

fn onnx_file() -> PathBuf {
    workspace().join("tests/fixtures/multistyle26.onnx")
}

fn photo(name: &str) -> Tensor {
    let bytes = std::fs::read(workspace().join("assets/photos").join(name)).unwrap();
    pixels::image_to_tensor(&pixels::decode(&bytes).unwrap()).unsqueeze(0)
}

fn one_hot(style: usize) -> Vec<f64> {
    let mut weights = vec![0.0; 26];
    weights[style] = 1.0;
    weights
}

#[test]
fn importing_the_onnx_file_reproduces_the_shipped_model() {
    let imported = import_magenta_onnx(&onnx_file()).unwrap();
    let shipped = Model::load(
        &workspace().join("assets/multistyle26.safetensors"),
        Device::Cpu,
    )
    .unwrap();
    assert_eq!(imported.meta.spec, shipped.meta.spec);
    assert_eq!(imported.meta.styles, shipped.meta.styles);
    let shipped_vars = shipped.vars.variables();
    for (name, var) in imported.vars.variables() {
        let other = &shipped_vars[&name];
        assert!(var.equal(other), "{name} differs from the shipped model");
    }
    assert_eq!(imported.vars.variables().len(), 54);
}

#[test]
fn a_file_that_is_not_the_network_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let not_onnx = dir.path().join("photo.onnx");
    std::fs::copy(workspace().join("assets/photos/rocket.jpg"), &not_onnx).unwrap();
    let message = import_magenta_onnx(&not_onnx).unwrap_err().to_string();
    assert!(message.contains("not an ONNX model"), "{message}");

    let missing = dir.path().join("missing.onnx");
    let message = import_magenta_onnx(&missing).unwrap_err().to_string();
    assert!(message.contains("cannot read"), "{message}");
}

#[test]
fn forward_matches_onnx_runtime_on_real_photos() {
    let model = import_magenta_onnx(&onnx_file()).unwrap();
    let mut mix = vec![0.0; 26];
    mix[3] = 0.5;
    mix[12] = 0.5;
    // Two sizes, one of them not a multiple of 4 (451 x 300).
    let cases: Vec<(&str, Vec<f64>)> = vec![
        ("chelsea.png", one_hot(0)),
        ("chelsea.png", one_hot(7)),
        ("chelsea.png", mix.clone()),
        ("astronaut.png", one_hot(19)),
        ("astronaut.png", one_hot(25)),
        ("astronaut.png", mix),
    ];

    let mut inputs = Vec::new();
    let mut ours = HashMap::new();
    for (index, (name, weights)) in cases.iter().enumerate() {
        let image = photo(name);
        let params = model.net.style_params(weights).unwrap();
        let stylized = tch::no_grad(|| model.net.forward(&image, &params)).unwrap();
        assert_eq!(
            stylized.size(),
            image.size(),
            "output size differs from input for {name}"
        );
        ours.insert(index, stylized / 255.0);
        inputs.push((format!("image.{index}"), &image / 255.0));
        inputs.push((
            format!("weights.{index}"),
            Tensor::from_slice(weights).to_kind(Kind::Float),
        ));
    }

    let dir = tempfile::tempdir().unwrap();
    let inputs_file = dir.path().join("inputs.safetensors");
    let outputs_file = dir.path().join("outputs.safetensors");
    save_safetensors(&inputs_file, &inputs, &HashMap::new()).unwrap();
    run_reference(
        "onnx_reference.py",
        &[onnx_file(), inputs_file.clone(), outputs_file.clone()],
    );

    let reference: HashMap<String, Tensor> = read_safetensors(&outputs_file)
        .unwrap()
        .into_iter()
        .collect();
    for (index, (name, _)) in cases.iter().enumerate() {
        let expected = &reference[&format!("stylized.{index}")];
        let diff = (&ours[&index] - expected).abs();
        let mean = diff.mean(Kind::Float).double_value(&[]);
        let max = diff.max().double_value(&[]);
        eprintln!("case {index} ({name}): mean abs diff {mean:.2e}, max {max:.2e}");
        assert!(
            mean < 1e-3,
            "case {index} ({name}): mean abs difference {mean} vs ONNX Runtime"
        );
        assert!(
            max < 2e-2,
            "case {index} ({name}): max abs difference {max} vs ONNX Runtime"
        );
    }
}
