//! Nodes: the one small trait every node implements ([`Node`]), what a node says
//! about itself ([`NodeSpec`]), the errors it returns ([`NodeError`]) and the
//! explicit [`Registry`] of node types. Built-ins live in [`builtin`]; external
//! packages implement the same trait.

pub mod builtin;
mod ctx;
mod error;
mod registry;

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde_json::Value;

pub use ctx::{LogLevel, NodeCtx, Responder, RunInfo, Step, json_type, wrong_type};
pub use error::{ErrorKind, NodeError};
pub use registry::Registry;

/// Built-in node types that only reshape data or steer the run: the same
/// input gives the same output and nothing outside the run changes. A test
/// case recorded from a run runs them again rather than pinning them, and a
/// worker does not checkpoint them (running one again costs nothing).
const PURE: [&str; 12] = [
    "end",
    "flow.if",
    "flow.merge",
    "flow.noop",
    "flow.switch",
    "html.extract",
    "log",
    "text.split",
    "transform.jq",
    "transform.set",
    "webhook.respond",
    "trigger.",
];

/// Whether `node_type` is one of the [`PURE`] built-ins (any `trigger.*`).
pub fn is_pure(node_type: &str) -> bool {
    let t = crate::workflow::canonical_type(node_type);
    PURE.iter()
        .any(|p| t == *p || (p.ends_with('.') && t.starts_with(p)))
}

/// What built-in nodes are configured with (from `fuse.toml`).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub http: crate::config::HttpConfig,
    pub llm: crate::config::LlmConfig,
    /// Where `llm.chat` keeps its response cache (the home's `cache/llm`).
    pub cache_dir: Option<std::path::PathBuf>,
    /// The home's database: conversation memory of `llm.chat` and `llm.agent`.
    pub db_path: Option<std::path::PathBuf>,
    /// The store on PostgreSQL (`store.url`): conversation memory is kept
    /// there instead, shared by every worker.
    pub store_url: Option<String>,
}

impl Settings {
    /// The settings of an initialised home, from its `fuse.toml`.
    pub fn of_home(home: &crate::home::Home, config: &crate::config::Config) -> Settings {
        Settings {
            http: config.http.clone(),
            llm: config.llm.clone(),
            cache_dir: Some(home.cache_dir().join("llm")),
            db_path: Some(home.db_path()),
            store_url: config.store.postgres().map(str::to_string),
        }
    }
}

/// What a node's `run` returns.
pub type NodeFuture<'a> = Pin<Box<dyn Future<Output = Result<NodeOutput, NodeError>> + Send + 'a>>;

/// A node type.
pub trait Node: Send + Sync {
    /// Static description: type name, inputs, output shape, handles.
    fn spec(&self) -> &NodeSpec;
    /// Runs one attempt with rendered inputs.
    fn run<'a>(&'a self, ctx: NodeCtx) -> NodeFuture<'a>;
}

/// The result of a successful attempt.
#[derive(Debug, Clone)]
pub struct NodeOutput {
    pub value: Value,
    /// The source handle this output leaves by (`true`/`false`, a switch case);
    /// `None` is the default handle.
    pub handle: Option<String>,
}

impl NodeOutput {
    pub fn new(value: Value) -> NodeOutput {
        NodeOutput {
            value,
            handle: None,
        }
    }

    pub fn on(value: Value, handle: impl Into<String>) -> NodeOutput {
        NodeOutput {
            value,
            handle: Some(handle.into()),
        }
    }
}

/// The documented shape of a node type, used by `validate`, `fuse nodes show`
/// and the schema.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct NodeSpec {
    #[serde(rename = "type")]
    pub type_name: String,
    pub description: String,
    pub inputs: Vec<InputSpec>,
    /// JSON-Schema-like shape of the output; `additionalProperties: false` makes
    /// `validate` report paths that cannot exist.
    pub output: Value,
    pub handles: Handles,
    /// Trigger nodes start a run; under `fuse run` they emit the run input.
    pub trigger: bool,
    /// Inputs beyond the declared ones are allowed (a package says so with
    /// `"free_inputs": true`); otherwise an undeclared input is an error.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub free_inputs: bool,
}

/// One input of a node type.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct InputSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub required: bool,
    pub description: String,
    /// Other names accepted for this input (the seed format's spellings).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

impl InputSpec {
    /// Also accepts these names for the input.
    pub fn with_aliases(mut self, aliases: &[&str]) -> InputSpec {
        self.aliases = aliases.iter().map(|a| (*a).to_string()).collect();
        self
    }

    pub fn required(name: &str, kind: &str, description: &str) -> InputSpec {
        InputSpec {
            name: name.into(),
            kind: kind.into(),
            required: true,
            description: description.into(),
            aliases: Vec::new(),
        }
    }

    pub fn optional(name: &str, kind: &str, description: &str) -> InputSpec {
        InputSpec {
            name: name.into(),
            kind: kind.into(),
            required: false,
            description: description.into(),
            aliases: Vec::new(),
        }
    }
}

/// The source handles a node type can activate (besides `error`).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Handles {
    /// Only the default output.
    Default,
    /// A fixed set, e.g. `true`/`false`.
    Fixed(Vec<String>),
    /// The names listed in an input (a switch's `cases`), plus `default`.
    FromInput(String),
}

/// Names an edge may use for the default output handle (the seed format's
/// triggers call theirs `webhook_data` and `timer_data`).
pub const DEFAULT_HANDLES: &[&str] = &[
    "output",
    "main",
    "default",
    "success",
    "out",
    "webhook_data",
    "timer_data",
];
/// Names an edge may use for a node's one input (as no `targetHandle`: the
/// value arrives as it is, not keyed by the name).
pub const DEFAULT_TARGET_HANDLES: &[&str] = &["input", "in", "main"];
/// The handle of an error path.
pub const ERROR_HANDLE: &str = "error";
