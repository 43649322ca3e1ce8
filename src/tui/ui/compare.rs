//! The paper's Fig. 4 live: one chart per metric with every dynamics overlaid (each in
//! its colour, and marked along its curve by its number so the chart reads without
//! colour too), the x-axis in iterations with θ_GD marked, a log axis when the values
//! span decades, and a legend with each dynamics' last value and health. A second
//! chart (the next metric) sits beside the first when the width allows.

use super::overview::{flag, status_symbol};
use super::Theme;
use crate::events::Metric;
use crate::numbers::fit as fmt_fit;
use crate::tui::app::App;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::canvas::{Canvas, Line as CLine};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

/// Width of the legend column.
const LEGEND: u16 = 31;
/// Width from which two charts sit side by side (each at least 60 wide).
const TWO_CHARTS: u16 = 150;
/// Width of the y-axis labels.
const Y_LABELS: u16 = 8;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let metrics = app.metrics();
    if metrics.is_empty() || app.dynamics.is_empty() {
        frame.render_widget(
            Paragraph::new(" waiting for the run to start …")
                .block(Block::default().borders(Borders::ALL)),
            area,
        );
        return;
    }
    let first = metrics[app.metric_cursor % metrics.len()];
    let legend_width = if area.width >= 100 { LEGEND } else { 24 };
    let [charts, legend] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(legend_width)]).areas(area);
    if charts.width >= TWO_CHARTS - legend_width && metrics.len() > 1 {
        let second = metrics[(app.metric_cursor + 1) % metrics.len()];
        let [a, b] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .areas(charts);
        chart(frame, a, app, first, theme);
        chart(frame, b, app, second, theme);
    } else {
        chart(frame, charts, app, first, theme);
    }
    draw_legend(frame, legend, app, first, theme);
}

/// Whether `metric` is drawn on a log axis: it is a quantity that spans decades, every
/// value is positive, and they do span more than a decade here.
fn log_axis(app: &App, metric: Metric) -> bool {
    if !app.def(metric).log_scale {
        return false;
    }
    let values = app
        .dynamics
        .iter()
        .filter_map(|d| d.series.get(&metric))
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite());
    let (mut lo, mut hi, mut any) = (f64::INFINITY, 0.0f64, false);
    for v in values {
        if v <= 0.0 {
            return false;
        }
        lo = lo.min(v);
        hi = hi.max(v);
        any = true;
    }
    any && hi / lo > 10.0
}

fn chart(frame: &mut Frame, area: Rect, app: &App, metric: Metric, theme: Theme) {
    let def = app.def(metric);
    let log = log_axis(app, metric);
    let block = Block::default().borders(Borders::ALL);
    let inner = block.inner(area);
    let y = |v: f64| if log { v.log10() } else { v };
    let series: Vec<(usize, Vec<(f64, f64)>)> = app
        .dynamics
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let s = d.series.get(&metric)?;
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .filter(|p| p.1.is_finite() && (!log || p.1 > 0.0))
                .map(|&(x, v)| (x, y(v)))
                .collect();
            (!pts.is_empty()).then_some((i, pts))
        })
        .collect();
    let zoomed = series.iter().any(|(_, pts)| pts.iter().any(|p| p.0 > 0.0))
        && app
            .info
            .as_ref()
            .and_then(|i| i.x_marks.last())
            .is_some_and(|(mark, _)| {
                !app.whole_run
                    && series
                        .iter()
                        .any(|(_, pts)| pts.iter().any(|p| p.0 >= *mark as f64))
            });
    let zoom = match app.info.as_ref().and_then(|i| i.x_marks.last()) {
        Some((_, name)) if zoomed => format!(" · from {name} (z: whole run)"),
        Some((_, name)) if app.whole_run => format!(" · whole run (z: from {name})"),
        _ => String::new(),
    };
    let title = format!(
        " {}{} — every dynamics{zoom} ",
        def.label,
        if log { ", log axis" } else { "" }
    );
    frame.render_widget(block.title(Line::styled(title, theme.title())), area);
    if series.is_empty() || inner.width <= Y_LABELS + 4 || inner.height < 4 {
        // Never silent: what the run is doing while there is nothing to draw.
        frame.render_widget(
            Paragraph::new(format!(
                " no {} measured yet · {}",
                def.label,
                super::header::progress_text(app)
            ))
            .wrap(ratatui::widgets::Wrap { trim: true }),
            inner,
        );
        return;
    }
    let marks: Vec<(f64, String)> = app
        .info
        .as_ref()
        .map(|i| {
            i.x_marks
                .iter()
                .map(|(x, l)| (*x as f64, l.clone()))
                .collect()
        })
        .unwrap_or_default();
    // From θ_GD on (with a margin before it) once the dynamics have data there, unless
    // the whole run is asked for (z): phase 2 is what the chart compares.
    let last_x = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .fold(f64::NEG_INFINITY, f64::max);
    // The x-axis runs to the run's last iteration as planned: curves fill it as they go.
    let planned = app.info.as_ref().map_or(0.0, |i| i.iterations as f64);
    let from = match marks.last() {
        Some(&(mark, _)) if !app.whole_run && last_x >= mark => {
            mark - 0.1 * (planned.max(last_x) - mark)
        }
        _ => f64::NEG_INFINITY,
    };
    let series: Vec<(usize, Vec<(f64, f64)>)> = series
        .into_iter()
        .map(|(i, pts)| {
            (
                i,
                pts.into_iter().filter(|p| p.0 >= from).collect::<Vec<_>>(),
            )
        })
        .filter(|(_, pts)| !pts.is_empty())
        .collect();
    let (x0, x1, y0, y1) = super::bounds(series.iter().flat_map(|(_, pts)| pts.iter().copied()));
    let x0 = if from.is_finite() { x0.min(from) } else { x0 };
    // A padding never takes a positive quantity below zero.
    let (x0, x1, y0, y1) = super::chart_ranges((x0, x1, y0, y1), planned, true);
    let [plot_row, x_row] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(1)]).areas(inner);
    let [y_col, plot] =
        Layout::horizontal([Constraint::Length(Y_LABELS), Constraint::Fill(1)]).areas(plot_row);
    // y labels: top, middle, bottom, in the metric's own units.
    let label = |v: f64| fmt_fit(if log { 10f64.powf(v) } else { v });
    let rows = y_col.height;
    let mut lines = vec![Line::raw(""); rows as usize];
    if rows > 0 {
        lines[0] = Line::styled(format!("{:>7}", label(y1)), theme.dim());
        lines[(rows as usize - 1) / 2] =
            Line::styled(format!("{:>7}", label((y0 + y1) / 2.0)), theme.dim());
        lines[rows as usize - 1] = Line::styled(format!("{:>7}", label(y0)), theme.dim());
    }
    frame.render_widget(Paragraph::new(lines), y_col);
    // x labels: the first and last iteration and the middle, as the paper's axes.
    let x_text = {
        let w = plot.width as usize;
        let (a, m, b) = (
            format!("{}", x0.round() as i64),
            format!("{}", ((x0 + x1) / 2.0).round() as i64),
            format!("{}", x1.round() as i64),
        );
        let mut row = vec![' '; w];
        let mut put = |at: usize, s: &str| {
            for (k, c) in s.chars().enumerate() {
                if let Some(slot) = row.get_mut(at + k) {
                    *slot = c;
                }
            }
        };
        put(0, &a);
        if w > a.len() + m.len() + b.len() + 6 {
            put(w / 2 - m.len() / 2, &m);
        }
        put(w.saturating_sub(b.len()), &b);
        let row: String = row.into_iter().collect();
        format!("{:>w$}{row}", "it ", w = Y_LABELS as usize)
    };
    frame.render_widget(Paragraph::new(Line::styled(x_text, theme.dim())), x_row);

    // At most two points per braille dot column: a curve of thousands of points costs
    // no more to draw than the chart can show (bucket means).
    let dots = 2 * plot.width.max(1) as usize;
    let series: Vec<(usize, Vec<(f64, f64)>)> = series
        .into_iter()
        .map(|(i, pts)| {
            if pts.len() <= 2 * dots {
                return (i, pts);
            }
            let per = pts.len().div_ceil(dots);
            let thin = pts
                .chunks(per)
                .map(|c| {
                    let n = c.len() as f64;
                    (
                        c.iter().map(|p| p.0).sum::<f64>() / n,
                        c.iter().map(|p| p.1).sum::<f64>() / n,
                    )
                })
                .collect();
            (i, thin)
        })
        .collect();
    let mono = theme.fg(Color::Gray).fg.is_none();
    let colour = |i: usize| theme.series(i).fg.unwrap_or(Color::Reset);
    let width = plot.width.max(1) as f64;
    // Each curve carries its number at a few places, staggered between dynamics.
    let per_curve = ((plot.width / 24) as usize).clamp(1, 6);
    let n = app.dynamics.len().max(1);
    let canvas = Canvas::default()
        .marker(Marker::Braille)
        .x_bounds([x0, x1])
        .y_bounds([y0, y1])
        .paint(move |ctx| {
            for (x, name) in &marks {
                if *x >= x0 && *x <= x1 {
                    let steps = 40;
                    for k in (0..steps).step_by(2) {
                        let (a, b) = (
                            y0 + (y1 - y0) * k as f64 / steps as f64,
                            y0 + (y1 - y0) * (k + 1) as f64 / steps as f64,
                        );
                        ctx.draw(&CLine {
                            x1: *x,
                            y1: a,
                            x2: *x,
                            y2: b,
                            color: if mono { Color::Reset } else { Color::Gray },
                        });
                    }
                    // The name right of the line, or left of it at the right edge.
                    let cell = (x1 - x0) / width;
                    let at = if *x > x0 + 0.85 * (x1 - x0) {
                        *x - (name.chars().count() as f64 + 1.0) * cell
                    } else {
                        *x + cell
                    };
                    ctx.print(at, y1, Line::raw(name.clone()));
                }
            }
            for (i, pts) in &series {
                let c = colour(*i);
                if pts.len() == 1 {
                    ctx.draw(&CLine {
                        x1: pts[0].0,
                        y1: pts[0].1,
                        x2: pts[0].0,
                        y2: pts[0].1,
                        color: c,
                    });
                }
                for w in pts.windows(2) {
                    ctx.draw(&CLine {
                        x1: w[0].0,
                        y1: w[0].1,
                        x2: w[1].0,
                        y2: w[1].1,
                        color: c,
                    });
                }
            }
            ctx.layer();
            for (i, pts) in &series {
                let (first, last) = (pts[0].0, pts[pts.len() - 1].0);
                for k in 0..per_curve {
                    let f = (k as f64 + (*i as f64 + 0.5) / n as f64) / per_curve as f64;
                    let x = first + f * (last - first);
                    // On the curve at x: between the two points around it.
                    let j = pts.partition_point(|p| p.0 < x);
                    let v = match (j.checked_sub(1).map(|a| pts[a]), pts.get(j)) {
                        (Some(a), Some(b)) if b.0 > a.0 => {
                            a.1 + (b.1 - a.1) * (x - a.0) / (b.0 - a.0)
                        }
                        (_, Some(b)) => b.1,
                        (Some(a), None) => a.1,
                        (None, None) => continue,
                    };
                    ctx.print(x, v, Span::styled(format!("{}", i + 1), theme.series(*i)));
                }
            }
        });
    frame.render_widget(canvas, plot);
}

fn draw_legend(frame: &mut Frame, area: Rect, app: &App, metric: Metric, theme: Theme) {
    let snap = app.snapshot();
    let inner_w = area.width.saturating_sub(2) as usize;
    let mut lines = vec![];
    for (i, d) in app.dynamics.iter().enumerate() {
        let name_style = if i == app.selected {
            theme.selected()
        } else {
            theme.series(i)
        };
        let last = d
            .series
            .get(&metric)
            .and_then(|s| s.last())
            .map_or("·".to_string(), fmt_fit);
        let name_w = inner_w.saturating_sub(2 + 2 + 8).min(17);
        let label = super::abbreviate(d.kind.label(), name_w);
        let mut spans = vec![
            Span::styled(format!("{} ", i + 1), theme.series(i)),
            Span::styled(format!("{label:<name_w$}"), name_style),
            Span::raw(" "),
            status_symbol(d, theme),
            Span::raw(format!("{last:>8}")),
        ];
        lines.push(Line::from(std::mem::take(&mut spans)));
        if let Some(f) = flag(d, &snap, theme) {
            lines.push(Line::from(vec![Span::raw("    "), f]));
        }
    }
    let phase = super::header::progress_text(app);
    lines.push(Line::raw(""));
    lines.push(Line::styled(phase, theme.dim()));
    // What a dynamics is computing, when it is not stepping.
    for t in snap.tracks.iter().filter(|t| !t.done) {
        if t.task != crate::events::Task::Steps {
            let who = t
                .phase
                .clone()
                .unwrap_or_else(|| t.dynamics.label().to_string());
            lines.push(Line::styled(
                format!("{who}: {}", t.task.describe()),
                theme.dim(),
            ));
        }
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(ratatui::widgets::Wrap { trim: false })
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(Line::styled(" legend: last value ", theme.title())),
            ),
        area,
    );
}
