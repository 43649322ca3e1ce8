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

    /// Calls `f(patch_row, input_offset, column)` for every in-bounds window row of
    /// every output position of one sample: `channels` entries are contiguous at both.
    #[inline]
    fn for_each_run(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (ho, wo, k, p, c) = (
            self.out_height(),
            self.out_width(),
            self.kernel,
            self.padding,
            self.channels,
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
                        f(row, (iy * self.width + ix) * c, (ky * k + kx) * c);
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
    let (per_in, cols, rows) = (
        shape.height * shape.width * shape.channels,
        shape.window(),
        shape.positions(),
    );
    let c = shape.channels;
    for s in 0..n {
        let xs = &mut dx[s * per_in..(s + 1) * per_in];
        let cs = &cols_in[s * rows * cols..(s + 1) * rows * cols];
        shape.for_each_run(|row, at, col| {
            for (d, v) in xs[at..at + c]
                .iter_mut()
                .zip(&cs[row * cols + col..row * cols + col + c])
            {
                *d += *v;
            }
        });
    }
}
