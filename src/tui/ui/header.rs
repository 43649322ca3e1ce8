//! One line: the experiment, the run's phase with its progress and ETA, elapsed time,
//! state, the directory, the device. Segments that do not fit are left out, least
//! important first; none is cut.

use super::Theme;
use crate::events::RunStatus;
use crate::progress::hms as hms_s;
use crate::tui::app::App;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;
use std::time::Duration;

pub fn hms(d: Duration) -> String {
    hms_s(d.as_secs() as f64)
}

/// What the run is doing and how far it got: "GD phase 45% ETA 00:03:10",
/// "from θ_GD 34% ETA 00:41:10", "seeds 1200/8000 (15%) ETA …".
pub fn progress_text(app: &App) -> String {
    let snap = app.snapshot();
    let eta = |s: Option<f64>| s.map_or(" ETA …".to_string(), |s| format!(" ETA {}", hms_s(s)));
    if let Some((name, fraction, left)) = &snap.phase {
        // A one-off computation (the spectrum) has no fraction to show until it ends.
        if *fraction == 0.0 && left.is_none() {
            return format!("{name} …");
        }
        return format!("{name} {:.0}%{}", 100.0 * fraction, eta(*left));
    }
    let info = app.info.as_ref();
    let label = info
        .and_then(|i| (i.replicate_labels.len() == 1).then(|| i.replicate_labels[0].clone()))
        .unwrap_or_else(|| "trajectories".to_string());
    if !snap.tracks.is_empty() {
        let pct = snap
            .fraction
            .map_or("…".to_string(), |f| format!("{:.0}%", 100.0 * f));
        return if app.is_done() {
            format!("{label} {pct}")
        } else {
            format!("{label} {pct}{}", eta(snap.eta_s))
        };
    }
    // Experiments of many short replicates (the toy) report whole replicates.
    let (done, total) = app.progress();
    let noun = app.replicate_noun();
    let pct = (100 * done).checked_div(total).unwrap_or(0);
    let elapsed = app.elapsed().as_secs_f64();
    let left = if done > 0 && done < total && !app.is_done() {
        format!(
            " ETA {}",
            hms_s(elapsed * (total - done) as f64 / done as f64)
        )
    } else {
        String::new()
    };
    format!("{noun}s {done}/{total} ({pct}%){left}")
}

/// The run's state as shown: running, finished, stopped, failed, or (watch) stopped
/// because its writer is gone.
pub fn state_span(app: &App, theme: Theme) -> Span<'static> {
    let (text, style): (&str, Style) = match app.status {
        RunStatus::Running if app.writer_gone() => (
            "■ stopped (writer gone)",
            theme.fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ),
        RunStatus::Running => ("● running", theme.fg(Color::Green)),
        RunStatus::Finished => (
            "✓ finished",
            theme.fg(Color::Green).add_modifier(Modifier::BOLD),
        ),
        RunStatus::Interrupted => ("■ interrupted", theme.fg(Color::Yellow)),
        RunStatus::Failed => ("✗ failed (l: log)", theme.fg(Color::Red)),
    };
    let text = if app.watching {
        format!("watching · {text}")
    } else {
        text.to_string()
    };
    Span::styled(text, style)
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let width = area.width.saturating_sub(2) as usize;
    let (experiment, dir, device) = match &app.info {
        Some(i) => {
            let dir = app
                .watch
                .as_ref()
                .and_then(|w| w.lock().ok().map(|w| w.dir.display().to_string()))
                .unwrap_or_else(|| i.run_dir.display().to_string());
            (
                i.experiment.clone(),
                dir,
                format!("{}, {} threads", i.device, i.threads),
            )
        }
        None => ("starting".to_string(), String::new(), String::new()),
    };
    // (priority, span): lower numbers stay longest.
    let segments: Vec<(u8, Span)> = vec![
        (0, Span::styled(format!(" {experiment} "), theme.title())),
        (1, Span::raw(progress_text(app))),
        (2, state_span(app, theme)),
        (3, Span::raw(hms(app.elapsed()))),
        (4, Span::raw(dir)),
        (5, Span::raw(device)),
        (
            6,
            Span::styled(
                if app.dropped_updates > 0 {
                    format!("display skipped {} updates", app.dropped_updates)
                } else {
                    String::new()
                },
                theme.dim(),
            ),
        ),
    ];
    let segments: Vec<(u8, Span)> = segments
        .into_iter()
        .filter(|(_, s)| !s.content.is_empty())
        .collect();
    let line_of = |keep: u8| {
        let mut spans = vec![];
        for (p, s) in segments.iter().filter(|(p, _)| *p <= keep) {
            if !spans.is_empty() && *p > 0 {
                spans.push(Span::raw(" │ "));
            }
            spans.push(s.clone());
        }
        Line::from(spans)
    };
    let mut keep = 6;
    while keep > 0 && line_of(keep).width() > width {
        keep -= 1;
    }
    frame.render_widget(
        Paragraph::new(line_of(keep)).block(Block::default().borders(Borders::ALL)),
        area,
    );
}
