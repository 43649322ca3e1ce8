//! A [`Network`] trained on a set of labelled images with the mean cross-entropy
//! L(θ) = (1/N)·Σ_i ℓ_i(θ) (METHOD.md §1): the [`Objective`] of the FashionMNIST and CIFAR-10
//! experiments.
//!
//! - Full-batch gradient: one backward pass (in chunks of samples to bound memory).
//! - Per-sample and minibatch gradient matrices: one forward and one backward pass of
//!   Σ_i ℓ_i with zero probes on every layer's pre-activations (BackPACK's recipe): a
//!   layer's gradient for a group B of samples is Σ_{i∈B} δ_iᵀ·a_i, with δ_i the
//!   back-propagated output gradient and a_i the layer input (its im2col patches for a
//!   convolution) — a batched matrix product per layer instead of N passes.
//! - Exact Hessian-vector products by double backprop: H·v = ∇_θ(∇_θL · v).

use super::network::{
    candle, cross_entropy, im2col, second_order_available, second_order_error, Architecture, Layer,
    Network,
};
use crate::data::ImageSet;
use crate::linalg::GradientMatrix;
use crate::objective::{check_batches, check_len, check_range, Objective};
use crate::{Error, Result};
use candle_core::{DType, Tensor, Var};
use std::ops::Range;

/// Mean loss and accuracy of θ on a set of images.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
}

/// What the image-classification experiments ask of a model besides the [`Objective`]:
/// the kernels ([`NativeClassifier`](super::native::NativeClassifier)) and candle's
/// [`Classifier`] (CPU or CUDA) both offer it.
pub trait ImageModel: Objective {
    fn arch(&self) -> &Architecture;

    /// Mean loss and accuracy of θ on a set of images (e.g. the test set).
    fn evaluate(&self, theta: &[f64], data: &ImageSet) -> Result<Evaluation>;
}

impl ImageModel for Classifier {
    fn arch(&self) -> &Architecture {
        &self.net.arch
    }

    fn evaluate(&self, theta: &[f64], data: &ImageSet) -> Result<Evaluation> {
        Classifier::evaluate(self, theta, data)
    }
}

impl<T: crate::kernels::Float> ImageModel for super::native::NativeClassifier<T> {
    fn arch(&self) -> &Architecture {
        super::native::NativeClassifier::arch(self)
    }

    fn evaluate(&self, theta: &[f64], data: &ImageSet) -> Result<Evaluation> {
        super::native::NativeClassifier::evaluate(self, theta, data)
    }
}

pub struct Classifier {
    net: Network,
    /// N × C × H × W, in the network's dtype.
    x: Tensor,
    /// N × classes, in the network's dtype.
    one_hot: Tensor,
    /// N labels (the one-hot rows' classes); N = its length.
    labels: Vec<u8>,
    /// Samples per forward/backward pass.
    chunk: usize,
}

/// Activation memory one pass may use (the graph keeps several tensors per layer).
const PASS_BYTES: usize = 1 << 30;

/// Device memory a [`Classifier`] on `n` training images needs with `passes`
/// forward/backward passes in flight at once (one per dynamics worker): the images and
/// their one-hot labels, and per pass its activation budget, its largest result (a
/// gradient matrix of `rows_of(batch_size)` groups) and a few parameter-sized tensors.
pub fn device_bytes(
    arch: &Architecture,
    dtype: DType,
    n: usize,
    batch_size: usize,
    passes: usize,
) -> u64 {
    let size = dtype.size_in_bytes() as u64;
    let (c, h, w) = arch.input;
    let data = n as u64 * (c * h * w + arch.classes) as u64 * size;
    let chunk = pass_samples(arch, dtype);
    let batch_size = batch_size.max(1);
    let rows = (chunk / batch_size).clamp(1, (n / batch_size).max(1));
    let per_pass = PASS_BYTES as u64 + (rows + 4) as u64 * arch.dim() as u64 * size;
    data + passes as u64 * per_pass
}

/// Samples per pass: what fits in [`PASS_BYTES`] (the graph keeps several tensors per
/// layer).
fn pass_samples(arch: &Architecture, dtype: DType) -> usize {
    let bytes = arch.activations_per_sample() * dtype.size_in_bytes() * 8;
    (PASS_BYTES / bytes.max(1)).max(1)
}

fn one_hot(labels: &[u8], classes: usize, net: &Network) -> Result<Tensor> {
    let mut m = vec![0f32; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        m[i * classes + l as usize] = 1.0;
    }
    Tensor::from_vec(m, (labels.len(), classes), &net.device)
        .and_then(|t| t.to_dtype(net.dtype))
        .map_err(candle)
}

fn images(data: &ImageSet, net: &Network) -> Result<Tensor> {
    let (c, h, w) = data.shape;
    Tensor::from_slice(&data.pixels, (data.len(), c, h, w), &net.device)
        .and_then(|t| t.to_dtype(net.dtype))
        .and_then(|t| t / 255.0)
        .map_err(candle)
}

pub(crate) fn check_data(arch: &Architecture, data: &ImageSet) -> Result<()> {
    if data.shape != arch.input || data.classes != arch.classes {
        return Err(Error::Numerics(format!(
            "{}: expects {} × {} × {} images in {} classes, the data has {} × {} × {} in {}",
            arch.name,
            arch.input.0,
            arch.input.1,
            arch.input.2,
            arch.classes,
            data.shape.0,
            data.shape.1,
            data.shape.2,
            data.classes
        )));
    }
    if let Some(bad) = data.labels.iter().find(|&&l| l as usize >= arch.classes) {
        return Err(Error::Numerics(format!(
            "{}: label {bad} outside 0..{}",
            arch.name, arch.classes
        )));
    }
    Ok(())
}

impl Classifier {
    pub fn new(net: Network, data: &ImageSet) -> Result<Self> {
        check_data(&net.arch, data)?;
        if data.is_empty() {
            return Err(Error::Numerics(format!(
                "{}: no training images",
                net.arch.name
            )));
        }
        Ok(Classifier {
            x: images(data, &net)?,
            one_hot: one_hot(&data.labels, net.arch.classes, &net)?,
            labels: data.labels.clone(),
            chunk: pass_samples(&net.arch, net.dtype),
            net,
        })
    }

    /// Samples per forward/backward pass (default: what fits in about 1 GiB).
    pub fn with_chunk(mut self, chunk: usize) -> Self {
        self.chunk = chunk.max(1);
        self
    }

    pub fn network(&self) -> &Network {
        &self.net
    }

    fn chunks(&self, step: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.labels.len())
            .step_by(step)
            .map(move |s| (s, step.min(self.labels.len() - s)))
    }

    /// Mean loss and accuracy on `data` (e.g. the test set).
    pub fn evaluate(&self, theta: &[f64], data: &ImageSet) -> Result<Evaluation> {
        check_data(&self.net.arch, data)?;
        if data.is_empty() {
            return Err(Error::Numerics("evaluate: no images".into()));
        }
        let params = self.net.tensors(theta)?;
        let (mut loss, mut right) = (0.0, 0usize);
        for start in (0..data.len()).step_by(self.chunk) {
            let idx: Vec<usize> = (start..(start + self.chunk).min(data.len())).collect();
            let part = data.select(&idx);
            let (l, r) = self.loss_and_right(&params, &images(&part, &self.net)?, &part.labels)?;
            loss += l;
            right += r;
        }
        Ok(Evaluation {
            loss: loss / data.len() as f64,
            accuracy: right as f64 / data.len() as f64,
        })
    }

    /// Mean loss and accuracy on the training set.
    pub fn evaluate_train(&self, theta: &[f64]) -> Result<Evaluation> {
        let params = self.net.tensors(theta)?;
        let (mut loss, mut right) = (0.0, 0usize);
        for (s, len) in self.chunks(self.chunk) {
            let x = self.x.narrow(0, s, len).map_err(candle)?;
            let (l, r) = self.loss_and_right(&params, &x, &self.labels[s..s + len])?;
            loss += l;
            right += r;
        }
        Ok(Evaluation {
            loss: loss / self.labels.len() as f64,
            accuracy: right as f64 / self.labels.len() as f64,
        })
    }

    /// Summed loss and number of correct predictions of one pass.
    fn loss_and_right(&self, params: &[Tensor], x: &Tensor, labels: &[u8]) -> Result<(f64, usize)> {
        let (logits, _) = self.net.forward(params, x, None).map_err(candle)?;
        let oh = one_hot(labels, self.net.arch.classes, &self.net)?;
        let loss = cross_entropy(&logits, &oh)
            .and_then(|l| l.sum_all())
            .and_then(|l| l.to_dtype(DType::F64))
            .and_then(|l| l.to_scalar::<f64>())
            .map_err(candle)?;
        let predicted = logits
            .argmax(1)
            .and_then(|t| t.to_vec1::<u32>())
            .map_err(candle)?;
        let right = predicted
            .iter()
            .zip(labels)
            .filter(|(p, &l)| **p == l as u32)
            .count();
        Ok((loss, right))
    }

    /// The mean loss of samples `[s, s + len)` scaled by len/N: chunks sum to L(θ).
    fn chunk_loss(&self, params: &[Tensor], s: usize, len: usize) -> candle_core::Result<Tensor> {
        let x = self.x.narrow(0, s, len)?;
        let oh = self.one_hot.narrow(0, s, len)?;
        let (logits, _) = self.net.forward(params, &x, None)?;
        cross_entropy(&logits, &oh)?.sum_all()? * (1.0 / self.labels.len() as f64)
    }

    /// Adds the gradients of `vars` in `grads` to `acc` (θ order, f64).
    fn accumulate(
        &self,
        vars: &[Var],
        grads: &candle_core::backprop::GradStore,
        acc: &mut [f64],
    ) -> Result<()> {
        for (var, p) in vars.iter().zip(self.net.arch.parameters()) {
            let g = grads
                .get(var.as_tensor())
                .ok_or_else(|| Error::Numerics(format!("no gradient for {}", p.name)))?
                .flatten_all()
                .and_then(|t| t.to_dtype(DType::F64))
                .and_then(|t| t.to_vec1::<f64>())
                .map_err(candle)?;
            for (a, gi) in acc[p.offset..p.offset + p.len()].iter_mut().zip(g) {
                *a += gi;
            }
        }
        Ok(())
    }
}

impl Objective for Classifier {
    fn dim(&self) -> usize {
        self.net.arch.dim()
    }

    fn num_samples(&self) -> usize {
        self.labels.len()
    }

    fn loss(&self, theta: &[f64]) -> Result<f64> {
        Ok(self.evaluate_train(theta)?.loss)
    }

    fn batch_loss(&self, theta: &[f64], samples: Range<usize>) -> Result<f64> {
        check_range(samples.clone(), self.num_samples())?;
        let params = self.net.tensors(theta)?;
        let mut total = 0.0;
        for start in samples.clone().step_by(self.chunk) {
            let len = self.chunk.min(samples.end - start);
            let x = self.x.narrow(0, start, len).map_err(candle)?;
            total += self
                .loss_and_right(&params, &x, &self.labels[start..start + len])?
                .0;
        }
        Ok(total / samples.len() as f64)
    }

    fn loss_and_gradient(&self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        let vars = self.net.vars(theta)?;
        let params: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let mut grad = vec![0.0; self.dim()];
        let mut loss = 0.0;
        for (s, len) in self.chunks(self.chunk) {
            let l = self.chunk_loss(&params, s, len).map_err(candle)?;
            let grads = l.backward().map_err(candle)?;
            self.accumulate(&vars, &grads, &mut grad)?;
            loss += l
                .to_dtype(DType::F64)
                .and_then(|t| t.to_scalar::<f64>())
                .map_err(candle)?;
        }
        Ok((loss, grad))
    }

    fn batch_gradients(
        &self,
        theta: &[f64],
        indices: &[usize],
        batch_size: usize,
    ) -> Result<GradientMatrix> {
        check_batches(indices, batch_size, self.labels.len())?;
        let params = self.net.tensors(theta)?;
        let groups = indices.len() / batch_size;
        let mut out = GradientMatrix::zeros(groups, self.dim());
        let groups_per_pass = (self.chunk / batch_size).max(1);
        let inv = 1.0 / batch_size as f64;
        for g0 in (0..groups).step_by(groups_per_pass) {
            let g1 = (g0 + groups_per_pass).min(groups);
            let rows = &indices[g0 * batch_size..g1 * batch_size];
            let idx = Tensor::from_vec(
                rows.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                rows.len(),
                &self.net.device,
            )
            .map_err(candle)?;
            let x = self.x.index_select(&idx, 0).map_err(candle)?;
            let oh = self.one_hot.index_select(&idx, 0).map_err(candle)?;
            let probes = self.net.probes(rows.len())?;
            let (logits, taps) = self
                .net
                .forward(&params, &x, Some(&probes))
                .map_err(candle)?;
            let grads = cross_entropy(&logits, &oh)
                .and_then(|l| l.sum_all())
                .and_then(|l| l.backward())
                .map_err(candle)?;
            let layers = self
                .net
                .arch
                .layers
                .iter()
                .filter(|l| matches!(l, Layer::Conv2d { .. } | Layer::Linear { .. }));
            let params_meta = self.net.arch.parameters();
            for (k, ((layer, probe), input)) in layers.zip(&probes).zip(&taps.inputs).enumerate() {
                let delta = grads.get(probe.as_tensor()).ok_or_else(|| {
                    Error::Numerics(format!("no output gradient at layer {layer:?}"))
                })?;
                let (wg, bg) =
                    group_gradients(layer, input, delta, g1 - g0, batch_size).map_err(candle)?;
                let (wp, bp) = (&params_meta[2 * k], &params_meta[2 * k + 1]);
                for (t, p) in [(wg, wp), (bg, bp)] {
                    let rows_g = t
                        .to_dtype(DType::F64)
                        .and_then(|t| t.to_vec2::<f64>())
                        .map_err(candle)?;
                    for (g, r) in rows_g.iter().enumerate() {
                        let row = &mut out.row_mut(g0 + g)[p.offset..p.offset + p.len()];
                        for (o, v) in row.iter_mut().zip(r) {
                            *o = v * inv;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    fn hvp_tolerance(&self) -> f64 {
        // f32 HVPs carry relative rounding of ~1e-6: a tighter residual is unreachable.
        match self.net.dtype {
            DType::F64 => 1e-8,
            _ => 1e-5,
        }
    }

    fn hvp(&self, theta: &[f64], v: &[f64]) -> Result<Vec<f64>> {
        check_len(self.net.arch.name, "HVP vector", v.len(), self.dim())?;
        if !second_order_available() {
            return Err(second_order_error());
        }
        let vars = self.net.vars(theta)?;
        let params: Vec<Tensor> = vars.iter().map(|x| x.as_tensor().clone()).collect();
        let dirs = self.net.tensors(v)?;
        let mut hv = vec![0.0; self.dim()];
        for (s, len) in self.chunks(self.chunk) {
            let run = || -> candle_core::Result<_> {
                let grads = self.chunk_loss(&params, s, len)?.backward()?;
                // ∇L·v, differentiated once more.
                let mut dot: Option<Tensor> = None;
                for (var, d) in vars.iter().zip(&dirs) {
                    let Some(g) = grads.get(var.as_tensor()) else {
                        candle_core::bail!("no gradient for a parameter");
                    };
                    let term = g.mul(d)?.sum_all()?;
                    dot = Some(match dot {
                        Some(acc) => acc.add(&term)?,
                        None => term,
                    });
                }
                match dot {
                    Some(d) => d.backward(),
                    None => candle_core::bail!("no parameters"),
                }
            };
            let second = run().map_err(candle)?;
            self.accumulate(&vars, &second, &mut hv)
                .map_err(|_| second_order_error())?;
        }
        Ok(hv)
    }
}

/// One layer's gradients summed over each of `groups` consecutive groups of
/// `batch_size` samples: weights G × (out·fan_in), biases G × out.
fn group_gradients(
    layer: &Layer,
    input: &Tensor,
    delta: &Tensor,
    groups: usize,
    batch_size: usize,
) -> candle_core::Result<(Tensor, Tensor)> {
    let (a, d) = match *layer {
        Layer::Conv2d {
            kernel,
            padding,
            out_channels,
            ..
        } => {
            let patches = im2col(input, kernel, padding)?;
            let (n, positions, fan) = patches.dims3()?;
            let a = patches.reshape((groups, batch_size * positions, fan))?;
            let d = delta
                .reshape((n, out_channels, positions))?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((groups, batch_size * positions, out_channels))?;
            (a, d)
        }
        Layer::Linear {
            inputs, outputs, ..
        } => (
            input.reshape((groups, batch_size, inputs))?,
            delta.reshape((groups, batch_size, outputs))?,
        ),
        _ => candle_core::bail!("layer {layer:?} has no parameters"),
    };
    let weights = d.transpose(1, 2)?.matmul(&a)?.flatten_from(1)?;
    let biases = d.sum(1)?;
    Ok((weights, biases))
}
