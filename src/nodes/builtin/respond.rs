//! `webhook.respond`: answers the caller waiting on a webhook. Only the daemon
//! has such a caller; under `fuse run` the node fails and says so.

use std::sync::Arc;

use super::{InputSpec, Node, any_output, boxed, builtin};
use crate::nodes::NodeError;

pub(super) fn node() -> Arc<dyn Node> {
    builtin(
        "webhook.respond",
        "Answers the HTTP caller of a webhook-triggered run with status, headers and body.",
        vec![
            InputSpec::optional("status", "integer", "HTTP status (default 200)"),
            InputSpec::optional("headers", "object", "response headers"),
            InputSpec::optional("body", "any", "response body (JSON unless a string)"),
        ],
        any_output(),
        |_ctx| {
            boxed(async move {
                Err(NodeError::input(
                    "webhook.respond answers a waiting webhook caller, and this run has none \
                     (it was not started by a webhook); deploy the workflow to the daemon, or remove the node for `fuse run`",
                ))
            })
        },
    )
}
