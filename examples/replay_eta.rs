//! What the run's ETA said along a recorded run: its journal's events replayed through
//! `ProgressModel` on the records' own clock, printing at every tenth of the
//! trajectories' time the ETA shown then against the time really left, and the
//! per-trajectory steps (how unequally the machine was shared).
//!
//!   cargo run --release --example replay_eta -- RUN_DIR/journal.bin
use noiselab::events::Event;
use noiselab::progress::{hms, ProgressModel, Thinning};
use noiselab::record::journal::{self, Body};

fn main() {
    let path = std::env::args().nth(1).expect("usage: replay_eta JOURNAL");
    let contents = journal::read(std::path::Path::new(&path)).unwrap_or_else(|e| {
        eprintln!("replay_eta: {e}");
        std::process::exit(1)
    });
    let start_ms = contents
        .records
        .iter()
        .find(|r| matches!(r.body, Body::Event(Event::RunStarted(_))))
        .map(|r| r.unix_ms)
        .expect("a journal with a RunStarted event");
    let mut thinning = Thinning::default();
    let events: Vec<(f64, Event)> = contents
        .records
        .iter()
        .filter_map(|r| match &r.body {
            Body::Event(e) => Some(((r.unix_ms - start_ms) as f64 / 1e3, e.clone())),
            _ => None,
        })
        .filter(|(_, e)| match e {
            Event::Progress(p) => thinning.keep(p),
            _ => true,
        })
        .collect();
    let first = |f: &dyn Fn(&Event) -> bool| events.iter().find(|(_, e)| f(e)).map(|x| x.0);
    let begin = first(&|e| matches!(e, Event::Progress(p) if p.phase.is_none()))
        .expect("trajectories that started");
    let end = events
        .iter()
        .filter(|(_, e)| matches!(e, Event::TrajectoryFinished { .. }))
        .map(|(t, _)| *t)
        .fold(begin, f64::max);
    let charged = events
        .iter()
        .any(|(_, e)| matches!(e, Event::Progress(p) if p.cpu_s.is_some()));
    println!(
        "{path}: trajectories from {} to {} ({}), progress {} charged processor time",
        hms(begin),
        hms(end),
        hms(end - begin),
        if charged { "with" } else { "without" }
    );
    let mut model = ProgressModel::new();
    let mut next = 1;
    for (t, e) in &events {
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
            .filter(|v| v.phase.is_none())
            .map(|v| format!("{} {}", v.dynamics.key(), v.step))
            .collect();
        println!(
            "{:>3.0} %: ETA {} against {} left ({:+.0} %) · {}",
            100.0 * (t - begin) / (end - begin),
            snap.eta_s.map_or("…".into(), hms),
            hms(end - t),
            snap.eta_s
                .map_or(f64::NAN, |eta| 100.0 * (eta - (end - t)) / (end - t)),
            steps.join(", ")
        );
    }
}
