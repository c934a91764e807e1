//! `log`: writes a line to the run's log and passes its input on.

use std::sync::Arc;

use serde_json::Value;

use super::{InputSpec, Node, any_output, boxed, builtin};
use crate::nodes::{LogLevel, NodeError, NodeOutput};

pub(super) fn node() -> Arc<dyn Node> {
    builtin(
        "log",
        "Adds a line to the run log and passes its input on.",
        vec![
            InputSpec::required("message", "string", "the text; may hold {{ expressions }}"),
            InputSpec::optional("level", "string", "debug, info (default), warn or error"),
        ],
        any_output(),
        |ctx| {
            boxed(async move {
                let level = match ctx.opt_str("level")? {
                    None => LogLevel::Info,
                    Some(l) => LogLevel::parse(l).ok_or_else(|| {
                        NodeError::input(format!(
                            "level {l:?} is not one of debug, info, warn, error"
                        ))
                    })?,
                };
                let message = match ctx.value("message")? {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                ctx.log(level, message);
                Ok(NodeOutput::new((*ctx.input).clone()))
            })
        },
    )
}
