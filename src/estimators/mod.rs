//! Estimators shared by the dynamics and the metrics: never re-derived per dynamics.

pub mod covariance;
pub mod hessian;
pub mod indicators;
pub mod lanczos;
pub mod lobpcg;
pub mod point;
pub mod sharpness;
pub mod trace;

pub use point::AtPoint;
