//! The model file: the presets' exact variables, headers of older files, bit-exact save/load,
//! and the error each kind of broken file gives.

use std::collections::HashMap;
use std::path::Path;

use models::file::{read_meta, read_safetensors, save_safetensors, FORMAT_NAME, FORMAT_VERSION};
use models::spec::{Activation, Conditioning, OutputActivation, Scale, Upsample};
use models::{Error, Model, ModelMeta, NetSpec, Preset, TrainingSummary};
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

/// The 26-style network's variables, as `variables()` listed them before the spec described
/// its structure (and as the shipped file holds them).
const MULTISTYLE26_VARIABLES: [(&str, &[i64]); 54] = [
    ("conv1.conv2d.weight", &[32, 3, 9, 9]),
    ("in1.weight", &[26, 32]),
    ("in1.bias", &[26, 32]),
    ("conv2.conv2d.weight", &[32, 32, 3, 3]),
    ("in2.weight", &[26, 32]),
    ("in2.bias", &[26, 32]),
    ("conv3.conv2d.weight", &[32, 32, 3, 3]),
    ("in3.weight", &[26, 32]),
    ("in3.bias", &[26, 32]),
    ("res1.conv1.conv2d.weight", &[32, 32, 3, 3]),
    ("res1.in1.weight", &[26, 32]),
    ("res1.in1.bias", &[26, 32]),
    ("res1.conv2.conv2d.weight", &[32, 32, 3, 3]),
    ("res1.in2.weight", &[26, 32]),
    ("res1.in2.bias", &[26, 32]),
    ("res2.conv1.conv2d.weight", &[32, 32, 3, 3]),
    ("res2.in1.weight", &[26, 32]),
    ("res2.in1.bias", &[26, 32]),
    ("res2.conv2.conv2d.weight", &[32, 32, 3, 3]),
    ("res2.in2.weight", &[26, 32]),
    ("res2.in2.bias", &[26, 32]),
    ("res3.conv1.conv2d.weight", &[32, 32, 3, 3]),
    ("res3.in1.weight", &[26, 32]),
    ("res3.in1.bias", &[26, 32]),
    ("res3.conv2.conv2d.weight", &[32, 32, 3, 3]),
    ("res3.in2.weight", &[26, 32]),
    ("res3.in2.bias", &[26, 32]),
    ("res4.conv1.conv2d.weight", &[32, 32, 3, 3]),
    ("res4.in1.weight", &[26, 32]),
    ("res4.in1.bias", &[26, 32]),
    ("res4.conv2.conv2d.weight", &[32, 32, 3, 3]),
    ("res4.in2.weight", &[26, 32]),
    ("res4.in2.bias", &[26, 32]),
    ("res5.conv1.conv2d.weight", &[32, 32, 3, 3]),
    ("res5.in1.weight", &[26, 32]),
    ("res5.in1.bias", &[26, 32]),
    ("res5.conv2.conv2d.weight", &[32, 32, 3, 3]),
    ("res5.in2.weight", &[26, 32]),
    ("res5.in2.bias", &[26, 32]),
    ("res6.conv1.conv2d.weight", &[32, 32, 3, 3]),
    ("res6.in1.weight", &[26, 32]),
    ("res6.in1.bias", &[26, 32]),
    ("res6.conv2.conv2d.weight", &[32, 32, 3, 3]),
    ("res6.in2.weight", &[26, 32]),
    ("res6.in2.bias", &[26, 32]),
    ("deconv1.conv2d.weight", &[8, 32, 3, 3]),
    ("in4.weight", &[26, 8]),
    ("in4.bias", &[26, 8]),
    ("deconv2.conv2d.weight", &[4, 8, 3, 3]),
    ("in5.weight", &[26, 4]),
    ("in5.bias", &[26, 4]),
    ("deconv3.conv2d.weight", &[3, 4, 9, 9]),
    ("in6.weight", &[26, 3]),
    ("in6.bias", &[26, 3]),
];

/// The arbitrary-style transformer's variables: what its ONNX import maps onto.
const ARBITRARY_VARIABLES: [(&str, &[i64]); 71] = [
    ("conv1.conv2d.weight", &[8, 3, 9, 9]),
    ("conv1.conv2d.bias", &[8]),
    ("conv2.conv2d.weight", &[16, 8, 3, 3]),
    ("conv2.conv2d.bias", &[16]),
    ("conv3.conv2d.weight", &[32, 16, 3, 3]),
    ("conv3.conv2d.bias", &[32]),
    ("res1.conv1.conv2d.weight", &[32, 32, 3, 3]),
    ("res1.in1.gamma.weight", &[32, 100]),
    ("res1.in1.gamma.bias", &[32]),
    ("res1.in1.beta.weight", &[32, 100]),
    ("res1.in1.beta.bias", &[32]),
    ("res1.conv2.conv2d.weight", &[32, 32, 3, 3]),
    ("res1.in2.gamma.weight", &[32, 100]),
    ("res1.in2.gamma.bias", &[32]),
    ("res1.in2.beta.weight", &[32, 100]),
    ("res1.in2.beta.bias", &[32]),
    ("res2.conv1.conv2d.weight", &[32, 32, 3, 3]),
    ("res2.in1.gamma.weight", &[32, 100]),
    ("res2.in1.gamma.bias", &[32]),
    ("res2.in1.beta.weight", &[32, 100]),
    ("res2.in1.beta.bias", &[32]),
    ("res2.conv2.conv2d.weight", &[32, 32, 3, 3]),
    ("res2.in2.gamma.weight", &[32, 100]),
    ("res2.in2.gamma.bias", &[32]),
    ("res2.in2.beta.weight", &[32, 100]),
    ("res2.in2.beta.bias", &[32]),
    ("res3.conv1.conv2d.weight", &[32, 32, 3, 3]),
    ("res3.in1.gamma.weight", &[32, 100]),
    ("res3.in1.gamma.bias", &[32]),
    ("res3.in1.beta.weight", &[32, 100]),
    ("res3.in1.beta.bias", &[32]),
    ("res3.conv2.conv2d.weight", &[32, 32, 3, 3]),
    ("res3.in2.gamma.weight", &[32, 100]),
    ("res3.in2.gamma.bias", &[32]),
    ("res3.in2.beta.weight", &[32, 100]),
    ("res3.in2.beta.bias", &[32]),
    ("res4.conv1.conv2d.weight", &[32, 32, 3, 3]),
    ("res4.in1.gamma.weight", &[32, 100]),
    ("res4.in1.gamma.bias", &[32]),
    ("res4.in1.beta.weight", &[32, 100]),
    ("res4.in1.beta.bias", &[32]),
    ("res4.conv2.conv2d.weight", &[32, 32, 3, 3]),
    ("res4.in2.gamma.weight", &[32, 100]),
    ("res4.in2.gamma.bias", &[32]),
    ("res4.in2.beta.weight", &[32, 100]),
    ("res4.in2.beta.bias", &[32]),
    ("res5.conv1.conv2d.weight", &[32, 32, 3, 3]),
    ("res5.in1.gamma.weight", &[32, 100]),
    ("res5.in1.gamma.bias", &[32]),
    ("res5.in1.beta.weight", &[32, 100]),
    ("res5.in1.beta.bias", &[32]),
    ("res5.conv2.conv2d.weight", &[32, 32, 3, 3]),
    ("res5.in2.gamma.weight", &[32, 100]),
    ("res5.in2.gamma.bias", &[32]),
    ("res5.in2.beta.weight", &[32, 100]),
    ("res5.in2.beta.bias", &[32]),
    ("deconv1.conv2d.weight", &[16, 32, 3, 3]),
    ("in4.gamma.weight", &[16, 100]),
    ("in4.gamma.bias", &[16]),
    ("in4.beta.weight", &[16, 100]),
    ("in4.beta.bias", &[16]),
    ("deconv2.conv2d.weight", &[8, 16, 3, 3]),
    ("in5.gamma.weight", &[8, 100]),
    ("in5.gamma.bias", &[8]),
    ("in5.beta.weight", &[8, 100]),
    ("in5.beta.bias", &[8]),
    ("deconv3.conv2d.weight", &[3, 8, 9, 9]),
    ("in6.gamma.weight", &[3, 100]),
    ("in6.gamma.bias", &[3]),
    ("in6.beta.weight", &[3, 100]),
    ("in6.beta.bias", &[3]),
];

fn owned(variables: &[(&str, &[i64])]) -> Vec<(String, Vec<i64>)> {
    variables
        .iter()
        .map(|(name, shape)| (name.to_string(), shape.to_vec()))
        .collect()
}

#[test]
fn multistyle26_and_arbitrary_variables_are_pinned() {
    assert_eq!(
        NetSpec::multistyle26().variables(),
        owned(&MULTISTYLE26_VARIABLES)
    );
    assert_eq!(
        NetSpec::arbitrary().variables(),
        owned(&ARBITRARY_VARIABLES)
    );
}

/// The `spec` header of `assets/multistyle26.safetensors`, written before the spec had fields
/// for unnormalised downsampling and style vectors.
const SHIPPED_MULTISTYLE26_SPEC: &str = r#"{"down_channels":[32,32,32],"res_blocks":6,"up_channels":[8,4],"outer_kernel":9,"n_styles":26,"upsample":"nearest","padding":"reflect","norm_eps":0.00001,"conv_bias":false,"norm_after_last":true,"output":"sigmoid","input_scale":0.00392156862745098}"#;

/// The `spec` header `atelier train --arch johnson` wrote before the same change.
const OLD_JOHNSON_SPEC: &str = r#"{"down_channels":[32,64,128],"res_blocks":5,"up_channels":[64,32],"outer_kernel":9,"n_styles":1,"upsample":"nearest","padding":"reflect","norm_eps":0.00001,"conv_bias":true,"norm_after_last":false,"output":"none","input_scale":1.0}"#;

#[test]
fn older_spec_headers_parse_to_the_same_network_and_write_back_unchanged() {
    for (json, preset) in [
        (SHIPPED_MULTISTYLE26_SPEC, NetSpec::multistyle26()),
        (OLD_JOHNSON_SPEC, NetSpec::johnson()),
    ] {
        let spec: NetSpec = serde_json::from_str(json).unwrap();
        assert_eq!(spec, preset);
        assert_eq!(spec.structure(), preset.structure());
        assert_eq!(spec.conditioning(), preset.conditioning());
        assert_eq!(serde_json::to_string(&spec).unwrap(), json);
    }
    // and the shipped file still carries exactly that header and those tensors
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/multistyle26.safetensors");
    let meta = read_meta(&shipped).unwrap();
    assert_eq!(meta.spec, NetSpec::multistyle26());
    assert_eq!(meta.styles.len(), 26);
    let mut in_file: Vec<(String, Vec<i64>)> = read_safetensors(&shipped)
        .unwrap()
        .into_iter()
        .map(|(name, tensor)| (name, tensor.size()))
        .collect();
    let mut expected = owned(&MULTISTYLE26_VARIABLES);
    in_file.sort();
    expected.sort();
    assert_eq!(in_file, expected);
}

#[test]
fn the_arbitrary_structure_is_ghiasi_et_al() {
    let spec = NetSpec::arbitrary();
    let structure = spec.structure();
    let vector = Conditioning::Vector { dim: 100 };
    assert_eq!(spec.conditioning(), vector);
    assert_eq!(structure.input_scale, 1.0 / 255.0);
    let widths = |layers: Vec<&models::spec::Layer>| {
        layers
            .iter()
            .map(|l| (l.in_channels, l.out_channels, l.kernel))
            .collect::<Vec<_>>()
    };
    // downsampling: 9x9 3->8, 3x3 s2 ->16, 3x3 s2 ->32, biased, no norm, ReLU
    assert_eq!(
        widths(structure.down.iter().collect()),
        [(3, 8, 9), (8, 16, 3), (16, 32, 3)]
    );
    let scales: Vec<Scale> = structure.down.iter().map(|l| l.scale).collect();
    assert_eq!(scales, [Scale::Same, Scale::Down2, Scale::Down2]);
    for layer in &structure.down {
        assert!(layer.bias && layer.norm.is_none(), "{layer:?}");
        assert_eq!(layer.activation, Activation::Relu);
    }
    // five residual blocks of bias-free 3x3 convs, each normed, ReLU after the first only
    assert_eq!(structure.residual.len(), 5);
    for block in &structure.residual {
        for (layer, activation) in [
            (&block.first, Activation::Relu),
            (&block.second, Activation::None),
        ] {
            assert_eq!((layer.in_channels, layer.out_channels), (32, 32));
            assert_eq!(
                (layer.kernel, layer.scale, layer.bias),
                (3, Scale::Same, false)
            );
            assert_eq!(layer.norm.as_ref().unwrap().conditioning, vector);
            assert_eq!(layer.activation, activation);
        }
    }
    // nearest x2 then 3x3 32->16->8; then 9x9 8->3 with a norm and the sigmoid
    assert_eq!(
        widths(structure.up.iter().collect()),
        [(32, 16, 3), (16, 8, 3)]
    );
    for layer in &structure.up {
        assert_eq!(layer.scale, Scale::Up2(Upsample::Nearest));
        assert!(!layer.bias);
        assert_eq!(layer.activation, Activation::Relu);
    }
    let output = &structure.output;
    assert_eq!(widths(vec![output]), [(8, 3, 9)]);
    assert!(!output.bias);
    assert_eq!(
        output.activation,
        Activation::Output(OutputActivation::Sigmoid)
    );
    let norms: Vec<_> = structure
        .layers()
        .into_iter()
        .filter_map(|l| l.norm.as_ref())
        .collect();
    assert_eq!(norms.len(), 13);
    assert!(norms
        .iter()
        .all(|n| n.conditioning == vector && n.eps == 1e-5));
}

#[test]
fn presets_parse_from_their_names() {
    for preset in Preset::ALL {
        let name = preset.to_string();
        assert_eq!(name.parse::<Preset>().unwrap(), preset);
        assert_eq!(NetSpec::preset(&name).unwrap(), preset.spec());
        preset.spec().validate().unwrap();
    }
    assert_eq!(
        models::spec::PRESETS,
        ["johnson", "johnson-half", "multistyle26", "arbitrary"]
    );
    let error = "johnson-full".parse::<Preset>().unwrap_err().to_string();
    assert!(
        error.contains("unknown architecture `johnson-full`")
            && error.contains("johnson, johnson-half, multistyle26, arbitrary"),
        "{error}"
    );
    // a style vector leaves no room for per-style rows
    assert!(NetSpec::arbitrary().with_styles(2).validate().is_err());
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
    for spec in [
        NetSpec::johnson(),
        NetSpec::johnson_half().with_styles(3),
        NetSpec::arbitrary(),
    ] {
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
