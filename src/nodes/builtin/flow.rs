//! Control flow: `flow.if`, `flow.switch`, `flow.merge`, `flow.wait`,
//! `flow.noop` and `end`.

use std::sync::Arc;

use serde_json::Value;

use super::{InputSpec, Node, any_output, boxed, branching, builtin};
use crate::engine::duration;
use crate::nodes::{Handles, NodeError, NodeOutput, wrong_type};

pub(super) fn nodes() -> Vec<Arc<dyn Node>> {
    vec![
        branching(
            "flow.if",
            "Sends its input along the `true` or `false` handle.",
            vec![InputSpec::required(
                "condition",
                "boolean",
                "usually an expression, e.g. {{ input.count > 0 }}",
            )],
            Handles::Fixed(vec!["true".into(), "false".into()]),
            |ctx| {
                boxed(async move {
                    let condition = truthy(ctx.value("condition")?);
                    Ok(NodeOutput::on(
                        (*ctx.input).clone(),
                        if condition { "true" } else { "false" },
                    ))
                })
            },
        ),
        branching(
            "flow.switch",
            "Sends its input along the handle named by `value`, or `default`.",
            vec![
                InputSpec::required("value", "string", "the case to take, usually an expression"),
                InputSpec::required(
                    "cases",
                    "array",
                    "the handle names, e.g. [\"small\", \"large\"]",
                ),
            ],
            Handles::FromInput("cases".into()),
            |ctx| {
                boxed(async move {
                    let value = match ctx.value("value")? {
                        Value::String(s) => s.clone(),
                        other @ (Value::Number(_) | Value::Bool(_)) => other.to_string(),
                        other => {
                            return Err(wrong_type("value", "a string, number or boolean", other));
                        }
                    };
                    let cases = ctx.value("cases")?.as_array().ok_or_else(|| {
                        wrong_type(
                            "cases",
                            "an array of strings",
                            ctx.value("cases").unwrap_or(&Value::Null),
                        )
                    })?;
                    let hit = cases.iter().any(|c| c.as_str() == Some(value.as_str()));
                    Ok(NodeOutput::on(
                        (*ctx.input).clone(),
                        if hit { value } else { "default".into() },
                    ))
                })
            },
        ),
        builtin(
            "flow.merge",
            "Joins branches: `all` waits for every live branch and outputs an object keyed by upstream id (or targetHandle); `first` outputs the first to arrive.",
            vec![InputSpec::optional(
                "mode",
                "string",
                "all (default) or first",
            )],
            any_output(),
            |ctx| boxed(async move { Ok(NodeOutput::new((*ctx.input).clone())) }),
        ),
        builtin(
            "flow.wait",
            "Waits, then passes its input on.",
            vec![InputSpec::required(
                "duration",
                "duration",
                "e.g. \"300ms\", \"2s\", \"1m\"",
            )],
            any_output(),
            |ctx| {
                boxed(async move {
                    let d = duration::parse(ctx.str("duration")?).map_err(NodeError::input)?;
                    tokio::select! {
                        _ = tokio::time::sleep(d) => Ok(NodeOutput::new((*ctx.input).clone())),
                        _ = ctx.cancel.cancelled() => Err(NodeError::new(crate::nodes::ErrorKind::Cancelled, "cancelled")),
                    }
                })
            },
        ),
        builtin(
            "flow.noop",
            "Passes its input on unchanged.",
            vec![],
            any_output(),
            |ctx| boxed(async move { Ok(NodeOutput::new((*ctx.input).clone())) }),
        ),
        builtin(
            "end",
            "Ends the workflow: its output (its input, or `value`) is the workflow result.",
            vec![InputSpec::optional(
                "value",
                "any",
                "the result; defaults to the input",
            )],
            any_output(),
            |ctx| {
                boxed(async move {
                    Ok(NodeOutput::new(match ctx.param("value") {
                        Some(v) => v.clone(),
                        None => (*ctx.input).clone(),
                    }))
                })
            },
        ),
    ]
}

/// JSON truthiness: false, null, 0, "", [] and {} are false.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty() && s != "false",
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}
