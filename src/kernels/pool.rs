//! 2×2 max pooling, stride 2, over NHWC activations. The winner of each window is its
//! *first* maximum in row-major order, as in PyTorch (ties are common: a zero image
//! background makes whole windows equal to the bias), and NaN wins, as in PyTorch.
//! The winners are kept, so the backward pass and the R-operator of an exact HVP
//! route through exactly the entries the forward pass picked.

use super::Float;

/// `x` is n × H × W × C (H, W even); `out` n × H/2 × W/2 × C; `winner` the window
/// slot (0..4, row-major) of each output.
pub fn forward<T: Float>(
    dims: (usize, usize, usize, usize),
    x: &[T],
    out: &mut [T],
    winner: &mut [u8],
) {
    #[cfg(target_arch = "x86_64")]
    if dims.3 >= avx::LANES && super::fma_available() {
        if let (Some(x), Some(out)) = (super::as_f32(x), super::as_f32_mut(out)) {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { avx::forward(dims, x, out, winner) };
        }
    }
    dispatch!(
        forward_impl,
        forward_avx2,
        (dims: (usize, usize, usize, usize), x: &[T], out: &mut [T], winner: &mut [u8])
    );
}

/// The pooling for f32 in AVX2 compares and blends, 8 channels at a time, the slots in
/// 32-bit lanes narrowed to bytes once per group (written generically, the compiler
/// converted every compare mask to bytes and back: a seventh of a forward pass).
#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    pub const LANES: usize = 8;

    /// As [`super::forward`], for at least [`LANES`] channels.
    #[target_feature(enable = "avx2")]
    pub unsafe fn forward(
        (n, h, w, c): (usize, usize, usize, usize),
        x: &[f32],
        out: &mut [f32],
        winner: &mut [u8],
    ) {
        assert!(c >= LANES);
        let (ho, wo) = (h / 2, w / 2);
        assert!(x.len() >= n * h * w * c && out.len() >= n * ho * wo * c);
        assert!(winner.len() >= n * ho * wo * c);
        let row = w * c;
        // Channel groups: every LANES, the last one overlapping the one before it
        // (its shared channels get the same values twice).
        let starts = (0..c.div_ceil(LANES)).map(|g| (g * LANES).min(c - LANES));
        for r in 0..n * ho {
            let top = r * 2 * row;
            for ox in 0..wo {
                let corner = top + 2 * ox * c;
                let o = (r * wo + ox) * c;
                for s in starts.clone() {
                    let p = x.as_ptr().add(corner + s);
                    // SAFETY: corner + s + LANES ≤ the window's last row end, in bounds
                    // by the asserts above; so are o + s + LANES in out and winner.
                    window(
                        [p, p.add(c), p.add(row), p.add(row + c)],
                        out.as_mut_ptr().add(o + s),
                        winner.as_mut_ptr().add(o + s),
                    );
                }
            }
        }
    }

    /// The first maximum of four candidates in 8 channels, NaN winning.
    #[inline(always)]
    unsafe fn window(candidates: [*const f32; 4], out: *mut f32, winner: *mut u8) {
        let mut best = _mm256_loadu_ps(candidates[0]);
        let mut slot = _mm256_setzero_si256();
        for (k, &p) in candidates.iter().enumerate().skip(1) {
            let v = _mm256_loadu_ps(p);
            // v > best is false while best is NaN, so a NaN, once best, stays.
            let greater = _mm256_cmp_ps::<_CMP_GT_OQ>(v, best);
            let v_nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v);
            let best_nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(best, best);
            let take = _mm256_or_ps(greater, _mm256_andnot_ps(best_nan, v_nan));
            best = _mm256_blendv_ps(best, v, take);
            slot = _mm256_blendv_epi8(slot, _mm256_set1_epi32(k as i32), _mm256_castps_si256(take));
        }
        _mm256_storeu_ps(out, best);
        let words = _mm_packs_epi32(
            _mm256_castsi256_si128(slot),
            _mm256_extracti128_si256::<1>(slot),
        );
        _mm_storel_epi64(winner.cast::<__m128i>(), _mm_packus_epi16(words, words));
    }
}

#[inline(always)]
fn forward_impl<T: Float, const FMA: bool>(
    (n, h, w, c): (usize, usize, usize, usize),
    x: &[T],
    out: &mut [T],
    winner: &mut [u8],
) {
    let (ho, wo) = (h / 2, w / 2);
    let row = w * c;
    let rows = x.chunks_exact(2 * row).take(n * ho);
    let outs = out
        .chunks_exact_mut(wo * c)
        .zip(winner.chunks_exact_mut(wo * c));
    for (pair, (out, winner)) in rows.zip(outs) {
        let (top, bottom) = pair.split_at(row);
        let (top, bottom) = (top.chunks_exact(2 * c), bottom.chunks_exact(2 * c));
        let outs = out.chunks_exact_mut(c).zip(winner.chunks_exact_mut(c));
        for ((t, b), (out, winner)) in top.zip(bottom).zip(outs) {
            let candidates = [&t[..c], &t[c..], &b[..c], &b[c..]];
            window_max(candidates, out, winner);
        }
    }
}

/// The first maximum of four candidates per channel, NaN winning: branch-free, so that
/// it vectorises over the channels (it was a quarter of a forward pass as branches).
#[inline(always)]
fn window_max<T: Float>(candidates: [&[T]; 4], out: &mut [T], winner: &mut [u8]) {
    let [c0, c1, c2, c3] = candidates;
    for (ch, (o, w)) in out.iter_mut().zip(winner.iter_mut()).enumerate() {
        let (mut best, mut slot) = (c0[ch], 0u8);
        for (k, v) in [(1u8, c1[ch]), (2, c2[ch]), (3, c3[ch])] {
            // v > best is false while best is NaN, so a NaN, once best, stays.
            let take = (v > best) | (v.is_nan() & !best.is_nan());
            best = if take { v } else { best };
            slot = if take { k } else { slot };
        }
        *o = best;
        *w = slot;
    }
}

/// Calls `f(pooled index, source index)` for every pooled entry and its winner.
#[inline]
fn for_each_winner(
    (n, h, w, c): (usize, usize, usize, usize),
    winner: &[u8],
    mut f: impl FnMut(usize, usize),
) {
    let (ho, wo) = (h / 2, w / 2);
    let mut i = 0;
    for s in 0..n {
        for oy in 0..ho {
            for ox in 0..wo {
                let corner = ((s * h + 2 * oy) * w + 2 * ox) * c;
                let offsets = [corner, corner + c, corner + w * c, corner + (w + 1) * c];
                for ch in 0..c {
                    f(i, offsets[winner[i] as usize] + ch);
                    i += 1;
                }
            }
        }
    }
}

/// Gradient routing: `dx` (n × H × W × C, overwritten) gets `dout` at the winners, 0
/// elsewhere.
pub fn backward<T: Float>(
    dims: (usize, usize, usize, usize),
    dout: &[T],
    winner: &[u8],
    dx: &mut [T],
) {
    let (n, h, w, c) = dims;
    dx[..n * h * w * c].fill(T::ZERO);
    for_each_winner(dims, winner, |i, src| dx[src] = dout[i]);
}

/// The pooling's action on a tangent (R-operator): the winners' entries of `rx`.
pub fn gather<T: Float>(
    dims: (usize, usize, usize, usize),
    rx: &[T],
    winner: &[u8],
    out: &mut [T],
) {
    for_each_winner(dims, winner, |i, src| out[i] = rx[src]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window rule written out one entry at a time: first maximum in row-major
    /// order, NaN wins.
    fn by_entry((n, h, w, c): (usize, usize, usize, usize), x: &[f32]) -> (Vec<f32>, Vec<u8>) {
        let (ho, wo) = (h / 2, w / 2);
        let (mut out, mut winner) = (vec![0.0; n * ho * wo * c], vec![0u8; n * ho * wo * c]);
        for s in 0..n {
            for oy in 0..ho {
                for ox in 0..wo {
                    for ch in 0..c {
                        let at = |dy: usize, dx: usize| {
                            ((s * h + 2 * oy + dy) * w + 2 * ox + dx) * c + ch
                        };
                        let window = [x[at(0, 0)], x[at(0, 1)], x[at(1, 0)], x[at(1, 1)]];
                        let slot = window.iter().position(|v| v.is_nan()).unwrap_or_else(|| {
                            let max = window.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                            window.iter().position(|&v| v == max).unwrap()
                        });
                        let o = ((s * ho + oy) * wo + ox) * c + ch;
                        out[o] = window[slot];
                        winner[o] = slot as u8;
                    }
                }
            }
        }
        (out, winner)
    }

    #[test]
    fn windows_pick_their_first_maximum_and_nan() {
        // Channel counts below one AVX2 group of 8 (the generic code only), exactly
        // one, one and an overlapped remainder (LeNet's 10), two and a remainder.
        for c in [5, 8, 10, 17] {
            let dims = (3, 6, 4, c);
            // Few distinct values (ties everywhere), some NaN.
            let x: Vec<f32> = (0..3 * 6 * 4 * c)
                .map(|i| match (i * 7919) % 13 {
                    0 => f32::NAN,
                    r => (r % 4) as f32 - 1.0,
                })
                .collect();
            let (want, want_winner) = by_entry(dims, &x);
            assert!(want.iter().any(|v| v.is_nan()) && want_winner.contains(&3));
            let check = |out: &[f32], winner: &[u8], route: &str| {
                assert_eq!(winner, want_winner, "{route}, {c} channels");
                for (a, b) in out.iter().zip(&want) {
                    assert!(
                        a == b || a.is_nan() && b.is_nan(),
                        "{route}, {c}: {a} vs {b}"
                    );
                }
            };
            // As dispatched (f32 in AVX2 where the CPU has it), the generic code in
            // f32, and in f64.
            let (mut out, mut winner) = (vec![0.0; want.len()], vec![9u8; want.len()]);
            forward(dims, &x, &mut out, &mut winner);
            check(&out, &winner, "dispatched");
            let (mut out, mut winner) = (vec![0.0; want.len()], vec![9u8; want.len()]);
            forward_impl::<f32, false>(dims, &x, &mut out, &mut winner);
            check(&out, &winner, "generic");
            let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let (mut out64, mut winner) = (vec![0.0; want.len()], vec![9u8; want.len()]);
            forward(dims, &x64, &mut out64, &mut winner);
            let out: Vec<f32> = out64.iter().map(|&v| v as f32).collect();
            check(&out, &winner, "f64");
        }
    }
}
