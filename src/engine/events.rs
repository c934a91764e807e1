//! What happens during a run, as events. The engine emits them to an
//! [`Observer`]: the history recorder writes them to SQLite, the CLI draws
//! progress from them, the daemon will broadcast them.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::nodes::LogLevel;

/// Final state of a run or node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
    Interrupted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Cancelled => "cancelled",
            Status::Interrupted => "interrupted",
        }
    }
}

/// One thing that happened in a run.
#[derive(Debug, Clone)]
pub enum Event {
    RunStarted {
        run_id: String,
        workflow: String,
        workflow_hash: String,
        definition: crate::engine::definition::Definition,
        source_path: Option<String>,
        parent_id: Option<String>,
        retry_of: Option<String>,
        trigger_kind: String,
        input: Arc<Value>,
        /// Recorded before it started by whoever started it (the daemon
        /// records its runs as accepted, then started): history writes no row.
        recorded: bool,
        node_count: usize,
        /// Retention overrides from the workflow's settings.
        keep_runs: Option<u64>,
        keep_days: Option<u64>,
        at_ms: i64,
    },
    NodeStarted {
        run_id: Arc<str>,
        node_id: Arc<str>,
        attempt: u32,
        item: Option<usize>,
    },
    /// One finished attempt (or foreach item attempt) with its data.
    NodeAttempt(Box<NodeAttempt>),
    /// One step inside a node attempt: an agent's model turn or tool call.
    NodeStep(Box<NodeStep>),
    /// A node reached its final state.
    NodeFinished {
        run_id: String,
        node_id: String,
        node_type: String,
        status: Status,
        attempts: u32,
        duration_ms: u64,
        error: Option<String>,
        /// A node that succeeded: its output (for a `foreach`, the array of
        /// its items' outputs), shared, not copied.
        output: Option<Arc<Value>>,
        /// A node that failed: its error as history records it.
        error_value: Option<Value>,
    },
    Log {
        run_id: String,
        node_id: Option<String>,
        level: LogLevel,
        message: String,
    },
    RunFinished {
        run_id: String,
        status: Status,
        output: Arc<Value>,
        error: Option<String>,
        usage: Option<Value>,
        at_ms: i64,
        duration_ms: u64,
    },
}

/// The data of one attempt, as recorded.
#[derive(Debug, Clone)]
pub struct NodeAttempt {
    pub run_id: Arc<str>,
    pub node_id: Arc<str>,
    pub node_type: Arc<str>,
    pub attempt: u32,
    pub item: Option<usize>,
    pub status: Status,
    pub input: Arc<Value>,
    pub output: Option<Arc<Value>>,
    pub error: Option<Value>,
    pub started_ms: i64,
    pub finished_ms: i64,
}

/// What a step is: a model turn or a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    Model,
    Tool,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Model => "model",
            StepKind::Tool => "tool",
        }
    }
}

/// One step inside a node attempt (an agent's model turn or tool call), as
/// recorded in history and streamed live.
#[derive(Debug, Clone)]
pub struct NodeStep {
    pub run_id: Arc<str>,
    pub node_id: Arc<str>,
    /// 1, 2, … within the node (across its attempts).
    pub seq: u32,
    pub kind: StepKind,
    /// The model, or the tool's name.
    pub name: String,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub started_ms: i64,
    pub duration_ms: u64,
    /// Tokens of a model turn.
    pub tokens: Option<u64>,
}

/// Receives the events of runs. Must not block: heavy work goes to a thread.
pub trait Observer: Send + Sync {
    fn on_event(&self, event: &Event);
}

/// Ignores everything.
pub struct NullObserver;

impl Observer for NullObserver {
    fn on_event(&self, _: &Event) {}
}

/// Sends each event to several observers in order.
pub struct Fanout(pub Vec<Arc<dyn Observer>>);

impl Observer for Fanout {
    fn on_event(&self, event: &Event) {
        for o in &self.0 {
            o.on_event(event);
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
