//! The store as the daemon sees it: one interface ([`Db`]) over workflows,
//! versions, runs, node runs, logs, schedules and API tokens, with typed
//! errors ([`crate::Error::NotFound`] is a missing thing; any other error is
//! the database failing). The daemon holds an `Arc<dyn Db>` and calls it off
//! its async workers (`spawn_blocking`), so a PostgreSQL implementation can
//! sit beside [`Sqlite`] without touching a handler.
//!
//! Writes of runs (accepting, starting, recording nodes, finishing) do not go
//! through this interface but through the [`super::Recorder`], the one writer
//! that groups them into shared commits. Credentials are sealed and opened by
//! the vault; their rows are stored through [`CredentialStore`], which every
//! [`Db`] is.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Store;
use super::credentials::{CredentialInfo, CredentialStore, Reseal, Sealed};
use super::history::{HourCount, LogRow, RunDetail, RunFilter, RunSummary, UnfinishedRun};
use super::memory::{MemoryMessage, MemorySession};
use super::schedules::StoredSchedule;
use super::tokens::{Scope, TokenInfo};
use super::workflows::{CurrentWorkflow, Rollback, VersionRow, WorkflowRow};
use crate::api::types::ScheduleRow;
use crate::error::{Error, Result};

/// Everything the daemon asks of its database. Every method blocks: call it
/// from a blocking thread.
pub trait Db: super::credentials::CredentialStore + Send + Sync {
    // Workflows and versions.
    fn list_workflows(&self) -> Result<Vec<WorkflowRow>>;
    fn current_workflow(&self, name: &str) -> Result<Option<CurrentWorkflow>>;
    /// (name, definition, source file) of every enabled workflow.
    fn enabled_workflows(&self) -> Result<Vec<(String, String, Option<String>)>>;
    /// (name, source file) of workflows deployed from files.
    fn workflows_from_files(&self) -> Result<Vec<(String, String)>>;
    fn workflow_versions(&self, name: &str) -> Result<Option<Vec<VersionRow>>>;
    fn workflow_version(&self, name: &str, version: i64) -> Result<Option<(VersionRow, String)>>;
    /// Stores a deployed definition: (its version, whether it is new).
    fn store_version(&self, name: &str, text: &str, source: Option<&Path>) -> Result<(i64, bool)>;
    fn rollback_workflow(&self, name: &str, version: i64) -> Result<Rollback>;
    /// False when there is no such workflow.
    fn set_workflow_enabled(&self, name: &str, enabled: bool) -> Result<bool>;
    /// False when there is no such workflow.
    fn delete_workflow(&self, name: &str) -> Result<bool>;
    /// A definition a run used or a deploy stored, by its hash.
    fn definition(&self, hash: &str) -> Result<Option<String>>;

    // Runs (read side).
    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>>;
    /// Runs created in each of the last `hours` hours up to `now` (Unix ms).
    fn runs_per_hour(&self, now: i64, hours: usize) -> Result<Vec<HourCount>>;
    /// The full id of a run from an id, a unique part of one, or `last`.
    fn resolve_run(&self, id: &str) -> Result<String>;
    fn get_run(&self, id: &str) -> Result<RunDetail>;
    fn run_logs(&self, id: &str) -> Result<Vec<LogRow>>;
    /// When a run was created (Unix ms); `None` when it is not recorded.
    fn run_created_at(&self, id: &str) -> Result<Option<i64>>;

    /// Answers when the database can be read (readiness probe).
    fn ping(&self) -> Result<()>;

    // Conversation memory of llm.chat and llm.agent.
    fn memory_sessions(&self) -> Result<Vec<MemorySession>>;
    /// A session's messages, oldest first; `None` when it has none.
    fn memory_messages(&self, session: &str) -> Result<Option<Vec<MemoryMessage>>>;
    /// Forgets a session: the number of messages removed.
    fn memory_clear(&self, session: &str) -> Result<usize>;
    /// The summary of a session's older turns (`memory.summarize`).
    fn memory_summary(&self, session: &str) -> Result<Option<String>>;
    /// A run with the definition it ran (to run it again), if still stored.
    fn run_with_definition(&self, id: &str) -> Result<(RunDetail, Option<String>)> {
        let detail = self.get_run(id)?;
        let definition = match detail.workflow_hash.as_deref() {
            Some(hash) => self.definition(hash)?,
            None => None,
        };
        Ok((detail, definition))
    }
    /// Top-level runs a stopped daemon left queued or running.
    fn unfinished_runs(&self) -> Result<Vec<UnfinishedRun>>;
    fn mark_run_interrupted(&self, id: &str, reason: &str) -> Result<()>;

    // Schedules.
    fn sync_schedules(&self, wanted: &[StoredSchedule]) -> Result<()>;
    fn due_schedules(&self, before: Option<i64>) -> Result<Vec<StoredSchedule>>;
    fn set_schedule_next(
        &self,
        workflow: &str,
        node_id: &str,
        next: Option<i64>,
        fired: Option<i64>,
    ) -> Result<()>;
    fn schedules(&self) -> Result<Vec<ScheduleRow>>;

    // API tokens.
    fn tokens_version(&self) -> Result<i64>;
    /// (name, hash, scope) of every token.
    fn token_hashes(&self) -> Result<Vec<(String, String, Scope)>>;
    fn touch_tokens(&self, used: &[(String, i64)]) -> Result<()>;
    /// Stores a new token (its hash only) under `name`; a name in use is refused.
    fn add_token(&self, name: &str, token: &str, scope: Scope) -> Result<()>;
    /// Every token, oldest first (never the tokens themselves).
    fn list_tokens(&self) -> Result<Vec<TokenInfo>>;
    /// False when there is no token by that name.
    fn revoke_token(&self, name: &str) -> Result<bool>;

    /// Adds messages (role, content) to a memory session, in order.
    fn memory_append(&self, session: &str, messages: &[(&str, &str)]) -> Result<()>;

    /// A number that changes whenever a workflow is deployed, rolled back,
    /// enabled, disabled or deleted, where several daemons share the store
    /// (`None` where one daemon owns it: it knows its own changes).
    fn workflows_version(&self) -> Result<Option<i64>> {
        Ok(None)
    }
}

/// How many read connections [`Sqlite`] keeps.
const READERS: usize = 4;

/// The SQLite [`Db`]: one connection for writes and a pool of read
/// connections, so reads (WAL) never wait behind a write.
pub struct Sqlite {
    writer: Mutex<Store>,
    readers: Vec<Mutex<Store>>,
    next: AtomicUsize,
    blobs_dir: PathBuf,
}

impl Sqlite {
    /// Wraps the daemon's (migrated) store and opens the read pool beside it.
    pub fn new(store: Store, blobs_dir: PathBuf) -> Result<Sqlite> {
        let readers = (0..READERS)
            .map(|_| Store::open_reader(store.path()).map(Mutex::new))
            .collect::<Result<Vec<_>>>()?;
        Ok(Sqlite {
            writer: Mutex::new(store),
            readers,
            next: AtomicUsize::new(0),
            blobs_dir,
        })
    }

    fn write<T>(&self, f: impl FnOnce(&mut Store) -> Result<T>) -> Result<T> {
        let mut store = self.writer.lock().map_err(|_| poisoned())?;
        f(&mut store)
    }

    /// Runs `f` on a free read connection (waiting for one when all are busy).
    fn read<T>(&self, f: impl FnOnce(&Store) -> Result<T>) -> Result<T> {
        for reader in &self.readers {
            if let Ok(store) = reader.try_lock() {
                return f(&store);
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.readers.len().max(1);
        match self.readers.get(i) {
            Some(reader) => f(&*reader.lock().map_err(|_| poisoned())?),
            None => self.write(|s| f(s)),
        }
    }
}

fn poisoned() -> Error {
    Error::Setting(
        "a database connection is unusable after a panic; restart the daemon (`fuse stop`, `fuse start`)"
            .into(),
    )
}

impl Db for Sqlite {
    fn list_workflows(&self) -> Result<Vec<WorkflowRow>> {
        self.read(|s| s.list_workflows())
    }
    fn current_workflow(&self, name: &str) -> Result<Option<CurrentWorkflow>> {
        self.read(|s| s.current_workflow(name))
    }
    fn enabled_workflows(&self) -> Result<Vec<(String, String, Option<String>)>> {
        self.read(|s| s.enabled_workflows())
    }
    fn workflows_from_files(&self) -> Result<Vec<(String, String)>> {
        self.read(|s| s.workflows_from_files())
    }
    fn workflow_versions(&self, name: &str) -> Result<Option<Vec<VersionRow>>> {
        self.read(|s| s.workflow_versions(name))
    }
    fn workflow_version(&self, name: &str, version: i64) -> Result<Option<(VersionRow, String)>> {
        self.read(|s| s.workflow_version(name, version))
    }
    fn store_version(&self, name: &str, text: &str, source: Option<&Path>) -> Result<(i64, bool)> {
        self.write(|s| s.store_version(name, text, source))
    }
    fn rollback_workflow(&self, name: &str, version: i64) -> Result<Rollback> {
        self.write(|s| s.rollback_workflow(name, version))
    }
    fn set_workflow_enabled(&self, name: &str, enabled: bool) -> Result<bool> {
        self.write(|s| s.set_workflow_enabled(name, enabled))
    }
    fn delete_workflow(&self, name: &str) -> Result<bool> {
        self.write(|s| s.delete_workflow(name))
    }
    fn definition(&self, hash: &str) -> Result<Option<String>> {
        self.read(|s| s.definition(hash))
    }
    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        self.read(|s| s.list_runs(filter))
    }
    fn runs_per_hour(&self, now: i64, hours: usize) -> Result<Vec<HourCount>> {
        self.read(|s| s.runs_per_hour(now, hours))
    }
    fn resolve_run(&self, id: &str) -> Result<String> {
        self.read(|s| s.resolve_run_id(id))
    }
    fn get_run(&self, id: &str) -> Result<RunDetail> {
        self.read(|s| s.get_run(id, &self.blobs_dir))
    }
    fn run_logs(&self, id: &str) -> Result<Vec<LogRow>> {
        self.read(|s| s.run_logs(id))
    }
    fn run_created_at(&self, id: &str) -> Result<Option<i64>> {
        self.read(|s| s.run_created_at(id))
    }
    fn ping(&self) -> Result<()> {
        self.read(|s| s.ping())
    }
    fn memory_sessions(&self) -> Result<Vec<MemorySession>> {
        self.read(|s| s.memory_sessions())
    }
    fn memory_messages(&self, session: &str) -> Result<Option<Vec<MemoryMessage>>> {
        self.read(|s| s.memory_messages(session))
    }
    fn memory_clear(&self, session: &str) -> Result<usize> {
        self.write(|s| s.memory_clear(Some(session)))
    }
    fn memory_summary(&self, session: &str) -> Result<Option<String>> {
        self.read(|s| s.memory_summary(session))
    }
    fn unfinished_runs(&self) -> Result<Vec<UnfinishedRun>> {
        self.read(|s| s.unfinished_runs())
    }
    fn mark_run_interrupted(&self, id: &str, reason: &str) -> Result<()> {
        self.write(|s| s.mark_run_interrupted(id, reason))
    }
    fn sync_schedules(&self, wanted: &[StoredSchedule]) -> Result<()> {
        self.write(|s| s.sync_schedules(wanted))
    }
    fn due_schedules(&self, before: Option<i64>) -> Result<Vec<StoredSchedule>> {
        self.read(|s| s.due_schedules(before))
    }
    fn set_schedule_next(
        &self,
        workflow: &str,
        node_id: &str,
        next: Option<i64>,
        fired: Option<i64>,
    ) -> Result<()> {
        self.write(|s| s.set_schedule_next(workflow, node_id, next, fired))
    }
    fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        self.read(|s| s.schedules())
    }
    fn tokens_version(&self) -> Result<i64> {
        self.read(|s| s.tokens_version())
    }
    fn token_hashes(&self) -> Result<Vec<(String, String, Scope)>> {
        self.read(|s| s.token_hashes())
    }
    fn touch_tokens(&self, used: &[(String, i64)]) -> Result<()> {
        self.write(|s| s.touch_tokens(used))
    }
    fn add_token(&self, name: &str, token: &str, scope: Scope) -> Result<()> {
        self.write(|s| s.add_token(name, token, scope))
    }
    fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        self.read(|s| s.list_tokens())
    }
    fn revoke_token(&self, name: &str) -> Result<bool> {
        self.write(|s| s.revoke_token(name))
    }
    fn memory_append(&self, session: &str, messages: &[(&str, &str)]) -> Result<()> {
        self.write(|s| s.memory_append(session, messages))
    }
}

impl CredentialStore for Sqlite {
    fn meta(&self, key: &str) -> Result<Option<String>> {
        self.read(|s| s.meta(key))
    }
    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.write(|s| s.set_meta(key, value))
    }
    fn put_credential(&self, sealed: &Sealed, field_names: &str, now_ms: i64) -> Result<()> {
        self.write(|s| s.put_credential(sealed, field_names, now_ms))
    }
    fn sealed_credential(&self, name: &str) -> Result<Option<Sealed>> {
        self.read(|s| s.sealed_credential(name))
    }
    fn any_sealed_credential(&self) -> Result<Option<Sealed>> {
        self.read(|s| s.any_sealed_credential())
    }
    fn touch_credential(&self, name: &str, now_ms: i64) -> Result<()> {
        self.write(|s| s.touch_credential(name, now_ms))
    }
    fn list_credentials(&self) -> Result<Vec<CredentialInfo>> {
        self.read(|s| s.list_credentials())
    }
    fn remove_credential(&self, name: &str) -> Result<bool> {
        self.write(|s| s.remove_credential(name))
    }
    fn reseal_credentials(&self, reseal: &mut Reseal<'_>, meta: (&str, &str)) -> Result<usize> {
        self.write(|s| s.reseal_credentials(reseal, meta))
    }
}
