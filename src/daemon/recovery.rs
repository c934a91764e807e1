//! What a daemon does at start with the runs an earlier one left behind:
//! accepted runs that never started run now (under their original id), and
//! interrupted runs of workflows with `"settings": {"resume": true}` are
//! resumed from the last finished node (a new run reusing the outputs of the
//! nodes that had succeeded).

use std::sync::Arc;

use serde_json::Value;

use super::State;
use super::api::{RunSpec, start_run_with};
use crate::store::Store;

/// A run left by an earlier daemon.
pub(super) type Leftover = crate::store::history::UnfinishedRun;

/// Top-level runs left `queued` or `running`.
pub(super) fn leftovers(store: &Store) -> anyhow::Result<Vec<Leftover>> {
    Ok(store.unfinished_runs()?)
}

/// Whether `workflow` is enabled and asks to be resumed after a crash.
async fn resumable(state: &State, workflow: &str) -> bool {
    let wanted = workflow.to_string();
    match state.db(move |db| db.current_workflow(&wanted)).await {
        Ok(Some(current)) if current.enabled => serde_json::from_str::<Value>(&current.definition)
            .ok()
            .and_then(|d| d.pointer("/settings/resume").and_then(Value::as_bool))
            .unwrap_or(false),
        Ok(_) => false,
        Err(e) => {
            tracing::error!("cannot tell whether {workflow} resumes its runs: {e}");
            false
        }
    }
}

pub(super) async fn resubmit(state: &Arc<State>, leftovers: Vec<Leftover>) {
    for left in leftovers {
        if left.queued {
            let spec = RunSpec {
                existing_id: Some(left.id.clone()),
                ..RunSpec::default()
            };
            match start_run_with(state, &left.workflow, left.input, &left.trigger, spec).await {
                Ok(_) => tracing::info!(
                    run_id = %left.id,
                    workflow = %left.workflow,
                    "run accepted before a restart started"
                ),
                Err(r) => {
                    tracing::warn!(
                        run_id = %left.id,
                        workflow = %left.workflow,
                        "run could not be started after a restart ({})",
                        r.status()
                    );
                    let id = left.id.clone();
                    if let Err(e) = state
                        .db(move |db| {
                            db.mark_run_interrupted(&id, "could not be started after a restart")
                        })
                        .await
                    {
                        tracing::error!("run {}: {e}", left.id);
                    }
                }
            }
            continue;
        }
        if !resumable(state, &left.workflow).await {
            continue;
        }
        let id = left.id.clone();
        let found = state.db(move |db| db.run_with_definition(&id)).await;
        let (detail, definition) = match found {
            Ok(found) => found,
            Err(e) => {
                tracing::error!("run {} cannot be resumed: {e}", left.id);
                continue;
            }
        };
        let (reuse, input) = (
            crate::store::history::succeeded_outputs(&detail.nodes),
            detail.input,
        );
        let spec = RunSpec {
            definition,
            retry_of: Some(left.id.clone()),
            reuse,
            ..RunSpec::default()
        };
        match start_run_with(state, &left.workflow, input, "resume", spec).await {
            Ok(id) => tracing::info!(
                run_id = %id,
                retry_of = %left.id,
                workflow = %left.workflow,
                "run interrupted by a crash resumed from its last finished node"
            ),
            Err(r) => tracing::warn!(
                run_id = %left.id,
                workflow = %left.workflow,
                "interrupted run could not be resumed ({})",
                r.status()
            ),
        }
    }
}
