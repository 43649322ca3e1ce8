//! Every dynamics at once: one row each with its state, health and progress, and the
//! metric columns that fit the width (mission metrics first, `c` pages through the
//! rest), each a sparkline with its real last value and range. No number is cut: a
//! column that cannot hold one is not drawn.

use super::scale::{scale, TOP};
use super::{abbreviate, Theme};
use crate::events::{Health, Metric, Task};
use crate::numbers::fit as fmt_fit;
use crate::progress::hms as hms_s;
use crate::progress::Snapshot;
use crate::tui::app::{App, DynStatus, DynamicsState};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Sparkline};
use ratatui::Frame;

/// The dynamics column: number, name (17), state symbol and flag.
pub const NAME_WIDTH: u16 = 31;
/// Narrowest metric column: a sparkline of 6 and a 7-column number.
pub const MIN_COLUMN: u16 = 15;
/// A metric column shows its min/max line from this width.
const RANGE_WIDTH: u16 = 18;

/// The symbol of a dynamics' state.
pub fn status_symbol(d: &DynamicsState, theme: Theme) -> Span<'static> {
    match &d.status {
        DynStatus::Waiting => Span::styled("·", theme.dim()),
        DynStatus::Running => Span::styled("●", theme.fg(Color::Green)),
        DynStatus::Finished => Span::styled("✓", theme.fg(Color::Cyan)),
        DynStatus::Failed(_) => Span::styled("✗", theme.fg(Color::Red)),
    }
}

/// A dynamics' flag: failed, diverged, collapsed or stalled (worst first), or none.
pub fn flag(d: &DynamicsState, snap: &Snapshot, theme: Theme) -> Option<Span<'static>> {
    let red = theme.fg(Color::Red);
    let yellow = theme.fg(Color::Yellow);
    if matches!(d.status, DynStatus::Failed(_)) {
        return Some(Span::styled("failed", red));
    }
    match d.health.as_ref().map(|h| h.0) {
        Some(Health::Diverged) => return Some(Span::styled("diverged", red)),
        Some(Health::Collapsed) => return Some(Span::styled("collapsed", yellow)),
        _ => {}
    }
    if d.diverged > 0 {
        return Some(Span::styled(format!("{} div", d.diverged), red));
    }
    let stalled = snap
        .tracks
        .iter()
        .any(|t| t.phase.is_none() && t.dynamics == d.kind && t.stalled);
    stalled.then(|| Span::styled("stalled", yellow))
}

/// Steps done of the total over a dynamics' trajectories, their summed rate, the
/// latest ETA, and the task of one that is measuring.
pub fn progress_line(app: &App, d: &DynamicsState, snap: &Snapshot) -> String {
    let tracks: Vec<_> = snap
        .tracks
        .iter()
        .filter(|t| t.phase.is_none() && t.dynamics == d.kind)
        .collect();
    if tracks.is_empty() {
        let info = app.info.as_ref();
        return match (d.success_rate(), info, &snap.phase) {
            (Some(rate), Some(i), _) if i.replicates > 1 && i.replicate_labels.is_empty() => {
                format!(
                    "{}/{} {}s, esc {rate:.3}",
                    d.done, i.replicates, i.replicate_noun
                )
            }
            (_, _, Some((name, f, _))) => format!("{name} {:.0}%", 100.0 * f),
            _ if d.status == DynStatus::Waiting => "waiting".into(),
            _ => format!("{} done", d.done),
        };
    }
    let step: u64 = tracks.iter().map(|t| t.step).sum();
    let steps: u64 = tracks.iter().map(|t| t.steps).sum();
    let mut out = format!("{step}/{steps}");
    if d.status == DynStatus::Finished || tracks.iter().all(|t| t.done) {
        return out;
    }
    if let Some(t) = tracks.iter().find(|t| !t.done && t.task != Task::Steps) {
        return format!("{out} ⟳ {}", t.task.describe());
    }
    let rate: f64 = tracks.iter().filter_map(|t| t.rate).sum();
    if rate > 0.0 {
        out += &format!(" {} it/s", crate::progress::fmt_rate(rate));
    }
    if let Some(eta) = tracks.iter().filter_map(|t| t.eta_s).reduce(f64::max) {
        out += &format!(" {}", hms_s(eta));
    }
    out
}

/// The metrics shown at this width: a page of the priority order.
pub fn columns(app: &App, width: u16) -> (Vec<Metric>, usize, usize) {
    let all = app.metrics();
    if all.is_empty() {
        return (vec![], 0, 0);
    }
    let fit = (width.saturating_sub(NAME_WIDTH) / MIN_COLUMN).max(1) as usize;
    let per_page = fit.min(all.len());
    let pages = all.len().div_ceil(per_page);
    let page = app.column_offset % pages;
    let start = page * per_page;
    let shown = all[start..(start + per_page).min(all.len())].to_vec();
    (shown, start, all.len())
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let inner_width = area.width.saturating_sub(2);
    let (metrics, start, total) = columns(app, inner_width);
    let mut title = " overview".to_string();
    if let Some(l) = app
        .replicate_label()
        .filter(|_| app.info.as_ref().is_some_and(|i| i.replicates > 1))
    {
        title += &format!(": {l} ([ ] switch)");
    }
    if total > metrics.len() {
        title += &format!(
            " · metrics {}–{} of {total} (c: more)",
            start + 1,
            start + metrics.len()
        );
    }
    title += " ";
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Line::styled(title, theme.title()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let snap = app.snapshot();
    let row_height =
        (inner.height.saturating_sub(1) / app.dynamics.len().max(1) as u16).clamp(2, 5);
    let mut rows = vec![Constraint::Length(1)];
    rows.extend(app.dynamics.iter().map(|_| Constraint::Length(row_height)));
    rows.push(Constraint::Min(0));
    let row_areas = Layout::vertical(rows).split(inner);
    let mut cols = vec![Constraint::Length(NAME_WIDTH)];
    cols.extend(metrics.iter().map(|_| Constraint::Fill(1)));

    let head = Layout::horizontal(cols.clone()).split(row_areas[0]);
    frame.render_widget(
        Paragraph::new(Line::styled("  dynamics", theme.dim())),
        head[0],
    );
    for (i, m) in metrics.iter().enumerate() {
        let cell = head[i + 1];
        let label = abbreviate(&app.def(*m).label, cell.width.saturating_sub(1) as usize);
        frame.render_widget(
            Paragraph::new(Line::styled(format!(" {label}"), theme.title())),
            cell,
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
        let name_style = if row == app.selected {
            theme.selected()
        } else {
            theme.series(row)
        };
        let mut first = vec![
            Span::styled(format!("{} {:<17} ", row + 1, d.kind.label()), name_style),
            status_symbol(d, theme),
        ];
        if let Some(f) = flag(d, &snap, theme) {
            first.push(Span::raw(" "));
            first.push(f);
        }
        let progress = progress_line(app, d, &snap);
        let max = NAME_WIDTH as usize - 3;
        let progress = if progress.chars().count() > max {
            format!("{}…", progress.chars().take(max - 1).collect::<String>())
        } else {
            progress
        };
        frame.render_widget(
            Paragraph::new(vec![
                Line::from(first),
                Line::styled(format!("  {progress}"), theme.dim()),
            ]),
            cells[0],
        );
        for (i, m) in metrics.iter().enumerate() {
            metric_cell(frame, cells[i + 1], app, d, *m, theme.series(row), theme);
        }
    }
}

/// One metric of one dynamics: sparkline and last value; min ↓ and max ↑ below when
/// the cell is wide and tall enough.
fn metric_cell(
    frame: &mut Frame,
    cell: Rect,
    app: &App,
    d: &DynamicsState,
    metric: Metric,
    style: Style,
    theme: Theme,
) {
    const VALUE: u16 = 8;
    let values: Vec<f64> = d
        .series
        .get(&metric)
        .map(|s| s.points.iter().map(|p| p.1).collect())
        .unwrap_or_default();
    let spark_height = cell.height.saturating_sub(1).max(1);
    let spark_width = cell.width.saturating_sub(VALUE + 1);
    let Some(s) = scale(&values, spark_width as usize, app.def(metric).log_scale) else {
        frame.render_widget(
            Paragraph::new(Line::styled(" ·", theme.dim())),
            Rect { height: 1, ..cell },
        );
        return;
    };
    frame.render_widget(
        Sparkline::default().data(&s.bars).max(TOP).style(style),
        Rect {
            x: cell.x + 1,
            width: spark_width,
            height: spark_height,
            ..cell
        },
    );
    frame.render_widget(
        Paragraph::new(format!("{:>7}", fmt_fit(s.last))),
        Rect {
            x: cell.x + 1 + spark_width,
            y: cell.y + spark_height - 1,
            width: VALUE.min(cell.width),
            height: 1,
        },
    );
    if cell.height >= 2 && cell.width >= RANGE_WIDTH {
        let range = format!(
            " ↓{} ↑{}{}",
            fmt_fit(s.min),
            fmt_fit(s.max),
            if s.log && cell.width >= RANGE_WIDTH + 4 {
                " log"
            } else {
                ""
            }
        );
        if Line::raw(range.as_str()).width() <= cell.width as usize {
            frame.render_widget(
                Paragraph::new(Line::styled(range, theme.dim())),
                Rect {
                    y: cell.y + spark_height,
                    height: 1,
                    ..cell
                },
            );
        }
    }
}
