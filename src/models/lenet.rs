//! The LeNet-like network of the FashionMNIST experiment (METHOD.md §4.3), D = 11,330:
//! conv1 1→10 5×5 → maxpool 2 → ReLU → conv2 10→10 5×5 → maxpool 2 → ReLU →
//! fc1 160→50 → ReLU → fc2 50→10.

use super::network::{Architecture, Layer};
use crate::Result;

/// 260 + 2,510 + 8,050 + 510 (METHOD.md §4.3).
pub const PARAMETERS: usize = 11_330;

pub fn architecture() -> Result<Architecture> {
    let arch = Architecture::new(
        "lenet",
        (1, 28, 28),
        10,
        vec![
            Layer::Conv2d {
                name: "conv1",
                in_channels: 1,
                out_channels: 10,
                kernel: 5,
                padding: 0,
            },
            Layer::MaxPool2,
            Layer::Relu,
            Layer::Conv2d {
                name: "conv2",
                in_channels: 10,
                out_channels: 10,
                kernel: 5,
                padding: 0,
            },
            Layer::MaxPool2,
            Layer::Relu,
            Layer::Flatten,
            Layer::Linear {
                name: "fc1",
                inputs: 160,
                outputs: 50,
            },
            Layer::Relu,
            Layer::Linear {
                name: "fc2",
                inputs: 50,
                outputs: 10,
            },
        ],
    )?;
    assert_eq!(arch.dim(), PARAMETERS, "LeNet must have METHOD.md §4.3's D");
    Ok(arch)
}
