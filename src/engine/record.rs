//! The result of a run, as `fuse run --json` prints it.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::Status;

/// A finished run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub run_id: String,
    pub workflow: String,
    pub status: Status,
    pub output: Value,
    pub error: Option<String>,
    pub duration_ms: u64,
    pub nodes: BTreeMap<String, NodeRecord>,
}

/// The final state of one node in a run.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRecord {
    pub status: Status,
    pub attempts: u32,
    pub output: Option<Value>,
    pub error: Option<Value>,
}
