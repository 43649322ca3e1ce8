//! Stride-1 convolutions as matrix products over NHWC activations: the patches of an
//! n × H × W × C input form an (n·Hₒ·Wₒ) × (k·k·C) matrix whose columns run over
//! (row, column, channel) of the kernel window — so a channel run is one contiguous copy.
//! PyTorch stores weights as out × C × k × k; the network's plan maps between the two
//! column orders (`models/native.rs`).

use super::Float;

/// Geometry of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub kernel: usize,
    pub padding: usize,
}

impl ConvShape {
    pub fn out_height(&self) -> usize {
        self.height + 2 * self.padding + 1 - self.kernel
    }

    pub fn out_width(&self) -> usize {
        self.width + 2 * self.padding + 1 - self.kernel
    }

    /// Output positions per sample.
    pub fn positions(&self) -> usize {
        self.out_height() * self.out_width()
    }

    /// Columns of the patch matrix: k·k·C.
    pub fn window(&self) -> usize {
        self.kernel * self.kernel * self.channels
    }

    /// Calls `f(patch_row, input_pixel, window_slot)` for every in-bounds kernel tap of
    /// every output position of one sample (pixel = iy·W + ix, slot = ky·k + kx).
    #[inline]
    fn for_each_run(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (ho, wo, k, p) = (
            self.out_height(),
            self.out_width(),
            self.kernel,
            self.padding,
        );
        for oy in 0..ho {
            for ox in 0..wo {
                let row = oy * wo + ox;
                for ky in 0..k {
                    let Some(iy) = (oy + ky).checked_sub(p).filter(|&y| y < self.height) else {
                        continue;
                    };
                    for kx in 0..k {
                        let Some(ix) = (ox + kx).checked_sub(p).filter(|&x| x < self.width) else {
                            continue;
                        };
                        f(row, iy * self.width + ix, ky * k + kx);
                    }
                }
            }
        }
    }
}

/// Patch matrix of `n` samples: `x` is n × H × W × C, `out` (n·Hₒ·Wₒ) × (k·k·C); zero
/// padding. A window row (k pixels × C channels) is contiguous in NHWC, so it is one copy
/// unless the padding clips it.
pub fn im2col<T: Float>(shape: &ConvShape, n: usize, x: &[T], out: &mut [T]) {
    let mut at = 0;
    im2col_runs(shape, n, x, |run, len| {
        let dst = &mut out[at..at + len];
        match run {
            Some(src) => dst.copy_from_slice(src),
            None => dst.fill(T::ZERO),
        }
        at += len;
    });
}

/// [`im2col`] appended to `out`: a fresh patch matrix is written once, not zeroed first
/// (the zeroing was a twentieth of a forward pass on LeNet).
pub fn im2col_extend<T: Float>(shape: &ConvShape, n: usize, x: &[T], out: &mut Vec<T>) {
    out.reserve(n * shape.positions() * shape.window());
    im2col_runs(shape, n, x, |run, len| match run {
        Some(src) => out.extend_from_slice(src),
        None => out.resize(out.len() + len, T::ZERO),
    });
}

/// The patch matrix in row-major order as runs: `put(Some(values), len)` copies a run of
/// the input, `put(None, len)` is padding.
#[inline(always)]
fn im2col_runs<'x, T: Float>(
    shape: &ConvShape,
    n: usize,
    x: &'x [T],
    mut put: impl FnMut(Option<&'x [T]>, usize),
) {
    let (h, w, c, k, p) = (
        shape.height,
        shape.width,
        shape.channels,
        shape.kernel,
        shape.padding,
    );
    let (ho, wo) = (shape.out_height(), shape.out_width());
    let per_in = h * w * c;
    let span = k * c;
    for s in 0..n {
        let xs = &x[s * per_in..(s + 1) * per_in];
        for oy in 0..ho {
            for ox in 0..wo {
                for ky in 0..k {
                    let Some(iy) = (oy + ky).checked_sub(p).filter(|&y| y < h) else {
                        put(None, span);
                        continue;
                    };
                    let line = &xs[iy * w * c..(iy + 1) * w * c];
                    if ox >= p && ox + k - p <= w {
                        let x0 = (ox - p) * c;
                        put(Some(&line[x0..x0 + span]), span);
                    } else {
                        for kx in 0..k {
                            match (ox + kx).checked_sub(p).filter(|&x| x < w) {
                                Some(ix) => put(Some(&line[ix * c..(ix + 1) * c]), c),
                                None => put(None, c),
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds every patch entry of `cols_in` back onto the input
/// position it was copied from (`dx` is n × H × W × C and is accumulated into).
pub fn col2im_add<T: Float>(shape: &ConvShape, n: usize, cols_in: &[T], dx: &mut [T]) {
    col2im_block_add(shape, n, 1, cols_in, dx);
}

/// [`im2col`] of a block of b tangents of one input (an exact HVP for b directions at
/// once, `models/native.rs`): `x` is n × H × W × b × C (direction j's C channels are
/// contiguous), `out` is (n·Hₒ·Wₒ·b) × (k·k·C): row (position, j) is direction j's
/// patch at that position, so one product with the kernel weights serves all b.
pub fn im2col_block<T: Float>(shape: &ConvShape, n: usize, b: usize, x: &[T], out: &mut [T]) {
    if b == 1 {
        return im2col(shape, n, x, out);
    }
    let (c, cols, rows) = (shape.channels, shape.window(), shape.positions());
    let (per_in, per_out) = (shape.height * shape.width * b * c, rows * b * cols);
    out[..n * per_out].fill(T::ZERO);
    for s in 0..n {
        let xs = &x[s * per_in..(s + 1) * per_in];
        let os = &mut out[s * per_out..(s + 1) * per_out];
        shape.for_each_run(|row, pixel, slot| {
            for j in 0..b {
                let from = (pixel * b + j) * c;
                let to = (row * b + j) * cols + slot * c;
                os[to..to + c].copy_from_slice(&xs[from..from + c]);
            }
        });
    }
}

/// The adjoint of [`im2col_block`] (b = 1: of [`im2col`]): `cols_in` is
/// (n·Hₒ·Wₒ·b) × (k·k·C), `dx` n × H × W × b × C, accumulated into.
pub fn col2im_block_add<T: Float>(
    shape: &ConvShape,
    n: usize,
    b: usize,
    cols_in: &[T],
    dx: &mut [T],
) {
    let (c, cols, rows) = (shape.channels, shape.window(), shape.positions());
    let (per_in, per_out) = (shape.height * shape.width * b * c, rows * b * cols);
    for s in 0..n {
        let xs = &mut dx[s * per_in..(s + 1) * per_in];
        let cs = &cols_in[s * per_out..(s + 1) * per_out];
        shape.for_each_run(|row, pixel, slot| {
            for j in 0..b {
                let to = (pixel * b + j) * c;
                let from = (row * b + j) * cols + slot * c;
                for (d, v) in xs[to..to + c].iter_mut().zip(&cs[from..from + c]) {
                    *d += *v;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entry (sample, oy, ox; ky, kx, ch) of the patch matrix by its definition.
    fn by_entry(shape: &ConvShape, n: usize, x: &[f64]) -> Vec<f64> {
        let (h, w, c, k, p) = (
            shape.height,
            shape.width,
            shape.channels,
            shape.kernel,
            shape.padding as isize,
        );
        let mut out = Vec::new();
        for s in 0..n {
            for oy in 0..shape.out_height() {
                for ox in 0..shape.out_width() {
                    for ky in 0..k {
                        for kx in 0..k {
                            for ch in 0..c {
                                let iy = (oy + ky) as isize - p;
                                let ix = (ox + kx) as isize - p;
                                let inside =
                                    (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                                out.push(if inside {
                                    x[((s * h + iy as usize) * w + ix as usize) * c + ch]
                                } else {
                                    0.0
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn patch_matrices_match_their_definition_written_in_place_or_appended() {
        for (padding, kernel, channels) in [(0, 5, 1), (0, 3, 4), (1, 3, 3), (2, 3, 2)] {
            let shape = ConvShape {
                height: 6,
                width: 5,
                channels,
                kernel,
                padding,
            };
            let n = 2;
            let x: Vec<f64> = (0..n * 6 * 5 * channels).map(|i| i as f64 + 0.5).collect();
            let want = by_entry(&shape, n, &x);
            let mut in_place = vec![f64::NAN; want.len()];
            im2col(&shape, n, &x, &mut in_place);
            assert_eq!(in_place, want, "{shape:?}");
            // Appended after what a vector already holds.
            let mut appended = vec![-1.0];
            im2col_extend(&shape, n, &x, &mut appended);
            assert_eq!(appended[0], -1.0);
            assert_eq!(&appended[1..], &want[..], "{shape:?}");
        }
    }
}
