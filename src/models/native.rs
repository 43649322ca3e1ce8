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
use crate::kernels::pooled::{self, Coefs, Kernel, PooledConv, Source};
use crate::kernels::{broadcast, direct, matmul, pool, Float, Mat};
use crate::linalg::GradientMatrix;
use crate::objective::{check_batches, check_len, check_range, Objective};
use crate::{Error, Result};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::Arc;

/// One layer as the kernels run it.
#[derive(Clone, Debug)]
enum Step {
    Conv {
        shape: ConvShape,
        outputs: usize,
        param: usize,
        /// Unpadded and followed by a 2×2 max pooling: past the forward pass, computed
        /// at the pooling's winners only (`kernels::pooled`).
        pooled: bool,
    },
    Pool {
        h: usize,
        w: usize,
        c: usize,
        /// Follows a `pooled` convolution, which routes through the winners itself: the
        /// backward and tangent passes go straight through.
        fused: bool,
    },
    /// `channels`: the last (innermost) dimension of its input: a block tangent holds b
    /// copies of it per position.
    Relu { channels: usize },
    /// `pixels` × `channels` of the image it flattens (1 × features when already flat).
    Flatten { pixels: usize, channels: usize },
    Linear {
        inputs: usize,
        outputs: usize,
        param: usize,
        /// After flattening an image: NHWC position → PyTorch's (C, H, W) column.
        columns: Option<Vec<usize>>,
    },
}

/// Shortest kernel window (k·k·C) for which a convolution before a max pooling is
/// computed at the winners only: gathered windows of LeNet's first convolution (25
/// values) cost more per product than its dense matrix products (docs/BENCHMARKS.md).
const POOLED_MIN_WINDOW: usize = 64;

/// The innermost dimension of an NHWC activation: channels of an image, all of a vector.
fn innermost(shape: Shape) -> usize {
    match shape {
        Shape::Image(c, _, _) => c,
        Shape::Flat(f) => f,
    }
}

/// An [`Architecture`] compiled for the kernels.
#[derive(Clone, Debug)]
pub struct Plan {
    arch: Architecture,
    steps: Vec<Step>,
    /// Index of the first step with parameters: no input gradient is needed before it.
    first_param_step: usize,
    /// The step of a convolution computed from its one-channel input image instead of a
    /// patch matrix (`kernels::direct`; set by the kernel model for its float type).
    direct: Option<usize>,
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
                        pooled: false,
                    }
                }
                (Layer::MaxPool2, Shape::Image(c, h, w)) => Step::Pool {
                    h,
                    w,
                    c,
                    fused: false,
                },
                (Layer::Relu, s) => Step::Relu {
                    channels: innermost(s),
                },
                (Layer::Flatten, s) => {
                    if let Shape::Image(c, h, w) = s {
                        flattened = Some((c, h, w));
                    }
                    Step::Flatten {
                        pixels: s.elements() / innermost(s),
                        channels: innermost(s),
                    }
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
        for i in 1..steps.len() {
            if let [Step::Conv { shape, pooled, .. }, Step::Pool { fused, .. }] =
                &mut steps[i - 1..=i]
            {
                if shape.padding == 0 && shape.window() >= POOLED_MIN_WINDOW {
                    (*pooled, *fused) = (true, true);
                }
            }
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
                        ..
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
            direct: None,
            layout,
        }
    }

    pub fn arch(&self) -> &Architecture {
        &self.arch
    }

    /// Whether step `i` is the directly computed convolution.
    fn is_direct(&self, i: usize) -> bool {
        self.direct == Some(i)
    }

    /// The directly computed first convolution (shape, outputs, parameter index) when
    /// step `i` is its 2×2 max pooling and the weight sums at the pooling's winners run
    /// in vector code: the R-operator pass then ends at that pooling.
    fn first_conv_before_pool<T: Float>(&self, i: usize) -> Option<(&ConvShape, usize, usize)> {
        let conv = i.checked_sub(1).filter(|&c| self.is_direct(c))?;
        match (&self.steps[conv], &self.steps[i]) {
            (
                Step::Conv {
                    shape,
                    outputs,
                    param,
                    ..
                },
                Step::Pool { fused: false, .. },
            ) if conv == self.first_param_step
                && broadcast::pooled_sums_supported::<T>(shape, *outputs) =>
            {
                Some((shape, *outputs, *param))
            }
            _ => None,
        }
    }

    /// Whether the pooled convolution at step `i` is followed by its pooling and then a
    /// ReLU, whose output (`acts[i + 3]`) says which tangent entries survive.
    fn relu_after_pool(&self, i: usize) -> bool {
        matches!(self.steps.get(i + 2), Some(Step::Relu { .. }))
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
    /// The first convolution's patches when they are the kept ones (rows of them).
    kept_patches: Option<(Arc<Vec<T>>, std::ops::Range<usize>)>,
    winners: Vec<Vec<u8>>,
}

/// Tangents of a forward pass in b directions V_1 … V_b at once (R-operator). Each
/// tangent activation is the layer's activation with b copies of its innermost
/// dimension: positions × b × C (an image's pixels, or one vector per sample), so every
/// product of a layer serves all b directions in one wider matrix product.
struct Tangent<T> {
    acts: Vec<Vec<T>>,
    /// Per convolution with a live input: its tangent patches, (positions·b) × window.
    patches: Vec<Vec<T>>,
    /// Per pooling step: the forward pass's winners repeated for the b directions.
    winners: Vec<Vec<u8>>,
}

/// b directions in the kernels' layout, in the two arrangements the block products use.
struct Directions<T> {
    b: usize,
    /// Per parameter layer: [V_1; …; V_b], (b·out) × fan.
    stacked: Vec<Vec<T>>,
    /// Per parameter layer: [V_1 | … | V_b], out × (b·fan).
    side_by_side: Vec<Vec<T>>,
    /// Per parameter layer: the b bias directions, concatenated.
    bias: Vec<Vec<T>>,
}

impl<T: Float> Directions<T> {
    fn new(plan: &Plan, vs: &[&[f64]]) -> Self {
        let each: Vec<Weights<T>> = vs.iter().map(|v| plan.weights(v)).collect();
        let layers = plan.layout.len();
        let (mut stacked, mut side_by_side, mut bias) = (vec![], vec![], vec![]);
        for l in 0..layers {
            let out = each[0].b[l].len();
            let fan = each[0].w[l].len() / out;
            stacked.push(each.iter().flat_map(|w| w.w[l].iter().copied()).collect());
            let mut side = Vec::with_capacity(out * fan * vs.len());
            for o in 0..out {
                for w in &each {
                    side.extend_from_slice(&w.w[l][o * fan..(o + 1) * fan]);
                }
            }
            side_by_side.push(side);
            bias.push(each.iter().flat_map(|w| w.b[l].iter().copied()).collect());
        }
        Directions {
            b: vs.len(),
            stacked,
            side_by_side,
            bias,
        }
    }
}

/// Zeroes the entries of a block tangent (positions × b × `channels`) where ReLU's
/// output `act` (positions × `channels`) does not pass.
fn relu_mask_block<T: Float>(tangent: &mut [T], act: &[T], b: usize, channels: usize) {
    if b == 1 {
        // One long run rather than runs of `channels` (10 on LeNet: a vector loop's
        // remainder at every position).
        return relu_mask(tangent, act);
    }
    for (block, a) in tangent
        .chunks_exact_mut(b * channels)
        .zip(act.chunks_exact(channels))
    {
        for one in block.chunks_exact_mut(channels) {
            relu_mask(one, a);
        }
    }
}

/// Zeroes the entries of `values` where ReLU's output `act` does not pass. A select,
/// not a branch: the pattern is data, and branching on it mispredicted often enough to
/// make the masks of an HVP an eighth of it on LeNet (docs/BENCHMARKS.md).
#[inline]
fn relu_mask<T: Float>(values: &mut [T], act: &[T]) {
    for (t, &v) in values.iter_mut().zip(act) {
        *t = if relu_passes(v) { *t } else { T::ZERO };
    }
}

/// n × pixels × b × C ⇄ n × b × pixels × C (`to_directions`: left to right): a block
/// tangent of images as the b flattened vectors per sample a linear layer takes, and back.
fn swap_block<T: Float>(
    x: &[T],
    (n, pixels, b, c): (usize, usize, usize, usize),
    to_directions: bool,
) -> Vec<T> {
    if b == 1 || pixels == 1 {
        return x.to_vec();
    }
    let mut out = vec![T::ZERO; x.len()];
    for s in 0..n {
        let base = s * pixels * b * c;
        for p in 0..pixels {
            for j in 0..b {
                let image_major = base + (p * b + j) * c;
                let direction_major = base + (j * pixels + p) * c;
                let (from, to) = if to_directions {
                    (image_major, direction_major)
                } else {
                    (direction_major, image_major)
                };
                out[to..to + c].copy_from_slice(&x[from..from + c]);
            }
        }
    }
    out
}

/// An image tangent block (n × H × W × b × C) direction-major (n × b × H × W × C), as
/// the pooled convolution kernels take it.
fn by_direction<'a, T: Float>(
    x: &'a [T],
    shape: &ConvShape,
    n: usize,
    b: usize,
) -> std::borrow::Cow<'a, [T]> {
    match b {
        1 => std::borrow::Cow::Borrowed(x),
        _ => {
            let pixels = shape.height * shape.width;
            std::borrow::Cow::Owned(swap_block(x, (n, pixels, b, shape.channels), true))
        }
    }
}

/// Each pooling winner repeated for b directions (positions × C → positions × b × C).
fn repeat_winners(winners: &[u8], channels: usize, b: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(winners.len() * b);
    for w in winners.chunks_exact(channels) {
        for _ in 0..b {
            out.extend_from_slice(w);
        }
    }
    out
}

/// Whether ReLU passes gradient at an output value: strictly positive (PyTorch's rule;
/// NaN does not pass).
#[inline]
fn relu_passes<T: Float>(out: T) -> bool {
    out > T::ZERO
}

/// Rows of `out` set to the bias, then `out += a·wᵀ`.
fn affine<T: Float>(out: &mut Vec<T>, rows: usize, a: Mat<'_, T>, w: &[T], b: &[T]) {
    bias_rows(out, rows, b);
    matmul(out, true, a, Mat::rows(w, b.len(), a.cols).t());
}

/// `out` (replaced) as `rows` copies of the bias, for a product to accumulate onto.
fn bias_rows<T: Float>(out: &mut Vec<T>, rows: usize, b: &[T]) {
    out.clear();
    out.reserve(rows * b.len());
    for _ in 0..rows {
        out.extend_from_slice(b);
    }
}

/// Patches a pooled convolution's forward pass makes at once: a few samples' worth
/// (LeNet's second convolution: 64 KB of f32 per image), so that they are still in
/// cache when the product reads them (the whole chunk's, written and read back from
/// memory, were a seventh of a forward pass).
const PATCH_BLOCK_BYTES: usize = 256 << 10;

/// A convolution's output (`out`, replaced) over `n` samples of `x`, its patch matrix
/// made and used [`PATCH_BLOCK_BYTES`] at a time.
fn pooled_conv_forward<T: Float>(
    shape: &conv::ConvShape,
    n: usize,
    x: &[T],
    out: &mut Vec<T>,
    weights: &Weights<T>,
    param: usize,
) {
    let (positions, window) = (shape.positions(), shape.window());
    let (w, b) = (&weights.w[param], &weights.b[param]);
    let outputs = b.len();
    if broadcast::supported::<T>(shape, outputs) {
        return broadcast::forward(shape, outputs, n, x, (w, b), out);
    }
    let per_sample = positions * window * std::mem::size_of::<T>();
    let block = (PATCH_BLOCK_BYTES / per_sample.max(1)).max(1);
    let pixels = shape.height * shape.width * shape.channels;
    bias_rows(out, n * positions, b);
    let mut patches = Vec::with_capacity(block * positions * window);
    for s0 in (0..n).step_by(block) {
        let m = block.min(n - s0);
        patches.clear();
        conv::im2col_extend(shape, m, &x[s0 * pixels..(s0 + m) * pixels], &mut patches);
        let rows = m * positions;
        matmul(
            &mut out[s0 * positions * outputs..(s0 + m) * positions * outputs],
            true,
            Mat::rows(&patches, rows, window),
            Mat::rows(w, outputs, window).t(),
        );
    }
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
    /// Nothing: a backward pass run for the δ it records.
    Discard,
}

impl Sink<'_> {
    /// Hands one parameter layer's gradient over: `sums(samples)` gives its weight and
    /// bias sums (in the plan's layer layout) over a range of the pass's `n` samples.
    fn layer<T: Float>(
        &mut self,
        plan: &Plan,
        param: usize,
        n: usize,
        mut sums: impl FnMut(std::ops::Range<usize>) -> (Vec<T>, Vec<T>),
    ) {
        match self {
            Sink::Sum(theta_row, scale) => {
                let (gw, gb) = sums(0..n);
                plan.scatter(param, &gw, &gb, *scale, theta_row);
            }
            Sink::Discard => {}
            Sink::Groups(matrix, batch) => {
                let dim = plan.arch.dim();
                for (g, row) in matrix.chunks_exact_mut(dim).enumerate() {
                    let (gw, gb) = sums(g * *batch..((g + 1) * *batch).min(n));
                    plan.scatter(param, &gw, &gb, 1.0 / *batch as f64, row);
                }
            }
        }
    }
}

/// The first convolution's patches of a forward pass's samples.
enum FirstPatches<T> {
    /// im2col of the input, as for every other convolution.
    Compute,
    /// Rows of the training set's patches, kept since they do not depend on θ.
    Kept(Arc<Vec<T>>, std::ops::Range<usize>),
}

impl<T: Float> Tape<T> {
    fn forward(
        plan: &Plan,
        weights: &Weights<T>,
        x: Vec<T>,
        n: usize,
        first: FirstPatches<T>,
    ) -> Tape<T> {
        let steps = plan.steps.len();
        let mut tape = Tape {
            n,
            acts: Vec::with_capacity(steps + 1),
            patches: vec![Vec::new(); steps],
            kept_patches: None,
            winners: vec![Vec::new(); steps],
        };
        let mut first = Some(first);
        tape.acts.push(x);
        for (i, step) in plan.steps.iter().enumerate() {
            if tape.acts.len() > i + 1 {
                // A pooling already computed with its convolution (below).
                continue;
            }
            let a = &tape.acts[i];
            let mut out = Vec::new();
            match step {
                Step::Conv {
                    shape,
                    param,
                    outputs,
                    ..
                } if matches!(plan.steps.get(i + 1), Some(Step::Pool { .. }))
                    && broadcast::pooled_supported::<T>(shape, *outputs) =>
                {
                    // The pooling in the convolution's registers: no pass reads the
                    // convolution's own output (an empty entry) past its pooling, only
                    // the winners. Kept patches still serve HVP blocks.
                    if let Some(FirstPatches::Kept(all, range)) = first.take() {
                        tape.kept_patches = Some((all, range));
                    }
                    let (w, b) = (&weights.w[*param], &weights.b[*param]);
                    let mut win = Vec::new();
                    broadcast::forward_pooled(shape, *outputs, n, a, (w, b), &mut out, &mut win);
                    tape.winners[i + 1] = win;
                    tape.acts.push(Vec::new());
                    tape.acts.push(out);
                    continue;
                }
                Step::Conv {
                    shape,
                    param,
                    pooled,
                    ..
                } => {
                    let rows = n * shape.positions();
                    if plan.is_direct(i) {
                        // Kept patches still serve products with more outputs than the
                        // direct kernels take (HVP blocks); none are made here.
                        if let Some(FirstPatches::Kept(all, range)) = first.take() {
                            tape.kept_patches = Some((all, range));
                        }
                        let (w, b) = (&weights.w[*param], &weights.b[*param]);
                        direct::forward(shape, b.len(), n, a, (w, b), &mut out);
                        tape.acts.push(out);
                        continue;
                    }
                    let p = match first.take().filter(|_| i == 0) {
                        Some(FirstPatches::Kept(all, range)) => {
                            tape.kept_patches = Some((all, range));
                            Vec::new()
                        }
                        // Past the forward pass a pooled convolution reads its input,
                        // not its patches (a kept point would hold 77 MB of them on
                        // LeNet): they are made a few samples at a time, in cache.
                        _ if *pooled => {
                            pooled_conv_forward(shape, n, a, &mut out, weights, *param);
                            tape.acts.push(out);
                            continue;
                        }
                        _ => {
                            let mut p = Vec::new();
                            conv::im2col_extend(shape, n, a, &mut p);
                            p
                        }
                    };
                    tape.patches[i] = p;
                    affine(
                        &mut out,
                        rows,
                        Mat::rows(tape.patches(i), rows, shape.window()),
                        &weights.w[*param],
                        &weights.b[*param],
                    );
                }
                Step::Pool { h, w, c, .. } => {
                    let len = n * (h / 2) * (w / 2) * c;
                    out = vec![T::ZERO; len];
                    let mut win = vec![0u8; len];
                    pool::forward((n, *h, *w, *c), a, &mut out, &mut win);
                    tape.winners[i] = win;
                }
                Step::Relu { .. } => {
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
                Step::Flatten { .. } => out = a.clone(),
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

    /// The patch matrix of convolution step `i`.
    fn patches(&self, i: usize) -> &[T] {
        match &self.kept_patches {
            Some((all, range)) if i == 0 => &all[range.clone()],
            _ => &self.patches[i],
        }
    }

    /// What the weights of convolution step `i` multiply.
    fn layer_input(&self, plan: &Plan, i: usize, shape: &ConvShape) -> LayerInput<'_, T> {
        if plan.is_direct(i) {
            let kept = self
                .kept_patches
                .as_ref()
                .map(|(all, range)| &all[range.clone()]);
            return LayerInput::Images(*shape, &self.acts[i], kept);
        }
        let rows = self.n * shape.positions();
        LayerInput::Rows(Mat::rows(self.patches(i), rows, shape.window()))
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

    /// The tangent forward pass in the directions `dirs` (R-operator, all b at once).
    fn tangent(&self, plan: &Plan, weights: &Weights<T>, dirs: &Directions<T>) -> Tangent<T> {
        let (n, b) = (self.n, dirs.b);
        let steps = plan.steps.len();
        let mut t = Tangent {
            acts: Vec::with_capacity(steps + 1),
            patches: vec![Vec::new(); steps],
            winners: vec![Vec::new(); steps],
        };
        // The input's tangent is zero; no step reads it when the first step has the
        // parameters (it does not move), so then it is not even written.
        t.acts.push(if plan.first_param_step == 0 {
            Vec::new()
        } else {
            vec![T::ZERO; self.acts[0].len() * b]
        });
        for (i, step) in plan.steps.iter().enumerate() {
            if t.acts.len() > i + 1 {
                // A pooling already taken with its convolution (below).
                continue;
            }
            let ra = &t.acts[i];
            let live = i > plan.first_param_step;
            let mut out = Vec::new();
            match step {
                Step::Conv {
                    shape,
                    outputs,
                    param,
                    pooled: false,
                } if !live
                    && plan.is_direct(i)
                    && matches!(plan.steps.get(i + 1), Some(Step::Pool { .. }))
                    && broadcast::pooled_supported::<T>(shape, *outputs) =>
                {
                    // The first convolution (its input does not move) at the pooling's
                    // winners only, for all directions: no tangent of its whole output.
                    let (v, vb) = (&dirs.stacked[*param], &dirs.bias[*param]);
                    let winners = &self.winners[i + 1];
                    let x = &self.acts[i];
                    broadcast::tangent_at_winners(
                        shape,
                        (*outputs, b),
                        n,
                        x,
                        (v, vb),
                        winners,
                        &mut out,
                    );
                    // (Read only by a pooling's backward that does not end the pass.)
                    if plan.first_conv_before_pool::<T>(i + 1).is_none() {
                        t.winners[i + 1] = repeat_winners(winners, *outputs, b);
                    }
                    t.acts.push(Vec::new());
                    t.acts.push(out);
                    continue;
                }
                Step::Conv {
                    shape,
                    outputs,
                    param,
                    pooled: true,
                } => {
                    // R(out) at the winners: patches·V_jᵀ + R(patches)_j·Wᵀ + b_j.
                    let conv = PooledConv {
                        shape: *shape,
                        outputs: *outputs,
                    };
                    let mut terms = vec![(
                        Source::Input(&self.acts[i]),
                        Kernel::PerDirection(&dirs.stacked[*param]),
                        T::ONE,
                    )];
                    let rx = live.then(|| by_direction(ra, shape, n, b));
                    if let Some(rx) = &rx {
                        terms.push((
                            Source::Image(rx),
                            Kernel::Shared(&weights.w[*param]),
                            T::ONE,
                        ));
                    }
                    out = vec![T::ZERO; n * conv.pooled_positions() * b * outputs];
                    let winners = &self.winners[i + 1];
                    let bias = Some(dirs.bias[*param].as_slice());
                    let relu = plan.relu_after_pool(i).then(|| self.acts[i + 3].as_slice());
                    pooled::dots(&conv, (n, b), (winners, relu), &terms, bias, &mut out);
                }
                // The tangents at a pooling's or a ReLU's input are not read after
                // this step (only those at parameter layers' inputs are): moved on.
                Step::Pool { fused: true, .. } => out = std::mem::take(&mut t.acts[i]),
                Step::Conv {
                    shape,
                    outputs,
                    param,
                    pooled: false,
                } => {
                    // R(out) = patches·[V_1; …; V_b]ᵀ + R(patches)·Wᵀ: the first product
                    // writes positions × (b·out), the second (positions·b) × out — the
                    // same memory.
                    let (rows, win) = (n * shape.positions(), shape.window());
                    let (v, vb) = (&dirs.stacked[*param], &dirs.bias[*param]);
                    match self.layer_input(plan, i, shape) {
                        LayerInput::Images(_, x, _) if direct::supported::<T>(shape, vb.len()) => {
                            direct::forward(shape, vb.len(), n, x, (v, vb), &mut out);
                        }
                        input => affine(&mut out, rows, input.rows().as_mat(), v, vb),
                    }
                    if live {
                        let mut rp = vec![T::ZERO; rows * b * win];
                        conv::im2col_block(shape, n, b, ra, &mut rp);
                        matmul(
                            &mut out,
                            true,
                            Mat::rows(&rp, rows * b, win),
                            Mat::rows(&weights.w[*param], *outputs, win).t(),
                        );
                        t.patches[i] = rp;
                    }
                }
                Step::Pool { h, w, c, .. } => {
                    let winners = repeat_winners(&self.winners[i], *c, b);
                    out = vec![T::ZERO; n * (h / 2) * (w / 2) * c * b];
                    pool::gather((n, *h, *w, c * b), ra, &winners, &mut out);
                    t.winners[i] = winners;
                }
                Step::Relu { channels } => {
                    out = std::mem::take(&mut t.acts[i]);
                    relu_mask_block(&mut out, &self.acts[i + 1], b, *channels);
                }
                Step::Flatten { pixels, channels } => {
                    out = swap_block(ra, (n, *pixels, b, *channels), true);
                }
                Step::Linear {
                    inputs,
                    outputs,
                    param,
                    ..
                } => {
                    let a = Mat::rows(&self.acts[i], n, *inputs);
                    affine(&mut out, n, a, &dirs.stacked[*param], &dirs.bias[*param]);
                    if live {
                        matmul(
                            &mut out,
                            true,
                            Mat::rows(ra, n * b, *inputs),
                            Mat::rows(&weights.w[*param], *outputs, *inputs).t(),
                        );
                    }
                }
            }
            t.acts.push(out);
        }
        t
    }

    /// The second directional derivative of the logits, R²(z) = d²z(θ + t·v)/dt² at t = 0,
    /// for the directions of `tangent` (positions × b × C as there): a forward pass in
    /// which each parameter layer gives R²(out) = 2·R(in)·V_jᵀ + R²(in)·Wᵀ (no bias: it
    /// is linear in θ) and ReLU and pooling act as in the tangent pass (masks and
    /// winners fixed at θ). Zero up to the first layer with a live input: those steps
    /// are skipped (an empty vector stands for the zeros), and that layer's R²(in)·Wᵀ
    /// too (on LeNet a quarter of the pooled convolution's dots and a zero block of the
    /// first convolution's size, gathered, were a fifth of a quadratic form).
    fn second_tangent(
        &self,
        plan: &Plan,
        weights: &Weights<T>,
        dirs: &Directions<T>,
        tangent: &Tangent<T>,
    ) -> Vec<T> {
        let (n, b) = (self.n, dirs.b);
        // Empty while R² is zero.
        let mut r2: Vec<T> = Vec::new();
        for (i, step) in plan.steps.iter().enumerate() {
            let live = i > plan.first_param_step;
            let zero = r2.is_empty();
            r2 = match step {
                Step::Conv { .. } | Step::Linear { .. } if !live => Vec::new(),
                Step::Pool { .. } | Step::Relu { .. } | Step::Flatten { .. } if zero => Vec::new(),
                Step::Conv {
                    shape,
                    outputs,
                    param,
                    pooled: true,
                } => {
                    let conv = PooledConv {
                        shape: *shape,
                        outputs: *outputs,
                    };
                    let mut out = vec![T::ZERO; n * conv.pooled_positions() * b * outputs];
                    let rx = by_direction(&tangent.acts[i], shape, n, b);
                    let r2x = (!zero).then(|| by_direction(&r2, shape, n, b));
                    let mut terms = vec![(
                        Source::Image(&rx),
                        Kernel::PerDirection(&dirs.stacked[*param]),
                        T::from_f64(2.0),
                    )];
                    if let Some(r2x) = &r2x {
                        terms.push((
                            Source::Image(r2x),
                            Kernel::Shared(&weights.w[*param]),
                            T::ONE,
                        ));
                    }
                    let winners = &self.winners[i + 1];
                    let relu = plan.relu_after_pool(i).then(|| self.acts[i + 3].as_slice());
                    pooled::dots(&conv, (n, b), (winners, relu), &terms, None, &mut out);
                    out
                }
                Step::Pool { fused: true, .. } => r2,
                Step::Conv {
                    shape,
                    outputs,
                    param,
                    pooled: false,
                } => {
                    let (rows, win) = (n * shape.positions(), shape.window());
                    let mut out = vec![T::ZERO; rows * b * outputs];
                    if !zero {
                        let mut rp2 = vec![T::ZERO; rows * b * win];
                        conv::im2col_block(shape, n, b, &r2, &mut rp2);
                        matmul(
                            &mut out,
                            false,
                            Mat::rows(&rp2, rows * b, win),
                            Mat::rows(&weights.w[*param], *outputs, win).t(),
                        );
                    }
                    add_twice_per_direction(
                        &mut out,
                        &tangent.patches[i],
                        &dirs.stacked[*param],
                        (rows, b, win, *outputs),
                    );
                    out
                }
                Step::Pool { h, w, c, .. } => {
                    let mut out = vec![T::ZERO; n * (h / 2) * (w / 2) * c * b];
                    pool::gather((n, *h, *w, c * b), &r2, &tangent.winners[i], &mut out);
                    out
                }
                Step::Relu { channels } => {
                    relu_mask_block(&mut r2, &self.acts[i + 1], b, *channels);
                    r2
                }
                Step::Flatten { pixels, channels } => {
                    swap_block(&r2, (n, *pixels, b, *channels), true)
                }
                Step::Linear {
                    inputs,
                    outputs,
                    param,
                    ..
                } => {
                    let mut out = vec![T::ZERO; n * b * outputs];
                    if !zero {
                        matmul(
                            &mut out,
                            false,
                            Mat::rows(&r2, n * b, *inputs),
                            Mat::rows(&weights.w[*param], *outputs, *inputs).t(),
                        );
                    }
                    add_twice_per_direction(
                        &mut out,
                        &tangent.acts[i],
                        &dirs.stacked[*param],
                        (n, b, *inputs, *outputs),
                    );
                    out
                }
            };
        }
        if r2.is_empty() {
            // No layer with a live input (one linear layer): R² is zero.
            r2 = vec![T::ZERO; self.logits().len() * b];
        }
        r2
    }

    /// Back-propagates `delta` (at the logits) into `sink` (∂L/∂W); with `record`, keeps
    /// the δ each parameter step receives — what the R-operator pass of an HVP at this θ
    /// needs ([`Self::backward_tangent`]).
    fn backward(
        &self,
        plan: &Plan,
        weights: &Weights<T>,
        mut delta: Vec<T>,
        sink: &mut Sink<'_>,
        mut record: Option<&mut Vec<Vec<T>>>,
    ) {
        let n = self.n;
        for (i, step) in plan.steps.iter().enumerate().rev() {
            let need_input = i > plan.first_param_step;
            if let (Some(r), Step::Conv { .. } | Step::Linear { .. }) = (record.as_mut(), step) {
                r[i] = delta.clone();
            }
            match step {
                Step::Conv {
                    shape,
                    outputs,
                    param,
                    pooled: true,
                } => {
                    // δ arrives pooled (the fused pooling passed it through).
                    let conv = PooledConv {
                        shape: *shape,
                        outputs: *outputs,
                    };
                    let winners = &self.winners[i + 1];
                    sink_pooled(plan, *param, sink, (&conv, winners), &delta, &self.acts[i]);
                    if need_input {
                        let mut dx = vec![T::ZERO; n * shape.height * shape.width * shape.channels];
                        let terms = [(Coefs::Shared(&delta), Kernel::Shared(&weights.w[*param]))];
                        pooled::scatter(&conv, (n, 1), winners, &terms, &mut dx);
                        delta = dx;
                    }
                }
                Step::Pool { fused: true, .. } => {}
                Step::Conv {
                    shape,
                    outputs,
                    param,
                    pooled: false,
                } => {
                    let rows = n * shape.positions();
                    let win = shape.window();
                    sink_layer(
                        plan,
                        *param,
                        sink,
                        (
                            Mat::rows(&delta, rows, *outputs),
                            self.layer_input(plan, i, shape),
                        ),
                        shape.positions(),
                    );
                    if need_input {
                        let w = Mat::rows(&weights.w[*param], *outputs, win);
                        let mut cols = vec![T::ZERO; rows * win];
                        matmul(&mut cols, false, Mat::rows(&delta, rows, *outputs), w);
                        let mut dx = vec![T::ZERO; n * shape.height * shape.width * shape.channels];
                        conv::col2im_add(shape, n, &cols, &mut dx);
                        delta = dx;
                    }
                }
                Step::Linear {
                    inputs,
                    outputs,
                    param,
                    ..
                } => {
                    let a = Mat::rows(&self.acts[i], n, *inputs);
                    let d = Mat::rows(&delta, n, *outputs);
                    sink_layer(plan, *param, sink, (d, LayerInput::Rows(a)), 1);
                    if need_input {
                        let w = Mat::rows(&weights.w[*param], *outputs, *inputs);
                        let mut dx = vec![T::ZERO; n * inputs];
                        matmul(&mut dx, false, Mat::rows(&delta, n, *outputs), w);
                        delta = dx;
                    }
                }
                Step::Relu { .. } => relu_mask(&mut delta, &self.acts[i + 1]),
                Step::Pool { .. } if plan.first_conv_before_pool::<T>(i).is_some() => {
                    // The first convolution's sums at the pooling's winners from the
                    // pooled δ (no dense δ; nothing records one): the pass ends here.
                    let first = plan.first_conv_before_pool::<T>(i).expect("the guard");
                    let at = (delta.as_slice(), self.winners[i].as_slice());
                    sink_at_winners(plan, first, sink, at, &self.acts[i - 1]);
                    break;
                }
                Step::Pool { h, w, c, .. } => {
                    if !need_input {
                        continue;
                    }
                    let mut dx = vec![T::ZERO; n * h * w * c];
                    pool::backward((n, *h, *w, *c), &delta, &self.winners[i], &mut dx);
                    delta = dx;
                }
                Step::Flatten { .. } => {}
            }
            if i <= plan.first_param_step {
                break;
            }
        }
    }

    /// The R-operator backward pass for the directions of `tangent`: back-propagates
    /// R(δ) (`rdelta`, at the logits) beside the δ that [`Self::backward`] recorded at
    /// this θ (`deltas`), and writes `scale`·R(∂L/∂W) of direction j into `hvs[j]`.
    #[allow(clippy::too_many_arguments)]
    fn backward_tangent(
        &self,
        plan: &Plan,
        weights: &Weights<T>,
        deltas: &[Vec<T>],
        tangent: &Tangent<T>,
        mut rdelta: Vec<T>,
        dirs: &Directions<T>,
        hvs: &mut [Vec<f64>],
        scale: f64,
    ) {
        let (n, b) = (self.n, dirs.b);
        for (i, step) in plan.steps.iter().enumerate().rev() {
            let need_input = i > plan.first_param_step;
            match step {
                Step::Conv {
                    shape,
                    outputs,
                    param,
                    pooled: true,
                } => {
                    // R(∂L/∂W_j) = Σ_winners R(δ)_j·patch + δ·R(patch)_j; R(δ_in)_j gets
                    // R(δ)_j·W + δ·V_j on each winner's window (δ, R(δ) pooled).
                    let conv = PooledConv {
                        shape: *shape,
                        outputs: *outputs,
                    };
                    let (winners, window) = (&self.winners[i + 1], shape.window());
                    let (rd, delta) = (Coefs::PerDirection(&rdelta), Coefs::Shared(&deltas[i]));
                    let mut terms = vec![(rd, Source::Input(&self.acts[i]))];
                    let rx = need_input.then(|| by_direction(&tangent.acts[i], shape, n, b));
                    if let Some(rx) = &rx {
                        terms.push((delta, Source::Image(rx)));
                    }
                    let mut gw = vec![T::ZERO; b * outputs * window];
                    let mut gb = vec![T::ZERO; b * outputs];
                    pooled::weight_sums(&conv, (0..n, b), winners, &terms, (rd, &mut gb), &mut gw);
                    for (j, hv) in hvs.iter_mut().enumerate() {
                        let (w, bias) = (outputs * window, *outputs);
                        let (gw, gb) = (&gw[j * w..(j + 1) * w], &gb[j * bias..(j + 1) * bias]);
                        plan.scatter(*param, gw, gb, scale, hv);
                    }
                    if need_input {
                        let mut rdx =
                            vec![T::ZERO; n * shape.height * shape.width * shape.channels * b];
                        let terms = [
                            (rd, Kernel::Shared(&weights.w[*param])),
                            (delta, Kernel::PerDirection(&dirs.stacked[*param])),
                        ];
                        pooled::scatter(&conv, (n, b), winners, &terms, &mut rdx);
                        let pixels = shape.height * shape.width;
                        rdelta = match b {
                            1 => rdx,
                            _ => swap_block(&rdx, (n, pixels, b, shape.channels), false),
                        };
                    }
                }
                Step::Pool { fused: true, .. } => {}
                Step::Conv {
                    shape,
                    outputs,
                    param,
                    pooled: false,
                } => {
                    let rows = n * shape.positions();
                    let win = shape.window();
                    let delta = Mat::rows(&deltas[i], rows, *outputs);
                    sink_block(
                        plan,
                        *param,
                        (hvs, scale),
                        (
                            Mat::rows(&rdelta, rows, b * outputs),
                            self.layer_input(plan, i, shape),
                        ),
                        (!tangent.patches[i].is_empty())
                            .then(|| (delta, Mat::rows(&tangent.patches[i], rows, b * win))),
                    );
                    if need_input {
                        // R(δ_in) = R(δ)·W + δ·[V_1 | … | V_b], as (positions·b) × window.
                        let mut cols = vec![T::ZERO; rows * b * win];
                        matmul(
                            &mut cols,
                            false,
                            Mat::rows(&rdelta, rows * b, *outputs),
                            Mat::rows(&weights.w[*param], *outputs, win),
                        );
                        matmul(
                            &mut cols,
                            true,
                            delta,
                            Mat::rows(&dirs.side_by_side[*param], *outputs, b * win),
                        );
                        let mut rdx =
                            vec![T::ZERO; n * shape.height * shape.width * shape.channels * b];
                        conv::col2im_block_add(shape, n, b, &cols, &mut rdx);
                        rdelta = rdx;
                    }
                }
                Step::Linear {
                    inputs,
                    outputs,
                    param,
                    ..
                } => {
                    let delta = Mat::rows(&deltas[i], n, *outputs);
                    sink_block(
                        plan,
                        *param,
                        (hvs, scale),
                        (
                            Mat::rows(&rdelta, n, b * outputs),
                            LayerInput::Rows(Mat::rows(&self.acts[i], n, *inputs)),
                        ),
                        need_input.then(|| (delta, Mat::rows(&tangent.acts[i], n, b * inputs))),
                    );
                    if need_input {
                        let mut rdx = vec![T::ZERO; n * b * inputs];
                        matmul(
                            &mut rdx,
                            false,
                            Mat::rows(&rdelta, n * b, *outputs),
                            Mat::rows(&weights.w[*param], *outputs, *inputs),
                        );
                        matmul(
                            &mut rdx,
                            true,
                            delta,
                            Mat::rows(&dirs.side_by_side[*param], *outputs, b * inputs),
                        );
                        rdelta = rdx;
                    }
                }
                Step::Relu { channels } => {
                    relu_mask_block(&mut rdelta, &self.acts[i + 1], b, *channels);
                }
                Step::Pool { .. } if plan.first_conv_before_pool::<T>(i).is_some() => {
                    // The first convolution's weight and bias sums straight from the
                    // pooled R(δ) at the pooling's winners: no dense R(δ) (¾ zeros) to
                    // write, scatter and sum. Its input does not move: the pass ends here.
                    let (shape, outputs, param) =
                        plan.first_conv_before_pool::<T>(i).expect("the guard");
                    let window = shape.window();
                    let mut gw = vec![T::ZERO; b * outputs * window];
                    let mut gb = vec![T::ZERO; b * outputs];
                    broadcast::weight_sums_at_winners(
                        shape,
                        (outputs, b),
                        n,
                        &self.acts[i - 1],
                        (&rdelta, &self.winners[i]),
                        (&mut gw, &mut gb),
                    );
                    for (j, hv) in hvs.iter_mut().enumerate() {
                        let (gw, gb) = (&gw[j * outputs * window..], &gb[j * outputs..]);
                        plan.scatter(param, &gw[..outputs * window], &gb[..outputs], scale, hv);
                    }
                    break;
                }
                Step::Pool { h, w, c, .. } => {
                    if !need_input {
                        continue;
                    }
                    let mut rdx = vec![T::ZERO; n * h * w * c * b];
                    pool::backward((n, *h, *w, c * b), &rdelta, &tangent.winners[i], &mut rdx);
                    rdelta = rdx;
                }
                Step::Flatten { pixels, channels } => {
                    rdelta = swap_block(&rdelta, (n, *pixels, b, *channels), false);
                }
            }
            if i <= plan.first_param_step {
                break;
            }
        }
    }
}

/// `out` ((rows·b) × out, direction-inner) += 2·R(in)_j·V_jᵀ for every direction j, where
/// `rin` is (rows·b) × fan (direction j's rows at stride b) and `stacked` is [V_1; …; V_b].
fn add_twice_per_direction<T: Float>(
    out: &mut [T],
    rin: &[T],
    stacked: &[T],
    (rows, b, fan, outputs): (usize, usize, usize, usize),
) {
    let mut part = vec![T::ZERO; rows * outputs];
    let two = T::from_f64(2.0);
    for j in 0..b {
        let r = Mat {
            data: &rin[j * fan..],
            rows,
            cols: fan,
            rs: b * fan,
            cs: 1,
        };
        let v = Mat::rows(
            &stacked[j * outputs * fan..(j + 1) * outputs * fan],
            outputs,
            fan,
        );
        matmul(&mut part, false, r, v.t());
        for (row, p) in part.chunks_exact(outputs).enumerate() {
            let o = &mut out[(row * b + j) * outputs..(row * b + j + 1) * outputs];
            for (x, y) in o.iter_mut().zip(p) {
                *x += two * *y;
            }
        }
    }
}

/// What a parameter layer's weights multiply: its input rows (activations, or a
/// convolution's patch matrix), or the images of a directly computed convolution.
#[derive(Clone, Copy)]
enum LayerInput<'a, T> {
    Rows(Mat<'a, T>),
    /// With the images' kept patch rows, if there are.
    Images(ConvShape, &'a [T], Option<&'a [T]>),
}

impl<T: Float> LayerInput<'_, T> {
    /// Columns of the weight matrix: the rows' width, or the kernel window.
    fn fan(&self) -> usize {
        match self {
            LayerInput::Rows(a) => a.cols,
            LayerInput::Images(shape, ..) => shape.window(),
        }
    }

    /// The rows themselves: a directly computed convolution's patch matrix made now
    /// (for more outputs than it computes directly: several directions at once).
    fn rows(&self) -> Rows<'_, T> {
        match self {
            LayerInput::Rows(a) => Rows::Kept(*a),
            LayerInput::Images(shape, x, kept) => {
                let n = x.len() / (shape.height * shape.width);
                if let Some(p) = kept {
                    return Rows::Kept(Mat::rows(p, n * shape.positions(), shape.window()));
                }
                let mut p = Vec::new();
                conv::im2col_extend(shape, n, x, &mut p);
                Rows::Made(p, n * shape.positions(), shape.window())
            }
        }
    }

    /// δᵀ·A (δ.cols × fan) over the rows of samples `samples`, `rows_per_sample` each
    /// (δ's rows are all samples').
    fn weight_sums(
        &self,
        delta: Mat<'_, T>,
        samples: Range<usize>,
        rows_per_sample: usize,
    ) -> Vec<T> {
        let (lo, hi) = (
            samples.start * rows_per_sample,
            samples.end * rows_per_sample,
        );
        let d = Mat {
            data: &delta.data[lo * delta.rs..],
            rows: hi - lo,
            ..delta
        };
        let mut gw = vec![T::ZERO; delta.cols * self.fan()];
        match self {
            LayerInput::Rows(a) => {
                let a = Mat {
                    data: &a.data[lo * a.rs..],
                    rows: hi - lo,
                    ..*a
                };
                matmul(&mut gw, false, d.t(), a);
            }
            LayerInput::Images(shape, x, kept) => {
                let pixels = shape.height * shape.width;
                let images = &x[samples.start * pixels..samples.end * pixels];
                let (m, d_rows) = (samples.len(), &d.data[..d.rows * d.rs]);
                let (positions, window) = (shape.positions(), shape.window());
                if direct::supported::<T>(shape, delta.cols) {
                    direct::weight_sums(shape, delta.cols, m, images, d_rows, &mut gw);
                } else if let Some(p) = kept {
                    let p = &p[lo * window..hi * window];
                    matmul(&mut gw, false, d.t(), Mat::rows(p, hi - lo, window));
                } else {
                    let mut p = Vec::new();
                    conv::im2col_extend(shape, m, images, &mut p);
                    let p = Mat::rows(&p, m * positions, window);
                    matmul(&mut gw, false, d.t(), p);
                }
            }
        }
        gw
    }
}

/// A layer's input rows, kept or made for one product.
enum Rows<'a, T> {
    Kept(Mat<'a, T>),
    Made(Vec<T>, usize, usize),
}

impl<T: Float> Rows<'_, T> {
    fn as_mat(&self) -> Mat<'_, T> {
        match self {
            Rows::Kept(a) => *a,
            Rows::Made(p, rows, cols) => Mat::rows(p, *rows, *cols),
        }
    }
}

/// Sinks the R-operator gradients of one parameter layer for b directions at once:
/// R(∂L/∂W_j) = R(δ_j)ᵀ·A + δᵀ·R(A_j). `first` is (R(δ): rows × (b·out), A),
/// `second` (δ: rows × out, R(A): rows × (b·fan)) when the layer's input has a tangent.
/// Two matrix products for all b directions, then one scatter per direction.
fn sink_block<T: Float>(
    plan: &Plan,
    param: usize,
    (hvs, scale): (&mut [Vec<f64>], f64),
    (rdelta, a): (Mat<'_, T>, LayerInput<'_, T>),
    second: Option<(Mat<'_, T>, Mat<'_, T>)>,
) {
    let b = hvs.len();
    let (rows, fan) = (rdelta.rows, a.fan());
    let outputs = rdelta.cols / b;
    let samples = match a {
        LayerInput::Rows(_) => rows,
        LayerInput::Images(shape, ..) => rows / shape.positions(),
    };
    let first = a.weight_sums(rdelta, 0..samples, rows / samples.max(1));
    let mut gb = vec![T::ZERO; rdelta.cols];
    column_sums(&rdelta.data[..rows * rdelta.cols], rdelta.cols, &mut gb);
    let second = second.map(|(delta, ra)| {
        let mut out = vec![T::ZERO; outputs * b * fan];
        matmul(&mut out, false, delta.t(), ra);
        out
    });
    let mut gw = vec![T::ZERO; outputs * fan];
    for (j, hv) in hvs.iter_mut().enumerate() {
        gw.copy_from_slice(&first[j * outputs * fan..(j + 1) * outputs * fan]);
        if let Some(second) = &second {
            for (o, g) in gw.chunks_exact_mut(fan).enumerate() {
                let from = (o * b + j) * fan;
                for (x, y) in g.iter_mut().zip(&second[from..from + fan]) {
                    *x += *y;
                }
            }
        }
        plan.scatter(param, &gw, &gb[j * outputs..(j + 1) * outputs], scale, hv);
    }
}

/// Sinks a pooled convolution's weight gradient (δ pooled, n × pooled positions × out;
/// its input at θ), summed or per group of samples, as [`sink_layer`].
fn sink_pooled<T: Float>(
    plan: &Plan,
    param: usize,
    sink: &mut Sink<'_>,
    (conv, winners): (&PooledConv, &[u8]),
    delta: &[T],
    input: &[T],
) {
    let (outputs, window) = (conv.outputs, conv.shape.window());
    let n = delta.len() / (conv.pooled_positions() * outputs);
    sink.layer(plan, param, n, |samples| {
        let (mut gw, mut gb) = (vec![T::ZERO; outputs * window], vec![T::ZERO; outputs]);
        let terms = [(Coefs::Shared(delta), Source::Input(input))];
        let bias = (Coefs::Shared(delta), gb.as_mut_slice());
        pooled::weight_sums(conv, (samples, 1), winners, &terms, bias, &mut gw);
        (gw, gb)
    });
}

/// Sinks the first convolution's weight gradient from δ at its 2×2 pooling's output and
/// the pooling's winners ([`broadcast::weight_sums_at_winners`]; the images its input),
/// summed or per group of samples, as [`sink_layer`].
fn sink_at_winners<T: Float>(
    plan: &Plan,
    (shape, outputs, param): (&ConvShape, usize, usize),
    sink: &mut Sink<'_>,
    (delta, winners): (&[T], &[u8]),
    images: &[T],
) {
    let pooled = (shape.out_height() / 2) * (shape.out_width() / 2) * outputs;
    let pixels = shape.height * shape.width * shape.channels;
    sink.layer(plan, param, delta.len() / pooled, |samples| {
        let (mut gw, mut gb) = (
            vec![T::ZERO; outputs * shape.window()],
            vec![T::ZERO; outputs],
        );
        let (from, m) = (samples.start, samples.len());
        broadcast::weight_sums_at_winners(
            shape,
            (outputs, 1),
            m,
            &images[from * pixels..],
            (&delta[from * pooled..], &winners[from * pooled..]),
            (&mut gw, &mut gb),
        );
        (gw, gb)
    });
}

/// Sinks δᵀ·A for one parameter layer (δ: rows × out, A: rows × fan), summed or
/// per group of samples (`rows_per_sample` rows each).
fn sink_layer<T: Float>(
    plan: &Plan,
    param: usize,
    sink: &mut Sink<'_>,
    (delta, a): (Mat<'_, T>, LayerInput<'_, T>),
    rows_per_sample: usize,
) {
    let outputs = delta.cols;
    sink.layer(plan, param, delta.rows / rows_per_sample, |samples| {
        let (lo, hi) = (
            samples.start * rows_per_sample,
            samples.end * rows_per_sample,
        );
        let gw = a.weight_sums(delta, samples, rows_per_sample);
        let mut gb = vec![T::ZERO; outputs];
        column_sums(&delta.data[lo * delta.rs..hi * delta.rs], outputs, &mut gb);
        (gw, gb)
    });
}

/// The [`Objective`] of a network on a set of labelled images, on the kernels, in `T`.
pub struct NativeClassifier<T: Float> {
    plan: Plan,
    /// N × H × W × C, scaled to [0, 1].
    x: Vec<T>,
    labels: Vec<u8>,
    /// Samples per chunk (a chunk is one single-threaded forward/backward).
    chunk: usize,
    /// The latest points HVPs were taken at (most recent first).
    points: std::sync::Mutex<Vec<std::sync::Arc<Point<T>>>>,
    /// How many points fit in [`POINT_CACHE_BYTES`] (at most [`MAX_POINTS`]); 0: none
    /// is kept and every HVP computes its forward pass.
    points_kept: usize,
    /// The first layer's patches of the training images (a convolution's, when it is
    /// the first step and they fit in [`KEPT_PATCHES_BYTES`]): they do not depend on θ,
    /// and their im2col was a third of a forward pass on LeNet.
    input_patches: Option<Arc<Vec<T>>>,
}

/// Memory the kept first-layer patches may take (LeNet on 1,200 images: 69 MB in f32).
const KEPT_PATCHES_BYTES: usize = 256 << 20;

/// What an HVP at θ needs besides its direction, for one chunk of samples: the forward
/// pass, the softmax and the δ every parameter step received.
struct PointChunk<T> {
    tape: Tape<T>,
    labels: Vec<u8>,
    probs: Vec<T>,
    deltas: Vec<Vec<T>>,
}

/// Every chunk's [`PointChunk`] at one θ. Lanczos takes 50–100 HVPs at one point and a
/// measurement's Tr(HΣ) and Hutchinson 80 more; with the point kept, each of them is only
/// its R-operator passes.
struct Point<T> {
    theta: Vec<f64>,
    weights: Weights<T>,
    chunks: Vec<PointChunk<T>>,
}

/// Points kept at most: the dynamics that take HVPs concurrently (GLD Hessian, GLD 1st
/// eigvec) and a measurement's trace estimators each keep theirs between products. A
/// point that was evicted is computed again, which costs what an HVP without a kept
/// point costs anyway.
const MAX_POINTS: usize = 4;

/// Memory the kept points may take together (LeNet on 1,200 images: about 200 MB a
/// point in f32); a training set whose point exceeds it keeps none.
const POINT_CACHE_BYTES: usize = 1 << 30;

/// Directions one R-operator pass over a chunk carries (wider products, b× the tangent
/// memory; measured on LeNet, 2 cores: 4 is the fastest per direction).
const SUB_BLOCK: usize = 4;

/// Activation memory one chunk may use: small enough to stay in cache and below
/// malloc's mmap threshold (measured on LeNet, 2 cores: fwd+bwd of 1,200 images takes
/// 53 ms with 4–16 MB chunks, 94 ms with 256 MB ones — page faults and cache misses).
const CHUNK_BYTES: usize = 8 << 20;

/// Samples per chunk at most, so that small networks still spread over the cores.
const MAX_CHUNK: usize = 64;

/// Chunks computed at once before their results are summed (in chunk order).
const WAVE: usize = 16;

/// Directions of one block HVP pass at most (LeNet: 20-vector blocks of the eigensolver
/// and Tr(HΣ) in one pass each).
const MAX_BLOCK: usize = 32;

/// Memory the partial results of a block HVP pass may hold (b gradients per chunk).
const BLOCK_RESULT_BYTES: usize = 256 << 20;

/// Runs `f` on every item in parallel and reduces the results in item order. Waves of a
/// fixed number of items bound the memory held at once (a result may be a whole
/// gradient: 78 MB for VGG11) without changing the order.
fn in_waves<I: Sync, R: Send>(
    items: &[I],
    f: impl Fn(&I) -> R + Sync + Send,
    reduce: impl Fn(R, R) -> R + Sync + Send,
) -> Option<R> {
    let mut total: Option<R> = None;
    let account = crate::cpu::current();
    for wave in items.chunks(WAVE) {
        let parts: Vec<R> = wave
            .par_iter()
            .map(|item| crate::cpu::charging(&account, || f(item)))
            .collect();
        for part in parts {
            total = Some(match total {
                None => part,
                Some(acc) => reduce(acc, part),
            });
        }
    }
    total
}

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
        crate::kernels::keep_buffers_in_heap();
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
        // A kept point: activations, patches and δ of every sample (per_sample counts
        // three copies of activations and patches).
        let point_bytes = data.len() * per_sample * 2 / 3;
        let cache_budget = std::env::var("NOISELAB_POINT_CACHE_BYTES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(POINT_CACHE_BYTES);
        let mut plan = Plan::new(arch);
        // A one-channel first convolution runs from the images where its kernels can
        // (f32, AVX2): its patch matrix was a third of a gradient's memory traffic.
        // NOISELAB_DIRECT_CONV=0 keeps the patch matrix (to compare the two).
        if let Some(Step::Conv {
            shape,
            outputs,
            pooled: false,
            ..
        }) = plan.steps.first()
        {
            let allowed = std::env::var("NOISELAB_DIRECT_CONV").map_or(true, |v| v != "0");
            if allowed && direct::supported::<T>(shape, *outputs) {
                plan.direct = Some(0);
            }
        }
        let x = nhwc(data);
        let patches_budget = std::env::var("NOISELAB_KEPT_PATCHES_BYTES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(KEPT_PATCHES_BYTES);
        let input_patches = match plan.steps.first() {
            Some(Step::Conv { shape, .. })
                if data.len() * shape.positions() * shape.window() * std::mem::size_of::<T>()
                    <= patches_budget =>
            {
                let mut p = vec![T::ZERO; data.len() * shape.positions() * shape.window()];
                conv::im2col(shape, data.len(), &x, &mut p);
                Some(Arc::new(p))
            }
            _ => None,
        };
        Ok(NativeClassifier {
            x,
            labels: data.labels.clone(),
            chunk,
            plan,
            points: Default::default(),
            points_kept: (cache_budget / point_bytes.max(1)).min(MAX_POINTS),
            input_patches,
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
        // The kept patches are the training images', used for consecutive samples (full
        // passes) without a copy. Scattered ones (a minibatch) compute theirs: gathering
        // them from the 69 MB of kept patches measured slower than im2col of a batch of 20
        // (4.9 vs 2.9 ms an SGD step on LeNet).
        let first = match &self.input_patches {
            Some(all)
                if std::ptr::eq(x, self.x.as_slice())
                    && !idx.is_empty()
                    && idx.windows(2).all(|w| w[1] == w[0] + 1) =>
            {
                let per = all.len() / self.labels.len();
                FirstPatches::Kept(all.clone(), idx[0] * per..(idx[0] + idx.len()) * per)
            }
            _ => FirstPatches::Compute,
        };
        Tape::forward(&self.plan, weights, xs, idx.len(), first)
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
        let chunks: Vec<&[usize]> = indices.chunks(chunk.max(1)).collect();
        in_waves(&chunks, |c| f(c), reduce)
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

    /// Directions one block HVP pass takes at most: the chunks' partial results (b
    /// gradients each, [`WAVE`] of them at once) stay within [`BLOCK_RESULT_BYTES`].
    fn block_limit(&self) -> usize {
        (BLOCK_RESULT_BYTES / ((WAVE + 1) * self.dim() * 8)).clamp(1, MAX_BLOCK)
    }

    /// One chunk's [`PointChunk`] at the weights of θ.
    fn point_chunk(&self, weights: &Weights<T>, idx: &[usize]) -> PointChunk<T> {
        let tape = self.tape(weights, &self.x, idx);
        let classes = self.plan.arch.classes;
        let labels = self.labels_of(idx);
        let (_, delta, probs) = tape.loss_and_delta(&labels, classes, 1.0);
        let mut deltas = vec![Vec::new(); self.plan.steps.len()];
        tape.backward(
            &self.plan,
            weights,
            delta,
            &mut Sink::Discard,
            Some(&mut deltas),
        );
        PointChunk {
            tape,
            labels,
            probs,
            deltas,
        }
    }

    /// The kept point at θ, computed now if it is not one of the last `points_kept`;
    /// `None` when a point does not fit the cache budget.
    fn point(&self, theta: &[f64]) -> Option<std::sync::Arc<Point<T>>> {
        if self.points_kept == 0 {
            return None;
        }
        let lock = || self.points.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = lock().iter().find(|p| p.theta == theta) {
            return Some(p.clone());
        }
        let weights = self.plan.weights::<T>(theta);
        let all: Vec<usize> = (0..self.num_samples()).collect();
        let account = crate::cpu::current();
        let chunks = all
            .par_chunks(self.chunk)
            .map(|idx| crate::cpu::charging(&account, || self.point_chunk(&weights, idx)))
            .collect();
        let point = std::sync::Arc::new(Point {
            theta: theta.to_vec(),
            weights,
            chunks,
        });
        let mut points = lock();
        points.insert(0, point.clone());
        points.truncate(self.points_kept);
        Some(point)
    }

    /// `per_chunk` on every chunk's [`PointChunk`] at θ, reduced in chunk order: from the
    /// kept point, or computed chunk by chunk when points are not kept.
    fn over_point<R: Send>(
        &self,
        theta: &[f64],
        per_chunk: impl Fn(&Weights<T>, &PointChunk<T>) -> R + Sync + Send,
        reduce: impl Fn(R, R) -> R + Sync + Send,
    ) -> R {
        let total = match self.point(theta) {
            Some(point) => in_waves(&point.chunks, |c| per_chunk(&point.weights, c), reduce),
            None => {
                let weights = self.plan.weights::<T>(theta);
                let all: Vec<usize> = (0..self.num_samples()).collect();
                self.chunked(
                    &all,
                    self.chunk,
                    |idx| per_chunk(&weights, &self.point_chunk(&weights, idx)),
                    reduce,
                )
            }
        };
        total.expect("N ≥ 1")
    }

    /// H·v for the directions `dirs` (in sub-blocks) on one chunk: R-operator passes only.
    fn hvp_chunk(
        &self,
        weights: &Weights<T>,
        chunk: &PointChunk<T>,
        dirs: &[Directions<T>],
        scale: f64,
    ) -> Vec<Vec<f64>> {
        let classes = self.plan.arch.classes;
        let total: usize = dirs.iter().map(|d| d.b).sum();
        let mut hvs = vec![vec![0.0; self.dim()]; total];
        let mut at = 0;
        for d in dirs {
            let tangent = chunk.tape.tangent(&self.plan, weights, d);
            // R(δ_L) = (diag p − p pᵀ)·R(z) per sample and direction.
            let rz = tangent.acts.last().expect("logits");
            let mut rdelta = vec![T::ZERO; rz.len()];
            for (k, (rd, r)) in rdelta
                .chunks_exact_mut(classes)
                .zip(rz.chunks_exact(classes))
                .enumerate()
            {
                let p = &chunk.probs[(k / d.b) * classes..(k / d.b + 1) * classes];
                let mut pr = T::ZERO;
                for c in 0..classes {
                    pr += p[c] * r[c];
                }
                for c in 0..classes {
                    rd[c] = p[c] * (r[c] - pr);
                }
            }
            chunk.tape.backward_tangent(
                &self.plan,
                weights,
                &chunk.deltas,
                &tangent,
                rdelta,
                d,
                &mut hvs[at..at + d.b],
                scale,
            );
            at += d.b;
        }
        hvs
    }

    /// Σ_i over the chunk's samples of vᵀ∇²ℓ_i·v for each direction of `dirs`, by
    /// forward mode only: along θ + t·v, d²ℓ/dt² = R(z)ᵀ(diag p − p pᵀ)R(z) + (p − y)ᵀR²(z)
    /// (METHOD.md §3) — two forward passes per direction block, no backward pass.
    fn quadratic_forms_chunk(
        &self,
        weights: &Weights<T>,
        chunk: &PointChunk<T>,
        dirs: &[Directions<T>],
    ) -> Vec<f64> {
        let classes = self.plan.arch.classes;
        let mut forms = Vec::new();
        for d in dirs {
            let tangent = chunk.tape.tangent(&self.plan, weights, d);
            let r2 = chunk.tape.second_tangent(&self.plan, weights, d, &tangent);
            let rz = tangent.acts.last().expect("logits");
            let mut sums = vec![0.0; d.b];
            for (k, (r, q)) in rz
                .chunks_exact(classes)
                .zip(r2.chunks_exact(classes))
                .enumerate()
            {
                let s = k / d.b;
                let p = &chunk.probs[s * classes..(s + 1) * classes];
                let y = chunk.labels[s] as usize;
                let (mut pr, mut prr, mut first) = (0.0, 0.0, 0.0);
                for c in 0..classes {
                    let (pc, rc) = (p[c].to_f64(), r[c].to_f64());
                    pr += pc * rc;
                    prr += pc * rc * rc;
                    first += pc * q[c].to_f64();
                }
                sums[k % d.b] += prr - pr * pr + first - q[y].to_f64();
            }
            forms.extend(sums);
        }
        forms
    }

    /// H·v_j for a group of directions: the point at θ (kept, or per chunk when it does
    /// not fit), then R-operator passes of [`SUB_BLOCK`] directions each.
    fn hvp_group(&self, theta: &[f64], vs: &[&[f64]]) -> Vec<Vec<f64>> {
        let dirs: Vec<Directions<T>> = vs
            .chunks(SUB_BLOCK)
            .map(|g| Directions::new(&self.plan, g))
            .collect();
        let scale = 1.0 / self.num_samples() as f64;
        let reduce = |mut a: Vec<Vec<f64>>, b: Vec<Vec<f64>>| {
            for (x, y) in a.iter_mut().zip(&b) {
                x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
            }
            a
        };
        self.over_point(
            theta,
            |weights, chunk| self.hvp_chunk(weights, chunk, &dirs, scale),
            reduce,
        )
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
        self.batch_loss(theta, 0..self.num_samples())
    }

    fn batch_loss(&self, theta: &[f64], samples: Range<usize>) -> Result<f64> {
        check_range(samples.clone(), self.num_samples())?;
        self.check_theta(theta)?;
        let weights = self.plan.weights::<T>(theta);
        let part: Vec<usize> = samples.collect();
        let classes = self.plan.arch.classes;
        let total = self
            .chunked(
                &part,
                self.chunk,
                |idx| {
                    let tape = self.tape(&weights, &self.x, idx);
                    tape.loss_and_delta(&self.labels_of(idx), classes, 0.0).0
                },
                |a, b| a + b,
            )
            .unwrap_or(0.0);
        Ok(total / part.len() as f64)
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
                        &mut Sink::Sum(&mut g, scale),
                        None,
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
        let account = crate::cpu::current();
        out.as_mut_slice()
            .par_chunks_mut(groups_per_chunk * dim)
            .zip(indices.par_chunks(groups_per_chunk * batch_size))
            .for_each(|(block, idx)| {
                let _charged = crate::cpu::Charged::to(&account);
                let tape = self.tape(&weights, &self.x, idx);
                // δ of Σ_i ℓ_i: per-sample gradients, averaged per group by the sink.
                let (_, delta, _) = tape.loss_and_delta(&self.labels_of(idx), classes, 1.0);
                tape.backward(
                    &self.plan,
                    &weights,
                    delta,
                    &mut Sink::Groups(block, batch_size),
                    None,
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
        Ok(self.hvp_block(theta, &[v])?.pop().expect("one direction"))
    }

    fn hessian_quadratic_forms(&self, theta: &[f64], vs: &[&[f64]]) -> Result<Vec<f64>> {
        self.check_theta(theta)?;
        for v in vs {
            check_len(self.plan.arch.name, "direction", v.len(), self.dim())?;
        }
        let dirs: Vec<Directions<T>> = vs
            .chunks(SUB_BLOCK)
            .map(|g| Directions::new(&self.plan, g))
            .collect();
        let reduce = |mut a: Vec<f64>, b: Vec<f64>| {
            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            a
        };
        let sums = self.over_point(
            theta,
            |weights, chunk| self.quadratic_forms_chunk(weights, chunk, &dirs),
            reduce,
        );
        let n = self.num_samples() as f64;
        Ok(sums.into_iter().map(|s| s / n).collect())
    }

    fn hvp_block(&self, theta: &[f64], vs: &[&[f64]]) -> Result<Vec<Vec<f64>>> {
        self.check_theta(theta)?;
        for v in vs {
            check_len(self.plan.arch.name, "HVP vector", v.len(), self.dim())?;
        }
        let mut out = Vec::with_capacity(vs.len());
        for group in vs.chunks(self.block_limit()) {
            out.extend(self.hvp_group(theta, group));
        }
        Ok(out)
    }
}
