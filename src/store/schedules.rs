//! The `schedules` table: one row per `trigger.cron`/`trigger.interval` node
//! of an enabled workflow, with its next fire time, so a restart neither loses
//! nor doubles a fire.

use rusqlite::params;

use super::Store;
use crate::api::types::ScheduleRow;
use crate::error::Result;

/// A schedule trigger of a workflow: what its current definition wants (for
/// [`Store::sync_schedules`]) and what is stored (from [`Store::due_schedules`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSchedule {
    pub workflow: String,
    pub node_id: String,
    /// `cron` or `interval`.
    pub kind: String,
    pub spec: String,
    pub timezone: Option<String>,
    pub missed: String,
    pub overlap: String,
    /// When it fires next (syncing: used if it is new or changed; an
    /// unchanged trigger keeps the fire time it has).
    pub next_fire_at: Option<i64>,
    /// Fires at most this many times (`None`: no limit).
    pub max_fires: Option<i64>,
    /// How many times it has fired (kept while the trigger is unchanged).
    pub fired: i64,
    /// A failed run it started is run again up to this many times.
    pub retries: i64,
}

pub(crate) fn rfc3339(ms: Option<i64>) -> Option<String> {
    ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok())
        .map(|t| t.to_string())
}

impl Store {
    /// Brings the table in line with `wanted` (the schedule triggers of every
    /// enabled workflow): new triggers are added,
    /// changed ones get their new fire time, unchanged ones keep theirs, and
    /// the rest (triggers removed, workflows disabled or deleted) go. One
    /// transaction.
    pub fn sync_schedules(&mut self, wanted: &[StoredSchedule]) -> Result<()> {
        let path = self.path.clone();
        let err = |cause| crate::Error::Database {
            action: "updating the schedules",
            path: path.clone(),
            cause,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut ids = tx.prepare("SELECT id, name FROM workflows").map_err(err)?;
            let workflows: Vec<(i64, String)> = ids
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect())
                .map_err(err)?;
            let mut existing = tx
                .prepare(
                    "SELECT node_id, kind, spec, timezone FROM schedules WHERE workflow_id = ?1",
                )
                .map_err(err)?;
            for (id, name) in workflows {
                let triggers: Vec<&StoredSchedule> =
                    wanted.iter().filter(|t| t.workflow == name).collect();
                let have: Vec<(String, String, String, Option<String>)> = existing
                    .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                    .and_then(|rows| rows.collect())
                    .map_err(err)?;
                for (node_id, ..) in &have {
                    if !triggers.iter().any(|t| t.node_id == *node_id) {
                        tx.execute(
                            "DELETE FROM schedules WHERE workflow_id = ?1 AND node_id = ?2",
                            params![id, node_id],
                        )
                        .map_err(err)?;
                    }
                }
                for t in &triggers {
                    let same = have.iter().any(|(node, kind, spec, tz)| {
                        *node == t.node_id
                            && *kind == t.kind
                            && *spec == t.spec
                            && *tz == t.timezone
                    });
                    if same {
                        tx.execute(
                            "UPDATE schedules SET missed_policy = ?3, overlap_policy = ?4, enabled = 1,
                               max_fires = ?5, retries = ?6
                             WHERE workflow_id = ?1 AND node_id = ?2",
                            params![id, t.node_id, t.missed, t.overlap, t.max_fires, t.retries],
                        )
                        .map_err(err)?;
                    } else {
                        tx.execute(
                            "INSERT INTO schedules (workflow_id, node_id, kind, spec, timezone, missed_policy,
                               overlap_policy, enabled, next_fire_at, max_fires, fired, retries)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?9, 0, ?10)
                             ON CONFLICT (workflow_id, node_id) DO UPDATE SET kind = excluded.kind,
                               spec = excluded.spec, timezone = excluded.timezone,
                               missed_policy = excluded.missed_policy, overlap_policy = excluded.overlap_policy,
                               enabled = 1, next_fire_at = excluded.next_fire_at,
                               max_fires = excluded.max_fires, fired = 0, retries = excluded.retries",
                            params![
                                id,
                                t.node_id,
                                t.kind,
                                t.spec,
                                t.timezone,
                                t.missed,
                                t.overlap,
                                t.next_fire_at,
                                t.max_fires,
                                t.retries
                            ],
                        )
                        .map_err(err)?;
                    }
                }
            }
        }
        tx.commit().map_err(err)
    }

    /// The schedules of enabled workflows due at or before `before` (all of
    /// them without it).
    pub fn due_schedules(&self, before: Option<i64>) -> Result<Vec<StoredSchedule>> {
        let result = (|| -> rusqlite::Result<Vec<StoredSchedule>> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT w.name, s.node_id, s.kind, s.spec, s.timezone, s.missed_policy, s.overlap_policy, s.next_fire_at,
                        s.max_fires, s.fired, s.retries
                 FROM schedules s JOIN workflows w ON w.id = s.workflow_id
                 WHERE s.enabled = 1 AND w.enabled = 1 AND (?1 IS NULL OR s.next_fire_at <= ?1)",
            )?;
            let rows = stmt.query_map([before], |r| {
                Ok(StoredSchedule {
                    workflow: r.get(0)?,
                    node_id: r.get(1)?,
                    kind: r.get(2)?,
                    spec: r.get(3)?,
                    timezone: r.get(4)?,
                    missed: r.get(5)?,
                    overlap: r.get(6)?,
                    next_fire_at: r.get(7)?,
                    max_fires: r.get(8)?,
                    fired: r.get(9)?,
                    retries: r.get(10)?,
                })
            })?;
            rows.collect()
        })();
        result.map_err(|e| self.db_err("reading the schedules", e))
    }

    /// Stores when a schedule fires next and, if it just fired, when.
    pub fn set_schedule_next(
        &self,
        workflow: &str,
        node_id: &str,
        next: Option<i64>,
        fired: Option<i64>,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE schedules SET next_fire_at = ?3, last_fired_at = coalesce(?4, last_fired_at),
                   fired = fired + (?4 IS NOT NULL)
                 WHERE node_id = ?2 AND workflow_id = (SELECT id FROM workflows WHERE name = ?1)",
                params![workflow, node_id, next, fired],
            )
            .map(|_| ())
            .map_err(|e| self.db_err("storing the next fire of a schedule", e))
    }

    /// The schedules of enabled workflows, soonest first (`GET /schedules`,
    /// `fuse status`).
    pub fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        let result = (|| -> rusqlite::Result<Vec<ScheduleRow>> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT w.name, s.node_id, s.kind, s.spec, s.timezone, s.next_fire_at, s.last_fired_at,
                        s.missed_policy, s.overlap_policy
                 FROM schedules s JOIN workflows w ON w.id = s.workflow_id
                 WHERE s.enabled = 1 AND w.enabled = 1 ORDER BY s.next_fire_at",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(ScheduleRow {
                    workflow: r.get(0)?,
                    node: r.get(1)?,
                    kind: r.get(2)?,
                    spec: r.get(3)?,
                    timezone: r.get(4)?,
                    next_fire_at: rfc3339(r.get(5)?),
                    last_fired_at: rfc3339(r.get(6)?),
                    missed: r.get(7)?,
                    overlap: r.get(8)?,
                })
            })?;
            rows.collect()
        })();
        result.map_err(|e| self.db_err("reading the schedules", e))
    }
}
