//! What the run's ETA said along a recorded run: each attempt's events (a resumed run has
//! several) replayed through a fresh `ProgressModel` on the records' own clock, as that
//! attempt's headless display saw them, printing at every tenth of the attempt's
//! trajectory time the ETA shown then against the time really left, and the
//! per-trajectory steps (how unequally the machine was shared). An attempt that did not
//! end its run has no time "really left" to compare with and is summarised only.
//!
//!   cargo run --release --example replay_eta -- RUN_DIR/journal.bin
use noiselab::events::{Event, RunStatus};
use noiselab::progress::{hms, ProgressModel, Thinning};
use noiselab::record::journal::{self, Body};

fn main() {
    let path = std::env::args().nth(1).expect("usage: replay_eta JOURNAL");
    let contents = journal::read(std::path::Path::new(&path)).unwrap_or_else(|e| {
        eprintln!("replay_eta: {e}");
        std::process::exit(1)
    });
    // Each attempt begins with its RunStarted; its clock starts there.
    let mut attempts: Vec<Vec<(f64, Event)>> = vec![];
    let mut start_ms = 0;
    let mut thinning = Thinning::default();
    for r in &contents.records {
        let Body::Event(e) = &r.body else { continue };
        if matches!(e, Event::RunStarted(_)) {
            attempts.push(vec![]);
            start_ms = r.unix_ms;
            thinning = Thinning::default();
        }
        let Some(attempt) = attempts.last_mut() else {
            continue;
        };
        if let Event::Progress(p) = e {
            if !thinning.keep(p) {
                continue;
            }
        }
        attempt.push(((r.unix_ms - start_ms) as f64 / 1e3, e.clone()));
    }
    if attempts.is_empty() {
        eprintln!("replay_eta: {path} has no RunStarted event");
        std::process::exit(1);
    }
    println!("{path}: {} attempt(s)", attempts.len());
    for (i, events) in attempts.iter().enumerate() {
        replay(i + 1, events);
    }
}

fn replay(attempt: usize, events: &[(f64, Event)]) {
    let first = |f: &dyn Fn(&Event) -> bool| events.iter().find(|(_, e)| f(e)).map(|x| x.0);
    let Some(begin) = first(&|e| matches!(e, Event::Progress(p) if p.phase.is_none())) else {
        println!("attempt {attempt}: no trajectory ran");
        return;
    };
    let ended = events.iter().find_map(|(t, e)| match e {
        Event::RunEnded { status } => Some((*t, *status)),
        _ => None,
    });
    let truth = matches!(ended, Some((_, RunStatus::Finished)));
    // A finished run's trajectories end at the last to finish; otherwise the attempt
    // ends with its last record.
    let end = events
        .iter()
        .filter(|(_, e)| !truth || matches!(e, Event::TrajectoryFinished { .. }))
        .map(|(t, _)| *t)
        .fold(begin, f64::max);
    let charged = events
        .iter()
        .any(|(_, e)| matches!(e, Event::Progress(p) if p.cpu_s.is_some()));
    let told = match events.first() {
        Some((_, Event::RunStarted(info))) => info.finished_before.len(),
        _ => 0,
    };
    println!(
        "attempt {attempt}: trajectories from {} to {} ({}), progress {} charged processor time, \
         {told} trajectories announced as finished before, ended {}",
        hms(begin),
        hms(end),
        hms(end - begin),
        if charged { "with" } else { "without" },
        ended.map_or("without RunEnded (killed)".into(), |(_, s)| s
            .key()
            .to_string())
    );
    let mut model = ProgressModel::new();
    let mut next = 1;
    for (t, e) in events {
        model.apply(e);
        let mark = begin + (end - begin) * next as f64 / 10.0;
        if *t < mark || next > 9 {
            continue;
        }
        next += 1;
        let snap = model.snapshot(*t);
        let steps: Vec<String> = snap
            .tracks
            .iter()
            .filter(|v| v.phase.is_none() && !v.done)
            .map(|v| format!("{} {}", v.dynamics.key(), v.step))
            .collect();
        let against = if truth {
            format!(
                " against {} left ({:+.0} %)",
                hms(end - t),
                snap.eta_s
                    .map_or(f64::NAN, |eta| 100.0 * (eta - (end - t)) / (end - t))
            )
        } else {
            String::new()
        };
        println!(
            "{:>3.0} %: {} done, ETA {}{against} · {}{}",
            100.0 * (t - begin) / (end - begin),
            snap.fraction
                .map_or("…".into(), |f| format!("{:.0} %", 100.0 * f)),
            snap.eta_s.map_or("…".into(), hms),
            steps.join(", "),
            if snap.waiting > 0 {
                format!(" · {} waiting", snap.waiting)
            } else {
                String::new()
            }
        );
    }
}
