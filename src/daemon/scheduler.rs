//! Schedules of deployed workflows: `trigger.cron` and `trigger.interval` nodes
//! become rows of the `schedules` table with their next fire time, so a restart
//! neither loses nor doubles a fire. Fires missed while the daemon was down
//! follow the trigger's `missed` policy; a fire that comes while the previous
//! run is still going follows its `overlap` policy.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use super::State;
use crate::schedule::{Missed, Overlap, Schedule, triggers_of};
use crate::store::schedules::StoredSchedule;

/// How often due schedules are looked for.
pub(super) const TICK: Duration = Duration::from_millis(200);

/// One stored schedule.
type Row = StoredSchedule;

fn schedule_of(row: &Row) -> Result<Schedule, String> {
    Schedule::of_kind(&row.kind, &row.spec, row.timezone.as_deref())
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// Brings the stored schedules in line with the deployed, enabled workflows:
/// new triggers get their next fire time, changed ones a new one, unchanged
/// ones keep theirs, and triggers that are gone are removed.
pub(super) fn sync(state: &State) {
    let now = Timestamp::now();
    let result = state.db.enabled_workflows().and_then(|workflows| {
        let wanted: Vec<StoredSchedule> = workflows
            .iter()
            .flat_map(|(name, definition, _)| triggers_of(name, definition, now))
            .collect();
        state.db.sync_schedules(&wanted)
    });
    if let Err(e) = result {
        tracing::error!("cannot update the schedules: {e}; they stay as they were");
    }
}

/// The schedules due at or before `before`.
async fn due(state: &State, before: i64) -> Vec<Row> {
    state
        .db(move |db| db.due_schedules(Some(before)))
        .await
        .unwrap_or_else(|e| {
            tracing::error!("cannot read the schedules: {e}");
            Vec::new()
        })
}

async fn set_next(state: &State, row: &Row, next: Option<i64>, fired: Option<i64>) {
    let (workflow, node) = (row.workflow.clone(), row.node_id.clone());
    if let Err(e) = state
        .db(move |db| db.set_schedule_next(&workflow, &node, next, fired))
        .await
    {
        tracing::error!("cannot store the next fire of {}: {e}", row.workflow);
    }
}

/// At start: fires missed while the daemon was down are skipped or run once.
pub(super) async fn catch_up(state: &Arc<State>) {
    let now = Timestamp::now();
    for row in due(state, ms(now)).await {
        let Ok(schedule) = schedule_of(&row) else {
            continue;
        };
        let next = schedule.next_after(now).map(ms);
        match Missed::parse(Some(&row.missed)).unwrap_or(Missed::Skip) {
            Missed::Skip => {
                tracing::info!("{}: missed fires skipped (missed: skip)", row.workflow);
                set_next(state, &row, next, None).await;
                super::alerts::missed_fires(state, &row.workflow, &row.node_id, "skip").await;
            }
            Missed::RunOnce => {
                tracing::info!("{}: missed fires run once (missed: run_once)", row.workflow);
                fire(state, &row, now, true).await;
                set_next(state, &row, next, Some(ms(now))).await;
                super::alerts::missed_fires(state, &row.workflow, &row.node_id, "run_once").await;
            }
        }
    }
}

/// Starts the run of a fire, following the overlap policy.
async fn fire(state: &Arc<State>, row: &Row, at: Timestamp, missed: bool) {
    // Schedulers sharing a queue: the one that takes the fire starts its run.
    if let Some(pg) = &state.queue {
        let key = format!("{}/{}", row.workflow, row.node_id);
        // Cron and one-off times are the same on every scheduler; an interval
        // runs from when each scheduler started, so its fires are keyed by
        // the slot of the interval they fall in.
        let slot = match row.kind.as_str() {
            "interval" => crate::engine::duration::parse(&row.spec)
                .ok()
                .map(|d| d.as_millis() as i64)
                .filter(|ms| *ms > 0)
                .map(|ms| at.as_millisecond().div_euclid(ms) * ms),
            _ => None,
        }
        .unwrap_or(at.as_millisecond());
        match pg.take_fire(&key, slot, &state.instance).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!("{key}: the fire at {at} was taken by another scheduler");
                return;
            }
            Err(e) => {
                tracing::error!(
                    "{key}: cannot take the fire at {at} from the queue ({e}); not fired"
                );
                return;
            }
        }
    }
    let input =
        crate::engine::trigger::schedule_input(at, &row.kind, &row.spec, &row.node_id, missed);
    let overlap = Overlap::parse(Some(&row.overlap)).unwrap_or(Overlap::Allow);
    let busy = overlap != Overlap::Allow && still_going(state, &row.workflow).await;
    match overlap {
        Overlap::Skip if busy => {
            tracing::info!(
                "{}: fire skipped, the previous run is still going (overlap: skip)",
                row.workflow
            );
        }
        Overlap::Queue if busy || is_queued(state, &row.workflow) => {
            // One fire waits; more fires while it waits are folded into it.
            let first = state
                .queued
                .lock()
                .map(|mut q| q.insert(row.workflow.clone()))
                .unwrap_or(false);
            if !first {
                return;
            }
            let (state, row) = (state.clone(), row.clone());
            tokio::spawn(async move {
                // With a queue, the runs are counted in the database: look less often.
                let every = Duration::from_millis(if state.queue.is_some() { 200 } else { 20 });
                while still_going(&state, &row.workflow).await {
                    tokio::time::sleep(every).await;
                }
                let _ = start(&state, &row, input).await;
                if let Ok(mut q) = state.queued.lock() {
                    q.remove(&row.workflow);
                }
            });
        }
        _ => match start(state, row, input.clone()).await {
            Ok(id) => retry_on_failure(state, row, id, input),
            Err(r) => tracing::warn!(
                "{}: the scheduled run did not start ({})",
                row.workflow,
                r.status()
            ),
        },
    }
}

/// Starts a scheduled run, entered by its trigger node.
async fn start(
    state: &Arc<State>,
    row: &Row,
    input: Value,
) -> Result<String, Box<super::api::Reply>> {
    let spec = super::api::RunSpec {
        entry: Some(row.node_id.clone()),
        ..Default::default()
    };
    let started = super::api::start_run_with(state, &row.workflow, input, "cron", spec).await;
    match &started {
        Ok(run_id) => tracing::info!(
            workflow = %row.workflow,
            node_id = %row.node_id,
            run_id = %run_id,
            "schedule fired ({} {})",
            row.kind,
            row.spec
        ),
        Err(r) => tracing::warn!(
            workflow = %row.workflow,
            node_id = %row.node_id,
            "schedule fire could not start a run ({})",
            r.status()
        ),
    }
    started
}

/// With `retries` (a timer's `retry_on_failure`): runs a failed scheduled
/// run again, up to that many times, each a retry of the one before.
fn retry_on_failure(state: &Arc<State>, row: &Row, first: String, input: Value) {
    if row.retries <= 0 {
        return;
    }
    let (state, row) = (state.clone(), row.clone());
    tokio::spawn(async move {
        let mut last = first;
        for attempt in 1..=row.retries {
            match super::events::finished(&state.bus, &last).await.as_deref() {
                Some("failed") | Some("interrupted") => {}
                _ => return,
            }
            let spec = super::api::RunSpec {
                retry_of: Some(last.clone()),
                entry: Some(row.node_id.clone()),
                ..Default::default()
            };
            match super::api::start_run_with(&state, &row.workflow, input.clone(), "retry", spec)
                .await
            {
                Ok(id) => {
                    tracing::info!(
                        "{}: scheduled run {last} failed; retry {attempt} of {} is {id}",
                        row.workflow,
                        row.retries
                    );
                    last = id;
                }
                Err(r) => {
                    tracing::warn!("{}: the retry did not start ({})", row.workflow, r.status());
                    return;
                }
            }
        }
    });
}

/// Whether a run of `workflow` is still going, for its overlap policy: one
/// this daemon runs or, with a queue, one queued or running anywhere on it.
async fn still_going(state: &State, workflow: &str) -> bool {
    if let Some(pg) = &state.queue {
        match pg.open_runs(workflow).await {
            Ok(open) => return open > 0,
            Err(e) => tracing::warn!(
                "{workflow}: cannot count its runs in the queue ({e}); the overlap policy sees only this daemon's"
            ),
        }
    }
    state.running_of(workflow) > 0
}

fn is_queued(state: &State, workflow: &str) -> bool {
    state
        .queued
        .lock()
        .map(|q| q.contains(workflow))
        .unwrap_or(false)
}

/// The scheduler loop.
pub(super) async fn run(state: Arc<State>) {
    loop {
        tokio::time::sleep(TICK).await;
        let now = Timestamp::now();
        state
            .scheduler_tick
            .store(ms(now), std::sync::atomic::Ordering::Relaxed);
        for row in due(&state, ms(now)).await {
            let Ok(schedule) = schedule_of(&row) else {
                continue;
            };
            let due = row
                .next_fire_at
                .and_then(|m| Timestamp::from_millisecond(m).ok())
                .unwrap_or(now);
            fire(&state, &row, due, false).await;
            // Next after now, not after `due`: a slow tick never makes a burst;
            // none once it has fired as often as it may.
            let spent = row.max_fires.is_some_and(|max| row.fired + 1 >= max);
            let next = if spent {
                tracing::info!(
                    "{}: fired {} times, its limit; no more fires",
                    row.workflow,
                    row.fired + 1
                );
                None
            } else {
                schedule.next_after(now).map(ms)
            };
            set_next(&state, &row, next, Some(ms(now))).await;
        }
    }
}
