//! `fuse runs pin`: a recorded run as a test case. Nodes with side effects
//! (HTTP, commands, files, models, packages) are pinned to what they gave,
//! attempt by attempt; the rest (triggers, transforms, flow control, `end`)
//! run again, so the case checks the workflow's own logic offline.

use serde_json::{Map, Value, json};

use crate::store::history::{NodeRunRow, RunDetail, by_node};

/// A test case (as JSON) that gives `run`'s trigger input, pins its
/// side-effecting nodes (with `all`, every node but `flow.if`/`flow.switch`,
/// whose branch history does not keep), and expects what the run did.
pub fn case_from_run(run: &RunDetail, name: &str, all: bool) -> Value {
    let mut case = Map::new();
    case.insert("name".into(), json!(name));
    case.insert("run_id".into(), json!(run.summary.id));
    if let Ok(at) = jiff::Timestamp::from_millisecond(run.summary.created_at) {
        case.insert("now".into(), json!(at.to_string()));
    }
    let groups = by_node(&run.nodes);
    let fired = |prefix: &str| {
        groups
            .iter()
            .find(|(_, rows)| {
                rows.iter().any(|r| {
                    crate::workflow::canonical_type(&r.node_type).starts_with(prefix)
                        && r.status == "succeeded"
                })
            })
            .map(|(id, _)| id.to_string())
    };
    match run.summary.trigger.as_str() {
        "webhook" => {
            let get = |k: &str| run.input.get(k).cloned();
            let mut call = Map::new();
            if let Some(node) = fired("trigger.webhook") {
                call.insert("node".into(), json!(node));
            }
            for key in ["method", "headers", "query", "body"] {
                if let Some(v) = get(key) {
                    call.insert(key.into(), v);
                }
            }
            case.insert("trigger".into(), json!({"webhook": call}));
        }
        "cron" => {
            let mut fire = Map::new();
            if let Some(node) = run.input.get("node").and_then(Value::as_str) {
                fire.insert("node".into(), json!(node));
            }
            if let Some(at) = run.input.get("fired_at") {
                fire.insert("at".into(), at.clone());
            }
            case.insert("trigger".into(), json!({"schedule": fire}));
        }
        _ => {
            case.insert("input".into(), run.input.clone());
        }
    }
    // What a retry would reuse: a foreach node's outputs when all its items succeeded.
    let outputs = crate::store::history::succeeded_outputs(&run.nodes);
    let mut pins = Map::new();
    let mut nodes = Map::new();
    for (id, rows) in &groups {
        let Some(last) = rows.last() else { continue };
        let output = outputs.get(*id);
        let status = final_status(rows, output.is_some());
        let mut expect = Map::new();
        expect.insert("status".into(), json!(status));
        // A branch node's handle is not recorded: it always runs again.
        let branching = matches!(
            crate::workflow::canonical_type(&last.node_type),
            "flow.if" | "flow.switch"
        );
        let pinned = (all && !branching) || !crate::nodes::is_pure(&last.node_type);
        match status {
            "succeeded" | "failed" if pinned => {
                let (pin, attempts) = pin_of(rows, output);
                if attempts > 1 {
                    expect.insert("attempts".into(), json!(attempts));
                }
                if let Some(pin) = pin {
                    pins.insert(id.to_string(), pin);
                }
            }
            // Still going when the run stopped: it hangs until the run ends
            // again, and never reaches out for real.
            "cancelled" if pinned => {
                pins.insert(id.to_string(), json!({"wait": true}));
            }
            _ => {}
        }
        nodes.insert(id.to_string(), Value::Object(expect));
    }
    if !pins.is_empty() {
        case.insert("pins".into(), Value::Object(pins));
    }
    let mut expect = Map::new();
    expect.insert("status".into(), json!(run.summary.status));
    if run.summary.status == "succeeded" {
        expect.insert("output".into(), json!({"equals": run.output}));
    } else if let Some(error) = &run.summary.error {
        expect.insert("error".into(), json!({"equals": error}));
    }
    expect.insert("nodes".into(), Value::Object(nodes));
    case.insert("expect".into(), Value::Object(expect));
    Value::Object(case)
}

/// A node's final status from its rows (a foreach node: failed if an item
/// failed and not every item has an output).
fn final_status(rows: &[&NodeRunRow], has_output: bool) -> &'static str {
    let items = rows.iter().any(|r| r.item.is_some());
    let status = if items && !has_output && rows.iter().any(|r| r.status == "failed") {
        "failed"
    } else {
        rows.last().map_or("skipped", |r| r.status.as_str())
    };
    match status {
        "succeeded" => "succeeded",
        "failed" => "failed",
        "cancelled" => "cancelled",
        _ => "skipped",
    }
}

/// The pin of a node that ran, and how many attempts it made.
fn pin_of(rows: &[&NodeRunRow], output: Option<&Value>) -> (Option<Value>, u32) {
    let outcome = |r: &NodeRunRow| match r.status.as_str() {
        "succeeded" => Some(json!({"output": r.output.clone().unwrap_or(Value::Null)})),
        "failed" => Some(json!({"error": r.error.clone().unwrap_or(json!({"message": "failed"}))})),
        _ => None,
    };
    if rows.iter().any(|r| r.item.is_some()) {
        // A foreach node is pinned as a whole: its items' outputs, or its first failure.
        let attempts = rows.iter().map(|r| r.attempt).max().unwrap_or(1);
        let pin = match output {
            Some(out) => Some(json!({"output": out})),
            None => rows
                .iter()
                .find(|r| r.status == "failed")
                .and_then(|r| outcome(r)),
        };
        return (pin, attempts);
    }
    let tried: Vec<Value> = rows
        .iter()
        .filter(|r| r.attempt > 0)
        .filter_map(|r| outcome(r))
        .collect();
    let attempts = tried.len() as u32;
    match tried.len() {
        0 => (
            rows.last().and_then(|r| outcome(r)),
            rows.iter().map(|r| r.attempt).max().unwrap_or(0),
        ),
        1 => (tried.into_iter().next(), 1),
        _ => (Some(json!({"sequence": tried})), attempts),
    }
}
