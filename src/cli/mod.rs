//! Commands of the `noiselab` binary that have grown beyond a few lines: the sweep
//! (create, status, resume, and the point a worker runs) and compare.

pub mod sweep;
