//! Experiment protocols (SPEC §4), one file each.

pub mod toy2d;
