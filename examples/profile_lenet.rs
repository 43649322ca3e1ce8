//! Profiling driver (not a benchmark): repeats one LeNet workload on 1,200 real images so
//! `perf record` / `valgrind --tool=callgrind` can attribute its time.
//!   cargo build --release --example profile_lenet
//!   perf record -g target/release/examples/profile_lenet fwd_bwd_f32 20
use noiselab::data::idx;
use noiselab::models::lenet;
use noiselab::models::native::NativeClassifier;
use noiselab::objective::Objective;
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map_or("fwd_bwd_f32", String::as_str);
    let reps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = idx::read_split(
        &root.join("../shared/data/fashion-mnist-subset"),
        idx::Split::Train,
        Some(1200),
    )
    .unwrap();
    let arch = lenet::architecture().unwrap();
    let theta =
        arch.init_theta(&mut <rand_chacha::ChaCha12Rng as rand::SeedableRng>::seed_from_u64(0));
    let m32 = NativeClassifier::<f32>::new(arch.clone(), &data).unwrap();
    let all: Vec<usize> = (0..1200).collect();
    let t = std::time::Instant::now();
    for _ in 0..reps {
        match what {
            "fwd_bwd_f32" => drop(m32.loss_and_gradient(&theta).unwrap()),
            "loss_f32" => drop(m32.loss(&theta).unwrap()),
            "per_sample_f32" => drop(m32.per_sample_gradients(&theta).unwrap()),
            "minibatch_f32" => drop(m32.batch_gradients(&theta, &all, 20).unwrap()),
            "hvp_f32" => drop(m32.hvp(&theta, &theta).unwrap()),
            other => panic!("unknown workload {other}"),
        }
    }
    println!(
        "{what}: {:.1} ms per call",
        t.elapsed().as_secs_f64() * 1e3 / reps as f64
    );
}
