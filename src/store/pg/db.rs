//! The store on PostgreSQL as the daemon sees it: a [`Db`] whose workflows,
//! versions, schedules, tokens, credentials and memory are the shared tables
//! (see `shared`), and whose runs are the queue's (every run of a daemon on
//! PostgreSQL goes through the queue, so the queue is its run history).
//!
//! Like every [`Db`] it blocks: call it from a blocking thread. It waits for
//! PostgreSQL on the runtime it was given.

use std::path::Path;

use super::{Pg, PgError};
use crate::api::types::ScheduleRow;
use crate::error::{Error, Result};
use crate::store::credentials::{CredentialInfo, CredentialStore, Reseal, Sealed};
use crate::store::db::Db;
use crate::store::history::{HourCount, LogRow, RunDetail, RunFilter, RunSummary, UnfinishedRun};
use crate::store::memory::{MemoryMessage, MemorySession};
use crate::store::schedules::StoredSchedule;
use crate::store::tokens::{Scope, TokenInfo};
use crate::store::workflows::{CurrentWorkflow, Rollback, VersionRow, WorkflowRow};

/// The whole store in one PostgreSQL database.
pub struct PgDb {
    pg: Pg,
    rt: tokio::runtime::Handle,
    /// The runtime it owns when it was opened outside one (commands).
    _own: Option<tokio::runtime::Runtime>,
}

impl PgDb {
    /// On a pool of the runtime `rt` (the daemon's, a worker's).
    pub fn new(pg: Pg, rt: tokio::runtime::Handle) -> PgDb {
        PgDb { pg, rt, _own: None }
    }

    /// Connects (migrating the schema) on a runtime of its own: for commands,
    /// and for readers inside a run's task (credentials), which must not
    /// wait on the runtime they are running on.
    pub fn open(url: &str) -> Result<PgDb> {
        let url = url.to_string();
        // Built on a thread of its own: a runtime cannot be started, nor
        // waited on, from a thread that drives another one.
        std::thread::spawn(move || {
            let own = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("fuse-store")
                .enable_all()
                .build()
                .map_err(|e| Error::Setting(format!("cannot start the async runtime: {e}")))?;
            let pg = own
                .block_on(Pg::connect(&url))
                .map_err(|e| Error::Queue(e.to_string()))?;
            Ok(PgDb {
                pg,
                rt: own.handle().clone(),
                _own: Some(own),
            })
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Setting("connecting to PostgreSQL crashed".into())))
    }

    pub fn pg(&self) -> &Pg {
        &self.pg
    }

    /// The runtime it waits on.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.rt.clone()
    }

    /// Waits for `ask`. From a thread that is inside a runtime (a run's
    /// task reading a credential) the wait happens on a thread of its own,
    /// as a runtime cannot be waited on from inside one.
    fn block<T: Send>(&self, ask: impl std::future::Future<Output = T> + Send) -> T {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.rt.block_on(ask);
        }
        std::thread::scope(|s| {
            s.spawn(|| self.rt.block_on(ask))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    pub(crate) fn wait<T: Send>(
        &self,
        ask: impl std::future::Future<Output = std::result::Result<T, PgError>> + Send,
    ) -> Result<T> {
        self.block(ask).map_err(|e| match e {
            PgError::Refused(message) => Error::Setting(message),
            other => Error::Queue(other.to_string()),
        })
    }
}

/// One [`PgDb`] per URL for the whole process, opened on first use: the
/// vault, nodes keeping memory and vectors, and a command's run keeper all
/// share its pool and runtime instead of each opening (and migrating) one.
pub fn shared(url: &str) -> Result<std::sync::Arc<PgDb>> {
    static OPEN: std::sync::Mutex<Vec<(String, std::sync::Arc<PgDb>)>> =
        std::sync::Mutex::new(Vec::new());
    let mut open = OPEN.lock().map_err(|_| {
        Error::Setting("the PostgreSQL connections are unusable after a crash".into())
    })?;
    if let Some((_, db)) = open.iter().find(|(u, _)| u == url) {
        return Ok(db.clone());
    }
    let db = std::sync::Arc::new(PgDb::open(url)?);
    open.push((url.to_string(), db.clone()));
    Ok(db)
}

impl Drop for PgDb {
    fn drop(&mut self) {
        // Its own runtime may be dropped from inside another (a daemon
        // stopping): shut it down without waiting there.
        if let Some(own) = self._own.take() {
            own.shutdown_background();
        }
    }
}

impl Db for PgDb {
    fn list_workflows(&self) -> Result<Vec<WorkflowRow>> {
        self.wait(self.pg.list_workflows())
    }
    fn current_workflow(&self, name: &str) -> Result<Option<CurrentWorkflow>> {
        self.wait(self.pg.current_workflow(name))
    }
    fn enabled_workflows(&self) -> Result<Vec<(String, String, Option<String>)>> {
        self.wait(self.pg.enabled_workflows())
    }
    fn workflows_from_files(&self) -> Result<Vec<(String, String)>> {
        self.wait(self.pg.workflows_from_files())
    }
    fn workflow_versions(&self, name: &str) -> Result<Option<Vec<VersionRow>>> {
        self.wait(self.pg.workflow_versions(name))
    }
    fn workflow_version(&self, name: &str, version: i64) -> Result<Option<(VersionRow, String)>> {
        self.wait(self.pg.workflow_version(name, version))
    }
    fn store_version(&self, name: &str, text: &str, source: Option<&Path>) -> Result<(i64, bool)> {
        let source = source.map(|p| p.display().to_string());
        self.wait(self.pg.store_version(name, text, source.as_deref()))
    }
    fn rollback_workflow(&self, name: &str, version: i64) -> Result<Rollback> {
        self.wait(self.pg.rollback_workflow(name, version))
    }
    fn set_workflow_enabled(&self, name: &str, enabled: bool) -> Result<bool> {
        self.wait(self.pg.set_workflow_enabled(name, enabled))
    }
    fn delete_workflow(&self, name: &str) -> Result<bool> {
        self.wait(self.pg.delete_workflow(name))
    }
    fn definition(&self, hash: &str) -> Result<Option<String>> {
        self.wait(self.pg.definition(hash))
    }

    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        let cursor = filter.before.as_ref().or(filter.after.as_ref());
        let cursor_at = match (filter.cursor_at, cursor) {
            (Some(at), _) => Some(at),
            (None, Some(id)) => match self.wait(self.pg.run_created_at(id))? {
                Some(at) => Some(at),
                None => {
                    return Err(Error::Setting(format!(
                        "run {id:?}, where this page starts, is no longer recorded (pruned?); start again from the newest runs"
                    )));
                }
            },
            (None, None) => None,
        };
        // The queue gives `offset + limit` runs from the start of the page.
        let runs = self.wait(self.pg.list_runs(filter, cursor_at, &[]))?;
        let limit = if filter.limit > 0 {
            filter.limit
        } else {
            usize::MAX
        };
        let mut page: Vec<RunSummary> = runs.into_iter().skip(filter.offset).take(limit).collect();
        if filter.after.is_some() {
            // The runs just after the cursor, shown newest first.
            page.reverse();
        }
        Ok(page)
    }
    fn runs_per_hour(&self, now: i64, hours: usize) -> Result<Vec<HourCount>> {
        let mut counts = crate::store::history::hour_slots(now, hours);
        for (hour, status, n) in self.wait(self.pg.runs_per_hour(now, hours, &[]))? {
            if let Some(count) = counts.iter_mut().find(|c| c.hour == hour) {
                count.add(&status, n);
            }
        }
        Ok(counts)
    }
    fn resolve_run(&self, id: &str) -> Result<String> {
        let id = id.trim();
        if id != "last" && id.len() < 4 {
            return Err(Error::Setting(format!(
                "run id {id:?} is too short; give at least 4 characters (the end of an id is the most telling), or `last`"
            )));
        }
        let found = self.wait(self.pg.find_runs(id))?;
        if let Some((exact, _)) = found.iter().find(|(run, _)| run == id) {
            return Ok(exact.clone());
        }
        match found.as_slice() {
            [] if id == "last" => Err(Error::NotFound(
                "no runs recorded yet; `fuse run FILE` records one".into(),
            )),
            [] => Err(Error::NotFound(format!(
                "no run matches {id:?}; `fuse runs list` shows the recorded runs"
            ))),
            [(only, _)] => Ok(only.clone()),
            [(a, _), (b, _), ..] => Err(Error::Setting(format!(
                "run id {id:?} matches more than one run ({a}, {b}); give more of it"
            ))),
        }
    }
    fn get_run(&self, id: &str) -> Result<RunDetail> {
        self.wait(self.pg.run_detail(id))?
            .ok_or_else(|| Error::NotFound(format!("no run {id:?} is recorded")))
    }
    fn run_logs(&self, id: &str) -> Result<Vec<LogRow>> {
        match self.wait(self.pg.run_created_at(id))? {
            Some(_) => self.wait(self.pg.run_logs(id)),
            None => Err(Error::NotFound(format!("no run {id:?} is recorded"))),
        }
    }
    fn run_created_at(&self, id: &str) -> Result<Option<i64>> {
        self.wait(self.pg.run_created_at(id))
    }
    fn ping(&self) -> Result<()> {
        self.wait(self.pg.queue_depth()).map(|_| ())
    }

    fn memory_sessions(&self) -> Result<Vec<MemorySession>> {
        self.wait(self.pg.memory_sessions())
    }
    fn memory_messages(&self, session: &str) -> Result<Option<Vec<MemoryMessage>>> {
        self.wait(self.pg.memory_messages(session))
    }
    fn memory_clear(&self, session: &str) -> Result<usize> {
        self.wait(self.pg.memory_clear(session))
    }
    fn memory_summary(&self, session: &str) -> Result<Option<String>> {
        self.wait(self.pg.memory_summary(session))
    }

    /// None: a run on the queue that lost its worker is claimed again by
    /// another once its lease runs out, not resumed by a restarting daemon.
    fn unfinished_runs(&self) -> Result<Vec<UnfinishedRun>> {
        Ok(Vec::new())
    }
    fn mark_run_interrupted(&self, id: &str, _reason: &str) -> Result<()> {
        Err(Error::Setting(format!(
            "run {id:?} is on the PostgreSQL queue: a run whose worker stopped is taken over by another worker, not marked interrupted"
        )))
    }

    fn sync_schedules(&self, wanted: &[StoredSchedule]) -> Result<()> {
        self.wait(self.pg.sync_schedules(wanted))
    }
    fn due_schedules(&self, before: Option<i64>) -> Result<Vec<StoredSchedule>> {
        self.wait(self.pg.due_schedules(before))
    }
    fn set_schedule_next(
        &self,
        workflow: &str,
        node_id: &str,
        next: Option<i64>,
        fired: Option<i64>,
    ) -> Result<()> {
        self.wait(self.pg.set_schedule_next(workflow, node_id, next, fired))
    }
    fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        self.wait(self.pg.schedules())
    }

    fn tokens_version(&self) -> Result<i64> {
        self.wait(self.pg.tokens_version())
    }
    fn token_hashes(&self) -> Result<Vec<(String, String, Scope)>> {
        Ok(self
            .wait(self.pg.tokens())?
            .into_iter()
            .map(|(hash, t)| (hash, t.name, t.scope))
            .collect())
    }
    fn touch_tokens(&self, used: &[(String, i64)]) -> Result<()> {
        self.wait(self.pg.touch_tokens(used))
    }
    fn workflows_version(&self) -> Result<Option<i64>> {
        Ok(Some(
            self.wait(self.pg.meta("workflows_version"))?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        ))
    }
    fn add_token(&self, name: &str, token: &str, scope: Scope) -> Result<()> {
        crate::store::tokens::check_name(name)?;
        let hash = crate::store::tokens::hash(token);
        if self.wait(self.pg.add_token(name, &hash, scope))? {
            Ok(())
        } else {
            Err(crate::store::tokens::name_taken(name))
        }
    }

    fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        Ok(self
            .wait(self.pg.tokens())?
            .into_iter()
            .map(|(_, t)| t)
            .collect())
    }

    fn revoke_token(&self, name: &str) -> Result<bool> {
        self.wait(self.pg.revoke_token(name))
    }

    fn memory_append(&self, session: &str, messages: &[(&str, &str)]) -> Result<()> {
        self.wait(self.pg.memory_append(session, messages))
    }
}

impl CredentialStore for PgDb {
    fn meta(&self, key: &str) -> Result<Option<String>> {
        self.wait(self.pg.meta(key))
    }
    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.wait(self.pg.set_meta(key, value))
    }
    fn put_credential(&self, sealed: &Sealed, field_names: &str, now_ms: i64) -> Result<()> {
        self.wait(self.pg.put_credential(sealed, field_names, now_ms))
    }
    fn sealed_credential(&self, name: &str) -> Result<Option<Sealed>> {
        self.wait(self.pg.sealed_credential(name))
    }
    fn any_sealed_credential(&self) -> Result<Option<Sealed>> {
        self.wait(self.pg.any_sealed_credential())
    }
    fn touch_credential(&self, name: &str, now_ms: i64) -> Result<()> {
        self.wait(self.pg.touch_credential(name, now_ms))
    }
    fn list_credentials(&self) -> Result<Vec<CredentialInfo>> {
        self.wait(self.pg.list_credentials())
    }
    fn remove_credential(&self, name: &str) -> Result<bool> {
        self.wait(self.pg.remove_credential(name))
    }
    fn reseal_credentials(&self, reseal: &mut Reseal<'_>, meta: (&str, &str)) -> Result<usize> {
        // `reseal` stays on this thread (it holds the keys): waited for here,
        // which `fuse creds rotate` (no runtime) can.
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::Setting(
                "credentials on PostgreSQL are re-encrypted by `fuse creds rotate`, not from inside a runtime".into(),
            ));
        }
        self.rt.block_on(self.pg.reseal_credentials(reseal, meta))
    }
}
