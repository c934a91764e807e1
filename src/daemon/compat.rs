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
    match state.db.delete_workflow(id) {
        Ok(true) => {
            super::routes::changed(state);
            ok(
                StatusCode::OK,
                &SeedDeleted {
                    message: "Workflow deleted successfully".into(),
                    id: id.to_string(),
                },
            )
        }
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
