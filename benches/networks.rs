//! LeNet workloads of the paper on 1,200 real FashionMNIST images (SPEC §4.3), timed for
//! the side-by-side comparison with PyTorch (`scripts/bench_networks.sh` runs this and
//! `scripts/bench_torch.py` in one go and prints the table of docs/BENCHMARKS.md).
//!
//! `cargo bench --bench networks` prints one line per workload:
//! `<name>\t<median seconds>\t<detail>`. θ is the PyTorch-initialised θ of the test
//! fixture, so both sides compute on the same point.

use candle_core::{DType, Device};
use noiselab::data::idx;
use noiselab::estimators::lanczos::{top_eigenpairs, LanczosOptions};
use noiselab::models::classifier::Classifier;
use noiselab::models::lenet;
use noiselab::models::network::Network;
use noiselab::objective::Objective;
use std::path::Path;
use std::time::Instant;

fn median(mut f: impl FnMut() -> String, repeats: usize) -> (f64, String) {
    let mut detail = String::new();
    let mut times: Vec<f64> = (0..repeats)
        .map(|_| {
            let t = Instant::now();
            detail = f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[repeats / 2], detail)
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let n = if smoke { 40 } else { 1200 };
    let repeats = if smoke { 1 } else { 5 };
    let data = idx::read_split(
        &root.join("../shared/data/fashion-mnist-subset"),
        idx::Split::Train,
        Some(n),
    )
    .expect("FashionMNIST subset in ../shared/data");
    let bytes = std::fs::read(root.join("tests/fixtures/lenet_reference.f64")).unwrap();
    let theta: Vec<f64> = bytes[..8 * lenet::PARAMETERS]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let v: Vec<f64> = bytes[8 * lenet::PARAMETERS..16 * lenet::PARAMETERS]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let model = |dtype| {
        Classifier::new(
            Network::new(lenet::architecture().unwrap(), dtype, Device::Cpu).unwrap(),
            &data,
        )
        .unwrap()
    };
    let (f32m, f64m) = (model(DType::F32), model(DType::F64));
    println!(
        "# noiselab LeNet, {n} images, {} rayon threads",
        rayon::current_num_threads()
    );
    let all: Vec<usize> = (0..n).collect();
    let mut rows: Vec<(&str, f64, String)> = Vec::new();
    for (name, m) in [("fwd_bwd_f32", &f32m), ("fwd_bwd_f64", &f64m)] {
        let (t, d) = median(
            || format!("loss {:.6}", m.loss_and_gradient(&theta).unwrap().0),
            repeats,
        );
        rows.push((name, t, d));
    }
    let (t, d) = median(
        || {
            let g = f32m.per_sample_gradients(&theta).unwrap();
            format!("{} × {}", g.rows(), g.dim())
        },
        repeats,
    );
    rows.push(("per_sample_f32", t, d));
    let (t, d) = median(
        || {
            let g = f32m.batch_gradients(&theta, &all, 20).unwrap();
            format!("{} × {}", g.rows(), g.dim())
        },
        repeats,
    );
    rows.push(("minibatch_60x20_f32", t, d));
    for (name, m) in [("hvp_f32", &f32m), ("hvp_f64", &f64m)] {
        let (t, d) = median(
            || {
                format!(
                    "‖Hv‖ {:.6e}",
                    noiselab::linalg::norm_sq(&m.hvp(&theta, &v).unwrap()).sqrt()
                )
            },
            repeats,
        );
        rows.push((name, t, d));
    }
    let (t, d) = median(
        || {
            let r = top_eigenpairs(
                f64m.dim(),
                |x| f64m.hvp(&theta, x),
                &LanczosOptions::new(20),
                None,
            )
            .unwrap();
            format!(
                "{} HVPs, λ1 {:.6e}, λ20 {:.6e}",
                r.products, r.pairs.values[0], r.pairs.values[19]
            )
        },
        1,
    );
    rows.push(("top20_eig_f64", t, d));
    for (name, t, d) in rows {
        println!("{name}\t{t:.4}\t{d}");
    }
}
