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
    pub index: HashMap<Arc<str>, usize>,
    pub max_parallel: Option<usize>,
    pub timeout: Option<Duration>,
    /// Things that are allowed but probably not meant (a retry that can never
    /// apply): `fuse validate` and `fuse run` print them.
    pub warnings: Vec<crate::workflow::Problem>,
    /// The declared parameters; `None` when the workflow declares none (its
    /// input is then taken as it comes).
    pub params: Option<Vec<crate::workflow::params::Param>>,
}

/// One node of a plan. Kept small (a 100,000-node workflow holds 100,000 of
/// them): what most nodes lack (retry, timeout, `foreach`, credentials) is
/// boxed in [`More`], and inputs without expressions are kept as their JSON
/// text, read when the node runs.
pub struct PlannedNode {
    pub id: Arc<str>,
    /// Shared by every node of the type.
    pub type_name: Arc<str>,
    pub node: Arc<dyn Node>,
    /// `data.inputs` as written (JSON), for a node without expressions (whose
    /// [`Self::inputs`] is `None`) and for trigger nodes; `None` otherwise,
    /// so a plan keeps one form of each node's inputs, not two.
    pub(crate) written: Option<Box<str>>,
    /// `data.inputs` prepared for rendering; `None` when the node has no
    /// expression anywhere, so its inputs are used as written.
    pub inputs: Option<Box<[(String, Template)]>>,
    /// Edge indexes.
    pub incoming: Box<[usize]>,
    pub outgoing: Box<[usize]>,
    pub(crate) more: Option<Box<More>>,
    pub on_error: OnError,
    pub has_error_edge: bool,
    /// `flow.merge` with `mode: first`: runs on the first live input.
    pub first_wins: bool,
    pub trigger: bool,
    /// An expression of a later node reads this node's output
    /// (`nodes.ID…`), or one reads `nodes` as a whole.
    pub read_by_expressions: bool,
}

/// What most nodes do not have.
#[derive(Default)]
pub(crate) struct More {
    pub foreach: Option<Box<str>>,
    pub concurrency: Option<usize>,
    pub retry: Option<RetryPolicy>,
    pub timeout: Option<Duration>,
    pub credentials: Vec<String>,
}

impl PlannedNode {
    /// `data.inputs` as written (empty for a node whose inputs have
    /// expressions, see [`Self::inputs`]).
    pub fn written(&self) -> Map<String, Value> {
        match &self.written {
            // Written by the plan from a map: it reads back (an empty map
            // only if that ever broke, which the tests of every node would show).
            Some(text) => serde_json::from_str(text).unwrap_or_default(),
            None => Map::new(),
        }
    }

    /// `foreach`: the expression giving the items.
    pub fn foreach(&self) -> Option<&str> {
        self.more.as_ref()?.foreach.as_deref()
    }

    /// Items of a `foreach` running at once.
    pub fn concurrency(&self) -> Option<usize> {
        self.more.as_ref()?.concurrency
    }

    pub fn retry(&self) -> Option<&RetryPolicy> {
        self.more.as_ref()?.retry.as_ref()
    }

    /// Per-attempt time limit.
    pub fn timeout(&self) -> Option<Duration> {
        self.more.as_ref()?.timeout
    }

    /// Credentials the node names (`credential` input, `creds.NAME` expressions).
    pub fn credentials(&self) -> &[String] {
        self.more.as_ref().map_or(&[], |m| &m.credentials)
    }
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
