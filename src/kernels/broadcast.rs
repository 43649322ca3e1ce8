//! A convolution with several input channels and few outputs computed directly: each
//! output position's channels in the lanes of one AVX-512 vector, each input value
//! broadcast to them (LeNet's second convolution: 10 input channels, 5×5, 10 outputs).
//!
//! As im2col and a matrix product this layer copied every window (5 runs of 50 values)
//! into a patch matrix 25× its input and multiplied it with a 10-column kernel side:
//! the copies and the skinny product were half of a forward pass on LeNet
//! (docs/BENCHMARKS.md). Here, with no padding, a kernel row's taps over all input
//! channels are one contiguous run of the NHWC input, so the sum over a window is k runs
//! of k·C broadcasts, each multiplied with one vector of the weights (a table of the
//! window's taps × 16 lanes) into the output position's accumulator. Sixteen output
//! positions (2 rows of 8) are summed at once in registers, so every weight vector
//! loaded serves sixteen products. The lanes past `outputs` compute zeros that are never
//! stored. Followed by a 2×2 max pooling, the sixteen sums are pooled in registers
//! ([`forward_pooled`]) or, for a tangent at known winners, picked at them
//! ([`tangent_at_winners`]); the weight gradient keeps a short window's sums in
//! registers instead ([`weight_sums`]: δ's outputs one vector, each pixel broadcast).
//!
//! f32 on a CPU with AVX-512 when [`supported`]; [`forward`] runs the plain loops
//! otherwise (the caller, `models/native.rs`, keeps its matrix product there).
//! Single-threaded, like the other kernels.

use super::conv::ConvShape;
use super::Float;

/// Most outputs: one 16-lane vector per output position.
pub const MAX_OUTPUTS: usize = 16;

/// Whether [`forward`] runs in vector code for this convolution with `outputs` output
/// channels: f32 on a CPU with AVX-512 (unless `NOISELAB_BROADCAST_CONV=0`), no
/// padding, at most [`MAX_OUTPUTS`] outputs.
pub fn supported<T: Float>(shape: &ConvShape, outputs: usize) -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
        && shape.padding == 0
        && (1..=MAX_OUTPUTS).contains(&outputs)
        && enabled()
}

/// AVX-512 here, and not switched off for a comparison (`NOISELAB_BROADCAST_CONV=0`).
fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    super::avx512_available()
        && super::widest() >= 16
        && *ENABLED
            .get_or_init(|| std::env::var("NOISELAB_BROADCAST_CONV").map_or(true, |v| v != "0"))
}

/// `out` (replaced: n·Hₒ·Wₒ × `outputs`, NHWC) = the convolution of the `n` images `x`
/// (n × H × W × C, NHWC) with `w` (`outputs` × window, window columns in the patch
/// order: kernel row, kernel column, channel) plus `bias`. Every value is written once,
/// into fresh capacity.
pub fn forward<T: Float>(
    shape: &ConvShape,
    outputs: usize,
    n: usize,
    x: &[T],
    (w, bias): (&[T], &[T]),
    out: &mut Vec<T>,
) {
    let (h, wi, c, k) = (shape.height, shape.width, shape.channels, shape.kernel);
    let (ho, wo, window) = (shape.out_height(), shape.out_width(), shape.window());
    assert_eq!(shape.padding, 0, "broadcast convolution: no padding");
    assert!(x.len() >= n * h * wi * c, "broadcast convolution: input");
    assert_eq!(w.len(), outputs * window, "broadcast convolution: weights");
    assert_eq!(bias.len(), outputs, "broadcast convolution: bias");
    let len = n * ho * wo * outputs;
    out.clear();
    out.reserve(len);
    let dst = out.as_mut_ptr();
    // SAFETY (both routes): `dst` has room for `len` values and each route writes every
    // (sample, y, x, output) exactly once, so the length can be set after.
    #[cfg(target_arch = "x86_64")]
    if supported::<T>(shape, outputs) {
        if let Some((x, w, bias)) = f32_operands(shape, n, (x, w, bias)) {
            let (table, lanes) = weight_table(window, w, bias);
            // SAFETY: `supported` checked AVX-512; the input bound is asserted above and
            // every window read lies inside its sample; see above for the output.
            unsafe {
                avx512::forward(
                    shape,
                    outputs,
                    n,
                    x,
                    (&table, &lanes),
                    dst.cast::<f32>(),
                    None,
                );
                out.set_len(len);
            }
            return;
        }
    }
    for s in 0..n {
        let img = &x[s * h * wi * c..(s + 1) * h * wi * c];
        for y in 0..ho {
            for xo in 0..wo {
                let at = ((s * ho + y) * wo + xo) * outputs;
                for o in 0..outputs {
                    let wo_row = &w[o * window..(o + 1) * window];
                    let mut acc = T::ZERO;
                    for ky in 0..k {
                        let run = &img[((y + ky) * wi + xo) * c..][..k * c];
                        for (a, b) in run.iter().zip(&wo_row[ky * k * c..]) {
                            acc += *a * *b;
                        }
                    }
                    // SAFETY: at + o < len (see above).
                    unsafe { dst.add(at + o).write(bias[o] + acc) };
                }
            }
        }
    }
    // SAFETY: see above.
    unsafe { out.set_len(len) };
}

/// The input, weights and bias as f32 (None unless T is f32), the input checked to
/// hold `n` whole samples: every window the vector code reads lies inside it.
#[cfg(target_arch = "x86_64")]
fn f32_operands<'a, T: Float>(
    shape: &ConvShape,
    n: usize,
    (x, w, bias): (&'a [T], &'a [T], &'a [T]),
) -> Option<(&'a [f32], &'a [f32], &'a [f32])> {
    let (x, w, bias) = (super::as_f32(x)?, super::as_f32(w)?, super::as_f32(bias)?);
    let pixels = shape.height * shape.width * shape.channels;
    assert!(x.len() >= n * pixels, "broadcast convolution: input");
    Some((x, w, bias))
}

/// The weights as the vector code reads them: window taps × 16 lanes (lane o: output
/// o's weight, zero past the outputs), and the bias in 16 lanes.
#[cfg(target_arch = "x86_64")]
fn weight_table(window: usize, w: &[f32], bias: &[f32]) -> (Vec<f32>, [f32; 16]) {
    let mut table = vec![0.0f32; window * 16];
    for (o, row) in w.chunks_exact(window).enumerate() {
        for (t, &v) in row.iter().enumerate() {
            table[t * 16 + o] = v;
        }
    }
    let mut lanes = [0.0f32; 16];
    lanes[..bias.len()].copy_from_slice(bias);
    (table, lanes)
}

/// Whether [`forward_pooled`] runs in vector code: as [`supported`], with an output of
/// whole pooling windows (even height and width).
pub fn pooled_supported<T: Float>(shape: &ConvShape, outputs: usize) -> bool {
    supported::<T>(shape, outputs)
        && shape.out_height().is_multiple_of(2)
        && shape.out_width().is_multiple_of(2)
}

/// `out` (replaced: n × Hₒ/2 × Wₒ/2 × `outputs`) and `winners` (replaced, as long):
/// the 2×2 max pooling of [`forward`]'s output and its window slots, with
/// `kernels::pool`'s rule (first maximum, NaN winning), without writing the
/// convolution's output (28 MB a pass for LeNet's first convolution over 1,200 images):
/// each window's four outputs are pooled in registers. Where [`pooled_supported`] is
/// false, [`forward`] then `pool::forward`.
pub fn forward_pooled<T: Float>(
    shape: &ConvShape,
    outputs: usize,
    n: usize,
    x: &[T],
    (w, bias): (&[T], &[T]),
    out: &mut Vec<T>,
    winners: &mut Vec<u8>,
) {
    let (ho, wo, window) = (shape.out_height(), shape.out_width(), shape.window());
    let len = n * (ho / 2) * (wo / 2) * outputs;
    #[cfg(target_arch = "x86_64")]
    if pooled_supported::<T>(shape, outputs) {
        if let Some((xf, wf, bf)) = f32_operands(shape, n, (x, w, bias)) {
            assert_eq!(wf.len(), outputs * window, "broadcast convolution: weights");
            assert_eq!(bf.len(), outputs, "broadcast convolution: bias");
            let (table, lanes) = weight_table(window, wf, bf);
            out.clear();
            out.reserve(len);
            winners.clear();
            winners.reserve(len);
            // SAFETY: `pooled_supported` checked AVX-512 and whole windows; the input
            // bound is asserted above; both outputs have room for `len` values and the
            // kernel writes every (sample, pooled position, output) of both once.
            unsafe {
                let (to, win) = (out.as_mut_ptr().cast::<f32>(), winners.as_mut_ptr());
                avx512::forward(shape, outputs, n, xf, (&table, &lanes), to, Some(win));
                out.set_len(len);
                winners.set_len(len);
            }
            return;
        }
    }
    let mut full = Vec::new();
    forward(shape, outputs, n, x, (w, bias), &mut full);
    *out = vec![T::ZERO; len];
    *winners = vec![0; len];
    super::pool::forward((n, ho, wo, outputs), &full, out, winners);
}

/// `out` (replaced: n × Hₒ/2 × Wₒ/2 × b × `outputs`): for each of b directions j, the
/// convolution of `x` with (`w_j`, `bias_j`) — `w` stacks the b kernels (b × `outputs`
/// × window), `bias` their biases (b × `outputs`) — taken at the given 2×2 pooling
/// `winners` (n × Hₒ/2 × Wₒ/2 × `outputs` window slots, row-major): the tangent at a
/// max pooling's winners of a convolution whose input does not move (the first
/// layer's), in the pooled block layout of an R-operator pass. Each window's four
/// outputs are picked from in registers; the convolution's own output (b × 28 MB a pass
/// for LeNet's first convolution over 1,200 images) is never written. Where
/// [`pooled_supported`] is false, [`forward`] per direction and a gather.
pub fn tangent_at_winners<T: Float>(
    shape: &ConvShape,
    (outputs, b): (usize, usize),
    n: usize,
    x: &[T],
    (w, bias): (&[T], &[T]),
    winners: &[u8],
    out: &mut Vec<T>,
) {
    let (ho, wo, window) = (shape.out_height(), shape.out_width(), shape.window());
    let pooled = (ho / 2) * (wo / 2);
    let len = n * pooled * b * outputs;
    assert_eq!(
        w.len(),
        b * outputs * window,
        "broadcast convolution: weights"
    );
    assert_eq!(bias.len(), b * outputs, "broadcast convolution: bias");
    assert!(
        winners.len() >= n * pooled * outputs,
        "broadcast convolution: winners"
    );
    #[cfg(target_arch = "x86_64")]
    if pooled_supported::<T>(shape, outputs) {
        if let Some((xf, wf, bf)) = f32_operands(shape, n, (x, w, bias)) {
            let tables: Vec<(Vec<f32>, [f32; 16])> = (0..b)
                .map(|j| {
                    let wj = &wf[j * outputs * window..(j + 1) * outputs * window];
                    weight_table(window, wj, &bf[j * outputs..(j + 1) * outputs])
                })
                .collect();
            out.clear();
            out.reserve(len);
            // SAFETY: `pooled_supported` checked AVX-512 and whole windows; the input
            // and winners are asserted above; `out` has room for `len` values and the
            // kernel writes every (sample, pooled position, direction, output) once.
            unsafe {
                avx512::tangent_at_winners(
                    shape,
                    (outputs, b),
                    n,
                    xf,
                    &tables,
                    winners,
                    out.as_mut_ptr().cast(),
                );
                out.set_len(len);
            }
            return;
        }
    }
    out.clear();
    out.resize(len, T::ZERO);
    let mut full = Vec::new();
    for j in 0..b {
        let wj = &w[j * outputs * window..(j + 1) * outputs * window];
        forward(
            shape,
            outputs,
            n,
            x,
            (wj, &bias[j * outputs..(j + 1) * outputs]),
            &mut full,
        );
        for (q, slots) in winners[..n * pooled * outputs]
            .chunks_exact(outputs)
            .enumerate()
        {
            let (s, p) = (q / pooled, q % pooled);
            let (qy, qx) = (p / (wo / 2), p % (wo / 2));
            for (o, &slot) in slots.iter().enumerate() {
                let (y, xo) = (
                    2 * qy + (slot as usize & 3) / 2,
                    2 * qx + (slot as usize & 1),
                );
                out[(q * b + j) * outputs + o] = full[((s * ho + y) * wo + xo) * outputs + o];
            }
        }
    }
}

/// Most taps of a window whose weight sums [`weight_sums`] keeps in registers (one
/// vector of the outputs per tap).
pub const MAX_SUM_WINDOW: usize = 27;

/// Whether [`weight_sums`] runs in vector code: as [`supported`], with a window of at
/// most [`MAX_SUM_WINDOW`] taps of one of the shapes it is unrolled for (5×5 or 3×3 over
/// one channel, 3×3 over three).
pub fn sums_supported<T: Float>(shape: &ConvShape, outputs: usize) -> bool {
    supported::<T>(shape, outputs)
        && matches!((shape.channels, shape.kernel), (1, 3) | (1, 5) | (3, 3))
}

/// `gw` (`outputs` × window, accumulated into) += Σ over the `n` images `x` and their
/// output positions of δ ⊗ window: the weight gradient of [`forward`] for the output
/// gradient `delta` (n·Hₒ·Wₒ × `outputs`, NHWC). Per output position, δ's outputs are
/// one vector and every tap of the window a broadcast, the window's sums in registers
/// for a sample, then added to the totals (so no sum runs over more than a sample's
/// positions in registers).
pub fn weight_sums<T: Float>(
    shape: &ConvShape,
    outputs: usize,
    n: usize,
    x: &[T],
    delta: &[T],
    gw: &mut [T],
) {
    let (h, wi, c, k) = (shape.height, shape.width, shape.channels, shape.kernel);
    let (ho, wo, window) = (shape.out_height(), shape.out_width(), shape.window());
    assert_eq!(shape.padding, 0, "broadcast convolution: no padding");
    assert!(x.len() >= n * h * wi * c, "broadcast convolution: input");
    assert!(
        delta.len() >= n * ho * wo * outputs,
        "broadcast convolution: δ"
    );
    assert_eq!(gw.len(), outputs * window, "broadcast convolution: weights");
    #[cfg(target_arch = "x86_64")]
    if sums_supported::<T>(shape, outputs) {
        if let (Some(x), Some(delta), Some(gw)) = (
            super::as_f32(x),
            super::as_f32(delta),
            super::as_f32_mut(gw),
        ) {
            let mut table = vec![0.0f32; window * 16];
            // SAFETY: `sums_supported` checked AVX-512 and the unrolled shapes; the
            // lengths are asserted above.
            unsafe {
                match (c, k) {
                    (1, 3) => avx512::weight_sums::<1, 3>(shape, outputs, n, x, delta, &mut table),
                    (1, _) => avx512::weight_sums::<1, 5>(shape, outputs, n, x, delta, &mut table),
                    _ => avx512::weight_sums::<3, 3>(shape, outputs, n, x, delta, &mut table),
                }
            }
            add_table(&table, window, gw);
            return;
        }
    }
    for s in 0..n {
        let img = &x[s * h * wi * c..(s + 1) * h * wi * c];
        for y in 0..ho {
            for xo in 0..wo {
                let d = &delta[((s * ho + y) * wo + xo) * outputs..][..outputs];
                for (o, &dv) in d.iter().enumerate() {
                    let g = &mut gw[o * window..(o + 1) * window];
                    for ky in 0..k {
                        let run = &img[((y + ky) * wi + xo) * c..][..k * c];
                        for (g, v) in g[ky * k * c..].iter_mut().zip(run) {
                            *g += dv * *v;
                        }
                    }
                }
            }
        }
    }
}

/// `gw` (outputs × window) += a table of the window's taps × 16 lanes (lane o: output
/// o), as the vector weight sums accumulate it.
#[cfg(target_arch = "x86_64")]
fn add_table(table: &[f32], window: usize, gw: &mut [f32]) {
    for (o, row) in gw.chunks_exact_mut(window).enumerate() {
        for (t, g) in row.iter_mut().enumerate() {
            *g += table[t * 16 + o];
        }
    }
}

/// Whether [`weight_sums_at_winners`] runs in vector code: as [`sums_supported`], with
/// whole pooling windows.
pub fn pooled_sums_supported<T: Float>(shape: &ConvShape, outputs: usize) -> bool {
    sums_supported::<T>(shape, outputs) && pooled_supported::<T>(shape, outputs)
}

/// `gw` (b × `outputs` × window) and `gb` (b × `outputs`), accumulated into: for each of
/// b directions j, the weight and bias gradients of a convolution followed by a 2×2 max
/// pooling, from the gradient at the pooling's output `delta` (n × Hₒ/2 × Wₒ/2 × b ×
/// `outputs`, the pooled block layout of an R-operator pass) and the pooling's `winners`
/// (n × Hₒ/2 × Wₒ/2 × `outputs` window slots): [`weight_sums`] and the bias sums of
/// `pool::backward`'s dense gradient, without it. That gradient is ¾ zeros; writing,
/// scattering and summing it was a sixth of an HVP on LeNet (docs/BENCHMARKS.md). Here
/// each pooled value's outputs are one vector, split by winner slot into four masked
/// vectors that meet the window at their slot's position, the window's sums in
/// registers for a sample.
pub fn weight_sums_at_winners<T: Float>(
    shape: &ConvShape,
    (outputs, b): (usize, usize),
    n: usize,
    x: &[T],
    (delta, winners): (&[T], &[u8]),
    (gw, gb): (&mut [T], &mut [T]),
) {
    let (h, wi, c, k) = (shape.height, shape.width, shape.channels, shape.kernel);
    let (ho, wo, window) = (shape.out_height(), shape.out_width(), shape.window());
    let pooled = (ho / 2) * (wo / 2);
    assert_eq!(shape.padding, 0, "broadcast convolution: no padding");
    assert!(x.len() >= n * h * wi * c, "broadcast convolution: input");
    assert!(
        delta.len() >= n * pooled * b * outputs,
        "broadcast convolution: δ"
    );
    assert!(
        winners.len() >= n * pooled * outputs,
        "broadcast convolution: winners"
    );
    assert_eq!(
        gw.len(),
        b * outputs * window,
        "broadcast convolution: weights"
    );
    assert_eq!(gb.len(), b * outputs, "broadcast convolution: bias");
    #[cfg(target_arch = "x86_64")]
    if pooled_sums_supported::<T>(shape, outputs) {
        if let (Some(x), Some(delta), Some(gw), Some(gb)) = (
            super::as_f32(x),
            super::as_f32(delta),
            super::as_f32_mut(gw),
            super::as_f32_mut(gb),
        ) {
            let mut tables = vec![0.0f32; b * (window + 1) * 16];
            // SAFETY: `pooled_sums_supported` checked AVX-512, whole windows and the
            // unrolled shapes; the lengths are asserted above.
            unsafe {
                let at = (delta, winners);
                match (c, k) {
                    (1, 3) => {
                        avx512::sums_at_winners::<1, 3>(shape, (outputs, b), n, x, at, &mut tables)
                    }
                    (1, _) => {
                        avx512::sums_at_winners::<1, 5>(shape, (outputs, b), n, x, at, &mut tables)
                    }
                    _ => {
                        avx512::sums_at_winners::<3, 3>(shape, (outputs, b), n, x, at, &mut tables)
                    }
                }
            }
            for (j, table) in tables.chunks_exact((window + 1) * 16).enumerate() {
                add_table(
                    table,
                    window,
                    &mut gw[j * outputs * window..(j + 1) * outputs * window],
                );
                for (o, g) in gb[j * outputs..(j + 1) * outputs].iter_mut().enumerate() {
                    *g += table[window * 16 + o];
                }
            }
            return;
        }
    }
    for (q, slots) in winners[..n * pooled * outputs]
        .chunks_exact(outputs)
        .enumerate()
    {
        let (s, p) = (q / pooled, q % pooled);
        let (qy, qx) = (p / (wo / 2), p % (wo / 2));
        let img = &x[s * h * wi * c..(s + 1) * h * wi * c];
        for j in 0..b {
            let d = &delta[(q * b + j) * outputs..][..outputs];
            for (o, (&dv, &slot)) in d.iter().zip(slots).enumerate() {
                let (y, xo) = (
                    2 * qy + (slot as usize & 3) / 2,
                    2 * qx + (slot as usize & 1),
                );
                gb[j * outputs + o] += dv;
                let g = &mut gw[(j * outputs + o) * window..][..window];
                for ky in 0..k {
                    let run = &img[((y + ky) * wi + xo) * c..][..k * c];
                    for (g, v) in g[ky * k * c..].iter_mut().zip(run) {
                        *g += dv * *v;
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::ConvShape;
    use std::arch::x86_64::*;

    /// Output rows and columns summed in registers at once.
    const ROWS: usize = 2;
    const COLUMNS: usize = 8;

    /// See [`super::forward`]: `table` is the window's taps × 16 lanes of weights,
    /// `bias` 16 lanes. With `winners`, the output is the 2×2 max pooling of the
    /// convolution's (n × Hₒ/2 × Wₒ/2 × `outputs`, Hₒ and Wₒ even) and `winners` its
    /// window slots, as `kernels::pool` writes them. Callers must run on a CPU with
    /// AVX-512 and pass an input of n whole samples and room for the outputs.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn forward(
        shape: &ConvShape,
        outputs: usize,
        n: usize,
        x: &[f32],
        (table, bias): (&[f32], &[f32; 16]),
        out: *mut f32,
        winners: Option<*mut u8>,
    ) {
        let at = Block {
            shape,
            outputs,
            mask: ((1u32 << outputs) - 1) as __mmask16,
            bias: _mm512_loadu_ps(bias.as_ptr()),
            table: table.as_ptr(),
        };
        // The channel count as a constant where it is a common one: the window reads
        // then address their columns by fixed offsets (with a run-time stride they
        // were a chain of dependent adds, 2× slower).
        match shape.channels {
            1 => at.samples::<1>(n, x, out, winners),
            3 => at.samples::<3>(n, x, out, winners),
            4 => at.samples::<4>(n, x, out, winners),
            6 => at.samples::<6>(n, x, out, winners),
            8 => at.samples::<8>(n, x, out, winners),
            10 => at.samples::<10>(n, x, out, winners),
            12 => at.samples::<12>(n, x, out, winners),
            16 => at.samples::<16>(n, x, out, winners),
            _ => at.samples::<0>(n, x, out, winners),
        }
    }

    /// See [`super::weight_sums`]: `table` (window × 16 lanes) += the sums. Callers must
    /// run on a CPU with AVX-512 and pass n whole samples of input and δ.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn weight_sums<const C: usize, const K: usize>(
        shape: &ConvShape,
        outputs: usize,
        n: usize,
        x: &[f32],
        delta: &[f32],
        table: &mut [f32],
    ) {
        let (h, w) = (shape.height, shape.width);
        let (ho, wo) = (shape.out_height(), shape.out_width());
        let mask = ((1u32 << outputs) - 1) as __mmask16;
        let span = K * C;
        for s in 0..n {
            let img = x.as_ptr().add(s * h * w * C);
            let d = delta.as_ptr().add(s * ho * wo * outputs);
            let mut acc = [_mm512_setzero_ps(); super::MAX_SUM_WINDOW];
            for y in 0..ho {
                let rows: [*const f32; K] = std::array::from_fn(|ky| img.add((y + ky) * w * C));
                for xo in 0..wo {
                    let dv = _mm512_maskz_loadu_ps(mask, d.add((y * wo + xo) * outputs));
                    for (ky, row) in rows.iter().enumerate() {
                        for u in 0..span {
                            let v = _mm512_set1_ps(*row.add(xo * C + u));
                            acc[ky * span + u] = _mm512_fmadd_ps(v, dv, acc[ky * span + u]);
                        }
                    }
                }
            }
            for (t, acc) in acc.iter().enumerate().take(K * span) {
                let to = table.as_mut_ptr().add(t * 16);
                _mm512_storeu_ps(to, _mm512_add_ps(_mm512_loadu_ps(to), *acc));
            }
        }
    }

    /// The window slots `winners[at..at + outputs]` in the first lanes (the rest
    /// undefined: callers mask them). One vector load where 16 bytes are there to read;
    /// the last few positions copy byte by byte, with reads that cannot become a call to
    /// `memcpy` (a call makes every vector register caller-saved: the accumulators were
    /// spilled around it at every position, 3× slower).
    #[inline(always)]
    unsafe fn slot_lanes(winners: &[u8], at: usize, outputs: usize) -> __m512i {
        let bytes = if at + 16 <= winners.len() {
            _mm_loadu_si128(winners.as_ptr().add(at).cast())
        } else {
            assert!(
                at + outputs <= winners.len(),
                "broadcast convolution: winners"
            );
            let mut slots = [0u8; 16];
            for (i, s) in slots.iter_mut().enumerate().take(outputs) {
                *s = std::ptr::read_volatile(winners.as_ptr().add(at + i));
            }
            _mm_loadu_si128(slots.as_ptr().cast())
        };
        _mm512_cvtepu8_epi32(bytes)
    }

    /// See [`super::weight_sums_at_winners`]: `tables` holds, per direction, the
    /// window's taps × 16 lanes and then the bias' 16 lanes, added to. Callers must run
    /// on a CPU with AVX-512 and pass n whole samples of input, δ and winners.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn sums_at_winners<const C: usize, const K: usize>(
        shape: &ConvShape,
        (outputs, b): (usize, usize),
        n: usize,
        x: &[f32],
        (delta, winners): (&[f32], &[u8]),
        tables: &mut [f32],
    ) {
        let (h, w) = (shape.height, shape.width);
        let (hq, wq) = (shape.out_height() / 2, shape.out_width() / 2);
        let mask = ((1u32 << outputs) - 1) as __mmask16;
        let span = K * C;
        let per_direction = (K * span + 1) * 16;
        for s in 0..n {
            let img = x.as_ptr().add(s * h * w * C);
            for j in 0..b {
                let mut acc = [_mm512_setzero_ps(); super::MAX_SUM_WINDOW];
                let mut bias = _mm512_setzero_ps();
                for qy in 0..hq {
                    for qx in 0..wq {
                        let q = (s * hq + qy) * wq + qx;
                        let d =
                            _mm512_maskz_loadu_ps(mask, delta.as_ptr().add((q * b + j) * outputs));
                        bias = _mm512_add_ps(bias, d);
                        let slot = slot_lanes(winners, q * outputs, outputs);
                        for k in 0..4 {
                            let here =
                                _mm512_cmpeq_epi32_mask(slot, _mm512_set1_epi32(k as i32)) & mask;
                            if here == 0 {
                                continue;
                            }
                            let dk = _mm512_maskz_mov_ps(here, d);
                            let (y, xo) = (2 * qy + k / 2, 2 * qx + k % 2);
                            for ky in 0..K {
                                let row = img.add(((y + ky) * w + xo) * C);
                                for u in 0..span {
                                    let v = _mm512_set1_ps(*row.add(u));
                                    acc[ky * span + u] = _mm512_fmadd_ps(v, dk, acc[ky * span + u]);
                                }
                            }
                        }
                    }
                }
                let table = tables.as_mut_ptr().add(j * per_direction);
                for (t, acc) in acc.iter().enumerate().take(K * span) {
                    let to = table.add(t * 16);
                    _mm512_storeu_ps(to, _mm512_add_ps(_mm512_loadu_ps(to), *acc));
                }
                let to = table.add(K * span * 16);
                _mm512_storeu_ps(to, _mm512_add_ps(_mm512_loadu_ps(to), bias));
            }
        }
    }

    /// See [`super::tangent_at_winners`]: one weight table and bias per direction.
    /// Callers must run on a CPU with AVX-512 and pass an input of n whole samples,
    /// their winners and room for the output.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tangent_at_winners(
        shape: &ConvShape,
        (outputs, b): (usize, usize),
        n: usize,
        x: &[f32],
        tables: &[(Vec<f32>, [f32; 16])],
        winners: &[u8],
        out: *mut f32,
    ) {
        let blocks: Vec<Block<'_>> = tables
            .iter()
            .map(|(table, bias)| Block {
                shape,
                outputs,
                mask: ((1u32 << outputs) - 1) as __mmask16,
                bias: _mm512_loadu_ps(bias.as_ptr()),
                table: table.as_ptr(),
            })
            .collect();
        let at = Gathered { b, winners, out };
        match shape.channels {
            1 => at.samples::<1>(&blocks, n, x),
            3 => at.samples::<3>(&blocks, n, x),
            _ => at.samples::<0>(&blocks, n, x),
        }
    }

    /// Where [`tangent_at_winners`] reads the winners and writes.
    struct Gathered<'a> {
        b: usize,
        winners: &'a [u8],
        out: *mut f32,
    }

    impl Gathered<'_> {
        #[inline(always)]
        unsafe fn samples<const C: usize>(&self, blocks: &[Block<'_>], n: usize, x: &[f32]) {
            let shape = blocks[0].shape;
            let (h, w, c) = (shape.height, shape.width, shape.channels);
            let (ho, wo, outputs) = (shape.out_height(), shape.out_width(), blocks[0].outputs);
            for s in 0..n {
                let img = x.as_ptr().add(s * h * w * c);
                for (j, block) in blocks.iter().enumerate() {
                    for y in (0..ho).step_by(2) {
                        let mut x0 = 0;
                        while x0 < wo {
                            if x0 + COLUMNS <= wo {
                                let acc = block.sum::<2, COLUMNS, C>(img, y, x0);
                                self.store(&acc, (s, j), (shape, outputs), y, x0);
                                x0 += COLUMNS;
                            } else {
                                let acc = block.sum::<2, 2, C>(img, y, x0);
                                self.store(&acc, (s, j), (shape, outputs), y, x0);
                                x0 += 2;
                            }
                        }
                    }
                }
            }
        }

        /// Each window's output at its winner, per lane (output channel).
        #[inline(always)]
        unsafe fn store<const X: usize>(
            &self,
            acc: &[[__m512; X]; 2],
            (s, j): (usize, usize),
            (shape, outputs): (&ConvShape, usize),
            y: usize,
            x0: usize,
        ) {
            let (hq, wq) = (shape.out_height() / 2, shape.out_width() / 2);
            let mask = ((1u32 << outputs) - 1) as __mmask16;
            for q in 0..X / 2 {
                let pos = (s * hq + y / 2) * wq + x0 / 2 + q;
                let slot = slot_lanes(self.winners, pos * outputs, outputs);
                let mut picked = acc[0][2 * q];
                for (k, &v) in [acc[0][2 * q + 1], acc[1][2 * q], acc[1][2 * q + 1]]
                    .iter()
                    .enumerate()
                {
                    let here = _mm512_cmpeq_epi32_mask(slot, _mm512_set1_epi32(k as i32 + 1));
                    picked = _mm512_mask_blend_ps(here, picked, v);
                }
                let to = self.out.add((pos * self.b + j) * outputs);
                _mm512_mask_storeu_ps(to, mask, picked);
            }
        }
    }

    struct Block<'a> {
        shape: &'a ConvShape,
        outputs: usize,
        mask: __mmask16,
        bias: __m512,
        table: *const f32,
    }

    impl Block<'_> {
        /// All samples, C channels (0: `shape.channels`, known only at run time); with
        /// `winners`, pooled.
        #[inline(always)]
        unsafe fn samples<const C: usize>(
            &self,
            n: usize,
            x: &[f32],
            out: *mut f32,
            winners: Option<*mut u8>,
        ) {
            let (h, w, c) = (self.shape.height, self.shape.width, self.shape.channels);
            let (ho, wo) = (self.shape.out_height(), self.shape.out_width());
            let per_sample = match winners {
                Some(_) => (ho / 2) * (wo / 2) * self.outputs,
                None => ho * wo * self.outputs,
            };
            for s in 0..n {
                let img = x.as_ptr().add(s * h * w * c);
                let dst = out.add(s * per_sample);
                if let Some(winners) = winners {
                    let win = winners.add(s * per_sample);
                    // Whole windows: pairs of rows, blocks of 8 columns or 2.
                    for y in (0..ho).step_by(2) {
                        let mut x0 = 0;
                        while x0 < wo {
                            if x0 + COLUMNS <= wo {
                                let acc = self.sum::<2, COLUMNS, C>(img, y, x0);
                                self.store_pooled(&acc, (dst, win), y, x0);
                                x0 += COLUMNS;
                            } else {
                                let acc = self.sum::<2, 2, C>(img, y, x0);
                                self.store_pooled(&acc, (dst, win), y, x0);
                                x0 += 2;
                            }
                        }
                    }
                    continue;
                }
                for y in (0..ho).step_by(ROWS) {
                    let full_rows = y + ROWS <= ho;
                    let mut x0 = 0;
                    while x0 < wo {
                        if x0 + COLUMNS <= wo {
                            if full_rows {
                                self.store(&self.sum::<ROWS, COLUMNS, C>(img, y, x0), dst, y, x0);
                            } else {
                                self.store(&self.sum::<1, COLUMNS, C>(img, y, x0), dst, y, x0);
                            }
                            x0 += COLUMNS;
                        } else {
                            if full_rows {
                                self.store(&self.sum::<ROWS, 1, C>(img, y, x0), dst, y, x0);
                            } else {
                                self.store(&self.sum::<1, 1, C>(img, y, x0), dst, y, x0);
                            }
                            x0 += 1;
                        }
                    }
                }
            }
        }

        /// Outputs (y..y+R, x0..x0+X) of one sample, all channels, their sums in R·X
        /// registers over the whole window.
        #[inline(always)]
        unsafe fn sum<const R: usize, const X: usize, const C: usize>(
            &self,
            img: *const f32,
            y: usize,
            x0: usize,
        ) -> [[__m512; X]; R] {
            let c = if C == 0 { self.shape.channels } else { C };
            let (w, k) = (self.shape.width, self.shape.kernel);
            let span = k * c;
            let mut acc = [[self.bias; X]; R];
            for ky in 0..k {
                let taps = self.table.add(ky * span * 16);
                let rows: [*const f32; R] =
                    std::array::from_fn(|r| img.add(((y + ky + r) * w + x0) * c));
                for u in 0..span {
                    let weights = _mm512_loadu_ps(taps.add(u * 16));
                    for (row, acc) in rows.iter().zip(acc.iter_mut()) {
                        for (xi, acc) in acc.iter_mut().enumerate() {
                            let v = _mm512_set1_ps(*row.add(u + xi * c));
                            *acc = _mm512_fmadd_ps(v, weights, *acc);
                        }
                    }
                }
            }
            acc
        }

        /// The outputs of [`Self::sum`] at (y, x0), each position's `outputs` lanes.
        #[inline(always)]
        unsafe fn store<const R: usize, const X: usize>(
            &self,
            acc: &[[__m512; X]; R],
            dst: *mut f32,
            y: usize,
            x0: usize,
        ) {
            let wo = self.shape.out_width();
            for (r, acc) in acc.iter().enumerate() {
                for (xi, acc) in acc.iter().enumerate() {
                    let to = dst.add(((y + r) * wo + x0 + xi) * self.outputs);
                    _mm512_mask_storeu_ps(to, self.mask, *acc);
                }
            }
        }

        /// The 2×2 max pooling of the outputs of [`Self::sum`] at (y, x0) (y and x0
        /// even, X even), with `kernels::pool`'s rule: the first maximum in row-major
        /// order, NaN winning; the pooled values and their window slots.
        #[inline(always)]
        unsafe fn store_pooled<const X: usize>(
            &self,
            acc: &[[__m512; X]; 2],
            (dst, winners): (*mut f32, *mut u8),
            y: usize,
            x0: usize,
        ) {
            let wq = self.shape.out_width() / 2;
            for q in 0..X / 2 {
                let candidates = [
                    acc[0][2 * q],
                    acc[0][2 * q + 1],
                    acc[1][2 * q],
                    acc[1][2 * q + 1],
                ];
                let mut best = candidates[0];
                let mut slot = _mm512_setzero_si512();
                for (k, &v) in candidates.iter().enumerate().skip(1) {
                    // v > best is false while best is NaN, so a NaN, once best, stays.
                    let greater = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best);
                    let v_nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                    let best_nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(best, best);
                    let take = greater | (v_nan & !best_nan);
                    best = _mm512_mask_blend_ps(take, best, v);
                    slot = _mm512_mask_blend_epi32(take, slot, _mm512_set1_epi32(k as i32));
                }
                let at = ((y / 2) * wq + x0 / 2 + q) * self.outputs;
                _mm512_mask_storeu_ps(dst.add(at), self.mask, best);
                _mm512_mask_cvtepi32_storeu_epi8(winners.add(at).cast(), self.mask, slot);
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::kernels::{conv, matmul, Mat, WIDEST};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    pub(in crate::kernels) fn random<T: Float>(rng: &mut ChaCha8Rng, len: usize) -> Vec<T> {
        (0..len)
            .map(|_| T::from_f64(rng.random_range(-1.0..1.0)))
            .collect()
    }

    /// A convolution's forward pass (`out` replaced) and its weight sums (accumulated),
    /// as [`forward`] and [`weight_sums`] take them.
    pub(in crate::kernels) type Routes<T> = (
        fn(&ConvShape, usize, usize, &[T], (&[T], &[T]), &mut Vec<T>),
        fn(&ConvShape, usize, usize, &[T], &[T], &mut [T]),
    );

    /// [`forward`] and [`weight_sums`] against im2col and the matrix products (the
    /// route they replace), to `tol` relative to the largest sum of absolute terms.
    fn matches_the_patch_matrix<T: Float>(shape: ConvShape, outputs: usize, n: usize, tol: f64) {
        let routes: Routes<T> = (forward, weight_sums);
        routes_match_the_patch_matrix(shape, outputs, n, tol, routes);
    }

    /// `routes` against im2col and the matrix products.
    pub(in crate::kernels) fn routes_match_the_patch_matrix<T: Float>(
        shape: ConvShape,
        outputs: usize,
        n: usize,
        tol: f64,
        (forward, weight_sums): Routes<T>,
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let x: Vec<T> = random(&mut rng, n * shape.height * shape.width * shape.channels);
        let w: Vec<T> = random(&mut rng, outputs * shape.window());
        let bias: Vec<T> = random(&mut rng, outputs);
        let rows = n * shape.positions();
        let mut patches = vec![T::ZERO; rows * shape.window()];
        conv::im2col(&shape, n, &x, &mut patches);
        let p = Mat::rows(&patches, rows, shape.window());
        let close = |got: &[T], want: &[T], scale: f64, what: &str| {
            assert_eq!(got.len(), want.len(), "{what}");
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                let err = (g.to_f64() - w.to_f64()).abs();
                assert!(
                    err <= tol * scale,
                    "{what}[{i}]: {g:?} vs {w:?} ({shape:?}, {outputs} outputs)"
                );
            }
        };
        let mut want: Vec<T> = (0..rows).flat_map(|_| bias.iter().copied()).collect();
        matmul(
            &mut want,
            true,
            p,
            Mat::rows(&w, outputs, shape.window()).t(),
        );
        // Overwrites what is there.
        let mut got: Vec<T> = random(&mut rng, 3);
        forward(&shape, outputs, n, &x, (&w, &bias), &mut got);
        close(&got, &want, 1.0 + shape.window() as f64, "forward");

        let delta: Vec<T> = random(&mut rng, rows * outputs);
        let start: Vec<T> = random(&mut rng, outputs * shape.window());
        let mut want = start.clone();
        matmul(&mut want, true, Mat::rows(&delta, rows, outputs).t(), p);
        let mut got = start;
        weight_sums(&shape, outputs, n, &x, &delta, &mut got);
        close(&got, &want, 1.0 + rows as f64, "weight_sums");
    }

    /// Runs `check` in vector code where this CPU has it, then in the plain loops.
    fn in_both_routes(shape: &ConvShape, outputs: usize, mut check: impl FnMut()) {
        assert_eq!(
            supported::<f32>(shape, outputs),
            crate::kernels::avx512_available()
        );
        check();
        WIDEST.with(|w| w.set(8));
        assert!(!supported::<f32>(shape, outputs));
        check();
        WIDEST.with(|w| w.set(usize::MAX));
    }

    fn shape(side: usize, channels: usize, kernel: usize) -> ConvShape {
        ConvShape {
            height: side,
            width: side,
            channels,
            kernel,
            padding: 0,
        }
    }

    #[test]
    fn lenet_layers_match_the_matrix_products() {
        // The second convolution (10 channels; its weight sums: the plain loops, the
        // window is too long for registers) with 10 outputs, a full vector, and one.
        let second = shape(12, 10, 5);
        for outputs in [10, 16, 1] {
            in_both_routes(&second, outputs, || {
                matches_the_patch_matrix::<f32>(second, outputs, 3, 1e-6)
            });
        }
        assert!(!sums_supported::<f32>(&second, 10));
        // The first (one channel): forward and weight sums in registers.
        let first = shape(28, 1, 5);
        assert_eq!(
            sums_supported::<f32>(&first, 10),
            crate::kernels::avx512_available()
        );
        in_both_routes(&first, 10, || {
            matches_the_patch_matrix::<f32>(first, 10, 3, 1e-6)
        });
        assert!(!supported::<f64>(&second, 10));
        matches_the_patch_matrix::<f64>(second, 10, 2, 1e-13);
        assert!(!supported::<f32>(&second, 17));
    }

    /// [`forward_pooled`] against [`forward`] then `pool::forward`: the same values and
    /// winners exactly, with ties (a zero region: every output of its windows is the
    /// bias) and a NaN in the input.
    fn pools_like_the_pooling(shape: ConvShape, outputs: usize, n: usize) {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (h, w, c) = (shape.height, shape.width, shape.channels);
        let mut x: Vec<f32> = random(&mut rng, n * h * w * c);
        // Sample 0's top-left quarter zero: tied windows.
        for y in 0..h / 2 {
            x[y * w * c..(y * w + w / 2) * c].fill(0.0);
        }
        x[(n - 1) * h * w * c + (h / 2 * w + w / 2) * c] = f32::NAN;
        let weights: Vec<f32> = random(&mut rng, outputs * shape.window());
        let bias: Vec<f32> = random(&mut rng, outputs);
        let mut full = Vec::new();
        forward(&shape, outputs, n, &x, (&weights, &bias), &mut full);
        let len = n * (shape.out_height() / 2) * (shape.out_width() / 2) * outputs;
        let (mut want, mut want_winners) = (vec![0.0f32; len], vec![0u8; len]);
        let dims = (n, shape.out_height(), shape.out_width(), outputs);
        crate::kernels::pool::forward(dims, &full, &mut want, &mut want_winners);
        let (mut got, mut got_winners) = (vec![1.0f32; 2], vec![9u8; 5]);
        forward_pooled(
            &shape,
            outputs,
            n,
            &x,
            (&weights, &bias),
            &mut got,
            &mut got_winners,
        );
        assert_eq!(got_winners, want_winners, "{shape:?}, {outputs} outputs");
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(g == w || g.is_nan() && w.is_nan(), "[{i}]: {g} vs {w}");
        }
        assert!(got.iter().any(|v| v.is_nan()), "the NaN reaches the output");
        assert!(want_winners.contains(&0) && want_winners.iter().any(|&s| s > 0));
    }

    #[test]
    fn the_pooling_in_registers_matches_the_pooling_after() {
        // LeNet's two convolutions; one with a block of 2 columns after 8 (Wₒ = 10).
        let cases = [
            (shape(28, 1, 5), 10),
            (shape(12, 10, 5), 10),
            (shape(14, 3, 5), 16),
        ];
        for (shape, outputs) in cases {
            assert_eq!(
                pooled_supported::<f32>(&shape, outputs),
                crate::kernels::avx512_available()
            );
            pools_like_the_pooling(shape, outputs, 3);
        }
        // Odd output sides: not whole windows.
        assert!(!pooled_supported::<f32>(&shape(13, 1, 5), 10));
    }

    /// The winners of [`forward_pooled`] at random weights: where a tangent or a
    /// gradient of the pooling's output is taken.
    fn random_winners(
        rng: &mut ChaCha8Rng,
        shape: &ConvShape,
        outputs: usize,
        n: usize,
        x: &[f32],
    ) -> Vec<u8> {
        let theta: Vec<f32> = random(rng, outputs * shape.window());
        let theta_bias: Vec<f32> = random(rng, outputs);
        let (mut pooled, mut winners) = (Vec::new(), Vec::new());
        let weights = (theta.as_slice(), theta_bias.as_slice());
        forward_pooled(shape, outputs, n, x, weights, &mut pooled, &mut winners);
        winners
    }

    #[test]
    fn tangents_at_the_winners_match_the_whole_convolutions_gathered() {
        // Three directions through LeNet's first convolution and a 3-channel one with a
        // block of 2 columns (Wₒ = 10), at the winners of a pooling at other weights.
        for (shape, outputs, b) in [(shape(28, 1, 5), 10, 3), (shape(14, 3, 5), 6, 2)] {
            let n = 3;
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            let x: Vec<f32> = random(&mut rng, n * shape.height * shape.width * shape.channels);
            let winners = random_winners(&mut rng, &shape, outputs, n, &x);
            assert!(winners.iter().any(|&s| s != winners[0]), "winners vary");
            let v: Vec<f32> = random(&mut rng, b * outputs * shape.window());
            let vb: Vec<f32> = random(&mut rng, b * outputs);
            // Oracle: each direction's whole convolution (im2col and a product),
            // gathered at the winners.
            let (ho, wo) = (shape.out_height(), shape.out_width());
            let rows = n * ho * wo;
            let mut patches = vec![0.0f32; rows * shape.window()];
            conv::im2col(&shape, n, &x, &mut patches);
            let mut want = vec![0.0f32; winners.len() * b];
            for j in 0..b {
                let vj = &v[j * outputs * shape.window()..][..outputs * shape.window()];
                let mut full: Vec<f32> = (0..rows)
                    .flat_map(|_| vb[j * outputs..][..outputs].iter().copied())
                    .collect();
                let p = Mat::rows(&patches, rows, shape.window());
                matmul(
                    &mut full,
                    true,
                    p,
                    Mat::rows(vj, outputs, shape.window()).t(),
                );
                for (q, slots) in winners.chunks_exact(outputs).enumerate() {
                    let (s, p) = (q / (ho / 2 * wo / 2), q % (ho / 2 * wo / 2));
                    let (qy, qx) = (p / (wo / 2), p % (wo / 2));
                    for (o, &slot) in slots.iter().enumerate() {
                        let (y, xo) = (2 * qy + slot as usize / 2, 2 * qx + slot as usize % 2);
                        want[(q * b + j) * outputs + o] =
                            full[((s * ho + y) * wo + xo) * outputs + o];
                    }
                }
            }
            in_both_routes(&shape, outputs, || {
                let mut got: Vec<f32> = random(&mut rng, 4);
                tangent_at_winners(&shape, (outputs, b), n, &x, (&v, &vb), &winners, &mut got);
                assert_eq!(got.len(), want.len());
                let scale = 1.0 + shape.window() as f32;
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-6 * scale,
                        "[{i}]: {g} vs {w} ({shape:?})"
                    );
                }
            });
        }
    }

    #[test]
    fn weight_sums_at_the_winners_match_the_pooling_backward_then_the_products() {
        // LeNet's first convolution and the other unrolled shapes (3×3 over one channel
        // and over three, with a block of 2 columns), one and three directions, at the
        // winners of a pooling with ties (a zero image region: every output of its
        // windows is the bias, slot 0 wins).
        let cases = [
            (shape(28, 1, 5), 10, 3),
            (shape(28, 1, 5), 10, 1),
            (shape(12, 1, 3), 16, 2),
            (shape(12, 3, 3), 6, 2),
        ];
        for (shape, outputs, b) in cases {
            let n = 3;
            let (h, w, c) = (shape.height, shape.width, shape.channels);
            let mut rng = ChaCha8Rng::seed_from_u64(21);
            let mut x: Vec<f32> = random(&mut rng, n * h * w * c);
            for y in 0..h / 2 {
                x[y * w * c..(y * w + w / 2) * c].fill(0.0);
            }
            let winners = random_winners(&mut rng, &shape, outputs, n, &x);
            assert!(
                (0..4).all(|k| winners.contains(&k)),
                "every slot wins somewhere"
            );
            let delta: Vec<f32> = random(&mut rng, winners.len() * b);
            // Oracle: per direction, the pooling's dense backward pass, then the patch
            // matrix product and the column sums.
            let (ho, wo, window) = (shape.out_height(), shape.out_width(), shape.window());
            let rows = n * ho * wo;
            let mut patches = vec![0.0f32; rows * window];
            conv::im2col(&shape, n, &x, &mut patches);
            let start_w: Vec<f32> = random(&mut rng, b * outputs * window);
            let start_b: Vec<f32> = random(&mut rng, b * outputs);
            let (mut want_w, mut want_b) = (start_w.clone(), start_b.clone());
            for j in 0..b {
                let dj: Vec<f32> = delta
                    .chunks_exact(outputs)
                    .skip(j)
                    .step_by(b)
                    .flatten()
                    .copied()
                    .collect();
                let mut dense = vec![1.0f32; rows * outputs];
                crate::kernels::pool::backward((n, ho, wo, outputs), &dj, &winners, &mut dense);
                let d = Mat::rows(&dense, rows, outputs);
                let gw = &mut want_w[j * outputs * window..(j + 1) * outputs * window];
                matmul(gw, true, d.t(), Mat::rows(&patches, rows, window));
                for row in dense.chunks_exact(outputs) {
                    for (g, v) in want_b[j * outputs..(j + 1) * outputs].iter_mut().zip(row) {
                        *g += v;
                    }
                }
            }
            in_both_routes(&shape, outputs, || {
                assert_eq!(
                    pooled_sums_supported::<f32>(&shape, outputs),
                    supported::<f32>(&shape, outputs)
                );
                let (mut got_w, mut got_b) = (start_w.clone(), start_b.clone());
                weight_sums_at_winners(
                    &shape,
                    (outputs, b),
                    n,
                    &x,
                    (&delta, &winners),
                    (&mut got_w, &mut got_b),
                );
                let scale = 1.0 + (n * ho * wo) as f32;
                for (what, got, want) in [("weights", &got_w, &want_w), ("bias", &got_b, &want_b)] {
                    for (i, (g, w)) in got.iter().zip(want).enumerate() {
                        assert!(
                            (g - w).abs() <= 1e-6 * scale,
                            "{what}[{i}]: {g} vs {w} ({shape:?}, b = {b})"
                        );
                    }
                }
            });
        }
        // f64 takes the plain loops.
        assert!(!pooled_sums_supported::<f64>(&shape(28, 1, 5), 10));
    }

    #[test]
    fn odd_shapes_take_every_block_size() {
        // Odd output rows (a last row alone) and columns past whole blocks of 8
        // (Wₒ = 11: one block and three single columns), 3 channels (5×5: sums in the
        // plain loops; 3×3: in registers), and a channel count without its own
        // constant (5).
        let odd = ConvShape {
            height: 9,
            width: 15,
            channels: 3,
            kernel: 5,
            padding: 0,
        };
        for (shape, outputs) in [(odd, 7), (shape(6, 3, 3), 16), (shape(7, 5, 3), 4)] {
            in_both_routes(&shape, outputs, || {
                matches_the_patch_matrix::<f32>(shape, outputs, 2, 1e-6)
            });
        }
        matches_the_patch_matrix::<f64>(odd, 7, 2, 1e-13);
        // Padding stays with the matrix product.
        let padded = ConvShape {
            padding: 1,
            ..shape(6, 3, 3)
        };
        assert!(!supported::<f32>(&padded, 8));
    }
}
