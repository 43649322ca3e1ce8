//! Rendering: a pure function of the [`App`] state onto a ratatui frame.

mod canvas;
mod detail;
mod header;
mod help;
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
        View::Overview => overview::draw(frame, body, app, theme),
        View::Detail => detail::draw(frame, body, app, theme),
    }
    if app.show_log {
        draw_log(frame, log, app, theme);
    }
    frame.render_widget(
        Paragraph::new(Line::styled(
            " Tab/←/→/1-8 dynamics · o overview/detail · m metric · [ ] seed · l log · ? help · q quit",
            theme.dim(),
        )),
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

fn draw_confirm(frame: &mut Frame, area: Rect, theme: Theme) {
    let r = centered(area, 56, 4);
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new("Stop the run? Workers stop after their current step and the record is flushed.\n  y / Enter: quit    any other key: keep running")
            .wrap(Wrap { trim: true })
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(Line::styled(" quit? ", theme.title())),
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
