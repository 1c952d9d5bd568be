//! One error type for the load generator: a message saying what went wrong.

use std::fmt;

#[derive(Debug, Clone)]
pub struct BenchError {
    message: String,
}

pub type Result<T> = std::result::Result<T, BenchError>;

impl BenchError {
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }

    /// The server closed the connection (EOF, close frame, Engine.IO close).
    pub fn closed(message: impl Into<String>) -> Self {
        Self::new(format!("closed: {}", message.into()))
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BenchError {}

impl From<std::io::Error> for BenchError {
    fn from(err: std::io::Error) -> Self {
        Self::new(err.to_string())
    }
}

impl From<crate::wsframe::FrameError> for BenchError {
    fn from(err: crate::wsframe::FrameError) -> Self {
        Self::new(err.to_string())
    }
}

impl From<tokio::time::error::Elapsed> for BenchError {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        Self::new("timed out")
    }
}
