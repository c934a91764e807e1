//! Deployed workflows and their versions: what the daemon serves. Each
//! deploy of new content is a version; identical content is not.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::Store;
use crate::error::Result;

/// One line of the workflow list.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowRow {
    pub name: String,
    pub enabled: bool,
    pub version: Option<i64>,
    pub updated_at: i64,
}

/// The current version of a deployed workflow.
#[derive(Debug, Clone)]
pub struct CurrentWorkflow {
    pub definition: String,
    pub version: i64,
    pub enabled: bool,
    /// The file it was deployed from (relative paths resolve against its folder).
    pub source: Option<String>,
}

/// One version of a workflow.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct VersionRow {
    pub version: i64,
    pub hash: String,
    pub created_at: i64,
    pub current: bool,
}

/// What a rollback found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollback {
    Done,
    NoWorkflow,
    NoVersion,
}

/// sha256 of a definition, hex (the same key history stores it by).
pub use crate::engine::definition::definition_hash;

impl Store {
    /// Stores `text` as the current version of `name` (created, enabled);
    /// returns (version, whether it is new). Identical content keeps its
    /// version; the source file is updated either way.
    pub fn store_version(
        &self,
        name: &str,
        text: &str,
        source: Option<&std::path::Path>,
    ) -> Result<(i64, bool)> {
        let err = |e| self.db_err("storing a workflow version", e);
        let now = crate::engine::events::now_ms();
        let source = source.map(|p| p.display().to_string());
        let hash = definition_hash(text);
        let same: Option<i64> = self
            .conn
            .query_row(
                "SELECT v.version FROM workflows w
                 JOIN workflow_versions v ON v.workflow_id = w.id AND v.version = w.current_version
                 WHERE w.name = ?1 AND v.hash = ?2",
                params![name, hash],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        self.conn
            .execute(
                "INSERT INTO workflows (name, enabled, source_path, created_at, updated_at) VALUES (?1, 1, ?2, ?3, ?3)
                 ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at, enabled = 1,
                   source_path = excluded.source_path",
                params![name, source, now],
            )
            .map_err(err)?;
        if let Some(version) = same {
            return Ok((version, false));
        }
        let id: i64 = self
            .conn
            .query_row("SELECT id FROM workflows WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .map_err(err)?;
        let version: i64 = self
            .conn
            .query_row(
                "SELECT coalesce(max(version), 0) + 1 FROM workflow_versions WHERE workflow_id = ?1",
                [id],
                |r| r.get(0),
            )
            .map_err(err)?;
        self.conn
            .execute(
                "INSERT INTO workflow_versions (workflow_id, version, definition, hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, version, text, hash, now],
            )
            .map_err(err)?;
        self.conn
            .execute(
                "UPDATE workflows SET current_version = ?2 WHERE id = ?1",
                params![id, version],
            )
            .map_err(err)?;
        Ok((version, true))
    }

    /// Every deployed workflow, by name.
    pub fn list_workflows(&self) -> Result<Vec<WorkflowRow>> {
        let err = |e| self.db_err("listing workflows", e);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name, enabled, current_version, updated_at FROM workflows ORDER BY name",
            )
            .map_err(err)?;
        stmt.query_map([], |r| {
            Ok(WorkflowRow {
                name: r.get(0)?,
                enabled: r.get(1)?,
                version: r.get(2)?,
                updated_at: r.get(3)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(err)
    }

    /// The current version of `name`, if it is deployed.
    pub fn current_workflow(&self, name: &str) -> Result<Option<CurrentWorkflow>> {
        self.conn
            .query_row(
                "SELECT v.definition, v.version, w.enabled, w.source_path FROM workflows w
                 JOIN workflow_versions v ON v.workflow_id = w.id AND v.version = w.current_version
                 WHERE w.name = ?1",
                [name],
                |r| {
                    Ok(CurrentWorkflow {
                        definition: r.get(0)?,
                        version: r.get(1)?,
                        enabled: r.get(2)?,
                        source: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.db_err("reading a workflow", e))
    }

    /// The versions of `name`, newest first; `None` when it is not deployed.
    pub fn workflow_versions(&self, name: &str) -> Result<Option<Vec<VersionRow>>> {
        let err = |e| self.db_err("listing workflow versions", e);
        let Some(id) = self.workflow_row_id(name)? else {
            return Ok(None);
        };
        let mut stmt = self
            .conn
            .prepare(
                "SELECT v.version, v.hash, v.created_at, v.version = w.current_version FROM workflow_versions v
                 JOIN workflows w ON w.id = v.workflow_id WHERE v.workflow_id = ?1 ORDER BY v.version DESC",
            )
            .map_err(err)?;
        stmt.query_map([id], |r| {
            Ok(VersionRow {
                version: r.get(0)?,
                hash: r.get(1)?,
                created_at: r.get(2)?,
                current: r.get(3)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map(Some)
        .map_err(err)
    }

    /// One version of `name` with its definition; `None` when the workflow
    /// or the version is not there.
    pub fn workflow_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<(VersionRow, String)>> {
        self.conn
            .query_row(
                "SELECT v.version, v.hash, v.created_at, v.version = w.current_version, v.definition
                 FROM workflow_versions v JOIN workflows w ON w.id = v.workflow_id
                 WHERE w.name = ?1 AND v.version = ?2",
                params![name, version],
                |r| {
                    Ok((
                        VersionRow {
                            version: r.get(0)?,
                            hash: r.get(1)?,
                            created_at: r.get(2)?,
                            current: r.get(3)?,
                        },
                        r.get(4)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.db_err("reading a workflow version", e))
    }

    /// Makes `version` the current version of `name`.
    pub fn rollback_workflow(&self, name: &str, version: i64) -> Result<Rollback> {
        let err = |e| self.db_err("rolling a workflow back", e);
        let Some(id) = self.workflow_row_id(name)? else {
            return Ok(Rollback::NoWorkflow);
        };
        let exists = self
            .conn
            .query_row(
                "SELECT 1 FROM workflow_versions WHERE workflow_id = ?1 AND version = ?2",
                params![id, version],
                |_| Ok(()),
            )
            .optional()
            .map_err(err)?;
        if exists.is_none() {
            return Ok(Rollback::NoVersion);
        }
        self.conn
            .execute(
                "UPDATE workflows SET current_version = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, version, crate::engine::events::now_ms()],
            )
            .map_err(err)?;
        Ok(Rollback::Done)
    }

    /// Enables or disables `name`; false when it is not deployed.
    pub fn set_workflow_enabled(&self, name: &str, enabled: bool) -> Result<bool> {
        self.conn
            .execute(
                "UPDATE workflows SET enabled = ?2 WHERE name = ?1",
                params![name, enabled],
            )
            .map(|n| n > 0)
            .map_err(|e| self.db_err("enabling or disabling a workflow", e))
    }

    /// Deletes `name` with its versions and schedules (its runs stay);
    /// false when it is not deployed.
    pub fn delete_workflow(&self, name: &str) -> Result<bool> {
        self.conn
            .execute("DELETE FROM workflows WHERE name = ?1", [name])
            .map(|n| n > 0)
            .map_err(|e| self.db_err("deleting a workflow", e))
    }

    /// (name, source file) of the enabled workflows deployed from a file.
    pub fn workflows_from_files(&self) -> Result<Vec<(String, String)>> {
        let err = |e| self.db_err("listing deployed files", e);
        let mut stmt = self
            .conn
            .prepare("SELECT name, source_path FROM workflows WHERE enabled = 1 AND source_path IS NOT NULL")
            .map_err(err)?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(err)
    }

    /// (name, definition, source file) of every enabled workflow's current
    /// version: what the daemon serves.
    pub fn enabled_workflows(&self) -> Result<Vec<(String, String, Option<String>)>> {
        let err = |e| self.db_err("reading the deployed workflows", e);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT w.name, v.definition, w.source_path FROM workflows w
                 JOIN workflow_versions v ON v.workflow_id = w.id AND v.version = w.current_version
                 WHERE w.enabled = 1",
            )
            .map_err(err)?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(err)
    }

    fn workflow_row_id(&self, name: &str) -> Result<Option<i64>> {
        self.conn
            .query_row("SELECT id FROM workflows WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.db_err("finding a workflow", e))
    }
}

impl Store {
    /// Every workflow with all its versions, to copy into another store.
    pub fn export_workflows(&self) -> Result<Vec<crate::store::pg::ImportedWorkflow>> {
        let err = |e| self.db_err("reading workflows to copy", e);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, name, enabled, current_version, source_path, created_at, updated_at
                 FROM workflows ORDER BY name",
            )
            .map_err(err)?;
        let rows: Vec<(i64, crate::store::pg::ImportedWorkflow)> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    crate::store::pg::ImportedWorkflow {
                        name: r.get(1)?,
                        enabled: r.get(2)?,
                        current_version: r.get(3)?,
                        source_path: r.get(4)?,
                        created_at: r.get(5)?,
                        updated_at: r.get(6)?,
                        versions: Vec::new(),
                    },
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(err)?;
        let mut versions = self
            .conn
            .prepare(
                "SELECT version, definition, hash, created_at FROM workflow_versions
                 WHERE workflow_id = ?1 ORDER BY version",
            )
            .map_err(err)?;
        rows.into_iter()
            .map(|(id, mut workflow)| {
                workflow.versions = versions
                    .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                    .and_then(|rows| rows.collect())
                    .map_err(err)?;
                Ok(workflow)
            })
            .collect()
    }
}
