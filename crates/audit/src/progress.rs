//! Progress on standard error while the long checks wait: a line rewritten in
//! place on a terminal, a line every 30 seconds otherwise.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where progress goes.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    tty: bool,
    last: Mutex<Option<(String, Instant)>>,
}

impl Progress {
    /// Progress on standard error (rewritten in place when it is a terminal).
    pub fn stderr() -> Progress {
        Progress {
            enabled: true,
            tty: std::io::stderr().is_terminal(),
            last: Mutex::new(None),
        }
    }

    /// No progress (tests, libraries).
    pub fn quiet() -> Progress {
        Progress {
            enabled: false,
            tty: false,
            last: Mutex::new(None),
        }
    }

    /// Announces a step.
    pub fn step(&self, msg: &str) {
        if !self.enabled {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K");
        }
        let _ = writeln!(err, "{msg}");
    }

    /// Reports a wait: `what`, and the time left until `until`.
    pub fn waiting(&self, what: &str, until: Instant) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let left = until.saturating_duration_since(now);
        let mut last = self.last.lock().expect("not poisoned");
        let due = last
            .as_ref()
            .is_none_or(|(w, l)| w != what || now.duration_since(*l) >= Duration::from_secs(30));
        if !self.tty && !due {
            return;
        }
        *last = Some((what.to_owned(), now));
        let mut err = std::io::stderr().lock();
        let left = humantime::format_duration(Duration::from_secs(left.as_secs())).to_string();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{what}: {left} left");
            let _ = err.flush();
        } else {
            let _ = writeln!(err, "{what}: {left} left");
        }
    }

    /// Ends a wait (clears the rewritten line).
    pub fn done_waiting(&self) {
        if self.enabled && self.tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}
