//! The balanced loss convention: at initialisation every style layer's weighted loss is within
//! an order of magnitude of the others, for VGG-16 (random weights in torchvision's layout, as
//! the other tests use) and for the VGG-19 of `make vgg` (when present), at two crop sizes.
//! The unnormalised losses of the VGG-19 are not, which is why the convention exists.

use std::path::{Path, PathBuf};

use models::vgg::{Vgg, VggKind};
use tch::{Device, Tensor};
use trainer::{LossConvention, RunFiles, Trainer};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Centre crops of two bundled photos, `side`² each.
fn batch(side: i64) -> Tensor {
    let crop = |name: &str| {
        let image = trainer::load_style_image(&repo().join("assets/photos").join(name), Some(side))
            .unwrap();
        let (h, w) = (image.size()[1], image.size()[2]);
        image
            .narrow(1, (h - side) / 2, side)
            .narrow(2, (w - side) / 2, side)
    };
    Tensor::stack(&[crop("chelsea.png"), crop("rocket.jpg")], 0)
}

/// The weighted style loss of each layer at the first step of the recipe's run.
fn style_layers_at_start(
    make_vgg: &dyn Fn() -> Vgg,
    convention: LossConvention,
    side: i64,
) -> Vec<f64> {
    let vgg = make_vgg();
    let style_path = repo().join("assets/styles/swirls.png");
    let files = RunFiles {
        style_images: vec![style_path.clone()],
        data_dir: repo().join("assets/photos"),
        output: PathBuf::from("unused.safetensors"),
    };
    let mut config = trainer::recipe(vgg.kind(), files, 4);
    config.loss_convention = convention;
    (config.content_weight, config.style_weight, config.tv_weight) =
        trainer::recipe::loss_weights(convention);
    config.arch = "johnson-half".into();
    config.image_size = side;
    config.batch_size = 2;
    let style = trainer::load_style_image(&style_path, Some(2 * side)).unwrap();
    let trainer = Trainer::new(config, &[style], vgg, Device::Cpu, Default::default()).unwrap();
    let losses = tch::no_grad(|| trainer.losses(&batch(side))).unwrap();
    losses.read().unwrap().style_layers
}

fn spread(values: &[f64]) -> f64 {
    let max = values.iter().cloned().fold(f64::MIN, f64::max);
    let min = values.iter().cloned().fold(f64::MAX, f64::min);
    max / min
}

fn assert_balanced(name: &str, make_vgg: &dyn Fn() -> Vgg) {
    for side in [64, 128] {
        let layers = style_layers_at_start(make_vgg, LossConvention::Balanced, side);
        eprintln!("{name} at {side}²: balanced style layers {layers:.3?}");
        assert!(
            layers.iter().all(|v| v.is_finite() && *v > 0.0),
            "{layers:?}"
        );
        assert!(spread(&layers) < 10.0, "{name} at {side}²: {layers:?}");
    }
}

#[test]
fn balanced_style_layers_start_within_an_order_of_magnitude() {
    assert!(trainer::recipe::DEFAULT_LOSS_CONVENTION == LossConvention::Balanced);
    let vgg16 = || {
        tch::manual_seed(0);
        Vgg::random(VggKind::Vgg16, Device::Cpu)
    };
    assert_balanced("vgg16 (random)", &vgg16);

    let weights = repo().join(trainer::recipe::DEFAULT_VGG19_WEIGHTS);
    if !weights.exists() {
        eprintln!(
            "{} is missing (make vgg): vgg19 not checked",
            weights.display()
        );
        return;
    }
    let vgg19 = || Vgg::load(&weights, VggKind::Vgg19, Device::Cpu).unwrap();
    assert_balanced("vgg19", &vgg19);
    let raw = style_layers_at_start(&vgg19, LossConvention::Lengstrom, 128);
    eprintln!("vgg19 at 128²: lengstrom style layers {raw:.3?}");
    assert!(spread(&raw) > 100.0, "{raw:?}");
}
