//! The seed format's REST shapes (KAI-Fusion, `003_*.txt`), a thin layer
//! over the native API: the same route table, token, checks and code paths
//! (a create is a deploy, an execute is a run), answered in the seed's words.
//!
//! | seed | native |
//! |---|---|
//! | `POST /api/workflows/ {name, description, flow_data}` | `POST /api/v1/workflows` |
//! | `GET/PUT/DELETE /api/workflows/{id}` | `GET/PUT/DELETE /api/v1/workflows/{name}` |
//! | `POST /api/workflows/{id}/execute {inputs}` | `POST /api/v1/workflows/{name}/run` |
//! | `GET /api/executions/{id}` | `GET /api/v1/executions/{id}` |

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::{Map, Value, json};

use super::State;
use super::api::{Reply, error, not_found, ok, store_error};
use crate::api::types::{
    SeedDeleted, SeedExecute, SeedExecution, SeedWorkflow, SeedWorkflowCreate, SeedWorkflowUpdate,
};

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// A run's status in the seed's words.
fn seed_status(status: &str) -> &'static str {
    match status {
        "queued" => "pending",
        "running" => "running",
        "succeeded" => "completed",
        "cancelled" => "cancelled",
        _ => "failed",
    }
}

fn not_public() -> Reply {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "is_public: true cannot be honoured: fuse has no users; a workflow is visible to whoever holds an API token of this daemon",
        Value::Null,
    )
}

/// A workflow in the seed's shape: its definition without name and
/// description is the `flow_data`.
fn workflow(state: &Arc<State>, id: &str, status: StatusCode) -> Reply {
    let found = state
        .db
        .current_workflow(id)
        .and_then(|c| Ok((c, state.db.workflow_versions(id)?)));
    let (current, versions) = match found {
        Ok((Some(current), versions)) => (current, versions.unwrap_or_default()),
        Ok((None, _)) => return not_found(&format!("no workflow {id:?}")),
        Err(e) => return store_error(&e),
    };
    let mut flow: Map<String, Value> =
        serde_json::from_str(&current.definition).unwrap_or_default();
    let name = flow
        .remove("name")
        .and_then(|n| n.as_str().map(str::to_string))
        .unwrap_or_else(|| id.to_string());
    let description = flow
        .remove("description")
        .and_then(|d| d.as_str().map(str::to_string));
    let created = versions.iter().map(|v| v.created_at).min().unwrap_or(0);
    let updated = versions
        .iter()
        .find(|v| v.current)
        .map(|v| v.created_at)
        .unwrap_or(created);
    ok(
        status,
        &SeedWorkflow {
            id: id.to_string(),
            name,
            description,
            flow_data: Value::Object(flow),
            is_public: false,
            version: current.version,
            created_at: rfc3339(created),
            updated_at: rfc3339(updated),
        },
    )
}

/// `flow_data` as a definition named `name`.
fn definition(
    flow_data: Value,
    name: &str,
    description: Option<String>,
) -> Result<Value, Box<Reply>> {
    let Value::Object(mut flow) = flow_data else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "flow_data must be a JSON object: {\"nodes\": [...], \"edges\": [...]}",
            Value::Null,
        )));
    };
    flow.insert("name".into(), json!(name));
    if let Some(d) = description {
        flow.insert("description".into(), json!(d));
    }
    Ok(Value::Object(flow))
}

pub(super) fn create(state: &Arc<State>, body: SeedWorkflowCreate) -> Reply {
    if body.is_public == Some(true) {
        return not_public();
    }
    if let Ok(id) = crate::workflow::workflow_id(&body.name) {
        match state.db.current_workflow(&id) {
            Ok(Some(_)) => {
                return error(
                    StatusCode::CONFLICT,
                    "exists",
                    format!("a workflow with id {id:?} exists; PUT /api/workflows/{id} changes it"),
                    Value::Null,
                );
            }
            Ok(None) => {}
            Err(e) => return store_error(&e),
        }
    }
    let value = match definition(body.flow_data, &body.name, body.description) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    match super::api::deployed(state, value, None) {
        Ok((deployed, _)) => workflow(state, &deployed.name, StatusCode::CREATED),
        Err(r) => *r,
    }
}

pub(super) fn get(state: &Arc<State>, id: &str) -> Reply {
    workflow(state, id, StatusCode::OK)
}

pub(super) fn update(state: &Arc<State>, id: &str, body: SeedWorkflowUpdate) -> Reply {
    if body.is_public == Some(true) {
        return not_public();
    }
    let current = match state.db.current_workflow(id) {
        Ok(Some(c)) => c,
        Ok(None) => return not_found(&format!("no workflow {id:?}")),
        Err(e) => return store_error(&e),
    };
    let mut old: Map<String, Value> = serde_json::from_str(&current.definition).unwrap_or_default();
    let name = body
        .name
        .or_else(|| old.get("name").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| id.to_string());
    if crate::workflow::workflow_id(&name).as_deref() != Ok(id) {
        return error(
            StatusCode::CONFLICT,
            "rename_not_supported",
            format!(
                "the name {name:?} would make another id than {id:?}; create a new workflow instead (POST /api/workflows/)"
            ),
            Value::Null,
        );
    }
    let description = body.description.or_else(|| {
        old.get("description")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let flow = match body.flow_data {
        Some(flow) => flow,
        None => {
            old.remove("name");
            old.remove("description");
            Value::Object(old)
        }
    };
    let value = match definition(flow, &name, description) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    match super::api::deployed(state, value, None) {
        Ok(_) => workflow(state, id, StatusCode::OK),
        Err(r) => *r,
    }
}

pub(super) fn delete(state: &Arc<State>, id: &str) -> Reply {
    match super::manage::remove_workflow(state, id) {
        Ok(true) => ok(
            StatusCode::OK,
            &SeedDeleted {
                message: "Workflow deleted successfully".into(),
                id: id.to_string(),
            },
        ),
        Ok(false) => not_found(&format!("no workflow {id:?}")),
        Err(e) => store_error(&e),
    }
}

pub(super) async fn execute(state: &Arc<State>, id: &str, body: SeedExecute) -> Reply {
    let inputs = Value::Object(body.inputs);
    let started = crate::engine::events::now_ms();
    match super::api::start_run(state, id, inputs.clone(), "manual").await {
        Ok(run_id) => ok(
            StatusCode::CREATED,
            &SeedExecution {
                id: run_id.clone(),
                execution_id: run_id,
                workflow_id: id.to_string(),
                status: "running".into(),
                inputs,
                outputs: None,
                error_message: None,
                started_at: rfc3339(started),
                completed_at: None,
            },
        ),
        Err(r) => *r,
    }
}

pub(super) fn execution(state: &Arc<State>, id: &str) -> Reply {
    let detail = match state
        .db
        .resolve_run(id)
        .and_then(|full| state.db.get_run(&full))
    {
        Ok(detail) => detail,
        Err(e) => return store_error(&e),
    };
    let s = &detail.summary;
    let finished = !matches!(s.status.as_str(), "queued" | "running");
    ok(
        StatusCode::OK,
        &SeedExecution {
            id: s.id.clone(),
            execution_id: s.id.clone(),
            workflow_id: s.workflow.clone(),
            status: seed_status(&s.status).into(),
            inputs: detail.input.clone(),
            outputs: finished.then(|| detail.output.clone()),
            error_message: s.error.clone(),
            started_at: rfc3339(s.created_at),
            completed_at: finished.then(|| rfc3339(s.created_at + s.duration_ms.unwrap_or(0))),
        },
    )
}

/// A native bus event in the seed's words: `node_start`, `node_end` (with
/// the node's output when kept), `workflow_complete` (with the result) or
/// `error`; `None` for the rest (logs, the run's start).
pub(super) fn seed_event(bus: &super::events::EventBus, e: &Value) -> Option<Value> {
    let run = e["run_id"].as_str()?;
    let node = e["node"].as_str().unwrap_or_default();
    let now = jiff::Timestamp::now().to_string();
    Some(match e["type"].as_str()? {
        "node_started" => {
            json!({"type": "node_start", "execution_id": run, "node_id": node, "timestamp": now})
        }
        "node_finished" => json!({"type": "node_end", "execution_id": run, "node_id": node,
            "status": e["status"], "output": bus.output_of(run, node).map(|o| (*o).clone()),
            "timestamp": now}),
        "node_failed" => json!({"type": "node_end", "execution_id": run, "node_id": node,
            "status": "failed", "error": e["error"], "timestamp": now}),
        "run_finished" if e["status"] == "succeeded" => json!({"type": "workflow_complete",
            "execution_id": run, "status": "completed",
            "result": bus.result_of(run).map(|r| (*r).clone()), "timestamp": now}),
        "run_finished" => json!({"type": "error", "execution_id": run,
            "status": seed_status(e["status"].as_str().unwrap_or("")), "error": e["error"],
            "timestamp": now}),
        _ => return None,
    })
}

/// `ws://…/api/workflows/{id}/stream`: the client sends
/// `{"action": "execute", "inputs": {…}}` (or `{"action": "cancel"}`) and
/// receives `execution_started`, then the run's events in the seed's words.
pub(super) async fn workflow_stream(
    state: Arc<State>,
    id: String,
    socket: hyper_tungstenite::HyperWebsocket,
) {
    use futures_util::{SinkExt, StreamExt};
    use hyper_tungstenite::tungstenite::Message;
    let Ok(mut ws) = socket.await else { return };
    let bus = state.bus.clone();
    bus.watch_workflow(&id);
    // Subscribed before any run starts: nothing falls between.
    let (_, mut rx) = bus.join(None);
    let mut current: Option<String> = None;
    let say = |v: Value| Message::text(v.to_string());
    loop {
        tokio::select! {
            incoming = ws.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text.to_string(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let request: Value = serde_json::from_str(&text).unwrap_or_default();
                let answer = match request["action"].as_str() {
                    Some("execute") => {
                        let inputs = match &request["inputs"] {
                            Value::Null => json!({}),
                            inputs @ Value::Object(_) => inputs.clone(),
                            _ => {
                                let _ = ws.send(say(json!({"type": "error", "error": "inputs must be a JSON object"}))).await;
                                continue;
                            }
                        };
                        match super::api::start_run(&state, &id, inputs, "manual").await {
                            Ok(run) => {
                                current = Some(run.clone());
                                json!({"type": "execution_started", "execution_id": run, "workflow_id": id})
                            }
                            Err(reply) => json!({"type": "error", "error": reply_message(*reply).await}),
                        }
                    }
                    Some("cancel") => match &current {
                        Some(run) => {
                            let reply = super::manage::cancel(&state, run).await;
                            if reply.status().is_success() {
                                continue;
                            }
                            json!({"type": "error", "error": reply_message(reply).await})
                        }
                        None => json!({"type": "error", "error": "nothing to cancel: send {\"action\": \"execute\"} first"}),
                    },
                    _ => json!({"type": "error", "error": "send {\"action\": \"execute\", \"inputs\": {…}} or {\"action\": \"cancel\"}"}),
                };
                if ws.send(say(answer)).await.is_err() {
                    break;
                }
            }
            event = rx.recv() => match event {
                Ok(event) => {
                    let Some(run) = current.as_deref() else { continue };
                    if event["run_id"].as_str() != Some(run) {
                        continue;
                    }
                    let finished = event["type"] == "run_finished";
                    if let Some(seed) = seed_event(&bus, &event)
                        && ws.send(say(seed)).await.is_err()
                    {
                        break;
                    }
                    if finished {
                        bus.unwatch_run(run);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let note = json!({"type": "error", "error": format!("{n} events were dropped: the daemon is busy; GET /api/executions/{{id}} has the record")});
                    if ws.send(say(note)).await.is_err() {
                        break;
                    }
                }
                Err(_) => break,
            },
        }
    }
    if let Some(run) = &current {
        bus.unwatch_run(run);
    }
    bus.unwatch_workflow(&id);
    let _ = ws.close(None).await;
}

/// The message of an error reply.
async fn reply_message(reply: Reply) -> String {
    use http_body_util::BodyExt;
    let bytes = reply
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| "the request was refused".into())
}

/// `GET /api/executions/{id}/stream`: the run's events in the seed's words
/// as server-sent events, from its start (as far as the daemon keeps them)
/// until it ends.
pub(super) async fn execution_stream(state: &Arc<State>, id: &str) -> Reply {
    use http_body_util::BodyExt;
    let wanted = id.to_string();
    let detail = match state
        .db(move |db| db.resolve_run(&wanted).and_then(|full| db.get_run(&full)))
        .await
    {
        Ok(detail) => detail,
        Err(e) => return store_error(&e),
    };
    let run = detail.summary.id.clone();
    let bus = state.bus.clone();
    bus.watch_run(&run);
    let (past, rx) = bus.join(Some(&run));
    // Outputs recorded before this stream began, from the record.
    let recorded: std::collections::HashMap<String, Value> = detail
        .nodes
        .iter()
        .filter(|n| n.status == "succeeded")
        .filter_map(|n| Some((n.node_id.clone(), n.output.clone()?)))
        .collect();
    let frame = |v: Value| {
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(hyper::body::Bytes::from(
            format!("data: {v}\n\n"),
        )))
    };
    let result = detail.output.clone();
    let fill = move |mut v: Value| {
        if v["type"] == "node_end"
            && v["output"].is_null()
            && let Some(out) = v["node_id"].as_str().and_then(|n| recorded.get(n))
        {
            v["output"] = out.clone();
        }
        if v["type"] == "workflow_complete" && v["result"].is_null() {
            v["result"] = result.clone();
        }
        v
    };
    let mut first: Vec<Value> = past
        .iter()
        .filter_map(|e| seed_event(&bus, e))
        .map(&fill)
        .collect();
    let finished_before = !matches!(detail.summary.status.as_str(), "queued" | "running");
    let done =
        past.iter().any(|e| e["type"] == "run_finished") || (past.is_empty() && finished_before);
    if past.is_empty() && finished_before {
        // Its events are no longer kept: its record, as events.
        for n in &detail.nodes {
            first.push(
                json!({"type": "node_end", "execution_id": run, "node_id": n.node_id,
                "status": n.status, "output": n.output}),
            );
        }
        first.push(if detail.summary.status == "succeeded" {
            json!({"type": "workflow_complete", "execution_id": run, "status": "completed", "result": detail.output})
        } else {
            json!({"type": "error", "execution_id": run, "status": seed_status(&detail.summary.status), "error": detail.summary.error})
        });
    }
    let frames: Vec<_> = first.into_iter().map(frame).collect();
    let live = futures_util::stream::unfold(
        (rx, done, bus.clone(), run.clone()),
        move |(mut rx, done, bus, run)| async move {
            if done {
                bus.unwatch_run(&run);
                return None;
            }
            loop {
                match rx.recv().await {
                    Ok(e) if e["run_id"].as_str() == Some(run.as_str()) => {
                        let finished = e["type"] == "run_finished";
                        if let Some(seed) = seed_event(&bus, &e) {
                            let chunk = format!("data: {seed}\n\n");
                            return Some((
                                Ok(hyper::body::Frame::data(hyper::body::Bytes::from(chunk))),
                                (rx, finished, bus, run),
                            ));
                        }
                        if finished {
                            bus.unwatch_run(&run);
                            return None;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => {
                        bus.unwatch_run(&run);
                        return None;
                    }
                }
            }
        },
    );
    let stream = futures_util::StreamExt::chain(futures_util::stream::iter(frames), live);
    let body = http_body_util::StreamBody::new(stream).boxed();
    let mut reply = hyper::Response::new(body);
    let headers = reply.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    reply
}
