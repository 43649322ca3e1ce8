//! The two-basin toy of METHOD.md §4.1 (Fig. 1; App. C.1), closed form in f64.
//!
//! ℓ(w; x) = min{ 10(s·a)² + 100(s·b)², ‖w − x + 1‖² } with s = w − 1 − x,
//! a = (c, −s), b = (c, s), c = cos φ, s = sin φ. The first branch is the sharp basin
//! around (1, 1) with Hessian H_s = 20·aaᵀ + 200·bbᵀ; the second the flat basin around
//! (−1, −1) with Hessian 2I.

use crate::linalg::GradientMatrix;
use crate::objective::{check_batches, Objective};
use crate::Result;
use nalgebra::DMatrix;
use rand::Rng;
use rand_distr::StandardNormal;

/// Curvatures of the sharp basin along a and b (METHOD.md §4.1).
const SHARP_A: f64 = 10.0;
const SHARP_B: f64 = 100.0;

#[derive(Clone, Debug)]
pub struct Toy2d {
    samples: Vec<[f64; 2]>,
    /// a = (c, −s): the sharp basin's flatter axis.
    a: [f64; 2],
    /// b = (c, s): its sharpest axis, which points at the flat basin at φ = π/4.
    b: [f64; 2],
}

/// Which branch of the min is active for one sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basin {
    Sharp,
    Flat,
}

impl Toy2d {
    pub fn new(samples: Vec<[f64; 2]>, angle: f64) -> Self {
        let (s, c) = angle.sin_cos();
        Toy2d {
            samples,
            a: [c, -s],
            b: [c, s],
        }
    }

    /// Draws N points as the authors' released code does (METHOD.md §4.1):
    /// x = scale·(√10·z1, z2)·K, K = [[c, −s], [s, c]] (row vector times matrix), so
    /// Cov(x) = scale²·(10·aaᵀ + bbᵀ) = 0.02·H_s⁻¹ at scale 0.01.
    pub fn draw_samples<R: Rng>(n: usize, scale: f64, angle: f64, rng: &mut R) -> Vec<[f64; 2]> {
        let (s, c) = angle.sin_cos();
        (0..n)
            .map(|_| {
                let z1: f64 = rng.sample(StandardNormal);
                let z2: f64 = rng.sample(StandardNormal);
                let (u1, u2) = (scale * 10f64.sqrt() * z1, scale * z2);
                [u1 * c + u2 * s, -u1 * s + u2 * c]
            })
            .collect()
    }

    pub fn samples(&self) -> &[[f64; 2]] {
        &self.samples
    }

    /// Loss, gradient and active basin of one sample.
    pub fn sample_loss_grad(&self, w: &[f64], x: &[f64; 2]) -> (f64, [f64; 2], Basin) {
        let (s1, s2) = (w[0] - 1.0 - x[0], w[1] - 1.0 - x[1]);
        let p = s1 * self.a[0] + s2 * self.a[1];
        let q = s1 * self.b[0] + s2 * self.b[1];
        let sharp = SHARP_A * p * p + SHARP_B * q * q;
        let (r1, r2) = (w[0] - x[0] + 1.0, w[1] - x[1] + 1.0);
        let flat = r1 * r1 + r2 * r2;
        if sharp <= flat {
            let (gp, gq) = (2.0 * SHARP_A * p, 2.0 * SHARP_B * q);
            let g = [
                gp * self.a[0] + gq * self.b[0],
                gp * self.a[1] + gq * self.b[1],
            ];
            (sharp, g, Basin::Sharp)
        } else {
            (flat, [2.0 * r1, 2.0 * r2], Basin::Flat)
        }
    }

    /// H_s = 2·10·aaᵀ + 2·100·bbᵀ.
    pub fn sharp_hessian(&self) -> DMatrix<f64> {
        let (a, b) = (self.a, self.b);
        let mut h = DMatrix::zeros(2, 2);
        for i in 0..2 {
            for j in 0..2 {
                h[(i, j)] = 2.0 * SHARP_A * a[i] * a[j] + 2.0 * SHARP_B * b[i] * b[j];
            }
        }
        h
    }

    /// Fraction of samples whose sharp branch is active at w.
    pub fn sharp_fraction(&self, w: &[f64]) -> f64 {
        let sharp = self
            .samples
            .iter()
            .filter(|x| self.sample_loss_grad(w, x).2 == Basin::Sharp)
            .count();
        sharp as f64 / self.samples.len() as f64
    }
}

impl Objective for Toy2d {
    fn dim(&self) -> usize {
        2
    }

    fn num_samples(&self) -> usize {
        self.samples.len()
    }

    fn loss_and_gradient(&self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        let n = self.samples.len() as f64;
        let (mut loss, mut g) = (0.0, [0.0; 2]);
        for x in &self.samples {
            let (l, gi, _) = self.sample_loss_grad(theta, x);
            loss += l;
            g[0] += gi[0];
            g[1] += gi[1];
        }
        Ok((loss / n, vec![g[0] / n, g[1] / n]))
    }

    fn batch_gradients(
        &self,
        theta: &[f64],
        indices: &[usize],
        batch_size: usize,
    ) -> Result<GradientMatrix> {
        check_batches(indices, batch_size, self.samples.len())?;
        let mut out = GradientMatrix::zeros(indices.len() / batch_size, 2);
        for (k, batch) in indices.chunks_exact(batch_size).enumerate() {
            let row = out.row_mut(k);
            for &i in batch {
                let (_, g, _) = self.sample_loss_grad(theta, &self.samples[i]);
                row[0] += g[0] / batch_size as f64;
                row[1] += g[1] / batch_size as f64;
            }
        }
        Ok(out)
    }

    fn per_sample_gradients(&self, theta: &[f64]) -> Result<GradientMatrix> {
        let mut out = GradientMatrix::zeros(self.samples.len(), 2);
        for (k, x) in self.samples.iter().enumerate() {
            out.row_mut(k)
                .copy_from_slice(&self.sample_loss_grad(theta, x).1);
        }
        Ok(out)
    }

    fn hvp(&self, theta: &[f64], v: &[f64]) -> Result<Vec<f64>> {
        let h = self.hessian(theta)?;
        Ok(vec![
            h[(0, 0)] * v[0] + h[(0, 1)] * v[1],
            h[(1, 0)] * v[0] + h[(1, 1)] * v[1],
        ])
    }

    /// The mean of the active branches' Hessians (the min is piecewise quadratic).
    fn hessian(&self, theta: &[f64]) -> Result<DMatrix<f64>> {
        let sharp = self.sharp_fraction(theta);
        Ok(self.sharp_hessian() * sharp + DMatrix::identity(2, 2) * (2.0 * (1.0 - sharp)))
    }
}
