//! What a node attempt gets: its rendered inputs (`params`), the data from
//! upstream (`input`), run facts, a logger, a cancellation token, and the engine
//! (for sub-workflows).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::NodeError;
use crate::engine::{Engine, Event, Observer};

/// Lines of a child's stderr logged per attempt; the rest is dropped from the log.
pub const MAX_LOGGED_LINES: usize = 1000;

/// Facts about the run an attempt belongs to.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub id: Arc<str>,
    pub workflow: String,
    pub started_at: String,
    /// Depth of sub-workflow nesting (0 for a top-level run).
    #[serde(skip)]
    pub depth: u32,
    /// Where `webhook.respond` sends its answer (a webhook caller waits on it).
    #[serde(skip)]
    pub responder: Option<Responder>,
}

/// The answer channel of a webhook caller: taken once by `webhook.respond`.
pub type Responder = Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Sender<Value>>>>;

/// Log levels of run log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn parse(s: &str) -> Option<LogLevel> {
        match s.to_ascii_lowercase().as_str() {
            "debug" => Some(LogLevel::Debug),
            "info" => Some(LogLevel::Info),
            "warn" | "warning" => Some(LogLevel::Warn),
            "error" => Some(LogLevel::Error),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// One step a node records with [`NodeCtx::step`].
pub struct Step {
    pub kind: crate::engine::StepKind,
    pub name: String,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub started: std::time::Instant,
    pub tokens: Option<u64>,
}

/// The context of one node attempt.
#[derive(Clone)]
pub struct NodeCtx {
    pub node_id: Arc<str>,
    /// The node's `data.inputs` with every expression rendered.
    pub params: Map<String, Value>,
    /// The data arriving along the node's incoming edges.
    pub input: Arc<Value>,
    pub run: Arc<RunInfo>,
    /// The run's cancellation (shared: a node watches it, never cancels it).
    pub cancel: CancellationToken,
    /// Folder of the workflow file: relative paths resolve against it.
    pub base_dir: Arc<PathBuf>,
    pub(crate) observer: Arc<dyn Observer>,
    pub(crate) engine: Engine,
    pub(crate) creds: Arc<crate::engine::RunCreds>,
    /// Numbers the run's steps ([`NodeCtx::step`]).
    pub(crate) steps: Arc<std::sync::atomic::AtomicU32>,
}

impl NodeCtx {
    /// Adds a line to the run's log.
    pub fn log(&self, level: LogLevel, message: impl Into<String>) {
        let mut message = message.into();
        self.creds.mask_string(&mut message);
        self.observer.on_event(&Event::Log {
            run_id: self.run.id.to_string(),
            node_id: Some(self.node_id.to_string()),
            level,
            message,
        });
    }

    /// Logs the lines `reader` gives (the first [`MAX_LOGGED_LINES`]) and hands
    /// every line to `each`: a child process's stderr.
    pub async fn log_lines(
        &self,
        reader: impl tokio::io::AsyncRead + Unpin,
        mut each: impl FnMut(String),
    ) {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(reader).lines();
        let mut logged = 0;
        while let Ok(Some(line)) = lines.next_line().await {
            if logged < MAX_LOGGED_LINES {
                self.log(LogLevel::Info, line.clone());
                logged += 1;
            }
            each(line);
        }
    }

    /// Records one step of this node (a model turn or a tool call) in the
    /// run's history and live events, secrets masked. `started` is when it began.
    pub fn step(&self, step: Step) {
        let Step {
            kind,
            name,
            mut input,
            mut output,
            mut error,
            started,
            tokens,
        } = step;
        self.creds.mask_value(&mut input);
        if let Some(o) = &mut output {
            self.creds.mask_value(o);
        }
        if let Some(e) = &mut error {
            self.creds.mask_value(e);
        }
        let elapsed = started.elapsed();
        let seq = self
            .steps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        self.observer
            .on_event(&Event::NodeStep(Box::new(crate::engine::NodeStep {
                run_id: self.run.id.clone(),
                node_id: self.node_id.clone(),
                seq,
                kind,
                name,
                input,
                output,
                error,
                started_ms: crate::engine::events::now_ms() - elapsed.as_millis() as i64,
                duration_ms: elapsed.as_millis() as u64,
                tokens,
            })));
    }

    /// Masks the run's loaded secrets in a value (for what a node writes
    /// itself, such as a cache; outputs and errors are masked by the engine).
    pub fn mask_value(&self, value: &mut Value) {
        self.creds.mask_value(value);
    }

    /// A stored credential by name (its secret values are masked from here on).
    pub fn credential(&self, name: &str) -> Result<Arc<crate::secrets::Credential>, NodeError> {
        self.creds
            .get(name)
            .map_err(|e| NodeError::new(super::ErrorKind::Input, e).retryable(false))
    }

    /// Runs `plan` as a child of this run (sub-workflows, composite packages):
    /// recorded with this run as its parent, one level deeper, cancelled with it.
    pub async fn run_child(&self, plan: crate::Plan, input: Value) -> crate::RunRecord {
        let input = match plan.check_input(input, crate::workflow::params::Check::Strict) {
            Ok(input) => input,
            Err(problems) => {
                return crate::RunRecord::crashed(
                    plan.name.clone(),
                    format!(
                        "the input does not fit the params of {}: {}",
                        plan.name,
                        problems.join("; ")
                    ),
                );
            }
        };
        let mut request = crate::RunRequest::new(input, "call");
        // The caller takes only the sub-run's result.
        request.keep_outputs = false;
        request.parent_id = Some(self.run.id.to_string());
        request.depth = self.run.depth + 1;
        request.cancel = self.cancel.clone();
        self.engine.run(Arc::new(plan), request).await
    }

    /// The engine running this node (sub-workflows use it).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A path input resolved against the workflow's folder.
    pub fn path(&self, name: &str) -> Result<PathBuf, NodeError> {
        let raw = self.str(name)?;
        let path = PathBuf::from(raw);
        Ok(if path.is_absolute() {
            path
        } else {
            self.base_dir.join(path)
        })
    }

    /// An input by name. Inputs are few, so a scan beats hashing the name
    /// (nodes look up a dozen optional inputs per attempt).
    pub fn param(&self, name: &str) -> Option<&Value> {
        if self.params.len() > 16 {
            return self.params.get(name);
        }
        self.params
            .iter()
            .find_map(|(k, v)| (k == name).then_some(v))
    }

    /// A required string input.
    pub fn str(&self, name: &str) -> Result<&str, NodeError> {
        match self.param(name) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(wrong_type(name, "a string", other)),
            None => Err(missing(name)),
        }
    }

    /// An optional string input.
    pub fn opt_str(&self, name: &str) -> Result<Option<&str>, NodeError> {
        match self.param(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(wrong_type(name, "a string", other)),
        }
    }

    /// An optional boolean input with a default.
    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, NodeError> {
        match self.param(name) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(wrong_type(name, "true or false", other)),
        }
    }

    /// A required input of any type.
    pub fn value(&self, name: &str) -> Result<&Value, NodeError> {
        self.param(name).ok_or_else(|| missing(name))
    }
}

fn missing(name: &str) -> NodeError {
    NodeError::input(format!(
        "input `{name}` is required; add it under data.inputs"
    ))
}

/// An input of the wrong JSON type.
pub fn wrong_type(name: &str, expected: &str, got: &Value) -> NodeError {
    NodeError::input(format!(
        "input `{name}` must be {expected}, got {}",
        json_type(got)
    ))
}

/// The JSON type name of a value, for messages.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
