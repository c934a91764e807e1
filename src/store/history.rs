//! Reading run history: lists, one run with its node attempts, logs, and the
//! definitions a run used (for `runs retry`). Also the explicit prune.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;

use super::Store;
use super::recorder::{load_payload, reclaim};
use crate::error::{Error, Result};

/// One line of `fuse runs list`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct RunSummary {
    pub id: String,
    pub workflow: String,
    pub status: String,
    pub trigger: String,
    pub created_at: i64,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub parent_id: Option<String>,
    pub retry_of: Option<String>,
}

/// Runs created in one hour, by how they ended (for the overview's chart).
#[derive(Debug, Clone, Default, Serialize)]
pub struct HourCount {
    /// The hour's start (Unix ms).
    pub hour: i64,
    pub succeeded: u64,
    pub failed: u64,
    /// Queued, running, cancelled or interrupted.
    pub other: u64,
}

impl HourCount {
    /// Counts `n` runs of `status` in this hour.
    pub fn add(&mut self, status: &str, n: i64) {
        let n = n.max(0) as u64;
        match status {
            "succeeded" => self.succeeded += n,
            "failed" => self.failed += n,
            _ => self.other += n,
        }
    }
}

/// The `hours` hours up to `now` (Unix ms), oldest first, with no runs yet.
pub fn hour_slots(now: i64, hours: usize) -> Vec<HourCount> {
    const HOUR: i64 = 3_600_000;
    let first = (now / HOUR - hours as i64 + 1) * HOUR;
    (0..hours)
        .map(|i| HourCount {
            hour: first + i as i64 * HOUR,
            ..Default::default()
        })
        .collect()
}

/// Which runs to list: newest first, matching every filter given.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub workflow: Option<String>,
    pub status: Option<String>,
    /// What started them (`manual`, `webhook`, `cron`, …).
    pub trigger: Option<String>,
    /// Created at or after this (Unix ms).
    pub since: Option<i64>,
    /// Paging that stays fast however deep: only runs older than this run
    /// (the last one of the page before).
    pub before: Option<String>,
    /// Only runs newer than this run (the first one of the page after); the
    /// page is still ordered newest first.
    pub after: Option<String>,
    pub limit: usize,
    /// Runs to skip first (paging by count; `before` stays fast when deep).
    pub offset: usize,
    /// The creation time (Unix ms) of the `before`/`after` run, when the
    /// caller knows it (a run recorded elsewhere, on the queue): the store
    /// then does not look the cursor up.
    pub cursor_at: Option<i64>,
}

/// One recorded attempt of a node (attempt 0: skipped or cancelled before running).
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct NodeRunRow {
    pub node_id: String,
    pub node_type: String,
    pub attempt: u32,
    pub item: Option<i64>,
    pub status: String,
    pub input: Option<Value>,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub started_at: Option<i64>,
    pub duration_ms: Option<i64>,
}

/// A column holding JSON text (`None` for NULL or text that is not JSON).
fn json_column(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<Value>> {
    Ok(r.get::<_, Option<String>>(i)?
        .and_then(|e| serde_json::from_str(&e).ok()))
}

/// One recorded step inside a node: an agent's model turn or tool call.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct StepRow {
    pub node_id: String,
    pub seq: u32,
    /// `model` or `tool`.
    pub kind: String,
    /// The model, or the tool's name.
    pub name: String,
    /// `succeeded` or `failed`.
    pub status: String,
    pub input: Option<Value>,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub started_at: i64,
    pub duration_ms: i64,
    pub tokens: Option<i64>,
}

/// A run with everything recorded about it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct RunDetail {
    #[serde(flatten)]
    pub summary: RunSummary,
    pub workflow_hash: Option<String>,
    pub source_path: Option<String>,
    pub input: Value,
    pub output: Value,
    /// Token usage of the run's LLM nodes.
    pub usage: Option<Value>,
    pub nodes: Vec<NodeRunRow>,
    /// Steps inside nodes (agent model turns and tool calls), by node then order.
    #[serde(default)]
    pub steps: Vec<StepRow>,
}

/// A top-level run a stopped daemon left `queued` or `running`.
#[derive(Debug, Clone)]
pub struct UnfinishedRun {
    pub id: String,
    pub workflow: String,
    pub trigger: String,
    pub input: Value,
    /// Accepted but never started (else it was running).
    pub queued: bool,
}

/// One log line of a run.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct LogRow {
    pub ts: i64,
    pub node_id: Option<String>,
    pub level: String,
    pub message: String,
}

const SUMMARY_COLUMNS: &str =
    "id, workflow_name, status, trigger_kind, created_at, duration_ms, error, parent_id, retry_of";

fn summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunSummary> {
    Ok(RunSummary {
        id: r.get(0)?,
        workflow: r.get(1)?,
        status: r.get(2)?,
        trigger: r.get(3)?,
        created_at: r.get(4)?,
        duration_ms: r.get(5)?,
        error: r.get(6)?,
        parent_id: r.get(7)?,
        retry_of: r.get(8)?,
    })
}

impl Store {
    /// Runs, newest first.
    /// When a run was created (Unix ms); `None` when it is not recorded.
    pub fn run_created_at(&self, id: &str) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT created_at FROM executions WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.db_err("finding a run", e))
    }

    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        let err = |e| self.db_err("listing runs", e);
        // A page cursor is a run: its time and id bound the page.
        let cursor = |id: &Option<String>| -> Result<Option<(i64, String)>> {
            let Some(id) = id else { return Ok(None) };
            if let Some(at) = filter.cursor_at {
                return Ok(Some((at, id.clone())));
            }
            match self.run_created_at(id)? {
                Some(at) => Ok(Some((at, id.clone()))),
                None => Err(Error::Setting(format!(
                    "run {id:?}, where this page starts, is no longer recorded (pruned?); start again from the newest runs"
                ))),
            }
        };
        let before = cursor(&filter.before)?;
        let after = cursor(&filter.after)?;
        let newer_first = after.is_none();
        let (before_at, before_id) = before.unzip();
        let (after_at, after_id) = after.unzip();
        // Each filter is in the text only when given, so SQLite picks the
        // index that fits (workflow, or time alone).
        let mut sql = format!("SELECT {SUMMARY_COLUMNS} FROM executions WHERE 1");
        for (given, clause) in [
            (filter.workflow.is_some(), " AND workflow_name = :workflow"),
            (filter.status.is_some(), " AND status = :status"),
            (filter.trigger.is_some(), " AND trigger_kind = :trigger"),
            (filter.since.is_some(), " AND created_at >= :since"),
            (
                before_at.is_some(),
                " AND (created_at, id) < (:before_at, :before_id)",
            ),
            (
                after_at.is_some(),
                " AND (created_at, id) > (:after_at, :after_id)",
            ),
        ] {
            if given {
                sql.push_str(clause);
            }
        }
        sql.push_str(if newer_first {
            " ORDER BY created_at DESC, id DESC"
        } else {
            " ORDER BY created_at ASC, id ASC"
        });
        sql.push_str(" LIMIT :limit OFFSET :offset");
        let limit = if filter.limit == 0 {
            -1
        } else {
            filter.limit as i64
        };
        let mut stmt = self.conn.prepare(&sql).map_err(err)?;
        let offset = filter.offset as i64;
        let mut named: Vec<(&str, &dyn rusqlite::ToSql)> =
            vec![(":limit", &limit), (":offset", &offset)];
        let values: [(&str, &dyn rusqlite::ToSql, bool); 8] = [
            (":workflow", &filter.workflow, filter.workflow.is_some()),
            (":status", &filter.status, filter.status.is_some()),
            (":trigger", &filter.trigger, filter.trigger.is_some()),
            (":since", &filter.since, filter.since.is_some()),
            (":before_at", &before_at, before_at.is_some()),
            (":before_id", &before_id, before_id.is_some()),
            (":after_at", &after_at, after_at.is_some()),
            (":after_id", &after_id, after_id.is_some()),
        ];
        named.extend(
            values
                .iter()
                .filter(|(_, _, given)| *given)
                .map(|(name, value, _)| (*name, *value)),
        );
        let mut rows = stmt
            .query_map(named.as_slice(), summary)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(err)?;
        if !newer_first {
            rows.reverse();
        }
        Ok(rows)
    }

    /// Runs created in each of the `hours` hours up to `now` (Unix ms),
    /// oldest first, every hour present.
    pub fn runs_per_hour(&self, now: i64, hours: usize) -> Result<Vec<HourCount>> {
        let mut counts = hour_slots(now, hours);
        let first = counts.first().map_or(now, |c| c.hour);
        let err = |e| self.db_err("counting runs per hour", e);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT (created_at - ?1) / 3600000, status, count(*) FROM executions
                 WHERE created_at >= ?1 GROUP BY 1, 2",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([first], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(err)?;
        for (slot, status, n) in rows {
            let Some(count) = usize::try_from(slot).ok().and_then(|i| counts.get_mut(i)) else {
                continue; // created after `now` (a clock step): not in the chart
            };
            count.add(&status, n);
        }
        Ok(counts)
    }

    /// The full id of the run `id` names: the whole id, `last` (the newest
    /// run), or any unique start or end of it.
    pub fn resolve_run_id(&self, id: &str) -> Result<String> {
        self.resolve_run(id, None)
    }

    /// Like [`Store::resolve_run_id`], with `last` meaning the newest run of
    /// `workflow` when one is given. Ids are time-ordered (UUIDv7), so the
    /// start of an id is its time and the end is random: an ambiguous part
    /// lists the runs it matches.
    pub fn resolve_run(&self, id: &str, workflow: Option<&str>) -> Result<String> {
        let id = id.trim();
        let err = |e| self.db_err("finding a run", e);
        if id == "last" {
            let newest: Option<String> = self
                .conn
                .query_row(
                    "SELECT id FROM executions WHERE parent_id IS NULL AND (?1 IS NULL OR workflow_name = ?1)
                     ORDER BY created_at DESC, id DESC LIMIT 1",
                    [workflow],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            return newest.ok_or_else(|| {
                Error::NotFound(match workflow {
                    Some(w) => format!("no recorded run of workflow {w:?}; `fuse runs list` shows the recorded runs"),
                    None => "no runs recorded yet; `fuse run FILE` records one".to_string(),
                })
            });
        }
        if id.len() < 4 {
            return Err(Error::Setting(format!(
                "run id {id:?} is too short; give at least 4 characters (the end of an id is the most telling), or `last`"
            )));
        }
        let exact: Option<String> = self
            .conn
            .query_row("SELECT id FROM executions WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(err)?;
        if let Some(exact) = exact {
            return Ok(exact);
        }
        const SHOWN: usize = 5;
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM executions
                 WHERE (id LIKE ?1 || '%' ESCAPE '\\' OR id LIKE '%' || ?1 ESCAPE '\\')
                   AND (?2 IS NULL OR workflow_name = ?2)
                 ORDER BY created_at DESC, id DESC LIMIT {}",
                SHOWN + 1
            ))
            .map_err(err)?;
        let pattern = id
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let found: Vec<RunSummary> = stmt
            .query_map(params![pattern, workflow], summary)
            .and_then(|rows| rows.collect())
            .map_err(err)?;
        match found.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => Err(Error::NotFound(format!(
                "no run with id {id:?}; `fuse runs list` shows the recorded runs"
            ))),
            many => {
                let more = if many.len() > SHOWN { " and more" } else { "" };
                let listed: Vec<String> = many
                    .iter()
                    .take(SHOWN)
                    .map(|r| format!("{} ({}, {})", r.id, r.workflow, r.status))
                    .collect();
                Err(Error::Setting(format!(
                    "run id {id:?} matches several runs: {}{more}; give more characters (ids start with their time, so the end tells runs apart)",
                    listed.join(", ")
                )))
            }
        }
    }

    /// One run with its node attempts (payloads loaded, blobs followed).
    pub fn get_run(&self, id: &str, blobs_dir: &Path) -> Result<RunDetail> {
        let id = self.resolve_run_id(id)?;
        let err = |e| self.db_err("reading a run", e);
        let (summary, hash, source, input, output, usage) = self
            .conn
            .query_row(
                &format!("SELECT {SUMMARY_COLUMNS}, workflow_hash, source_path, input, output, usage FROM executions WHERE id = ?1"),
                [&id],
                |r| {
                    Ok((
                        summary(r)?,
                        r.get::<_, Option<String>>(9)?,
                        r.get::<_, Option<String>>(10)?,
                        r.get::<_, Option<String>>(11)?,
                        r.get::<_, Option<String>>(12)?,
                        r.get::<_, Option<String>>(13)?,
                    ))
                },
            )
            .map_err(err)?;
        let load = |t: Option<String>| t.map(|t| load_payload(blobs_dir, &t));
        let mut stmt = self
            .conn
            .prepare(
                "SELECT node_id, node_type, attempt, item_index, status, input, output, error, started_at, duration_ms
                 FROM node_runs WHERE execution_id = ?1 ORDER BY COALESCE(started_at, 9e18), id",
            )
            .map_err(err)?;
        let nodes = stmt
            .query_map([&id], |r| {
                Ok(NodeRunRow {
                    node_id: r.get(0)?,
                    node_type: r.get(1)?,
                    attempt: r.get(2)?,
                    item: r.get(3)?,
                    status: r.get(4)?,
                    input: load(r.get(5)?),
                    output: load(r.get(6)?),
                    error: json_column(r, 7)?,
                    started_at: r.get(8)?,
                    duration_ms: r.get(9)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(err)?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT node_id, seq, kind, name, status, input, output, error, started_at, duration_ms, tokens
                 FROM node_steps WHERE execution_id = ?1 ORDER BY node_id, seq",
            )
            .map_err(err)?;
        let steps = stmt
            .query_map([&id], |r| {
                Ok(StepRow {
                    node_id: r.get(0)?,
                    seq: r.get(1)?,
                    kind: r.get(2)?,
                    name: r.get(3)?,
                    status: r.get(4)?,
                    input: load(r.get(5)?),
                    output: load(r.get(6)?),
                    error: json_column(r, 7)?,
                    started_at: r.get(8)?,
                    duration_ms: r.get(9)?,
                    tokens: r.get(10)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(err)?;
        Ok(RunDetail {
            summary,
            workflow_hash: hash,
            source_path: source,
            input: load(input).unwrap_or(Value::Null),
            output: load(output).unwrap_or(Value::Null),
            usage: usage.and_then(|u| serde_json::from_str(&u).ok()),
            nodes,
            steps,
        })
    }

    /// The log lines of a run, in order.
    pub fn run_logs(&self, id: &str) -> Result<Vec<LogRow>> {
        let id = self.resolve_run_id(id)?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT ts, node_id, level, message FROM logs WHERE execution_id = ?1 ORDER BY id",
            )
            .map_err(|e| self.db_err("reading logs", e))?;
        let rows = stmt
            .query_map([&id], |r| {
                Ok(LogRow {
                    ts: r.get(0)?,
                    node_id: r.get(1)?,
                    level: r.get(2)?,
                    message: r.get(3)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.db_err("reading logs", e))?;
        Ok(rows)
    }

    /// The workflow JSON recorded under a hash: a run's, or a deployed version's.
    pub fn definition(&self, hash: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                // A long definition is stored as the bytes of its text (see
                // the recorder's `define`).
                "SELECT CAST(definition AS TEXT) FROM definitions WHERE hash = ?1
                 UNION ALL SELECT definition FROM workflow_versions WHERE hash = ?1 LIMIT 1",
                [hash],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.db_err("reading a workflow definition", e))
    }

    /// Deletes finished runs created before `cutoff_ms`; returns how many.
    /// Top-level runs left `queued` or `running` (by a daemon that
    /// stopped), oldest first.
    pub fn unfinished_runs(&self) -> Result<Vec<UnfinishedRun>> {
        let err = |e| self.db_err("reading unfinished runs", e);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, workflow_name, trigger_kind, input, status FROM executions
                 WHERE status IN ('queued', 'running') AND parent_id IS NULL ORDER BY created_at",
            )
            .map_err(err)?;
        stmt.query_map([], |r| {
            let input: Option<String> = r.get(3)?;
            Ok(UnfinishedRun {
                id: r.get(0)?,
                workflow: r.get(1)?,
                trigger: r.get(2)?,
                input: input
                    .and_then(|i| serde_json::from_str(&i).ok())
                    .unwrap_or(Value::Null),
                queued: r.get::<_, String>(4)? == "queued",
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(err)
    }

    /// Marks one run `interrupted` with a reason.
    pub fn mark_run_interrupted(&self, id: &str, reason: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE executions SET status = 'interrupted', error = ?2 WHERE id = ?1",
                params![id, reason],
            )
            .map(|_| ())
            .map_err(|e| self.db_err("marking a run interrupted", e))
    }

    /// Top-level runs still `running` (and `queued` ones when `queued` is
    /// true) belong to a daemon that stopped: they become `interrupted`, with
    /// their sub-runs. Returns how many top-level runs it marked.
    pub fn mark_interrupted(&self, queued: bool) -> Result<usize> {
        let statuses = if queued {
            "('running', 'queued')"
        } else {
            "('running')"
        };
        let n = self
            .conn
            .execute(
                &format!(
                    "UPDATE executions SET status = 'interrupted',
                       error = coalesce(error, 'the daemon stopped before the run finished'),
                       finished_at = coalesce(finished_at, CAST(strftime('%s','now') AS INTEGER) * 1000)
                     WHERE status IN {statuses} AND parent_id IS NULL"
                ),
                [],
            )
            .map_err(|e| self.db_err("marking interrupted runs", e))?;
        self.conn
            .execute(
                "UPDATE executions SET status = 'interrupted'
                 WHERE status IN ('running', 'queued') AND parent_id IS NOT NULL",
                [],
            )
            .map_err(|e| self.db_err("marking interrupted sub-runs", e))?;
        Ok(n)
    }

    /// Deletes finished top-level runs created before `cutoff_ms` and gives
    /// the space back; returns (runs deleted, bytes the database files shrank).
    pub fn prune_before(&self, cutoff_ms: i64, blobs_dir: &Path) -> Result<(usize, u64)> {
        let before = self.files_size();
        let n = self
            .conn
            .execute(
                "DELETE FROM executions WHERE parent_id IS NULL AND created_at < ?1 AND status NOT IN ('running', 'queued')",
                [cutoff_ms],
            )
            .map_err(|e| self.db_err("pruning runs", e))?;
        reclaim(&self.conn, blobs_dir).map_err(|e| self.db_err("reclaiming space", e))?;
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(|e| self.db_err("checkpointing", e))?;
        Ok((n, before.saturating_sub(self.files_size())))
    }

    /// Bytes of the database and its write-ahead log on disk (read with
    /// `stat`: only SQLite opens these files).
    pub fn files_size(&self) -> u64 {
        super::files_size(&self.path)
    }
}

/// Outputs of the nodes that succeeded in a recorded run (a foreach node only
/// when every item succeeded): what a retry or a resume reuses.
pub fn succeeded_outputs(rows: &[NodeRunRow]) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    for (node, rows) in by_node(rows) {
        if rows.iter().any(|r| r.item.is_some()) {
            let mut items: BTreeMap<i64, Value> = BTreeMap::new();
            for r in &rows {
                if let (Some(i), "succeeded", Some(v)) = (r.item, r.status.as_str(), &r.output) {
                    items.insert(i, v.clone());
                }
            }
            let max = rows.iter().filter_map(|r| r.item).max().unwrap_or(-1);
            if items.len() as i64 == max + 1 {
                out.insert(
                    node.to_string(),
                    Value::Array(items.into_values().collect()),
                );
            }
        } else if let Some(r) = rows.iter().rev().find(|r| r.status == "succeeded") {
            out.insert(node.to_string(), r.output.clone().unwrap_or(Value::Null));
        }
    }
    out
}

/// Node attempts grouped by node, in first-seen order.
pub fn by_node(rows: &[NodeRunRow]) -> Vec<(&str, Vec<&NodeRunRow>)> {
    let mut order: Vec<&str> = Vec::new();
    let mut groups: HashMap<&str, Vec<&NodeRunRow>> = HashMap::new();
    for r in rows {
        let entry = groups.entry(r.node_id.as_str()).or_default();
        if entry.is_empty() {
            order.push(&r.node_id);
        }
        entry.push(r);
    }
    order
        .into_iter()
        .map(|n| (n, groups.remove(n).unwrap_or_default()))
        .collect()
}
