//! Commands of the `noiselab` binary that have grown beyond a few lines: the sweep
//! (create, status, resume, and the point a worker runs) and the device check.

pub mod device_check;

pub mod sweep;
