//! Adam against closed forms: the first step moves every coordinate by lr·sign(g), the
//! iterates are invariant to scaling the loss, and it converges on a quadratic.

use noiselab::optim::{linear_decay, Adam};

#[test]
fn first_step_is_lr_times_sign() {
    let mut theta = vec![1.0, -2.0, 0.5];
    let g = [3.0, -0.25, 1e-3];
    Adam::new(3).step(&mut theta, &g, 0.1);
    // m̂ = g, v̂ = g²: the step is lr·g/(|g| + ε).
    for ((t, t0), gi) in theta.iter().zip([1.0, -2.0, 0.5]).zip(g) {
        let want = t0 - 0.1 * gi / (gi.abs() + 1e-8);
        assert!((t - want).abs() < 1e-15, "{t} vs {want}");
    }
}

#[test]
fn iterates_do_not_depend_on_the_scale_of_the_loss() {
    let a = [1.0, 10.0, 100.0];
    let run = |c: f64| {
        let mut theta = vec![1.0; 3];
        let mut adam = Adam::new(3);
        for _ in 0..50 {
            let g: Vec<f64> = theta.iter().zip(a).map(|(t, ai)| c * ai * t).collect();
            adam.step(&mut theta, &g, 0.01);
        }
        theta
    };
    let (x, y) = (run(1.0), run(1000.0));
    for (p, q) in x.iter().zip(&y) {
        assert!((p - q).abs() < 1e-6, "{p} vs {q}");
    }
}

#[test]
fn converges_on_an_ill_conditioned_quadratic() {
    let a = [1.0, 1e3];
    let mut theta = vec![1.0, 1.0];
    let mut adam = Adam::new(2);
    let total = 3000;
    for t in 0..total {
        let g: Vec<f64> = theta.iter().zip(a).map(|(x, ai)| ai * x).collect();
        adam.step(&mut theta, &g, linear_decay(0.05, t, total, 1000));
    }
    assert!(theta.iter().all(|x| x.abs() < 1e-3), "{theta:?}");
}

#[test]
fn linear_decay_reaches_zero_at_the_end() {
    assert_eq!(linear_decay(1e-3, 0, 310, 100), 1e-3);
    assert_eq!(linear_decay(1e-3, 209, 310, 100), 1e-3);
    assert!((linear_decay(1e-3, 210, 310, 100) - 1e-3).abs() < 1e-18);
    assert!((linear_decay(1e-3, 260, 310, 100) - 0.5e-3).abs() < 1e-18);
    assert!((linear_decay(1e-3, 309, 310, 100) - 1e-5).abs() < 1e-18);
    assert_eq!(linear_decay(1e-3, 5, 10, 0), 1e-3);
}
