//! VGG loss networks: tap names, defaults, what a wrong weights file says, and that the weights
//! stay frozen while gradients reach the image.

use models::file::save_safetensors;
use models::{Error, Tap, Vgg, VggKind};
use tch::{Device, Kind, Tensor};

#[test]
fn taps_parse_and_print_by_their_literature_names() {
    assert_eq!(Tap::Relu2_2.to_string(), "relu2_2");
    assert_eq!("relu4_2".parse::<Tap>().unwrap(), Tap::Relu4_2);
    assert!("relu1_3".parse::<Tap>().is_err());
    assert!("relu6_1".parse::<Tap>().is_err());
    assert!("conv1_1".parse::<Tap>().is_err());
    for kind in [VggKind::Vgg16, VggKind::Vgg19] {
        assert_eq!(kind.to_string().parse::<VggKind>().unwrap(), kind);
        for tap in kind.taps() {
            assert_eq!(tap.to_string().parse::<Tap>().unwrap(), tap);
        }
    }
    let names = |taps: Vec<Tap>| {
        taps.iter()
            .map(Tap::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(names(VggKind::Vgg16.taps()).split(' ').count(), 13);
    assert_eq!(names(VggKind::Vgg19.taps()).split(' ').count(), 16);
    assert_eq!(
        names(VggKind::Vgg16.default_style_taps()),
        "relu1_2 relu2_2 relu3_3 relu4_3"
    );
    assert_eq!(names(VggKind::Vgg16.default_content_taps()), "relu2_2");
    assert_eq!(
        names(VggKind::Vgg19.default_style_taps()),
        "relu1_1 relu2_1 relu3_1 relu4_1 relu5_1"
    );
    assert_eq!(names(VggKind::Vgg19.default_content_taps()), "relu4_2");
}

#[test]
fn features_have_vgg_shapes_and_refuse_missing_layers() {
    tch::manual_seed(3);
    let vgg = Vgg::random(VggKind::Vgg16, Device::Cpu);
    let image = Tensor::rand([2, 3, 64, 48], (Kind::Float, Device::Cpu)) * 255.0;
    let taps = [Tap::Relu5_3, Tap::Relu1_2, Tap::Relu3_3];
    let features = vgg.features(&image, &taps).unwrap();
    let shapes: Vec<Vec<i64>> = features.iter().map(Tensor::size).collect();
    assert_eq!(
        shapes,
        vec![
            vec![2, 512, 4, 3],
            vec![2, 64, 64, 48],
            vec![2, 256, 16, 12]
        ]
    );
    assert!(matches!(
        vgg.features(&image, &[Tap::Relu3_4]),
        Err(Error::InvalidSpec(_))
    ));
    assert!(vgg.features(&image.get(0), &taps).is_err());
    assert!(vgg.features(&image, &[]).unwrap().is_empty());
}

#[test]
fn gradients_reach_the_image_and_never_the_weights() {
    tch::manual_seed(5);
    let vgg = Vgg::random(VggKind::Vgg19, Device::Cpu);
    let image =
        (Tensor::rand([1, 3, 32, 32], (Kind::Float, Device::Cpu)) * 255.0).set_requires_grad(true);
    let features = vgg.features(&image, &[Tap::Relu2_1]).unwrap();
    features[0].sum(Kind::Float).backward();
    assert!(image.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    for (name, weight) in vgg.named_tensors() {
        assert!(!weight.requires_grad(), "{name} is trainable");
    }
}

/// Random VGG-16 weights in torchvision layout, with `edit` applied, loaded back.
fn load_edited(edit: impl FnOnce(&mut Vec<(String, Tensor)>)) -> Result<Vgg, Error> {
    tch::manual_seed(9);
    let mut tensors = Vgg::random(VggKind::Vgg16, Device::Cpu).named_tensors();
    edit(&mut tensors);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vgg16.safetensors");
    save_safetensors(&path, &tensors, &Default::default()).unwrap();
    Vgg::load(&path, VggKind::Vgg16, Device::Cpu)
}

#[test]
fn a_complete_file_loads_and_classifier_tensors_are_ignored() {
    let vgg = load_edited(|t| {
        t.push((
            "classifier.6.bias".into(),
            Tensor::zeros([1000], (Kind::Float, Device::Cpu)),
        ))
    });
    assert_eq!(vgg.unwrap().kind(), VggKind::Vgg16);
}

#[test]
fn a_missing_conv_is_named() {
    match load_edited(|t| t.retain(|(name, _)| name != "features.17.bias")) {
        Err(Error::MissingTensor { name, .. }) => assert_eq!(name, "features.17.bias"),
        other => panic!("expected MissingTensor, got {other:?}"),
    }
}

#[test]
fn a_misshaped_conv_is_named_with_both_shapes() {
    let result = load_edited(|t| {
        for (name, tensor) in t.iter_mut() {
            if name == "features.5.weight" {
                *tensor = Tensor::zeros([128, 64, 1, 1], (Kind::Float, Device::Cpu));
            }
        }
    });
    match result {
        Err(Error::ShapeMismatch {
            name,
            expected,
            found,
            ..
        }) => {
            assert_eq!(name, "features.5.weight");
            assert_eq!(expected, vec![128, 64, 3, 3]);
            assert_eq!(found, vec![128, 64, 1, 1]);
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
}

#[test]
fn vgg19_weights_are_not_taken_for_vgg16() {
    tch::manual_seed(2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vgg19.safetensors");
    let tensors = Vgg::random(VggKind::Vgg19, Device::Cpu).named_tensors();
    save_safetensors(&path, &tensors, &Default::default()).unwrap();
    // vgg16's conv 3_3 sits at features.14, where vgg19 has a 256-wide conv too, but vgg16's
    // block 4 starts at features.17, a relu in vgg19
    match Vgg::load(&path, VggKind::Vgg16, Device::Cpu) {
        Err(Error::MissingTensor { name, .. }) => assert_eq!(name, "features.17.weight"),
        other => panic!("expected MissingTensor, got {other:?}"),
    }
}

#[test]
fn files_that_are_not_weights_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.pth");
    std::fs::write(&path, b"not a zip").unwrap();
    let error = Vgg::load(&path, VggKind::Vgg16, Device::Cpu).unwrap_err();
    assert!(matches!(error, Error::Convert { .. }), "{error:?}");
    let missing = dir.path().join("absent.safetensors");
    assert!(matches!(
        Vgg::load(&missing, VggKind::Vgg16, Device::Cpu),
        Err(Error::Read { .. })
    ));
}
