//! Models, one file each, all behind the [`crate::objective::Objective`] seam.

pub mod classifier;
pub mod lenet;
pub mod native;
pub mod network;
pub mod one_hidden;
pub mod quadratic;
pub mod toy2d;
pub mod vgg11;
