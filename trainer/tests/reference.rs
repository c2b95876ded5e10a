//! One training step against the PyTorch reference (`tests/reference/train_reference.py`): the
//! same weights, batch of real photos and style image give the same loss terms and parameters
//! after one Adam step, within 1e-4 relative, and gradients as close to the float64 truth as
//! PyTorch's float32 ones.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use models::vgg::{Vgg, VggKind};
use tch::{Device, Kind, Tensor};
use trainer::{TrainConfig, Trainer};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A `side`×`side` centre crop of an asset photo, resized so its shorter side is `side`.
fn photo(name: &str, side: i64) -> Tensor {
    let image =
        trainer::load_style_image(&repo().join("assets/photos").join(name), Some(side)).unwrap();
    let (h, w) = (image.size()[1], image.size()[2]);
    image
        .narrow(1, (h - side) / 2, side)
        .narrow(2, (w - side) / 2, side)
}

/// max |a - b| / max |b|.
fn relative_error(ours: &Tensor, reference: &Tensor) -> f64 {
    let diff = (ours - reference).abs().max().double_value(&[]);
    diff / reference.abs().max().double_value(&[]).max(1e-30)
}

#[test]
fn one_step_matches_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(7);
    let vgg = Vgg::random(VggKind::Vgg16, Device::Cpu);
    let vgg_tensors = vgg.named_tensors();
    let style_path = repo().join("assets/styles/swirls.png");
    let config = TrainConfig {
        style_images: vec![style_path.clone()],
        style_names: vec!["swirls".into()],
        data_dir: repo().join("assets/photos"),
        output: dir.path().join("model.safetensors"),
        checkpoint_path: dir.path().join("model.checkpoint.safetensors"),
        loss_net: "vgg16".into(),
        loss_weights: dir.path().join("vgg16.safetensors"),
        content_taps: vec!["relu2_2".into()],
        style_taps: ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
            .map(String::from)
            .to_vec(),
        style_layer_weights: vec![1.0, 0.5, 2.0, 1.0],
        loss_convention: trainer::LossConvention::PytorchExamples,
        arch: "johnson".into(),
        n_steps: 1,
        batch_size: 2,
        image_size: 64,
        style_size: Some(96),
        content_weight: 1e5,
        style_weight: 1e10,
        tv_weight: 10.0,
        lr: 1e-3,
        lr_decay: 1.0,
        lr_decay_every: None,
        seed: 3,
        precision: "f32".into(),
        checkpoint_every: 1,
        log_every: 1,
        sample_image: None,
        sample_every: 1,
        log_dir: None,
        val_data: None,
        val_holdout: 0,
        val_every: 1,
        extend: None,
        extend_base_styles: Vec::new(),
        extend_finetune_steps: 0,
    };
    let style = trainer::load_style_image(&style_path, config.style_size).unwrap();
    let batch = Tensor::stack(&[photo("chelsea.png", 64), photo("rocket.jpg", 64)], 0);
    let mut trainer = Trainer::new(
        config.clone(),
        std::slice::from_ref(&style),
        vgg,
        Device::Cpu,
        Default::default(),
    )
    .unwrap();

    // The fixture: the initial weights, the VGG, the batch and the style image.
    let mut fixture: Vec<(String, Tensor)> = Vec::new();
    for (name, param) in trainer.parameter_names().iter().zip(trainer.parameters()) {
        fixture.push((format!("net.{name}"), param.copy()));
    }
    for (name, tensor) in &vgg_tensors {
        fixture.push((format!("vgg.{name}"), tensor.shallow_clone()));
    }
    fixture.push(("batch".into(), batch.shallow_clone()));
    fixture.push(("style".into(), style.shallow_clone()));
    let header = HashMap::from([(
        "config".to_string(),
        serde_json::to_string(&config).unwrap(),
    )]);
    let fixture_path = dir.path().join("fixture.safetensors");
    models::file::save_safetensors(&fixture_path, &fixture, &header).unwrap();

    let (losses, grads) = trainer.gradients(&batch).unwrap();
    let losses = losses.read().unwrap();
    trainer.step(&batch).unwrap();

    let run_reference = |float64: bool| -> HashMap<String, Tensor> {
        let out = dir.path().join(format!("reference-{float64}.safetensors"));
        let mut command = Command::new(repo().join(".venv/bin/python"));
        command
            .arg(repo().join("tests/reference/train_reference.py"))
            .args(["step".as_ref(), fixture_path.as_os_str(), out.as_os_str()]);
        if float64 {
            command.arg("--float64");
        }
        let status = command.status().expect("run the PyTorch reference");
        assert!(status.success());
        models::file::read_safetensors(&out)
            .unwrap()
            .into_iter()
            .collect()
    };
    let reference = run_reference(false);
    let truth = run_reference(true);
    let scalar = |name: &str| reference[name].double_value(&[0]);

    let mut terms = vec![
        ("content", losses.content, scalar("loss.content")),
        ("tv", losses.tv, scalar("loss.tv")),
        ("total", losses.total, scalar("loss.total")),
    ];
    for (tap, value) in config.style_taps.iter().zip(&losses.style_layers) {
        terms.push((tap.as_str(), *value, scalar(&format!("loss.style.{tap}"))));
    }
    for (name, ours, theirs) in &terms {
        let error = (ours - theirs).abs() / theirs.abs();
        eprintln!("loss {name}: ours {ours:.6e} pytorch {theirs:.6e} relative error {error:.2e}");
        assert!(error <= 1e-4, "loss {name}");
    }

    // Analytically zero gradients: a conv bias right before an instance norm (the norm subtracts
    // the mean), and the β of a residual block's second norm (a per-channel constant added to
    // the residual stream reaches only convs followed by instance norms). Both frameworks
    // compute rounding noise there, which Adam's first step turns into ±lr: bounded by the
    // step size instead.
    let structurally_zero = |name: &str| {
        (name.ends_with("conv2d.bias") && !name.starts_with("deconv3"))
            || (name.starts_with("res") && name.ends_with("in2.bias"))
    };
    let mut n_noise_signs = 0;
    let (mut worst_param, mut worst_grad) = ((0.0f64, String::new()), (0.0f64, String::new()));
    for ((name, param), grad) in trainer
        .parameter_names()
        .iter()
        .zip(trainer.parameters())
        .zip(&grads)
    {
        let their_param = &reference[&format!("param.{name}")];
        let their_grad = &reference[&format!("grad.{name}")];
        if structurally_zero(name) {
            let moved = (param - their_param).abs().max().double_value(&[]);
            assert!(moved <= 2.0 * config.lr, "{name}: {moved}");
            continue;
        }
        let grad_error = relative_error(grad, their_grad);
        let truth_grad = &truth[&format!("grad.{name}")];
        let (our_grad_error, their_grad_error) = (
            relative_error(grad, truth_grad),
            relative_error(their_grad, truth_grad),
        );
        // Adam's first step moves every weight by about lr·sign(gradient): where the gradient
        // is within float32 noise of zero, the sign is noise in both frameworks. A sign is
        // determined where the float64 truth stands clear of zero, both relative to the
        // tensor's largest and to PyTorch float32's own error at that weight (which depends on
        // the CPU's kernels); there ours must have the truth's sign. The rest is bounded by
        // the step size.
        let noise_floor = truth_grad.abs().max().double_value(&[]) * 1e-3;
        let float32_noise = (their_grad - truth_grad).abs() * 8.0;
        let determined = truth_grad
            .abs()
            .gt(noise_floor)
            .logical_and(&truth_grad.abs().gt_tensor(&float32_noise));
        let flipped = grad
            .sign()
            .ne_tensor(&truth_grad.sign())
            .logical_and(&determined);
        let n_flipped = flipped.sum(Kind::Int64).int64_value(&[]);
        let diff = (param - their_param).abs();
        let param_error = diff
            .where_self(&determined, &diff.zeros_like())
            .max()
            .double_value(&[])
            / their_param.abs().max().double_value(&[]);
        let n_undetermined = determined.logical_not().sum(Kind::Int64).int64_value(&[]);
        assert_eq!(
            n_flipped, 0,
            "{name}: gradient signs differ where they are determined"
        );
        n_noise_signs += n_undetermined;
        assert!(
            diff.max().double_value(&[]) <= 2.0 * config.lr + 1e-6,
            "{name}"
        );
        // Float32 gradients through a 20-layer network under a 20-layer loss network differ
        // from the float64 truth by up to ~3e-3 in PyTorch itself, depending on summation
        // order (memory layout, kernels): ours must be about as close to the truth as PyTorch.
        assert!(
            our_grad_error <= 3.0 * their_grad_error + 1e-5,
            "gradient of {name}: relative error to float64 {our_grad_error:.2e}, \
             PyTorch float32's {their_grad_error:.2e}"
        );
        assert!(
            param_error <= 1e-4,
            "{name} after the step: relative error {param_error:.2e}"
        );
        if param_error > worst_param.0 {
            worst_param = (param_error, name.clone());
        }
        if grad_error > worst_grad.0 {
            worst_grad = (grad_error, name.clone());
        }
    }
    eprintln!(
        "worst parameter relative error after one step: {:.2e} ({})",
        worst_param.0, worst_param.1
    );
    eprintln!("weights whose gradient sign is float32 noise: {n_noise_signs}");
    eprintln!(
        "worst gradient relative error: {:.2e} ({})",
        worst_grad.0, worst_grad.1
    );
}
