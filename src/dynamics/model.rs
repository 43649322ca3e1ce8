//! One noise abstraction for all eight dynamics: a shape source, a scale rule and a
//! refresh interval (METHOD.md §2, §4.1, §4.3).

use super::{DynamicsKind, NoiseShape};
use crate::estimators::covariance::GradientCovariance;
use crate::estimators::AtPoint;
use crate::objective::Objective;
use crate::rng::{self, Purpose};
use crate::Result;
use nalgebra::DMatrix;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

/// How big GLD noise is (config `noise.magnitude`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Magnitude {
    /// Norm matching to SGD (Eq. 5–6): E‖n‖² = η²·Tr C_m, C_m ≈ Σ/m.
    #[default]
    MatchSgd,
    /// Every GLD noise rescaled to E‖n‖² = `noise.total_variance` (the toy, METHOD.md §4.1).
    Fixed,
}

/// Where noise lives (config `noise.units`). `parameter`: θ ← θ − η·g0 + n (METHOD.md §2).
/// `gradient`: θ ← θ − η(g0 + ε), n = η·ε (the released code's FashionMNIST convention,
/// METHOD.md §4.3), so fixed magnitudes (σ, `total_variance`) are in gradient units and get
/// multiplied by η. Norm-matched noise is identical in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Units {
    #[default]
    Parameter,
    Gradient,
}

/// How Σ_t is estimated (config `noise.covariance`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CovarianceSource {
    /// Exact per-sample gradients, Eq. 1 (1/N).
    #[default]
    PerSample,
    /// K = N/m minibatch gradients of a random partition, 1/(K − 1) (METHOD.md §2, §4.3).
    Minibatches,
}

/// What the noise's covariance shape is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShapeSource {
    /// GD: no noise.
    None,
    /// SGD: a real minibatch, n = η(g0 − g_B).
    Minibatch,
    /// N(0, I)
    Isotropic,
    /// N(0, diag Σ_t)
    SigmaDiagonal,
    /// N(0, top-k of Σ_t)
    SigmaTop(usize),
    /// N(0, top-k of H_t); k = 1 is GLD 1st eigvec(H).
    HessianTop(usize),
}

/// How the shape is scaled into the parameter noise n = s·z.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScaleRule {
    /// No scaling: GD's zero noise, SGD's real minibatch.
    None,
    /// s = η on the top-k of C_m: GLD leading as SGD's own noise, not rescaled.
    Natural,
    /// E‖n‖² = η²·Tr C_m.
    MatchSgd,
    /// E‖n‖² = total_variance (× η² in gradient units).
    Fixed { total_variance: f64 },
    /// s = σ (× η in gradient units) on N(0, I): GLD const.
    Const { sigma: f64 },
}

/// Everything that defines one dynamics' noise; built from the config by
/// [`crate::config::NoiseConfig::spec`].
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseSpec {
    pub kind: DynamicsKind,
    pub eta: f64,
    /// m: SGD's batch size and the normaliser of C_m = Σ/m.
    pub batch_size: usize,
    pub units: Units,
    pub covariance: CovarianceSource,
    pub shape: ShapeSource,
    pub scale: ScaleRule,
    /// The shape and its scale are recomputed every `refresh` iterations; a fresh
    /// draw is made every iteration.
    pub refresh: usize,
}

impl NoiseSpec {
    /// A rough cost of one iteration on `samples` training samples, in full-batch
    /// gradients, for running the costliest trajectories first. The step's gradient (a
    /// minibatch's for SGD) plus the refresh's work spread over `refresh` iterations: Σ
    /// from one pass of gradients, top-k of H from about 2k + 8 warm-started
    /// Hessian-vector products of 1.25 gradients each (docs/BENCHMARKS.md: at the
    /// protocol's settings this ranks the dynamics as their measured iterations do).
    pub fn iteration_cost(&self, samples: usize) -> f64 {
        let step = match self.shape {
            ShapeSource::Minibatch => self.batch_size as f64 / samples.max(1) as f64,
            _ => 1.0,
        };
        let sigma = matches!(
            self.shape,
            ShapeSource::SigmaDiagonal | ShapeSource::SigmaTop(_)
        ) || self.scale == ScaleRule::MatchSgd;
        let sigma_cost = match self.covariance {
            CovarianceSource::Minibatches => 1.0,
            // Per-sample gradients: one pass, more memory traffic than a batch's.
            CovarianceSource::PerSample => 2.0,
        };
        let mut refresh = if sigma { sigma_cost } else { 0.0 };
        if let ShapeSource::HessianTop(k) = self.shape {
            refresh += (2 * k + 8) as f64 * 1.25;
        }
        step + refresh / self.refresh.max(1) as f64
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Active {
    shape: NoiseShape,
    scale: f64,
}

/// Everything a [`NoiseModel`] carries from one iteration to the next: its RNG streams
/// (key, stream, position) and its current factor. With the spec and θ, exactly what a
/// checkpoint needs to continue a trajectory bit for bit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseState {
    rng: ChaCha12Rng,
    metrics_rng: ChaCha12Rng,
    active: Option<Active>,
}

impl NoiseState {
    /// The same state carrying `shape` scaled by `scale` as its current factor (what a
    /// refresh leaves behind); for building checkpoints of a known size.
    pub fn with_factor(mut self, shape: NoiseShape, scale: f64) -> Self {
        self.active = Some(Active { shape, scale });
        self
    }
}

/// The noise of one dynamics along one trajectory, with its own RNG stream.
pub struct NoiseModel {
    spec: NoiseSpec,
    /// Drives the trajectory: noise draws, SGD batches, Σ partitions at refreshes.
    rng: ChaCha12Rng,
    /// Only for estimates made for metrics, so that how often metrics are taken never
    /// changes the trajectory.
    metrics_rng: ChaCha12Rng,
    active: Option<Active>,
}

impl NoiseModel {
    /// The noise of `spec.kind` in replicate `replicate` of a run seeded `master_seed`.
    pub fn new(spec: NoiseSpec, master_seed: u64, replicate: u64) -> Self {
        NoiseModel {
            rng: rng::stream(master_seed, replicate, Purpose::Dynamics(spec.kind)),
            metrics_rng: rng::stream(master_seed, replicate, Purpose::Metrics(spec.kind)),
            spec,
            active: None,
        }
    }

    pub fn spec(&self) -> &NoiseSpec {
        &self.spec
    }

    pub fn state(&self) -> NoiseState {
        NoiseState {
            rng: self.rng.clone(),
            metrics_rng: self.metrics_rng.clone(),
            active: self.active.clone(),
        }
    }

    /// Continues a noise from a checkpointed state.
    pub fn restore(spec: NoiseSpec, state: NoiseState) -> Self {
        NoiseModel {
            spec,
            rng: state.rng,
            metrics_rng: state.metrics_rng,
            active: state.active,
        }
    }

    fn units_factor(&self) -> f64 {
        match self.spec.units {
            Units::Parameter => 1.0,
            Units::Gradient => self.spec.eta,
        }
    }

    /// The gradient the step descends: g0 for GD and every GLD variant; for SGD the
    /// minibatch gradient g_B of a uniformly drawn batch, which is
    /// θ − η·g0 + η(g0 − g_B) without paying for g0.
    pub fn descent_direction<O: Objective + ?Sized>(
        &mut self,
        at: &mut AtPoint<'_, O>,
    ) -> Result<Vec<f64>> {
        if self.spec.shape == ShapeSource::Minibatch {
            let n = at.objective().num_samples();
            let m = self.spec.batch_size.min(n);
            let batch = rand::seq::index::sample(&mut self.rng, n, m).into_vec();
            let g = at.objective().batch_gradients(at.theta(), &batch, m)?;
            return Ok(g.row(0).to_vec());
        }
        Ok(at.gradient()?.to_vec())
    }

    /// Recomputes the shape and its scale at the current point when due.
    fn refresh<O: Objective + ?Sized>(&mut self, t: usize, at: &mut AtPoint<'_, O>) -> Result<()> {
        let due = self.active.is_none() || t.is_multiple_of(self.spec.refresh.max(1));
        if !due {
            return Ok(());
        }
        let spec = self.spec.clone();
        let dim = at.objective().dim();
        let shape = match spec.shape {
            ShapeSource::None | ShapeSource::Minibatch => {
                self.active = None;
                return Ok(());
            }
            ShapeSource::Isotropic => NoiseShape::Isotropic { dim },
            ShapeSource::SigmaDiagonal => NoiseShape::Diagonal(
                at.noise_covariance(spec.covariance, spec.batch_size, &mut self.rng)?
                    .diagonal(),
            ),
            ShapeSource::SigmaTop(k) => NoiseShape::low_rank(
                at.noise_covariance(spec.covariance, spec.batch_size, &mut self.rng)?
                    .top_eigenpairs(k),
            ),
            ShapeSource::HessianTop(k) => {
                let warm = match self.active.as_ref().map(|a| &a.shape) {
                    Some(NoiseShape::LowRank(previous)) => Some(previous),
                    _ => None,
                };
                NoiseShape::low_rank(at.hessian_top(k, warm)?)
            }
        };
        let shape_trace = shape.trace();
        let per_unit = |target: f64| {
            if shape_trace > 0.0 {
                (target / shape_trace).sqrt()
            } else {
                0.0
            }
        };
        let scale = match spec.scale {
            ScaleRule::None => 0.0,
            ScaleRule::Natural => spec.eta,
            ScaleRule::MatchSgd => {
                let tr_cm = at
                    .noise_covariance(spec.covariance, spec.batch_size, &mut self.rng)?
                    .trace();
                per_unit(spec.eta * spec.eta * tr_cm)
            }
            ScaleRule::Fixed { total_variance } => self.units_factor() * per_unit(total_variance),
            ScaleRule::Const { sigma } => self.units_factor() * sigma,
        };
        self.active = Some(Active { shape, scale });
        Ok(())
    }

    /// Draws n_t for GLD variants; `None` for GD and SGD (whose noise is in its direction).
    pub fn sample<O: Objective + ?Sized>(
        &mut self,
        t: usize,
        at: &mut AtPoint<'_, O>,
    ) -> Result<Option<Vec<f64>>> {
        self.refresh(t, at)?;
        let Some(active) = &self.active else {
            return Ok(None);
        };
        let mut n = vec![0.0; at.objective().dim()];
        active.shape.add_sample(active.scale, &mut self.rng, &mut n);
        Ok(Some(n))
    }

    /// SGD's noise covariance η²·C_m at the current point, estimated on the metrics
    /// stream (never the trajectory's).
    fn sgd_noise_covariance<O: Objective + ?Sized>(
        &mut self,
        at: &mut AtPoint<'_, O>,
    ) -> Result<GradientCovariance> {
        let eta2 = self.spec.eta * self.spec.eta;
        Ok(at
            .noise_covariance(
                self.spec.covariance,
                self.spec.batch_size,
                &mut self.metrics_rng,
            )?
            .clone()
            .scaled(eta2))
    }

    /// Cov(n_t) as a dense matrix at the current point (small D: tests, the toy).
    /// SGD's is η²·C_m; GD's zero. Call after [`Self::sample`] for the same t.
    pub fn covariance_dense<O: Objective + ?Sized>(
        &mut self,
        at: &mut AtPoint<'_, O>,
    ) -> Result<DMatrix<f64>> {
        let d = at.objective().dim();
        Ok(match (&self.active, self.spec.shape) {
            (_, ShapeSource::Minibatch) => self.sgd_noise_covariance(at)?.dense(),
            (Some(a), _) => a.shape.dense(d) * (a.scale * a.scale),
            (None, _) => DMatrix::zeros(d, d),
        })
    }

    /// Tr(H_t·Cov n_t), the escaping indicator of this noise (METHOD.md §3; Fig. 1c), for a
    /// dense H. Call after [`Self::sample`] for the same t.
    pub fn tr_h_noise<O: Objective + ?Sized>(
        &mut self,
        at: &mut AtPoint<'_, O>,
        h: &DMatrix<f64>,
    ) -> Result<f64> {
        Ok(match (&self.active, self.spec.shape) {
            (_, ShapeSource::Minibatch) => self.sgd_noise_covariance(at)?.tr_h_dense(h),
            (Some(a), _) => a.scale * a.scale * a.shape.tr_h(h),
            (None, _) => 0.0,
        })
    }

    /// E‖n_t‖² of the active noise (0 for GD; SGD's is η²·Tr C_m).
    pub fn expected_sq_norm<O: Objective + ?Sized>(
        &mut self,
        at: &mut AtPoint<'_, O>,
    ) -> Result<f64> {
        Ok(match (&self.active, self.spec.shape) {
            (_, ShapeSource::Minibatch) => self.sgd_noise_covariance(at)?.trace(),
            (Some(a), _) => a.scale * a.scale * a.shape.trace(),
            (None, _) => 0.0,
        })
    }
}
