//! `--smooth`: each stylized frame blended with the previous output frame, against flicker.
//! Shared by video (`crate::video`) and frame folders (`crate::pipeline`).

use tch::Tensor;

/// Blends each stylized frame with the previous output frame. At `smooth` = 1 half of each
/// frame is the previous one.
pub struct Smoother {
    previous_weight: f64,
    previous: Option<Tensor>,
}

impl Smoother {
    pub fn new(smooth: f64) -> Self {
        Self {
            previous_weight: smooth / 2.0,
            previous: None,
        }
    }

    /// Takes the next stylized frame `[3, H, W]` in order and returns it smoothed. A frame of
    /// another size than the previous one starts afresh.
    pub fn apply(&mut self, frame: Tensor) -> Tensor {
        let weight = self.previous_weight;
        if weight <= 0.0 {
            return frame;
        }
        let smoothed = match &self.previous {
            Some(previous) if previous.size() == frame.size() => {
                &frame * (1.0 - weight) + previous * weight
            }
            _ => frame,
        };
        self.previous = Some(smoothed.shallow_clone());
        smoothed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(value: f32, side: i64) -> Tensor {
        Tensor::full(
            [3, side, side],
            f64::from(value),
            (tch::Kind::Float, tch::Device::Cpu),
        )
    }

    fn mean(t: &Tensor) -> f64 {
        t.mean(tch::Kind::Double).double_value(&[])
    }

    #[test]
    fn each_frame_blends_with_the_previous_output() {
        let mut smoother = Smoother::new(1.0);
        assert_eq!(mean(&smoother.apply(frame(100.0, 4))), 100.0);
        // half the new frame, half the previous output
        assert_eq!(mean(&smoother.apply(frame(200.0, 4))), 150.0);
        assert_eq!(mean(&smoother.apply(frame(150.0, 4))), 150.0);
        // another size starts afresh
        assert_eq!(mean(&smoother.apply(frame(10.0, 2))), 10.0);
        let mut off = Smoother::new(0.0);
        drop(off.apply(frame(100.0, 4)));
        assert_eq!(mean(&off.apply(frame(200.0, 4))), 200.0);
    }
}
