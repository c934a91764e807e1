//! The result of a run, as `fuse run --json` prints it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::Status;

/// A finished run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub run_id: String,
    pub workflow: String,
    pub status: Status,
    /// Shared with the node record it came from (no copy of a large output).
    pub output: Arc<Value>,
    pub error: Option<String>,
    pub duration_ms: u64,
    /// Token usage summed over the run's LLM nodes (absent when none ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
    pub nodes: BTreeMap<String, NodeRecord>,
}

impl RunRecord {
    /// The record of a run whose task died (a bug); never returned silently.
    pub fn crashed(workflow: String, error: String) -> RunRecord {
        RunRecord {
            run_id: String::new(),
            workflow,
            status: Status::Failed,
            output: Arc::new(Value::Null),
            error: Some(error),
            duration_ms: 0,
            usage: None,
            nodes: BTreeMap::new(),
        }
    }
}

/// The final state of one node in a run.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRecord {
    pub status: Status,
    pub attempts: u32,
    pub output: Option<Arc<Value>>,
    pub error: Option<Value>,
}

/// Whether [`sum_usage`] would count anything in `output`.
pub fn has_usage(output: &Value) -> bool {
    let one = |v: &Value| v.get("usage").is_some_and(Value::is_object);
    match output {
        Value::Array(items) => items.iter().any(one),
        other => one(other),
    }
}

/// Sums `usage` token counts found in node outputs (an LLM node's output, or the
/// array of outputs of a foreach over one).
pub fn sum_usage<'a>(outputs: impl Iterator<Item = &'a Value>) -> Option<Value> {
    const KEYS: [&str; 3] = ["prompt_tokens", "completion_tokens", "total_tokens"];
    let mut sums = [0u64; 3];
    let mut found = false;
    let mut add = |v: &Value| {
        if let Some(usage) = v.get("usage").filter(|u| u.is_object()) {
            for (i, k) in KEYS.iter().enumerate() {
                if let Some(n) = usage.get(*k).and_then(Value::as_u64) {
                    sums[i] += n;
                    found = true;
                }
            }
        }
    };
    for output in outputs {
        match output {
            Value::Array(items) => items.iter().for_each(&mut add),
            other => add(other),
        }
    }
    found.then(|| serde_json::json!({KEYS[0]: sums[0], KEYS[1]: sums[1], KEYS[2]: sums[2]}))
}
