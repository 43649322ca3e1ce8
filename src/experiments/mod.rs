//! Experiment protocols (SPEC §4), one file each.

pub mod one_hidden;
pub mod toy2d;
