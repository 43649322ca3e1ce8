//! The toy experiment end to end (METHOD.md §4.1, §5): indicator ordering, success-rate
//! ordering with binomial tolerances, reproducibility, divergence handling.

mod common;

use common::Z;
use noiselab::config::{self, Config};
use noiselab::dynamics::{DynamicsKind, NoiseModel};
use noiselab::estimators::AtPoint;
use noiselab::experiments::toy2d;
use noiselab::models::quadratic::Quadratic;
use noiselab::objective::Objective;

fn preset(overrides: &[&str]) -> Config {
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    config::load(
        concat!(env!("CARGO_MANIFEST_DIR"), "/configs/toy2d.toml"),
        &o,
    )
    .unwrap()
    .config
}

/// Tr(H·Cov n) of each norm-matched noise at θ, all at the same E‖n‖².
fn indicators<O: Objective>(
    config: &Config,
    obj: &O,
    theta: &[f64],
    eta: f64,
) -> Vec<(DynamicsKind, f64, f64)> {
    DynamicsKind::langevin()
        .iter()
        .map(|&kind| {
            let mut noise = NoiseModel::new(config.noise.spec(kind, eta), 0, 0);
            let mut at = AtPoint::new(obj, theta);
            noise.sample(0, &mut at).unwrap();
            let h = at.hessian().unwrap().clone();
            let tr = noise.tr_h_noise(&mut at, &h).unwrap();
            let norm = noise.expected_sq_norm(&mut at).unwrap();
            (kind, tr, norm)
        })
        .collect()
}

fn of(ind: &[(DynamicsKind, f64, f64)], kind: DynamicsKind) -> (DynamicsKind, f64, f64) {
    *ind.iter().find(|(k, ..)| *k == kind).unwrap()
}

#[test]
fn first_eigvec_noise_has_the_largest_indicator_among_norm_matched_noises() {
    // At the toy's sharp minimum (fixed magnitude) …
    let config = preset(&[]);
    let obj = toy2d::objective(&config, 0);
    let ind = indicators(&config, &obj, &[1.0, 1.0], 0.005);
    let best = of(&ind, DynamicsKind::GldEig1).1;
    for (kind, tr, norm) in &ind {
        assert!((norm - 0.01).abs() < 1e-12, "{kind}: E‖n‖² = {norm}");
        assert!(*tr <= best * (1.0 + 1e-12), "{kind}: {tr} > eig1's {best}");
    }
    // Σ* = Tr Σ·u1u1ᵀ attains λ1·E‖n‖² (METHOD.md §5).
    assert!((best - 200.0 * 0.01).abs() < 1e-9);

    // … and on a random quadratic under norm matching to SGD.
    let h = common::random_spd(6, 0.1, 8.0, 41);
    let quad = Quadratic::new(h, common::random_vectors(30, 6, 1.0, 42));
    let mut cfg = Config {
        noise: Default::default(),
        ..config.clone()
    };
    cfg.noise.batch_size = 5;
    cfg.noise.gld_leading.k = 3;
    cfg.noise.gld_leading.norm_matched = true;
    cfg.noise.gld_hessian.k = 3;
    let ind = indicators(&cfg, &quad, &[0.1; 6], 0.1);
    let norm0 = of(&ind, DynamicsKind::GldDynamic).2;
    let best = of(&ind, DynamicsKind::GldEig1).1;
    for (kind, tr, norm) in &ind {
        if *kind != DynamicsKind::GldConst {
            assert!(
                (norm - norm0).abs() < 1e-12 * norm0,
                "{kind} not norm-matched"
            );
            assert!(*tr <= best * (1.0 + 1e-12), "{kind}: {tr} > eig1's {best}");
        }
    }
}

#[test]
fn isotropic_curvature_makes_every_shape_equivalent() {
    // H = λI: every Σ of equal trace gives the same Tr(HΣ) (METHOD.md §5).
    let h = nalgebra::DMatrix::identity(5, 5) * 3.0;
    let quad = Quadratic::new(h, common::random_vectors(25, 5, 1.0, 43));
    let mut cfg = preset(&[]);
    cfg.noise.gld_leading.k = 3;
    cfg.noise.gld_hessian.k = 3;
    let ind = indicators(&cfg, &quad, &[0.2; 5], 0.1);
    for (kind, tr, _) in &ind {
        assert!((tr - 3.0 * 0.01).abs() < 1e-12, "{kind}: {tr}");
    }
}

#[test]
fn success_rates_order_as_in_fig_1b() {
    let seeds = 1000;
    let config = preset(&[&format!("toy2d.seeds={seeds}")]);
    let outcome = toy2d::run(&config).unwrap();
    let get = |k: DynamicsKind| outcome.series.iter().find(|s| s.kind == k).unwrap();
    assert_eq!(
        get(DynamicsKind::Gd).successes(),
        0,
        "GD cannot leave the minimum"
    );
    let aligned = [
        DynamicsKind::GldEig1,
        DynamicsKind::GldLeading,
        DynamicsKind::GldHessian,
    ];
    let isotropic = [DynamicsKind::GldConst, DynamicsKind::GldDiag];
    for a in aligned {
        for b in isotropic {
            let (sa, sb) = (get(a), get(b));
            let se = sa
                .success_stderr()
                .hypot(sb.success_stderr())
                .max(1.0 / seeds as f64);
            assert!(
                sa.success_rate() - sb.success_rate() > Z * se,
                "{a} ({}) not far above {b} ({}), s.e. {se}\n{}",
                sa.success_rate(),
                sb.success_rate(),
                outcome.table()
            );
        }
    }
    // GLD 1st eigvec is the best (or statistically indistinguishable from the best).
    let eig1 = get(DynamicsKind::GldEig1);
    for other in [DynamicsKind::GldLeading, DynamicsKind::GldHessian] {
        let o = get(other);
        let se = eig1.success_stderr().hypot(o.success_stderr());
        assert!(
            eig1.success_rate() >= o.success_rate() - Z * se,
            "{}",
            outcome.table()
        );
    }
}

#[test]
fn same_seed_same_trajectory_whatever_the_threads() {
    let one = preset(&["toy2d.seeds=12", "threads=1"]);
    let two = preset(&["toy2d.seeds=12", "threads=2"]);
    let a = toy2d::run(&one).unwrap();
    let b = toy2d::run(&two).unwrap();
    assert_eq!(a, b, "results depend on scheduling");
    let again = toy2d::run_one(&one, 5, DynamicsKind::GldEig1).unwrap();
    assert_eq!(again, a.series[5].runs[5]);
    // Bitwise: compare bit patterns, not just values.
    let bits = |r: &toy2d::ToyRun| {
        r.trajectory
            .iter()
            .flat_map(|w| w.map(f64::to_bits))
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&again), bits(&a.series[5].runs[5]));
    let other_seed = preset(&["toy2d.seeds=12", "seed=1"]);
    let c = toy2d::run_one(&other_seed, 5, DynamicsKind::GldEig1).unwrap();
    assert_ne!(c.trajectory, again.trajectory);
}

#[test]
fn a_diverging_dynamics_is_marked_and_the_others_finish() {
    // η = 3: ηλ > 2 in both basins (λ ≥ 20 sharp, λ = 2 flat: ×5 a step), so every
    // trajectory blows up; the run must still complete and say so.
    let config = preset(&["toy2d.seeds=5", "toy2d.eta=3.0", "toy2d.start=[1.001, 1.0]"]);
    let outcome = toy2d::run(&config).unwrap();
    for s in &outcome.series {
        assert_eq!(s.diverged(), 5, "{}", s.kind);
        assert_eq!(s.successes(), 0);
        for r in &s.runs {
            let d = r.diverged.as_ref().unwrap();
            assert!(d.iteration < 500 && r.trajectory.len() <= d.iteration + 2);
        }
    }
    // A stable run next to it is unaffected.
    let fine = toy2d::run(&preset(&["toy2d.seeds=5"])).unwrap();
    assert!(fine.series.iter().all(|s| s.diverged() == 0));
}
