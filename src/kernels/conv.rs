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
    let (h, w, c, k, p) = (
        shape.height,
        shape.width,
        shape.channels,
        shape.kernel,
        shape.padding,
    );
    let (ho, wo) = (shape.out_height(), shape.out_width());
    let (per_in, cols) = (h * w * c, shape.window());
    let span = k * c;
    for s in 0..n {
        let xs = &x[s * per_in..(s + 1) * per_in];
        for oy in 0..ho {
            for ox in 0..wo {
                let row = &mut out[((s * ho + oy) * wo + ox) * cols..][..cols];
                for ky in 0..k {
                    let dst = &mut row[ky * span..(ky + 1) * span];
                    let Some(iy) = (oy + ky).checked_sub(p).filter(|&y| y < h) else {
                        dst.fill(T::ZERO);
                        continue;
                    };
                    let line = &xs[iy * w * c..(iy + 1) * w * c];
                    if ox >= p && ox + k - p <= w {
                        let x0 = (ox - p) * c;
                        dst.copy_from_slice(&line[x0..x0 + span]);
                    } else {
                        for kx in 0..k {
                            let d = &mut dst[kx * c..(kx + 1) * c];
                            match (ox + kx).checked_sub(p).filter(|&x| x < w) {
                                Some(ix) => d.copy_from_slice(&line[ix * c..(ix + 1) * c]),
                                None => d.fill(T::ZERO),
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
