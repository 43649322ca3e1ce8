//! Every dynamics at once: one two-line row each, a sparkline per metric with its real
//! last value, min and max.

use super::scale::{scale, TOP};
use super::{fmt_value, Theme};
use crate::tui::app::{App, DynStatus, DynamicsState};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Sparkline};
use ratatui::Frame;

const NAME_WIDTH: u16 = 30;
const LAST_WIDTH: u16 = 9;

pub fn status_span(d: &DynamicsState, theme: Theme) -> Span<'static> {
    match &d.status {
        DynStatus::Waiting => Span::styled("· waiting", theme.dim()),
        DynStatus::Running => Span::styled("● running", theme.fg(Color::Green)),
        DynStatus::Finished => Span::styled("✓ finished", theme.fg(Color::Cyan)),
        DynStatus::Failed(_) => Span::styled("✗ failed", theme.fg(Color::Red)),
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let title = match app.replicate_label() {
        Some(l) => format!(" overview: {l} ([ ] switch) "),
        None => " overview ".to_string(),
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Line::styled(title, theme.title()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let metrics = app.metrics();
    // Taller rows (taller sparklines) when the terminal has room.
    let row_height =
        (inner.height.saturating_sub(1) / app.dynamics.len().max(1) as u16).clamp(2, 5);
    let mut rows = vec![Constraint::Length(1)];
    rows.extend(app.dynamics.iter().map(|_| Constraint::Length(row_height)));
    rows.push(Constraint::Min(0));
    let row_areas = Layout::vertical(rows).split(inner);
    let mut cols = vec![Constraint::Length(NAME_WIDTH)];
    cols.extend(metrics.iter().map(|_| Constraint::Fill(1)));

    // Column titles.
    let head = Layout::horizontal(cols.clone()).split(row_areas[0]);
    frame.render_widget(
        Paragraph::new(Line::styled("dynamics", theme.dim())),
        head[0],
    );
    for (i, m) in metrics.iter().enumerate() {
        frame.render_widget(
            Paragraph::new(Line::styled(
                format!(" {}", app.def(*m).label),
                theme.title(),
            )),
            head[i + 1],
        );
    }

    for (row, d) in app.dynamics.iter().enumerate() {
        let Some(&area) = row_areas.get(row + 1) else {
            break;
        };
        if area.height == 0 {
            break;
        }
        let cells = Layout::horizontal(cols.clone()).split(area);
        let style = if row == app.selected {
            theme.selected()
        } else {
            theme.series(row)
        };
        let progress = match (d.success_rate(), &app.info) {
            (_, Some(info)) if !info.replicate_labels.is_empty() => {
                format!("  {}/{} trajectories done", d.done, info.replicates)
            }
            (Some(rate), Some(info)) if info.replicates > 1 => {
                format!("  {}/{} seeds, esc {rate:.3}", d.done, info.replicates)
            }
            _ => format!("  {} done", d.done),
        };
        let diverged = if d.diverged > 0 {
            format!(" {} div", d.diverged)
        } else {
            String::new()
        };
        frame.render_widget(
            Paragraph::new(vec![
                Line::from(vec![
                    Span::styled(format!("{} {:<18}", row + 1, d.kind.label()), style),
                    status_span(d, theme),
                ]),
                Line::from(vec![
                    Span::raw(progress),
                    Span::styled(diverged, theme.fg(Color::Red)),
                ]),
            ]),
            cells[0],
        );
        for (i, m) in metrics.iter().enumerate() {
            let cell = cells[i + 1];
            let spark_height = cell.height.saturating_sub(1).max(1);
            let [spark_area, last_area] =
                Layout::horizontal([Constraint::Fill(1), Constraint::Length(LAST_WIDTH)]).areas(
                    Rect {
                        height: spark_height,
                        ..cell
                    },
                );
            let values: Vec<f64> = d
                .series
                .get(m)
                .map(|s| s.points.iter().map(|p| p.1).collect())
                .unwrap_or_default();
            match scale(
                &values,
                spark_area.width.saturating_sub(1) as usize,
                app.def(*m).log_scale,
            ) {
                Some(s) => {
                    frame.render_widget(
                        Sparkline::default()
                            .data(&s.bars)
                            .max(TOP)
                            .style(theme.series(row)),
                        Rect {
                            x: spark_area.x + 1,
                            width: spark_area.width.saturating_sub(1),
                            ..spark_area
                        },
                    );
                    frame.render_widget(
                        Paragraph::new(format!(" {}", fmt_value(s.last))),
                        Rect {
                            height: 1,
                            ..last_area
                        },
                    );
                    let range = format!(
                        " ↓{} ↑{}{}",
                        fmt_value(s.min),
                        fmt_value(s.max),
                        if s.log { " log" } else { "" }
                    );
                    frame.render_widget(
                        Paragraph::new(Line::styled(range, theme.dim())),
                        Rect {
                            y: cell.y + spark_height,
                            height: 1,
                            ..cell
                        },
                    );
                }
                None => frame.render_widget(Paragraph::new(Line::styled(" —", theme.dim())), cell),
            }
        }
    }
}
