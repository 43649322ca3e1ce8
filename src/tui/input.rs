//! Terminal input: crossterm key events mapped to [`Key`], read on their own thread so
//! the render loop never waits on the keyboard.

use super::app::Key;
use crossbeam_channel::{Receiver, Sender};
use ratatui::crossterm::event::{
    self, Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the input thread reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    Key(Key),
    Resize,
}

pub fn map_key(k: KeyEvent) -> Option<Key> {
    if k.kind == KeyEventKind::Release {
        return None;
    }
    if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
        return Some(Key::CtrlC);
    }
    Some(match k.code {
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::Esc => Key::Esc,
        KeyCode::Enter => Key::Enter,
        _ => return None,
    })
}

/// Reads terminal events until `stop` is set or the receiver goes away.
pub fn spawn(stop: Arc<AtomicBool>) -> Receiver<Input> {
    spawn_reader("input", stop, |k| map_key(k).map(Input::Key), Input::Resize)
}

/// Reads terminal events on thread `name` until `stop` is set: keys through `map`, a
/// resize as `resized`. The receiver disconnects when the thread ends.
pub fn spawn_reader<T: Clone + Send + 'static>(
    name: &str,
    stop: Arc<AtomicBool>,
    map: fn(KeyEvent) -> Option<T>,
    resized: T,
) -> Receiver<T> {
    let (tx, rx): (Sender<T>, Receiver<T>) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match event::poll(Duration::from_millis(100)) {
                    Ok(true) => {
                        let input = match event::read() {
                            Ok(TermEvent::Key(k)) => map(k),
                            Ok(TermEvent::Resize(..)) => Some(resized.clone()),
                            Ok(_) => None,
                            Err(_) => return,
                        };
                        if let Some(i) = input {
                            if tx.send(i).is_err() {
                                return;
                            }
                        }
                    }
                    Ok(false) => {}
                    // The terminal is gone (e.g. SSH dropped): nothing more to read.
                    Err(_) => return,
                }
            }
        })
        .expect("spawning an input thread");
    rx
}
