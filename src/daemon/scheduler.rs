//! Schedules of deployed workflows: `trigger.cron` and `trigger.interval` nodes
//! become rows of the `schedules` table with their next fire time, so a restart
//! neither loses nor doubles a fire. Fires missed while the daemon was down
//! follow the trigger's `missed` policy; a fire that comes while the previous
//! run is still going follows its `overlap` policy.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::params;
use serde_json::{Value, json};

use super::State;
use crate::schedule::{Missed, Overlap, Schedule};

/// How often due schedules are looked for.
const TICK: Duration = Duration::from_millis(200);

/// One schedule row.
#[derive(Debug, Clone)]
struct Row {
    workflow: String,
    node_id: String,
    kind: String,
    spec: String,
    timezone: Option<String>,
    missed: String,
    overlap: String,
    next_fire_at: Option<i64>,
}

impl Row {
    fn schedule(&self) -> Result<Schedule, String> {
        match self.kind.as_str() {
            "cron" => Schedule::cron(&self.spec, self.timezone.as_deref()),
            _ => Schedule::interval(&self.spec),
        }
    }
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// The schedule triggers of a workflow definition.
fn triggers_of(definition: &str) -> Vec<(String, String, String, Option<String>, String, String)> {
    let Ok(wf) = serde_json::from_str::<Value>(definition) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for node in wf
        .get("nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kind =
            crate::workflow::canonical_type(node.get("type").and_then(Value::as_str).unwrap_or(""));
        let inputs = node.pointer("/data/inputs").cloned().unwrap_or(Value::Null);
        let s = |k: &str| inputs.get(k).and_then(Value::as_str).map(str::to_string);
        let id = node
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let missed = s("missed").unwrap_or_else(|| "skip".into());
        let overlap = s("overlap").unwrap_or_else(|| "allow".into());
        match kind {
            "trigger.cron" => {
                if let Some(spec) = s("cron") {
                    out.push((id, "cron".into(), spec, s("timezone"), missed, overlap));
                }
            }
            "trigger.interval" => {
                if let Some(spec) = s("every") {
                    out.push((id, "interval".into(), spec, None, missed, overlap));
                }
            }
            _ => {}
        }
    }
    out
}

/// Brings the `schedules` table in line with the deployed, enabled workflows:
/// new triggers get their next fire time, changed ones a new one, unchanged
/// ones keep theirs, and triggers that are gone are removed.
pub(super) fn sync(state: &State) {
    let Ok(store) = state.store.lock() else {
        return;
    };
    let conn = store.conn();
    let result = (|| -> rusqlite::Result<()> {
        let mut stmt = conn.prepare(
            "SELECT w.id, v.definition, w.enabled FROM workflows w
             JOIN workflow_versions v ON v.workflow_id = w.id AND v.version = w.current_version",
        )?;
        let workflows: Vec<(i64, String, bool)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let now = Timestamp::now();
        for (id, definition, enabled) in workflows {
            let triggers = if enabled {
                triggers_of(&definition)
            } else {
                Vec::new()
            };
            let keep: Vec<String> = triggers.iter().map(|t| t.0.clone()).collect();
            let existing: Vec<(String, String, String, Option<String>)> = conn
                .prepare(
                    "SELECT node_id, kind, spec, timezone FROM schedules WHERE workflow_id = ?1",
                )?
                .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (node_id, ..) in &existing {
                if !keep.contains(node_id) {
                    conn.execute(
                        "DELETE FROM schedules WHERE workflow_id = ?1 AND node_id = ?2",
                        params![id, node_id],
                    )?;
                }
            }
            for (node_id, kind, spec, tz, missed, overlap) in triggers {
                let schedule = match kind.as_str() {
                    "cron" => Schedule::cron(&spec, tz.as_deref()),
                    _ => Schedule::interval(&spec),
                };
                let Ok(schedule) = schedule else {
                    tracing::warn!("workflow {id}: trigger {node_id} has a bad schedule {spec:?}");
                    continue;
                };
                let same = existing
                    .iter()
                    .any(|e| e.0 == node_id && e.1 == kind && e.2 == spec && e.3 == tz);
                let next = schedule.next_after(now).map(ms);
                if same {
                    conn.execute(
                        "UPDATE schedules SET missed_policy = ?3, overlap_policy = ?4, enabled = 1
                         WHERE workflow_id = ?1 AND node_id = ?2",
                        params![id, node_id, missed, overlap],
                    )?;
                } else {
                    conn.execute(
                        "INSERT INTO schedules (workflow_id, node_id, kind, spec, timezone, missed_policy,
                           overlap_policy, enabled, next_fire_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8)
                         ON CONFLICT (workflow_id, node_id) DO UPDATE SET kind = excluded.kind,
                           spec = excluded.spec, timezone = excluded.timezone,
                           missed_policy = excluded.missed_policy, overlap_policy = excluded.overlap_policy,
                           enabled = 1, next_fire_at = excluded.next_fire_at",
                        params![id, node_id, kind, spec, tz, missed, overlap, next],
                    )?;
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        tracing::warn!("cannot update schedules: {e}");
    }
}

fn rows(state: &State, due_before: Option<i64>) -> Vec<Row> {
    let Ok(store) = state.store.lock() else {
        return Vec::new();
    };
    let query = "SELECT w.name, s.node_id, s.kind, s.spec, s.timezone, s.missed_policy, s.overlap_policy, s.next_fire_at
                 FROM schedules s JOIN workflows w ON w.id = s.workflow_id
                 WHERE s.enabled = 1 AND w.enabled = 1 AND (?1 IS NULL OR s.next_fire_at <= ?1)";
    let result = (|| -> rusqlite::Result<Vec<Row>> {
        let mut stmt = store.conn().prepare(query)?;
        let rows = stmt.query_map([due_before], |r| {
            Ok(Row {
                workflow: r.get(0)?,
                node_id: r.get(1)?,
                kind: r.get(2)?,
                spec: r.get(3)?,
                timezone: r.get(4)?,
                missed: r.get(5)?,
                overlap: r.get(6)?,
                next_fire_at: r.get(7)?,
            })
        })?;
        rows.collect()
    })();
    result.unwrap_or_else(|e| {
        tracing::warn!("cannot read schedules: {e}");
        Vec::new()
    })
}

fn set_next(state: &State, row: &Row, next: Option<i64>, fired: Option<i64>) {
    let Ok(store) = state.store.lock() else {
        return;
    };
    let r = store.conn().execute(
        "UPDATE schedules SET next_fire_at = ?3, last_fired_at = coalesce(?4, last_fired_at)
         WHERE node_id = ?2 AND workflow_id = (SELECT id FROM workflows WHERE name = ?1)",
        params![row.workflow, row.node_id, next, fired],
    );
    if let Err(e) = r {
        tracing::warn!("cannot store the next fire of {}: {e}", row.workflow);
    }
}

/// At start: fires missed while the daemon was down are skipped or run once.
pub(super) async fn catch_up(state: &Arc<State>) {
    let now = Timestamp::now();
    for row in rows(state, Some(ms(now))) {
        let Ok(schedule) = row.schedule() else {
            continue;
        };
        let next = schedule.next_after(now).map(ms);
        match Missed::parse(Some(&row.missed)).unwrap_or(Missed::Skip) {
            Missed::Skip => {
                tracing::info!("{}: missed fires skipped (missed: skip)", row.workflow);
                set_next(state, &row, next, None);
            }
            Missed::RunOnce => {
                tracing::info!("{}: missed fires run once (missed: run_once)", row.workflow);
                fire(state, &row, now, true).await;
                set_next(state, &row, next, Some(ms(now)));
            }
        }
    }
}

/// Starts the run of a fire, following the overlap policy.
async fn fire(state: &Arc<State>, row: &Row, at: Timestamp, missed: bool) {
    let input = json!({"fired_at": at.to_string(), "schedule": row.spec, "kind": row.kind,
                       "node": row.node_id, "missed": missed});
    let busy = state.running_of(&row.workflow) > 0;
    match Overlap::parse(Some(&row.overlap)).unwrap_or(Overlap::Allow) {
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
                while state.running_of(&row.workflow) > 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let _ = super::api::start_run(&state, &row.workflow, input, "cron").await;
                if let Ok(mut q) = state.queued.lock() {
                    q.remove(&row.workflow);
                }
            });
        }
        _ => {
            if let Err(r) = super::api::start_run(state, &row.workflow, input, "cron").await {
                tracing::warn!(
                    "{}: the scheduled run did not start ({})",
                    row.workflow,
                    r.status()
                );
            }
        }
    }
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
        for row in rows(&state, Some(ms(now))) {
            let Ok(schedule) = row.schedule() else {
                continue;
            };
            let due = row
                .next_fire_at
                .and_then(|m| Timestamp::from_millisecond(m).ok())
                .unwrap_or(now);
            fire(&state, &row, due, false).await;
            // Next after now, not after `due`: a slow tick never makes a burst.
            set_next(
                &state,
                &row,
                schedule.next_after(now).map(ms),
                Some(ms(now)),
            );
        }
    }
}

/// The next fires of a home's schedules (for `fuse status`).
pub fn upcoming(store: &crate::store::Store) -> crate::Result<Vec<Value>> {
    let result = (|| -> rusqlite::Result<Vec<Value>> {
        let mut stmt = store.conn().prepare(
            "SELECT w.name, s.node_id, s.kind, s.spec, s.timezone, s.next_fire_at, s.last_fired_at,
                    s.missed_policy, s.overlap_policy
             FROM schedules s JOIN workflows w ON w.id = s.workflow_id
             WHERE s.enabled = 1 AND w.enabled = 1 ORDER BY s.next_fire_at",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(json!({"workflow": r.get::<_, String>(0)?, "node": r.get::<_, String>(1)?,
                      "kind": r.get::<_, String>(2)?, "spec": r.get::<_, String>(3)?,
                      "timezone": r.get::<_, Option<String>>(4)?,
                      "next_fire_at": r.get::<_, Option<i64>>(5)?.and_then(|m| Timestamp::from_millisecond(m).ok()).map(|t| t.to_string()),
                      "last_fired_at": r.get::<_, Option<i64>>(6)?.and_then(|m| Timestamp::from_millisecond(m).ok()).map(|t| t.to_string()),
                      "missed": r.get::<_, String>(7)?, "overlap": r.get::<_, String>(8)?}))
        })?;
        rows.collect()
    })();
    result.map_err(|e| store.db_err("reading the schedules", e))
}
