//! A validated workflow: nodes resolved to their implementations, edges indexed
//! both ways, durations parsed. Built only by [`crate::workflow::validate`], so a
//! plan is always runnable.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::expr::Template;
use crate::nodes::Node;
use crate::workflow::{OnError, model::Backoff, model::RetryOn, model::Settings};

/// A runnable workflow.
pub struct Plan {
    /// The workflow's settings (its nodes and edges are planned below).
    pub settings: Settings,
    /// The name to show (`name`, else the file name).
    pub name: String,
    /// The id derived from the name ([`crate::workflow::workflow_id`]): what
    /// history, URLs and the daemon use.
    pub id: String,
    /// The workflow JSON as run, and its hash (sha256, hex).
    pub definition: Arc<String>,
    pub hash: String,
    pub source_path: Option<PathBuf>,
    /// Folder that relative paths in the workflow resolve against.
    pub base_dir: Arc<PathBuf>,
    pub nodes: Vec<PlannedNode>,
    pub edges: Vec<PlannedEdge>,
    pub index: HashMap<String, usize>,
    pub max_parallel: Option<usize>,
    pub timeout: Option<Duration>,
    /// Things that are allowed but probably not meant (a retry that can never
    /// apply): `fuse validate` and `fuse run` print them.
    pub warnings: Vec<crate::workflow::Problem>,
    /// The declared parameters; `None` when the workflow declares none (its
    /// input is then taken as it comes).
    pub params: Option<Vec<crate::workflow::params::Param>>,
}

/// One node of a plan.
pub struct PlannedNode {
    pub id: Arc<str>,
    pub type_name: Arc<str>,
    pub node: Arc<dyn Node>,
    /// `data.inputs` as written, for a node without expressions (whose
    /// [`Self::inputs`] is `None`) and for trigger nodes; empty otherwise, so
    /// a plan keeps one form of each node's inputs, not two.
    pub written: Map<String, Value>,
    /// `foreach` (the expression giving the items) and `concurrency`.
    pub foreach: Option<Box<str>>,
    pub concurrency: Option<usize>,
    /// Edge indexes.
    pub incoming: Box<[usize]>,
    pub outgoing: Box<[usize]>,
    pub retry: Option<Box<RetryPolicy>>,
    pub timeout: Option<Duration>,
    pub on_error: OnError,
    pub has_error_edge: bool,
    /// `flow.merge` with `mode: first`: runs on the first live input.
    pub first_wins: bool,
    /// `data.inputs` prepared for rendering; `None` when the node has no
    /// expression anywhere, so its inputs are used as written.
    pub inputs: Option<Vec<(String, Template)>>,
    /// Credentials the node names (`credential` input, `creds.NAME` expressions).
    pub credentials: Vec<String>,
    pub trigger: bool,
    /// An expression of a later node reads this node's output
    /// (`nodes.ID…`), or one reads `nodes` as a whole.
    pub read_by_expressions: bool,
}

/// One edge of a plan.
pub struct PlannedEdge {
    pub source: usize,
    pub target: usize,
    pub source_handle: Option<Box<str>>,
    pub target_handle: Option<Box<str>>,
}

/// A node's retry settings with durations parsed.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub backoff: Backoff,
    pub initial: Duration,
    pub max: Duration,
    pub on: Option<RetryOn>,
}

impl Plan {
    /// A run's input checked against the declared params (defaults filled,
    /// strings converted), or every problem; as given when there are none.
    pub fn check_input(
        &self,
        input: Value,
        check: crate::workflow::params::Check,
    ) -> Result<Value, Vec<String>> {
        match &self.params {
            Some(params) => crate::workflow::params::apply(params, input, check),
            None => Ok(input),
        }
    }

    pub fn node(&self, id: &str) -> Option<&PlannedNode> {
        self.index.get(id).map(|&i| &self.nodes[i])
    }

    /// Nodes with no outgoing edges.
    pub fn sinks(&self) -> impl Iterator<Item = &PlannedNode> {
        self.nodes.iter().filter(|n| n.outgoing.is_empty())
    }
}
