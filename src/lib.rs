//! noiselab: run GD, SGD and Langevin-type dynamics side by side and watch how the
//! *shape* of their noise lets them escape sharp minima.
//!
//! The method as implemented, with the paper's equation numbers, is `docs/METHOD.md`;
//! section numbers in comments (`METHOD.md §2`) refer to it. Data flows one way:
//! config → experiment → [`engine`] (θ ← θ − η·g0 + n) → events → record and dashboard.

pub mod compare;
pub mod config;
pub mod cpu;
pub mod data;
pub mod device;
pub mod dynamics;
pub mod engine;
pub mod error;
pub mod estimators;
pub mod events;
pub mod experiment;
pub mod experiments;
pub mod kernels;
pub mod linalg;
pub mod models;
pub mod numbers;
pub mod objective;
pub mod optim;
pub mod progress;
pub mod record;
pub mod rng;
pub mod runner;
pub mod signals;
pub mod stats;
pub mod sweep;
pub mod tui;

pub use error::{Error, Result};
