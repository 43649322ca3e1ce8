//! The image classifiers on hand-written CPU kernels ([`crate::kernels`]): the same
//! [`Architecture`], θ order and loss as the candle [`Classifier`](super::classifier),
//! computed without a tensor graph. Activations are NHWC; samples are split into chunks
//! that run on rayon's pool, each chunk single-threaded, and their sums are reduced.
//!
//! Exact Hessian-vector products use Pearlmutter's R-operator: one forward pass carries
//! each activation a and its directional derivative R(a) = ∂a/∂θ·v, one backward pass
//! carries δ and R(δ), and R(∇L) = H·v comes out of the same layer formulas
//! (R(∂L/∂W) = R(δ)ᵀ·a + δᵀ·R(a)). ReLU masks and pooling winners are fixed at θ, so the
//! result is the exact Hessian wherever the network is differentiable — the same
//! quantity as double backprop, at about three times the cost of a gradient.

use super::network::{Architecture, Layer, Shape};
use crate::data::ImageSet;
use crate::kernels::conv::{self, ConvShape};
use crate::kernels::{matmul, pool, Float, Mat};
use crate::linalg::GradientMatrix;
use crate::objective::{check_batches, check_len, Objective};
use crate::{Error, Result};
use rayon::prelude::*;

/// One layer as the kernels run it.
#[derive(Clone, Debug)]
enum Step {
    Conv {
        shape: ConvShape,
        outputs: usize,
        param: usize,
    },
    Pool {
        h: usize,
        w: usize,
        c: usize,
    },
    Relu,
    Flatten,
    Linear {
        inputs: usize,
        outputs: usize,
        param: usize,
        /// After flattening an image: NHWC position → PyTorch's (C, H, W) column.
        columns: Option<Vec<usize>>,
    },
}

/// An [`Architecture`] compiled for the kernels.
#[derive(Clone, Debug)]
pub struct Plan {
    arch: Architecture,
    steps: Vec<Step>,
    /// Index of the first step with parameters: no input gradient is needed before it.
    first_param_step: usize,
    /// Per parameter layer: the θ index of every kernel-layout weight entry, and the θ
    /// range of its bias. One map serves both directions (θ → kernels, gradients → θ).
    layout: Vec<(Vec<usize>, std::ops::Range<usize>)>,
}

impl Plan {
    pub fn new(arch: Architecture) -> Self {
        let mut steps = Vec::with_capacity(arch.layers.len());
        let mut shape = Shape::Image(arch.input.0, arch.input.1, arch.input.2);
        let mut flattened: Option<(usize, usize, usize)> = None;
        let mut param = 0;
        for (layer, &next) in arch.layers.iter().zip(arch.shapes()) {
            let step = match (*layer, shape) {
                (
                    Layer::Conv2d {
                        out_channels,
                        kernel,
                        padding,
                        ..
                    },
                    Shape::Image(c, h, w),
                ) => {
                    param += 1;
                    Step::Conv {
                        shape: ConvShape {
                            height: h,
                            width: w,
                            channels: c,
                            kernel,
                            padding,
                        },
                        outputs: out_channels,
                        param: param - 1,
                    }
                }
                (Layer::MaxPool2, Shape::Image(c, h, w)) => Step::Pool { h, w, c },
                (Layer::Relu, _) => Step::Relu,
                (Layer::Flatten, s) => {
                    if let Shape::Image(c, h, w) = s {
                        flattened = Some((c, h, w));
                    }
                    Step::Flatten
                }
                (
                    Layer::Linear {
                        inputs, outputs, ..
                    },
                    _,
                ) => {
                    param += 1;
                    let columns = flattened.take().map(|(c, h, w)| {
                        let mut cols = vec![0; c * h * w];
                        for y in 0..h {
                            for x in 0..w {
                                for ch in 0..c {
                                    cols[(y * w + x) * c + ch] = (ch * h + y) * w + x;
                                }
                            }
                        }
                        cols
                    });
                    Step::Linear {
                        inputs,
                        outputs,
                        param: param - 1,
                        columns,
                    }
                }
                _ => unreachable!("Architecture::new validated the layer sequence"),
            };
            steps.push(step);
            shape = next;
        }
        let first_param_step = steps
            .iter()
            .position(|s| matches!(s, Step::Conv { .. } | Step::Linear { .. }))
            .unwrap_or(0);
        let params = arch.parameters();
        let layout = steps
            .iter()
            .filter_map(|step| {
                let (param, index): (usize, Vec<usize>) = match step {
                    Step::Conv {
                        shape,
                        outputs,
                        param,
                    } => {
                        let (c, kk) = (shape.channels, shape.kernel * shape.kernel);
                        let base = params[2 * param].offset;
                        let mut index = vec![0; outputs * kk * c];
                        for o in 0..*outputs {
                            for w in 0..kk {
                                for ch in 0..c {
                                    index[(o * kk + w) * c + ch] = base + (o * c + ch) * kk + w;
                                }
                            }
                        }
                        (*param, index)
                    }
                    Step::Linear {
                        inputs,
                        outputs,
                        param,
                        columns,
                    } => {
                        let base = params[2 * param].offset;
                        let index = (0..outputs * inputs)
                            .map(|i| {
                                let (o, q) = (i / inputs, i % inputs);
                                base + o * inputs + columns.as_ref().map_or(q, |c| c[q])
                            })
                            .collect();
                        (*param, index)
                    }
                    _ => return None,
                };
                let bias = &params[2 * param + 1];
                Some((index, bias.offset..bias.offset + bias.len()))
            })
            .collect();
        Plan {
            arch,
            steps,
            first_param_step,
            layout,
        }
    }

    pub fn arch(&self) -> &Architecture {
        &self.arch
    }

    /// θ (or any vector in θ's layout) as the kernels' weights.
    fn weights<T: Float>(&self, theta: &[f64]) -> Weights<T> {
        let (w, b) = self
            .layout
            .iter()
            .map(|(index, bias)| {
                (
                    index.iter().map(|&i| T::from_f64(theta[i])).collect(),
                    theta[bias.clone()]
                        .iter()
                        .map(|&x| T::from_f64(x))
                        .collect(),
                )
            })
            .unzip();
        Weights { w, b }
    }

    /// Writes `scale`·(kernel-layout gradient of parameter layer `param`) into `row`
    /// (θ layout). Each entry is written once: layers own disjoint parts of θ.
    fn scatter<T: Float>(&self, param: usize, gw: &[T], gb: &[T], scale: f64, row: &mut [f64]) {
        let (index, bias) = &self.layout[param];
        for (&i, g) in index.iter().zip(gw) {
            row[i] = scale * g.to_f64();
        }
        for (d, g) in row[bias.clone()].iter_mut().zip(gb) {
            *d = scale * g.to_f64();
        }
    }
}

/// Kernel-layout weights and biases, one pair per parameter layer.
struct Weights<T> {
    w: Vec<Vec<T>>,
    b: Vec<Vec<T>>,
}

/// What a forward pass keeps for the backward pass.
struct Tape<T> {
    n: usize,
    /// `acts[i]` is the input of step i; the last entry holds the logits.
    acts: Vec<Vec<T>>,
    patches: Vec<Vec<T>>,
    winners: Vec<Vec<u8>>,
}

/// Tangents of a forward pass in direction V (R-operator).
struct Tangent<T> {
    acts: Vec<Vec<T>>,
    patches: Vec<Vec<T>>,
}

/// Whether ReLU passes gradient at an output value: strictly positive (PyTorch's rule;
/// NaN does not pass).
#[inline]
fn relu_passes<T: Float>(out: T) -> bool {
    out > T::ZERO
}

/// Rows of `out` set to the bias, then `out += a·wᵀ`.
fn affine<T: Float>(out: &mut Vec<T>, rows: usize, a: Mat<'_, T>, w: &[T], b: &[T]) {
    let outputs = b.len();
    out.clear();
    out.reserve(rows * outputs);
    for _ in 0..rows {
        out.extend_from_slice(b);
    }
    matmul(out, true, a, Mat::rows(w, outputs, a.cols).t());
}

fn column_sums<T: Float>(m: &[T], cols: usize, into: &mut [T]) {
    for row in m.chunks_exact(cols) {
        for (s, v) in into.iter_mut().zip(row) {
            *s += *v;
        }
    }
}

/// What to do with the layer gradients of a backward pass.
enum Sink<'a> {
    /// Sum over all samples into θ layout (scaled).
    Sum(&'a mut [f64], f64),
    /// One row per consecutive group of `batch` samples, each scaled by 1/batch.
    Groups(&'a mut [f64], usize),
}

impl<T: Float> Tape<T> {
    fn forward(plan: &Plan, weights: &Weights<T>, x: Vec<T>, n: usize) -> Tape<T> {
        let steps = plan.steps.len();
        let mut tape = Tape {
            n,
            acts: Vec::with_capacity(steps + 1),
            patches: vec![Vec::new(); steps],
            winners: vec![Vec::new(); steps],
        };
        tape.acts.push(x);
        for (i, step) in plan.steps.iter().enumerate() {
            let a = &tape.acts[i];
            let mut out = Vec::new();
            match step {
                Step::Conv {
                    shape,
                    outputs: _,
                    param,
                } => {
                    let rows = n * shape.positions();
                    let mut p = vec![T::ZERO; rows * shape.window()];
                    conv::im2col(shape, n, a, &mut p);
                    affine(
                        &mut out,
                        rows,
                        Mat::rows(&p, rows, shape.window()),
                        &weights.w[*param],
                        &weights.b[*param],
                    );
                    tape.patches[i] = p;
                }
                Step::Pool { h, w, c } => {
                    let len = n * (h / 2) * (w / 2) * c;
                    out = vec![T::ZERO; len];
                    let mut win = vec![0u8; len];
                    pool::forward((n, *h, *w, *c), a, &mut out, &mut win);
                    tape.winners[i] = win;
                }
                Step::Relu => {
                    out = a
                        .iter()
                        .map(|&v| {
                            if v > T::ZERO || v.is_nan() {
                                v
                            } else {
                                T::ZERO
                            }
                        })
                        .collect();
                }
                Step::Flatten => out = a.clone(),
                Step::Linear {
                    inputs,
                    outputs: _,
                    param,
                    ..
                } => affine(
                    &mut out,
                    n,
                    Mat::rows(a, n, *inputs),
                    &weights.w[*param],
                    &weights.b[*param],
                ),
            }
            tape.acts.push(out);
        }
        tape
    }

    fn logits(&self) -> &[T] {
        self.acts.last().expect("at least the input")
    }

    /// Σ_i ℓ_i (f64) and δ = scale·(softmax − onehot) at the logits.
    fn loss_and_delta(&self, labels: &[u8], classes: usize, scale: f64) -> (f64, Vec<T>, Vec<T>) {
        let z = self.logits();
        let mut delta = vec![T::ZERO; z.len()];
        let mut probs = vec![T::ZERO; z.len()];
        let mut total = 0.0;
        for (s, &y) in labels.iter().enumerate() {
            let row = &z[s * classes..(s + 1) * classes];
            let max = row.iter().fold(f64::NEG_INFINITY, |m, v| m.max(v.to_f64()));
            let sum: f64 = row.iter().map(|v| (v.to_f64() - max).exp()).sum();
            total += sum.ln() + max - row[y as usize].to_f64();
            for c in 0..classes {
                let p = (row[c].to_f64() - max).exp() / sum;
                probs[s * classes + c] = T::from_f64(p);
                let target = if c == y as usize { 1.0 } else { 0.0 };
                delta[s * classes + c] = T::from_f64(scale * (p - target));
            }
        }
        (total, delta, probs)
    }

    /// Number of correct argmax predictions.
    fn correct(&self, labels: &[u8], classes: usize) -> usize {
        let z = self.logits();
        labels
            .iter()
            .enumerate()
            .filter(|(s, &y)| {
                let row = &z[s * classes..(s + 1) * classes];
                let mut best = 0;
                for c in 1..classes {
                    if row[c] > row[best] {
                        best = c;
                    }
                }
                best == y as usize
            })
            .count()
    }

    /// The tangent forward pass in direction `dir` (R-operator).
    fn tangent(&self, plan: &Plan, weights: &Weights<T>, dir: &Weights<T>) -> Tangent<T> {
        let n = self.n;
        let steps = plan.steps.len();
        let mut t = Tangent {
            acts: Vec::with_capacity(steps + 1),
            patches: vec![Vec::new(); steps],
        };
        t.acts.push(vec![T::ZERO; self.acts[0].len()]);
        for (i, step) in plan.steps.iter().enumerate() {
            let ra = &t.acts[i];
            let live = i > plan.first_param_step;
            let mut out = Vec::new();
            match step {
                Step::Conv { shape, param, .. } => {
                    let rows = n * shape.positions();
                    let p = Mat::rows(&self.patches[i], rows, shape.window());
                    affine(&mut out, rows, p, &dir.w[*param], &dir.b[*param]);
                    if live {
                        let mut rp = vec![T::ZERO; rows * shape.window()];
                        conv::im2col(shape, n, ra, &mut rp);
                        matmul(
                            &mut out,
                            true,
                            Mat::rows(&rp, rows, shape.window()),
                            Mat::rows(&weights.w[*param], weights.b[*param].len(), shape.window())
                                .t(),
                        );
                        t.patches[i] = rp;
                    }
                }
                Step::Pool { h, w, c } => {
                    out = vec![T::ZERO; n * (h / 2) * (w / 2) * c];
                    pool::gather((n, *h, *w, *c), ra, &self.winners[i], &mut out);
                }
                Step::Relu => {
                    out = ra
                        .iter()
                        .zip(&self.acts[i + 1])
                        .map(|(&r, &a)| if relu_passes(a) { r } else { T::ZERO })
                        .collect();
                }
                Step::Flatten => out = ra.clone(),
                Step::Linear { inputs, param, .. } => {
                    let a = Mat::rows(&self.acts[i], n, *inputs);
                    affine(&mut out, n, a, &dir.w[*param], &dir.b[*param]);
                    if live {
                        matmul(
                            &mut out,
                            true,
                            Mat::rows(ra, n, *inputs),
                            Mat::rows(&weights.w[*param], weights.b[*param].len(), *inputs).t(),
                        );
                    }
                }
            }
            t.acts.push(out);
        }
        t
    }

    /// Back-propagates `delta` (at the logits); with `tangent` = (R-pass, R(δ), V) it
    /// back-propagates R(δ) alongside and sinks R(∂L/∂W) instead of ∂L/∂W.
    fn backward(
        &self,
        plan: &Plan,
        weights: &Weights<T>,
        mut delta: Vec<T>,
        mut tangent: Option<(&Tangent<T>, Vec<T>, &Weights<T>)>,
        sink: &mut Sink<'_>,
    ) {
        let n = self.n;
        for (i, step) in plan.steps.iter().enumerate().rev() {
            let need_input = i > plan.first_param_step;
            match step {
                Step::Conv {
                    shape,
                    outputs,
                    param,
                } => {
                    let rows = n * shape.positions();
                    let win = shape.window();
                    let p = Mat::rows(&self.patches[i], rows, win);
                    match &tangent {
                        None => sink_layer(
                            plan,
                            *param,
                            sink,
                            &[(Mat::rows(&delta, rows, *outputs), p)],
                            shape.positions(),
                        ),
                        Some((t, rdelta, _)) => {
                            let mut terms = vec![(Mat::rows(rdelta, rows, *outputs), p)];
                            if !t.patches[i].is_empty() {
                                terms.push((
                                    Mat::rows(&delta, rows, *outputs),
                                    Mat::rows(&t.patches[i], rows, win),
                                ));
                            }
                            sink_layer(plan, *param, sink, &terms, shape.positions());
                        }
                    }
                    if need_input {
                        let w = Mat::rows(&weights.w[*param], *outputs, win);
                        let in_len = n * shape.height * shape.width * shape.channels;
                        let back = |d: &[T], extra: Option<(&[T], &[T])>| {
                            let mut cols = vec![T::ZERO; rows * win];
                            matmul(&mut cols, false, Mat::rows(d, rows, *outputs), w);
                            if let Some((d2, v)) = extra {
                                matmul(
                                    &mut cols,
                                    true,
                                    Mat::rows(d2, rows, *outputs),
                                    Mat::rows(v, *outputs, win),
                                );
                            }
                            let mut dx = vec![T::ZERO; in_len];
                            conv::col2im_add(shape, n, &cols, &mut dx);
                            dx
                        };
                        if let Some((_, rdelta, dir)) = &mut tangent {
                            *rdelta = back(rdelta, Some((&delta, &dir.w[*param])));
                        }
                        delta = back(&delta, None);
                    }
                }
                Step::Linear {
                    inputs,
                    outputs,
                    param,
                    ..
                } => {
                    let a = Mat::rows(&self.acts[i], n, *inputs);
                    match &tangent {
                        None => sink_layer(
                            plan,
                            *param,
                            sink,
                            &[(Mat::rows(&delta, n, *outputs), a)],
                            1,
                        ),
                        Some((t, rdelta, _)) => sink_layer(
                            plan,
                            *param,
                            sink,
                            &[
                                (Mat::rows(rdelta, n, *outputs), a),
                                (
                                    Mat::rows(&delta, n, *outputs),
                                    Mat::rows(&t.acts[i], n, *inputs),
                                ),
                            ],
                            1,
                        ),
                    }
                    if need_input {
                        let w = Mat::rows(&weights.w[*param], *outputs, *inputs);
                        if let Some((_, rdelta, dir)) = &mut tangent {
                            let mut rdx = vec![T::ZERO; n * inputs];
                            matmul(&mut rdx, false, Mat::rows(rdelta, n, *outputs), w);
                            matmul(
                                &mut rdx,
                                true,
                                Mat::rows(&delta, n, *outputs),
                                Mat::rows(&dir.w[*param], *outputs, *inputs),
                            );
                            *rdelta = rdx;
                        }
                        let mut dx = vec![T::ZERO; n * inputs];
                        matmul(&mut dx, false, Mat::rows(&delta, n, *outputs), w);
                        delta = dx;
                    }
                }
                Step::Relu => {
                    let out = &self.acts[i + 1];
                    for (d, &a) in delta.iter_mut().zip(out) {
                        if !relu_passes(a) {
                            *d = T::ZERO;
                        }
                    }
                    if let Some((_, rdelta, _)) = &mut tangent {
                        for (d, &a) in rdelta.iter_mut().zip(out) {
                            if !relu_passes(a) {
                                *d = T::ZERO;
                            }
                        }
                    }
                }
                Step::Pool { h, w, c } => {
                    if !need_input {
                        continue;
                    }
                    let dims = (n, *h, *w, *c);
                    let mut dx = vec![T::ZERO; n * h * w * c];
                    pool::backward(dims, &delta, &self.winners[i], &mut dx);
                    delta = dx;
                    if let Some((_, rdelta, _)) = &mut tangent {
                        let mut rdx = vec![T::ZERO; n * h * w * c];
                        pool::backward(dims, rdelta, &self.winners[i], &mut rdx);
                        *rdelta = rdx;
                    }
                }
                Step::Flatten => {}
            }
            if i <= plan.first_param_step {
                break;
            }
        }
    }
}

/// Sinks Σ_terms δᵀ·A for one parameter layer (δ: rows × out, A: rows × fan), summed or
/// per group of samples (`rows_per_sample` rows each).
fn sink_layer<T: Float>(
    plan: &Plan,
    param: usize,
    sink: &mut Sink<'_>,
    terms: &[(Mat<'_, T>, Mat<'_, T>)],
    rows_per_sample: usize,
) {
    let (outputs, fan) = (terms[0].0.cols, terms[0].1.cols);
    let mut gw = vec![T::ZERO; outputs * fan];
    let mut gb = vec![T::ZERO; outputs];
    let layer = |gw: &mut Vec<T>, gb: &mut Vec<T>, lo: usize, hi: usize| {
        gw.fill(T::ZERO);
        gb.fill(T::ZERO);
        for (k, (d, a)) in terms.iter().enumerate() {
            let d = Mat {
                data: &d.data[lo * d.rs..],
                rows: hi - lo,
                ..*d
            };
            let a = Mat {
                data: &a.data[lo * a.rs..],
                rows: hi - lo,
                ..*a
            };
            matmul(gw, true, d.t(), a);
            if k == 0 {
                column_sums(&d.data[..(hi - lo) * d.rs], outputs, gb);
            }
        }
    };
    let rows = terms[0].0.rows;
    match sink {
        Sink::Sum(theta_row, scale) => {
            layer(&mut gw, &mut gb, 0, rows);
            plan.scatter(param, &gw, &gb, *scale, theta_row);
        }
        Sink::Groups(matrix, batch) => {
            let dim = plan.arch.dim();
            let per_group = *batch * rows_per_sample;
            for (g, row) in matrix.chunks_exact_mut(dim).enumerate() {
                layer(&mut gw, &mut gb, g * per_group, (g + 1) * per_group);
                plan.scatter(param, &gw, &gb, 1.0 / *batch as f64, row);
            }
        }
    }
}

/// The [`Objective`] of a network on a set of labelled images, on the kernels, in `T`.
pub struct NativeClassifier<T: Float> {
    plan: Plan,
    /// N × H × W × C, scaled to [0, 1].
    x: Vec<T>,
    labels: Vec<u8>,
    /// Samples per chunk (a chunk is one single-threaded forward/backward).
    chunk: usize,
}

/// Activation memory one chunk may use: small enough to stay in cache and below
/// malloc's mmap threshold (measured on LeNet, 2 cores: fwd+bwd of 1,200 images takes
/// 53 ms with 4–16 MB chunks, 94 ms with 256 MB ones — page faults and cache misses).
const CHUNK_BYTES: usize = 8 << 20;

/// Samples per chunk at most, so that small networks still spread over the cores.
const MAX_CHUNK: usize = 64;

/// Chunks computed at once before their results are summed (in chunk order).
const WAVE: usize = 16;

/// Images (N × C × H × W bytes) as N × H × W × C values in [0, 1].
fn nhwc<T: Float>(data: &ImageSet) -> Vec<T> {
    let (c, h, w) = data.shape;
    let mut out = vec![T::ZERO; data.pixels.len()];
    for s in 0..data.len() {
        let img = data.image(s);
        let dst = &mut out[s * c * h * w..(s + 1) * c * h * w];
        for ch in 0..c {
            for p in 0..h * w {
                dst[p * c + ch] = T::from_f64(img[ch * h * w + p] as f64) / T::from_f64(255.0);
            }
        }
    }
    out
}

impl<T: Float> NativeClassifier<T> {
    pub fn new(arch: Architecture, data: &ImageSet) -> Result<Self> {
        super::classifier::check_data(&arch, data)?;
        if data.is_empty() {
            return Err(Error::Numerics(format!(
                "{}: no training images",
                arch.name
            )));
        }
        // Per sample: every activation, its tangent and the patch matrices, in T.
        let patches: usize = arch
            .layers
            .iter()
            .zip(
                std::iter::once(Shape::Image(arch.input.0, arch.input.1, arch.input.2))
                    .chain(arch.shapes().iter().copied()),
            )
            .map(|(l, s)| match (l, s) {
                (Layer::Conv2d { kernel, .. }, Shape::Image(c, h, w)) => {
                    h * w * c * kernel * kernel
                }
                _ => 0,
            })
            .sum();
        let per_sample = (arch.activations_per_sample() + patches) * 3 * std::mem::size_of::<T>();
        let budget = std::env::var("NOISELAB_CHUNK_BYTES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(CHUNK_BYTES)
            // A chunk's result can be a whole gradient: for wide networks (VGG11: 39 MB of
            // f32 parameters) chunks of one sample would spend their time adding those.
            .max(2 * arch.dim() * std::mem::size_of::<T>());
        // The partition into chunks fixes the order of every sum, so it must not depend
        // on the thread count: results are bitwise the same on any number of cores.
        let chunk = (budget / per_sample.max(1)).clamp(1, MAX_CHUNK);
        Ok(NativeClassifier {
            x: nhwc(data),
            labels: data.labels.clone(),
            chunk,
            plan: Plan::new(arch),
        })
    }

    pub fn arch(&self) -> &Architecture {
        self.plan.arch()
    }

    fn pixels_per_sample(&self) -> usize {
        let (c, h, w) = self.plan.arch.input;
        c * h * w
    }

    /// Forward pass of the samples `idx` (in that order).
    fn tape(&self, weights: &Weights<T>, x: &[T], idx: &[usize]) -> Tape<T> {
        let p = self.pixels_per_sample();
        let mut xs = Vec::with_capacity(idx.len() * p);
        for &i in idx {
            xs.extend_from_slice(&x[i * p..(i + 1) * p]);
        }
        Tape::forward(&self.plan, weights, xs, idx.len())
    }

    /// Runs `f` on consecutive chunks of `indices` in parallel and sums the results in
    /// chunk order: rayon's own reduction tree follows work stealing, and floating-point
    /// sums in a varying order would make runs differ in their last bits.
    fn chunked<R: Send>(
        &self,
        indices: &[usize],
        chunk: usize,
        f: impl Fn(&[usize]) -> R + Sync + Send,
        reduce: impl Fn(R, R) -> R + Sync + Send,
    ) -> Option<R> {
        // Waves of a fixed number of chunks bound the memory held at once (a chunk's
        // result may be a whole gradient: 78 MB for VGG11) without changing the order.
        let mut total: Option<R> = None;
        for wave in indices.chunks(chunk.max(1) * WAVE) {
            let parts: Vec<R> = wave.par_chunks(chunk.max(1)).map(&f).collect();
            for part in parts {
                total = Some(match total {
                    None => part,
                    Some(acc) => reduce(acc, part),
                });
            }
        }
        total
    }

    /// Mean loss and accuracy on `data`.
    pub fn evaluate(
        &self,
        theta: &[f64],
        data: &ImageSet,
    ) -> Result<super::classifier::Evaluation> {
        super::classifier::check_data(&self.plan.arch, data)?;
        self.check_theta(theta)?;
        if data.is_empty() {
            return Err(Error::Numerics("evaluate: no images".into()));
        }
        let weights = self.plan.weights::<T>(theta);
        let x = nhwc::<T>(data);
        let all: Vec<usize> = (0..data.len()).collect();
        let classes = self.plan.arch.classes;
        let (loss, right) = self
            .chunked(
                &all,
                self.chunk,
                |idx| {
                    let tape = self.tape(&weights, &x, idx);
                    let labels: Vec<u8> = idx.iter().map(|&i| data.labels[i]).collect();
                    let (l, _, _) = tape.loss_and_delta(&labels, classes, 0.0);
                    (l, tape.correct(&labels, classes))
                },
                |a, b| (a.0 + b.0, a.1 + b.1),
            )
            .unwrap_or((0.0, 0));
        Ok(super::classifier::Evaluation {
            loss: loss / data.len() as f64,
            accuracy: right as f64 / data.len() as f64,
        })
    }

    fn check_theta(&self, theta: &[f64]) -> Result<()> {
        check_len(self.plan.arch.name, "θ", theta.len(), self.plan.arch.dim())
    }

    fn labels_of(&self, idx: &[usize]) -> Vec<u8> {
        idx.iter().map(|&i| self.labels[i]).collect()
    }
}

impl<T: Float> Objective for NativeClassifier<T> {
    fn dim(&self) -> usize {
        self.plan.arch.dim()
    }

    fn num_samples(&self) -> usize {
        self.labels.len()
    }

    fn loss(&self, theta: &[f64]) -> Result<f64> {
        self.check_theta(theta)?;
        let weights = self.plan.weights::<T>(theta);
        let all: Vec<usize> = (0..self.num_samples()).collect();
        let classes = self.plan.arch.classes;
        let total = self
            .chunked(
                &all,
                self.chunk,
                |idx| {
                    let tape = self.tape(&weights, &self.x, idx);
                    tape.loss_and_delta(&self.labels_of(idx), classes, 0.0).0
                },
                |a, b| a + b,
            )
            .unwrap_or(0.0);
        Ok(total / self.num_samples() as f64)
    }

    fn loss_and_gradient(&self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        self.check_theta(theta)?;
        let weights = self.plan.weights::<T>(theta);
        let n = self.num_samples();
        let all: Vec<usize> = (0..n).collect();
        let classes = self.plan.arch.classes;
        let scale = 1.0 / n as f64;
        let (loss, grad) = self
            .chunked(
                &all,
                self.chunk,
                |idx| {
                    let tape = self.tape(&weights, &self.x, idx);
                    let (l, delta, _) = tape.loss_and_delta(&self.labels_of(idx), classes, 1.0);
                    let mut g = vec![0.0; self.dim()];
                    tape.backward(
                        &self.plan,
                        &weights,
                        delta,
                        None,
                        &mut Sink::Sum(&mut g, scale),
                    );
                    (l, g)
                },
                |mut a, b| {
                    a.0 += b.0;
                    a.1.iter_mut().zip(&b.1).for_each(|(x, y)| *x += y);
                    a
                },
            )
            .expect("N ≥ 1");
        Ok((loss * scale, grad))
    }

    fn batch_gradients(
        &self,
        theta: &[f64],
        indices: &[usize],
        batch_size: usize,
    ) -> Result<GradientMatrix> {
        check_batches(indices, batch_size, self.num_samples())?;
        self.check_theta(theta)?;
        let weights = self.plan.weights::<T>(theta);
        let classes = self.plan.arch.classes;
        let dim = self.dim();
        let groups = indices.len() / batch_size;
        let mut out = GradientMatrix::zeros(groups, dim);
        // Whole groups per chunk; each chunk writes its own block of rows in place.
        let groups_per_chunk = (self.chunk / batch_size).max(1);
        out.as_mut_slice()
            .par_chunks_mut(groups_per_chunk * dim)
            .zip(indices.par_chunks(groups_per_chunk * batch_size))
            .for_each(|(block, idx)| {
                let tape = self.tape(&weights, &self.x, idx);
                // δ of Σ_i ℓ_i: per-sample gradients, averaged per group by the sink.
                let (_, delta, _) = tape.loss_and_delta(&self.labels_of(idx), classes, 1.0);
                tape.backward(
                    &self.plan,
                    &weights,
                    delta,
                    None,
                    &mut Sink::Groups(block, batch_size),
                );
            });
        Ok(out)
    }

    fn hvp_tolerance(&self) -> f64 {
        if std::mem::size_of::<T>() == 8 {
            1e-8
        } else {
            1e-5
        }
    }

    fn hvp(&self, theta: &[f64], v: &[f64]) -> Result<Vec<f64>> {
        self.check_theta(theta)?;
        check_len(self.plan.arch.name, "HVP vector", v.len(), self.dim())?;
        let weights = self.plan.weights::<T>(theta);
        let dir = self.plan.weights::<T>(v);
        let n = self.num_samples();
        let all: Vec<usize> = (0..n).collect();
        let classes = self.plan.arch.classes;
        let scale = 1.0 / n as f64;
        Ok(self
            .chunked(
                &all,
                self.chunk,
                |idx| {
                    let tape = self.tape(&weights, &self.x, idx);
                    let (_, delta, probs) = tape.loss_and_delta(&self.labels_of(idx), classes, 1.0);
                    let tangent = tape.tangent(&self.plan, &weights, &dir);
                    // R(δ_L) = (diag p − p pᵀ)·R(z) per sample.
                    let rz = tangent.acts.last().expect("logits");
                    let mut rdelta = vec![T::ZERO; rz.len()];
                    for ((rd, p), r) in rdelta
                        .chunks_exact_mut(classes)
                        .zip(probs.chunks_exact(classes))
                        .zip(rz.chunks_exact(classes))
                    {
                        let mut pr = T::ZERO;
                        for c in 0..classes {
                            pr += p[c] * r[c];
                        }
                        for c in 0..classes {
                            rd[c] = p[c] * (r[c] - pr);
                        }
                    }
                    let mut hv = vec![0.0; self.dim()];
                    tape.backward(
                        &self.plan,
                        &weights,
                        delta,
                        Some((&tangent, rdelta, &dir)),
                        &mut Sink::Sum(&mut hv, scale),
                    );
                    hv
                },
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                    a
                },
            )
            .expect("N ≥ 1"))
    }
}
