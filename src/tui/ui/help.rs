use super::{centered, Theme};
use crate::tui::app::KEYS;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, theme: Theme) {
    let mut lines = key_lines(KEYS, theme);
    lines.push(Line::raw(""));
    lines.push(Line::styled(" Esc or ? closes this help", theme.dim()));
    let r = centered(area, 78, lines.len() as u16 + 2);
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(Line::styled(" keys ", theme.title())),
        ),
        r,
    );
}

/// One line a key: the key in the title style, then what it does.
pub fn key_lines(keys: &[(&str, &str)], theme: Theme) -> Vec<Line<'static>> {
    keys.iter()
        .map(|&(k, what)| {
            Line::from(vec![
                Span::styled(format!(" {k:<14}"), theme.title()),
                Span::raw(what.to_string()),
            ])
        })
        .collect()
}
