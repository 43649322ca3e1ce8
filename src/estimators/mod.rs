//! Estimators shared by the dynamics and the metrics: never re-derived per dynamics.

pub mod covariance;
pub mod hessian;
pub mod point;

pub use point::AtPoint;
