//! What a daemon does at start with the runs an earlier one left behind:
//! accepted runs that never started run now (under their original id), and
//! interrupted runs of workflows with `"settings": {"resume": true}` are
//! resumed from the last finished node (a new run reusing the outputs of the
//! nodes that had succeeded).

use std::sync::Arc;

use rusqlite::OptionalExtension;
use serde_json::Value;

use super::State;
use super::api::{RunSpec, start_run_with};
use crate::store::Store;

/// A run left by an earlier daemon.
pub(super) struct Leftover {
    id: String,
    workflow: String,
    trigger: String,
    input: Value,
    queued: bool,
}

/// Top-level runs left `queued` or `running`.
pub(super) fn leftovers(store: &Store) -> anyhow::Result<Vec<Leftover>> {
    let mut stmt = store.conn().prepare(
        "SELECT id, workflow_name, trigger_kind, input, status FROM executions
         WHERE status IN ('queued', 'running') AND parent_id IS NULL ORDER BY created_at",
    )?;
    let rows = stmt.query_map([], |r| {
        let input: Option<String> = r.get(3)?;
        Ok(Leftover {
            id: r.get(0)?,
            workflow: r.get(1)?,
            trigger: r.get(2)?,
            input: input
                .and_then(|i| serde_json::from_str(&i).ok())
                .unwrap_or(Value::Null),
            queued: r.get::<_, String>(4)? == "queued",
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

fn resumable(state: &State, workflow: &str) -> bool {
    let Ok(store) = state.store.lock() else {
        return false;
    };
    let definition: Option<String> = store
        .conn()
        .query_row(
            "SELECT v.definition FROM workflows w JOIN workflow_versions v
               ON v.workflow_id = w.id AND v.version = w.current_version
             WHERE w.name = ?1 AND w.enabled = 1",
            [workflow],
            |r| r.get(0),
        )
        .optional()
        .ok()
        .flatten();
    definition
        .and_then(|d| serde_json::from_str::<Value>(&d).ok())
        .and_then(|d| d.pointer("/settings/resume").and_then(Value::as_bool))
        .unwrap_or(false)
}

pub(super) async fn resubmit(state: &Arc<State>, leftovers: Vec<Leftover>) {
    for left in leftovers {
        if left.queued {
            let spec = RunSpec {
                existing_id: Some(left.id.clone()),
                ..RunSpec::default()
            };
            match start_run_with(state, &left.workflow, left.input, &left.trigger, spec).await {
                Ok(_) => tracing::info!("run {} (accepted before a restart) started", left.id),
                Err(r) => {
                    tracing::warn!(
                        "run {} could not be started after a restart ({})",
                        left.id,
                        r.status()
                    );
                    if let Ok(store) = state.store.lock() {
                        let _ = store.conn().execute(
                            "UPDATE executions SET status = 'interrupted', error = 'could not be started after a restart' WHERE id = ?1",
                            [&left.id],
                        );
                    }
                }
            }
            continue;
        }
        if !resumable(state, &left.workflow) {
            continue;
        }
        let (reuse, definition, input) = {
            let Ok(store) = state.store.lock() else {
                continue;
            };
            let Ok(detail) = store.get_run(&left.id, &state.home.blobs_dir()) else {
                continue;
            };
            let definition = detail
                .workflow_hash
                .as_deref()
                .and_then(|h| store.definition(h).ok().flatten());
            (
                crate::store::history::succeeded_outputs(&detail.nodes),
                definition,
                detail.input,
            )
        };
        let spec = RunSpec {
            definition,
            retry_of: Some(left.id.clone()),
            reuse,
            ..RunSpec::default()
        };
        match start_run_with(state, &left.workflow, input, "resume", spec).await {
            Ok(id) => tracing::info!("interrupted run {} resumed as {id}", left.id),
            Err(r) => tracing::warn!("run {} could not be resumed ({})", left.id, r.status()),
        }
    }
}
