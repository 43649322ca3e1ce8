use super::Theme;
use crate::events::RunStatus;
use crate::tui::app::App;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;
use std::time::Duration;

pub fn hms(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let (done, total) = app.progress();
    let elapsed = app.elapsed();
    let eta = if done > 0 && done < total && !app.is_done() {
        let left = elapsed.as_secs_f64() * (total - done) as f64 / done as f64;
        format!(" ETA {}", hms(Duration::from_secs_f64(left)))
    } else {
        String::new()
    };
    let (experiment, dir, device, threads, iterations) = match &app.info {
        Some(i) => (
            i.experiment.as_str(),
            i.run_dir.display().to_string(),
            i.device.as_str(),
            i.threads,
            i.iterations,
        ),
        None => ("starting", String::new(), "-", 0, 0),
    };
    let state = match app.status {
        RunStatus::Running => Span::styled("● running", theme.fg(Color::Green)),
        RunStatus::Finished => Span::styled(
            "✓ finished: final state shown, press q to leave",
            theme.fg(Color::Green).add_modifier(Modifier::BOLD),
        ),
        RunStatus::Interrupted => Span::styled("■ interrupted", theme.fg(Color::Yellow)),
        RunStatus::Failed => Span::styled("✗ failed (see log: l)", theme.fg(Color::Red)),
    };
    let state = if app.watching {
        Span::styled(format!("watching · {}", state.content), state.style)
    } else {
        state
    };
    let pct = (100 * done).checked_div(total).unwrap_or(0);
    let mut spans = vec![
        Span::styled(format!(" {experiment} "), theme.title()),
        Span::raw(format!("│ {dir} │ {} │ ", hms(elapsed))),
        Span::raw(format!(
            "{done}/{total} runs × {iterations} it ({pct}%){eta} │ {device}, {threads} threads │ "
        )),
        state,
    ];
    if app.dropped_updates > 0 {
        spans.push(Span::styled(
            format!(" │ display skipped {} updates", app.dropped_updates),
            theme.dim(),
        ));
    }
    frame.render_widget(
        Paragraph::new(Line::from(spans)).block(Block::default().borders(Borders::ALL)),
        area,
    );
}
