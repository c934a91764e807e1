//! The built-in node types, one file per family, registered in [`all`].

pub mod ai;
pub(crate) mod exec;
mod file;
mod flow;
pub mod http;
mod llm;
mod log;
mod respond;
pub(crate) mod transform;
mod trigger;
mod workflow_call;

use std::future::Future;
use std::sync::Arc;

use serde_json::{Value, json};

use super::{Handles, InputSpec, Node, NodeCtx, NodeError, NodeFuture, NodeOutput, NodeSpec};

/// Every built-in node type, configured by `settings`.
pub fn all(settings: &super::Settings) -> Vec<Arc<dyn Node>> {
    let mut nodes = Vec::new();
    let http = Arc::new(http::Http::new(&settings.http));
    nodes.push(http::node(http.clone()));
    let memory = ai::memory::Memory {
        db: settings.db_path.clone(),
        pg: settings.store_url.clone(),
    };
    nodes.push(llm::node(
        http.clone(),
        settings.llm.clone(),
        settings.cache_dir.clone(),
        memory.clone(),
    ));
    nodes.push(ai::agent::node(
        http.clone(),
        settings.llm.clone(),
        memory,
        settings.cache_dir.clone(),
    ));
    nodes.extend(ai::nodes(ai::Env {
        http,
        config: settings.llm.clone(),
        db: settings.db_path.clone(),
        pg: settings.store_url.clone(),
    }));
    nodes.extend(trigger::nodes());
    nodes.extend(transform::nodes());
    nodes.extend(flow::nodes());
    nodes.push(log::node());
    nodes.push(exec::node());
    nodes.extend(file::nodes());
    nodes.push(workflow_call::node());
    nodes.push(respond::node());
    nodes
}

type Handler = fn(NodeCtx) -> NodeFuture<'static>;

/// A built-in node: its spec and an async function.
struct Builtin {
    spec: NodeSpec,
    handler: Handler,
}

impl Node for Builtin {
    fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    fn run<'a>(&'a self, ctx: NodeCtx) -> NodeFuture<'a> {
        (self.handler)(ctx)
    }
}

/// Builds a built-in from its parts.
fn builtin(
    type_name: &str,
    description: &str,
    inputs: Vec<InputSpec>,
    output: Value,
    handler: Handler,
) -> Arc<dyn Node> {
    with_handles(
        type_name,
        description,
        inputs,
        output,
        Handles::Default,
        handler,
    )
}

/// Like [`builtin`] with branch handles.
fn branching(
    type_name: &str,
    description: &str,
    inputs: Vec<InputSpec>,
    handles: Handles,
    handler: Handler,
) -> Arc<dyn Node> {
    with_handles(type_name, description, inputs, json!({}), handles, handler)
}

fn with_handles(
    type_name: &str,
    description: &str,
    inputs: Vec<InputSpec>,
    output: Value,
    handles: Handles,
    handler: Handler,
) -> Arc<dyn Node> {
    Arc::new(Builtin {
        spec: NodeSpec {
            type_name: type_name.into(),
            description: description.into(),
            inputs,
            output,
            handles,
            trigger: false,
            free_inputs: false,
        },
        handler,
    })
}

/// Boxes an async block as a node future.
fn boxed<F>(f: F) -> NodeFuture<'static>
where
    F: Future<Output = Result<NodeOutput, NodeError>> + Send + 'static,
{
    Box::pin(f)
}

/// A closed object schema: `validate` reports paths outside `fields`.
pub(crate) fn object_schema(fields: &[(&str, &str)]) -> Value {
    let props: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(name, kind)| ((*name).to_string(), json!({"type": kind})))
        .collect();
    json!({"type": "object", "properties": props, "additionalProperties": false})
}

/// The output shape of a node that passes its input on unchanged.
fn any_output() -> Value {
    json!({})
}
