//! The eight dynamics of METHOD.md §2 (Table 1). They share one update
//! θ ← θ − η·g0 + n (see [`crate::engine`]) and differ only in their noise n, which
//! [`NoiseModel`] produces from one shape ([`NoiseShape`]) and one scale rule ([`ScaleRule`]).

mod kind;
mod model;
mod shape;

pub use kind::DynamicsKind;
pub use model::{
    CovarianceSource, Magnitude, NoiseModel, NoiseSpec, NoiseState, ScaleRule, ShapeSource, Units,
};
pub use shape::NoiseShape;
