//! The daemon's store when the store is on PostgreSQL (`store.url`): the
//! runs it ran itself (SQLite: the few a daemon runs in process, such as a
//! webhook's that answers its caller) and the runs on the queue, which
//! workers keep in PostgreSQL. Listing, finding and showing runs (the API,
//! the dashboard, `fuse runs` against the daemon) see both; everything else
//! (workflows, versions, schedules, tokens, credentials, memory) is the
//! shared store's, in PostgreSQL.
//!
//! Like every [`Db`], it is called from blocking threads; it waits for the
//! queue's answers on the daemon's runtime.

use std::path::Path;
use std::sync::Arc;

use super::credentials::{CredentialInfo, CredentialStore, Reseal, Sealed};
use super::db::Db;
use super::history::{HourCount, LogRow, RunDetail, RunFilter, RunSummary, UnfinishedRun};
use super::memory::{MemoryMessage, MemorySession};
use super::pg::db::PgDb;
use super::pg::{Pg, PgError};
use super::schedules::StoredSchedule;
use super::tokens::{Scope, TokenInfo};
use super::workflows::{CurrentWorkflow, Rollback, VersionRow, WorkflowRow};
use crate::api::types::ScheduleRow;
use crate::error::{Error, Result};

/// A daemon's own runs beside the queue's, and the shared store.
pub struct WithQueue {
    local: Arc<dyn Db>,
    pg: Pg,
    shared: Arc<PgDb>,
    rt: tokio::runtime::Handle,
    /// The names this home keeps its own runs under on the queue
    /// ([`crate::worker::Keeper`]): they are in `local` already.
    own: Vec<String>,
}

impl WithQueue {
    pub fn new(
        local: Arc<dyn Db>,
        shared: Arc<PgDb>,
        rt: tokio::runtime::Handle,
        own: Vec<String>,
    ) -> WithQueue {
        WithQueue {
            local,
            pg: shared.pg().clone(),
            shared,
            rt,
            own,
        }
    }

    fn queue<T>(
        &self,
        ask: impl std::future::Future<Output = std::result::Result<T, PgError>>,
    ) -> Result<T> {
        self.rt
            .block_on(ask)
            .map_err(|e| Error::Queue(e.to_string()))
    }
}

/// Runs of both stores in one order, without repeats: newest first, or
/// oldest first (to take the runs just after a cursor).
fn merge(mut runs: Vec<RunSummary>, newer_first: bool) -> Vec<RunSummary> {
    runs.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    runs.dedup_by(|a, b| a.id == b.id);
    if newer_first {
        runs.reverse();
    }
    runs
}

impl Db for WithQueue {
    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        let cursor = filter.before.as_ref().or(filter.after.as_ref());
        // The page's cursor run is in either store: both lists need its time.
        let cursor_at = match (filter.cursor_at, cursor) {
            (Some(at), _) => Some(at),
            (None, Some(id)) => match self.local.run_created_at(id)? {
                Some(at) => Some(at),
                None => self.queue(self.pg.run_created_at(id))?,
            },
            (None, None) => None,
        };
        if cursor.is_some() && cursor_at.is_none() {
            // In neither (pruned): the local store says so.
            return self.local.list_runs(filter);
        }
        // Each side gives `offset + limit` from the start; the merged list skips `offset`.
        let mut wide = filter.clone();
        wide.offset = 0;
        wide.cursor_at = cursor_at;
        if filter.limit > 0 {
            wide.limit = filter.limit + filter.offset;
        }
        let local = self.local.list_runs(&wide)?;
        let queued = self.queue(self.pg.list_runs(&wide, cursor_at, &self.own))?;
        // After an `after` cursor the page is the runs closest to it, still
        // shown newest first.
        let newer_first = filter.after.is_none();
        let runs = merge(local.into_iter().chain(queued).collect(), newer_first);
        let limit = if filter.limit > 0 {
            filter.limit
        } else {
            usize::MAX
        };
        let mut page: Vec<RunSummary> = runs.into_iter().skip(filter.offset).take(limit).collect();
        if !newer_first {
            page.reverse();
        }
        Ok(page)
    }

    fn runs_per_hour(&self, now: i64, hours: usize) -> Result<Vec<HourCount>> {
        let mut counts = self.local.runs_per_hour(now, hours)?;
        for (hour, status, n) in self.queue(self.pg.runs_per_hour(now, hours, &self.own))? {
            let Some(count) = counts.iter_mut().find(|c| c.hour == hour) else {
                continue;
            };
            count.add(&status, n);
        }
        Ok(counts)
    }

    fn resolve_run(&self, id: &str) -> Result<String> {
        let local = match self.local.resolve_run(id) {
            // A whole id the local store has: no need to ask the queue.
            Ok(local_id) if local_id == id.trim() => return Ok(local_id),
            Err(e) if !matches!(e, Error::NotFound(_)) => return Err(e),
            other => other,
        };
        let found = self.queue(self.pg.find_runs(id.trim()))?;
        match local {
            Ok(local_id) if id.trim() == "last" => {
                // The newer of the two stores' newest runs.
                // As lists order runs: by creation time, then id.
                let local_at = self.local.run_created_at(&local_id)?;
                Ok(match found.first() {
                    Some((queued, at))
                        if local_at.is_none_or(|l| (*at, queued) > (l, &local_id)) =>
                    {
                        queued.clone()
                    }
                    _ => local_id,
                })
            }
            Ok(local_id) if found.is_empty() || found.iter().any(|(q, _)| *q == local_id) => {
                Ok(local_id)
            }
            Ok(local_id) => Err(Error::Setting(format!(
                "run id {id:?} matches more than one run ({local_id} and {} on the queue); give more of it",
                found[0].0
            ))),
            Err(Error::NotFound(message)) => match found.as_slice() {
                [] => Err(Error::NotFound(message)),
                [(only, _)] => Ok(only.clone()),
                [(a, _), (b, _), ..] => Err(Error::Setting(format!(
                    "run id {id:?} matches more than one queued run ({a}, {b}); give more of it"
                ))),
            },
            Err(e) => Err(e),
        }
    }

    fn get_run(&self, id: &str) -> Result<RunDetail> {
        match self.local.get_run(id) {
            Err(Error::NotFound(message)) => self
                .queue(self.pg.run_detail(id))?
                .ok_or(Error::NotFound(message)),
            other => other,
        }
    }

    fn run_logs(&self, id: &str) -> Result<Vec<LogRow>> {
        match self.local.run_logs(id) {
            // A queued run: the log lines its workers kept on the queue.
            Err(Error::NotFound(message)) => match self.queue(self.pg.run_created_at(id))? {
                Some(_) => self.queue(self.pg.run_logs(id)),
                None => Err(Error::NotFound(message)),
            },
            other => other,
        }
    }

    fn run_created_at(&self, id: &str) -> Result<Option<i64>> {
        match self.local.run_created_at(id)? {
            Some(at) => Ok(Some(at)),
            None => self.queue(self.pg.run_created_at(id)),
        }
    }

    fn ping(&self) -> Result<()> {
        self.local.ping()?;
        self.shared.ping()
    }
    fn list_workflows(&self) -> Result<Vec<WorkflowRow>> {
        self.shared.list_workflows()
    }
    fn current_workflow(&self, name: &str) -> Result<Option<CurrentWorkflow>> {
        self.shared.current_workflow(name)
    }
    fn enabled_workflows(&self) -> Result<Vec<(String, String, Option<String>)>> {
        self.shared.enabled_workflows()
    }
    fn workflows_from_files(&self) -> Result<Vec<(String, String)>> {
        self.shared.workflows_from_files()
    }
    fn workflow_versions(&self, name: &str) -> Result<Option<Vec<VersionRow>>> {
        self.shared.workflow_versions(name)
    }
    fn workflow_version(&self, name: &str, version: i64) -> Result<Option<(VersionRow, String)>> {
        self.shared.workflow_version(name, version)
    }
    fn store_version(&self, name: &str, text: &str, source: Option<&Path>) -> Result<(i64, bool)> {
        self.shared.store_version(name, text, source)
    }
    fn rollback_workflow(&self, name: &str, version: i64) -> Result<Rollback> {
        self.shared.rollback_workflow(name, version)
    }
    fn set_workflow_enabled(&self, name: &str, enabled: bool) -> Result<bool> {
        self.shared.set_workflow_enabled(name, enabled)
    }
    fn delete_workflow(&self, name: &str) -> Result<bool> {
        self.shared.delete_workflow(name)
    }
    fn definition(&self, hash: &str) -> Result<Option<String>> {
        match self.local.definition(hash)? {
            Some(text) => Ok(Some(text)),
            None => self.shared.definition(hash),
        }
    }
    fn memory_sessions(&self) -> Result<Vec<MemorySession>> {
        self.shared.memory_sessions()
    }
    fn memory_messages(&self, session: &str) -> Result<Option<Vec<MemoryMessage>>> {
        self.shared.memory_messages(session)
    }
    fn memory_clear(&self, session: &str) -> Result<usize> {
        self.shared.memory_clear(session)
    }
    fn memory_summary(&self, session: &str) -> Result<Option<String>> {
        self.shared.memory_summary(session)
    }
    fn unfinished_runs(&self) -> Result<Vec<UnfinishedRun>> {
        self.local.unfinished_runs()
    }
    fn mark_run_interrupted(&self, id: &str, reason: &str) -> Result<()> {
        self.local.mark_run_interrupted(id, reason)
    }
    fn sync_schedules(&self, wanted: &[StoredSchedule]) -> Result<()> {
        self.shared.sync_schedules(wanted)
    }
    fn due_schedules(&self, before: Option<i64>) -> Result<Vec<StoredSchedule>> {
        self.shared.due_schedules(before)
    }
    fn set_schedule_next(
        &self,
        workflow: &str,
        node_id: &str,
        next: Option<i64>,
        fired: Option<i64>,
    ) -> Result<()> {
        self.shared
            .set_schedule_next(workflow, node_id, next, fired)
    }
    fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        self.shared.schedules()
    }
    fn tokens_version(&self) -> Result<i64> {
        self.shared.tokens_version()
    }
    fn token_hashes(&self) -> Result<Vec<(String, String, Scope)>> {
        self.shared.token_hashes()
    }
    fn touch_tokens(&self, used: &[(String, i64)]) -> Result<()> {
        self.shared.touch_tokens(used)
    }
    fn add_token(&self, name: &str, token: &str, scope: Scope) -> Result<()> {
        self.shared.add_token(name, token, scope)
    }
    fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        self.shared.list_tokens()
    }
    fn revoke_token(&self, name: &str) -> Result<bool> {
        self.shared.revoke_token(name)
    }
    fn workflows_version(&self) -> Result<Option<i64>> {
        self.shared.workflows_version()
    }
    fn memory_append(&self, session: &str, messages: &[(&str, &str)]) -> Result<()> {
        self.shared.memory_append(session, messages)
    }
}

impl CredentialStore for WithQueue {
    fn meta(&self, key: &str) -> Result<Option<String>> {
        self.shared.meta(key)
    }
    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.shared.set_meta(key, value)
    }
    fn put_credential(&self, sealed: &Sealed, field_names: &str, now_ms: i64) -> Result<()> {
        self.shared.put_credential(sealed, field_names, now_ms)
    }
    fn sealed_credential(&self, name: &str) -> Result<Option<Sealed>> {
        self.shared.sealed_credential(name)
    }
    fn any_sealed_credential(&self) -> Result<Option<Sealed>> {
        self.shared.any_sealed_credential()
    }
    fn touch_credential(&self, name: &str, now_ms: i64) -> Result<()> {
        self.shared.touch_credential(name, now_ms)
    }
    fn list_credentials(&self) -> Result<Vec<CredentialInfo>> {
        self.shared.list_credentials()
    }
    fn remove_credential(&self, name: &str) -> Result<bool> {
        self.shared.remove_credential(name)
    }
    fn reseal_credentials(&self, reseal: &mut Reseal<'_>, meta: (&str, &str)) -> Result<usize> {
        self.shared.reseal_credentials(reseal, meta)
    }
}
