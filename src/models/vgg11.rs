//! VGG11 without batch norm or dropout for CIFAR-10 (METHOD.md §4.4), D = 9,750,922:
//! 3×3 convolutions (padding 1) of widths 64, M, 128, M, 256, 256, M, 512, 512, M,
//! 512, 512, M (M = maxpool 2, ReLU after each convolution), then
//! Linear 512→512, ReLU, Linear 512→512, ReLU, Linear 512→10.
//!
//! Parameter names follow torchvision's `features.<i>` / `classifier.<i>` numbering of
//! the same layer sequence, so θ order is PyTorch's.

use super::network::{Architecture, Layer};
use crate::Result;

pub const PARAMETERS: usize = 9_750_922;

/// Convolution widths, `None` = 2×2 max pooling.
const FEATURES: [Option<usize>; 13] = [
    Some(64),
    None,
    Some(128),
    None,
    Some(256),
    Some(256),
    None,
    Some(512),
    Some(512),
    None,
    Some(512),
    Some(512),
    None,
];

const FEATURE_NAMES: [&str; 8] = [
    "features.0",
    "features.3",
    "features.6",
    "features.8",
    "features.11",
    "features.13",
    "features.16",
    "features.18",
];

pub fn architecture() -> Result<Architecture> {
    let mut layers = Vec::new();
    let mut channels = 3;
    let mut convs = FEATURE_NAMES.iter();
    for width in FEATURES {
        match width {
            Some(out) => {
                layers.push(Layer::Conv2d {
                    name: convs.next().expect("one name per convolution"),
                    in_channels: channels,
                    out_channels: out,
                    kernel: 3,
                    padding: 1,
                });
                layers.push(Layer::Relu);
                channels = out;
            }
            None => layers.push(Layer::MaxPool2),
        }
    }
    layers.push(Layer::Flatten);
    for (name, inputs, outputs, relu) in [
        ("classifier.0", 512, 512, true),
        ("classifier.2", 512, 512, true),
        ("classifier.4", 512, 10, false),
    ] {
        layers.push(Layer::Linear {
            name,
            inputs,
            outputs,
        });
        if relu {
            layers.push(Layer::Relu);
        }
    }
    let arch = Architecture::new("vgg11", (3, 32, 32), 10, layers)?;
    assert_eq!(arch.dim(), PARAMETERS, "VGG11 must have METHOD.md §4.4's D");
    Ok(arch)
}
