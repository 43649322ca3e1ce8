//! VGG11 on CIFAR-10 (docs/METHOD.md §4.4, Fig. 7): the image-classification protocol
//! of `classification.rs` on the standard (clean) training set, sized for a GPU.

use super::classification::{Dataset, ImageConfig, Precision};
use crate::estimators::sharpness::SharpnessEstimator;
use crate::data::{cifar, ImageSet, Split};
use crate::models::network::Architecture;
use crate::models::vgg11;
use crate::Result;
use std::marker::PhantomData;
use std::path::Path;

/// The CIFAR-10 dataset with VGG11.
#[derive(Clone, Debug, PartialEq)]
pub struct Cifar10;

/// The `[cifar10]` section.
pub type Cifar10Config = ImageConfig<Cifar10>;

impl Dataset for Cifar10 {
    const SECTION: &'static str = "cifar10";
    const TRAINING_SET: usize = 50_000;
    fn defaults() -> ImageConfig<Self> {
        ImageConfig {
            // Where scripts/fetch-data.sh cifar puts the batches.
            data_dir: "data".into(),
            train_samples: 0,
            corrupted: 0,
            test_samples: 0,
            gd_eta: 0.05,
            gd_iterations: 3000,
            gd_metrics_every: 500,
            theta_gd: None,
            eta: 0.05,
            iterations: 15_000,
            metrics_every: 500,
            sharpness_samples: 100,
            sharpness_delta: 0.01,
            sharpness_abs: false,
            sharpness_estimator: SharpnessEstimator::ControlVariate,
            sharpness_batch_size: 100,
            curvature_metrics: false,
            trace_probes: 20,
            hessian_spectrum: 0,
            precision: Precision::F32,
            dataset: PhantomData,
        }
    }
    const PARAMETERS: usize = vgg11::PARAMETERS;
    fn architecture() -> Result<Architecture> {
        vgg11::architecture()
    }
    fn read(dir: &Path, split: Split, limit: Option<usize>) -> Result<(ImageSet, String)> {
        let (set, files) = cifar::read_split(dir, split, limit)?;
        let mut names: Vec<String> = files
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        if split == Split::Train && files.len() < cifar::TRAINING_BATCHES.len() {
            names.push(format!(
                "the official training set has all {} batches",
                cifar::TRAINING_BATCHES.len()
            ));
        }
        Ok((set, format!("{} ({})", dir.display(), names.join(", "))))
    }
}
