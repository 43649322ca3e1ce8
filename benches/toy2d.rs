//! Toy benchmark (issue goal: 100 seeds × 6 dynamics × 500 iterations ≤ 1 s on one core).
//! `cargo bench --bench toy2d` — prints min / median wall time of the whole experiment
//! (data, dynamics, metrics every iteration; no file output) on 1 thread and on all cores.

use noiselab::config;
use std::time::Instant;

fn main() {
    // `cargo test --all-targets` runs this too (without `--bench`): a quick smoke run
    // keeps the bench compiling and working without spending test time on timing.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let repeats = if smoke { 1 } else { 7 };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("toy2d: 100 seeds × 6 dynamics × 500 iterations, metrics every iteration");
    for threads in [1, cores] {
        let loaded = config::load(
            concat!(env!("CARGO_MANIFEST_DIR"), "/configs/toy2d.toml"),
            &[
                format!("threads={threads}"),
                format!("toy2d.seeds={}", if smoke { 4 } else { 100 }),
            ],
        )
        .expect("the preset is valid");
        let mut times: Vec<f64> = (0..repeats)
            .map(|_| {
                let start = Instant::now();
                let outcome = noiselab::experiments::toy2d::run(&loaded.config).unwrap();
                std::hint::black_box(outcome);
                start.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        if smoke {
            println!(
                "  smoke run ok ({threads} thread(s)); time it with `cargo bench --bench toy2d`"
            );
            continue;
        }
        let steps = 100.0 * 6.0 * 500.0;
        println!(
            "  {threads} thread(s): min {:.3} s, median {:.3} s ({:.2} µs per dynamics-iteration at the median, {repeats} runs)",
            times[0],
            times[repeats / 2],
            times[repeats / 2] / steps * 1e6 * threads as f64,
        );
    }
}
