//! The error a node attempt ends with: a kind (what retry conditions match), a
//! message for people, and whether retrying can help.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

/// Why a node attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ErrorKind {
    /// An input is missing or has the wrong type.
    Input,
    /// An expression failed to render.
    Expression,
    /// The attempt ran out of time.
    Timeout,
    /// A connection failed.
    Network,
    /// An HTTP response with an error status.
    Http { status: u16 },
    /// A process exited non-zero.
    Exit { code: i32 },
    /// A child process misbehaved (bad reply, crash, killed by a signal).
    Process,
    /// A file-system operation failed.
    Io,
    /// The run was cancelled.
    Cancelled,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// The name used in `retry.on.kinds`.
    pub fn name(&self) -> &'static str {
        match self {
            ErrorKind::Input => "input",
            ErrorKind::Expression => "expression",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Network => "network",
            ErrorKind::Http { .. } => "http",
            ErrorKind::Exit { .. } => "exit",
            ErrorKind::Process => "process",
            ErrorKind::Io => "io",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Other => "other",
        }
    }
}

/// A failed attempt.
#[derive(Debug, Clone)]
pub struct NodeError {
    pub kind: ErrorKind,
    pub message: String,
    /// Whether another attempt may succeed (used when `retry.on` is not given).
    pub retryable: bool,
    /// Wait at least this long before retrying (`Retry-After`).
    pub retry_after: Option<Duration>,
    /// Extra data kept with the error (e.g. the stderr of a failed command).
    pub details: Option<Box<Value>>,
}

impl NodeError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> NodeError {
        let retryable = matches!(
            kind,
            ErrorKind::Timeout | ErrorKind::Network | ErrorKind::Process
        );
        NodeError {
            kind,
            message: message.into(),
            retryable,
            retry_after: None,
            details: None,
        }
    }

    pub fn input(message: impl Into<String>) -> NodeError {
        NodeError::new(ErrorKind::Input, message)
    }

    pub fn other(message: impl Into<String>) -> NodeError {
        NodeError::new(ErrorKind::Other, message)
    }

    pub fn io(message: impl Into<String>) -> NodeError {
        NodeError::new(ErrorKind::Io, message)
    }

    pub fn with_details(mut self, details: Value) -> NodeError {
        self.details = Some(Box::new(details));
        self
    }

    pub fn retryable(mut self, retryable: bool) -> NodeError {
        self.retryable = retryable;
        self
    }

    /// The JSON form stored in history and passed along `error` edges.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "kind": self.kind.name(),
            "message": self.message,
            "retryable": self.retryable,
        });
        match self.kind {
            ErrorKind::Http { status } => v["status"] = json!(status),
            ErrorKind::Exit { code } => v["exit_code"] = json!(code),
            _ => {}
        }
        if let Some(details) = &self.details {
            v["details"] = (**details).clone();
        }
        v
    }
}

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
