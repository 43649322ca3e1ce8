//! A convolution computed only where the 2×2 max pooling after it looks.
//!
//! Past the forward pass at θ, only the pooling winners of a convolution's output carry
//! anything: the gradient, the tangents of an HVP and their adjoints are zero, or thrown
//! away, at the other three entries of every window (METHOD.md §3, Hessian spectrum). At the
//! winners alone the layer's backward and R-operator products shrink 4× — one kernel
//! window per pooled entry and channel instead of four — at the price of gathered dot
//! products and axpys over kernel windows instead of one matrix product. With no padding
//! a window row of k pixels × C channels is contiguous in NHWC, so the gathered runs are
//! long (50 values on LeNet's second convolution) and vectorise.
//!
//! Layouts (b directions; b = 1 for plain passes): an image block is n × b × H × W × C
//! (direction-major, so that a window row stays one run), a pooled block n × H/2·W/2 × b × C_out, the
//! patch matrix of the forward pass (n·Hₒ·Wₒ) × (k·k·C), kernel weights C_out × (k·k·C)
//! in the patch column order, per-direction weights b of those stacked.
//!
//! Single-threaded like the other kernels; compiled twice, with and without AVX2 + FMA,
//! and picked at run time (the build targets baseline x86-64).

use super::conv::ConvShape;
use super::{as_f32, as_f32_mut, Float};
use std::ops::Range;

/// A convolution without padding whose output goes straight into 2×2 max pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PooledConv {
    pub shape: ConvShape,
    pub outputs: usize,
}

/// Where a window's values come from.
#[derive(Clone, Copy)]
pub enum Source<'a, T> {
    /// The convolution's input at θ (n × H × W × C): the same for every direction. (Its
    /// patch matrix, 11× larger on LeNet, measured slower: gathered rows of it were
    /// cache misses, docs/BENCHMARKS.md.)
    Input(&'a [T]),
    /// A direction-major image block (the tangent of the convolution's input).
    Image(&'a [T]),
}

/// Kernel weights a window is multiplied with.
#[derive(Clone, Copy)]
pub enum Kernel<'a, T> {
    /// C_out × window, for every direction (the layer's weights W).
    Shared(&'a [T]),
    /// b × C_out × window: direction j's own (its part V_j of the HVP direction).
    PerDirection(&'a [T]),
}

/// Per pooled entry coefficients (a δ).
#[derive(Clone, Copy)]
pub enum Coefs<'a, T> {
    /// n × pooled positions × C_out, for every direction (δ at θ).
    Shared(&'a [T]),
    /// n × pooled positions × b × C_out (R(δ)).
    PerDirection(&'a [T]),
}

impl<T: Float> Kernel<'_, T> {
    #[inline(always)]
    fn row(&self, j: usize, c: usize, outputs: usize, window: usize) -> &[T] {
        let o = match self {
            Kernel::Shared(_) => c,
            Kernel::PerDirection(_) => j * outputs + c,
        };
        let (Kernel::Shared(w) | Kernel::PerDirection(w)) = self;
        &w[o * window..(o + 1) * window]
    }
}

impl<T: Float> Coefs<'_, T> {
    #[inline(always)]
    fn at(&self, pos: usize, j: usize, c: usize, b: usize, outputs: usize) -> T {
        match self {
            Coefs::Shared(d) => d[pos * outputs + c],
            Coefs::PerDirection(d) => d[(pos * b + j) * outputs + c],
        }
    }
}

/// One pooling winner: its pooled position (over all samples), sample, channel, and
/// where it sits in the convolution's output.
struct Winner {
    pos: usize,
    sample: usize,
    channel: usize,
    oy: usize,
    ox: usize,
}

impl PooledConv {
    fn pooled(&self) -> (usize, usize) {
        (self.shape.out_height() / 2, self.shape.out_width() / 2)
    }

    /// Pooled positions per sample.
    pub fn pooled_positions(&self) -> usize {
        let (hq, wq) = self.pooled();
        hq * wq
    }

    /// The winners of `samples`, in pooled-entry order; `winners` is the pooling's
    /// (n × pooled positions × C_out window slots, row-major in the window).
    #[inline(always)]
    fn for_each_winner(&self, samples: Range<usize>, winners: &[u8], mut f: impl FnMut(Winner)) {
        let (hq, wq) = self.pooled();
        for sample in samples {
            for qy in 0..hq {
                for qx in 0..wq {
                    let pos = (sample * hq + qy) * wq + qx;
                    for channel in 0..self.outputs {
                        let (oy, ox) = winner_at(winners[pos * self.outputs + channel], qy, qx);
                        f(Winner {
                            pos,
                            sample,
                            channel,
                            oy,
                            ox,
                        });
                    }
                }
            }
        }
    }

    /// The k runs (one per kernel row, k·C values each) of direction j's window at a
    /// winner in a direction-major image block: (image offset, row offset, length).
    #[inline(always)]
    fn runs(&self, b: usize, at: &Winner, j: usize) -> impl Iterator<Item = Run> {
        let ConvShape {
            height,
            width,
            channels,
            kernel,
            ..
        } = self.shape;
        let span = kernel * channels;
        let first = ((at.sample * b + j) * height + at.oy) * width + at.ox;
        (0..kernel).map(move |ky| ((first + ky * width) * channels, ky * span, span))
    }
}

/// The row and column in the convolution's output of the 2×2 pooling's winner at pooled
/// position (qy, qx), from its window slot (0..4, row-major in the window).
#[inline(always)]
fn winner_at(slot: u8, qy: usize, qx: usize) -> (usize, usize) {
    let slot = (slot & 3) as usize;
    (2 * qy + slot / 2, 2 * qx + slot % 2)
}

/// A run of a window: offset in the source, offset in the kernel row, length.
type Run = (usize, usize, usize);

#[inline(always)]
fn madd<T: Float, const FMA: bool>(a: T, b: T, c: T) -> T {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Σ over the runs (offset in x, offset in w, length) of x·w, with eight independent
/// partial sums so that it vectorises; f32 with FMA (the networks' hot path) through
/// AVX2 intrinsics (the compiler's vectoriser did not reach this loop: scalar FMAs
/// measured), with masked tails and one horizontal sum for all runs of a window (on
/// LeNet, 5 runs of 50 values).
#[inline(always)]
fn dot<T: Float, const FMA: bool>(x: &[T], w: &[T], runs: impl Iterator<Item = Run>) -> T {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        if let (Some(x), Some(w)) = (as_f32(x), as_f32(w)) {
            // SAFETY: FMA is true only inside the AVX2 + FMA versions.
            return T::from_f64(unsafe { avx::dot(x, w, runs) } as f64);
        }
    }
    let mut acc = [T::ZERO; 8];
    let mut tail = T::ZERO;
    for (xo, wo, len) in runs {
        let (a, b) = (&x[xo..xo + len], &w[wo..wo + len]);
        let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
        let (ar, br) = (ac.remainder(), bc.remainder());
        for (x, y) in ac.zip(bc) {
            for l in 0..8 {
                acc[l] = madd::<T, FMA>(x[l], y[l], acc[l]);
            }
        }
        for (x, y) in ar.iter().zip(br) {
            tail = madd::<T, FMA>(*x, *y, tail);
        }
    }
    let (lo, hi) = acc.split_at(4);
    let mut s = tail;
    for l in 0..4 {
        s += lo[l] + hi[l];
    }
    s
}

/// y += alpha·x.
#[inline(always)]
fn axpy<T: Float, const FMA: bool>(alpha: T, x: &[T], y: &mut [T]) {
    let y = &mut y[..x.len()];
    #[cfg(target_arch = "x86_64")]
    if FMA {
        if let (Some(xs), Some(ys)) = (as_f32(x), as_f32_mut(y)) {
            // SAFETY: FMA is true only inside the AVX2 + FMA versions.
            return unsafe { avx::axpy(alpha.to_f64() as f32, xs, ys) };
        }
    }
    for (y, x) in y.iter_mut().zip(x) {
        *y = madd::<T, FMA>(alpha, *x, *y);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::{as_f32, as_f32_mut, winner_at, Coefs, Float, PooledConv, Range, Source};
    use std::arch::x86_64::*;

    /// Samples whose windows one pass of [`weight_sums`] sweeps (LeNet: 3.4 KB of input
    /// each), so that they stay in cache for every channel.
    const SAMPLES: usize = 4;

    /// The arguments of [`super::weight_sums`].
    pub type WeightSums<'a, 'b, T> = (
        &'a PooledConv,
        (Range<usize>, usize),
        &'a [u8],
        &'a [(Coefs<'b, T>, Source<'b, T>)],
        (Coefs<'b, T>, &'a mut [T]),
        &'a mut [T],
    );

    /// One vector width's operations on a window's runs of V vectors, the last one
    /// masked to the run's tail: what [`weight_sums_in`] needs of AVX2 or AVX-512.
    pub trait Runs: Copy {
        type V: Copy;
        unsafe fn zero(self) -> Self::V;
        unsafe fn splat(self, a: f32) -> Self::V;
        /// a·b + c.
        unsafe fn fma(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
        /// Vector q of the run at p.
        unsafe fn load(self, p: *const f32, q: usize) -> Self::V;
        /// Vector q of the run at p += v.
        unsafe fn add_store(self, p: *mut f32, q: usize, v: Self::V);
    }

    /// AVX2: 8 lanes.
    #[derive(Clone, Copy)]
    pub struct Runs8 {
        vectors: usize,
        tail: __m256i,
    }

    impl Runs8 {
        #[inline(always)]
        unsafe fn new(span: usize, vectors: usize) -> Self {
            Runs8 {
                vectors,
                tail: tail_mask(span - 8 * (vectors - 1)),
            }
        }
    }

    impl Runs for Runs8 {
        type V = __m256;
        #[inline(always)]
        unsafe fn zero(self) -> __m256 {
            _mm256_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(self, a: f32) -> __m256 {
            _mm256_set1_ps(a)
        }
        #[inline(always)]
        unsafe fn fma(self, a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn load(self, p: *const f32, q: usize) -> __m256 {
            if q + 1 < self.vectors {
                _mm256_loadu_ps(p.add(8 * q))
            } else {
                _mm256_maskload_ps(p.add(8 * q), self.tail)
            }
        }
        #[inline(always)]
        unsafe fn add_store(self, p: *mut f32, q: usize, v: __m256) {
            let sum = _mm256_add_ps(self.load(p, q), v);
            if q + 1 < self.vectors {
                _mm256_storeu_ps(p.add(8 * q), sum);
            } else {
                _mm256_maskstore_ps(p.add(8 * q), self.tail, sum);
            }
        }
    }

    /// [`super::weight_sums`] for f32 (T must be f32) with windows of V vectors a kernel
    /// row: per direction and channel, the sums of R kernel rows at a time stay in
    /// registers over all winners of a few samples. (The plain loop read and wrote
    /// every sum from memory at every winner, bounded by the stores: a sixth of an HVP
    /// on LeNet.) Callers must run on a CPU with AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn weight_sums<T: Float, const V: usize, const R: usize>(
        args: WeightSums<'_, '_, T>,
    ) {
        let span = args.0.shape.kernel * args.0.shape.channels;
        weight_sums_in::<T, _, V, R>(Runs8::new(span, V), SAMPLES, args)
    }

    /// The weight sums' walk over the winners of `sweep` samples at a time, at the
    /// vector width of `lanes` (inlined into each width's function).
    #[inline(always)]
    pub unsafe fn weight_sums_in<T: Float, L: Runs, const V: usize, const R: usize>(
        lanes: L,
        sweep: usize,
        (conv, (samples, b), winners, terms, (bias, gb), gw): WeightSums<'_, '_, T>,
    ) {
        let gw = as_f32_mut(gw).expect("f32");
        let sources: Vec<(Coefs<'_, T>, *const f32, bool)> = terms
            .iter()
            .map(|(coefs, source)| match source {
                Source::Input(x) => (*coefs, as_f32(x).expect("f32").as_ptr(), false),
                Source::Image(x) => (*coefs, as_f32(x).expect("f32").as_ptr(), true),
            })
            .collect();
        let super::ConvShape {
            height,
            width,
            channels,
            kernel,
            ..
        } = conv.shape;
        let (outputs, window, span) = (conv.outputs, conv.shape.window(), kernel * channels);
        let (hq, wq) = conv.pooled();
        // The reads below are unchecked: every window they touch is inside these.
        let pixels = height * width * channels;
        assert!(
            winners.len() >= samples.end * hq * wq * outputs,
            "weight sums: winners"
        );
        assert!(gw.len() >= b * outputs * window, "weight sums: gradient");
        for (_, source) in terms {
            let (Source::Input(x) | Source::Image(x)) = source;
            let images = if matches!(source, Source::Image(_)) {
                b
            } else {
                1
            };
            assert!(
                x.len() >= samples.end * images * pixels,
                "weight sums: source"
            );
        }
        // Per sweep, direction and channel: first the live windows (coefficient, start)
        // listed without a branch — a slot written for every winner and term, kept when
        // its coefficient is not zero (ReLU after the pooling zeroes about half: as a
        // branch, mispredicted about as often, it cost more than the sums) — then the sums
        // over the list with the accumulators in registers.
        let mut live = vec![(0f32, std::ptr::null::<f32>()); sweep * hq * wq * sources.len()];
        for s0 in samples.clone().step_by(sweep) {
            let s1 = samples.end.min(s0 + sweep);
            for j in 0..b {
                for c in 0..outputs {
                    let mut len = 0;
                    let mut bias_sum = T::ZERO;
                    for s in s0..s1 {
                        for qy in 0..hq {
                            for qx in 0..wq {
                                let pos = (s * hq + qy) * wq + qx;
                                let (oy, ox) = winner_at(winners[pos * outputs + c], qy, qx);
                                bias_sum += bias.at(pos, j, c, b, outputs);
                                for (coefs, x, image) in &sources {
                                    let a = coefs.at(pos, j, c, b, outputs);
                                    let image_row = if *image {
                                        (s * b + j) * height
                                    } else {
                                        s * height
                                    };
                                    let first = x.add(((image_row + oy) * width + ox) * channels);
                                    // SAFETY: len ≤ the slots written so far < the list's
                                    // length (one slot per winner and term of the sweep).
                                    *live.get_unchecked_mut(len) = (a.to_f64() as f32, first);
                                    len += usize::from(a != T::ZERO);
                                }
                            }
                        }
                    }
                    gb[j * outputs + c] += bias_sum;
                    let g = gw[(j * outputs + c) * window..][..window].as_mut_ptr();
                    for ky0 in (0..kernel).step_by(R) {
                        let rows = R.min(kernel - ky0);
                        let mut acc = [[lanes.zero(); V]; R];
                        for &(a, first) in &live[..len] {
                            let av = lanes.splat(a);
                            for (r, acc) in acc.iter_mut().enumerate().take(rows) {
                                let p = first.add((ky0 + r) * width * channels);
                                for (q, acc) in acc.iter_mut().enumerate() {
                                    *acc = lanes.fma(av, lanes.load(p, q), *acc);
                                }
                            }
                        }
                        for (r, acc) in acc.iter().enumerate().take(rows) {
                            let p = g.add((ky0 + r) * span);
                            for (q, acc) in acc.iter().enumerate() {
                                lanes.add_store(p, q, *acc);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Lanes below `len` (1..=8) set.
    #[inline(always)]
    unsafe fn tail_mask(len: usize) -> __m256i {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(len as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    /// Σ over the runs of x·w in two 8-lane accumulators, masked loads for each run's
    /// tail. Callers must run on a CPU with AVX2 and FMA.
    #[inline(always)]
    pub unsafe fn dot(x: &[f32], w: &[f32], runs: impl Iterator<Item = super::Run>) -> f32 {
        let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for (xo, wo, len) in runs {
            // Bounds checked once per run; the loads below stay inside these.
            let (px, pw) = (x[xo..xo + len].as_ptr(), w[wo..wo + len].as_ptr());
            let mut i = 0;
            while i + 16 <= len {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(pw.add(i)), a0);
                a1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(px.add(i + 8)),
                    _mm256_loadu_ps(pw.add(i + 8)),
                    a1,
                );
                i += 16;
            }
            if i + 8 <= len {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(pw.add(i)), a0);
                i += 8;
            }
            if i < len {
                let m = tail_mask(len - i);
                a1 = _mm256_fmadd_ps(
                    _mm256_maskload_ps(px.add(i), m),
                    _mm256_maskload_ps(pw.add(i), m),
                    a1,
                );
            }
        }
        let a = _mm256_add_ps(a0, a1);
        let q = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
        let q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
        _mm_cvtss_f32(q)
    }

    /// y += alpha·x, the tail by masked loads and store. Callers must run on a CPU with
    /// AVX2 and FMA.
    #[inline(always)]
    pub unsafe fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
        let n = x.len().min(y.len());
        let (px, py) = (x.as_ptr(), y.as_mut_ptr());
        let a = _mm256_set1_ps(alpha);
        let mut i = 0;
        while i + 8 <= n {
            let v = _mm256_fmadd_ps(a, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i)));
            _mm256_storeu_ps(py.add(i), v);
            i += 8;
        }
        if i < n {
            let m = tail_mask(n - i);
            let v = _mm256_fmadd_ps(
                a,
                _mm256_maskload_ps(px.add(i), m),
                _mm256_maskload_ps(py.add(i), m),
            );
            _mm256_maskstore_ps(py.add(i), m, v);
        }
    }
}

/// [`dots`] in AVX-512 with the kernel row in registers. The AVX2 loop loaded both the
/// window and the kernel row for every product (two loads a multiply-add: its bound);
/// here, per term, direction and channel, the row (K runs of V vectors, LeNet's second
/// convolution 5 × 4) stays in registers over every winner of a few samples, and four
/// winners' windows are summed at once (two accumulators each, so that the chains of
/// multiply-adds overlap).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{as_f32, as_f32_mut, winner_at, Float, Kernel, PooledConv, Source};
    use std::arch::x86_64::*;

    /// Samples whose windows one sweep reads (LeNet: 5.8 KB of input each), so that
    /// they stay in cache for every channel.
    const SAMPLES: usize = 8;

    /// Winners summed at once.
    const GROUP: usize = 4;

    /// The arguments of [`super::dots`].
    pub type Dots<'a, 'b, T> = (
        &'a PooledConv,
        (usize, usize),
        (&'a [u8], Option<&'a [T]>),
        &'a [(Source<'b, T>, Kernel<'b, T>, T)],
        Option<&'a [T]>,
        &'a mut [T],
    );

    /// See [`super::dots`]; kernel rows of K runs of at most 16·V values. Callers must
    /// run on a CPU with AVX-512, T must be f32.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dots<T: Float, const K: usize, const V: usize>(
        (conv, (n, b), (winners, relu), terms, bias, out): Dots<'_, '_, T>,
    ) {
        let out = as_f32_mut(out).expect("f32");
        let super::ConvShape {
            height,
            width,
            channels,
            kernel,
            ..
        } = conv.shape;
        debug_assert_eq!(kernel, K);
        let (outputs, window, span) = (conv.outputs, conv.shape.window(), K * channels);
        assert!(span <= 16 * V && span > 16 * (V - 1), "dots: run length");
        let (hq, wq) = conv.pooled();
        let positions = hq * wq;
        // The reads below are unchecked: every window they touch is inside these.
        let pixels = height * width * channels;
        assert!(winners.len() >= n * positions * outputs, "dots: winners");
        assert!(out.len() >= n * positions * b * outputs, "dots: output");
        assert!(
            relu.is_none_or(|r| r.len() >= n * positions * outputs),
            "dots: relu"
        );
        for (source, kernel, _) in terms {
            let (Source::Input(x) | Source::Image(x)) = source;
            let images = if matches!(source, Source::Image(_)) {
                b
            } else {
                1
            };
            assert!(x.len() >= n * images * pixels, "dots: source");
            let (Kernel::Shared(w) | Kernel::PerDirection(w)) = kernel;
            let kernels = if matches!(kernel, Kernel::PerDirection(_)) {
                b
            } else {
                1
            };
            assert!(w.len() >= kernels * outputs * window, "dots: kernel");
        }
        let live = |pos: usize, c: usize| relu.is_none_or(|r| r[pos * outputs + c] > T::ZERO);
        // The bias where the ReLU keeps the entry, zero elsewhere; the terms add on.
        for pos in 0..n * positions {
            for j in 0..b {
                for c in 0..outputs {
                    let at = (pos * b + j) * outputs + c;
                    out[at] = match bias {
                        Some(bias) if live(pos, c) => bias[j * outputs + c].to_f64() as f32,
                        _ => 0.0,
                    };
                }
            }
        }
        let tail = ((1u32 << (span - 16 * (V - 1))) - 1) as __mmask16;
        let mask = |q: usize| if q + 1 < V { !0 } else { tail };
        // Per block of samples, direction and channel: the live winners listed first,
        // without a branch (a slot written for each, kept when the ReLU passes: as a
        // branch the pattern mispredicted about half the time), with their windows'
        // offsets in both kinds of source; then per term the kernel row in registers
        // over the list, GROUP windows at a time.
        let mut listed = vec![(0usize, 0usize, 0usize); SAMPLES * positions];
        for s0 in (0..n).step_by(SAMPLES) {
            let s1 = n.min(s0 + SAMPLES);
            for j in 0..b {
                for c in 0..outputs {
                    let mut len = 0;
                    for s in s0..s1 {
                        for qy in 0..hq {
                            for qx in 0..wq {
                                let pos = (s * hq + qy) * wq + qx;
                                let (oy, ox) = winner_at(winners[pos * outputs + c], qy, qx);
                                let within = (oy * width + ox) * channels;
                                // SAFETY: len ≤ the winners seen so far < SAMPLES ·
                                // positions, the list's length.
                                *listed.get_unchecked_mut(len) = (
                                    (pos * b + j) * outputs + c,
                                    s * pixels + within,
                                    (s * b + j) * pixels + within,
                                );
                                len += usize::from(live(pos, c));
                            }
                        }
                    }
                    let listed = &listed[..len];
                    for (source, kernel, factor) in terms {
                        let (x, image) = match source {
                            Source::Input(x) => (as_f32(x).expect("f32").as_ptr(), false),
                            Source::Image(x) => (as_f32(x).expect("f32").as_ptr(), true),
                        };
                        let factor = factor.to_f64() as f32;
                        let row = as_f32(kernel.row(j, c, outputs, window)).expect("f32");
                        let w: [[__m512; V]; K] = std::array::from_fn(|ky| {
                            std::array::from_fn(|q| {
                                _mm512_maskz_loadu_ps(mask(q), row.as_ptr().add(ky * span + 16 * q))
                            })
                        });
                        let start = |&(at, input, img): &(usize, usize, usize)| {
                            (x.add(if image { img } else { input }), at)
                        };
                        let mut groups = listed.chunks_exact(GROUP);
                        for group in groups.by_ref() {
                            let windows: [(*const f32, usize); GROUP] =
                                std::array::from_fn(|g| start(&group[g]));
                            let sums =
                                sum_windows::<K, V, GROUP>(&w, &windows, width * channels, mask);
                            for (g, &(_, at)) in windows.iter().enumerate() {
                                out[at] += factor * sums[g];
                            }
                        }
                        for one in groups.remainder() {
                            let window = start(one);
                            let sums =
                                sum_windows::<K, V, 1>(&w, &[window], width * channels, mask);
                            out[window.1] += factor * sums[0];
                        }
                    }
                }
            }
        }
    }

    /// The arguments of [`super::scatter`].
    pub type Scatter<'a, 'b, T> = (
        &'a PooledConv,
        (usize, usize),
        &'a [u8],
        &'a [(super::Coefs<'b, T>, Kernel<'b, T>)],
        &'a mut [T],
    );

    /// [`super::scatter`] with the kernel row in registers: per term, direction and
    /// channel, the row (K runs of V vectors) stays in registers over the winners of a
    /// few samples, each window loaded, added to and stored once. The samples take
    /// turns (one winner each, then the next position), so that consecutive windows
    /// never overlap: an overlapping one loaded right after the stores of the one before
    /// waits for them. Callers must run on a CPU with AVX-512, T must be f32.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn scatter<T: Float, const K: usize, const V: usize>(
        (conv, (n, b), winners, terms, dx): Scatter<'_, '_, T>,
    ) {
        let dx = as_f32_mut(dx).expect("f32");
        let super::ConvShape {
            height,
            width,
            channels,
            kernel,
            ..
        } = conv.shape;
        debug_assert_eq!(kernel, K);
        let (outputs, window, span) = (conv.outputs, conv.shape.window(), K * channels);
        assert!(span <= 16 * V && span > 16 * (V - 1), "scatter: run length");
        let (hq, wq) = conv.pooled();
        // The writes below are unchecked: every window they touch is inside these.
        assert!(winners.len() >= n * hq * wq * outputs, "scatter: winners");
        assert!(
            dx.len() >= n * b * height * width * channels,
            "scatter: image block"
        );
        for (_, kernel) in terms {
            let (Kernel::Shared(w) | Kernel::PerDirection(w)) = kernel;
            let kernels = if matches!(kernel, Kernel::PerDirection(_)) {
                b
            } else {
                1
            };
            assert!(w.len() >= kernels * outputs * window, "scatter: kernel");
        }
        let tail = ((1u32 << (span - 16 * (V - 1))) - 1) as __mmask16;
        let mask = |q: usize| if q + 1 < V { !0 } else { tail };
        let base = dx.as_mut_ptr();
        // Per term, direction and channel: the windows with a coefficient that is not
        // zero listed first, without a branch (ReLU after the pooling zeroes about half
        // of every δ: as a branch, mispredicted about as often), then each added to.
        let mut live = vec![(0f32, std::ptr::null_mut::<f32>()); SAMPLES * hq * wq];
        for s0 in (0..n).step_by(SAMPLES) {
            let s1 = n.min(s0 + SAMPLES);
            for (coefs, kernel) in terms {
                for j in 0..b {
                    for c in 0..outputs {
                        let mut len = 0;
                        for qy in 0..hq {
                            for qx in 0..wq {
                                for s in s0..s1 {
                                    let pos = (s * hq + qy) * wq + qx;
                                    let a = coefs.at(pos, j, c, b, outputs);
                                    let (oy, ox) = winner_at(winners[pos * outputs + c], qy, qx);
                                    let first = base
                                        .add((((s * b + j) * height + oy) * width + ox) * channels);
                                    // SAFETY: len ≤ the slots written so far < the list's
                                    // length (one slot per winner and term of the sweep).
                                    *live.get_unchecked_mut(len) = (a.to_f64() as f32, first);
                                    len += usize::from(a != T::ZERO);
                                }
                            }
                        }
                        let row = as_f32(kernel.row(j, c, outputs, window)).expect("f32");
                        let w: [[__m512; V]; K] = std::array::from_fn(|ky| {
                            std::array::from_fn(|q| {
                                _mm512_maskz_loadu_ps(mask(q), row.as_ptr().add(ky * span + 16 * q))
                            })
                        });
                        for &(a, first) in &live[..len] {
                            let av = _mm512_set1_ps(a);
                            for (ky, w) in w.iter().enumerate() {
                                let p = first.add(ky * width * channels);
                                for (q, w) in w.iter().enumerate() {
                                    let to = p.add(16 * q);
                                    let v = _mm512_maskz_loadu_ps(mask(q), to);
                                    _mm512_mask_storeu_ps(to, mask(q), _mm512_fmadd_ps(av, *w, v));
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// AVX-512: 16 lanes, every load and store masked (all lanes but the last vector's
    /// tail).
    #[derive(Clone, Copy)]
    struct Runs16 {
        vectors: usize,
        tail: __mmask16,
    }

    impl Runs16 {
        #[inline(always)]
        fn mask(self, q: usize) -> __mmask16 {
            if q + 1 < self.vectors {
                !0
            } else {
                self.tail
            }
        }
    }

    impl super::avx::Runs for Runs16 {
        type V = __m512;
        #[inline(always)]
        unsafe fn zero(self) -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(self, a: f32) -> __m512 {
            _mm512_set1_ps(a)
        }
        #[inline(always)]
        unsafe fn fma(self, a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn load(self, p: *const f32, q: usize) -> __m512 {
            _mm512_maskz_loadu_ps(self.mask(q), p.add(16 * q))
        }
        #[inline(always)]
        unsafe fn add_store(self, p: *mut f32, q: usize, v: __m512) {
            let sum = _mm512_add_ps(self.load(p, q), v);
            _mm512_mask_storeu_ps(p.add(16 * q), self.mask(q), sum);
        }
    }

    /// [`super::weight_sums`] in AVX-512 with windows of V vectors a kernel row: all of
    /// LeNet's second convolution's kernel rows (5 × 4 vectors of sums) at once, so each
    /// window is loaded once per direction and channel. Callers must run on a CPU with
    /// AVX-512, T must be f32.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn weight_sums<T: Float, const V: usize, const R: usize>(
        args: super::avx::WeightSums<'_, '_, T>,
    ) {
        let span = args.0.shape.kernel * args.0.shape.channels;
        assert!(
            span <= 16 * V && span > 16 * (V - 1),
            "weight sums: run length"
        );
        let lanes = Runs16 {
            vectors: V,
            tail: ((1u32 << (span - 16 * (V - 1))) - 1) as __mmask16,
        };
        super::avx::weight_sums_in::<T, _, V, R>(lanes, SAMPLES, args)
    }

    /// The dot products of G windows (K runs `stride` apart from each start) with the
    /// kernel row `w`, two accumulators a window.
    #[inline(always)]
    unsafe fn sum_windows<const K: usize, const V: usize, const G: usize>(
        w: &[[__m512; V]; K],
        windows: &[(*const f32, usize)],
        stride: usize,
        mask: impl Fn(usize) -> __mmask16,
    ) -> [f32; G] {
        let mut acc = [[_mm512_setzero_ps(); 2]; G];
        for (ky, w) in w.iter().enumerate() {
            for (q, w) in w.iter().enumerate() {
                for (g, acc) in acc.iter_mut().enumerate() {
                    let p = windows[g].0.add(ky * stride + 16 * q);
                    let v = _mm512_maskz_loadu_ps(mask(q), p);
                    acc[ky % 2] = _mm512_fmadd_ps(v, *w, acc[ky % 2]);
                }
            }
        }
        std::array::from_fn(|g| _mm512_reduce_add_ps(_mm512_add_ps(acc[g][0], acc[g][1])))
    }
}

/// `out` (pooled block, overwritten) = Σ over `terms` (source, kernel, factor) of
/// factor · window·kernel row, plus `bias` (b × C_out) when given: a tangent of the
/// convolution's output at its winners, in b directions. With `relu`, the pooled output
/// after a ReLU that follows (n × pooled positions × C_out), entries where it is not
/// positive are left zero: the ReLU drops their tangent (about half of them).
pub fn dots<T: Float>(
    conv: &PooledConv,
    nb: (usize, usize),
    at: (&[u8], Option<&[T]>),
    terms: &[(Source<'_, T>, Kernel<'_, T>, T)],
    bias: Option<&[T]>,
    out: &mut [T],
) {
    #[cfg(target_arch = "x86_64")]
    if as_f32(out).is_some() && super::avx512_available() && super::widest() >= 16 {
        let (k, c) = (conv.shape.kernel, conv.shape.channels);
        let args = (conv, nb, at, terms, bias, &mut *out);
        // SAFETY: the CPU has AVX-512 (checked just above) and T is f32; kernel rows of
        // other shapes fall through to the loops below.
        unsafe {
            match (k, (k * c).div_ceil(16)) {
                (3, 1) => return avx512::dots::<T, 3, 1>(args),
                (3, 2) => return avx512::dots::<T, 3, 2>(args),
                (3, 3) => return avx512::dots::<T, 3, 3>(args),
                (3, 4) => return avx512::dots::<T, 3, 4>(args),
                (3, 5) => return avx512::dots::<T, 3, 5>(args),
                (5, 1) => return avx512::dots::<T, 5, 1>(args),
                (5, 2) => return avx512::dots::<T, 5, 2>(args),
                (5, 3) => return avx512::dots::<T, 5, 3>(args),
                (5, 4) => return avx512::dots::<T, 5, 4>(args),
                _ => {}
            }
        }
    }
    dispatch!(
        dots_impl,
        dots_fma,
        (
            conv: &PooledConv,
            nb: (usize, usize),
            at: (&[u8], Option<&[T]>),
            terms: &[(Source<'_, T>, Kernel<'_, T>, T)],
            bias: Option<&[T]>,
            out: &mut [T]
        )
    );
}

#[inline(always)]
fn dots_impl<T: Float, const FMA: bool>(
    conv: &PooledConv,
    (n, b): (usize, usize),
    (winners, relu): (&[u8], Option<&[T]>),
    terms: &[(Source<'_, T>, Kernel<'_, T>, T)],
    bias: Option<&[T]>,
    out: &mut [T],
) {
    let (outputs, window) = (conv.outputs, conv.shape.window());
    out.fill(T::ZERO);
    conv.for_each_winner(0..n, winners, |at| {
        if relu.is_some_and(|r| r[at.pos * outputs + at.channel] <= T::ZERO) {
            return;
        }
        for j in 0..b {
            let mut v = bias.map_or(T::ZERO, |bias| bias[j * outputs + at.channel]);
            for (source, kernel, factor) in terms {
                let w = kernel.row(j, at.channel, outputs, window);
                let s = match source {
                    Source::Input(x) => dot::<T, FMA>(x, w, conv.runs(1, &at, 0)),
                    Source::Image(x) => dot::<T, FMA>(x, w, conv.runs(b, &at, j)),
                };
                v = madd::<T, FMA>(*factor, s, v);
            }
            out[(at.pos * b + j) * outputs + at.channel] = v;
        }
    });
}

/// `dx` (image block, accumulated) += Σ over `terms` (coefficients, kernel) of
/// coefficient · kernel row, added onto each winner's window: the adjoint of [`dots`]
/// with respect to the image — the gradient, or its R-operator, at the convolution's
/// input.
pub fn scatter<T: Float>(
    conv: &PooledConv,
    nb: (usize, usize),
    winners: &[u8],
    terms: &[(Coefs<'_, T>, Kernel<'_, T>)],
    dx: &mut [T],
) {
    #[cfg(target_arch = "x86_64")]
    if as_f32(dx).is_some() && super::avx512_available() && super::widest() >= 16 {
        let (k, c) = (conv.shape.kernel, conv.shape.channels);
        let args = (conv, nb, winners, terms, &mut *dx);
        // SAFETY: the CPU has AVX-512 (checked just above) and T is f32; kernel rows of
        // other shapes fall through to the loops below.
        unsafe {
            match (k, (k * c).div_ceil(16)) {
                (3, 1) => return avx512::scatter::<T, 3, 1>(args),
                (3, 2) => return avx512::scatter::<T, 3, 2>(args),
                (3, 3) => return avx512::scatter::<T, 3, 3>(args),
                (3, 4) => return avx512::scatter::<T, 3, 4>(args),
                (3, 5) => return avx512::scatter::<T, 3, 5>(args),
                (5, 1) => return avx512::scatter::<T, 5, 1>(args),
                (5, 2) => return avx512::scatter::<T, 5, 2>(args),
                (5, 3) => return avx512::scatter::<T, 5, 3>(args),
                (5, 4) => return avx512::scatter::<T, 5, 4>(args),
                _ => {}
            }
        }
    }
    dispatch!(
        scatter_impl,
        scatter_fma,
        (
            conv: &PooledConv,
            nb: (usize, usize),
            winners: &[u8],
            terms: &[(Coefs<'_, T>, Kernel<'_, T>)],
            dx: &mut [T]
        )
    );
}

#[inline(always)]
fn scatter_impl<T: Float, const FMA: bool>(
    conv: &PooledConv,
    (n, b): (usize, usize),
    winners: &[u8],
    terms: &[(Coefs<'_, T>, Kernel<'_, T>)],
    dx: &mut [T],
) {
    let (outputs, window) = (conv.outputs, conv.shape.window());
    conv.for_each_winner(0..n, winners, |at| {
        for j in 0..b {
            for (coefs, kernel) in terms {
                let a = coefs.at(at.pos, j, at.channel, b, outputs);
                // ReLU after the pooling zeroes about half of every δ.
                if a == T::ZERO {
                    continue;
                }
                let w = kernel.row(j, at.channel, outputs, window);
                for (xo, wo, len) in conv.runs(b, &at, j) {
                    axpy::<T, FMA>(a, &w[wo..wo + len], &mut dx[xo..xo + len]);
                }
            }
        }
    });
}

/// `gw` (b × C_out × window, accumulated) += Σ over `terms` (coefficients, source) of
/// coefficient · window, and `gb` (b × C_out, accumulated) += the `bias` coefficients,
/// over the winners of `samples`: the adjoint of [`dots`] with respect to the kernel —
/// the layer's gradient, or its R-operator, summed over those samples.
pub fn weight_sums<T: Float>(
    conv: &PooledConv,
    sb: (Range<usize>, usize),
    winners: &[u8],
    terms: &[(Coefs<'_, T>, Source<'_, T>)],
    bias_gb: (Coefs<'_, T>, &mut [T]),
    gw: &mut [T],
) {
    #[cfg(target_arch = "x86_64")]
    if as_f32(gw).is_some() && super::avx512_available() && super::widest() >= 16 {
        // SAFETY: the CPU has AVX-512 (checked just above), T is f32. Windows of more
        // than 4 vectors a row take the AVX2 route below.
        unsafe {
            let args = (
                conv,
                sb.clone(),
                winners,
                terms,
                (bias_gb.0, &mut *bias_gb.1),
                &mut *gw,
            );
            match (conv.shape.kernel * conv.shape.channels).div_ceil(16) {
                1 => return avx512::weight_sums::<T, 1, 16>(args),
                2 => return avx512::weight_sums::<T, 2, 10>(args),
                3 => return avx512::weight_sums::<T, 3, 7>(args),
                4 => return avx512::weight_sums::<T, 4, 5>(args),
                _ => {}
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    if as_f32(gw).is_some() && super::fma_available() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above), T is f32. Windows of
        // more than 7 vectors a row fall through to the plain loops.
        unsafe {
            match (conv.shape.kernel * conv.shape.channels).div_ceil(8) {
                1 => return avx::weight_sums::<T, 1, 12>((conv, sb, winners, terms, bias_gb, gw)),
                2 => return avx::weight_sums::<T, 2, 6>((conv, sb, winners, terms, bias_gb, gw)),
                3 => return avx::weight_sums::<T, 3, 4>((conv, sb, winners, terms, bias_gb, gw)),
                4 => return avx::weight_sums::<T, 4, 3>((conv, sb, winners, terms, bias_gb, gw)),
                5 => return avx::weight_sums::<T, 5, 2>((conv, sb, winners, terms, bias_gb, gw)),
                6 => return avx::weight_sums::<T, 6, 2>((conv, sb, winners, terms, bias_gb, gw)),
                7 => return avx::weight_sums::<T, 7, 1>((conv, sb, winners, terms, bias_gb, gw)),
                _ => {}
            }
        }
    }
    dispatch!(
        weight_sums_impl,
        weight_sums_fma,
        (
            conv: &PooledConv,
            sb: (Range<usize>, usize),
            winners: &[u8],
            terms: &[(Coefs<'_, T>, Source<'_, T>)],
            bias_gb: (Coefs<'_, T>, &mut [T]),
            gw: &mut [T]
        )
    );
}

#[inline(always)]
fn weight_sums_impl<T: Float, const FMA: bool>(
    conv: &PooledConv,
    (samples, b): (Range<usize>, usize),
    winners: &[u8],
    terms: &[(Coefs<'_, T>, Source<'_, T>)],
    (bias, gb): (Coefs<'_, T>, &mut [T]),
    gw: &mut [T],
) {
    let (outputs, window) = (conv.outputs, conv.shape.window());
    conv.for_each_winner(samples, winners, |at| {
        for j in 0..b {
            gb[j * outputs + at.channel] += bias.at(at.pos, j, at.channel, b, outputs);
            let o = (j * outputs + at.channel) * window;
            let g = &mut gw[o..o + window];
            for (coefs, source) in terms {
                let a = coefs.at(at.pos, j, at.channel, b, outputs);
                if a == T::ZERO {
                    continue;
                }
                match source {
                    Source::Input(x) => {
                        for (xo, wo, len) in conv.runs(1, &at, 0) {
                            axpy::<T, FMA>(a, &x[xo..xo + len], &mut g[wo..wo + len]);
                        }
                    }
                    Source::Image(x) => {
                        for (xo, wo, len) in conv.runs(b, &at, j) {
                            axpy::<T, FMA>(a, &x[xo..xo + len], &mut g[wo..wo + len]);
                        }
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{conv, matmul, pool, Mat};

    /// A small conv → pool with the dense route as the oracle: im2col, a matrix product,
    /// then the pooling (forward); pool backward, then products (adjoints).
    /// The layer, n, (its input, the input's patches), W, the pooling's winners, and an
    /// image block of b directions.
    type Setup = (
        PooledConv,
        usize,
        (Vec<f64>, Vec<f64>),
        Vec<f64>,
        Vec<u8>,
        Vec<f64>,
    );

    fn setup(b: usize) -> Setup {
        setup_shape(b, 3, 3)
    }

    /// [`setup`] with `channels` input channels and a `kernel`-wide window.
    fn setup_shape(b: usize, channels: usize, kernel: usize) -> Setup {
        let shape = ConvShape {
            height: 8,
            width: 10,
            channels,
            kernel,
            padding: 0,
        };
        let conv = PooledConv { shape, outputs: 4 };
        let n = 2;
        let x: Vec<f64> = (0..n * 8 * 10 * channels)
            .map(|i| (i * 37 % 101) as f64 / 50.0 - 1.0)
            .collect();
        let window = shape.window();
        let w: Vec<f64> = (0..4 * window)
            .map(|i| (i * 53 % 89) as f64 / 44.0 - 1.0)
            .collect();
        let rows = n * shape.positions();
        let mut patches = vec![0.0; rows * window];
        conv::im2col(&shape, n, &x, &mut patches);
        let mut out = vec![0.0; rows * 4];
        matmul(
            &mut out,
            false,
            Mat::rows(&patches, rows, window),
            Mat::rows(&w, 4, window).t(),
        );
        let (ho, wo) = (shape.out_height(), shape.out_width());
        let mut pooled = vec![0.0; n * ho / 2 * wo / 2 * 4];
        let mut winners = vec![0u8; pooled.len()];
        pool::forward((n, ho, wo, 4), &out, &mut pooled, &mut winners);
        // An image block of b directions (the tangent input).
        let rx: Vec<f64> = (0..n * 8 * 10 * channels * b)
            .map(|i| (i * 29 % 97) as f64 / 48.0 - 1.0)
            .collect();
        (conv, n, (x, patches), w, winners, rx)
    }

    /// Direction j's images out of a direction-major block (n × b × H × W × C).
    fn direction(x: &[f64], n: usize, b: usize, per: usize, j: usize) -> Vec<f64> {
        (0..n)
            .flat_map(|s| x[(s * b + j) * per..(s * b + j + 1) * per].to_vec())
            .collect()
    }

    #[test]
    fn dots_match_the_dense_convolution_at_the_winners() {
        for b in [1, 3] {
            let (conv, n, (x, patches), w, winners, rx) = setup(b);
            let (shape, window, outputs) = (conv.shape, conv.shape.window(), conv.outputs);
            let rows = n * shape.positions();
            let v: Vec<f64> = (0..b * outputs * window)
                .map(|i| (i as f64 * 0.37).sin())
                .collect();
            let bias: Vec<f64> = (0..b * outputs).map(|i| i as f64 * 0.1).collect();
            let q = n * conv.pooled_positions();
            let mut got = vec![0.0; q * b * outputs];
            dots(
                &conv,
                (n, b),
                (&winners, None),
                &[
                    (Source::Input(&x), Kernel::PerDirection(&v), 1.0),
                    (Source::Image(&rx), Kernel::Shared(&w), 2.0),
                ],
                Some(&bias),
                &mut got,
            );
            for j in 0..b {
                let xj = direction(&rx, n, b, 8 * 10 * 3, j);
                let mut pj = vec![0.0; rows * window];
                conv::im2col(&shape, n, &xj, &mut pj);
                let mut dense = vec![0.0; rows * outputs];
                let vj = &v[j * outputs * window..(j + 1) * outputs * window];
                matmul(
                    &mut dense,
                    false,
                    Mat::rows(&patches, rows, window),
                    Mat::rows(vj, outputs, window).t(),
                );
                let mut second = vec![0.0; rows * outputs];
                matmul(
                    &mut second,
                    false,
                    Mat::rows(&pj, rows, window),
                    Mat::rows(&w, outputs, window).t(),
                );
                for (d, s) in dense.iter_mut().zip(&second) {
                    *d += 2.0 * s;
                }
                for d in dense.chunks_exact_mut(outputs) {
                    for (c, x) in d.iter_mut().enumerate() {
                        *x += bias[j * outputs + c];
                    }
                }
                let mut want = vec![0.0; q * outputs];
                let (ho, wo) = (shape.out_height(), shape.out_width());
                pool::gather((n, ho, wo, outputs), &dense, &winners, &mut want);
                for p in 0..q {
                    for c in 0..outputs {
                        let g = got[(p * b + j) * outputs + c];
                        let e = want[p * outputs + c];
                        assert!(
                            (g - e).abs() <= 1e-12 * (1.0 + e.abs()),
                            "b {b} j {j}: {g} vs {e}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn scatter_and_weight_sums_are_the_adjoints_of_dots() {
        // ⟨dots(x, W), δ⟩ = ⟨x, scatter(δ, W)⟩ = ⟨W, weight_sums(δ, x)⟩ for every
        // direction block: the two adjoints checked against the forward map.
        for b in [1, 2] {
            let (conv, n, _, w, winners, rx) = setup(b);
            let (window, outputs) = (conv.shape.window(), conv.outputs);
            let q = n * conv.pooled_positions();
            let delta: Vec<f64> = (0..q * b * outputs)
                .map(|i| {
                    if i % 3 == 0 {
                        0.0
                    } else {
                        (i as f64 * 0.71).cos()
                    }
                })
                .collect();
            let mut y = vec![0.0; q * b * outputs];
            dots(
                &conv,
                (n, b),
                (&winners, None),
                &[(Source::Image(&rx), Kernel::Shared(&w), 1.0)],
                None,
                &mut y,
            );
            let lhs: f64 = y.iter().zip(&delta).map(|(a, b)| a * b).sum();
            let mut dx = vec![0.0; rx.len()];
            scatter(
                &conv,
                (n, b),
                &winners,
                &[(Coefs::PerDirection(&delta), Kernel::Shared(&w))],
                &mut dx,
            );
            let via_x: f64 = dx.iter().zip(&rx).map(|(a, b)| a * b).sum();
            assert!(
                (lhs - via_x).abs() <= 1e-10 * lhs.abs().max(1.0),
                "{lhs} vs {via_x}"
            );
            let mut gw = vec![0.0; b * outputs * window];
            let mut gb = vec![0.0; b * outputs];
            weight_sums(
                &conv,
                (0..n, b),
                &winners,
                &[(Coefs::PerDirection(&delta), Source::Image(&rx))],
                (Coefs::PerDirection(&delta), &mut gb),
                &mut gw,
            );
            let via_w: f64 = (0..b)
                .map(|j| {
                    gw[j * outputs * window..(j + 1) * outputs * window]
                        .iter()
                        .zip(&w)
                        .map(|(a, b)| a * b)
                        .sum::<f64>()
                })
                .sum();
            assert!(
                (lhs - via_w).abs() <= 1e-10 * lhs.abs().max(1.0),
                "{lhs} vs {via_w}"
            );
            let total: f64 = delta.iter().sum();
            assert!((gb.iter().sum::<f64>() - total).abs() <= 1e-10 * (1.0 + total.abs()));
            // The input source (one image per sample, whatever b) gives the same sums as
            // an image block of one direction.
            if b == 1 {
                let mut from_input = vec![0.0; outputs * window];
                let mut gb2 = vec![0.0; outputs];
                weight_sums(
                    &conv,
                    (0..n, 1),
                    &winners,
                    &[(Coefs::PerDirection(&delta), Source::Input(&rx))],
                    (Coefs::Shared(&delta), &mut gb2),
                    &mut from_input,
                );
                for (a, b) in from_input.iter().zip(&gw) {
                    assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()));
                }
            }
        }
    }

    /// The f32 route (AVX2 + FMA intrinsics with masked tails where the CPU has them)
    /// against the same kernels in f64, for window rows of 3, 9, 30 and 50 values (1,
    /// 2, 4 and 7 vectors: the weight sums' register blocks of each size, with tails
    /// of 3, 1, 6 and 2 lanes; 50 is LeNet's second convolution).
    #[test]
    fn f32_kernels_match_f64() {
        // At every vector width (AVX-512 where the CPU has it, AVX2, as capped).
        for cap in [usize::MAX, 8] {
            crate::kernels::WIDEST.with(|w| w.set(cap));
            for (channels, kernel) in [(1, 3), (3, 3), (6, 5), (8, 5), (10, 5)] {
                f32_matches_f64(channels, kernel);
            }
        }
        crate::kernels::WIDEST.with(|w| w.set(usize::MAX));
    }

    fn f32_matches_f64(channels: usize, kernel: usize) {
        let b = 2;
        let (conv, n, (x, _), w, winners, rx) = setup_shape(b, channels, kernel);
        let (window, outputs) = (conv.shape.window(), conv.outputs);
        let q = n * conv.pooled_positions();
        let f32s = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
        // Inputs rounded to f32 first, so both routes see the same numbers.
        let round = |v: &[f64]| v.iter().map(|&a| a as f32 as f64).collect::<Vec<f64>>();
        let (x, w, rx) = (round(&x), round(&w), round(&rx));
        let v = round(
            &(0..b * outputs * window)
                .map(|i| (i as f64 * 0.37).sin())
                .collect::<Vec<_>>(),
        );
        let delta = round(
            &(0..q * b * outputs)
                .map(|i| (i as f64 * 0.71).cos())
                .collect::<Vec<_>>(),
        );
        let close = |got: &[f32], want: &[f64], what: &str| {
            let scale = want.iter().fold(0.0f64, |m, a| m.max(a.abs()));
            for (g, e) in got.iter().zip(want) {
                assert!(
                    (*g as f64 - e).abs() <= 1e-5 * scale,
                    "{what} ({channels} channels, {kernel}×{kernel}): {g} vs {e}"
                );
            }
        };
        let want = all_kernels(&conv, (n, b), &winners, [&x, &w, &rx, &v, &delta]);
        let got = all_kernels(
            &conv,
            (n, b),
            &winners,
            [&f32s(&x), &f32s(&w), &f32s(&rx), &f32s(&v), &f32s(&delta)],
        );
        for (what, (got, want)) in ["dots", "scatter", "weight sums", "bias sums"]
            .into_iter()
            .zip(got.iter().zip(&want))
        {
            close(got, want, what);
        }
    }

    /// The three kernels on one set of inputs [x, W, an image block, per-direction
    /// kernels V, δ], every source, kernel and coefficient kind in play: dots, scatter,
    /// weight sums, bias sums.
    fn all_kernels<T: Float>(
        conv: &PooledConv,
        (n, b): (usize, usize),
        winners: &[u8],
        [x, w, rx, v, delta]: [&[T]; 5],
    ) -> [Vec<T>; 4] {
        let (window, outputs) = (conv.shape.window(), conv.outputs);
        let mut out = vec![T::ZERO; n * conv.pooled_positions() * b * outputs];
        let terms = [
            (Source::Input(x), Kernel::PerDirection(v), T::ONE),
            (Source::Image(rx), Kernel::Shared(w), T::from_f64(2.0)),
        ];
        // A ReLU after the pooling that drops a fifth of the entries (so that the live
        // winners of a channel are no multiple of four), and a bias.
        let relu: Vec<T> = (0..n * conv.pooled_positions() * outputs)
            .map(|i| T::from_f64(if i % 5 == 1 { -1.0 } else { 1.0 }))
            .collect();
        let bias: Vec<T> = (0..b * outputs)
            .map(|i| T::from_f64(0.25 * i as f64))
            .collect();
        dots(
            conv,
            (n, b),
            (winners, Some(&relu)),
            &terms,
            Some(&bias),
            &mut out,
        );
        let mut dx = vec![T::ZERO; rx.len()];
        let terms = [(Coefs::PerDirection(delta), Kernel::PerDirection(v))];
        scatter(conv, (n, b), winners, &terms, &mut dx);
        let (mut gw, mut gb) = (
            vec![T::ZERO; b * outputs * window],
            vec![T::ZERO; b * outputs],
        );
        let terms = [
            (Coefs::PerDirection(delta), Source::Image(rx)),
            (Coefs::Shared(delta), Source::Input(x)),
        ];
        let bias = (Coefs::PerDirection(delta), gb.as_mut_slice());
        weight_sums(conv, (0..n, b), winners, &terms, bias, &mut gw);
        [out, dx, gw, gb]
    }
}
