//! The toy's θ plane: both basins, the success region, the selected seed's trajectory,
//! and every dynamics' success rate filling in as seeds finish.

use super::Theme;
use crate::tui::app::App;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::text::{Line, Span};
use ratatui::widgets::canvas::{Canvas, Circle, Line as CLine, Points};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;
use std::sync::OnceLock;

const BOUND: f64 = 2.2;

/// Points of the sharp basin's edge (where the data-free sharp and flat branches of
/// SPEC §4.1 are equal), found by bisection along rays from (1, 1).
fn basin_edge() -> &'static [(f64, f64)] {
    static EDGE: OnceLock<Vec<(f64, f64)>> = OnceLock::new();
    EDGE.get_or_init(|| {
        let c = std::f64::consts::FRAC_1_SQRT_2;
        let gap = |w: (f64, f64)| {
            let (s1, s2) = (w.0 - 1.0, w.1 - 1.0);
            let sharp = 10.0 * (s1 * c - s2 * c).powi(2) + 100.0 * (s1 * c + s2 * c).powi(2);
            let flat = (w.0 + 1.0).powi(2) + (w.1 + 1.0).powi(2);
            sharp - flat
        };
        (0..360)
            .filter_map(|deg| {
                let a = (deg as f64).to_radians();
                let at = |r: f64| (1.0 + r * a.cos(), 1.0 + r * a.sin());
                let (mut lo, mut hi) = (0.0, 4.0);
                if gap(at(hi)) < 0.0 {
                    return None;
                }
                for _ in 0..50 {
                    let mid = 0.5 * (lo + hi);
                    if gap(at(mid)) < 0.0 {
                        lo = mid
                    } else {
                        hi = mid
                    }
                }
                Some(at(lo))
            })
            .collect()
    })
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let [plane, rates] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Fill(1)]).areas(area);
    let seeds = app.info.as_ref().map_or(0, |i| i.replicates);
    let Some(d) = app.current() else { return };
    let run = d.toy_runs.get(&app.selected_seed);
    let title = match run {
        Some(r) => format!(
            " θ plane: {} seed {}/{} {} ([ ] seed) ",
            d.kind.label(),
            app.selected_seed,
            seeds,
            if r.success { "escaped" } else { "stayed" }
        ),
        None => format!(
            " θ plane: seed {} not finished yet ([ ] seed) ",
            app.selected_seed
        ),
    };
    let below = app.success_below;
    let traj: Vec<(f64, f64)> = run
        .map(|r| {
            r.trajectory
                .iter()
                .filter(|w| w[0].is_finite() && w[1].is_finite())
                .map(|w| (w[0], w[1]))
                .collect()
        })
        .unwrap_or_default();
    let traj_style = theme.series(app.selected).fg.unwrap_or(Color::Reset);
    let canvas = Canvas::default()
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(Line::styled(title, theme.title())),
        )
        .x_bounds([-BOUND, BOUND])
        .y_bounds([-BOUND, BOUND])
        .paint(move |ctx| {
            let edge_color = if theme.fg(Color::Gray).fg.is_some() {
                Color::Gray
            } else {
                Color::Reset
            };
            ctx.draw(&Points {
                coords: basin_edge(),
                color: edge_color,
            });
            for (x1, y1, x2, y2) in [(below, -BOUND, below, below), (-BOUND, below, below, below)] {
                ctx.draw(&CLine {
                    x1,
                    y1,
                    x2,
                    y2,
                    color: edge_color,
                });
            }
            ctx.print(1.05, 1.15, "sharp (1,1)");
            ctx.print(-1.0, -0.85, "flat (−1,−1)");
            ctx.draw(&Circle {
                x: 1.0,
                y: 1.0,
                radius: 0.04,
                color: edge_color,
            });
            ctx.draw(&Circle {
                x: -1.0,
                y: -1.0,
                radius: 0.04,
                color: edge_color,
            });
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
    let mut lines = vec![Line::styled("escaped to the flat basin", theme.dim())];
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
