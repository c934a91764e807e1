//! Alerts: when a run fails, the daemon runs an alert workflow with the
//! failed run's summary (n8n's error workflow): the workflow's own
//! `settings.on_failure`, else `alerts.workflow`. Threshold rules in
//! `[alerts]` start `alerts.workflow` too: a workflow failing N times in a
//! row, a queue deeper than N for a while, a schedule that missed fires.
//! Runs of alert workflows never raise alerts themselves (no loops).

use std::sync::Arc;

use serde_json::{Value, json};

use super::State;
use crate::engine::{RunRecord, Status};

/// The trigger kind of alert runs.
pub const TRIGGER: &str = "alert";

/// After a run of `workflow` ends.
pub(super) async fn after_run(
    state: &Arc<State>,
    workflow: &str,
    on_failure: Option<&str>,
    trigger: &str,
    record: &RunRecord,
) {
    if trigger == TRIGGER {
        return;
    }
    let alerts = &state.alerts;
    let streak = {
        let Ok(mut streaks) = state.streaks.lock() else {
            return;
        };
        match record.status {
            Status::Succeeded => {
                streaks.remove(workflow);
                return;
            }
            Status::Failed => {
                let n = streaks.entry(workflow.to_string()).or_insert(0);
                *n += 1;
                *n
            }
            // Cancelled or interrupted: nobody's failure.
            _ => return,
        }
    };
    let failed_node = record
        .nodes
        .iter()
        .find(|(_, n)| n.status == Status::Failed)
        .map(|(id, _)| id.clone());
    let error = record.error.clone().unwrap_or_default();
    let summary = |rule: &str, message: String| {
        json!({"rule": rule, "message": message, "workflow": workflow, "run_id": record.run_id,
               "status": record.status, "error": error, "failed_node": failed_node,
               "trigger": trigger, "duration_ms": record.duration_ms, "failures_in_a_row": streak,
               "url": run_url(state, &record.run_id)})
    };
    let target = on_failure.map(str::to_string).or_else(|| {
        (alerts.every_failure && !alerts.workflow.is_empty()).then(|| alerts.workflow.clone())
    });
    if let Some(target) = target {
        let message = format!("{workflow} failed (run {}): {error}", record.run_id);
        start(state, &target, workflow, summary("failure", message)).await;
    }
    if alerts.failures_in_a_row > 0
        && streak == alerts.failures_in_a_row
        && !alerts.workflow.is_empty()
    {
        let message = format!("{workflow} has failed {streak} times in a row; the last: {error}");
        start(
            state,
            &alerts.workflow.clone(),
            workflow,
            summary("failures_in_a_row", message),
        )
        .await;
    }
}

/// A schedule's fires were missed while the daemon was down.
pub(super) async fn missed_fires(state: &Arc<State>, workflow: &str, node: &str, policy: &str) {
    if !state.alerts.missed_fires || state.alerts.workflow.is_empty() {
        return;
    }
    let message = format!(
        "the schedule {node} of {workflow} missed fires while the daemon was down (missed: {policy})"
    );
    let input = json!({"rule": "missed_fire", "message": message, "workflow": workflow, "node": node,
                       "policy": policy});
    start(state, &state.alerts.workflow.clone(), workflow, input).await;
}

/// Watches the queue: more than `alerts.queue_depth` runs waiting for
/// `alerts.queue_for` starts one alert, and another only after the queue
/// has drained below the limit.
pub(super) async fn watch_queue(state: Arc<State>) {
    let limit = state.alerts.queue_depth;
    if limit == 0 || state.alerts.workflow.is_empty() {
        return;
    }
    let hold = crate::engine::duration::parse(&state.alerts.queue_for)
        .unwrap_or(std::time::Duration::from_secs(60));
    let mut deep_since: Option<std::time::Instant> = None;
    let mut alerted = false;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let queued = super::api::health(&state).queued;
        if queued <= limit {
            deep_since = None;
            alerted = false;
            continue;
        }
        let since = *deep_since.get_or_insert_with(std::time::Instant::now);
        if !alerted && since.elapsed() >= hold {
            alerted = true;
            let message = format!(
                "{queued} runs have waited for a run slot for {} (alerts.queue_depth {limit}; daemon.max_runs {})",
                crate::engine::duration::human(hold),
                state.daemon_config.max_runs
            );
            let input = json!({"rule": "queue_depth", "message": message, "queued": queued, "limit": limit});
            start(&state, &state.alerts.workflow.clone(), "", input).await;
        }
    }
}

/// An alert run to start.
pub(crate) struct Alert {
    target: String,
    about: String,
    input: Value,
}

/// Queues an alert run (started by [`deliver`]; never from inside a run's
/// own task, whose future would then contain itself).
async fn start(state: &Arc<State>, target: &str, about: &str, input: Value) {
    if target == about {
        tracing::warn!(
            workflow = about,
            "{about} names itself as its alert workflow; no alert is started (it would fail the same way)"
        );
        return;
    }
    let alert = Alert {
        target: target.to_string(),
        about: about.to_string(),
        input,
    };
    if state.alert_tx.send(alert).is_err() {
        tracing::error!(
            alert = target,
            "the alert could not be queued: the daemon is stopping"
        );
    }
}

/// Starts queued alert runs, one after another.
pub(super) async fn deliver(
    state: Arc<State>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Alert>,
) {
    while let Some(Alert {
        target,
        about,
        input,
    }) = rx.recv().await
    {
        match super::api::start_run(&state, &target, input, TRIGGER).await {
            Ok(run_id) => tracing::info!(
                alert = %target,
                run_id = %run_id,
                "alert workflow {target} started (run {run_id}) about {about}"
            ),
            Err(_) => tracing::error!(
                alert = %target,
                "the alert workflow {target:?} could not be started; deploy and enable it (alerts.workflow / settings.on_failure)"
            ),
        }
    }
}

fn run_url(state: &State, run_id: &str) -> String {
    state
        .addr
        .get()
        .map(|a| format!("http://{a}/runs/{run_id}"))
        .unwrap_or_default()
}

/// Whether alerts are configured at all (for the start-up log line).
pub(super) fn describe(state: &State) -> Option<String> {
    let a = &state.alerts;
    (!a.workflow.is_empty()).then(|| {
        format!(
            "alerts go to workflow {:?} (every failure: {}, failures in a row: {}, queue depth: {}, missed fires: {})",
            a.workflow, a.every_failure, a.failures_in_a_row, a.queue_depth, a.missed_fires
        )
    })
}
