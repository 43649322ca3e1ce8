//! Rendering: a pure function of the [`App`] state onto a ratatui frame.

mod canvas;
mod compare;
mod detail;
pub mod header;
pub mod help;
mod overview;
pub mod scale;

use super::app::{App, Overlay, View};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

/// Below this the layout cannot show a dynamics row and its charts.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

/// Colours, or none of them under `NO_COLOR`.
#[derive(Clone, Copy)]
pub struct Theme {
    mono: bool,
}

impl Theme {
    pub fn new(mono: bool) -> Self {
        Theme { mono }
    }

    pub fn fg(self, c: Color) -> Style {
        if self.mono {
            Style::default()
        } else {
            Style::default().fg(c)
        }
    }

    pub fn title(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn selected(self) -> Style {
        if self.mono {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default()
                .bg(Color::DarkGray)
                .add_modifier(Modifier::BOLD)
        }
    }

    pub fn dim(self) -> Style {
        if self.mono {
            Style::default()
        } else {
            Style::default().fg(Color::Gray)
        }
    }

    /// One colour per dynamics, stable across panels.
    pub fn series(self, index: usize) -> Style {
        const PALETTE: [Color; 8] = [
            Color::White,
            Color::Yellow,
            Color::LightBlue,
            Color::LightMagenta,
            Color::LightCyan,
            Color::LightGreen,
            Color::LightRed,
            Color::Green,
        ];
        self.fg(PALETTE[index % PALETTE.len()])
    }
}

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let theme = Theme::new(app.monochrome);
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "terminal too small: {}×{}, noiselab needs at least {MIN_WIDTH}×{MIN_HEIGHT}. \
             The run goes on; enlarge the window or press q.",
            area.width, area.height
        );
        frame.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let log_height = if app.show_log { 8 } else { 0 };
    let [head, body, log, foot] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(8),
        Constraint::Length(log_height),
        Constraint::Length(1),
    ])
    .areas(area);
    header::draw(frame, head, app, theme);
    match app.view {
        View::Compare => compare::draw(frame, body, app, theme),
        View::Overview => overview::draw(frame, body, app, theme),
        View::Detail => detail::draw(frame, body, app, theme),
    }
    if app.show_log {
        draw_log(frame, log, app, theme);
    }
    frame.render_widget(
        Paragraph::new(Line::styled(footer(app, foot.width), theme.dim())),
        foot,
    );
    match app.overlay {
        Overlay::Help => help::draw(frame, area, theme),
        Overlay::ConfirmQuit => draw_confirm(frame, area, theme),
        Overlay::None => {}
    }
    if app.stopping {
        let r = centered(area, 50, 3);
        frame.render_widget(Clear, r);
        frame.render_widget(
            Paragraph::new("Stopping workers and flushing the record …")
                .block(Block::default().borders(Borders::ALL)),
            r,
        );
    }
}

fn draw_log(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let n = area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = app
        .log
        .iter()
        .skip(app.log.len().saturating_sub(n))
        .map(|l| Line::raw(l.as_str()))
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(Line::styled(" log ", theme.title())),
        ),
        area,
    );
}

/// The key hints that fit `width`, "q quit" and "? help" always among them.
fn footer(app: &App, width: u16) -> String {
    let mut hints: Vec<&str> = vec!["v compare", "o overview", "Enter detail", "m metric"];
    if app.view == View::Overview {
        hints.push("c columns");
    }
    hints.push("Tab/1-8 dynamics");
    if app.info.as_ref().is_some_and(|i| i.replicates > 1) {
        hints.push("[ ] replicate");
    }
    hints.extend(["p PNG", "l log"]);
    let last = ["? help", "q quit"];
    let fits = |n: usize| {
        let line: Vec<&str> = hints[..n].iter().chain(&last).copied().collect();
        format!(" {}", line.join(" · "))
    };
    let mut n = hints.len();
    while n > 0 && Line::raw(fits(n)).width() > width as usize {
        n -= 1;
    }
    let mut line = fits(n);
    if let Some(notice) = &app.notice {
        let with = format!("{line} │ {notice}");
        if Line::raw(with.as_str()).width() <= width as usize {
            line = with;
        }
    }
    line
}

fn draw_confirm(frame: &mut Frame, area: Rect, theme: Theme) {
    let r = centered(area, 60, 6);
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new("Stop the run? Workers stop after their current step and the record is flushed; `noiselab resume` continues it.")
            .wrap(Wrap { trim: true })
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(Line::styled(" quit? ", theme.title()))
                    .title_bottom(Line::styled(
                        " y / Enter: quit · any other key: keep running ",
                        theme.title(),
                    )),
            ),
        r,
    );
}

/// A `w`×`h` rectangle centred in `area` (clipped to it).
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

/// Compact number: 4 significant digits, scientific outside [1e-3, 1e4).
pub fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e4).contains(&a) {
        format!("{v:.2e}")
    } else {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

/// A chart's axes from its points' bounds (x0, x1, y0, y1): x reaching at least
/// `planned`, neither axis empty, y padded by 4 % of its span (5 % of |y| when flat).
/// With `floor_at_zero` the padding never takes a non-negative y0 below zero.
pub fn chart_ranges(
    (x0, x1, y0, y1): (f64, f64, f64, f64),
    planned: f64,
    floor_at_zero: bool,
) -> (f64, f64, f64, f64) {
    let mut x1 = x1.max(planned);
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let (mut y0, mut y1) = (y0, y1);
    if y1 <= y0 {
        let pad = y0.abs().max(1e-12) * 0.05;
        y0 -= pad;
        y1 += pad;
    } else {
        let pad = (y1 - y0) * 0.04;
        y0 = if y0 >= 0.0 && floor_at_zero {
            (y0 - pad).max(0.0)
        } else {
            y0 - pad
        };
        y1 += pad;
    }
    (x0, x1, y0, y1)
}

/// The x and y range of some points: (x0, x1, y0, y1); infinite when there are none.
pub fn bounds(points: impl IntoIterator<Item = (f64, f64)>) -> (f64, f64, f64, f64) {
    points.into_iter().fold(
        (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ),
        |(x0, x1, y0, y1), (x, y)| (x0.min(x), x1.max(x), y0.min(y), y1.max(y)),
    )
}

/// `label` in at most `width` columns by one rule: words of more than four letters are
/// cut to their first three and a dot, longest first, until it fits; a label still too
/// long (one unbreakable word) keeps its head and an ellipsis.
pub fn abbreviate(label: &str, width: usize) -> String {
    let fits = |s: &str| Line::raw(s).width() <= width;
    if fits(label) {
        return label.to_string();
    }
    let mut words: Vec<String> = label.split(' ').map(str::to_string).collect();
    loop {
        let longest = words
            .iter()
            .enumerate()
            .filter(|(_, w)| w.chars().count() > 4 && !w.ends_with('.'))
            .max_by_key(|(_, w)| w.chars().count())
            .map(|(i, _)| i);
        let Some(i) = longest else { break };
        words[i] = format!("{}.", words[i].chars().take(3).collect::<String>());
        let joined = words.join(" ");
        if fits(&joined) {
            return joined;
        }
    }
    let mut out = String::new();
    for c in label.chars() {
        if !fits(&format!("{out}{c}…")) {
            break;
        }
        out.push(c);
    }
    format!("{out}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_abbreviated_by_the_rule() {
        assert_eq!(abbreviate("test acc", 10), "test acc");
        assert_eq!(abbreviate("sharpness", 6), "sha.");
        assert_eq!(abbreviate("noise norm", 9), "noi. norm");
        assert!(Line::raw(abbreviate("Tr(HΣ)/Tr(HΣ̄)", 8).as_str()).width() <= 8);
    }
}
