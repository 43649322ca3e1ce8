//! A convolution of a one-channel image without padding, computed from the image
//! itself instead of its patch matrix: the first layer of a classifier on grey images
//! (LeNet's 5×5 convolution, 10 outputs, on FashionMNIST).
//!
//! As a matrix product this layer is the worst shape there is (a window of 25 values, 10
//! outputs): its patch matrix is 25× the image (69 MB for LeNet's 1,200 training
//! images, kept between passes) and every pass streams it from memory twice — the
//! forward product and the weight gradient — which was about a third of a gradient and
//! of an HVP (docs/BENCHMARKS.md). In AVX2 an output row of Wₒ·C_out values (NHWC, 240
//! on LeNet) is a run of 8-lane vectors; lane l of vector v is output (x, c) with
//! x·C_out + c = 8v + l, so the input it needs is pixel x + kx of the row, picked from
//! one load of the row by a lane permutation, and the weight it needs is W[c, tap],
//! from a table of the weights laid out in that lane pattern. The image row loaded once
//! serves every kernel column, the permuted vector every kernel row. With AVX-512 the
//! broadcast kernels (`kernels::broadcast`: the outputs in the lanes, each pixel
//! broadcast) run instead: the same layout in 16 lanes measured 1.7–1.9× slower.
//!
//! f32 in AVX-512 or AVX2 + FMA when [`supported`]; anything else runs the plain loops
//! (the callers use the patch matrix there: `models/native.rs`). Single-threaded, like
//! the other kernels.

use super::conv::ConvShape;
use super::{broadcast, fma_available, widest, Float};

/// Kernel sizes the vector code is unrolled for.
const KERNELS: [usize; 2] = [3, 5];

/// Most outputs computed directly. The weight table is k·k rows of Wₒ·C_out values
/// (24 KB for LeNet's 10 outputs); beyond this it leaves the first-level cache, and
/// several directions' outputs side by side (an HVP block: 40 for four) measured
/// slower than the patch matrix's product (docs/BENCHMARKS.md).
pub const MAX_OUTPUTS: usize = 16;

/// Whether [`forward`] and [`weight_sums`] run in vector code for this convolution
/// with `outputs` output channels: f32, one input channel, no padding, a 3×3 or 5×5
/// kernel, at most [`MAX_OUTPUTS`] outputs, on a CPU with AVX-512, or with AVX2 and FMA
/// where output rows are whole vectors and each vector's pixels plus the kernel's width
/// lie within one load.
pub fn supported<T: Float>(shape: &ConvShape, outputs: usize) -> bool {
    lanes_for::<T>(shape, outputs).is_some()
}

/// The vector width the kernels run this convolution at: 16 where the CPU has AVX-512
/// (the broadcast kernels, `kernels::broadcast`, which measured faster than 16-lane
/// permutations), else 8 (AVX2) where the row fits, or none.
fn lanes_for<T: Float>(shape: &ConvShape, outputs: usize) -> Option<usize> {
    let shaped = std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
        && shape.channels == 1
        && shape.padding == 0
        && KERNELS.contains(&shape.kernel)
        && (1..=MAX_OUTPUTS).contains(&outputs);
    if !shaped {
        return None;
    }
    if broadcast::sums_supported::<T>(shape, outputs) {
        return Some(16);
    }
    // An output row of whole 8-lane vectors, each vector's pixels plus the kernel's
    // width within one load of the image row.
    let lanes = 8;
    let fits = (shape.out_width() * outputs).is_multiple_of(lanes)
        && (0..shape.out_width() * outputs / lanes)
            .map(|v| (lanes * v + lanes - 1) / outputs - lanes * v / outputs)
            .max()
            .is_some_and(|span| span + shape.kernel - 1 < lanes);
    (widest() >= lanes && fma_available() && fits).then_some(lanes)
}

fn check(shape: &ConvShape, outputs: usize, n: usize, x: usize, weights: usize, rows: usize) {
    assert!(
        shape.channels == 1 && shape.padding == 0,
        "direct convolution: one channel, no padding"
    );
    assert!(
        x >= n * shape.height * shape.width,
        "direct convolution: input too short"
    );
    assert_eq!(
        weights,
        outputs * shape.window(),
        "direct convolution: weights"
    );
    assert!(
        rows >= n * shape.positions() * outputs,
        "direct convolution: output too short"
    );
}

/// `out` (replaced: n·Hₒ·Wₒ × `outputs`, NHWC) = the convolution of the `n`
/// one-channel images `x` (n × H × W) with `w` (`outputs` × k·k, row-major windows)
/// plus `bias` (`outputs`). Every value is written once, into fresh capacity: zeroing
/// the output first (28 MB a pass over LeNet's 1,200 images) cost a tenth of a
/// forward pass. AVX-512 and the plain loops are the broadcast kernels'.
pub fn forward<T: Float>(
    shape: &ConvShape,
    outputs: usize,
    n: usize,
    x: &[T],
    (w, bias): (&[T], &[T]),
    out: &mut Vec<T>,
) {
    let len = n * shape.positions() * outputs;
    check(shape, outputs, n, x.len(), w.len(), len);
    assert_eq!(bias.len(), outputs, "direct convolution: bias");
    #[cfg(target_arch = "x86_64")]
    if lanes_for::<T>(shape, outputs) == Some(avx2::LANES) {
        if let (Some(x), Some(w), Some(bias)) =
            (super::as_f32(x), super::as_f32(w), super::as_f32(bias))
        {
            let lanes = Lanes::new(shape, outputs, (w, bias), avx2::LANES);
            out.clear();
            out.reserve(len);
            let to = out.as_mut_ptr().cast::<f32>();
            // SAFETY: `lanes_for` checked AVX2 and the shapes the tables assume (T is
            // f32, so `to` is the output's); `to` has room for `len` values and the
            // kernel writes every one of them once (all rows of all vectors of all
            // samples), so the length can be set after.
            unsafe {
                match shape.kernel {
                    3 => avx2::forward::<3>(&lanes, n, x, to),
                    _ => avx2::forward::<5>(&lanes, n, x, to),
                }
                out.set_len(len);
            }
            return;
        }
    }
    broadcast::forward(shape, outputs, n, x, (w, bias), out);
}

/// `gw` (`outputs` × k·k, accumulated into) += Σ over the `n` images `x` and their
/// output positions of δ ⊗ window: the weight gradient of [`forward`] for the output
/// gradient `delta` (n·Hₒ·Wₒ × `outputs`, NHWC). AVX-512 and the plain loops are the
/// broadcast kernels'.
pub fn weight_sums<T: Float>(
    shape: &ConvShape,
    outputs: usize,
    n: usize,
    x: &[T],
    delta: &[T],
    gw: &mut [T],
) {
    check(shape, outputs, n, x.len(), gw.len(), delta.len());
    #[cfg(target_arch = "x86_64")]
    if lanes_for::<T>(shape, outputs) == Some(avx2::LANES) {
        if let (Some(x), Some(delta), Some(gw)) = (
            super::as_f32(x),
            super::as_f32(delta),
            super::as_f32_mut(gw),
        ) {
            let lanes = Lanes::new(shape, outputs, (&[], &[]), avx2::LANES);
            // SAFETY: `lanes_for` checked AVX2 and the shapes the tables assume;
            // `check` the lengths.
            unsafe {
                match shape.kernel {
                    3 => avx2::weight_sums::<3>(&lanes, n, x, delta, gw),
                    _ => avx2::weight_sums::<5>(&lanes, n, x, delta, gw),
                }
            }
            return;
        }
    }
    broadcast::weight_sums(shape, outputs, n, x, delta, gw);
}

/// The lane pattern of an output row: for vector v, the first input pixel of its
/// lanes, which lanes of a load from there lie inside the image row, the permutation
/// that gives each lane its pixel for every kernel column, and the weights of every
/// tap laid out like the row (lane 8v + l holds channel (8v + l) mod C_out).
struct Lanes {
    height: usize,
    width: usize,
    out_height: usize,
    /// f32 values in an output row: Wₒ·C_out.
    row: usize,
    outputs: usize,
    /// Lanes of a vector.
    lanes: usize,
    x0: Vec<usize>,
    mask: Vec<i32>,
    /// (vector, kernel column) → the lanes' indices into the load at x0.
    perm: Vec<i32>,
    /// tap (ky·k + kx) → the row's weights for it.
    weights: Vec<f32>,
    /// The row's biases.
    bias: Vec<f32>,
}

impl Lanes {
    fn new(shape: &ConvShape, outputs: usize, (w, bias): (&[f32], &[f32]), width: usize) -> Self {
        let (k, row) = (shape.kernel, shape.out_width() * outputs);
        let vectors = row / width;
        let mut lanes = Lanes {
            height: shape.height,
            width: shape.width,
            out_height: shape.out_height(),
            row,
            outputs,
            lanes: width,
            x0: Vec::with_capacity(vectors),
            mask: Vec::with_capacity(vectors * width),
            perm: Vec::with_capacity(vectors * k * width),
            weights: Vec::new(),
            bias: match bias {
                [] => Vec::new(),
                _ => bias.repeat(shape.out_width()),
            },
        };
        for v in 0..vectors {
            let x0 = width * v / outputs;
            lanes.x0.push(x0);
            lanes
                .mask
                .extend((0..width).map(|l| if x0 + l < shape.width { -1 } else { 0 }));
            for kx in 0..k {
                lanes
                    .perm
                    .extend((0..width).map(|l| ((width * v + l) / outputs - x0 + kx) as i32));
            }
        }
        if !w.is_empty() {
            // Made for every call (the per-batch sharpness makes one per batch of 20
            // images): plain loops, no division per entry.
            let wo = shape.out_width();
            lanes.weights.reserve(k * k * row);
            for tap in 0..k * k {
                for _ in 0..wo {
                    lanes
                        .weights
                        .extend((0..outputs).map(|c| w[c * k * k + tap]));
                }
            }
        }
        lanes
    }
}

/// AVX2 + FMA: 8 lanes.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Lanes;
    use std::arch::x86_64::*;

    pub const LANES: usize = 8;
    type V = __m256;
    type I = __m256i;
    type M = __m256i;

    #[inline(always)]
    unsafe fn zero() -> V {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> V {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: V) {
        _mm256_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn add(a: V, b: V) -> V {
        _mm256_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn fma(a: V, b: V, c: V) -> V {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn masked_load(p: *const f32, m: M) -> V {
        _mm256_maskload_ps(p, m)
    }
    #[inline(always)]
    unsafe fn permute(a: V, i: I) -> V {
        _mm256_permutevar8x32_ps(a, i)
    }
    #[inline(always)]
    unsafe fn index_of(i: &[i32]) -> I {
        _mm256_loadu_si256(i.as_ptr().cast())
    }
    #[inline(always)]
    unsafe fn mask_of(m: &[i32]) -> M {
        _mm256_loadu_si256(m.as_ptr().cast())
    }

    /// Output rows computed at once: their accumulators stay in registers while every
    /// input row they read is loaded and permuted once.
    const ROWS: usize = 8;

    /// Samples taken through one output vector before the next: their images (3 KB
    /// each on LeNet) stay in cache while that vector's weights are reused.
    const SAMPLES: usize = 16;

    /// Weights of one group of output vectors, kept in the first-level cache.
    const WEIGHT_BYTES: usize = 32 << 10;

    #[inline(always)]
    unsafe fn tables<const K: usize>(l: &Lanes, v: usize) -> (M, [I; K]) {
        debug_assert_eq!(l.lanes, LANES);
        let mask = mask_of(&l.mask[v * LANES..(v + 1) * LANES]);
        let perm = std::array::from_fn(|kx| index_of(&l.perm[(v * K + kx) * LANES..][..LANES]));
        (mask, perm)
    }

    /// See [`super::forward`]. Callers must run on a CPU with the module's features, with the
    /// lengths checked and `l` built with the weights.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn forward<const K: usize>(l: &Lanes, n: usize, x: &[f32], out: *mut f32) {
        let (h, wi, ho, e) = (l.height, l.width, l.out_height, l.row);
        // Vectors of a row in groups whose weights (K·K vectors each) stay in the first
        // level cache: all of them for LeNet, a quarter for four directions at once.
        let group = (WEIGHT_BYTES / (K * K * LANES * 4)).max(1);
        for s0 in (0..n).step_by(SAMPLES) {
            for g0 in (0..e / LANES).step_by(group) {
                for s in s0..n.min(s0 + SAMPLES) {
                    for v in g0..(e / LANES).min(g0 + group) {
                        let (mask, perm) = tables::<K>(l, v);
                        let wv = l.weights.as_ptr().add(v * LANES);
                        let base = x.as_ptr().add(s * h * wi + l.x0[v]);
                        let o = out.add(s * ho * e + v * LANES);
                        for y0 in (0..ho).step_by(ROWS) {
                            let mut acc = [load(l.bias.as_ptr().add(v * LANES)); ROWS];
                            // Input rows past the image (a last block of fewer rows) are read
                            // clamped to its last row; the rows they feed are not stored. One
                            // call per input row of the block, so that every accumulator index
                            // is a constant and the accumulators stay in registers.
                            let at = (base, y0, wv);
                            input_row::<K, 0>(l, at, mask, &perm, &mut acc);
                            input_row::<K, 1>(l, at, mask, &perm, &mut acc);
                            input_row::<K, 2>(l, at, mask, &perm, &mut acc);
                            input_row::<K, 3>(l, at, mask, &perm, &mut acc);
                            input_row::<K, 4>(l, at, mask, &perm, &mut acc);
                            input_row::<K, 5>(l, at, mask, &perm, &mut acc);
                            input_row::<K, 6>(l, at, mask, &perm, &mut acc);
                            input_row::<K, 7>(l, at, mask, &perm, &mut acc);
                            input_row::<K, 8>(l, at, mask, &perm, &mut acc);
                            input_row::<K, 9>(l, at, mask, &perm, &mut acc);
                            input_row::<K, 10>(l, at, mask, &perm, &mut acc);
                            input_row::<K, 11>(l, at, mask, &perm, &mut acc);
                            for (j, a) in acc.iter().enumerate().take(ho - y0) {
                                let q = o.add((y0 + j) * e);
                                store(q, *a);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Input row `R` of a block of [`ROWS`] output rows from `y0` (`base`: the
    /// vector's first pixel in the image, `wv`: its weights): permuted once per kernel
    /// column, multiplied into every output row it reaches. Rows past `ROWS + K - 1`
    /// are none.
    #[inline(always)]
    unsafe fn input_row<const K: usize, const R: usize>(
        l: &Lanes,
        (base, y0, wv): (*const f32, usize, *const f32),
        mask: M,
        perm: &[I; K],
        acc: &mut [V; ROWS],
    ) {
        if R >= ROWS + K - 1 {
            return;
        }
        let seg = masked_load(base.add((y0 + R).min(l.height - 1) * l.width), mask);
        for (kx, p) in perm.iter().enumerate() {
            let p = permute(seg, *p);
            for ky in 0..K {
                if R >= ky && R - ky < ROWS {
                    let w = load(wv.add((ky * K + kx) * l.row));
                    acc[R - ky] = fma(p, w, acc[R - ky]);
                }
            }
        }
    }

    /// See [`super::weight_sums`]. Callers must run on a CPU with the module's features, with
    /// the lengths checked.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn weight_sums<const K: usize>(
        l: &Lanes,
        n: usize,
        x: &[f32],
        delta: &[f32],
        gw: &mut [f32],
    ) {
        let e = l.row;
        // Lane-wise sums, tap-major like the weight table: reduced to channels at the end.
        let mut sums = vec![0f32; K * K * e];
        for s0 in (0..n).step_by(SAMPLES) {
            let samples = (s0, n.min(s0 + SAMPLES));
            for v in 0..e / LANES {
                let (mask, perm) = tables::<K>(l, v);
                let at = (x.as_ptr().add(l.x0[v]), delta.as_ptr().add(v * LANES), mask);
                // Two kernel columns at a time: 2·K accumulators, and the image row
                // loaded once for both.
                let mut kx = 0;
                while kx < K {
                    let taken = if kx + 1 < K {
                        let acc = columns::<K, 2>(l, at, samples, [perm[kx], perm[kx + 1]]);
                        add_columns::<K, 2>(&mut sums, (e, v, kx), acc)
                    } else {
                        let acc = columns::<K, 1>(l, at, samples, [perm[kx]]);
                        add_columns::<K, 1>(&mut sums, (e, v, kx), acc)
                    };
                    kx += taken;
                }
            }
        }
        for (tap, t) in sums.chunks_exact(e).enumerate() {
            for (el, s) in t.iter().enumerate() {
                gw[(el % l.outputs) * K * K + tap] += *s;
            }
        }
    }

    /// Σ over the input rows of the samples s0..s1 of (row permuted for kernel column
    /// g) × δ of the output row ky above it, per kernel row ky and column g (`x`, `d`:
    /// the vector's first pixel and δ in sample 0).
    #[inline(always)]
    unsafe fn columns<const K: usize, const G: usize>(
        l: &Lanes,
        (x, d, mask): (*const f32, *const f32, M),
        (s0, s1): (usize, usize),
        perm: [I; G],
    ) -> [[V; G]; K] {
        let (h, wi, ho, e) = (l.height, l.width, l.out_height, l.row);
        let mut acc = [[zero(); G]; K];
        for s in s0..s1 {
            let (img, d) = (x.add(s * h * wi), d.add(s * ho * e));
            for rho in 0..h {
                let seg = masked_load(img.add(rho * wi), mask);
                let p: [V; G] = std::array::from_fn(|g| permute(seg, perm[g]));
                for (ky, a) in acc.iter_mut().enumerate() {
                    if rho >= ky && rho - ky < ho {
                        let dv = load(d.add((rho - ky) * e));
                        for g in 0..G {
                            a[g] = fma(p[g], dv, a[g]);
                        }
                    }
                }
            }
        }
        acc
    }

    /// Adds one vector's accumulators for kernel columns kx.. into the lane sums;
    /// returns how many columns they were.
    #[inline(always)]
    unsafe fn add_columns<const K: usize, const G: usize>(
        sums: &mut [f32],
        (e, v, kx): (usize, usize, usize),
        acc: [[V; G]; K],
    ) -> usize {
        for (ky, a) in acc.iter().enumerate() {
            for (g, a) in a.iter().enumerate() {
                let q = sums[((ky * K + kx + g) * e + v * LANES)..][..LANES].as_mut_ptr();
                store(q, add(load(q), *a));
            }
        }
        G
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{avx512_available, WIDEST};

    /// Runs `f` at every vector width the kernels take this convolution at on this
    /// CPU and in the plain loops; returns those widths (0: the plain loops).
    fn at_every_width(shape: &ConvShape, outputs: usize, mut f: impl FnMut()) -> Vec<usize> {
        let mut widths = Vec::new();
        for cap in [usize::MAX, 8, 0] {
            WIDEST.with(|w| w.set(cap));
            let width = lanes_for::<f32>(shape, outputs).unwrap_or(0);
            if !widths.contains(&width) {
                widths.push(width);
                f();
            }
        }
        WIDEST.with(|w| w.set(usize::MAX));
        widths
    }

    /// The widths this CPU has, widest first, then the plain loops.
    fn cpu_widths() -> Vec<usize> {
        let mut widths = Vec::new();
        if avx512_available() {
            widths.push(16);
        }
        if crate::kernels::fma_available() {
            widths.push(8);
        }
        widths.push(0);
        widths
    }
    use crate::kernels::broadcast::tests::{routes_match_the_patch_matrix, Routes};

    /// Both functions against the patch matrix's products (the route they replace).
    fn matches_the_patch_matrix<T: Float>(shape: ConvShape, outputs: usize, n: usize, tol: f64) {
        let routes: Routes<T> = (forward, weight_sums);
        routes_match_the_patch_matrix(shape, outputs, n, tol, routes);
    }

    fn shape(side: usize, kernel: usize) -> ConvShape {
        ConvShape {
            height: side,
            width: side,
            channels: 1,
            kernel,
            padding: 0,
        }
    }

    #[test]
    fn lenet_first_layer_runs_in_vector_code_where_the_cpu_can() {
        let lenet = shape(28, 5);
        // LeNet's 10 outputs, and 6 and 16 (rows of 144 and 384 values).
        for outputs in [10, 6, 16] {
            let widths = at_every_width(&lenet, outputs, || {
                matches_the_patch_matrix::<f32>(lenet, outputs, 5, 1e-6)
            });
            assert_eq!(widths, cpu_widths(), "{outputs} outputs");
            assert!(!supported::<f64>(&lenet, outputs));
            matches_the_patch_matrix::<f64>(lenet, outputs, 2, 1e-13);
        }
        // Two directions of an HVP block side by side: the patch matrix's route.
        assert!(!supported::<f32>(&lenet, 20));
        matches_the_patch_matrix::<f32>(lenet, 20, 2, 1e-6);
        // 3×3 kernels, and a last block of fewer than eight output rows (Hₒ = 10).
        let small = shape(12, 3);
        let widths = at_every_width(&small, 8, || {
            matches_the_patch_matrix::<f32>(small, 8, 3, 1e-6)
        });
        assert_eq!(widths, cpu_widths());
    }

    #[test]
    fn shapes_outside_the_eight_lane_code_take_the_other_routes() {
        // One output (a vector spans 8 pixels, too wide for a 5×5 kernel in one load)
        // and rows that are not whole vectors (Wₒ·C_out = 10·3): outside the AVX2
        // lanes, still the broadcast kernels' with AVX-512.
        let lenet = shape(28, 5);
        for (shape, outputs) in [(lenet, 1), (shape(12, 3), 3)] {
            let widths = at_every_width(&shape, outputs, || {
                matches_the_patch_matrix::<f32>(shape, outputs, 2, 1e-6)
            });
            let expected: Vec<usize> = cpu_widths().into_iter().filter(|&w| w != 8).collect();
            assert_eq!(widths, expected, "{shape:?}, {outputs} outputs");
        }
        // A 4×4 kernel: the plain loops (the callers' patch matrix) at every width.
        assert!(!supported::<f32>(&shape(13, 4), 8));
        matches_the_patch_matrix::<f64>(shape(13, 4), 8, 2, 1e-13);
    }
}
