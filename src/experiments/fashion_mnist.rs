//! LeNet on FashionMNIST with corrupted labels (docs/METHOD.md §4.3, Figs. 3–6): the
//! image-classification protocol of `classification.rs` on 1,200 training images of
//! which 200 carry a wrong label.

use super::classification::{Dataset, ImageConfig, Precision};
use crate::estimators::sharpness::SharpnessEstimator;
use crate::data::{idx, ImageSet, Split};
use crate::models::lenet;
use crate::models::network::Architecture;
use crate::Result;
use std::marker::PhantomData;
use std::path::Path;

/// The FashionMNIST dataset with LeNet.
#[derive(Clone, Debug, PartialEq)]
pub struct FashionMnist;

/// The `[fashion_mnist]` section.
pub type FashionMnistConfig = ImageConfig<FashionMnist>;

impl Dataset for FashionMnist {
    const SECTION: &'static str = "fashion_mnist";
    const TRAINING_SET: usize = 60_000;
    fn defaults() -> ImageConfig<Self> {
        ImageConfig {
            data_dir: "/usr/share/datasets/fashion-mnist".into(),
            train_samples: 1200,
            corrupted: 200,
            test_samples: 0,
            gd_eta: 0.1,
            gd_iterations: 3000,
            gd_metrics_every: 500,
            theta_gd: None,
            eta: 0.07,
            iterations: 15_000,
            metrics_every: 500,
            sharpness_samples: 1000,
            sharpness_delta: 0.01,
            sharpness_abs: false,
            sharpness_estimator: SharpnessEstimator::PerBatch,
            sharpness_batch_size: 20,
            curvature_metrics: true,
            trace_probes: 20,
            hessian_spectrum: 400,
            precision: Precision::F32,
            dataset: PhantomData,
        }
    }
    const PARAMETERS: usize = lenet::PARAMETERS;
    fn architecture() -> Result<Architecture> {
        lenet::architecture()
    }
    fn read(dir: &Path, split: Split, limit: Option<usize>) -> Result<(ImageSet, String)> {
        Ok((
            idx::read_split(dir, split, limit)?,
            dir.display().to_string(),
        ))
    }
}
