//! A two-parameter experiment's θ plane (the toy: both basins, the success region),
//! the selected replicate's trajectory, and every dynamics' success rate filling in as
//! replicates finish. What to draw comes with the run (`RunInfo::plane`).

use super::Theme;
use crate::tui::app::App;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::text::{Line, Span};
use ratatui::widgets::canvas::{Canvas, Circle, Line as CLine, Points};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let [plane, rates] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Fill(1)]).areas(area);
    let Some(info) = app.info.as_ref() else {
        return;
    };
    let Some(view) = info.plane.clone() else {
        return;
    };
    let seeds = info.replicates;
    let noun = app.replicate_noun();
    let Some(d) = app.current() else { return };
    let run = d.replicates.get(&app.selected_seed);
    let title = match run {
        Some(r) => format!(
            " θ plane: {} {noun} {}/{} {} ([ ] {noun}) ",
            d.kind.label(),
            app.selected_seed,
            seeds,
            if r.success == Some(true) {
                "escaped"
            } else {
                "stayed"
            }
        ),
        None => format!(
            " θ plane: {noun} {} not finished yet ([ ] {noun}) ",
            app.selected_seed
        ),
    };
    let traj: Vec<(f64, f64)> = run
        .and_then(|r| r.array(&view.path))
        .filter(|a| a.shape.len() == 2 && a.shape[1] == 2)
        .map(|a| {
            a.values
                .chunks_exact(2)
                .filter(|w| w[0].is_finite() && w[1].is_finite())
                .map(|w| (w[0], w[1]))
                .collect()
        })
        .unwrap_or_default();
    let bound = view.bound;
    let traj_style = theme.series(app.selected).fg.unwrap_or(Color::Reset);
    let canvas = Canvas::default()
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(Line::styled(title, theme.title())),
        )
        .x_bounds([-bound, bound])
        .y_bounds([-bound, bound])
        .paint(move |ctx| {
            let edge_color = if theme.fg(Color::Gray).fg.is_some() {
                Color::Gray
            } else {
                Color::Reset
            };
            ctx.draw(&Points {
                coords: &view.outline,
                color: edge_color,
            });
            if let Some(below) = view.success_corner {
                for (x1, y1, x2, y2) in
                    [(below, -bound, below, below), (-bound, below, below, below)]
                {
                    ctx.draw(&CLine {
                        x1,
                        y1,
                        x2,
                        y2,
                        color: edge_color,
                    });
                }
            }
            for (x, y, label) in &view.marks {
                // The label just above the mark (right of it in the upper half).
                let dx = if *x > 0.0 { 0.05 } else { 0.0 };
                ctx.print(x + dx, y + 0.15, label.clone());
                ctx.draw(&Circle {
                    x: *x,
                    y: *y,
                    radius: 0.04,
                    color: edge_color,
                });
            }
            ctx.layer();
            for pair in traj.windows(2) {
                ctx.draw(&CLine {
                    x1: pair[0].0,
                    y1: pair[0].1,
                    x2: pair[1].0,
                    y2: pair[1].1,
                    color: traj_style,
                });
            }
            if let Some(&(x, y)) = traj.last() {
                ctx.draw(&Circle {
                    x,
                    y,
                    radius: 0.06,
                    color: traj_style,
                });
            }
        });
    frame.render_widget(canvas, plane);

    let width = rates.width.saturating_sub(4) as usize;
    let mut lines = vec![Line::styled(
        info.plane
            .as_ref()
            .map_or(String::new(), |p| p.success_label.clone()),
        theme.dim(),
    )];
    for (i, s) in app.dynamics.iter().enumerate() {
        let rate = s.success_rate().unwrap_or(0.0);
        let bar_w = width.saturating_sub(2);
        let filled = (rate * bar_w as f64).round() as usize;
        lines.push(Line::from(vec![
            Span::styled(
                format!("{} {:<18}", i + 1, s.kind.label()),
                if i == app.selected {
                    theme.selected()
                } else {
                    theme.series(i)
                },
            ),
            Span::raw(format!("{:>5}/{:<5} {:.3}", s.successes, s.done, rate)),
        ]));
        lines.push(Line::styled(
            format!(
                "  {}{}",
                "█".repeat(filled),
                "·".repeat(bar_w.saturating_sub(filled))
            ),
            theme.series(i),
        ));
    }
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(Line::styled(" success rate (Fig. 1b) ", theme.title())),
        ),
        rates,
    );
}
