//! Progress lines on stderr, so stdout carries only the result (text or `--json`)
//! and scripts can pipe it.

/// Where a command reports its steps.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    /// Steps printed to stderr, each prefixed with `chainsig:`.
    pub fn stderr() -> Self {
        Progress { enabled: true }
    }

    /// No output (library callers that report on their own).
    pub fn quiet() -> Self {
        Progress { enabled: false }
    }

    pub fn step(&self, message: impl std::fmt::Display) {
        if self.enabled {
            eprintln!("chainsig: {message}");
        }
    }
}
