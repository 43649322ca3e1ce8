//! Feed-forward image classifiers described layer by layer (LeNet, VGG11), computed with
//! candle in f32 or f64 behind the flat-θ view of the [`Objective`](crate::objective)
//! seam.
//!
//! θ order is PyTorch's `named_parameters()`: for every layer with parameters, in order,
//! its weight (conv: out × in × k × k; linear: out × in; row-major) then its bias.
//!
//! Two facts of candle 0.11 shape this file (both measured, see the tests):
//! - `max_pool2d`'s backward scales the gradient by 1/k², and `max`'s backward sends the
//!   gradient to every tied entry; 2×2 pooling is therefore [`max_pool2`]: windows as a
//!   last axis, times the one-hot mask of their first maximum (PyTorch's choice), summed.
//! - double backprop only works when `CANDLE_GRAD_DO_NOT_DETACH=1` was in the
//!   environment when candle first ran in the thread; [`second_order_available`] checks
//!   that it really works in the calling thread.

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use rand::Rng;
use std::cell::Cell;

pub(crate) fn candle(e: candle_core::Error) -> Error {
    Error::Numerics(format!("candle: {e}"))
}

/// One layer. Convolutions have stride 1 and zero padding; pooling is 2×2, stride 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    Conv2d {
        name: &'static str,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        padding: usize,
    },
    MaxPool2,
    Relu,
    Flatten,
    Linear {
        name: &'static str,
        inputs: usize,
        outputs: usize,
    },
}

/// Activation shape between layers, per sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Image(usize, usize, usize),
    Flat(usize),
}

impl Shape {
    pub fn elements(self) -> usize {
        match self {
            Shape::Image(c, h, w) => c * h * w,
            Shape::Flat(n) => n,
        }
    }
}

/// One parameter tensor inside θ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parameter {
    /// PyTorch's name, e.g. `conv1.weight`.
    pub name: String,
    pub shape: Vec<usize>,
    /// Position of its first entry in θ.
    pub offset: usize,
    /// Inputs per output unit: PyTorch's default initialisation draws weight and bias
    /// uniformly in ±1/√fan_in.
    pub fan_in: usize,
}

impl Parameter {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A network's layers and input; validated on construction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Architecture {
    pub name: &'static str,
    /// (channels, height, width)
    pub input: (usize, usize, usize),
    pub classes: usize,
    pub layers: Vec<Layer>,
    /// Output shape of every layer.
    shapes: Vec<Shape>,
    parameters: Vec<Parameter>,
}

impl Architecture {
    pub fn new(
        name: &'static str,
        input: (usize, usize, usize),
        classes: usize,
        layers: Vec<Layer>,
    ) -> Result<Self> {
        let bad = |i: usize, what: String| {
            Error::Numerics(format!("{name}: layer {i} ({:?}): {what}", layers[i]))
        };
        let mut shape = Shape::Image(input.0, input.1, input.2);
        let mut shapes = Vec::with_capacity(layers.len());
        let mut parameters = Vec::new();
        let mut offset = 0;
        for (i, layer) in layers.iter().enumerate() {
            shape = match (*layer, shape) {
                (
                    Layer::Conv2d {
                        name,
                        in_channels,
                        out_channels,
                        kernel,
                        padding,
                    },
                    Shape::Image(c, h, w),
                ) => {
                    if c != in_channels || h + 2 * padding < kernel || w + 2 * padding < kernel {
                        return Err(bad(i, format!("input is {c} × {h} × {w}")));
                    }
                    let fan_in = in_channels * kernel * kernel;
                    for (suffix, shape) in [
                        ("weight", vec![out_channels, in_channels, kernel, kernel]),
                        ("bias", vec![out_channels]),
                    ] {
                        parameters.push(Parameter {
                            name: format!("{name}.{suffix}"),
                            shape,
                            offset,
                            fan_in,
                        });
                        offset += parameters.last().map_or(0, Parameter::len);
                    }
                    Shape::Image(
                        out_channels,
                        h + 2 * padding - kernel + 1,
                        w + 2 * padding - kernel + 1,
                    )
                }
                (Layer::MaxPool2, Shape::Image(c, h, w)) => {
                    if h % 2 != 0 || w % 2 != 0 {
                        return Err(bad(i, format!("2×2 pooling of an odd size {h} × {w}")));
                    }
                    Shape::Image(c, h / 2, w / 2)
                }
                (Layer::Relu, s) => s,
                (Layer::Flatten, s) => Shape::Flat(s.elements()),
                (
                    Layer::Linear {
                        name,
                        inputs,
                        outputs,
                    },
                    Shape::Flat(n),
                ) => {
                    if n != inputs {
                        return Err(bad(i, format!("input has {n} features")));
                    }
                    for (suffix, shape) in
                        [("weight", vec![outputs, inputs]), ("bias", vec![outputs])]
                    {
                        parameters.push(Parameter {
                            name: format!("{name}.{suffix}"),
                            shape,
                            offset,
                            fan_in: inputs,
                        });
                        offset += parameters.last().map_or(0, Parameter::len);
                    }
                    Shape::Flat(outputs)
                }
                (_, s) => return Err(bad(i, format!("does not take an input of shape {s:?}"))),
            };
            shapes.push(shape);
        }
        if shape != Shape::Flat(classes) {
            return Err(Error::Numerics(format!(
                "{name}: the last layer gives {shape:?}, expected {classes} logits"
            )));
        }
        Ok(Architecture {
            name,
            input,
            classes,
            layers,
            shapes,
            parameters,
        })
    }

    /// Number of parameters D.
    pub fn dim(&self) -> usize {
        self.parameters.iter().map(Parameter::len).sum()
    }

    /// The parameter tensors in θ order.
    pub fn parameters(&self) -> &[Parameter] {
        &self.parameters
    }

    /// Output shape of every layer, per sample.
    pub fn shapes(&self) -> &[Shape] {
        &self.shapes
    }

    /// Activation values per sample over all layers: what one sample costs in memory.
    pub fn activations_per_sample(&self) -> usize {
        self.shapes.iter().map(|s| s.elements()).sum()
    }

    /// PyTorch's default initialisation of `Conv2d` and `Linear` (kaiming-uniform with
    /// a = √5): weight and bias uniform in ±1/√fan_in.
    pub fn init_theta<R: Rng>(&self, rng: &mut R) -> Vec<f64> {
        let mut theta = Vec::with_capacity(self.dim());
        for p in &self.parameters {
            let bound = 1.0 / (p.fan_in as f64).sqrt();
            theta.extend((0..p.len()).map(|_| rng.random_range(-bound..bound)));
        }
        theta
    }
}

/// What [`Network::forward`] keeps for the per-sample gradients: for every layer with
/// parameters, its input activations.
pub(crate) struct Taps {
    pub inputs: Vec<Tensor>,
}

/// An [`Architecture`] on a device, in a floating-point type.
#[derive(Clone, Debug)]
pub struct Network {
    pub arch: Architecture,
    pub dtype: DType,
    pub device: Device,
}

impl Network {
    pub fn new(arch: Architecture, dtype: DType, device: Device) -> Result<Self> {
        if !matches!(dtype, DType::F32 | DType::F64) {
            return Err(Error::Numerics(format!(
                "{}: compute type {dtype:?} is not supported, expected f32 or f64",
                arch.name
            )));
        }
        Ok(Network {
            arch,
            dtype,
            device,
        })
    }

    /// θ (or any vector in θ's layout) split into the parameter tensors, in the
    /// network's dtype.
    pub(crate) fn tensors(&self, theta: &[f64]) -> Result<Vec<Tensor>> {
        crate::objective::check_len(self.arch.name, "θ", theta.len(), self.arch.dim())?;
        self.arch
            .parameters
            .iter()
            .map(|p| {
                Tensor::from_slice(
                    &theta[p.offset..p.offset + p.len()],
                    p.shape.as_slice(),
                    &self.device,
                )
                .and_then(|t| t.to_dtype(self.dtype))
                .map_err(candle)
            })
            .collect()
    }

    /// θ split into trainable leaves.
    pub(crate) fn vars(&self, theta: &[f64]) -> Result<Vec<Var>> {
        self.tensors(theta)?
            .iter()
            .map(|t| Var::from_tensor(t).map_err(candle))
            .collect()
    }

    /// Zero leaves added to the pre-activations of every layer with parameters, for `n`
    /// samples: the gradient of Σ_i ℓ_i at a probe is δ_i = ∂ℓ_i/∂z_i for every sample
    /// at once (candle keeps the gradients of leaves only).
    pub(crate) fn probes(&self, n: usize) -> Result<Vec<Var>> {
        self.arch
            .layers
            .iter()
            .zip(&self.arch.shapes)
            .filter(|(l, _)| matches!(l, Layer::Conv2d { .. } | Layer::Linear { .. }))
            .map(|(_, s)| {
                let dims: Vec<usize> = match *s {
                    Shape::Image(c, h, w) => vec![n, c, h, w],
                    Shape::Flat(f) => vec![n, f],
                };
                Var::zeros(dims, self.dtype, &self.device).map_err(candle)
            })
            .collect()
    }

    /// Logits of the images `x` (n × C × H × W). `params` are weight, bias, weight, … in
    /// θ order; `probes`, when given, are added to each layer's pre-activations.
    pub(crate) fn forward(
        &self,
        params: &[Tensor],
        x: &Tensor,
        probes: Option<&[Var]>,
    ) -> candle_core::Result<(Tensor, Taps)> {
        let mut h = x.clone();
        let mut inputs = Vec::new();
        let mut k = 0;
        for layer in &self.arch.layers {
            h = match *layer {
                Layer::Conv2d { padding, .. } => {
                    inputs.push(h.clone());
                    let (w, b) = (&params[2 * k], &params[2 * k + 1]);
                    let z = h.conv2d(w, padding, 1, 1, 1)?.broadcast_add(&b.reshape((
                        1,
                        b.dim(0)?,
                        1,
                        1,
                    ))?)?;
                    let z = match probes {
                        Some(p) => z.add(p[k].as_tensor())?,
                        None => z,
                    };
                    k += 1;
                    z
                }
                Layer::Linear { .. } => {
                    inputs.push(h.clone());
                    let (w, b) = (&params[2 * k], &params[2 * k + 1]);
                    let z = h.matmul(&w.t()?)?.broadcast_add(b)?;
                    let z = match probes {
                        Some(p) => z.add(p[k].as_tensor())?,
                        None => z,
                    };
                    k += 1;
                    z
                }
                Layer::MaxPool2 => max_pool2(&h)?,
                Layer::Relu => h.relu()?,
                Layer::Flatten => h.flatten_from(1)?,
            };
        }
        Ok((h, Taps { inputs }))
    }
}

/// 2×2 max pooling, stride 2, whose gradient goes to the *first* maximum of each window
/// in row-major order, as PyTorch's: windows of equal values are common (a zero image
/// background gives conv outputs equal to the bias), and `max`'s backward would send the
/// gradient to every tied entry. The one-hot mask is a constant, so the result is a
/// product and a sum, differentiable twice.
fn max_pool2(x: &Tensor) -> candle_core::Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let windows = x
        .reshape((n, c, h / 2, 2, w / 2, 2))?
        .permute((0, 1, 2, 4, 3, 5))?
        .contiguous()?
        .reshape((n, c, h / 2, w / 2, 4))?;
    let first = windows.argmax_keepdim(4)?;
    let slots = Tensor::arange(0u32, 4, x.device())?.reshape((1, 1, 1, 1, 4))?;
    let mask = first.broadcast_eq(&slots)?.to_dtype(x.dtype())?;
    windows.mul(&mask)?.sum(4)
}

/// Per-sample cross-entropy losses ℓ_i = −log softmax(z_i)[y_i], from one-hot labels
/// (a product, so it differentiates twice without gather/scatter).
pub(crate) fn cross_entropy(logits: &Tensor, one_hot: &Tensor) -> candle_core::Result<Tensor> {
    // The shift by the row maximum leaves log-softmax unchanged, so it is detached.
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let log_sum = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let log_softmax = shifted.broadcast_sub(&log_sum)?;
    log_softmax.mul(one_hot)?.sum(D::Minus1)?.neg()
}

thread_local! {
    static SECOND_ORDER: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Whether candle's double backprop works in this thread: d²(x³)/dx² at x = 2 must be 12.
/// Without `CANDLE_GRAD_DO_NOT_DETACH=1` set before candle first ran here, candle
/// detaches gradients and the second derivative comes out missing.
pub fn second_order_available() -> bool {
    SECOND_ORDER.with(|cell| {
        if let Some(ok) = cell.get() {
            return ok;
        }
        let check = || -> candle_core::Result<bool> {
            let x = Var::new(2.0f64, &Device::Cpu)?;
            let y = x.as_tensor().powf(3.0)?;
            let Some(g) = y.backward()?.get(x.as_tensor()).cloned() else {
                return Ok(false);
            };
            let Some(gg) = g.backward()?.get(x.as_tensor()).cloned() else {
                return Ok(false);
            };
            Ok((gg.to_scalar::<f64>()? - 12.0).abs() < 1e-9)
        };
        let ok = check().unwrap_or(false);
        cell.set(Some(ok));
        ok
    })
}

/// The error exact HVPs give when double backprop is not available.
pub(crate) fn second_order_error() -> Error {
    Error::Numerics(
        "exact Hessian-vector products need candle's double backprop: set \
         CANDLE_GRAD_DO_NOT_DETACH=1 in the environment before the program starts \
         (the noiselab binary and `cargo test` do this)"
            .into(),
    )
}

/// Patches of every output position of a stride-1 convolution: `x` (n × C × H × W) →
/// n × (H_o·W_o) × (C·k·k), columns in PyTorch's weight order (channel, row, column).
pub(crate) fn im2col(x: &Tensor, kernel: usize, padding: usize) -> candle_core::Result<Tensor> {
    fn fill<T: candle_core::WithDType>(
        data: &[T],
        (n, c, h, w): (usize, usize, usize, usize),
        kernel: usize,
        padding: usize,
    ) -> Vec<T> {
        let ho = h + 2 * padding - kernel + 1;
        let wo = w + 2 * padding - kernel + 1;
        let cols = c * kernel * kernel;
        let mut out = vec![T::from_f64(0.0); n * ho * wo * cols];
        for s in 0..n {
            for oy in 0..ho {
                for ox in 0..wo {
                    let row = &mut out[((s * ho + oy) * wo + ox) * cols..][..cols];
                    for ci in 0..c {
                        let plane = &data[(s * c + ci) * h * w..][..h * w];
                        for ky in 0..kernel {
                            let Some(iy) = (oy + ky).checked_sub(padding).filter(|&y| y < h) else {
                                continue;
                            };
                            for kx in 0..kernel {
                                if let Some(ix) = (ox + kx).checked_sub(padding).filter(|&x| x < w)
                                {
                                    row[(ci * kernel + ky) * kernel + kx] = plane[iy * w + ix];
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }
    let dims = x.dims4()?;
    let (n, _, h, w) = dims;
    let positions = (h + 2 * padding - kernel + 1) * (w + 2 * padding - kernel + 1);
    let cols = dims.1 * kernel * kernel;
    let flat = x.flatten_all()?;
    match x.dtype() {
        DType::F32 => Tensor::from_vec(
            fill(&flat.to_vec1::<f32>()?, dims, kernel, padding),
            (n, positions, cols),
            x.device(),
        ),
        DType::F64 => Tensor::from_vec(
            fill(&flat.to_vec1::<f64>()?, dims, kernel, padding),
            (n, positions, cols),
            x.device(),
        ),
        other => candle_core::bail!("im2col: unsupported dtype {other:?}"),
    }
}
