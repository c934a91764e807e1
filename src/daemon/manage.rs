//! The rest of the API: workflow versions, enable/disable, rollback, delete;
//! execution logs, cancel and retry; nodes, plugins, credentials, schedules;
//! and the OpenAPI document that lists every route.

use std::sync::Arc;

use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};

use super::State;
use super::api::{
    Reply, body_json, error, internal, not_found, reply, start_run_with, store_error,
};

/// Routes handled here; `None` when the path is not one of them.
pub(super) async fn route(
    state: &Arc<State>,
    method: &Method,
    parts: &[&str],
    req: Request<hyper::body::Incoming>,
) -> Option<Reply> {
    Some(match (method, parts) {
        (&Method::GET, ["openapi.json"]) => reply(StatusCode::OK, &openapi()),
        (&Method::PUT, ["workflows", name]) => match body_json(req).await {
            Ok((mut value, _)) => {
                value["name"] = json!(name);
                super::api::deploy(state, value, None)
            }
            Err(r) => *r,
        },
        (&Method::DELETE, ["workflows", name]) => delete_workflow(state, name),
        (&Method::GET, ["workflows", name, "versions"]) => versions(state, name),
        (&Method::POST, ["workflows", name, "rollback"]) => match body_json(req).await {
            Ok((body, _)) => rollback(state, name, body.get("version").and_then(Value::as_i64)),
            Err(r) => *r,
        },
        (&Method::POST, ["workflows", name, action @ ("enable" | "disable")]) => {
            set_enabled(state, name, *action == "enable")
        }
        (&Method::GET, ["executions", id, "logs"]) => {
            let Ok(store) = state.store.lock() else {
                return Some(internal("the store is unusable"));
            };
            match store.run_logs(id) {
                Ok(logs) => reply(StatusCode::OK, &json!({"logs": logs})),
                Err(e) => store_error(&e),
            }
        }
        (&Method::POST, ["executions", id, "cancel"]) => cancel(state, id).await,
        (&Method::POST, ["executions", id, "retry"]) => retry(state, id).await,
        (&Method::GET, ["nodes"]) => {
            let specs: Vec<Value> = state
                .engine
                .registry()
                .iter()
                .map(|n| serde_json::to_value(n.spec()).unwrap_or_default())
                .collect();
            reply(StatusCode::OK, &json!({"nodes": specs}))
        }
        (&Method::GET, ["plugins"]) => {
            let catalog = crate::packages::Catalog::discover(
                &state.home.node_packages_dir(),
                &state.home.plugin_packages_dir(),
            );
            let plugins: Vec<Value> = catalog
                .plugins
                .iter()
                .map(|p| json!({"name": p.manifest.name, "version": p.manifest.version, "description": p.manifest.description}))
                .collect();
            reply(
                StatusCode::OK,
                &json!({"plugins": plugins, "problems": catalog.problems}),
            )
        }
        (&Method::GET, ["schedules"]) => {
            let Ok(store) = state.store.lock() else {
                return Some(internal("the store is unusable"));
            };
            match super::scheduler::upcoming(&store) {
                Ok(schedules) => reply(StatusCode::OK, &json!({"schedules": schedules})),
                Err(e) => super::api::store_error(&e),
            }
        }
        (&Method::GET, ["credentials"]) => match crate::secrets::Vault::open(&state.home) {
            Ok(vault) => match vault.list() {
                Ok(list) => reply(
                    StatusCode::OK,
                    &json!({"credentials": list, "key_store": vault.key_store().as_str()}),
                ),
                Err(e) => internal(&e.to_string()),
            },
            Err(e) => internal(&e.to_string()),
        },
        (&Method::POST, ["credentials"]) => match body_json(req).await {
            Ok((body, _)) => create_credential(state, &body),
            Err(r) => *r,
        },
        (&Method::DELETE, ["credentials", name]) => {
            match crate::secrets::Vault::open(&state.home) {
                Ok(vault) => match vault.remove(name) {
                    Ok(true) => reply(StatusCode::OK, &json!({"deleted": name})),
                    Ok(false) => not_found(&format!("no credential {name:?}")),
                    Err(e) => internal(&e.to_string()),
                },
                Err(e) => internal(&e.to_string()),
            }
        }
        _ => return None,
    })
}

fn delete_workflow(state: &Arc<State>, name: &str) -> Reply {
    let Ok(store) = state.store.lock() else {
        return internal("the store is unusable");
    };
    match store.delete_workflow(name) {
        Ok(false) => not_found(&format!("no deployed workflow {name:?}")),
        Ok(true) => {
            drop(store);
            super::routes::changed(state);
            reply(StatusCode::OK, &json!({"deleted": name}))
        }
        Err(e) => store_error(&e),
    }
}

fn versions(state: &Arc<State>, name: &str) -> Reply {
    let Ok(store) = state.store.lock() else {
        return internal("the store is unusable");
    };
    match store.workflow_versions(name) {
        Ok(Some(rows)) => reply(StatusCode::OK, &json!({"name": name, "versions": rows})),
        Ok(None) => not_found(&format!("no deployed workflow {name:?}")),
        Err(e) => store_error(&e),
    }
}

fn rollback(state: &Arc<State>, name: &str, version: Option<i64>) -> Reply {
    use crate::store::workflows::Rollback;
    let Some(version) = version else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "give {\"version\": N}",
            Value::Null,
        );
    };
    let Ok(store) = state.store.lock() else {
        return internal("the store is unusable");
    };
    match store.rollback_workflow(name, version) {
        Ok(Rollback::Done) => {
            drop(store);
            super::routes::changed(state);
            reply(StatusCode::OK, &json!({"name": name, "version": version}))
        }
        Ok(Rollback::NoWorkflow) => not_found(&format!("no deployed workflow {name:?}")),
        Ok(Rollback::NoVersion) => {
            not_found(&format!("workflow {name:?} has no version {version}"))
        }
        Err(e) => store_error(&e),
    }
}

fn set_enabled(state: &Arc<State>, name: &str, enabled: bool) -> Reply {
    let Ok(store) = state.store.lock() else {
        return internal("the store is unusable");
    };
    match store.set_workflow_enabled(name, enabled) {
        Ok(false) => not_found(&format!("no deployed workflow {name:?}")),
        Ok(true) => {
            drop(store);
            super::routes::changed(state);
            reply(StatusCode::OK, &json!({"name": name, "enabled": enabled}))
        }
        Err(e) => store_error(&e),
    }
}

async fn cancel(state: &Arc<State>, id: &str) -> Reply {
    let full = {
        let Ok(store) = state.store.lock() else {
            return internal("the store is unusable");
        };
        match store.resolve_run_id(id) {
            Ok(full) => full,
            Err(e) => {
                return store_error(&e);
            }
        }
    };
    let token = state
        .cancels
        .lock()
        .ok()
        .and_then(|m| m.get(&full).cloned());
    match token {
        Some(t) => {
            t.cancel();
            // A run still waiting for a slot is cancelled on disk before the
            // answer, so a restart does not start it again.
            if let Err(why) = super::api::cancel_queued(state, &full).await {
                return internal(&format!(
                    "run {full} is cancelled in this daemon but could not be recorded as cancelled: {why}"
                ));
            }
            reply(
                StatusCode::ACCEPTED,
                &json!({"run_id": full, "cancelling": true}),
            )
        }
        None => error(
            StatusCode::CONFLICT,
            "not_running",
            format!("run {full} is not running in this daemon"),
            Value::Null,
        ),
    }
}

async fn retry(state: &Arc<State>, id: &str) -> Reply {
    let (full_id, workflow, definition, input) = {
        let Ok(store) = state.store.lock() else {
            return internal("the store is unusable");
        };
        let detail = match store
            .resolve_run_id(id)
            .and_then(|full| store.get_run(&full, &state.home.blobs_dir()))
        {
            Ok(d) => d,
            Err(e) => {
                return store_error(&e);
            }
        };
        let definition = detail
            .workflow_hash
            .as_deref()
            .and_then(|h| store.definition(h).ok().flatten());
        (
            detail.summary.id,
            detail.summary.workflow,
            definition,
            detail.input,
        )
    };
    let spec = super::api::RunSpec {
        definition,
        retry_of: Some(full_id),
        ..Default::default()
    };
    match start_run_with(state, &workflow, input, "retry", spec).await {
        Ok(run_id) => reply(
            StatusCode::ACCEPTED,
            &json!({"run_id": run_id, "retry_of": id}),
        ),
        Err(r) => *r,
    }
}

fn create_credential(state: &Arc<State>, body: &Value) -> Reply {
    let (Some(name), Some(kind), Some(fields)) = (
        body.get("name").and_then(Value::as_str),
        body.get("type").and_then(Value::as_str),
        body.get("fields").and_then(Value::as_object),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "give {\"name\", \"type\", \"fields\": {...}}",
            Value::Null,
        );
    };
    let fields: std::collections::BTreeMap<String, zeroize::Zeroizing<String>> = fields
        .iter()
        .filter_map(|(k, v)| {
            v.as_str()
                .map(|s| (k.clone(), zeroize::Zeroizing::new(s.to_string())))
        })
        .collect();
    let result = crate::secrets::Vault::open(&state.home).and_then(|v| v.set(name, kind, &fields));
    match result {
        Ok(()) => reply(StatusCode::CREATED, &json!({"name": name, "type": kind})),
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            "invalid_credential",
            e.to_string(),
            Value::Null,
        ),
    }
}

/// Every route: (method, path template, summary).
pub(super) const ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/api/v1/health", "Daemon health"),
    ("GET", "/api/v1/version", "Version"),
    ("GET", "/api/v1/openapi.json", "This document"),
    ("GET", "/api/v1/workflows", "Deployed workflows"),
    (
        "POST",
        "/api/v1/workflows",
        "Deploy a workflow (a new version)",
    ),
    (
        "GET",
        "/api/v1/workflows/{name}",
        "A workflow's current definition",
    ),
    (
        "PUT",
        "/api/v1/workflows/{name}",
        "Update a workflow (a new version)",
    ),
    (
        "DELETE",
        "/api/v1/workflows/{name}",
        "Delete a workflow and its versions",
    ),
    (
        "GET",
        "/api/v1/workflows/{name}/versions",
        "Versions of a workflow",
    ),
    (
        "POST",
        "/api/v1/workflows/{name}/rollback",
        "Make an earlier version current",
    ),
    (
        "POST",
        "/api/v1/workflows/{name}/enable",
        "Enable a workflow",
    ),
    (
        "POST",
        "/api/v1/workflows/{name}/disable",
        "Disable a workflow",
    ),
    (
        "POST",
        "/api/v1/workflows/{name}/run",
        "Run a workflow with the body as input",
    ),
    ("GET", "/api/v1/executions", "Recorded runs"),
    (
        "GET",
        "/api/v1/executions/{id}",
        "One run with its node attempts",
    ),
    ("GET", "/api/v1/executions/{id}/logs", "A run's log lines"),
    (
        "GET",
        "/api/v1/executions/{id}/events",
        "WebSocket: a run's events, from its start",
    ),
    (
        "GET",
        "/api/v1/events",
        "WebSocket: the events of every run",
    ),
    (
        "POST",
        "/api/v1/executions/{id}/cancel",
        "Cancel a running run",
    ),
    (
        "POST",
        "/api/v1/executions/{id}/retry",
        "Run again with the same definition and input",
    ),
    ("GET", "/api/v1/nodes", "Node types"),
    ("GET", "/api/v1/plugins", "Plugins"),
    (
        "GET",
        "/api/v1/credentials",
        "Credentials (names and types only)",
    ),
    ("POST", "/api/v1/credentials", "Create a credential"),
    (
        "DELETE",
        "/api/v1/credentials/{name}",
        "Delete a credential",
    ),
    ("GET", "/api/v1/schedules", "Schedules and their next fires"),
];

/// Whether `parts` (below /api/v1) match a route template with any method.
/// The methods the route table has for a path (for `405` and its `Allow`).
pub(super) fn allowed_methods(parts: &[&str]) -> Vec<&'static str> {
    let mut methods: Vec<&'static str> = ROUTES
        .iter()
        .filter(|(_, template, _)| {
            let t: Vec<&str> = template.trim_start_matches("/api/v1/").split('/').collect();
            t.len() == parts.len()
                && t.iter()
                    .zip(parts)
                    .all(|(a, b)| a.starts_with('{') || a == b)
        })
        .map(|(method, _, _)| *method)
        .collect();
    methods.sort_unstable();
    methods.dedup();
    methods
}

/// The OpenAPI 3 document of the API.
pub fn openapi() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary) in ROUTES {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        let params: Vec<Value> = path
            .split('/')
            .filter(|s| s.starts_with('{'))
            .map(|s| json!({"name": s.trim_matches(|c| c == '{' || c == '}'), "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let ok = match *method {
            "POST"
                if path.ends_with("/run")
                    || path.ends_with("/retry")
                    || path.ends_with("/cancel") =>
            {
                "202"
            }
            "POST" if path.ends_with("/workflows") || path.ends_with("/credentials") => "201",
            _ => "200",
        };
        entry[method.to_lowercase()] = json!({
            "summary": summary,
            "parameters": params,
            "security": [{"bearer": []}],
            "responses": {
                ok: {"description": "success", "content": {"application/json": {}}},
                "401": {"description": "missing or wrong bearer token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "fuse daemon API", "version": env!("CARGO_PKG_VERSION")},
        "servers": [{"url": "http://127.0.0.1:5678"}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}, "details": {}}}}}}
        }
    })
}
