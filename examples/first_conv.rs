//! The first convolution of LeNet on 1,200 images, as the patch matrix's products and as
//! the direct kernels (`kernels::direct`), one thread, median of 20 calls each:
//!   RAYON_NUM_THREADS=1 cargo run --release --example first_conv
//! NOISELAB_AVX512=0 runs the direct kernels in AVX2 on a CPU with AVX-512.
use noiselab::kernels::conv::{self, ConvShape};
use noiselab::kernels::{direct, matmul, Mat};
use std::time::Instant;

fn median_ms(f: &mut dyn FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..20)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() {
    let n = 1200;
    let shape = ConvShape {
        height: 28,
        width: 28,
        channels: 1,
        kernel: 5,
        padding: 0,
    };
    let (rows, window) = (n * shape.positions(), shape.window());
    let x: Vec<f32> = (0..n * 784)
        .map(|i| ((i * 37) % 101) as f32 * 0.01)
        .collect();
    let mut patches = vec![0f32; rows * window];
    conv::im2col(&shape, n, &x, &mut patches);
    let p = Mat::rows(&patches, rows, window);
    println!("outputs\tforward: patches\tdirect\tweight sums: patches\tdirect\t(ms, 1,200 images)");
    {
        let outputs = 10usize;
        let w: Vec<f32> = (0..outputs * window)
            .map(|i| (i % 5) as f32 * 0.1)
            .collect();
        let bias = vec![0.5f32; outputs];
        let delta: Vec<f32> = (0..rows * outputs)
            .map(|i| ((i * 13) % 17) as f32 * 0.01)
            .collect();
        let mut out = vec![0f32; rows * outputs];
        let mut gw = vec![0f32; outputs * window];
        // The patch route as the network ran it: bias rows, then the product onto them.
        let gemm_forward = median_ms(&mut || {
            for r in out.chunks_exact_mut(outputs) {
                r.copy_from_slice(&bias);
            }
            matmul(&mut out, true, p, Mat::rows(&w, outputs, window).t());
        });
        let direct_forward =
            median_ms(&mut || direct::forward(&shape, outputs, n, &x, (&w, &bias), &mut out));
        let d = Mat::rows(&delta, rows, outputs);
        let gemm_sums = median_ms(&mut || matmul(&mut gw, false, d.t(), p));
        let direct_sums =
            median_ms(&mut || direct::weight_sums(&shape, outputs, n, &x, &delta, &mut gw));
        println!(
            "{outputs}\t{gemm_forward:.2}\t{direct_forward:.2}\t{gemm_sums:.2}\t{direct_sums:.2}"
        );
    }
}
