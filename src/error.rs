//! Errors. Configuration problems are their own type because the CLI maps them to
//! exit code 2 and they must name the file, the key, the value and what was expected.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {}: {message}", path.display())]
    Record { path: PathBuf, message: String },
    /// A record file that cannot be read: truncated, foreign, corrupt or too new.
    #[error("{}: {message}", path.display())]
    Unreadable { path: PathBuf, message: String },
    /// A dataset file that is missing pieces, truncated or not what its name says.
    #[error("{}: {message}", path.display())]
    Data { path: PathBuf, message: String },
    /// A command-line argument that cannot be used as given (a run directory that is
    /// not one, an `--out` path in the way): the CLI maps it to exit code 2.
    #[error("{0}")]
    Usage(String),
    /// A compute device that cannot be used: a GPU asked of a binary built without CUDA,
    /// or one the driver does not open (the message says what to do).
    #[error("{0}")]
    Device(String),
    /// A worker stopped because the run was asked to stop (not a failure).
    #[error("stopped by request")]
    Stopped,
    /// An observer judged the trajectory diverged (e.g. an exploding loss): the engine
    /// ends it as diverged, the other trajectories go on.
    #[error("diverged: {0}")]
    Diverged(String),
    /// A numerical estimator could not produce a result (e.g. too few samples).
    #[error("{0}")]
    Numerics(String),
}

impl Error {
    pub fn unreadable(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Unreadable {
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
