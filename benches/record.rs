//! Record write throughput (`cargo bench --bench record`): θ checkpoints of LeNet's size
//! (D = 11,330, with a GLD Hessian noise state: two RNG streams and a top-20 factor) as
//! the recorder writes them (a journal frame synced, then the checkpoint file replaced
//! atomically), and the toy's replicate records as the journal takes them (handed to
//! the OS, synced at the end).

use noiselab::config::NoiseConfig;
use noiselab::dynamics::{DynamicsKind, NoiseModel, NoiseShape};
use noiselab::engine::{Checkpoint, StepRule};
use noiselab::events::Event;
use noiselab::linalg::Eigenpairs;
use noiselab::record::journal::{self, Body};
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let dir = tempfile_dir();
    let d = 11_330;
    let k = 20;
    // A checkpoint as a LeNet GLD Hessian trajectory would write it.
    let spec = NoiseConfig::default().spec(DynamicsKind::GldHessian, 0.07);
    let noise = NoiseModel::new(spec, 0, 0);
    let shape = NoiseShape::LowRank(Eigenpairs {
        values: (0..k).map(|j| 1.0 / (j + 1) as f64).collect(),
        vectors: (0..k)
            .map(|j| (0..d).map(|i| ((i * (j + 1)) as f64).sin()).collect())
            .collect(),
    });
    let state = noise.state().with_factor(shape, 0.01);
    let checkpoint = Checkpoint {
        iteration: 1000,
        theta: (0..d).map(|i| (i as f64).cos()).collect(),
        noise: state,
        step: StepRule::Plain,
        measurements: None,
    };
    let n = if smoke { 5 } else { 200 };
    let path = dir.join("checkpoints.bin");
    let mut w = journal::Writer::create(&path).unwrap();
    let start = Instant::now();
    let mut bytes = 0;
    for i in 0..n {
        bytes += w
            .write(Body::Checkpoint {
                dynamics: DynamicsKind::GldHessian,
                replicate: i % 8,
                iteration: checkpoint.iteration as u64,
            })
            .unwrap();
        w.sync().unwrap();
        noiselab::record::checkpoint::write(&dir, DynamicsKind::GldHessian, i % 8, &checkpoint)
            .unwrap();
        let file = noiselab::record::checkpoint::path(&dir, DynamicsKind::GldHessian, i % 8);
        bytes += std::fs::metadata(file).unwrap().len() as usize;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "θ checkpoints (D = {d}, noise state with a top-{k} factor): {n} × {:.2} MB, each fsynced: {:.1} MB/s ({:.2} ms per checkpoint)",
        bytes as f64 / n as f64 / 1e6,
        bytes as f64 / secs / 1e6,
        secs * 1e3 / n as f64
    );

    // Toy replicate records: what a toy run journals.
    let loaded = noiselab::config::load(
        concat!(env!("CARGO_MANIFEST_DIR"), "/configs/toy2d.toml"),
        &[],
    )
    .unwrap();
    let run =
        noiselab::experiments::toy2d::run_one(&loaded.config, 0, DynamicsKind::GldEig1).unwrap();
    let summary = Arc::new(
        run.summary(
            loaded
                .config
                .settings::<noiselab::experiments::toy2d::Toy2dConfig>()
                .unwrap()
                .success_below,
        ),
    );
    let path = dir.join("replicates.bin");
    let mut w = journal::Writer::create(&path).unwrap();
    let m = if smoke { 10 } else { 2000 };
    let start = Instant::now();
    let mut bytes = 0;
    for _ in 0..m {
        bytes += w
            .write(Body::Event(Event::ReplicateFinished {
                dynamics: DynamicsKind::GldEig1,
                summary: summary.clone(),
            }))
            .unwrap();
        w.flush().unwrap();
    }
    w.sync().unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "toy replicate records: {m} × {:.1} kB, each handed to the OS, synced at the end: {:.1} MB/s ({:.1} µs per record)",
        bytes as f64 / m as f64 / 1e3,
        bytes as f64 / secs / 1e6,
        secs * 1e6 / m as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("noiselab-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
