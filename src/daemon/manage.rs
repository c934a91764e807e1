//! The handlers of the rest of the API (the route table in [`crate::api`]
//! names them): workflow versions, enable/disable, rollback, delete;
//! execution logs, cancel and retry; nodes, plugins, credentials, schedules.
//!
//! The synchronous handlers block (database, vault, package folders): the
//! dispatcher runs them on a blocking thread.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::Value;

use super::State;
use super::api::{Reply, error, internal, not_found, ok, start_run_with, store_error};
use crate::api::types;

fn no_workflow(name: &str) -> Reply {
    not_found(&format!(
        "no deployed workflow {name:?}; `fuse workflows list` shows them"
    ))
}

/// Deletes a workflow and drops its routes and schedules; false when there
/// was none.
pub(super) fn remove_workflow(state: &Arc<State>, name: &str) -> crate::Result<bool> {
    let removed = state.db.delete_workflow(name)?;
    if removed {
        tracing::info!(workflow = %name, "deleted");
        super::routes::changed(state);
    }
    Ok(removed)
}

pub(super) fn delete_workflow(state: &Arc<State>, name: &str) -> Reply {
    match remove_workflow(state, name) {
        Ok(false) => no_workflow(name),
        Ok(true) => ok(
            StatusCode::OK,
            &types::Deleted {
                deleted: name.into(),
            },
        ),
        Err(e) => store_error(&e),
    }
}

pub(super) fn versions(state: &Arc<State>, name: &str) -> Reply {
    match state.db.workflow_versions(name) {
        Ok(Some(versions)) => ok(
            StatusCode::OK,
            &types::Versions {
                name: name.into(),
                versions,
            },
        ),
        Ok(None) => no_workflow(name),
        Err(e) => store_error(&e),
    }
}

pub(super) fn version(state: &Arc<State>, name: &str, version: &str) -> Reply {
    let Ok(number) = version.parse::<i64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "a version is a number (see `fuse workflows versions {name}`), not {version:?}"
            ),
            Value::Null,
        );
    };
    match state.db.workflow_version(name, number) {
        Ok(Some((row, definition))) => ok(
            StatusCode::OK,
            &types::VersionDetail {
                name: name.into(),
                version: row.version,
                hash: row.hash,
                created_at: row.created_at,
                current: row.current,
                definition: serde_json::from_str(&definition).unwrap_or(Value::String(definition)),
            },
        ),
        Ok(None) => match state.db.workflow_versions(name) {
            Ok(Some(_)) => not_found(&format!(
                "workflow {name:?} has no version {number}; `fuse workflows versions {name}` lists them"
            )),
            Ok(None) => no_workflow(name),
            Err(e) => store_error(&e),
        },
        Err(e) => store_error(&e),
    }
}

pub(super) fn rollback(state: &Arc<State>, name: &str, version: i64) -> Reply {
    use crate::store::workflows::Rollback;
    match state.db.rollback_workflow(name, version) {
        Ok(Rollback::Done) => {
            super::routes::changed(state);
            ok(
                StatusCode::OK,
                &types::RolledBack {
                    name: name.into(),
                    version,
                },
            )
        }
        Ok(Rollback::NoWorkflow) => no_workflow(name),
        Ok(Rollback::NoVersion) => not_found(&format!(
            "workflow {name:?} has no version {version}; `fuse workflows versions {name}` lists them"
        )),
        Err(e) => store_error(&e),
    }
}

pub(super) fn set_enabled(state: &Arc<State>, name: &str, enabled: bool) -> Reply {
    match state.db.set_workflow_enabled(name, enabled) {
        Ok(false) => no_workflow(name),
        Ok(true) => {
            tracing::info!(
                workflow = %name,
                "{}",
                if enabled { "enabled" } else { "disabled" }
            );
            super::routes::changed(state);
            ok(
                StatusCode::OK,
                &types::Enabled {
                    name: name.into(),
                    enabled,
                },
            )
        }
        Err(e) => store_error(&e),
    }
}

pub(super) fn logs(state: &Arc<State>, id: &str) -> Reply {
    match state
        .db
        .resolve_run(id)
        .and_then(|full| state.db.run_logs(&full))
    {
        Ok(logs) => ok(StatusCode::OK, &types::Logs { logs }),
        Err(e) => store_error(&e),
    }
}

pub(super) async fn cancel(state: &Arc<State>, id: &str) -> Reply {
    let wanted = id.to_string();
    let full = match state.db(move |db| db.resolve_run(&wanted)).await {
        Ok(full) => full,
        Err(e) => return store_error(&e),
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
            ok(
                StatusCode::ACCEPTED,
                &types::Cancelling {
                    run_id: full,
                    cancelling: true,
                },
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

/// Runs a recorded run again with its definition and input; `from_failed`
/// reuses the outputs of the nodes that succeeded, so the run goes on from
/// the node that failed.
pub(super) async fn retry(state: &Arc<State>, id: &str, from_failed: bool) -> Reply {
    let wanted = id.to_string();
    let found = state
        .db(move |db| db.run_with_definition(&db.resolve_run(&wanted)?))
        .await;
    let (detail, definition) = match found {
        Ok(found) => found,
        Err(e) => return store_error(&e),
    };
    if from_failed && detail.summary.status == "succeeded" {
        return error(
            StatusCode::CONFLICT,
            "nothing_failed",
            format!(
                "run {} succeeded, so there is no failed node to go on from; retry it whole (without from_failed)",
                detail.summary.id
            ),
            Value::Null,
        );
    }
    let spec = super::api::RunSpec {
        definition,
        retry_of: Some(detail.summary.id.clone()),
        reuse: if from_failed {
            crate::store::history::succeeded_outputs(&detail.nodes)
        } else {
            Default::default()
        },
        ..Default::default()
    };
    match start_run_with(state, &detail.summary.workflow, detail.input, "retry", spec).await {
        Ok(run_id) => ok(
            StatusCode::ACCEPTED,
            &types::RunStarted {
                run_id,
                retry_of: Some(detail.summary.id),
            },
        ),
        Err(r) => *r,
    }
}

pub(super) fn nodes(state: &Arc<State>) -> Reply {
    let nodes = state
        .engine
        .registry()
        .iter()
        .map(|n| n.spec().clone())
        .collect();
    ok(StatusCode::OK, &types::NodeTypes { nodes })
}

pub(super) fn create_node(state: &Arc<State>, body: types::NewNode) -> Reply {
    use crate::packages::scaffold::{NewNodeError, new_node};
    let packages = state.home.node_packages_dir();
    match new_node(
        &packages,
        &body.name,
        &body.lang,
        body.description.as_deref(),
    ) {
        Ok(files) => {
            let dir = packages.join(&body.name);
            let files = files
                .iter()
                .map(|f| f.strip_prefix(&dir).unwrap_or(f).display().to_string())
                .collect();
            ok(
                StatusCode::CREATED,
                &types::NodeCreated {
                    name: body.name,
                    lang: body.lang,
                    dir: dir.display().to_string(),
                    files,
                },
            )
        }
        Err(NewNodeError::Invalid(why)) => {
            error(StatusCode::BAD_REQUEST, "invalid_node", why, Value::Null)
        }
        Err(e @ NewNodeError::Exists(_)) => {
            error(StatusCode::CONFLICT, "exists", e.to_string(), Value::Null)
        }
        Err(NewNodeError::Failed(e)) => internal(&e.to_string()),
    }
}

pub(super) fn plugins(state: &Arc<State>) -> Reply {
    let catalog = crate::packages::Catalog::discover(
        &state.home.node_packages_dir(),
        &state.home.plugin_packages_dir(),
    );
    let plugins = catalog.plugin_reports(&state.home.plugin_packages_dir());
    ok(
        StatusCode::OK,
        &types::Plugins {
            plugins,
            problems: catalog.problems,
        },
    )
}

pub(super) fn schedules(state: &Arc<State>) -> Reply {
    match state.db.schedules() {
        Ok(schedules) => ok(StatusCode::OK, &types::Schedules { schedules }),
        Err(e) => store_error(&e),
    }
}

pub(super) fn credentials(state: &Arc<State>) -> Reply {
    let listed = state
        .vault()
        .and_then(|vault| Ok((vault.list()?, vault.key_store().as_str().to_string())));
    match listed {
        Ok((credentials, key_store)) => ok(
            StatusCode::OK,
            &types::Credentials {
                credentials,
                key_store,
            },
        ),
        Err(e) => internal(&e.to_string()),
    }
}

pub(super) fn create_credential(state: &Arc<State>, body: types::NewCredential) -> Reply {
    let fields: std::collections::BTreeMap<String, zeroize::Zeroizing<String>> = body
        .fields
        .into_iter()
        .map(|(k, v)| (k, zeroize::Zeroizing::new(v)))
        .collect();
    // Built-in types and those the home's plugins declare, as `fuse creds set`.
    let known = crate::secrets::types::known(&state.home);
    let Some(spec) = known.iter().find(|t| t.name == body.kind) else {
        let names: Vec<&str> = known.iter().map(|t| t.name.as_str()).collect();
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_credential",
            format!(
                "unknown credential type {:?}; the types are {}",
                body.kind,
                names.join(", ")
            ),
            Value::Null,
        );
    };
    let result = state
        .vault()
        .and_then(|v| v.set_typed(&body.name, spec, &fields));
    match result {
        Ok(()) => ok(
            StatusCode::CREATED,
            &types::CredentialCreated {
                name: body.name,
                kind: body.kind,
            },
        ),
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            "invalid_credential",
            e.to_string(),
            Value::Null,
        ),
    }
}

/// Whether a credential decrypts with the master key (its value stays here).
pub(super) fn check_credential(state: &Arc<State>, name: &str) -> Reply {
    let vault = match state.vault() {
        Ok(vault) => vault,
        Err(e) => return internal(&e.to_string()),
    };
    match vault.list() {
        Ok(list) if !list.iter().any(|c| c.name == name) => {
            return not_found(&format!(
                "no credential {name:?}; `fuse creds list` shows them"
            ));
        }
        Ok(_) => {}
        Err(e) => return internal(&e.to_string()),
    }
    let checked = vault.get(name).map(|_| ());
    ok(
        StatusCode::OK,
        &types::CredentialCheck {
            name: name.into(),
            ok: checked.is_ok(),
            error: checked.err().map(|e| e.to_string()),
        },
    )
}

pub(super) fn delete_credential(state: &Arc<State>, name: &str) -> Reply {
    match state.vault().and_then(|vault| vault.remove(name)) {
        Ok(true) => ok(
            StatusCode::OK,
            &types::Deleted {
                deleted: name.into(),
            },
        ),
        Ok(false) => not_found(&format!(
            "no credential {name:?}; `fuse creds list` shows them"
        )),
        Err(e) => internal(&e.to_string()),
    }
}
