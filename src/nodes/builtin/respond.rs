//! `webhook.respond`: answers the caller waiting on a webhook. Only the daemon
//! has such a caller; under `fuse run` the node fails and says so.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{InputSpec, Node, any_output, boxed, builtin};
use crate::nodes::{NodeError, NodeOutput, wrong_type};

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
        |ctx| {
            boxed(async move {
                let sender = ctx
                    .run
                    .responder
                    .as_ref()
                    .and_then(|r| r.lock().ok().and_then(|mut s| s.take()));
                let Some(sender) = sender else {
                    return Err(NodeError::input(
                        "webhook.respond answers a waiting webhook caller, and this run has none \
                         (it was not started by a webhook, or the caller was answered already); \
                         deploy the workflow to the daemon, or try it with `fuse run --trigger webhook`",
                    ));
                };
                let status = match ctx.param("status") {
                    None | Some(Value::Null) => 200,
                    Some(v) => v
                        .as_u64()
                        .filter(|s| (100..=599).contains(s))
                        .ok_or_else(|| wrong_type("status", "an HTTP status (100-599)", v))?,
                };
                if let Some(h) = ctx.param("headers").filter(|h| !h.is_null())
                    && !h.is_object()
                {
                    return Err(wrong_type("headers", "an object", h));
                }
                let answer = json!({
                    "status": status,
                    "headers": ctx.param("headers").cloned().unwrap_or(json!({})),
                    "body": ctx.param("body").cloned().unwrap_or(Value::Null),
                });
                // A caller that gave up (timeout) is not an error of the run.
                let _ = sender.send(answer.clone());
                Ok(NodeOutput::new(answer))
            })
        },
    )
}
