//! L-BFGS (Liu & Nocedal 1989) over one tensor, as `torch.optim.LBFGS` does it (PyTorch 2.11,
//! itself a port of minFunc and Torch7's `optim.lbfgs`): the same two-loop recursion over a
//! bounded history, the same first step `min(1, 1/‖g‖₁)·lr`, the same tolerances and stopping
//! rules, and the same optional strong-Wolfe line search (bracketing, then zoom with cubic
//! interpolation). A `step` runs up to `max_iter` iterations and its state carries over to the
//! next `step`, so a run matches PyTorch iterate for iterate. tch has no L-BFGS.
//!
//! Scalars (dot products, step lengths, losses) are read back as f64: the objective's value and
//! each dot product are one host synchronisation per use, as PyTorch's `float()` and `if` are.

use std::collections::VecDeque;

use tch::{Kind, Tensor};

/// The line search: none (a fixed step `lr`, as Gatys et al., neural-style and pystiche use it)
/// or strong Wolfe (`line_search_fn="strong_wolfe"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineSearch {
    #[default]
    None,
    StrongWolfe,
}

/// `torch.optim.LBFGS`'s arguments, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LbfgsOptions {
    pub lr: f64,
    /// Iterations per `step`.
    pub max_iter: u64,
    /// Function evaluations per `step`; `None` is `max_iter · 5 / 4`.
    pub max_eval: Option<u64>,
    /// Stop when the largest gradient component is at most this.
    pub tolerance_grad: f64,
    /// Stop when the step or the change of the loss is below this.
    pub tolerance_change: f64,
    /// Curvature pairs kept (each pair is two tensors the size of the variable).
    pub history_size: usize,
    pub line_search: LineSearch,
}

impl Default for LbfgsOptions {
    fn default() -> Self {
        Self {
            lr: 1.0,
            max_iter: 20,
            max_eval: None,
            tolerance_grad: 1e-7,
            tolerance_change: 1e-9,
            history_size: 100,
            line_search: LineSearch::None,
        }
    }
}

impl LbfgsOptions {
    fn max_eval(&self) -> u64 {
        self.max_eval.unwrap_or(self.max_iter * 5 / 4)
    }
}

/// Why a `step` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEnd {
    /// It ran `max_iter` iterations or `max_eval` evaluations: more steps may lower the loss.
    Budget,
    /// A tolerance was met (gradient, step size, loss change or no descent direction): further
    /// steps would not move.
    Converged,
}

/// What a `step` did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// The loss at the start of the step (what `torch.optim.LBFGS.step` returns).
    pub initial_loss: f64,
    pub iterations: u64,
    pub evaluations: u64,
    pub end: StepEnd,
}

/// The optimizer and the state it keeps between steps.
#[derive(Debug)]
pub struct Lbfgs {
    options: LbfgsOptions,
    /// The last search direction and step length.
    direction: Option<Tensor>,
    step_length: f64,
    /// Gradient differences `y` and steps `s`, oldest first, with `1 / yᵀs`.
    old_dirs: VecDeque<Tensor>,
    old_stps: VecDeque<Tensor>,
    ro: VecDeque<f64>,
    h_diag: f64,
    prev_flat_grad: Option<Tensor>,
    n_iter: u64,
    func_evals: u64,
}

/// The objective: loss and gradient (shaped like the variable) at the variable's current value.
pub type Evaluation = (f64, Tensor);

impl Lbfgs {
    pub fn new(options: LbfgsOptions) -> Self {
        Self {
            options,
            direction: None,
            step_length: 0.0,
            old_dirs: VecDeque::new(),
            old_stps: VecDeque::new(),
            ro: VecDeque::new(),
            h_diag: 1.0,
            prev_flat_grad: None,
            n_iter: 0,
            func_evals: 0,
        }
    }

    pub fn options(&self) -> &LbfgsOptions {
        &self.options
    }

    /// Iterations over all steps so far.
    pub fn n_iter(&self) -> u64 {
        self.n_iter
    }

    /// Function evaluations over all steps so far.
    pub fn func_evals(&self) -> u64 {
        self.func_evals
    }

    /// Runs up to `max_iter` iterations on `x` (changed in place, any shape, f32 or f64).
    /// `evaluate` returns the loss and its gradient at `x`'s value when called; it may fail, and
    /// the error stops the step.
    pub fn step<E>(
        &mut self,
        x: &Tensor,
        mut evaluate: impl FnMut(&Tensor) -> Result<Evaluation, E>,
    ) -> Result<StepReport, E> {
        let options = self.options;
        let max_eval = options.max_eval();
        assert!(x.is_contiguous(), "l-bfgs needs a contiguous variable");
        // A detached view: updates in place need no autograd, `evaluate` runs with it.
        let mut flat = x.detach().view([-1]);

        let (mut loss, grad) = evaluate(x)?;
        let initial_loss = loss;
        let mut flat_grad = grad.reshape([-1]);
        let mut current_evals = 1;
        self.func_evals += 1;
        let mut report = StepReport {
            initial_loss,
            iterations: 0,
            evaluations: 1,
            end: StepEnd::Converged,
        };
        if max_abs(&flat_grad) <= options.tolerance_grad {
            return Ok(report);
        }

        let mut n_iter = 0;
        let mut end = StepEnd::Budget;
        while n_iter < options.max_iter {
            n_iter += 1;
            self.n_iter += 1;

            let direction = if self.n_iter == 1 {
                self.old_dirs.clear();
                self.old_stps.clear();
                self.ro.clear();
                self.h_diag = 1.0;
                -&flat_grad
            } else {
                self.update_history(&flat_grad);
                self.two_loop(&flat_grad)
            };

            match &mut self.prev_flat_grad {
                Some(prev) => {
                    prev.copy_(&flat_grad);
                }
                None => self.prev_flat_grad = Some(flat_grad.copy()),
            }
            let prev_loss = loss;

            let mut t = if self.n_iter == 1 {
                let l1 = f64::try_from(flat_grad.abs().sum(Kind::Double)).unwrap_or(f64::NAN);
                (1.0f64).min(1.0 / l1) * options.lr
            } else {
                options.lr
            };

            let gtd = dot(&flat_grad, &direction);
            if gtd > -options.tolerance_change {
                self.direction = Some(direction);
                self.step_length = t;
                end = StepEnd::Converged;
                break;
            }

            let mut ls_func_evals = 0;
            let mut opt_cond = false;
            match options.line_search {
                LineSearch::StrongWolfe => {
                    let x_init = flat.copy();
                    let mut objective = |t: f64, d: &Tensor| -> Result<Evaluation, E> {
                        flat.copy_(&(&x_init + d * t));
                        let (f, g) = evaluate(x)?;
                        Ok((f, g.reshape([-1])))
                    };
                    let found = strong_wolfe(
                        &mut objective,
                        t,
                        &direction,
                        loss,
                        &flat_grad,
                        gtd,
                        max_eval.saturating_sub(current_evals),
                        options.tolerance_change,
                    )?;
                    loss = found.loss;
                    flat_grad = found.grad;
                    t = found.t;
                    ls_func_evals = found.evaluations;
                    flat.copy_(&(&x_init + &direction * t));
                    opt_cond = max_abs(&flat_grad) <= options.tolerance_grad;
                }
                LineSearch::None => {
                    let _ = flat.g_add_(&(&direction * t));
                    if n_iter != options.max_iter {
                        let (f, g) = evaluate(x)?;
                        loss = f;
                        flat_grad = g.reshape([-1]);
                        opt_cond = max_abs(&flat_grad) <= options.tolerance_grad;
                        ls_func_evals = 1;
                    }
                }
            }
            current_evals += ls_func_evals;
            self.func_evals += ls_func_evals;

            let step_max = max_abs(&direction) * t.abs();
            self.direction = Some(direction);
            self.step_length = t;

            if n_iter == options.max_iter || current_evals >= max_eval {
                break;
            }
            if opt_cond
                || step_max <= options.tolerance_change
                || (loss - prev_loss).abs() < options.tolerance_change
            {
                end = StepEnd::Converged;
                break;
            }
        }
        report.iterations = n_iter;
        report.evaluations = current_evals;
        report.end = end;
        Ok(report)
    }

    /// Adds the last curvature pair `(y, s)` when `yᵀs` is positive enough, dropping the oldest
    /// beyond the history size.
    fn update_history(&mut self, flat_grad: &Tensor) {
        let (Some(prev), Some(d)) = (&self.prev_flat_grad, &self.direction) else {
            return;
        };
        let y = flat_grad - prev;
        let s = d * self.step_length;
        let ys = dot(&y, &s);
        if ys > 1e-10 {
            if self.old_dirs.len() == self.options.history_size {
                self.old_dirs.pop_front();
                self.old_stps.pop_front();
                self.ro.pop_front();
            }
            self.h_diag = ys / dot(&y, &y);
            self.old_dirs.push_back(y);
            self.old_stps.push_back(s);
            self.ro.push_back(1.0 / ys);
        }
    }

    /// The two-loop recursion: `-H·g` for the inverse Hessian the history describes.
    fn two_loop(&self, flat_grad: &Tensor) -> Tensor {
        let n = self.old_dirs.len();
        let mut al = vec![0.0; n];
        let mut q = -flat_grad;
        for i in (0..n).rev() {
            al[i] = dot(&self.old_stps[i], &q) * self.ro[i];
            let _ = q.g_add_(&(&self.old_dirs[i] * -al[i]));
        }
        let mut r = q * self.h_diag;
        for (((y, s), ro), al) in self
            .old_dirs
            .iter()
            .zip(&self.old_stps)
            .zip(&self.ro)
            .zip(&al)
        {
            let be_i = dot(y, &r) * ro;
            let _ = r.g_add_(&(s * (al - be_i)));
        }
        r
    }
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from(a.dot(b)).unwrap_or(f64::NAN)
}

fn max_abs(t: &Tensor) -> f64 {
    f64::try_from(t.abs().max()).unwrap_or(f64::NAN)
}

/// The minimum of the cubic through `(x1, f1)` and `(x2, f2)` with slopes `g1`, `g2`, clamped to
/// `bounds` (by default the interval between the points); their midpoint when it has none.
fn cubic_interpolate(
    (x1, f1, g1): (f64, f64, f64),
    (x2, f2, g2): (f64, f64, f64),
    bounds: Option<(f64, f64)>,
) -> f64 {
    let (xmin_bound, xmax_bound) = bounds.unwrap_or(if x1 <= x2 { (x1, x2) } else { (x2, x1) });
    let d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2);
    let d2_square = d1 * d1 - g1 * g2;
    if d2_square >= 0.0 {
        let d2 = d2_square.sqrt();
        let min_pos = if x1 <= x2 {
            x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
        } else {
            x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2))
        };
        min_pos.max(xmin_bound).min(xmax_bound)
    } else {
        (xmin_bound + xmax_bound) / 2.0
    }
}

/// A point of the line search: step length, loss, gradient and directional derivative.
struct Point {
    t: f64,
    f: f64,
    g: Tensor,
    gtd: f64,
}

impl Point {
    fn copy(&self) -> Self {
        Point {
            t: self.t,
            f: self.f,
            g: self.g.shallow_clone(),
            gtd: self.gtd,
        }
    }
}

struct Found {
    loss: f64,
    grad: Tensor,
    t: f64,
    evaluations: u64,
}

/// `torch.optim.lbfgs._strong_wolfe` (c1 = 1e-4, c2 = 0.9): `objective(t, d)` evaluates at
/// `x₀ + t·d`. Gradients are fresh tensors per evaluation, so keeping them needs no clone.
#[allow(clippy::too_many_arguments)]
fn strong_wolfe<E>(
    objective: &mut impl FnMut(f64, &Tensor) -> Result<Evaluation, E>,
    mut t: f64,
    d: &Tensor,
    f: f64,
    g: &Tensor,
    gtd: f64,
    max_ls: u64,
    tolerance_change: f64,
) -> Result<Found, E> {
    const C1: f64 = 1e-4;
    const C2: f64 = 0.9;
    let d_norm = max_abs(d);
    let g = g.copy();
    let (mut f_new, mut g_new) = objective(t, d)?;
    let mut evaluations = 1;
    let mut gtd_new = dot(&g_new, d);

    let mut prev = Point {
        t: 0.0,
        f,
        g: g.shallow_clone(),
        gtd,
    };
    let mut done = false;
    let mut ls_iter = 0;
    let mut bracket: Vec<Point> = Vec::new();
    while ls_iter < max_ls {
        let new = || Point {
            t,
            f: f_new,
            g: g_new.shallow_clone(),
            gtd: gtd_new,
        };
        if f_new > f + C1 * t * gtd || (ls_iter > 1 && f_new >= prev.f) {
            bracket = vec![prev.copy(), new()];
            break;
        }
        if gtd_new.abs() <= -C2 * gtd {
            bracket = vec![new()];
            done = true;
            break;
        }
        if gtd_new >= 0.0 {
            bracket = vec![prev.copy(), new()];
            break;
        }
        let min_step = t + 0.01 * (t - prev.t);
        let max_step = t * 10.0;
        let tmp = t;
        t = cubic_interpolate(
            (prev.t, prev.f, prev.gtd),
            (t, f_new, gtd_new),
            Some((min_step, max_step)),
        );
        prev = Point {
            t: tmp,
            f: f_new,
            g: g_new.shallow_clone(),
            gtd: gtd_new,
        };
        (f_new, g_new) = objective(t, d)?;
        evaluations += 1;
        gtd_new = dot(&g_new, d);
        ls_iter += 1;
    }
    if ls_iter == max_ls {
        // PyTorch leaves the slopes of this bracket unset; the zoom below never runs then.
        bracket = vec![
            Point {
                t: 0.0,
                f,
                g: g.shallow_clone(),
                gtd,
            },
            Point {
                t,
                f: f_new,
                g: g_new.shallow_clone(),
                gtd: gtd_new,
            },
        ];
    }

    let mut insuf_progress = false;
    let order = |b: &[Point]| {
        if b[0].f <= b[b.len() - 1].f {
            (0, 1)
        } else {
            (1, 0)
        }
    };
    let (mut low, mut high) = order(&bracket);
    while !done && ls_iter < max_ls {
        if (bracket[1].t - bracket[0].t).abs() * d_norm < tolerance_change {
            break;
        }
        t = cubic_interpolate(
            (bracket[0].t, bracket[0].f, bracket[0].gtd),
            (bracket[1].t, bracket[1].f, bracket[1].gtd),
            None,
        );
        let b_max = bracket[0].t.max(bracket[1].t);
        let b_min = bracket[0].t.min(bracket[1].t);
        let eps = 0.1 * (b_max - b_min);
        if (b_max - t).min(t - b_min) < eps {
            if insuf_progress || t >= b_max || t <= b_min {
                t = if (t - b_max).abs() < (t - b_min).abs() {
                    b_max - eps
                } else {
                    b_min + eps
                };
                insuf_progress = false;
            } else {
                insuf_progress = true;
            }
        } else {
            insuf_progress = false;
        }

        (f_new, g_new) = objective(t, d)?;
        evaluations += 1;
        gtd_new = dot(&g_new, d);
        ls_iter += 1;
        let new = Point {
            t,
            f: f_new,
            g: g_new.shallow_clone(),
            gtd: gtd_new,
        };

        if f_new > f + C1 * t * gtd || f_new >= bracket[low].f {
            bracket[high] = new;
            (low, high) = order(&bracket);
        } else {
            if gtd_new.abs() <= -C2 * gtd {
                done = true;
            } else if gtd_new * (bracket[high].t - bracket[low].t) >= 0.0 {
                bracket[high] = bracket[low].copy();
            }
            bracket[low] = new;
        }
    }
    let best = &bracket[low];
    Ok(Found {
        loss: best.f,
        grad: best.g.shallow_clone(),
        t: best.t,
        evaluations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// The Rosenbrock function (in two dimensions it has no local minimum but (1, 1)).
    fn rosenbrock(x: &Tensor) -> Result<Evaluation, std::convert::Infallible> {
        let x = x.detach().set_requires_grad(true);
        let n = x.size()[0];
        let head = x.narrow(0, 0, n - 1);
        let tail = x.narrow(0, 1, n - 1);
        let value =
            ((&tail - head.square()).square() * 100.0 + (-&head + 1.0).square()).sum(x.kind());
        let grad = Tensor::run_backward(&[&value], &[&x], false, false).remove(0);
        Ok((f64::try_from(&value).unwrap(), grad))
    }

    #[test]
    fn minimises_rosenbrock_with_and_without_line_search() {
        for line_search in [LineSearch::None, LineSearch::StrongWolfe] {
            let x = Tensor::from_slice(&[-1.2f64, 1.0]).to_device(Device::Cpu);
            let lr = if line_search == LineSearch::None {
                0.1
            } else {
                1.0
            };
            let mut lbfgs = Lbfgs::new(LbfgsOptions {
                lr,
                max_iter: 500,
                max_eval: Some(2000),
                line_search,
                ..Default::default()
            });
            let report = lbfgs.step(&x, rosenbrock).unwrap();
            let (value, _) = rosenbrock(&x).unwrap();
            assert!(value < 1e-6, "{line_search:?}: {value} after {report:?}");
        }
    }

    #[test]
    fn cubic_interpolation_finds_the_minimum_of_a_cubic() {
        // f(x) = x³ − 3x has its local minimum at 1: f(0) = 0, f'(0) = −3, f(2) = 2, f'(2) = 9.
        let t = cubic_interpolate((0.0, 0.0, -3.0), (2.0, 2.0, 9.0), None);
        assert!((t - 1.0).abs() < 1e-12, "{t}");
    }
}
