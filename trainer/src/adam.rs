//! Adam (Kingma & Ba 2015) written over plain tensors, because tch's `nn::Adam` cannot export
//! or restore its moments, and exact resume needs them. The update is the one of
//! `torch.optim.Adam` (single-tensor path, no weight decay, no amsgrad), operation for
//! operation, so a step matches PyTorch to float rounding.

use tch::{Kind, Tensor};

/// β₁, β₂ and ε of the original paper (and of `torch.optim.Adam`).
pub const BETA1: f64 = 0.9;
pub const BETA2: f64 = 0.999;
pub const EPS: f64 = 1e-8;

/// The optimizer state: one pair of moments per parameter, and the step count.
#[derive(Debug)]
pub struct Adam {
    /// First moments (running mean of gradients), in parameter order.
    pub m: Vec<Tensor>,
    /// Second moments (running mean of squared gradients), in parameter order.
    pub v: Vec<Tensor>,
    /// Number of updates applied so far (bias correction uses it).
    pub n_updates: u64,
}

impl Adam {
    /// Zero moments shaped like `params`.
    pub fn new(params: &[Tensor]) -> Self {
        let zeros = || {
            params
                .iter()
                .map(|p| Tensor::zeros_like(p).to_kind(Kind::Float))
                .collect()
        };
        Self {
            m: zeros(),
            v: zeros(),
            n_updates: 0,
        }
    }

    /// Applies one update to `params` from their f32 gradients `grads` (same order).
    pub fn step(&mut self, params: &[Tensor], grads: &[Tensor], lr: f64) {
        self.n_updates += 1;
        let t = self.n_updates as i32;
        let bias_correction1 = 1.0 - BETA1.powi(t);
        let bias_correction2_sqrt = (1.0 - BETA2.powi(t)).sqrt();
        let step_size = lr / bias_correction1;
        tch::no_grad(|| {
            for (((param, grad), m), v) in
                params.iter().zip(grads).zip(&mut self.m).zip(&mut self.v)
            {
                let _ = m.lerp_(grad, 1.0 - BETA1);
                let _ = v.g_mul_scalar_(BETA2);
                let _ = v.addcmul_(&(grad * (1.0 - BETA2)), grad);
                let denom = v.sqrt() / bias_correction2_sqrt + EPS;
                let mut param = param.shallow_clone();
                let _ = param.addcdiv_(&(&*m * -step_size), &denom);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_steps_follow_the_closed_form() {
        // With a constant gradient g, m̂ = g and v̂ = g² after every step, so each update moves
        // the parameter by lr · g / (|g| + ε).
        let param = Tensor::from_slice(&[1.0f32, -2.0, 0.5]);
        let grad = Tensor::from_slice(&[0.5f32, -0.25, 2.0]);
        let mut adam = Adam::new(&[param.shallow_clone()]);
        for _ in 0..3 {
            adam.step(&[param.shallow_clone()], &[grad.shallow_clone()], 0.1);
        }
        let got = Vec::<f32>::try_from(&param).unwrap();
        let expected = [1.0 - 0.3, -2.0 + 0.3, 0.5 - 0.3];
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-5, "{got:?} vs {expected:?}");
        }
        assert_eq!(adam.n_updates, 3);
    }
}
