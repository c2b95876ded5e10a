//! The perceptual losses of Johnson, Alahi, Li, "Perceptual Losses for Real-Time Style Transfer
//! and Super-Resolution" (ECCV 2016), with the Gram matrices of Gatys, Ecker, Bethge, "Image
//! Style Transfer Using Convolutional Neural Networks" (CVPR 2016).
//!
//! Conventions match pytorch/examples `fast_neural_style`, so its weights carry over (content
//! 1e5, style 1e10 with VGG-16 and its default taps): images enter the VGG as RGB in [0, 255]
//! (`vgg::Vgg::features` preprocesses), Gram matrices are divided by `c·h·w`, and every
//! squared error is a mean over all elements.

use tch::{Kind, Reduction, Tensor};

/// Per-sample Gram matrix of features `[B, C, H, W]`, divided by `C·H·W`: `[B, C, C]`.
pub fn gram(features: &Tensor) -> Tensor {
    gram_with(features, false)
}

/// `gram`, for a loss whose gradient with respect to the Gram matrix is symmetric (a squared
/// error against a symmetric target): the gradient of `FᵀF` is then `2·F·dG`, so it flows
/// through one factor only and is doubled, one batched matrix product instead of two.
fn gram_for_symmetric_loss(features: &Tensor) -> Tensor {
    gram_with(features, true)
}

fn gram_with(features: &Tensor, one_sided: bool) -> Tensor {
    let (batch, channels, height, width) = features.size4().unwrap_or_else(|_| {
        panic!(
            "gram needs [batch, channels, height, width] features, got {:?}",
            features.size()
        )
    });
    let scale = (channels * height * width) as f64;
    // Channels-last features give the [B, H·W, C] view without a copy; NCHW ones [B, C, H·W].
    let (left, right) = if features.stride()[1] == 1 && channels > 1 {
        let flat = features
            .permute([0, 2, 3, 1])
            .reshape([batch, height * width, channels]);
        (flat.transpose(1, 2), flat)
    } else {
        let flat = features.view([batch, channels, height * width]);
        (flat.shallow_clone(), flat.transpose(1, 2))
    };
    if !one_sided {
        return left.bmm(&right) / scale;
    }
    let product = left.detach().bmm(&right);
    // The value of `product`, twice its gradient.
    (&product * 2.0 - product.detach()) / scale
}

/// Sum over content taps of the mean squared error between features and their targets (same
/// shapes, tap for tap).
pub fn content_loss(features: &[Tensor], targets: &[Tensor]) -> Tensor {
    assert_eq!(
        features.len(),
        targets.len(),
        "one content target per content tap"
    );
    sum(features
        .iter()
        .zip(targets)
        .map(|(feature, target)| feature.mse_loss(target, Reduction::Mean)))
}

/// Sum over style taps of `weight · MSE(gram(features), target gram)`. A target gram of shape
/// `[1, C, C]` (one style image) is broadcast against the batch.
pub fn style_loss(features: &[Tensor], target_grams: &[Tensor], layer_weights: &[f64]) -> Tensor {
    assert_eq!(
        features.len(),
        target_grams.len(),
        "one target gram per style tap"
    );
    assert_eq!(
        features.len(),
        layer_weights.len(),
        "one weight per style tap"
    );
    sum(features
        .iter()
        .zip(target_grams)
        .zip(layer_weights)
        .map(|((feature, target), &weight)| {
            let gram = gram_for_symmetric_loss(feature);
            gram.mse_loss(&target.expand_as(&gram), Reduction::Mean) * weight
        }))
}

/// One style layer's loss relative to its scale (Atelier's balanced convention):
/// `MSE(gram(features), target) / (mean(gram²) + mean(target²))`, the denominator held
/// constant (no gradient flows through it). Near 1 while the two Gram matrices are far apart,
/// whatever the layer, loss network or image size; near the target, half of the error
/// relative to the target's mean square. A target `[1, C, C]` is broadcast against the batch.
pub fn balanced_style_loss(features: &Tensor, target_gram: &Tensor) -> Tensor {
    let gram = gram_for_symmetric_loss(features);
    let error = gram.mse_loss(&target_gram.expand_as(&gram), Reduction::Mean);
    let scale = gram.detach().square().mean(Kind::Float) + target_gram.square().mean(Kind::Float);
    error / scale.clamp_min(f64::from(f32::MIN_POSITIVE))
}

/// Total variation: mean squared difference of vertical neighbours plus that of horizontal
/// neighbours, on the scale of `image` (`[B, C, H, W]`).
pub fn tv_loss(image: &Tensor) -> Tensor {
    let size = image.size();
    let (height, width) = (size[size.len() - 2], size[size.len() - 1]);
    let vertical = image.narrow(-2, 1, height - 1) - image.narrow(-2, 0, height - 1);
    let horizontal = image.narrow(-1, 1, width - 1) - image.narrow(-1, 0, width - 1);
    vertical.square().mean(Kind::Float) + horizontal.square().mean(Kind::Float)
}

fn sum(terms: impl Iterator<Item = Tensor>) -> Tensor {
    terms
        .reduce(|total, term| total + term)
        .unwrap_or_else(|| Tensor::from(0f32))
}
