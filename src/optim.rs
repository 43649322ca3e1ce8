//! Adam (Kingma & Ba 2015) with PyTorch's defaults, for the authors' released
//! one-hidden-layer recipe (docs/METHOD.md §4.2), which trains by full-batch Adam instead of SGD.

/// PyTorch's `torch.optim.Adam` defaults.
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPSILON: f64 = 1e-8;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adam {
    m: Vec<f64>,
    v: Vec<f64>,
    steps: i32,
}

impl Adam {
    pub fn new(dim: usize) -> Self {
        Adam {
            m: vec![0.0; dim],
            v: vec![0.0; dim],
            steps: 0,
        }
    }

    /// θ ← θ − lr·m̂/(√v̂ + ε) with bias-corrected first and second moments of `grad`.
    pub fn step(&mut self, theta: &mut [f64], grad: &[f64], lr: f64) {
        self.steps += 1;
        let c1 = 1.0 - BETA1.powi(self.steps);
        let c2 = 1.0 - BETA2.powi(self.steps);
        for (((t, g), m), v) in theta.iter_mut().zip(grad).zip(&mut self.m).zip(&mut self.v) {
            *m = BETA1 * *m + (1.0 - BETA1) * g;
            *v = BETA2 * *v + (1.0 - BETA2) * g * g;
            *t -= lr * (*m / c1) / ((*v / c2).sqrt() + EPSILON);
        }
    }
}

/// The learning rate of step `t` of `total`: constant, then decaying linearly to zero
/// over the last `decay_last` steps (the released recipe: 310 steps, the last 100
/// decaying).
pub fn linear_decay(lr: f64, t: usize, total: usize, decay_last: usize) -> f64 {
    let start = total.saturating_sub(decay_last);
    if decay_last == 0 || t < start {
        lr
    } else {
        lr * (total - t) as f64 / decay_last as f64
    }
}
