//! The run's ETA (`progress.rs`) on scripted timings: eight trajectories of very uneven
//! cost (GLD Hessian's steps 25× SGD's, measurements that cost as much as dozens of
//! steps, each step's cost jittered) sharing one machine, publishing progress as the
//! workers do (about once a second while stepping, at the start and end of every
//! measurement). After the first 10 % of the run, the ETA must be within 20 % of the
//! time really left (in the last tenth of the run, within 2 % of the run: 20 % of a
//! tenth). And on recorded timings: a real run's journal, replayed.

use noiselab::dynamics::DynamicsKind;
use noiselab::events::{Event, Progress, RunInfo, Task};
use noiselab::progress::ProgressModel;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

/// (kind, machine-seconds per step, per measurement): GLD Hessian's steps 25× SGD's.
const UNEVEN: [(DynamicsKind, f64, f64); 8] = [
    (DynamicsKind::Gd, 0.02, 1.0),
    (DynamicsKind::Sgd, 0.004, 1.0),
    (DynamicsKind::GldConst, 0.02, 1.0),
    (DynamicsKind::GldDynamic, 0.021, 1.2),
    (DynamicsKind::GldDiag, 0.03, 1.5),
    (DynamicsKind::GldLeading, 0.05, 2.0),
    (DynamicsKind::GldHessian, 0.1, 2.0),
    (DynamicsKind::GldEig1, 0.06, 1.5),
];

fn info(dynamics: Vec<DynamicsKind>) -> Arc<RunInfo> {
    Arc::new(RunInfo {
        experiment: "scripted".into(),
        run_dir: "runs/scripted".into(),
        config_toml: String::new(),
        config_source: String::new(),
        dim: 10,
        device: "cpu".into(),
        threads: 2,
        dynamics,
        iterations: 3500,
        replicates: 1,
        replicate_labels: vec!["from θ_GD".into()],
        replicate_noun: "trajectory".into(),
        metrics: vec![],
        plane: None,
        x_marks: vec![],
        started: String::new(),
        finished_before: vec![],
        iteration_costs: vec![],
    })
}

struct Sim {
    kind: DynamicsKind,
    step_cost: f64,
    measure_cost: f64,
    step: u64,
    /// Work done on the current step or measurement.
    work: f64,
    /// The current step's cost (jittered).
    this_step: f64,
    measuring: bool,
    done: bool,
    last_report: f64,
    /// Its share of the machine relative to the others running (1: equal shares).
    weight: f64,
    /// Processor seconds charged to it.
    cpu: f64,
}

/// Cores of the scripted machine: a machine-second is this many processor seconds.
const CORES: f64 = 2.0;

/// How the scripted machine is shared and what the progress events say about it.
#[derive(Clone, Copy)]
struct Sharing<'a> {
    /// Per trajectory (as `costs`), its weight in the processor sharing.
    weights: Option<&'a [f64]>,
    /// Whether progress carries the processor time charged to each trajectory.
    charged: bool,
    /// At most this many trajectories at once, in the order given (`trajectories_at_once`).
    lanes: Option<usize>,
    /// The run's relative iteration costs as announced (RunInfo's iteration_costs).
    hints: Option<&'a [f64]>,
}

const EQUAL: Sharing<'static> = Sharing {
    weights: None,
    charged: false,
    lanes: None,
    hints: None,
};

/// Processor sharing among the running trajectories, in time steps of `dt`; returns
/// the events in time order and the time the last trajectory ended.
fn simulate(
    costs: &[(DynamicsKind, f64, f64)],
    steps: u64,
    every: u64,
    jitter: f64,
    seed: u64,
) -> (Vec<(f64, Event)>, f64) {
    simulate_sharing(costs, steps, every, jitter, seed, EQUAL)
}

/// [`simulate`] with the machine shared as `sharing` says.
fn simulate_sharing(
    costs: &[(DynamicsKind, f64, f64)],
    steps: u64,
    every: u64,
    jitter: f64,
    seed: u64,
    sharing: Sharing,
) -> (Vec<(f64, Event)>, f64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut sims: Vec<Sim> = costs
        .iter()
        .enumerate()
        .map(|(i, &(kind, step_cost, measure_cost))| Sim {
            kind,
            step_cost,
            measure_cost,
            step: 0,
            work: 0.0,
            this_step: step_cost,
            measuring: true,
            done: false,
            last_report: 0.0,
            weight: sharing.weights.map_or(1.0, |w| w[i]),
            cpu: 0.0,
        })
        .collect();
    let progress = |s: &Sim, t: f64, task: Task| {
        Event::Progress(Progress {
            dynamics: s.kind,
            replicate: 0,
            phase: None,
            step: s.step,
            steps,
            offset: 3000,
            measure_every: every,
            elapsed_s: t,
            task,
            cpu_s: sharing.charged.then_some(s.cpu),
        })
    };
    let mut announced = (*info(costs.iter().map(|c| c.0).collect())).clone();
    if let Some(hints) = sharing.hints {
        announced.iteration_costs = costs
            .iter()
            .map(|c| c.0)
            .zip(hints.iter().copied())
            .collect();
    }
    let mut events = vec![(0.0, Event::RunStarted(Arc::new(announced)))];
    let lanes = sharing.lanes.unwrap_or(sims.len());
    let mut started = vec![false; sims.len()];
    let dt = 0.01;
    let mut t = 0.0;
    loop {
        // The first `lanes` unfinished compute; each starts with a measurement.
        let active: Vec<usize> = (0..sims.len())
            .filter(|&i| !sims[i].done)
            .take(lanes)
            .collect();
        for &i in &active {
            if !started[i] {
                started[i] = true;
                events.push((t, progress(&sims[i], t, Task::Measuring("metrics".into()))));
            }
        }
        let running: f64 = active.iter().map(|&i| sims[i].weight).sum();
        if running == 0.0 {
            break;
        }
        t += dt;
        for &i in &active {
            let s = &mut sims[i];
            let share = dt * s.weight / running;
            s.work += share;
            s.cpu += share * CORES;
            loop {
                if s.measuring {
                    if s.work < s.measure_cost {
                        break;
                    }
                    s.work -= s.measure_cost;
                    s.measuring = false;
                    if s.step == steps {
                        s.done = true;
                        events.push((t, progress(s, t, Task::Steps)));
                        events.push((
                            t,
                            Event::TrajectoryFinished {
                                dynamics: s.kind,
                                replicate: 0,
                            },
                        ));
                        break;
                    }
                    events.push((t, progress(s, t, Task::Steps)));
                    s.last_report = t;
                } else {
                    if s.work < s.this_step {
                        break;
                    }
                    s.work -= s.this_step;
                    s.step += 1;
                    s.this_step = s.step_cost * (1.0 + jitter * (2.0 * rng.random::<f64>() - 1.0));
                    if s.step.is_multiple_of(every) || s.step == steps {
                        s.measuring = true;
                        events.push((t, progress(s, t, Task::Measuring("metrics".into()))));
                    } else if t - s.last_report >= 1.0 {
                        events.push((t, progress(s, t, Task::Steps)));
                        s.last_report = t;
                    }
                }
            }
        }
    }
    (events, t)
}

/// The worst ETA error after the first 10 % of the run, relative to the time really
/// left; once less than a tenth of the run is left (where a ratio of a few seconds means
/// little), relative to a tenth of the run instead. (error, where, as fractions.)
fn worst_error(events: &[(f64, Event)], end: f64) -> (f64, f64) {
    worst_error_from(events, end, 0.1 * end)
}

/// [`worst_error`] from time `from` on.
fn worst_error_from(events: &[(f64, Event)], end: f64, from: f64) -> (f64, f64) {
    let mut model = ProgressModel::new();
    let mut worst: (f64, f64) = (0.0, 0.0);
    for (t, e) in events {
        model.apply(e);
        if *t < from || *t >= end {
            continue;
        }
        let snap = model.snapshot(*t);
        let eta = snap.eta_s.expect("every cost is known after 10 %");
        let truth = end - t;
        let err = (eta - truth).abs() / truth.max(0.1 * end);
        if err > worst.0 {
            worst = (err, t / end);
        }
    }
    worst
}

#[test]
fn eta_is_within_20_percent_after_the_first_10_percent_for_uneven_costs() {
    let costs = UNEVEN;
    for seed in 0..3 {
        let (events, end) = simulate(&costs, 600, 50, 0.5, seed);
        let (err, at) = worst_error(&events, end);
        eprintln!(
            "scripted seed {seed}: worst ETA error {:.1} % at {:.0} % of {end:.0} s",
            100.0 * err,
            100.0 * at
        );
        assert!(
            err <= 0.2,
            "seed {seed}: ETA off by {:.0} % at {:.0} % of a {end:.0} s run",
            100.0 * err,
            100.0 * at
        );
    }
}

/// When the last trajectory to do so has finished its first measurement and steps on.
fn every_cost_seen(events: &[(f64, Event)]) -> f64 {
    let mut first = std::collections::BTreeMap::new();
    for (t, e) in events {
        if let Event::Progress(p) = e {
            if p.task == Task::Steps {
                first.entry(p.dynamics).or_insert(*t);
            }
        }
    }
    first.values().copied().fold(0.0, f64::max)
}

#[test]
fn eta_follows_charged_processor_time_when_the_pool_serves_trajectories_unequally() {
    // The FashionMNIST protocol's costs per step and measurement (docs/BENCHMARKS.md,
    // machine-seconds), with the machine shared as unequally as the pool shared it in a
    // real run (GLD dynamic and diag 5× GD's steps in the same minutes).
    use DynamicsKind::*;
    let costs = [
        (Gd, 0.032, 8.3),
        (Sgd, 0.002, 8.3),
        (GldConst, 0.032, 8.3),
        (GldDynamic, 0.037, 8.3),
        (GldDiag, 0.038, 8.3),
        (GldLeading, 0.035, 8.3),
        (GldHessian, 0.222, 8.3),
        (GldEig1, 0.07, 8.3),
    ];
    let weights = [1.0, 4.0, 1.0, 6.0, 6.0, 1.2, 1.0, 1.0];
    for seed in 0..2 {
        let charged = Sharing {
            weights: Some(&weights),
            charged: true,
            ..EQUAL
        };
        let (events, end) = simulate_sharing(&costs, 600, 50, 0.3, seed, charged);
        // Nothing tells a trajectory's costs before it has measured and stepped once;
        // the one served least takes 15 % of the run over its first measurement.
        let known = every_cost_seen(&events);
        assert!(known > 0.1 * end && known < 0.2 * end, "{known} of {end}");
        let (err, at) = worst_error_from(&events, end, known);
        eprintln!(
            "unequal shares, charged, seed {seed}: worst ETA error {:.1} % at {:.0} % of {end:.0} s",
            100.0 * err,
            100.0 * at
        );
        assert!(
            err <= 0.2,
            "charged: ETA off by {:.0} % at {:.0} %",
            100.0 * err,
            100.0 * at
        );
        // The same run without charged time: equal shares misjudge every cost.
        let uncharged = Sharing {
            charged: false,
            ..charged
        };
        let (events, end) = simulate_sharing(&costs, 600, 50, 0.3, seed, uncharged);
        let (err, at) = worst_error_from(&events, end, every_cost_seen(&events));
        eprintln!(
            "unequal shares, equal-share model, seed {seed}: worst ETA error {:.1} % at {:.0} %",
            100.0 * err,
            100.0 * at
        );
        assert!(err > 0.2, "equal shares should be off here: {err}");
    }
}

#[test]
fn a_naive_eta_from_finished_dynamics_fails_the_same_check() {
    // The check can fail: extrapolating elapsed × (left / done) over whole
    // trajectories (the old header) is far off on the same timings.
    use DynamicsKind::*;
    let costs = [(Sgd, 0.004, 1.0), (Gd, 0.02, 1.0), (GldHessian, 0.3, 2.0)];
    let (events, end) = simulate(&costs, 600, 50, 0.0, 0);
    let first_done = events
        .iter()
        .find(|(_, e)| matches!(e, Event::TrajectoryFinished { .. }))
        .map(|(t, _)| *t)
        .unwrap();
    // One of three finished: the old ETA says twice the elapsed time is left.
    let naive = first_done * 2.0;
    let truth = end - first_done;
    assert!((naive - truth).abs() / truth > 0.2);
    // The model, at the same moment, is within 20 %.
    let mut model = ProgressModel::new();
    for (t, e) in &events {
        model.apply(e);
        if *t >= first_done {
            break;
        }
    }
    let eta = model.snapshot(first_done).eta_s.unwrap();
    assert!(
        (eta - truth).abs() / truth <= 0.2,
        "eta {eta}, truth {truth}"
    );
}

#[test]
fn per_trajectory_etas_follow_processor_sharing() {
    // Two trajectories, no measurements to speak of: the cheap one ends first, then
    // the other alone at full speed.
    use DynamicsKind::*;
    let costs = [(Sgd, 0.01, 1e-6), (GldHessian, 0.04, 1e-6)];
    let (events, end) = simulate(&costs, 1000, 1000, 0.0, 0);
    let sgd_end = events
        .iter()
        .find(|(_, e)| matches!(e, Event::TrajectoryFinished { dynamics: Sgd, .. }))
        .map(|(t, _)| *t)
        .unwrap();
    let mut model = ProgressModel::new();
    let at = 0.3 * sgd_end;
    for (t, e) in &events {
        if *t > at {
            break;
        }
        model.apply(e);
    }
    let snap = model.snapshot(at);
    let sgd = snap.track(Sgd, 0).unwrap().eta_s.unwrap();
    let hess = snap.track(GldHessian, 0).unwrap().eta_s.unwrap();
    assert!(
        (sgd - (sgd_end - at)).abs() / (sgd_end - at) < 0.05,
        "{sgd} vs {}",
        sgd_end - at
    );
    assert!(
        (hess - (end - at)).abs() / (end - at) < 0.05,
        "{hess} vs {}",
        end - at
    );
}

#[test]
fn eta_on_the_recorded_timings_of_a_real_run() {
    // A real FashionMNIST run on this project's 2-core machine (8 dynamics, 100 GD
    // iterations then 600 from θ_GD, measured every 50; see the fixture's README),
    // replayed from its journal as the journal keeps progress (thinned). The clock is
    // the records' own.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/progress-run/journal.bin"
    );
    let contents = noiselab::record::journal::read(std::path::Path::new(path)).unwrap();
    let start_ms = contents
        .records
        .iter()
        .find(|r| {
            matches!(
                r.body,
                noiselab::record::journal::Body::Event(Event::RunStarted(_))
            )
        })
        .unwrap()
        .unix_ms;
    let timed: Vec<(f64, Event)> = contents
        .records
        .iter()
        .filter_map(|r| match &r.body {
            noiselab::record::journal::Body::Event(e) => {
                Some(((r.unix_ms - start_ms) as f64 / 1e3, e.clone()))
            }
            _ => None,
        })
        .collect();
    let end = timed
        .iter()
        .filter(|(_, e)| matches!(e, Event::TrajectoryFinished { .. }))
        .map(|(t, _)| *t)
        .fold(0.0, f64::max);
    assert!(end > 60.0, "a run of minutes: {end} s");
    let mut thinning = noiselab::progress::Thinning::default();
    let kept: Vec<(f64, Event)> = timed
        .into_iter()
        .filter(|(_, e)| match e {
            Event::Progress(p) => thinning.keep(p),
            _ => true,
        })
        .collect();
    let (err, at) = worst_error(&kept, end);
    eprintln!(
        "recorded: worst ETA error {:.1} % at {:.0} % of {end:.0} s",
        100.0 * err,
        100.0 * at
    );
    assert!(
        err <= 0.2,
        "ETA off by {:.0} % at {:.0} % of the recorded {end:.0} s run",
        100.0 * err,
        100.0 * at
    );
}

/// Events on their clock.
type Timed = Vec<(f64, Event)>;

/// The events of a resumed attempt that starts at `cut`: a new `RunStarted` (told the
/// trajectories finished before, or not), then what happened after `cut`, on the new
/// attempt's clock. Returns them with the trajectories that had finished.
fn resumed_at(
    events: &[(f64, Event)],
    cut: f64,
    tell_finished: bool,
) -> (Timed, Vec<(DynamicsKind, usize)>) {
    let finished: Vec<(DynamicsKind, usize)> = events
        .iter()
        .filter(|(t, _)| *t <= cut)
        .filter_map(|(_, e)| match e {
            Event::TrajectoryFinished {
                dynamics,
                replicate,
            } => Some((*dynamics, *replicate)),
            _ => None,
        })
        .collect();
    let Some((_, Event::RunStarted(first))) = events.first() else {
        panic!("a run starts with RunStarted");
    };
    let mut info = (**first).clone();
    if tell_finished {
        info.finished_before = finished.clone();
    }
    let mut resumed = vec![(0.0, Event::RunStarted(Arc::new(info)))];
    resumed.extend(
        events
            .iter()
            .filter(|(t, _)| *t > cut)
            .map(|(t, e)| (t - cut, e.clone())),
    );
    (resumed, finished)
}

/// When the last trajectory to do so has finished a measurement and steps on.
fn every_measurement_seen(events: &[(f64, Event)]) -> f64 {
    let mut measuring = std::collections::BTreeSet::new();
    let mut first = std::collections::BTreeMap::new();
    for (t, e) in events {
        if let Event::Progress(p) = e {
            if p.task == Task::Steps {
                if measuring.contains(&p.dynamics) {
                    first.entry(p.dynamics).or_insert(*t);
                }
            } else {
                measuring.insert(p.dynamics);
            }
        }
    }
    first.values().copied().fold(0.0, f64::max)
}

#[test]
fn a_resumed_attempt_knows_what_earlier_attempts_finished() {
    // A run stopped after five of its eight trajectories finished and resumed: the new
    // attempt hears only from the three left. Told which finished (RunInfo's
    // finished_before, as the runner fills it from the record), its ETA is the three's;
    // not told, it counts the five as not started (what the headless line of a resumed
    // FashionMNIST run showed: hours for half an hour of work).
    let costs = UNEVEN;
    let (events, end) = simulate(&costs, 600, 50, 0.3, 0);
    let mut ends: Vec<f64> = events
        .iter()
        .filter(|(_, e)| matches!(e, Event::TrajectoryFinished { .. }))
        .map(|(t, _)| *t)
        .collect();
    ends.sort_by(f64::total_cmp);
    let cut = ends[4] + 1.0;
    let left = end - cut;
    let (told, finished) = resumed_at(&events, cut, true);
    assert_eq!(finished.len(), 5);
    // Nothing tells a trajectory's measurement cost in the new attempt before it has
    // measured once there.
    let from = every_measurement_seen(&told);
    assert!(from < 0.3 * left, "{from} of {left}");
    let (err, at) = worst_error_from(&told, left, from);
    eprintln!(
        "resumed, told: worst ETA error {:.1} % at {:.0} % of the {left:.0} s left",
        100.0 * err,
        100.0 * at
    );
    assert!(err <= 0.2, "told: ETA off by {:.0} %", 100.0 * err);
    // Done so far: the five count as done at the mean costs of the others (their own
    // are in the earlier attempt), so the fraction is not the three's alone.
    let mut model = ProgressModel::new();
    for (t, e) in &told {
        if *t > from {
            break;
        }
        model.apply(e);
    }
    let fraction = model.snapshot(from).fraction.expect("costs known");
    let truth = (cut + from) / end;
    eprintln!(
        "resumed, told: {:.0} % done, truly {:.0} %",
        100.0 * fraction,
        100.0 * truth
    );
    // The three left cost more than the five finished: an overestimate, bounded.
    assert!(
        (fraction - truth).abs() <= 0.15,
        "fraction {fraction} vs {truth}"
    );

    let (untold, _) = resumed_at(&events, cut, false);
    let (err, _) = worst_error_from(&untold, left, from);
    eprintln!("resumed, not told: worst ETA error {:.1} %", 100.0 * err);
    assert!(err > 1.0, "not told, the ETA should be far off: {err}");
}

#[test]
fn eta_with_two_trajectories_at_a_time_scales_those_not_started_by_the_iteration_costs() {
    // The protocol run two at a time, the costliest first (`trajectories_at_once = 2`):
    // for most of the run six trajectories have not started. Their ETA is the measured
    // trajectories' step cost scaled by the run's announced relative iteration costs —
    // the preset's own NoiseSpec::iteration_cost, not the scripted costs, so the check
    // carries that estimate's real error (it ranks; its ratios are rough).
    use DynamicsKind::*;
    let loaded = noiselab::config::load("fashion_mnist", &[]).unwrap();
    let preset = &loaded.config;
    let section = preset
        .settings::<noiselab::experiments::fashion_mnist::FashionMnistConfig>()
        .unwrap();
    let hint = |k: DynamicsKind| {
        preset
            .noise
            .spec(k, section.eta)
            .iteration_cost(section.train_samples)
    };
    // docs/BENCHMARKS.md's machine-seconds per step and per measurement, in the order
    // the scheduler starts them (costliest by the estimate first).
    let mut costs = vec![
        (Gd, 0.028, 7.2),
        (Sgd, 0.002, 7.2),
        (GldConst, 0.028, 7.2),
        (GldDynamic, 0.033, 7.2),
        (GldDiag, 0.035, 7.2),
        (GldLeading, 0.035, 7.2),
        (GldHessian, 0.207, 7.2),
        (GldEig1, 0.064, 7.2),
    ];
    // The estimate ranks them as the bench does wherever their costs differ by 10 %.
    for a in &costs {
        for b in &costs {
            if a.1 > 1.1 * b.1 {
                assert!(hint(a.0) > hint(b.0), "{:?} vs {:?}", a.0, b.0);
            }
        }
    }
    costs.sort_by(|a, b| hint(b.0).total_cmp(&hint(a.0)));
    let hints: Vec<f64> = costs.iter().map(|c| hint(c.0)).collect();
    let two = Sharing {
        lanes: Some(2),
        hints: Some(&hints),
        ..EQUAL
    };
    for seed in 0..2 {
        let (events, end) = simulate_sharing(&costs, 1500, 500, 0.3, seed, two);
        // Once the first two have measured and stepped a while.
        let mut first_steps = vec![];
        for (t, e) in &events {
            if let Event::Progress(p) = e {
                if p.task == Task::Steps && !first_steps.iter().any(|(d, _)| *d == p.dynamics) {
                    first_steps.push((p.dynamics, *t));
                }
            }
        }
        let from = first_steps[1].1 + 0.02 * end;
        assert!(from < 0.1 * end, "{from} of {end}");
        let (err, at) = worst_error_from(&events, end, from);
        eprintln!(
            "two at a time, seed {seed}: worst ETA error {:.1} % at {:.0} % of {end:.0} s",
            100.0 * err,
            100.0 * at
        );
        assert!(
            err <= 0.2,
            "ETA off by {:.0} % at {:.0} %",
            100.0 * err,
            100.0 * at
        );
        // Without the announced costs those not started count at the mean of the two
        // costliest: far off.
        let unhinted = Sharing { hints: None, ..two };
        let (events, end) = simulate_sharing(&costs, 1500, 500, 0.3, seed, unhinted);
        let (err, _) = worst_error_from(&events, end, from);
        eprintln!(
            "two at a time, no costs announced, seed {seed}: worst ETA error {:.1} %",
            100.0 * err
        );
        assert!(
            err > 0.5,
            "without the costs the ETA should be far off: {err}"
        );
    }
}
