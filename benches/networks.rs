//! LeNet workloads of the paper on 1,200 real FashionMNIST images (METHOD.md §4.3), timed for
//! the side-by-side comparison with PyTorch (`scripts/bench_networks.sh` runs this and
//! `scripts/bench_torch.py` in one go and prints the table of docs/BENCHMARKS.md).
//!
//! `cargo bench --bench networks [-- --kernels-only]` prints one line per workload and
//! noiselab path (`kernels:` the hand-written CPU kernels, `candle:` the candle graph):
//! `<path>:<name>\t<median seconds>\t<detail>`. θ is the PyTorch-initialised θ of the test
//! fixture, so both sides compute on the same point.

use candle_core::{DType, Device};
use noiselab::data::idx;
use noiselab::estimators::lanczos::{top_eigenpairs, LanczosOptions};
use noiselab::estimators::sharpness::{expected_sharpness, SharpnessEstimator, SharpnessOptions};
use noiselab::models::classifier::Classifier;
use noiselab::models::lenet;
use noiselab::models::native::NativeClassifier;
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
    let candle_model = |dtype| {
        Classifier::new(
            Network::new(lenet::architecture().unwrap(), dtype, Device::Cpu).unwrap(),
            &data,
        )
        .unwrap()
    };
    let native32 = NativeClassifier::<f32>::new(lenet::architecture().unwrap(), &data).unwrap();
    let native64 = NativeClassifier::<f64>::new(lenet::architecture().unwrap(), &data).unwrap();
    let with_candle = !std::env::args().any(|a| a == "--kernels-only");
    println!(
        "# noiselab LeNet, {n} images, {} rayon threads",
        rayon::current_num_threads()
    );
    let all: Vec<usize> = (0..n).collect();
    let mut rows: Vec<(String, f64, String)> = Vec::new();
    let (c32, c64);
    let mut paths: Vec<(&str, &dyn Objective, &dyn Objective)> =
        vec![("kernels", &native32, &native64)];
    if with_candle {
        c32 = candle_model(DType::F32);
        c64 = candle_model(DType::F64);
        paths.push(("candle", &c32, &c64));
    }
    for (path, m32, m64) in paths {
        let mut add =
            |name: &str, (t, d): (f64, String)| rows.push((format!("{path}:{name}"), t, d));
        for (name, m) in [("fwd_bwd_f32", m32), ("fwd_bwd_f64", m64)] {
            add(
                name,
                median(
                    || format!("loss {:.6}", m.loss_and_gradient(&theta).unwrap().0),
                    repeats,
                ),
            );
        }
        add(
            "per_sample_f32",
            median(
                || {
                    let g = m32.per_sample_gradients(&theta).unwrap();
                    format!("{} × {}", g.rows(), g.dim())
                },
                repeats,
            ),
        );
        add(
            "minibatch_60x20_f32",
            median(
                || {
                    let g = m32.batch_gradients(&theta, &all, 20).unwrap();
                    format!("{} × {}", g.rows(), g.dim())
                },
                repeats,
            ),
        );
        for (name, m) in [("hvp_f32", m32), ("hvp_f64", m64)] {
            add(
                name,
                median(
                    || {
                        format!(
                            "‖Hv‖ {:.6e}",
                            noiselab::linalg::norm_sq(&m.hvp(&theta, &v).unwrap()).sqrt()
                        )
                    },
                    repeats,
                ),
            );
        }
        if path == "candle" {
            // Minutes per run on candle (see the issue 5 baseline in docs/BENCHMARKS.md).
            continue;
        }
        for (name, m) in [("top20_eig_f32", m32), ("top20_eig_f64", m64)] {
            add(
                name,
                median(
                    || {
                        let options = LanczosOptions {
                            tol: m.hvp_tolerance(),
                            ..LanczosOptions::new(20)
                        };
                        let r =
                            top_eigenpairs(m.dim(), |x| m.hvp(&theta, x), &options, None).unwrap();
                        format!(
                            "{} HVPs, λ1 {:.6e}, λ20 {:.6e}",
                            r.products, r.pairs.values[0], r.pairs.values[19]
                        )
                    },
                    1,
                ),
            );
        }
        let samples = if smoke { 10 } else { 1000 };
        add(
            "sharpness_m1000_f32",
            median(
                || {
                    // The plain estimator, as scripts/bench_torch.py computes it.
                    let options = SharpnessOptions {
                        delta: 0.01,
                        samples,
                        absolute: false,
                        estimator: SharpnessEstimator::Plain,
                        batch_size: 1,
                        seed: 0,
                    };
                    let e = expected_sharpness(m32, &theta, None, &options).unwrap();
                    format!("{samples} samples, {:.4e} ± {:.1e}", e.value, e.stderr)
                },
                1,
            ),
        );
    }
    for (name, t, d) in rows {
        println!("{name}\t{t:.4}\t{d}");
    }
}
