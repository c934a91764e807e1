//! Probes for monitors, systemd and containers, without a token:
//! `/healthz` (liveness: the process answers) and `/readyz` (readiness: the
//! database answers, the history writer keeps up, the scheduler ticks).
//! Neither says more than which check fails; details are in the token-protected
//! `/api/v1/health`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::StatusCode;
use serde_json::{Value, json};

use super::State;
use super::api::{Reply, reply};

/// How long the database may take to answer a readiness check.
const DATABASE_LIMIT: Duration = Duration::from_secs(2);
/// Events the history writer may be behind and still be ready.
pub const MAX_BACKLOG: u64 = 100_000;
/// Ticks the scheduler may miss (counted from the daemon's start for the first).
const MISSED_TICKS: u32 = 25;

/// `/healthz`: the process is alive and serving.
pub(super) fn healthz() -> Reply {
    reply(StatusCode::OK, &json!({"status": "ok"}))
}

/// `/readyz`: every check, and 503 naming the first that fails.
pub(super) async fn readyz(state: &Arc<State>) -> Reply {
    let database = match tokio::time::timeout(DATABASE_LIMIT, state.db(|db| db.ping())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("the database does not answer: {e}")),
        Err(_) => Err(format!(
            "the database did not answer within {}s (locked by another program?)",
            DATABASE_LIMIT.as_secs()
        )),
    };
    let backlog = state.recorder.backlog();
    let history = if backlog <= MAX_BACKLOG {
        Ok(())
    } else {
        Err(format!("the history writer is {backlog} events behind"))
    };
    let limit = super::scheduler::TICK * MISSED_TICKS;
    let last = state.scheduler_tick.load(Ordering::Relaxed);
    let since = if last == 0 {
        state.started.elapsed()
    } else {
        Duration::from_millis(u64::try_from(crate::engine::events::now_ms() - last).unwrap_or(0))
    };
    let scheduler = if since <= limit || !state.roles.scheduler {
        Ok(())
    } else {
        Err(format!(
            "the scheduler has not ticked for {}s",
            since.as_secs()
        ))
    };
    let checks = [
        ("database", database),
        ("history", history),
        ("scheduler", scheduler),
    ];
    let failing = checks.iter().find(|(_, r)| r.is_err()).map(|(n, _)| *n);
    let summary: serde_json::Map<String, Value> = checks
        .iter()
        .map(|(name, r)| {
            (
                name.to_string(),
                match r {
                    Ok(()) => json!("ok"),
                    Err(why) => json!(why),
                },
            )
        })
        .collect();
    match failing {
        None => reply(
            StatusCode::OK,
            &json!({"status": "ready", "checks": summary}),
        ),
        Some(name) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "not_ready", "failing": name, "checks": summary}),
        ),
    }
}
