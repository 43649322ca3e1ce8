//! One hidden layer with a fixed output layer (METHOD.md §4.2; Fig. 2, Props. 4–5):
//! f(x) = vᵀ·relu(W·x + b), v fixed (not trained), y ∈ {−1, +1}. Computed with candle on
//! the CPU in f64. Two readings of the details (METHOD.md §4.2):
//! - ours (default): v_j = ±1/√h alternating, logistic loss ℓ = log(1 + e^{−y·f});
//! - the authors' released code: v = +1 on the first half of the units and −1 on the
//!   rest, squared loss of the output clipped to [1e-3, 1 − 1e-3] against the 0/1 label:
//!   ℓ = (clip(f) − (1 + y)/2)².
//!
//! θ order (PyTorch's `named_parameters()` of `Linear(2, h)`): `hidden.weight` (h × 2,
//! row-major: out × in), then `hidden.bias` (h). D = 3h.
//!
//! Per-sample gradients come from one batched pass, as BackPACK does for linear layers:
//! the gradient δ_i = ∂ℓ_i/∂z_i at the pre-activations (one backward pass of Σ_i ℓ_i)
//! and the layer inputs x_i give ∂ℓ_i/∂W = δ_i x_iᵀ and ∂ℓ_i/∂b = δ_i.
//!
//! The network is piecewise linear in θ (relu'' = 0 almost everywhere), so its Hessian
//! is exactly the Gauss–Newton matrix H = (1/N)·Σ_i ℓ''(f_i)·∇f_i∇f_iᵀ; the HVP uses
//! that form, without materialising the N × D Jacobian.

use crate::linalg::GradientMatrix;
use crate::objective::{check_batches, check_len, Objective};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::Rng;
use std::sync::Mutex;

fn candle(e: candle_core::Error) -> Error {
    Error::Numerics(format!("candle: {e}"))
}

/// Binary, linearly separable 2-D points (METHOD.md §4.2 defaults): uniform in [−1, 1]²,
/// labelled by the side of a random line through the origin, points closer to it than
/// `margin` redrawn.
#[derive(Clone, Debug, PartialEq)]
pub struct SeparableData {
    pub x: Vec<[f64; 2]>,
    /// ±1
    pub y: Vec<f64>,
}

impl SeparableData {
    pub fn draw<R: Rng>(n: usize, margin: f64, rng: &mut R) -> Self {
        let angle: f64 = rng.random_range(0.0..std::f64::consts::PI);
        let normal = [angle.cos(), angle.sin()];
        let (mut x, mut y) = (Vec::with_capacity(n), Vec::with_capacity(n));
        while x.len() < n {
            let p = [rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0)];
            let side = p[0] * normal[0] + p[1] * normal[1];
            if side.abs() > margin {
                x.push(p);
                y.push(side.signum());
            }
        }
        SeparableData { x, y }
    }
}

/// The fixed output weights v.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputWeights {
    /// ±1/√h alternating (ours).
    #[default]
    Scaled,
    /// +1 on the first ⌈h/2⌉ units, −1 on the rest (the released code).
    Unit,
}

/// The per-sample loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputLoss {
    /// log(1 + e^{−y·f})
    #[default]
    Logistic,
    /// (clip(f, 1e-3, 1 − 1e-3) − (1 + y)/2)²
    ClippedSquared,
}

/// The clipping range of [`OutputLoss::ClippedSquared`].
const CLIP: (f64, f64) = (1e-3, 1.0 - 1e-3);

impl SeparableData {
    /// The released code's data: uniform in [−2, 2]², label +1 where x₁ ≥ x₂.
    pub fn draw_diagonal<R: Rng>(n: usize, rng: &mut R) -> Self {
        let x: Vec<[f64; 2]> = (0..n)
            .map(|_| [rng.random_range(-2.0..2.0), rng.random_range(-2.0..2.0)])
            .collect();
        let y = x
            .iter()
            .map(|p| if p[0] >= p[1] { 1.0 } else { -1.0 })
            .collect();
        SeparableData { x, y }
    }
}

pub struct OneHidden {
    width: usize,
    loss: OutputLoss,
    /// N × 2
    x: Tensor,
    /// N
    y: Tensor,
    /// h: the fixed output weights, ±1/√h alternating.
    v: Tensor,
    n: usize,
    /// The θ-dependent factors of the HVP (m and c = ℓ''/N), kept for the last θ: a
    /// Tr(HΣ) or Hutchinson estimate makes many HVPs at one θ.
    hvp_factors: Mutex<Option<(Vec<f64>, Tensor, Tensor)>>,
}

impl OneHidden {
    /// Our reading of METHOD.md §4.2: scaled output weights, logistic loss.
    pub fn new(data: &SeparableData, width: usize) -> Result<Self> {
        Self::with(data, width, OutputWeights::Scaled, OutputLoss::Logistic)
    }

    pub fn with(
        data: &SeparableData,
        width: usize,
        output: OutputWeights,
        loss: OutputLoss,
    ) -> Result<Self> {
        let n = data.x.len();
        if n == 0 || width == 0 || data.y.len() != n {
            return Err(Error::Numerics(format!(
                "one_hidden: need samples and a width (N = {n}, labels {}, h = {width})",
                data.y.len()
            )));
        }
        let dev = Device::Cpu;
        let flat: Vec<f64> = data.x.iter().flatten().copied().collect();
        let v: Vec<f64> = match output {
            OutputWeights::Scaled => {
                let s = 1.0 / (width as f64).sqrt();
                (0..width)
                    .map(|j| if j % 2 == 0 { s } else { -s })
                    .collect()
            }
            OutputWeights::Unit => (0..width)
                .map(|j| if j < width.div_ceil(2) { 1.0 } else { -1.0 })
                .collect(),
        };
        Ok(OneHidden {
            width,
            loss,
            x: Tensor::from_vec(flat, (n, 2), &dev).map_err(candle)?,
            y: Tensor::from_vec(data.y.clone(), n, &dev).map_err(candle)?,
            v: Tensor::from_vec(v, width, &dev).map_err(candle)?,
            n,
            hvp_factors: Mutex::new(None),
        })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// PyTorch's default initialisation of `Linear(2, h)`: weight and bias uniform in
    /// ±1/√fan_in = ±1/√2.
    pub fn init_theta<R: Rng>(width: usize, rng: &mut R) -> Vec<f64> {
        let bound = 1.0 / 2f64.sqrt();
        (0..3 * width)
            .map(|_| rng.random_range(-bound..bound))
            .collect()
    }

    fn params(&self, theta: &[f64]) -> Result<(Var, Var)> {
        check_len("one_hidden", "θ", theta.len(), 3 * self.width)?;
        let (w, b) = theta.split_at(2 * self.width);
        let dev = Device::Cpu;
        Ok((
            Var::from_tensor(&Tensor::from_slice(w, (self.width, 2), &dev).map_err(candle)?)
                .map_err(candle)?,
            Var::from_tensor(&Tensor::from_slice(b, self.width, &dev).map_err(candle)?)
                .map_err(candle)?,
        ))
    }

    /// Pre-activations z = x·Wᵀ + b and per-sample losses of the rows `x`, `y`.
    fn forward(
        &self,
        w: &Tensor,
        b: &Tensor,
        x: &Tensor,
        y: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let z = x.matmul(&w.t()?)?.broadcast_add(b)?;
        let (f, loss) = self.head(&z, y)?;
        Ok((z, f, loss))
    }

    /// Outputs f and per-sample losses from the pre-activations.
    fn head(&self, z: &Tensor, y: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let f = z.relu()?.matmul(&self.v.unsqueeze(1)?)?.squeeze(1)?;
        let loss = match self.loss {
            OutputLoss::Logistic => {
                // softplus(s) = max(s, 0) + log(1 + e^{−|s|}), s = −y·f: stable for any f.
                let s = y.mul(&f)?.neg()?;
                s.relu()?.add(&(s.abs()?.neg()?.exp()? + 1.0)?.log()?)?
            }
            OutputLoss::ClippedSquared => {
                let target = y.affine(0.5, 0.5)?;
                f.clamp(CLIP.0, CLIP.1)?.sub(&target)?.sqr()?
            }
        };
        Ok((f, loss))
    }

    fn rows(&self, indices: &[usize]) -> Result<(Tensor, Tensor)> {
        let idx: Vec<u32> = indices.iter().map(|&i| i as u32).collect();
        let idx = Tensor::from_vec(idx, indices.len(), &Device::Cpu).map_err(candle)?;
        Ok((
            self.x.index_select(&idx, 0).map_err(candle)?,
            self.y.index_select(&idx, 0).map_err(candle)?,
        ))
    }
}

impl OneHidden {
    /// Fraction of samples on the right side: sign f(x_i) = y_i.
    pub fn accuracy(&self, theta: &[f64]) -> Result<f64> {
        let (w, b) = self.params(theta)?;
        let (_, f, _) = self
            .forward(w.as_tensor(), b.as_tensor(), &self.x, &self.y)
            .map_err(candle)?;
        // The decision threshold: f = 0 for the logistic loss, 1/2 for the 0/1 targets.
        let threshold = match self.loss {
            OutputLoss::Logistic => 0.0,
            OutputLoss::ClippedSquared => 0.5,
        };
        let right = f
            .affine(1.0, -threshold)
            .and_then(|t| t.mul(&self.y))
            .and_then(|t| t.gt(0.0))
            .and_then(|t| t.to_dtype(DType::F64))
            .and_then(|t| t.mean_all())
            .and_then(|t| t.to_scalar::<f64>())
            .map_err(candle)?;
        Ok(right)
    }
}

impl Objective for OneHidden {
    fn dim(&self) -> usize {
        3 * self.width
    }

    fn num_samples(&self) -> usize {
        self.n
    }

    fn loss_and_gradient(&self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        let (w, b) = self.params(theta)?;
        let (_, _, loss) = self.forward(&w, &b, &self.x, &self.y).map_err(candle)?;
        let mean = loss.mean_all().map_err(candle)?;
        let grads = mean.backward().map_err(candle)?;
        let mut g = Vec::with_capacity(self.dim());
        for p in [w.as_tensor(), b.as_tensor()] {
            let gp = grads
                .get(p)
                .ok_or_else(|| Error::Numerics("one_hidden: no gradient".into()))?;
            g.extend(
                gp.flatten_all()
                    .and_then(|t| t.to_vec1::<f64>())
                    .map_err(candle)?,
            );
        }
        Ok((mean.to_scalar::<f64>().map_err(candle)?, g))
    }

    fn batch_gradients(
        &self,
        theta: &[f64],
        indices: &[usize],
        batch_size: usize,
    ) -> Result<GradientMatrix> {
        check_batches(indices, batch_size, self.n)?;
        let (w, b) = self.params(theta)?;
        let (x, y) = self.rows(indices)?;
        // The pre-activations as a leaf: one backward pass of Σ_i ℓ_i from there gives
        // δ_i = ∂ℓ_i/∂z_i for every sample at once (candle keeps leaf gradients only).
        let z = x
            .matmul(&w.as_tensor().t().map_err(candle)?)
            .and_then(|t| t.broadcast_add(b.as_tensor()))
            .and_then(|t| Var::from_tensor(&t))
            .map_err(candle)?;
        let (_, loss) = self.head(z.as_tensor(), &y).map_err(candle)?;
        let grads = loss.sum_all().and_then(|s| s.backward()).map_err(candle)?;
        let delta = grads
            .get(z.as_tensor())
            .ok_or_else(|| {
                Error::Numerics("one_hidden: no gradient at the pre-activations".into())
            })?
            .to_vec2::<f64>()
            .map_err(candle)?;
        let xs = x.to_vec2::<f64>().map_err(candle)?;
        let h = self.width;
        let mut out = GradientMatrix::zeros(indices.len() / batch_size, self.dim());
        let inv = 1.0 / batch_size as f64;
        for (i, (d, xi)) in delta.iter().zip(&xs).enumerate() {
            let row = out.row_mut(i / batch_size);
            for j in 0..h {
                row[2 * j] += inv * d[j] * xi[0];
                row[2 * j + 1] += inv * d[j] * xi[1];
                row[2 * h + j] += inv * d[j];
            }
        }
        Ok(out)
    }

    fn hvp(&self, theta: &[f64], vec: &[f64]) -> Result<Vec<f64>> {
        check_len("one_hidden", "HVP vector", vec.len(), self.dim())?;
        let (w, b) = self.params(theta)?;
        let h = self.width;
        let dev = Device::Cpu;
        let factors = || -> candle_core::Result<(Tensor, Tensor)> {
            let (z, f, _) = self.forward(w.as_tensor(), b.as_tensor(), &self.x, &self.y)?;
            // m_ij = v_j·1[z_ij > 0]: ∂f_i/∂W_j = m_ij·x_i, ∂f_i/∂b_j = m_ij.
            let m = z
                .gt(0.0)?
                .to_dtype(DType::F64)?
                .broadcast_mul(&self.v.unsqueeze(0)?)?;
            let curv = match self.loss {
                // ℓ'' of softplus(−y f) in f: σ(y f)·σ(−y f) = σ(f)·σ(−f).
                OutputLoss::Logistic => {
                    let sig = (f.neg()?.exp()? + 1.0)?.recip()?;
                    sig.mul(&sig.affine(-1.0, 1.0)?)?
                }
                // 2 inside the clipping range, 0 where the clip is active.
                OutputLoss::ClippedSquared => f
                    .gt(CLIP.0)?
                    .mul(&f.lt(CLIP.1)?)?
                    .to_dtype(DType::F64)?
                    .affine(2.0, 0.0)?,
            }
            .affine(1.0 / self.n as f64, 0.0)?;
            Ok((m, curv))
        };
        let (m, curv) = {
            let mut cache = self.hvp_factors.lock().unwrap_or_else(|p| p.into_inner());
            match cache.as_ref() {
                Some((t, m, c)) if t.as_slice() == theta => (m.clone(), c.clone()),
                _ => {
                    let (m, c) = factors().map_err(candle)?;
                    *cache = Some((theta.to_vec(), m.clone(), c.clone()));
                    (m, c)
                }
            }
        };
        let run = || -> candle_core::Result<Vec<f64>> {
            let vw = Tensor::from_slice(&vec[..2 * h], (h, 2), &dev)?;
            let vb = Tensor::from_slice(&vec[2 * h..], h, &dev)?;
            // s_i = ∇f_i · vec
            let s = m
                .mul(&self.x.matmul(&vw.t()?)?.broadcast_add(&vb)?)?
                .sum(1)?;
            let c = curv.mul(&s)?;
            let cm = m.broadcast_mul(&c.unsqueeze(1)?)?;
            let hw = cm.t()?.matmul(&self.x)?.flatten_all()?.to_vec1::<f64>()?;
            let hb = cm.sum(0)?.to_vec1::<f64>()?;
            Ok(hw.into_iter().chain(hb).collect())
        };
        run().map_err(candle)
    }
}
