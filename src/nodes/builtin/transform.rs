//! `transform.set` (build an object from expressions) and `transform.jq`
//! (reshape JSON with a jq program, run by jaq).

use std::sync::Arc;

use serde_json::Value;

use super::{InputSpec, Node, any_output, boxed, builtin};
use crate::nodes::{ErrorKind, NodeError, NodeOutput};

/// A jq program may produce at most this many values.
const MAX_JQ_OUTPUTS: usize = 1_000_000;

pub(super) fn nodes() -> Vec<Arc<dyn Node>> {
    vec![
        builtin(
            "transform.set",
            "Outputs `values`, an object whose strings may be expressions.",
            vec![InputSpec::required(
                "values",
                "object",
                "the output; strings may hold {{ expressions }}",
            )],
            any_output(),
            |ctx| boxed(async move { Ok(NodeOutput::new(ctx.value("values")?.clone())) }),
        ),
        builtin(
            "transform.jq",
            "Runs a jq program on the input (or on `data`).",
            vec![
                InputSpec::required(
                    "filter",
                    "string",
                    "jq program, e.g. .items | map(.price) | add",
                ),
                InputSpec::optional(
                    "data",
                    "any",
                    "apply the filter to this instead of the input",
                ),
                InputSpec::optional(
                    "all",
                    "boolean",
                    "collect every result into an array (default: exactly one result)",
                ),
            ],
            any_output(),
            |ctx| {
                boxed(async move {
                    let filter = ctx.str("filter")?.to_string();
                    let all = ctx.bool_or("all", false)?;
                    let data = match ctx.param("data") {
                        Some(d) => d.clone(),
                        None => (*ctx.input).clone(),
                    };
                    let value = tokio::task::spawn_blocking(move || run_jq(&filter, &data, all))
                        .await
                        .map_err(|e| NodeError::other(format!("jq task failed: {e}")))??;
                    Ok(NodeOutput::new(value))
                })
            },
        ),
    ]
}

/// Compiles and runs a jq program with the standard library.
pub fn run_jq(code: &str, input: &Value, all: bool) -> Result<Value, NodeError> {
    use jaq_core::load::{Arena, File, Loader};
    use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
    use jaq_json::Val;

    let bad_filter = |detail: String| {
        NodeError::new(
            ErrorKind::Input,
            format!("jq filter {code:?} is not valid: {detail}"),
        )
    };
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let modules = loader
        .load(&arena, File { code, path: () })
        .map_err(|errs| {
            bad_filter(format!(
                "{:?}",
                errs.into_iter().map(|(_, e)| e).collect::<Vec<_>>()
            ))
        })?;
    let filter = Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errs| {
            let names: Vec<String> = errs
                .into_iter()
                .flat_map(|(_, es)| es.into_iter().map(|(name, _)| name.to_string()))
                .collect();
            bad_filter(format!("unknown names: {}", names.join(", ")))
        })?;
    let bytes = serde_json::to_vec(input)
        .map_err(|e| NodeError::other(format!("input is not JSON: {e}")))?;
    let input: Val = jaq_json::read::parse_single(&bytes)
        .map_err(|e| NodeError::other(format!("input is not JSON: {e}")))?;
    let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, Vars::new([]));
    let mut results = Vec::new();
    for out in filter.id.run((ctx, input)).map(unwrap_valr) {
        let val = out.map_err(|e| NodeError::other(format!("jq error: {e}")))?;
        let json: Value = serde_json::from_str(&val.to_string()).map_err(|e| {
            NodeError::other(format!("jq produced a value that is not JSON ({val}): {e}"))
        })?;
        results.push(json);
        if results.len() > MAX_JQ_OUTPUTS {
            return Err(NodeError::other(format!(
                "jq produced more than {MAX_JQ_OUTPUTS} values"
            )));
        }
        if !all && results.len() > 1 {
            return Err(NodeError::input(
                "jq filter produced more than one value; set `all: true` to collect them into an array, or wrap the filter in [ … ]",
            ));
        }
    }
    Ok(if all {
        Value::Array(results)
    } else {
        results.pop().unwrap_or(Value::Null)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jq_reshapes_json() {
        let input = json!({"items": [{"price": 2}, {"price": 3.5}]});
        assert_eq!(
            run_jq(".items | map(.price) | add", &input, false).unwrap(),
            json!(5.5)
        );
        assert_eq!(
            run_jq(".items[].price", &input, true).unwrap(),
            json!([2, 3.5])
        );
        assert_eq!(
            run_jq("{a: \"x\"}", &input, false).unwrap(),
            json!({"a": "x"})
        );
        assert!(
            run_jq(".items[].price", &input, false)
                .unwrap_err()
                .message
                .contains("all: true")
        );
        assert!(
            run_jq(".items | nosuchfn", &input, false)
                .unwrap_err()
                .message
                .contains("nosuchfn")
        );
        assert!(run_jq(".[[[", &input, false).is_err());
    }
}
