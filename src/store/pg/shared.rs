//! What every daemon on one PostgreSQL database shares, beside the run queue:
//! deployed workflows and their versions, schedule state, API tokens, sealed
//! credentials and conversation memory. The statements mirror the SQLite
//! store's one for one ([`crate::store::Store`]), so both backends behave the
//! same; `tests/store.rs` runs one suite against both.

use tokio_postgres::types::ToSql;

use super::{Pg, PgError, Result, query_error};
use crate::api::types::ScheduleRow;
use crate::store::credentials::{CredentialInfo, Sealed};
use crate::store::memory::{MemoryMessage, MemorySession, estimate_tokens};
use crate::store::schedules::{StoredSchedule, rfc3339};
use crate::store::tokens::{Scope, TokenInfo};
use crate::store::workflows::{
    CurrentWorkflow, Rollback, VersionRow, WorkflowRow, definition_hash,
};

fn now_ms() -> i64 {
    crate::engine::events::now_ms()
}

fn sealed(r: &tokio_postgres::Row) -> Sealed {
    Sealed {
        name: r.get(0),
        kind: r.get(1),
        nonce: r.get(2),
        ciphertext: r.get(3),
    }
}

fn message(r: &tokio_postgres::Row) -> MemoryMessage {
    MemoryMessage {
        id: r.get(0),
        role: r.get(1),
        content: r.get(2),
        tokens: r.get(3),
        created_at: r.get(4),
    }
}

/// A token's scope as stored; a value the schema's check let through but
/// this binary does not know is an error, not a silent downgrade.
fn scope(text: &str) -> Result<Scope> {
    Scope::parse(text).map_err(|e| PgError::Query {
        action: "reading tokens",
        cause: e.to_string(),
    })
}

impl Pg {
    // Workflows and versions.

    /// Stores `text` as the current version of `name` (created, enabled):
    /// (its version, whether it is new). Identical content keeps its version;
    /// the source file is updated either way. One transaction, with the
    /// workflow's row locked, so two daemons deploying at once get distinct
    /// versions.
    pub async fn store_version(
        &self,
        name: &str,
        text: &str,
        source: Option<&str>,
    ) -> Result<(i64, bool)> {
        let mut client = self.client().await?;
        let err = query_error("storing a workflow version");
        let tx = client.transaction().await.map_err(&err)?;
        let now = now_ms();
        let hash = definition_hash(text);
        let row = tx
            .query_one(
                "INSERT INTO workflows (name, enabled, source_path, created_at, updated_at)
                 VALUES ($1, TRUE, $2, $3, $3)
                 ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at, enabled = TRUE,
                   source_path = excluded.source_path
                 RETURNING id, current_version",
                &[&name, &source, &now],
            )
            .await
            .map_err(&err)?;
        let id: i64 = row.get(0);
        let current: Option<i64> = row.get(1);
        let same: Option<i64> = tx
            .query_opt(
                "SELECT version FROM workflow_versions WHERE workflow_id = $1 AND version = $2 AND hash = $3",
                &[&id, &current, &hash],
            )
            .await
            .map_err(&err)?
            .map(|r| r.get(0));
        let version = match same {
            Some(version) => version,
            None => {
                let version: i64 = tx
                    .query_one(
                        "SELECT COALESCE(MAX(version), 0) + 1 FROM workflow_versions WHERE workflow_id = $1",
                        &[&id],
                    )
                    .await
                    .map_err(&err)?
                    .get(0);
                tx.execute(
                    "INSERT INTO workflow_versions (workflow_id, version, definition, hash, created_at)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[&id, &version, &text, &hash, &now],
                )
                .await
                .map_err(&err)?;
                tx.execute(
                    "UPDATE workflows SET current_version = $2 WHERE id = $1",
                    &[&id, &version],
                )
                .await
                .map_err(&err)?;
                version
            }
        };
        bump(&tx, "workflows_version").await?;
        tx.commit().await.map_err(&err)?;
        Ok((version, same.is_none()))
    }

    /// Every deployed workflow, by name.
    pub async fn list_workflows(&self) -> Result<Vec<WorkflowRow>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name, enabled, current_version, updated_at FROM workflows ORDER BY name",
                &[],
            )
            .await
            .map_err(query_error("listing workflows"))?;
        Ok(rows
            .iter()
            .map(|r| WorkflowRow {
                name: r.get(0),
                enabled: r.get(1),
                version: r.get(2),
                updated_at: r.get(3),
            })
            .collect())
    }

    /// The current version of `name`, if it is deployed.
    pub async fn current_workflow(&self, name: &str) -> Result<Option<CurrentWorkflow>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT v.definition, v.version, w.enabled, w.source_path FROM workflows w
                 JOIN workflow_versions v ON v.workflow_id = w.id AND v.version = w.current_version
                 WHERE w.name = $1",
                &[&name],
            )
            .await
            .map_err(query_error("reading a workflow"))?;
        Ok(row.map(|r| CurrentWorkflow {
            definition: r.get(0),
            version: r.get(1),
            enabled: r.get(2),
            source: r.get(3),
        }))
    }

    /// (name, definition, source file) of every enabled workflow's current version.
    pub async fn enabled_workflows(&self) -> Result<Vec<(String, String, Option<String>)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT w.name, v.definition, w.source_path FROM workflows w
                 JOIN workflow_versions v ON v.workflow_id = w.id AND v.version = w.current_version
                 WHERE w.enabled ORDER BY w.name",
                &[],
            )
            .await
            .map_err(query_error("reading the deployed workflows"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// (name, source file) of the enabled workflows deployed from a file.
    pub async fn workflows_from_files(&self) -> Result<Vec<(String, String)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name, source_path FROM workflows WHERE enabled AND source_path IS NOT NULL ORDER BY name",
                &[],
            )
            .await
            .map_err(query_error("listing deployed files"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The versions of `name`, newest first; `None` when it is not deployed.
    pub async fn workflow_versions(&self, name: &str) -> Result<Option<Vec<VersionRow>>> {
        let client = self.client().await?;
        let err = query_error("listing workflow versions");
        let Some(id) = client
            .query_opt("SELECT id FROM workflows WHERE name = $1", &[&name])
            .await
            .map_err(&err)?
            .map(|r| r.get::<_, i64>(0))
        else {
            return Ok(None);
        };
        let rows = client
            .query(
                "SELECT v.version, v.hash, v.created_at, v.version = w.current_version
                 FROM workflow_versions v JOIN workflows w ON w.id = v.workflow_id
                 WHERE v.workflow_id = $1 ORDER BY v.version DESC",
                &[&id],
            )
            .await
            .map_err(&err)?;
        Ok(Some(rows.iter().map(version_row).collect()))
    }

    /// One version of `name` with its definition.
    pub async fn workflow_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<(VersionRow, String)>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT v.version, v.hash, v.created_at, v.version = w.current_version, v.definition
                 FROM workflow_versions v JOIN workflows w ON w.id = v.workflow_id
                 WHERE w.name = $1 AND v.version = $2",
                &[&name, &version],
            )
            .await
            .map_err(query_error("reading a workflow version"))?;
        Ok(row.map(|r| (version_row(&r), r.get(4))))
    }

    /// Makes `version` the current version of `name`.
    pub async fn rollback_workflow(&self, name: &str, version: i64) -> Result<Rollback> {
        let client = self.client().await?;
        let err = query_error("rolling a workflow back");
        let Some(id) = client
            .query_opt("SELECT id FROM workflows WHERE name = $1", &[&name])
            .await
            .map_err(&err)?
            .map(|r| r.get::<_, i64>(0))
        else {
            return Ok(Rollback::NoWorkflow);
        };
        let done = client
            .execute(
                "WITH changed AS (
                   UPDATE workflows SET current_version = $2, updated_at = $3
                   WHERE id = $1 AND EXISTS (
                     SELECT 1 FROM workflow_versions WHERE workflow_id = $1 AND version = $2)
                   RETURNING 1)
                 INSERT INTO meta (key, value) SELECT 'workflows_version', '1' FROM changed
                 ON CONFLICT (key) DO UPDATE SET value = (meta.value::BIGINT + 1)::TEXT",
                &[&id, &version, &now_ms()],
            )
            .await
            .map_err(&err)?;
        Ok(if done > 0 {
            Rollback::Done
        } else {
            Rollback::NoVersion
        })
    }

    /// Enables or disables `name`; false when it is not deployed.
    pub async fn set_workflow_enabled(&self, name: &str, enabled: bool) -> Result<bool> {
        let client = self.client().await?;
        client
            .execute(
                "WITH changed AS (UPDATE workflows SET enabled = $2 WHERE name = $1 RETURNING 1)
                 INSERT INTO meta (key, value) SELECT 'workflows_version', '1' FROM changed
                 ON CONFLICT (key) DO UPDATE SET value = (meta.value::BIGINT + 1)::TEXT",
                &[&name, &enabled],
            )
            .await
            .map(|n| n > 0)
            .map_err(query_error("enabling or disabling a workflow"))
    }

    /// Deletes `name` with its versions and schedules; false when it is not deployed.
    pub async fn delete_workflow(&self, name: &str) -> Result<bool> {
        let client = self.client().await?;
        client
            .execute(
                "WITH changed AS (DELETE FROM workflows WHERE name = $1 RETURNING 1)
                 INSERT INTO meta (key, value) SELECT 'workflows_version', '1' FROM changed
                 ON CONFLICT (key) DO UPDATE SET value = (meta.value::BIGINT + 1)::TEXT",
                &[&name],
            )
            .await
            .map(|n| n > 0)
            .map_err(query_error("deleting a workflow"))
    }

    /// A definition by its hash: a deployed version's, or a queued run's.
    pub async fn definition(&self, hash: &str) -> Result<Option<String>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT definition FROM workflow_versions WHERE hash = $1 LIMIT 1",
                &[&hash],
            )
            .await
            .map_err(query_error("reading a definition"))?;
        Ok(row.map(|r| r.get(0)))
    }

    // Schedules.

    /// Brings the schedules in line with `wanted` (the schedule triggers of
    /// every deployed workflow), as [`crate::store::Store::sync_schedules`]
    /// does: new triggers are added, changed ones get their new fire time,
    /// unchanged ones keep theirs and their count, the rest go. One transaction.
    pub async fn sync_schedules(&self, wanted: &[StoredSchedule]) -> Result<()> {
        let mut client = self.client().await?;
        let err = query_error("updating the schedules");
        let tx = client.transaction().await.map_err(&err)?;
        let workflows = tx
            .query("SELECT id, name FROM workflows ORDER BY id FOR UPDATE", &[])
            .await
            .map_err(&err)?;
        for w in &workflows {
            let (id, name): (i64, String) = (w.get(0), w.get(1));
            let triggers: Vec<&StoredSchedule> =
                wanted.iter().filter(|t| t.workflow == name).collect();
            let have = tx
                .query(
                    "SELECT node_id, kind, spec, timezone FROM schedules WHERE workflow_id = $1",
                    &[&id],
                )
                .await
                .map_err(&err)?;
            let have: Vec<(String, String, String, Option<String>)> = have
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect();
            for (node_id, ..) in &have {
                if !triggers.iter().any(|t| t.node_id == *node_id) {
                    tx.execute(
                        "DELETE FROM schedules WHERE workflow_id = $1 AND node_id = $2",
                        &[&id, node_id],
                    )
                    .await
                    .map_err(&err)?;
                }
            }
            for t in &triggers {
                let same = have.iter().any(|(node, kind, spec, tz)| {
                    *node == t.node_id && *kind == t.kind && *spec == t.spec && *tz == t.timezone
                });
                if same {
                    tx.execute(
                        "UPDATE schedules SET missed_policy = $3, overlap_policy = $4, enabled = TRUE,
                           max_fires = $5, retries = $6
                         WHERE workflow_id = $1 AND node_id = $2",
                        &[&id, &t.node_id, &t.missed, &t.overlap, &t.max_fires, &t.retries],
                    )
                    .await
                    .map_err(&err)?;
                } else {
                    let args: [&(dyn ToSql + Sync); 10] = [
                        &id,
                        &t.node_id,
                        &t.kind,
                        &t.spec,
                        &t.timezone,
                        &t.missed,
                        &t.overlap,
                        &t.next_fire_at,
                        &t.max_fires,
                        &t.retries,
                    ];
                    tx.execute(
                        "INSERT INTO schedules (workflow_id, node_id, kind, spec, timezone, missed_policy,
                           overlap_policy, enabled, next_fire_at, max_fires, fired, retries)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, TRUE, $8, $9, 0, $10)
                         ON CONFLICT (workflow_id, node_id) DO UPDATE SET kind = excluded.kind,
                           spec = excluded.spec, timezone = excluded.timezone,
                           missed_policy = excluded.missed_policy, overlap_policy = excluded.overlap_policy,
                           enabled = TRUE, next_fire_at = excluded.next_fire_at,
                           max_fires = excluded.max_fires, fired = 0, retries = excluded.retries",
                        &args,
                    )
                    .await
                    .map_err(&err)?;
                }
            }
        }
        tx.commit().await.map_err(&err)
    }

    /// The schedules of enabled workflows due at or before `before` (all without it).
    pub async fn due_schedules(&self, before: Option<i64>) -> Result<Vec<StoredSchedule>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT w.name, s.node_id, s.kind, s.spec, s.timezone, s.missed_policy, s.overlap_policy,
                        s.next_fire_at, s.max_fires, s.fired, s.retries
                 FROM schedules s JOIN workflows w ON w.id = s.workflow_id
                 WHERE s.enabled AND w.enabled AND ($1::BIGINT IS NULL OR s.next_fire_at <= $1)
                 ORDER BY w.name, s.node_id",
                &[&before],
            )
            .await
            .map_err(query_error("reading the schedules"))?;
        Ok(rows
            .iter()
            .map(|r| StoredSchedule {
                workflow: r.get(0),
                node_id: r.get(1),
                kind: r.get(2),
                spec: r.get(3),
                timezone: r.get(4),
                missed: r.get(5),
                overlap: r.get(6),
                next_fire_at: r.get(7),
                max_fires: r.get(8),
                fired: r.get(9),
                retries: r.get(10),
            })
            .collect())
    }

    /// Stores when a schedule fires next and, if it just fired, when.
    pub async fn set_schedule_next(
        &self,
        workflow: &str,
        node_id: &str,
        next: Option<i64>,
        fired: Option<i64>,
    ) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE schedules SET next_fire_at = $3, last_fired_at = COALESCE($4, last_fired_at),
                   fired = fired + CASE WHEN $4::BIGINT IS NULL THEN 0 ELSE 1 END
                 WHERE node_id = $2 AND workflow_id = (SELECT id FROM workflows WHERE name = $1)",
                &[&workflow, &node_id, &next, &fired],
            )
            .await
            .map(|_| ())
            .map_err(query_error("storing the next fire of a schedule"))
    }

    /// The schedules of enabled workflows, soonest first.
    pub async fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT w.name, s.node_id, s.kind, s.spec, s.timezone, s.next_fire_at, s.last_fired_at,
                        s.missed_policy, s.overlap_policy
                 FROM schedules s JOIN workflows w ON w.id = s.workflow_id
                 WHERE s.enabled AND w.enabled ORDER BY s.next_fire_at NULLS LAST, w.name, s.node_id",
                &[],
            )
            .await
            .map_err(query_error("reading the schedules"))?;
        Ok(rows
            .iter()
            .map(|r| ScheduleRow {
                workflow: r.get(0),
                node: r.get(1),
                kind: r.get(2),
                spec: r.get(3),
                timezone: r.get(4),
                next_fire_at: rfc3339(r.get(5)),
                last_fired_at: rfc3339(r.get(6)),
                missed: r.get(7),
                overlap: r.get(8),
            })
            .collect())
    }

    // API tokens.

    /// Stores a new token (only its hash); an existing name is refused.
    pub async fn add_token(&self, name: &str, hash: &str, scope: Scope) -> Result<bool> {
        let mut client = self.client().await?;
        let err = query_error("storing a token");
        let tx = client.transaction().await.map_err(&err)?;
        let added = tx
            .execute(
                "INSERT INTO api_tokens (name, hash, scope, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO NOTHING",
                &[&name, &hash, &scope.as_str(), &now_ms()],
            )
            .await
            .map_err(&err)?;
        if added > 0 {
            bump_tokens_version(&tx).await?;
        }
        tx.commit().await.map_err(&err)?;
        Ok(added > 0)
    }

    /// Makes a home's token (its `api-token` file, by hash) an admin token of
    /// the store, unless it already is one: named `init`, or `init-` and the
    /// start of its hash when another home took `init`. So every home
    /// joining the store keeps a token its commands can use, and none
    /// replaces another's. True when it was added.
    pub async fn adopt_home_token(&self, hash: &str) -> Result<bool> {
        let mut client = self.client().await?;
        let err = query_error("storing the home's token");
        let tx = client.transaction().await.map_err(&err)?;
        tx.execute("LOCK TABLE api_tokens IN SHARE ROW EXCLUSIVE MODE", &[])
            .await
            .map_err(&err)?;
        let known = tx
            .query_opt("SELECT 1 FROM api_tokens WHERE hash = $1", &[&hash])
            .await
            .map_err(&err)?
            .is_some();
        if !known {
            let init = crate::store::tokens::INIT_TOKEN;
            let taken = tx
                .query_opt("SELECT 1 FROM api_tokens WHERE name = $1", &[&init])
                .await
                .map_err(&err)?
                .is_some();
            let name = if taken {
                format!("{init}-{}", &hash[..hash.len().min(12)])
            } else {
                init.to_string()
            };
            tx.execute(
                "INSERT INTO api_tokens (name, hash, scope, created_at) VALUES ($1, $2, 'admin', $3)",
                &[&name, &hash, &now_ms()],
            )
            .await
            .map_err(&err)?;
            bump_tokens_version(&tx).await?;
        }
        tx.commit().await.map_err(&err)?;
        Ok(!known)
    }

    /// Copies a token as it is stored elsewhere (its hash); false when the
    /// store has one by that name or hash already.
    pub async fn import_token(&self, hash: &str, token: &TokenInfo) -> Result<bool> {
        let mut client = self.client().await?;
        let err = query_error("copying a token");
        let tx = client.transaction().await.map_err(&err)?;
        let added = tx
            .execute(
                "INSERT INTO api_tokens (name, hash, scope, created_at, last_used_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[
                    &token.name,
                    &hash,
                    &token.scope.as_str(),
                    &token.created_at,
                    &token.last_used_at,
                ],
            )
            .await
            .map_err(&err)?;
        if added > 0 {
            bump_tokens_version(&tx).await?;
        }
        tx.commit().await.map_err(&err)?;
        Ok(added > 0)
    }

    /// Copies a workflow with every version as stored elsewhere; false when
    /// the store has a workflow by that name already (it is left alone).
    pub async fn import_workflow(&self, workflow: &ImportedWorkflow) -> Result<bool> {
        let mut client = self.client().await?;
        let err = query_error("copying a workflow");
        let tx = client.transaction().await.map_err(&err)?;
        let Some(row) = tx
            .query_opt(
                "INSERT INTO workflows (name, enabled, current_version, source_path, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING RETURNING id",
                &[
                    &workflow.name,
                    &workflow.enabled,
                    &workflow.current_version,
                    &workflow.source_path,
                    &workflow.created_at,
                    &workflow.updated_at,
                ],
            )
            .await
            .map_err(&err)?
        else {
            return Ok(false);
        };
        let id: i64 = row.get(0);
        for (version, definition, hash, created_at) in &workflow.versions {
            tx.execute(
                "INSERT INTO workflow_versions (workflow_id, version, definition, hash, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&id, version, definition, hash, created_at],
            )
            .await
            .map_err(&err)?;
        }
        tx.commit().await.map_err(&err)?;
        Ok(true)
    }

    /// Copies a credential row as sealed elsewhere (same key); false when
    /// the store has one by that name.
    pub async fn import_credential(&self, sealed: &Sealed, info: &CredentialInfo) -> Result<bool> {
        let client = self.client().await?;
        let fields = serde_json::to_string(&info.fields).unwrap_or_else(|_| "[]".into());
        client
            .execute(
                "INSERT INTO credentials (name, type, fields, nonce, ciphertext, created_at, updated_at, last_used_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING",
                &[
                    &sealed.name,
                    &sealed.kind,
                    &fields,
                    &sealed.nonce,
                    &sealed.ciphertext,
                    &info.created_at,
                    &info.updated_at,
                    &info.last_used_at,
                ],
            )
            .await
            .map(|n| n > 0)
            .map_err(query_error("copying a credential"))
    }

    /// Copies a memory session (messages in order, and its summary); false
    /// when the store has messages of that session already.
    pub async fn import_memory(
        &self,
        session: &str,
        messages: &[MemoryMessage],
        summary: Option<&str>,
    ) -> Result<bool> {
        let mut client = self.client().await?;
        let err = query_error("copying memory");
        let tx = client.transaction().await.map_err(&err)?;
        let exists = tx
            .query_opt(
                "SELECT 1 FROM memory_messages WHERE session = $1 LIMIT 1",
                &[&session],
            )
            .await
            .map_err(&err)?
            .is_some();
        if exists {
            return Ok(false);
        }
        for m in messages {
            tx.execute(
                "INSERT INTO memory_messages (session, role, content, tokens, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&session, &m.role, &m.content, &m.tokens, &m.created_at],
            )
            .await
            .map_err(&err)?;
        }
        if let Some(summary) = summary {
            tx.execute(
                "INSERT INTO memory_summaries (session, content, tokens, updated_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (session) DO NOTHING",
                &[&session, &summary, &estimate_tokens(summary), &now_ms()],
            )
            .await
            .map_err(&err)?;
        }
        tx.commit().await.map_err(&err)?;
        Ok(true)
    }

    /// (hash, token) of every token, oldest first.
    pub async fn tokens(&self) -> Result<Vec<(String, TokenInfo)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT hash, name, scope, created_at, last_used_at FROM api_tokens ORDER BY created_at, name",
                &[],
            )
            .await
            .map_err(query_error("reading tokens"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.get(0),
                    TokenInfo {
                        name: r.get(1),
                        scope: scope(r.get(2))?,
                        created_at: r.get(3),
                        last_used_at: r.get(4),
                    },
                ))
            })
            .collect()
    }

    /// Revokes a token; false when there is none by that name.
    pub async fn revoke_token(&self, name: &str) -> Result<bool> {
        let mut client = self.client().await?;
        let err = query_error("revoking a token");
        let tx = client.transaction().await.map_err(&err)?;
        let n = tx
            .execute("DELETE FROM api_tokens WHERE name = $1", &[&name])
            .await
            .map_err(&err)?;
        if n > 0 {
            bump_tokens_version(&tx).await?;
        }
        tx.commit().await.map_err(&err)?;
        Ok(n > 0)
    }

    /// Notes when tokens were last used.
    pub async fn touch_tokens(&self, used: &[(String, i64)]) -> Result<()> {
        let client = self.client().await?;
        for (name, at) in used {
            client
                .execute(
                    "UPDATE api_tokens SET last_used_at = GREATEST(COALESCE(last_used_at, 0), $2) WHERE name = $1",
                    &[name, at],
                )
                .await
                .map_err(query_error("recording token use"))?;
        }
        Ok(())
    }

    /// A number that changes whenever a token is added or revoked.
    pub async fn tokens_version(&self) -> Result<i64> {
        Ok(self
            .meta("tokens_version")
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    // Meta and credentials.

    pub async fn meta(&self, key: &str) -> Result<Option<String>> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
            .await
            .map_err(query_error("reading the store's settings"))?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .await
            .map(|_| ())
            .map_err(query_error("writing the store's settings"))
    }

    pub async fn put_credential(&self, sealed: &Sealed, field_names: &str, now: i64) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO credentials (name, type, fields, nonce, ciphertext, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6)
                 ON CONFLICT (name) DO UPDATE SET type = excluded.type, fields = excluded.fields,
                   nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
                &[
                    &sealed.name,
                    &sealed.kind,
                    &field_names,
                    &sealed.nonce,
                    &sealed.ciphertext,
                    &now,
                ],
            )
            .await
            .map(|_| ())
            .map_err(query_error("storing a credential"))
    }

    pub async fn sealed_credential(&self, name: &str) -> Result<Option<Sealed>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT name, type, nonce, ciphertext FROM credentials WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(query_error("reading a credential"))?;
        Ok(row.as_ref().map(sealed))
    }

    pub async fn any_sealed_credential(&self) -> Result<Option<Sealed>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT name, type, nonce, ciphertext FROM credentials ORDER BY name LIMIT 1",
                &[],
            )
            .await
            .map_err(query_error("reading credentials"))?;
        Ok(row.as_ref().map(sealed))
    }

    pub async fn touch_credential(&self, name: &str, now: i64) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE credentials SET last_used_at = $2 WHERE name = $1",
                &[&name, &now],
            )
            .await
            .map(|_| ())
            .map_err(query_error("noting a credential's use"))
    }

    pub async fn list_credentials(&self) -> Result<Vec<CredentialInfo>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name, type, fields, created_at, updated_at, last_used_at
                 FROM credentials ORDER BY name",
                &[],
            )
            .await
            .map_err(query_error("listing credentials"))?;
        rows.iter()
            .map(|r| {
                let fields: String = r.get(2);
                let name: String = r.get(0);
                let fields = serde_json::from_str(&fields).map_err(|e| PgError::Query {
                    action: "listing credentials",
                    cause: format!("the field names of credential {name:?} are damaged: {e}"),
                })?;
                Ok(CredentialInfo {
                    name,
                    kind: r.get(1),
                    fields,
                    created_at: r.get(3),
                    updated_at: r.get(4),
                    last_used_at: r.get(5),
                })
            })
            .collect()
    }

    pub async fn remove_credential(&self, name: &str) -> Result<bool> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM credentials WHERE name = $1", &[&name])
            .await
            .map(|n| n > 0)
            .map_err(query_error("deleting a credential"))
    }

    /// Re-encrypts every credential with `reseal` and sets `meta` in one
    /// transaction (all or nothing). The rows are locked, so no other
    /// process writes one sealed under the old key meanwhile.
    pub async fn reseal_credentials(
        &self,
        reseal: &mut crate::store::credentials::Reseal<'_>,
        meta: (&str, &str),
    ) -> std::result::Result<usize, crate::Error> {
        let queue = |e: PgError| crate::Error::Queue(e.to_string());
        let mut client = self.client().await.map_err(queue)?;
        let err = |e| queue(query_error("re-encrypting credentials")(e));
        let tx = client.transaction().await.map_err(err)?;
        let rows = tx
            .query(
                "SELECT name, type, nonce, ciphertext FROM credentials ORDER BY name FOR UPDATE",
                &[],
            )
            .await
            .map_err(err)?;
        for row in rows.iter().map(sealed) {
            let (nonce, ciphertext) = reseal(&row)?;
            tx.execute(
                "UPDATE credentials SET nonce = $2, ciphertext = $3 WHERE name = $1",
                &[&row.name, &nonce, &ciphertext],
            )
            .await
            .map_err(err)?;
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&meta.0, &meta.1],
        )
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(rows.len())
    }

    // Conversation memory.

    /// Adds messages to a session, in order, in one transaction.
    pub async fn memory_append(&self, session: &str, messages: &[(&str, &str)]) -> Result<()> {
        let mut client = self.client().await?;
        let err = query_error("writing memory");
        let tx = client.transaction().await.map_err(&err)?;
        let now = now_ms();
        for (role, content) in messages {
            tx.execute(
                "INSERT INTO memory_messages (session, role, content, tokens, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&session, role, content, &estimate_tokens(content), &now],
            )
            .await
            .map_err(&err)?;
        }
        tx.commit().await.map_err(&err)
    }

    /// The newest messages of a session (oldest first) that fit both
    /// limits, starting at a question, as [`crate::store::Store::memory_window`].
    pub async fn memory_window(
        &self,
        session: &str,
        max_messages: usize,
        max_tokens: Option<i64>,
    ) -> Result<Vec<MemoryMessage>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, role, content, tokens, created_at FROM memory_messages
                 WHERE session = $1 ORDER BY id DESC LIMIT $2",
                &[&session, &(max_messages as i64)],
            )
            .await
            .map_err(query_error("reading memory"))?;
        Ok(crate::store::memory::window_of(
            rows.iter().map(message).collect(),
            max_tokens,
        ))
    }

    /// Replaces the messages up to `through_id` with a summary, in one transaction.
    pub async fn memory_summarize(
        &self,
        session: &str,
        through_id: i64,
        summary: &str,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let err = query_error("writing memory");
        let tx = client.transaction().await.map_err(&err)?;
        tx.execute(
            "INSERT INTO memory_summaries (session, content, tokens, updated_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (session) DO UPDATE SET content = excluded.content,
               tokens = excluded.tokens, updated_at = excluded.updated_at",
            &[&session, &summary, &estimate_tokens(summary), &now_ms()],
        )
        .await
        .map_err(&err)?;
        tx.execute(
            "DELETE FROM memory_messages WHERE session = $1 AND id <= $2",
            &[&session, &through_id],
        )
        .await
        .map_err(&err)?;
        tx.commit().await.map_err(&err)
    }

    /// Every session, most recently used first.
    pub async fn memory_sessions(&self) -> Result<Vec<MemorySession>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT session, COUNT(*), SUM(tokens)::BIGINT, MAX(created_at) FROM memory_messages
                 GROUP BY session ORDER BY MAX(id) DESC",
                &[],
            )
            .await
            .map_err(query_error("reading memory"))?;
        Ok(rows
            .iter()
            .map(|r| MemorySession {
                session: r.get(0),
                messages: r.get(1),
                tokens: r.get(2),
                updated_at: r.get(3),
            })
            .collect())
    }

    /// All messages of a session, oldest first; `None` when it has none.
    pub async fn memory_messages(&self, session: &str) -> Result<Option<Vec<MemoryMessage>>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, role, content, tokens, created_at FROM memory_messages
                 WHERE session = $1 ORDER BY id",
                &[&session],
            )
            .await
            .map_err(query_error("reading memory"))?;
        Ok((!rows.is_empty()).then(|| rows.iter().map(message).collect()))
    }

    /// Forgets a session: the messages removed.
    pub async fn memory_clear(&self, session: &str) -> Result<usize> {
        let mut client = self.client().await?;
        let err = query_error("clearing memory");
        let tx = client.transaction().await.map_err(&err)?;
        tx.execute(
            "DELETE FROM memory_summaries WHERE session = $1",
            &[&session],
        )
        .await
        .map_err(&err)?;
        let n = tx
            .execute(
                "DELETE FROM memory_messages WHERE session = $1",
                &[&session],
            )
            .await
            .map_err(&err)?;
        tx.commit().await.map_err(&err)?;
        Ok(n as usize)
    }

    /// The summary of a session's older turns, if one was made.
    pub async fn memory_summary(&self, session: &str) -> Result<Option<String>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT content FROM memory_summaries WHERE session = $1",
                &[&session],
            )
            .await
            .map_err(query_error("reading memory"))?;
        Ok(row.map(|r| r.get(0)))
    }
}

/// A workflow as another store keeps it, to copy: every version is
/// (version, definition, hash, created at).
#[derive(Debug, Clone)]
pub struct ImportedWorkflow {
    pub name: String,
    pub enabled: bool,
    pub current_version: Option<i64>,
    pub source_path: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub versions: Vec<(i64, String, String, i64)>,
}

fn version_row(r: &tokio_postgres::Row) -> VersionRow {
    VersionRow {
        version: r.get(0),
        hash: r.get(1),
        created_at: r.get(2),
        current: r.get(3),
    }
}

async fn bump_tokens_version(tx: &deadpool_postgres::Transaction<'_>) -> Result<()> {
    bump(tx, "tokens_version").await
}

/// Counts a change under `key` in `meta`, in the change's transaction.
async fn bump(tx: &deadpool_postgres::Transaction<'_>, key: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ($1, '1')
         ON CONFLICT (key) DO UPDATE SET value = (meta.value::BIGINT + 1)::TEXT",
        &[&key],
    )
    .await
    .map(|_| ())
    .map_err(query_error("noting a change"))
}
