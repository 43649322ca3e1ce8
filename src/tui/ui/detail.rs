//! The selected dynamics in depth: the chosen metric over iterations, Tr(HΣ) against the
//! isotropic Tr(HΣ̄), the latest spectra, and for the toy the θ plane.

use super::{canvas, fmt_value, Theme};
use crate::events::Metric;
use crate::tui::app::{App, DynamicsState};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, GraphType, Paragraph};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let Some(d) = app.current() else {
        frame.render_widget(Paragraph::new("waiting for the run to start …"), area);
        return;
    };
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    let [metric_area, trace_area] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
    let is_toy = app.info.as_ref().is_some_and(|i| i.plane.is_some());
    let [spectrum_area, extra_area] = Layout::horizontal([
        Constraint::Percentage(if is_toy { 30 } else { 100 }),
        Constraint::Fill(1),
    ])
    .areas(bottom);

    if let Some(m) = app.selected_metric() {
        let color = theme.series(app.selected);
        chart(
            frame,
            app,
            metric_area,
            theme,
            &format!(
                " {}{} — {} (m: next metric) ",
                d.kind.label(),
                app.replicate_label()
                    .map_or(String::new(), |l| format!(", {l}")),
                app.def(m).label
            ),
            &[(m, d, color)],
            app.def(m).log_scale,
        );
    }
    let trace: Vec<(Metric, &DynamicsState, ratatui::style::Style)> = [
        (Metric::TR_H_SIGMA, theme.fg(Color::LightRed)),
        (Metric::TR_H_SIGMA_ISO, theme.fg(Color::LightBlue)),
        (Metric::TR_H_NOISE, theme.fg(Color::Yellow)),
    ]
    .into_iter()
    .filter(|(m, _)| d.series.contains_key(m))
    .map(|(m, s)| (m, d, s))
    .collect();
    chart(
        frame,
        app,
        trace_area,
        theme,
        " Tr(HΣ) vs isotropic Tr(HΣ̄) ",
        &trace,
        true,
    );
    spectrum(frame, spectrum_area, d, theme);
    if is_toy {
        canvas::draw(frame, extra_area, app, theme);
    }
}

/// A line chart of one or more series with labelled axes; `log` plots log10 of
/// positive series (and says so on the axis).
fn chart(
    frame: &mut Frame,
    app: &App,
    area: Rect,
    theme: Theme,
    title: &str,
    series: &[(Metric, &DynamicsState, ratatui::style::Style)],
    log: bool,
) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Line::styled(title.to_string(), theme.title()));
    let raw: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|(m, d, _)| {
            d.series
                .get(m)
                .map(|s| s.points.clone())
                .unwrap_or_default()
        })
        .collect();
    let log = log && raw.iter().flatten().all(|p| p.1 > 0.0) && raw.iter().any(|r| !r.is_empty());
    let data: Vec<Vec<(f64, f64)>> = raw
        .into_iter()
        .map(|pts| {
            pts.into_iter()
                .filter(|p| p.1.is_finite())
                .map(|(x, y)| (x, if log { y.log10() } else { y }))
                .collect()
        })
        .collect();
    let all: Vec<&(f64, f64)> = data.iter().flatten().collect();
    if all.is_empty() {
        frame.render_widget(Paragraph::new(" no data yet").block(block), area);
        return;
    }
    let (x0, mut x1, mut y0, mut y1) = super::bounds(all.iter().map(|p| **p));
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        let pad = y0.abs().max(1e-12) * 0.1;
        y0 -= pad;
        y1 += pad;
    }
    let y_label = |v: f64| {
        if log {
            format!("1e{v:.1}")
        } else {
            fmt_value(v)
        }
    };
    let datasets: Vec<Dataset> = series
        .iter()
        .zip(&data)
        .map(|((m, _, style), pts)| {
            Dataset::default()
                .name(app.def(*m).label)
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(*style)
                .data(pts)
        })
        .collect();
    let chart = Chart::new(datasets)
        .block(block)
        .x_axis(
            Axis::default()
                .title("iteration")
                .bounds([x0, x1])
                .labels([fmt_value(x0), fmt_value((x0 + x1) / 2.0), fmt_value(x1)])
                .style(theme.dim()),
        )
        .y_axis(
            Axis::default()
                .title(if log { "log10" } else { "value" })
                .bounds([y0, y1])
                .labels([y_label(y0), y_label((y0 + y1) / 2.0), y_label(y1)])
                .style(theme.dim()),
        );
    frame.render_widget(chart, area);
}

/// Latest eigenvalues as horizontal bars with their real values; log-scaled bars when
/// they span more than two decades.
fn spectrum(frame: &mut Frame, area: Rect, d: &DynamicsState, theme: Theme) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Line::styled(" latest spectra ", theme.title()));
    let inner_w = area.width.saturating_sub(2) as usize;
    let mut lines = vec![];
    for (name, spec, color) in [
        ("H", &d.hessian_spectrum, Color::LightRed),
        ("Cov n", &d.noise_spectrum, Color::Yellow),
    ] {
        let Some((iteration, values)) = spec else {
            continue;
        };
        let top = values.iter().copied().fold(0.0f64, f64::max);
        let positive_min = values
            .iter()
            .copied()
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        let log = top > 0.0 && top / positive_min > 100.0;
        lines.push(Line::styled(
            format!(
                "{name} at iteration {iteration}{}",
                if log { " (log bars)" } else { "" }
            ),
            theme.dim(),
        ));
        let bar_w = inner_w.saturating_sub(16);
        for (j, &v) in values.iter().enumerate() {
            let frac = if top <= 0.0 || v <= 0.0 {
                0.0
            } else if log {
                ((v / positive_min).log10() / (top / positive_min).log10()).clamp(0.0, 1.0) * 0.9
                    + 0.1
            } else {
                v / top
            };
            let n = (frac * bar_w as f64).round() as usize;
            lines.push(Line::from(vec![
                Span::raw(format!("{:>3} {:>10} ", j + 1, fmt_value(v))),
                Span::styled("█".repeat(n), theme.fg(color)),
            ]));
        }
    }
    if lines.is_empty() {
        lines.push(Line::raw(" no spectrum yet"));
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
