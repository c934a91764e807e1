//! `workflow.call`: runs another workflow file as a sub-run (recorded with this
//! run as its parent) and outputs its result.

use std::sync::Arc;

use super::{InputSpec, Node, any_output, boxed, builtin};
use crate::engine::{MAX_DEPTH, Status};
use crate::nodes::{NodeError, NodeOutput};

pub(super) fn node() -> Arc<dyn Node> {
    builtin(
        "workflow.call",
        "Runs another workflow with `input` (default: this node's input) and outputs its result.",
        vec![
            InputSpec::required(
                "workflow",
                "string",
                "path of the workflow file (relative to this workflow's folder)",
            ),
            InputSpec::optional("input", "any", "the sub-workflow's run input"),
        ],
        any_output(),
        |ctx| {
            boxed(async move {
                let path = ctx.path("workflow")?;
                if ctx.run.depth + 1 > MAX_DEPTH {
                    return Err(NodeError::input(format!(
                        "sub-workflows are nested more than {MAX_DEPTH} deep; does a workflow call itself?"
                    )));
                }
                let plan = ctx
                    .engine()
                    .load(&path)
                    .map_err(|e| NodeError::input(e.to_string()))?;
                let input = match ctx.param("input") {
                    Some(v) => v.clone(),
                    None => (*ctx.input).clone(),
                };
                let record = ctx.run_child(plan, input).await;
                match record.status {
                    Status::Succeeded => Ok(NodeOutput::new(Arc::unwrap_or_clone(record.output))),
                    status => Err(NodeError::other(format!(
                        "sub-workflow {} (run {}) {}: {}",
                        path.display(),
                        record.run_id,
                        status.as_str(),
                        record.error.unwrap_or_default()
                    ))),
                }
            })
        },
    )
}
