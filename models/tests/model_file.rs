//! The model file: the `johnson` preset's exact variables, bit-exact save/load, and the error
//! each kind of broken file gives.

use std::collections::HashMap;
use std::path::Path;

use models::file::{read_safetensors, save_safetensors, FORMAT_NAME, FORMAT_VERSION};
use models::{Error, Model, ModelMeta, NetSpec, TrainingSummary};
use tch::{Device, Kind, Tensor};

/// pytorch/examples `fast_neural_style` state-dict names, in file order.
const JOHNSON_VARIABLES: [(&str, &[i64]); 62] = [
    ("conv1.conv2d.weight", &[32, 3, 9, 9]),
    ("conv1.conv2d.bias", &[32]),
    ("in1.weight", &[32]),
    ("in1.bias", &[32]),
    ("conv2.conv2d.weight", &[64, 32, 3, 3]),
    ("conv2.conv2d.bias", &[64]),
    ("in2.weight", &[64]),
    ("in2.bias", &[64]),
    ("conv3.conv2d.weight", &[128, 64, 3, 3]),
    ("conv3.conv2d.bias", &[128]),
    ("in3.weight", &[128]),
    ("in3.bias", &[128]),
    ("res1.conv1.conv2d.weight", &[128, 128, 3, 3]),
    ("res1.conv1.conv2d.bias", &[128]),
    ("res1.in1.weight", &[128]),
    ("res1.in1.bias", &[128]),
    ("res1.conv2.conv2d.weight", &[128, 128, 3, 3]),
    ("res1.conv2.conv2d.bias", &[128]),
    ("res1.in2.weight", &[128]),
    ("res1.in2.bias", &[128]),
    ("res2.conv1.conv2d.weight", &[128, 128, 3, 3]),
    ("res2.conv1.conv2d.bias", &[128]),
    ("res2.in1.weight", &[128]),
    ("res2.in1.bias", &[128]),
    ("res2.conv2.conv2d.weight", &[128, 128, 3, 3]),
    ("res2.conv2.conv2d.bias", &[128]),
    ("res2.in2.weight", &[128]),
    ("res2.in2.bias", &[128]),
    ("res3.conv1.conv2d.weight", &[128, 128, 3, 3]),
    ("res3.conv1.conv2d.bias", &[128]),
    ("res3.in1.weight", &[128]),
    ("res3.in1.bias", &[128]),
    ("res3.conv2.conv2d.weight", &[128, 128, 3, 3]),
    ("res3.conv2.conv2d.bias", &[128]),
    ("res3.in2.weight", &[128]),
    ("res3.in2.bias", &[128]),
    ("res4.conv1.conv2d.weight", &[128, 128, 3, 3]),
    ("res4.conv1.conv2d.bias", &[128]),
    ("res4.in1.weight", &[128]),
    ("res4.in1.bias", &[128]),
    ("res4.conv2.conv2d.weight", &[128, 128, 3, 3]),
    ("res4.conv2.conv2d.bias", &[128]),
    ("res4.in2.weight", &[128]),
    ("res4.in2.bias", &[128]),
    ("res5.conv1.conv2d.weight", &[128, 128, 3, 3]),
    ("res5.conv1.conv2d.bias", &[128]),
    ("res5.in1.weight", &[128]),
    ("res5.in1.bias", &[128]),
    ("res5.conv2.conv2d.weight", &[128, 128, 3, 3]),
    ("res5.conv2.conv2d.bias", &[128]),
    ("res5.in2.weight", &[128]),
    ("res5.in2.bias", &[128]),
    ("deconv1.conv2d.weight", &[64, 128, 3, 3]),
    ("deconv1.conv2d.bias", &[64]),
    ("in4.weight", &[64]),
    ("in4.bias", &[64]),
    ("deconv2.conv2d.weight", &[32, 64, 3, 3]),
    ("deconv2.conv2d.bias", &[32]),
    ("in5.weight", &[32]),
    ("in5.bias", &[32]),
    ("deconv3.conv2d.weight", &[3, 32, 9, 9]),
    ("deconv3.conv2d.bias", &[3]),
];

#[test]
fn johnson_variables_are_the_pytorch_examples_state_dict() {
    let expected: Vec<(String, Vec<i64>)> = JOHNSON_VARIABLES
        .iter()
        .map(|(name, shape)| (name.to_string(), shape.to_vec()))
        .collect();
    assert_eq!(NetSpec::johnson().variables(), expected);
}

fn meta(spec: NetSpec) -> ModelMeta {
    let styles = (0..spec.n_styles).map(|i| format!("style {i}")).collect();
    ModelMeta {
        spec,
        styles,
        training: Some(TrainingSummary {
            style_images: vec!["swirls.png".into()],
            loss_network: "vgg16".into(),
            content_weight: 1e5,
            style_weight: 1e10,
            steps: 42,
            extra: HashMap::from([("seed".to_string(), "7".to_string())]),
            ..TrainingSummary::default()
        }),
    }
}

/// A model whose every variable is random (norm γ/β included, which start as ones/zeros).
fn random_model(spec: NetSpec) -> Model {
    tch::manual_seed(11);
    let model = Model::new(meta(spec), Device::Cpu).unwrap();
    tch::no_grad(|| {
        for (_, mut var) in model.vars.variables() {
            let noise = Tensor::randn(var.size(), (Kind::Float, Device::Cpu));
            var.copy_(&noise);
        }
    });
    model
}

#[test]
fn save_then_load_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    for spec in [NetSpec::johnson(), NetSpec::johnson_half().with_styles(3)] {
        let model = random_model(spec);
        let path = dir.path().join("model.safetensors");
        model.save(&path).unwrap();
        let loaded = Model::load(&path, Device::Cpu).unwrap();
        assert_eq!(loaded.meta, model.meta);
        let saved = model.vars.variables();
        let restored = loaded.vars.variables();
        assert_eq!(saved.len(), restored.len());
        for (name, tensor) in &saved {
            assert!(
                tensor.equal(&restored[name]),
                "{name} changed on the round trip"
            );
        }
        // and the file holds exactly the spec's variables, nothing else
        let names: Vec<String> = read_safetensors(&path)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let mut expected: Vec<String> = model
            .meta
            .spec
            .variables()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        expected.sort();
        assert_eq!(names, expected);
    }
}

fn header(spec: &NetSpec, version: &str) -> HashMap<String, String> {
    HashMap::from([
        ("format".to_string(), FORMAT_NAME.to_string()),
        ("format_version".to_string(), version.to_string()),
        ("spec".to_string(), serde_json::to_string(spec).unwrap()),
        ("styles".to_string(), "[\"only\"]".to_string()),
    ])
}

/// A johnson-half file with `edit` applied to its tensors, loaded.
fn load_edited(version: &str, edit: impl FnOnce(&mut Vec<(String, Tensor)>)) -> Error {
    let dir = tempfile::tempdir().unwrap();
    let spec = NetSpec::johnson_half();
    let mut tensors: Vec<(String, Tensor)> = spec
        .variables()
        .into_iter()
        .map(|(name, shape)| (name, Tensor::ones(shape, (Kind::Float, Device::Cpu))))
        .collect();
    edit(&mut tensors);
    let path = dir.path().join("edited.safetensors");
    save_safetensors(&path, &tensors, &header(&spec, version)).unwrap();
    Model::load(&path, Device::Cpu).unwrap_err()
}

fn is_this_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "edited.safetensors")
}

#[test]
fn an_unedited_hand_written_file_loads() {
    let dir = tempfile::tempdir().unwrap();
    let spec = NetSpec::johnson_half();
    let tensors: Vec<(String, Tensor)> = spec
        .variables()
        .into_iter()
        .map(|(name, shape)| (name, Tensor::ones(shape, (Kind::Float, Device::Cpu))))
        .collect();
    let path = dir.path().join("m.safetensors");
    save_safetensors(&path, &tensors, &header(&spec, &FORMAT_VERSION.to_string())).unwrap();
    let model = Model::load(&path, Device::Cpu).unwrap();
    assert_eq!(model.meta.spec, spec);
    assert_eq!(model.meta.styles, vec!["only".to_string()]);
}

#[test]
fn a_missing_tensor_is_named() {
    let version = FORMAT_VERSION.to_string();
    let error = load_edited(&version, |t| t.retain(|(name, _)| name != "res3.in2.bias"));
    match &error {
        Error::MissingTensor { path, name } => {
            assert!(is_this_file(path));
            assert_eq!(name, "res3.in2.bias");
        }
        other => panic!("expected MissingTensor, got {other:?}"),
    }
    assert!(
        error.to_string().contains("missing tensor `res3.in2.bias`"),
        "{error}"
    );
}

#[test]
fn an_extra_tensor_is_named() {
    let version = FORMAT_VERSION.to_string();
    let error = load_edited(&version, |t| {
        t.push((
            "res9.in1.weight".to_string(),
            Tensor::ones([64], (Kind::Float, Device::Cpu)),
        ))
    });
    match &error {
        Error::UnexpectedTensor { path, name } => {
            assert!(is_this_file(path));
            assert_eq!(name, "res9.in1.weight");
        }
        other => panic!("expected UnexpectedTensor, got {other:?}"),
    }
}

#[test]
fn a_misshaped_tensor_is_named_with_both_shapes() {
    let version = FORMAT_VERSION.to_string();
    let error = load_edited(&version, |t| {
        for (name, tensor) in t.iter_mut() {
            if name == "conv2.conv2d.weight" {
                *tensor = Tensor::ones([32, 16, 5, 5], (Kind::Float, Device::Cpu));
            }
        }
    });
    match &error {
        Error::ShapeMismatch {
            path,
            name,
            expected,
            found,
        } => {
            assert!(is_this_file(path));
            assert_eq!(name, "conv2.conv2d.weight");
            assert_eq!(expected, &vec![32, 16, 3, 3]);
            assert_eq!(found, &vec![32, 16, 5, 5]);
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
}

#[test]
fn a_newer_format_version_is_refused() {
    let error = load_edited("2", |_| {});
    match &error {
        Error::UnsupportedVersion {
            found, supported, ..
        } => {
            assert_eq!(found, "2");
            assert_eq!(*supported, FORMAT_VERSION);
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}
