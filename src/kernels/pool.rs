//! 2×2 max pooling, stride 2, over NHWC activations. The winner of each window is its
//! *first* maximum in row-major order, as in PyTorch (ties are common: a zero image
//! background makes whole windows equal to the bias), and NaN wins, as in PyTorch.
//! The winners are kept, so the backward pass and the R-operator of an exact HVP
//! route through exactly the entries the forward pass picked.

use super::Float;

/// `x` is n × H × W × C (H, W even); `out` n × H/2 × W/2 × C; `winner` the window
/// slot (0..4, row-major) of each output.
pub fn forward<T: Float>(
    (n, h, w, c): (usize, usize, usize, usize),
    x: &[T],
    out: &mut [T],
    winner: &mut [u8],
) {
    let (ho, wo) = (h / 2, w / 2);
    for s in 0..n {
        for oy in 0..ho {
            for ox in 0..wo {
                let o = ((s * ho + oy) * wo + ox) * c;
                let at = |dy: usize, dx: usize| ((s * h + 2 * oy + dy) * w + 2 * ox + dx) * c;
                let bases = [at(0, 0), at(0, 1), at(1, 0), at(1, 1)];
                for ch in 0..c {
                    let mut best = x[bases[0] + ch];
                    let mut slot = 0u8;
                    for (k, b) in bases.iter().enumerate().skip(1) {
                        let v = x[b + ch];
                        if !best.is_nan() && (v > best || v.is_nan()) {
                            best = v;
                            slot = k as u8;
                        }
                    }
                    out[o + ch] = best;
                    winner[o + ch] = slot;
                }
            }
        }
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
